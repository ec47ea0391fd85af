//! `authorization_codes`: codes of the authorization-code flow, stored as SHA-256 digests.
//! Single-use: redeeming sets `redeemed_at` and names the sign-in the redemption starts, so a
//! second redemption can end it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "authorization_codes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub digest: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    /// The browser session (its `refresh_families` id) the code was issued in.
    pub session_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    /// The PKCE challenge as oxide-auth encodes it (method and value).
    pub challenge: Option<String>,
    /// The resource (RFC 8707) the access tokens are for; `None`: Portcullis's own API.
    pub audience: Option<String>,
    pub auth_time: i64,
    pub amr: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    /// The sign-in (refresh family) the redemption started: the `sid` of its access tokens.
    pub family_id: Option<String>,
    /// When a second redemption was attempted (the sign-in is then ended).
    pub replayed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
