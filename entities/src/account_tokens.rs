//! `account_tokens`: single-use tokens mailed in links (address verification, address
//! change, password reset), stored as SHA-256 digests and bound to the address they went to.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    /// `verify_email`, `change_email` or `password_reset` (see `users::recovery::Purpose`).
    pub purpose: String,
    pub user_id: String,
    /// The address the link was sent to (for `change_email`, the new address).
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
