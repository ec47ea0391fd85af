//! Sign-ins, and ending them: the one place where a user's access ends.
//!
//! Every user token belongs to a recorded sign-in: a row of `refresh_families` (see
//! `oauth::refresh`), created by the password grant whether or not the client gets a refresh
//! token, whose id every access token of the sign-in carries as `sid`. Ending a sign-in revokes
//! the row (and its refresh tokens) in the database and puts the `sid` on the deny list, so
//! every access token of it is refused by Portcullis's API, userinfo and introspection.
//!
//! The database is the source of truth: every instance re-reads the sign-ins revoked recently
//! on each reload pass ([`SignIns::sync`]) and deny-lists them in its own store. So a sign-in
//! ended by another instance, or by the command line on the embedded default (which cannot
//! reach the server's in-process store), is refused everywhere within the key reload interval;
//! with Redis it is refused at once, because the ending operation writes the shared store too.

use std::time::Duration;

use crate::clock::SharedClock;
use crate::oauth::refresh::{Issued, RefreshError, RefreshService};
use crate::oauth::tokens::{LEEWAY, TokenService};
use crate::store::StoreError;

/// How far back each reload pass looks for revoked sign-ins: revocations are stamped with
/// their start time and may commit a little later, and instances' clocks differ a little.
const SYNC_OVERLAP_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The account was disabled, or its access ended, while the sign-in was in progress.
    #[error("the account changed during the sign-in")]
    UserChanged,
    #[error(transparent)]
    Refresh(RefreshError),
    #[error("the deny list is unreachable: {0}")]
    Store(#[from] StoreError),
}

impl From<RefreshError> for SignInError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::UserChanged => Self::UserChanged,
            other => Self::Refresh(other),
        }
    }
}

/// A sign-in about to be recorded.
pub struct NewSignIn<'a> {
    /// The id the sign-in's tokens carry as `sid` (see [`SignIns::new_id`]).
    pub id: &'a str,
    pub user_id: &'a str,
    /// The account's `access_version` as read when the sign-in checked it.
    pub access_version: i64,
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The resource the access tokens are for (`None`: Portcullis's own API).
    pub audience: Option<&'a str>,
    /// Whether the client gets a refresh token.
    pub with_refresh_token: bool,
}

#[derive(Clone)]
pub struct SignIns {
    refresh: RefreshService,
    tokens: TokenService,
    clock: SharedClock,
}

impl SignIns {
    pub fn new(refresh: RefreshService, tokens: TokenService, clock: SharedClock) -> Self {
        Self {
            refresh,
            tokens,
            clock,
        }
    }

    /// A fresh sign-in id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Records a sign-in; returns its first refresh token when one was asked for. Refused
    /// with [`SignInError::UserChanged`] when the account was disabled or its access ended
    /// after `access_version` was read. Tokens minted for the sign-in before this call are
    /// covered by any later ending of it.
    pub async fn record(&self, new: &NewSignIn<'_>) -> Result<Option<Issued>, SignInError> {
        Ok(self
            .refresh
            .start(
                new.id,
                new.user_id,
                new.access_version,
                new.client_id,
                new.scope,
                new.audience,
                new.with_refresh_token,
            )
            .await?)
    }

    /// Ends one sign-in: its refresh tokens are revoked and its access tokens refused.
    /// Returns whether it was still open.
    pub async fn end(&self, sid: &str, reason: &str) -> Result<bool, SignInError> {
        let open = self.refresh.revoke_family(sid, reason).await?;
        self.tokens.revoke_sign_in(sid).await?;
        Ok(open)
    }

    /// Ends every sign-in of a user, and any sign-in in progress for them (it will be
    /// refused when it tries to record itself). Returns the ids of the sign-ins ended.
    pub async fn end_all(&self, user_id: &str, reason: &str) -> Result<Vec<String>, SignInError> {
        let ended = self.refresh.revoke_user(user_id, reason).await?;
        for sid in &ended {
            self.tokens.revoke_sign_in(sid).await?;
        }
        Ok(ended)
    }

    /// Deny-lists, in this instance's store, the sign-ins revoked at or after `since` (minus
    /// a small overlap), for as long as their access tokens may live. Returns how many.
    pub async fn sync(&self, since: i64) -> Result<usize, SignInError> {
        let revoked = self
            .refresh
            .revoked_since(since.saturating_sub(SYNC_OVERLAP_SECS))
            .await?;
        let now = self.clock.now();
        let lifetime = self.tokens.access_ttl_secs().saturating_add(LEEWAY);
        let mut denied = 0;
        for (sid, at) in revoked {
            let left = at.saturating_add(lifetime).saturating_sub(now);
            if left > 0 {
                let ttl = Duration::from_secs(u64::try_from(left).unwrap_or(1));
                self.tokens.deny_sign_in_for(&sid, ttl).await?;
                denied += 1;
            }
        }
        Ok(denied)
    }
}
