//! OAuth clients: public (no secret; `token_endpoint_auth_method=none`) or confidential
//! (secret stored as a SHA-256 digest, compared in constant time), each with its allowed grant
//! types, scopes (and the default scopes granted when a request names none), the resources it
//! may ask tokens for (RFC 8707 audiences), and redirect URIs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use entities::clients;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set, SqlErr};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::clock::SharedClock;
use crate::crypto::{constant_time_eq, random_token, secret_digest};
use crate::domain::{ClientId, Invalid, Scope};
use crate::oauth::scope::{is_administrative, standard_defaults};

/// The public client seeded on first start of the embedded default, for Swagger UI and SPAs.
pub const SEEDED_PUBLIC_CLIENT: &str = "portcullis-spa";

/// Where Swagger UI (served under `/docs`) receives the authorization response; registered
/// for the seeded public client under the issuer.
pub const SWAGGER_UI_REDIRECT_PATH: &str = "/docs/oauth-receiver.html";

/// Minimum length of an operator-chosen client secret. Secrets are stored as a fast digest,
/// which is only sound for high-entropy secrets; generated ones carry 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a client with this client_id already exists")]
    Duplicate,
    #[error("no such client")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("secret generation failed")]
    Random,
}

/// Grant types a client may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        Self::AuthorizationCode,
        Self::Password,
        Self::RefreshToken,
        Self::ClientCredentials,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::Password => "password",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == raw)
    }
}

/// A registered client (the secret digest stays inside this module).
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub grant_types: Vec<GrantType>,
    pub scopes: Scope,
    /// Granted when a request names no scope (never an administrative scope).
    pub default_scopes: Scope,
    /// Resources (RFC 8707 `resource`) the client may ask tokens for, besides Portcullis's
    /// own API.
    pub audiences: Vec<String>,
    /// Exact redirect URIs of the authorization-code flow (RFC 9700 §4.1.3: no patterns).
    pub redirect_uris: Vec<String>,
    /// URIs a logout may return to (OIDC RP-initiated logout), matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// First-party clients skip the consent page.
    pub first_party: bool,
    secret_digest: Option<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether the client may ask tokens for the resource `audience`.
    pub fn allows_audience(&self, audience: &str) -> bool {
        self.audiences.iter().any(|a| a == audience)
    }

    /// Whether `uri` is, character for character, one of the client's redirect URIs.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `uri` is, character for character, one of the client's post-logout URIs.
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// Constant-time check of a presented secret.
    pub fn secret_matches(&self, presented: &str) -> bool {
        match &self.secret_digest {
            Some(stored) => {
                constant_time_eq(secret_digest(presented).as_bytes(), stored.as_bytes())
            }
            None => false,
        }
    }
}

/// How `portcullis client create` (and later the admin API) describes a new client.
#[derive(Debug)]
pub struct NewClient {
    pub client_id: ClientId,
    pub name: String,
    /// `None`: public client. `Some(None)`: confidential, secret generated. `Some(Some(s))`:
    /// confidential with the operator's secret (at least [`MIN_SECRET_LEN`] characters).
    pub secret: Option<Option<SecretString>>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Scope,
    /// `None`: the standard defaults (`openid profile email` ∩ `scopes`).
    pub default_scopes: Option<Scope>,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
}

/// A client as shown once after creation, with its secret if one was generated.
#[derive(Debug, Serialize)]
pub struct CreatedClient {
    pub client_id: String,
    pub name: String,
    pub client_type: &'static str,
    /// Present only when the secret was generated by the server: shown once, never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: String,
    pub default_scopes: String,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
}

/// How long a client read from the database is served from memory. Every confidential-client
/// request (client credentials, introspection) authenticates its client, so this keeps the
/// database off the hot path; a change to a client reaches every instance within this bound.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries beyond which the cache is emptied (bounded memory whatever the traffic).
const CLIENT_CACHE_MAX: usize = 10_000;

type ClientCache = RwLock<HashMap<String, (Instant, Arc<Client>)>>;

/// [`ClientService::web_origins`] and the clock second it was read.
type OriginCache = RwLock<Option<(i64, Arc<HashSet<String>>)>>;

#[derive(Clone)]
pub struct ClientService {
    db: DatabaseConnection,
    clock: SharedClock,
    cache: Arc<ClientCache>,
    web_origins: Arc<OriginCache>,
}

impl ClientService {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self {
            db,
            clock,
            cache: Arc::new(RwLock::new(HashMap::new())),
            web_origins: Arc::default(),
        }
    }

    /// The client, from the cache when read less than [`CLIENT_CACHE_TTL`] ago. Unknown ids
    /// are not cached.
    pub async fn get(&self, client_id: &str) -> Result<Option<Arc<Client>>, ClientError> {
        let now = Instant::now();
        if let Some((at, client)) = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(client_id)
            && now.duration_since(*at) < CLIENT_CACHE_TTL
        {
            return Ok(Some(client.clone()));
        }
        let Some(row) = clients::Entity::find_by_id(client_id.to_string())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let client = Arc::new(to_client(row));
        let mut cache = self
            .cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= CLIENT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(client_id.to_string(), (now, client.clone()));
        Ok(Some(client))
    }

    pub async fn create(&self, new: NewClient) -> Result<CreatedClient, ClientError> {
        let (digest, shown_secret) = match new.secret {
            None => (None, None),
            Some(Some(given)) => {
                if given.expose_secret().chars().count() < MIN_SECRET_LEN {
                    return Err(Invalid {
                        field: "secret",
                        reason: format!("must be at least {MIN_SECRET_LEN} characters"),
                    }
                    .into());
                }
                (Some(secret_digest(given.expose_secret())), None)
            }
            Some(None) => {
                let secret = random_token().map_err(|_| ClientError::Random)?;
                (Some(secret_digest(&secret)), Some(secret))
            }
        };
        validate_redirect_uris("redirect_uris", &new.redirect_uris)?;
        validate_redirect_uris("post_logout_redirect_uris", &new.post_logout_redirect_uris)?;
        validate_audiences(&new.audiences)?;
        let default_scopes = match new.default_scopes {
            Some(d) => d,
            None => standard_defaults(&new.scopes),
        };
        validate_default_scopes(&default_scopes, &new.scopes)?;
        let now = self.clock.now();
        let row = clients::ActiveModel {
            client_id: Set(new.client_id.as_str().to_string()),
            name: Set(new.name.clone()),
            secret_digest: Set(digest.clone()),
            grant_types: Set(grant_list(&new.grant_types)),
            scopes: Set(new.scopes.to_string()),
            default_scopes: Set(default_scopes.to_string()),
            audiences: Set(new.audiences.join("\n")),
            redirect_uris: Set(new.redirect_uris.join("\n")),
            post_logout_redirect_uris: Set(new.post_logout_redirect_uris.join("\n")),
            first_party: Set(new.first_party),
            created_at: Set(now),
            updated_at: Set(now),
        };
        if let Err(e) = row.insert(&self.db).await {
            return Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => ClientError::Duplicate,
                _ => e.into(),
            });
        }
        Ok(CreatedClient {
            client_id: new.client_id.as_str().to_string(),
            name: new.name,
            client_type: if digest.is_some() {
                "confidential"
            } else {
                "public"
            },
            client_secret: shown_secret,
            grant_types: new.grant_types,
            scopes: new.scopes.to_string(),
            default_scopes: default_scopes.to_string(),
            audiences: new.audiences,
            redirect_uris: new.redirect_uris,
            post_logout_redirect_uris: new.post_logout_redirect_uris,
            first_party: new.first_party,
        })
    }

    fn forget(&self, client_id: &str) {
        self.cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(client_id);
    }

    /// Every client, ordered by id.
    pub async fn list(&self) -> Result<Vec<Arc<Client>>, ClientError> {
        use sea_orm::QueryOrder;
        Ok(clients::Entity::find()
            .order_by_asc(clients::Column::ClientId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| Arc::new(to_client(row)))
            .collect())
    }

    /// Changes a client's name, grant types, scopes or redirect URIs (absent: unchanged).
    pub async fn update(
        &self,
        client_id: &str,
        change: ClientChange,
    ) -> Result<Arc<Client>, ClientError> {
        let row = clients::Entity::find_by_id(client_id.to_string())
            .one(&self.db)
            .await?
            .ok_or(ClientError::NotFound)?;
        if let Some(uris) = &change.redirect_uris {
            validate_redirect_uris("redirect_uris", uris)?;
        }
        if let Some(uris) = &change.post_logout_redirect_uris {
            validate_redirect_uris("post_logout_redirect_uris", uris)?;
        }
        if let Some(audiences) = &change.audiences {
            validate_audiences(audiences)?;
        }
        let scopes = change
            .scopes
            .clone()
            .unwrap_or_else(|| Scope::parse(&row.scopes).unwrap_or_default());
        // Defaults follow the allowed scopes unless given: narrowing the allowed scopes
        // narrows the defaults with them.
        let default_scopes = match &change.default_scopes {
            Some(d) => d.clone(),
            None => Scope::parse(&row.default_scopes)
                .unwrap_or_default()
                .intersect(&scopes),
        };
        validate_default_scopes(&default_scopes, &scopes)?;
        let mut active: clients::ActiveModel = row.into();
        active.default_scopes = Set(default_scopes.to_string());
        if let Some(name) = change.name {
            active.name = Set(name);
        }
        if let Some(grants) = change.grant_types {
            active.grant_types = Set(grant_list(&grants));
        }
        if let Some(scopes) = change.scopes {
            active.scopes = Set(scopes.to_string());
        }
        if let Some(uris) = change.redirect_uris {
            active.redirect_uris = Set(uris.join("\n"));
        }
        if let Some(audiences) = change.audiences {
            active.audiences = Set(audiences.join("\n"));
        }
        if let Some(uris) = change.post_logout_redirect_uris {
            active.post_logout_redirect_uris = Set(uris.join("\n"));
        }
        if let Some(first_party) = change.first_party {
            active.first_party = Set(first_party);
        }
        active.updated_at = Set(self.clock.now());
        let row = active.update(&self.db).await?;
        self.forget(client_id);
        Ok(Arc::new(to_client(row)))
    }

    /// Deletes a client (its sign-ins go with it). Returns whether it existed.
    pub async fn delete(&self, client_id: &str) -> Result<bool, ClientError> {
        let deleted = clients::Entity::delete_by_id(client_id.to_string())
            .exec(&self.db)
            .await?;
        self.forget(client_id);
        Ok(deleted.rows_affected == 1)
    }

    /// Replaces a confidential client's secret with a generated one, returned once.
    pub async fn rotate_secret(&self, client_id: &str) -> Result<SecretString, ClientError> {
        let row = clients::Entity::find_by_id(client_id.to_string())
            .one(&self.db)
            .await?
            .ok_or(ClientError::NotFound)?;
        if row.secret_digest.is_none() {
            return Err(Invalid {
                field: "client_id",
                reason: "a public client has no secret".into(),
            }
            .into());
        }
        let secret = random_token().map_err(|_| ClientError::Random)?;
        let mut active: clients::ActiveModel = row.into();
        active.secret_digest = Set(Some(secret_digest(&secret)));
        active.updated_at = Set(self.clock.now());
        active.update(&self.db).await?;
        self.forget(client_id);
        Ok(SecretString::from(secret))
    }

    /// Seeds the public SPA / Swagger UI client if it does not exist yet: first-party, with
    /// the authorization-code, password and refresh grants, and Swagger UI's redirect URI
    /// (`redirect_uri`, under the issuer) registered.
    pub async fn seed_public_client(
        &self,
        all_scopes: &Scope,
        redirect_uri: &str,
    ) -> Result<(), ClientError> {
        if self.get(SEEDED_PUBLIC_CLIENT).await?.is_some() {
            return Ok(());
        }
        let created = self
            .create(NewClient {
                client_id: ClientId::parse(SEEDED_PUBLIC_CLIENT)?,
                name: "Swagger UI and single-page apps".into(),
                secret: None,
                grant_types: vec![
                    GrantType::AuthorizationCode,
                    GrantType::Password,
                    GrantType::RefreshToken,
                ],
                scopes: all_scopes.clone(),
                default_scopes: None,
                audiences: Vec::new(),
                redirect_uris: vec![redirect_uri.to_string()],
                post_logout_redirect_uris: Vec::new(),
                first_party: true,
            })
            .await;
        match created {
            Ok(_) | Err(ClientError::Duplicate) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The web origins of every client: the origin (`scheme://host[:port]`, the port left out
    /// when it is the scheme's default, as browsers send `Origin`) of each `http`/`https`
    /// redirect URI and post-logout URI registered (private-use schemes have none). Served
    /// from memory for [`CLIENT_CACHE_TTL`] of [`Clock`](crate::clock::Clock) time, so a
    /// change to any client reaches every instance within that bound, and tests can move
    /// past it without sleeping.
    pub async fn web_origins(&self) -> Result<Arc<HashSet<String>>, ClientError> {
        use sea_orm::QuerySelect;
        let ttl = i64::try_from(CLIENT_CACHE_TTL.as_secs()).unwrap_or(i64::MAX);
        let now = self.clock.now();
        if let Some((at, origins)) = self
            .web_origins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            // A clock set back counts as expired.
            && (0..ttl).contains(&now.saturating_sub(*at))
        {
            return Ok(origins.clone());
        }
        let rows: Vec<(String, String)> = clients::Entity::find()
            .select_only()
            .column(clients::Column::RedirectUris)
            .column(clients::Column::PostLogoutRedirectUris)
            .into_tuple()
            .all(&self.db)
            .await?;
        let origins: HashSet<String> = rows
            .iter()
            .flat_map(|(redirect, post_logout)| redirect.lines().chain(post_logout.lines()))
            .filter_map(|uri| url::Url::parse(uri).ok())
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .map(|url| url.origin().ascii_serialization())
            .collect();
        let origins = Arc::new(origins);
        *self
            .web_origins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, origins.clone()));
        Ok(origins)
    }
}

/// Changes to a client; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ClientChange {
    pub name: Option<String>,
    pub grant_types: Option<Vec<GrantType>>,
    pub scopes: Option<Scope>,
    pub default_scopes: Option<Scope>,
    pub audiences: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub first_party: Option<bool>,
}

/// Parses grant-type names (`authorization_code`, `password`, `refresh_token`,
/// `client_credentials`), as the admin
/// API and the command line take them.
pub fn parse_grant_types(raw: &[String]) -> Result<Vec<GrantType>, Invalid> {
    raw.iter()
        .map(|g| {
            GrantType::parse(g.trim()).ok_or_else(|| Invalid {
                field: "grant_types",
                reason: format!(
                    "unknown grant type `{}` (authorization_code, password, refresh_token, client_credentials)",
                    g.escape_debug()
                ),
            })
        })
        .collect()
}

fn grant_list(grants: &[GrantType]) -> String {
    grants
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The most redirect URIs (or post-logout URIs) one client may list.
pub const MAX_REDIRECT_URIS: usize = 32;

/// Redirect and post-logout URIs (RFC 6749 §3.1.2, RFC 8252, RFC 9700 §2.1 and §4.1): absolute,
/// no fragment, no user information, no wildcard; `https`, or `http` only on a loopback host
/// (development and native apps), or a private-use scheme with a dot in it (RFC 8252 §7.1,
/// e.g. `com.example.app:/callback`). They are compared character for character.
fn validate_redirect_uris(field: &'static str, uris: &[String]) -> Result<(), Invalid> {
    let invalid = |reason: String| Invalid { field, reason };
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid(format!("at most {MAX_REDIRECT_URIS}")));
    }
    for uri in uris {
        let shown = uri.escape_debug();
        let parsed = url::Url::parse(uri)
            .map_err(|_| invalid(format!("`{shown}` is not an absolute URL")))?;
        if parsed.fragment().is_some() || uri.contains('#') {
            return Err(invalid(format!(
                "`{shown}` must not contain a fragment (RFC 6749 §3.1.2)"
            )));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(format!(
                "`{shown}` must not contain user information"
            )));
        }
        if uri.contains('*') {
            return Err(invalid(format!(
                "`{shown}`: wildcards are not allowed; register every URI exactly"
            )));
        }
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(format!("`{shown}` contains whitespace")));
        }
        let loopback = matches!(
            parsed.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        );
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                return Err(invalid(format!(
                    "`{shown}`: plain http is allowed only on a loopback host (use https)"
                )));
            }
            scheme if scheme.contains('.') => {}
            scheme => {
                return Err(invalid(format!(
                    "`{shown}`: scheme `{scheme}` is neither https nor a private-use scheme \
                     like com.example.app (RFC 8252 §7.1)"
                )));
            }
        }
    }
    Ok(())
}

/// Default scopes must be allowed to the client and never administrative.
fn validate_default_scopes(defaults: &Scope, allowed: &Scope) -> Result<(), Invalid> {
    let outside = defaults.minus(allowed);
    if !outside.is_empty() {
        return Err(Invalid {
            field: "default_scopes",
            reason: format!("not among the client's scopes: {outside}"),
        });
    }
    if let Some(admin) = defaults.iter().find(|s| is_administrative(s)) {
        return Err(Invalid {
            field: "default_scopes",
            reason: format!(
                "`{admin}` is administrative: it is granted only when asked for by name"
            ),
        });
    }
    Ok(())
}

/// The most resources one client may list.
pub const MAX_AUDIENCES: usize = 32;

/// RFC 8707 §2: a resource is an absolute URI without a fragment.
fn validate_audiences(audiences: &[String]) -> Result<(), Invalid> {
    if audiences.len() > MAX_AUDIENCES {
        return Err(Invalid {
            field: "audiences",
            reason: format!("at most {MAX_AUDIENCES}"),
        });
    }
    for audience in audiences {
        crate::domain::Resource::parse(audience).map_err(|e| Invalid {
            field: "audiences",
            reason: e.reason,
        })?;
    }
    Ok(())
}

fn to_client(row: clients::Model) -> Client {
    Client {
        client_id: row.client_id,
        name: row.name,
        grant_types: row
            .grant_types
            .split(' ')
            .filter_map(GrantType::parse)
            .collect(),
        scopes: Scope::parse(&row.scopes).unwrap_or_default(),
        default_scopes: Scope::parse(&row.default_scopes).unwrap_or_default(),
        audiences: lines(&row.audiences),
        redirect_uris: lines(&row.redirect_uris),
        post_logout_redirect_uris: lines(&row.post_logout_redirect_uris),
        first_party: row.first_party,
        secret_digest: row.secret_digest,
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}
