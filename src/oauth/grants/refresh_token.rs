//! Refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! The new access token reflects the user's roles now, not at sign-in: a demoted or disabled
//! user cannot refresh their way back to old privileges.
//!
//! The answer is minted before the rotation is committed (see `oauth::refresh`), and handed to
//! the rotation to keep, sealed, for the reuse window: a retry of the same token by the same
//! client within the window gets that same answer (audited as `token.refresh_replayed`), with
//! `expires_in` counted from the retry.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    GrantContext, SignInFacts, TokenResponse, audience_for, permitted_scopes, user_tokens,
};
use crate::audit::{Event, EventType, Outcome};
use crate::domain::{Resource, Scope};
use crate::oauth::error::OAuthError;
use crate::oauth::refresh::{Finished, Presented, RefreshError, Replayed};

const INVALID: &str = "the refresh token is invalid, expired or revoked";

/// The answer as kept for the reuse window (sealed; it carries the tokens).
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    access_token: String,
    /// `exp` of the access token, so a replay reports the lifetime left.
    access_expires_at: i64,
    refresh_token: String,
    scope: String,
    id_token: Option<String>,
}

pub async fn grant(
    ctx: &GrantContext<'_>,
    presented: &SecretString,
    requested: &Scope,
    resource: Option<&Resource>,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client_id = ctx.client.client_id.as_str();
    let pending = match state
        .refresh
        .begin(presented.expose_secret(), client_id, requested)
        .await
    {
        Ok(Presented::Rotate(p)) => p,
        Ok(Presented::Replay(r)) => return replay(ctx, r).await,
        Err(e) => return Err(refused(ctx, e).await),
    };

    let family_scope = Scope::parse(pending.scope()).unwrap_or_default();
    // The user and their current roles were read with the token.
    let user = match pending.user() {
        Some(u) if !u.disabled => u.clone(),
        _ => {
            if let Err(e) = state
                .sign_ins
                .end(pending.family_id(), "user_disabled")
                .await
            {
                tracing::warn!(error = %e, "could not end the sign-in of a disabled user");
            }
            return Err(OAuthError::invalid_grant(INVALID));
        }
    };
    let permitted = permitted_scopes(ctx, &user).await?;
    let base = if requested.is_empty() {
        family_scope
    } else {
        requested.clone()
    };
    let granted = base.intersect(&permitted).intersect(&ctx.client.scopes);

    // A resource named on the refresh must be allowed to the client; otherwise the tokens are
    // for the resource the sign-in asked for.
    let audience = match resource {
        Some(_) => audience_for(ctx, resource)?,
        None => pending.audience().map(str::to_string),
    };
    let response = user_tokens(
        ctx,
        &user,
        &granted,
        &SignInFacts {
            sid: pending.family_id(),
            session: pending.session_id(),
            auth_time: pending.auth_time(),
            amr: pending.amr(),
            nonce: None,
        },
        audience.as_deref(),
        Some(pending.successor().to_string()),
    )
    .await?;
    // The answer is kept only with a reuse window (strict rotation never replays).
    let sealed = if state.refresh.keeps_answers() {
        let stored = StoredAnswer {
            // `expires_in` was counted from this second.
            access_expires_at: state.tokens.now().saturating_add(response.expires_in),
            access_token: response.access_token.clone(),
            refresh_token: pending.successor().to_string(),
            scope: response.scope.clone(),
            id_token: response.id_token.clone(),
        };
        serde_json::to_vec(&stored).map_err(|e| OAuthError::internal(&e))?
    } else {
        Vec::new()
    };
    let family_id = pending.family_id().to_string();
    match state.refresh.finish(pending, &sealed).await {
        Ok(Finished::Rotated) => {}
        Ok(Finished::Replayed(r)) => return replay(ctx, r).await,
        Err(e) => return Err(refused(ctx, e).await),
    }
    state
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::TokenIssued, Outcome::Success)
                .actor(&user.id)
                .client(client_id)
                .details(json!({"grant_type": "refresh_token", "sid": family_id, "scope": response.scope})),
        )
        .await;
    Ok(response)
}

/// Answers a retry within the reuse window with what the rotation answered.
async fn replay(ctx: &GrantContext<'_>, replayed: Replayed) -> Result<TokenResponse, OAuthError> {
    let stored: StoredAnswer =
        serde_json::from_slice(&replayed.answer).map_err(|e| OAuthError::internal(&e))?;
    ctx.grants
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::RefreshReplayed, Outcome::Success)
                .actor(&replayed.user_id)
                .client(&ctx.client.client_id)
                .details(json!({"grant_type": "refresh_token", "sid": replayed.family_id, "scope": stored.scope})),
        )
        .await;
    Ok(TokenResponse {
        access_token: stored.access_token,
        token_type: "Bearer".into(),
        expires_in: stored
            .access_expires_at
            .saturating_sub(ctx.grants.tokens.now())
            .max(0),
        refresh_token: Some(stored.refresh_token),
        scope: stored.scope,
        id_token: stored.id_token,
    })
}

/// Maps a refused refresh to its OAuth error; reuse also ends the sign-in's access tokens and
/// is audited.
async fn refused(ctx: &GrantContext<'_>, error: RefreshError) -> OAuthError {
    match error {
        RefreshError::Reused { family_id, user_id } => {
            crate::metrics::refresh_reuse_detected();
            // The rotation revoked the family in the database; ending the sign-in through the
            // one place that ends sign-ins makes its access tokens stop working too.
            if let Err(e) = ctx.grants.sign_ins.end(&family_id, "reuse_detected").await {
                tracing::error!(error = %e, "could not end the sign-in of a reused refresh token");
            }
            ctx.grants
                .audit
                .record(
                    ctx.origin,
                    Event::new(EventType::RefreshReuseDetected, Outcome::Failure)
                        .actor(user_id)
                        .client(&ctx.client.client_id)
                        .details(json!({"sid": family_id, "action": "family_revoked"})),
                )
                .await;
            OAuthError::invalid_grant(INVALID)
        }
        RefreshError::ScopeExceeded => {
            OAuthError::invalid_scope("the requested scope exceeds the scope originally granted")
        }
        RefreshError::Invalid => OAuthError::invalid_grant(INVALID),
        e => OAuthError::internal(&e),
    }
}
