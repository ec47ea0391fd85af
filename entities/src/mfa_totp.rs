//! `mfa_totp`: a user's TOTP secret (sealed under the master key), pending until confirmed.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_totp")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: String,
    /// The secret, AES-256-GCM under the master key, bound to the user id.
    pub secret_sealed: String,
    pub created_at: i64,
    /// When a first code confirmed the enrolment; `None` while pending.
    pub confirmed_at: Option<i64>,
    /// The last 30-second step whose code was accepted (codes of it and earlier are refused).
    pub last_step: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
