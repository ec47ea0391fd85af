//! The `keys` section: where the signing keys and the master key that encrypts them come
//! from, and the signing-key lifecycle timings (see `keys` and README, "Signing keys").

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, RawSettings, invalid};
use crate::clock::CLOCK_SKEW;

#[derive(Debug, Clone)]
pub struct KeySettings {
    /// `PORTCULLIS_KEYS_DIR`: where the generated master key file lives.
    pub dir: PathBuf,
    pub master_key: MasterKeySource,
    pub timing: KeyTimings,
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// `PORTCULLIS_MASTER_KEY`: 32 bytes, base64.
    Given(SecretString),
    /// Generated on first run into `<keys_dir>/master.key` (mode 0600).
    File(PathBuf),
}

/// Signing-key lifecycle timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyTimings {
    /// How long a key signs before the scheduled rotation replaces it.
    pub rotation_interval: Duration,
    /// How often every instance re-reads the keys and the lease holder runs background duties:
    /// the bound within which a rotation made elsewhere is picked up.
    pub reload_interval: Duration,
    /// Safety margin added to the publication lead time.
    pub publication_margin: Duration,
    /// `Cache-Control: max-age` of the JWKS: how long a resource server may keep it.
    pub jwks_max_age: Duration,
    /// The longest lifetime of a signed token (access and ID tokens).
    pub token_lifetime: Duration,
}

impl KeySettings {
    /// `token_lifetime` is the longest lifetime of a signed token: the access-token TTL.
    pub fn from_raw(raw: &RawSettings, token_lifetime: Duration) -> Result<Self, ConfigError> {
        let master_key = match &raw.master_key {
            Some(text) => {
                decode_master_key(text)?;
                MasterKeySource::Given(SecretString::from(text.as_str()))
            }
            None => MasterKeySource::File(raw.keys_dir.join("master.key")),
        };
        Ok(Self {
            dir: raw.keys_dir.clone(),
            master_key,
            timing: KeyTimings::from_raw(raw, token_lifetime)?,
        })
    }

    pub fn master_key_text(&self) -> Option<&str> {
        match &self.master_key {
            MasterKeySource::Given(s) => Some(s.expose_secret()),
            MasterKeySource::File(_) => None,
        }
    }
}

impl KeyTimings {
    fn from_raw(raw: &RawSettings, token_lifetime: Duration) -> Result<Self, ConfigError> {
        let jwks_max_age = raw.jwks_max_age.parse("PORTCULLIS_JWKS_MAX_AGE")?;
        let timing = Self {
            rotation_interval: raw
                .key_rotation_interval
                .parse("PORTCULLIS_KEY_ROTATION_INTERVAL")?,
            reload_interval: raw
                .key_reload_interval
                .parse("PORTCULLIS_KEY_RELOAD_INTERVAL")?,
            publication_margin: raw
                .key_publication_margin
                .parse("PORTCULLIS_KEY_PUBLICATION_MARGIN")?,
            jwks_max_age,
            token_lifetime,
        };
        if timing.reload_interval > Duration::from_secs(300) {
            return Err(invalid(
                "PORTCULLIS_KEY_RELOAD_INTERVAL",
                "must be at most 5m: it bounds how long other instances take to see a rotation",
            ));
        }
        if timing.rotation_interval <= timing.publication_lead() {
            return Err(invalid(
                "PORTCULLIS_KEY_ROTATION_INTERVAL",
                format!(
                    "must be longer than the publication lead time of {} s \
                     (PORTCULLIS_JWKS_MAX_AGE + PORTCULLIS_KEY_RELOAD_INTERVAL + \
                     PORTCULLIS_KEY_PUBLICATION_MARGIN), or the next key could never be \
                     published long enough before it signs",
                    timing.publication_lead().as_secs()
                ),
            ));
        }
        Ok(timing)
    }

    /// How long a `next` key must have been published before a scheduled rotation may promote
    /// it: every instance serves it after one reload interval, and a resource server that
    /// fetched the JWKS just before holds its copy for `jwks_max_age`; plus the margin.
    pub fn publication_lead(&self) -> Duration {
        self.jwks_max_age + self.reload_interval + self.publication_margin
    }

    /// How long a retired key stays published: other instances may sign with it for one more
    /// reload interval, and what they signed lives for the token lifetime plus clock skew.
    pub fn retired_publication(&self) -> Duration {
        self.token_lifetime + self.reload_interval + CLOCK_SKEW
    }

    /// How long a background-duty lease lasts without renewal: a holder that dies is replaced
    /// after at most this long.
    pub fn lease_ttl(&self) -> Duration {
        (self.reload_interval * 3).max(Duration::from_secs(3))
    }
}

/// Decodes a base64 master key and checks it is exactly 32 bytes.
pub fn decode_master_key(text: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| invalid("PORTCULLIS_MASTER_KEY", "is not valid base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        invalid(
            "PORTCULLIS_MASTER_KEY",
            format!("must decode to 32 bytes, got {}", bytes.len()),
        )
    })
}
