//! The index on `refresh_families.revoked_at` holds ended sign-ins only: the partial index
//! `idx_refresh_families_ended` (`WHERE revoked_at IS NOT NULL`) replaces
//! `idx_refresh_families_revoked_at`. Every instance reads it to pick up sign-ins ended
//! elsewhere (`revoked_at >= $since`, which implies the predicate, so the partial index still
//! serves it). Open sign-ins are no longer in it: the statements that look one sign-in up by
//! its id with `revoked_at IS NULL` (every refresh, every sign-in into a browser session)
//! cannot be planned as a scan of every open sign-in through this index. PostgreSQL chose that
//! plan for the sign-in statement in most benchmark runs on a new database, and a code
//! exchange then read about 5,600 index entries instead of one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_refresh_families_ended ON refresh_families (revoked_at) \
             WHERE revoked_at IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_refresh_families_revoked_at")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_refresh_families_revoked_at ON refresh_families (revoked_at)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_refresh_families_ended")
            .await?;
        Ok(())
    }
}
