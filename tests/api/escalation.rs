//! Nobody grants — to a client, a role or a user — or takes over a permission they do not
//! hold themselves (the escalation rule, as Kubernetes RBAC's escalation check). One test per
//! path the security review tried.

use portcullis::clients::GrantType;
use portcullis::domain::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::*;

const EVERY: &str = "openid profile email articles:read articles:write articles:delete users:read users:admin clients:admin audit:read keys:admin webhooks:admin";

/// A user whose only role is `author`, after `author` has been made to grant exactly
/// `permissions`; signed in asking for every scope. Returns (user id, access token).
async fn holder_of(app: &TestApp, username: &str, permissions: &[&str]) -> (String, String) {
    let perms: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
    app.state
        .roles
        .set_permissions("author", &perms)
        .await
        .unwrap();
    let id = user_with_roles(app, username, &["author"]).await;
    let t = app.password_grant(username, EVERY).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    (id, t.str("access_token"))
}

async fn admin(app: &TestApp, username: &str, scope: &str) -> (String, String) {
    let id = user_with_roles(app, username, &["admin"]).await;
    let t = app.password_grant(username, scope).await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    (id, t.str("access_token"))
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Answer::from(req.send().await.unwrap()).await
}

#[track_caller]
fn assert_escalation(a: &Answer) {
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.body["code"], "escalation", "{}", a.body);
}

#[tokio::test]
async fn clients_admin_cannot_create_a_client_with_permissions_it_lacks() {
    // The review: a user holding only clients:admin created a client with users:admin, took a
    // client_credentials token and made herself admin.
    let app = spawn_app().await;
    let (_, token) = holder_of(&app, "clara", &["clients:admin"]).await;
    for scopes in [
        "users:admin",
        "clients:admin users:admin",
        "articles:read",
        "keys:admin",
    ] {
        let a = call(
            &app,
            &token,
            Method::POST,
            "/api/v1/admin/clients",
            Some(json!({"client_id": "evil", "grant_types": ["client_credentials"], "scopes": scopes})),
        )
        .await;
        assert_escalation(&a);
    }
    assert!(app.state.clients.get("evil").await.unwrap().is_none());
    // What she holds she may give, and identity scopes are no permissions.
    let ok = call(
        &app,
        &token,
        Method::POST,
        "/api/v1/admin/clients",
        Some(json!({"client_id": "helper", "grant_types": ["client_credentials"], "scopes": "clients:admin openid"})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // Nor can she widen an existing client.
    let widen = call(
        &app,
        &token,
        Method::PATCH,
        "/api/v1/admin/clients/helper",
        Some(json!({"scopes": "clients:admin users:admin"})),
    )
    .await;
    assert_escalation(&widen);
}

#[tokio::test]
async fn clients_admin_cannot_take_over_a_client_that_holds_more() {
    let app = spawn_app().await;
    let strong = app
        .confidential_client("strong", &[GrantType::ClientCredentials], "users:admin")
        .await;
    let (_, token) = holder_of(&app, "clara", &["clients:admin"]).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            "/api/v1/admin/clients/strong",
            Some(json!({"redirect_uris": ["https://evil.example/cb"]})),
        ),
        (
            Method::PATCH,
            "/api/v1/admin/clients/strong",
            Some(json!({"grant_types": ["client_credentials", "password"]})),
        ),
        (Method::POST, "/api/v1/admin/clients/strong/secret", None),
    ] {
        let a = call(&app, &token, method, path, body).await;
        assert_escalation(&a);
    }
    // The old secret still works: nothing was changed.
    let t = app
        .post_form_basic(
            "/oauth/token",
            &strong,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "users:admin"),
            ],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    // An administrator holding users:admin may.
    let (_, boss) = admin(&app, "boss", EVERY).await;
    let rotated = call(
        &app,
        &boss,
        Method::POST,
        "/api/v1/admin/clients/strong/secret",
        None,
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
}

#[tokio::test]
async fn users_admin_cannot_hand_out_roles_or_permissions_it_lacks() {
    let app = spawn_app().await;
    let (uma, token) = holder_of(&app, "uma", &["users:admin", "users:read"]).await;
    // Herself or anyone: the admin role carries permissions she lacks.
    let victim = app.register("victim").await.str("id");
    for target in [&uma, &victim] {
        let a = call(
            &app,
            &token,
            Method::PUT,
            &format!("/api/v1/admin/users/{target}/roles"),
            Some(json!({"roles": ["admin"]})),
        )
        .await;
        assert_escalation(&a);
    }
    // Her own role, or another, granting more.
    for role in ["author", "reader"] {
        let a = call(
            &app,
            &token,
            Method::PUT,
            &format!("/api/v1/admin/roles/{role}/permissions"),
            Some(json!({"permissions": ["users:admin", "users:read", "clients:admin"]})),
        )
        .await;
        assert_escalation(&a);
    }
    assert_eq!(
        app.state.roles.get("author").await.unwrap().permissions,
        vec!["users:admin".to_string(), "users:read".to_string()]
    );
    assert_eq!(
        app.state.users.get(&uma).await.unwrap().roles,
        vec!["author".to_string()]
    );
    // Re-enabling an account gives its power back: only for who holds that power.
    let (boss_id, _) = admin(&app, "boss", "openid").await;
    app.state.users.set_disabled(&boss_id, true).await.unwrap();
    let a = call(
        &app,
        &token,
        Method::POST,
        &format!("/api/v1/admin/users/{boss_id}/enable"),
        None,
    )
    .await;
    assert_escalation(&a);
    assert!(app.state.users.get(&boss_id).await.unwrap().disabled);
    // What she holds she may give: the reader role, and users:read to a role.
    let ok = call(
        &app,
        &token,
        Method::PUT,
        &format!("/api/v1/admin/users/{victim}/roles"),
        Some(json!({"roles": ["reader"]})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let ok = call(
        &app,
        &token,
        Method::PUT,
        "/api/v1/admin/roles/reader/permissions",
        Some(json!({"permissions": ["articles:read", "users:read"]})),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test]
async fn what_is_held_is_the_tokens_scope_within_current_roles() {
    // An administrator acting through a token scoped to users:admin alone holds only that:
    // a client given such a token cannot hand out the admin role.
    let app = spawn_app().await;
    let (_, narrow) = admin(&app, "boss", "users:admin").await;
    let victim = app.register("victim").await.str("id");
    let a = call(
        &app,
        &narrow,
        Method::PUT,
        &format!("/api/v1/admin/users/{victim}/roles"),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_escalation(&a);
    let (_, full) = admin(&app, "chief", EVERY).await;
    let a = call(
        &app,
        &full,
        Method::PUT,
        &format!("/api/v1/admin/users/{victim}/roles"),
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn a_client_acting_for_itself_cannot_grant_beyond_its_scopes() {
    let app = spawn_app().await;
    let ops = app
        .confidential_client("ops", &[GrantType::ClientCredentials], "clients:admin")
        .await;
    let token = app
        .post_form_basic(
            "/oauth/token",
            &ops,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "clients:admin"),
            ],
        )
        .await
        .str("access_token");
    let a = call(
        &app,
        &token,
        Method::POST,
        "/api/v1/admin/clients",
        Some(json!({"client_id": "evil", "grant_types": ["client_credentials"], "scopes": "users:admin"})),
    )
    .await;
    assert_escalation(&a);
    // Nor can it widen itself.
    let a = call(
        &app,
        &token,
        Method::PATCH,
        "/api/v1/admin/clients/ops",
        Some(json!({"scopes": "clients:admin users:admin"})),
    )
    .await;
    assert_escalation(&a);
    assert_eq!(
        app.state.clients.get("ops").await.unwrap().unwrap().scopes,
        Scope::parse("clients:admin").unwrap()
    );
}
