//! Upstream identity providers: `/api/v1/admin/identity-providers` (permission `users:admin`;
//! the client secret write-only) and the signed-in user's links,
//! `/api/v1/users/me/identities`. Thin adapters over `ops::IdpAdmin` and
//! `ops::UpstreamSignIn`.

use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use secrecy::SecretString;

use crate::http::auth::ApiScopes;
use crate::http::guard::{Profile, ProfileWrite, Require, UsersAdmin};
use crate::http::problem::{ApiError, Created, NoContent};
use crate::http::tags::ApiTags;
use crate::ops::{IdpAdmin, UpstreamSignIn};
use crate::upstream::{Identity, Provider, ProviderInput};

/// An upstream identity provider to add.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewProviderBody {
    /// A slug (lowercase letters, digits, `-`, `_`), used in the callback path
    /// `/ui/upstream/{id}/callback`.
    #[oai(validator(max_length = 64))]
    pub id: String,
    /// `oidc` (any OpenID provider, by its issuer's discovery document), `google`, `github`.
    pub kind: String,
    #[oai(validator(max_length = 64))]
    pub display_name: Option<String>,
    #[oai(validator(max_length = 256))]
    pub client_id: String,
    /// Write-only; sealed at rest, never returned.
    #[oai(write_only, validator(max_length = 512))]
    pub client_secret: String,
    /// Space-separated scopes asked of the upstream (default `openid email profile`, for
    /// GitHub `read:user user:email`).
    #[oai(validator(max_length = 1024))]
    pub scopes: Option<String>,
    /// Whether a first sign-in that matches no account creates one (default false).
    pub allow_signup: Option<bool>,
    /// For `oidc`: the issuer; its `/.well-known/openid-configuration` is read.
    #[oai(validator(max_length = 2048))]
    pub issuer: Option<String>,
    /// For `github` (Enterprise Server): where `/login/oauth/…` lives.
    #[oai(validator(max_length = 2048))]
    pub auth_base_url: Option<String>,
    /// For `github` (Enterprise Server): the REST API base.
    #[oai(validator(max_length = 2048))]
    pub api_base_url: Option<String>,
}

/// A change to a provider (absent fields stay).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ProviderPatch {
    #[oai(validator(max_length = 64))]
    pub display_name: Option<String>,
    #[oai(validator(max_length = 256))]
    pub client_id: Option<String>,
    #[oai(write_only, validator(max_length = 512))]
    pub client_secret: Option<String>,
    #[oai(validator(max_length = 1024))]
    pub scopes: Option<String>,
    pub allow_signup: Option<bool>,
    /// A disabled provider has no button and its callbacks are refused.
    pub enabled: Option<bool>,
    #[oai(validator(max_length = 2048))]
    pub issuer: Option<String>,
    #[oai(validator(max_length = 2048))]
    pub auth_base_url: Option<String>,
    #[oai(validator(max_length = 2048))]
    pub api_base_url: Option<String>,
}

/// An upstream identity provider (never its client secret).
#[derive(Debug, Object)]
pub struct ProviderView {
    pub id: String,
    pub kind: String,
    pub display_name: String,
    pub client_id: String,
    pub scopes: String,
    pub allow_signup: bool,
    pub enabled: bool,
    pub issuer: Option<String>,
    pub auth_base_url: Option<String>,
    pub api_base_url: Option<String>,
    /// The redirect URI to register at the upstream.
    pub redirect_uri: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn view(p: Provider, upstream: &UpstreamSignIn) -> ProviderView {
    ProviderView {
        redirect_uri: upstream.callback_url(&p.id),
        issuer: p.issuer(),
        id: p.id,
        kind: p.kind.as_str().into(),
        display_name: p.display_name,
        client_id: p.client_id,
        scopes: p.scopes,
        allow_signup: p.allow_signup,
        enabled: p.enabled,
        auth_base_url: p.auth_base_url,
        api_base_url: p.api_base_url,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

/// One upstream account linked to the user.
#[derive(Debug, Object)]
pub struct IdentityView {
    pub provider_id: String,
    /// The upstream's id of the account.
    pub subject: String,
    /// The upstream account's address when it was linked.
    pub email: Option<String>,
    pub linked_at: i64,
    pub last_used_at: i64,
}

impl From<Identity> for IdentityView {
    fn from(i: Identity) -> Self {
        Self {
            provider_id: i.provider_id,
            subject: i.subject,
            email: i.email,
            linked_at: i.created_at,
            last_used_at: i.last_used_at,
        }
    }
}

pub struct UpstreamApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Admin")]
impl UpstreamApi {
    /// List upstream identity providers
    ///
    /// Needs `users:admin`.
    #[oai(
        path = "/admin/identity-providers",
        method = "get",
        operation_id = "admin_list_identity_providers"
    )]
    async fn list(
        &self,
        idps: &IdpAdmin,
        upstream: &UpstreamSignIn,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] _auth: Require<UsersAdmin>,
    ) -> Result<Json<Vec<ProviderView>>, ApiError> {
        Ok(Json(
            idps.list()
                .await?
                .into_iter()
                .map(|p| view(p, upstream))
                .collect(),
        ))
    }

    /// Add an upstream identity provider
    ///
    /// Needs `users:admin`. Register `redirect_uri` of the answer at the upstream.
    #[oai(
        path = "/admin/identity-providers",
        method = "post",
        operation_id = "admin_create_identity_provider"
    )]
    async fn create(
        &self,
        idps: &IdpAdmin,
        upstream: &UpstreamSignIn,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        body: Json<NewProviderBody>,
    ) -> Result<Created<ProviderView>, ApiError> {
        let b = body.0;
        let input = ProviderInput {
            id: Some(b.id),
            kind: Some(b.kind),
            display_name: b.display_name,
            client_id: Some(b.client_id),
            client_secret: Some(SecretString::from(b.client_secret)),
            scopes: b.scopes,
            allow_signup: b.allow_signup,
            enabled: None,
            issuer: b.issuer,
            auth_base_url: b.auth_base_url,
            api_base_url: b.api_base_url,
        };
        let provider = idps.create(&auth.caller(req), input).await?;
        Ok(Created::Created(Json(view(provider, upstream))))
    }

    /// Get an upstream identity provider
    ///
    /// Needs `users:admin`.
    #[oai(
        path = "/admin/identity-providers/:id",
        method = "get",
        operation_id = "admin_get_identity_provider"
    )]
    async fn get(
        &self,
        idps: &IdpAdmin,
        upstream: &UpstreamSignIn,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] _auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<Json<ProviderView>, ApiError> {
        Ok(Json(view(idps.get(&id.0).await?, upstream)))
    }

    /// Change an upstream identity provider
    ///
    /// Needs `users:admin`.
    #[oai(
        path = "/admin/identity-providers/:id",
        method = "patch",
        operation_id = "admin_update_identity_provider"
    )]
    async fn update(
        &self,
        idps: &IdpAdmin,
        upstream: &UpstreamSignIn,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
        body: Json<ProviderPatch>,
    ) -> Result<Json<ProviderView>, ApiError> {
        let b = body.0;
        let input = ProviderInput {
            display_name: b.display_name,
            client_id: b.client_id,
            client_secret: b.client_secret.map(SecretString::from),
            scopes: b.scopes,
            allow_signup: b.allow_signup,
            enabled: b.enabled,
            issuer: b.issuer,
            auth_base_url: b.auth_base_url,
            api_base_url: b.api_base_url,
            ..ProviderInput::default()
        };
        Ok(Json(view(
            idps.update(&auth.caller(req), &id.0, input).await?,
            upstream,
        )))
    }

    /// Remove an upstream identity provider
    ///
    /// Needs `users:admin`. The links made through it go with it (accounts with no password
    /// and no other link can still set a password through a password reset).
    #[oai(
        path = "/admin/identity-providers/:id",
        method = "delete",
        operation_id = "admin_delete_identity_provider"
    )]
    async fn delete(
        &self,
        idps: &IdpAdmin,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        idps.delete(&auth.caller(req), &id.0).await?;
        Ok(NoContent::NoContent)
    }

    /// The signed-in user's linked accounts
    ///
    /// Needs `profile`. Upstream accounts (Google, GitHub, another OpenID provider) that sign
    /// in to this account.
    #[oai(
        path = "/users/me/identities",
        method = "get",
        operation_id = "list_my_identities",
        tag = "ApiTags::Users"
    )]
    async fn mine(
        &self,
        upstream: &UpstreamSignIn,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
    ) -> Result<Json<Vec<IdentityView>>, ApiError> {
        Ok(Json(
            upstream
                .identities(&auth.caller(req))
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }

    /// Unlink an upstream provider
    ///
    /// Needs `profile:write`. Refused (409) when it is the account's only way to sign in (no
    /// password and no other linked provider).
    #[oai(
        path = "/users/me/identities/:provider_id",
        method = "delete",
        operation_id = "unlink_my_identity",
        tag = "ApiTags::Users"
    )]
    async fn unlink(
        &self,
        upstream: &UpstreamSignIn,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<ProfileWrite>,
        provider_id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        upstream.unlink(&auth.caller(req), &provider_id.0).await?;
        Ok(NoContent::NoContent)
    }
}
