//! The authorization model, proven end to end: one table of (identity × operation → status)
//! over every articles and admin operation, and the escalation attempts that must fail.

use portcullis::clients::GrantType;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::helpers::*;

const ALL: &str = "openid articles:read articles:write articles:delete users:read users:admin clients:admin audit:read keys:admin webhooks:admin";

/// Registers `username`, gives them `roles`, signs in asking for every scope.
async fn user_with_roles(app: &TestApp, username: &str, roles: &[&str]) -> (String, String) {
    let reg = app.register(username).await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let id = reg.str("id");
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    app.state.users.set_roles(&id, &roles).await.unwrap();
    let token = app.password_grant(username, ALL).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    (id, token.str("access_token"))
}

async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: &Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut req = app.http.request(method.clone(), app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    Answer::from(req.send().await.unwrap()).await
}

async fn new_article(app: &TestApp, token: &str) -> String {
    let a = call(
        app,
        Some(token),
        &Method::POST,
        "/api/v1/articles",
        Some(&json!({"title": "t", "body": "b"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.str("id")
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    Reader,
    AuthorOwner,
    AuthorOther,
    Admin,
    Client,
}

const WHO: [Who; 6] = [
    Who::Anonymous,
    Who::Reader,
    Who::AuthorOwner,
    Who::AuthorOther,
    Who::Admin,
    Who::Client,
];

#[derive(Clone, Copy, Debug)]
enum Op {
    ListArticles,
    GetArticle,
    CreateArticle,
    UpdateArticle,
    DeleteArticle,
    ListUsers,
    GetUser,
    SetUserRoles,
    DisableUser,
    EnableUser,
    ListClients,
    CreateClient,
    GetClient,
    UpdateClient,
    DeleteClient,
    RotateClientSecret,
    ListRoles,
    SetRolePermissions,
    ListAuditEvents,
}

/// Expected status per identity, in the order of `WHO`:
/// anonymous, reader, author (owner), author (not owner), admin, client_credentials client.
#[rustfmt::skip]
const MATRIX: &[(Op, [u16; 6])] = &[
    //                          anon  reader owner other admin client
    (Op::ListArticles,          [401, 200,   200,  200,  200,  200]),
    (Op::GetArticle,            [401, 200,   200,  200,  200,  200]),
    (Op::CreateArticle,         [401, 403,   201,  201,  201,  403]), // client: needs a user
    (Op::UpdateArticle,         [401, 403,   200,  403,  200,  403]), // owner or admin
    (Op::DeleteArticle,         [401, 403,   204,  403,  204,  403]),
    (Op::ListUsers,             [401, 403,   403,  403,  200,  200]), // client holds users:read
    (Op::GetUser,               [401, 403,   403,  403,  200,  200]),
    (Op::SetUserRoles,          [401, 403,   403,  403,  200,  403]),
    (Op::DisableUser,           [401, 403,   403,  403,  200,  403]),
    (Op::EnableUser,            [401, 403,   403,  403,  200,  403]),
    (Op::ListClients,           [401, 403,   403,  403,  200,  403]),
    (Op::CreateClient,          [401, 403,   403,  403,  201,  403]),
    (Op::GetClient,             [401, 403,   403,  403,  200,  403]),
    (Op::UpdateClient,          [401, 403,   403,  403,  200,  403]),
    (Op::DeleteClient,          [401, 403,   403,  403,  204,  403]),
    (Op::RotateClientSecret,    [401, 403,   403,  403,  200,  403]),
    (Op::ListRoles,             [401, 403,   403,  403,  200,  200]),
    (Op::SetRolePermissions,    [401, 403,   403,  403,  200,  403]),
    (Op::ListAuditEvents,       [401, 403,   403,  403,  200,  403]),
];

#[tokio::test]
async fn authorization_matrix() {
    let app = spawn_app().await;
    let (_, reader) = user_with_roles(&app, "reader1", &["reader"]).await;
    let (_, owner) = user_with_roles(&app, "author1", &["author"]).await;
    let (_, other) = user_with_roles(&app, "author2", &["author"]).await;
    let (_, admin) = user_with_roles(&app, "admin1", &["admin"]).await;
    let svc = app
        .confidential_client(
            "svc",
            &[GrantType::ClientCredentials],
            "articles:read articles:write users:read",
        )
        .await;
    let client = app
        .post_form_basic(
            "/oauth/token",
            &svc,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "articles:read articles:write users:read"),
            ],
        )
        .await
        .str("access_token");
    let token = |who: Who| match who {
        Who::Anonymous => None,
        Who::Reader => Some(reader.as_str()),
        Who::AuthorOwner => Some(owner.as_str()),
        Who::AuthorOther => Some(other.as_str()),
        Who::Admin => Some(admin.as_str()),
        Who::Client => Some(client.as_str()),
    };

    for (cell, (op, expected)) in MATRIX.iter().enumerate() {
        for (who, expected) in WHO.iter().zip(expected) {
            // Fresh objects per cell, so cells do not depend on each other.
            let n = format!("{cell}-{who:?}").to_lowercase();
            let article = new_article(&app, &owner).await;
            let (target, _) =
                user_with_roles(&app, &format!("target{cell}{}", *who as u8), &["reader"]).await;
            let client_id = format!("c{n}");
            app.confidential_client(&client_id, &[GrantType::ClientCredentials], "articles:read")
                .await;

            let (method, path, body): (Method, String, Option<Value>) = match op {
                Op::ListArticles => (Method::GET, "/api/v1/articles".into(), None),
                Op::GetArticle => (Method::GET, format!("/api/v1/articles/{article}"), None),
                Op::CreateArticle => (
                    Method::POST,
                    "/api/v1/articles".into(),
                    Some(json!({"title": "new", "body": "text"})),
                ),
                Op::UpdateArticle => (
                    Method::PATCH,
                    format!("/api/v1/articles/{article}"),
                    Some(json!({"title": "edited"})),
                ),
                Op::DeleteArticle => (Method::DELETE, format!("/api/v1/articles/{article}"), None),
                Op::ListUsers => (Method::GET, "/api/v1/admin/users".into(), None),
                Op::GetUser => (Method::GET, format!("/api/v1/admin/users/{target}"), None),
                Op::SetUserRoles => (
                    Method::PUT,
                    format!("/api/v1/admin/users/{target}/roles"),
                    Some(json!({"roles": ["reader", "author"]})),
                ),
                Op::DisableUser => (
                    Method::POST,
                    format!("/api/v1/admin/users/{target}/disable"),
                    None,
                ),
                Op::EnableUser => (
                    Method::POST,
                    format!("/api/v1/admin/users/{target}/enable"),
                    None,
                ),
                Op::ListClients => (Method::GET, "/api/v1/admin/clients".into(), None),
                Op::CreateClient => (
                    Method::POST,
                    "/api/v1/admin/clients".into(),
                    Some(
                        json!({"client_id": format!("new{n}"), "grant_types": ["client_credentials"], "scopes": "articles:read"}),
                    ),
                ),
                Op::GetClient => (
                    Method::GET,
                    format!("/api/v1/admin/clients/{client_id}"),
                    None,
                ),
                Op::UpdateClient => (
                    Method::PATCH,
                    format!("/api/v1/admin/clients/{client_id}"),
                    Some(json!({"name": "renamed"})),
                ),
                Op::DeleteClient => (
                    Method::DELETE,
                    format!("/api/v1/admin/clients/{client_id}"),
                    None,
                ),
                Op::RotateClientSecret => (
                    Method::POST,
                    format!("/api/v1/admin/clients/{client_id}/secret"),
                    None,
                ),
                Op::ListRoles => (Method::GET, "/api/v1/admin/roles".into(), None),
                Op::SetRolePermissions => (
                    Method::PUT,
                    "/api/v1/admin/roles/author/permissions".into(),
                    Some(
                        json!({"permissions": ["articles:read", "articles:write", "articles:delete"]}),
                    ),
                ),
                Op::ListAuditEvents => (Method::GET, "/api/v1/admin/audit-events".into(), None),
            };
            let answer = call(&app, token(*who), &method, &path, body.as_ref()).await;
            assert_eq!(
                answer.status.as_u16(),
                *expected,
                "{op:?} as {who:?}: {method} {path} → {}",
                answer.body
            );
            match answer.status.as_u16() {
                401 => assert!(
                    answer
                        .header("www-authenticate")
                        .unwrap()
                        .starts_with("Bearer")
                ),
                403 => assert!(
                    answer
                        .header("www-authenticate")
                        .unwrap()
                        .contains("insufficient_scope"),
                    "{op:?} {who:?}"
                ),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn openapi_shows_each_operations_permission() {
    let doc: Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    for (path, method, scope) in [
        ("/api/v1/articles", "get", "articles:read"),
        ("/api/v1/articles", "post", "articles:write"),
        ("/api/v1/articles/{id}", "patch", "articles:write"),
        ("/api/v1/articles/{id}", "delete", "articles:delete"),
        ("/api/v1/admin/users", "get", "users:read"),
        ("/api/v1/admin/users/{id}/roles", "put", "users:admin"),
        ("/api/v1/admin/clients", "post", "clients:admin"),
        (
            "/api/v1/admin/roles/{role}/permissions",
            "put",
            "users:admin",
        ),
        ("/api/v1/admin/audit-events", "get", "audit:read"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"][0]["oauth2"],
            json!([scope]),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn demotion_ends_sign_ins_and_new_tokens_lack_the_role() {
    let app = spawn_app().await;
    let (_, admin) = user_with_roles(&app, "boss", &["admin"]).await;
    let (author_id, _) = user_with_roles(&app, "writer", &["author"]).await;
    let signed_in = app.password_grant("writer", ALL).await;
    assert!(signed_in.str("scope").contains("articles:write"));
    let demote = call(
        &app,
        Some(&admin),
        &Method::PUT,
        &format!("/api/v1/admin/users/{author_id}/roles"),
        Some(&json!({"roles": ["reader"]})),
    )
    .await;
    assert_eq!(demote.status, StatusCode::OK, "{}", demote.body);
    // The old sign-in is over: refresh fails, the access token is refused.
    app.refresh(&signed_in.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let old = call(
        &app,
        Some(&signed_in.str("access_token")),
        &Method::POST,
        "/api/v1/articles",
        Some(&json!({"title": "x", "body": "y"})),
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    // A new sign-in carries only what the new role permits.
    let fresh = app.password_grant("writer", ALL).await;
    assert_eq!(fresh.str("scope"), "articles:read openid");
    assert_eq!(
        jwt_part(&fresh.str("access_token"), 1)["roles"],
        json!(["reader"])
    );
    // The change is audited, naming the admin.
    let events = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/admin/audit-events?type=user.roles_changed",
        None,
    )
    .await;
    let event = &events.body["items"][0];
    assert_eq!(event["details"]["removed"], json!(["author"]));
    assert!(event["actor_user_id"].is_string());
    assert_ne!(event["actor_user_id"], json!(author_id));
}

#[tokio::test]
async fn a_disabled_user_is_locked_out_everywhere() {
    let app = spawn_app().await;
    let (_, admin) = user_with_roles(&app, "boss", &["admin"]).await;
    let (victim, _) = user_with_roles(&app, "mallory", &["author"]).await;
    let t = app.password_grant("mallory", ALL).await;
    let disabled = call(
        &app,
        Some(&admin),
        &Method::POST,
        &format!("/api/v1/admin/users/{victim}/disable"),
        None,
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK);
    assert_eq!(disabled.body["disabled"], true);
    app.refresh(&t.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &t.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.password_grant("mallory", ALL)
        .await
        .assert_oauth_error(400, "invalid_grant");
    let enabled = call(
        &app,
        Some(&admin),
        &Method::POST,
        &format!("/api/v1/admin/users/{victim}/enable"),
        None,
    )
    .await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(
        app.password_grant("mallory", ALL).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn role_permission_changes_reach_tokens_at_refresh() {
    let app = spawn_app().await;
    let (_, admin) = user_with_roles(&app, "boss", &["admin"]).await;
    user_with_roles(&app, "writer", &["author"]).await;
    let t = app.password_grant("writer", ALL).await;
    let changed = call(
        &app,
        Some(&admin),
        &Method::PUT,
        "/api/v1/admin/roles/author/permissions",
        Some(&json!({"permissions": ["articles:read"]})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    let refreshed = app.refresh(&t.str("refresh_token")).await;
    assert_eq!(refreshed.str("scope"), "articles:read openid");
    let bad = call(
        &app,
        Some(&admin),
        &Method::PUT,
        "/api/v1/admin/roles/author/permissions",
        Some(&json!({"permissions": ["root:everything"]})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["field"], "permissions");
    let missing = call(
        &app,
        Some(&admin),
        &Method::PUT,
        "/api/v1/admin/roles/nope/permissions",
        Some(&json!({"permissions": []})),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn client_administration_round_trip() {
    let app = spawn_app().await;
    let (_, admin) = user_with_roles(&app, "boss", &["admin"]).await;
    let created = call(&app, Some(&admin), &Method::POST, "/api/v1/admin/clients", Some(&json!({"client_id": "api-1", "grant_types": ["client_credentials"], "scopes": "articles:read", "default_scopes": "articles:read"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.str("client_secret");
    let c = Confidential {
        id: "api-1".into(),
        secret: secret.clone(),
    };
    assert_eq!(
        app.post_form_basic("/oauth/token", &c, &[("grant_type", "client_credentials")])
            .await
            .status,
        StatusCode::OK
    );
    let listed = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/admin/clients",
        None,
    )
    .await;
    assert!(
        !listed.body.to_string().contains(&secret),
        "secrets are never listed"
    );
    let rotated = call(
        &app,
        Some(&admin),
        &Method::POST,
        "/api/v1/admin/clients/api-1/secret",
        None,
    )
    .await;
    let new_secret = rotated.str("client_secret");
    assert_ne!(new_secret, secret);
    app.post_form_basic("/oauth/token", &c, &[("grant_type", "client_credentials")])
        .await
        .assert_oauth_error(401, "invalid_client");
    let c2 = Confidential {
        id: "api-1".into(),
        secret: new_secret,
    };
    assert_eq!(
        app.post_form_basic("/oauth/token", &c2, &[("grant_type", "client_credentials")])
            .await
            .status,
        StatusCode::OK
    );
    for (body, field) in [
        (
            json!({"client_id": "bad id", "grant_types": []}),
            "client_id",
        ),
        (
            json!({"client_id": "ok", "grant_types": ["implicit"]}),
            "grant_types",
        ),
        (
            json!({"client_id": "ok", "grant_types": [], "scopes": "root"}),
            "scopes",
        ),
        (
            json!({"client_id": "ok", "grant_types": [], "redirect_uris": ["not a url"]}),
            "redirect_uris",
        ),
        (
            json!({"client_id": "ok", "grant_types": [], "name": "  "}),
            "name",
        ),
        (
            json!({"client_id": "ok", "grant_types": [], "name": "bad\nname"}),
            "name",
        ),
    ] {
        let a = call(
            &app,
            Some(&admin),
            &Method::POST,
            "/api/v1/admin/clients",
            Some(&body),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert_eq!(a.body["field"], field, "{body}");
    }
    let dup = call(
        &app,
        Some(&admin),
        &Method::POST,
        "/api/v1/admin/clients",
        Some(&json!({"client_id": "api-1", "grant_types": []})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(
        call(
            &app,
            Some(&admin),
            &Method::DELETE,
            "/api/v1/admin/clients/api-1",
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(
            &app,
            Some(&admin),
            &Method::GET,
            "/api/v1/admin/clients/api-1",
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    app.post_form_basic("/oauth/token", &c2, &[("grant_type", "client_credentials")])
        .await
        .assert_oauth_error(401, "invalid_client");
}

#[tokio::test]
async fn user_search_and_audit_paging() {
    let app = spawn_app().await;
    let (_, admin) = user_with_roles(&app, "boss", &["admin"]).await;
    for i in 0..7 {
        app.register(&format!("member{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?q=member&limit=3&cursor={c}"),
            None => "/api/v1/admin/users?q=member&limit=3".to_string(),
        };
        let page = call(&app, Some(&admin), &Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for u in page.body["items"].as_array().unwrap() {
            seen.push(u["username"].as_str().unwrap().to_string());
        }
        match page.body.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (0..7).map(|i| format!("member{i}")).collect::<Vec<_>>()
    );
    for bad in ["limit=0", "limit=101", "cursor=%%%"] {
        let a = call(
            &app,
            Some(&admin),
            &Method::GET,
            &format!("/api/v1/admin/users?{bad}"),
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {}", a.body);
    }
    // Audit events: filter by type, newest first, paged without gaps.
    let all = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/admin/audit-events?type=user.registered&limit=100",
        None,
    )
    .await;
    let total = all.body["items"].as_array().unwrap().len();
    assert_eq!(total, 8);
    let first = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/admin/audit-events?type=user.registered&limit=5",
        None,
    )
    .await;
    let next = first.str("next_cursor");
    let second = call(
        &app,
        Some(&admin),
        &Method::GET,
        &format!("/api/v1/admin/audit-events?type=user.registered&limit=5&cursor={next}"),
        None,
    )
    .await;
    assert_eq!(
        first.body["items"].as_array().unwrap().len()
            + second.body["items"].as_array().unwrap().len(),
        8
    );
    assert!(second.body.get("next_cursor").is_none());
    let future = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/admin/audit-events?since=99999999999",
        None,
    )
    .await;
    assert_eq!(future.body["items"], json!([]));
}
