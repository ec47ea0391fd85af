//! The pending second step of a sign-in whose password was right: an opaque token (256 bits,
//! stored only as its digest) bound to the user, the client and what the first step asked
//! for; it lives five minutes, survives a few wrong codes and is claimed once, by a
//! conditional `UPDATE`.

use entities::mfa_tokens;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};

use super::{MfaError, MfaService};
use crate::crypto::{random_token, secret_digest};

/// How long a second step may take.
pub const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Wrong codes a challenge survives; the next wrong one ends it.
pub const MAX_CHALLENGE_FAILURES: i32 = 5;

/// Where the second step happens: a challenge of one kind is not accepted by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// The password grant's `mfa_token`, completed at the token endpoint.
    Grant,
    /// The hosted sign-in page's second form.
    Browser,
}

impl ChallengePurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Browser => "browser",
        }
    }
}

/// A live challenge, as found by its token.
#[derive(Debug, Clone)]
pub struct Challenge {
    digest: String,
    pub user_id: String,
    pub client_id: String,
    /// The scope the first step asked for (possibly empty).
    pub scope: String,
    pub resource: Option<String>,
}

impl MfaService {
    /// A new challenge for `user_id` at `client_id`; returns its token (shown to the client
    /// once).
    pub async fn challenge(
        &self,
        purpose: ChallengePurpose,
        user_id: &str,
        client_id: &str,
        scope: &str,
        resource: Option<&str>,
    ) -> Result<SecretString, MfaError> {
        let token = random_token()?;
        let now = self.clock.now();
        mfa_tokens::ActiveModel {
            digest: Set(secret_digest(&token)),
            purpose: Set(purpose.as_str().to_string()),
            user_id: Set(user_id.to_string()),
            client_id: Set(client_id.to_string()),
            scope: Set(scope.to_string()),
            resource: Set(resource.map(str::to_string)),
            created_at: Set(now),
            expires_at: Set(now.saturating_add(CHALLENGE_TTL_SECS)),
            used_at: Set(None),
            failures: Set(0),
        }
        .insert(&self.db)
        .await?;
        Ok(token.into())
    }

    /// The live challenge `token` names for `client_id` (unused, unexpired, of `purpose`).
    pub async fn pending_challenge(
        &self,
        purpose: ChallengePurpose,
        token: &SecretString,
        client_id: &str,
    ) -> Result<Option<Challenge>, MfaError> {
        let token = token.expose_secret();
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let row = mfa_tokens::Entity::find_by_id(secret_digest(token))
            .one(&self.db)
            .await?;
        Ok(row
            .filter(|r| {
                r.purpose == purpose.as_str()
                    && r.client_id == client_id
                    && r.used_at.is_none()
                    && r.expires_at > self.clock.now()
                    && r.failures < MAX_CHALLENGE_FAILURES
            })
            .map(|r| Challenge {
                digest: r.digest,
                user_id: r.user_id,
                client_id: r.client_id,
                scope: r.scope,
                resource: r.resource,
            }))
    }

    /// A wrong code was presented with `challenge`: counted; past the limit it ends.
    pub async fn challenge_failed(&self, challenge: &Challenge) -> Result<(), MfaError> {
        mfa_tokens::Entity::update_many()
            .col_expr(
                mfa_tokens::Column::Failures,
                Expr::col(mfa_tokens::Column::Failures).add(1),
            )
            .filter(mfa_tokens::Column::Digest.eq(challenge.digest.as_str()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Claims `challenge` for its one sign-in; false when it was claimed (or ended) already.
    pub async fn claim_challenge(&self, challenge: &Challenge) -> Result<bool, MfaError> {
        let now = self.clock.now();
        let claimed = mfa_tokens::Entity::update_many()
            .col_expr(mfa_tokens::Column::UsedAt, Expr::value(now))
            .filter(mfa_tokens::Column::Digest.eq(challenge.digest.as_str()))
            .filter(mfa_tokens::Column::UsedAt.is_null())
            .filter(mfa_tokens::Column::ExpiresAt.gt(now))
            .filter(mfa_tokens::Column::Failures.lt(MAX_CHALLENGE_FAILURES))
            .exec(&self.db)
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    /// Deletes challenges that expired before `before` (run by the background duties).
    pub async fn purge_challenges(&self, before: i64) -> Result<u64, MfaError> {
        Ok(mfa_tokens::Entity::delete_many()
            .filter(mfa_tokens::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }
}
