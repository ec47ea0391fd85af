//! The `mail` section: how outgoing e-mail leaves. `PORTCULLIS_SMTP_URL` names an SMTP server
//! (`smtp://user:pass@host:587?tls=starttls`: STARTTLS required; `smtps://host:465`: TLS from
//! the first byte; `smtp://127.0.0.1:2525`: plain). Without it, messages are written as `.eml`
//! files under `PORTCULLIS_MAIL_DIR`. The password is kept as a secret and no error repeats the
//! URL; credentials are refused over a plain connection to anything but the loopback host.
//! `PORTCULLIS_MAIL_FROM` is the sender; by default `Portcullis <no-reply@HOST>` with the
//! issuer's host name (`localhost` when the issuer names an IP address).

use std::net::IpAddr;
use std::path::PathBuf;

use lettre::message::Mailbox;
use secrecy::SecretString;

use super::{ConfigError, RawSettings, invalid};

const URL_SETTING: &str = "PORTCULLIS_SMTP_URL";
const URL_SHAPE: &str = "use smtp://[user:password@]host[:port][?tls=starttls|none] or smtps://[user:password@]host[:port]";

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `None`: messages are written as files under [`Self::dir`].
    pub smtp: Option<SmtpSettings>,
    /// The `From` of every message.
    pub from: Mailbox,
    /// Where messages are written without SMTP (created 0700; files 0600).
    pub dir: PathBuf,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS (`smtp://…` or `?tls=none`).
    Plain,
    /// STARTTLS, required (`smtp://…?tls=starttls`).
    StartTls,
    /// TLS from the start (`smtps://`).
    Tls,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<SmtpCredentials>,
}

#[derive(Debug, Clone)]
pub struct SmtpCredentials {
    pub user: String,
    pub password: SecretString,
}

impl MailSettings {
    /// `issuer` is the validated issuer URL (the default sender's domain).
    pub fn from_raw(raw: &RawSettings, issuer: &str) -> Result<Self, ConfigError> {
        let smtp = raw.smtp_url.as_deref().map(parse_smtp_url).transpose()?;
        let from = match &raw.mail_from {
            Some(text) => text.parse::<Mailbox>().map_err(|_| {
                invalid(
                    "PORTCULLIS_MAIL_FROM",
                    "must be an address, optionally with a name: `Name <user@example.com>`",
                )
            })?,
            None => default_from(issuer)?,
        };
        if raw.mail_dir.as_os_str().is_empty() {
            return Err(invalid("PORTCULLIS_MAIL_DIR", "must not be empty"));
        }
        Ok(Self {
            smtp,
            from,
            dir: raw.mail_dir.clone(),
        })
    }
}

fn default_from(issuer: &str) -> Result<Mailbox, ConfigError> {
    let host = url::Url::parse(issuer)
        .ok()
        .and_then(|u| match u.host() {
            Some(url::Host::Domain(d)) => Some(d.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "localhost".to_owned());
    format!("Portcullis <no-reply@{host}>")
        .parse::<Mailbox>()
        .map_err(|_| {
            invalid(
                "PORTCULLIS_MAIL_FROM",
                "cannot be derived from the issuer's host name: set it",
            )
        })
}

pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn decode(part: &str) -> Result<String, ConfigError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid(URL_SETTING, "user and password must be UTF-8"))
}

/// Parses the SMTP URL. Errors never repeat it (it may hold a password).
fn parse_smtp_url(text: &str) -> Result<SmtpSettings, ConfigError> {
    let url = url::Url::parse(text.trim()).map_err(|_| invalid(URL_SETTING, URL_SHAPE))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(invalid(URL_SETTING, format!("names no host; {URL_SHAPE}"))),
    };
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(invalid(URL_SETTING, format!("has a path; {URL_SHAPE}")));
    }
    let mut tls = None;
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), tls) {
            ("tls", None) => tls = Some(value.into_owned()),
            _ => {
                return Err(invalid(
                    URL_SETTING,
                    "the only query parameter is tls=starttls or tls=none",
                ));
            }
        }
    }
    let security = match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("none")) => SmtpSecurity::Plain,
        ("smtp", Some("starttls")) => SmtpSecurity::StartTls,
        ("smtps", None) => SmtpSecurity::Tls,
        ("smtp", Some(_)) => {
            return Err(invalid(URL_SETTING, "tls must be starttls or none"));
        }
        ("smtps", Some(_)) => {
            return Err(invalid(
                URL_SETTING,
                "smtps:// is TLS from the start and takes no tls parameter",
            ));
        }
        _ => return Err(invalid(URL_SETTING, URL_SHAPE)),
    };
    let port = url.port().unwrap_or(match security {
        SmtpSecurity::Plain => 25,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Tls => 465,
    });
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        ("", Some(_)) => return Err(invalid(URL_SETTING, "has a password but no user")),
        (_, None) => return Err(invalid(URL_SETTING, "has a user but no password")),
        (user, Some(password)) => Some(SmtpCredentials {
            user: decode(user)?,
            password: SecretString::from(decode(password)?),
        }),
    };
    if credentials.is_some() && security == SmtpSecurity::Plain && !is_loopback(&host) {
        return Err(invalid(
            URL_SETTING,
            "would send the password unencrypted: use ?tls=starttls or smtps://",
        ));
    }
    Ok(SmtpSettings {
        host,
        port,
        security,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn smtp_urls() {
        let s = parse_smtp_url("smtp://us%40er:p%3Ass@mail.example:587?tls=starttls").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("mail.example", 587, SmtpSecurity::StartTls)
        );
        let c = s.credentials.unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.expose_secret()),
            ("us@er", "p:ss")
        );
        let s = parse_smtp_url("smtps://mail.example").unwrap();
        assert_eq!((s.port, s.security), (465, SmtpSecurity::Tls));
        assert!(s.credentials.is_none());
        let s = parse_smtp_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("127.0.0.1", 2525, SmtpSecurity::Plain)
        );
        let s = parse_smtp_url("smtp://u:p@localhost:2525").unwrap();
        assert!(s.credentials.is_some());
        let s = parse_smtp_url("smtp://[::1]:2525?tls=none").unwrap();
        assert_eq!(s.host, "::1");
    }

    #[test]
    fn bad_smtp_urls_are_refused_without_repeating_the_password() {
        for bad in [
            "",
            "mail.example:25",
            "http://mail.example",
            "smtp://",
            "smtp://u:hunter2@mail.example",
            "smtp://u:hunter2@mail.example?tls=none",
            "smtp://u:hunter2@mail.example?tls=maybe",
            "smtps://u:hunter2@mail.example?tls=starttls",
            "smtp://u:hunter2@mail.example/path?tls=starttls",
            "smtp://u:hunter2@mail.example?tls=starttls&x=1",
            "smtp://:hunter2@mail.example?tls=starttls",
            "smtp://u@mail.example?tls=starttls",
        ] {
            let err = parse_smtp_url(bad).unwrap_err().to_string();
            assert!(err.contains(URL_SETTING), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_password_is_not_in_the_debug_output() {
        let s = parse_smtp_url("smtps://u:hunter2@mail.example").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn the_default_sender_is_at_the_issuer_host() {
        let raw = RawSettings::default();
        let m = MailSettings::from_raw(&raw, "https://id.example.com").unwrap();
        assert_eq!(m.from.to_string(), "Portcullis <no-reply@id.example.com>");
        let m = MailSettings::from_raw(&raw, "http://127.0.0.1:8080").unwrap();
        assert_eq!(m.from.email.to_string(), "no-reply@localhost");
        let bad = RawSettings {
            mail_from: Some("not an address".into()),
            ..RawSettings::default()
        };
        let err = MailSettings::from_raw(&bad, "http://localhost").unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_MAIL_FROM"));
    }
}
