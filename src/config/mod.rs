//! Configuration: defaults, then an optional TOML file (`PORTCULLIS_CONFIG` or `--config`),
//! then `PORTCULLIS_*` environment variables. Raw settings are turned into validated
//! [`Settings`] once at start; every error names the setting at fault.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::CLOCK_SKEW;
use crate::store::Quota;

/// The embedded default database: a SQLite file under data/, created on first run.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/portcullis.db?mode=rwc";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Read(#[from] Box<figment::Error>),
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// A duration given as whole seconds (`900`) or with a unit (`90s`, `15m`, `12h`, `30d`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DurationSetting {
    Seconds(u64),
    Text(String),
}

impl DurationSetting {
    fn parse(&self, setting: &'static str) -> Result<Duration, ConfigError> {
        let duration = self.parse_allowing_zero(setting)?;
        if duration.is_zero() {
            return Err(invalid(setting, "must be greater than zero"));
        }
        Ok(duration)
    }

    /// Like [`Self::parse`], for settings where zero means "off".
    fn parse_allowing_zero(&self, setting: &'static str) -> Result<Duration, ConfigError> {
        let seconds = match self {
            Self::Seconds(s) => *s,
            Self::Text(text) => parse_duration(text).ok_or_else(|| {
                invalid(
                    setting,
                    format!("`{text}` is not a duration (use e.g. 900, 90s, 15m, 12h or 30d)"),
                )
            })?,
        };
        Ok(Duration::from_secs(seconds))
    }
}

/// The longest refresh reuse window accepted: long enough for a client's retry after a lost
/// answer, short enough that a replayed answer stays a retry (the same bound as Amazon
/// Cognito's retry grace period).
pub const MAX_REFRESH_REUSE_INTERVAL: Duration = Duration::from_secs(60);

fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Settings as written by the operator, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub listen: String,
    pub issuer: String,
    pub audience: Option<String>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub access_token_ttl: DurationSetting,
    pub refresh_token_ttl: DurationSetting,
    pub refresh_reuse_interval: DurationSetting,
    pub bcrypt_cost: u32,
    pub bcrypt_max_concurrency: Option<usize>,
    pub keys_dir: PathBuf,
    pub master_key: Option<String>,
    pub seed_public_client: Option<bool>,
    pub jwks_max_age: DurationSetting,
    pub key_rotation_interval: DurationSetting,
    pub key_reload_interval: DurationSetting,
    pub key_publication_margin: DurationSetting,
    pub redis_prefix: String,
    pub log: String,
    pub rate_limit_enabled: bool,
    pub trusted_proxies: String,
    pub rate_limit_token_ip: String,
    pub rate_limit_login: String,
    pub rate_limit_client: String,
    pub rate_limit_register_ip: String,
    pub lockout_threshold: u32,
    pub lockout_ip_threshold: u32,
    pub lockout_base: DurationSetting,
    pub lockout_max: DurationSetting,
    pub bcrypt_max_queue: usize,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS itself.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub tls_key: Option<PathBuf>,
    /// How often the two files are re-read (a renewed certificate needs no restart).
    pub tls_reload_interval: DurationSetting,
    /// `max-age` of `Strict-Transport-Security`; `0` tells browsers to forget the policy.
    pub hsts_max_age: DurationSetting,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            issuer: "http://localhost:8080".into(),
            audience: None,
            database_url: None,
            redis_url: None,
            access_token_ttl: DurationSetting::Text("15m".into()),
            refresh_token_ttl: DurationSetting::Text("30d".into()),
            refresh_reuse_interval: DurationSetting::Seconds(0),
            bcrypt_cost: 12,
            bcrypt_max_concurrency: None,
            keys_dir: PathBuf::from("keys"),
            master_key: None,
            seed_public_client: None,
            jwks_max_age: DurationSetting::Text("5m".into()),
            key_rotation_interval: DurationSetting::Text("30d".into()),
            key_reload_interval: DurationSetting::Text("5s".into()),
            key_publication_margin: DurationSetting::Text("5m".into()),
            redis_prefix: "portcullis:".into(),
            log: "info".into(),
            rate_limit_enabled: true,
            trusted_proxies: String::new(),
            rate_limit_token_ip: "300/1m".into(),
            rate_limit_login: "20/1m".into(),
            rate_limit_client: "6000/1m".into(),
            rate_limit_register_ip: "20/1h".into(),
            lockout_threshold: 10,
            lockout_ip_threshold: 5,
            lockout_base: DurationSetting::Text("1m".into()),
            lockout_max: DurationSetting::Text("1h".into()),
            bcrypt_max_queue: 64,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: DurationSetting::Text("1m".into()),
            hsts_max_age: DurationSetting::Text("365d".into()),
        }
    }
}

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// `PORTCULLIS_MASTER_KEY`: 32 bytes, base64.
    Given(SecretString),
    /// Generated on first run into `<keys_dir>/master.key` (mode 0600).
    File(PathBuf),
}

/// Validated settings: every value here has been checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Public base URL; `iss` of every token and the base of every advertised endpoint.
    pub issuer: String,
    /// `aud` of access tokens (defaults to the issuer).
    pub audience: String,
    pub database_url: String,
    pub redis_url: Option<SecretString>,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// How long after a rotation the same client may present the rotated refresh token again
    /// and get the same answer; zero is strict rotation (any reuse revokes the sign-in).
    pub refresh_reuse_interval: Duration,
    pub bcrypt_cost: u32,
    pub bcrypt_max_concurrency: usize,
    pub keys_dir: PathBuf,
    pub master_key: MasterKeySource,
    pub seed_public_client: bool,
    pub jwks_max_age: Duration,
    pub keys: KeySettings,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
    pub log: String,
    pub abuse: AbuseSettings,
    /// TLS termination in the server (`PORTCULLIS_TLS_CERT` / `PORTCULLIS_TLS_KEY`).
    pub tls: Option<TlsSettings>,
    /// `max-age` of `Strict-Transport-Security`, sent on every response when clients reach
    /// the server over HTTPS: it terminates TLS itself, or the issuer is an `https://` URL
    /// (a TLS-terminating proxy in front). `None`: not sent.
    pub hsts_max_age: Option<Duration>,
}

/// TLS termination in the server: where the PEM files are and how often they are re-read.
/// The files themselves are read when the server starts, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain (`PORTCULLIS_TLS_CERT`).
    pub cert_path: PathBuf,
    /// PEM private key of the certificate (`PORTCULLIS_TLS_KEY`).
    pub key_path: PathBuf,
    pub reload_interval: Duration,
}

/// Signing-key lifecycle timings (see `keys` and README, "Signing keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySettings {
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

/// Rate limits, lockout and the sign-in queue (see `abuse`).
#[derive(Debug, Clone)]
pub struct AbuseSettings {
    pub rate_limit_enabled: bool,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `/oauth/token` per client IP.
    pub token_ip: Quota,
    /// Password sign-ins per account (username or email as given).
    pub login: Quota,
    /// Token, revocation and introspection requests per authenticated client.
    pub client: Quota,
    /// Registrations per client IP.
    pub register_ip: Quota,
    /// Consecutive failed sign-ins that lock an account.
    pub lockout_threshold: u32,
    /// Consecutive failed sign-ins from one IP that block that IP for that account.
    pub lockout_ip_threshold: u32,
    /// First lock period; each further lock within a day doubles it, up to `lockout_max`.
    pub lockout_base: Duration,
    pub lockout_max: Duration,
    /// Sign-ins that may wait for a bcrypt slot; beyond that, an immediate 503.
    pub bcrypt_max_queue: usize,
}

impl RawSettings {
    /// Layers defaults, the optional TOML file and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawSettings::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "PORTCULLIS_CONFIG",
                    format!("file {} does not exist", path.display()),
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        // PORTCULLIS_CONFIG names the file itself; PORTCULLIS_TEST_* belong to the test suite.
        let env = Env::prefixed("PORTCULLIS_").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            key != "config" && !key.starts_with("test_")
        });
        figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Read(Box::new(e)))
    }

    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            invalid(
                "PORTCULLIS_LISTEN",
                format!("`{}` is not an address:port", self.listen),
            )
        })?;
        let issuer = validate_issuer(&self.issuer)?;
        let default_database = self.database_url.is_none();
        let audience = match self.audience {
            Some(a) if a.trim().is_empty() => {
                return Err(invalid("PORTCULLIS_AUDIENCE", "must not be empty"));
            }
            Some(a) => a,
            None => issuer.clone(),
        };
        let database_url = match self.database_url {
            None => DEFAULT_DATABASE_URL.to_string(),
            Some(url) if url.starts_with("sqlite:") || url.starts_with("postgres") => url,
            Some(_) => {
                return Err(invalid(
                    "PORTCULLIS_DATABASE_URL",
                    "must start with sqlite: or postgres:// (or postgresql://)",
                ));
            }
        };
        let redis_url = match self.redis_url {
            None => None,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Some(SecretString::from(url))
            }
            Some(_) => {
                return Err(invalid(
                    "PORTCULLIS_REDIS_URL",
                    "must start with redis:// or rediss://",
                ));
            }
        };
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(invalid(
                "PORTCULLIS_BCRYPT_COST",
                format!("{} is outside 4..=31", self.bcrypt_cost),
            ));
        }
        let bcrypt_max_concurrency = match self.bcrypt_max_concurrency {
            Some(0) => {
                return Err(invalid(
                    "PORTCULLIS_BCRYPT_MAX_CONCURRENCY",
                    "must be at least 1",
                ));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let master_key = match self.master_key {
            Some(text) => {
                decode_master_key(&text)?;
                MasterKeySource::Given(SecretString::from(text))
            }
            None => MasterKeySource::File(self.keys_dir.join("master.key")),
        };
        let access_token_ttl = self.access_token_ttl.parse("PORTCULLIS_ACCESS_TOKEN_TTL")?;
        let jwks_max_age = self.jwks_max_age.parse("PORTCULLIS_JWKS_MAX_AGE")?;
        let keys = KeySettings {
            rotation_interval: self
                .key_rotation_interval
                .parse("PORTCULLIS_KEY_ROTATION_INTERVAL")?,
            reload_interval: self
                .key_reload_interval
                .parse("PORTCULLIS_KEY_RELOAD_INTERVAL")?,
            publication_margin: self
                .key_publication_margin
                .parse("PORTCULLIS_KEY_PUBLICATION_MARGIN")?,
            jwks_max_age,
            token_lifetime: access_token_ttl,
        };
        if keys.reload_interval > Duration::from_secs(300) {
            return Err(invalid(
                "PORTCULLIS_KEY_RELOAD_INTERVAL",
                "must be at most 5m: it bounds how long other instances take to see a rotation",
            ));
        }
        if keys.rotation_interval <= keys.publication_lead() {
            return Err(invalid(
                "PORTCULLIS_KEY_ROTATION_INTERVAL",
                format!(
                    "must be longer than the publication lead time of {} s \
                     (PORTCULLIS_JWKS_MAX_AGE + PORTCULLIS_KEY_RELOAD_INTERVAL + \
                     PORTCULLIS_KEY_PUBLICATION_MARGIN), or the next key could never be \
                     published long enough before it signs",
                    keys.publication_lead().as_secs()
                ),
            ));
        }
        if self.redis_prefix.is_empty()
            || self.redis_prefix.len() > 64
            || !self.redis_prefix.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(invalid(
                "PORTCULLIS_REDIS_PREFIX",
                "must be 1 to 64 printable ASCII characters without spaces",
            ));
        }
        let refresh_reuse_interval =
            refresh_reuse_interval(&self.refresh_reuse_interval, access_token_ttl)?;
        // Seeding a public password-grant client is an embedded-default convenience.
        let seed_public_client = self.seed_public_client.unwrap_or(default_database);
        let tls = validate_tls(
            self.tls_cert,
            self.tls_key,
            self.tls_reload_interval
                .parse("PORTCULLIS_TLS_RELOAD_INTERVAL")?,
        )?;
        let hsts_max_age = self
            .hsts_max_age
            .parse_allowing_zero("PORTCULLIS_HSTS_MAX_AGE")?;
        let https_issuer = url::Url::parse(&issuer).is_ok_and(|u| u.scheme() == "https");
        let hsts_max_age = (tls.is_some() || https_issuer).then_some(hsts_max_age);
        Ok(Settings {
            listen,
            issuer,
            audience,
            database_url,
            redis_url,
            access_token_ttl,
            refresh_token_ttl: self
                .refresh_token_ttl
                .parse("PORTCULLIS_REFRESH_TOKEN_TTL")?,
            refresh_reuse_interval,
            bcrypt_cost: self.bcrypt_cost,
            bcrypt_max_concurrency,
            keys_dir: self.keys_dir,
            master_key,
            seed_public_client,
            jwks_max_age,
            keys,
            redis_prefix: self.redis_prefix,
            log: self.log,
            abuse: AbuseSettings {
                rate_limit_enabled: self.rate_limit_enabled,
                trusted_proxies: parse_proxies(&self.trusted_proxies)?,
                token_ip: parse_quota(&self.rate_limit_token_ip, "PORTCULLIS_RATE_LIMIT_TOKEN_IP")?,
                login: parse_quota(&self.rate_limit_login, "PORTCULLIS_RATE_LIMIT_LOGIN")?,
                client: parse_quota(&self.rate_limit_client, "PORTCULLIS_RATE_LIMIT_CLIENT")?,
                register_ip: parse_quota(
                    &self.rate_limit_register_ip,
                    "PORTCULLIS_RATE_LIMIT_REGISTER_IP",
                )?,
                lockout_threshold: positive(
                    self.lockout_threshold,
                    "PORTCULLIS_LOCKOUT_THRESHOLD",
                )?,
                lockout_ip_threshold: positive(
                    self.lockout_ip_threshold,
                    "PORTCULLIS_LOCKOUT_IP_THRESHOLD",
                )?,
                lockout_base: self.lockout_base.parse("PORTCULLIS_LOCKOUT_BASE")?,
                lockout_max: self.lockout_max.parse("PORTCULLIS_LOCKOUT_MAX")?,
                bcrypt_max_queue: self.bcrypt_max_queue,
            },
            tls,
            hsts_max_age,
        })
    }
}

impl Settings {
    /// Loads and validates in one step.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        RawSettings::load(file)?.validate()
    }

    pub fn master_key_text(&self) -> Option<&str> {
        match &self.master_key {
            MasterKeySource::Given(s) => Some(s.expose_secret()),
            MasterKeySource::File(_) => None,
        }
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

fn positive(n: u32, setting: &'static str) -> Result<u32, ConfigError> {
    if n == 0 {
        return Err(invalid(setting, "must be at least 1"));
    }
    Ok(n)
}

/// A quota written `N/period`, e.g. `300/1m` or `20/1h`.
fn parse_quota(text: &str, setting: &'static str) -> Result<Quota, ConfigError> {
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
fn parse_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
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

/// Both files or neither. Only the paths are kept: the files are read and checked when the
/// server starts (`http::tls`).
fn validate_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    reload_interval: Duration,
) -> Result<Option<TlsSettings>, ConfigError> {
    // An empty value (e.g. `PORTCULLIS_TLS_CERT=` from a template) means unset.
    let given = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    match (given(cert), given(key)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            "PORTCULLIS_TLS_KEY",
            "must be set together with PORTCULLIS_TLS_CERT",
        )),
        (None, Some(_)) => Err(invalid(
            "PORTCULLIS_TLS_CERT",
            "must be set together with PORTCULLIS_TLS_KEY",
        )),
        (Some(cert_path), Some(key_path)) => Ok(Some(TlsSettings {
            cert_path,
            key_path,
            reload_interval,
        })),
    }
}

fn validate_issuer(text: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(text)
        .map_err(|e| invalid("PORTCULLIS_ISSUER", format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("PORTCULLIS_ISSUER", "must be an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "PORTCULLIS_ISSUER",
            "must not have a query or fragment (RFC 8414 §2)",
        ));
    }
    Ok(text.trim_end_matches('/').to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_seconds_and_units() {
        assert_eq!(parse_duration("900"), Some(900));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("15m"), Some(900));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("30d"), Some(2_592_000));
        assert_eq!(parse_duration("15 m"), Some(900));
        for bad in ["", "m", "15x", "-5", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn quotas_and_proxies() {
        let q = parse_quota("300/1m", "X").unwrap();
        assert_eq!((q.limit, q.period), (300, Duration::from_secs(60)));
        for bad in ["", "300", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(parse_quota(bad, "X").is_err(), "{bad}");
        }
        let p = parse_proxies("10.0.0.0/8, 127.0.0.1,::1").unwrap();
        assert_eq!(p.len(), 3);
        assert!(p[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_proxies("").unwrap().is_empty());
        assert!(parse_proxies("10.0.0.0/33").is_err());
        assert!(parse_proxies("proxy.local").is_err());
    }

    #[test]
    fn refresh_reuse_interval_allows_zero_and_is_bounded() {
        let window = |raw: DurationSetting| {
            RawSettings {
                refresh_reuse_interval: raw,
                access_token_ttl: DurationSetting::Seconds(30),
                ..Default::default()
            }
            .validate()
            .map(|s| s.refresh_reuse_interval)
        };
        assert_eq!(window(DurationSetting::Seconds(0)).unwrap(), Duration::ZERO);
        assert_eq!(
            window(DurationSetting::Text("0s".into())).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            window(DurationSetting::Text("10s".into())).unwrap(),
            Duration::from_secs(10)
        );
        for bad in [
            DurationSetting::Seconds(30),
            DurationSetting::Text("2m".into()),
            DurationSetting::Text("soon".into()),
        ] {
            let err = window(bad).unwrap_err().to_string();
            assert!(err.contains("PORTCULLIS_REFRESH_REUSE_INTERVAL"), "{err}");
        }
        let long_access = RawSettings {
            refresh_reuse_interval: DurationSetting::Seconds(61),
            ..Default::default()
        };
        let err = long_access.validate().unwrap_err().to_string();
        assert!(err.contains("maximum of 60s"), "{err}");
        // Other durations still refuse zero.
        let zero_ttl = RawSettings {
            access_token_ttl: DurationSetting::Seconds(0),
            ..Default::default()
        };
        assert!(zero_ttl.validate().is_err());
    }

    #[test]
    fn defaults_validate() {
        let s = RawSettings::default().validate().unwrap();
        assert_eq!(s.refresh_reuse_interval, Duration::ZERO);
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.audience, "http://localhost:8080");
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert!(s.tls.is_none());
        assert_eq!(s.hsts_max_age, None, "plain http issuer");
    }

    #[test]
    fn tls_paths_are_kept_not_read() {
        // The files are read when the server starts (`http::tls`), not by the configuration.
        let s = RawSettings {
            tls_cert: Some("/no/such/cert.pem".into()),
            tls_key: Some("/no/such/key.pem".into()),
            tls_reload_interval: DurationSetting::Text("2m".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            s.tls,
            Some(TlsSettings {
                cert_path: "/no/such/cert.pem".into(),
                key_path: "/no/such/key.pem".into(),
                reload_interval: Duration::from_secs(120),
            })
        );
        assert_eq!(s.hsts_max_age, Some(Duration::from_secs(365 * 86_400)));
    }

    #[test]
    fn hsts_follows_an_https_issuer() {
        let s = RawSettings {
            issuer: "HTTPS://auth.example.com".into(),
            hsts_max_age: DurationSetting::Seconds(0),
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(s.hsts_max_age, Some(Duration::ZERO));
    }

    #[test]
    fn key_timings_are_checked_against_each_other() {
        let raw = RawSettings::default().validate().unwrap();
        // Defaults: 5 min max-age + 5 s reload + 5 min margin.
        assert_eq!(raw.keys.publication_lead(), Duration::from_secs(605));
        assert_eq!(
            raw.keys.retired_publication(),
            Duration::from_secs(900 + 5 + 5)
        );
        let cases: Vec<(RawSettings, &str)> = vec![
            (
                RawSettings {
                    key_rotation_interval: DurationSetting::Text("10m".into()),
                    ..Default::default()
                },
                "PORTCULLIS_KEY_ROTATION_INTERVAL",
            ),
            (
                RawSettings {
                    key_reload_interval: DurationSetting::Text("6m".into()),
                    ..Default::default()
                },
                "PORTCULLIS_KEY_RELOAD_INTERVAL",
            ),
            (
                RawSettings {
                    key_publication_margin: DurationSetting::Seconds(0),
                    ..Default::default()
                },
                "PORTCULLIS_KEY_PUBLICATION_MARGIN",
            ),
            (
                RawSettings {
                    redis_prefix: "has space".into(),
                    ..Default::default()
                },
                "PORTCULLIS_REDIS_PREFIX",
            ),
        ];
        for (raw, setting) in cases {
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.contains(setting), "{err} should name {setting}");
        }
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(RawSettings, &str)> = vec![
            (
                RawSettings {
                    listen: "nope".into(),
                    ..Default::default()
                },
                "PORTCULLIS_LISTEN",
            ),
            (
                RawSettings {
                    issuer: "ftp://x".into(),
                    ..Default::default()
                },
                "PORTCULLIS_ISSUER",
            ),
            (
                RawSettings {
                    bcrypt_cost: 3,
                    ..Default::default()
                },
                "PORTCULLIS_BCRYPT_COST",
            ),
            (
                RawSettings {
                    master_key: Some("c2hvcnQ=".into()),
                    ..Default::default()
                },
                "PORTCULLIS_MASTER_KEY",
            ),
            (
                RawSettings {
                    access_token_ttl: DurationSetting::Text("soon".into()),
                    ..Default::default()
                },
                "PORTCULLIS_ACCESS_TOKEN_TTL",
            ),
            (
                RawSettings {
                    refresh_token_ttl: DurationSetting::Seconds(0),
                    ..Default::default()
                },
                "PORTCULLIS_REFRESH_TOKEN_TTL",
            ),
            (
                RawSettings {
                    database_url: Some("mysql://x".into()),
                    ..Default::default()
                },
                "PORTCULLIS_DATABASE_URL",
            ),
            (
                RawSettings {
                    redis_url: Some("http://x".into()),
                    ..Default::default()
                },
                "PORTCULLIS_REDIS_URL",
            ),
            (
                RawSettings {
                    tls_cert: Some("cert.pem".into()),
                    ..Default::default()
                },
                "PORTCULLIS_TLS_KEY",
            ),
            (
                RawSettings {
                    hsts_max_age: DurationSetting::Text("a year".into()),
                    ..Default::default()
                },
                "PORTCULLIS_HSTS_MAX_AGE",
            ),
        ];
        for (raw, setting) in cases {
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.contains(setting), "{err} should name {setting}");
        }
    }
}
