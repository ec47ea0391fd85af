//! Refresh rotation across instances behind one load balancer (the app and two peers sharing
//! the database, master key and store prefix): concurrent presentations of one token in strict
//! mode and with a reuse window, client binding and the end of the window, revocation racing
//! refresh, and the purge of what has expired.
//!
//! With SQLite and the in-process store the peers share the database file but not the deny
//! list, so access tokens are checked at the instance that revoked them; with Redis, at every
//! instance.

use std::collections::HashSet;
use std::sync::Arc;

use portcullis::audit::EventType;
use portcullis::clients::GrantType;
use portcullis::clock::Clock;
use portcullis::config::{DurationSetting, RawSettings};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use super::helpers::*;

const WINDOW: u64 = 10;

fn windowed(raw: &mut RawSettings) {
    raw.refresh_reuse_interval = DurationSetting::Seconds(WINDOW);
}

fn shared_store() -> bool {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").is_ok()
}

/// The app and two peers.
async fn cluster(adjust: impl FnOnce(&mut RawSettings)) -> Vec<Arc<TestApp>> {
    let app = spawn_app_with(adjust).await;
    let b = app.spawn_peer().await;
    let c = app.spawn_peer().await;
    vec![Arc::new(app), Arc::new(b), Arc::new(c)]
}

/// Moves every instance's clock.
fn advance(apps: &[Arc<TestApp>], seconds: i64) {
    for app in apps {
        app.clock.advance(seconds);
    }
}

/// Presents `token` `n` times at once, spread over the instances.
async fn refresh_at_once(apps: &[Arc<TestApp>], token: &str, n: usize) -> Vec<Answer> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            let token = token.to_string();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                app.refresh(&token).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn family_tokens(app: &TestApp, family_id: &str) -> Vec<entities::refresh_tokens::Model> {
    entities::refresh_tokens::Entity::find()
        .filter(entities::refresh_tokens::Column::FamilyId.eq(family_id))
        .all(&app.state.db)
        .await
        .unwrap()
}

async fn family(app: &TestApp, family_id: &str) -> entities::refresh_families::Model {
    entities::refresh_families::Entity::find_by_id(family_id.to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("family row")
}

/// Waits until every instance has written the audit events it recorded.
async fn flush_all(apps: &[Arc<TestApp>]) {
    for app in apps {
        app.state.audit.flush().await;
    }
}

async fn events(app: &TestApp, event_type: EventType) -> u64 {
    app.state.audit.flush().await;
    entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq(event_type.as_str()))
        .count(&app.state.db)
        .await
        .unwrap()
}

async fn replay_rows(app: &TestApp) -> Vec<entities::refresh_replays::Model> {
    entities::refresh_replays::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
}

fn sid(access_token: &str) -> String {
    jwt_part(access_token, 1)["sid"]
        .as_str()
        .expect("sid")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strict_concurrent_refreshes_across_instances_have_one_winner_and_revoke_the_family() {
    let apps = cluster(|_| {}).await;
    let first = apps[0].sign_in("alice", "openid").await;
    let token = first.str("refresh_token");
    let family_id = sid(&first.str("access_token"));

    let answers = refresh_at_once(&apps, &token, 32).await;
    let mut winners = Vec::new();
    for answer in answers {
        match answer.status.as_u16() {
            200 => winners.push(answer),
            400 => answer.assert_oauth_error(400, "invalid_grant"),
            other => panic!("unexpected status {other}: {}", answer.body),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh wins");
    // The losers are reuse in strict mode: the whole family is revoked, the winner's tokens too.
    assert!(family(&apps[0], &family_id).await.revoked_at.is_some());
    let winner = &winners[0];
    for app in &apps {
        app.refresh(&winner.str("refresh_token"))
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    // Its access token is refused wherever reuse was detected: with Redis, everywhere; with
    // the in-process store, at least at one instance (each keeps its own deny list).
    let rs = apps[0].resource_server().await;
    let mut inactive = 0;
    for app in &apps {
        let answer = app.introspect(&rs, &winner.str("access_token")).await;
        if answer.body == serde_json::json!({"active": false}) {
            inactive += 1;
        }
    }
    if shared_store() {
        assert_eq!(inactive, apps.len());
    } else {
        assert!(inactive >= 1);
    }
    // One rotation, whatever the number of presentations; no answer kept in strict mode.
    assert_eq!(family_tokens(&apps[0], &family_id).await.len(), 2);
    assert!(replay_rows(&apps[0]).await.is_empty());
    flush_all(&apps).await;
    assert!(events(&apps[0], EventType::RefreshReuseDetected).await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_window_concurrent_refreshes_all_get_the_same_answer() {
    let apps = cluster(windowed).await;
    let first = apps[0].sign_in("bob", "openid articles:read").await;
    let token = first.str("refresh_token");
    let family_id = sid(&first.str("access_token"));

    let answers = refresh_at_once(&apps, &token, 32).await;
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));
    }
    let exp = jwt_part(&answers[0].str("access_token"), 1)["exp"]
        .as_i64()
        .unwrap();
    let reference = &answers[0];
    let new_refresh = reference.str("refresh_token");
    assert_ne!(new_refresh, token);
    assert!(reference.body.get("id_token").is_some());
    for (i, answer) in answers.iter().enumerate() {
        for field in [
            "refresh_token",
            "access_token",
            "id_token",
            "scope",
            "token_type",
        ] {
            assert_eq!(
                answer.body[field], reference.body[field],
                "{field} differs between concurrent answers"
            );
        }
        // The lifetime left on the clock of the instance that answered (the instances'
        // manual clocks start a second or two apart, like real clocks do).
        let now = apps[i % apps.len()].clock.now();
        assert_eq!(answer.body["expires_in"].as_i64().unwrap(), exp - now);
    }
    // Exactly one rotation happened: the family holds the old token and one successor.
    let tokens = family_tokens(&apps[0], &family_id).await;
    assert_eq!(tokens.len(), 2);
    assert!(family(&apps[0], &family_id).await.revoked_at.is_none());
    flush_all(&apps).await;
    assert_eq!(events(&apps[0], EventType::RefreshReuseDetected).await, 0);
    assert_eq!(events(&apps[0], EventType::RefreshReplayed).await, 31);

    // The answer is kept sealed: the database shows neither token.
    let rows = replay_rows(&apps[0]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].digest, portcullis::crypto::secret_digest(&token));
    for secret in [&new_refresh, &reference.str("access_token")] {
        assert!(!rows[0].sealed.contains(secret.as_str()));
    }

    // The new refresh token works, and it rotates (once) like any other.
    let next = apps[1].refresh(&new_refresh).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_ne!(next.str("refresh_token"), new_refresh);
    assert_eq!(family_tokens(&apps[0], &family_id).await.len(), 3);
    let last = apps[2].refresh(&next.str("refresh_token")).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
}

/// Many sign-ins refreshed at once, each token presented twice, spread over the instances:
/// each rotates once, answers both of its presentations alike, and stays in its own family.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sign_ins_refreshed_at_once_each_rotate_once() {
    const SIGN_INS: usize = 12;
    let apps = cluster(windowed).await;
    let reg = apps[0].register("frank").await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let mut tokens = Vec::new();
    for _ in 0..SIGN_INS {
        let first = apps[0].password_grant("frank", "openid").await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.body);
        tokens.push((first.str("refresh_token"), sid(&first.str("access_token"))));
    }

    let barrier = Arc::new(tokio::sync::Barrier::new(2 * SIGN_INS));
    let tasks: Vec<_> = (0..2 * SIGN_INS)
        .map(|i| {
            let app = apps[i % apps.len()].clone();
            let token = tokens[i % SIGN_INS].0.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                app.refresh(&token).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answers.push(answer);
    }

    let mut successors = HashSet::new();
    for (i, (token, family_id)) in tokens.iter().enumerate() {
        let (a, b) = (&answers[i], &answers[i + SIGN_INS]);
        let successor = a.str("refresh_token");
        assert_eq!(successor, b.str("refresh_token"), "sign-in {i}: one answer");
        assert_ne!(&successor, token);
        assert_eq!(
            sid(&a.str("access_token")),
            *family_id,
            "sign-in {i}: its own family"
        );
        let held = family_tokens(&apps[0], family_id).await;
        assert_eq!(held.len(), 2, "sign-in {i}: one rotation");
        assert!(
            held.iter()
                .any(|t| t.digest == portcullis::crypto::secret_digest(&successor))
        );
        successors.insert(successor);
    }
    assert_eq!(
        successors.len(),
        SIGN_INS,
        "no two sign-ins share a successor"
    );
    assert_eq!(replay_rows(&apps[0]).await.len(), SIGN_INS);
    for (i, successor) in successors.iter().enumerate() {
        let next = apps[i % apps.len()].refresh(successor).await;
        assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_from_another_client_learns_nothing_and_does_not_hurt_the_family() {
    let apps = cluster(windowed).await;
    let first = apps[0].sign_in("carol", "openid").await;
    let token = first.str("refresh_token");
    let rotated = apps[0].refresh(&token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);

    let other = apps[0]
        .confidential_client("other", &[GrantType::RefreshToken], "openid articles:read")
        .await;
    for app in &apps {
        let answer = app
            .post_form_basic(
                "/oauth/token",
                &other,
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await;
        answer.assert_oauth_error(400, "invalid_grant");
        assert!(answer.body.get("refresh_token").is_none());
    }
    flush_all(&apps).await;
    assert_eq!(events(&apps[0], EventType::RefreshReuseDetected).await, 0);
    assert_eq!(events(&apps[0], EventType::RefreshReplayed).await, 0);

    // The rightful client's retry is still answered, and its session goes on.
    let retry = apps[1].refresh(&token).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.str("refresh_token"), rotated.str("refresh_token"));
    assert_eq!(retry.str("access_token"), rotated.str("access_token"));
    let next = apps[2].refresh(&rotated.str("refresh_token")).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_reports_the_lifetime_left_and_ends_with_the_window() {
    let apps = cluster(windowed).await;
    let first = apps[0].sign_in("dave", "openid").await;
    let token = first.str("refresh_token");
    let family_id = sid(&first.str("access_token"));
    let rotated = apps[0].refresh(&token).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let expires_in = rotated.body["expires_in"].as_i64().unwrap();

    // Within the window (its last second included): the same answer, counted from now.
    advance(&apps, WINDOW as i64 - 1);
    let retry = apps[0].refresh(&token).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.body);
    assert_eq!(retry.str("refresh_token"), rotated.str("refresh_token"));
    assert_eq!(retry.str("id_token"), rotated.str("id_token"));
    assert_eq!(
        retry.body["expires_in"].as_i64().unwrap(),
        expires_in - (WINDOW as i64 - 1)
    );

    // After the window a retry is reuse: the family is revoked, as in strict mode.
    advance(&apps, 2);
    apps[1]
        .refresh(&token)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert!(family(&apps[0], &family_id).await.revoked_at.is_some());
    flush_all(&apps).await;
    assert_eq!(events(&apps[0], EventType::RefreshReuseDetected).await, 1);
    assert!(replay_rows(&apps[0]).await.is_empty(), "answers erased");
    for app in &apps {
        app.refresh(&rotated.str("refresh_token"))
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    // The access token of the rotation is refused where the reuse was detected (everywhere
    // when the instances share Redis).
    let rs = apps[0].resource_server().await;
    let checked: &[Arc<TestApp>] = if shared_store() { &apps } else { &apps[1..2] };
    for app in checked {
        let answer = app.introspect(&rs, &rotated.str("access_token")).await;
        assert_eq!(answer.body, serde_json::json!({"active": false}));
    }
}

#[tokio::test]
async fn within_the_window_a_retry_after_the_new_token_was_used_is_reuse() {
    let app = spawn_app_with(windowed).await;
    let token = app.sign_in("erin", "").await.str("refresh_token");
    let second = app.refresh(&token).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let third = app.refresh(&second.str("refresh_token")).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
    // Whoever presents the first token now is not the client that moved on: reuse.
    app.refresh(&token)
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.refresh(&third.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(events(&app, EventType::RefreshReuseDetected).await, 1);
}

/// Rounds of refreshes spread over the instances racing one revocation: afterwards no
/// refresh token of the family works or introspects as active, and no access token the race
/// produced introspects as active.
async fn revoke_racing_refresh(adjust: fn(&mut RawSettings)) {
    let apps = cluster(adjust).await;
    let rs = apps[0].resource_server().await;
    for round in 0..24usize {
        let first = apps[0].sign_in(&format!("racer{round}"), "openid").await;
        let token = first.str("refresh_token");
        let family_id = sid(&first.str("access_token"));
        let revoker = apps[round % apps.len()].clone();
        let barrier = Arc::new(tokio::sync::Barrier::new(5));
        let mut refreshes = Vec::new();
        for i in 0..4 {
            let app = apps[(round + i + 1) % apps.len()].clone();
            let token = token.clone();
            let barrier = barrier.clone();
            refreshes.push(tokio::spawn(async move {
                barrier.wait().await;
                // A client that gets a new token goes on using it.
                let mut answers = vec![app.refresh(&token).await];
                while answers.len() < 4 {
                    let Some(next) = answers
                        .last()
                        .and_then(|a| a.body["refresh_token"].as_str())
                    else {
                        break;
                    };
                    let next = next.to_string();
                    answers.push(app.refresh(&next).await);
                }
                answers
            }));
        }
        let revoke = {
            let revoker = revoker.clone();
            let token = token.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                // Land the revocation at a different point of the refreshes in each round.
                tokio::time::sleep(std::time::Duration::from_millis((round % 8) as u64 * 2)).await;
                revoker
                    .post_form(
                        "/oauth/revoke",
                        &[("token", token.as_str()), ("client_id", SPA)],
                    )
                    .await
            })
        };
        let mut refresh_tokens: HashSet<String> = HashSet::from([token.clone()]);
        let mut access_tokens: HashSet<String> = HashSet::from([first.str("access_token")]);
        for task in refreshes {
            for answer in task.await.unwrap() {
                match answer.status.as_u16() {
                    200 => {
                        refresh_tokens.insert(answer.str("refresh_token"));
                        access_tokens.insert(answer.str("access_token"));
                    }
                    400 => answer.assert_oauth_error(400, "invalid_grant"),
                    other => panic!("unexpected status {other}: {}", answer.body),
                }
            }
        }
        let revoked = revoke.await.unwrap();
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);

        assert!(family(&apps[0], &family_id).await.revoked_at.is_some());
        for t in &family_tokens(&apps[0], &family_id).await {
            assert_ne!(
                t.state, "active",
                "round {round}: a token of the family is active"
            );
        }
        for rt in &refresh_tokens {
            assert_eq!(
                apps[0].introspect(&rs, rt).await.body,
                serde_json::json!({"active": false}),
                "round {round}"
            );
            for app in &apps {
                app.refresh(rt)
                    .await
                    .assert_oauth_error(400, "invalid_grant");
            }
        }
        let checked: Vec<&Arc<TestApp>> = if shared_store() {
            apps.iter().collect()
        } else {
            vec![&revoker]
        };
        for at in &access_tokens {
            for app in &checked {
                assert_eq!(
                    app.introspect(&rs, at).await.body,
                    serde_json::json!({"active": false}),
                    "round {round}: an access token minted in the race is active"
                );
            }
        }
        let replays = entities::refresh_replays::Entity::find()
            .filter(entities::refresh_replays::Column::FamilyId.eq(family_id.as_str()))
            .count(&apps[0].state.db)
            .await
            .unwrap();
        assert_eq!(
            replays, 0,
            "round {round}: a revoked family keeps an answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_racing_strict_refresh_leaves_no_live_token() {
    revoke_racing_refresh(|_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_racing_windowed_refresh_leaves_no_live_token() {
    revoke_racing_refresh(windowed).await;
}

#[tokio::test]
async fn purge_removes_expired_tokens_answers_and_empty_families() {
    let app = spawn_app_with(|raw| {
        short_tokens(raw);
        windowed(raw);
    })
    .await;
    let refresh = &app.state.refresh;
    let a = app.sign_in("frank", "").await.str("refresh_token");
    let b = app.sign_in("grace", "").await.str("refresh_token");
    let a2 = app.refresh(&a).await.str("refresh_token");
    assert_eq!(refresh.purge_expired().await.unwrap(), 0, "nothing expired");
    assert_eq!(replay_rows(&app).await.len(), 1);

    // The window ends: its answer goes (a retry is now reuse, whether or not it was purged).
    app.clock.advance(WINDOW as i64 + 1);
    assert_eq!(refresh.purge_expired().await.unwrap(), 1);
    assert!(replay_rows(&app).await.is_empty());

    // The tokens expire (600 s in `short_tokens`); a later sign-in's token stays.
    app.clock.advance(600);
    let c = app.sign_in("heidi", "").await.str("refresh_token");
    assert_eq!(refresh.purge_expired().await.unwrap(), 3, "a, a2 and b");
    let left = entities::refresh_tokens::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].digest, portcullis::crypto::secret_digest(&c));
    let c2 = app.refresh(&c).await;
    assert_eq!(c2.status, StatusCode::OK, "{}", c2.body);
    let c2 = c2.str("refresh_token");

    // Families without tokens wait an hour after their last use before they go.
    let families = || async {
        entities::refresh_families::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(families().await, 3);
    app.clock.advance(3_600);
    assert_eq!(
        refresh.purge_expired().await.unwrap(),
        5,
        "heidi's answer, c and c2, frank's and grace's families"
    );
    assert_eq!(families().await, 1, "heidi's family was used an hour ago");
    app.clock.advance(1);
    assert_eq!(refresh.purge_expired().await.unwrap(), 1);
    assert_eq!(families().await, 0);
    assert_eq!(refresh.purge_expired().await.unwrap(), 0);

    for gone in [&a, &a2, &b, &c2] {
        app.refresh(gone)
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
}
