//! Request and response bodies of the admin API, mapped from the use cases' types.

use poem_openapi::Object;

use crate::clients::{Client, CreatedClient};
use crate::keys::{KeyInfo, Rotation};
use crate::ops::keys::Revoked;
use crate::rbac::Role;
use crate::users::User;

/// A user account as administrators see it.
#[derive(Debug, Object)]
pub struct AdminUser {
    /// User id.
    pub id: String,
    pub username: String,
    pub email: String,
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// Roles held.
    pub roles: Vec<String>,
    /// Disabled accounts cannot sign in or refresh.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<User> for AdminUser {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email,
            name: u.name,
            roles: u.roles,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// One page of users.
#[derive(Debug, Object)]
pub struct UserPage {
    pub items: Vec<AdminUser>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// The complete set of roles a user should hold.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RolesBody {
    pub roles: Vec<String>,
}

/// The complete set of permissions a role should grant.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PermissionsBody {
    pub permissions: Vec<String>,
}

/// A role and the permissions it grants.
#[derive(Debug, Object)]
pub struct RoleView {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// Holders must turn on two-factor authentication before they may use the API.
    pub require_mfa: bool,
}

/// Whether holders of a role must have two-factor authentication on.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct RoleMfaBody {
    pub required: bool,
}

impl From<Role> for RoleView {
    fn from(r: Role) -> Self {
        Self {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            require_mfa: r.require_mfa,
        }
    }
}

/// An OAuth client (never its secret).
#[derive(Debug, Object)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    /// `public` or `confidential`.
    pub client_type: String,
    pub grant_types: Vec<String>,
    /// Scopes the client may request, space-separated.
    pub scopes: String,
    /// Space-separated scopes granted when a request names none.
    pub default_scopes: String,
    /// Resources (RFC 8707) the client may ask tokens for, besides Portcullis's own API.
    pub audiences: Vec<String>,
    /// Exact redirect URIs of the authorization-code flow.
    pub redirect_uris: Vec<String>,
    /// URIs a logout (`/oauth/end_session`) may return to.
    pub post_logout_redirect_uris: Vec<String>,
    /// First-party clients skip the consent page.
    pub first_party: bool,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            client_type: if c.is_public() {
                "public"
            } else {
                "confidential"
            }
            .into(),
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            scopes: c.scopes.to_string(),
            default_scopes: c.default_scopes.to_string(),
            audiences: c.audiences.clone(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            first_party: c.first_party,
        }
    }
}

/// A new client.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewClientBody {
    /// 1–128 characters of letters, digits, `.`, `_`, `~`, `-`.
    pub client_id: String,
    /// Display name (defaults to the client id).
    pub name: Option<String>,
    /// A public client has no secret (SPAs, native apps); otherwise a secret is generated.
    #[oai(default)]
    pub public: bool,
    /// `authorization_code`, `password`, `refresh_token`, `client_credentials`.
    pub grant_types: Vec<String>,
    /// Space-separated scopes the client may request. Permission scopes can be given only
    /// by a caller who holds them.
    #[oai(default)]
    pub scopes: String,
    /// Space-separated scopes granted when a request names none; within `scopes`, never an
    /// administrative scope. Default: `openid profile email` ∩ `scopes`.
    pub default_scopes: Option<String>,
    /// Resources (absolute URIs, RFC 8707) the client may ask tokens for with `resource`.
    #[oai(default)]
    pub audiences: Vec<String>,
    /// Exact redirect URIs (https; http only on loopback; or a private-use scheme such as
    /// `com.example.app:/callback`); no fragment, no wildcard.
    #[oai(default)]
    pub redirect_uris: Vec<String>,
    /// URIs a logout may return to; same rules as `redirect_uris`.
    #[oai(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// First-party clients skip the consent page.
    #[oai(default)]
    pub first_party: bool,
}

/// A client just created, with its generated secret (shown only here).
#[derive(Debug, Object)]
pub struct CreatedClientView {
    pub client_id: String,
    pub name: String,
    pub client_type: String,
    /// The generated secret of a confidential client: store it now, it is not shown again.
    #[oai(skip_serializing_if_is_none)]
    pub client_secret: Option<String>,
    pub grant_types: Vec<String>,
    pub scopes: String,
    pub default_scopes: String,
    pub audiences: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
}

impl From<CreatedClient> for CreatedClientView {
    fn from(c: CreatedClient) -> Self {
        Self {
            client_id: c.client_id,
            name: c.name,
            client_type: c.client_type.into(),
            client_secret: c.client_secret,
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            scopes: c.scopes,
            default_scopes: c.default_scopes,
            audiences: c.audiences,
            redirect_uris: c.redirect_uris,
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            first_party: c.first_party,
        }
    }
}

/// Changes to a client; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<String>,
    pub default_scopes: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub first_party: Option<bool>,
}

/// A freshly generated client secret.
#[derive(Debug, Object)]
pub struct ClientSecretView {
    pub client_id: String,
    /// Store it now: it is not shown again.
    pub client_secret: String,
}

/// One audit event.
#[derive(Debug, Object)]
pub struct AuditEventView {
    /// Increasing id (also the pagination cursor).
    pub id: i64,
    /// Unix seconds.
    pub occurred_at: i64,
    /// e.g. `auth.sign_in`, `token.refresh_reuse_detected`, `user.roles_changed`.
    pub event_type: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The user who acted (for admin actions, the admin).
    #[oai(skip_serializing_if_is_none)]
    pub actor_user_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
    /// Event-specific details.
    pub details: serde_json::Value,
}

impl From<entities::audit_events::Model> for AuditEventView {
    fn from(e: entities::audit_events::Model) -> Self {
        Self {
            id: e.id,
            occurred_at: e.occurred_at,
            event_type: e.event_type,
            outcome: e.outcome,
            actor_user_id: e.actor_user_id,
            client_id: e.client_id,
            ip: e.ip,
            request_id: e.request_id,
            details: serde_json::from_str(&e.details).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// One page of audit events.
#[derive(Debug, Object)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// A signing key (public facts only).
#[derive(Debug, Object)]
pub struct KeyView {
    pub kid: String,
    /// `next`, `current`, `retired` or `revoked`.
    pub state: String,
    pub alg: String,
    /// Unix seconds.
    pub created_at: i64,
    #[oai(skip_serializing_if_is_none)]
    pub activated_at: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub retired_at: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<i64>,
}

impl From<KeyInfo> for KeyView {
    fn from(k: KeyInfo) -> Self {
        Self {
            kid: k.kid,
            state: k.state,
            alg: k.alg,
            created_at: k.created_at,
            activated_at: k.activated_at,
            retired_at: k.retired_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Object)]
pub struct RotationView {
    /// The key that signs from now on (the former `next`).
    pub current_kid: String,
    /// The former `current`, now retired.
    #[oai(skip_serializing_if_is_none)]
    pub retired_kid: Option<String>,
    /// The freshly published `next`.
    pub next_kid: String,
    /// How long the promoted key had been published before it started signing.
    pub published_for_secs: u64,
}

impl From<Rotation> for RotationView {
    fn from(r: Rotation) -> Self {
        Self {
            current_kid: r.current,
            retired_kid: r.retired,
            next_kid: r.next,
            published_for_secs: r.published_for.as_secs(),
        }
    }
}

/// What a revocation did.
#[derive(Debug, Object)]
pub struct RevocationView {
    pub kid: String,
    /// The state the key was in.
    pub was: String,
    /// The key promoted in its place, when the revoked key was signing.
    #[oai(skip_serializing_if_is_none)]
    pub promoted_kid: Option<String>,
    /// The fresh `next`, when one was generated.
    #[oai(skip_serializing_if_is_none)]
    pub next_kid: Option<String>,
    /// Whether the kid reached the shared deny list (false: the store was unreachable).
    pub deny_listed: bool,
}

impl From<Revoked> for RevocationView {
    fn from(r: Revoked) -> Self {
        Self {
            kid: r.revocation.kid,
            was: r.revocation.was.as_str().into(),
            promoted_kid: r.revocation.promoted,
            next_kid: r.revocation.next,
            deny_listed: r.denied,
        }
    }
}
