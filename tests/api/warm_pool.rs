//! `db::WarmPool`, the hot paths' connections kept out of sqlx's pool between uses: a
//! connection is lent again only after an operation on it completed; a failed or cancelled
//! one is closed, so a transaction it left open never reaches the next user; a connection
//! that died while it waited is replaced, not handed out.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::helpers::*;
use portcullis::db::{StatementCount, WarmPool};

fn is_sqlite(app: &TestApp) -> bool {
    app.state.db.get_database_backend() == DbBackend::Sqlite
}

/// Runs `sql` through `warm` in a task of its own (it may wait for the write lock).
fn spawn_script(
    warm: &WarmPool,
    sql: impl Into<String>,
) -> tokio::task::JoinHandle<Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr>> {
    let warm = warm.clone();
    let sql = sql.into();
    tokio::spawn(async move {
        warm.script(Statement::from_string(DbBackend::Sqlite, sql))
            .await
    })
}

/// An app on SQLite with the probe table and a warm pool of its own; `None` on PostgreSQL.
async fn sqlite_with_probe_table() -> Option<(TestApp, WarmPool)> {
    let app = spawn_app().await;
    if !is_sqlite(&app) {
        return None;
    }
    scratch_table(&app).await;
    let warm = WarmPool::new(&app.state.db, StatementCount::default()).unwrap();
    Some((app, warm))
}

async fn scratch_table(app: &TestApp) {
    app.state
        .db
        .execute_unprepared("CREATE TABLE IF NOT EXISTS warm_probe (n INTEGER NOT NULL)")
        .await
        .unwrap();
}

async fn probe_rows(app: &TestApp) -> i64 {
    let row = app
        .state
        .db
        .query_one_raw(Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT count(*) AS n FROM warm_probe",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// A write through the ordinary pool must not wait on a transaction someone left open.
async fn a_write_goes_through(app: &TestApp) {
    let txn = tokio::time::timeout(
        Duration::from_secs(3),
        portcullis::db::begin_write(&app.state.db),
    )
    .await
    .expect("the write lock is free: no transaction was left open")
    .unwrap();
    txn.execute_unprepared("INSERT INTO warm_probe (n) VALUES (0)")
        .await
        .unwrap();
    txn.rollback().await.unwrap();
}

/// After a script that failed or was cancelled: its connection was closed, not kept (with the
/// transaction it had open), so a write gets the lock, and nothing it wrote remains.
async fn the_script_left_nothing(app: &TestApp, warm: &WarmPool) {
    assert_eq!(
        warm.idle(),
        0,
        "the script's connection is closed, not kept"
    );
    a_write_goes_through(app).await;
    assert_eq!(probe_rows(app).await, 0, "nothing the script wrote remains");
}

#[tokio::test]
async fn a_completed_statement_keeps_its_connection_and_a_failed_one_closes_it() {
    let app = spawn_app().await;
    let warm = WarmPool::new(&app.state.db, StatementCount::default()).unwrap();
    let backend = app.state.db.get_database_backend();
    assert_eq!(warm.idle(), 0);
    warm.query_all_raw(Statement::from_string(backend, "SELECT 1 AS one"))
        .await
        .unwrap();
    assert_eq!(warm.idle(), 1, "a completed statement's connection is kept");
    let failed = warm
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT * FROM no_such_table",
        ))
        .await;
    assert!(failed.is_err());
    assert_eq!(warm.idle(), 0, "a failed statement's connection is closed");
    warm.query_all_raw(Statement::from_string(backend, "SELECT 1 AS one"))
        .await
        .unwrap();
    assert_eq!(warm.idle(), 1);
}

#[tokio::test]
async fn a_script_that_fails_halfway_leaves_no_transaction_open_and_nothing_written() {
    let Some((app, warm)) = sqlite_with_probe_table().await else {
        return; // Scripts are SQLite's; PostgreSQL's rotation is one statement.
    };
    let failed = warm
        .script(Statement::from_string(
            DbBackend::Sqlite,
            "BEGIN IMMEDIATE; INSERT INTO warm_probe (n) VALUES (1); \
             INSERT INTO no_such_table (n) VALUES (2); COMMIT",
        ))
        .await;
    assert!(failed.is_err());
    the_script_left_nothing(&app, &warm).await;

    // The same script without the fault commits, and its connection is kept.
    warm.script(Statement::from_string(
        DbBackend::Sqlite,
        "BEGIN IMMEDIATE; INSERT INTO warm_probe (n) VALUES (1); COMMIT",
    ))
    .await
    .unwrap();
    assert_eq!(probe_rows(&app).await, 1);
    assert_eq!(warm.idle(), 1);
}

#[tokio::test]
async fn a_cancelled_script_leaves_no_transaction_open_and_nothing_written() {
    let Some((app, warm)) = sqlite_with_probe_table().await else {
        return;
    };
    // Hold the write lock, so that the script waits in its `BEGIN IMMEDIATE`.
    let holder = portcullis::db::begin_write(&app.state.db).await.unwrap();
    holder
        .execute_unprepared("INSERT INTO warm_probe (n) VALUES (7)")
        .await
        .unwrap();
    let script = spawn_script(
        &warm,
        "BEGIN IMMEDIATE; INSERT INTO warm_probe (n) VALUES (1); \
         INSERT INTO warm_probe (n) VALUES (2); COMMIT",
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The request is cancelled while its script waits; then the lock is released, so the
    // script's thread gets its `BEGIN IMMEDIATE` after the caller is gone.
    script.abort();
    assert!(script.await.unwrap_err().is_cancelled());
    holder.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Neither the holder's row nor half of the cancelled script's was kept.
    the_script_left_nothing(&app, &warm).await;
}

#[tokio::test]
async fn a_connection_that_died_while_it_waited_is_replaced() {
    let app = spawn_app().await;
    if is_sqlite(&app) {
        return; // An embedded database has no server to lose.
    }
    let warm = WarmPool::new(&app.state.db, StatementCount::default()).unwrap();
    let pid = |rows: Vec<sea_orm::QueryResult>| -> i32 { rows[0].try_get("", "pid").unwrap() };
    let first = pid(warm
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .unwrap());
    let again = pid(warm
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .unwrap());
    assert_eq!(first, again, "a warm connection is reused");
    // The server ends that connection (a restart, a proxy's idle timeout).
    app.state
        .db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend($1)",
            [first.into()],
        ))
        .await
        .unwrap();
    tokio::time::sleep(portcullis::db::WARM_IDLE_TEST + Duration::from_millis(200)).await;
    let replaced = pid(warm
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() AS pid",
        ))
        .await
        .expect("the dead connection is found by its ping and replaced"));
    assert_ne!(replaced, first);
}

/// On SQLite the hot paths take turns on one connection (its page cache stays valid): while
/// one script waits for the write lock, the others wait for their turn instead of taking more
/// connections from the pool.
#[tokio::test]
async fn on_sqlite_the_hot_paths_take_turns_on_one_connection() {
    let Some((app, warm)) = sqlite_with_probe_table().await else {
        return; // PostgreSQL runs the hot paths side by side.
    };
    let pool = app.state.db.get_sqlite_connection_pool().clone();
    let checked_out = || pool.size() as usize - pool.num_idle();
    // Hold the write lock, so that the first script waits in its `BEGIN IMMEDIATE`.
    let holder = portcullis::db::begin_write(&app.state.db).await.unwrap();
    let scripts: Vec<_> = (1..=3)
        .map(|n| {
            spawn_script(
                &warm,
                format!("BEGIN IMMEDIATE; INSERT INTO warm_probe (n) VALUES ({n}); COMMIT"),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        checked_out(),
        2,
        "the lock holder's connection and one for all three scripts"
    );
    holder.rollback().await.unwrap();
    for script in scripts {
        script.await.unwrap().unwrap();
    }
    assert_eq!(probe_rows(&app).await, 3);
    assert_eq!(warm.idle(), 1);
}

/// A caller holding a write transaction reads through the hot path while the one warm
/// connection's script waits for that transaction's lock: after `TURN_WAIT` the read takes an
/// ordinary connection instead of waiting out the script's busy timeout (ten seconds).
#[tokio::test]
async fn on_sqlite_a_read_does_not_wait_for_a_turn_stuck_behind_its_own_callers_lock() {
    let Some((app, warm)) = sqlite_with_probe_table().await else {
        return;
    };
    let holder = portcullis::db::begin_write(&app.state.db).await.unwrap();
    let script = spawn_script(
        &warm,
        "BEGIN IMMEDIATE; INSERT INTO warm_probe (n) VALUES (1); COMMIT",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = tokio::time::timeout(
        portcullis::db::WARM_TURN_WAIT + Duration::from_secs(2),
        warm.query_all_raw(Statement::from_string(DbBackend::Sqlite, "SELECT 1 AS one")),
    )
    .await
    .expect("the read took another connection instead of waiting for the turn")
    .unwrap();
    assert_eq!(read.len(), 1);
    holder.rollback().await.unwrap();
    script.await.unwrap().unwrap();
    assert_eq!(probe_rows(&app).await, 1);
    assert_eq!(
        warm.idle(),
        1,
        "the connection taken without a turn went back to sqlx"
    );
}
