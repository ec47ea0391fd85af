//! The in-process [`Store`] of the embedded default (one instance, no Redis).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::contract::{
    Hold, LockoutAttempt, LockoutPolicy, Quota, RateDecision, Store, StoreError, gcra,
};

#[derive(Debug)]
struct Lease {
    holder: String,
    until: Instant,
}

/// One account's lockout record; times in milliseconds since the store's epoch.
#[derive(Debug, Default)]
struct LockoutRecord {
    count: u32,
    window_start: u64,
    locked_until: u64,
    locks: u32,
    locks_since: u64,
    ips: HashMap<String, IpRecord>,
    expires: u64,
}

#[derive(Debug, Default)]
struct IpRecord {
    count: u32,
    window_start: u64,
    blocked_until: u64,
}

/// Starts a new window for a count that is zero or whose window is over.
fn roll(count: &mut u32, window_start: &mut u64, now: u64, window: u64) {
    if *count == 0 || now.saturating_sub(*window_start) >= window {
        *count = 0;
        *window_start = now;
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct State {
    denied: HashMap<String, Instant>,
    rates: HashMap<String, u64>,
    counters: HashMap<String, (u64, Instant)>,
    lockouts: HashMap<String, LockoutRecord>,
    leases: HashMap<String, Lease>,
    fences: HashMap<String, u64>,
}

/// A [`Store`] held in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    epoch: Instant,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned mutex only means another thread panicked mid-update of plain maps;
        // the maps stay usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn deny(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        // Opportunistic pruning keeps the map bounded by live entries.
        if state.denied.len() > 1024 {
            state.denied.retain(|_, until| *until > now);
        }
        state.denied.insert(key.to_string(), now + ttl);
        Ok(())
    }

    async fn any_denied(&self, keys: &[&str]) -> Result<bool, StoreError> {
        let now = Instant::now();
        let state = self.lock();
        Ok(keys
            .iter()
            .any(|k| state.denied.get(*k).is_some_and(|until| *until > now)))
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        if state.counters.len() > 100_000 {
            state.counters.retain(|_, (_, until)| *until > now);
        }
        let entry = state
            .counters
            .entry(key.to_string())
            .or_insert((0, now + ttl));
        if entry.1 <= now {
            *entry = (0, now + ttl);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn remove(&self, keys: &[&str]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for key in keys {
            state.counters.remove(*key);
            state.denied.remove(*key);
        }
        Ok(())
    }

    async fn rate_limit_all(
        &self,
        budgets: &[(&str, Quota)],
    ) -> Result<Vec<RateDecision>, StoreError> {
        let now = self.millis(Instant::now());
        let mut state = self.lock();
        let mut decisions = Vec::with_capacity(budgets.len());
        for &(key, quota) in budgets {
            let stored = state.rates.get(key).copied();
            let (decision, new_tat) = gcra(now, stored, quota);
            if let Some(tat) = new_tat {
                state.rates.insert(key.to_string(), tat);
            }
            let refused = !decision.allowed;
            decisions.push(decision);
            if refused {
                break;
            }
        }
        if state.rates.len() > 100_000 {
            state.rates.retain(|_, tat| *tat > now);
        }
        Ok(decisions)
    }

    async fn lockout_attempt(
        &self,
        subject: &str,
        ip: &str,
        policy: &LockoutPolicy,
    ) -> Result<LockoutAttempt, StoreError> {
        let now = self.millis(Instant::now());
        let (window, base) = (ms(policy.window), ms(policy.base));
        let mut state = self.lock();
        if state.lockouts.len() > 100_000 {
            state.lockouts.retain(|_, r| r.expires > now);
        }
        let record = state.lockouts.entry(subject.to_string()).or_default();
        if record.expires <= now {
            *record = LockoutRecord::default();
        }
        let blocked = record.ips.get(ip).is_some_and(|r| r.blocked_until > now);
        if record.locked_until > now || blocked {
            return Ok(LockoutAttempt::Refused);
        }
        record
            .ips
            .retain(|_, r| r.blocked_until > now || now.saturating_sub(r.window_start) < window);
        roll(&mut record.count, &mut record.window_start, now, window);
        record.count += 1;
        let account = record.count;
        let mut lock = None;
        if record.count >= policy.threshold {
            if record.locks == 0 || now.saturating_sub(record.locks_since) >= ms(policy.memory) {
                record.locks = 0;
                record.locks_since = now;
            }
            record.locks += 1;
            let factor = 2u64.saturating_pow(record.locks - 1);
            let period = base.saturating_mul(factor).min(ms(policy.max));
            record.locked_until = now.saturating_add(period);
            record.count = 0;
            lock = Some(Hold {
                period: Duration::from_millis(period),
                until_ms: record.locked_until,
            });
        }
        let from_ip = record.ips.entry(ip.to_string()).or_default();
        roll(&mut from_ip.count, &mut from_ip.window_start, now, window);
        from_ip.count += 1;
        let at_ip = from_ip.count;
        let mut block = None;
        if from_ip.count >= policy.ip_threshold {
            from_ip.blocked_until = now.saturating_add(base);
            from_ip.count = 0;
            block = Some(Hold {
                period: policy.base,
                until_ms: from_ip.blocked_until,
            });
        }
        record.expires = now.saturating_add(ms(policy.retention()));
        Ok(LockoutAttempt::Admitted {
            account,
            ip: at_ip,
            lock,
            block,
        })
    }

    async fn lockout_succeeded(
        &self,
        subject: &str,
        ip: &str,
        attempt: &LockoutAttempt,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let Some(record) = state.lockouts.get_mut(subject) else {
            return Ok(());
        };
        record.count = 0;
        let (lock, block) = match attempt {
            LockoutAttempt::Admitted { lock, block, .. } => (*lock, *block),
            LockoutAttempt::Refused => (None, None),
        };
        if let Some(lock) = lock
            && record.locked_until == lock.until_ms
        {
            record.locked_until = 0;
            record.locks = record.locks.saturating_sub(1);
        }
        if let Some(from_ip) = record.ips.get_mut(ip) {
            from_ip.count = 0;
            if let Some(block) = block
                && from_ip.blocked_until == block.until_ms
            {
                from_ip.blocked_until = 0;
            }
        }
        Ok(())
    }

    async fn lockout_clear(&self, subject: &str) -> Result<(), StoreError> {
        self.lock().lockouts.remove(subject);
        Ok(())
    }

    async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        let State { leases, fences, .. } = &mut *state;
        match leases.get_mut(name) {
            Some(lease) if lease.until > now && lease.holder != holder => Ok(None),
            Some(lease) if lease.until > now => {
                lease.until = now + ttl;
                Ok(fences.get(name).copied())
            }
            _ => {
                leases.insert(
                    name.to_string(),
                    Lease {
                        holder: holder.to_string(),
                        until: now + ttl,
                    },
                );
                let fence = fences.entry(name.to_string()).or_insert(0);
                *fence += 1;
                Ok(Some(*fence))
            }
        }
    }

    async fn unlock(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        match state.leases.get(name) {
            Some(lease) if lease.holder == holder && lease.until > now => {
                state.leases.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn prune(&self) {
        let now = Instant::now();
        let now_ms = self.millis(now);
        let mut state = self.lock();
        state.denied.retain(|_, until| *until > now);
        state.counters.retain(|_, (_, until)| *until > now);
        state.rates.retain(|_, tat| *tat > now_ms);
        state.lockouts.retain(|_, r| r.expires > now_ms);
        state.leases.retain(|_, lease| lease.until > now);
    }
}
