//! `clients`: OAuth clients, public (no secret) or confidential (secret digest).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "clients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: String,
    pub name: String,
    pub secret_digest: Option<String>,
    /// Space-separated grant types.
    pub grant_types: String,
    /// Space-separated scopes the client may request.
    pub scopes: String,
    /// Space-separated scopes granted when a request names none.
    pub default_scopes: String,
    /// Newline-separated resources (RFC 8707) the client may ask tokens for.
    pub audiences: String,
    /// Newline-separated redirect URIs.
    pub redirect_uris: String,
    /// Newline-separated URIs a logout may return to (OIDC RP-initiated logout).
    pub post_logout_redirect_uris: String,
    /// First-party clients skip the consent page.
    pub first_party: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
