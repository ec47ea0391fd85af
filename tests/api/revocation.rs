//! RFC 7009 revocation of refresh and access tokens, and its effect on introspection and
//! userinfo.

use portcullis::clients::GrantType;
use reqwest::StatusCode;

use super::helpers::*;

async fn revoke(app: &TestApp, token: &str, hint: Option<&str>) -> Answer {
    let mut form = vec![("token", token), ("client_id", SPA)];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    app.post_form("/oauth/revoke", &form).await
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_sign_in() {
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let t = app.sign_in("alice", "openid").await;
    let (at, rt) = (t.str("access_token"), t.str("refresh_token"));
    assert_eq!(app.introspect(&rs, &rt).await.body["active"], true);

    let answer = revoke(&app, &rt, Some("refresh_token")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));

    app.refresh(&rt)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        app.introspect(&rs, &rt).await.body,
        serde_json::json!({"active": false})
    );
    // Access tokens of the sign-in are inactive too.
    assert_eq!(
        app.introspect(&rs, &at).await.body,
        serde_json::json!({"active": false})
    );
    let userinfo = app.get_bearer("/oauth/userinfo", &at).await;
    assert_eq!(userinfo.status, StatusCode::UNAUTHORIZED);
    assert!(
        userinfo
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
}

#[tokio::test]
async fn revoking_an_access_token_denies_it_until_expiry() {
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let t = app.sign_in("bob", "openid").await;
    let at = t.str("access_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &at).await.status,
        StatusCode::OK
    );
    assert_eq!(
        revoke(&app, &at, Some("access_token")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.introspect(&rs, &at).await.body,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &at).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &at).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The refresh token (another credential of the sign-in) still works, as RFC 7009 allows.
    let fresh = app.refresh(&t.str("refresh_token")).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &fresh.str("access_token"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_wrong_hint_still_revokes() {
    let app = spawn_app().await;
    let t = app.sign_in("carol", "").await;
    let rt = t.str("refresh_token");
    assert_eq!(
        revoke(&app, &rt, Some("access_token")).await.status,
        StatusCode::OK
    );
    app.refresh(&rt)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn unknown_and_foreign_tokens_answer_200_and_change_nothing() {
    let app = spawn_app().await;
    for token in ["unknown", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(
            revoke(&app, token, None).await.status,
            StatusCode::OK,
            "{token}"
        );
    }
    let t = app.sign_in("dave", "").await;
    let other = app
        .confidential_client("other", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let answer = app
        .post_form_basic(
            "/oauth/revoke",
            &other,
            &[("token", &t.str("refresh_token"))],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    // Another client's revocation attempt had no effect.
    assert_eq!(
        app.refresh(&t.str("refresh_token")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revocation_requires_client_identification_and_a_token() {
    let app = spawn_app().await;
    app.post_form("/oauth/revoke", &[("token", "x")])
        .await
        .assert_oauth_error(401, "invalid_client");
    app.post_form("/oauth/revoke", &[("client_id", SPA)])
        .await
        .assert_oauth_error(400, "invalid_request");
}
