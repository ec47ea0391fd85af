//! `mfa_tokens`: the pending second step of a sign-in, found by the digest of its token.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "mfa_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    /// `grant` (the password grant's `mfa_token`) or `browser` (the hosted sign-in page).
    pub purpose: String,
    pub user_id: String,
    pub client_id: String,
    /// The scope the first step asked for (space-separated, possibly empty).
    pub scope: String,
    /// The RFC 8707 resource the first step asked for.
    pub resource: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Wrong codes presented with this token.
    pub failures: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
