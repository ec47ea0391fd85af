//! The articles resource: CRUD, input validation, keyset pagination, and the per-object rule
//! (only the owner or an admin edits or deletes). The full cross-endpoint authorization matrix
//! lives elsewhere.

use std::collections::HashSet;

use portcullis::clients::GrantType;
use portcullis::domain::{Email, Password, Username};
use reqwest::{Method, StatusCode};
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};

use super::helpers::*;

const ALL: &str = "profile articles:read articles:write articles:delete";

/// Creates `username` with exactly `roles` and returns an access token for `scope`.
async fn token_for(app: &TestApp, username: &str, roles: &[&str], scope: &str) -> String {
    let name = Username::parse(username).unwrap();
    let email = Email::parse(&format!("{username}@example.com")).unwrap();
    let password = Password::parse(PASSWORD, &name, &email).unwrap();
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    app.state
        .users
        .register(&name, &email, &password, &roles, false)
        .await
        .unwrap();
    let answer = app.password_grant(username, scope).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.str("access_token")
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    Answer::from(req.send().await.unwrap()).await
}

async fn create(app: &TestApp, token: &str, title: &str, body: &str) -> Answer {
    call(
        app,
        Method::POST,
        "/api/v1/articles",
        Some(token),
        Some(json!({"title": title, "body": body})),
    )
    .await
}

#[track_caller]
fn assert_problem(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["code"], code, "{}", answer.body);
}

fn article_path(id: &str) -> String {
    format!("/api/v1/articles/{id}")
}

async fn audit_types(app: &TestApp) -> Vec<String> {
    app.state.audit.flush().await;
    entities::audit_events::Entity::find()
        .order_by_asc(entities::audit_events::Column::Id)
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t.starts_with("article."))
        .collect()
}

#[tokio::test]
async fn create_read_update_delete() {
    let app = spawn_app().await;
    let author = token_for(&app, "author1", &["author"], ALL).await;
    let reader = app
        .sign_in("reader1", "articles:read")
        .await
        .str("access_token");

    let created = create(&app, &author, "  Hello, world  ", "First post.\nTwo lines.").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.str("id");
    assert_eq!(created.header("location"), Some(article_path(&id)));
    assert_eq!(created.body["title"], "Hello, world", "title is trimmed");
    assert_eq!(created.body["body"], "First post.\nTwo lines.");
    assert_eq!(created.body["created_at"], created.body["updated_at"]);
    let owner = created.str("author_id");
    let me = call(&app, Method::GET, "/api/v1/users/me", Some(&author), None).await;
    assert_eq!(owner, me.str("id"), "the creator owns the article");

    // Anyone with articles:read reads it, alone and in the listing.
    let got = app.get_bearer(&article_path(&id), &reader).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body, created.body);
    let list = app.get_bearer("/api/v1/articles", &reader).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["items"], json!([created.body]));
    assert!(list.body.get("next_cursor").is_none(), "{}", list.body);

    // The owner edits: only the given fields change, and updated_at moves.
    app.clock.advance(30);
    let patched = call(
        &app,
        Method::PATCH,
        &article_path(&id),
        Some(&author),
        Some(json!({"title": "Hello again"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["title"], "Hello again");
    assert_eq!(patched.body["body"], created.body["body"]);
    assert_eq!(patched.body["created_at"], created.body["created_at"]);
    assert_eq!(
        patched.body["updated_at"].as_i64().unwrap(),
        created.body["updated_at"].as_i64().unwrap() + 30
    );
    let patched = call(
        &app,
        Method::PATCH,
        &article_path(&id),
        Some(&author),
        Some(json!({"body": "Rewritten."})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["title"], "Hello again");
    assert_eq!(patched.body["body"], "Rewritten.");
    assert_eq!(
        app.get_bearer(&article_path(&id), &reader).await.body,
        patched.body
    );

    // The owner deletes; then it is gone.
    let deleted = call(
        &app,
        Method::DELETE,
        &article_path(&id),
        Some(&author),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_problem(
        &app.get_bearer(&article_path(&id), &reader).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_problem(
        &call(
            &app,
            Method::DELETE,
            &article_path(&id),
            Some(&author),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        audit_types(&app).await,
        [
            "article.created",
            "article.updated",
            "article.updated",
            "article.deleted"
        ]
    );
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_not_found() {
    let app = spawn_app().await;
    let author = token_for(&app, "author1", &["author"], ALL).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [
        unknown.as_str(),
        "nope",
        "%00",
        "00000000000000000000000000000000",
    ] {
        let path = article_path(id);
        for method in [Method::GET, Method::DELETE] {
            assert_problem(
                &call(&app, method.clone(), &path, Some(&author), None).await,
                StatusCode::NOT_FOUND,
                "not_found",
            );
        }
        assert_problem(
            &call(
                &app,
                Method::PATCH,
                &path,
                Some(&author),
                Some(json!({"title": "x"})),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }
}

#[tokio::test]
async fn input_is_validated() {
    let app = spawn_app().await;
    let author = token_for(&app, "author1", &["author"], ALL).await;
    let max_body = "x".repeat(102_400);
    let long_body = "x".repeat(102_401);
    let cases = [
        (json!({"title": "", "body": "b"}), "title"),
        (json!({"title": "   ", "body": "b"}), "title"),
        (json!({"title": "x".repeat(201), "body": "b"}), "title"),
        (json!({"title": "a\u{0007}b", "body": "b"}), "title"),
        (json!({"title": "a\nb", "body": "b"}), "title"),
        (json!({"title": "a\u{0}b", "body": "b"}), "title"),
        (json!({"title": "t", "body": ""}), "body"),
        (json!({"title": "t", "body": long_body}), "body"),
        (json!({"title": "t", "body": "a\u{0}b"}), "body"),
    ];
    for (body, field) in &cases {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/articles",
            Some(&author),
            Some(body.clone()),
        )
        .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(answer.body["field"], *field, "{}", answer.body);
    }
    // Unknown fields, missing fields and wrong types are malformed requests.
    for body in [
        json!({"title": "t", "body": "b", "author_id": "someone-else"}),
        json!({"title": "t"}),
        json!({"title": ["t"], "body": "b"}),
        json!([]),
    ] {
        let answer = call(
            &app,
            Method::POST,
            "/api/v1/articles",
            Some(&author),
            Some(body),
        )
        .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "malformed_request");
    }
    assert!(
        entities::articles::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );

    // The limits themselves are accepted.
    let ok = create(&app, &author, &"é".repeat(200), &max_body).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    let path = article_path(&ok.str("id"));

    // PATCH applies the same rules, and changes nothing when refused.
    for (body, field) in [
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (json!({"title": "tab\there"}), "title"),
        (json!({"body": ""}), "body"),
        (json!({"body": "x".repeat(102_401)}), "body"),
        (json!({"title": "fine", "body": ""}), "body"),
    ] {
        let answer = call(&app, Method::PATCH, &path, Some(&author), Some(body)).await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(answer.body["field"], field, "{}", answer.body);
    }
    let answer = call(
        &app,
        Method::PATCH,
        &path,
        Some(&author),
        Some(json!({"title": "t", "author_id": "someone-else"})),
    )
    .await;
    assert_problem(&answer, StatusCode::BAD_REQUEST, "malformed_request");
    let now = app.get_bearer(&path, &author).await;
    assert_eq!(now.body, ok.body);
}

#[tokio::test]
async fn pages_through_every_article_once_newest_first() {
    let app = spawn_app().await;
    let author = token_for(&app, "author1", &["author"], ALL).await;
    // 25 articles; several share a creation second, so the id breaks ties.
    let mut created = Vec::new();
    for i in 0..25 {
        if i % 3 == 0 {
            app.clock.advance(1);
        }
        let answer = create(&app, &author, &format!("Article {i}"), "text").await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        created.push((
            answer.body["created_at"].as_i64().unwrap(),
            answer.str("id"),
        ));
    }
    created.sort();
    created.reverse();
    let expected: Vec<String> = created.into_iter().map(|(_, id)| id).collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/v1/articles?limit=10".to_string(),
            Some(c) => format!("/api/v1/articles?limit=10&cursor={c}"),
        };
        let page = app.get_bearer(&path, &author).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        pages += 1;
        assert_eq!(items.len(), if pages < 3 { 10 } else { 5 });
        seen.extend(items.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        if pages == 1 {
            // An article written meanwhile is newer than every page still to come: it
            // neither shifts them nor appears in them.
            app.clock.advance(1);
            let late = create(&app, &author, "Late", "text").await;
            assert_eq!(late.status, StatusCode::CREATED);
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "newest first, none missing or repeated");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 25);

    // Default page size is 20.
    let first = app.get_bearer("/api/v1/articles", &author).await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 20);
    assert!(first.body["next_cursor"].is_string());

    for limit in ["0", "101", "-1", "99999999999"] {
        let answer = app
            .get_bearer(&format!("/api/v1/articles?limit={limit}"), &author)
            .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(answer.body["field"], "limit", "{}", answer.body);
    }
    let answer = app.get_bearer("/api/v1/articles?limit=ten", &author).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);

    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for cursor in [
        "not-base64!".to_string(),
        b64("garbage"),
        b64("123:not-a-uuid"),
        b64(&format!("x:{}", uuid::Uuid::new_v4())),
        "A".repeat(500),
    ] {
        let answer = app
            .get_bearer(&format!("/api/v1/articles?cursor={cursor}"), &author)
            .await;
        assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(answer.body["field"], "cursor", "{}", answer.body);
    }
}

#[tokio::test]
async fn only_the_owner_or_an_admin_edits_or_deletes() {
    let app = spawn_app().await;
    let alice = token_for(&app, "alice", &["author"], ALL).await;
    let bob = token_for(&app, "bob", &["author"], ALL).await;
    let admin = token_for(&app, "root", &["admin"], ALL).await;
    let reader = app
        .sign_in("reader1", "articles:read articles:write articles:delete")
        .await;
    assert_eq!(
        reader.str("scope"),
        "articles:read",
        "roles bound the scope"
    );
    let reader = reader.str("access_token");

    let article = create(&app, &alice, "Alice's", "mine").await;
    let path = article_path(&article.str("id"));
    let edit = |title: &str| Some(json!({"title": title}));

    // Alice edits her own.
    let answer = call(
        &app,
        Method::PATCH,
        &path,
        Some(&alice),
        edit("Alice's, edited"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);

    // Bob, another author, may read it but neither edit nor delete it.
    assert_eq!(app.get_bearer(&path, &bob).await.status, StatusCode::OK);
    assert_problem(
        &call(&app, Method::PATCH, &path, Some(&bob), edit("Bob was here")).await,
        StatusCode::FORBIDDEN,
        "not_owner",
    );
    assert_problem(
        &call(&app, Method::DELETE, &path, Some(&bob), None).await,
        StatusCode::FORBIDDEN,
        "not_owner",
    );
    // A missing article is 404 for him too: existence is checked before ownership.
    let missing = article_path(&uuid::Uuid::new_v4().to_string());
    assert_problem(
        &call(&app, Method::PATCH, &missing, Some(&bob), edit("x")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let unchanged = app.get_bearer(&path, &bob).await;
    assert_eq!(unchanged.body["title"], "Alice's, edited");

    // A reader has no write or delete scope at all.
    assert_problem(
        &create(&app, &reader, "Reader's", "text").await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );
    assert_problem(
        &call(&app, Method::PATCH, &path, Some(&reader), edit("x")).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    );

    // Anonymous callers get 401 with a challenge.
    for (method, target, body) in [
        (Method::GET, "/api/v1/articles".to_string(), None),
        (Method::GET, path.clone(), None),
        (
            Method::POST,
            "/api/v1/articles".to_string(),
            Some(json!({"title": "t", "body": "b"})),
        ),
        (Method::DELETE, path.clone(), None),
    ] {
        let answer = call(&app, method, &target, None, body).await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED, "invalid_token");
        assert!(answer.header("www-authenticate").is_some());
    }

    // An admin edits and deletes anyone's; the article keeps its owner.
    let answer = call(&app, Method::PATCH, &path, Some(&admin), edit("Moderated")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["title"], "Moderated");
    assert_eq!(answer.body["author_id"], article.body["author_id"]);
    let answer = call(&app, Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_eq!(
        app.get_bearer(&path, &alice).await.status,
        StatusCode::NOT_FOUND
    );

    // The audit log names who acted on whose article.
    app.state.audit.flush().await;
    let deleted = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "article.deleted")
        .unwrap();
    let admin_id = call(&app, Method::GET, "/api/v1/users/me", Some(&admin), None)
        .await
        .str("id");
    assert_eq!(deleted.actor_user_id.as_deref(), Some(admin_id.as_str()));
    assert_eq!(deleted.client_id.as_deref(), Some(SPA));
    let details: Value = serde_json::from_str(&deleted.details).unwrap();
    assert_eq!(details["author_id"], article.body["author_id"]);
}

#[tokio::test]
async fn a_client_acting_for_itself_cannot_write() {
    let app = spawn_app().await;
    let client = app
        .confidential_client(
            "batch-job",
            &[GrantType::ClientCredentials],
            "articles:read articles:write",
        )
        .await;
    let token = app
        .post_form_basic(
            "/oauth/token",
            &client,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "articles:read articles:write"),
            ],
        )
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert_eq!(token.str("scope"), "articles:read articles:write");
    let token = token.str("access_token");
    // It may read (the scope says so) but owns nothing, so it cannot author.
    assert_eq!(
        app.get_bearer("/api/v1/articles", &token).await.status,
        StatusCode::OK
    );
    assert_problem(
        &create(&app, &token, "Robot", "beep").await,
        StatusCode::FORBIDDEN,
        "user_token_required",
    );
    assert!(
        entities::articles::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .is_empty()
    );
}
