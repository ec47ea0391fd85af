//! Refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! The new access token reflects the user's roles now, not at sign-in: a demoted or disabled
//! user cannot refresh their way back to old privileges.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{GrantContext, TokenResponse, permitted_scopes, user_tokens};
use crate::audit::{Event, EventType, Outcome};
use crate::domain::Scope;
use crate::oauth::error::OAuthError;
use crate::oauth::refresh::RefreshError;
use crate::users::UserError;

pub async fn grant(
    ctx: &GrantContext<'_>,
    presented: &SecretString,
    requested: &Scope,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.state;
    let client_id = ctx.client.client_id.as_str();
    let rotated = match state
        .refresh
        .rotate(presented.expose_secret(), client_id, requested)
        .await
    {
        Ok(r) => r,
        Err(RefreshError::Reused { family_id, user_id }) => {
            // Access tokens of the family stop working too.
            if let Err(e) = state.tokens.revoke_sign_in(&family_id).await {
                tracing::error!(error = %e, "could not deny-list the sign-in of a reused refresh token");
            }
            state
                .audit
                .record(
                    ctx.origin,
                    Event::new(EventType::RefreshReuseDetected, Outcome::Failure)
                        .actor(user_id)
                        .client(client_id)
                        .details(json!({"sid": family_id, "action": "family_revoked"})),
                )
                .await;
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
        Err(RefreshError::ScopeExceeded) => {
            return Err(OAuthError::invalid_scope(
                "the requested scope exceeds the scope originally granted",
            ));
        }
        Err(RefreshError::Invalid) => {
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
        Err(e) => return Err(OAuthError::internal(&e)),
    };

    let family_scope = Scope::parse(&rotated.scope).unwrap_or_default();
    let user = match state.users.get(&rotated.user_id).await {
        Ok(u) if !u.disabled => u,
        Ok(_) | Err(UserError::NotFound) => {
            let _ = state
                .refresh
                .revoke_family(&rotated.family_id, "user_disabled")
                .await;
            return Err(OAuthError::invalid_grant(
                "the refresh token is invalid, expired or revoked",
            ));
        }
        Err(e) => return Err(OAuthError::internal(&e)),
    };
    let permitted = permitted_scopes(ctx, &user).await?;
    let base = if requested.is_empty() {
        family_scope
    } else {
        requested.clone()
    };
    let granted = base.intersect(&permitted).intersect(&ctx.client.scopes);

    let response = user_tokens(
        ctx,
        &user,
        &granted,
        &rotated.family_id,
        rotated.auth_time,
        Some(rotated.token),
    )
    .await?;
    state
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::TokenIssued, Outcome::Success)
                .actor(&user.id)
                .client(client_id)
                .details(json!({"grant_type": "refresh_token", "sid": rotated.family_id, "scope": response.scope})),
        )
        .await;
    Ok(response)
}
