//! `spawn_app()` and request helpers shared by the test modules.

use std::path::PathBuf;
use std::sync::Arc;

use portcullis::clients::{GrantType, NewClient};
use portcullis::clock::ManualClock;
use portcullis::config::{DurationSetting, RawSettings};
use portcullis::domain::{ClientId, Scope};
use portcullis::state::{AppState, BuildOptions};
use reqwest::{Response, StatusCode};
use sea_orm::{ConnectionTrait, Database};
use serde_json::Value;

pub const PASSWORD: &str = "correct horse battery staple";
pub const SPA: &str = "portcullis-spa";
/// The redirect URI of [`TestApp::code_app`] (nothing listens there).
pub const CODE_APP_CB: &str = "http://127.0.0.1:9/cb";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub clock: ManualClock,
    pub dir: PathBuf,
    /// What this instance was started with, so a peer can share its database and store.
    pub raw: RawSettings,
    pub store_prefix: String,
    /// The scratch folders this instance uses: its own, and for a peer also the first
    /// instance's (where the SQLite file and the keys live), so neither goes while in use.
    scratch: Vec<Arc<Scratch>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// A temporary folder, removed when the last instance using it is dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database on the server of PORTCULLIS_TEST_DATABASE_URL.
pub async fn fresh_postgres(base_url: &str) -> String {
    let name = format!("portcullis_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(base_url)
        .await
        .expect("connect to PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (prefix, _) = base_url.rsplit_once('/').expect("database URL has a path");
    format!("{prefix}/{name}")
}

pub fn test_settings(dir: &std::path::Path) -> RawSettings {
    RawSettings {
        bcrypt_cost: 4,
        keys_dir: dir.join("keys"),
        mail_dir: dir.join("mail"),
        seed_public_client: Some(true),
        database_url: Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join("portcullis.db").display()
        )),
        redis_url: std::env::var("PORTCULLIS_TEST_REDIS_URL").ok(),
        log: "warn".into(),
        // The suite drives many requests from one address; abuse tests turn limits on.
        rate_limit_enabled: false,
        ..RawSettings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the server with settings adjusted by `adjust`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut RawSettings)) -> TestApp {
    let dir = std::env::temp_dir().join(format!("portcullis-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut raw = test_settings(&dir);
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_DATABASE_URL") {
        raw.database_url = Some(fresh_postgres(&url).await);
    }
    adjust(&mut raw);
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    start(raw, prefix, vec![Arc::new(Scratch(dir))], None).await
}

impl TestApp {
    /// A second instance on the same database, master key and store (a peer behind the same
    /// load balancer). Only with Redis do the instances share rate counters and locks.
    pub async fn spawn_peer(&self) -> TestApp {
        self.spawn_peer_with(|_| {}).await
    }

    /// A peer whose settings differ from this instance's by `adjust`.
    pub async fn spawn_peer_with(&self, adjust: impl FnOnce(&mut RawSettings)) -> TestApp {
        let dir = std::env::temp_dir().join(format!("portcullis-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut scratch = vec![Arc::new(Scratch(dir))];
        scratch.extend(self.scratch.iter().cloned());
        let mut raw = self.raw.clone();
        adjust(&mut raw);
        start(raw, self.store_prefix.clone(), scratch, Some(&self.base)).await
    }
}

/// Starts an instance; its issuer is its own address, or `issuer` (the first instance's, as
/// if both sat behind one load balancer) for a peer.
async fn start(
    mut raw: RawSettings,
    store_prefix: String,
    scratch: Vec<Arc<Scratch>>,
    issuer: Option<&str>,
) -> TestApp {
    let dir = scratch[0].0.clone();
    portcullis::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let scheme = if raw.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{addr}");
    // The instance's own address, unless a test chose a public-looking issuer.
    if raw.issuer == RawSettings::default().issuer {
        raw.issuer = issuer.unwrap_or(&base).to_string();
    }
    let kept = raw.clone();
    let settings = raw.validate().expect("valid test settings");
    let clock = ManualClock::new();
    let state = AppState::build(
        settings,
        BuildOptions {
            clock: Arc::new(clock.clone()),
            store_prefix: store_prefix.clone(),
            fall_back_to_memory: false,
        },
    )
    .await
    .expect("app state");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    tokio::spawn(async move {
        let _ = portcullis::serve_on(listener, serving, async {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        base,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        clock,
        dir,
        raw: kept,
        store_prefix,
        scratch,
        _shutdown: tx,
    }
}

/// A token response or error, with status and headers kept.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn from(resp: Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn str(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("`{key}` missing in {}", self.body))
            .to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }

    /// Asserts an RFC 6749 §5.2 error with this status and code.
    #[track_caller]
    pub fn assert_oauth_error(&self, status: u16, error: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"], error, "body: {}", self.body);
        assert!(
            self.body["error_description"].is_string(),
            "error_description missing: {}",
            self.body
        );
        assert_eq!(self.header("cache-control").as_deref(), Some("no-store"));
    }
}

pub struct Confidential {
    pub id: String,
    pub secret: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        Answer::from(
            self.http
                .post(self.url(path))
                .form(form)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post_form_basic(
        &self,
        path: &str,
        client: &Confidential,
        form: &[(&str, &str)],
    ) -> Answer {
        Answer::from(
            self.http
                .post(self.url(path))
                .basic_auth(&client.id, Some(&client.secret))
                .form(form)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Answer {
        Answer::from(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn register(&self, username: &str) -> Answer {
        Answer::from(
            self.http
                .post(self.url("/api/v1/users"))
                .json(&serde_json::json!({
                    "username": username,
                    "email": format!("{username}@example.com"),
                    "password": PASSWORD,
                }))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Registers `username` and signs in with the public client; returns the token answer.
    pub async fn sign_in(&self, username: &str, scope: &str) -> Answer {
        let reg = self.register(username).await;
        assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
        self.password_grant(username, scope).await
    }

    pub async fn password_grant(&self, username: &str, scope: &str) -> Answer {
        self.password_grant_as(username, PASSWORD, scope).await
    }

    /// A password grant by the SPA client with `password` instead of the test password.
    pub async fn password_grant_as(&self, username: &str, password: &str, scope: &str) -> Answer {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("client_id", SPA),
                ("scope", scope),
            ],
        )
        .await
    }

    /// A first-party public code-flow client `app` (authorization code and refresh), with
    /// `openid profile email`, redirecting to [`CODE_APP_CB`].
    pub async fn code_app(&self) {
        use portcullis::clients::{GrantType, NewClient};
        use portcullis::domain::{ClientId, Scope};
        self.state
            .clients
            .create(NewClient {
                client_id: ClientId::parse("app").unwrap(),
                name: "The app".into(),
                secret: None,
                grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
                scopes: Scope::parse("openid profile email").unwrap(),
                default_scopes: None,
                audiences: vec![],
                redirect_uris: vec![CODE_APP_CB.into()],
                post_logout_redirect_uris: vec![],
                first_party: true,
            })
            .await
            .unwrap();
    }

    /// A refresh by the public client `client_id`.
    pub async fn refresh_with(&self, client_id: &str, refresh_token: &str) -> Answer {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
            ],
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        self.post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", SPA),
            ],
        )
        .await
    }

    /// Registers a confidential client with a generated secret; its default scopes are its
    /// non-administrative scopes.
    pub async fn confidential_client(
        &self,
        id: &str,
        grants: &[GrantType],
        scopes: &str,
    ) -> Confidential {
        let created = self
            .state
            .clients
            .create(NewClient {
                client_id: ClientId::parse(id).unwrap(),
                name: id.into(),
                secret: Some(None),
                grant_types: grants.to_vec(),
                scopes: Scope::parse(scopes).unwrap(),
                // As an operator would: the non-administrative scopes are the defaults.
                default_scopes: Some(Scope::from_tokens(
                    Scope::parse(scopes)
                        .unwrap()
                        .iter()
                        .filter(|s| !portcullis::oauth::scope::is_administrative(s)),
                )),
                audiences: vec![],
                redirect_uris: vec![],
                post_logout_redirect_uris: Vec::new(),
                first_party: false,
            })
            .await
            .expect("create client");
        Confidential {
            id: id.into(),
            secret: created.client_secret.expect("generated secret"),
        }
    }

    /// A resource-server style client allowed to introspect.
    pub async fn resource_server(&self) -> Confidential {
        self.confidential_client(
            "resource-server",
            &[GrantType::ClientCredentials],
            "articles:read",
        )
        .await
    }

    pub async fn introspect(&self, rs: &Confidential, token: &str) -> Answer {
        self.post_form_basic("/oauth/introspect", rs, &[("token", token)])
            .await
    }
}

/// Registers `username` with `roles`; returns the user id.
pub async fn user_with_roles(app: &TestApp, username: &str, roles: &[&str]) -> String {
    let reg = app.register(username).await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let id = reg.str("id");
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    app.state.users.set_roles(&id, &roles).await.unwrap();
    id
}

/// Shortens access tokens to make expiry tests readable.
pub fn short_tokens(raw: &mut RawSettings) {
    raw.access_token_ttl = DurationSetting::Seconds(60);
    raw.refresh_token_ttl = DurationSetting::Seconds(600);
}

/// Decodes a JWT part without verifying (tests inspect what the server produced).
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A free loopback port (for servers started as separate processes).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The kids published in the JWKS at `base`.
pub async fn published_kids(http: &reqwest::Client, base: &str) -> Vec<String> {
    let jwks: Value = http
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}
