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

use entities::refresh_families;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

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
    /// The browser session the sign-in was to belong to has ended.
    #[error("the browser session has ended")]
    SessionEnded,
    /// The authorization code the sign-in was to redeem was claimed first, or has expired.
    #[error("the authorization code was already redeemed or has expired")]
    CodeTaken,
    #[error(transparent)]
    Refresh(RefreshError),
    #[error("the deny list is unreachable: {0}")]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// An open sign-in as its user (or an administrator) sees it: a browser session or a
/// password-grant sign-in.
#[derive(Debug, Clone)]
pub struct SignInRecord {
    /// The `sid` of its tokens (for a browser session, the `sid` of its ID tokens).
    pub id: String,
    pub kind: SignInKind,
    /// The client of a password-grant sign-in; the clients a browser session signed in to.
    pub clients: Vec<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// RFC 8176 authentication methods.
    pub amr: Vec<String>,
    /// The sign-ins of a browser session (the `sid` of their access tokens).
    pub members: Vec<String>,
}

impl From<RefreshError> for SignInError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::UserChanged => Self::UserChanged,
            RefreshError::SessionEnded => Self::SessionEnded,
            RefreshError::CodeTaken => Self::CodeTaken,
            other => Self::Refresh(other),
        }
    }
}

pub use crate::oauth::refresh::{NewSignIn, SignInKind};

#[derive(Clone)]
pub struct SignIns {
    db: DatabaseConnection,
    refresh: RefreshService,
    tokens: TokenService,
    clock: SharedClock,
}

impl SignIns {
    pub fn new(
        db: DatabaseConnection,
        refresh: RefreshService,
        tokens: TokenService,
        clock: SharedClock,
    ) -> Self {
        Self {
            db,
            refresh,
            tokens,
            clock,
        }
    }

    /// The open sign-ins of a user, newest first: browser sessions (with the clients that
    /// signed in through them) and password-grant sign-ins. A browser session past its
    /// lifetime is not listed (its tokens ended with it).
    pub async fn list(&self, user_id: &str) -> Result<Vec<SignInRecord>, SignInError> {
        let now = self.clock.now();
        let rows = refresh_families::Entity::find()
            .filter(refresh_families::Column::UserId.eq(user_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .order_by_desc(refresh_families::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let (members, tops): (Vec<_>, Vec<_>) =
            rows.into_iter().partition(|r| r.session_id.is_some());
        Ok(tops
            .into_iter()
            .filter(|r| r.expires_at.is_none_or(|end| end > now))
            .map(|r| {
                let kind = SignInKind::parse(&r.kind).unwrap_or(SignInKind::Password);
                let own: Vec<_> = members
                    .iter()
                    .filter(|m| m.session_id.as_deref() == Some(r.id.as_str()))
                    .collect();
                let mut clients: Vec<String> = if kind == SignInKind::Browser {
                    own.iter().map(|m| m.client_id.clone()).collect()
                } else {
                    vec![r.client_id.clone()]
                };
                clients.sort();
                clients.dedup();
                let last_seen_at = own
                    .iter()
                    .map(|m| m.last_used_at)
                    .fold(r.last_used_at, i64::max);
                SignInRecord {
                    members: own.iter().map(|m| m.id.clone()).collect(),
                    amr: crate::oauth::refresh::amr_list(r.amr.as_deref()),
                    id: r.id,
                    kind,
                    clients,
                    created_at: r.created_at,
                    last_seen_at,
                    ip: r.ip,
                    user_agent: r.user_agent,
                }
            })
            .collect())
    }

    /// Ends the open sign-in `sid` of `user_id` (a browser session or a password-grant
    /// sign-in; not a member of a session, which ends with it). Returns whether there was one.
    pub async fn end_own(
        &self,
        user_id: &str,
        sid: &str,
        reason: &str,
    ) -> Result<bool, SignInError> {
        let owned = refresh_families::Entity::find_by_id(sid.to_string())
            .filter(refresh_families::Column::UserId.eq(user_id))
            .filter(refresh_families::Column::SessionId.is_null())
            .filter(refresh_families::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?
            .is_some();
        if !owned {
            return Ok(false);
        }
        self.end(sid, reason).await
    }

    /// Ends every open sign-in of `user_id` with `client_id` (withdrawn consent). Returns the
    /// ids of the sign-ins ended.
    pub async fn end_for_client(
        &self,
        user_id: &str,
        client_id: &str,
        reason: &str,
    ) -> Result<Vec<String>, SignInError> {
        let open: Vec<String> = refresh_families::Entity::find()
            .filter(refresh_families::Column::UserId.eq(user_id))
            .filter(refresh_families::Column::ClientId.eq(client_id))
            .filter(refresh_families::Column::Kind.ne(SignInKind::Browser.as_str()))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        let mut ended = Vec::new();
        for sid in open {
            if self.end(&sid, reason).await? {
                ended.push(sid);
            }
        }
        Ok(ended)
    }

    /// Marks a sign-in as used now (for its user's list), unless it was within `min_gap`
    /// seconds already; never reopens an ended one.
    pub async fn touch(&self, sid: &str, min_gap: i64) -> Result<(), SignInError> {
        let now = self.clock.now();
        refresh_families::Entity::update_many()
            .col_expr(refresh_families::Column::LastUsedAt, Expr::value(now))
            .filter(refresh_families::Column::Id.eq(sid))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .filter(refresh_families::Column::LastUsedAt.lt(now.saturating_sub(min_gap)))
            .exec(&self.db)
            .await?;
        Ok(())
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
        Ok(self.refresh.start(new).await?)
    }

    /// Ends one sign-in: its refresh tokens are revoked and its access tokens refused; ending
    /// a browser session ends every sign-in of it. Returns whether it was still open.
    pub async fn end(&self, sid: &str, reason: &str) -> Result<bool, SignInError> {
        let revoked = self.refresh.revoke_family(sid, reason).await?;
        self.tokens.revoke_sign_in(sid).await?;
        for ended in revoked.ended.iter().filter(|e| e.as_str() != sid) {
            self.tokens.revoke_sign_in(ended).await?;
        }
        Ok(revoked.closed)
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
