//! bcrypt hashing and verification on a dedicated, bounded pool: `bcrypt_max_concurrency`
//! threads of its own (never the async workers, nor tokio's shared blocking threads), which
//! lower their own scheduling priority, so that when sign-ins saturate the CPU, the async
//! workers answering JWKS, refresh, introspection and health still get it first. At most
//! `bcrypt_max_queue` more jobs wait; beyond that, [`HashError::Busy`] at once. The bound is on
//! jobs, not on waiting requests: a job holds its place until it has left the pool, even when
//! its request is cancelled (the client went away), and such an orphaned job skips the bcrypt
//! work when its turn comes. Unknown users are verified against a dummy hash of the same cost,
//! so the answer takes the same time whether or not the account exists.
//!
//! The metrics show the pool's queue: `portcullis_bcrypt_queue_depth` (jobs admitted and not
//! yet on a thread), `portcullis_bcrypt_wait_seconds` and `portcullis_bcrypt_busy_total`.
//!
//! bcrypt reads at most 72 bytes, so a 128-character password would be silently truncated.
//! Passwords are therefore pre-hashed (base64 of SHA-256, 44 bytes) before bcrypt: every
//! character counts and no NUL byte reaches bcrypt.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

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
    /// Jobs running or queued (whether or not anyone still waits for them); bounded by
    /// `max_concurrency + max_queue`.
    in_flight: Arc<AtomicUsize>,
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
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: max_concurrency.saturating_add(max_queue),
            dummy_hash: dummy.into(),
        })
    }

    async fn run<T, F>(&self, f: F) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Admission: refuse at once when the pool and its queue are full. The slot belongs to
        // the job, not to the request: it is given back on the pool thread when the job ends,
        // so a request that is cancelled (its client went away) cannot leave its job queued
        // behind a free slot.
        let Some(slot) = Slot::take(&self.in_flight, self.max_in_flight) else {
            crate::metrics::bcrypt_busy();
            return Err(HashError::Busy);
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let queued = Queued::now();
        self.jobs
            .send(Box::new(move || {
                queued.started();
                // Nobody is waiting for the answer any more: skip the work.
                if done.is_closed() {
                    return;
                }
                let answer = span.in_scope(f);
                // Free the slot before answering, so that whoever reads the answer finds it free.
                drop(slot);
                let _ = done.send(answer);
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

/// A job in the queue, counted in the queue-depth gauge until a thread takes it (or the job
/// is dropped unrun, when the pool closes).
struct Queued(std::time::Instant, bool);

impl Queued {
    fn now() -> Self {
        crate::metrics::bcrypt_queued();
        Self(std::time::Instant::now(), true)
    }

    /// A thread took the job.
    fn started(mut self) {
        self.1 = false;
        crate::metrics::bcrypt_started(self.0.elapsed());
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.1 {
            crate::metrics::bcrypt_dropped();
        }
    }
}

/// One admitted operation, counted in `in_flight` until dropped: with its job, on the pool
/// thread once the job has run (or been skipped), or at once if the job never reached the queue.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(in_flight: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(in_flight.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod cancellation_tests {
    use std::future::Future;
    use std::time::{Duration, Instant};

    use super::*;

    /// Polls `future` once, far enough to be admitted and queued; dropping what this returns
    /// cancels it, as when a client goes away.
    fn start<F: Future>(future: F) -> std::pin::Pin<Box<F>> {
        let mut future = Box::pin(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(future.as_mut().poll(&mut cx).is_pending());
        future
    }

    #[tokio::test]
    async fn cancelled_requests_keep_their_jobs_slots_until_the_jobs_end() {
        // One thread and one queue place: two jobs fill the pool.
        let hasher = PasswordHasher::new(4, 1, 1).await.unwrap();
        // The first job is a slow one: it holds the thread until released.
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let running = start(hasher.run(move || {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
        }));
        started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The second waits in the queue. Then both requests go away.
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = ran.clone();
        let queued = start(hasher.run(move || counter.fetch_add(1, Ordering::SeqCst)));
        drop((running, queued));

        // Both requests are gone but their jobs still fill the pool: a new sign-in is refused
        // at once instead of waiting behind them.
        let next = tokio::time::timeout(Duration::from_secs(2), hasher.verify("password", None));
        assert!(
            matches!(next.await, Ok(Err(HashError::Busy))),
            "a new request must be refused while the cancelled jobs hold the pool"
        );

        // Capacity comes back when they end; the orphaned queued job skipped its work.
        release_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match hasher.verify("password", None).await {
                Ok(verified) => {
                    assert!(!verified);
                    break;
                }
                Err(HashError::Busy) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("capacity did not come back: {e:?}"),
            }
        }
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "a job nobody waits for is skipped"
        );
        assert_eq!(hasher.in_flight.load(Ordering::SeqCst), 0);
    }
}
