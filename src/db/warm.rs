//! Connections kept warm for the hot paths (a refresh, a sign-in, a code exchange).
//!
//! sqlx tests every connection it takes back into its pool with a ping before it lends it
//! again: on PostgreSQL a `Sync` message and its answer, on SQLite a hop to the connection's
//! thread and back. Every statement sent through the pool outside a transaction pays that
//! extra round trip, and the connection is busy with it meanwhile. [`WarmPool`] instead keeps
//! the connections the hot paths used checked out, on a small stack, between uses:
//!
//! - a connection goes back onto the stack only after an operation on it **completed**;
//! - an operation that failed, or whose future was dropped (a cancelled request), **closes**
//!   its connection, which ends any transaction it had open (see [`WarmPool::script`]), so
//!   nothing half-done is ever lent again; the pool opens a replacement when needed;
//! - a connection that sat on the stack for [`IDLE_TEST`] or longer is pinged before use, as
//!   sqlx pings an idle connection (`db::open_database`), and closed if the ping fails;
//! - on PostgreSQL the stack holds at most half the pool: the rest stays with sqlx for
//!   everything else;
//! - on SQLite the hot paths take turns on **one** connection (one lease at a time). SQLite
//!   writes one transaction at a time whatever the number of connections, and a connection
//!   throws its page cache away whenever another connection wrote since its last use: with
//!   the hot paths spread over several connections, nearly every transaction read its pages
//!   again from the file. Measured in alternating runs: refreshes about 5% and
//!   authorization requests about 25% faster than with two connections kept. An operation
//!   that waits [`TURN_WAIT`] for its turn takes an ordinary pooled connection instead, so a
//!   caller that holds a write transaction and reads through the hot path while the turn's
//!   holder waits for that transaction's lock is not stuck for the busy timeout.
//!
//! Statements sent here are counted and measured like those sea-orm sends
//! ([`super::StatementCount`], `portcullis_db_*`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::sea_query::Values;
use sea_orm::sqlx::{self, Connection as _, pool::PoolConnection};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_sqlx::SqlxValues;

use super::StatementCount;

/// A connection unused this long is pinged before it is lent again.
pub const IDLE_TEST: Duration = Duration::from_secs(1);

/// SQLite: how long an operation waits for its turn on the one connection before it takes an
/// ordinary pooled connection instead. Turns last a statement or a script; a wait this long
/// means the turn's holder is itself waiting, perhaps for a lock its own caller holds (a
/// transaction on the ordinary pool that reads through the hot path), which would otherwise
/// last the whole busy timeout.
pub const TURN_WAIT: Duration = Duration::from_secs(1);

/// See the module docs. Cheap to clone; clones share the stack.
#[derive(Clone)]
pub struct WarmPool(Arc<Inner>);

struct Inner {
    pool: Pool,
    /// Connections whose last operation completed, with when it did (most recent last).
    idle: Mutex<Vec<(Conn, Instant)>>,
    keep: usize,
    /// SQLite only: one lease at a time, so that the hot paths always use the same
    /// connection (see the module docs).
    turn: Option<Arc<tokio::sync::Semaphore>>,
    count: StatementCount,
}

enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

enum Conn {
    Postgres(PoolConnection<sqlx::Postgres>),
    Sqlite(PoolConnection<sqlx::Sqlite>),
}

impl Conn {
    /// Closes the connection instead of handing it back to sqlx's pool: a transaction a
    /// script left open ends with it (the server rolls it back; SQLite rolls back on close).
    fn close(self) {
        match self {
            Self::Postgres(c) => drop(c.detach()),
            Self::Sqlite(c) => drop(c.detach()),
        }
    }

    async fn ping(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(c) => c.ping().await,
            Self::Sqlite(c) => c.ping().await,
        }
    }

    async fn query_all(&mut self, stmt: Statement) -> Result<Vec<QueryResult>, sqlx::Error> {
        let (sql, values) = parts(stmt);
        let sql = sqlx::AssertSqlSafe(sql.as_str());
        Ok(match self {
            Self::Postgres(c) => sqlx::query_with(sql, values)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(QueryResult::from)
                .collect(),
            Self::Sqlite(c) => sqlx::query_with(sql, values)
                .fetch_all(&mut **c)
                .await?
                .into_iter()
                .map(QueryResult::from)
                .collect(),
        })
    }

    /// Runs `stmt`; `keep`: whether the connection keeps it prepared for the next time.
    async fn execute(&mut self, stmt: Statement, keep: bool) -> Result<ExecResult, sqlx::Error> {
        let (sql, values) = parts(stmt);
        let sql = sqlx::AssertSqlSafe(sql.as_str());
        Ok(match self {
            Self::Postgres(c) => sqlx::query_with(sql, values)
                .persistent(keep)
                .execute(&mut **c)
                .await?
                .into(),
            Self::Sqlite(c) => sqlx::query_with(sql, values)
                .persistent(keep)
                .execute(&mut **c)
                .await?
                .into(),
        })
    }
}

/// A statement's text and its values bound for sqlx (moved, not copied).
fn parts(stmt: Statement) -> (String, SqlxValues) {
    (
        stmt.sql,
        SqlxValues(stmt.values.unwrap_or(Values(Vec::new()))),
    )
}

/// A connection lent for one operation. Dropped without [`Lease::complete`] (the operation
/// failed or was cancelled), it closes its connection.
struct Lease<'a> {
    pool: &'a Inner,
    conn: Option<Conn>,
    /// SQLite: this lease's turn on the one connection, given up with the lease.
    _turn: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Whether the connection may wait on the stack afterwards: not one taken after
    /// [`TURN_WAIT`] without a turn (it goes back to sqlx's pool).
    stacked: bool,
}

impl Lease<'_> {
    /// The lent connection (`None` only once the lease has ended).
    fn conn(&mut self) -> Result<&mut Conn, sqlx::Error> {
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The operation completed: the connection goes back onto the stack (or, when the stack
    /// is full, back to sqlx's pool).
    fn complete(mut self) {
        if let Some(conn) = self.conn.take()
            && self.stacked
        {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < self.pool.keep {
                idle.push((conn, Instant::now()));
            }
            // Otherwise `conn` drops here: sqlx takes it back (with its ping).
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
        }
    }
}

impl WarmPool {
    /// Lends connections of `db`'s pool, counting statements on `count`. Other databases
    /// (none in Portcullis) are refused.
    pub fn new(db: &DatabaseConnection, count: StatementCount) -> Result<Self, DbErr> {
        let pool = match db.get_database_backend() {
            DbBackend::Postgres => Pool::Postgres(db.get_postgres_connection_pool().clone()),
            DbBackend::Sqlite => Pool::Sqlite(db.get_sqlite_connection_pool().clone()),
            other => {
                return Err(DbErr::Custom(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        let max = match &pool {
            Pool::Postgres(p) => p.options().get_max_connections(),
            Pool::Sqlite(p) => p.options().get_max_connections(),
        };
        let (keep, turn) = match &pool {
            Pool::Postgres(_) => (usize::try_from(max / 2).unwrap_or(1).max(1), None),
            Pool::Sqlite(_) => (1, Some(Arc::new(tokio::sync::Semaphore::new(1)))),
        };
        Ok(Self(Arc::new(Inner {
            pool,
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
            turn,
            count,
        })))
    }

    /// How many connections wait on the stack (for tests).
    pub fn idle(&self) -> usize {
        self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The connection that waited on the stack last, if any.
    fn pop(&self) -> Option<(Conn, Instant)> {
        self.0.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    async fn lease(&self) -> Result<Lease<'_>, DbErr> {
        let (turn, stacked) = match &self.0.turn {
            None => (None, true),
            Some(turn) => {
                match tokio::time::timeout(TURN_WAIT, turn.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => (Some(permit), true),
                    // No turn in time (see `TURN_WAIT`): an ordinary pooled connection.
                    _ => (None, false),
                }
            }
        };
        let mut lease = Lease {
            pool: &self.0,
            conn: None,
            _turn: turn,
            stacked,
        };
        // A lease that gave up waiting for its turn (SQLite) leaves the stack to the turns.
        if stacked {
            while let Some((conn, since)) = self.pop() {
                let conn = lease.conn.insert(conn);
                if since.elapsed() < IDLE_TEST || conn.ping().await.is_ok() {
                    return Ok(lease);
                }
                // The ping failed: close that connection and try the next one.
                if let Some(dead) = lease.conn.take() {
                    dead.close();
                }
            }
        }
        lease.conn = Some(match &self.0.pool {
            Pool::Postgres(p) => Conn::Postgres(p.acquire().await.map_err(conn_err)?),
            Pool::Sqlite(p) => Conn::Sqlite(p.acquire().await.map_err(conn_err)?),
        });
        Ok(lease)
    }

    /// Runs a script: several statements separated by `;`, sent as one (SQLite only: one hop
    /// to the connection's thread). Bind parameters are numbered (`$1`, `$2`, …) and each
    /// number means the same value in every statement. The rows of every statement come back
    /// in order. A script that opens a transaction must end it: if any statement fails, or
    /// the call is cancelled, the connection is closed, which rolls the transaction back.
    pub async fn script(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if !matches!(self.0.pool, Pool::Sqlite(_)) {
            return Err(DbErr::Custom(
                "scripts of several statements are for SQLite only".into(),
            ));
        }
        self.query_all_raw(stmt).await
    }

    /// Runs a statement that is seldom sent twice alike (a multi-row `INSERT` of however many
    /// rows have gathered) without keeping it prepared: each connection's cache of prepared
    /// statements would otherwise fill with one large program per row count.
    pub async fn execute_once(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.execute(stmt, false).await
    }

    async fn execute(&self, stmt: Statement, keep: bool) -> Result<ExecResult, DbErr> {
        self.on_lease(stmt, exec_err, async |conn, stmt| {
            conn.execute(stmt, keep).await
        })
        .await
    }

    /// Runs `op` with `stmt` on a lent connection, counted and timed; the connection goes
    /// back onto the stack only when `op` succeeded (see [`Lease`]).
    async fn on_lease<T>(
        &self,
        stmt: Statement,
        err: fn(sqlx::Error) -> DbErr,
        op: impl AsyncFnOnce(&mut Conn, Statement) -> Result<T, sqlx::Error>,
    ) -> Result<T, DbErr> {
        let mut lease = self.lease().await?;
        self.0.count.record(&stmt);
        let started = Instant::now();
        let result = match lease.conn() {
            Ok(conn) => op(conn, stmt).await,
            Err(e) => Err(e),
        };
        crate::metrics::db_statement(started.elapsed(), result.is_err());
        let result = result.map_err(err)?;
        lease.complete();
        Ok(result)
    }
}

fn conn_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e)))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
}

fn exec_err(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e)))
}

#[async_trait::async_trait]
impl ConnectionTrait for WarmPool {
    fn get_database_backend(&self) -> DbBackend {
        match self.0.pool {
            Pool::Postgres(_) => DbBackend::Postgres,
            Pool::Sqlite(_) => DbBackend::Sqlite,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.execute(stmt, true).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.execute_raw(Statement::from_string(self.get_database_backend(), sql))
            .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.on_lease(stmt, query_err, async |conn, stmt| {
            conn.query_all(stmt).await
        })
        .await
    }
}
