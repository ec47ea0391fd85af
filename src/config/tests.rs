//! Unit tests of the configuration: parsing, each section's checks, the cross-section rules.

use super::abuse::{parse_proxies, parse_quota};
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
fn one_forwarded_header_is_chosen() {
    let header = |text: &str| {
        RawSettings {
            forwarded_header: text.into(),
            ..Default::default()
        }
        .validate()
        .map(|s| s.abuse.forwarded_header)
    };
    assert_eq!(
        RawSettings::default()
            .validate()
            .unwrap()
            .abuse
            .forwarded_header,
        ForwardedHeader::XForwardedFor
    );
    assert_eq!(
        header("X-Forwarded-For").unwrap(),
        ForwardedHeader::XForwardedFor
    );
    assert_eq!(header("forwarded").unwrap(), ForwardedHeader::Forwarded);
    for bad in ["", "both", "x-forwarded-for,forwarded", "x-real-ip"] {
        assert!(header(bad).is_err(), "{bad}");
    }
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
        .map(|s| s.tokens.refresh_reuse_interval)
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
    assert_eq!(s.tokens.refresh_reuse_interval, Duration::ZERO);
    assert_eq!(s.tokens.access_token_ttl, Duration::from_secs(900));
    assert_eq!(s.tokens.audience, "http://localhost:8080");
    assert_eq!(s.database.url, DEFAULT_DATABASE_URL);
    assert!(s.server.tls.is_none());
    assert_eq!(s.server.hsts_max_age, None, "plain http issuer");
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
        s.server.tls,
        Some(TlsSettings {
            cert_path: "/no/such/cert.pem".into(),
            key_path: "/no/such/key.pem".into(),
            reload_interval: Duration::from_secs(120),
        })
    );
    assert_eq!(
        s.server.hsts_max_age,
        Some(Duration::from_secs(365 * 86_400))
    );
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
    assert_eq!(s.server.hsts_max_age, Some(Duration::ZERO));
}

#[test]
fn key_timings_are_checked_against_each_other() {
    let raw = RawSettings::default().validate().unwrap();
    // Defaults: 5 min max-age + 5 s reload + 5 min margin.
    assert_eq!(raw.keys.timing.publication_lead(), Duration::from_secs(605));
    assert_eq!(
        raw.keys.timing.retired_publication(),
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
        (
            RawSettings {
                forwarded_header: "x-real-ip".into(),
                ..Default::default()
            },
            "PORTCULLIS_FORWARDED_HEADER",
        ),
    ];
    for (raw, setting) in cases {
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains(setting), "{err} should name {setting}");
    }
}

#[test]
fn sections_are_linked() {
    // The audience defaults to the issuer; signed tokens live as long as access tokens.
    let s = RawSettings {
        issuer: "https://auth.example.com/".into(),
        access_token_ttl: DurationSetting::Text("10m".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    assert_eq!(s.server.issuer, "https://auth.example.com");
    assert_eq!(s.tokens.audience, "https://auth.example.com");
    assert_eq!(s.keys.timing.token_lifetime, Duration::from_secs(600));
    let s = RawSettings {
        audience: Some("https://api.example.com".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    assert_eq!(s.tokens.audience, "https://api.example.com");
    // The embedded database seeds the public client unless told otherwise.
    assert!(s.database.embedded_default && s.database.seed_public_client);
    let s = RawSettings {
        database_url: Some("sqlite://other.db".into()),
        ..Default::default()
    }
    .validate()
    .unwrap();
    assert!(!s.database.embedded_default && !s.database.seed_public_client);
}
