//! Resource owner password credentials grant (RFC 6749 §4.3).
//!
//! Unknown users, wrong passwords, disabled and locked accounts get the same `invalid_grant`
//! after the same bcrypt work (see `users::PasswordHasher` and `abuse::Lockout`). Sign-ins
//! are rate-limited and counted for lockout per account (not per name as typed), before the
//! password is checked; when every bcrypt slot and the queue are busy, the answer is an
//! immediate 503 with `Retry-After`.
//!
//! A user with MFA on gets `400 mfa_required` with an `mfa_token` instead of tokens once the
//! password is right; the sign-in completes with the `mfa-otp` grant (its own module, `mfa_otp`).

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{
    GrantContext, Grants, SignInFacts, TokenResponse, audience_for, permitted_scopes, user_tokens,
};
use crate::abuse::{LimitClass, LockoutState};
use crate::audit::{Event, EventType, Origin, Outcome};
use crate::clients::GrantType;
use crate::domain::{Resource, Scope};
use crate::mfa::challenges::ChallengePurpose;
use crate::oauth::error::MfaToken;
use crate::oauth::error::OAuthError;
use crate::oauth::scope::narrow;
use crate::signins::{NewSignIn, SignInError, SignInKind, SignIns};
use crate::users::{HashError, User, UserError};

pub async fn grant(
    ctx: &GrantContext<'_>,
    username: &str,
    password: &SecretString,
    requested: &Scope,
    resource: Option<&Resource>,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client_id = ctx.client.client_id.as_str();
    let verified = check_credentials(
        state,
        ctx.origin,
        Some(client_id),
        "password",
        username,
        password,
    )
    .await?;
    if verified.second_factor {
        // Scope and audience are checked now, so the second step fails only on its code.
        narrowed(ctx, &verified.user, requested).await?;
        audience_for(ctx, resource)?;
        let token = state
            .mfa
            .challenge(
                ChallengePurpose::Grant,
                &verified.user.id,
                client_id,
                &requested.to_string(),
                resource.map(Resource::as_str),
            )
            .await
            .map_err(|e| OAuthError::internal(&e))?;
        state
            .audit
            .record(
                ctx.origin,
                Event::new(EventType::MfaRequired, Outcome::Success)
                    .actor(&verified.user.id)
                    .client(client_id)
                    .details(json!({"method": "password"})),
            )
            .await;
        return Err(OAuthError::MfaRequired(MfaToken(
            token.expose_secret().to_string(),
        )));
    }
    issue(ctx, &verified.user, requested, resource, &["pwd"]).await
}

/// The scope granted to `user` for `requested` at this client.
async fn narrowed(
    ctx: &GrantContext<'_>,
    user: &User,
    requested: &Scope,
) -> Result<Scope, OAuthError> {
    let permitted = permitted_scopes(ctx, user).await?;
    let client = ctx.client;
    narrow(
        requested,
        &client.default_scopes,
        &client.scopes,
        &permitted,
    )
    .ok_or_else(|| {
        OAuthError::invalid_scope(if requested.is_empty() {
            "no scope was requested and none of the client's default scopes may be granted"
        } else {
            "none of the requested scopes may be granted to this client and user"
        })
    })
}

/// Issues the tokens of a password sign-in (authenticated by `amr`) and records the sign-in.
pub(super) async fn issue(
    ctx: &GrantContext<'_>,
    user: &User,
    requested: &Scope,
    resource: Option<&Resource>,
    amr: &[&str],
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client = ctx.client;
    let client_id = client.client_id.as_str();
    let granted = narrowed(ctx, user, requested).await?;
    let audience = audience_for(ctx, resource)?;

    // Every user token belongs to a recorded sign-in. The tokens are minted first, then the
    // sign-in is recorded only if the account is still enabled and its access unchanged since
    // it was read: anything that ends the user's access later also ends these tokens.
    let now = state.tokens.now();
    let sid = SignIns::new_id();
    let facts = SignInFacts {
        sid: &sid,
        session: None,
        auth_time: now,
        amr: amr.iter().map(|a| (*a).to_string()).collect(),
        nonce: None,
    };
    let mut response = user_tokens(ctx, user, &granted, &facts, audience.as_deref(), None).await?;
    let amr_text = amr.join(" ");
    let recorded = state
        .sign_ins
        .record(&NewSignIn {
            id: &sid,
            user_id: &user.id,
            access_version: user.access_version,
            client_id,
            scope: &response.scope,
            audience: audience.as_deref(),
            with_refresh_token: client.allows(GrantType::RefreshToken),
            kind: SignInKind::Password,
            session_id: None,
            auth_time: now,
            amr: &amr_text,
            ip: ctx.origin.ip.as_deref(),
            user_agent: ctx.origin.user_agent.as_deref(),
            expires_at: None,
            cookie_digest: None,
            code: None,
        })
        .await;
    match recorded {
        Ok(issued) => response.refresh_token = issued.map(|i| i.token),
        Err(SignInError::UserChanged) => {
            return Err(OAuthError::invalid_grant(
                "the username or password is incorrect",
            ));
        }
        Err(e) => return Err(OAuthError::internal(&e)),
    }
    state
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::SignIn, Outcome::Success)
                .actor(&user.id)
                .client(client_id)
                .details(json!({
                    "grant_type": "password", "sid": sid, "scope": response.scope, "amr": amr,
                })),
        )
        .await;
    Ok(response)
}

/// A user whose password was right.
#[derive(Debug)]
pub struct Verified {
    pub user: User,
    /// The user has MFA on: the sign-in is not complete (and the failed-attempt counts not
    /// forgiven) until a second factor is checked (`check_second_factor`).
    pub second_factor: bool,
}

/// Checks a username (or e-mail address) and password, as the password grant and the hosted
/// sign-in page both do: rate limit and lockout per account, bcrypt on the bounded pool, the
/// same answer (`invalid_grant`) and the same work for unknown users, wrong passwords, disabled
/// and locked accounts; failures audited with `method` (`password` or `browser`).
pub async fn check_credentials(
    state: &Grants,
    origin: &Origin,
    client_id: Option<&str>,
    method: &str,
    username: &str,
    password: &SecretString,
) -> Result<Verified, OAuthError> {
    let candidate = state
        .users
        .credentials(username)
        .await
        .map_err(|e| OAuthError::internal(&e))?;
    // Limits and lockout are keyed on the account, never on the name as typed, so a username
    // and the account's e-mail address share one budget. Unknown names go through the same
    // steps under a subject of their own, so a failed sign-in costs the same store round trips
    // whether or not the account exists.
    let subject = candidate.as_ref().map_or_else(
        || format!("unknown:{}", username.to_lowercase()),
        |c| c.user_id.clone(),
    );
    state
        .limits
        .check(LimitClass::Login, &subject)
        .await
        .map_err(OAuthError::too_many)?;
    // Counted before the password is checked, so concurrent guesses cannot all pass a lock
    // check made before any of them failed; only attempts within budget are checked. Lock
    // state that cannot be read (store down) fails closed.
    let attempt = state
        .lockout
        .attempt(&subject, origin.ip.as_deref())
        .await
        .map_err(|e| OAuthError::internal(&e))?;
    let checked = attempt.may_verify();
    let hash = candidate
        .as_ref()
        .filter(|_| checked)
        .map(|c| c.password_hash.as_str());
    let verified = match state
        .users
        .verify_password(password.expose_secret(), hash)
        .await
    {
        Ok(v) => v,
        Err(UserError::Hash(HashError::Busy)) => return Err(OAuthError::busy()),
        Err(e) => return Err(OAuthError::internal(&e)),
    };
    // The account as read with the hash: anything that ended its access since (a disabling,
    // a role removed, a password changed) moved its `access_version`, so recording the
    // sign-in will refuse it.
    let user = match &candidate {
        Some(c) if verified && !c.disabled => Some(c.user.clone()),
        _ => None,
    };
    // An address not yet confirmed, where confirmation is required: the same answer as a
    // wrong password (it does not count toward the lockout: the password was right).
    let unverified =
        state.require_verified_email && user.as_ref().is_some_and(|u| !u.email_verified);
    let user = user.filter(|_| !unverified);
    let Some(user) = user else {
        // `invalid_credentials`: the password was checked (wrong, unknown user or disabled
        // account); `locked`: refused unchecked (account locked or address blocked for it).
        let reason = if unverified {
            "email_not_verified"
        } else if checked {
            "invalid_credentials"
        } else {
            "locked"
        };
        let details = json!({"method": method, "reason": reason});
        if let Some(c) = candidate.as_ref().filter(|_| !unverified) {
            record_lock(
                state,
                origin,
                client_id,
                &c.user_id,
                state.lockout.failed(&attempt),
            )
            .await;
        }
        let mut event = Event::new(EventType::SignIn, Outcome::Failure)
            .details(details)
            .attempted(username);
        if let Some(client_id) = client_id {
            event = event.client(client_id);
        }
        if let Some(c) = &candidate {
            event = event.actor(&c.user_id);
        }
        state.audit.record(origin, event).await;
        return Err(OAuthError::invalid_grant(
            "the username or password is incorrect",
        ));
    };
    // With MFA on, the password alone forgives nothing: otherwise whoever knows it could
    // reset the count before each few guesses of the second factor.
    // (Read with the account.)
    let second_factor = candidate.as_ref().is_some_and(|c| c.mfa_on);
    if !second_factor && let Err(e) = state.lockout.succeeded(&attempt).await {
        tracing::warn!(error = %e, "could not reset failed sign-in counts");
    }
    // A sign-in shows the user knows the password: a pending reset link is not needed.
    if candidate.as_ref().is_some_and(|c| c.reset_pending)
        && let Err(e) = state.users.forget_reset_links(&user.id).await
    {
        tracing::warn!(error = %e, "could not revoke pending password-reset links");
    }
    Ok(Verified {
        user,
        second_factor,
    })
}

/// Audits a lock that a failed sign-in caused.
pub(super) async fn record_lock(
    state: &Grants,
    origin: &Origin,
    client_id: Option<&str>,
    user_id: &str,
    outcome: LockoutState,
) {
    let (what, period) = match outcome {
        LockoutState::Counted => return,
        LockoutState::IpBlocked(p) => ("ip_blocked", p),
        LockoutState::AccountLocked(p) => ("account_locked", p),
    };
    let mut event = Event::new(EventType::AccountLocked, Outcome::Success)
        .actor(user_id)
        .details(json!({"lock": what, "seconds": period.as_secs()}));
    if let Some(client_id) = client_id {
        event = event.client(client_id);
    }
    state.audit.record(origin, event).await;
}
