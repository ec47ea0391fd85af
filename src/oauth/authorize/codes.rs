//! Authorization codes: 256 random bits, stored only as their SHA-256 digest, valid for
//! [`CODE_TTL_SECS`], bound to the client, the redirect URI, the PKCE challenge, the nonce and
//! the browser session, and redeemable once.
//!
//! Codes are minted through oxide-auth's `Authorizer` trait ([`CodeSlot`]): the trait is
//! synchronous and our store is a database, so the slot holds the one grant of a request and
//! the database work happens around it.
//!
//! Redemption marks the code and names the sign-in it is about to start (whose id is the `sid`
//! of the access tokens it issues) in one conditional `UPDATE`, so of concurrent redemptions
//! exactly one wins. A later redemption is a replay (RFC 6749 §4.1.2): it marks the code
//! replayed and the caller ends that sign-in; the winner checks the mark after recording its
//! sign-in, so the sign-in is ended whichever of the two comes first.

use entities::authorization_codes;
use oxide_auth::primitives::authorizer::Authorizer;
use oxide_auth::primitives::grant::Grant;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Set,
};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, random_token, secret_digest};
use crate::db::WarmPool;

/// How long a code may be redeemed (RFC 6749 §4.1.2 recommends at most ten minutes; a browser
/// redirect takes seconds).
pub const CODE_TTL_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// What a code is issued for.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub session_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub challenge: Option<String>,
    pub audience: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
}

/// A code claimed for redemption.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub digest: String,
    pub grant: CodeGrant,
    /// The sign-in this redemption starts.
    pub family_id: String,
    pub expires_at: i64,
}

/// What presenting a code came to.
#[derive(Debug)]
pub enum Redemption {
    /// First redemption: go on and issue.
    Claimed(Box<Claimed>),
    /// Already redeemed: the sign-in that redemption started must end.
    Replayed { family_id: Option<String> },
    /// Unknown or expired.
    Invalid,
}

/// oxide-auth's `Authorizer` for one request: `authorize` mints one code (the caller stores
/// it with [`Codes::issue`], with what it grants as a [`CodeGrant`]); `extract` hands back a
/// grant that [`Codes::redeem`] already claimed in the database, once.
#[derive(Default)]
pub struct CodeSlot {
    minted: bool,
    claimed: Option<Grant>,
}

impl CodeSlot {
    /// A slot holding a grant claimed from the database.
    pub fn with_claimed(grant: Grant) -> Self {
        Self {
            minted: false,
            claimed: Some(grant),
        }
    }
}

impl Authorizer for CodeSlot {
    fn authorize(&mut self, _grant: Grant) -> Result<String, ()> {
        if self.minted {
            return Err(());
        }
        self.minted = true;
        random_token().map_err(|_| ())
    }

    fn extract(&mut self, _code: &str) -> Result<Option<Grant>, ()> {
        Ok(self.claimed.take())
    }
}

#[derive(Clone)]
pub struct Codes {
    /// Every statement here is on the hot path of a sign-in (`db::WarmPool`).
    db: WarmPool,
    clock: SharedClock,
}

impl Codes {
    pub fn new(db: WarmPool, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Stores `code` (minted by a [`CodeSlot`]) for `grant`.
    pub async fn issue(&self, code: &str, grant: &CodeGrant) -> Result<(), CodeError> {
        let now = self.clock.now();
        authorization_codes::ActiveModel {
            digest: Set(secret_digest(code)),
            client_id: Set(grant.client_id.clone()),
            redirect_uri: Set(grant.redirect_uri.clone()),
            user_id: Set(grant.user_id.clone()),
            session_id: Set(grant.session_id.clone()),
            scope: Set(grant.scope.clone()),
            nonce: Set(grant.nonce.clone()),
            challenge: Set(grant.challenge.clone()),
            audience: Set(grant.audience.clone()),
            auth_time: Set(grant.auth_time),
            amr: Set(grant.amr.join(" ")),
            created_at: Set(now),
            expires_at: Set(now.saturating_add(CODE_TTL_SECS)),
            redeemed_at: Set(None),
            family_id: Set(None),
            replayed_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Claims `code` for redemption by `client_id`: exactly one of concurrent calls gets
    /// [`Redemption::Claimed`]; later ones mark the code replayed. A code of another client
    /// is [`Redemption::Invalid`] and left untouched (another client cannot burn it).
    pub async fn redeem(&self, code: &str, client_id: &str) -> Result<Redemption, CodeError> {
        if code.is_empty() || code.len() > 128 {
            return Ok(Redemption::Invalid);
        }
        let now = self.clock.now();
        let digest = secret_digest(code);
        let family_id = uuid::Uuid::new_v4().to_string();
        // Claimed only if unexpired; a redeemed code is recognised (as a replay) until purged.
        // The claim returns the row it claimed: one statement on the way that succeeds.
        let backend = self.db.get_database_backend();
        let p = |n: usize| {
            if backend == sea_orm::DbBackend::Postgres {
                format!("${n}")
            } else {
                "?".to_string()
            }
        };
        let claimed = self
            .db
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                format!(
                    "UPDATE authorization_codes SET redeemed_at = {}, family_id = {} \
                     WHERE digest = {} AND client_id = {} AND redeemed_at IS NULL \
                     AND expires_at > {} RETURNING *",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5)
                ),
                [
                    now.into(),
                    family_id.clone().into(),
                    digest.clone().into(),
                    client_id.into(),
                    now.into(),
                ],
            ))
            .await?;
        let won = !claimed.is_empty();
        let row = match claimed.first() {
            Some(row) => Some(authorization_codes::Model::from_query_result(row, "")?),
            None => {
                authorization_codes::Entity::find_by_id(digest.clone())
                    .one(&self.db)
                    .await?
            }
        };
        let Some(row) = row.filter(|r| r.client_id == client_id) else {
            return Ok(Redemption::Invalid);
        };
        if won {
            return Ok(Redemption::Claimed(Box::new(Claimed {
                family_id,
                expires_at: row.expires_at,
                digest,
                grant: CodeGrant {
                    client_id: row.client_id,
                    redirect_uri: row.redirect_uri,
                    user_id: row.user_id,
                    session_id: row.session_id,
                    scope: row.scope,
                    nonce: row.nonce,
                    challenge: row.challenge,
                    audience: row.audience,
                    auth_time: row.auth_time,
                    amr: row.amr.split_whitespace().map(str::to_string).collect(),
                },
            })));
        }
        if row.redeemed_at.is_none() {
            return Ok(Redemption::Invalid);
        }
        authorization_codes::Entity::update_many()
            .col_expr(authorization_codes::Column::ReplayedAt, Expr::value(now))
            .filter(authorization_codes::Column::Digest.eq(digest.as_str()))
            .filter(authorization_codes::Column::ReplayedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(Redemption::Replayed {
            family_id: row.family_id,
        })
    }

    /// Whether the code was replayed since it was claimed (checked by the winner after it
    /// recorded its sign-in).
    pub async fn was_replayed(&self, digest: &str) -> Result<bool, CodeError> {
        Ok(authorization_codes::Entity::find_by_id(digest.to_string())
            .one(&self.db)
            .await?
            .is_some_and(|r| r.replayed_at.is_some()))
    }

    /// Deletes codes expired for more than an hour (kept that long so a late second
    /// redemption is still recognised as a replay and ends the sign-in).
    pub async fn purge_expired(&self) -> Result<u64, CodeError> {
        let cutoff = self.clock.now().saturating_sub(3_600);
        Ok(authorization_codes::Entity::delete_many()
            .filter(authorization_codes::Column::ExpiresAt.lt(cutoff))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
