//! The in-process [`Store`] of the embedded default (one instance, no Redis).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Quota, RateDecision, Store, StoreError, gcra};

#[derive(Debug)]
struct Lease {
    holder: String,
    until: Instant,
}

#[derive(Debug, Default)]
struct State {
    denied: HashMap<String, Instant>,
    rates: HashMap<String, u64>,
    counters: HashMap<String, (u64, Instant)>,
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

    async fn rate_limit(&self, key: &str, quota: Quota) -> Result<RateDecision, StoreError> {
        let now = self.millis(Instant::now());
        let mut state = self.lock();
        let stored = state.rates.get(key).copied();
        let (decision, new_tat) = gcra(now, stored, quota);
        if let Some(tat) = new_tat {
            state.rates.insert(key.to_string(), tat);
        }
        if state.rates.len() > 100_000 {
            state.rates.retain(|_, tat| *tat > now);
        }
        Ok(decision)
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
        state.leases.retain(|_, lease| lease.until > now);
    }
}
