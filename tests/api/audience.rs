//! Audiences (RFC 8707 resource indicators): a token is for one API, and Portcullis's own API
//! accepts only tokens meant for it, so a resource server that receives a user's token cannot
//! replay it against Portcullis. Also the scopes of `/api/v1/users/me` and default scopes.

use portcullis::clients::{GrantType, NewClient};
use portcullis::domain::{ClientId, Scope};
use reqwest::StatusCode;
use serde_json::json;

use super::helpers::*;

const ORDERS: &str = "https://orders.example.com/api";

/// A public client allowed the password and refresh grants and the audience [`ORDERS`].
async fn orders_app(app: &TestApp) {
    app.state
        .clients
        .create(NewClient {
            client_id: ClientId::parse("orders-spa").unwrap(),
            name: "orders".into(),
            secret: None,
            grant_types: vec![GrantType::Password, GrantType::RefreshToken],
            scopes: Scope::parse("openid profile email articles:read").unwrap(),
            default_scopes: None,
            audiences: vec![ORDERS.into()],
            redirect_uris: vec![],
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
        })
        .await
        .unwrap();
}

async fn sign_in_for(app: &TestApp, username: &str, resource: Option<&str>) -> Answer {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", username),
        ("password", PASSWORD),
        ("client_id", "orders-spa"),
        ("scope", "openid profile email articles:read"),
    ];
    if let Some(r) = resource {
        form.push(("resource", r));
    }
    app.post_form("/oauth/token", &form).await
}

/// The resource server of [`ORDERS`], registered as a confidential client listing it.
async fn orders_server(app: &TestApp) -> Confidential {
    let created = app
        .state
        .clients
        .create(NewClient {
            client_id: ClientId::parse("orders-rs").unwrap(),
            name: "orders rs".into(),
            secret: Some(None),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: Scope::parse("articles:read").unwrap(),
            default_scopes: Some(Scope::parse("articles:read").unwrap()),
            audiences: vec![ORDERS.into()],
            redirect_uris: vec![],
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
        })
        .await
        .unwrap();
    Confidential {
        id: "orders-rs".into(),
        secret: created.client_secret.unwrap(),
    }
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused_by_portcullis_own_api() {
    let app = spawn_app().await;
    orders_app(&app).await;
    app.register("alice").await;
    let orders_rs = orders_server(&app).await;
    let other_rs = app.resource_server().await;

    // Without `resource`: Portcullis's own API, as before.
    let own = sign_in_for(&app, "alice", None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    let own_at = own.str("access_token");
    assert_eq!(jwt_part(&own_at, 1)["aud"], app.state.tokens.audience);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &own_at).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &own_at).await.status,
        StatusCode::OK
    );

    // With `resource`: only that audience.
    let orders = sign_in_for(&app, "alice", Some(ORDERS)).await;
    assert_eq!(orders.status, StatusCode::OK, "{}", orders.body);
    let orders_at = orders.str("access_token");
    assert_eq!(jwt_part(&orders_at, 1)["aud"], ORDERS);
    // The orders API received it; replaying it at Portcullis fails.
    for path in ["/api/v1/users/me", "/oauth/userinfo", "/api/v1/articles"] {
        let a = app.get_bearer(path, &orders_at).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.body);
        assert_eq!(a.body["code"], "invalid_token", "{}", a.body);
    }
    // Its resource server sees it active; another resource server does not.
    let seen = app.introspect(&orders_rs, &orders_at).await;
    assert_eq!(seen.body["active"], true, "{}", seen.body);
    assert_eq!(seen.body["aud"], ORDERS);
    assert_eq!(
        app.introspect(&other_rs, &orders_at).await.body,
        json!({"active": false})
    );

    // A refresh keeps the sign-in's audience.
    let refreshed = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &orders.str("refresh_token")),
                ("client_id", "orders-spa"),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(jwt_part(&refreshed.str("access_token"), 1)["aud"], ORDERS);
}

#[tokio::test]
async fn only_registered_absolute_resources_are_granted() {
    let app = spawn_app().await;
    orders_app(&app).await;
    app.register("bob").await;
    for bad in [
        "https://evil.example.com/api",
        "https://orders.example.com/api/",
        "/relative",
        "https://orders.example.com/api#frag",
        "not a uri",
    ] {
        sign_in_for(&app, "bob", Some(bad))
            .await
            .assert_oauth_error(400, "invalid_target");
    }
    // Naming Portcullis's own audience is the same as naming none.
    let own = sign_in_for(&app, "bob", Some(&app.state.tokens.audience.clone())).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    // The seeded client lists no other audience.
    let spa = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", PASSWORD),
                ("client_id", SPA),
                ("resource", ORDERS),
            ],
        )
        .await;
    spa.assert_oauth_error(400, "invalid_target");
}

#[tokio::test]
async fn client_credentials_tokens_carry_the_resource_asked_for() {
    let app = spawn_app().await;
    let rs = orders_server(&app).await;
    let t = app
        .post_form_basic(
            "/oauth/token",
            &rs,
            &[("grant_type", "client_credentials"), ("resource", ORDERS)],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let at = t.str("access_token");
    assert_eq!(jwt_part(&at, 1)["aud"], ORDERS);
    assert_eq!(
        app.get_bearer("/api/v1/articles", &at).await.status,
        StatusCode::UNAUTHORIZED
    );
    let discovery: serde_json::Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["resource_indicators_supported"], true);
}

#[tokio::test]
async fn the_profile_needs_its_scopes_and_the_address_the_password() {
    // The review: a token scoped only `articles:read` read the address and changed it with no
    // re-authentication.
    let app = spawn_app().await;
    let narrow = app
        .sign_in("carol", "articles:read")
        .await
        .str("access_token");
    let a = app.get_bearer("/api/v1/users/me", &narrow).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.body["code"], "insufficient_scope");
    let patch = |token: String, body: serde_json::Value| {
        let app = &app;
        async move {
            Answer::from(
                app.http
                    .patch(app.url("/api/v1/users/me"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let a = patch(narrow.clone(), json!({"email": "mallory@evil.example.com"})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    // `profile` without `email`: no address.
    let profile = app
        .password_grant("carol", "profile")
        .await
        .str("access_token");
    let me = app.get_bearer("/api/v1/users/me", &profile).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert!(me.body.get("email").is_none(), "{}", me.body);
    // Reading is not writing.
    let a = patch(profile, json!({"name": "C"})).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);

    let writer = app
        .password_grant("carol", "profile email profile:write")
        .await
        .str("access_token");
    // The address changes only through POST /users/me/email, with the current password.
    let a = patch(writer.clone(), json!({"email": "mallory@evil.example.com"})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let change = |token: String, body: serde_json::Value| {
        let app = &app;
        async move {
            Answer::from(
                app.http
                    .post(app.url("/api/v1/users/me/email"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let a = change(
        writer.clone(),
        json!({"new_email": "mallory@evil.example.com", "current_password": "not the password at all"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.body["code"], "wrong_password");
    // The address did not move: the attacker's address does not sign in.
    app.password_grant("mallory@evil.example.com", "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");
    // With the password, a confirmation goes to the new address; nothing moves until then.
    let a = change(
        writer.clone(),
        json!({"new_email": "carol@new.example.com", "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let me = app.get_bearer("/api/v1/users/me", &writer).await;
    assert_eq!(me.body["email"], "carol@example.com", "{}", me.body);
    // Without profile:write: refused.
    let a = change(
        profile_only(&app).await,
        json!({"new_email": "x@example.com", "current_password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
}

async fn profile_only(app: &super::helpers::TestApp) -> String {
    app.password_grant("carol", "profile email")
        .await
        .str("access_token")
}

#[tokio::test]
async fn administrative_scopes_are_never_default_scopes() {
    let app = spawn_app().await;
    let reg = app.register("root").await;
    app.state
        .users
        .set_roles(&reg.str("id"), &["admin".to_string()])
        .await
        .unwrap();
    // The seeded client allows every scope; asking for none grants only its defaults.
    let t = app.password_grant("root", "").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(t.str("scope"), "email openid profile");
    // By name, an administrator gets them.
    let t = app.password_grant("root", "users:admin").await;
    assert_eq!(t.str("scope"), "users:admin");
    // And an operator cannot make them defaults.
    let refused = app
        .state
        .clients
        .create(NewClient {
            client_id: ClientId::parse("bad-defaults").unwrap(),
            name: "x".into(),
            secret: None,
            grant_types: vec![GrantType::Password],
            scopes: Scope::parse("openid users:admin").unwrap(),
            default_scopes: Some(Scope::parse("openid users:admin").unwrap()),
            audiences: vec![],
            redirect_uris: vec![],
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
        })
        .await;
    assert!(refused.is_err(), "{refused:?}");
}
