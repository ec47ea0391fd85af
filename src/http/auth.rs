//! Bearer access tokens on protected operations: the OAuth2 password-flow security scheme that
//! Swagger UI's "Authorize" uses, and its checker, which validates the token (signature, type,
//! issuer, audience, lifetime, deny list) before the handler runs.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::{OAuthScopes, SecurityScheme};

use super::problem::ApiError;
use crate::oauth::tokens::{AccessClaims, TokenInvalid};
use crate::state::AppState;

/// Scopes offered in Swagger UI's Authorize dialog.
#[derive(OAuthScopes)]
pub enum ApiScopes {
    /// OpenID Connect sign-in (ID token, userinfo)
    #[oai(rename = "openid")]
    Openid,
    /// Your username and name
    #[oai(rename = "profile")]
    Profile,
    /// Your email address
    #[oai(rename = "email")]
    Email,
    /// Read articles
    #[oai(rename = "articles:read")]
    ArticlesRead,
    /// Create and edit articles
    #[oai(rename = "articles:write")]
    ArticlesWrite,
    /// Delete articles
    #[oai(rename = "articles:delete")]
    ArticlesDelete,
    /// Read user accounts
    #[oai(rename = "users:read")]
    UsersRead,
    /// Administer users
    #[oai(rename = "users:admin")]
    UsersAdmin,
    /// Administer clients
    #[oai(rename = "clients:admin")]
    ClientsAdmin,
    /// Read the audit log
    #[oai(rename = "audit:read")]
    AuditRead,
    /// Administer signing keys
    #[oai(rename = "keys:admin")]
    KeysAdmin,
    /// Change your name and email address
    #[oai(rename = "profile:write")]
    ProfileWrite,
}

/// A validated bearer access token. In Swagger UI: Authorize with the password flow and the
/// seeded public client `portcullis-spa` (no secret).
#[derive(SecurityScheme)]
#[oai(
    ty = "oauth2",
    rename = "oauth2",
    flows(password(token_url = "/oauth/token", scopes = "ApiScopes")),
    checker = "check_bearer"
)]
pub struct BearerAuth(pub AccessClaims);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<AccessClaims> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| poem::Error::from(ApiError::internal(&"application state missing")))?;
    state
        .tokens
        .validate_for_api(&bearer.token)
        .await
        .map_err(|e| match e {
            TokenInvalid::Store(cause) => ApiError::internal(&cause).into(),
            other => ApiError::invalid_token(&other.to_string()).into(),
        })
}

impl BearerAuth {
    /// The token's user id, or 403 when the token was issued to a client for itself.
    pub fn user_id(&self) -> Result<&str, ApiError> {
        if self.0.is_user_token() {
            Ok(&self.0.sub)
        } else {
            Err(ApiError::user_token_required())
        }
    }
}
