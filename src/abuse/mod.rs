//! Abuse protection: rate limits per route class (shared through the store, so every instance
//! counts together), account lockout with growing back-off, and the client IP as seen through
//! trusted proxies only.

mod address;
mod lockout;

use std::sync::Arc;

pub use self::address::{client_ip, ip_bucket, ip_bucket_of};
pub use self::lockout::{Attempt, Lockout, LockoutState};
use crate::config::AbuseSettings;
pub use crate::config::ForwardedHeader;
use crate::store::{MemoryStore, Quota, Store};

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitClass {
    /// `/oauth/token` per client IP.
    TokenIp,
    /// Password sign-ins per account (user id, whichever name it was given by).
    Login,
    /// Token, revocation and introspection requests per authenticated client.
    Client,
    /// Registrations per client IP.
    RegisterIp,
    /// Password-reset and address-verification mails asked for, per client IP.
    RecoveryIp,
    /// Password-reset mails asked for, per address.
    RecoveryAddress,
}

impl LimitClass {
    fn key(self) -> &'static str {
        match self {
            Self::TokenIp => "token-ip",
            Self::Login => "login",
            Self::Client => "client",
            Self::RegisterIp => "register-ip",
            Self::RecoveryIp => "recovery-ip",
            Self::RecoveryAddress => "recovery-address",
        }
    }

    /// Whether the subject is a client address, counted by its [`ip_bucket`].
    fn per_ip(self) -> bool {
        matches!(self, Self::TokenIp | Self::RegisterIp | Self::RecoveryIp)
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
            LimitClass::RecoveryIp => self.settings.recovery_ip,
            LimitClass::RecoveryAddress => self.settings.recovery_address,
        }
    }

    /// Counts one request of `class` for `subject`; `Err` when over the limit.
    pub async fn check(&self, class: LimitClass, subject: &str) -> Result<(), Limited> {
        self.check_all(&[(class, subject)]).await
    }

    /// Counts one request against each budget in turn (`class` for `subject`), in one store
    /// call, stopping at the first that is over its limit (the budgets after it are not
    /// counted); `Err` with that budget's limit.
    pub async fn check_all(&self, budgets: &[(LimitClass, &str)]) -> Result<(), Limited> {
        if !self.settings.rate_limit_enabled || budgets.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, Quota)> = budgets
            .iter()
            .map(|&(class, subject)| (budget_key(class, subject), self.quota(class)))
            .collect();
        let keys: Vec<(&str, Quota)> = keys.iter().map(|(k, q)| (k.as_str(), *q)).collect();
        let decisions = match self.store.rate_limit_all(&keys).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "rate limiting falls back to this instance's memory");
                match self.fallback.rate_limit_all(&keys).await {
                    Ok(d) => d,
                    Err(_) => return Ok(()),
                }
            }
        };
        let refused = decisions
            .iter()
            .zip(budgets)
            .find(|(decision, _)| !decision.allowed);
        match refused {
            None => Ok(()),
            Some((decision, &(class, _))) => {
                crate::metrics::rate_limited(class.key());
                Err(Limited {
                    limit: self.quota(class).limit,
                    retry_after_secs: ceil_secs(decision.retry_after_ms).max(1),
                    reset_secs: ceil_secs(decision.reset_ms).max(1),
                })
            }
        }
    }
}

/// The store key of `class`'s budget for `subject`.
fn budget_key(class: LimitClass, subject: &str) -> String {
    // Subjects can be chosen by the caller (names without an account): long ones are
    // digested so a key stays small whatever was sent.
    let subject = if class.per_ip() {
        ip_bucket_of(subject)
    } else {
        subject.to_lowercase()
    };
    let subject = if subject.len() > 64 {
        crate::crypto::secret_digest(&subject)
    } else {
        subject
    };
    format!("{}:{subject}", class.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_64_shares_one_rate_budget() {
        let mut settings = crate::config::RawSettings::default()
            .validate()
            .unwrap()
            .abuse;
        settings.token_ip = Quota {
            limit: 2,
            period: std::time::Duration::from_secs(60),
        };
        let limits = RateLimiter::new(Arc::new(settings), Arc::new(MemoryStore::new()));
        let check = |ip: &'static str| limits.check(LimitClass::TokenIp, ip);
        assert!(check("2001:db8:1:2::a").await.is_ok());
        assert!(check("2001:db8:1:2::b").await.is_ok());
        assert!(
            check("2001:db8:1:2:ffff::c").await.is_err(),
            "a third address in the same /64 shares its budget"
        );
        assert!(check("2001:db8:1:3::a").await.is_ok(), "another /64");
        assert!(check("::ffff:192.0.2.1").await.is_ok());
        assert!(check("192.0.2.1").await.is_ok());
        assert!(
            check("192.0.2.1").await.is_err(),
            "an IPv4-mapped address counts as IPv4"
        );
    }
}
