//! `alerts`: one row per security incident. The key names the rule, the subject and the
//! deduplication window, so every instance that sees the incident writes the same row once.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub rule: String,
    pub subject: String,
    pub raised_at: i64,
    /// The JSON payload delivered (`{type, timestamp, data}`).
    pub payload: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
