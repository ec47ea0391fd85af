//! Authorization as data: roles and the permissions they grant (`RoleService`), and what an
//! actor holds now ([`Authority`]), against which the escalation rule is checked: nobody
//! grants — to a client, a role or a user — or takes over a permission they do not hold
//! themselves (as Kubernetes RBAC's escalation check).
//!
//! What a caller holds is its token's permission scopes that its current roles still grant
//! (or, for a client acting for itself, that the client is still allowed), read from the
//! database by [`AuthorityService::current`] on every administrative request, so a demoted or
//! disabled administrator is refused at once. The HTTP guard that calls it is
//! `http::guard::Require`.

mod cache;
mod roles;

use crate::clients::{ClientError, ClientService};
use crate::domain::Scope;
use crate::oauth::scope::permissions_in;
use crate::oauth::tokens::AccessClaims;
use crate::users::{UserError, UserService};

pub use self::cache::{RoleCache, RoleTable};
pub use self::roles::{Role, RoleError, RoleService};

/// The role whose holders may act on any object, not only their own.
pub const ADMIN_ROLE: &str = "admin";

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user, through an access token issued to `client_id`.
    User { user_id: String, client_id: String },
    /// A client acting for itself (client credentials).
    Client(String),
    /// The operator at the command line, who holds every permission.
    Operator,
}

impl Actor {
    /// The acting user, if a user acts.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::User { user_id, .. } => Some(user_id),
            _ => None,
        }
    }

    /// The client through which the actor acts, if any.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::User { client_id, .. } | Self::Client(client_id) => Some(client_id),
            Self::Operator => None,
        }
    }
}

/// What an actor may grant: the permission scopes it holds now.
#[derive(Debug, Clone)]
pub struct Authority {
    pub actor: Actor,
    /// `None`: every permission (the operator).
    held: Option<Scope>,
}

/// A grant refused by the escalation rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("you cannot grant or take over permissions you do not hold: {missing}")]
pub struct Escalation {
    pub missing: Scope,
}

impl Authority {
    /// The command line: the operator holds every permission.
    pub fn operator() -> Self {
        Self {
            actor: Actor::Operator,
            held: None,
        }
    }

    pub fn new(actor: Actor, held: Scope) -> Self {
        Self {
            actor,
            held: Some(held),
        }
    }

    /// Refuses unless every permission in `wanted` is held (identity scopes, which every user
    /// may grant about themself, are not permissions and always pass).
    pub fn ensure_holds(&self, wanted: &Scope) -> Result<(), Escalation> {
        let Some(held) = &self.held else {
            return Ok(());
        };
        let missing = permissions_in(wanted).minus(held);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Escalation { missing })
        }
    }
}

/// Why no authority could be established for a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The user is disabled or gone, or the client is gone.
    #[error("the account or client is disabled or gone")]
    Gone,
    #[error(transparent)]
    Users(#[from] UserError),
    #[error(transparent)]
    Clients(#[from] ClientError),
}

/// Reads what the bearer of a token holds now.
#[derive(Clone)]
pub struct AuthorityService {
    users: UserService,
    clients: ClientService,
}

impl AuthorityService {
    pub fn new(users: UserService, clients: ClientService) -> Self {
        Self { users, clients }
    }

    /// What the bearer of `claims` holds now: the token's permission scopes that the user's
    /// current roles still grant ([`AuthorityError::Gone`] when the user is disabled or gone),
    /// or, for a client acting for itself, that the client is still allowed.
    pub async fn current(&self, claims: &AccessClaims) -> Result<Authority, AuthorityError> {
        let token_scope = Scope::parse(&claims.scope).unwrap_or_default();
        if let Some(user_id) = claims.user_id() {
            let user = match self.users.get(user_id).await {
                Ok(u) if !u.disabled => u,
                Ok(_) | Err(UserError::NotFound) => return Err(AuthorityError::Gone),
                Err(e) => return Err(e.into()),
            };
            let permitted = self.users.permissions(&user.roles).await?;
            Ok(Authority::new(
                Actor::User {
                    user_id: user.id,
                    client_id: claims.client_id.clone(),
                },
                token_scope.intersect(&permitted),
            ))
        } else {
            let client = self
                .clients
                .get(&claims.client_id)
                .await?
                .ok_or(AuthorityError::Gone)?;
            Ok(Authority::new(
                Actor::Client(client.client_id.clone()),
                token_scope.intersect(&client.scopes),
            ))
        }
    }
}
