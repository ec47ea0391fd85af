//! The resource-server example (`examples/resource_server.rs`) against a real Portcullis: both
//! run on random ports, the example knowing only the issuer URL. Time is Portcullis's manual
//! clock, shared with the example's verifier, so expiry and cache staleness are moved, not
//! waited for.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::clock::Clock as _;
use portcullis::config::DurationSetting;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::helpers::*;

#[allow(dead_code)]
#[path = "../../examples/resource_server.rs"]
mod example;

use example::{
    Config, DEFAULT_LEEWAY, DEFAULT_REFRESH_INTERVAL, FetchError, RejectReason, RequiredScope,
    Verifier,
};

const SCOPE: &str = "articles:read";

/// The example service, serving until dropped.
struct Rs {
    base: String,
    verifier: Arc<Verifier>,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A verifier for `app` expecting `audience`, reading time from the app's manual clock.
fn verifier(app: &TestApp, audience: &str) -> Arc<Verifier> {
    verifier_with(app, Config::new(app.base.clone(), audience))
}

fn verifier_with(app: &TestApp, config: Config) -> Arc<Verifier> {
    let clock = app.clock.clone();
    Arc::new(Verifier::new(config, Arc::new(move || clock.now())).unwrap())
}

async fn serve(verifier: Arc<Verifier>, scope: &str) -> Rs {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let endpoint = example::app(verifier.clone(), RequiredScope::parse(scope).unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                endpoint,
                async {
                    let _ = rx.await;
                },
                None,
            )
            .await;
    });
    Rs {
        base,
        verifier,
        http: reqwest::Client::new(),
        _shutdown: tx,
    }
}

/// The example as `main` would run it for `app`: default audience (the issuer), `SCOPE`.
async fn spawn_rs(app: &TestApp) -> Rs {
    serve(verifier(app, &app.base), SCOPE).await
}

impl Rs {
    async fn get(&self, authorization: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("{}/api/hello", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        Answer::from(request.send().await.unwrap()).await
    }

    async fn call(&self, token: &str) -> Answer {
        self.get(Some(&format!("Bearer {token}"))).await
    }
}

#[track_caller]
fn assert_invalid_token(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
    let challenge = answer.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], "invalid_token");
}

async fn access_token(app: &TestApp, username: &str, scope: &str) -> String {
    let answer = app.sign_in(username, scope).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.str("access_token")
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// `token` with its header replaced (payload and signature kept).
fn with_header(token: &str, header: &Value) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64(header))
}

/// `token` with its payload replaced (header and signature kept).
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(payload), parts[2])
}

/// Claims signed by Portcullis's current key with header `typ`, as Portcullis itself would.
fn sign(app: &TestApp, typ: &str, claims: &Value) -> String {
    app.state.keys.ring().sign(typ, claims).unwrap()
}

fn kid(token: &str) -> String {
    jwt_part(token, 0)["kid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_token_with_the_scope_passes_and_one_without_gets_403() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", "openid articles:read").await;

    let ok = rs.call(&token).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.body["sub"], jwt_part(&token, 1)["sub"]);
    assert_eq!(ok.body["client_id"], SPA);

    // No token at all (or no bearer token): a bare challenge, no error code (RFC 6750 §3.1).
    for authorization in [None, Some("Basic YWxpY2U6c2VjcmV0"), Some("Bearer")] {
        let answer = rs.get(authorization).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(answer.header("www-authenticate").as_deref(), Some("Bearer"));
    }

    // A valid token without the scope: 403 naming the scope needed.
    let answer = app.password_grant("alice", "openid profile").await;
    let narrow = answer.str("access_token");
    assert_eq!(jwt_part(&narrow, 1)["scope"], "openid profile");
    let answer = rs.call(&narrow).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    let challenge = answer.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(r#"scope="articles:read""#),
        "{challenge}"
    );
    assert_eq!(answer.body["error"], "insufficient_scope");

    // The same token passes where its scope is what is required.
    let profile = serve(verifier(&app, &app.base), "profile").await;
    assert_eq!(profile.call(&narrow).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    const ORDERS: &str = "https://orders.example.com";
    let app = spawn_app_with(|raw| raw.audience = Some(ORDERS.into())).await;
    let token = access_token(&app, "alice", SCOPE).await;
    assert_eq!(jwt_part(&token, 1)["aud"], ORDERS);

    let rs = spawn_rs(&app).await; // expects the issuer, Portcullis's default audience
    assert_invalid_token(&rs.call(&token).await);
    assert_eq!(
        rs.verifier.verify(&token).await.unwrap_err(),
        RejectReason::Audience
    );

    let orders = serve(verifier(&app, ORDERS), SCOPE).await;
    assert_eq!(orders.call(&token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let app = spawn_app_with(short_tokens).await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", SCOPE).await;
    let claims = jwt_part(&token, 1);
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    let leeway = i64::try_from(DEFAULT_LEEWAY.as_secs()).unwrap();
    assert!(leeway <= 60);

    // Accepted until `exp` plus the leeway, refused from then on.
    app.clock.advance(lifetime + leeway - 1);
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    app.clock.advance(1);
    let answer = rs.call(&token).await;
    assert_invalid_token(&answer);
    assert_eq!(answer.body["error_description"], "The access token expired");
    assert_eq!(
        rs.verifier.verify(&token).await.unwrap_err(),
        RejectReason::Expired
    );

    let now = app.clock.now();
    let mut early = claims.clone();
    early["iat"] = json!(now);
    early["nbf"] = json!(now + leeway + 10);
    early["exp"] = json!(now + 600);
    let early = sign(&app, "at+jwt", &early);
    assert_invalid_token(&rs.call(&early).await);
    assert_eq!(
        rs.verifier.verify(&early).await.unwrap_err(),
        RejectReason::NotYetValid
    );
}

#[tokio::test]
async fn only_access_tokens_are_accepted_as_access_tokens() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let answer = app.sign_in("alice", "openid articles:read").await;
    let id_token = answer.str("id_token");
    let access = answer.str("access_token");
    assert_eq!(jwt_part(&id_token, 0)["typ"], "JWT");

    assert_invalid_token(&rs.call(&id_token).await);
    // Where the ID token's audience is the one expected, only `typ` tells it apart.
    let spa = verifier(&app, SPA);
    assert_eq!(spa.verify(&id_token).await.unwrap_err(), RejectReason::Type);

    // The same access-token claims signed by the same key: the header's `typ` decides.
    let claims = jwt_part(&access, 1);
    for (typ, accepted) in [
        ("at+jwt", true),
        ("application/at+jwt", true),
        ("AT+JWT", true),
        ("JWT", false),
        ("jwt", false),
        ("id_token+jwt", false),
    ] {
        let token = sign(&app, typ, &claims);
        let answer = rs.call(&token).await;
        if accepted {
            assert_eq!(answer.status, StatusCode::OK, "typ {typ}: {}", answer.body);
        } else {
            assert_invalid_token(&answer);
            assert_eq!(
                rs.verifier.verify(&token).await.unwrap_err(),
                RejectReason::Type,
                "typ {typ}"
            );
        }
    }
    // No `typ` at all.
    let header = json!({"alg": "RS256", "kid": kid(&access)});
    let untyped = with_header(&access, &header);
    assert_eq!(
        rs.verifier.verify(&untyped).await.unwrap_err(),
        RejectReason::Type
    );
}

#[tokio::test]
async fn tampered_unsigned_and_foreign_tokens_are_refused() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", SCOPE).await;
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    let kid = kid(&token);
    let claims = jwt_part(&token, 1);
    let parts: Vec<&str> = token.split('.').collect();

    // One character of the signature changed (not the last one, whose low bits are padding).
    let mut signature: Vec<char> = parts[2].chars().collect();
    signature[10] = if signature[10] == 'A' { 'B' } else { 'A' };
    let flipped = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        signature.iter().collect::<String>()
    );

    let mut widened = claims.clone();
    widened["scope"] = json!("articles:read articles:write articles:delete");

    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        parts[1]
    );

    // HS256 keyed with the public key material, the classic algorithm-confusion forgery.
    let jwks: Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()["n"]
        .as_str()
        .unwrap()
        .to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();

    let mut foreign_issuer = claims.clone();
    foreign_issuer["iss"] = json!("https://evil.example.com");

    let cases = [
        ("flipped signature", flipped, RejectReason::Signature),
        (
            "payload changed",
            with_payload(&token, &widened),
            RejectReason::Signature,
        ),
        ("alg none", unsigned, RejectReason::Algorithm),
        ("HS256 with the public key", hs256, RejectReason::Algorithm),
        (
            "other issuer",
            sign(&app, "at+jwt", &foreign_issuer),
            RejectReason::Issuer,
        ),
        (
            "no kid",
            with_header(&token, &json!({"alg": "RS256", "typ": "at+jwt"})),
            RejectReason::Malformed,
        ),
        (
            "crit header",
            with_header(
                &token,
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": kid, "crit": ["exp"]}),
            ),
            RejectReason::Malformed,
        ),
        ("not a JWT", "abc".to_string(), RejectReason::Malformed),
        (
            "signature stripped",
            format!("{}.{}.", parts[0], parts[1]),
            RejectReason::Signature,
        ),
    ];
    for (name, forged, reason) in cases {
        let answer = rs.call(&forged).await;
        assert_invalid_token(&answer);
        assert_eq!(
            answer.body["error_description"], "The access token is invalid",
            "{name}"
        );
        assert_eq!(
            rs.verifier.verify(&forged).await.unwrap_err(),
            reason,
            "{name}"
        );
    }
    // The genuine token still passes; nothing above cost a JWKS fetch.
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1);
}

/// Sends `count` tokens with distinct made-up `kid`s at once; every one must be refused.
async fn forged_kid_burst(rs: &Rs, token: &str, count: usize) {
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..count {
        let header =
            json!({"alg": "RS256", "typ": "at+jwt", "kid": uuid::Uuid::new_v4().to_string()});
        let forged = with_header(token, &header);
        let http = rs.http.clone();
        let url = format!("{}/api/hello", rs.base);
        burst.spawn(async move {
            let response = http.get(url).bearer_auth(forged).send().await.unwrap();
            Answer::from(response).await
        });
    }
    for answer in burst.join_all().await {
        assert_invalid_token(&answer);
    }
}

#[tokio::test]
async fn forged_kids_cannot_amplify_into_jwks_fetches() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", SCOPE).await;
    let interval = i64::try_from(DEFAULT_REFRESH_INTERVAL.as_secs()).unwrap();
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1);

    // Within the interval of the last fetch: unknown kids are refused without fetching.
    forged_kid_burst(&rs, &token, 40).await;
    assert_eq!(rs.verifier.fetch_count(), 1);

    // Once the interval has passed, a concurrent burst shares one fetch (single flight).
    app.clock.advance(interval);
    forged_kid_burst(&rs, &token, 40).await;
    assert_eq!(rs.verifier.fetch_count(), 2);

    app.clock.advance(interval - 1);
    forged_kid_burst(&rs, &token, 40).await;
    assert_eq!(rs.verifier.fetch_count(), 2);

    app.clock.advance(1);
    forged_kid_burst(&rs, &token, 40).await;
    assert_eq!(rs.verifier.fetch_count(), 3);

    // After a refresh an unknown kid is refused as such, and genuine tokens keep passing.
    let forged = with_header(
        &token,
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "made-up"}),
    );
    assert_eq!(
        rs.verifier.verify(&forged).await.unwrap_err(),
        RejectReason::UnknownKey
    );
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 3);
}

#[tokio::test]
async fn a_rotation_needs_no_refetch_and_old_tokens_keep_working() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let before = access_token(&app, "alice", SCOPE).await;
    assert_eq!(rs.call(&before).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1);

    let promoted = app.state.keys.rotate().await.unwrap();
    let after = app.password_grant("alice", SCOPE).await.str("access_token");
    assert_eq!(kid(&after), promoted);
    assert_ne!(kid(&after), kid(&before));

    // The new signing key was published as `next` in the JWKS already cached.
    assert_eq!(rs.call(&after).await.status, StatusCode::OK);
    assert_eq!(rs.call(&before).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1);
}

#[tokio::test]
async fn the_jwks_is_cached_for_its_max_age_then_revalidated_with_its_etag() {
    const MAX_AGE: i64 = 120;
    let app =
        spawn_app_with(|raw| raw.jwks_max_age = DurationSetting::Seconds(MAX_AGE.unsigned_abs()))
            .await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", SCOPE).await;
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1);

    app.clock.advance(MAX_AGE - 1);
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 1, "fresh until max-age");

    app.clock.advance(1);
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 2, "stale at max-age");
    assert_eq!(rs.verifier.not_modified_count(), 1, "If-None-Match → 304");

    // Fresh again for max-age from the revalidation; then a changed set comes back whole.
    app.state.keys.rotate().await.unwrap();
    app.clock.advance(MAX_AGE - 1);
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 2);
    app.clock.advance(1);
    let after = app.password_grant("alice", SCOPE).await.str("access_token");
    assert_eq!(rs.call(&after).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 3);
    assert_eq!(rs.verifier.not_modified_count(), 1);
}

#[tokio::test]
async fn when_portcullis_is_down_cached_keys_work_and_unknown_kids_get_503() {
    let app = spawn_app().await;
    let rs = spawn_rs(&app).await;
    let token = access_token(&app, "alice", SCOPE).await;
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    let forged = with_header(
        &token,
        &json!({"alg": "RS256", "typ": "at+jwt", "kid": "made-up"}),
    );
    let clock = app.clock.clone();
    let address = app.base.trim_start_matches("http://").to_string();
    drop(app);
    // Wait until the port no longer accepts connections.
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());

    // Past max-age and the refresh interval: the refetch fails, the cached key still serves.
    clock.advance(400);
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 2);

    // An unknown kid cannot be judged without the keys: 503, and no extra fetch.
    let answer = rs.call(&forged).await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(answer.header("retry-after").is_some());
    assert_eq!(rs.verifier.fetch_count(), 2);

    // Retried at most once per interval while the outage lasts.
    clock.advance(i64::try_from(DEFAULT_REFRESH_INTERVAL.as_secs()).unwrap());
    assert_eq!(
        rs.call(&forged).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(rs.call(&token).await.status, StatusCode::OK);
    assert_eq!(rs.verifier.fetch_count(), 3);
}

#[tokio::test]
async fn the_discovered_issuer_must_be_the_configured_one() {
    let app = spawn_app().await;
    let token = access_token(&app, "alice", SCOPE).await;
    // Same server, but the configured issuer differs by a trailing slash.
    let rs = serve(
        verifier_with(
            &app,
            Config::new(format!("{}/", app.base), app.base.clone()),
        ),
        SCOPE,
    )
    .await;
    assert!(matches!(
        rs.verifier.warm_up().await,
        Err(FetchError::IssuerMismatch { .. })
    ));
    assert_eq!(
        rs.verifier.fetch_count(),
        0,
        "no JWKS from an unverified issuer"
    );
    assert_eq!(
        rs.call(&token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
