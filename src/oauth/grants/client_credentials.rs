//! Client credentials grant (RFC 6749 §4.4): a confidential client acting for itself. The
//! token's `sub` is the client id (RFC 9068 §2.2) and its scope is what the client is allowed,
//! never the OpenID identity scopes (there is no user).

use super::{GrantContext, TokenResponse};
use crate::domain::Scope;
use crate::oauth::error::OAuthError;
use crate::oauth::scope::{identity_scopes, narrow};

pub async fn grant(ctx: &GrantContext<'_>, requested: &Scope) -> Result<TokenResponse, OAuthError> {
    let client = ctx.client;
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use the client_credentials grant",
        ));
    }
    let permitted = client.scopes.minus(&identity_scopes());
    let granted = narrow(requested, &permitted, &permitted).ok_or_else(|| {
        OAuthError::invalid_scope("none of the requested scopes may be granted to this client")
    })?;
    let scope = granted.to_string();
    let access = ctx
        .state
        .tokens
        .mint_access(
            &client.client_id,
            &client.client_id,
            &scope,
            Vec::new(),
            None,
            None,
        )
        .map_err(|e| OAuthError::internal(&e))?;
    // Issuance by client_credentials is not audited per token: it is machine-to-machine, high
    // volume, and the log would drown the events that matter. Failures are visible as
    // `invalid_client` in the request log.
    Ok(TokenResponse {
        access_token: access.token,
        token_type: "Bearer".into(),
        expires_in: ctx.state.tokens.access_ttl_secs(),
        refresh_token: None,
        scope,
        id_token: None,
    })
}
