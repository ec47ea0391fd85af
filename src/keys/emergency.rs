//! Emergency revocation of a signing key, with everything around it: the database change
//! ([`KeyService::revoke`]), the shared deny list that makes every instance refuse the key's
//! tokens before it reloads, and the security event.

use serde_json::json;

use super::service::{KeyError, KeyService, Revocation};
use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::oauth::tokens::deny_key_for_kid;
use crate::store::Store;

/// The result of [`revoke_key`].
#[derive(Debug)]
pub struct Revoked {
    pub revocation: Revocation,
    /// The kid reached the shared deny list (false: the store was unreachable).
    pub denied: bool,
}

/// Revokes `kid`, deny-lists it in `store` for as long as any token it signed could live,
/// and records `key.revoked` (with `via`, e.g. `cli`).
pub async fn revoke_key(
    keys: &KeyService,
    store: &dyn Store,
    audit: &Audit,
    kid: &str,
    via: &str,
) -> Result<Revoked, KeyError> {
    let revocation = keys.revoke(kid).await?;
    let denied = match store
        .deny(&deny_key_for_kid(kid), keys.timing().retired_publication())
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, %kid, "could not deny-list the revoked key; instances refuse its tokens after their next key reload");
            false
        }
    };
    tracing::warn!(%kid, was = revocation.was.as_str(), "signing key revoked");
    audit
        .record(
            &Origin::default(),
            Event::new(EventType::KeyRevoked, Outcome::Success).details(json!({
                "kid": revocation.kid,
                "was": revocation.was.as_str(),
                "promoted_kid": revocation.promoted,
                "next_kid": revocation.next,
                "deny_listed": denied,
                "via": via,
            })),
        )
        .await;
    Ok(Revoked { revocation, denied })
}
