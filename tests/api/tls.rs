//! HTTPS served by the server itself: a throw-away CA and server certificate made at test
//! time, a real token request over TLS (HTTP/2 and HTTP/1.1 through ALPN) from a client that
//! trusts only that CA, `Strict-Transport-Security`, plain HTTP to the TLS port getting no
//! answer, certificate reload, and the TLS settings checked at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis::clients::GrantType;
use portcullis::clock::ManualClock;
use portcullis::config::{DurationSetting, RawSettings};
use portcullis::http::tls::ServerTls;
use portcullis::state::{AppState, BuildOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::{StatusCode, Version};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::helpers::*;

/// A test CA and a server certificate it issued for `localhost` and `127.0.0.1`.
pub(super) struct Pki {
    pub(super) ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

pub(super) fn test_pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "Portcullis test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A folder holding the PEM files given to the server; removed on drop.
pub(super) struct Files {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    pub(super) fn new(pki: &Pki) -> Self {
        let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        files.replace(pki);
        files
    }

    /// Replaces the pair the way a renewal would: each file atomically, the key first.
    fn replace(&self, pki: &Pki) {
        write_atomically(&self.key, pki.key_pem.as_bytes());
        write_atomically(&self.cert, pki.cert_pem.as_bytes());
    }

    pub(super) fn tls(&self) -> impl FnOnce(&mut RawSettings) + use<> {
        let (cert, key) = (self.cert.clone(), self.key.clone());
        move |raw| {
            raw.tls_cert = Some(cert);
            raw.tls_key = Some(key);
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A client that trusts only `ca_pem` (no system roots).
pub(super) fn trusting(ca_pem: &str) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_certs_only([
        reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA certificate")
    ])
}

#[tokio::test]
async fn a_token_request_over_https_with_hsts() {
    let pki = test_pki();
    let files = Files::new(&pki);
    let tls = files.tls();
    let app = spawn_app_with(|raw| {
        tls(raw);
        raw.hsts_max_age = DurationSetting::Text("1h".into());
    })
    .await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    let service = app
        .confidential_client(
            "tls-service",
            &[GrantType::ClientCredentials],
            "articles:read",
        )
        .await;

    // HTTP/2 through ALPN.
    let h2 = trusting(&pki.ca_pem).build().unwrap();
    let resp = h2
        .post(app.url("/oauth/token"))
        .basic_auth(&service.id, Some(&service.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let answer = Answer::from(resp).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.header("strict-transport-security").as_deref(),
        Some("max-age=3600")
    );
    let token = answer.str("access_token");
    assert_eq!(jwt_part(&token, 1)["iss"], app.base.as_str());

    // HTTP/1.1 through ALPN; the token is good at the introspection endpoint.
    let h1 = trusting(&pki.ca_pem).http1_only().build().unwrap();
    let resp = h1
        .post(app.url("/oauth/introspect"))
        .basic_auth(&service.id, Some(&service.secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    let answer = Answer::from(resp).await;
    assert_eq!(answer.body["active"], true, "{}", answer.body);
    assert_eq!(
        answer.header("strict-transport-security").as_deref(),
        Some("max-age=3600")
    );

    // On every answer, errors included.
    for path in ["/.well-known/jwks.json", "/no/such/path"] {
        let resp = h1.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=3600"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn plain_http_and_untrusted_clients_get_no_answer() {
    let pki = test_pki();
    let files = Files::new(&pki);
    let app = spawn_app_with(files.tls()).await;
    let addr = app.base.trim_start_matches("https://").to_string();

    // Plain HTTP to the TLS port: the connection closes without an HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !String::from_utf8_lossy(&received).contains("HTTP/"),
        "{received:?}"
    );
    let plain = app.http.get(format!("http://{addr}/healthz")).send().await;
    assert!(plain.is_err(), "{plain:?}");

    // A client that does not trust the test CA refuses the server's certificate.
    let stranger = trusting(&test_pki().ca_pem).build().unwrap();
    assert!(stranger.get(app.url("/healthz")).send().await.is_err());

    // The server still serves clients that trust it.
    let client = trusting(&pki.ca_pem).build().unwrap();
    let resp = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn hsts_is_sent_only_when_clients_come_over_https() {
    // Plain HTTP with an http:// issuer: no header.
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none());

    // Plain HTTP behind a TLS-terminating proxy (the issuer is https://): the default max-age.
    let dir = std::env::temp_dir().join(format!("portcullis-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut raw = test_settings(&dir);
    raw.issuer = "https://auth.example.test".into();
    let state = AppState::build(
        raw.validate().unwrap(),
        BuildOptions {
            clock: Arc::new(ManualClock::new()),
            store_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
            fall_back_to_memory: false,
        },
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portcullis::serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    for path in ["/healthz", "/.well-known/openid-configuration", "/nope"] {
        let resp = app
            .http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_renewed_certificate_is_picked_up_without_a_restart() {
    let first = test_pki();
    let files = Files::new(&first);
    let tls = files.tls();
    let app = spawn_app_with(|raw| {
        tls(raw);
        raw.tls_reload_interval = DurationSetting::Seconds(1);
    })
    .await;
    let get = |ca: &str| {
        let client = trusting(ca).build().unwrap();
        let url = app.url("/healthz");
        async move { client.get(url).send().await.map(|r| r.status()) }
    };
    assert_eq!(get(&first.ca_pem).await.unwrap(), StatusCode::OK);

    let renewed = test_pki();
    files.replace(&renewed);
    let mut picked_up = false;
    for _ in 0..50 {
        if get(&renewed.ca_pem).await.is_ok() {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        picked_up,
        "the renewed certificate was not served within 10 s"
    );
    assert!(get(&first.ca_pem).await.is_err(), "the old one is gone");

    // A broken file is not taken: the server keeps the certificate it has.
    write_atomically(&files.cert, b"not a certificate");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(get(&renewed.ca_pem).await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn tls_settings_are_checked_at_start_naming_the_setting() {
    let pki = test_pki();
    let files = Files::new(&pki);
    let other = test_pki();
    let not_pem = files.dir.join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let other_key = files.dir.join("other-key.pem");
    std::fs::write(&other_key, &other.key_pem).unwrap();
    let missing = files.dir.join("missing.pem");

    let with = |cert: Option<&Path>, key: Option<&Path>| RawSettings {
        tls_cert: cert.map(Path::to_path_buf),
        tls_key: key.map(Path::to_path_buf),
        ..RawSettings::default()
    };
    let cases = [
        (
            "only the certificate",
            with(Some(&files.cert), None),
            "PORTCULLIS_TLS_KEY",
        ),
        (
            "only the key",
            with(None, Some(&files.key)),
            "PORTCULLIS_TLS_CERT",
        ),
        (
            "certificate not PEM",
            with(Some(&not_pem), Some(&files.key)),
            "PORTCULLIS_TLS_CERT",
        ),
        (
            "certificate missing",
            with(Some(&missing), Some(&files.key)),
            "PORTCULLIS_TLS_CERT",
        ),
        (
            "both missing",
            with(Some(&missing), Some(&files.dir.join("missing-key.pem"))),
            "PORTCULLIS_TLS_CERT",
        ),
        (
            "key missing",
            with(Some(&files.cert), Some(&missing)),
            "PORTCULLIS_TLS_KEY",
        ),
        (
            "key not PEM",
            with(Some(&files.cert), Some(&not_pem)),
            "PORTCULLIS_TLS_KEY",
        ),
        // A certificate where the key should be: no private key in the file.
        (
            "no key in the key file",
            with(Some(&files.cert), Some(&files.cert)),
            "PORTCULLIS_TLS_KEY",
        ),
        (
            "key of another certificate",
            with(Some(&files.cert), Some(&other_key)),
            "PORTCULLIS_TLS_KEY",
        ),
        (
            "reload interval",
            RawSettings {
                tls_reload_interval: DurationSetting::Seconds(0),
                ..with(Some(&files.cert), Some(&files.key))
            },
            "PORTCULLIS_TLS_RELOAD_INTERVAL",
        ),
        (
            "HSTS max-age",
            RawSettings {
                hsts_max_age: DurationSetting::Text("forever".into()),
                ..RawSettings::default()
            },
            "PORTCULLIS_HSTS_MAX_AGE",
        ),
    ];
    let key_lines: Vec<&str> = other
        .key_pem
        .lines()
        .chain(pki.key_pem.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    // As at start: the settings are validated, then the files read and checked.
    let start = |raw: RawSettings| -> Result<Option<ServerTls>, String> {
        let settings = raw.validate().map_err(|e| e.to_string())?;
        settings
            .server
            .tls
            .as_ref()
            .map(ServerTls::load)
            .transpose()
            .map_err(|e| e.to_string())
    };
    for (case, raw, setting) in cases {
        let err = start(raw).expect_err(case);
        assert!(err.contains(setting), "{case}: {err}");
        assert!(
            key_lines.iter().all(|line| !err.contains(line)),
            "{case}: the error quotes the key"
        );
    }

    // Both given and good; an empty value counts as unset.
    let ok = with(Some(&files.cert), Some(&files.key))
        .validate()
        .unwrap();
    assert!(ServerTls::load(ok.server.tls.as_ref().unwrap()).is_ok());
    assert_eq!(
        ok.server.hsts_max_age,
        Some(Duration::from_secs(365 * 86_400))
    );
    let unset = with(Some(Path::new("")), Some(Path::new("")))
        .validate()
        .unwrap();
    assert!(unset.server.tls.is_none());
    assert_eq!(unset.server.hsts_max_age, None, "http:// issuer, no TLS");
}

#[test]
fn the_binary_refuses_a_bad_certificate_at_start() {
    let pki = test_pki();
    let files = Files::new(&pki);
    let not_pem = files.dir.join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let missing_cert = files.dir.join("no-such-cert.pem");
    let missing_key = files.dir.join("no-such-key.pem");
    // `serve` reads the files before anything else; every command checks that both are given.
    for (command, cert, key, setting) in [
        ("serve", Some(&not_pem), Some(&files.key), "tls_cert"),
        ("serve", Some(&missing_cert), Some(&missing_key), "tls_cert"),
        ("serve", Some(&files.cert), Some(&missing_key), "tls_key"),
        ("migrate", Some(&files.cert), None, "tls_key"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg(command)
            .current_dir(&files.dir)
            .env_remove("PORTCULLIS_DATABASE_URL")
            .env_remove("PORTCULLIS_REDIS_URL")
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_TLS_KEY")
            .env("PORTCULLIS_LISTEN", "127.0.0.1:0")
            .env("PORTCULLIS_LOG", "warn");
        if let Some(cert) = cert {
            cmd.env("PORTCULLIS_TLS_CERT", cert);
        }
        if let Some(key) = key {
            cmd.env("PORTCULLIS_TLS_KEY", key);
        }
        let out = run_briefly(cmd);
        let case = format!("{command} {setting}");
        assert!(!out.status.success(), "{case}");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(err.contains(setting), "{case}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !files.dir.join("data").exists(),
            "{case}: nothing ran before the check"
        );
    }
}

/// Runs the binary to its end; a server that started after all is stopped after 30 s.
fn run_briefly(mut cmd: std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}
