//! Application state: every service, built once at start from validated settings and passed to
//! handlers through poem `Data` (no global state).

use std::path::{Path, PathBuf};
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
/// migrations. A folder it creates is 0700 and the SQLite file 0600 (owner only); SQLite gives
/// the `-wal` and `-shm` files the mode of the database file. An existing database file that
/// group or others may read is used as it is, with a warning.
pub async fn open_database(url: &str) -> Result<DatabaseConnection, StartError> {
    if let Some(file) = sqlite_file(url) {
        if let Some(dir) = file.path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).map_err(|e| {
                StartError::Io(format!(
                    "cannot create database folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
        if file.create {
            create_private_file(&file.path).map_err(|e| {
                StartError::Io(format!(
                    "cannot create database file {}: {e}",
                    file.path.display()
                ))
            })?;
        }
        warn_if_open_to_others(&file.path);
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

/// Where a SQLite URL puts the database file, read as sqlx reads it (the path
/// percent-decoded), and whether the URL lets the file be created (`mode=rwc`).
#[derive(Debug, PartialEq)]
struct SqliteFile {
    path: PathBuf,
    create: bool,
}

fn sqlite_file(url: &str) -> Option<SqliteFile> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let params = || url::form_urlencoded::parse(query.as_bytes());
    if path.is_empty() || path == ":memory:" || params().any(|(k, v)| k == "mode" && v == "memory")
    {
        return None;
    }
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    Some(SqliteFile {
        path: PathBuf::from(path.as_ref()),
        create: params().any(|(k, v)| k == "mode" && v == "rwc"),
    })
}

/// Creates `dir` and its missing parents with mode 0700 (owner only). Existing folders are
/// left as they are: their mode is the operator's choice.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates an empty file at `path` with mode 0600 unless something is there already (an empty
/// file is an empty SQLite database).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Warns about each of the database's files that group or others may read or write.
fn warn_if_open_to_others(db: &Path) {
    #[cfg(unix)]
    for suffix in ["", "-wal", "-shm"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        let path = Path::new(&name);
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o066 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = %format!("{mode:o}"),
                    "the database file can be read or written by group or others; \
                     make it private: chmod 600 {}",
                    path.display()
                );
            }
        }
    }
}

/// Reads the master key from the setting, or from `<keys_dir>/master.key`, generating that
/// file (mode 0600) on first run.
pub fn load_master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    let bytes = match &settings.keys.master_key {
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
    match std::fs::File::open(path) {
        Ok(mut file) => {
            use std::io::Read as _;
            refuse_if_open_to_others(&file, path)?;
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| fail("read", e))?;
            decode_master_key(&text)
                .map_err(|e| StartError::MasterKey(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                create_private_dir(dir).map_err(|e| fail("create the folder of", e))?;
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

/// Refuses a master key file that group or others may read or write: the key unlocks every
/// signing key, and a file others could write could be swapped for a key they know.
fn refuse_if_open_to_others(file: &std::fs::File, path: &Path) -> Result<(), StartError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = file
            .metadata()
            .map_err(|e| StartError::MasterKey(format!("cannot read {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o066 != 0 {
            return Err(StartError::MasterKey(format!(
                "{path} can be read or written by group or others (mode {mode:o}); make it \
                 private to the user running Portcullis with `chmod 600 {path}`, then start \
                 again",
                path = path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
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
        } = options;
        let db = open_database(&settings.database.url).await?;
        let store = open_store(&settings, &store_prefix).await?;
        let master = Arc::new(load_master_key(&settings)?);
        let ring = KeyRing::default();
        let keys = KeyService::new(
            db.clone(),
            master,
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
            clients.seed_public_client(&all_scopes()).await?;
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
            clock.clone(),
            settings.tokens.refresh_token_ttl,
            settings.tokens.refresh_reuse_interval,
            settings.tokens.access_token_ttl,
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
        let file = |path: &str, create| {
            Some(SqliteFile {
                path: PathBuf::from(path),
                create,
            })
        };
        assert_eq!(
            sqlite_file("sqlite://data/portcullis.db?mode=rwc"),
            file("data/portcullis.db", true)
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/my%20db.sqlite?cache=private&mode=rw"),
            file("/var/lib/my db.sqlite", false)
        );
        assert_eq!(sqlite_file("sqlite:db.sqlite"), file("db.sqlite", false));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://db?mode=memory"), None);
        assert_eq!(sqlite_file("postgres://x/y"), None);
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
