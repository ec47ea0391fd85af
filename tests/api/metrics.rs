//! `GET /metrics`: the Prometheus text format, requests counted under their route templates,
//! grants issued and refused with their reasons, the separate metrics listener, labels that
//! never name a user, and JSON log lines that carry the request id.
//!
//! The recorder is one per process and the tests run in parallel, so every check compares a
//! series before and after the test's own requests (other tests only ever add to it), on
//! series the test's requests make distinct where it can.

use std::time::{Duration, Instant};

use portcullis::clients::GrantType;
use reqwest::StatusCode;

use super::helpers::*;

/// The value of `series` (its name and labels exactly as rendered) in `text`; 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("text")
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_count_requests_by_route_template() {
    let app = spawn_app().await;
    let resp = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(&format!(
            "portcullis_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    assert!(text.contains("# TYPE portcullis_build_info gauge"));

    let admin_user = r#"portcullis_http_requests_total{method="GET",route="/api/v1/admin/users/{id}",status="401"}"#;
    let other = r#"portcullis_http_requests_total{method="GET",route="other",status="404"}"#;
    let latency = r#"portcullis_http_request_duration_seconds_count{method="GET",route="/api/v1/admin/users/{id}",status="401"}"#;
    let before = scrape(&app.http, &app.base).await;
    let id = uuid::Uuid::new_v4().to_string();
    let unknown = format!("/no/such/path/{}", uuid::Uuid::new_v4());
    for path in [format!("/api/v1/admin/users/{id}"), unknown.clone()] {
        let status = app.http.get(app.url(&path)).send().await.unwrap().status();
        assert!(status.is_client_error(), "{path}: {status}");
    }
    let after = scrape(&app.http, &app.base).await;
    assert!(sample(&after, admin_user) >= sample(&before, admin_user) + 1.0);
    assert!(sample(&after, other) >= sample(&before, other) + 1.0);
    assert!(sample(&after, latency) >= sample(&before, latency) + 1.0);
    assert!(
        after.contains(r#"portcullis_http_request_duration_seconds_bucket{method="GET",route="/api/v1/admin/users/{id}",status="401",le="0.005"}"#),
        "the latency is a histogram with buckets"
    );
    // Raw paths never become labels.
    assert!(!after.contains(&id) && !after.contains(&unknown));
    // The scrape itself is counted under its own route.
    assert!(after.contains(r#"route="/metrics""#));
}

#[tokio::test]
async fn refused_and_issued_grants_are_counted_with_grant_type_and_reason() {
    let app = spawn_app().await;
    let refused =
        r#"portcullis_grants_refused_total{grant_type="password",reason="invalid_grant"}"#;
    let unsupported =
        r#"portcullis_grants_refused_total{grant_type="other",reason="unsupported_grant_type"}"#;
    let issued = r#"portcullis_grants_issued_total{grant_type="password"}"#;
    let before = scrape(&app.http, &app.base).await;

    let token = app.sign_in("metrics-grants", "openid").await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    let wrong = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "metrics-grants"),
                ("password", "not the password"),
                ("client_id", SPA),
            ],
        )
        .await;
    wrong.assert_oauth_error(400, "invalid_grant");
    let odd = app
        .post_form(
            "/oauth/token",
            &[("grant_type", "urn:example:made-up"), ("client_id", SPA)],
        )
        .await;
    odd.assert_oauth_error(400, "unsupported_grant_type");

    let after = scrape(&app.http, &app.base).await;
    assert!(
        sample(&after, refused) >= sample(&before, refused) + 1.0,
        "{after}"
    );
    assert!(sample(&after, unsupported) >= sample(&before, unsupported) + 1.0);
    assert!(sample(&after, issued) >= sample(&before, issued) + 1.0);
    assert!(
        !after.contains("urn:example:made-up"),
        "an unknown grant type is `other`, never what was sent"
    );
}

#[tokio::test]
async fn refresh_reuse_and_rate_limit_refusals_are_counted() {
    let app = spawn_app_with(|raw| {
        raw.rate_limit_enabled = true;
        raw.rate_limit_token_ip = "6/1m".into();
    })
    .await;
    let reuse = "portcullis_refresh_reuse_detected_total";
    let limited = r#"portcullis_rate_limited_total{class="token-ip"}"#;
    let refused =
        r#"portcullis_grants_refused_total{grant_type="refresh_token",reason="rate_limited"}"#;
    let before = scrape(&app.http, &app.base).await;

    let first = app.sign_in("metrics-reuse", "openid").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let old = first.str("refresh_token");
    assert_eq!(app.refresh(&old).await.status, StatusCode::OK);
    app.refresh(&old)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let mut refused_by_limit = false;
    for _ in 0..6 {
        let answer = app.refresh(&old).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused_by_limit = true;
            break;
        }
    }
    assert!(refused_by_limit, "the token endpoint's limit was reached");

    let after = scrape(&app.http, &app.base).await;
    assert!(
        sample(&after, reuse) >= sample(&before, reuse) + 1.0,
        "{after}"
    );
    assert!(sample(&after, limited) >= sample(&before, limited) + 1.0);
    assert!(sample(&after, refused) >= sample(&before, refused) + 1.0);
}

#[tokio::test]
async fn the_metrics_listener_setting_moves_metrics_off_the_main_listener() {
    let port = free_port();
    let app = spawn_app_with(|raw| raw.metrics_listen = Some(format!("127.0.0.1:{port}"))).await;
    let main = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);

    // The metrics listener is bound when the server starts, just after spawn_app returns.
    let metrics_base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let resp = loop {
        match app.http.get(format!("{metrics_base}/metrics")).send().await {
            Ok(resp) => break resp,
            Err(e) => {
                assert!(Instant::now() < deadline, "metrics listener not up: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(resp.text().await.unwrap().contains("portcullis_build_info"));
    // It serves the metrics and nothing else.
    for path in ["/healthz", "/.well-known/jwks.json", "/api/v1/users/me"] {
        let status = app
            .http
            .get(format!("{metrics_base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // The main listener still serves everything else.
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn no_user_id_username_or_address_appears_in_the_metrics() {
    let app = spawn_app().await;
    let username = format!(
        "metrics-who-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let id = user_with_roles(&app, &username, &["admin"]).await;
    let token = app
        .password_grant(&username, "openid profile users:read")
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    let access = token.str("access_token");
    for path in [
        "/api/v1/users/me".to_string(),
        format!("/api/v1/admin/users/{id}"),
        format!("/api/v1/admin/users/{id}/sessions"),
        format!("/api/v1/admin/users?q={username}"),
    ] {
        let answer = app.get_bearer(&path, &access).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.body);
    }
    // A wrong password for the name, and a name without an account.
    for name in [username.clone(), format!("{username}-nobody")] {
        let wrong = app
            .post_form(
                "/oauth/token",
                &[
                    ("grant_type", "password"),
                    ("username", &name),
                    ("password", "wrong"),
                    ("client_id", SPA),
                ],
            )
            .await;
        wrong.assert_oauth_error(400, "invalid_grant");
    }
    let text = scrape(&app.http, &app.base).await;
    assert!(text.contains(r#"route="/api/v1/admin/users/{id}/sessions""#));
    for secret in [
        username.as_str(),
        id.as_str(),
        "@example.com",
        access.as_str(),
    ] {
        assert!(!text.contains(secret), "`{secret}` is in the metrics");
    }
}

#[tokio::test]
async fn client_ids_label_grants_only_when_the_setting_allows() {
    let grants = [GrantType::ClientCredentials];
    let quiet = spawn_app().await;
    let hidden = format!("metrics-hidden-{}", uuid::Uuid::new_v4().simple());
    let client = quiet
        .confidential_client(&hidden, &grants, "articles:read")
        .await;
    let answer = quiet
        .post_form_basic(
            "/oauth/token",
            &client,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(!scrape(&quiet.http, &quiet.base).await.contains(&hidden));

    let labelled = spawn_app_with(|raw| raw.metrics_client_labels = true).await;
    let shown = format!("metrics-shown-{}", uuid::Uuid::new_v4().simple());
    let client = labelled
        .confidential_client(&shown, &grants, "articles:read")
        .await;
    let answer = labelled
        .post_form_basic(
            "/oauth/token",
            &client,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let text = scrape(&labelled.http, &labelled.base).await;
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"portcullis_grants_issued_total{{grant_type="client_credentials",client_id="{shown}"}}"#
            )
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_duty_pass_refreshes_the_lease_key_and_outbox_gauges() {
    let app = spawn_app().await;
    portcullis::duties::Duties::new(app.state.clone())
        .tick()
        .await;
    let text = scrape(&app.http, &app.base).await;
    for series in [
        "portcullis_duties_lease_held ",
        "portcullis_signing_key_age_seconds ",
        "portcullis_signing_key_rotation_due_seconds ",
        r#"portcullis_outbox_depth{outbox="mail"} "#,
        "portcullis_db_query_duration_seconds_count ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "`{series}` missing from\n{text}"
        );
    }
    // With Redis, its operations are timed (the pass took the lease through it).
    if std::env::var("PORTCULLIS_TEST_REDIS_URL").is_ok() {
        let lease = r#"portcullis_store_operation_duration_seconds_count{operation="try_lock"}"#;
        assert!(sample(&text, lease) >= 1.0, "{text}");
    }
}

/// A `portcullis serve` process with JSON log lines: every line of a request carries the
/// request id that its answer's `x-request-id` header names.
#[tokio::test]
async fn json_log_lines_carry_the_request_id() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("portcullis-json-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .current_dir(&dir)
        .env_remove("PORTCULLIS_DATABASE_URL")
        .env_remove("PORTCULLIS_REDIS_URL")
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_ISSUER", &base)
        .env("PORTCULLIS_BCRYPT_COST", "4")
        .env("PORTCULLIS_LOG", "warn,portcullis::http::middleware=debug")
        .env("PORTCULLIS_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let request_id = loop {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        if let Ok(resp) = http.get(format!("{base}/healthz")).send().await {
            break resp.headers()["x-request-id"].to_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|l| l["fields"]["message"] == "request done" && l["span"]["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no `request done` line of {request_id} in\n{log}"));
    assert_eq!(done["span"]["path"], "/healthz");
    assert_eq!(done["spans"][0]["name"], "request");
    assert_eq!(done["fields"]["status"], 200);
}

/// The alerting rules, their tests and the Grafana dashboard in deploy/ name only metrics
/// Portcullis exports (a renamed metric would otherwise silently never alert), and the
/// dashboard is valid JSON.
#[test]
fn deploy_files_name_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard = std::fs::read_to_string(root.join("grafana/portcullis.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    assert_eq!(parsed["uid"], "portcullis");
    for file in [
        "prometheus/rules.yml",
        "prometheus/rules.test.yml",
        "grafana/portcullis.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut named = 0;
        for (i, _) in text.match_indices("portcullis_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                portcullis::metrics::ALL.contains(&base),
                "{file} names `{name}`, which Portcullis does not export"
            );
            named += 1;
        }
        assert!(named > 0, "{file} names no metric");
    }
}
