//! [`CountingStore`]: any [`Store`] with a count of the calls made to it. Every call of the
//! trait is one round trip to Redis (a command, a pipeline or a script), so the count is the
//! number of round trips, which tests read to hold the hot paths to their budget
//! (docs/ARCHITECTURE.md, "Round trips").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::contract::{LockoutAttempt, LockoutPolicy, Quota, RateDecision, Store, StoreError};

/// How many calls a [`CountingStore`] has passed on (shared by its clones).
#[derive(Debug, Clone, Default)]
pub struct CallCount(Arc<AtomicU64>);

impl CallCount {
    /// The calls so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A store that counts the calls it passes on to `inner`.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: CallCount,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> (Self, CallCount) {
        let calls = CallCount::default();
        (
            Self {
                inner,
                calls: calls.clone(),
            },
            calls,
        )
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        self.calls.add();
        self.inner.deny(key, ttl).await
    }

    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError> {
        self.calls.add();
        self.inner.any_denied(keys).await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        self.calls.add();
        self.inner.incr(key, ttl).await
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError> {
        self.calls.add();
        self.inner.remove(keys).await
    }

    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError> {
        self.calls.add();
        self.inner.rate_limit_all(budgets).await
    }

    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError> {
        self.calls.add();
        self.inner.lockout_attempt(subject, ip, policy).await
    }

    async fn lockout_succeeded(
        &self,
        subject: &str,
        ip: &str,
        attempt: &LockoutAttempt,
    ) -> Result<(), StoreError> {
        self.calls.add();
        self.inner.lockout_succeeded(subject, ip, attempt).await
    }

    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError> {
        self.calls.add();
        self.inner.lockout_clear(subject).await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.calls.add();
        self.inner.try_lock(name, holder, ttl).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.calls.add();
        self.inner.unlock(name, holder).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.calls.add();
        self.inner.ping().await
    }

    async fn prune(&self) {
        // Local upkeep of the in-process store; Redis expires keys by itself.
        self.inner.prune().await
    }
}
