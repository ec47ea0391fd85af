//! `refresh_families`: one sign-in (a password-grant sign-in, a browser session, or what a
//! client obtained from a browser session with a code); every refresh token rotated from it
//! belongs to it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_families")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    /// The resource (RFC 8707) its access tokens are for; `None`: Portcullis's own API.
    pub audience: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    /// `password`, `browser` or `code` (see `oauth::refresh::SignInKind`).
    pub kind: String,
    /// The browser session a `code` sign-in belongs to.
    pub session_id: Option<String>,
    /// When the user authenticated (`None`: at `created_at`).
    pub auth_time: Option<i64>,
    /// How the user authenticated (space-separated RFC 8176 values).
    pub amr: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Absolute end of a browser session; bounds the refresh tokens of its `code` sign-ins.
    pub expires_at: Option<i64>,
    /// SHA-256 of a browser session's cookie.
    pub cookie_digest: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
