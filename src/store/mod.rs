//! Shared fast state: the access-token deny list, rate counters and locks.
//!
//! One trait, two implementations: [`RedisStore`] when `PORTCULLIS_REDIS_URL` is set (shared by
//! every instance), [`MemoryStore`] for the embedded default. Both pass one test suite
//! (tests/store.rs). Keys are namespaced by a prefix, so several deployments (or test runs)
//! can share one Redis.

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// A rate: at most `limit` events per `period`, with bursts up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub period: Duration,
}

/// The answer of a rate limiter (GCRA), with what the `RateLimit` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Events still allowed right now.
    pub remaining: u32,
    /// Milliseconds until the next event would be allowed (0 when allowed).
    pub retry_after_ms: u64,
    /// Milliseconds until the full quota is available again.
    pub reset_ms: u64,
}

/// GCRA arithmetic shared by both stores, in milliseconds. `tat` is the stored theoretical
/// arrival time; returns the decision and the new `tat` to store when allowed.
pub(crate) fn gcra(now: u64, tat: Option<u64>, quota: Quota) -> (RateDecision, Option<u64>) {
    let period = u64::try_from(quota.period.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let limit = u64::from(quota.limit.max(1));
    let interval = (period / limit).max(1);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(interval);
    let ahead = new_tat - now;
    if ahead > period {
        let decision = RateDecision {
            allowed: false,
            remaining: 0,
            retry_after_ms: ahead - period,
            reset_ms: tat - now,
        };
        return (decision, None);
    }
    let remaining = u32::try_from((period - ahead) / interval).unwrap_or(u32::MAX);
    let decision = RateDecision {
        allowed: true,
        remaining,
        retry_after_ms: 0,
        reset_ms: ahead,
    };
    (decision, Some(new_tat))
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Puts `key` on the deny list for `ttl` (e.g. a revoked token's `jti` until it expires).
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Whether any of `keys` is on the deny list (one round trip).
    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError>;

    /// Adds one to the counter `key` and returns the new value; the counter expires `ttl`
    /// after its first increment (a fixed window), atomically.
    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError>;

    /// Removes counters and deny-list entries named `keys`.
    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError>;

    /// Counts one event against `key` under `quota`, atomically.
    async fn rate_limit(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError>;

    /// Takes or renews the lease `name` for `holder`. Returns a fencing token that grows with
    /// every new holder, or `None` while someone else holds the lease.
    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError>;

    /// Gives the lease back if `holder` still holds it; returns whether it did.
    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError>;

    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Drops expired deny-list entries, counters and leases. Redis expires keys by itself;
    /// the in-process store does it here, so memory stays bounded by live entries.
    async fn prune(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_spaces_events() {
        let quota = Quota {
            limit: 3,
            period: Duration::from_secs(3),
        };
        let mut tat = None;
        for expected_remaining in [2, 1, 0] {
            let (d, t) = gcra(10_000, tat, quota);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            tat = t;
        }
        let (d, t) = gcra(10_000, tat, quota);
        assert!(!d.allowed);
        assert_eq!(t, None);
        assert_eq!(d.retry_after_ms, 1_000);
        let (d, _) = gcra(11_000, tat, quota);
        assert!(d.allowed, "one interval later one more event is allowed");
    }
}
