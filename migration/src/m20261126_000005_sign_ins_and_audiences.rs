//! Sign-ins that end every token, and audiences:
//! - `users.access_version`: bumped by every operation that ends a user's access (disable, role
//!   removal, ending all sign-ins); a sign-in is recorded only if the version it read is still
//!   current, so no sign-in can slip past an operation that ends access;
//! - `refresh_families.audience`: the resource (RFC 8707) a sign-in's access tokens are for,
//!   `NULL` for Portcullis's own API; and an index on `revoked_at`, read by every instance to
//!   pick up sign-ins ended elsewhere;
//! - `clients.default_scopes` (granted when a request names no scope) and `clients.audiences`
//!   (the resources a client may ask tokens for). Existing clients keep their non-administrative
//!   scopes as defaults, so their requests without `scope` keep working without granting an
//!   administrative scope that was not asked for.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    AccessVersion,
}

#[derive(DeriveIden)]
enum RefreshFamilies {
    Table,
    Audience,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Scopes,
    DefaultScopes,
    Audiences,
}

/// Scopes that are granted only when asked for by name (frozen here as of this migration).
const ADMINISTRATIVE: [&str; 6] = [
    "users:read",
    "users:admin",
    "clients:admin",
    "audit:read",
    "keys:admin",
    "webhooks:admin",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(
                        ColumnDef::new(Users::AccessVersion)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshFamilies::Table)
                    .add_column(ColumnDef::new(RefreshFamilies::Audience).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_families_revoked_at")
                    .table(RefreshFamilies::Table)
                    .col(RefreshFamilies::RevokedAt)
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per ALTER TABLE.
        for column in [Clients::DefaultScopes, Clients::Audiences] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(ColumnDef::new(column).text().not_null().default(""))
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        let select = Query::select()
            .columns([Clients::ClientId, Clients::Scopes])
            .from(Clients::Table)
            .to_owned();
        let rows = db.query_all(&select).await?;
        for row in rows {
            let id: String = row.try_get("", "client_id")?;
            let scopes: String = row.try_get("", "scopes")?;
            let defaults: Vec<&str> = scopes
                .split(' ')
                .filter(|s| !s.is_empty() && !ADMINISTRATIVE.contains(s))
                .collect();
            let update = Query::update()
                .table(Clients::Table)
                .value(Clients::DefaultScopes, defaults.join(" "))
                .and_where(Expr::col(Clients::ClientId).eq(id))
                .to_owned();
            db.execute(&update).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Clients::DefaultScopes, Clients::Audiences] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_index(
                Index::drop()
                    .name("idx_refresh_families_revoked_at")
                    .table(RefreshFamilies::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshFamilies::Table)
                    .drop_column(RefreshFamilies::Audience)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::AccessVersion)
                    .to_owned(),
            )
            .await
    }
}
