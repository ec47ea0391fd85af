//! A resource server that accepts Portcullis access tokens, knowing nothing about Portcullis but
//! its issuer URL: it reads `jwks_uri` from the discovery document, caches the JWKS, and checks
//! every token locally (RFC 9068 profile, RS256). Answers follow RFC 6750.
//!
//! ```sh
//! cargo run --release                      # Portcullis on 127.0.0.1:8080
//! cargo run --example resource_server      # this service on 127.0.0.1:8081
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8081/api/hello
//! ```
//!
//! Environment: `PORTCULLIS_ISSUER` (default `http://localhost:8080`), `RS_LISTEN`
//! (`127.0.0.1:8081`), `RS_AUDIENCE` (default: the issuer, which is Portcullis's default
//! audience), `RS_REQUIRED_SCOPE` (`articles:read`; several scopes separated by spaces are all
//! required), `RS_JWKS_REFRESH_INTERVAL` (seconds between JWKS fetches at most, `30`),
//! `RS_LOG` (`info`).
//!
//! The parts are reusable and the integration tests drive them against a real Portcullis:
//! [`Verifier`] (discovery, the key cache, token checks), [`RequireScope`] (poem middleware
//! answering 401/403/503) and [`app`] (the routes). `main` only wires the environment to them.
//!
//! The example's HTTP client is the crate's dev-dependency reqwest, built without TLS, so it
//! speaks plain `http://` (fine for a local Portcullis). A real deployment fetches the discovery
//! document and the JWKS over `https://`: enable reqwest's `rustls` feature.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::http::{StatusCode, header};
use poem::web::{Data, Json};
use poem::{
    Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, Route, get, handler,
};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway [`Verifier::new`] accepts.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// At most one JWKS fetch per this interval, whatever triggers it (unknown `kid`, staleness,
/// failures).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Floor and ceiling applied to the JWKS's `Cache-Control: max-age`.
pub const MIN_CACHE_TTL: Duration = Duration::from_secs(60);
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
/// Freshness when the JWKS answer has no `max-age`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The current time in Unix seconds. Tests pass Portcullis's manual clock, so expiry and cache
/// staleness are driven by moving time rather than sleeping.
pub type Now = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The real clock, for [`Now`].
pub fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What the resource server trusts and how it caches.
#[derive(Debug, Clone)]
pub struct Config {
    /// The issuer, exactly as Portcullis's discovery document states it (and tokens' `iss`).
    pub issuer: String,
    /// This resource server's identifier; tokens' `aud` must contain it.
    pub audience: String,
    pub leeway: Duration,
    pub refresh_interval: Duration,
    pub min_cache_ttl: Duration,
    pub max_cache_ttl: Duration,
}

impl Config {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_cache_ttl: MIN_CACHE_TTL,
            max_cache_ttl: MAX_CACHE_TTL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the issuer must be an absolute http(s) URL, got {0:?}")]
    Issuer(String),
    #[error("the audience must not be empty")]
    Audience,
    #[error("the leeway must be at most {} s", MAX_LEEWAY.as_secs())]
    Leeway,
    #[error("the required scope must be one or more scope tokens separated by spaces")]
    Scope,
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why fetching the discovery document or the JWKS failed. Logged, never shown to callers.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected status {0}")]
    Status(u16),
    #[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("malformed document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("discovery names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("discovery names an unusable jwks_uri")]
    JwksUri,
    #[error("the JWKS holds no usable RS256 signing key")]
    NoUsableKeys,
}

/// Why a token was refused. The HTTP answer says no more than "invalid" (or "expired"); the
/// precise reason is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm other than RS256")]
    Algorithm,
    #[error("not an access token (typ)")]
    Type,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    /// The `kid` is not cached and the keys could not be fetched: answered with 503.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims of a Portcullis access token (RFC 9068) this service uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Space-separated granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes().any(|s| s == wanted)
    }
}

/// The JOSE header fields that matter, parsed before any key is looked up.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// RFC 9068 §2.1: `at+jwt`, or the full media type; compared case-insensitively.
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

/// One consistent view of the cached keys and of the fetch bookkeeping.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    etag: Option<String>,
    /// The keys are fresh while `now < fresh_until`.
    fresh_until: i64,
    last_attempt: Option<i64>,
    /// Whether the last attempt got an answer (200 or 304) with usable keys.
    last_ok: bool,
    /// Bumped by every attempt, so requests that waited for a fetch see that one happened.
    generation: u64,
}

/// A successful JWKS answer: new keys (or `None` for 304), its ETag and freshness.
struct Fetched {
    keys: Option<HashMap<String, Arc<DecodingKey>>>,
    etag: Option<String>,
    ttl: Duration,
}

/// Validates Portcullis access tokens against keys from the issuer's JWKS.
pub struct Verifier {
    config: Config,
    validation: Validation,
    http: reqwest::Client,
    now: Now,
    cache: RwLock<Arc<KeyCache>>,
    /// Held while a fetch is in flight, so concurrent refreshes wait for that one (single
    /// flight). Holds the JWKS URL once discovery has found it.
    fetching: tokio::sync::Mutex<Option<String>>,
    jwks_requests: AtomicU64,
    not_modified: AtomicU64,
}

impl Verifier {
    /// Checks the configuration; fetches nothing yet (see [`Verifier::warm_up`]), so the
    /// resource server may start before Portcullis does.
    pub fn new(config: Config, now: Now) -> Result<Self, SetupError> {
        match url::Url::parse(&config.issuer) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ => return Err(SetupError::Issuer(config.issuer)),
        }
        if config.audience.is_empty() {
            return Err(SetupError::Audience);
        }
        if config.leeway > MAX_LEEWAY {
            return Err(SetupError::Leeway);
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Fetches are minutes apart: a pooled connection would only go stale.
            .pool_max_idle_per_host(0)
            .build()?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against `now`, not the system clock jsonwebtoken reads.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Ok(Self {
            config,
            validation,
            http,
            now,
            cache: RwLock::new(Arc::new(KeyCache::default())),
            fetching: tokio::sync::Mutex::new(None),
            jwks_requests: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// JWKS requests sent so far (answered or not, 304s included).
    pub fn fetch_count(&self) -> u64 {
        self.jwks_requests.load(Ordering::SeqCst)
    }

    /// JWKS requests answered 304 Not Modified.
    pub fn not_modified_count(&self) -> u64 {
        self.not_modified.load(Ordering::SeqCst)
    }

    /// Fetches the keys now if no fetch happened within the refresh interval; reports the
    /// outcome of that fetch (`Ok` when none was due).
    pub async fn warm_up(&self) -> Result<(), FetchError> {
        let seen = self.snapshot().generation;
        self.refresh(seen, true).await.unwrap_or(Ok(()))
    }

    /// Checks a bearer token: header (`alg` RS256, `typ` at+jwt, `kid`), signature with the
    /// `kid`'s key, `iss`, `aud`, `exp`, `nbf`. Scope is the caller's business
    /// ([`Claims::has_scope`]).
    pub async fn verify(&self, token: &str) -> Result<Claims, RejectReason> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(RejectReason::Malformed);
        }
        let header = parse_header(token)?;
        if header.alg != "RS256" {
            return Err(RejectReason::Algorithm);
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
            return Err(RejectReason::Malformed);
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(RejectReason::Type);
        }
        let kid = header.kid.ok_or(RejectReason::Malformed)?;
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| reject_reason(&e))?
            .claims;
        let now = (self.now)();
        let leeway = secs(self.config.leeway);
        if now >= claims.exp.saturating_add(leeway) {
            return Err(RejectReason::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(RejectReason::NotYetValid);
        }
        Ok(claims)
    }

    fn snapshot(&self) -> Arc<KeyCache> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn may_fetch(&self, cache: &KeyCache, now: i64) -> bool {
        match cache.last_attempt {
            None => true,
            // A clock that went back must not block fetching for good.
            Some(last) => now < last || now - last >= secs(self.config.refresh_interval),
        }
    }

    /// The key for `kid`, refreshing first when the cache is stale or the `kid` unknown and a
    /// fetch is allowed. An unknown `kid` after a good fetch is refused; with no good fetch to
    /// go by, the keys are unavailable. Stale keys keep working while fetches fail.
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, RejectReason> {
        let now = (self.now)();
        let mut cache = self.snapshot();
        let known = cache.keys.contains_key(kid);
        if (!known || now >= cache.fresh_until) && self.may_fetch(&cache, now) {
            // A request holding its (stale) key does not queue behind a fetch in flight.
            let _ = self.refresh(cache.generation, !known).await;
            cache = self.snapshot();
        }
        match cache.keys.get(kid) {
            Some(key) => Ok(key.clone()),
            None if cache.last_ok => Err(RejectReason::UnknownKey),
            None => Err(RejectReason::KeysUnavailable),
        }
    }

    /// Single-flight, rate-limited refresh. `seen` is the cache generation the caller looked
    /// at; if another fetch completed meanwhile, this one is skipped (`None`). With `wait`
    /// false, a fetch already in flight is not waited for (`None`).
    async fn refresh(&self, seen: u64, wait: bool) -> Option<Result<(), FetchError>> {
        let mut jwks_uri = if wait {
            self.fetching.lock().await
        } else {
            self.fetching.try_lock().ok()?
        };
        let cache = self.snapshot();
        let now = (self.now)();
        if cache.generation != seen || !self.may_fetch(&cache, now) {
            return None;
        }
        let outcome = self.fetch(&mut jwks_uri, &cache, now).await;
        let next = match &outcome {
            Ok(fetched) => KeyCache {
                keys: fetched.keys.clone().unwrap_or_else(|| cache.keys.clone()),
                etag: fetched.etag.clone(),
                fresh_until: now.saturating_add(secs(fetched.ttl)),
                last_attempt: Some(now),
                last_ok: true,
                generation: cache.generation.wrapping_add(1),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the JWKS; keeping the cached keys");
                KeyCache {
                    keys: cache.keys.clone(),
                    etag: cache.etag.clone(),
                    fresh_until: cache.fresh_until,
                    last_attempt: Some(now),
                    last_ok: false,
                    generation: cache.generation.wrapping_add(1),
                }
            }
        };
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Some(outcome.map(|_| ()))
    }

    async fn fetch(
        &self,
        jwks_uri: &mut Option<String>,
        cache: &KeyCache,
        now: i64,
    ) -> Result<Fetched, FetchError> {
        let uri = match jwks_uri.as_ref() {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                *jwks_uri = Some(uri.clone());
                uri
            }
        };
        self.jwks_requests.fetch_add(1, Ordering::SeqCst);
        let mut request = self.http.get(&uri);
        if let Some(etag) = cache.etag.as_ref().filter(|_| !cache.keys.is_empty()) {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        let ttl = self.cache_ttl(response.headers().get(reqwest::header::CACHE_CONTROL));
        match response.status() {
            reqwest::StatusCode::NOT_MODIFIED if !cache.keys.is_empty() => {
                self.not_modified.fetch_add(1, Ordering::SeqCst);
                Ok(Fetched {
                    keys: None,
                    etag: cache.etag.clone(),
                    ttl,
                })
            }
            reqwest::StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let keys = parse_jwks(&read_capped(response).await?)?;
                tracing::info!(keys = keys.len(), at = now, "fetched the JWKS");
                Ok(Fetched {
                    keys: Some(keys),
                    etag,
                    ttl,
                })
            }
            status => Err(FetchError::Status(status.as_u16())),
        }
    }

    /// Reads `jwks_uri` from the discovery document, whose `issuer` must be ours exactly
    /// (OpenID Connect Discovery §4.3).
    async fn discover(&self) -> Result<String, FetchError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let response = self.http.get(&url).send().await?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let doc: Discovery = serde_json::from_slice(&read_capped(response).await?)?;
        if doc.issuer != self.config.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: doc.issuer,
            });
        }
        match url::Url::parse(&doc.jwks_uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(doc.jwks_uri),
            _ => Err(FetchError::JwksUri),
        }
    }

    /// `max-age` of a `Cache-Control` value, between the floor and the ceiling.
    fn cache_ttl(&self, value: Option<&reqwest::header::HeaderValue>) -> Duration {
        let mut ttl = DEFAULT_CACHE_TTL;
        for directive in value.and_then(|v| v.to_str().ok()).unwrap_or("").split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                ttl = Duration::ZERO;
                break;
            }
            if let Some((name, value)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(seconds) = value.trim().trim_matches('"').parse::<u64>()
            {
                ttl = Duration::from_secs(seconds);
            }
        }
        ttl.clamp(
            self.config.min_cache_ttl,
            self.config.max_cache_ttl.max(self.config.min_cache_ttl),
        )
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn parse_header(token: &str) -> Result<JoseHeader, RejectReason> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RejectReason::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| RejectReason::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| RejectReason::Malformed)
}

fn reject_reason(e: &jsonwebtoken::errors::Error) -> RejectReason {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => RejectReason::Signature,
        ErrorKind::InvalidAlgorithm => RejectReason::Algorithm,
        ErrorKind::InvalidIssuer => RejectReason::Issuer,
        ErrorKind::InvalidAudience => RejectReason::Audience,
        ErrorKind::ExpiredSignature => RejectReason::Expired,
        ErrorKind::ImmatureSignature => RejectReason::NotYetValid,
        _ => RejectReason::Malformed,
    }
}

/// Reads a response body of at most [`MAX_DOCUMENT_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The RS256 signing keys of a JWKS by `kid`; keys of other types or uses are skipped, so one
/// odd entry cannot make the whole set unusable.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, FetchError> {
    #[derive(Deserialize)]
    struct JwkSet {
        keys: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct RsaJwk {
        kty: String,
        kid: Option<String>,
        #[serde(rename = "use")]
        use_: Option<String>,
        alg: Option<String>,
        n: Option<String>,
        e: Option<String>,
    }
    let set: JwkSet = serde_json::from_slice(body)?;
    let keys: HashMap<_, _> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<RsaJwk>(value).ok())
        .filter(|k| k.kty == "RSA")
        .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == "RS256"))
        .filter_map(|k| {
            let key = DecodingKey::from_rsa_components(k.n.as_deref()?, k.e.as_deref()?).ok()?;
            Some((k.kid?, Arc::new(key)))
        })
        .collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

/// The scope(s) an endpoint requires: scope tokens (RFC 6749 §3.3) separated by spaces, all
/// required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredScope(Vec<String>);

impl RequiredScope {
    pub fn parse(value: &str) -> Result<Self, SetupError> {
        let scopes: Vec<String> = value.split(' ').map(str::to_string).collect();
        let token_ok = |s: &String| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        };
        if !scopes.iter().all(token_ok) {
            return Err(SetupError::Scope);
        }
        Ok(Self(scopes))
    }

    pub fn as_string(&self) -> String {
        self.0.join(" ")
    }
}

/// poem middleware: a request passes with a valid bearer token carrying the required scope,
/// and the handler finds the token's [`Claims`] as `Data<&Claims>`. Otherwise (RFC 6750 §3):
/// no bearer token → 401 with a plain `Bearer` challenge; a bad token → 401
/// `error="invalid_token"`; a valid token without the scope → 403 `error="insufficient_scope"`;
/// keys unavailable for a `kid` not cached → 503.
pub struct RequireScope {
    verifier: Arc<Verifier>,
    scope: RequiredScope,
}

impl RequireScope {
    pub fn new(verifier: Arc<Verifier>, scope: RequiredScope) -> Self {
        Self { verifier, scope }
    }
}

impl<E: Endpoint> Middleware<E> for RequireScope {
    type Output = RequireScopeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequireScopeEndpoint {
            inner,
            verifier: self.verifier.clone(),
            scope: self.scope.clone(),
        }
    }
}

pub struct RequireScopeEndpoint<E> {
    inner: E,
    verifier: Arc<Verifier>,
    scope: RequiredScope,
}

impl<E: Endpoint> Endpoint for RequireScopeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let (first, second) = (values.next(), values.next());
        if second.is_some() {
            return Ok(bearer_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "More than one Authorization header",
                None,
            ));
        }
        let token = first
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string());
        let Some(token) = token else {
            return Ok(Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Bearer")
                .finish());
        };
        let claims = match self.verifier.verify(&token).await {
            Ok(claims) => claims,
            Err(RejectReason::KeysUnavailable) => {
                tracing::warn!("refused a token: signing keys unavailable");
                return Ok(Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .header(
                        header::RETRY_AFTER,
                        self.verifier.config.refresh_interval.as_secs().max(1),
                    )
                    .content_type("application/json")
                    .body(r#"{"error":"temporarily_unavailable"}"#));
            }
            Err(reason) => {
                tracing::info!(%reason, "refused a bearer token");
                let description = if reason == RejectReason::Expired {
                    "The access token expired"
                } else {
                    "The access token is invalid"
                };
                return Ok(bearer_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    description,
                    None,
                ));
            }
        };
        if !self.scope.0.iter().all(|s| claims.has_scope(s)) {
            return Ok(bearer_error(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The access token lacks the required scope",
                Some(&self.scope.as_string()),
            ));
        }
        req.extensions_mut().insert(claims);
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// An RFC 6750 §3 error: the challenge in `WWW-Authenticate` and the same in a JSON body.
fn bearer_error(
    status: StatusCode,
    error: &str,
    description: &str,
    scope: Option<&str>,
) -> Response {
    let mut challenge = format!(r#"Bearer error="{error}", error_description="{description}""#);
    if let Some(scope) = scope {
        challenge.push_str(&format!(r#", scope="{scope}""#));
    }
    let body = serde_json::json!({"error": error, "error_description": description});
    Response::builder()
        .status(status)
        .header(header::WWW_AUTHENTICATE, challenge)
        .content_type("application/json")
        .body(body.to_string())
}

/// The protected resource: who called, with what.
#[handler]
fn hello(claims: Data<&Claims>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "message": "hello from the resource server",
        "sub": claims.sub,
        "client_id": claims.client_id,
        "scope": claims.scope,
    }))
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// The service: `GET /api/hello` behind [`RequireScope`], `GET /healthz` open.
pub fn app(verifier: Arc<Verifier>, scope: RequiredScope) -> impl Endpoint {
    Route::new()
        .at(
            "/api/hello",
            get(hello).with(RequireScope::new(verifier, scope)),
        )
        .at("/healthz", get(healthz))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resource_server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let issuer = env("PORTCULLIS_ISSUER", "http://localhost:8080");
    let listen = env("RS_LISTEN", "127.0.0.1:8081");
    let audience = env("RS_AUDIENCE", &issuer);
    let scope = RequiredScope::parse(&env("RS_REQUIRED_SCOPE", "articles:read"))
        .context("RS_REQUIRED_SCOPE")?;
    let mut config = Config::new(issuer, audience);
    if let Ok(value) = std::env::var("RS_JWKS_REFRESH_INTERVAL") {
        let seconds = value
            .parse()
            .context("RS_JWKS_REFRESH_INTERVAL must be a number of seconds")?;
        config.refresh_interval = Duration::from_secs(seconds);
    }
    let verifier = Arc::new(Verifier::new(config, Arc::new(system_now)).context("configuration")?);
    if let Err(e) = verifier.warm_up().await {
        tracing::warn!(error = %e, "Portcullis is not reachable yet; keys will be fetched on first use");
    }
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("RS_LISTEN: cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let config = verifier.config();
    println!(
        "resource server listening on http://{addr} (issuer {}, audience {}, scope {:?}); \
         try GET http://{addr}/api/hello with Authorization: Bearer <access token>",
        config.issuer,
        config.audience,
        scope.as_string()
    );
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            app(verifier, scope),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            Some(Duration::from_secs(5)),
        )
        .await?;
    Ok(())
}
