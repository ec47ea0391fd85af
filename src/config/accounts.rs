//! The `accounts` section: whether an account must confirm its e-mail address before it may
//! sign in (`PORTCULLIS_REQUIRE_VERIFIED_EMAIL`). With it on, registration also stops telling
//! whether a name or address is taken.

use super::{ConfigError, RawSettings};

#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub require_verified_email: bool,
}

impl AccountSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        Ok(Self {
            require_verified_email: raw.require_verified_email,
        })
    }
}
