//! The `tokens` section: the audience and lifetimes of access tokens, and the lifetime and
//! reuse window of refresh tokens.

use std::time::Duration;

use super::{ConfigError, DurationSetting, RawSettings, invalid};

/// The longest refresh reuse window accepted: long enough for a client's retry after a lost
/// answer, short enough that a replayed answer stays a retry (the same bound as Amazon
/// Cognito's retry grace period).
pub const MAX_REFRESH_REUSE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `aud` of access tokens (defaults to the issuer).
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long after a rotation the same client may present the rotated refresh token again
    /// and get the same answer; zero is strict rotation (any reuse revokes the sign-in).
    pub refresh_reuse_interval: Duration,
}

impl TokenSettings {
    /// `issuer` is the validated issuer, the default audience.
    pub fn from_raw(raw: &RawSettings, issuer: &str) -> Result<Self, ConfigError> {
        let audience = match &raw.audience {
            Some(a) if a.trim().is_empty() => {
                return Err(invalid("PORTCULLIS_AUDIENCE", "must not be empty"));
            }
            Some(a) => a.clone(),
            None => issuer.to_string(),
        };
        let access_token_ttl = raw.access_token_ttl.parse("PORTCULLIS_ACCESS_TOKEN_TTL")?;
        let refresh_reuse_interval =
            refresh_reuse_interval(&raw.refresh_reuse_interval, access_token_ttl)?;
        Ok(Self {
            audience,
            access_token_ttl,
            refresh_token_ttl: raw
                .refresh_token_ttl
                .parse("PORTCULLIS_REFRESH_TOKEN_TTL")?,
            refresh_reuse_interval,
        })
    }
}

/// The refresh reuse window: zero (strict), or at most [`MAX_REFRESH_REUSE_INTERVAL`] and
/// shorter than the access-token lifetime, so a replayed access token still has time left.
fn refresh_reuse_interval(
    raw: &DurationSetting,
    access_token_ttl: Duration,
) -> Result<Duration, ConfigError> {
    const SETTING: &str = "PORTCULLIS_REFRESH_REUSE_INTERVAL";
    let window = raw.parse_allowing_zero(SETTING)?;
    if window > MAX_REFRESH_REUSE_INTERVAL {
        return Err(invalid(
            SETTING,
            format!(
                "{}s is longer than the maximum of {}s (0 means strict rotation)",
                window.as_secs(),
                MAX_REFRESH_REUSE_INTERVAL.as_secs()
            ),
        ));
    }
    if !window.is_zero() && window >= access_token_ttl {
        return Err(invalid(
            SETTING,
            format!(
                "{}s must be shorter than PORTCULLIS_ACCESS_TOKEN_TTL ({}s)",
                window.as_secs(),
                access_token_ttl.as_secs()
            ),
        ));
    }
    Ok(window)
}
