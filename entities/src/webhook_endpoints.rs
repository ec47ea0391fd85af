//! `webhook_endpoints`: where alerts are posted. The signing secret is sealed under the master
//! key (it must be usable to sign, so it cannot be a digest); after a rotation the previous
//! secret keeps signing too until `previous_until`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoints")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub sealed_secret: String,
    pub previous_sealed_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
