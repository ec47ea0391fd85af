//! Authorization: permissions as types, and the one guard every protected operation uses.
//!
//! `Require<P>` is a poem-openapi extractor: it validates the bearer access token (signature,
//! type, issuer, audience, lifetime, deny list) and checks that the token's scope carries the
//! permission `P`, answering 401 `invalid_token` / 403 `insufficient_scope` (RFC 6750 §3)
//! before the handler runs. Per-object rules (who may edit an article) are [`Require::owns_or_admin`].
//! Operations also name the scope in `#[oai(scope = ...)]`, so the OpenAPI document shows it; a
//! test checks the two agree.
//!
//! Administrative permissions (see `oauth::scope`) are re-checked against the caller's current
//! roles in the database on every use (or, for a client acting for itself, its current
//! scopes), so a demoted or disabled administrator is refused at once, before revocation has
//! propagated. What the caller holds is then kept as an [`Authority`], against which the
//! escalation rule is checked: nobody grants — to a client, a role or a user — or takes over
//! a permission they do not hold themselves.

mod roles;

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::domain::Scope;
use crate::http::BearerAuth;
use crate::http::problem::ApiError;
use crate::oauth::scope::{self, is_administrative, permissions_in};
use crate::oauth::tokens::AccessClaims;
use crate::state::AppState;
use crate::users::UserError;

pub use self::roles::{Role, RoleError, RoleService};

/// The role whose holders may act on any object, not only their own.
pub const ADMIN_ROLE: &str = "admin";

/// A permission, named as the scope that carries it.
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! permissions {
    ($($(#[$doc:meta])* $ty:ident => $def:path),* $(,)?) => {
        $(
            $(#[$doc])*
            pub struct $ty;
            impl Permission for $ty {
                const NAME: &'static str = $def.name;
            }
        )*
    };
}

// Each permission is a scope of the registry (`oauth::scope`), named by its constant there.
permissions! {
    /// OpenID Connect sign-in: an identity scope every user may grant, not a role permission.
    OpenId => scope::OPENID,
    /// Read one's own profile.
    Profile => scope::PROFILE,
    /// Change one's own profile.
    ProfileWrite => scope::PROFILE_WRITE,
    /// Read articles.
    ArticlesRead => scope::ARTICLES_READ,
    /// Create articles; edit one's own.
    ArticlesWrite => scope::ARTICLES_WRITE,
    /// Delete one's own articles.
    ArticlesDelete => scope::ARTICLES_DELETE,
    /// Read user accounts and roles.
    UsersRead => scope::USERS_READ,
    /// Change users, their roles and role permissions.
    UsersAdmin => scope::USERS_ADMIN,
    /// Manage OAuth clients.
    ClientsAdmin => scope::CLIENTS_ADMIN,
    /// Read the audit log.
    AuditRead => scope::AUDIT_READ,
    /// Administer signing keys.
    KeysAdmin => scope::KEYS_ADMIN,
}

/// Who acts on an administrative operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user, through an access token.
    User(String),
    /// A client acting for itself (client credentials).
    Client(String),
    /// The operator at the command line, who holds every permission.
    Operator,
}

/// What an actor may grant: the permission scopes it holds now.
#[derive(Debug, Clone)]
pub struct Authority {
    pub actor: Actor,
    /// `None`: every permission (the operator).
    held: Option<Scope>,
}

/// A grant refused by the escalation rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("you cannot grant or take over permissions you do not hold: {missing}")]
pub struct Escalation {
    pub missing: Scope,
}

impl Authority {
    /// The command line: the operator holds every permission.
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            held: None,
        }
    }

    pub fn new(actor: Actor, held: Scope) -> Self {
        Self {
            actor,
            held: Some(held),
        }
    }

    /// Refuses unless every permission in `wanted` is held (identity scopes, which every user
    /// may grant about themself, are not permissions and always pass).
    pub fn ensure_holds(&self, wanted: &Scope) -> Result<(), Escalation> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let missing = permissions_in(wanted).minus(held);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Escalation { missing })
        }
    }
}

/// A request authorized for permission `P`. For an administrative `P`, `authority` holds
/// what the caller holds now (its token's scope ∩ its current roles' permissions).
pub struct Require<P: Permission> {
    pub claims: AccessClaims,
    pub authority: Option<Authority>,
    _permission: PhantomData<P>,
}

impl<P: Permission> Require<P> {
    /// The acting user's id; 403 when the token was issued to a client for itself.
    pub fn user_id(&self) -> Result<&str, ApiError> {
        if self.claims.is_user_token() {
            Ok(&self.claims.sub)
        } else {
            Err(ApiError::user_token_required())
        }
    }

    pub fn is_admin(&self) -> bool {
        self.claims.is_user_token() && self.claims.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    /// Per-object rule: the owner (with `P`) or an admin may act; others get 403.
    pub fn owns_or_admin(&self, owner_id: &str) -> Result<(), ApiError> {
        if self.is_admin() || (self.claims.is_user_token() && self.claims.sub == owner_id) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "not_owner",
                "only the owner or an administrator may do this",
            ))
        }
    }

    /// Who acted, for the audit log: the user, or the client acting for itself.
    pub fn actor(&self) -> (Option<&str>, &str) {
        (
            self.claims
                .is_user_token()
                .then_some(self.claims.sub.as_str()),
            self.claims.client_id.as_str(),
        )
    }
}

/// What the bearer of `claims` holds now: the token's permission scopes that the user's
/// current roles still grant (401 when the user is gone or disabled), or, for a client acting
/// for itself, that the client is still allowed (401 when the client is gone).
pub async fn current_authority(
    state: &AppState,
    claims: &AccessClaims,
) -> Result<Authority, ApiError> {
    let token_scope = Scope::parse(&claims.scope).unwrap_or_default();
    if claims.is_user_token() {
        let user = match state.users.get(&claims.sub).await {
            Ok(u) if !u.disabled => u,
            Ok(_) | Err(UserError::NotFound) => {
                return Err(ApiError::invalid_token("the account is disabled or gone"));
            }
            Err(e) => return Err(ApiError::internal(&e)),
        };
        let permitted = state
            .users
            .permissions(&user.roles)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        Ok(Authority::new(
            Actor::User(user.id),
            token_scope.intersect(&permitted),
        ))
    } else {
        let client = state
            .clients
            .get(&claims.client_id)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| ApiError::invalid_token("the client no longer exists"))?;
        Ok(Authority::new(
            Actor::Client(client.client_id.clone()),
            token_scope.intersect(&client.scopes),
        ))
    }
}

impl<'a, P: Permission> ApiExtractor<'a> for Require<P> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <BearerAuth as ApiExtractor>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <BearerAuth as ApiExtractor>::security_schemes()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let auth = <BearerAuth as ApiExtractor>::from_request(request, body, param_opts).await?;
        if !auth.0.has_scope(P::NAME) {
            return Err(ApiError::insufficient_scope(P::NAME).into());
        }
        let authority = if is_administrative(P::NAME) {
            let state = request
                .data::<AppState>()
                .ok_or_else(|| ApiError::internal(&"application state missing"))?;
            let authority = current_authority(state, &auth.0).await?;
            if authority
                .ensure_holds(&Scope::from_tokens([P::NAME]))
                .is_err()
            {
                return Err(ApiError::forbidden(
                    "permission_revoked",
                    "your roles no longer grant this permission",
                )
                .into());
            }
            Some(authority)
        } else {
            None
        };
        Ok(Self {
            claims: auth.0,
            authority,
            _permission: PhantomData,
        })
    }
}
