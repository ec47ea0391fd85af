//! The second step of a password sign-in with MFA, grant type
//! `urn:portcullis:params:oauth:grant-type:mfa-otp`: the `mfa_token` of the `mfa_required`
//! answer with a TOTP code (`otp`) or a recovery code (`recovery_code`). Allowed to every
//! client that has the password grant.
//!
//! The token must be live (five minutes), unused and this client's; a wrong code leaves it
//! usable a few more times and counts toward the account's lockout exactly like a wrong
//! password; the right code claims it once. The tokens then say `amr: ["pwd", "otp"]` or
//! `["pwd", "rcode"]`.

use secrecy::SecretString;
use serde_json::json;

use super::password::{issue, record_lock};
use super::{GrantContext, Grants, TokenResponse};
use crate::abuse::LimitClass;
use crate::audit::{Event, EventType, Origin, Outcome};
use crate::domain::{Resource, Scope};
use crate::mfa::challenges::ChallengePurpose;
use crate::mfa::{MfaError, SecondFactor};
use crate::oauth::error::OAuthError;
use crate::users::UserError;

/// The grant type of the second step.
pub const MFA_OTP_GRANT_TYPE: &str = "urn:portcullis:params:oauth:grant-type:mfa-otp";

const INVALID_TOKEN: &str = "the mfa_token is invalid, expired or already used";
const WRONG_CODE: &str = "the code is incorrect";

pub async fn grant(
    ctx: &GrantContext<'_>,
    mfa_token: &SecretString,
    factor: &SecondFactor,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client_id = ctx.client.client_id.as_str();
    let challenge = state
        .mfa
        .pending_challenge(ChallengePurpose::Grant, mfa_token, client_id)
        .await
        .map_err(|e| OAuthError::internal(&e))?
        .ok_or_else(|| OAuthError::invalid_grant(INVALID_TOKEN))?;
    let user = match state.users.get(&challenge.user_id).await {
        Ok(u) if !u.disabled => u,
        Ok(_) | Err(UserError::NotFound) => return Err(OAuthError::invalid_grant(INVALID_TOKEN)),
        Err(e) => return Err(OAuthError::internal(&e)),
    };
    if let Err(e) = check_second_factor(
        state,
        ctx.origin,
        Some(client_id),
        "password",
        &user.id,
        factor,
    )
    .await
    {
        if let Err(e) = state.mfa.challenge_failed(&challenge).await {
            tracing::warn!(error = %e, "could not count a wrong code against its mfa_token");
        }
        return Err(e);
    }
    if !state
        .mfa
        .claim_challenge(&challenge)
        .await
        .map_err(|e| OAuthError::internal(&e))?
    {
        return Err(OAuthError::invalid_grant(INVALID_TOKEN));
    }
    let requested = Scope::parse(&challenge.scope).unwrap_or_default();
    let resource = challenge
        .resource
        .as_deref()
        .map(Resource::parse)
        .transpose()
        .map_err(|e| OAuthError::invalid_target(e.reason))?;
    let response = issue(
        ctx,
        &user,
        &requested,
        resource.as_ref(),
        &["pwd", factor.amr()],
    )
    .await?;
    Ok(response)
}

/// Checks the second factor of `user_id`, as the `mfa-otp` grant and the hosted sign-in page
/// both do: the account's sign-in rate limit, then an attempt counted for lockout before the
/// code is checked (a wrong code counts exactly like a wrong password; a locked account's code
/// is not checked), the code used up when right. Failures answer `invalid_grant` and are
/// audited with `method`; a recovery code used is audited.
pub async fn check_second_factor(
    state: &Grants,
    origin: &Origin,
    client_id: Option<&str>,
    method: &str,
    user_id: &str,
    factor: &SecondFactor,
) -> Result<(), OAuthError> {
    state
        .limits
        .check(LimitClass::Login, user_id)
        .await
        .map_err(OAuthError::too_many)?;
    let attempt = state
        .lockout
        .attempt(user_id, origin.ip.as_deref())
        .await
        .map_err(|e| OAuthError::internal(&e))?;
    let checked = attempt.may_verify();
    let right = if checked {
        match state.mfa.verify(user_id, factor).await {
            Ok(right) => right,
            Err(MfaError::NotOn) => false,
            Err(e) => return Err(OAuthError::internal(&e)),
        }
    } else {
        false
    };
    let with_client = |mut event: Event| {
        if let Some(client_id) = client_id {
            event = event.client(client_id);
        }
        event
    };
    if !right {
        record_lock(
            state,
            origin,
            client_id,
            user_id,
            state.lockout.failed(&attempt),
        )
        .await;
        let reason = if checked {
            "invalid_second_factor"
        } else {
            "locked"
        };
        state
            .audit
            .record(
                origin,
                with_client(
                    Event::new(EventType::SignIn, Outcome::Failure)
                        .actor(user_id)
                        .details(
                            json!({"method": method, "factor": factor.amr(), "reason": reason}),
                        ),
                ),
            )
            .await;
        return Err(OAuthError::invalid_grant(WRONG_CODE));
    }
    if let Err(e) = state.lockout.succeeded(&attempt).await {
        tracing::warn!(error = %e, "could not reset failed sign-in counts");
    }
    if matches!(factor, SecondFactor::RecoveryCode(_)) {
        let left = state.mfa.recovery_codes_left(user_id).await.unwrap_or(0);
        state
            .audit
            .record(
                origin,
                with_client(
                    Event::new(EventType::MfaRecoveryCodeUsed, Outcome::Success)
                        .actor(user_id)
                        .details(json!({"method": method, "recovery_codes_left": left})),
                ),
            )
            .await;
    }
    Ok(())
}
