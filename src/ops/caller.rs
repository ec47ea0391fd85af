//! Who acts in a use case: the authority they hold now and where the request came from; and
//! the audit record of what they did.

use serde_json::{Value, json};

use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::domain::Scope;
use crate::rbac::{Actor, Authority};

/// Who acts, with what authority, from where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub authority: Authority,
    pub origin: Origin,
}

impl Caller {
    /// The operator at the command line: every permission, no request.
    pub fn operator() -> Self {
        Self {
            authority: Authority::operator(),
            origin: Origin::default(),
        }
    }

    pub fn new(authority: Authority, origin: Origin) -> Self {
        Self { authority, origin }
    }

    /// A user acting on their own account through a token issued to `client_id` (self-service
    /// holds no administrative authority: `held` is the token's scope).
    pub fn user(user_id: &str, client_id: &str, scope: Scope, origin: Origin) -> Self {
        Self::new(
            Authority::new(
                Actor::User {
                    user_id: user_id.to_string(),
                    client_id: client_id.to_string(),
                },
                scope,
            ),
            origin,
        )
    }

    pub fn actor(&self) -> &Actor {
        &self.authority.actor
    }

    /// Records a successful `kind` done by this caller; the operator's events say
    /// `"via": "cli"`.
    pub async fn record(&self, audit: &Audit, kind: EventType, mut details: Value) {
        if self.actor() == &Actor::Operator
            && let Some(map) = details.as_object_mut()
        {
            map.insert("via".into(), json!("cli"));
        }
        let mut event = Event::new(kind, Outcome::Success).details(details);
        if let Some(user) = self.actor().user_id() {
            event = event.actor(user);
        }
        if let Some(client) = self.actor().client_id() {
            event = event.client(client);
        }
        audit.record(&self.origin, event).await;
    }
}
