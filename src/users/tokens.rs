//! Account tokens: the single-use secrets mailed in links (address verification, address
//! change, password reset). 256 random bits, stored only as a SHA-256 digest, bound to the
//! user and to the address the link went to, expiring, consumed by one conditional `UPDATE`
//! (so of two concurrent uses exactly one succeeds), and revoked by a newer request of the same
//! purpose. The methods work inside the caller's transaction, so a token exists iff the change
//! and the mail that carry it commit.

use entities::account_tokens;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::crypto::{CryptoError, random_token, secret_digest};

/// What a token is for, stored as text through [`Purpose::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Confirms the address of a new account.
    VerifyEmail,
    /// Confirms a new address (the token's `email`) for an existing account.
    ChangeEmail,
    /// Lets the owner of the account's address choose a new password.
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ChangeEmail => "change_email",
            Self::PasswordReset => "password_reset",
        }
    }

    /// How long a link of this purpose works.
    pub fn ttl_secs(self) -> i64 {
        match self {
            Self::VerifyEmail | Self::ChangeEmail => 24 * 3600,
            Self::PasswordReset => 30 * 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A token that was just consumed.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub user_id: String,
    pub email: String,
}

/// Issues a token of `purpose` for `user_id` and `email` at `now`, revoking the user's
/// earlier unused tokens of that purpose. Returns the token (to put in the link only).
pub async fn issue_in(
    conn: &impl ConnectionTrait,
    purpose: Purpose,
    user_id: &str,
    email: &str,
    now: i64,
) -> Result<String, TokenError> {
    revoke_in(conn, user_id, purpose, now).await?;
    let token = random_token()?;
    account_tokens::ActiveModel {
        digest: Set(secret_digest(&token)),
        purpose: Set(purpose.as_str().to_string()),
        user_id: Set(user_id.to_string()),
        email: Set(email.to_string()),
        created_at: Set(now),
        expires_at: Set(now.saturating_add(purpose.ttl_secs())),
        used_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(token)
}

/// Consumes `token` if it is an unused, unexpired token of `purpose`.
pub async fn consume_in(
    conn: &impl ConnectionTrait,
    token: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<Consumed>, TokenError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let digest = secret_digest(token);
    let won = account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(now))
        .filter(account_tokens::Column::Digest.eq(digest.as_str()))
        .filter(account_tokens::Column::Purpose.eq(purpose.as_str()))
        .filter(account_tokens::Column::UsedAt.is_null())
        .filter(account_tokens::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    if won.rows_affected != 1 {
        return Ok(None);
    }
    Ok(account_tokens::Entity::find_by_id(digest)
        .one(conn)
        .await?
        .map(|row| Consumed {
            user_id: row.user_id,
            email: row.email,
        }))
}

/// The unused, unexpired token of `purpose`, without using it up.
pub async fn peek(
    conn: &impl ConnectionTrait,
    token: &str,
    purpose: Purpose,
    now: i64,
) -> Result<Option<Consumed>, TokenError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    Ok(account_tokens::Entity::find_by_id(secret_digest(token))
        .one(conn)
        .await?
        .filter(|row| {
            row.purpose == purpose.as_str() && row.used_at.is_none() && row.expires_at > now
        })
        .map(|row| Consumed {
            user_id: row.user_id,
            email: row.email,
        }))
}

/// Revokes every unused token of `purpose` of `user_id` (a newer request, a password change,
/// a sign-in).
pub async fn revoke_in(
    conn: &impl ConnectionTrait,
    user_id: &str,
    purpose: Purpose,
    now: i64,
) -> Result<(), TokenError> {
    account_tokens::Entity::update_many()
        .col_expr(account_tokens::Column::UsedAt, Expr::value(now))
        .filter(account_tokens::Column::UserId.eq(user_id))
        .filter(account_tokens::Column::Purpose.eq(purpose.as_str()))
        .filter(account_tokens::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes tokens expired for more than a day. Returns how many.
pub async fn purge_expired(conn: &impl ConnectionTrait, now: i64) -> Result<u64, TokenError> {
    Ok(account_tokens::Entity::delete_many()
        .filter(account_tokens::Column::ExpiresAt.lt(now.saturating_sub(24 * 3600)))
        .exec(conn)
        .await?
        .rows_affected)
}
