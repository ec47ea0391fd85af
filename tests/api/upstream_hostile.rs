//! Social sign-in against upstreams that are not Portcullis: a hostile OpenID provider that
//! signs, with a real key published in a real JWKS, whatever ID token the test asks for (so
//! each check of the validation is shown to refuse), and a server that answers GitHub's
//! endpoints with the shapes GitHub documents (`POST /login/oauth/access_token`, `GET /user`,
//! `GET /user/emails`).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::http::StatusCode as PoemStatus;
use poem::web::{Data, Json, Query, Redirect};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler, post};
use reqwest::StatusCode;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use super::browser_support::Browser;
use super::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Good,
    WrongIssuer,
    WrongAudience,
    WrongNonce,
    Expired,
    Unsigned,
    BadSignature,
    ForeignKey,
}

struct Hostile {
    base: String,
    jwks_uri: String,
    mode: Mutex<Mode>,
    nonce: Mutex<String>,
    ring: portcullis::keys::KeyRing,
    foreign: portcullis::keys::KeyRing,
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
}

#[handler]
fn discovery(h: Data<&Arc<Hostile>>) -> Json<Value> {
    Json(json!({
        "issuer": h.base,
        "authorization_endpoint": format!("{}/authorize", h.base),
        "token_endpoint": format!("{}/token", h.base),
        "jwks_uri": h.jwks_uri,
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

#[handler]
fn authorize(h: Data<&Arc<Hostile>>, Query(q): Query<AuthorizeQuery>) -> Response {
    *h.nonce.lock().unwrap() = q.nonce.unwrap_or_default();
    let to = format!(
        "{}?code=hostile-code&state={}",
        q.redirect_uri,
        url::form_urlencoded::byte_serialize(q.state.as_bytes()).collect::<String>()
    );
    Redirect::see_other(to).into_response()
}

#[handler]
fn token(h: Data<&Arc<Hostile>>) -> Json<Value> {
    let mode = *h.mode.lock().unwrap();
    let now = chrono::Utc::now().timestamp();
    let nonce = h.nonce.lock().unwrap().clone();
    let claims = json!({
        "iss": if mode == Mode::WrongIssuer { "https://someone-else.example" } else { h.base.as_str() },
        "aud": if mode == Mode::WrongAudience { "another-client" } else { "hostile-client" },
        "sub": "mallory-1",
        "email": "mallory@example.com",
        "email_verified": true,
        "iat": if mode == Mode::Expired { now - 900 } else { now },
        "exp": if mode == Mode::Expired { now - 600 } else { now + 300 },
        "nonce": if mode == Mode::WrongNonce { "not-the-nonce".to_string() } else { nonce },
    });
    let id_token = match mode {
        Mode::Unsigned => format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ),
        Mode::ForeignKey => h.foreign.sign("JWT", &claims).unwrap(),
        Mode::BadSignature => {
            let signed = h.ring.sign("JWT", &claims).unwrap();
            let (head, sig) = signed.rsplit_once('.').unwrap();
            let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
            bytes[0] ^= 0x01;
            format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
        }
        _ => h.ring.sign("JWT", &claims).unwrap(),
    };
    Json(
        json!({"access_token": "hostile-access", "token_type": "Bearer",
                "expires_in": 300, "id_token": id_token}),
    )
}

async fn serve(app: impl poem::Endpoint + 'static) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                app,
                async {
                    let _ = rx.await;
                },
                None,
            )
            .await;
    });
    (base, tx)
}

async fn users(app: &TestApp) -> u64 {
    entities::users::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

/// Through the provider `id` of `down` whose upstream answers at once (no page of its own):
/// the button, the upstream's redirect, the callback. Returns the callback's answer.
async fn round_trip<'a>(
    down: &'a TestApp,
    id: &str,
) -> (super::browser_support::Page, Browser<'a>) {
    let mut browser = Browser::new(down);
    let query = super::browser_support::authorize_url(&[
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", CODE_APP_CB),
        ("scope", "openid profile email"),
        ("state", "s"),
        ("nonce", "n"),
        ("code_challenge", &super::browser_support::pkce().1),
        ("code_challenge_method", "S256"),
    ]);
    let first = browser.get(&query).await;
    let login = browser.get(first.location.as_deref().unwrap()).await;
    let csrf = login.input("csrf_token").unwrap();
    let return_to = login.input("return_to").unwrap();
    let go = browser
        .post(
            &format!("/ui/upstream/{id}/start"),
            &[("csrf_token", &csrf), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.body);
    let upstream = down.http.get(go.location.unwrap()).send().await.unwrap();
    assert!(upstream.status().is_redirection(), "{}", upstream.status());
    let callback = upstream
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let page = browser.get(&callback).await;
    (page, browser)
}

#[tokio::test]
async fn every_check_of_the_upstream_id_token_refuses_what_it_must() {
    // The key the hostile provider signs with is a real one, published in a real JWKS
    // (another Portcullis's); a third instance's key is not in that JWKS.
    let keyholder = spawn_app().await;
    let stranger = spawn_app().await;
    let down = spawn_app().await;
    down.code_app().await;
    let placeholder = Arc::new(Hostile {
        base: String::new(),
        jwks_uri: format!("{}/.well-known/jwks.json", keyholder.base),
        mode: Mutex::new(Mode::Good),
        nonce: Mutex::default(),
        ring: keyholder.state.keys.ring().clone(),
        foreign: stranger.state.keys.ring().clone(),
    });
    // The server must know its own address before it answers: bind first, then fill it in.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hostile = Arc::new(Hostile {
        base: base.clone(),
        jwks_uri: placeholder.jwks_uri.clone(),
        mode: Mutex::new(Mode::Good),
        nonce: Mutex::default(),
        ring: placeholder.ring.clone(),
        foreign: placeholder.foreign.clone(),
    });
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let routes = Route::new()
        .at("/.well-known/openid-configuration", get(discovery))
        .at("/authorize", get(authorize))
        .at("/token", post(token))
        .data(hostile.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(
                routes,
                async {
                    let _ = rx.await;
                },
                None,
            )
            .await;
    });
    down.state
        .idp_admin
        .create(
            &portcullis::ops::Caller::operator(),
            portcullis::upstream::ProviderInput {
                id: Some("evil".into()),
                kind: Some("oidc".into()),
                client_id: Some("hostile-client".into()),
                client_secret: Some(secrecy::SecretString::from("hostile client secret value")),
                allow_signup: Some(true),
                issuer: Some(base.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let before = users(&down).await;
    for mode in [
        Mode::WrongIssuer,
        Mode::WrongAudience,
        Mode::WrongNonce,
        Mode::Expired,
        Mode::Unsigned,
        Mode::BadSignature,
        Mode::ForeignKey,
    ] {
        *hostile.mode.lock().unwrap() = mode;
        let (page, _) = round_trip(&down, "evil").await;
        assert_eq!(
            page.status,
            StatusCode::BAD_GATEWAY,
            "{mode:?}: {}",
            page.body
        );
        assert!(page.body.contains("could not be trusted"), "{mode:?}");
        assert_eq!(users(&down).await, before, "{mode:?}: nothing created");
    }
    // The same provider with an honest token signs in: the refusals above were the checks.
    *hostile.mode.lock().unwrap() = Mode::Good;
    let (page, _) = round_trip(&down, "evil").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(users(&down).await, before + 1);
    let _ = tx;
}

// ---- GitHub ---------------------------------------------------------------------------------

#[derive(Default)]
struct GitHub {
    primary_verified: bool,
    seen_code_verifier: Mutex<Option<String>>,
}

#[derive(serde::Deserialize)]
struct GitHubAuthorize {
    redirect_uri: String,
    state: String,
}

#[handler]
fn gh_authorize(Query(q): Query<GitHubAuthorize>) -> Response {
    Redirect::see_other(format!(
        "{}?code=gh-code-1&state={}",
        q.redirect_uri,
        url::form_urlencoded::byte_serialize(q.state.as_bytes()).collect::<String>()
    ))
    .into_response()
}

#[handler]
fn gh_token(gh: Data<&Arc<GitHub>>, body: String) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("code").as_deref() != Some("gh-code-1") {
        // GitHub answers a bad code with 200 and an error body.
        return Json(json!({"error": "bad_verification_code",
                           "error_description": "The code passed is incorrect or expired."}))
        .into_response();
    }
    *gh.seen_code_verifier.lock().unwrap() = get("code_verifier");
    Json(
        json!({"access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                "scope": "read:user,user:email", "token_type": "bearer"}),
    )
    .into_response()
}

fn authorized(req: &poem::Request) -> bool {
    req.header("authorization")
        .is_some_and(|a| a.ends_with("gho_16C7e42F292c6912E7710c838347Ae178B4a"))
}

#[handler]
fn gh_user(req: &poem::Request) -> Response {
    if !authorized(req) {
        return PoemStatus::UNAUTHORIZED.into_response();
    }
    Json(json!({
        "login": "octocat", "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==",
        "avatar_url": "https://avatars.githubusercontent.com/u/583231?v=4",
        "type": "User", "site_admin": false, "name": "The Octocat", "company": "@github",
        "email": null, "created_at": "2011-01-25T18:44:36Z"
    }))
    .into_response()
}

#[handler]
fn gh_emails(req: &poem::Request, gh: Data<&Arc<GitHub>>) -> Response {
    if !authorized(req) {
        return PoemStatus::UNAUTHORIZED.into_response();
    }
    Json(json!([
        {"email": "octocat@github.com", "verified": gh.primary_verified, "primary": true,
         "visibility": "public"},
        {"email": "octo-second@example.com", "verified": true, "primary": false,
         "visibility": null}
    ]))
    .into_response()
}

async fn github(primary_verified: bool) -> (String, Arc<GitHub>, tokio::sync::oneshot::Sender<()>) {
    let gh = Arc::new(GitHub {
        primary_verified,
        ..GitHub::default()
    });
    let routes = Route::new()
        .at("/login/oauth/authorize", get(gh_authorize))
        .at("/login/oauth/access_token", post(gh_token))
        .at("/user", get(gh_user))
        .at("/user/emails", get(gh_emails))
        .data(gh.clone());
    let (base, tx) = serve(routes).await;
    (base, gh, tx)
}

async fn with_github(down: &TestApp, base: &str) {
    down.state
        .idp_admin
        .create(
            &portcullis::ops::Caller::operator(),
            portcullis::upstream::ProviderInput {
                id: Some("github".into()),
                kind: Some("github".into()),
                display_name: Some("GitHub".into()),
                client_id: Some("Iv1.8a61f9b3a7aba766".into()),
                client_secret: Some(secrecy::SecretString::from("github client secret value")),
                allow_signup: Some(true),
                auth_base_url: Some(base.into()),
                api_base_url: Some(base.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn github_signs_in_with_the_primary_verified_address() {
    let (base, gh, _stop) = github(true).await;
    let down = spawn_app().await;
    down.code_app().await;
    with_github(&down, &base).await;
    let before = users(&down).await;
    let (page, _) = round_trip(&down, "github").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(users(&down).await, before + 1);
    let identity = entities::user_identities::Entity::find()
        .one(&down.state.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(identity.provider_id, "github");
    assert_eq!(
        identity.subject, "583231",
        "GitHub's numeric id, not the login"
    );
    let user = down.state.users.get(&identity.user_id).await.unwrap();
    assert_eq!(user.email, "octocat@github.com");
    assert!(user.email_verified);
    assert_eq!(user.username, "octocat");
    assert!(
        gh.seen_code_verifier.lock().unwrap().is_some(),
        "PKCE verifier sent"
    );
}

#[tokio::test]
async fn github_without_a_verified_primary_address_creates_nothing() {
    let (base, _gh, _stop) = github(false).await;
    let down = spawn_app().await;
    down.code_app().await;
    with_github(&down, &base).await;
    let before = users(&down).await;
    let (page, _) = round_trip(&down, "github").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(users(&down).await, before);
}
