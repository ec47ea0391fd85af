//! The OAuth 2.0 endpoints: token (RFC 6749), revocation (RFC 7009), introspection
//! (RFC 7662) and userinfo (OIDC Core §5.3). Handlers are thin: parse, authenticate the
//! client, dispatch to the grant modules or services.

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;

use super::client_auth::{PresentedCredentials, authenticate};
use super::error::OAuthError;
use super::grants::{self, GrantContext, RawTokenForm, TokenRequest, TokenResponse};
use super::tokens::{AccessClaims, TokenInvalid};
use crate::abuse::LimitClass;
use crate::audit::{Event, EventType, Outcome};
use crate::clients::Client;
use crate::http::auth::ApiScopes;
use crate::http::problem::ApiError;
use crate::http::{ApiTags, origin};
use crate::rbac::{OpenId, Require};
use crate::state::AppState;

/// Token request (`application/x-www-form-urlencoded`). Which fields are required depends on
/// `grant_type`: `password` needs `username` and `password`; `refresh_token` needs
/// `refresh_token`; `client_credentials` needs only client authentication.
#[derive(Debug, Object, Deserialize)]
pub struct TokenForm {
    /// `password`, `refresh_token` or `client_credentials`.
    pub grant_type: Option<String>,
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

#[derive(ApiResponse)]
pub enum TokenOk {
    /// Tokens issued (RFC 6749 §5.1); `Cache-Control: no-store`.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
pub enum IntrospectOk {
    /// What the token is, or `{"active": false}` (RFC 7662 §2.2).
    #[oai(status = 200)]
    Ok(Json<IntrospectionResponse>),
}

#[derive(ApiResponse)]
pub enum UserInfoOk {
    /// Claims about the signed-in user.
    #[oai(status = 200)]
    Ok(Json<UserInfo>),
}

#[derive(ApiResponse)]
pub enum RevokeResponse {
    /// The token is revoked, or was unknown or already invalid (RFC 7009 §2.2).
    #[oai(status = 200)]
    Ok,
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
        state: Data<&AppState>,
        req: &Request,
        form: Form<TokenForm>,
    ) -> Result<TokenOk, OAuthError> {
        let form = form.0;
        let origin = origin(req);
        if let Some(ip) = &origin.ip {
            state
                .limits
                .check(LimitClass::TokenIp, ip)
                .await
                .map_err(OAuthError::too_many)?;
        }
        let request = TokenRequest::parse(&RawTokenForm {
            grant_type: form.grant_type.as_deref(),
            username: form.username.as_deref(),
            password: form.password.as_deref(),
            refresh_token: form.refresh_token.as_deref(),
            scope: form.scope.as_deref(),
            resource: form.resource.as_deref(),
        })?;
        let client = authenticate(
            &state.clients,
            &presented(
                req,
                form.client_id.as_deref(),
                form.client_secret.as_deref(),
            ),
        )
        .await?;
        limit_client(&state, &client).await?;
        let ctx = GrantContext {
            state: &state,
            client: &client,
            origin: &origin,
        };
        grants::handle(ctx, request)
            .await
            .map(|t| TokenOk::Ok(Json(t)))
    }

    /// Revocation endpoint (RFC 7009) for refresh and access tokens
    ///
    /// Revoking a refresh token ends the whole sign-in (every refresh token of its family, and
    /// its access tokens). Revoking an access token puts it on the deny list until it expires.
    /// Unknown or foreign tokens answer 200 and change nothing.
    #[oai(path = "/oauth/revoke", method = "post", operation_id = "revoke")]
    async fn revoke(
        &self,
        state: Data<&AppState>,
        req: &Request,
        form: Form<TokenHintForm>,
    ) -> Result<RevokeResponse, OAuthError> {
        let (client, token) = form.0.authenticate(&state, req).await?;
        let token = token.as_str();
        let origin = origin(req);
        let record = |kind: &'static str, actor: Option<String>, sid: Option<String>| {
            let mut event = Event::new(EventType::TokenRevoked, Outcome::Success)
                .client(&client.client_id)
                .details(json!({"token_type": kind, "sid": sid}));
            if let Some(actor) = actor {
                event = event.actor(actor);
            }
            event
        };

        // Access tokens are JWTs; anything else is looked up as a refresh token.
        if let Ok(claims) = state.tokens.decode_access(token) {
            if claims.client_id == client.client_id {
                state
                    .tokens
                    .revoke_access(&claims)
                    .await
                    .map_err(|e| OAuthError::internal(&e))?;
                let actor = claims.is_user_token().then(|| claims.sub.clone());
                state
                    .audit
                    .record(&origin, record("access_token", actor, claims.sid.clone()))
                    .await;
            }
            return Ok(RevokeResponse::Ok);
        }
        let found = state
            .refresh
            .inspect(token)
            .await
            .map_err(|e| OAuthError::internal(&e))?;
        if let Some((info, _)) = found
            && info.client_id == client.client_id
        {
            state
                .sign_ins
                .end(&info.family_id, "revoked_by_client")
                .await
                .map_err(|e| OAuthError::internal(&e))?;
            state
                .audit
                .record(
                    &origin,
                    record(
                        "refresh_token",
                        Some(info.user_id.clone()),
                        Some(info.family_id.clone()),
                    ),
                )
                .await;
        }
        Ok(RevokeResponse::Ok)
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
        state: Data<&AppState>,
        req: &Request,
        form: Form<TokenHintForm>,
    ) -> Result<IntrospectOk, OAuthError> {
        let (client, token) = form.0.authenticate(&state, req).await?;
        require_confidential(&client)?;
        let token = token.as_str();
        match state.tokens.validate_access(token).await {
            // A token asked for another resource (RFC 8707) is active only for a client that
            // may itself ask tokens for that resource, i.e. that resource's server.
            Ok(claims)
                if claims.aud == state.tokens.audience || client.allows_audience(&claims.aud) =>
            {
                return Ok(IntrospectOk::Ok(Json(active_access(claims))));
            }
            Ok(_) => return Ok(IntrospectOk::Ok(Json(IntrospectionResponse::default()))),
            Err(TokenInvalid::Store(e)) => return Err(OAuthError::internal(&e)),
            Err(_) if looks_like_jwt(token) => {
                return Ok(IntrospectOk::Ok(Json(IntrospectionResponse::default())));
            }
            Err(_) => {}
        }
        let found = state
            .refresh
            .inspect(token)
            .await
            .map_err(|e| OAuthError::internal(&e))?;
        Ok(IntrospectOk::Ok(Json(match found {
            Some((info, true)) => IntrospectionResponse {
                active: true,
                scope: Some(info.scope),
                client_id: Some(info.client_id),
                token_type: Some("refresh_token".into()),
                exp: Some(info.expires_at),
                iat: Some(info.issued_at),
                sub: Some(info.user_id),
                iss: Some(state.tokens.issuer.clone()),
                ..Default::default()
            },
            _ => IntrospectionResponse::default(),
        })))
    }

    /// UserInfo endpoint (OpenID Connect Core §5.3)
    ///
    /// Needs an access token with `openid`; `profile` adds the username and name, `email` the
    /// email address.
    #[oai(path = "/oauth/userinfo", method = "get", operation_id = "userinfo")]
    async fn userinfo(
        &self,
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::OPENID")] auth: Require<OpenId>,
    ) -> Result<UserInfoOk, ApiError> {
        let user_id = auth.user_id()?;
        let user = state.users.get(user_id).await.map_err(|e| match e {
            crate::users::UserError::NotFound => {
                ApiError::invalid_token("the user no longer exists")
            }
            other => ApiError::internal(&other),
        })?;
        if user.disabled {
            return Err(ApiError::invalid_token("the account is disabled"));
        }
        let profile = auth.claims.has_scope("profile");
        let email = auth.claims.has_scope("email");
        Ok(UserInfoOk::Ok(Json(UserInfo {
            sub: user.id,
            preferred_username: profile.then_some(user.username),
            name: if profile { user.name } else { None },
            email: email.then_some(user.email),
            email_verified: email.then_some(false),
        })))
    }
}

impl TokenHintForm {
    /// Authenticates the client and takes the required `token` parameter.
    async fn authenticate(
        self,
        state: &AppState,
        req: &Request,
    ) -> Result<(std::sync::Arc<Client>, String), OAuthError> {
        let client = authenticate(
            &state.clients,
            &presented(
                req,
                self.client_id.as_deref(),
                self.client_secret.as_deref(),
            ),
        )
        .await?;
        limit_client(state, &client).await?;
        match self.token {
            Some(t) if !t.is_empty() => Ok((client, t)),
            _ => Err(OAuthError::invalid_request(
                "missing required parameter `token`",
            )),
        }
    }
}

/// Counts a request against an authenticated client's budget. Public clients are not counted:
/// their id is no secret and one public client serves every user of an app, so anyone could
/// spend its budget; their traffic is limited per IP and per account instead.
async fn limit_client(state: &AppState, client: &Client) -> Result<(), OAuthError> {
    if client.is_public() {
        return Ok(());
    }
    state
        .limits
        .check(LimitClass::Client, &client.client_id)
        .await
        .map_err(OAuthError::too_many)
}

fn require_confidential(client: &Client) -> Result<(), OAuthError> {
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "introspection is only for confidential clients",
        ));
    }
    Ok(())
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
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
