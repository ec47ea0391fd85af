//! Key storage and lifecycle in the database: create, load into the [`KeyRing`], rotate, list.
//!
//! Two database rules keep instances honest: a unique partial index allows at most one
//! `current` and one `next` key, so racing instances cannot both promote or both bootstrap.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use entities::signing_keys;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde::Serialize;

use super::ring::{KeyRing, KeySet, PublicJwk, SigningKey};
use crate::clock::SharedClock;
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
}

/// Database-backed key management.
#[derive(Clone)]
pub struct KeyService {
    db: DatabaseConnection,
    master: Arc<MasterKey>,
    clock: SharedClock,
    ring: KeyRing,
    /// How long a retired key stays published: the longest token lifetime plus skew.
    retired_publication: Duration,
}

impl KeyService {
    pub fn new(
        db: DatabaseConnection,
        master: Arc<MasterKey>,
        clock: SharedClock,
        ring: KeyRing,
        retired_publication: Duration,
    ) -> Self {
        Self {
            db,
            master,
            clock,
            ring,
            retired_publication,
        }
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Makes sure a `current` and a `next` key exist (first run), then loads the ring.
    pub async fn bootstrap(&self) -> Result<(), KeyError> {
        for state in [KeyState::Current, KeyState::Next] {
            let exists = signing_keys::Entity::find()
                .filter(signing_keys::Column::State.eq(state.as_str()))
                .one(&self.db)
                .await?
                .is_some();
            if !exists {
                let row = self.generate(state).await?;
                // Another instance may have won the race: the unique index refuses a second
                // key in this state, and theirs is as good as ours.
                if let Err(e) = row.insert(&self.db).await {
                    tracing::info!(error = %e, state = state.as_str(), "key bootstrap lost a race; using the other instance's key");
                }
            }
        }
        self.reload().await
    }

    /// Generates an RSA-2048 key off the async workers and seals its private part.
    async fn generate(&self, state: KeyState) -> Result<signing_keys::ActiveModel, KeyError> {
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
        Ok(signing_keys::ActiveModel {
            kid: Set(kid.clone()),
            state: Set(state.as_str().into()),
            alg: Set("RS256".into()),
            public_jwk: Set(serde_json::to_string(&jwk).map_err(|_| KeyError::Generate)?),
            private_key_enc: Set(self.master.seal(&kid, &pkcs8)?),
            created_at: Set(now),
            activated_at: Set((state == KeyState::Current).then_some(now)),
            retired_at: Set(None),
        })
    }

    /// Reads the published keys from the database and swaps them into the ring.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let now = self.clock.now();
        let horizon = now.saturating_sub(secs(self.retired_publication));
        let rows = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.is_in(["next", "current", "retired"]))
            .order_by_asc(signing_keys::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let mut published = Vec::new();
        let mut signing = None;
        for row in rows {
            if row.state == "retired" && row.retired_at.unwrap_or(0) < horizon {
                continue;
            }
            let jwk: PublicJwk = serde_json::from_str(&row.public_jwk)
                .map_err(|_| KeyError::Corrupt(row.kid.clone()))?;
            if row.state == "current" {
                let der = self
                    .master
                    .open(&row.kid, &row.private_key_enc)
                    .map_err(|_| KeyError::Corrupt(row.kid.clone()))?;
                let pair =
                    RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Corrupt(row.kid.clone()))?;
                signing = Some(Arc::new(SigningKey {
                    kid: row.kid.clone(),
                    pair,
                }));
            }
            published.push(jwk);
        }
        self.ring.replace(KeySet::new(signing, published));
        Ok(())
    }

    /// Promotes `next` to `current`, retires the old `current`, publishes a fresh `next`;
    /// one transaction. Returns the new current kid.
    pub async fn rotate(&self) -> Result<String, KeyError> {
        let fresh = self.generate(KeyState::Next).await?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let next = signing_keys::Entity::find()
            .filter(signing_keys::Column::State.eq("next"))
            .one(&txn)
            .await?
            .ok_or(KeyError::NoNext)?;
        signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::State, "retired".into())
            .col_expr(signing_keys::Column::RetiredAt, now.into())
            .filter(signing_keys::Column::State.eq("current"))
            .exec(&txn)
            .await?;
        let promoted = signing_keys::Entity::update_many()
            .col_expr(signing_keys::Column::State, "current".into())
            .col_expr(signing_keys::Column::ActivatedAt, now.into())
            .filter(signing_keys::Column::Kid.eq(next.kid.clone()))
            .filter(signing_keys::Column::State.eq("next"))
            .exec(&txn)
            .await?;
        if promoted.rows_affected != 1 {
            return Err(KeyError::NoNext);
        }
        fresh.insert(&txn).await?;
        txn.commit().await?;
        self.reload().await?;
        Ok(next.kid)
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(signing_keys::Entity::find()
            .order_by_asc(signing_keys::Column::CreatedAt)
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
            })
            .collect())
    }
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
