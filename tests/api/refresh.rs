//! Refresh tokens: rotation, reuse detection (family revocation + audit), concurrency, client
//! binding, expiry, scope narrowing on refresh, and storage as digests only.

use std::sync::Arc;

use portcullis::audit::EventType;
use portcullis::clients::GrantType;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::helpers::*;

#[tokio::test]
async fn refresh_rotates_and_the_new_token_works() {
    let app = spawn_app().await;
    let first = app.sign_in("alice", "openid articles:read").await;
    let r1 = first.str("refresh_token");
    let second = app.refresh(&r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.header("cache-control").as_deref(), Some("no-store"));
    let r2 = second.str("refresh_token");
    assert_ne!(r1, r2, "rotated on use");
    assert_eq!(second.str("scope"), "articles:read openid");
    assert!(second.body.get("id_token").is_some());
    let a1 = jwt_part(&first.str("access_token"), 1);
    let a2 = jwt_part(&second.str("access_token"), 1);
    assert_ne!(a1["jti"], a2["jti"]);
    assert_eq!(a1["sid"], a2["sid"], "same sign-in");
    let third = app.refresh(&r2).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.body);
}

#[tokio::test]
async fn reuse_of_a_rotated_token_revokes_the_family_and_is_audited() {
    let app = spawn_app().await;
    let first = app.sign_in("bob", "openid").await;
    let r1 = first.str("refresh_token");
    let second = app.refresh(&r1).await;
    let r2 = second.str("refresh_token");
    let at2 = second.str("access_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &at2).await.status,
        StatusCode::OK
    );

    // The attacker (or a confused client) presents the old token.
    app.refresh(&r1)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // The legitimate holder's newer token is dead too: the whole family is revoked.
    app.refresh(&r2)
        .await
        .assert_oauth_error(400, "invalid_grant");
    // And so are the family's access tokens.
    let after = app.get_bearer("/oauth/userinfo", &at2).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);

    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(
            entities::audit_events::Column::EventType.eq(EventType::RefreshReuseDetected.as_str()),
        )
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].client_id.as_deref(), Some(SPA));
    assert!(events[0].actor_user_id.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_have_exactly_one_winner() {
    let app = Arc::new(spawn_app().await);
    let token = app.sign_in("carol", "").await.str("refresh_token");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let app = app.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move { app.refresh(&token).await }));
    }
    let mut ok = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status.as_u16() {
            200 => ok += 1,
            400 => assert_eq!(answer.body["error"], "invalid_grant", "{}", answer.body),
            other => panic!("unexpected status {other}: {}", answer.body),
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent refresh wins");
}

#[tokio::test]
async fn a_refresh_token_is_bound_to_its_client() {
    let app = spawn_app().await;
    let token = app.sign_in("dave", "").await.str("refresh_token");
    let other = app
        .confidential_client("other", &[GrantType::RefreshToken], "openid articles:read")
        .await;
    app.post_form_basic(
        "/oauth/token",
        &other,
        &[("grant_type", "refresh_token"), ("refresh_token", &token)],
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // The rightful client can still use it: the foreign attempt did not rotate or revoke it.
    assert_eq!(app.refresh(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let app = spawn_app_with(short_tokens).await;
    let token = app.sign_in("erin", "").await.str("refresh_token");
    app.clock.advance(601);
    app.refresh(&token)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn refresh_may_narrow_scope_but_never_widen_it() {
    let app = spawn_app().await;
    let token = app
        .sign_in("frank", "openid articles:read")
        .await
        .str("refresh_token");
    let widened = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", SPA),
                ("refresh_token", &token),
                ("scope", "openid email"),
            ],
        )
        .await;
    widened.assert_oauth_error(400, "invalid_scope");
    // The refused request did not consume the token.
    let narrowed = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", SPA),
                ("refresh_token", &token),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.body);
    assert_eq!(narrowed.str("scope"), "openid");
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_digests() {
    let app = spawn_app().await;
    let token = app.sign_in("grace", "").await.str("refresh_token");
    let rows = entities::refresh_tokens::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].digest, token);
    assert!(!rows[0].digest.contains(&token));
    assert_eq!(rows[0].digest, portcullis::crypto::secret_digest(&token));
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    use sea_orm::{ActiveModelTrait, Set};
    let app = spawn_app().await;
    let t = app.sign_in("heidi", "").await;
    let sub = jwt_part(&t.str("access_token"), 1)["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let user = entities::users::Entity::find_by_id(sub)
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let mut active: entities::users::ActiveModel = user.into();
    active.disabled = Set(true);
    active.update(&app.state.db).await.unwrap();
    app.refresh(&t.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.password_grant("heidi", "")
        .await
        .assert_oauth_error(400, "invalid_grant");
}
