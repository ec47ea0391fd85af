//! Upstream identity providers (social sign-in): providers as data (`identity_providers`, the
//! client secret sealed under the master key), identities linked to accounts
//! (`user_identities`, keyed by provider and upstream subject, never by e-mail), and the
//! round trips in flight (`upstream_logins`: `state` stored as a digest, bound to the browser,
//! used once, ten minutes). [`protocol`] speaks to the upstreams. `ops::UpstreamSignIn` and
//! `ops::IdpAdmin` hold the rules; see docs/ARCHITECTURE.md ("Social sign-in").

pub mod protocol;

use std::sync::Arc;

use entities::{identity_providers, upstream_logins, user_identities};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, MasterKey, random_token, secret_digest};
use crate::domain::Invalid;

pub use protocol::{Protocol, UpstreamError, UpstreamUser};

/// How long a round trip to an upstream (and a pending link) may take.
pub const LOGIN_TTL_SECS: i64 = 600;
/// Google's issuer (a `google` provider is an OpenID provider with this issuer).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GITHUB_AUTH_BASE: &str = "https://github.com";
pub const GITHUB_API_BASE: &str = "https://api.github.com";

/// What kind of upstream a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Oidc,
    Google,
    Github,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "oidc" => Ok(Self::Oidc),
            "google" => Ok(Self::Google),
            "github" => Ok(Self::Github),
            _ => Err(Invalid {
                field: "kind",
                reason: "must be oidc, google or github".into(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Google => "google",
            Self::Github => "github",
        }
    }
}

/// A provider as the service uses it (never its secret).
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub kind: Kind,
    pub display_name: String,
    pub client_id: String,
    pub scopes: String,
    pub allow_signup: bool,
    pub enabled: bool,
    pub issuer: Option<String>,
    pub auth_base_url: Option<String>,
    pub api_base_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Provider {
    /// The OpenID issuer (Google's for `google`).
    pub fn issuer(&self) -> Option<String> {
        match self.kind {
            Kind::Google => Some(GOOGLE_ISSUER.into()),
            Kind::Oidc => self.issuer.clone(),
            Kind::Github => None,
        }
    }

    pub fn auth_base(&self) -> String {
        self.auth_base_url
            .clone()
            .unwrap_or_else(|| GITHUB_AUTH_BASE.into())
    }

    pub fn api_base(&self) -> String {
        self.api_base_url
            .clone()
            .unwrap_or_else(|| GITHUB_API_BASE.into())
    }
}

fn provider_of(m: identity_providers::Model) -> Provider {
    Provider {
        kind: Kind::parse(&m.kind).unwrap_or(Kind::Oidc),
        id: m.id,
        display_name: m.display_name,
        client_id: m.client_id,
        scopes: m.scopes,
        allow_signup: m.allow_signup,
        enabled: m.enabled,
        issuer: m.issuer,
        auth_base_url: m.auth_base_url,
        api_base_url: m.api_base_url,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// A provider to add, or the fields of one to change (absent: unchanged).
#[derive(Clone, Default)]
pub struct ProviderInput {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub display_name: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub scopes: Option<String>,
    pub allow_signup: Option<bool>,
    pub enabled: Option<bool>,
    pub issuer: Option<String>,
    pub auth_base_url: Option<String>,
    pub api_base_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamStoreError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no such identity provider")]
    NotFound,
    #[error("an identity provider with this id already exists")]
    Duplicate,
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// One linked identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub provider_id: String,
    pub subject: String,
    pub user_id: String,
    pub email: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
}

impl From<user_identities::Model> for Identity {
    fn from(m: user_identities::Model) -> Self {
        Self {
            provider_id: m.provider_id,
            subject: m.subject,
            user_id: m.user_id,
            email: m.email,
            created_at: m.created_at,
            last_used_at: m.last_used_at,
        }
    }
}

/// A round trip in flight, as found by its `state`.
pub struct Login {
    pub row: upstream_logins::Model,
    pub verifier: String,
}

fn invalid(field: &'static str, reason: &str) -> Invalid {
    Invalid {
        field,
        reason: reason.to_owned(),
    }
}

fn slug(id: &str) -> Result<String, Invalid> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(id.to_owned())
    } else {
        Err(invalid(
            "id",
            "1–64 characters of lowercase letters, digits, `-` and `_`",
        ))
    }
}

fn text_field(field: &'static str, value: &str, max: usize) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            &format!("1–{max} characters, no control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// An absolute https URL (or http to a loopback host, for development and tests).
fn base_url(field: &'static str, value: &str) -> Result<String, Invalid> {
    let url = url::Url::parse(value.trim()).map_err(|_| invalid(field, "not an absolute URL"))?;
    let loopback = url.host_str().is_some_and(|h| {
        h == "localhost"
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    let ok_scheme = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !ok_scheme || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty()
    {
        return Err(invalid(
            field,
            "must be an https URL without query or fragment (http only on loopback)",
        ));
    }
    Ok(value.trim().trim_end_matches('/').to_owned())
}

/// The providers, identities and round trips.
#[derive(Clone)]
pub struct Upstreams {
    db: DatabaseConnection,
    clock: SharedClock,
    master: Arc<MasterKey>,
    pub protocol: Protocol,
}

fn secret_context(id: &str) -> String {
    format!("portcullis upstream client secret v1 {id}")
}

fn verifier_context(state_digest: &str) -> String {
    format!("portcullis upstream pkce v1 {state_digest}")
}

impl Upstreams {
    pub fn new(db: DatabaseConnection, clock: SharedClock, master: Arc<MasterKey>) -> Self {
        Self {
            db,
            clock,
            master,
            protocol: Protocol::new(),
        }
    }

    // ---- providers -------------------------------------------------------------------

    pub async fn create(&self, input: ProviderInput) -> Result<Provider, UpstreamStoreError> {
        let id = slug(input.id.as_deref().unwrap_or_default())?;
        let kind = Kind::parse(input.kind.as_deref().unwrap_or_default())?;
        let display_name = text_field(
            "display_name",
            input.display_name.as_deref().unwrap_or(kind.as_str()),
            64,
        )?;
        let client_id = text_field(
            "client_id",
            input.client_id.as_deref().unwrap_or_default(),
            256,
        )?;
        let secret = input
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
            .filter(|s| !s.is_empty() && s.len() <= 512)
            .ok_or_else(|| invalid("client_secret", "required, at most 512 characters"))?;
        let default_scopes = match kind {
            Kind::Github => "read:user user:email",
            _ => "openid email profile",
        };
        let scopes = scopes(input.scopes.as_deref().unwrap_or(default_scopes), kind)?;
        let (issuer, auth_base_url, api_base_url) = endpoints(kind, &input)?;
        if provider_exists(&self.db, &id).await? {
            return Err(UpstreamStoreError::Duplicate);
        }
        let now = self.clock.now();
        let row = identity_providers::ActiveModel {
            sealed_client_secret: Set(self.master.seal(&secret_context(&id), secret.as_bytes())?),
            id: Set(id),
            kind: Set(kind.as_str().into()),
            display_name: Set(display_name),
            client_id: Set(client_id),
            scopes: Set(scopes),
            allow_signup: Set(input.allow_signup.unwrap_or(false)),
            enabled: Set(input.enabled.unwrap_or(true)),
            issuer: Set(issuer),
            auth_base_url: Set(auth_base_url),
            api_base_url: Set(api_base_url),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await?;
        Ok(provider_of(row))
    }

    async fn row(&self, id: &str) -> Result<identity_providers::Model, UpstreamStoreError> {
        identity_providers::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .ok_or(UpstreamStoreError::NotFound)
    }

    pub async fn get(&self, id: &str) -> Result<Provider, UpstreamStoreError> {
        Ok(provider_of(self.row(id).await?))
    }

    /// The provider and its client secret (for a round trip).
    pub async fn with_secret(
        &self,
        id: &str,
    ) -> Result<(Provider, SecretString), UpstreamStoreError> {
        let row = self.row(id).await?;
        let secret = self
            .master
            .open(&secret_context(&row.id), &row.sealed_client_secret)?;
        let secret = String::from_utf8(secret).map_err(|_| CryptoError::Open)?;
        Ok((provider_of(row), SecretString::from(secret)))
    }

    pub async fn list(&self) -> Result<Vec<Provider>, UpstreamStoreError> {
        Ok(identity_providers::Entity::find()
            .order_by_asc(identity_providers::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(provider_of)
            .collect())
    }

    /// The enabled providers, for the sign-in page's buttons.
    pub async fn enabled(&self) -> Result<Vec<Provider>, UpstreamStoreError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|p| p.enabled)
            .collect())
    }

    pub async fn update(
        &self,
        id: &str,
        input: ProviderInput,
    ) -> Result<Provider, UpstreamStoreError> {
        let row = self.row(id).await?;
        let kind = Kind::parse(&row.kind)?;
        let mut merged = ProviderInput {
            issuer: row.issuer.clone(),
            auth_base_url: row.auth_base_url.clone(),
            api_base_url: row.api_base_url.clone(),
            ..ProviderInput::default()
        };
        if input.issuer.is_some() {
            merged.issuer = input.issuer.clone();
        }
        if input.auth_base_url.is_some() {
            merged.auth_base_url = input.auth_base_url.clone();
        }
        if input.api_base_url.is_some() {
            merged.api_base_url = input.api_base_url.clone();
        }
        let (issuer, auth_base_url, api_base_url) = endpoints(kind, &merged)?;
        let mut active: identity_providers::ActiveModel = row.into();
        if let Some(name) = &input.display_name {
            active.display_name = Set(text_field("display_name", name, 64)?);
        }
        if let Some(client_id) = &input.client_id {
            active.client_id = Set(text_field("client_id", client_id, 256)?);
        }
        if let Some(secret) = &input.client_secret {
            let secret = secret.expose_secret();
            if secret.is_empty() || secret.len() > 512 {
                return Err(invalid("client_secret", "required, at most 512 characters").into());
            }
            active.sealed_client_secret =
                Set(self.master.seal(&secret_context(id), secret.as_bytes())?);
        }
        if let Some(s) = &input.scopes {
            active.scopes = Set(scopes(s, kind)?);
        }
        if let Some(v) = input.allow_signup {
            active.allow_signup = Set(v);
        }
        if let Some(v) = input.enabled {
            active.enabled = Set(v);
        }
        active.issuer = Set(issuer);
        active.auth_base_url = Set(auth_base_url);
        active.api_base_url = Set(api_base_url);
        active.updated_at = Set(self.clock.now());
        let provider = provider_of(active.update(&self.db).await?);
        self.protocol.forget(id);
        Ok(provider)
    }

    /// Removes a provider; the identities linked through it go with it.
    pub async fn delete(&self, id: &str) -> Result<bool, UpstreamStoreError> {
        user_identities::Entity::delete_many()
            .filter(user_identities::Column::ProviderId.eq(id))
            .exec(&self.db)
            .await?;
        upstream_logins::Entity::delete_many()
            .filter(upstream_logins::Column::ProviderId.eq(id))
            .exec(&self.db)
            .await?;
        let deleted = identity_providers::Entity::delete_by_id(id.to_owned())
            .exec(&self.db)
            .await?;
        self.protocol.forget(id);
        Ok(deleted.rows_affected == 1)
    }

    // ---- round trips ------------------------------------------------------------------

    /// Records a round trip for the browser `browser_cookie`; returns (state, nonce,
    /// verifier), each 256 random bits.
    pub async fn begin(
        &self,
        provider_id: &str,
        browser_cookie: &str,
        return_to: &str,
    ) -> Result<(String, String, String), UpstreamStoreError> {
        let state = random_token()?;
        let nonce = random_token()?;
        let verifier = random_token()?;
        let digest = secret_digest(&state);
        let now = self.clock.now();
        upstream_logins::ActiveModel {
            sealed_verifier: Set(self
                .master
                .seal(&verifier_context(&digest), verifier.as_bytes())?),
            state_digest: Set(digest),
            provider_id: Set(provider_id.to_owned()),
            browser_digest: Set(secret_digest(browser_cookie)),
            nonce: Set(nonce.clone()),
            return_to: Set(return_to.to_owned()),
            created_at: Set(now),
            expires_at: Set(now.saturating_add(LOGIN_TTL_SECS)),
            used_at: Set(None),
            link_digest: Set(None),
            link_subject: Set(None),
            link_email: Set(None),
            link_user_id: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok((state, nonce, verifier))
    }

    /// Takes the round trip named by `state` for `provider_id`, if it is live, was started by
    /// this browser and was not taken before (one conditional `UPDATE`: a replayed or
    /// concurrent callback finds nothing).
    pub async fn claim(
        &self,
        provider_id: &str,
        state: &str,
        browser_cookie: &str,
    ) -> Result<Option<Login>, UpstreamStoreError> {
        let digest = secret_digest(state);
        let now = self.clock.now();
        let taken = upstream_logins::Entity::update_many()
            .col_expr(upstream_logins::Column::UsedAt, Expr::value(now))
            .filter(upstream_logins::Column::StateDigest.eq(digest.as_str()))
            .filter(upstream_logins::Column::ProviderId.eq(provider_id))
            .filter(upstream_logins::Column::BrowserDigest.eq(secret_digest(browser_cookie)))
            .filter(upstream_logins::Column::UsedAt.is_null())
            .filter(upstream_logins::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        if taken.rows_affected != 1 {
            return Ok(None);
        }
        let Some(row) = upstream_logins::Entity::find_by_id(digest.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let verifier = self
            .master
            .open(&verifier_context(&digest), &row.sealed_verifier)?;
        let verifier = String::from_utf8(verifier).map_err(|_| CryptoError::Open)?;
        Ok(Some(Login { row, verifier }))
    }

    /// Parks an upstream identity whose verified address belongs to `user_id`, until the user
    /// proves that account; returns the token of the page that asks for the proof.
    pub async fn park_link(
        &self,
        login: &Login,
        user: &UpstreamUser,
        user_id: &str,
    ) -> Result<String, UpstreamStoreError> {
        let token = random_token()?;
        upstream_logins::Entity::update_many()
            .col_expr(
                upstream_logins::Column::LinkDigest,
                Expr::value(secret_digest(&token)),
            )
            .col_expr(
                upstream_logins::Column::LinkSubject,
                Expr::value(user.subject.clone()),
            )
            .col_expr(
                upstream_logins::Column::LinkEmail,
                Expr::value(user.email.clone()),
            )
            .col_expr(
                upstream_logins::Column::LinkUserId,
                Expr::value(user_id.to_owned()),
            )
            .filter(upstream_logins::Column::StateDigest.eq(login.row.state_digest.as_str()))
            .exec(&self.db)
            .await?;
        Ok(token)
    }

    /// The parked link named by `token`, if live and started by this browser.
    pub async fn parked(
        &self,
        token: &str,
        browser_cookie: &str,
    ) -> Result<Option<upstream_logins::Model>, UpstreamStoreError> {
        Ok(upstream_logins::Entity::find()
            .filter(upstream_logins::Column::LinkDigest.eq(secret_digest(token)))
            .filter(upstream_logins::Column::BrowserDigest.eq(secret_digest(browser_cookie)))
            .filter(upstream_logins::Column::ExpiresAt.gt(self.clock.now()))
            .one(&self.db)
            .await?)
    }

    /// Takes a parked link once (a second proof finds nothing).
    pub async fn take_parked(
        &self,
        row: &upstream_logins::Model,
    ) -> Result<bool, UpstreamStoreError> {
        let taken = upstream_logins::Entity::update_many()
            .col_expr(
                upstream_logins::Column::LinkDigest,
                Expr::value(Option::<String>::None),
            )
            .filter(upstream_logins::Column::StateDigest.eq(row.state_digest.as_str()))
            .filter(upstream_logins::Column::LinkDigest.is_not_null())
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Deletes round trips past their lifetime (the duties).
    pub async fn purge_expired(&self) -> Result<u64, UpstreamStoreError> {
        Ok(upstream_logins::Entity::delete_many()
            .filter(upstream_logins::Column::ExpiresAt.lt(self.clock.now()))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    // ---- identities -------------------------------------------------------------------

    pub async fn identity(
        &self,
        provider_id: &str,
        subject: &str,
    ) -> Result<Option<Identity>, UpstreamStoreError> {
        Ok(
            user_identities::Entity::find_by_id((provider_id.to_owned(), subject.to_owned()))
                .one(&self.db)
                .await?
                .map(Identity::from),
        )
    }

    /// Notes a sign-in through an identity.
    pub async fn touch(&self, identity: &Identity) -> Result<(), UpstreamStoreError> {
        user_identities::Entity::update_many()
            .col_expr(
                user_identities::Column::LastUsedAt,
                Expr::value(self.clock.now()),
            )
            .filter(user_identities::Column::ProviderId.eq(identity.provider_id.as_str()))
            .filter(user_identities::Column::Subject.eq(identity.subject.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Links (provider, subject) to `user_id` on `conn` (false: already linked to someone).
    pub async fn link_in(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        provider_id: &str,
        subject: &str,
        user_id: &str,
        email: Option<&str>,
    ) -> Result<bool, UpstreamStoreError> {
        let now = self.clock.now();
        let inserted = user_identities::Entity::insert(user_identities::ActiveModel {
            provider_id: Set(provider_id.to_owned()),
            subject: Set(subject.to_owned()),
            user_id: Set(user_id.to_owned()),
            email: Set(email.map(str::to_owned)),
            created_at: Set(now),
            last_used_at: Set(now),
        })
        .on_conflict(
            sea_orm::sea_query::OnConflict::columns([
                user_identities::Column::ProviderId,
                user_identities::Column::Subject,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(conn)
        .await?;
        Ok(inserted == 1)
    }

    pub async fn identities_of(&self, user_id: &str) -> Result<Vec<Identity>, UpstreamStoreError> {
        Ok(user_identities::Entity::find()
            .filter(user_identities::Column::UserId.eq(user_id))
            .order_by_asc(user_identities::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Identity::from)
            .collect())
    }

    /// Removes the user's links to `provider_id`; returns how many went.
    pub async fn unlink(
        &self,
        user_id: &str,
        provider_id: &str,
    ) -> Result<u64, UpstreamStoreError> {
        Ok(user_identities::Entity::delete_many()
            .filter(user_identities::Column::UserId.eq(user_id))
            .filter(user_identities::Column::ProviderId.eq(provider_id))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}

async fn provider_exists(db: &DatabaseConnection, id: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(identity_providers::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .is_some())
}

fn scopes(text: &str, kind: Kind) -> Result<String, Invalid> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let ok = !tokens.is_empty()
        && tokens.len() <= 20
        && tokens.iter().all(|t| {
            t.len() <= 128
                && t.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        });
    if !ok {
        return Err(invalid("scopes", "1–20 space-separated scope tokens"));
    }
    if kind != Kind::Github && !tokens.contains(&"openid") {
        return Err(invalid(
            "scopes",
            "an OpenID provider needs `openid` (and `email` to match accounts)",
        ));
    }
    Ok(tokens.join(" "))
}

type Endpoints = (Option<String>, Option<String>, Option<String>);

fn endpoints(kind: Kind, input: &ProviderInput) -> Result<Endpoints, Invalid> {
    Ok(match kind {
        Kind::Oidc => {
            let issuer = input
                .issuer
                .as_deref()
                .ok_or_else(|| invalid("issuer", "required for kind oidc"))?;
            (Some(base_url("issuer", issuer)?), None, None)
        }
        Kind::Google => (None, None, None),
        Kind::Github => (
            None,
            input
                .auth_base_url
                .as_deref()
                .map(|u| base_url("auth_base_url", u))
                .transpose()?,
            input
                .api_base_url
                .as_deref()
                .map(|u| base_url("api_base_url", u))
                .transpose()?,
        ),
    })
}
