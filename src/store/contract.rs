//! The store's contract: the [`Store`] trait both implementations fulfil, the values it
//! trades in, and the GCRA arithmetic they share.

use async_trait::async_trait;
use std::time::Duration;

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

/// How sign-in attempts are budgeted per account (see `abuse::Lockout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Unforgiven attempts on an account, from anywhere, that lock it.
    pub threshold: u32,
    /// Unforgiven attempts on an account from one address that block that address for it.
    pub ip_threshold: u32,
    /// How long attempts count: a fixed window from the first one counted.
    pub window: Duration,
    /// The first lock period, and the period of every address block.
    pub base: Duration,
    /// The longest lock period.
    pub max: Duration,
    /// How long a lock keeps doubling the next one.
    pub memory: Duration,
}

impl LockoutPolicy {
    /// How long an account's record must be kept after its last change.
    pub fn retention(&self) -> Duration {
        self.window.max(self.memory).max(self.max)
    }
}

/// A lock of an account, or a block of an address for it, set by one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub period: Duration,
    /// When it ends, in milliseconds on the store's own clock. It names the hold, so that the
    /// attempt that set it lifts this one and never a later one.
    pub until_ms: u64,
}

/// What [`Store::lockout_attempt`] made of one sign-in attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockoutAttempt {
    /// The account is locked, or the address is blocked for it: not counted, not to be
    /// verified.
    Refused,
    /// Counted; the password may be checked.
    Admitted {
        /// Its number among the account's unforgiven attempts, `1..=threshold`.
        account: u32,
        /// Its number among those from its address, `1..=ip_threshold`.
        ip: u32,
        /// The account lock it set by reaching `threshold`.
        lock: Option<Hold>,
        /// The address block it set by reaching `ip_threshold`.
        block: Option<Hold>,
    },
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

    /// Counts one event against each of `budgets` in turn, each key under its own quota, in
    /// one atomic step (one round trip), and stops at the first that refuses: the keys after
    /// it are not counted. Returns the decisions of the keys counted, in order (the last one
    /// is the refusal, if any).
    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError>;

    /// Counts one event against `key` under `quota`, atomically.
    async fn rate_limit(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        self.rate_limit_all(&[(key, quota)])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("no rate decision came back".into()))
    }

    /// Counts one sign-in attempt on the account `subject` from the address bucket `ip`,
    /// before its password is checked. One atomic step: concurrent attempts, on any number of
    /// instances, get distinct numbers.
    ///
    /// While the account is locked, or `ip` is blocked for it, the attempt is
    /// [`LockoutAttempt::Refused`] and nothing changes. Otherwise it is counted on the account
    /// and on `ip` (each count in its own `policy.window`). The attempt that reaches
    /// `policy.threshold` locks the account at once, for `policy.base` doubled for each earlier
    /// lock within `policy.memory`, up to `policy.max`; the one that reaches
    /// `policy.ip_threshold` blocks `ip` for `policy.base`. Either restarts its count. So no
    /// attempt past a threshold is ever checked, and if the one that reached it is lost (its
    /// request cancelled) the lock simply runs its course. If that attempt was right after
    /// all, [`Store::lockout_succeeded`] lifts what it set.
    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError>;

    /// A successful sign-in forgives: resets the account's count and the count of `ip`, and
    /// lifts the lock and block that `attempt` set, if they are still the ones in place (a
    /// lifted lock does not count towards the doubling).
    async fn lockout_succeeded(
        &self,
        subject: &str,
        ip: &str,
        attempt: &LockoutAttempt,
    ) -> Result<(), StoreError>;

    /// Forgets everything about the account `subject`: its lock, every address block, the
    /// counts and past locks.
    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError>;

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
