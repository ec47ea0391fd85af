//! RFC 7662 introspection: confidential clients only; active tokens describe themselves;
//! expired, revoked, forged and unknown tokens answer `{"active": false}`.

use reqwest::StatusCode;

use super::helpers::*;

#[tokio::test]
async fn active_access_token_is_described() {
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let t = app.sign_in("alice", "openid articles:read").await;
    let answer = app.introspect(&rs, &t.str("access_token")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));
    let b = &answer.body;
    assert_eq!(b["active"], true);
    assert_eq!(b["scope"], "articles:read openid");
    assert_eq!(b["client_id"], SPA);
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["iss"], app.base);
    assert!(b["exp"].is_i64() && b["sub"].is_string() && b["jti"].is_string());
    assert_eq!(b["roles"], serde_json::json!(["reader"]));

    let refresh = app.introspect(&rs, &t.str("refresh_token")).await;
    assert_eq!(refresh.body["active"], true);
    assert_eq!(refresh.body["token_type"], "refresh_token");
}

#[tokio::test]
async fn expired_and_unknown_tokens_are_inactive() {
    let app = spawn_app_with(short_tokens).await;
    let rs = app.resource_server().await;
    let t = app.sign_in("bob", "").await;
    for token in ["nonsense", "a.b.c", ""] {
        let answer = app.introspect(&rs, token).await;
        if token.is_empty() {
            answer.assert_oauth_error(400, "invalid_request");
        } else {
            assert_eq!(answer.body, serde_json::json!({"active": false}), "{token}");
        }
    }
    app.clock.advance(61 + portcullis::oauth::tokens::LEEWAY);
    assert_eq!(
        app.introspect(&rs, &t.str("access_token")).await.body,
        serde_json::json!({"active": false})
    );
}

#[tokio::test]
async fn only_authenticated_confidential_clients_may_introspect() {
    let app = spawn_app().await;
    let t = app.sign_in("carol", "").await;
    let at = t.str("access_token");
    // Public client.
    app.post_form("/oauth/introspect", &[("token", &at), ("client_id", SPA)])
        .await
        .assert_oauth_error(401, "invalid_client");
    // No client.
    app.post_form("/oauth/introspect", &[("token", &at)])
        .await
        .assert_oauth_error(401, "invalid_client");
    // Wrong secret.
    let rs = app.resource_server().await;
    let wrong = Confidential {
        id: rs.id.clone(),
        secret: format!("{}x", rs.secret),
    };
    app.introspect(&wrong, &at)
        .await
        .assert_oauth_error(401, "invalid_client");
}
