//! Resource owner password credentials grant (RFC 6749 §4.3).
//!
//! Unknown users, wrong passwords and disabled accounts get the same `invalid_grant` after the
//! same bcrypt work (see `users::PasswordHasher`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{GrantContext, TokenResponse, permitted_scopes, user_tokens};
use crate::audit::{Event, EventType, Outcome};
use crate::clients::GrantType;
use crate::domain::Scope;
use crate::oauth::error::OAuthError;
use crate::oauth::scope::narrow;

pub async fn grant(
    ctx: &GrantContext<'_>,
    username: &str,
    password: &SecretString,
    requested: &Scope,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.state;
    let client_id = ctx.client.client_id.as_str();
    let user = state
        .users
        .authenticate(username, password.expose_secret())
        .await
        .map_err(|e| OAuthError::internal(&e))?;
    let Some(user) = user else {
        state
            .audit
            .record(
                ctx.origin,
                Event::new(EventType::SignIn, Outcome::Failure)
                    .client(client_id)
                    .details(json!({"grant_type": "password", "reason": "invalid_credentials"})),
            )
            .await;
        return Err(OAuthError::invalid_grant(
            "the username or password is incorrect",
        ));
    };

    let permitted = permitted_scopes(ctx, &user).await?;
    let granted = narrow(requested, &ctx.client.scopes, &permitted).ok_or_else(|| {
        OAuthError::invalid_scope(
            "none of the requested scopes may be granted to this client and user",
        )
    })?;

    let now = state.tokens.now();
    let refresh = if ctx.client.allows(GrantType::RefreshToken) {
        Some(
            state
                .refresh
                .start(&user.id, client_id, &granted.to_string())
                .await
                .map_err(|e| OAuthError::internal(&e))?,
        )
    } else {
        None
    };
    let sid = match &refresh {
        Some(r) => r.family_id.clone(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let response = user_tokens(ctx, &user, &granted, &sid, now, refresh.map(|r| r.token)).await?;
    state
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::SignIn, Outcome::Success)
                .actor(&user.id)
                .client(client_id)
                .details(json!({"grant_type": "password", "sid": sid, "scope": response.scope})),
        )
        .await;
    Ok(response)
}
