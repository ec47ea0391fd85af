//! Browser sign-in (authorization code + PKCE):
//! - `clients.post_logout_redirect_uris` (newline-separated, RP-initiated logout) and
//!   `clients.first_party` (first-party clients skip the consent page);
//! - `refresh_families` becomes the record of every kind of sign-in: `kind` (`password`: the
//!   password grant; `browser`: a sign-in on Portcullis's own pages, the browser session;
//!   `code`: what one client obtained from a browser session with an authorization code),
//!   `session_id` (the browser session a `code` sign-in belongs to), `auth_time` and `amr`
//!   (when and how the user authenticated), `ip` and `user_agent` (shown to the user),
//!   `expires_at` (the absolute end of a browser session, which also bounds the refresh tokens
//!   of its `code` sign-ins) and `cookie_digest` (SHA-256 of the browser session's cookie);
//! - `consents`: the scopes a user granted a client, remembered until withdrawn;
//! - `authorization_codes`: codes stored as digests, single-use, with the sign-in their
//!   redemption started, so that a second redemption can revoke it (RFC 6749 §4.1.2).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    PostLogoutRedirectUris,
    FirstParty,
}

#[derive(DeriveIden)]
enum RefreshFamilies {
    Table,
    Kind,
    SessionId,
    AuthTime,
    Amr,
    Ip,
    UserAgent,
    ExpiresAt,
    CookieDigest,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    UserId,
    ClientId,
    Scope,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    Digest,
    ClientId,
    RedirectUri,
    UserId,
    SessionId,
    Scope,
    Nonce,
    Challenge,
    Audience,
    AuthTime,
    Amr,
    CreatedAt,
    ExpiresAt,
    RedeemedAt,
    FamilyId,
    ReplayedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let client_columns = [
            ColumnDef::new(Clients::PostLogoutRedirectUris)
                .text()
                .not_null()
                .default("")
                .to_owned(),
            ColumnDef::new(Clients::FirstParty)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
        ];
        for mut column in client_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        let family_columns = [
            ColumnDef::new(RefreshFamilies::Kind)
                .text()
                .not_null()
                .default("password")
                .to_owned(),
            ColumnDef::new(RefreshFamilies::SessionId)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(RefreshFamilies::AuthTime)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(RefreshFamilies::Amr)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(RefreshFamilies::Ip).text().null().to_owned(),
            ColumnDef::new(RefreshFamilies::UserAgent)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(RefreshFamilies::ExpiresAt)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(RefreshFamilies::CookieDigest)
                .text()
                .null()
                .to_owned(),
        ];
        for mut column in family_columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(RefreshFamilies::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_families_session_id")
                    .table(RefreshFamilies::Table)
                    .col(RefreshFamilies::SessionId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_refresh_families_cookie_digest")
                    .table(RefreshFamilies::Table)
                    .col(RefreshFamilies::CookieDigest)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(ColumnDef::new(Consents::UserId).text().not_null())
                    .col(ColumnDef::new(Consents::ClientId).text().not_null())
                    .col(ColumnDef::new(Consents::Scope).text().not_null())
                    .col(ColumnDef::new(Consents::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Consents::UpdatedAt).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .col(Consents::UserId)
                            .col(Consents::ClientId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(
                        ColumnDef::new(AuthorizationCodes::Digest)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AuthorizationCodes::ClientId)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthorizationCodes::RedirectUri)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuthorizationCodes::UserId).text().not_null())
                    .col(
                        ColumnDef::new(AuthorizationCodes::SessionId)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuthorizationCodes::Scope).text().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::Nonce).text().null())
                    .col(ColumnDef::new(AuthorizationCodes::Challenge).text().null())
                    .col(ColumnDef::new(AuthorizationCodes::Audience).text().null())
                    .col(
                        ColumnDef::new(AuthorizationCodes::AuthTime)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AuthorizationCodes::Amr).text().not_null())
                    .col(
                        ColumnDef::new(AuthorizationCodes::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthorizationCodes::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AuthorizationCodes::RedeemedAt)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(AuthorizationCodes::FamilyId).text().null())
                    .col(
                        ColumnDef::new(AuthorizationCodes::ReplayedAt)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_authorization_codes_expires_at")
                    .table(AuthorizationCodes::Table)
                    .col(AuthorizationCodes::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuthorizationCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Consents::Table).to_owned())
            .await?;
        for index in [
            "idx_refresh_families_cookie_digest",
            "idx_refresh_families_session_id",
        ] {
            manager
                .drop_index(
                    Index::drop()
                        .name(index)
                        .table(RefreshFamilies::Table)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            RefreshFamilies::Kind,
            RefreshFamilies::SessionId,
            RefreshFamilies::AuthTime,
            RefreshFamilies::Amr,
            RefreshFamilies::Ip,
            RefreshFamilies::UserAgent,
            RefreshFamilies::ExpiresAt,
            RefreshFamilies::CookieDigest,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(RefreshFamilies::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [Clients::PostLogoutRedirectUris, Clients::FirstParty] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Clients::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
