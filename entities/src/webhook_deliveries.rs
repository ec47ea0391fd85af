//! `webhook_deliveries`: the webhook outbox, one row per message and endpoint. The id is the
//! Standard Webhooks `webhook-id`: the same on every attempt, so a receiver can drop repeats.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub endpoint_id: String,
    /// The payload's `type` (`alert.credential_stuffing`, `alert.test`, …).
    pub event_type: String,
    pub payload: String,
    pub created_at: i64,
    /// When it may next be tried; while a sender has claimed it, when that claim lapses.
    pub next_attempt_at: i64,
    pub attempts: i32,
    /// The HTTP status of the last attempt, when one was answered.
    pub last_status: Option<i32>,
    /// A short reason of the last failure.
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
    /// When delivery was given up.
    pub failed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
