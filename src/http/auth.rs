//! Bearer access tokens on protected operations: the OAuth2 security scheme that Swagger UI's
//! "Authorize" uses (the authorization-code flow with PKCE, and the password flow), and its
//! checker, which validates the token (signature, type, issuer, audience, lifetime, deny list)
//! before the handler runs.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::registry::MetaOAuthScope;
use poem_openapi::{OAuthScopes, SecurityScheme};

use super::problem::ApiError;
use crate::oauth::scope::{self, SCOPES, ScopeDef};
use crate::oauth::tokens::{AccessClaims, TokenInvalid};

/// Scopes offered in Swagger UI's Authorize dialog, and named by each operation's security
/// requirement: the registry of scopes (`oauth::scope::SCOPES`), nothing of its own.
#[derive(Debug, Clone, Copy)]
pub struct ApiScopes(&'static ScopeDef);

impl ApiScopes {
    pub const OPENID: Self = Self(&scope::OPENID);
    pub const PROFILE: Self = Self(&scope::PROFILE);
    pub const PROFILE_WRITE: Self = Self(&scope::PROFILE_WRITE);
    pub const ARTICLES_READ: Self = Self(&scope::ARTICLES_READ);
    pub const ARTICLES_WRITE: Self = Self(&scope::ARTICLES_WRITE);
    pub const ARTICLES_DELETE: Self = Self(&scope::ARTICLES_DELETE);
    pub const USERS_READ: Self = Self(&scope::USERS_READ);
    pub const USERS_ADMIN: Self = Self(&scope::USERS_ADMIN);
    pub const CLIENTS_ADMIN: Self = Self(&scope::CLIENTS_ADMIN);
    pub const AUDIT_READ: Self = Self(&scope::AUDIT_READ);
    pub const KEYS_ADMIN: Self = Self(&scope::KEYS_ADMIN);
    pub const WEBHOOKS_ADMIN: Self = Self(&scope::WEBHOOKS_ADMIN);
}

impl OAuthScopes for ApiScopes {
    fn meta() -> Vec<MetaOAuthScope> {
        SCOPES
            .iter()
            .map(|d| MetaOAuthScope {
                name: d.name,
                description: Some(d.description),
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        self.0.name
    }
}

/// A validated bearer access token. In Swagger UI: Authorize with the seeded public client
/// `portcullis-spa` (no secret), by the authorization-code flow (sign-in page, PKCE; see
/// `http::swagger`) or the password flow.
#[derive(SecurityScheme)]
#[oai(
    ty = "oauth2",
    rename = "oauth2",
    flows(
        authorization_code(
            authorization_url = "/oauth/authorize",
            token_url = "/oauth/token",
            scopes = "ApiScopes"
        ),
        password(token_url = "/oauth/token", scopes = "ApiScopes")
    ),
    checker = "check_bearer"
)]
pub struct BearerAuth(pub AccessClaims);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<AccessClaims> {
    super::deps::deps(req)?
        .tokens
        .validate_for_api(&bearer.token)
        .await
        .map_err(|e| match e {
            TokenInvalid::Store(cause) => ApiError::internal(&cause).into(),
            other => ApiError::invalid_token(&other.to_string()).into(),
        })
}
