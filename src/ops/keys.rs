//! Signing-key administration: list, rotate at once, and the emergency revocation with
//! everything around it: the database change (`KeyService::revoke`), the shared deny list that
//! makes every instance refuse the key's tokens before it reloads, and the security event.

use std::sync::Arc;

use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::audit::{Audit, EventType};
use crate::keys::{KeyInfo, KeyService, Revocation, Rotation};
use crate::oauth::tokens::deny_key_for_kid;
use crate::store::Store;

/// The result of [`KeyAdmin::revoke`].
#[derive(Debug)]
pub struct Revoked {
    pub revocation: Revocation,
    /// The kid reached the deny list (false: the store was unreachable; instances refuse its
    /// tokens after their next key reload).
    pub denied: bool,
}

#[derive(Clone)]
pub struct KeyAdmin {
    keys: KeyService,
    store: Arc<dyn Store>,
    audit: Audit,
}

impl KeyAdmin {
    pub fn new(keys: KeyService, store: Arc<dyn Store>, audit: Audit) -> Self {
        Self { keys, store, audit }
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, OpError> {
        Ok(self.keys.list().await?)
    }

    /// Promotes `next` at once (the caller warns when it was published for less than the
    /// lead time: [`Rotation::published_for`]).
    pub async fn rotate(&self, caller: &Caller) -> Result<Rotation, OpError> {
        let rotation = self.keys.rotate_now().await?;
        caller
            .record(
                &self.audit,
                EventType::KeyRotated,
                json!({
                    "current_kid": rotation.current,
                    "retired_kid": rotation.retired,
                    "next_kid": rotation.next,
                }),
            )
            .await;
        Ok(rotation)
    }

    /// Emergency: revokes `kid`, deny-lists it for as long as any token it signed could live,
    /// and records `key.revoked`. The database change stands even when the store is down.
    pub async fn revoke(&self, caller: &Caller, kid: &str) -> Result<Revoked, OpError> {
        let revocation = self.keys.revoke(kid).await?;
        let denied = match self
            .store
            .deny(
                &deny_key_for_kid(kid),
                self.keys.timing().retired_publication(),
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, %kid, "could not deny-list the revoked key; instances refuse its tokens after their next key reload");
                false
            }
        };
        tracing::warn!(%kid, was = revocation.was.as_str(), "signing key revoked");
        caller
            .record(
                &self.audit,
                EventType::KeyRevoked,
                json!({
                    "kid": revocation.kid,
                    "was": revocation.was.as_str(),
                    "promoted_kid": revocation.promoted,
                    "next_kid": revocation.next,
                    "deny_listed": denied,
                }),
            )
            .await;
        Ok(Revoked { revocation, denied })
    }
}
