//! Social sign-in: `identity_providers` (upstream OpenID providers and GitHub, as data; the
//! client secret sealed under the master key), `user_identities` (an upstream account linked
//! to a Portcullis account, keyed by provider and upstream subject, never by e-mail) and
//! `upstream_logins` (one pending round trip to an upstream: the digest of its `state`, its
//! nonce and sealed PKCE verifier, the browser it belongs to, and, once the upstream answered
//! with an address that belongs to an existing account, the identity waiting to be linked).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdentityProviders {
    Table,
    Id,
    Kind,
    DisplayName,
    ClientId,
    SealedClientSecret,
    Scopes,
    AllowSignup,
    Enabled,
    Issuer,
    AuthBaseUrl,
    ApiBaseUrl,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserIdentities {
    Table,
    ProviderId,
    Subject,
    UserId,
    Email,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum UpstreamLogins {
    Table,
    StateDigest,
    ProviderId,
    BrowserDigest,
    Nonce,
    SealedVerifier,
    ReturnTo,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    LinkDigest,
    LinkSubject,
    LinkEmail,
    LinkUserId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdentityProviders::Table)
                    .col(
                        ColumnDef::new(IdentityProviders::Id)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IdentityProviders::Kind).text().not_null())
                    .col(
                        ColumnDef::new(IdentityProviders::DisplayName)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdentityProviders::ClientId)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdentityProviders::SealedClientSecret)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IdentityProviders::Scopes).text().not_null())
                    .col(
                        ColumnDef::new(IdentityProviders::AllowSignup)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(IdentityProviders::Enabled)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(ColumnDef::new(IdentityProviders::Issuer).text().null())
                    .col(ColumnDef::new(IdentityProviders::AuthBaseUrl).text().null())
                    .col(ColumnDef::new(IdentityProviders::ApiBaseUrl).text().null())
                    .col(
                        ColumnDef::new(IdentityProviders::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdentityProviders::UpdatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserIdentities::Table)
                    .col(ColumnDef::new(UserIdentities::ProviderId).text().not_null())
                    .col(ColumnDef::new(UserIdentities::Subject).text().not_null())
                    .col(
                        ColumnDef::new(UserIdentities::UserId)
                            .string_len(36)
                            .not_null(),
                    )
                    .col(ColumnDef::new(UserIdentities::Email).text().null())
                    .col(
                        ColumnDef::new(UserIdentities::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserIdentities::LastUsedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(UserIdentities::ProviderId)
                            .col(UserIdentities::Subject),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserIdentities::Table, UserIdentities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(UserIdentities::Table, UserIdentities::ProviderId)
                            .to(IdentityProviders::Table, IdentityProviders::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_identities_user")
                    .table(UserIdentities::Table)
                    .col(UserIdentities::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UpstreamLogins::Table)
                    .col(
                        ColumnDef::new(UpstreamLogins::StateDigest)
                            .text()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(UpstreamLogins::ProviderId).text().not_null())
                    .col(
                        ColumnDef::new(UpstreamLogins::BrowserDigest)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(UpstreamLogins::Nonce).text().not_null())
                    .col(
                        ColumnDef::new(UpstreamLogins::SealedVerifier)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(UpstreamLogins::ReturnTo).text().not_null())
                    .col(
                        ColumnDef::new(UpstreamLogins::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UpstreamLogins::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(UpstreamLogins::UsedAt).big_integer().null())
                    .col(ColumnDef::new(UpstreamLogins::LinkDigest).text().null())
                    .col(ColumnDef::new(UpstreamLogins::LinkSubject).text().null())
                    .col(ColumnDef::new(UpstreamLogins::LinkEmail).text().null())
                    .col(ColumnDef::new(UpstreamLogins::LinkUserId).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_upstream_logins_link")
                    .table(UpstreamLogins::Table)
                    .col(UpstreamLogins::LinkDigest)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UpstreamLogins::Table.into_iden(),
            UserIdentities::Table.into_iden(),
            IdentityProviders::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
