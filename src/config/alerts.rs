//! The `alerts` section: the thresholds of the security alert rules (see `alerts`), where
//! alerts are mailed, and whether webhook targets may be private addresses.

use std::time::Duration;

use super::abuse::parse_quota;
use super::{ConfigError, RawSettings, invalid};
use crate::store::Quota;

#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Failed sign-ins on this many different accounts from one address block (/24, /64)
    /// within the period: credential stuffing. `None`: the rule is off.
    pub credential_stuffing: Option<Quota>,
    /// Failed sign-ins on one account from this many different addresses within the period:
    /// a targeted brute force. `None`: off.
    pub brute_force: Option<Quota>,
    /// This many answers 500 or store outages within the period. `None`: off.
    pub server_errors: Option<Quota>,
    /// One alert per rule and subject within this window, however many instances see it.
    pub dedup_window: Duration,
    /// How long past its scheduled rotation a signing key may go on signing before an alert.
    pub rotation_grace: Duration,
    /// Alerts are also mailed here (through the mail outbox).
    pub email: Option<lettre::Address>,
    /// Whether webhook targets may resolve to private, loopback or link-local addresses
    /// (always allowed when the issuer itself is on loopback: development).
    pub webhook_allow_private: bool,
}

impl AlertSettings {
    pub fn from_raw(raw: &RawSettings, issuer: &str) -> Result<Self, ConfigError> {
        let email = match raw.alert_email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<lettre::Address>().map_err(|_| {
                invalid(
                    "PORTCULLIS_ALERT_EMAIL",
                    format!("`{text}` is not an e-mail address"),
                )
            })?),
        };
        let loopback_issuer = url::Url::parse(issuer)
            .ok()
            .and_then(|u| u.host_str().map(super::mail::is_loopback))
            .unwrap_or(false);
        Ok(Self {
            credential_stuffing: rule(
                &raw.alert_credential_stuffing,
                "PORTCULLIS_ALERT_CREDENTIAL_STUFFING",
            )?,
            brute_force: rule(&raw.alert_brute_force, "PORTCULLIS_ALERT_BRUTE_FORCE")?,
            server_errors: rule(&raw.alert_server_errors, "PORTCULLIS_ALERT_SERVER_ERRORS")?,
            dedup_window: raw
                .alert_dedup_window
                .parse("PORTCULLIS_ALERT_DEDUP_WINDOW")?,
            rotation_grace: raw
                .alert_rotation_grace
                .parse("PORTCULLIS_ALERT_ROTATION_GRACE")?,
            email,
            webhook_allow_private: raw.webhook_allow_private || loopback_issuer,
        })
    }
}

/// A threshold written `N/period` (e.g. `10/10m`), or `off`.
fn rule(text: &str, setting: &'static str) -> Result<Option<Quota>, ConfigError> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_quota(text, setting).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(adjust: impl FnOnce(&mut RawSettings)) -> Result<AlertSettings, ConfigError> {
        let mut raw = RawSettings::default();
        adjust(&mut raw);
        AlertSettings::from_raw(&raw, "https://auth.example.com")
    }

    #[test]
    fn defaults_turn_every_rule_on() {
        let s = settings(|_| {}).unwrap();
        assert_eq!(s.credential_stuffing.unwrap().limit, 10);
        assert_eq!(s.brute_force.unwrap().limit, 5);
        assert_eq!(s.server_errors.unwrap().limit, 20);
        assert!(!s.webhook_allow_private);
        assert!(s.email.is_none());
    }

    #[test]
    fn a_rule_can_be_turned_off_and_bad_values_name_the_setting() {
        let s = settings(|r| r.alert_brute_force = "off".into()).unwrap();
        assert!(s.brute_force.is_none());
        let e = settings(|r| r.alert_credential_stuffing = "many".into()).unwrap_err();
        assert!(
            e.to_string()
                .contains("PORTCULLIS_ALERT_CREDENTIAL_STUFFING")
        );
        let e = settings(|r| r.alert_email = Some("not an address".into())).unwrap_err();
        assert!(e.to_string().contains("PORTCULLIS_ALERT_EMAIL"));
    }

    #[test]
    fn a_loopback_issuer_allows_private_webhook_targets() {
        let raw = RawSettings::default();
        let s = AlertSettings::from_raw(&raw, "http://127.0.0.1:8080").unwrap();
        assert!(s.webhook_allow_private);
        let s = AlertSettings::from_raw(&raw, "http://localhost:8080").unwrap();
        assert!(s.webhook_allow_private);
    }
}
