//! Authorization codes: 256 random bits, stored only as their SHA-256 digest, valid for
//! [`CODE_TTL_SECS`], bound to the client, the redirect URI, the PKCE challenge, the nonce and
//! the browser session, and redeemable once.
//!
//! Codes are minted through oxide-auth's `Authorizer` trait ([`CodeSlot`]): the trait is
//! synchronous and our store is a database, so the slot holds the one grant of a request and
//! the database work happens around it.
//!
//! Redemption reads the code with its user and the user's roles ([`Codes::find`], one
//! statement, nothing written); the token endpoint checks it and mints the tokens, then claims
//! the code and records the sign-in it starts in one transaction (`RefreshService::start` with
//! the code's digest: the conditional `UPDATE` of the code names the sign-in, whose id is the
//! `sid` of the access tokens), so of concurrent redemptions exactly one wins, and a code is
//! claimed only together with its sign-in (or with none, when the user's access or the session
//! ended meanwhile: then there is nothing to end). A later redemption is a replay (RFC 6749
//! §4.1.2): it marks the code replayed ([`Codes::replay`]) and the caller ends the sign-in the
//! code started, which exists by then whichever of the two came first.

use entities::{authorization_codes, users};
use oxide_auth::primitives::authorizer::Authorizer;
use oxide_auth::primitives::grant::Grant;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, Set,
    Statement,
};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, random_token, secret_digest};
use crate::db::WarmPool;
use crate::users::User;

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

/// An unredeemed code as [`Codes::find`] read it, to be claimed with the sign-in it starts.
#[derive(Debug, Clone)]
pub struct Found {
    /// The code's digest: what the claim names.
    pub digest: String,
    pub grant: CodeGrant,
    /// The id of the sign-in the code is to start (a fresh one for every presentation).
    pub family_id: String,
    pub expires_at: i64,
    /// The code's user with their roles, as read with it (`None`: the account is gone).
    pub user: Option<User>,
}

/// What a presented code is.
#[derive(Debug)]
pub enum Lookup {
    /// Issued to the presenting client, unredeemed and unexpired: go on, and claim it with
    /// the sign-in.
    Fresh(Box<Found>),
    /// Redeemed before, and now marked replayed: the sign-in its redemption started, which
    /// must end.
    Replayed { family_id: Option<String> },
    /// Unknown, expired, or issued to another client (which cannot burn it).
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

    /// Reads a presented code for `client_id` with its user and the user's roles, in one
    /// statement (one row per role). Nothing is written for a fresh code; a redeemed one is
    /// marked replayed ([`Self::replay`]).
    pub async fn find(&self, code: &str, client_id: &str) -> Result<Lookup, CodeError> {
        if code.is_empty() || code.len() > 128 {
            return Ok(Lookup::Invalid);
        }
        let now = self.clock.now();
        let digest = secret_digest(code);
        static SQL: crate::db::SqlText = crate::db::SqlText::new();
        let sql = SQL.get(self.db.get_database_backend(), || {
            format!(
                "SELECT {}, {}, r.role AS r_role FROM authorization_codes c \
                 LEFT JOIN users u ON u.id = c.user_id \
                 LEFT JOIN user_roles r ON r.user_id = c.user_id \
                 WHERE c.digest = {}",
                crate::db::select_list::<authorization_codes::Entity>("c"),
                crate::db::select_list::<users::Entity>("u"),
                crate::db::first_placeholder(&self.db),
            )
        });
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [digest.clone().into()],
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(Lookup::Invalid);
        };
        let row = authorization_codes::Model::from_query_result(first, "c_")?;
        // Another client learns nothing and changes nothing.
        if row.client_id != client_id {
            return Ok(Lookup::Invalid);
        }
        if row.redeemed_at.is_some() {
            return self.replay(&digest).await;
        }
        if row.expires_at <= now {
            return Ok(Lookup::Invalid);
        }
        let user = match first.try_get::<Option<String>>("", "u_id")? {
            None => None,
            Some(_) => Some(crate::users::user_from_rows(&rows)?),
        };
        Ok(Lookup::Fresh(Box::new(Found {
            digest,
            family_id: uuid::Uuid::new_v4().to_string(),
            expires_at: row.expires_at,
            user,
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
        })))
    }

    /// A presentation of a code that was redeemed already, or that lost the claim to a
    /// concurrent one: marks the code replayed and returns the sign-in its redemption
    /// started. A code that was never redeemed (it expired meanwhile) is [`Lookup::Invalid`].
    pub async fn replay(&self, digest: &str) -> Result<Lookup, CodeError> {
        let now = self.clock.now();
        authorization_codes::Entity::update_many()
            .col_expr(authorization_codes::Column::ReplayedAt, Expr::value(now))
            .filter(authorization_codes::Column::Digest.eq(digest))
            .filter(authorization_codes::Column::RedeemedAt.is_not_null())
            .filter(authorization_codes::Column::ReplayedAt.is_null())
            .exec(&self.db)
            .await?;
        let row = authorization_codes::Entity::find_by_id(digest.to_string())
            .one(&self.db)
            .await?;
        Ok(match row {
            Some(row) if row.redeemed_at.is_some() => Lookup::Replayed {
                family_id: row.family_id,
            },
            _ => Lookup::Invalid,
        })
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
