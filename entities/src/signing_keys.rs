//! `signing_keys`: RS256 keys with their lifecycle state; private parts encrypted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    /// `next`, `current`, `retired` or `revoked`.
    pub state: String,
    pub alg: String,
    /// The public JWK, serialized.
    pub public_jwk: String,
    /// AES-256-GCM sealed PKCS#8 private key (base64 of nonce || ciphertext || tag); emptied
    /// when the key is revoked.
    pub private_key_enc: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
