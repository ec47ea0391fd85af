//! [`ObservedStore`]: the store as the server uses it, with every call counted (each is one
//! round trip to Redis: a command, a pipeline or a script; tests read the count to hold the
//! hot paths to their budget, docs/ARCHITECTURE.md "Round trips") and, for Redis, timed with
//! its failures counted (`portcullis_store_operation_duration_seconds`,
//! `portcullis_store_errors_total`): two clock reads and one histogram sample per operation.
//! The in-process store is counted but not timed (it cannot fail, and its operations take less
//! time than measuring them). A wrapper, so the stores themselves stay as they are.
//!
//! Every method of the store's trait is forwarded here, `prune` included: a method added to
//! the trait must be added here too (a default method would otherwise skip the wrapped
//! store's own).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::store::{
    CallCount, LockoutAttempt, LockoutPolicy, Quota, RateDecision, Store, StoreError,
};

/// A [`Store`] that counts every call to the store it wraps and, when `timed`, records the
/// time and outcome of each.
#[derive(Clone)]
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    calls: CallCount,
    timed: bool,
}

impl ObservedStore {
    /// Wraps `inner`; `timed` for Redis. Returns the count of calls (shared by clones).
    pub fn new(inner: Arc<dyn Store>, timed: bool) -> (Self, CallCount) {
        let calls = CallCount::default();
        (
            Self {
                inner,
                calls: calls.clone(),
                timed,
            },
            calls,
        )
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.calls.add();
        if !self.timed {
            return call.await;
        }
        let started = Instant::now();
        let result = call.await;
        super::store_operation(operation, started.elapsed(), result.is_err());
        result
    }
}

#[async_trait]
impl Store for ObservedStore {
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        self.observe("deny", self.inner.deny(key, ttl)).await
    }

    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError> {
        self.observe("any_denied", self.inner.any_denied(keys))
            .await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        self.observe("incr", self.inner.incr(key, ttl)).await
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError> {
        self.observe("remove", self.inner.remove(keys)).await
    }

    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError> {
        self.observe("rate_limit", self.inner.rate_limit_all(budgets))
            .await
    }

    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError> {
        self.observe(
            "lockout_attempt",
            self.inner.lockout_attempt(subject, ip, policy),
        )
        .await
    }

    async fn lockout_succeeded(
        &self,
        subject: &str,
        ip: &str,
        attempt: &LockoutAttempt,
    ) -> Result<(), StoreError> {
        self.observe(
            "lockout_succeeded",
            self.inner.lockout_succeeded(subject, ip, attempt),
        )
        .await
    }

    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError> {
        self.observe("lockout_clear", self.inner.lockout_clear(subject))
            .await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.observe("try_lock", self.inner.try_lock(name, holder, ttl))
            .await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.observe("unlock", self.inner.unlock(name, holder))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.observe("ping", self.inner.ping()).await
    }

    async fn prune(&self) {
        // Local upkeep of the in-process store (Redis expires keys by itself): not a call.
        self.inner.prune().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// A store whose every operation fails, as Redis does when it is unreachable.
    struct Down;

    #[async_trait]
    impl Store for Down {
        async fn deny(&self, _: &str, _: Duration) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn any_denied(&self, _: &[&str]) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn incr(&self, _: &str, _: Duration) -> Result<u64, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn remove(&self, _: &[&str]) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn rate_limit_all(
            &self,
            _: &[(&str, Quota)],
        ) -> Result<Vec<RateDecision>, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn lockout_attempt(
            &self,
            _: &str,
            _: &str,
            _: &LockoutPolicy,
        ) -> Result<LockoutAttempt, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn lockout_succeeded(
            &self,
            _: &str,
            _: &str,
            _: &LockoutAttempt,
        ) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn lockout_clear(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn try_lock(&self, _: &str, _: &str, _: Duration) -> Result<Option<u64>, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn unlock(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
        async fn ping(&self) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[tokio::test]
    async fn operations_are_timed_and_failures_counted() {
        let exporter = super::super::install();
        let errors = r#"portcullis_store_errors_total{operation="unlock"}"#;
        let timed = r#"portcullis_store_operation_duration_seconds_count{operation="unlock"}"#;
        let before = exporter.render();

        let (up, up_calls) = ObservedStore::new(Arc::new(MemoryStore::new()), true);
        assert!(!up.unlock("lease", "me").await.unwrap());
        let (down, down_calls) = ObservedStore::new(Arc::new(Down), true);
        assert!(down.unlock("lease", "me").await.is_err());
        up.prune().await;
        assert_eq!(
            (up_calls.get(), down_calls.get()),
            (1, 1),
            "prune is no call"
        );

        let after = exporter.render();
        assert!(
            sample(&after, timed) >= sample(&before, timed) + 2.0,
            "{after}"
        );
        assert!(
            sample(&after, errors) >= sample(&before, errors) + 1.0,
            "{after}"
        );
    }
}
