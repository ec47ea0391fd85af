//! Security alert rules: each default rule fires on its scenario and stays quiet below its
//! threshold (the clock moved between windows); one alert per incident however many instances
//! see it; alerts are audited, mailed to the operator, and posted to webhooks.

use portcullis::config::{DurationSetting, RawSettings};
use portcullis::ops::Caller;
use reqwest::{Method, StatusCode};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use super::helpers::*;
use super::webhook_receiver::{Receiver, signed_by};
use super::webhooks::{admin_token, call, register};

/// Quiet background duties; the test client's forwarded address is believed.
fn setup(raw: &mut RawSettings) {
    raw.key_reload_interval = DurationSetting::Text("5m".into());
    raw.trusted_proxies = "127.0.0.1".into();
}

async fn alerts(app: &TestApp, rule: &str) -> Vec<entities::alerts::Model> {
    entities::alerts::Entity::find()
        .filter(entities::alerts::Column::Rule.eq(rule))
        .all(&app.state.db)
        .await
        .unwrap()
}

/// A failed password sign-in for `username` from `ip` (as a trusted proxy forwards it).
async fn fail(app: &TestApp, username: &str, ip: &str) {
    let answer = Answer::from(
        app.http
            .post(app.url("/oauth/token"))
            .header("x-forwarded-for", ip)
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", "not the password at all"),
                ("client_id", SPA),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn credential_stuffing_fires_at_ten_accounts_from_one_block_and_not_below() {
    let app = spawn_app_with(setup).await;
    // Nine accounts from one /24, and many from elsewhere: quiet.
    for n in 1..=9 {
        fail(&app, &format!("victim{n}"), &format!("203.0.113.{n}")).await;
    }
    for n in 1..=12 {
        fail(&app, &format!("other{n}"), &format!("198.51.{n}.1")).await;
    }
    // The same account again from the block does not count twice.
    fail(&app, "victim1", "203.0.113.200").await;
    assert!(alerts(&app, "credential_stuffing").await.is_empty());
    // The tenth account from the block.
    fail(&app, "victim10", "203.0.113.10").await;
    let raised = alerts(&app, "credential_stuffing").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].subject, "203.0.113.0/24");
    let payload: serde_json::Value = serde_json::from_str(&raised[0].payload).unwrap();
    assert_eq!(payload["type"], "alert.credential_stuffing");
    assert_eq!(payload["data"]["accounts"], 10);
    assert_eq!(payload["data"]["address_block"], "203.0.113.0/24");
    // More of the same incident: still one alert.
    for n in 11..=15 {
        fail(&app, &format!("victim{n}"), "203.0.113.99").await;
    }
    assert_eq!(alerts(&app, "credential_stuffing").await.len(), 1);
    // A new window: the count starts again, nine stay quiet.
    app.clock.advance(3600);
    for n in 20..=28 {
        fail(&app, &format!("victim{n}"), "203.0.113.5").await;
    }
    assert_eq!(alerts(&app, "credential_stuffing").await.len(), 1);
    fail(&app, "victim29", "203.0.113.5").await;
    assert_eq!(alerts(&app, "credential_stuffing").await.len(), 2);
    // Audited as an event of its own.
    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq("alert.raised"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[0].details.contains("credential_stuffing"));
}

#[tokio::test]
async fn an_ipv6_attacker_is_grouped_by_its_slash_64() {
    let app = spawn_app_with(setup).await;
    for n in 1..=10 {
        fail(&app, &format!("victim{n}"), &format!("2001:db8:1:2::{n:x}")).await;
    }
    let raised = alerts(&app, "credential_stuffing").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].subject, "2001:db8:1:2::/64");
}

#[tokio::test]
async fn brute_force_fires_at_five_addresses_on_one_account_and_not_below() {
    let app = spawn_app_with(setup).await;
    let id = user_with_roles(&app, "alice", &["reader"]).await;
    for n in 1..=4 {
        fail(&app, "alice", &format!("198.51.100.{n}")).await;
    }
    // Repeats from the same addresses do not count.
    fail(&app, "alice", "198.51.100.1").await;
    assert!(alerts(&app, "brute_force").await.is_empty());
    // The window passes: four more addresses stay quiet.
    app.clock.advance(3600);
    for n in 5..=8 {
        fail(&app, "alice", &format!("192.0.2.{n}")).await;
    }
    assert!(alerts(&app, "brute_force").await.is_empty());
    fail(&app, "alice", "192.0.2.9").await;
    let raised = alerts(&app, "brute_force").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].subject, format!("user {id}"));
    let payload: serde_json::Value = serde_json::from_str(&raised[0].payload).unwrap();
    assert_eq!(payload["data"]["user_id"], id.as_str());
    assert_eq!(payload["data"]["addresses"], 5);
    // Nothing in an alert names the password tried.
    assert!(!raised[0].payload.contains("not the password"));
}

#[tokio::test]
async fn refresh_token_reuse_raises_an_alert() {
    let app = spawn_app_with(setup).await;
    let signed = app.sign_in("alice", "openid").await;
    let first = signed.str("refresh_token");
    let rotated = app.refresh(&first).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert!(alerts(&app, "refresh_token_reuse").await.is_empty());
    app.refresh(&first)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let raised = alerts(&app, "refresh_token_reuse").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(!raised[0].payload.contains(&first), "no token in an alert");
}

#[tokio::test]
async fn gaining_administrative_power_raises_an_alert_and_ordinary_roles_do_not() {
    let app = spawn_app_with(setup).await;
    let token = admin_token(&app).await;
    let carol = user_with_roles(&app, "carol", &["reader"]).await;
    let bob = user_with_roles(&app, "bob", &["reader"]).await;
    let set_roles = |id: String, roles: serde_json::Value| {
        let token = token.clone();
        let app = &app;
        async move {
            call(
                app,
                Method::PUT,
                &format!("/api/v1/admin/users/{id}/roles"),
                &token,
                Some(json!({"roles": roles})),
            )
            .await
        }
    };
    let author = set_roles(carol.clone(), json!(["reader", "author"])).await;
    assert_eq!(author.status, StatusCode::OK, "{}", author.body);
    assert!(alerts(&app, "privilege_granted").await.is_empty());
    let admin = set_roles(bob.clone(), json!(["admin"])).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    let raised = alerts(&app, "privilege_granted").await;
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].subject, format!("user {bob}"));
    assert!(raised[0].payload.contains("users:admin"));
    // A role that gains an administrative permission.
    let role = call(
        &app,
        Method::PUT,
        "/api/v1/admin/roles/reader/permissions",
        &token,
        Some(json!({"permissions": ["articles:read", "audit:read"]})),
    )
    .await;
    assert_eq!(role.status, StatusCode::OK, "{}", role.body);
    let raised = alerts(&app, "privilege_granted").await;
    assert_eq!(raised.len(), 2);
    assert!(raised.iter().any(|a| a.subject == "role reader"));
    // A client given an administrative scope, from the command line's use case.
    let client = portcullis::clients::NewClient {
        client_id: portcullis::domain::ClientId::parse("ops-console").unwrap(),
        name: "ops console".into(),
        secret: Some(None),
        grant_types: vec![portcullis::clients::GrantType::ClientCredentials],
        scopes: portcullis::domain::Scope::from_tokens(["keys:admin"]),
        default_scopes: None,
        audiences: vec![],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        first_party: false,
    };
    app.state
        .client_admin
        .create(&Caller::operator(), client)
        .await
        .unwrap();
    let raised = alerts(&app, "privilege_granted").await;
    assert!(
        raised.iter().any(|a| a.subject == "client ops-console"),
        "{raised:?}"
    );
}

#[tokio::test]
async fn mfa_turned_off_on_an_administrator_raises_an_alert_and_on_a_reader_does_not() {
    let app = spawn_app_with(setup).await;
    for (name, roles) in [("erin", vec!["reader"]), ("dora", vec!["admin"])] {
        let (token, _, codes) = super::mfa::enrolled(&app, name).await;
        let id = app.state.users.id_of(name).await.unwrap();
        let roles: Vec<String> = roles.into_iter().map(String::from).collect();
        app.state.users.set_roles(&id, &roles).await.unwrap();
        let off = super::mfa::call(
            &app,
            Method::DELETE,
            "/api/v1/users/me/mfa/totp",
            &token,
            json!({"password": PASSWORD, "code": codes[0]}),
        )
        .await;
        assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.body);
        let raised = alerts(&app, "mfa_disabled_on_admin").await;
        if name == "erin" {
            assert!(raised.is_empty(), "{raised:?}");
        } else {
            assert_eq!(raised.len(), 1);
            assert_eq!(raised[0].subject, format!("user {id}"));
        }
    }
}

#[tokio::test]
async fn an_overdue_rotation_raises_an_alert_only_past_the_grace() {
    let app = spawn_app_with(setup).await;
    let interval = app.state.settings.keys.timing.rotation_interval;
    let keys = app.state.key_admin.list().await.unwrap();
    app.clock
        .advance(i64::try_from(interval.as_secs()).unwrap() + 3000);
    app.state.alerts.check_rotation(&keys, interval).await;
    assert!(alerts(&app, "key_rotation_overdue").await.is_empty());
    app.clock.advance(601);
    app.state.alerts.check_rotation(&keys, interval).await;
    assert_eq!(alerts(&app, "key_rotation_overdue").await.len(), 1);
}

#[tokio::test]
async fn a_burst_of_server_errors_raises_an_alert_at_twenty() {
    let app = spawn_app_with(setup).await;
    for _ in 0..19 {
        app.state.alerts.server_error().await;
    }
    assert!(alerts(&app, "server_errors").await.is_empty());
    // A new window: the count starts again.
    app.clock.advance(60);
    for _ in 0..19 {
        app.state.alerts.server_error().await;
    }
    assert!(alerts(&app, "server_errors").await.is_empty());
    app.state.alerts.server_error().await;
    assert_eq!(alerts(&app, "server_errors").await.len(), 1);
}

#[tokio::test]
async fn a_store_outage_seen_by_two_instances_is_one_alert() {
    let app = spawn_app_with(setup).await;
    let peer = app.spawn_peer().await;
    app.state
        .alerts
        .store_unavailable("connection refused")
        .await;
    peer.state
        .alerts
        .store_unavailable("connection refused")
        .await;
    app.state
        .alerts
        .store_unavailable("connection refused")
        .await;
    assert_eq!(alerts(&app, "store_unavailable").await.len(), 1);
}

#[tokio::test]
async fn alerts_are_mailed_to_the_operator_address() {
    let app = spawn_app_with(|raw| {
        setup(raw);
        raw.alert_email = Some("security@example.com".into());
    })
    .await;
    for n in 1..=10 {
        fail(&app, &format!("victim{n}"), "203.0.113.4").await;
    }
    let mails = entities::outbox::Entity::find()
        .filter(entities::outbox::Column::Kind.eq("security_alert"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipient, "security@example.com");
    assert!(
        mails[0].subject.contains("failed sign-ins on 10 accounts"),
        "{}",
        mails[0].subject
    );
    assert!(mails[0].text_body.contains("203.0.113.0/24"));
    // Counted for Prometheus, by rule.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_security_alerts_total{rule=\"credential_stuffing\"}"),
        "{metrics}"
    );
}

/// The attack of the "Done when": credential stuffing spread over two instances
/// reaches the receiver as exactly one signed alert.
#[tokio::test]
async fn an_attack_on_two_instances_is_one_signed_alert_at_the_receiver() {
    let a = spawn_app_with(setup).await;
    let b = a.spawn_peer().await;
    let token = admin_token(&a).await;
    let receiver = Receiver::start().await;
    let (_, secret) = register(&a, &token, &receiver.url).await;
    // With a shared store (Redis) the instances add to one count: five accounts on each
    // reach the threshold together. With in-process stores each counts alone, so each
    // instance sees ten.
    let per_instance = if a.state.store_is_shared { 5 } else { 10 };
    for n in 0..per_instance {
        fail(&a, &format!("a-victim{n}"), "203.0.113.50").await;
        fail(&b, &format!("b-victim{n}"), "203.0.113.51").await;
    }
    let got = receiver.wait_for(1).await;
    // Anything more would have come by now: each raise tries its webhook at once.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got_after = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got_after.len(), 1, "{got_after:?}");
    assert!(signed_by(&got[0], &secret));
    assert_eq!(got[0].json["type"], "alert.credential_stuffing");
    assert_eq!(got[0].json["data"]["subject"], "203.0.113.0/24");
    assert_eq!(alerts(&a, "credential_stuffing").await.len(), 1);
}

/// The rules watch the audit log, which they also write to: the loop is weak, so a stopped
/// instance frees its rules and with them its database pool (a strong loop kept every test
/// instance's PostgreSQL connections open).
#[tokio::test]
async fn a_stopped_instance_frees_its_rules_and_their_database_pool() {
    let app = spawn_app_with(setup).await;
    let watcher = app.state.alerts.watcher();
    assert!(watcher.watching());
    drop(app);
    for _ in 0..100 {
        if !watcher.watching() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the alert rules outlived their instance");
}
