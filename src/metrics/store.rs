//! [`MeteredStore`]: the Redis store with each operation timed and its failures counted
//! (`portcullis_store_operation_duration_seconds`, `portcullis_store_errors_total`), as a
//! wrapper so the store itself stays as it is. Two clock reads and one histogram sample per
//! operation; the in-process store is not wrapped (it cannot fail, and its operations take
//! less time than measuring them).
//!
//! Every method of the store's trait is forwarded here, `prune` included: a method added to
//! the trait must be added here too (a default method would otherwise skip the wrapped
//! store's own).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::store::{LockoutAttempt, LockoutPolicy, Quota, RateDecision, Store, StoreError};

/// A [`Store`] that records the time and outcome of every operation of the store it wraps.
#[derive(Clone)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }
}

async fn timed<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    super::store_operation(operation, started.elapsed(), result.is_err());
    result
}

#[async_trait]
impl Store for MeteredStore {
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        timed("deny", self.inner.deny(key, ttl)).await
    }

    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError> {
        timed("any_denied", self.inner.any_denied(keys)).await
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        timed("incr", self.inner.incr(key, ttl)).await
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError> {
        timed("remove", self.inner.remove(keys)).await
    }

    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError> {
        timed("rate_limit", self.inner.rate_limit_all(budgets)).await
    }

    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError> {
        timed(
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
        timed(
            "lockout_succeeded",
            self.inner.lockout_succeeded(subject, ip, attempt),
        )
        .await
    }

    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError> {
        timed("lockout_clear", self.inner.lockout_clear(subject)).await
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        timed("try_lock", self.inner.try_lock(name, holder, ttl)).await
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        timed("unlock", self.inner.unlock(name, holder)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed("ping", self.inner.ping()).await
    }

    async fn prune(&self) {
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

        let up = MeteredStore::new(Arc::new(MemoryStore::new()));
        assert!(!up.unlock("lease", "me").await.unwrap());
        let down = MeteredStore::new(Arc::new(Down));
        assert!(down.unlock("lease", "me").await.is_err());

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
