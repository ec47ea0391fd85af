//! The one guard every protected operation uses.
//!
//! `Require<P>` is a poem-openapi extractor: it validates the bearer access token (signature,
//! type, issuer, audience, lifetime, deny list; see [`BearerAuth`]) and checks that the token's
//! scope carries the permission `P`, answering 401 `invalid_token` / 403 `insufficient_scope`
//! (RFC 6750 §3) before the handler runs. For an administrative permission it also reads what
//! the caller holds now (`rbac::AuthorityService`): a demoted or disabled administrator gets 403
//! `permission_revoked` (or 401) at once. A token issued to a user who must set up MFA first
//! (claim `mfa_enrolment_required`, set at issuance by `oauth::grants`) gets 403
//! `mfa_enrolment_required` from every operation whose permission is not marked
//! [`Permission::DURING_MFA_ENROLMENT`] (reading one's profile, the enrolment operations).
//! Per-object rules (who may edit an article) are [`Require::owns_or_admin`]. Operations also name the scope in `#[oai(scope = ...)]`, so the
//! OpenAPI document shows it; a test checks the two agree.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use super::auth::BearerAuth;
use super::origin::origin;
use super::problem::ApiError;
use crate::domain::Scope;
use crate::oauth::scope::{self, is_administrative};
use crate::oauth::tokens::AccessClaims;
use crate::ops::Caller;
use crate::rbac::{ADMIN_ROLE, Authority, AuthorityError};

/// A permission, named as the scope that carries it.
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
    /// Whether a token whose user must set up MFA first (`mfa_enrolment_required`) may use
    /// it: only reading one's profile and the enrolment operations.
    const DURING_MFA_ENROLMENT: bool = false;
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
    /// Administer alert webhooks.
    WebhooksAdmin => scope::WEBHOOKS_ADMIN,
}

/// Read one's own profile, also before setting up a required second factor.
pub struct ProfileOrEnrolling;
impl Permission for ProfileOrEnrolling {
    const NAME: &'static str = scope::PROFILE.name;
    const DURING_MFA_ENROLMENT: bool = true;
}

/// Manage one's own second factor (`profile:write`), also before a required one is set up.
pub struct MfaEnrolment;
impl Permission for MfaEnrolment {
    const NAME: &'static str = scope::PROFILE_WRITE.name;
    const DURING_MFA_ENROLMENT: bool = true;
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
        user_id(&self.claims)
    }

    pub fn is_admin(&self) -> bool {
        self.claims.is_user_token() && self.claims.roles.iter().any(|r| r == ADMIN_ROLE)
    }

    /// Per-object rule: the owner (with `P`) or an admin may act; others get 403.
    pub fn owns_or_admin(&self, owner_id: &str) -> Result<(), ApiError> {
        if self.is_admin() || self.claims.user_id() == Some(owner_id) {
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
        (self.claims.user_id(), self.claims.client_id.as_str())
    }

    /// Who acts, for a use case: the authority the guard established (administrative
    /// permissions), or the token's bearer acting on their own behalf.
    pub fn caller(&self, req: &Request) -> Caller {
        let origin = origin(req);
        match &self.authority {
            Some(authority) => Caller::new(authority.clone(), origin),
            None => match self.claims.user_id() {
                Some(user) => Caller::user(
                    user,
                    &self.claims.client_id,
                    Scope::parse(&self.claims.scope).unwrap_or_default(),
                    origin,
                ),
                None => Caller::new(
                    Authority::new(
                        crate::rbac::Actor::Client(self.claims.client_id.clone()),
                        Scope::default(),
                    ),
                    origin,
                ),
            },
        }
    }
}

/// The user a token was issued to, or 403 when it was issued to a client for itself.
pub fn user_id(claims: &AccessClaims) -> Result<&str, ApiError> {
    claims.user_id().ok_or_else(ApiError::user_token_required)
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
        // Checked before the scope: such a token's scope is cut to what enrolling needs, and
        // the answer should say why.
        if auth.0.mfa_enrolment_required && !P::DURING_MFA_ENROLMENT {
            return Err(ApiError::forbidden(
                "mfa_enrolment_required",
                "your role requires two-factor authentication: set it up under \
                 /api/v1/users/me/mfa, then sign in again",
            )
            .into());
        }
        if !auth.0.has_scope(P::NAME) {
            return Err(ApiError::insufficient_scope(P::NAME).into());
        }
        let authority = if is_administrative(P::NAME) {
            let authorities = &super::deps::deps(request)?.authorities;
            let authority = authorities.current(&auth.0).await.map_err(|e| match e {
                AuthorityError::Gone => {
                    ApiError::invalid_token("the account or client is disabled or gone")
                }
                other => ApiError::internal(&other),
            })?;
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
