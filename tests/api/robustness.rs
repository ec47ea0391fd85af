//! No input, however malformed, produces a 500: every endpoint × hostile bodies and headers.

use reqwest::StatusCode;

use super::helpers::*;

#[tokio::test]
async fn malformed_requests_never_get_a_server_error() {
    let app = spawn_app().await;
    // An admin token reaches every handler past its guard, so hostile bodies meet the code.
    let id = app.register("alice").await.str("id");
    app.state
        .users
        .set_roles(&id, &["admin".to_string()])
        .await
        .unwrap();
    let at = app
        .password_grant("alice", "openid articles:read articles:write articles:delete users:read users:admin clients:admin audit:read")
        .await
        .str("access_token");
    let article = format!("/api/v1/articles/{}", uuid::Uuid::new_v4());
    let user = format!("/api/v1/admin/users/{id}");
    let user_roles = format!("{user}/roles");
    let user_unlock = format!("{user}/unlock");
    let endpoints = [
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
        ("POST", "/oauth/introspect"),
        ("GET", "/oauth/userinfo"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/me"),
        ("PATCH", "/api/v1/users/me"),
        ("GET", "/.well-known/jwks.json"),
        ("DELETE", "/oauth/token"),
        ("GET", "/no/such/path"),
        ("GET", "/api/v1/articles?limit=abc&cursor=%00"),
        ("POST", "/api/v1/articles"),
        ("PATCH", article.as_str()),
        ("DELETE", "/api/v1/articles/%00"),
        ("GET", "/api/v1/admin/users?q=%00&cursor=!!&limit=-1"),
        ("PUT", user_roles.as_str()),
        ("POST", user_unlock.as_str()),
        ("POST", "/api/v1/admin/clients"),
        ("PATCH", "/api/v1/admin/clients/%00"),
        ("PUT", "/api/v1/admin/roles/reader/permissions"),
        (
            "GET",
            "/api/v1/admin/audit-events?since=x&cursor=y&type=%00",
        ),
    ];
    let invalid_utf8: &[u8] = &[0xff, 0xfe, 0x00, 0x80];
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "application/x-www-form-urlencoded",
            b"grant_type=%ZZ&&==&".to_vec(),
        ),
        ("application/x-www-form-urlencoded", invalid_utf8.to_vec()),
        (
            "application/x-www-form-urlencoded",
            b"grant_type=password&username=%00&password=%00&client_id=portcullis-spa".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials&client_id=%00&client_secret=%00".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"token=%00&client_id=a%00b".to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            format!(
                "grant_type=password&username={}&password=x&client_id=portcullis-spa",
                "a".repeat(100_000)
            )
            .into_bytes(),
        ),
        ("application/json", b"{".to_vec()),
        ("application/json", b"null".to_vec()),
        (
            "application/json",
            b"{\"username\": {\"$gt\": \"\"}}".to_vec(),
        ),
        ("application/json", invalid_utf8.to_vec()),
        ("text/plain", b"hello".to_vec()),
        ("multipart/form-data; boundary=x", b"--x\r\n".to_vec()),
        ("", Vec::new()),
    ];
    let auths = [
        None,
        Some(format!("Bearer {at}")),
        Some("Basic !!!".to_string()),
        Some("Basic Og==".to_string()),
        Some("Bearer".to_string()),
        Some(format!("Basic {}", "A".repeat(5000))),
    ];
    for (method, path) in endpoints {
        for (content_type, body) in &bodies {
            for auth in &auths {
                let mut req = app
                    .http
                    .request(method.parse().unwrap(), app.url(path))
                    .body(body.clone());
                if !content_type.is_empty() {
                    req = req.header("content-type", *content_type);
                }
                if let Some(auth) = auth {
                    req = req.header("authorization", auth);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status();
                let text = resp.text().await.unwrap();
                assert!(
                    status.is_success()
                        || status.is_client_error()
                        || status == StatusCode::NOT_MODIFIED,
                    "{method} {path} [{content_type}] auth={auth:?}: {status} {text:.300}"
                );
                if status.is_client_error() {
                    let json: serde_json::Value =
                        serde_json::from_str(&text).unwrap_or_else(|_| {
                            panic!("{method} {path}: non-JSON error body {text:.200}")
                        });
                    assert!(
                        json.get("error").is_some() || json.get("code").is_some(),
                        "{method} {path}: {json}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = spawn_app().await;
    let big = vec![b'a'; portcullis::http::MAX_BODY_BYTES + 1];
    let resp = app
        .http
        .post(app.url("/api/v1/users"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Chunked (no Content-Length) is bounded as well.
    let stream = futures_util_stream(big.clone());
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The OAuth endpoints keep their RFC 6749 error shape.
    let answer = Answer::from(
        app.http
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.assert_oauth_error(413, "invalid_request");
}

/// What the middleware and the body extractors answer before a handler runs (413 for a body
/// over the limit, 415 for a JSON operation sent something else) is documented on every
/// operation it can reach, in the operation's own error shape (found by
/// scripts/schemathesis.sh: 415 was undocumented).
#[tokio::test]
async fn framework_answers_are_documented() {
    let app = spawn_app().await;
    let doc: serde_json::Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    for (path, method) in [
        ("/api/v1/users", "post"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/articles", "post"),
        ("/api/v1/articles/{id}", "patch"),
        ("/api/v1/admin/clients", "post"),
        ("/api/v1/admin/clients/{client_id}", "patch"),
        ("/api/v1/admin/users/{id}/roles", "put"),
        ("/api/v1/admin/roles/{role}/permissions", "put"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for status in ["413", "415"] {
            assert!(
                responses[status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
    }
    for path in ["/oauth/token", "/oauth/revoke", "/oauth/introspect"] {
        assert!(
            doc["paths"][path]["post"]["responses"]["413"].is_object(),
            "POST {path} does not document 413"
        );
    }
    // No Content-Type on a JSON operation: 415 in the problem shape.
    let resp = app
        .http
        .post(app.url("/api/v1/users"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unsupported_media_type", "{body}");
}

fn futures_util_stream(
    bytes: Vec<u8>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Chunks(std::vec::IntoIter<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next().map(Ok))
        }
    }
    let chunks: Vec<Vec<u8>> = bytes.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    Chunks(chunks.into_iter())
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = Answer::from(app.http.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = Answer::from(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["database"], "ok");
    assert_eq!(ready.body["store"], "ok");
    assert!(ready.header("x-request-id").is_some());
}

/// Writes that read before they write (registration, role changes, role permissions) run side
/// by side without a 503: on SQLite such a transaction must take the write lock when it
/// begins, or a concurrent commit makes it fail at once with "database is locked" instead of
/// waiting (found by scripts/schemathesis.sh).
#[tokio::test]
async fn concurrent_writes_never_answer_503() {
    let app = spawn_app().await;
    let id = app.register("root").await.str("id");
    app.state
        .users
        .set_roles(&id, &["admin".to_string()])
        .await
        .unwrap();
    let at = app
        .password_grant(
            "root",
            "users:read users:admin articles:read articles:write articles:delete",
        )
        .await
        .str("access_token");
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(app.register(&format!("target{n}")).await.str("id"));
    }
    let mut burst = tokio::task::JoinSet::new();
    let mut send = |what: String, request: reqwest::RequestBuilder| {
        burst.spawn(async move { (what, request.send().await) });
    };
    for round in 0..8 {
        for (n, target) in ids.iter().enumerate() {
            let roles = if (round + n) % 2 == 0 {
                serde_json::json!({"roles": ["reader"]})
            } else {
                serde_json::json!({"roles": ["reader", "author"]})
            };
            send(
                format!("roles of target{n}: {roles}"),
                app.http
                    .put(app.url(&format!("/api/v1/admin/users/{target}/roles")))
                    .bearer_auth(&at)
                    .json(&roles),
            );
        }
        send(
            "author permissions".into(),
            app.http
                .put(app.url("/api/v1/admin/roles/author/permissions"))
                .bearer_auth(&at)
                .json(&serde_json::json!({"permissions": ["articles:read", "articles:write"]})),
        );
        send(
            format!("registration burst{round}"),
            app.http
                .post(app.url("/api/v1/users"))
                .json(&serde_json::json!({
                    "username": format!("burst{round}"),
                    "email": format!("burst{round}@example.com"),
                    "password": PASSWORD,
                })),
        );
    }
    for answer in burst.join_all().await {
        let (what, resp) = answer;
        let resp = resp.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_success(), "{what}: {status} {body}");
    }
}

/// A method a path does not have answers 405 with an `Allow` header naming the methods it has
/// (RFC 9110 §15.5.6), for every path of the OpenAPI document (found by
/// scripts/schemathesis.sh: the header was missing).
#[tokio::test]
async fn unsupported_methods_answer_405_with_allow() {
    let app = spawn_app().await;
    let doc: serde_json::Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 10);
    for (template, operations) in paths {
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let mut expected: Vec<String> = operations
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        if expected.iter().any(|m| m == "GET") {
            expected.push("HEAD".into());
        }
        expected.sort();
        for method in ["TRACE", "OPTIONS", "PUT", "DELETE"] {
            if expected.iter().any(|m| m == method) {
                continue;
            }
            let resp = app
                .http
                .request(method.parse().unwrap(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let allow = resp
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
                .to_str()
                .unwrap()
                .to_string();
            let mut allowed: Vec<String> = allow.split(", ").map(str::to_string).collect();
            allowed.sort();
            assert_eq!(allowed, expected, "{method} {path}: Allow: {allow}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
        }
    }
}

/// JSON bodies have the types the document gives them: a number or boolean where a string is
/// documented, or `null` where a field is not nullable, is refused with 400
/// `malformed_request` naming the field (as other wrong types already were), instead of being turned into text or read as "absent" (found by
/// scripts/schemathesis.sh: `{"title": -4.4e16, "body": -99778}` created an article).
#[tokio::test]
async fn json_bodies_have_their_documented_types() {
    let app = spawn_app().await;
    let id = app.register("root").await.str("id");
    app.state
        .users
        .set_roles(&id, &["admin".to_string()])
        .await
        .unwrap();
    let at = app
        .password_grant(
            "root",
            "profile profile:write articles:write users:admin clients:admin",
        )
        .await
        .str("access_token");
    let article = format!("/api/v1/articles/{}", uuid::Uuid::new_v4());
    let roles = format!("/api/v1/admin/users/{id}/roles");
    let cases: Vec<(&str, &str, serde_json::Value, &str)> = vec![
        (
            "PATCH",
            "/api/v1/users/me",
            serde_json::json!({"name": -317}),
            "name",
        ),
        (
            "PATCH",
            "/api/v1/users/me",
            serde_json::json!({"name": true}),
            "name",
        ),
        (
            "POST",
            "/api/v1/users/me/email",
            serde_json::json!({"new_email": true, "current_password": "x"}),
            "new_email",
        ),
        (
            "POST",
            "/api/v1/articles",
            serde_json::json!({"title": -4.4e16, "body": "x"}),
            "title",
        ),
        (
            "POST",
            "/api/v1/articles",
            serde_json::json!({"title": "t", "body": 12}),
            "body",
        ),
        (
            "PATCH",
            &article,
            serde_json::json!({"title": false}),
            "title",
        ),
        (
            "PUT",
            &roles,
            serde_json::json!({"roles": ["reader", 1]}),
            "roles[1]",
        ),
        (
            "PUT",
            &roles,
            serde_json::json!({"roles": "admin"}),
            "roles",
        ),
        (
            "POST",
            "/api/v1/admin/clients",
            serde_json::json!({"client_id": 7, "grant_types": ["client_credentials"]}),
            "client_id",
        ),
        (
            "POST",
            "/api/v1/admin/clients",
            serde_json::json!({"client_id": "c", "grant_types": ["client_credentials"], "public": "yes"}),
            "public",
        ),
    ];
    for (method, path, body, field) in cases {
        let answer = Answer::from(
            app.http
                .request(method.parse().unwrap(), app.url(path))
                .bearer_auth(&at)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {}",
            answer.body
        );
        assert_eq!(
            answer.body["code"], "malformed_request",
            "{method} {path} {body}: {}",
            answer.body
        );
        assert_eq!(
            answer.body["field"], field,
            "{method} {path} {body}: {}",
            answer.body
        );
    }
    // Registration: a numeric username is not a username.
    let answer = Answer::from(
        app.http
            .post(app.url("/api/v1/users"))
            .json(&serde_json::json!({"username": 12345, "email": "n@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.body["field"], "username", "{}", answer.body);
    // `null` is the documented way to clear the display name, and the document says so.
    let cleared = Answer::from(
        app.http
            .patch(app.url("/api/v1/users/me"))
            .bearer_auth(&at)
            .json(&serde_json::json!({"name": null}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    let doc: serde_json::Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    assert_eq!(
        doc["components"]["schemas"]["ProfilePatch"]["properties"]["name"]["nullable"],
        true
    );
}
