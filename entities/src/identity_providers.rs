//! `identity_providers`: upstream identity providers, as data. The client secret is sealed
//! under the master key (it must be sent to the upstream, so it cannot be a digest).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "identity_providers")]
pub struct Model {
    /// The operator's slug, used in the callback path `/ui/upstream/{id}/callback`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `oidc`, `google` or `github`.
    pub kind: String,
    pub display_name: String,
    pub client_id: String,
    pub sealed_client_secret: String,
    /// Space-separated scopes asked of the upstream.
    pub scopes: String,
    /// Whether a first sign-in with no matching account creates one.
    pub allow_signup: bool,
    pub enabled: bool,
    /// The OpenID issuer (`oidc`, `google`); its discovery document is read from it.
    pub issuer: Option<String>,
    /// GitHub (Enterprise Server): where `/login/oauth/…` lives.
    pub auth_base_url: Option<String>,
    /// GitHub (Enterprise Server): the REST API base.
    pub api_base_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
