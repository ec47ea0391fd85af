//! Registration validation, duplicates, and the profile endpoints.

use reqwest::StatusCode;
use serde_json::json;

use super::helpers::*;

async fn register_raw(app: &TestApp, body: serde_json::Value) -> Answer {
    Answer::from(
        app.http
            .post(app.url("/api/v1/users"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn registration_returns_the_user_without_secrets() {
    let app = spawn_app().await;
    let answer = app.register("alice").await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["username"], "alice");
    assert_eq!(answer.body["email"], "alice@example.com");
    assert_eq!(answer.body["roles"], json!(["reader"]));
    let text = answer.body.to_string();
    assert!(!text.contains("password") && !text.contains("$2"), "{text}");
    let row = entities::users::Entity::find()
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(row.password_hash.starts_with("$2"), "bcrypt hash stored");
    assert!(!row.password_hash.contains(PASSWORD));
}

use sea_orm::EntityTrait;

#[tokio::test]
async fn registration_validation() {
    let app = spawn_app().await;
    let long = "a".repeat(33);
    let cases = [
        (
            json!({"username": "ab", "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": long, "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "al ice", "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "alice!", "email": "a@example.com", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "alice", "email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "alice", "email": "a@b", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "alice", "email": "a@example.com", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"username": "alicealicealice", "email": "a@example.com", "password": "alicealicealice"}),
            "password",
        ),
        (
            json!({"username": "alice", "email": "alice.long@example.com", "password": "alice.long@example.com"}),
            "password",
        ),
    ];
    for (body, field) in cases {
        let answer = register_raw(&app, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.body["code"], "invalid_input", "{body}");
        assert_eq!(answer.body["field"], field, "{body}");
        assert!(answer.body["message"].is_string());
    }
    // Missing fields, wrong types, unknown fields (e.g. roles) are malformed requests.
    for body in [
        json!({"username": "alice"}),
        json!({"username": ["alice"], "email": "a@example.com", "password": PASSWORD}),
        json!({"username": "alice", "email": "a@example.com", "password": PASSWORD, "roles": ["admin"]}),
        json!([]),
    ] {
        let answer = register_raw(&app, body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.body["code"], "malformed_request", "{body}");
    }
    // Nothing was created by any of the above.
    assert_eq!(
        entities::users::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn duplicates_conflict_without_naming_the_field() {
    let app = spawn_app().await;
    assert_eq!(app.register("bob").await.status, StatusCode::CREATED);
    let same_name = register_raw(
        &app,
        json!({"username": "BOB", "email": "other@example.com", "password": PASSWORD}),
    )
    .await;
    let same_email = register_raw(
        &app,
        json!({"username": "robert", "email": "Bob@Example.com", "password": PASSWORD}),
    )
    .await;
    for answer in [&same_name, &same_email] {
        assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
        assert_eq!(answer.body["code"], "conflict");
    }
    assert_eq!(
        same_name.body, same_email.body,
        "the answer does not say which field exists"
    );
}

#[tokio::test]
async fn profile_read_and_update() {
    let app = spawn_app().await;
    let at = app
        .sign_in("carol", "openid profile email profile:write")
        .await
        .str("access_token");
    let me = app.get_bearer("/api/v1/users/me", &at).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "carol");

    let patch = |body: serde_json::Value| {
        let app = &app;
        let at = at.clone();
        async move {
            Answer::from(
                app.http
                    .patch(app.url("/api/v1/users/me"))
                    .bearer_auth(at)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let updated = patch(json!({"name": "Carol C."})).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["name"], "Carol C.");
    // The address is not changed here (POST /users/me/email, confirmed from the new address).
    assert_eq!(
        patch(json!({"email": "carol@new.example.com"}))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let cleared = patch(json!({"name": null})).await;
    assert!(cleared.body.get("name").is_none(), "{}", cleared.body);

    // Escalation attempt: roles cannot be set through the profile.
    let escalate = patch(json!({"roles": ["admin"]})).await;
    assert_eq!(escalate.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &at).await.body["roles"],
        json!(["reader"])
    );

    assert_eq!(patch(json!({"name": ""})).await.body["field"], "name");
    // A name that would read as another in tokens and pages: a right-to-left override.
    let spoof = patch(json!({"name": "Carol\u{202E}nimda"})).await;
    assert_eq!(spoof.status, StatusCode::BAD_REQUEST, "{}", spoof.body);
    assert_eq!(spoof.body["field"], "name");
}
