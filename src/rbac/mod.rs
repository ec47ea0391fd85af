//! Authorization: permissions as types, and the one guard every protected operation uses.
//!
//! `Require<P>` is a poem-openapi extractor: it validates the bearer access token (signature,
//! type, issuer, audience, lifetime, deny list) and checks that the token's scope carries the
//! permission `P`, answering 401 `invalid_token` / 403 `insufficient_scope` (RFC 6750 §3)
//! before the handler runs. Per-object rules (who may edit an article) are [`Require::owns_or_admin`].
//! Operations also name the scope in `#[oai(scope = ...)]`, so the OpenAPI document shows it; a
//! test checks the two agree.

mod roles;

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::http::BearerAuth;
use crate::http::problem::ApiError;
use crate::oauth::tokens::AccessClaims;

pub use self::roles::{Role, RoleError, RoleService};

/// The role whose holders may act on any object, not only their own.
pub const ADMIN_ROLE: &str = "admin";

/// A permission, named as the scope that carries it.
pub trait Permission: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! permissions {
    ($($(#[$doc:meta])* $ty:ident => $name:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            pub struct $ty;
            impl Permission for $ty {
                const NAME: &'static str = $name;
            }
        )*
    };
}

permissions! {
    /// OpenID Connect sign-in: an identity scope every user may grant, not a role permission.
    OpenId => "openid",
    /// Read articles.
    ArticlesRead => "articles:read",
    /// Create articles; edit one's own.
    ArticlesWrite => "articles:write",
    /// Delete one's own articles.
    ArticlesDelete => "articles:delete",
    /// Read user accounts and roles.
    UsersRead => "users:read",
    /// Change users, their roles and role permissions.
    UsersAdmin => "users:admin",
    /// Manage OAuth clients.
    ClientsAdmin => "clients:admin",
    /// Read the audit log.
    AuditRead => "audit:read",
}

/// A request authorized for permission `P`.
pub struct Require<P: Permission> {
    pub claims: AccessClaims,
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
        Ok(Self {
            claims: auth.0,
            _permission: PhantomData,
        })
    }
}
