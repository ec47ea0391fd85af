//! The `passwords` section: bcrypt cost, and how many hashes run at once and may wait.

use super::{ConfigError, RawSettings, invalid};

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    /// bcrypt cost of new hashes (4..=31).
    pub bcrypt_cost: u32,
    /// bcrypt hashes computed at once (default: the number of CPUs).
    pub max_concurrency: usize,
    /// Sign-ins that may wait for a bcrypt slot; beyond that, an immediate 503.
    pub max_queue: usize,
}

impl PasswordSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        if !(4..=31).contains(&raw.bcrypt_cost) {
            return Err(invalid(
                "PORTCULLIS_BCRYPT_COST",
                format!("{} is outside 4..=31", raw.bcrypt_cost),
            ));
        }
        let max_concurrency = match raw.bcrypt_max_concurrency {
            Some(0) => {
                return Err(invalid(
                    "PORTCULLIS_BCRYPT_MAX_CONCURRENCY",
                    "must be at least 1",
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        Ok(Self {
            bcrypt_cost: raw.bcrypt_cost,
            max_concurrency,
            max_queue: raw.bcrypt_max_queue,
        })
    }
}
