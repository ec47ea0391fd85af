//! Key storage and lifecycle in the database: create, load into the [`KeyRing`], rotate
//! (on demand or on schedule), revoke, remove, list.
//!
//! The lifecycle is `next` (published, not signing) → `current` (signing) → `retired`
//! (published until what it signed has expired) → removed; `revoked` is the emergency exit.
//! Every state change is one transaction whose `UPDATE`s carry their own preconditions, and a
//! unique partial index allows at most one `current` and one `next` key: two instances that
//! rotate at once cannot leave two current keys, and a scheduled rotation cannot promote a key
//! that was not published for the lead time, whatever the interleaving.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entities::{fences, signing_keys};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, Set,
};
use serde::Serialize;

use super::ring::{KeyRing, KeySet, PublicJwk, SigningKey};
use crate::clock::SharedClock;
use crate::config::KeyTimings;
use crate::crypto::{CryptoError, MasterKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("key generation failed")]
    Generate,
    #[error("stored key {0} is unreadable (wrong master key?)")]
    Corrupt(String),
    #[error("no key is in state `next` to promote")]
    NoNext,
    #[error("another rotation or revocation changed the keys at the same time; try again")]
    Conflict,
    #[error("no key has the id `{0}`")]
    UnknownKid(String),
    #[error("key `{0}` is already revoked")]
    AlreadyRevoked(String),
}

/// Lifecycle state of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    Current,
    Retired,
    Revoked,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Current => "current",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Next, Self::Current, Self::Retired, Self::Revoked]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// What `portcullis keys list` shows.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub state: String,
    pub alg: String,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The key that signs from now on (the former `next`).
    pub current: String,
    /// The former `current`, now retired.
    pub retired: Option<String>,
    /// The freshly generated and published `next`.
    pub next: String,
    /// How long the promoted key had been published before it started signing.
    pub published_for: Duration,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kid: String,
    /// The state the key was in.
    pub was: KeyState,
    /// When the revoked key was signing: the key promoted in its place.
    pub promoted: Option<String>,
    /// The fresh `next` generated, when the revoked key was `current` or `next`.
    pub next: Option<String>,
}

/// Database-backed key management.
#[derive(Clone)]
pub struct KeyService {
    db: DatabaseConnection,
    master: Arc<MasterKey>,
    clock: SharedClock,
    ring: KeyRing,
    timing: KeyTimings,
}

impl KeyService {
    pub fn new(
        db: DatabaseConnection,
        master: Arc<MasterKey>,
        clock: SharedClock,
        ring: KeyRing,
        timing: KeyTimings,
    ) -> Self {
        Self {
            db,
            master,
            clock,
            ring,
            timing,
        }
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn timing(&self) -> &KeyTimings {
        &self.timing
    }

    /// Makes sure a `current` and a `next` key exist (first run, or after a revocation that a
    /// crash interrupted), then loads the ring.
    pub async fn bootstrap(&self) -> Result<(), KeyError> {
        self.ensure().await?;
        self.reload().await?;
        Ok(())
    }

    /// Creates whichever of `current` / `next` is missing. Returns whether it created one.
    pub async fn ensure(&self) -> Result<bool, KeyError> {
        let mut created = false;
        for state in [KeyState::Current, KeyState::Next] {
            let exists = signing_keys::Entity::find()
                .filter(signing_keys::Column::State.eq(state.as_str()))
                .one(&self.db)
                .await?
                .is_some();
            if !exists {
                let (_, row) = self.generate(state).await?;
                // Another instance may have won the race: the unique index refuses a second
                // key in this state, and theirs is as good as ours.
                match row.insert(&self.db).await {
                    Ok(_) => created = true,
                    Err(e) => {
                        tracing::info!(error = %e, state = state.as_str(), "key creation lost a race; using the other instance's key");
                    }
                }
            }
        }
        Ok(created)
    }

    /// Generates an RSA-2048 key off the async workers and seals its private part; returns
    /// its kid and the row to insert.
    async fn generate(
        &self,
        state: KeyState,
    ) -> Result<(String, signing_keys::ActiveModel), KeyError> {
        let pkcs8 = tokio::task::spawn_blocking(|| {
            let key = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
            let der = key.as_der().ok()?;
            Some(der.as_ref().to_vec())
        })
        .await
        .map_err(|_| KeyError::Generate)?
        .ok_or(KeyError::Generate)?;
        let pair = RsaKeyPair::from_pkcs8(&pkcs8).map_err(|_| KeyError::Generate)?;
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&n, &e);
        let jwk = PublicJwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: kid.clone(),
            n,
            e,
        };
        let now = self.clock.now();
        let row = signing_keys::ActiveModel {
            kid: Set(kid.clone()),
            state: Set(state.as_str().into()),
            alg: Set("RS256".into()),
            public_jwk: Set(serde_json::to_string(&jwk).map_err(|_| KeyError::Generate)?),
            private_key_enc: Set(self.master.seal(&kid, &pkcs8)?),
            created_at: Set(now),
            activated_at: Set((state == KeyState::Current).then_some(now)),
            retired_at: Set(None),
            revoked_at: Set(None),
        };
        Ok((kid, row))
    }

    /// Reads the published keys and, when they differ from the ring's, swaps a new snapshot
    /// in (the private key is decrypted and parsed only when the signing key changed).
    /// Returns whether the ring changed. Cheap enough to run every few seconds.
    pub async fn reload(&self) -> Result<bool, KeyError> {
        let now = self.clock.now();
        let horizon = now.saturating_sub(secs(self.timing.retired_publication()));
        let rows = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.is_in(["next", "current", "retired"]))
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::Kid)
            .all(&self.db)
            .await?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|row| row.state != "retired" || row.retired_at.unwrap_or(0) >= horizon)
            .collect();
        let loaded = self.ring.snapshot();
        let current = rows.iter().find(|row| row.state == "current");
        if let Some(activated) = current.and_then(|row| row.activated_at) {
            let age = now.saturating_sub(activated);
            crate::metrics::signing_key(
                age,
                secs(self.timing.rotation_interval).saturating_sub(age),
            );
        }
        let unchanged = loaded.signing.as_ref().map(|k| k.kid.as_str())
            == current.map(|row| row.kid.as_str())
            && loaded
                .published_kids()
                .eq(rows.iter().map(|row| row.kid.as_str()));
        if unchanged {
            return Ok(false);
        }
        let signing = match current {
            Some(row) => match &loaded.signing {
                Some(key) if key.kid == row.kid => Some(key.clone()),
                _ => Some(Arc::new(self.open(row)?)),
            },
            None => None,
        };
        let published = rows
            .iter()
            .map(|row| {
                serde_json::from_str::<PublicJwk>(&row.public_jwk)
                    .map_err(|_| KeyError::Corrupt(row.kid.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.ring.replace(KeySet::new(signing, published));
        Ok(true)
    }

    fn open(&self, row: &signing_keys::Model) -> Result<SigningKey, KeyError> {
        let der = self
            .master
            .open(&row.kid, &row.private_key_enc)
            .map_err(|_| KeyError::Corrupt(row.kid.clone()))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Corrupt(row.kid.clone()))?;
        Ok(SigningKey {
            kid: row.kid.clone(),
            pair,
        })
    }

    /// On-demand rotation (`portcullis keys rotate`): promotes `next` at once, whatever its
    /// age — the operator's explicit choice; [`Rotation::published_for`] tells the caller
    /// whether to warn. Returns the new current kid.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        Ok(self.rotate_now().await?.current)
    }

    /// [`Self::rotate`] with the whole outcome.
    pub async fn rotate_now(&self) -> Result<Rotation, KeyError> {
        let rotation = self
            .rotate_if(None, None)
            .await?
            .ok_or(KeyError::Conflict)?;
        self.reload().await?;
        Ok(rotation)
    }

    /// Scheduled rotation, run by the holder of the duty lease with its fencing token: rotates
    /// only when the current key has signed for the rotation interval and `next` has been
    /// published for the lead time, and only if no later lease holder has written. Both
    /// conditions are part of the `UPDATE`s, so a stale decision cannot act. Returns what it
    /// did, or `None` when no rotation was due (or allowed yet).
    pub async fn rotate_if_due(&self, fence: u64) -> Result<Option<Rotation>, KeyError> {
        let now = self.clock.now();
        let due = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("current"))
            .filter(
                signing_keys::Column::ActivatedAt
                    .lte(now.saturating_sub(secs(self.timing.rotation_interval))),
            )
            .one(&self.db)
            .await?
            .is_some();
        if !due {
            return Ok(None);
        }
        let lead_cutoff = now.saturating_sub(secs(self.timing.publication_lead()));
        let next_ready = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("next"))
            .filter(signing_keys::Column::CreatedAt.lte(lead_cutoff))
            .one(&self.db)
            .await?
            .is_some();
        if !next_ready {
            // Checked again inside the transaction; this spares generating a key per pass.
            tracing::debug!(
                lead_secs = self.timing.publication_lead().as_secs(),
                "key rotation is due but the next key has not been published for the lead time yet; postponed"
            );
            return Ok(None);
        }
        let rotation = self
            .rotate_if(
                Some(now.saturating_sub(secs(self.timing.rotation_interval))),
                Some((lead_cutoff, fence)),
            )
            .await?;
        if rotation.is_some() {
            self.reload().await?;
        }
        Ok(rotation)
    }

    /// One rotation transaction. `activated_before` / `published_before` (with the fencing
    /// token) are the scheduled rotation's preconditions; `None` rotates unconditionally.
    async fn rotate_if(
        &self,
        activated_before: Option<i64>,
        published_before: Option<(i64, u64)>,
    ) -> Result<Option<Rotation>, KeyError> {
        let (fresh_kid, fresh) = self.generate(KeyState::Next).await?;
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db).await?;
        if let Some((_, fence)) = published_before
            && !write_fence(&txn, "duties", fence).await?
        {
            return Ok(None);
        }
        let current = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("current"))
            .one(&txn)
            .await?;
        let next = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("next"))
            .one(&txn)
            .await?
            .ok_or(KeyError::NoNext)?;
        if let Some((cutoff, _)) = published_before
            && next.created_at > cutoff
        {
            return Ok(None);
        }
        // Retire the current key first (one current at a time), on the condition that it is
        // still the one we read (and, when scheduled, still due).
        if let Some(current) = &current {
            let mut retire = signing_keys::Entity::update_many()
                .col_expr(signing_keys::Column::State, Expr::value("retired"))
                .col_expr(signing_keys::Column::RetiredAt, Expr::value(now))
                .filter(signing_keys::Column::Kid.eq(current.kid.clone()))
                .filter(signing_keys::Column::State.eq("current"));
            if let Some(cutoff) = activated_before {
                retire = retire.filter(signing_keys::Column::ActivatedAt.lte(cutoff));
            }
            if retire.exec(&txn).await?.rows_affected != 1 {
                return conflict_or_none(activated_before);
            }
        }
        let mut promote = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::State, Expr::value("current"))
            .col_expr(signing_keys::Column::ActivatedAt, Expr::value(now))
            .filter(signing_keys::Column::Kid.eq(next.kid.clone()))
            .filter(signing_keys::Column::State.eq("next"));
        if let Some((cutoff, _)) = published_before {
            promote = promote.filter(signing_keys::Column::CreatedAt.lte(cutoff));
        }
        if promote.exec(&txn).await?.rows_affected != 1 {
            return conflict_or_none(activated_before);
        }
        fresh.insert(&txn).await?;
        txn.commit().await?;
        Ok(Some(Rotation {
            current: next.kid,
            retired: current.map(|c| c.kid),
            next: fresh_kid,
            published_for: Duration::from_secs(
                u64::try_from(now.saturating_sub(next.created_at)).unwrap_or(0),
            ),
        }))
    }

    /// Emergency revocation of `kid`: it stops being published and never signs again (its
    /// sealed private key is erased). A revoked `current` key is replaced at once by `next`,
    /// and a revoked `current` or `next` gets a fresh `next`. One transaction.
    pub async fn revoke(&self, kid: &str) -> Result<Revocation, KeyError> {
        let (fresh_kid, fresh) = self.generate(KeyState::Next).await?;
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db).await?;
        let row = signing_keys::Entity::find_by_id(kid.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| KeyError::UnknownKid(kid.to_string()))?;
        let was = KeyState::parse(&row.state).ok_or_else(|| KeyError::Corrupt(kid.into()))?;
        if was == KeyState::Revoked {
            return Err(KeyError::AlreadyRevoked(kid.to_string()));
        }
        let revoked = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::State, Expr::value("revoked"))
            .col_expr(signing_keys::Column::RevokedAt, Expr::value(now))
            .col_expr(signing_keys::Column::PrivateKeyEnc, Expr::value(""))
            .filter(signing_keys::Column::Kid.eq(kid))
            .filter(signing_keys::Column::State.eq(was.as_str()))
            .exec(&txn)
            .await?;
        if revoked.rows_affected != 1 {
            return Err(KeyError::Conflict);
        }
        let mut promoted = None;
        if was == KeyState::Current {
            let next = signing_keys::Entity::find()
                .filter(signing_keys::Column::State.eq("next"))
                .one(&txn)
                .await?
                .ok_or(KeyError::NoNext)?;
            let done = signing_keys::Entity::update_many()
                .col_expr(signing_keys::Column::State, Expr::value("current"))
                .col_expr(signing_keys::Column::ActivatedAt, Expr::value(now))
                .filter(signing_keys::Column::Kid.eq(next.kid.clone()))
                .filter(signing_keys::Column::State.eq("next"))
                .exec(&txn)
                .await?;
            if done.rows_affected != 1 {
                return Err(KeyError::Conflict);
            }
            promoted = Some(next.kid);
        }
        let next = if matches!(was, KeyState::Current | KeyState::Next) {
            fresh.insert(&txn).await?;
            Some(fresh_kid)
        } else {
            None
        };
        txn.commit().await?;
        self.reload().await?;
        Ok(Revocation {
            kid: kid.to_string(),
            was,
            promoted,
            next,
        })
    }

    /// Deletes retired keys whose publication period is over (every token they signed has
    /// expired). Returns their ids.
    pub async fn remove_expired(&self) -> Result<Vec<String>, KeyError> {
        let horizon = self
            .clock
            .now()
            .saturating_sub(secs(self.timing.retired_publication()));
        let expired = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("retired"))
            .filter(signing_keys::Column::RetiredAt.lt(horizon))
            .all(&self.db)
            .await?;
        let mut removed = Vec::with_capacity(expired.len());
        for key in expired {
            let gone = signing_keys::Entity::delete_many()
                .filter(signing_keys::Column::Kid.eq(key.kid.clone()))
                .filter(signing_keys::Column::State.eq("retired"))
                .exec(&self.db)
                .await?;
            if gone.rows_affected == 1 {
                removed.push(key.kid);
            }
        }
        Ok(removed)
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(signing_keys::Entity::find()
            .order_by_asc(signing_keys::Column::CreatedAt)
            .order_by_asc(signing_keys::Column::Kid)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|k| KeyInfo {
                kid: k.kid,
                state: k.state,
                alg: k.alg,
                created_at: k.created_at,
                activated_at: k.activated_at,
                retired_at: k.retired_at,
                revoked_at: k.revoked_at,
            })
            .collect())
    }
}

/// A scheduled rotation that finds its preconditions gone did nothing (someone else
/// rotated); an on-demand one reports the conflict.
fn conflict_or_none(activated_before: Option<i64>) -> Result<Option<Rotation>, KeyError> {
    match activated_before {
        Some(_) => Ok(None),
        None => Err(KeyError::Conflict),
    }
}

/// Records `token` as the highest fencing token that wrote for `name`, unless a higher one
/// already has: returns false when the caller's lease has been superseded.
async fn write_fence(txn: &DatabaseTransaction, name: &str, token: u64) -> Result<bool, KeyError> {
    let token = i64::try_from(token).unwrap_or(i64::MAX);
    let written = fences::Entity::insert(fences::ActiveModel {
        name: Set(name.to_string()),
        token: Set(token),
    })
    .on_conflict(
        OnConflict::column(fences::Column::Name)
            .update_column(fences::Column::Token)
            .action_and_where(Expr::col((fences::Entity, fences::Column::Token)).lte(token))
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(written == 1)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key: the `kid`.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(::ring::digest::digest(
        &::ring::digest::SHA256,
        canonical.as_bytes(),
    ))
}
