//! The `sessions` section: how long a browser session (a sign-in on Portcullis's own pages)
//! lasts without use, and at most.

use std::time::Duration;

use super::{ConfigError, RawSettings, invalid};

#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A browser session unused this long needs a new sign-in.
    pub idle_timeout: Duration,
    /// A browser session ends this long after its sign-in, however it is used; the refresh
    /// tokens of its sign-ins end with it.
    pub lifetime: Duration,
}

impl SessionSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let idle_timeout = raw
            .session_idle_timeout
            .parse("PORTCULLIS_SESSION_IDLE_TIMEOUT")?;
        let lifetime = raw.session_lifetime.parse("PORTCULLIS_SESSION_LIFETIME")?;
        if idle_timeout > lifetime {
            return Err(invalid(
                "PORTCULLIS_SESSION_IDLE_TIMEOUT",
                "must not be longer than PORTCULLIS_SESSION_LIFETIME",
            ));
        }
        Ok(Self {
            idle_timeout,
            lifetime,
        })
    }
}
