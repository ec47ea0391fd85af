//! Refresh tokens: opaque 256-bit values stored only as SHA-256 digests, grouped in families
//! (one family per sign-in), rotated on every use (RFC 9700 §4.14.2).
//!
//! Rotation is one conditional `UPDATE … WHERE state = 'active'`, so of two concurrent
//! presentations exactly one wins. Presenting a token that was already rotated (reuse, or the
//! losing side of a race) revokes the whole family. Rotation and revocation of a family both
//! write the family row first, inside their transaction: the row lock serializes them, so no
//! token minted by a concurrent rotation survives a revocation.

use entities::{refresh_families, refresh_tokens};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, TransactionTrait,
};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, random_token, secret_digest};
use crate::domain::Scope;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    /// RFC 6749 §6: the requested scope is not within the originally granted one. Checked
    /// before rotation, so the client keeps its (unused) token.
    #[error("the requested scope exceeds the scope originally granted")]
    ScopeExceeded,
    /// An already-rotated token was presented; the family is now revoked.
    #[error("the refresh token was already used; the sign-in has been revoked")]
    Reused { family_id: String, user_id: String },
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A refresh token that was just issued.
#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub family_id: String,
}

/// The result of a successful rotation.
#[derive(Debug)]
pub struct Rotated {
    pub token: String,
    pub family_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: i64,
}

/// What introspection learns about a refresh token.
#[derive(Debug)]
pub struct RefreshInfo {
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct RefreshService {
    db: DatabaseConnection,
    clock: SharedClock,
    ttl_secs: i64,
}

impl RefreshService {
    pub fn new(db: DatabaseConnection, clock: SharedClock, ttl: std::time::Duration) -> Self {
        Self {
            db,
            clock,
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// Starts a family (a sign-in) with its first token.
    pub async fn start(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &str,
    ) -> Result<Issued, RefreshError> {
        let now = self.clock.now();
        let family_id = uuid::Uuid::new_v4().to_string();
        let txn = self.db.begin().await?;
        refresh_families::ActiveModel {
            id: Set(family_id.clone()),
            user_id: Set(user_id.to_string()),
            client_id: Set(client_id.to_string()),
            created_at: Set(now),
            last_used_at: Set(now),
            revoked_at: Set(None),
            revoked_reason: Set(None),
        }
        .insert(&txn)
        .await?;
        let token = self.insert_token(&txn, &family_id, scope, now).await?;
        txn.commit().await?;
        Ok(Issued { token, family_id })
    }

    async fn insert_token(
        &self,
        conn: &impl ConnectionTrait,
        family_id: &str,
        scope: &str,
        now: i64,
    ) -> Result<String, RefreshError> {
        let token = random_token()?;
        refresh_tokens::ActiveModel {
            digest: Set(secret_digest(&token)),
            family_id: Set(family_id.to_string()),
            scope: Set(scope.to_string()),
            state: Set("active".into()),
            issued_at: Set(now),
            expires_at: Set(now.saturating_add(self.ttl_secs)),
            rotated_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok(token)
    }

    async fn find(
        &self,
        conn: &impl ConnectionTrait,
        presented: &str,
    ) -> Result<Option<(refresh_tokens::Model, refresh_families::Model)>, RefreshError> {
        let Some(token) = refresh_tokens::Entity::find_by_id(secret_digest(presented))
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        let family = refresh_families::Entity::find_by_id(token.family_id.clone())
            .one(conn)
            .await?;
        Ok(family.map(|f| (token, f)))
    }

    /// Rotates `presented` for `client_id`: the old token becomes `rotated`, a new one is
    /// issued in the same family. A non-empty `requested` scope must lie within the token's.
    pub async fn rotate(
        &self,
        presented: &str,
        client_id: &str,
        requested: &Scope,
    ) -> Result<Rotated, RefreshError> {
        let now = self.clock.now();
        let Some((token, family)) = self.find(&self.db, presented).await? else {
            return Err(RefreshError::Invalid);
        };
        // A token is bound to the client it was issued to; another client learns nothing.
        if family.client_id != client_id || family.revoked_at.is_some() {
            return Err(RefreshError::Invalid);
        }
        match token.state.as_str() {
            "active" if token.expires_at > now => {}
            "rotated" => return Err(self.reuse_detected(&family).await),
            _ => return Err(RefreshError::Invalid),
        }
        if !requested.is_subset(&Scope::parse(&token.scope).unwrap_or_default()) {
            return Err(RefreshError::ScopeExceeded);
        }

        let txn = self.db.begin().await?;
        // Family row first: serializes against revocation (see module docs).
        let family_open = refresh_families::Entity::update_many()
            .col_expr(refresh_families::Column::LastUsedAt, Expr::value(now))
            .filter(refresh_families::Column::Id.eq(family.id.clone()))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if family_open.rows_affected != 1 {
            return Err(RefreshError::Invalid);
        }
        let won = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::State, Expr::value("rotated"))
            .col_expr(refresh_tokens::Column::RotatedAt, Expr::value(now))
            .filter(refresh_tokens::Column::Digest.eq(token.digest.clone()))
            .filter(refresh_tokens::Column::State.eq("active"))
            .exec(&txn)
            .await?;
        if won.rows_affected != 1 {
            // Another request rotated this token first: the same as reuse.
            txn.rollback().await?;
            return Err(self.reuse_detected(&family).await);
        }
        let new_token = self
            .insert_token(&txn, &family.id, &token.scope, now)
            .await?;
        txn.commit().await?;
        Ok(Rotated {
            token: new_token,
            family_id: family.id,
            user_id: family.user_id,
            scope: token.scope,
            auth_time: family.created_at,
        })
    }

    async fn reuse_detected(&self, family: &refresh_families::Model) -> RefreshError {
        if let Err(e) = self.revoke_family(&family.id, "reuse_detected").await {
            return e;
        }
        RefreshError::Reused {
            family_id: family.id.clone(),
            user_id: family.user_id.clone(),
        }
    }

    /// Revokes a family and every token in it. Returns whether it was still open.
    pub async fn revoke_family(&self, family_id: &str, reason: &str) -> Result<bool, RefreshError> {
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let closed = refresh_families::Entity::update_many()
            .col_expr(refresh_families::Column::RevokedAt, Expr::value(now))
            .col_expr(refresh_families::Column::RevokedReason, Expr::value(reason))
            .filter(refresh_families::Column::Id.eq(family_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::State, Expr::value("revoked"))
            .filter(refresh_tokens::Column::FamilyId.eq(family_id))
            .filter(refresh_tokens::Column::State.eq("active"))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(closed.rows_affected == 1)
    }

    /// Revokes every open family (sign-in) of a user; returns their ids.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        reason: &str,
    ) -> Result<Vec<String>, RefreshError> {
        let open = refresh_families::Entity::find()
            .filter(refresh_families::Column::UserId.eq(user_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?;
        let mut revoked = Vec::with_capacity(open.len());
        for family in open {
            if self.revoke_family(&family.id, reason).await? {
                revoked.push(family.id);
            }
        }
        Ok(revoked)
    }

    /// Deletes refresh tokens that have expired and the families left without tokens;
    /// returns the number of rows deleted. Run by the background duties.
    pub async fn purge_expired(&self) -> Result<u64, RefreshError> {
        let now = self.clock.now();
        let tokens = refresh_tokens::Entity::delete_many()
            .filter(refresh_tokens::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        let families = refresh_families::Entity::delete_many()
            .filter(
                refresh_families::Column::Id.not_in_subquery(
                    sea_orm::sea_query::Query::select()
                        .column(refresh_tokens::Column::FamilyId)
                        .from(refresh_tokens::Entity)
                        .to_owned(),
                ),
            )
            .exec(&self.db)
            .await?;
        Ok(tokens.rows_affected + families.rows_affected)
    }

    /// Looks up a presented token for revocation or introspection. Returns its family's info
    /// whatever the token's state, with `active` telling whether it may still be used.
    pub async fn inspect(
        &self,
        presented: &str,
    ) -> Result<Option<(RefreshInfo, bool)>, RefreshError> {
        let now = self.clock.now();
        let Some((token, family)) = self.find(&self.db, presented).await? else {
            return Ok(None);
        };
        let active =
            token.state == "active" && token.expires_at > now && family.revoked_at.is_none();
        Ok(Some((
            RefreshInfo {
                family_id: family.id,
                user_id: family.user_id,
                client_id: family.client_id,
                scope: token.scope,
                issued_at: token.issued_at,
                expires_at: token.expires_at,
            },
            active,
        )))
    }
}
