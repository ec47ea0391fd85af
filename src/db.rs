//! Database helpers shared by the services: how a writing transaction begins.

use sea_orm::{DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait};

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
