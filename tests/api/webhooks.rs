//! Alert webhooks: registration (secret shown once, sealed at rest), the permission, signed
//! delivery to a real HTTP receiver, retries with the same id, nothing lost across a restart,
//! secret rotation, and the SSRF guard at registration and at delivery.

use portcullis::config::{DurationSetting, RawSettings};
use portcullis::duties::Duties;
use reqwest::{Method, StatusCode};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use super::helpers::*;
use super::webhook_receiver::{Receiver, signed_by};

/// Quiet background duties: the tests run the passes themselves.
fn quiet(raw: &mut RawSettings) {
    raw.key_reload_interval = DurationSetting::Text("5m".into());
}

/// Every permission of the `admin` role.
const ADMIN_SCOPE: &str = "articles:read articles:write articles:delete users:read users:admin \
                           clients:admin audit:read keys:admin webhooks:admin";

pub async fn admin_token(app: &TestApp) -> String {
    user_with_roles(app, "root", &["admin"]).await;
    let answer = app.password_grant("root", ADMIN_SCOPE).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.str("access_token")
}

pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    Answer::from(req.send().await.unwrap()).await
}

/// Registers `url`; returns (id, secret).
pub async fn register(app: &TestApp, token: &str, url: &str) -> (String, String) {
    let created = call(
        app,
        Method::POST,
        "/api/v1/admin/webhooks",
        token,
        Some(json!({"url": url, "description": "security team"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (created.str("id"), created.str("secret"))
}

async fn deliveries(app: &TestApp, token: &str, id: &str) -> Vec<Value> {
    let listed = call(
        app,
        Method::GET,
        &format!("/api/v1/admin/webhooks/{id}/deliveries"),
        token,
        None,
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    listed.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn registering_a_webhook_shows_the_secret_once_and_keeps_it_sealed() {
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&app, &token, &receiver.url).await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = call(&app, Method::GET, "/api/v1/admin/webhooks", &token, None).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body[0]["id"], id.as_str());
    assert_eq!(listed.body[0]["description"], "security team");
    let one = call(
        &app,
        Method::GET,
        &format!("/api/v1/admin/webhooks/{id}"),
        &token,
        None,
    )
    .await;
    for shown in [&listed.body, &one.body] {
        assert!(!shown.to_string().contains(&secret), "{shown}");
        assert!(!shown.to_string().contains("whsec_"), "{shown}");
    }
    // At rest: sealed, neither the secret nor its key bytes in the row.
    let row = entities::webhook_endpoints::Entity::find_by_id(id.clone())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let key_b64 = secret.trim_start_matches("whsec_");
    assert!(!row.sealed_secret.contains(key_b64));
    assert!(!format!("{row:?}").contains(key_b64));
    // Audited, without the secret.
    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.event_type == "webhook.created"));
    assert!(events.iter().all(|e| !e.details.contains(key_b64)));
    // Change, then remove.
    let changed = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/admin/webhooks/{id}"),
        &token,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.body["enabled"], false);
    let gone = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/webhooks/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/admin/webhooks/{id}"),
        &token,
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
}

#[tokio::test]
async fn webhook_administration_needs_webhooks_admin() {
    let app = spawn_app_with(quiet).await;
    let root = admin_token(&app).await;
    let (id, _) = register(&app, &root, "http://127.0.0.1:9/hook").await;
    // An administrator's token without the scope.
    let narrow = app
        .password_grant("root", "users:admin")
        .await
        .str("access_token");
    // A user whose roles do not grant it (the scope is not granted at all).
    user_with_roles(&app, "reader", &["reader"]).await;
    let reader = app
        .password_grant("reader", "articles:read")
        .await
        .str("access_token");
    for token in [&narrow, &reader] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/admin/webhooks".to_owned(), None),
            (
                Method::POST,
                "/api/v1/admin/webhooks".to_owned(),
                Some(json!({"url": "http://127.0.0.1:9/x"})),
            ),
            (Method::DELETE, format!("/api/v1/admin/webhooks/{id}"), None),
            (
                Method::POST,
                format!("/api/v1/admin/webhooks/{id}/test"),
                None,
            ),
            (
                Method::POST,
                format!("/api/v1/admin/webhooks/{id}/secret"),
                None,
            ),
        ] {
            let answer = call(&app, method.clone(), &path, token, body).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{method} {path}: {}",
                answer.body
            );
        }
    }
}

#[tokio::test]
async fn a_test_alert_arrives_signed_and_is_listed_as_delivered() {
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let receiver = Receiver::start().await;
    let (id, secret) = register(&app, &token, &receiver.url).await;
    let sent = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/webhooks/{id}/test"),
        &token,
        None,
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.body);
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let msg = &got[0];
    assert_eq!(msg.id, sent.str("delivery_id"));
    assert!(signed_by(msg, &secret), "{msg:?}");
    assert!(!signed_by(msg, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_eq!(msg.json["type"], "alert.test");
    assert!(msg.json["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(msg.timestamp, app.state.clock.now().to_string());
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["id"], msg.id.as_str());
    assert_eq!(listed[0]["status"], "delivered");
    assert_eq!(listed[0]["last_status_code"], 200);
    assert_eq!(listed[0]["attempts"], 1);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_id_until_it_is_delivered() {
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let (id, secret) = register(&app, &token, &receiver.url).await;
    call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/webhooks/{id}/test"),
        &token,
        None,
    )
    .await;
    assert_eq!(receiver.wait_for(1).await.len(), 1);
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[0]["last_status_code"], 503);
    assert_eq!(listed[0]["attempts"], 1);
    // Not before its back-off.
    let duties = Duties::new(app.state.clone());
    duties.tick().await;
    assert_eq!(receiver.received().len(), 1);
    receiver.answer(200);
    app.clock.advance(5);
    let report = duties.tick().await;
    assert_eq!(report.webhooks.map(|r| r.delivered), Some(1), "{report:?}");
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, got[1].id, "the same webhook-id on every attempt");
    assert_eq!((got[0].answered, got[1].answered), (503, 200));
    assert!(signed_by(&got[1], &secret));
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["status"], "delivered");
    assert_eq!(listed[0]["attempts"], 2);
    // Delivered once is delivered: later passes send nothing more.
    app.clock.advance(3600);
    duties.tick().await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn an_alert_raised_while_the_receiver_is_down_survives_a_restart() {
    let port = free_port();
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let (id, secret) = register(&app, &token, &format!("http://127.0.0.1:{port}/hook")).await;
    // A key revocation raises `signing_key_revoked`; the receiver is not listening.
    let keys = call(&app, Method::GET, "/api/v1/admin/keys", &token, None).await;
    let kid = keys
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "current")
        .unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/keys/{kid}/revoke"),
        &token,
        None,
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    // (The token was signed by the revoked key.)
    let token = app
        .password_grant("root", ADMIN_SCOPE)
        .await
        .str("access_token");
    // Its first, immediate attempt fails.
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = deliveries(&app, &token, &id).await;
        if pending.first().is_some_and(|d| d["attempts"] == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["status"], "pending");
    // The instance stops; another takes over, and the receiver comes up.
    let next = app.spawn_peer().await;
    drop(app);
    let receiver = Receiver::start_on(port).await;
    next.clock.advance(10);
    Duties::new(next.state.clone()).tick().await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json["type"], "alert.signing_key_revoked");
    assert_eq!(got[0].json["data"]["subject"], kid.as_str());
    assert!(signed_by(&got[0], &secret));
}

#[tokio::test]
async fn a_new_secret_signs_beside_the_old_one_for_a_day() {
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let receiver = Receiver::start().await;
    let (id, old) = register(&app, &token, &receiver.url).await;
    let rotated = call(
        &app,
        Method::POST,
        &format!("/api/v1/admin/webhooks/{id}/secret"),
        &token,
        None,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.str("secret");
    assert_ne!(new, old);
    let path = format!("/api/v1/admin/webhooks/{id}/test");
    call(&app, Method::POST, &path, &token, None).await;
    let got = receiver.wait_for(1).await;
    assert!(signed_by(&got[0], &new) && signed_by(&got[0], &old));
    app.clock.advance(86_400 + 1);
    app.state
        .webhook_admin
        .test(&portcullis::ops::Caller::operator(), &id)
        .await
        .unwrap();
    let got = receiver.wait_for(2).await;
    assert!(signed_by(&got[1], &new));
    assert!(
        !signed_by(&got[1], &old),
        "the old secret stops signing after a day"
    );
}

/// An issuer that is not on loopback: private targets are refused.
fn public_issuer(raw: &mut RawSettings) {
    quiet(raw);
    raw.issuer = "https://auth.example.com".into();
}

#[tokio::test]
async fn private_and_loopback_targets_are_refused_at_registration() {
    let app = spawn_app_with(public_issuer).await;
    let token = admin_token(&app).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
    ] {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/admin/webhooks",
            &token,
            Some(json!({"url": url})),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{url}: {}",
            answer.body
        );
        assert!(answer.body.to_string().contains("url"), "{}", answer.body);
    }
    let listed = call(&app, Method::GET, "/api/v1/admin/webhooks", &token, None).await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn a_target_that_is_private_at_delivery_time_is_refused() {
    // Registered where private targets were allowed ...
    let app = spawn_app_with(|raw| {
        public_issuer(raw);
        raw.webhook_allow_private = true;
    })
    .await;
    let token = admin_token(&app).await;
    let receiver = Receiver::start().await;
    let (id, _) = register(&app, &token, &receiver.url).await;
    // ... and delivered by an instance where they are not (as if its name now resolved to a
    // private address).
    let strict = app
        .spawn_peer_with(|raw| raw.webhook_allow_private = false)
        .await;
    let delivery = strict
        .state
        .webhook_admin
        .test(&portcullis::ops::Caller::operator(), &id)
        .await
        .unwrap();
    assert!(receiver.received().is_empty());
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["id"], delivery.as_str());
    assert_eq!(listed[0]["status"], "failed", "{listed:?}");
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("private"),
        "{listed:?}"
    );
}

/// A delivery never follows a redirect: it could lead anywhere, past the address check.
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_delivery_is_retried() {
    let app = spawn_app_with(quiet).await;
    let token = admin_token(&app).await;
    let elsewhere = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.redirect(307, &elsewhere.url);
    let (id, _) = register(&app, &token, &receiver.url).await;
    app.state
        .webhook_admin
        .test(&portcullis::ops::Caller::operator(), &id)
        .await
        .unwrap();
    assert_eq!(receiver.received().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[0]["last_status_code"], 307);
}
