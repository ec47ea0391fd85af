//! The `database` section: which database (the embedded SQLite file by default) and whether
//! the public password-grant client is seeded.

use super::{ConfigError, RawSettings, invalid};

/// The embedded default database: a SQLite file under data/, created on first run.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/portcullis.db?mode=rwc";

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `sqlite:…` or `postgres://…`; [`DEFAULT_DATABASE_URL`] when unset.
    pub url: String,
    /// No `PORTCULLIS_DATABASE_URL` was given: the embedded SQLite file is used.
    pub embedded_default: bool,
    /// Seed the public password-grant client at start (by default only with the embedded
    /// database, where it is a first-run convenience).
    pub seed_public_client: bool,
}

impl DatabaseSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let embedded_default = raw.database_url.is_none();
        let url = match &raw.database_url {
            None => DEFAULT_DATABASE_URL.to_string(),
            Some(url) if url.starts_with("sqlite:") || url.starts_with("postgres") => url.clone(),
            Some(_) => {
                return Err(invalid(
                    "PORTCULLIS_DATABASE_URL",
                    "must start with sqlite: or postgres:// (or postgresql://)",
                ));
            }
        };
        Ok(Self {
            url,
            embedded_default,
            seed_public_client: raw.seed_public_client.unwrap_or(embedded_default),
        })
    }
}
