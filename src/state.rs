//! Application state: every service, built once at start from validated settings and passed to
//! handlers through poem `Data` (no global state).

use std::path::Path;
use std::sync::Arc;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::articles::ArticleService;
use crate::audit::Audit;
use crate::clients::ClientService;
use crate::clock::SharedClock;
use crate::config::{MasterKeySource, Settings, decode_master_key};
use crate::crypto::{MasterKey, random_bytes};
use crate::keys::{KeyRing, KeyService};
use crate::oauth::refresh::RefreshService;
use crate::oauth::scope::all_scopes;
use crate::oauth::tokens::TokenService;
use crate::store::{MemoryStore, RedisStore, Store};
use crate::users::{PasswordHasher, UserService};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database (PORTCULLIS_DATABASE_URL): {0}")]
    Database(#[source] sea_orm::DbErr),
    #[error("database migration failed: {0}")]
    Migration(#[source] sea_orm::DbErr),
    #[error("cannot connect to Redis (PORTCULLIS_REDIS_URL): {0}")]
    Store(#[source] crate::store::StoreError),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("seeding the public client: {0}")]
    Seed(#[from] crate::clients::ClientError),
    #[error("password hashing: {0}")]
    Hash(#[from] crate::users::HashError),
    #[error("{0}")]
    Io(String),
}

/// Everything a request handler may need.
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
    pub limits: crate::abuse::RateLimiter,
    pub lockout: crate::abuse::Lockout,
    pub articles: ArticleService,
    pub roles: crate::rbac::RoleService,
    /// Recording and ending sign-ins (every user token belongs to one).
    pub sign_ins: crate::signins::SignIns,
    /// This instance's name as a holder of the background-duty lease (`pid<pid>-<random>`).
    pub instance: Arc<str>,
}

/// Opens the database (creating the SQLite file and its folder when needed) and runs pending
/// migrations.
pub async fn open_database(url: &str) -> Result<DatabaseConnection, StartError> {
    if let Some(path) = sqlite_path(url)
        && let Some(dir) = Path::new(&path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StartError::Io(format!(
                "cannot create database folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(if url.starts_with("sqlite:") { 8 } else { 32 })
        .min_connections(1)
        .connect_timeout(std::time::Duration::from_secs(10))
        .sqlx_logging(false);
    let db = Database::connect(options)
        .await
        .map_err(StartError::Database)?;
    if url.starts_with("sqlite:") {
        // WAL lets readers proceed during a write; the busy timeout queues writers instead of
        // failing them; foreign keys are off by default in SQLite.
        use sea_orm::ConnectionTrait;
        for pragma in [
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=10000",
        ] {
            db.execute_unprepared(pragma)
                .await
                .map_err(StartError::Database)?;
        }
    }
    Migrator::up(&db, None)
        .await
        .map_err(StartError::Migration)?;
    Ok(db)
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Reads the master key from the setting, or from `<keys_dir>/master.key`, generating that
/// file (mode 0600) on first run.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    let bytes = match &settings.master_key {
        MasterKeySource::Given(text) => decode_master_key(text.expose_secret())
            .map_err(|e| StartError::MasterKey(e.to_string()))?,
        MasterKeySource::File(path) => read_or_create_key_file(path)?,
    };
    MasterKey::from_bytes(&bytes).map_err(|e| StartError::MasterKey(e.to_string()))
}

fn read_or_create_key_file(path: &Path) -> Result<[u8; 32], StartError> {
    use base64::Engine as _;
    let fail = |what: &str, e: std::io::Error| {
        StartError::MasterKey(format!("cannot {what} {}: {e}", path.display()))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => decode_master_key(&text)
            .map_err(|e| StartError::MasterKey(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
            }
            let key = random_bytes::<32>().map_err(|e| StartError::MasterKey(e.to_string()))?;
            let text = base64::engine::general_purpose::STANDARD.encode(key);
            write_private(path, &text).map_err(|e| fail("write", e))?;
            tracing::warn!(path = %path.display(), "generated a new master key; back it up: without it the signing keys cannot be read");
            Ok(key)
        }
        Err(e) => Err(fail("read", e)),
    }
}

/// Creates `path` with mode 0600 (owner only) and writes `text`; refuses to overwrite.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Options for building the state that tests (and only tests) change.
pub struct BuildOptions {
    pub clock: SharedClock,
    /// Prefix of every Redis key (tests use a fresh one per test).
    pub store_prefix: String,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(crate::clock::SystemClock),
            store_prefix: "portcullis:".into(),
        }
    }
}

fn instance_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("pid{}-{}", std::process::id(), id.get(..12).unwrap_or(&id))
}

/// The configured store: Redis when `PORTCULLIS_REDIS_URL` is set, else in-process.
pub async fn open_store(settings: &Settings, prefix: &str) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &settings.redis_url {
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
        } = options;
        let db = open_database(&settings.database_url).await?;
        let store = open_store(&settings, &store_prefix).await?;
        let master = Arc::new(load_master_key(&settings)?);
        let ring = KeyRing::default();
        let keys = KeyService::new(
            db.clone(),
            master,
            clock.clone(),
            ring.clone(),
            settings.keys,
        );
        keys.bootstrap().await?;
        let hasher = PasswordHasher::new(
            settings.bcrypt_cost,
            settings.bcrypt_max_concurrency,
            settings.abuse.bcrypt_max_queue,
        )
        .await?;
        let abuse = Arc::new(settings.abuse.clone());
        let clients = ClientService::new(db.clone(), clock.clone());
        if settings.seed_public_client {
            clients.seed_public_client(&all_scopes()).await?;
        }
        let tokens = TokenService::new(
            settings.issuer.clone(),
            settings.audience.clone(),
            settings.access_token_ttl,
            ring,
            store.clone(),
            clock.clone(),
        );
        let refresh = RefreshService::new(
            db.clone(),
            clock.clone(),
            settings.refresh_token_ttl,
            settings.refresh_reuse_interval,
            settings.access_token_ttl,
        );
        let state = Self {
            users: UserService::new(db.clone(), hasher, clock.clone()),
            sign_ins: crate::signins::SignIns::new(refresh.clone(), tokens.clone(), clock.clone()),
            refresh,
            audit: Audit::new(db.clone(), clock.clone()),
            limits: crate::abuse::RateLimiter::new(abuse.clone(), store.clone()),
            lockout: crate::abuse::Lockout::new(abuse, store.clone()),
            articles: ArticleService::new(db.clone(), clock.clone()),
            roles: crate::rbac::RoleService::new(db.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://data/portcullis.db?mode=rwc").as_deref(),
            Some("data/portcullis.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x/y"), None);
    }

    #[test]
    fn key_file_is_created_private_and_reread() {
        let dir = std::env::temp_dir().join(format!("portcullis-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        let first = read_or_create_key_file(&path).unwrap();
        assert_eq!(read_or_create_key_file(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
