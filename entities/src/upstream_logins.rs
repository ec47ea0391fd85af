//! `upstream_logins`: one round trip to an upstream provider, found by the digest of its
//! `state`, bound to the browser that started it, used once. When the upstream's verified
//! address belongs to an existing account, the identity waits here (`link_*`) until the user
//! proves that account.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "upstream_logins")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub state_digest: String,
    pub provider_id: String,
    /// Digest of the browser cookie of the browser that started it.
    pub browser_digest: String,
    pub nonce: String,
    /// The PKCE verifier, sealed under the master key.
    pub sealed_verifier: String,
    /// The authorization request to resume.
    pub return_to: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Digest of the token of the page where the user proves the existing account.
    pub link_digest: Option<String>,
    pub link_subject: Option<String>,
    pub link_email: Option<String>,
    pub link_user_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
