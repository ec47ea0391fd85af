//! Abuse protection: rate limits per route class (shared through the store, so every instance
//! counts together), account lockout with growing back-off, and the client IP as seen through
//! trusted proxies only.

mod lockout;

use std::net::IpAddr;
use std::sync::Arc;

pub use self::lockout::{Lockout, LockoutState};
use crate::config::AbuseSettings;
use crate::store::{MemoryStore, Quota, RateDecision, Store};

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitClass {
    /// `/oauth/token` per client IP.
    TokenIp,
    /// Password sign-ins per account name as given.
    Login,
    /// Token, revocation and introspection requests per authenticated client.
    Client,
    /// Registrations per client IP.
    RegisterIp,
}

impl LimitClass {
    fn key(self) -> &'static str {
        match self {
            Self::TokenIp => "token-ip",
            Self::Login => "login",
            Self::Client => "client",
            Self::RegisterIp => "register-ip",
        }
    }
}

/// A refused request: what the `RateLimit-*` and `Retry-After` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: u32,
    pub retry_after_secs: u64,
    pub reset_secs: u64,
}

/// Rate limiting over the shared store, falling back to this instance's memory when the store
/// does not answer (limits then hold per instance instead of globally).
#[derive(Clone)]
pub struct RateLimiter {
    settings: Arc<AbuseSettings>,
    store: Arc<dyn Store>,
    fallback: Arc<MemoryStore>,
}

fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

impl RateLimiter {
    pub fn new(settings: Arc<AbuseSettings>, store: Arc<dyn Store>) -> Self {
        Self {
            settings,
            store,
            fallback: Arc::new(MemoryStore::new()),
        }
    }

    fn quota(&self, class: LimitClass) -> Quota {
        match class {
            LimitClass::TokenIp => self.settings.token_ip,
            LimitClass::Login => self.settings.login,
            LimitClass::Client => self.settings.client,
            LimitClass::RegisterIp => self.settings.register_ip,
        }
    }

    /// Counts one request of `class` for `subject`; `Err` when over the limit.
    pub async fn check(&self, class: LimitClass, subject: &str) -> Result<(), Limited> {
        if !self.settings.rate_limit_enabled {
            return Ok(());
        }
        let quota = self.quota(class);
        // Subjects can be chosen by the caller (account names): long ones are digested so a
        // key stays small whatever was sent.
        let subject = subject.to_lowercase();
        let subject = if subject.len() > 64 {
            crate::crypto::secret_digest(&subject)
        } else {
            subject
        };
        let key = format!("{}:{subject}", class.key());
        let decision: RateDecision = match self.store.rate_limit(&key, quota).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "rate limiting falls back to this instance's memory");
                match self.fallback.rate_limit(&key, quota).await {
                    Ok(d) => d,
                    Err(_) => return Ok(()),
                }
            }
        };
        if decision.allowed {
            Ok(())
        } else {
            Err(Limited {
                limit: quota.limit,
                retry_after_secs: ceil_secs(decision.retry_after_ms).max(1),
                reset_secs: ceil_secs(decision.reset_ms).max(1),
            })
        }
    }
}

/// The client's address: the socket peer, or — when the peer is a trusted proxy — the
/// nearest untrusted address in `X-Forwarded-For` (or `Forwarded: for=`), read from the
/// right so that a client cannot choose its own address by sending the header itself.
pub fn client_ip(
    peer: Option<IpAddr>,
    headers: &poem::http::HeaderMap,
    trusted: &[ipnet::IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else { continue };
        hops.extend(
            text.split(',')
                .filter_map(|h| h.trim().parse::<IpAddr>().ok()),
        );
    }
    if hops.is_empty() {
        for value in headers.get_all("forwarded") {
            let Ok(text) = value.to_str() else { continue };
            for element in text.split(',') {
                for pair in element.split(';') {
                    if let Some((k, v)) = pair.trim().split_once('=')
                        && k.trim().eq_ignore_ascii_case("for")
                    {
                        let v = v.trim().trim_matches('"');
                        let v = v.trim_start_matches('[');
                        let host = match v.find(']') {
                            Some(end) => v.get(..end).unwrap_or(v),
                            None => v
                                .rsplit_once(':')
                                .filter(|(h, _)| !h.contains(':'))
                                .map_or(v, |(h, _)| h),
                        };
                        if let Ok(ip) = host.parse::<IpAddr>() {
                            hops.push(ip);
                        }
                    }
                }
            }
        }
    }
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .copied()
            .or_else(|| hops.first().copied())
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::{HeaderMap, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let xff = headers(&[("x-forwarded-for", "198.51.100.7, 10.0.0.3")]);
        assert_eq!(
            client_ip(Some(stranger), &xff, &trusted),
            Some(stranger),
            "untrusted peer"
        );
        assert_eq!(
            client_ip(Some(proxy), &xff, &trusted),
            Some("198.51.100.7".parse().unwrap()),
            "rightmost untrusted hop"
        );
        // A client cannot pick its address by prepending to the header.
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7")]);
        assert_eq!(
            client_ip(Some(proxy), &spoof, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let fwd = headers(&[(
            "forwarded",
            "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5",
        )]);
        assert_eq!(
            client_ip(Some(proxy), &fwd, &trusted),
            Some("2001:db8::1".parse().unwrap())
        );
        let fwd4 = headers(&[("forwarded", "for=192.0.2.60:1234")]);
        assert_eq!(
            client_ip(Some(proxy), &fwd4, &trusted),
            Some("192.0.2.60".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &headers(&[]), &trusted),
            Some(proxy),
            "no header"
        );
        assert_eq!(
            client_ip(
                Some(proxy),
                &headers(&[("x-forwarded-for", "garbage")]),
                &trusted
            ),
            Some(proxy)
        );
    }
}
