//! Abuse protection: rate limits (per IP, account, client; headers; RFC 6749 body shape),
//! trusted proxies, account lockout and its resistance to enumeration and denial of service,
//! the bounded sign-in queue, and limits shared by two instances.

use portcullis::clients::GrantType;
use portcullis::config::{DurationSetting, RawSettings};
use reqwest::StatusCode;

use super::helpers::*;

fn limits_on(raw: &mut RawSettings) {
    raw.rate_limit_enabled = true;
}

async fn token_attempt(
    app: &TestApp,
    username: &str,
    password: &str,
    forwarded: Option<&str>,
) -> Answer {
    let mut req = app.http.post(app.url("/oauth/token")).form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
        ("client_id", SPA),
    ]);
    if let Some(ip) = forwarded {
        req = req.header("x-forwarded-for", ip);
    }
    Answer::from(req.send().await.unwrap()).await
}

/// A wrong-password sign-in for `nobody` carrying `headers` (as a proxy forwards them).
async fn attempt_with(app: &TestApp, headers: &[(&str, &str)]) -> Answer {
    let mut req = app.http.post(app.url("/oauth/token")).form(&[
        ("grant_type", "password"),
        ("username", "nobody"),
        ("password", "whatever password"),
        ("client_id", SPA),
    ]);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    Answer::from(req.send().await.unwrap()).await
}

#[track_caller]
fn assert_limited(answer: &Answer, limit: u32) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(answer.header("ratelimit-limit").unwrap(), limit.to_string());
    assert_eq!(answer.header("ratelimit-remaining").unwrap(), "0");
    assert!(
        answer
            .header("ratelimit-reset")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn token_endpoint_is_limited_per_ip_with_rfc6749_body() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_token_ip = "3/1m".into();
    })
    .await;
    for _ in 0..3 {
        let a = token_attempt(&app, "nobody", "whatever password", None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    }
    let limited = token_attempt(&app, "nobody", "whatever password", None).await;
    assert_limited(&limited, 3);
    limited.assert_oauth_error(429, "temporarily_unavailable");
}

#[tokio::test]
async fn sign_ins_are_limited_per_account_and_registration_per_ip() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_login = "2/1m".into();
        raw.rate_limit_register_ip = "3/1h".into();
    })
    .await;
    for name in ["ann", "bea"] {
        assert_eq!(app.register(name).await.status, StatusCode::CREATED);
    }
    for _ in 0..2 {
        assert_eq!(
            token_attempt(&app, "ann", PASSWORD, None).await.status,
            StatusCode::OK
        );
    }
    // Also counted case-insensitively, and by account, not by IP.
    assert_limited(&token_attempt(&app, "ANN", PASSWORD, None).await, 2);
    assert_eq!(
        token_attempt(&app, "bea", PASSWORD, None).await.status,
        StatusCode::OK
    );

    assert_eq!(app.register("cid").await.status, StatusCode::CREATED);
    let limited = app.register("dot").await;
    assert_limited(&limited, 3);
    assert_eq!(limited.body["code"], "rate_limited");
}

#[tokio::test]
async fn clients_are_limited_on_introspection() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_client = "2/1m".into();
    })
    .await;
    let rs = app.resource_server().await;
    for _ in 0..2 {
        assert_eq!(app.introspect(&rs, "x").await.status, StatusCode::OK);
    }
    assert_limited(&app.introspect(&rs, "x").await, 2);
}

#[tokio::test]
async fn a_public_client_has_no_budget_anyone_could_spend() {
    // The public SPA client is shared by all its users and its id is public: a per-client
    // budget would let anyone stop every user's sign-in. Only IP and account limits apply.
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_client = "2/1m".into();
    })
    .await;
    for name in ["user1", "user2", "user3", "user4"] {
        assert_eq!(app.register(name).await.status, StatusCode::CREATED);
        let t = app.password_grant(name, "").await;
        assert_eq!(t.status, StatusCode::OK, "{name}: {}", t.body);
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    // Not trusted: a client cannot escape its limit by inventing X-Forwarded-For.
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_token_ip = "2/1m".into();
    })
    .await;
    token_attempt(&app, "x", "y", Some("198.51.100.1")).await;
    token_attempt(&app, "x", "y", Some("198.51.100.2")).await;
    assert_limited(
        &token_attempt(&app, "x", "y", Some("198.51.100.3")).await,
        2,
    );

    // Behind a trusted proxy, each forwarded client has its own budget.
    let proxied = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_token_ip = "2/1m".into();
        raw.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    for _ in 0..2 {
        token_attempt(&proxied, "x", "y", Some("198.51.100.1")).await;
    }
    assert_limited(
        &token_attempt(&proxied, "x", "y", Some("198.51.100.1")).await,
        2,
    );
    assert_eq!(
        token_attempt(&proxied, "x", "y", Some("198.51.100.2"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn forwarded_headers_name_the_client_only_from_a_trusted_proxy() {
    // The address recorded for a registration, for each way of forwarding it. From an
    // untrusted peer (the default) both X-Forwarded-For and Forwarded are ignored; behind a
    // trusted proxy only the configured one of the two is read.
    let recorded_ip = |app: &TestApp, username: &str, header: (&str, &str)| {
        let request = app
            .http
            .post(app.url("/api/v1/users"))
            .header(header.0, header.1)
            .json(&serde_json::json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            }));
        let db = app.state.db.clone();
        let audit = app.state.audit.clone();
        async move {
            let created = Answer::from(request.send().await.unwrap()).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
            audit.flush().await;
            entities::audit_events::Entity::find()
                .filter(entities::audit_events::Column::EventType.eq("user.registered"))
                .filter(entities::audit_events::Column::ActorUserId.eq(created.str("id")))
                .one(&db)
                .await
                .unwrap()
                .expect("registration audited")
                .ip
        }
    };
    let direct = spawn_app().await;
    let proxied = |header: &'static str| {
        spawn_app_with(move |raw| {
            raw.trusted_proxies = "127.0.0.0/8".into();
            raw.forwarded_header = header.into();
        })
    };
    let behind_xff = proxied("x-forwarded-for").await;
    let behind_forwarded = proxied("forwarded").await;
    // (header sent, app configured for it, app configured for the other one, expected)
    let cases = [
        (
            ("x-forwarded-for", "198.51.100.7"),
            &behind_xff,
            &behind_forwarded,
            "198.51.100.7",
        ),
        // Read from the right: a client cannot choose its address by prepending one.
        (
            ("x-forwarded-for", "203.0.113.5, 198.51.100.7"),
            &behind_xff,
            &behind_forwarded,
            "198.51.100.7",
        ),
        (
            ("forwarded", "for=198.51.100.8;proto=https"),
            &behind_forwarded,
            &behind_xff,
            "198.51.100.8",
        ),
        (
            ("forwarded", "for=\"[2001:db8::1]:4711\""),
            &behind_forwarded,
            &behind_xff,
            "2001:db8::1",
        ),
    ];
    for (i, (header, configured, other, forwarded)) in cases.into_iter().enumerate() {
        let name = format!("fwd{i}");
        assert_eq!(
            recorded_ip(&direct, &name, header).await.as_deref(),
            Some("127.0.0.1"),
            "untrusted peer, {header:?}"
        );
        assert_eq!(
            recorded_ip(configured, &name, header).await.as_deref(),
            Some(forwarded),
            "trusted proxy, {header:?}"
        );
        assert_eq!(
            recorded_ip(other, &name, header).await.as_deref(),
            Some("127.0.0.1"),
            "trusted proxy configured for the other header, {header:?}"
        );
    }
}

#[tokio::test]
async fn a_client_supplied_header_cannot_pick_its_bucket() {
    // The test client plays a trusted proxy: it names the real client in the configured header,
    // while the client's own invention in the other header changes with every request.
    let behind = |header: &'static str| {
        spawn_app_with(move |raw| {
            limits_on(raw);
            raw.rate_limit_token_ip = "2/1m".into();
            raw.trusted_proxies = "127.0.0.1".into();
            raw.forwarded_header = header.into();
        })
    };
    let forwarded = behind("forwarded").await;
    for spoof in ["192.0.2.1", "192.0.2.2"] {
        let a = attempt_with(
            &forwarded,
            &[
                ("x-forwarded-for", spoof),
                ("forwarded", "for=198.51.100.1"),
            ],
        )
        .await;
        a.assert_oauth_error(400, "invalid_grant");
    }
    assert_limited(
        &attempt_with(
            &forwarded,
            &[
                ("x-forwarded-for", "192.0.2.3"),
                ("forwarded", "for=198.51.100.1"),
            ],
        )
        .await,
        2,
    );
    // Another client behind the same proxy has a budget of its own.
    attempt_with(&forwarded, &[("forwarded", "for=198.51.100.2")])
        .await
        .assert_oauth_error(400, "invalid_grant");

    // And the other way round: the proxy appends to X-Forwarded-For.
    let xff = behind("x-forwarded-for").await;
    for spoof in ["for=192.0.2.1", "for=192.0.2.2"] {
        let a = attempt_with(
            &xff,
            &[
                ("forwarded", spoof),
                ("x-forwarded-for", "192.0.2.9, 198.51.100.1"),
            ],
        )
        .await;
        a.assert_oauth_error(400, "invalid_grant");
    }
    assert_limited(
        &attempt_with(
            &xff,
            &[
                ("forwarded", "for=192.0.2.3"),
                ("x-forwarded-for", "192.0.2.10, 198.51.100.1"),
            ],
        )
        .await,
        2,
    );
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_64() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_token_ip = "2/1m".into();
        raw.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    for ip in ["2001:db8:1:2::a", "2001:db8:1:2:ffff::b"] {
        token_attempt(&app, "x", "y", Some(ip))
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    assert_limited(
        &token_attempt(&app, "x", "y", Some("2001:db8:1:2::c")).await,
        2,
    );
    token_attempt(&app, "x", "y", Some("2001:db8:1:3::a"))
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn rate_limits_can_be_switched_off() {
    let app = spawn_app_with(|raw| {
        raw.rate_limit_enabled = false;
        raw.rate_limit_token_ip = "1/1h".into();
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            token_attempt(&app, "x", "y", None).await.status,
            StatusCode::BAD_REQUEST
        );
    }
}

fn lockout(threshold: u32, ip_threshold: u32) -> impl FnOnce(&mut RawSettings) {
    move |raw| {
        raw.lockout_threshold = threshold;
        raw.lockout_ip_threshold = ip_threshold;
        raw.trusted_proxies = "127.0.0.1".into();
    }
}

#[tokio::test]
async fn repeated_failures_lock_the_account_indistinguishably_until_unlocked() {
    let app = spawn_app_with(lockout(3, 100)).await;
    app.register("victim").await;
    let wrong = token_attempt(&app, "victim", "not the password!", None).await;
    for _ in 0..2 {
        token_attempt(&app, "victim", "not the password!", None).await;
    }
    // Locked: the right password now gets exactly the answer of a wrong one, and of an
    // unknown user.
    let locked = token_attempt(&app, "victim", PASSWORD, None).await;
    let unknown = token_attempt(&app, "no-such-user", PASSWORD, None).await;
    assert_eq!((locked.status, &locked.body), (wrong.status, &wrong.body));
    assert_eq!((unknown.status, &unknown.body), (wrong.status, &wrong.body));

    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq("auth.account_locked"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].details.contains("account_locked"));

    // An admin unlocks; the right password works again.
    let admin = app.register("boss").await.str("id");
    app.state
        .users
        .set_roles(&admin, &["admin".to_string()])
        .await
        .unwrap();
    let admin_token = app
        .password_grant("boss", "users:admin")
        .await
        .str("access_token");
    let victim = app
        .state
        .users
        .credentials("victim")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let unlocked = Answer::from(
        app.http
            .post(app.url(&format!("/api/v1/admin/users/{victim}/unlock")))
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unlocked.status, StatusCode::OK, "{}", unlocked.body);
    assert_eq!(
        token_attempt(&app, "victim", PASSWORD, None).await.status,
        StatusCode::OK
    );
}

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

#[tokio::test]
async fn a_success_resets_the_count() {
    let app = spawn_app_with(lockout(3, 100)).await;
    app.register("carol").await;
    for _ in 0..2 {
        token_attempt(&app, "carol", "wrong wrong wrong", None).await;
    }
    assert_eq!(
        token_attempt(&app, "carol", PASSWORD, None).await.status,
        StatusCode::OK
    );
    for _ in 0..2 {
        token_attempt(&app, "carol", "wrong wrong wrong", None).await;
    }
    assert_eq!(
        token_attempt(&app, "carol", PASSWORD, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_attacking_address_does_not_lock_the_owner_out() {
    // Per-account-and-IP blocking comes first: the attacker's address is blocked for this
    // account while the owner, elsewhere, still signs in.
    let app = spawn_app_with(lockout(100, 3)).await;
    app.register("owner").await;
    for _ in 0..3 {
        token_attempt(&app, "owner", "guess guess guess", Some("203.0.113.66")).await;
    }
    let attacker = token_attempt(&app, "owner", PASSWORD, Some("203.0.113.66")).await;
    attacker.assert_oauth_error(400, "invalid_grant");
    let owner = token_attempt(&app, "owner", PASSWORD, Some("198.51.100.10")).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
}

#[tokio::test]
async fn an_unlock_lifts_address_blocks_too() {
    let app = spawn_app_with(lockout(100, 3)).await;
    let owner = app.register("frank").await.str("id");
    for _ in 0..3 {
        token_attempt(&app, "frank", "guess guess guess", Some("203.0.113.66")).await;
    }
    token_attempt(&app, "frank", PASSWORD, Some("203.0.113.66"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(lock_events(&app, &owner).await[0]["lock"], "ip_blocked");

    let admin = app.register("root").await.str("id");
    app.state
        .users
        .set_roles(&admin, &["admin".to_string()])
        .await
        .unwrap();
    let admin_token = app
        .password_grant("root", "users:admin")
        .await
        .str("access_token");
    let unlocked = Answer::from(
        app.http
            .post(app.url(&format!("/api/v1/admin/users/{owner}/unlock")))
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(unlocked.status, StatusCode::OK, "{}", unlocked.body);
    let signed_in = token_attempt(&app, "frank", PASSWORD, Some("203.0.113.66")).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.body);
}

#[tokio::test]
async fn lock_periods_grow() {
    let app = spawn_app_with(|raw| {
        lockout(2, 100)(raw);
        raw.lockout_base = DurationSetting::Seconds(1);
    })
    .await;
    app.register("dan").await;
    for _ in 0..2 {
        token_attempt(&app, "dan", "wrong wrong wrong", None).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    for _ in 0..2 {
        token_attempt(&app, "dan", "wrong wrong wrong", None).await;
    }
    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq("auth.account_locked"))
        .all(&app.state.db)
        .await
        .unwrap();
    let seconds: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.details).unwrap()["seconds"].clone())
        .collect();
    assert_eq!(seconds, vec![serde_json::json!(1), serde_json::json!(2)]);
}

/// The `reason`s of the failed sign-ins audited for `user_id`, counted: `invalid_credentials`
/// (the password was checked) and `locked` (refused unchecked).
async fn failure_reasons(
    app: &TestApp,
    user_id: &str,
) -> std::collections::BTreeMap<String, usize> {
    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq("auth.sign_in"))
        .filter(entities::audit_events::Column::Outcome.eq("failure"))
        .filter(entities::audit_events::Column::ActorUserId.eq(user_id))
        .all(&app.state.db)
        .await
        .unwrap();
    let mut reasons = std::collections::BTreeMap::new();
    for e in events {
        let details: serde_json::Value = serde_json::from_str(&e.details).unwrap();
        *reasons
            .entry(details["reason"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    reasons
}

async fn lock_events(app: &TestApp, user_id: &str) -> Vec<serde_json::Value> {
    app.state.audit.flush().await;
    entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq("auth.account_locked"))
        .filter(entities::audit_events::Column::ActorUserId.eq(user_id))
        .all(&app.state.db)
        .await
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect()
}

/// Fires `n` wrong-password sign-ins for `username` at once, the i-th from `address(i)`,
/// spread over `apps` (instances sharing one store).
async fn concurrent_guesses(
    apps: &[std::sync::Arc<TestApp>],
    username: &'static str,
    n: usize,
    address: fn(usize) -> String,
) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            tokio::spawn(async move {
                token_attempt(&app, username, "a wrong guess", Some(&address(i))).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().assert_oauth_error(400, "invalid_grant");
    }
    // Every instance's audit events are written before the caller reads them.
    for app in apps {
        app.state.audit.flush().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_are_checked_only_within_the_thresholds() {
    // Address threshold 5, account threshold 10; rate limits off. With Redis, the guesses are
    // spread over two instances.
    let app = std::sync::Arc::new(spawn_app_with(lockout(10, 5)).await);
    let mut apps = vec![app.clone()];
    if std::env::var_os("PORTCULLIS_TEST_REDIS_URL").is_some() {
        apps.push(std::sync::Arc::new(app.spawn_peer().await));
    }
    let one = app.register("one-address").await.str("id");
    let many = app.register("many-addresses").await.str("id");

    // 38 at once from one address: only the first 5 are checked, then the address is blocked.
    concurrent_guesses(&apps, "one-address", 38, |_| "203.0.113.50".into()).await;
    let reasons = failure_reasons(&app, &one).await;
    assert_eq!(reasons.get("invalid_credentials"), Some(&5), "{reasons:?}");
    assert_eq!(reasons.get("locked"), Some(&33), "{reasons:?}");
    let locks = lock_events(&app, &one).await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["lock"], "ip_blocked");

    // 38 at once from 38 addresses: only 10 are checked, then the account is locked.
    concurrent_guesses(&apps, "many-addresses", 38, |i| {
        format!("198.51.100.{}", i + 1)
    })
    .await;
    let reasons = failure_reasons(&app, &many).await;
    assert_eq!(reasons.get("invalid_credentials"), Some(&10), "{reasons:?}");
    assert_eq!(reasons.get("locked"), Some(&28), "{reasons:?}");
    let locks = lock_events(&app, &many).await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["lock"], "account_locked");
    assert_eq!(
        token_attempt(&app, "many-addresses", PASSWORD, Some("192.0.2.77"))
            .await
            .status,
        StatusCode::BAD_REQUEST,
        "locked"
    );
}

#[tokio::test]
async fn a_username_and_its_email_address_share_one_lockout_budget() {
    let app = spawn_app_with(lockout(4, 100)).await;
    let id = app.register("dana").await.str("id");
    for login in ["dana", "DANA@example.com", "dana@example.com", "Dana"] {
        token_attempt(&app, login, "not the password!", None)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    for login in ["dana", "dana@example.com"] {
        token_attempt(&app, login, PASSWORD, None)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    let locks = lock_events(&app, &id).await;
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["lock"], "account_locked");
}

#[tokio::test]
async fn a_username_and_its_email_address_share_one_rate_budget() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_login = "2/1m".into();
    })
    .await;
    app.register("erin").await;
    for login in ["erin", "erin@example.com"] {
        let a = token_attempt(&app, login, PASSWORD, None).await;
        assert_eq!(a.status, StatusCode::OK, "{login}: {}", a.body);
    }
    assert_limited(
        &token_attempt(&app, "ERIN@example.com", PASSWORD, None).await,
        2,
    );
    assert_limited(&token_attempt(&app, "erin", PASSWORD, None).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_sign_in_queue_answers_503_at_once_and_other_endpoints_stay_up() {
    let app = std::sync::Arc::new(
        spawn_app_with(|raw| {
            raw.bcrypt_cost = 10;
            raw.bcrypt_max_concurrency = Some(1);
            raw.bcrypt_max_queue = 0;
        })
        .await,
    );
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            token_attempt(&app, "nobody", "pw pw pw pw pw", None).await
        }));
    }
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    let mut busy = 0;
    for t in tasks {
        let a = t.await.unwrap();
        match a.status.as_u16() {
            400 => a.assert_oauth_error(400, "invalid_grant"),
            503 => {
                busy += 1;
                a.assert_oauth_error(503, "temporarily_unavailable");
                assert_eq!(a.header("retry-after").as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    assert!(
        busy >= 1,
        "with one slot and no queue, concurrent sign-ins are refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_whose_clients_went_away_keep_the_queue_full() {
    // One bcrypt thread, one queue place, and a cost whose work outlives the impatient clients
    // below (cost 13 takes over a second on the debug build the suite runs).
    let app = spawn_app_with(|raw| {
        raw.bcrypt_cost = 13;
        raw.bcrypt_max_concurrency = Some(1);
        raw.bcrypt_max_queue = 1;
    })
    .await;
    // Two sign-ins whose clients reset their connections: one job running, one queued.
    let body = format!("grant_type=password&username=nobody&password=pw&client_id={SPA}");
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
        app.base.trim_start_matches("http://"),
        body.len()
    );
    let mut gone = Vec::new();
    for _ in 0..2 {
        let stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let mut sent = 0;
        while sent < request.len() {
            stream.writable().await.unwrap();
            match stream.try_write(request.as_bytes().get(sent..).unwrap()) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        gone.push(stream);
    }
    // Long enough for both to reach the pool, well before the running job ends.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for stream in gone {
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    // Their jobs still hold the pool: the next sign-in is refused at once, not queued behind
    // work nobody waits for.
    token_attempt(&app, "nobody", "pw pw pw pw pw", None)
        .await
        .assert_oauth_error(503, "temporarily_unavailable");
    // Capacity comes back when the running job ends (the orphaned queued one is skipped).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let a = token_attempt(&app, "nobody", "pw pw pw pw pw", None).await;
        if a.status == StatusCode::BAD_REQUEST {
            a.assert_oauth_error(400, "invalid_grant");
            break;
        }
        a.assert_oauth_error(503, "temporarily_unavailable");
        assert!(
            std::time::Instant::now() < deadline,
            "the pool never drained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_instances_share_limits_and_locks_through_redis() {
    if std::env::var_os("PORTCULLIS_TEST_REDIS_URL").is_none() {
        eprintln!("skipped: needs PORTCULLIS_TEST_REDIS_URL (instances share state through Redis)");
        return;
    }
    let a = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_login = "4/1m".into();
        raw.lockout_threshold = 3;
        raw.lockout_ip_threshold = 100;
    })
    .await;
    let b = a.spawn_peer().await;
    a.register("shared").await;
    // Failures on A and B add up to one lock, seen by both.
    token_attempt(&a, "shared", "wrong wrong wrong", None).await;
    token_attempt(&b, "shared", "wrong wrong wrong", None).await;
    token_attempt(&a, "shared", "wrong wrong wrong", None).await;
    token_attempt(&b, "shared", PASSWORD, None)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The per-account rate budget (4) is spent across both instances.
    assert_limited(&token_attempt(&a, "shared", PASSWORD, None).await, 4);
    assert_limited(&token_attempt(&b, "shared", PASSWORD, None).await, 4);
    // A client created once works on both.
    let svc = a
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let token = b
        .post_form_basic(
            "/oauth/token",
            &svc,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(token.status, StatusCode::OK);
}

#[tokio::test]
async fn the_token_endpoint_counts_the_address_first_then_the_confidential_client() {
    let app = spawn_app_with(|raw| {
        limits_on(raw);
        raw.rate_limit_token_ip = "2/1m".into();
        raw.rate_limit_client = "3/1m".into();
        raw.trusted_proxies = "127.0.0.1".into();
    })
    .await;
    let client = app
        .confidential_client("machine", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let cc = |from: &'static str, secret: String| {
        let app = &app;
        let id = client.id.clone();
        async move {
            Answer::from(
                app.http
                    .post(app.url("/oauth/token"))
                    .basic_auth(id, Some(secret))
                    .header("x-forwarded-for", from)
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    for _ in 0..2 {
        let ok = cc("198.51.100.1", client.secret.clone()).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    }
    // The address is over its budget: refused before its credentials are judged, right or
    // wrong, and without spending the client's budget.
    assert_limited(&cc("198.51.100.1", client.secret.clone()).await, 2);
    assert_limited(&cc("198.51.100.1", "wrong".into()).await, 2);
    // So the client has one request left of three, from another address.
    let ok = cc("198.51.100.2", client.secret.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_limited(&cc("198.51.100.3", client.secret.clone()).await, 3);
    // Wrong credentials spend only the address's budget.
    let wrong = cc("198.51.100.4", "wrong".into()).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
}
