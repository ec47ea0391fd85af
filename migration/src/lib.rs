//! Portcullis database schema, as an ordered list of migrations.
//!
//! The server runs pending migrations at start (and `portcullis migrate` runs them on demand);
//! tests build their databases with this migrator too, so the schema has one source of truth.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_core;
mod m20261124_000002_articles;
mod m20261124_000003_key_lifecycle;
mod m20261124_000004_refresh_replay;
mod m20261126_000005_sign_ins_and_audiences;
mod m20261126_000006_browser_sign_in;
mod m20261126_000007_mail;
mod m20261126_000008_mfa;
mod m20261126_000009_account_recovery;
mod m20261126_000010_alerts;
mod m20261126_000011_upstream_identities;
mod m20261126_000012_open_sign_ins_unindexed;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_core::Migration),
            Box::new(m20261124_000002_articles::Migration),
            Box::new(m20261124_000003_key_lifecycle::Migration),
            Box::new(m20261124_000004_refresh_replay::Migration),
            Box::new(m20261126_000005_sign_ins_and_audiences::Migration),
            Box::new(m20261126_000006_browser_sign_in::Migration),
            Box::new(m20261126_000007_mail::Migration),
            Box::new(m20261126_000008_mfa::Migration),
            Box::new(m20261126_000009_account_recovery::Migration),
            Box::new(m20261126_000010_alerts::Migration),
            Box::new(m20261126_000011_upstream_identities::Migration),
            Box::new(m20261126_000012_open_sign_ins_unindexed::Migration),
        ]
    }
}
