//! The `observability` section: where the Prometheus metrics are served, whether grant
//! metrics may carry client ids, and the shape of the log lines.

use std::net::SocketAddr;

use super::{ConfigError, RawSettings, invalid};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line, with the fields of the enclosing spans (the request id).
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservabilitySettings {
    /// `PORTCULLIS_METRICS_LISTEN`: a separate plain-HTTP listener that alone serves
    /// `/metrics` (the main listener then answers 404 there). `None`: `/metrics` is on the
    /// main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// `PORTCULLIS_METRICS_CLIENT_LABELS`: the grant metrics carry the authenticated client's
    /// id as a label. Off by default: one series per client can be many.
    pub metrics_client_labels: bool,
    /// `PORTCULLIS_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
}

impl ObservabilitySettings {
    /// `listen` is the main listener's address (`PORTCULLIS_LISTEN`), which the metrics
    /// listener must not take.
    pub fn from_raw(raw: &RawSettings, listen: SocketAddr) -> Result<Self, ConfigError> {
        Ok(Self {
            metrics_listen: metrics_listen(raw.metrics_listen.as_deref(), listen)?,
            metrics_client_labels: raw.metrics_client_labels,
            log_format: log_format(&raw.log_format)?,
        })
    }
}

fn metrics_listen(
    text: Option<&str>,
    listen: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    const SETTING: &str = "PORTCULLIS_METRICS_LISTEN";
    // An empty value (e.g. `PORTCULLIS_METRICS_LISTEN=` from a template) means unset.
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let addr: SocketAddr = text.parse().map_err(|_| {
        invalid(
            SETTING,
            format!(
                "`{}` is not an address:port (e.g. 127.0.0.1:9464)",
                text.escape_debug()
            ),
        )
    })?;
    if addr.port() != 0 && addr.port() == listen.port() {
        return Err(invalid(
            SETTING,
            format!(
                "port {} is already PORTCULLIS_LISTEN's; choose another port",
                addr.port()
            ),
        ));
    }
    Ok(Some(addr))
}

fn log_format(text: &str) -> Result<LogFormat, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(invalid(
            "PORTCULLIS_LOG_FORMAT",
            format!("`{}` is neither `text` nor `json`", text.escape_debug()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(adjust: impl FnOnce(&mut RawSettings)) -> Result<ObservabilitySettings, String> {
        let mut raw = RawSettings::default();
        adjust(&mut raw);
        raw.validate()
            .map(|s| s.observability)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn metrics_stay_on_the_main_listener_and_logs_are_text_by_default() {
        assert_eq!(
            section(|_| {}).unwrap(),
            ObservabilitySettings {
                metrics_listen: None,
                metrics_client_labels: false,
                log_format: LogFormat::Text,
            }
        );
        assert_eq!(
            section(|r| r.metrics_listen = Some(String::new()))
                .unwrap()
                .metrics_listen,
            None,
            "an empty value means unset"
        );
    }

    #[test]
    fn the_metrics_listener_is_an_address_of_its_own() {
        let s = section(|r| r.metrics_listen = Some("127.0.0.1:9464".into())).unwrap();
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let s = section(|r| r.metrics_listen = Some("[::1]:9464".into())).unwrap();
        assert_eq!(s.metrics_listen, Some("[::1]:9464".parse().unwrap()));
        for bad in [
            "9464",
            "localhost:9464",
            "127.0.0.1",
            "127.0.0.1:99999",
            "http://x",
        ] {
            let err = section(|r| r.metrics_listen = Some(bad.into())).unwrap_err();
            assert!(err.contains("PORTCULLIS_METRICS_LISTEN"), "{bad}: {err}");
        }
        // The main listener's port (default 127.0.0.1:8080) is taken, on any address.
        for taken in ["127.0.0.1:8080", "0.0.0.0:8080"] {
            let err = section(|r| r.metrics_listen = Some(taken.into())).unwrap_err();
            assert!(
                err.contains("PORTCULLIS_METRICS_LISTEN") && err.contains("PORTCULLIS_LISTEN"),
                "{taken}: {err}"
            );
        }
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(
            section(|r| r.log_format = "JSON".into())
                .unwrap()
                .log_format,
            LogFormat::Json
        );
        assert_eq!(
            section(|r| r.log_format = "text".into())
                .unwrap()
                .log_format,
            LogFormat::Text
        );
        for bad in ["", "logfmt", "yaml"] {
            let err = section(|r| r.log_format = bad.into()).unwrap_err();
            assert!(err.contains("PORTCULLIS_LOG_FORMAT"), "{bad}: {err}");
        }
    }

    #[test]
    fn client_labels_are_opt_in() {
        assert!(
            section(|r| r.metrics_client_labels = true)
                .unwrap()
                .metrics_client_labels
        );
    }
}
