//! Configuration: defaults, then an optional TOML file (`PORTCULLIS_CONFIG` or `--config`),
//! then `PORTCULLIS_*` environment variables. The flat [`RawSettings`] (one field per
//! setting, as the operator writes them) are turned into validated [`Settings`] once at
//! start: one typed section per subsystem, each checking its own settings (one file each),
//! and the few rules that link sections in [`RawSettings::validate`]. Every error names the
//! setting at fault. Nothing here reads other files or knows about HTTP: the TLS certificate
//! is read by `http::tls` when the server starts.

mod abuse;
mod accounts;
mod alerts;
mod database;
mod keys;
mod mail;
mod observability;
mod passwords;
mod server;
mod sessions;
mod store;
mod tokens;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use abuse::{AbuseSettings, ForwardedHeader};
pub use accounts::AccountSettings;
pub use alerts::AlertSettings;
pub use database::{DEFAULT_DATABASE_URL, DatabaseSettings};
pub use keys::{KeySettings, KeyTimings, MasterKeySource, decode_master_key};
pub use mail::{MailSettings, SmtpCredentials, SmtpSecurity, SmtpSettings};
pub use observability::{LogFormat, ObservabilitySettings};
pub use passwords::PasswordSettings;
pub use server::{ServerSettings, TlsSettings};
pub use sessions::SessionSettings;
pub use store::StoreSettings;
pub use tokens::{MAX_REFRESH_REUSE_INTERVAL, TokenSettings};

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
    /// `x-forwarded-for` or `forwarded`: the one header trusted proxies name the client in.
    pub forwarded_header: String,
    pub rate_limit_token_ip: String,
    pub rate_limit_login: String,
    pub rate_limit_client: String,
    pub rate_limit_register_ip: String,
    pub rate_limit_recovery_ip: String,
    pub rate_limit_recovery_address: String,
    /// Whether an account must confirm its address before it may sign in.
    pub require_verified_email: bool,
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
    /// A browser session unused this long needs a new sign-in.
    pub session_idle_timeout: DurationSetting,
    /// A browser session ends this long after its sign-in.
    pub session_lifetime: DurationSetting,
    /// `max-age` of `Strict-Transport-Security`; `0` tells browsers to forget the policy.
    pub hsts_max_age: DurationSetting,
    /// Outgoing mail server (`smtp://…`, `smtps://…`); none: `.eml` files in `mail_dir`.
    pub smtp_url: Option<String>,
    /// The sender of every message (`Name <address>`).
    pub mail_from: Option<String>,
    /// Where messages are written when no SMTP server is configured.
    pub mail_dir: PathBuf,
    /// Credential stuffing: failed sign-ins on N accounts from one address block per period.
    pub alert_credential_stuffing: String,
    /// Brute force: failed sign-ins on one account from N addresses per period.
    pub alert_brute_force: String,
    /// Answers 500 and store outages per period.
    pub alert_server_errors: String,
    /// One alert per rule and subject within this window.
    pub alert_dedup_window: DurationSetting,
    /// How long a key may sign past its scheduled rotation before an alert.
    pub alert_rotation_grace: DurationSetting,
    /// Alerts are also mailed to this address.
    pub alert_email: Option<String>,
    /// Whether webhook targets may be private or loopback addresses.
    pub webhook_allow_private: bool,
    /// A separate listener (`address:port`) that alone serves `/metrics`.
    pub metrics_listen: Option<String>,
    /// Whether grant metrics carry the client id as a label.
    pub metrics_client_labels: bool,
    /// `text` or `json` log lines.
    pub log_format: String,
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
            forwarded_header: ForwardedHeader::default().name().into(),
            rate_limit_token_ip: "300/1m".into(),
            rate_limit_login: "20/1m".into(),
            rate_limit_client: "6000/1m".into(),
            rate_limit_register_ip: "20/1h".into(),
            rate_limit_recovery_ip: "20/1h".into(),
            rate_limit_recovery_address: "5/1h".into(),
            require_verified_email: false,
            lockout_threshold: 10,
            lockout_ip_threshold: 5,
            lockout_base: DurationSetting::Text("1m".into()),
            lockout_max: DurationSetting::Text("1h".into()),
            bcrypt_max_queue: 64,
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: DurationSetting::Text("1m".into()),
            session_idle_timeout: DurationSetting::Text("1h".into()),
            session_lifetime: DurationSetting::Text("12h".into()),
            hsts_max_age: DurationSetting::Text("365d".into()),
            smtp_url: None,
            mail_from: None,
            mail_dir: PathBuf::from("data/mail"),
            alert_credential_stuffing: "10/10m".into(),
            alert_brute_force: "5/10m".into(),
            alert_server_errors: "20/1m".into(),
            alert_dedup_window: DurationSetting::Text("15m".into()),
            alert_rotation_grace: DurationSetting::Text("1h".into()),
            alert_email: None,
            webhook_allow_private: false,
            metrics_listen: None,
            metrics_client_labels: false,
            log_format: "text".into(),
        }
    }
}

/// Validated settings, one section per subsystem: every value here has been checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub store: StoreSettings,
    pub tokens: TokenSettings,
    pub keys: KeySettings,
    pub passwords: PasswordSettings,
    pub abuse: AbuseSettings,
    pub sessions: SessionSettings,
    pub mail: MailSettings,
    pub accounts: AccountSettings,
    pub alerts: AlertSettings,
    pub observability: ObservabilitySettings,
    /// Log filter, e.g. `info` or `portcullis=debug`.
    pub log: String,
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

    /// Validates each section, then links them. The rules that span sections live here and
    /// only here: the audience defaults to the issuer, the default mail sender is at the
    /// issuer's host, and signed tokens (whose lifetime the
    /// key timings need) live as long as access tokens. Rules within a section (the refresh
    /// reuse window against the access-token TTL, HSTS against TLS and the issuer, the key
    /// timings against each other) are checked by that section.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let server = ServerSettings::from_raw(&self)?;
        let tokens = TokenSettings::from_raw(&self, &server.issuer)?;
        let keys = KeySettings::from_raw(&self, tokens.access_token_ttl)?;
        Ok(Settings {
            database: DatabaseSettings::from_raw(&self)?,
            store: StoreSettings::from_raw(&self)?,
            passwords: PasswordSettings::from_raw(&self)?,
            abuse: AbuseSettings::from_raw(&self)?,
            sessions: SessionSettings::from_raw(&self)?,
            mail: MailSettings::from_raw(&self, &server.issuer)?,
            accounts: AccountSettings::from_raw(&self)?,
            alerts: AlertSettings::from_raw(&self, &server.issuer)?,
            observability: ObservabilitySettings::from_raw(&self, server.listen)?,
            server,
            tokens,
            keys,
            log: self.log,
        })
    }
}

impl Settings {
    /// Loads and validates in one step.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        RawSettings::load(file)?.validate()
    }
}

#[cfg(test)]
mod tests;
