//! Authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5), driven by
//! oxide-auth's access-token state machine: the client was authenticated before (see
//! `oauth::client_auth`); the code is read from the database (`oauth::authorize::codes`), the
//! machine checks it was issued to this client for this redirect URI and verifies the PKCE
//! verifier with its extension, the tokens are minted, and the code is claimed in the same
//! transaction that records the sign-in (so exactly one redemption wins, and a replay never
//! comes between the claim and the sign-in it must end).
//!
//! The tokens belong to a new sign-in of kind `code` inside the browser session the code was
//! issued in (its id is the access tokens' `sid`; the session's id is the ID token's `sid`), so
//! ending the session ends them. A second redemption of a code ends that sign-in (RFC 6749
//! §4.1.2) and is audited.

use std::borrow::Cow;

use oxide_auth::code_grant::accesstoken::{
    AccessToken, Authorization as ClientAuth, Input, Output, Request as OxideRequest,
};
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::{Extensions, Grant, Value};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{GrantContext, SignInFacts, TokenResponse, user_tokens};
use crate::audit::{Event, EventType, Outcome};
use crate::clients::GrantType;
use crate::domain::Scope;
use crate::oauth::authorize::request::pkce_for;
use crate::oauth::authorize::{CodeSlot, Found, Lookup};
use crate::oauth::error::OAuthError;
use crate::oauth::scope::narrow;
use crate::signins::{NewSignIn, SignInError, SignInKind};

/// oxide-auth's view of the token request.
struct CodeRequest<'a> {
    client_id: &'a str,
    code: &'a str,
    redirect_uri: &'a str,
    verifier: Option<&'a str>,
}

impl OxideRequest for CodeRequest<'_> {
    fn valid(&self) -> bool {
        true
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.code))
    }
    fn authorization(&self) -> ClientAuth<'_> {
        // Authenticated already (`oauth::client_auth`): the machine learns who from
        // `client_id` alone (naming it twice would be refused as duplicate credentials).
        ClientAuth::None
    }
    fn client_id(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.client_id))
    }
    fn redirect_uri(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.redirect_uri))
    }
    fn grant_type(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed("authorization_code"))
    }
    fn extension(&self, key: &str) -> Option<Cow<'_, str>> {
        (key == "code_verifier")
            .then_some(self.verifier)
            .flatten()
            .map(Cow::Borrowed)
    }
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn refused() -> OAuthError {
    OAuthError::invalid_grant("the authorization code is invalid, expired or already used")
}

pub async fn grant(
    ctx: &GrantContext<'_>,
    code: &SecretString,
    redirect_uri: &str,
    verifier: Option<&SecretString>,
) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client = ctx.client;
    let verifier = verifier.map(|v| v.expose_secret());
    if verifier.is_some_and(|v| !valid_verifier(v)) {
        return Err(OAuthError::invalid_grant(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
        ));
    }
    let request = CodeRequest {
        client_id: &client.client_id,
        code: code.expose_secret(),
        redirect_uri,
        verifier,
    };
    let pkce = pkce_for(client);
    let mut machine = AccessToken::new(&request);
    // The machine's input may borrow the request (not `Send`): each phase runs without an
    // `.await` in it, and the code is read between them.
    let presented = {
        let mut input = Input::None;
        loop {
            match machine.advance(input) {
                Output::Authenticate { .. } => input = Input::Authenticated,
                Output::Recover { code } => break code.to_string(),
                _ => return Err(refused()),
            }
        }
    };
    let found = match state
        .codes
        .find(&presented, &client.client_id)
        .await
        .map_err(|e| OAuthError::internal(&e))?
    {
        Lookup::Fresh(found) => found,
        Lookup::Replayed { family_id } => {
            replayed(ctx, family_id).await;
            return Err(refused());
        }
        Lookup::Invalid => return Err(refused()),
    };
    let grant = oxide_grant(&found, state.codes.now()).ok_or_else(refused)?;
    verify(&mut machine, grant, &presented, &pkce, verifier)?;
    // Exact match as well (the machine compares parsed URLs).
    if found.grant.redirect_uri != redirect_uri {
        return Err(refused());
    }
    issue(ctx, *found).await
}

/// Runs the rest of oxide-auth's machine on a code read from the database: client and
/// redirect-URI binding, expiry, and PKCE through its extension.
fn verify(
    machine: &mut AccessToken,
    grant: Grant,
    presented: &str,
    pkce: &Pkce,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    let mut slot = CodeSlot::with_claimed(grant);
    let recovered = oxide_auth::primitives::authorizer::Authorizer::extract(&mut slot, presented)
        .ok()
        .flatten()
        .map(Box::new);
    let mut input = Input::Recovered(recovered);
    loop {
        match machine.advance(input) {
            Output::Extend { extensions } => {
                let challenge = extensions.remove(pkce);
                // RFC 9700 §4.8.2: a verifier without a challenge is a downgrade attempt.
                if challenge.is_none() && verifier.is_some() {
                    return Err(OAuthError::invalid_grant(
                        "code_verifier was sent but the authorization request had no code_challenge",
                    ));
                }
                if pkce.verify(challenge, verifier.map(Cow::Borrowed)).is_err() {
                    return Err(OAuthError::invalid_grant(
                        "code_verifier is missing or does not match the code_challenge",
                    ));
                }
                input = Input::Extended {
                    access_extensions: Extensions::new(),
                };
            }
            Output::Issue { .. } | Output::Ok(_) => return Ok(()),
            _ => return Err(refused()),
        }
    }
}

/// The oxide-auth grant for a code read from the database, expiring when the code does by our
/// clock.
fn oxide_grant(found: &Found, now: i64) -> Option<Grant> {
    let left = found.expires_at.saturating_sub(now);
    if left <= 0 {
        return None;
    }
    let mut extensions = Extensions::new();
    if let Some(challenge) = &found.grant.challenge {
        extensions.set(&Pkce::required(), Value::private(Some(challenge.clone())));
    }
    Some(Grant {
        owner_id: found.grant.user_id.clone(),
        client_id: found.grant.client_id.clone(),
        scope: found.grant.scope.parse().ok()?,
        redirect_uri: found.grant.redirect_uri.parse().ok()?,
        until: chrono::Utc::now() + chrono::Duration::seconds(left),
        extensions,
    })
}

/// Mints the tokens of a checked code, then claims it and records its sign-in in the code's
/// browser session, in one transaction.
async fn issue(ctx: &GrantContext<'_>, found: Found) -> Result<TokenResponse, OAuthError> {
    let state = ctx.grants;
    let client = ctx.client;
    let code = &found.grant;
    let user = match found.user {
        Some(u) if !u.disabled => u,
        _ => return Err(refused()),
    };
    // What the user may grant now (roles may have changed since the consent).
    let permitted = super::permitted_scopes(ctx, &user).await?;
    let granted = narrow(
        &Scope::parse(&code.scope).unwrap_or_default(),
        &Scope::default(),
        &client.scopes,
        &permitted,
    )
    .ok_or_else(|| OAuthError::invalid_grant("none of the granted scopes may still be granted"))?;
    let facts = SignInFacts {
        sid: &found.family_id,
        session: Some(&code.session_id),
        auth_time: code.auth_time,
        amr: code.amr.clone(),
        nonce: code.nonce.as_deref(),
    };
    let mut response =
        user_tokens(ctx, &user, &granted, &facts, code.audience.as_deref(), None).await?;
    let amr = code.amr.join(" ");
    let recorded = state
        .sign_ins
        .record(&NewSignIn {
            id: &found.family_id,
            kind: SignInKind::Code,
            user_id: &user.id,
            access_version: user.access_version,
            client_id: &client.client_id,
            scope: &response.scope,
            audience: code.audience.as_deref(),
            with_refresh_token: client.allows(GrantType::RefreshToken),
            session_id: Some(&code.session_id),
            auth_time: code.auth_time,
            amr: &amr,
            ip: ctx.origin.ip.as_deref(),
            user_agent: ctx.origin.user_agent.as_deref(),
            expires_at: None,
            cookie_digest: None,
            code: Some(&found.digest),
        })
        .await;
    match recorded {
        Ok(issued) => response.refresh_token = issued.map(|i| i.token),
        Err(SignInError::UserChanged | SignInError::SessionEnded) => return Err(refused()),
        // A concurrent redemption claimed it first: this one is its replay.
        Err(SignInError::CodeTaken) => {
            if let Lookup::Replayed { family_id } = state
                .codes
                .replay(&found.digest)
                .await
                .map_err(|e| OAuthError::internal(&e))?
            {
                replayed(ctx, family_id).await;
            }
            return Err(refused());
        }
        Err(e) => return Err(OAuthError::internal(&e)),
    }
    state
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::SignIn, Outcome::Success)
                .actor(&user.id)
                .client(&client.client_id)
                .details(json!({
                    "grant_type": "authorization_code",
                    "sid": found.family_id,
                    "session": code.session_id,
                    "scope": response.scope,
                })),
        )
        .await;
    Ok(response)
}

/// A code presented again: end the sign-in its first redemption started, and audit it.
async fn replayed(ctx: &GrantContext<'_>, family_id: Option<String>) {
    let Some(family_id) = family_id else { return };
    if let Err(e) = ctx.grants.sign_ins.end(&family_id, "code_replayed").await {
        tracing::error!(error = %e, "could not end the sign-in of a replayed authorization code");
    }
    ctx.grants
        .audit
        .record(
            ctx.origin,
            Event::new(EventType::CodeReplayDetected, Outcome::Failure)
                .client(&ctx.client.client_id)
                .details(json!({"sid": family_id, "action": "sign_in_ended"})),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::valid_verifier;

    #[test]
    fn verifiers_follow_rfc_7636() {
        assert!(valid_verifier(&"a".repeat(43)));
        assert!(valid_verifier(&"a-._~".repeat(20)));
        assert!(!valid_verifier(&"a".repeat(42)));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
