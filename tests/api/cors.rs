//! CORS for single-page apps on other origins: the token, revocation, introspection and
//! userinfo endpoints and the JSON API are shared with the origins of registered redirect and
//! post-logout URIs, the public metadata with every origin, the hosted pages and the docs
//! with none; preflights are answered before the router, the body checks and the rate limits.

use portcullis::clients::{CLIENT_CACHE_TTL, GrantType, NewClient};
use portcullis::domain::{ClientId, Scope};
use reqwest::{Method, StatusCode};

use super::helpers::*;

/// Where the test SPA runs.
const SPA_ORIGIN: &str = "http://127.0.0.1:5173";
const FOREIGN_ORIGIN: &str = "https://evil.example";

/// Registers a public SPA client with these redirect and post-logout URIs.
async fn web_client(app: &TestApp, id: &str, redirect_uris: &[&str], post_logout: &[&str]) {
    app.state
        .clients
        .create(NewClient {
            client_id: ClientId::parse(id).unwrap(),
            name: id.into(),
            secret: None,
            grant_types: vec![
                GrantType::AuthorizationCode,
                GrantType::Password,
                GrantType::RefreshToken,
            ],
            scopes: Scope::parse("openid profile email").unwrap(),
            default_scopes: None,
            audiences: vec![],
            redirect_uris: redirect_uris.iter().map(|u| u.to_string()).collect(),
            post_logout_redirect_uris: post_logout.iter().map(|u| u.to_string()).collect(),
            first_party: false,
        })
        .await
        .expect("create client");
}

async fn spa_app() -> TestApp {
    let app = spawn_app().await;
    web_client(&app, "web-app", &[&format!("{SPA_ORIGIN}/callback")], &[]).await;
    app
}

/// The `Access-Control-*` headers of an answer.
fn cors_headers(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn varies_by_origin(answer: &Answer) -> bool {
    answer
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

#[track_caller]
fn assert_shared_with(answer: &Answer, origin: &str) {
    assert_eq!(
        answer.header("access-control-allow-origin").as_deref(),
        Some(origin),
        "{:?}",
        answer.headers
    );
    assert!(varies_by_origin(answer), "{:?}", answer.headers);
    let exposed = answer.header("access-control-expose-headers").unwrap();
    for name in [
        "WWW-Authenticate",
        "Retry-After",
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "X-Request-Id",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
    assert_eq!(answer.header("access-control-allow-credentials"), None);
}

#[track_caller]
fn assert_not_shared(answer: &Answer) {
    assert_eq!(
        cors_headers(answer),
        Vec::<String>::new(),
        "{:?}",
        answer.headers
    );
}

async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str, headers: &str) -> Answer {
    let mut req = app
        .http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if !headers.is_empty() {
        req = req.header("access-control-request-headers", headers);
    }
    Answer::from(req.send().await.unwrap()).await
}

async fn token_from(app: &TestApp, origin: &str, username: &str) -> Answer {
    let req = app
        .http
        .post(app.url("/oauth/token"))
        .header("origin", origin)
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
            ("client_id", SPA),
            ("scope", "openid profile"),
        ]);
    Answer::from(req.send().await.unwrap()).await
}

async fn get_from(app: &TestApp, path: &str, origin: &str, token: Option<&str>) -> Answer {
    let mut req = app.http.get(app.url(path)).header("origin", origin);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    Answer::from(req.send().await.unwrap()).await
}

#[tokio::test]
async fn a_registered_origin_may_read_token_and_api_answers() {
    let app = spa_app().await;
    assert_eq!(app.register("ann").await.status, StatusCode::CREATED);

    let token = token_from(&app, SPA_ORIGIN, "ann").await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert_shared_with(&token, SPA_ORIGIN);
    let access = token.str("access_token");

    let me = get_from(&app, "/api/v1/users/me", SPA_ORIGIN, Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_shared_with(&me, SPA_ORIGIN);

    let userinfo = get_from(&app, "/oauth/userinfo", SPA_ORIGIN, Some(&access)).await;
    assert_eq!(userinfo.status, StatusCode::OK, "{}", userinfo.body);
    assert_shared_with(&userinfo, SPA_ORIGIN);

    // Error answers too, so the app can read the bearer challenge.
    let refused = get_from(&app, "/api/v1/users/me", SPA_ORIGIN, None).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_shared_with(&refused, SPA_ORIGIN);
    assert!(refused.header("www-authenticate").is_some());
}

#[tokio::test]
async fn origins_come_from_redirect_and_post_logout_uris_as_browsers_write_them() {
    let app = spawn_app().await;
    web_client(
        &app,
        "shop",
        &[
            "https://Shop.Example:443/callback",
            "com.example.shop:/callback",
        ],
        &["http://localhost:8080/signed-out"],
    )
    .await;
    assert_eq!(app.register("bob").await.status, StatusCode::CREATED);
    for origin in ["https://shop.example", "http://localhost:8080"] {
        let answer = token_from(&app, origin, "bob").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_shared_with(&answer, origin);
    }
    for origin in [
        "https://shop.example:443",
        "http://shop.example",
        "http://localhost",
        "com.example.shop://",
        "null",
    ] {
        assert_not_shared(&token_from(&app, origin, "bob").await);
    }
}

#[tokio::test]
async fn a_preflight_from_a_registered_origin_is_answered_before_the_operations() {
    let app = spawn_app_with(|raw| {
        raw.rate_limit_enabled = true;
        raw.rate_limit_token_ip = "2/1m".into();
    })
    .await;
    web_client(&app, "web-app", &[&format!("{SPA_ORIGIN}/callback")], &[]).await;

    // More preflights than the limit allows: none is counted.
    for _ in 0..4 {
        let answer = preflight(&app, "/oauth/token", SPA_ORIGIN, "POST", "content-type").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
        assert_eq!(
            answer.header("access-control-allow-origin").as_deref(),
            Some(SPA_ORIGIN)
        );
        assert_eq!(
            answer.header("access-control-allow-methods").as_deref(),
            Some("GET, POST, PUT, PATCH, DELETE")
        );
        assert_eq!(
            answer.header("access-control-allow-headers").as_deref(),
            Some("content-type")
        );
        assert_eq!(
            answer.header("access-control-max-age").as_deref(),
            Some("600")
        );
        assert!(varies_by_origin(&answer));
        assert_eq!(answer.header("access-control-allow-credentials"), None);
    }
    assert_eq!(app.register("cat").await.status, StatusCode::CREATED);
    assert_eq!(
        token_from(&app, SPA_ORIGIN, "cat").await.status,
        StatusCode::OK
    );

    // The API: a route without OPTIONS (no 405), and a JSON route (no body check).
    let me = preflight(
        &app,
        "/api/v1/users/me",
        SPA_ORIGIN,
        "PATCH",
        "authorization, content-type, x-unknown",
    )
    .await;
    assert_eq!(me.status, StatusCode::NO_CONTENT);
    assert_eq!(
        me.header("access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
    let users = Answer::from(
        app.http
            .request(Method::OPTIONS, app.url("/api/v1/users"))
            .header("origin", SPA_ORIGIN)
            .header("access-control-request-method", "POST")
            .header("content-type", "application/json")
            .body("{\"username\": 5")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(users.status, StatusCode::NO_CONTENT, "{}", users.body);
    assert_eq!(
        users.header("access-control-allow-origin").as_deref(),
        Some(SPA_ORIGIN)
    );
    for path in ["/oauth/revoke", "/oauth/introspect", "/oauth/userinfo"] {
        let answer = preflight(&app, path, SPA_ORIGIN, "POST", "authorization").await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "{path}");
    }
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers_and_its_preflight_is_refused() {
    let app = spa_app().await;
    assert_eq!(app.register("dan").await.status, StatusCode::CREATED);

    // The request itself proceeds; only the browser withholds the answer.
    let token = token_from(&app, FOREIGN_ORIGIN, "dan").await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert_not_shared(&token);
    let me = get_from(
        &app,
        "/api/v1/users/me",
        FOREIGN_ORIGIN,
        Some(&token.str("access_token")),
    )
    .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_not_shared(&me);

    for path in ["/oauth/token", "/api/v1/users/me"] {
        let answer = preflight(&app, path, FOREIGN_ORIGIN, "POST", "authorization").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert_not_shared(&answer);
    }
    // Without `Origin` (not a browser's cross-origin request), nothing changes either.
    let plain = app.password_grant("dan", "openid").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_not_shared(&plain);
}

#[tokio::test]
async fn public_metadata_is_shared_with_every_origin() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let answer = get_from(&app, path, FOREIGN_ORIGIN, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert_eq!(
            answer.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
        assert_eq!(answer.header("access-control-allow-credentials"), None);
        let preflight = preflight(&app, path, FOREIGN_ORIGIN, "GET", "authorization").await;
        assert_eq!(preflight.status, StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            preflight.header("access-control-allow-origin").as_deref(),
            Some("*")
        );
    }
}

#[tokio::test]
async fn sign_in_pages_and_docs_are_never_shared() {
    let app = spa_app().await;
    for path in [
        "/oauth/authorize?client_id=web-app&response_type=code",
        "/oauth/end_session",
        "/ui/login",
        "/ui/consent",
        "/docs",
        "/docs/oauth-receiver.html",
        "/metrics",
        "/openapi.json",
    ] {
        assert_not_shared(&get_from(&app, path, SPA_ORIGIN, None).await);
        let answer = preflight(&app, path, SPA_ORIGIN, "POST", "content-type").await;
        assert_not_shared(&answer);
        assert_ne!(answer.status, StatusCode::NO_CONTENT, "{path}");
    }
}

#[tokio::test]
async fn a_new_clients_origin_is_allowed_within_the_cache_interval() {
    let app = spawn_app().await;
    assert_eq!(app.register("eve").await.status, StatusCode::CREATED);
    // The origins are read, and remembered, without the new one.
    assert_not_shared(&token_from(&app, SPA_ORIGIN, "eve").await);

    web_client(&app, "late-app", &[&format!("{SPA_ORIGIN}/callback")], &[]).await;
    app.clock
        .advance(i64::try_from(CLIENT_CACHE_TTL.as_secs()).unwrap());
    assert_shared_with(&token_from(&app, SPA_ORIGIN, "eve").await, SPA_ORIGIN);
    let answer = preflight(&app, "/oauth/token", SPA_ORIGIN, "POST", "").await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        answer.header("access-control-allow-headers").as_deref(),
        Some("authorization, content-type")
    );
}
