//! bcrypt hashing and verification on a dedicated, bounded pool: `bcrypt_max_concurrency`
//! threads of its own (never the async workers, nor tokio's shared blocking threads), which
//! lower their own scheduling priority, so that when sign-ins saturate the CPU, the async
//! workers answering JWKS, refresh, introspection and health still get it first. At most
//! `bcrypt_max_queue` more operations wait; beyond that, [`HashError::Busy`] at once. Unknown users are verified against a dummy hash of the same cost, so the
//! answer takes the same time whether or not the account exists.
//!
//! bcrypt reads at most 72 bytes, so a 128-character password would be silently truncated.
//! Passwords are therefore pre-hashed (base64 of SHA-256, 44 bytes) before bcrypt: every
//! character counts and no NUL byte reaches bcrypt.

use std::sync::Arc;

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every bcrypt slot is busy and the queue is full: answer at once instead of piling up.
    #[error("too many password operations are waiting")]
    Busy,
    #[error("the password hashing pool is closed")]
    Closed,
    #[error("password hashing failed")]
    Failed,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    /// Work for the pool; the threads end when the last hasher is dropped.
    jobs: Sender<Job>,
    /// Operations running or waiting; bounded by `max_concurrency + max_queue`.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    max_in_flight: usize,
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
    pub async fn new(
        cost: u32,
        max_concurrency: usize,
        max_queue: usize,
    ) -> Result<Self, HashError> {
        let filler = crate::crypto::random_token().map_err(|_| HashError::Failed)?;
        let dummy = tokio::task::spawn_blocking(move || bcrypt::hash(filler, cost))
            .await
            .map_err(|_| HashError::Failed)?
            .map_err(|_| HashError::Failed)?;
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..max_concurrency.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("bcrypt-{n}"))
                .spawn(move || worker(&queue))
                .map_err(|_| HashError::Failed)?;
        }
        Ok(Self {
            cost,
            jobs,
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max_in_flight: max_concurrency.saturating_add(max_queue),
            dummy_hash: dummy.into(),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        use std::sync::atomic::Ordering;
        // Admission: refuse at once when the pool and its queue are full.
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return Err(HashError::Busy);
        }
        struct Leave(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        let _leave = Leave(self.in_flight.clone());
        let (done, result) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(span.in_scope(f));
            }))
            .map_err(|_| HashError::Closed)?;
        result.await.map_err(|_| HashError::Failed)
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

/// A pool thread: lowers its priority once, then runs jobs until the pool is dropped.
fn worker(queue: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let Ok(queue) = queue.lock() else { return };
            queue.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Nice value of the bcrypt threads: below every other thread of the process.
#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours; on Linux,
    // PRIO_PROCESS with who = 0 applies to the calling thread only.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if result != 0 {
        tracing::debug!("could not lower the priority of a bcrypt thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

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
        let hasher = PasswordHasher::new(4, 2, 8).await.unwrap();
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
        let hasher = PasswordHasher::new(4, 2, 8).await.unwrap();
        assert!(!hasher.verify("anything at all", None).await.unwrap());
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_at_once() {
        // One slot, no queue: of two simultaneous hashes one is refused immediately.
        let hasher = PasswordHasher::new(10, 1, 0).await.unwrap();
        let (a, b) = tokio::join!(
            hasher.hash("first password"),
            hasher.hash("second password")
        );
        let busy = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy)))
            .count();
        assert_eq!(busy, 1, "{a:?} {b:?}");
        // Capacity comes back afterwards.
        assert!(hasher.hash("third password").await.is_ok());
    }
}
