//! The database: opening it (the SQLite file and its folder created private, WAL and the busy
//! timeout, the connection pool, pending migrations) and how a writing transaction begins.
//! Also [`create_private_dir`], for every folder Portcullis creates for its files.

use std::path::{Path, PathBuf};

use migration::{Migrator, MigratorTrait};

mod warm;
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
pub use warm::{IDLE_TEST as WARM_IDLE_TEST, TURN_WAIT as WARM_TURN_WAIT, WarmPool};

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database (PORTCULLIS_DATABASE_URL): {0}")]
    Open(#[source] DbErr),
    #[error("database migration failed: {0}")]
    Migration(#[source] DbErr),
    #[error("{0}")]
    Io(String),
}

/// SQLite connections in the pool: SQLite writes one transaction at a time whatever the
/// number, and in WAL mode readers do not wait for it; four serve the reads that run beside a
/// write. The hot paths take turns on one of them (`WarmPool`). Each connection is a thread with its own page and statement caches (measured: going
/// from eight to four lowered peak memory under the benchmark's load by about 2 MiB, with no
/// loss of throughput).
const SQLITE_CONNECTIONS: u32 = 4;

/// Pages the SQLite write-ahead log collects before the connection that commits past them
/// copies them back into the database file (a checkpoint; SQLite's default is 1,000). A page
/// written many times between two checkpoints is copied once, so fewer, larger checkpoints
/// copy less: measured in alternating runs, refreshes 7% and code exchanges 18% faster than
/// at 1,000. The log's file grows to about 40 MiB and stays that size (it is reused from its
/// start after each checkpoint); a crash replays at most that much on the next start.
const SQLITE_WAL_CHECKPOINT_PAGES: u32 = 10_000;

/// Opens the database (creating the SQLite file and its folder when needed) and runs pending
/// migrations. A folder it creates is 0700 and the SQLite file 0600 (owner only); SQLite gives
/// the `-wal` and `-shm` files the mode of the database file. An existing database file that
/// group or others may read is used as it is, with a warning.
pub async fn open_database(url: &str) -> Result<DatabaseConnection, DbError> {
    if let Some(file) = sqlite_file(url) {
        if let Some(dir) = file.path.parent()
            && !dir.as_os_str().is_empty()
        {
            create_private_dir(dir).map_err(|e| {
                DbError::Io(format!(
                    "cannot create database folder {}: {e}",
                    dir.display()
                ))
            })?;
        }
        if file.create {
            create_private_file(&file.path).map_err(|e| {
                DbError::Io(format!(
                    "cannot create database file {}: {e}",
                    file.path.display()
                ))
            })?;
        }
        warn_if_open_to_others(&file.path);
    }
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(if url.starts_with("sqlite:") {
            SQLITE_CONNECTIONS
        } else {
            32
        })
        .min_connections(1)
        // sqlx pings a connection before lending it: only one that has been idle (a busy
        // connection just answered), as `WarmPool` does with its own.
        .test_before_acquire_if_idle_for(WARM_IDLE_TEST)
        .connect_timeout(std::time::Duration::from_secs(10))
        .sqlx_logging(false)
        // On every pooled connection, not one: WAL lets readers proceed during a write; the
        // busy timeout queues writers instead of failing them; foreign keys (and with them
        // the cascades of the schema) are off by default in SQLite; checkpoints are spaced
        // out (`SQLITE_WAL_CHECKPOINT_PAGES`).
        .map_sqlx_sqlite_opts(|sqlite| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            sqlite
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(10))
                .pragma(
                    "wal_autocheckpoint",
                    SQLITE_WAL_CHECKPOINT_PAGES.to_string(),
                )
        });
    let mut db = Database::connect(options).await.map_err(DbError::Open)?;
    // Every statement's time and outcome (`portcullis_db_*`): sea-orm measures it anyway.
    db.set_metric_callback(|info| crate::metrics::db_statement(info.elapsed, info.failed));
    Migrator::up(&db, None).await.map_err(DbError::Migration)?;
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
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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

/// How many statements a database connection (and its clones made after
/// [`StatementCount::install`]) has sent. Each is one round trip to the database; a transaction
/// adds its `BEGIN` and `COMMIT` (or `ROLLBACK`), which sea-orm does not report. Tests read it
/// to hold the hot paths to their budget (docs/ARCHITECTURE.md, "Round trips").
///
/// On request ([`StatementCount::keep`]) it also keeps the statements themselves, for tests
/// that look at their plans; otherwise that costs one relaxed load per statement.
#[derive(Debug, Clone, Default)]
pub struct StatementCount(std::sync::Arc<Counted>);

#[derive(Debug, Default)]
struct Counted {
    count: std::sync::atomic::AtomicU64,
    keeping: std::sync::atomic::AtomicBool,
    kept: std::sync::Mutex<Vec<Statement>>,
}

impl StatementCount {
    /// Counts every statement `db` sends from now on (set it before cloning the connection:
    /// clones carry the counter they were made with).
    pub fn install(db: &mut DatabaseConnection) -> Self {
        let count = Self::default();
        let counter = count.clone();
        // It replaces the callback `open_database` set: record the metrics here too.
        db.set_metric_callback(move |info| {
            counter.record(info.statement);
            crate::metrics::db_statement(info.elapsed, info.failed);
        });
        count
    }

    /// Counts one statement (sent through sea-orm, or around it by [`WarmPool`]).
    fn record(&self, statement: &Statement) {
        use std::sync::atomic::Ordering;
        self.0.count.fetch_add(1, Ordering::Relaxed);
        if self.0.keeping.load(Ordering::Relaxed) {
            self.0
                .kept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(statement.clone());
        }
    }

    /// The statements so far.
    pub fn get(&self) -> u64 {
        self.0.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// From now on, keeps every statement sent (see [`Self::take_kept`]).
    pub fn keep(&self) {
        self.0
            .keeping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The statements kept since [`Self::keep`] or the last call, in the order sent.
    pub fn take_kept(&self) -> Vec<Statement> {
        std::mem::take(&mut *self.0.kept.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// `a."col" AS "a_col", ...` for every column of `E`: a select list for hand-written joins,
/// read back with `FromQueryResult::from_query_result(row, "a_")`.
pub fn select_list<E: sea_orm::EntityTrait>(alias: &str) -> String {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter()
        .map(|c| {
            let name = c.as_str();
            format!("{alias}.\"{name}\" AS \"{alias}_{name}\"")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text of a hand-written statement on the hot paths, built on first use for each
/// backend and kept: formatting it (select lists of dozens of columns) on every request cost
/// about 1% of a refresh. Use in a `static`.
pub struct SqlText {
    postgres: std::sync::OnceLock<String>,
    sqlite: std::sync::OnceLock<String>,
}

impl SqlText {
    pub const fn new() -> Self {
        Self {
            postgres: std::sync::OnceLock::new(),
            sqlite: std::sync::OnceLock::new(),
        }
    }

    /// The text for `backend`, from `build` the first time (it must depend on nothing else).
    pub fn get(&self, backend: sea_orm::DbBackend, build: impl FnOnce() -> String) -> &str {
        let cell = if backend == sea_orm::DbBackend::Postgres {
            &self.postgres
        } else {
            &self.sqlite
        };
        cell.get_or_init(build)
    }
}

impl Default for SqlText {
    fn default() -> Self {
        Self::new()
    }
}

/// The placeholder of the first bind parameter on `db`'s backend (`$1` or `?`), for
/// hand-written statements with one parameter.
pub fn first_placeholder(db: &impl sea_orm::ConnectionTrait) -> &'static str {
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        "$1"
    } else {
        "?"
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`), so a writer waits for a concurrent one (busy timeout) instead of
/// failing with "database is locked" when it moves from reading to writing after another
/// connection committed; on PostgreSQL it is a plain `BEGIN`. Every transaction that writes
/// starts here.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    })
    .await
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

    #[tokio::test]
    async fn every_pooled_sqlite_connection_has_the_pragmas() {
        use sea_orm::ConnectionTrait;
        let dir = std::env::temp_dir().join(format!("portcullis-db-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}?mode=rwc", dir.join("p.db").display());
        let db = open_database(&url).await.unwrap();
        // Hold several connections at once, so more than the first is asked.
        let mut held = Vec::new();
        for _ in 0..4 {
            let txn = db.begin().await.unwrap();
            for (pragma, expected) in [
                ("foreign_keys", 1),
                ("busy_timeout", 10_000),
                ("wal_autocheckpoint", i64::from(SQLITE_WAL_CHECKPOINT_PAGES)),
            ] {
                let row = txn
                    .query_one_raw(sea_orm::Statement::from_string(
                        db.get_database_backend(),
                        format!("PRAGMA {pragma}"),
                    ))
                    .await
                    .unwrap()
                    .unwrap();
                let value: i64 = row.try_get_by_index(0).unwrap();
                assert_eq!(value, expected, "{pragma}");
            }
            held.push(txn);
        }
        drop(held);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
