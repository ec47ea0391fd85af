//! The OAuth endpoints' use cases: the token endpoint (client authentication, per-address and
//! per-client limits, then the grant), revocation (RFC 7009), introspection (RFC 7662) and
//! userinfo (OIDC Core §5.3).

use std::sync::Arc;

use serde_json::json;

use super::error::OpError;
use crate::abuse::{LimitClass, RateLimiter};
use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::clients::{Client, ClientService};
use crate::oauth::client_auth::{PresentedCredentials, authenticate};
use crate::oauth::error::OAuthError;
use crate::oauth::grants::{self, GrantContext, Grants, RawTokenForm, TokenRequest, TokenResponse};
use crate::oauth::refresh::{RefreshInfo, RefreshService};
use crate::oauth::tokens::{AccessClaims, TokenInvalid, TokenService};
use crate::signins::SignIns;
use crate::users::{User, UserError, UserService};

/// What introspection found.
#[derive(Debug)]
pub enum Introspected {
    /// Expired, revoked, unknown, malformed, or for a resource the asking client is not.
    Inactive,
    Access(AccessClaims),
    Refresh(RefreshInfo),
}

#[derive(Clone)]
pub struct TokenOps {
    clients: ClientService,
    limits: RateLimiter,
    grants: Grants,
    tokens: TokenService,
    refresh: RefreshService,
    sign_ins: SignIns,
    users: UserService,
    audit: Audit,
    /// Whether the grant metrics carry the client id (`PORTCULLIS_METRICS_CLIENT_LABELS`).
    client_labels: bool,
}

impl TokenOps {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clients: ClientService,
        limits: RateLimiter,
        grants: Grants,
        tokens: TokenService,
        refresh: RefreshService,
        sign_ins: SignIns,
        users: UserService,
        audit: Audit,
    ) -> Self {
        Self {
            clients,
            limits,
            grants,
            tokens,
            refresh,
            sign_ins,
            users,
            audit,
            client_labels: false,
        }
    }

    /// Lets the grant metrics carry the authenticated client's id.
    pub fn with_client_labels(mut self, on: bool) -> Self {
        self.client_labels = on;
        self
    }

    /// Identifies and authenticates the client, and counts the request against a confidential
    /// client's budget. Public clients are not counted: their id is no secret and one public
    /// client serves every user of an app, so anyone could spend its budget; their traffic is
    /// limited per address and per account instead.
    pub async fn authenticate(
        &self,
        presented: &PresentedCredentials<'_>,
    ) -> Result<Arc<Client>, OAuthError> {
        let client = authenticate(&self.clients, presented).await?;
        if !client.is_public() {
            self.limits
                .check(LimitClass::Client, &client.client_id)
                .await
                .map_err(OAuthError::too_many)?;
        }
        Ok(client)
    }

    /// The token endpoint: the address's budget, the request parsed, the client, the grant.
    /// Every answer is counted in the grant metrics, by grant type and, for a refusal, its
    /// reason.
    pub async fn token(
        &self,
        origin: &Origin,
        presented: &PresentedCredentials<'_>,
        raw: &RawTokenForm<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut client_id = None;
        let result = self.grant(origin, presented, raw, &mut client_id).await;
        let grant_type = crate::metrics::grant_type_label(raw.grant_type);
        let client = client_id.as_deref().filter(|_| self.client_labels);
        match &result {
            Ok(_) => crate::metrics::grant_issued(grant_type, client),
            Err(e) => crate::metrics::grant_refused(grant_type, e.reason(), client),
        }
        result
    }

    /// [`Self::token`]'s work; `client_id` is set once the client is authenticated.
    async fn grant(
        &self,
        origin: &Origin,
        presented: &PresentedCredentials<'_>,
        raw: &RawTokenForm<'_>,
        client_id: &mut Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        // The address's budget first, before anything reaches the database (authenticating
        // an unknown client id reads it), so one address cannot send lookups without limit.
        // The client's budget is counted after authentication, in a store call of its own.
        if let Some(ip) = &origin.ip {
            self.limits
                .check(LimitClass::TokenIp, ip)
                .await
                .map_err(OAuthError::too_many)?;
        }
        let request = TokenRequest::parse(raw)?;
        let client = self.authenticate(presented).await?;
        *client_id = Some(client.client_id.clone());
        let response = grants::handle(
            GrantContext {
                grants: &self.grants,
                client: &client,
                origin,
            },
            request,
        )
        .await?;
        Ok(response)
    }

    /// RFC 7009: revoking a refresh token ends its whole sign-in; revoking an access token
    /// deny-lists it until it expires. Tokens of another client, and unknown ones, are left
    /// alone (the answer is the same).
    pub async fn revoke(
        &self,
        client: &Client,
        token: &str,
        origin: &Origin,
    ) -> Result<(), OAuthError> {
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
        if let Ok(claims) = self.tokens.decode_access(token) {
            if claims.client_id == client.client_id {
                self.tokens
                    .revoke_access(&claims)
                    .await
                    .map_err(|e| OAuthError::internal(&e))?;
                let actor = claims.user_id().map(str::to_string);
                self.audit
                    .record(origin, record("access_token", actor, claims.sid.clone()))
                    .await;
            }
            return Ok(());
        }
        let found = self
            .refresh
            .inspect(token)
            .await
            .map_err(|e| OAuthError::internal(&e))?;
        if let Some((info, _)) = found
            && info.client_id == client.client_id
        {
            self.sign_ins
                .end(&info.family_id, "revoked_by_client")
                .await
                .map_err(|e| OAuthError::internal(&e))?;
            self.audit
                .record(
                    origin,
                    record(
                        "refresh_token",
                        Some(info.user_id.clone()),
                        Some(info.family_id.clone()),
                    ),
                )
                .await;
        }
        Ok(())
    }

    /// RFC 7662, for confidential clients. A token asked for another resource (RFC 8707) is
    /// active only for a client that may itself ask tokens for that resource, i.e. that
    /// resource's server.
    pub async fn introspect(
        &self,
        client: &Client,
        token: &str,
    ) -> Result<Introspected, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::invalid_client(
                "introspection is only for confidential clients",
            ));
        }
        match self.tokens.validate_access(token).await {
            Ok(claims)
                if claims.aud == self.tokens.audience || client.allows_audience(&claims.aud) =>
            {
                return Ok(Introspected::Access(claims));
            }
            Ok(_) => return Ok(Introspected::Inactive),
            Err(TokenInvalid::Store(e)) => return Err(OAuthError::internal(&e)),
            Err(_) if token.split('.').count() == 3 => return Ok(Introspected::Inactive),
            Err(_) => {}
        }
        let found = self
            .refresh
            .inspect(token)
            .await
            .map_err(|e| OAuthError::internal(&e))?;
        Ok(match found {
            Some((info, true)) => Introspected::Refresh(info),
            _ => Introspected::Inactive,
        })
    }

    /// The user a userinfo request is about; `NotFound` when the user is gone or disabled
    /// (the token is then no good).
    pub async fn userinfo(&self, claims: &AccessClaims) -> Result<User, OpError> {
        let user_id = claims
            .user_id()
            .ok_or_else(|| OpError::NotFound("no user: a client token".into()))?;
        match self.users.get(user_id).await {
            Ok(user) if !user.disabled => Ok(user),
            Ok(_) | Err(UserError::NotFound) => Err(OpError::NotFound(
                "the user no longer exists or is disabled".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The issuer (`iss` of every token).
    pub fn issuer(&self) -> &str {
        &self.tokens.issuer
    }
}
