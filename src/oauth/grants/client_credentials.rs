//! Client credentials grant (RFC 6749 §4.4): a confidential client acting for itself. The
//! token's `sub` is the client id (RFC 9068 §2.2); its scope is what was asked for (or the
//! client's default scopes) within what the client is allowed, never the OpenID identity
//! scopes (there is no user); its audience the `resource` asked for (RFC 8707).

use super::{GrantContext, TokenResponse, audience_for};
use crate::domain::{Resource, Scope};
use crate::oauth::error::OAuthError;
use crate::oauth::scope::{identity_scopes, narrow};

pub async fn grant(
    ctx: &GrantContext<'_>,
    requested: &Scope,
    resource: Option<&Resource>,
) -> Result<TokenResponse, OAuthError> {
    let client = ctx.client;
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use the client_credentials grant",
        ));
    }
    let permitted = client.scopes.minus(&identity_scopes());
    let defaults = client.default_scopes.minus(&identity_scopes());
    let granted = narrow(requested, &defaults, &permitted, &permitted).ok_or_else(|| {
        OAuthError::invalid_scope(if requested.is_empty() {
            "no scope was requested and the client has no default scope for this grant"
        } else {
            "none of the requested scopes may be granted to this client"
        })
    })?;
    let audience = audience_for(ctx, resource)?;
    let scope = granted.to_string();
    let access = ctx
        .grants
        .tokens
        .mint_access(
            &client.client_id,
            &client.client_id,
            audience.as_deref(),
            &scope,
            Vec::new(),
            None,
            None,
            Vec::new(),
            false,
        )
        .map_err(|e| OAuthError::internal(&e))?;
    // Issuance by client_credentials is not audited per token: it is machine-to-machine, high
    // volume, and the log would drown the events that matter. Failures are visible as
    // `invalid_client` in the request log.
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer".into(),
        expires_in: ctx.grants.tokens.access_ttl_secs(),
        refresh_token: None,
        scope,
        id_token: None,
    })
}
