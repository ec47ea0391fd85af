//! The `store` section: the shared state of several instances (rate counters, locks, deny
//! list, leases) lives in Redis when `PORTCULLIS_REDIS_URL` is set, else in the process.

use secrecy::SecretString;

use super::{ConfigError, RawSettings, invalid};

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
}

impl StoreSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let redis_url = match &raw.redis_url {
            None => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(SecretString::from(url.as_str()))
            }
            Some(_) => {
                return Err(invalid(
                    "PORTCULLIS_REDIS_URL",
                    "must start with redis:// or rediss://",
                ));
            }
        };
        let prefix = &raw.redis_prefix;
        if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(|c| c.is_ascii_graphic()) {
            return Err(invalid(
                "PORTCULLIS_REDIS_PREFIX",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        Ok(Self {
            redis_url,
            redis_prefix: prefix.clone(),
        })
    }
}
