//! [`CallCount`]: how many calls were made to a store (kept by `metrics::store::ObservedStore`,
//! which wraps the store the server uses). Every call of the trait is one round trip to Redis
//! (a command, a pipeline or a script), so the count is the number of round trips, which tests
//! read to hold the hot paths to their budget (docs/ARCHITECTURE.md, "Round trips").

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many calls a wrapped store has passed on (shared by its clones).
#[derive(Debug, Clone, Default)]
pub struct CallCount(Arc<AtomicU64>);

impl CallCount {
    /// The calls so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}
