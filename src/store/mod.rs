//! Shared fast state: the access-token deny list, rate counters, sign-in lockout records and
//! leases.
//!
//! One trait, two implementations: [`RedisStore`] when `PORTCULLIS_REDIS_URL` is set (shared by
//! every instance), [`MemoryStore`] for the embedded default. Both pass one test suite
//! (tests/store.rs). Keys are namespaced by a prefix, so several deployments (or test runs)
//! can share one Redis.

mod contract;
mod counting;
mod memory;
mod redis;

pub use self::contract::*;
pub use self::counting::CallCount;
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
