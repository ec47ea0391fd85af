//! Refresh replays: for a short window after a refresh token is rotated, the answer that
//! rotation produced, sealed under a key derived from the rotated token itself, so that the
//! same client retrying the same token gets the same answer (see `oauth::refresh`). Also an
//! index for purging expired refresh tokens.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshReplays {
    Table,
    Digest,
    FamilyId,
    SuccessorDigest,
    Sealed,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum RefreshFamilies {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshReplays::Table)
                    // SHA-256 of the rotated (presented) token, as in refresh_tokens.digest.
                    .col(
                        ColumnDef::new(RefreshReplays::Digest)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshReplays::FamilyId)
                            .string_len(36)
                            .not_null(),
                    )
                    // Digest of the token the rotation issued: a replay is served only while
                    // that token is unused.
                    .col(
                        ColumnDef::new(RefreshReplays::SuccessorDigest)
                            .string_len(64)
                            .not_null(),
                    )
                    // AES-256-GCM under a key derived from the rotated token: nonce ||
                    // ciphertext || tag, base64. Without that token it cannot be opened.
                    .col(ColumnDef::new(RefreshReplays::Sealed).text().not_null())
                    // End of the replay window; the row is erased after it.
                    .col(
                        ColumnDef::new(RefreshReplays::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RefreshReplays::Table, RefreshReplays::FamilyId)
                            .to(RefreshFamilies::Table, RefreshFamilies::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_replays_family")
                    .table(RefreshReplays::Table)
                    .col(RefreshReplays::FamilyId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_replays_expires")
                    .table(RefreshReplays::Table)
                    .col(RefreshReplays::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        // Purging expired refresh tokens scans by expiry.
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_tokens_expires")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_refresh_tokens_expires")
                    .table(RefreshTokens::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(RefreshReplays::Table).to_owned())
            .await
    }
}
