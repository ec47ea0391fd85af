//! Two-factor authentication with TOTP (RFC 6238):
//! - `mfa_totp`: one row per user with a TOTP secret, sealed under the master key
//!   (`secret_sealed`); `confirmed_at` is null while the enrolment is pending (MFA is on once
//!   a first code confirmed it); `last_step` is the last 30-second step whose code was
//!   accepted, so a code is never accepted twice (advanced by a conditional `UPDATE`);
//! - `mfa_recovery_codes`: single-use recovery codes, stored as SHA-256 digests (each code
//!   carries 100 bits of entropy), `used_at` set by a conditional `UPDATE`;
//! - `mfa_tokens`: the pending second step of a sign-in (`mfa_token` of the password grant, or
//!   of the hosted sign-in page: `purpose`), stored as a digest, bound to user and client,
//!   short-lived, single use, with the wrong codes it has seen counted (`failures`);
//! - `roles.require_mfa`: holders of such a role must enrol before they may use the API.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Roles {
    Table,
    RequireMfa,
}

#[derive(DeriveIden)]
enum MfaTotp {
    Table,
    UserId,
    SecretSealed,
    CreatedAt,
    ConfirmedAt,
    LastStep,
}

#[derive(DeriveIden)]
enum MfaRecoveryCodes {
    Table,
    UserId,
    Digest,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum MfaTokens {
    Table,
    Digest,
    Purpose,
    UserId,
    ClientId,
    Scope,
    Resource,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    Failures,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Roles::Table)
                    .add_column(
                        ColumnDef::new(Roles::RequireMfa)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaTotp::Table)
                    .col(
                        ColumnDef::new(MfaTotp::UserId)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MfaTotp::SecretSealed).text().not_null())
                    .col(ColumnDef::new(MfaTotp::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(MfaTotp::ConfirmedAt).big_integer().null())
                    .col(ColumnDef::new(MfaTotp::LastStep).big_integer().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(MfaTotp::Table, MfaTotp::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaRecoveryCodes::Table)
                    .col(ColumnDef::new(MfaRecoveryCodes::UserId).text().not_null())
                    .col(ColumnDef::new(MfaRecoveryCodes::Digest).text().not_null())
                    .col(
                        ColumnDef::new(MfaRecoveryCodes::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MfaRecoveryCodes::UsedAt)
                            .big_integer()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(MfaRecoveryCodes::UserId)
                            .col(MfaRecoveryCodes::Digest),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MfaRecoveryCodes::Table, MfaRecoveryCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaTokens::Table)
                    .col(
                        ColumnDef::new(MfaTokens::Digest)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MfaTokens::Purpose).text().not_null())
                    .col(ColumnDef::new(MfaTokens::UserId).text().not_null())
                    .col(ColumnDef::new(MfaTokens::ClientId).text().not_null())
                    .col(ColumnDef::new(MfaTokens::Scope).text().not_null())
                    .col(ColumnDef::new(MfaTokens::Resource).text().null())
                    .col(
                        ColumnDef::new(MfaTokens::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MfaTokens::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MfaTokens::UsedAt).big_integer().null())
                    .col(
                        ColumnDef::new(MfaTokens::Failures)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(MfaTokens::Table, MfaTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("mfa_tokens_expires_at")
                    .table(MfaTokens::Table)
                    .col(MfaTokens::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MfaTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MfaRecoveryCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MfaTotp::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Roles::Table)
                    .drop_column(Roles::RequireMfa)
                    .to_owned(),
            )
            .await
    }
}
