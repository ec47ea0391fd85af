//! The `server` section: where Portcullis listens, the public issuer URL, TLS termination
//! (paths only: `http::tls` reads the files when the server starts) and HSTS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, RawSettings, invalid};

/// How clients reach the server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Public base URL; `iss` of every token and the base of every advertised endpoint.
    pub issuer: String,
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

impl ServerSettings {
    pub fn from_raw(raw: &RawSettings) -> Result<Self, ConfigError> {
        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            invalid(
                "PORTCULLIS_LISTEN",
                format!("`{}` is not an address:port", raw.listen),
            )
        })?;
        let issuer = validate_issuer(&raw.issuer)?;
        let tls = validate_tls(
            raw.tls_cert.clone(),
            raw.tls_key.clone(),
            raw.tls_reload_interval
                .parse("PORTCULLIS_TLS_RELOAD_INTERVAL")?,
        )?;
        let hsts_max_age = raw
            .hsts_max_age
            .parse_allowing_zero("PORTCULLIS_HSTS_MAX_AGE")?;
        let https_issuer = url::Url::parse(&issuer).is_ok_and(|u| u.scheme() == "https");
        let hsts_max_age = (tls.is_some() || https_issuer).then_some(hsts_max_age);
        Ok(Self {
            listen,
            issuer,
            tls,
            hsts_max_age,
        })
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
