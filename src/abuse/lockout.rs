//! Account lockout. Every password sign-in attempt is counted before its password is checked,
//! per account and per (account, address), in one atomic store step, so concurrent attempts on
//! any number of instances get distinct numbers and only attempts within both budgets are ever
//! checked:
//!
//! - the attempt that reaches `lockout_ip_threshold` from one address blocks that address for
//!   that account for the base period, so a single attacker is slowed down without locking
//!   the owner out;
//! - the attempt that reaches `lockout_threshold` from anywhere locks the account for the base
//!   period, doubling with each further lock within a day, up to `lockout_max`.
//!
//! The lock or block is set by that attempt at once, so nothing past a threshold is checked
//! while it is being verified; if its password was right after all, the sign-in lifts what it
//! set. A success also forgives: the account's count and its address's count start again.
//! Refused attempts are answered exactly like a wrong password (same status, body and bcrypt
//! work), so lockout reveals nothing about the account.
//!
//! Everything is keyed on the account (its user id; `unknown:<lowercased name>` for names
//! without an account), never on the name as typed, so a username and its e-mail address share
//! one budget; addresses are counted by [`super::address::ip_bucket`]. An administrator's unlock forgets
//! the account's whole record: its lock, every address block, the counts and past locks.

use std::sync::Arc;
use std::time::Duration;

use crate::config::AbuseSettings;
use crate::store::{LockoutAttempt, LockoutPolicy, Store, StoreError};

/// How long unforgiven attempts count.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long repeated locks keep growing the lock period.
const LOCK_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone)]
pub struct Lockout {
    settings: Arc<AbuseSettings>,
    store: Arc<dyn Store>,
}

/// What a failed sign-in led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutState {
    Counted,
    /// This IP is now blocked for this account for the duration.
    IpBlocked(Duration),
    /// The account is now locked for the duration.
    AccountLocked(Duration),
}

/// One counted sign-in attempt, to be settled with [`Lockout::succeeded`] or
/// [`Lockout::failed`].
#[derive(Debug, Clone)]
pub struct Attempt {
    subject: String,
    ip: String,
    counted: LockoutAttempt,
}

impl Attempt {
    /// Whether the password may be checked: the attempt is within both budgets. Otherwise it
    /// is answered like a wrong password, after the same dummy bcrypt work.
    pub fn may_verify(&self) -> bool {
        matches!(self.counted, LockoutAttempt::Admitted { .. })
    }
}

/// Subjects are user ids, or `unknown:<name as given>` for names without an account; long
/// ones are digested so a key stays small whatever was sent.
fn short(subject: &str) -> String {
    if subject.len() > 64 {
        crate::crypto::secret_digest(subject)
    } else {
        subject.to_string()
    }
}

impl Lockout {
    pub fn new(settings: Arc<AbuseSettings>, store: Arc<dyn Store>) -> Self {
        Self { settings, store }
    }

    fn policy(&self) -> LockoutPolicy {
        let s = &self.settings;
        LockoutPolicy {
            threshold: s.lockout_threshold,
            ip_threshold: s.lockout_ip_threshold,
            window: FAILURE_WINDOW,
            base: s.lockout_base,
            max: s.lockout_max,
            memory: LOCK_MEMORY,
        }
    }

    /// Counts a sign-in attempt on the account `subject` from `ip` (the client address, if
    /// known), before its password is checked. An error means the lock state is unknown:
    /// callers fail closed.
    pub async fn attempt(&self, subject: &str, ip: Option<&str>) -> Result<Attempt, StoreError> {
        let subject = short(subject);
        let ip = super::address::ip_bucket_of(ip.unwrap_or("unknown"));
        let counted = self
            .store
            .lockout_attempt(&subject, &ip, &self.policy())
            .await?;
        if counted == LockoutAttempt::Refused {
            crate::metrics::locked_attempt_refused();
        }
        Ok(Attempt {
            subject,
            ip,
            counted,
        })
    }

    /// A checked attempt failed: the lock or block it set by reaching a threshold stands.
    /// (The failure was counted with the attempt, so nothing is written.)
    pub fn failed(&self, attempt: &Attempt) -> LockoutState {
        match attempt.counted {
            LockoutAttempt::Admitted {
                lock: Some(lock), ..
            } => {
                crate::metrics::account_locked();
                LockoutState::AccountLocked(lock.period)
            }
            LockoutAttempt::Admitted {
                block: Some(block), ..
            } => {
                crate::metrics::address_blocked();
                LockoutState::IpBlocked(block.period)
            }
            LockoutAttempt::Admitted { .. } | LockoutAttempt::Refused => LockoutState::Counted,
        }
    }

    /// A successful sign-in forgives: the account's count and its address's count start again,
    /// and a lock or block this attempt set is lifted.
    pub async fn succeeded(&self, attempt: &Attempt) -> Result<(), StoreError> {
        self.store
            .lockout_succeeded(&attempt.subject, &attempt.ip, &attempt.counted)
            .await
    }

    /// An administrator lifts the account lock and every address block, and forgets the counts
    /// and past locks, so the next lock starts from the base period again.
    pub async fn unlock(&self, user_id: &str) -> Result<(), StoreError> {
        self.store.lockout_clear(&short(user_id)).await
    }
}
