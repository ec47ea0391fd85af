//! `refresh_replays`: for the reuse window after a rotation, the answer it produced, sealed
//! under a key derived from the rotated token (never readable from the database alone).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_replays")]
pub struct Model {
    /// Digest of the rotated token (the one a retry presents).
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    pub family_id: String,
    /// Digest of the token the rotation issued.
    pub successor_digest: String,
    /// AES-256-GCM, base64(nonce || ciphertext || tag).
    pub sealed: String,
    /// End of the replay window (Unix seconds).
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
