//! bcrypt hashing and verification on a bounded blocking pool: at most
//! `bcrypt_max_concurrency` hashes run at once, each on tokio's blocking threads, never on the
//! async workers. Unknown users are verified against a dummy hash of the same cost, so the
//! answer takes the same time whether or not the account exists.
//!
//! bcrypt reads at most 72 bytes, so a 128-character password would be silently truncated.
//! Passwords are therefore pre-hashed (base64 of SHA-256, 44 bytes) before bcrypt: every
//! character counts and no NUL byte reaches bcrypt.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hashing pool is closed")]
    Closed,
    #[error("password hashing failed")]
    Failed,
}

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one bcrypt run at start).
    pub async fn new(cost: u32, max_concurrency: usize) -> Result<Self, HashError> {
        let filler = crate::crypto::random_token().map_err(|_| HashError::Failed)?;
        let dummy = tokio::task::spawn_blocking(move || bcrypt::hash(filler, cost))
            .await
            .map_err(|_| HashError::Failed)?
            .map_err(|_| HashError::Failed)?;
        Ok(Self {
            cost,
            permits: Arc::new(Semaphore::new(max_concurrency)),
            dummy_hash: dummy.into(),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Closed)?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(f))
            .in_current_span()
            .await
            .map_err(|_| HashError::Failed)
    }

    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let password = prehash(password);
        let cost = self.cost;
        self.run(move || bcrypt::hash(password, cost))
            .await?
            .map_err(|_| HashError::Failed)
    }

    /// Verifies `password` against `hash`, or against the dummy hash when `hash` is `None`
    /// (unknown user), in which case the answer is always `false`.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, HashError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.to_string(), str::to_string);
        let password = prehash(password);
        let ok = self
            .run(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await?;
        Ok(ok && known)
    }
}

fn prehash(password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        password.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_character_counts_beyond_bcrypts_72_bytes() {
        let hasher = PasswordHasher::new(4, 2).await.unwrap();
        let long = "x".repeat(100);
        let hash = hasher.hash(&long).await.unwrap();
        assert!(hasher.verify(&long, Some(&hash)).await.unwrap());
        let differs_at_the_end = format!("{}y", "x".repeat(99));
        assert!(
            !hasher
                .verify(&differs_at_the_end, Some(&hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let hasher = PasswordHasher::new(4, 2).await.unwrap();
        assert!(!hasher.verify("anything at all", None).await.unwrap());
    }
}
