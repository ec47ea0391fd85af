//! Account recovery and address changes: registration with address verification, the
//! verification and address-change links, password reset, and changing one's password or
//! address. Every mail is written to the outbox in the transaction of the change that causes
//! it (`mail::Outbox`), with the single-use token it carries (`users::tokens`), so a token, its
//! change and its mail exist together or not at all.
//!
//! Nothing here tells a caller whether an address has an account: a reset request answers the
//! same at once and does its work afterwards; with verification required, registration answers
//! the same whether or not the name or address is taken (the owner of a taken address is
//! mailed instead).

use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::task::TaskTracker;

use super::caller::Caller;
use super::error::OpError;
use crate::abuse::{LimitClass, RateLimiter};
use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::clock::SharedClock;
use crate::domain::{Email, Invalid, Password, Username};
use crate::mail::{Mail, MailTemplate, Outbox};
use crate::signins::SignIns;
use crate::users::tokens::{self, Purpose};
use crate::users::{User, UserError, UserService};

/// The outcome of a registration.
#[derive(Debug)]
pub enum Registered {
    /// Created, and signing in is allowed at once (verification not required).
    Created(User),
    /// Verification is required: a link is on its way (or the owner of a taken address was
    /// told); the answer is the same either way.
    VerificationSent,
}

/// Where the links in mails lead (hosted pages that post the token to the API).
pub const VERIFY_PATH: &str = "/ui/email/verify";
pub const RESET_PATH: &str = "/ui/password/reset";
pub const FORGOT_PATH: &str = "/ui/password/forgot";

fn bad_token() -> OpError {
    OpError::Invalid(Invalid {
        field: "token",
        reason: "the link is invalid, expired or already used".into(),
    })
}

fn internal(e: &dyn std::fmt::Display) -> OpError {
    OpError::internal(e)
}

#[derive(Clone)]
pub struct Recovery {
    /// Only to open the transactions that join a change, its token and its mail.
    db: DatabaseConnection,
    users: UserService,
    sign_ins: SignIns,
    outbox: Outbox,
    limits: RateLimiter,
    audit: Audit,
    clock: SharedClock,
    issuer: String,
    require_verified: bool,
    /// The work a request hands off after its answer (a reset link's lookup, token and
    /// mail): awaited on shutdown ([`Recovery::settle`]), so an answered request is not lost.
    background: TaskTracker,
}

/// Which mailed link a request asked for.
#[derive(Clone, Copy)]
enum Requested {
    Reset,
    Verification,
}

impl Recovery {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: DatabaseConnection,
        users: UserService,
        sign_ins: SignIns,
        outbox: Outbox,
        limits: RateLimiter,
        audit: Audit,
        clock: SharedClock,
        issuer: String,
        require_verified: bool,
    ) -> Self {
        Self {
            db,
            users,
            sign_ins,
            outbox,
            limits,
            audit,
            clock,
            issuer: issuer.trim_end_matches('/').to_string(),
            require_verified,
            background: TaskTracker::new(),
        }
    }

    fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.issuer)
    }

    async fn audit(
        &self,
        origin: &Origin,
        kind: EventType,
        user_id: Option<&str>,
        details: serde_json::Value,
    ) {
        let mut event = Event::new(kind, Outcome::Success).details(details);
        if let Some(user) = user_id {
            event = event.actor(user);
        }
        self.audit.record(origin, event).await;
    }

    /// Self-registration (the default role). The account's address gets a verification link.
    pub async fn register(
        &self,
        origin: &Origin,
        username: &Username,
        email: &Email,
        password: &Password,
    ) -> Result<Registered, OpError> {
        // The password is hashed whatever happens next, so every answer costs the same.
        let new = self
            .users
            .prepare(username, email, password, &[], false)
            .await?;
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        let id = match self.users.create_in(&txn, &new).await {
            Ok(id) => id,
            Err(UserError::Duplicate) if self.require_verified => {
                // A failed insert ends the transaction on PostgreSQL: the notice gets its own.
                txn.rollback().await.map_err(|e| internal(&e))?;
                // Taken: the owner of the address (if it is the address that is taken) learns
                // that someone tried; the caller learns nothing.
                if let Some(owner) = self.users.by_email(email.as_str()).await? {
                    self.outbox
                        .enqueue_alone(&Mail {
                            to: owner.email,
                            username: owner.username,
                            template: MailTemplate::AlreadyRegistered {
                                reset_link: format!("{}{FORGOT_PATH}", self.issuer),
                            },
                        })
                        .await
                        .map_err(|e| internal(&e))?;
                }
                return Ok(Registered::VerificationSent);
            }
            Err(e) => return Err(e.into()),
        };
        self.send_verification_in(&txn, &id, username.as_str(), email.as_str())
            .await?;
        txn.commit().await.map_err(|e| internal(&e))?;
        let user = self.users.get(&id).await?;
        self.audit(
            origin,
            EventType::UserRegistered,
            Some(&user.id),
            json!({"username": user.username}),
        )
        .await;
        if self.require_verified {
            Ok(Registered::VerificationSent)
        } else {
            Ok(Registered::Created(user))
        }
    }

    /// Writes a verification link for `email`, the address of the account `user_id`, and its
    /// mail, inside the caller's transaction (for a new account, the one that makes it: no
    /// account is made without its link). Older links of the account stop working.
    pub(crate) async fn send_verification_in(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        user_id: &str,
        username: &str,
        email: &str,
    ) -> Result<(), OpError> {
        let token = tokens::issue_in(txn, Purpose::VerifyEmail, user_id, email, self.clock.now())
            .await
            .map_err(|e| internal(&e))?;
        self.mail(
            txn,
            email,
            username,
            MailTemplate::VerifyEmail {
                link: self.link(VERIFY_PATH, &token),
            },
        )
        .await
    }

    /// Whether an account signs in only once its address is confirmed
    /// (`PORTCULLIS_REQUIRE_VERIFIED_EMAIL`).
    pub(crate) fn requires_confirmed_address(&self) -> bool {
        self.require_verified
    }

    async fn mail(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        to: &str,
        username: &str,
        template: MailTemplate,
    ) -> Result<(), OpError> {
        self.outbox
            .enqueue(
                txn,
                &Mail {
                    to: to.to_string(),
                    username: username.to_string(),
                    template,
                },
            )
            .await
            .map_err(|e| internal(&e))
    }

    /// Confirms an address from a mailed link: a new account's, or the new address of an
    /// address change (which then replaces the old one, and the old one is told).
    pub async fn confirm_email(&self, origin: &Origin, token: &str) -> Result<(), OpError> {
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        if let Some(c) = tokens::consume_in(&txn, token, Purpose::VerifyEmail, now)
            .await
            .map_err(|e| internal(&e))?
        {
            let user = self.users.get_in(&txn, &c.user_id).await?;
            // Bound to the address it was sent to: a link for an address the account no
            // longer has confirms nothing.
            if user.email != c.email {
                return Err(bad_token());
            }
            self.users
                .set_verified_email_in(&txn, &user.id, &c.email)
                .await?;
            txn.commit().await.map_err(|e| internal(&e))?;
            self.audit(origin, EventType::EmailVerified, Some(&user.id), json!({}))
                .await;
            return Ok(());
        }
        let Some(c) = tokens::consume_in(&txn, token, Purpose::ChangeEmail, now)
            .await
            .map_err(|e| internal(&e))?
        else {
            return Err(bad_token());
        };
        let user = self.users.get_in(&txn, &c.user_id).await?;
        match self
            .users
            .set_verified_email_in(&txn, &user.id, &c.email)
            .await
        {
            Ok(()) => {}
            Err(UserError::Duplicate) => {
                return Err(OpError::Conflict(
                    "another account uses this address now".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        // A reset link sent to the old address must not work any more.
        tokens::revoke_in(&txn, &user.id, Purpose::PasswordReset, now)
            .await
            .map_err(|e| internal(&e))?;
        self.mail(
            &txn,
            &user.email,
            &user.username,
            MailTemplate::EmailChanged {
                new_email: c.email.clone(),
            },
        )
        .await?;
        txn.commit().await.map_err(|e| internal(&e))?;
        self.audit(origin, EventType::EmailChanged, Some(&user.id), json!({}))
            .await;
        Ok(())
    }

    /// Asks for a password-reset link. Answers at once and the same for every address; the
    /// work (finding the account, the token and the mail, in one transaction) happens after.
    pub async fn request_reset(&self, origin: &Origin, email: &str) -> Result<(), OpError> {
        self.hand_off(origin, email, Requested::Reset).await
    }

    /// Asks for a new link to confirm an address (the first one lost or expired). Answers at
    /// once and the same for every address, as [`Self::request_reset`], from the same budgets;
    /// only an enabled account whose address is still unconfirmed is mailed.
    pub async fn request_verification(&self, origin: &Origin, email: &str) -> Result<(), OpError> {
        self.hand_off(origin, email, Requested::Verification).await
    }

    /// Counts a mailed link's request against the address's and the mailbox's budgets (one
    /// store call), then leaves the rest to a tracked task, so that the answer neither waits
    /// for nor tells whether an account has this address.
    async fn hand_off(&self, origin: &Origin, email: &str, what: Requested) -> Result<(), OpError> {
        let address = email.trim().to_ascii_lowercase();
        let mut budgets = Vec::with_capacity(2);
        if let Some(ip) = origin.ip.as_deref() {
            budgets.push((LimitClass::RecoveryIp, ip));
        }
        budgets.push((LimitClass::RecoveryAddress, address.as_str()));
        self.limits
            .check_all(&budgets)
            .await
            .map_err(OpError::Limited)?;
        let this = self.clone();
        let origin = origin.clone();
        self.background.spawn(async move {
            if let Err(e) = this.send_link(&origin, &address, what).await {
                tracing::error!(error = %e, "could not prepare a requested mail");
            }
        });
        Ok(())
    }

    /// Waits for the work handed off after an answer (see `background`); on shutdown, once
    /// the server has stopped taking requests.
    pub async fn settle(&self) {
        self.background.close();
        self.background.wait().await;
    }

    /// The link `what` asked for, with its mail, for the enabled account that has `address`
    /// (a new confirmation link only while the address is unconfirmed); nothing otherwise.
    /// The token voids the account's older links of its kind (`tokens::issue_in`).
    async fn send_link(
        &self,
        origin: &Origin,
        address: &str,
        what: Requested,
    ) -> Result<(), OpError> {
        let Some(user) = self.users.by_email(address).await? else {
            return Ok(());
        };
        if user.disabled || (matches!(what, Requested::Verification) && user.email_verified) {
            return Ok(());
        }
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        let event = match what {
            Requested::Reset => {
                let now = self.clock.now();
                let token =
                    tokens::issue_in(&txn, Purpose::PasswordReset, &user.id, &user.email, now)
                        .await
                        .map_err(|e| internal(&e))?;
                self.mail(
                    &txn,
                    &user.email,
                    &user.username,
                    MailTemplate::PasswordReset {
                        link: self.link(RESET_PATH, &token),
                    },
                )
                .await?;
                EventType::PasswordResetRequested
            }
            Requested::Verification => {
                self.send_verification_in(&txn, &user.id, &user.username, &user.email)
                    .await?;
                EventType::EmailVerificationRequested
            }
        };
        txn.commit().await.map_err(|e| internal(&e))?;
        self.audit(origin, event, Some(&user.id), json!({})).await;
        Ok(())
    }

    /// Sets a new password from a reset link: the token is used up, every sign-in of the user
    /// ends, and the address is told.
    pub async fn confirm_reset(
        &self,
        origin: &Origin,
        token: &str,
        new_password: &SecretString,
    ) -> Result<(), OpError> {
        let now = self.clock.now();
        // The password is checked against the account before the token is used up, so a
        // refused password leaves the link working.
        let Some(peek) = tokens::peek(&self.db, token, Purpose::PasswordReset, now)
            .await
            .map_err(|e| internal(&e))?
        else {
            return Err(bad_token());
        };
        let user = self.users.get(&peek.user_id).await?;
        if user.email != peek.email || user.disabled {
            return Err(bad_token());
        }
        let username = Username::parse(&user.username)?;
        let email = Email::parse(&user.email)?;
        let password = Password::parse(new_password.expose_secret(), &username, &email)?;
        let hash = self.users.hash_password(&password).await?;
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        let Some(used) = tokens::consume_in(&txn, token, Purpose::PasswordReset, now)
            .await
            .map_err(|e| internal(&e))?
        else {
            return Err(bad_token());
        };
        self.users.set_password_in(&txn, &user.id, &hash).await?;
        // The link proved the mailbox: an address not yet confirmed is confirmed now (the way
        // out for an account whose verification link expired unused).
        let confirmed = self
            .users
            .confirm_address_in(&txn, &user.id, &used.email)
            .await?;
        self.mail(
            &txn,
            &user.email,
            &user.username,
            MailTemplate::PasswordChanged,
        )
        .await?;
        txn.commit().await.map_err(|e| internal(&e))?;
        let ended = self
            .sign_ins
            .end_all(&user.id, "password_reset")
            .await
            .map_err(|e| internal(&e))?;
        self.audit(
            origin,
            EventType::PasswordReset,
            Some(&user.id),
            json!({"sign_ins_ended": ended.len()}),
        )
        .await;
        if confirmed {
            self.audit(
                origin,
                EventType::EmailVerified,
                Some(&user.id),
                json!({"via": "password_reset"}),
            )
            .await;
        }
        Ok(())
    }

    /// The user `user_id`, once `current` is their password (checks count against the
    /// account's sign-in rate limit).
    async fn with_password(&self, user_id: &str, current: &SecretString) -> Result<User, OpError> {
        let user = self.users.get(user_id).await?;
        self.limits
            .check(LimitClass::Login, user_id)
            .await
            .map_err(OpError::Limited)?;
        if !self
            .users
            .verify_current_password(user_id, current.expose_secret())
            .await?
        {
            return Err(OpError::WrongPassword);
        }
        Ok(user)
    }

    /// Changes one's password (the current one required). The other sign-ins of the user end;
    /// `keep` (the sign-in of this request) stays.
    pub async fn change_password(
        &self,
        caller: &Caller,
        user_id: &str,
        current: &SecretString,
        new_password: &SecretString,
        keep: Option<&str>,
    ) -> Result<(), OpError> {
        let user = self.with_password(user_id, current).await?;
        let username = Username::parse(&user.username)?;
        let email = Email::parse(&user.email)?;
        let password = Password::parse(new_password.expose_secret(), &username, &email)?;
        let hash = self.users.hash_password(&password).await?;
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        self.users.set_password_in(&txn, user_id, &hash).await?;
        tokens::revoke_in(&txn, user_id, Purpose::PasswordReset, now)
            .await
            .map_err(|e| internal(&e))?;
        self.mail(
            &txn,
            &user.email,
            &user.username,
            MailTemplate::PasswordChanged,
        )
        .await?;
        txn.commit().await.map_err(|e| internal(&e))?;
        let mut ended = Vec::new();
        for record in self
            .sign_ins
            .list(user_id)
            .await
            .map_err(|e| internal(&e))?
        {
            let current =
                keep.is_some_and(|k| k == record.id || record.members.iter().any(|m| m == k));
            if !current
                && self
                    .sign_ins
                    .end(&record.id, "password_changed")
                    .await
                    .map_err(|e| internal(&e))?
            {
                ended.push(record.id);
            }
        }
        caller
            .record(
                &self.audit,
                EventType::PasswordChanged,
                json!({"user_id": user_id, "sign_ins_ended": ended.len()}),
            )
            .await;
        Ok(())
    }

    /// Starts an address change (the current password required): the new address gets a
    /// link; nothing changes until it is followed. An address another account uses gets
    /// nothing, and the answer is the same.
    pub async fn change_email(
        &self,
        caller: &Caller,
        user_id: &str,
        current: &SecretString,
        new_email: &Email,
    ) -> Result<(), OpError> {
        let user = self.with_password(user_id, current).await?;
        if new_email.as_str() == user.email {
            return Err(OpError::Invalid(Invalid {
                field: "new_email",
                reason: "this is already the account's address".into(),
            }));
        }
        if self.users.by_email(new_email.as_str()).await?.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db)
            .await
            .map_err(|e| internal(&e))?;
        let token = tokens::issue_in(&txn, Purpose::ChangeEmail, user_id, new_email.as_str(), now)
            .await
            .map_err(|e| internal(&e))?;
        self.mail(
            &txn,
            new_email.as_str(),
            &user.username,
            MailTemplate::EmailChangeConfirm {
                link: self.link(VERIFY_PATH, &token),
                new_email: new_email.as_str().to_string(),
            },
        )
        .await?;
        txn.commit().await.map_err(|e| internal(&e))?;
        caller
            .record(
                &self.audit,
                EventType::EmailChangeRequested,
                json!({"user_id": user_id}),
            )
            .await;
        Ok(())
    }
}
