//! The OAuth 2.0 endpoints: token (RFC 6749), revocation (RFC 7009), introspection
//! (RFC 7662) and userinfo (OIDC Core §5.3). Thin adapters over `ops::TokenOps`: read the
//! form and the client credentials, call the use case, render.

use poem::Request;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{Object, OpenApi};
use serde::Deserialize;

use super::oauth_error::OAuthErrorResponse;
use crate::http::auth::ApiScopes;
use crate::http::guard::{OpenId, Require, user_id};
use crate::http::origin::origin;
use crate::http::problem::{ApiError, Done};
use crate::http::tags::ApiTags;
use crate::oauth::client_auth::PresentedCredentials;
use crate::oauth::error::OAuthError;
use crate::oauth::grants::{self, RawTokenForm};
use crate::oauth::tokens::AccessClaims;
use crate::ops::tokens::Introspected;
use crate::ops::{OpError, TokenOps};

/// Token request (`application/x-www-form-urlencoded`). Which fields are required depends on
/// `grant_type`: `authorization_code` needs `code`, `redirect_uri` and (with PKCE)
/// `code_verifier`; `password` needs `username` and `password`; `refresh_token` needs
/// `refresh_token`; `client_credentials` needs only client authentication;
/// `urn:portcullis:params:oauth:grant-type:mfa-otp` (the second step after a `mfa_required`
/// answer to the password grant) needs `mfa_token` and one of `otp` or `recovery_code`.
#[derive(Debug, Object, Deserialize)]
pub struct TokenForm {
    /// `authorization_code`, `password`, `refresh_token`, `client_credentials` or
    /// `urn:portcullis:params:oauth:grant-type:mfa-otp`.
    pub grant_type: Option<String>,
    /// The authorization code (authorization_code grant).
    #[oai(write_only)]
    pub code: Option<String>,
    /// The redirect URI of the authorization request, exactly (authorization_code grant).
    pub redirect_uri: Option<String>,
    /// The PKCE code verifier, 43 to 128 characters (RFC 7636; authorization_code grant).
    #[oai(write_only)]
    pub code_verifier: Option<String>,
    /// Username or email (password grant).
    pub username: Option<String>,
    /// The user's password (password grant).
    #[oai(write_only)]
    pub password: Option<String>,
    /// The refresh token to rotate (refresh_token grant).
    #[oai(write_only)]
    pub refresh_token: Option<String>,
    /// Space-separated scopes; omitted means the client's default scopes (administrative
    /// scopes are granted only when named).
    pub scope: Option<String>,
    /// RFC 8707 resource indicator: the absolute URI of the API the access token is for (its
    /// `aud`); one the client lists among its audiences. Omitted: Portcullis's own API.
    pub resource: Option<String>,
    /// The `mfa_token` of a `mfa_required` answer (mfa-otp grant).
    #[oai(write_only)]
    pub mfa_token: Option<String>,
    /// Six digits from the authenticator app (mfa-otp grant).
    #[oai(write_only)]
    pub otp: Option<String>,
    /// An unused recovery code, instead of `otp` (mfa-otp grant).
    #[oai(write_only)]
    pub recovery_code: Option<String>,
    /// For public clients, and for `client_secret_post`.
    pub client_id: Option<String>,
    /// For `client_secret_post`.
    #[oai(write_only)]
    pub client_secret: Option<String>,
}

/// Revocation or introspection request (`application/x-www-form-urlencoded`).
#[derive(Debug, Object, Deserialize)]
pub struct TokenHintForm {
    /// The token to revoke or introspect.
    #[oai(write_only)]
    pub token: Option<String>,
    /// `access_token` or `refresh_token` (a hint; both are tried).
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    #[oai(write_only)]
    pub client_secret: Option<String>,
}

/// RFC 7662 introspection response. Inactive tokens answer `{"active": false}` only.
#[derive(Debug, Object, Default)]
pub struct IntrospectionResponse {
    /// Whether the token is currently valid (issued here, unexpired, not revoked).
    pub active: bool,
    /// Granted scopes, space-separated.
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    /// The client the token was issued to.
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    /// Not provided (use `sub`).
    #[oai(skip_serializing_if_is_none)]
    pub username: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    /// Expiry, Unix seconds.
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    /// Issue time, Unix seconds.
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    /// Not valid before, Unix seconds.
    #[oai(skip_serializing_if_is_none)]
    pub nbf: Option<i64>,
    /// The user id, or the client id for client-credentials tokens.
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    /// Audience of the access token.
    #[oai(skip_serializing_if_is_none)]
    pub aud: Option<String>,
    /// Issuer.
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    /// Token id (access tokens).
    #[oai(skip_serializing_if_is_none)]
    pub jti: Option<String>,
    /// The user's roles when the token was issued (user access tokens).
    #[oai(skip_serializing_if_is_none)]
    pub roles: Option<Vec<String>>,
}

/// OIDC userinfo claims (which ones depends on the token's scopes).
#[derive(Debug, Object)]
pub struct UserInfo {
    /// The user id.
    pub sub: String,
    /// Username (`profile`).
    #[oai(skip_serializing_if_is_none)]
    pub preferred_username: Option<String>,
    /// Display name (`profile`), when set.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// Email address (`email`).
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// Always false: addresses are not verified yet (`email`).
    #[oai(skip_serializing_if_is_none)]
    pub email_verified: Option<bool>,
}

/// A successful token response (RFC 6749 §5.1); `Cache-Control: no-store`.
#[derive(Debug, Object)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: i64,
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
    /// The granted scope (may be narrower than requested, RFC 6749 §3.3).
    pub scope: String,
    /// OpenID Connect ID token, when `openid` was granted.
    #[oai(skip_serializing_if_is_none)]
    pub id_token: Option<String>,
}

impl From<grants::TokenResponse> for TokenResponse {
    fn from(t: grants::TokenResponse) -> Self {
        Self {
            access_token: t.access_token,
            token_type: t.token_type,
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
            scope: t.scope,
            id_token: t.id_token,
        }
    }
}

fn presented<'a>(
    req: &'a Request,
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
) -> PresentedCredentials<'a> {
    PresentedCredentials {
        authorization: req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        form_client_id: client_id,
        form_client_secret: client_secret,
    }
}

pub struct OAuthApi;

#[OpenApi(tag = "ApiTags::OAuth")]
impl OAuthApi {
    /// Token endpoint (RFC 6749): password, refresh_token and client_credentials grants
    ///
    ///
    /// Client authentication: `client_secret_basic` (HTTP Basic, credentials form-urlencoded
    /// first), `client_secret_post` (`client_id` + `client_secret` in the form), or `none`
    /// (`client_id` alone, public clients). Refresh tokens rotate on every use; presenting a
    /// used one revokes the whole sign-in.
    #[oai(path = "/oauth/token", method = "post", operation_id = "token")]
    async fn token(
        &self,
        ops: &TokenOps,
        req: &Request,
        form: Form<TokenForm>,
    ) -> Result<Json<TokenResponse>, OAuthErrorResponse> {
        let form = form.0;
        let raw = RawTokenForm {
            grant_type: form.grant_type.as_deref(),
            code: form.code.as_deref(),
            redirect_uri: form.redirect_uri.as_deref(),
            code_verifier: form.code_verifier.as_deref(),
            username: form.username.as_deref(),
            password: form.password.as_deref(),
            refresh_token: form.refresh_token.as_deref(),
            scope: form.scope.as_deref(),
            resource: form.resource.as_deref(),
            mfa_token: form.mfa_token.as_deref(),
            otp: form.otp.as_deref(),
            recovery_code: form.recovery_code.as_deref(),
        };
        let credentials = presented(
            req,
            form.client_id.as_deref(),
            form.client_secret.as_deref(),
        );
        let issued = ops.token(&origin(req), &credentials, &raw).await?;
        Ok(Json(issued.into()))
    }

    /// Revocation endpoint (RFC 7009) for refresh and access tokens
    ///
    /// Revoking a refresh token ends the whole sign-in (every refresh token of its family, and
    /// its access tokens). Revoking an access token puts it on the deny list until it expires.
    /// Unknown or foreign tokens answer 200 and change nothing.
    #[oai(path = "/oauth/revoke", method = "post", operation_id = "revoke")]
    async fn revoke(
        &self,
        ops: &TokenOps,
        req: &Request,
        form: Form<TokenHintForm>,
    ) -> Result<Done, OAuthErrorResponse> {
        let form = form.0;
        let client = ops
            .authenticate(&presented(
                req,
                form.client_id.as_deref(),
                form.client_secret.as_deref(),
            ))
            .await?;
        ops.revoke(&client, required_token(&form.token)?, &origin(req))
            .await?;
        Ok(Done::Ok)
    }

    /// Introspection endpoint (RFC 7662), for confidential clients (resource servers)
    ///
    ///
    /// Revoked, expired, unknown and malformed tokens all answer `{"active": false}`. A token
    /// asked for another resource (RFC 8707 `resource`) is active only for a client that lists
    /// that resource among its audiences.
    #[oai(
        path = "/oauth/introspect",
        method = "post",
        operation_id = "introspect"
    )]
    async fn introspect(
        &self,
        ops: &TokenOps,
        req: &Request,
        form: Form<TokenHintForm>,
    ) -> Result<Json<IntrospectionResponse>, OAuthErrorResponse> {
        let form = form.0;
        let client = ops
            .authenticate(&presented(
                req,
                form.client_id.as_deref(),
                form.client_secret.as_deref(),
            ))
            .await?;
        let found = ops
            .introspect(&client, required_token(&form.token)?)
            .await?;
        Ok(Json(match found {
            Introspected::Inactive => IntrospectionResponse::default(),
            Introspected::Access(claims) => active_access(claims),
            Introspected::Refresh(info) => IntrospectionResponse {
                active: true,
                scope: Some(info.scope),
                client_id: Some(info.client_id),
                token_type: Some("refresh_token".into()),
                exp: Some(info.expires_at),
                iat: Some(info.issued_at),
                sub: Some(info.user_id),
                iss: Some(ops.issuer().to_string()),
                ..Default::default()
            },
        }))
    }

    /// UserInfo endpoint (OpenID Connect Core §5.3)
    ///
    /// Needs an access token with `openid`; `profile` adds the username and name, `email` the
    /// email address.
    #[oai(path = "/oauth/userinfo", method = "get", operation_id = "userinfo")]
    async fn userinfo(
        &self,
        ops: &TokenOps,
        #[oai(scope = "ApiScopes::OPENID")] auth: Require<OpenId>,
    ) -> Result<Json<UserInfo>, ApiError> {
        user_id(&auth.claims)?;
        let user = ops.userinfo(&auth.claims).await.map_err(|e| match e {
            OpError::NotFound(message) => ApiError::invalid_token(&message),
            other => other.into(),
        })?;
        let profile = auth.claims.has_scope("profile");
        let email = auth.claims.has_scope("email");
        Ok(Json(UserInfo {
            sub: user.id,
            preferred_username: profile.then_some(user.username),
            name: if profile { user.name } else { None },
            email: email.then_some(user.email),
            email_verified: email.then_some(user.email_verified),
        }))
    }
}

/// The required `token` parameter of revocation and introspection.
fn required_token(token: &Option<String>) -> Result<&str, OAuthError> {
    match token.as_deref() {
        Some(t) if !t.is_empty() => Ok(t),
        _ => Err(OAuthError::invalid_request(
            "missing required parameter `token`",
        )),
    }
}

fn active_access(claims: AccessClaims) -> IntrospectionResponse {
    let user = claims.is_user_token();
    IntrospectionResponse {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        username: None,
        token_type: Some("Bearer".into()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        jti: Some(claims.jti),
        roles: user.then_some(claims.roles),
    }
}
