//! Wiring: every service and use case, built once at start from validated settings (no global
//! state). The HTTP front end hands each operation only what it uses (`http::app`); the command
//! line calls the use cases; the background duties and the tests reach the services.

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;

use crate::abuse::{Lockout, RateLimiter};
use crate::articles::ArticleService;
use crate::audit::Audit;
use crate::clients::ClientService;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::db::open_database;
use crate::keys::{KeyRing, KeyService, load_master_key};
use crate::metrics::store::ObservedStore;
use crate::oauth::grants::Grants;
use crate::oauth::refresh::RefreshService;
use crate::oauth::scope::all_scopes;
use crate::oauth::tokens::TokenService;
use crate::ops::{Accounts, ClientAdmin, KeyAdmin, Readiness, TokenOps};
use crate::rbac::{AuthorityService, RoleService};
use crate::signins::SignIns;
use crate::store::{CallCount, MemoryStore, RedisStore, Store};
use crate::users::{PasswordHasher, UserService};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] crate::db::DbError),
    #[error("cannot connect to Redis (PORTCULLIS_REDIS_URL): {0}")]
    Store(#[source] crate::store::StoreError),
    #[error("master key: {0}")]
    MasterKey(#[from] crate::keys::MasterKeyError),
    #[error("deriving a key: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("seeding the public client: {0}")]
    Seed(#[from] crate::clients::ClientError),
    #[error("password hashing: {0}")]
    Hash(#[from] crate::users::HashError),
    #[error("outgoing mail (PORTCULLIS_SMTP_URL): {0}")]
    Mail(#[from] crate::mail::MailError),
    #[error("{0}")]
    Io(String),
}

/// The services and use cases of one instance.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DatabaseConnection,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub keys: KeyService,
    pub users: UserService,
    pub clients: ClientService,
    pub tokens: TokenService,
    pub refresh: RefreshService,
    pub audit: Audit,
    pub limits: RateLimiter,
    pub lockout: Lockout,
    pub articles: ArticleService,
    pub roles: RoleService,
    /// Recording and ending sign-ins (every user token belongs to one).
    pub sign_ins: SignIns,
    /// Statements sent to the database and calls made to the store: round trips, which
    /// tests count (docs/ARCHITECTURE.md, "Round trips").
    pub db_statements: crate::db::StatementCount,
    pub store_calls: CallCount,
    /// This instance's name as a holder of the background-duty lease (`pid<pid>-<random>`).
    pub instance: Arc<str>,
    /// Whether the store is the shared Redis (false: in-process, also when Redis could not be
    /// reached and [`BuildOptions::fall_back_to_memory`] allowed going on without it).
    pub store_is_shared: bool,
    /// What the bearer of a token holds now (the administrative guard).
    pub authorities: crate::rbac::AuthorityService,
    // The use cases.
    pub token_ops: crate::ops::TokenOps,
    pub accounts: crate::ops::Accounts,
    pub client_admin: crate::ops::ClientAdmin,
    pub key_admin: crate::ops::KeyAdmin,
    pub readiness: crate::ops::Readiness,
    pub browser: crate::ops::BrowserSignIn,
    pub session_ops: crate::ops::SessionOps,
    pub mfa_ops: crate::ops::MfaOps,
    /// Second factors (TOTP secrets sealed under the master key, recovery codes, pending
    /// second steps).
    pub mfa: crate::mfa::MfaService,
    /// Authorization codes (purged by the background duties).
    pub codes: crate::oauth::authorize::Codes,
    /// The key of the hosted pages' CSRF tokens, derived from the master key (the same on
    /// every instance).
    pub csrf_key: Arc<ring::hmac::Key>,
    /// Outgoing e-mail: use cases enqueue in their transaction (see [`crate::mail`]).
    pub outbox: crate::mail::Outbox,
    /// Sends the outbox (run by the background duties' lease holder).
    pub mail_sender: crate::mail::Sender,
    /// Registration with verification, password reset, credential changes.
    pub recovery: crate::ops::Recovery,
    /// The security alert rules (they watch the audit log) and their webhooks.
    pub alerts: crate::alerts::Alerts,
    /// Alert webhook administration.
    pub webhook_admin: crate::ops::WebhookAdmin,
    /// Upstream identity providers: administration, and signing in through them.
    pub idp_admin: crate::ops::IdpAdmin,
    pub upstream_sign_in: crate::ops::UpstreamSignIn,
    /// Upstream round trips (purged by the duties).
    pub upstreams: crate::upstream::Upstreams,
    /// Renders the process's metrics (`GET /metrics`; see [`crate::metrics`]).
    pub metrics: crate::metrics::Exporter,
}

/// Options for building the state.
pub struct BuildOptions {
    pub clock: SharedClock,
    /// Prefix of every Redis key (tests use a fresh one per test).
    pub store_prefix: String,
    /// When Redis cannot be reached, go on with an in-process store (with a warning) instead
    /// of failing: for command-line work whose truth is the database (e.g. revoking a key).
    pub fall_back_to_memory: bool,
}

impl BuildOptions {
    /// What a command run against `settings` uses: the system clock and the configured prefix.
    pub fn for_settings(settings: &Settings) -> Self {
        Self {
            store_prefix: settings.store.redis_prefix.clone(),
            ..Self::default()
        }
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(crate::clock::SystemClock),
            store_prefix: "portcullis:".into(),
            fall_back_to_memory: false,
        }
    }
}

fn instance_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("pid{}-{}", std::process::id(), id.get(..12).unwrap_or(&id))
}

/// The configured store: Redis when `PORTCULLIS_REDIS_URL` is set, else in-process.
pub async fn open_store(settings: &Settings, prefix: &str) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &settings.store.redis_url {
        Some(url) => Arc::new(
            RedisStore::connect(url.expose_secret(), prefix)
                .await
                .map_err(StartError::Store)?,
        ),
        None => Arc::new(MemoryStore::new()),
    })
}

impl AppState {
    /// Opens storage, runs migrations, loads or creates keys, seeds the public client.
    pub async fn build(settings: Settings, options: BuildOptions) -> Result<Self, StartError> {
        let BuildOptions {
            clock,
            store_prefix,
            fall_back_to_memory,
        } = options;
        // The master key first: a key that cannot be used stops the start before a database
        // (or a store connection) is made for nothing.
        let master = Arc::new(load_master_key(&settings.keys)?);
        let metrics = crate::metrics::install();
        let mut db = open_database(&settings.database.url).await?;
        let db_statements = crate::db::StatementCount::install(&mut db);
        let warm = crate::db::WarmPool::new(&db, db_statements.clone())
            .map_err(|e| StartError::Database(crate::db::DbError::Open(e)))?;
        let (store, store_is_shared) = match open_store(&settings, &store_prefix).await {
            Ok(store) => (store, settings.store.redis_url.is_some()),
            Err(e) if fall_back_to_memory => {
                tracing::warn!(error = %e, "going on with an in-process store");
                (Arc::new(MemoryStore::new()) as Arc<dyn Store>, false)
            }
            Err(e) => return Err(e),
        };
        // Every call counted; Redis's timed too (`metrics::store`).
        let (store, store_calls) = ObservedStore::new(store, store_is_shared);
        let store: Arc<dyn Store> = Arc::new(store);
        let csrf_key = Arc::new(master.hmac_key(b"portcullis csrf v1")?);
        let ring = KeyRing::default();
        let keys = KeyService::new(
            db.clone(),
            master.clone(),
            clock.clone(),
            ring.clone(),
            settings.keys.timing,
        );
        keys.bootstrap().await?;
        let hasher = PasswordHasher::new(
            settings.passwords.bcrypt_cost,
            settings.passwords.max_concurrency,
            settings.passwords.max_queue,
        )
        .await?;
        let abuse = Arc::new(settings.abuse.clone());
        let clients = ClientService::new(db.clone(), clock.clone());
        if settings.database.seed_public_client {
            let swagger_redirect = format!(
                "{}{}",
                settings.server.issuer.trim_end_matches('/'),
                crate::clients::SWAGGER_UI_REDIRECT_PATH
            );
            clients
                .seed_public_client(&all_scopes(), &swagger_redirect)
                .await?;
        }
        let tokens = TokenService::new(
            settings.server.issuer.clone(),
            settings.tokens.audience.clone(),
            settings.tokens.access_token_ttl,
            ring,
            store.clone(),
            clock.clone(),
        );
        let refresh = RefreshService::new(
            db.clone(),
            warm.clone(),
            clock.clone(),
            settings.tokens.refresh_token_ttl,
            settings.tokens.refresh_reuse_interval,
            settings.tokens.access_token_ttl,
        );
        let users = UserService::new(db.clone(), warm.clone(), hasher, clock.clone());
        let outbox = crate::mail::Outbox::new(db.clone(), clock.clone());
        let mfa = crate::mfa::MfaService::new(
            db.clone(),
            master.clone(),
            clock.clone(),
            &settings.server.issuer,
            users.clone(),
            outbox.clone(),
        );
        let sign_ins = SignIns::new(db.clone(), refresh.clone(), tokens.clone(), clock.clone());
        let audit = Audit::new(db.clone(), warm.clone(), clock.clone());
        let alerts = crate::alerts::Alerts::new(
            db.clone(),
            store.clone(),
            clock.clone(),
            audit.clone(),
            crate::webhooks::Webhooks::new(
                db.clone(),
                clock.clone(),
                master.clone(),
                settings.alerts.webhook_allow_private,
            ),
            outbox.clone(),
            settings.alerts.clone(),
            settings.server.issuer.clone(),
        );
        audit.observe_with(Arc::new(alerts.watcher()));
        let limits = RateLimiter::new(abuse.clone(), store.clone());
        let lockout = Lockout::new(abuse, store.clone());
        let role_cache = crate::rbac::RoleCache::new(
            db.clone(),
            clock.clone(),
            settings.keys.timing.reload_interval,
        );
        let roles = RoleService::new(db.clone(), role_cache.clone());
        let codes = crate::oauth::authorize::Codes::new(warm.clone(), clock.clone());
        let grants = Grants {
            tokens: tokens.clone(),
            refresh: refresh.clone(),
            users: users.clone(),
            sign_ins: sign_ins.clone(),
            lockout: lockout.clone(),
            limits: limits.clone(),
            audit: audit.clone(),
            codes: codes.clone(),
            require_verified_email: settings.accounts.require_verified_email,
            mfa: mfa.clone(),
            roles: role_cache,
        };

        let mfa_ops = crate::ops::MfaOps::new(
            users.clone(),
            mfa.clone(),
            grants.clone(),
            limits.clone(),
            audit.clone(),
        );
        let sessions = crate::sessions::Sessions::new(
            warm.clone(),
            sign_ins.clone(),
            clock.clone(),
            &settings.sessions,
        );
        let consents = crate::oauth::authorize::Consents::new(db.clone(), clock.clone());
        let browser = crate::ops::BrowserSignIn::new(
            clients.clone(),
            grants.clone(),
            sessions,
            codes.clone(),
            consents.clone(),
            tokens.clone(),
            limits.clone(),
            audit.clone(),
        );
        let upstreams = crate::upstream::Upstreams::new(db.clone(), clock.clone(), master.clone());
        let recovery = crate::ops::Recovery::new(
            db.clone(),
            users.clone(),
            sign_ins.clone(),
            outbox.clone(),
            limits.clone(),
            audit.clone(),
            clock.clone(),
            settings.server.issuer.clone(),
            settings.accounts.require_verified_email,
        );
        let upstream_sign_in = crate::ops::UpstreamSignIn::new(
            upstreams.clone(),
            users.clone(),
            browser.clone(),
            audit.clone(),
            db.clone(),
            settings.server.issuer.clone(),
            recovery.clone(),
        );
        let session_ops =
            crate::ops::SessionOps::new(sign_ins.clone(), consents, users.clone(), audit.clone());
        let state = Self {
            authorities: AuthorityService::new(users.clone(), clients.clone()),
            token_ops: TokenOps::new(
                clients.clone(),
                limits.clone(),
                grants,
                tokens.clone(),
                refresh.clone(),
                sign_ins.clone(),
                users.clone(),
                audit.clone(),
            )
            .with_client_labels(settings.observability.metrics_client_labels),
            accounts: Accounts::new(
                users.clone(),
                roles.clone(),
                sign_ins.clone(),
                lockout.clone(),
                audit.clone(),
            ),
            client_admin: ClientAdmin::new(clients.clone(), audit.clone()),
            key_admin: KeyAdmin::new(keys.clone(), store.clone(), audit.clone()),
            readiness: Readiness::new(db.clone(), store.clone()),
            browser,
            session_ops,
            mfa_ops,
            mfa,
            codes,
            csrf_key,
            mail_sender: crate::mail::Sender::new(db.clone(), clock.clone(), &settings.mail)?,
            outbox,
            recovery,
            webhook_admin: crate::ops::WebhookAdmin::new(alerts.clone(), audit.clone()),
            idp_admin: crate::ops::IdpAdmin::new(upstreams.clone(), audit.clone()),
            upstream_sign_in,
            upstreams,
            alerts,
            store_is_shared,
            metrics,
            db_statements,
            store_calls,
            users,
            sign_ins,
            refresh,
            audit,
            limits,
            lockout,
            articles: ArticleService::new(db.clone(), clock.clone()),
            roles,
            instance: instance_name().into(),
            settings: Arc::new(settings),
            db,
            store,
            clock,
            keys,
            clients,
            tokens,
        };
        // Sign-ins ended while this instance was down (or by the command line) whose tokens
        // may still live are refused from the first request on.
        let lifetime = state
            .tokens
            .access_ttl_secs()
            .saturating_add(crate::oauth::tokens::LEEWAY);
        state
            .sign_ins
            .sync(state.clock.now().saturating_sub(lifetime))
            .await
            .map_err(|e| StartError::Io(format!("cannot read ended sign-ins: {e}")))?;
        Ok(state)
    }
}
