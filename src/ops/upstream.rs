//! Social sign-in: administering upstream providers (`IdpAdmin`, permission `users:admin`)
//! and signing in through them (`UpstreamSignIn`): the round trip (state, nonce and PKCE;
//! see `upstream`), then the account. An identity is found by (provider, upstream subject)
//! only. A first sign-in whose verified address belongs to an existing account is parked
//! until the user proves that account (password, and MFA when it is on); an unverified
//! address never matches. Otherwise a new account is made when the provider allows it, with
//! the default role, the address verified only if the upstream says so (otherwise mailed a
//! confirmation link, as at registration), and no password. With
//! `PORTCULLIS_REQUIRE_VERIFIED_EMAIL`, an account whose address is unconfirmed does not sign
//! in this way either.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::browser::{BrowserSignIn, SignInFailure, SignInStep};
use super::caller::Caller;
use super::error::OpError;
use super::recovery::Recovery;
use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::domain::{Email, Username};
use crate::mfa::SecondFactor;
use crate::oauth::grants::{check_credentials, check_second_factor};
use crate::upstream::{
    Identity, Login, Provider, ProviderInput, UpstreamStoreError, UpstreamUser, Upstreams,
};
use crate::users::{UserError, UserService};

impl From<UpstreamStoreError> for OpError {
    fn from(e: UpstreamStoreError) -> Self {
        match e {
            UpstreamStoreError::Invalid(i) => Self::Invalid(i),
            UpstreamStoreError::NotFound => Self::NotFound(e.to_string()),
            UpstreamStoreError::Duplicate => Self::Conflict(e.to_string()),
            other => Self::internal(&other),
        }
    }
}

/// Administering upstream providers.
#[derive(Clone)]
pub struct IdpAdmin {
    upstreams: Upstreams,
    audit: Audit,
}

impl IdpAdmin {
    pub fn new(upstreams: Upstreams, audit: Audit) -> Self {
        Self { upstreams, audit }
    }

    pub async fn create(&self, caller: &Caller, input: ProviderInput) -> Result<Provider, OpError> {
        let provider = self.upstreams.create(input).await?;
        caller
            .record(
                &self.audit,
                EventType::IdentityProviderCreated,
                json!({"provider_id": provider.id, "kind": provider.kind.as_str(),
                       "allow_signup": provider.allow_signup}),
            )
            .await;
        Ok(provider)
    }

    pub async fn list(&self) -> Result<Vec<Provider>, OpError> {
        Ok(self.upstreams.list().await?)
    }

    pub async fn get(&self, id: &str) -> Result<Provider, OpError> {
        Ok(self.upstreams.get(id).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        input: ProviderInput,
    ) -> Result<Provider, OpError> {
        let secret_changed = input.client_secret.is_some();
        let provider = self.upstreams.update(id, input).await?;
        caller
            .record(
                &self.audit,
                EventType::IdentityProviderUpdated,
                json!({"provider_id": provider.id, "enabled": provider.enabled,
                       "allow_signup": provider.allow_signup, "secret_changed": secret_changed}),
            )
            .await;
        Ok(provider)
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<(), OpError> {
        if !self.upstreams.delete(id).await? {
            return Err(UpstreamStoreError::NotFound.into());
        }
        caller
            .record(
                &self.audit,
                EventType::IdentityProviderDeleted,
                json!({"provider_id": id}),
            )
            .await;
        Ok(())
    }
}

/// Why a sign-in through an upstream ended (each a clear page; nothing half-created).
#[derive(Debug)]
pub enum UpstreamFailure {
    UnknownProvider,
    /// The `state` is unknown, used, expired or from another browser.
    Expired,
    /// The user said no at the upstream (or it answered with an error).
    Denied(String),
    /// The upstream could not be reached or its answer was not valid.
    Upstream(String),
    /// No account matches and the provider may not create one.
    NoAccount,
    /// The linked account is disabled.
    Disabled,
    /// The linked account's address is not confirmed, and a confirmed address is required
    /// to sign in (`PORTCULLIS_REQUIRE_VERIFIED_EMAIL`).
    Unconfirmed,
    /// The address is an existing account's, but the upstream does not vouch for it.
    AccountExists,
    /// The upstream shared no address, so no account can be made.
    NoEmail,
    SignIn(SignInFailure),
}

/// What a verified upstream answer leads to.
pub enum UpstreamStep {
    /// Signed in, or the second step of a user with MFA on.
    SignedIn(SignInStep),
    /// A new account was made, but its address (which the upstream does not vouch for) must
    /// be confirmed from the mailed link before it signs in.
    ConfirmAddress,
    /// The address belongs to this existing account: prove it on the link page.
    ProveAccount {
        link_token: String,
        username: String,
    },
}

/// What the link page shows.
pub struct ParkedView {
    pub return_to: String,
    pub provider: String,
    pub username: String,
    pub needs_code: bool,
}

/// The upstream answered and its answer checked out.
pub struct Arrived {
    pub provider: Provider,
    pub user: UpstreamUser,
    pub login: Login,
}

impl Arrived {
    /// The authorization request the round trip was for.
    pub fn return_to(&self) -> &str {
        &self.login.row.return_to
    }
}

/// Signing in through upstream providers, and the user's own links.
#[derive(Clone)]
pub struct UpstreamSignIn {
    upstreams: Upstreams,
    users: UserService,
    browser: BrowserSignIn,
    audit: Audit,
    db: sea_orm::DatabaseConnection,
    issuer: String,
    /// Mails a new account's verification link; knows whether a confirmed address is
    /// required to sign in.
    recovery: Recovery,
}

fn internal(e: &dyn std::fmt::Display) -> UpstreamFailure {
    tracing::error!(error = %e, "social sign-in failed inside the server");
    UpstreamFailure::SignIn(SignInFailure::Internal)
}

impl UpstreamSignIn {
    pub fn new(
        upstreams: Upstreams,
        users: UserService,
        browser: BrowserSignIn,
        audit: Audit,
        db: sea_orm::DatabaseConnection,
        issuer: String,
        recovery: Recovery,
    ) -> Self {
        Self {
            upstreams,
            users,
            browser,
            audit,
            db,
            issuer,
            recovery,
        }
    }

    /// The redirect URI to register at the upstream for provider `id`.
    pub fn callback_url(&self, id: &str) -> String {
        format!(
            "{}/ui/upstream/{id}/callback",
            self.issuer.trim_end_matches('/')
        )
    }

    /// The enabled providers (id, display name), for the sign-in page.
    pub async fn buttons(&self) -> Vec<(String, String)> {
        match self.upstreams.enabled().await {
            Ok(list) => list.into_iter().map(|p| (p.id, p.display_name)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not list identity providers");
                Vec::new()
            }
        }
    }

    /// An enabled provider and its client secret; a disabled or unknown one is the same.
    async fn enabled(
        &self,
        provider_id: &str,
    ) -> Result<(Provider, SecretString), UpstreamFailure> {
        match self.upstreams.with_secret(provider_id).await {
            Ok((p, s)) if p.enabled => Ok((p, s)),
            Ok(_) | Err(UpstreamStoreError::NotFound) => Err(UpstreamFailure::UnknownProvider),
            Err(e) => Err(internal(&e)),
        }
    }

    /// Starts a round trip for this browser; returns the upstream URL to send it to.
    pub async fn begin(
        &self,
        provider_id: &str,
        browser_cookie: &str,
        return_to: &str,
        origin: &Origin,
    ) -> Result<String, UpstreamFailure> {
        self.browser
            .limit_address(origin)
            .await
            .map_err(UpstreamFailure::SignIn)?;
        let (provider, secret) = self.enabled(provider_id).await?;
        let (state, nonce, verifier) = self
            .upstreams
            .begin(provider_id, browser_cookie, return_to)
            .await
            .map_err(|e| internal(&e))?;
        self.upstreams
            .protocol
            .authorize_url(
                &provider,
                secret.expose_secret(),
                &self.callback_url(provider_id),
                &state,
                &nonce,
                &verifier,
            )
            .await
            .map_err(|e| {
                tracing::warn!(provider = provider_id, error = %e, "could not start an upstream sign-in");
                UpstreamFailure::Upstream(e.to_string())
            })
    }

    /// The upstream's answer at the callback: the round trip claimed once (this browser,
    /// unexpired), the code exchanged and the user checked (ID token or GitHub's API).
    pub async fn finish(
        &self,
        provider_id: &str,
        code: Option<&str>,
        state: Option<&str>,
        error: Option<&str>,
        browser_cookie: &str,
        origin: &Origin,
    ) -> Result<Arrived, UpstreamFailure> {
        self.browser
            .limit_address(origin)
            .await
            .map_err(UpstreamFailure::SignIn)?;
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(UpstreamFailure::Expired)?;
        let login = self
            .upstreams
            .claim(provider_id, state, browser_cookie)
            .await
            .map_err(|e| internal(&e))?
            .ok_or(UpstreamFailure::Expired)?;
        if let Some(error) = error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect();
            return Err(UpstreamFailure::Denied(error));
        }
        let code = code
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(|| UpstreamFailure::Upstream("no code in the answer".into()))?;
        let (provider, secret) = self.enabled(provider_id).await?;
        let user = self
            .upstreams
            .protocol
            .finish(
                &provider,
                secret.expose_secret(),
                &self.callback_url(provider_id),
                code,
                &login.row.nonce,
                &login.verifier,
            )
            .await
            .map_err(|e| {
                tracing::warn!(provider = provider_id, error = %e, "an upstream sign-in was refused");
                UpstreamFailure::Upstream(e.to_string())
            })?;
        Ok(Arrived {
            provider,
            user,
            login,
        })
    }

    /// Signs in the account linked to the upstream identity; or parks it for the existing
    /// account with its verified address; or makes a new account when allowed.
    pub async fn resolve(
        &self,
        arrived: &Arrived,
        client_id: &str,
        origin: &Origin,
    ) -> Result<UpstreamStep, UpstreamFailure> {
        let Arrived {
            provider,
            user,
            login,
        } = arrived;
        if let Some(identity) = self
            .upstreams
            .identity(&provider.id, &user.subject)
            .await
            .map_err(|e| internal(&e))?
        {
            let account = match self.users.get(&identity.user_id).await {
                Ok(u) => u,
                Err(UserError::NotFound) => {
                    return Err(UpstreamFailure::SignIn(SignInFailure::Invalid));
                }
                Err(e) => return Err(internal(&e)),
            };
            // The upstream proved the identity linked to this account, so its holder is told
            // why it does not sign in: a disabled account; or, with confirmation required (the
            // same rule as for a password), an address not confirmed yet.
            let refused = if account.disabled {
                Some(("disabled", UpstreamFailure::Disabled))
            } else if self.recovery.requires_confirmed_address() && !account.email_verified {
                Some(("email_not_verified", UpstreamFailure::Unconfirmed))
            } else {
                None
            };
            if let Some((reason, failure)) = refused {
                self.audit
                    .record(
                        origin,
                        Event::new(EventType::SignIn, Outcome::Failure)
                            .actor(&account.id)
                            .client(client_id)
                            .details(json!({"method": "upstream", "provider_id": provider.id,
                                            "reason": reason})),
                    )
                    .await;
                return Err(failure);
            }
            if let Err(e) = self.upstreams.touch(&identity).await {
                tracing::warn!(error = %e, "could not note the use of an identity");
            }
            let mfa = self
                .browser
                .mfa_on(&account.id)
                .await
                .map_err(UpstreamFailure::SignIn)?;
            let step = self
                .browser
                .after_first_factor(&account, mfa, client_id, "fed", origin)
                .await
                .map_err(UpstreamFailure::SignIn)?;
            return Ok(UpstreamStep::SignedIn(step));
        }
        let email = user.email.as_deref().and_then(|e| Email::parse(e).ok());
        let existing = match &email {
            Some(email) => self
                .users
                .by_email(email.as_str())
                .await
                .map_err(|e| internal(&e))?,
            None => None,
        };
        if let Some(existing) = existing {
            if !user.email_verified {
                // An address the upstream does not vouch for never matches an account.
                return Err(UpstreamFailure::AccountExists);
            }
            let link_token = self
                .upstreams
                .park_link(login, user, &existing.id)
                .await
                .map_err(|e| internal(&e))?;
            return Ok(UpstreamStep::ProveAccount {
                link_token,
                username: existing.username,
            });
        }
        if !provider.allow_signup {
            return Err(UpstreamFailure::NoAccount);
        }
        let email = email.ok_or(UpstreamFailure::NoEmail)?;
        let account = self.create_account(provider, user, &email, origin).await?;
        if self.recovery.requires_confirmed_address() && !account.email_verified {
            return Ok(UpstreamStep::ConfirmAddress);
        }
        let step = self
            .browser
            .after_first_factor(&account, false, client_id, "fed", origin)
            .await
            .map_err(UpstreamFailure::SignIn)?;
        Ok(UpstreamStep::SignedIn(step))
    }

    /// A new account and its link, in one transaction (nothing half-created).
    async fn create_account(
        &self,
        provider: &Provider,
        user: &UpstreamUser,
        email: &Email,
        origin: &Origin,
    ) -> Result<crate::users::User, UpstreamFailure> {
        let base = username_base(user, email);
        for attempt in 0..6u32 {
            let candidate = if attempt == 0 {
                base.clone()
            } else {
                let suffix = u32::from_le_bytes(
                    crate::crypto::random_bytes::<4>().map_err(|e| internal(&e))?,
                ) % 10_000;
                format!("{}-{suffix:04}", base.chars().take(27).collect::<String>())
            };
            let Ok(username) = Username::parse(&candidate) else {
                continue;
            };
            if self
                .users
                .username_taken(&username)
                .await
                .map_err(|e| internal(&e))?
            {
                continue;
            }
            let new = UserService::without_password(&username, email, user.email_verified);
            let txn = crate::db::begin_write(&self.db)
                .await
                .map_err(|e| internal(&e))?;
            let id = match self.users.create_in(&txn, &new).await {
                Ok(id) => id,
                Err(UserError::Duplicate) => {
                    let _ = txn.rollback().await;
                    // The address was taken meanwhile (or the name): try again or give up.
                    if self
                        .users
                        .by_email(email.as_str())
                        .await
                        .map_err(|e| internal(&e))?
                        .is_some()
                    {
                        return Err(UpstreamFailure::AccountExists);
                    }
                    continue;
                }
                Err(e) => return Err(internal(&e)),
            };
            let linked = self
                .upstreams
                .link_in(
                    &txn,
                    &provider.id,
                    &user.subject,
                    &id,
                    user.email.as_deref(),
                )
                .await
                .map_err(|e| internal(&e))?;
            if !linked {
                let _ = txn.rollback().await;
                return Err(UpstreamFailure::Expired);
            }
            // An address the upstream does not vouch for gets a verification link, as a
            // registration's does: in this transaction, so no account lacks its link.
            if !user.email_verified {
                self.recovery
                    .send_verification_in(&txn, &id, username.as_str(), email.as_str())
                    .await
                    .map_err(|e| internal(&e))?;
            }
            txn.commit().await.map_err(|e| internal(&e))?;
            self.audit
                .record(
                    origin,
                    Event::new(EventType::UserRegistered, Outcome::Success)
                        .actor(&id)
                        .details(json!({"user_id": id, "username": username.as_str(),
                                        "via": "upstream", "provider_id": provider.id,
                                        "email_verified": user.email_verified})),
                )
                .await;
            self.audit_link(origin, &id, &provider.id).await;
            return self.users.get(&id).await.map_err(|e| internal(&e));
        }
        Err(internal(&"no free username"))
    }

    async fn audit_link(&self, origin: &Origin, user_id: &str, provider_id: &str) {
        self.audit
            .record(
                origin,
                Event::new(EventType::IdentityLinked, Outcome::Success)
                    .actor(user_id)
                    .details(json!({"provider_id": provider_id})),
            )
            .await;
    }

    /// The link page's proof: the existing account's password (and second factor when MFA is
    /// on), checked as a sign-in (limits, lockout); then the link is made, once, and the
    /// account signed in.
    pub async fn link(
        &self,
        link_token: &str,
        browser_cookie: &str,
        password: &SecretString,
        factor: Option<&SecondFactor>,
        client_id: &str,
        origin: &Origin,
    ) -> Result<Started, UpstreamFailure> {
        let parked = self
            .upstreams
            .parked(link_token, browser_cookie)
            .await
            .map_err(|e| internal(&e))?
            .ok_or(UpstreamFailure::Expired)?;
        let (Some(user_id), Some(subject)) = (&parked.link_user_id, &parked.link_subject) else {
            return Err(UpstreamFailure::Expired);
        };
        let account = match self.users.get(user_id).await {
            Ok(u) => u,
            Err(UserError::NotFound) => return Err(UpstreamFailure::Expired),
            Err(e) => return Err(internal(&e)),
        };
        self.browser
            .limit_address(origin)
            .await
            .map_err(UpstreamFailure::SignIn)?;
        let grants = self.browser.grants();
        let verified = check_credentials(
            grants,
            origin,
            Some(client_id),
            "upstream_link",
            &account.username,
            password,
        )
        .await
        .map_err(|_| UpstreamFailure::SignIn(SignInFailure::Invalid))?;
        if verified.user.id != account.id {
            return Err(UpstreamFailure::SignIn(SignInFailure::Invalid));
        }
        if verified.second_factor {
            let Some(factor) = factor else {
                return Err(UpstreamFailure::SignIn(SignInFailure::WrongCode));
            };
            check_second_factor(
                grants,
                origin,
                Some(client_id),
                "upstream_link",
                &account.id,
                factor,
            )
            .await
            .map_err(|_| UpstreamFailure::SignIn(SignInFailure::WrongCode))?;
        }
        if !self
            .upstreams
            .take_parked(&parked)
            .await
            .map_err(|e| internal(&e))?
        {
            return Err(UpstreamFailure::Expired);
        }
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        let linked = self
            .upstreams
            .link_in(
                &txn,
                &parked.provider_id,
                subject,
                &account.id,
                parked.link_email.as_deref(),
            )
            .await
            .map_err(|e| internal(&e))?;
        if !linked {
            let _ = txn.rollback().await;
            return Err(UpstreamFailure::Expired);
        }
        txn.commit().await.map_err(|e| internal(&e))?;
        self.audit_link(origin, &account.id, &parked.provider_id)
            .await;
        match self
            .browser
            .after_first_factor(&account, false, client_id, "fed", origin)
            .await
            .map_err(UpstreamFailure::SignIn)?
        {
            SignInStep::Started(started) => Ok(started),
            SignInStep::SecondFactor { .. } => {
                Err(UpstreamFailure::SignIn(SignInFailure::Internal))
            }
        }
    }

    /// What the link page shows for a parked link of this browser: the authorization request
    /// to resume, the provider's name, the account's username, and whether a code is needed.
    pub async fn parked_view(&self, link_token: &str, browser_cookie: &str) -> Option<ParkedView> {
        let row = self
            .upstreams
            .parked(link_token, browser_cookie)
            .await
            .ok()
            .flatten()?;
        let user_id = row.link_user_id.clone()?;
        let account = self.users.get(&user_id).await.ok()?;
        let provider = self.upstreams.get(&row.provider_id).await.ok()?;
        let needs_code = self.browser.mfa_on(&user_id).await.unwrap_or(true);
        Some(ParkedView {
            return_to: row.return_to,
            provider: provider.display_name,
            username: account.username,
            needs_code,
        })
    }

    /// The caller's linked identities.
    pub async fn identities(&self, caller: &Caller) -> Result<Vec<Identity>, OpError> {
        let user_id = own_id(caller)?;
        Ok(self.upstreams.identities_of(&user_id).await?)
    }

    /// Removes the caller's links to `provider_id`, unless that would leave no way to sign in
    /// (no password and no other linked provider).
    pub async fn unlink(&self, caller: &Caller, provider_id: &str) -> Result<(), OpError> {
        let user_id = own_id(caller)?;
        let mine = self.upstreams.identities_of(&user_id).await?;
        let (these, others): (Vec<_>, Vec<_>) =
            mine.into_iter().partition(|i| i.provider_id == provider_id);
        if these.is_empty() {
            return Err(OpError::NotFound(
                "no identity of this provider is linked".into(),
            ));
        }
        if others.is_empty() && !self.users.has_password(&user_id).await? {
            return Err(OpError::Conflict(
                "this is your only way to sign in: set a password (through a password reset) \
                 or link another provider first"
                    .into(),
            ));
        }
        self.upstreams.unlink(&user_id, provider_id).await?;
        caller
            .record(
                &self.audit,
                EventType::IdentityUnlinked,
                json!({"provider_id": provider_id}),
            )
            .await;
        Ok(())
    }
}

use crate::sessions::Started;

fn own_id(caller: &Caller) -> Result<String, OpError> {
    caller
        .actor()
        .user_id()
        .map(str::to_owned)
        .ok_or_else(|| OpError::NotFound("no user: this is a client's own token".into()))
}

/// A username from the upstream's preferred name or the address's local part: the allowed
/// characters only, 3–32 of them.
fn username_base(user: &UpstreamUser, email: &Email) -> String {
    let raw = user.preferred_username.clone().unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let mut name: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(32)
        .collect::<String>()
        .to_ascii_lowercase();
    while name.chars().count() < 3 {
        name.push('_');
    }
    name
}
