//! Account lockout. Failed password sign-ins are counted per account and per (account, IP):
//!
//! - `lockout_ip_threshold` consecutive failures from one IP block that IP for that account
//!   for the base period, so a single attacker is slowed down without locking the owner out;
//! - `lockout_threshold` consecutive failures from anywhere lock the account for the base
//!   period, doubling with each further lock within a day, up to `lockout_max`.
//!
//! A success resets the counters. A locked account answers exactly like a wrong password
//! (same status, body and bcrypt work), so lockout reveals nothing about the account.

use std::sync::Arc;
use std::time::Duration;

use crate::config::AbuseSettings;
use crate::store::{Store, StoreError};

/// How long failures are remembered.
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

/// Subjects are user ids, or `unknown:<name as given>` for names without an account; long
/// ones are digested so a key stays small whatever was sent.
fn short(subject: &str) -> std::borrow::Cow<'_, str> {
    if subject.len() > 64 {
        crate::crypto::secret_digest(subject).into()
    } else {
        subject.into()
    }
}
fn account_lock(user: &str) -> String {
    format!("lock:{}", short(user))
}
fn ip_lock(user: &str, ip: &str) -> String {
    format!("lock:{}:{}", short(user), super::ip_bucket_of(ip))
}
fn account_failures(user: &str) -> String {
    format!("fail:{}", short(user))
}
fn ip_failures(user: &str, ip: &str) -> String {
    format!("fail:{}:{}", short(user), super::ip_bucket_of(ip))
}
fn lock_count(user: &str) -> String {
    format!("locks:{}", short(user))
}

impl Lockout {
    pub fn new(settings: Arc<AbuseSettings>, store: Arc<dyn Store>) -> Self {
        Self { settings, store }
    }

    /// Whether sign-in for `user_id` from `ip` is refused right now.
    pub async fn is_locked(&self, user_id: &str, ip: &str) -> Result<bool, StoreError> {
        self.store
            .any_denied(&[&account_lock(user_id), &ip_lock(user_id, ip)])
            .await
    }

    /// Records a failed sign-in; locks when a threshold is reached.
    pub async fn failed(&self, user_id: &str, ip: &str) -> Result<LockoutState, StoreError> {
        let s = &self.settings;
        let account = self
            .store
            .incr(&account_failures(user_id), FAILURE_WINDOW)
            .await?;
        if account >= u64::from(s.lockout_threshold) {
            let locks = self.store.incr(&lock_count(user_id), LOCK_MEMORY).await?;
            let factor =
                2u32.saturating_pow(u32::try_from(locks.saturating_sub(1)).unwrap_or(u32::MAX));
            let period = s.lockout_base.saturating_mul(factor).min(s.lockout_max);
            self.store.deny(&account_lock(user_id), period).await?;
            self.store.remove(&[&account_failures(user_id)]).await?;
            return Ok(LockoutState::AccountLocked(period));
        }
        let from_ip = self
            .store
            .incr(&ip_failures(user_id, ip), FAILURE_WINDOW)
            .await?;
        if from_ip >= u64::from(s.lockout_ip_threshold) {
            self.store
                .deny(&ip_lock(user_id, ip), s.lockout_base)
                .await?;
            self.store.remove(&[&ip_failures(user_id, ip)]).await?;
            return Ok(LockoutState::IpBlocked(s.lockout_base));
        }
        Ok(LockoutState::Counted)
    }

    /// A successful sign-in resets the failure counts.
    pub async fn succeeded(&self, user_id: &str, ip: &str) -> Result<(), StoreError> {
        self.store
            .remove(&[&account_failures(user_id), &ip_failures(user_id, ip)])
            .await
    }

    /// An administrator lifts the account lock and forgets past locks (per-IP blocks expire by
    /// themselves after the base period).
    pub async fn unlock(&self, user_id: &str) -> Result<(), StoreError> {
        self.store
            .remove(&[
                &account_lock(user_id),
                &account_failures(user_id),
                &lock_count(user_id),
            ])
            .await
    }
}
