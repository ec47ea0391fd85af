//! The `abuse` section: rate limits, the proxies whose forwarded addresses are believed, and
//! account lockout (see `abuse`).

use std::time::Duration;

use super::{ConfigError, RawSettings, invalid, parse_duration};
use crate::store::Quota;

/// The one header in which trusted proxies name the client (`PORTCULLIS_FORWARDED_HEADER`).
/// Only one is read: a proxy that sets one of them passes the other through as the client
/// sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, as HTTP (lowercase) and the setting spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    fn parse(text: &str) -> Result<Self, ConfigError> {
        [Self::XForwardedFor, Self::Forwarded]
            .into_iter()
            .find(|h| text.trim().eq_ignore_ascii_case(h.name()))
            .ok_or_else(|| {
                invalid(
                    "PORTCULLIS_FORWARDED_HEADER",
                    format!("`{text}` is neither x-forwarded-for nor forwarded"),
                )
            })
    }
}

/// Rate limits and lockout.
#[derive(Debug, Clone)]
pub struct AbuseSettings {
    pub rate_limit_enabled: bool,
    /// Peers whose forwarded header is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those peers name the client in.
    pub forwarded_header: ForwardedHeader,
    /// `/oauth/token` per client IP.
    pub token_ip: Quota,
    /// Password sign-ins per account (a username and the account's e-mail address share one).
    pub login: Quota,
    /// Token, revocation and introspection requests per authenticated client.
    pub client: Quota,
    /// Registrations per client IP.
    pub register_ip: Quota,
    /// Password-reset requests per client IP.
    pub recovery_ip: Quota,
    /// Password-reset requests per address.
    pub recovery_address: Quota,
    /// Consecutive failed sign-ins that lock an account.
    pub lockout_threshold: u32,
    /// Consecutive failed sign-ins from one IP that block that IP for that account.
    pub lockout_ip_threshold: u32,
    /// First lock period; each further lock within a day doubles it, up to `lockout_max`.
    pub lockout_base: Duration,
    pub lockout_max: Duration,
}

impl AbuseSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        Ok(Self {
            rate_limit_enabled: raw.rate_limit_enabled,
            trusted_proxies: parse_proxies(&raw.trusted_proxies)?,
            forwarded_header: ForwardedHeader::parse(&raw.forwarded_header)?,
            token_ip: parse_quota(&raw.rate_limit_token_ip, "PORTCULLIS_RATE_LIMIT_TOKEN_IP")?,
            login: parse_quota(&raw.rate_limit_login, "PORTCULLIS_RATE_LIMIT_LOGIN")?,
            client: parse_quota(&raw.rate_limit_client, "PORTCULLIS_RATE_LIMIT_CLIENT")?,
            register_ip: parse_quota(
                &raw.rate_limit_register_ip,
                "PORTCULLIS_RATE_LIMIT_REGISTER_IP",
            )?,
            recovery_ip: parse_quota(
                &raw.rate_limit_recovery_ip,
                "PORTCULLIS_RATE_LIMIT_RECOVERY_IP",
            )?,
            recovery_address: parse_quota(
                &raw.rate_limit_recovery_address,
                "PORTCULLIS_RATE_LIMIT_RECOVERY_ADDRESS",
            )?,
            lockout_threshold: positive(raw.lockout_threshold, "PORTCULLIS_LOCKOUT_THRESHOLD")?,
            lockout_ip_threshold: positive(
                raw.lockout_ip_threshold,
                "PORTCULLIS_LOCKOUT_IP_THRESHOLD",
            )?,
            lockout_base: raw.lockout_base.parse("PORTCULLIS_LOCKOUT_BASE")?,
            lockout_max: raw.lockout_max.parse("PORTCULLIS_LOCKOUT_MAX")?,
        })
    }
}

fn positive(n: u32, setting: &'static str) -> Result<u32, ConfigError> {
    if n == 0 {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(n)
}

/// A quota written `N/period`, e.g. `300/1m` or `20/1h`.
pub(super) fn parse_quota(text: &str, setting: &'static str) -> Result<Quota, ConfigError> {
    let bad = || {
        invalid(
            setting,
            format!("`{text}` is not a quota (write e.g. 300/1m or 20/1h)"),
        )
    };
    let (n, period) = text.split_once('/').ok_or_else(bad)?;
    let limit: u32 = n.trim().parse().map_err(|_| bad())?;
    let seconds = parse_duration(period).ok_or_else(bad)?;
    if limit == 0 || seconds == 0 {
        return Err(bad());
    }
    Ok(Quota {
        limit,
        period: Duration::from_secs(seconds),
    })
}

/// Comma-separated addresses or CIDR ranges.
pub(super) fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "PORTCULLIS_TRUSTED_PROXIES",
                        format!("`{t}` is not an IP address or CIDR range"),
                    )
                })
        })
        .collect()
}
