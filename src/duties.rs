//! Background duties and their coordination across instances.
//!
//! Every instance, every `key_reload_interval`: re-reads the signing keys (so a rotation or
//! revocation made elsewhere is picked up within that bound), deny-lists the sign-ins ended
//! elsewhere since its last pass (`signins::SignIns::sync`: the command line on the embedded
//! default, or an instance whose store write failed) and prunes its in-process store.
//! Then it tries to take the `duties` lease in the store (Redis: shared by all instances, a Lua
//! script with a growing fencing token; embedded default: in-process). The holder alone runs
//! the shared duties: keep a `current` and a `next` key, rotate on schedule, remove keys whose
//! publication has ended, send the outbox's due e-mail (`mail::Sender`, every pass) and due
//! alert webhooks (`webhooks::WebhookSender`), raise `key_rotation_overdue` when the signing
//! key is past its rotation (`alerts`), and, at most once a minute, purge expired refresh tokens (and codes and pending second steps). The
//! lease lasts three reload intervals (at least 3 s) and the holder renews it on every tick;
//! when the holder dies another instance takes over once it lapses. An instance that cannot
//! reach the store raises `store_unavailable` (deduplicated in the database). Writes that must not come
//! from a superseded holder (the scheduled rotation) carry the fencing token into the
//! database; the outbox is claimed row by row, so a superseded holder still sending cannot
//! send a message twice.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::json;

use crate::audit::{Event, EventType, Origin, Outcome};
use crate::keys::Rotation;
use crate::state::AppState;

/// The name of the lease in the store.
pub const LEASE: &str = "duties";

/// How often the lease holder purges expired refresh tokens, in seconds.
const CLEANUP_EVERY_SECS: i64 = 60;

/// What one pass did (for logs and tests).
#[derive(Debug, Default)]
pub struct TickReport {
    /// The key ring changed.
    pub reloaded: bool,
    /// This instance held the lease, with this fencing token.
    pub fence: Option<u64>,
    /// A missing `current` or `next` key was created.
    pub created: bool,
    pub rotated: Option<Rotation>,
    pub removed: Vec<String>,
    /// Refresh-token rows purged.
    pub purged: u64,
    /// What the outbox pass did (the lease holder sends mail on every pass).
    pub mail: Option<crate::mail::SendReport>,
    /// What the webhook outbox pass did.
    pub webhooks: Option<crate::webhooks::DeliveryReport>,
}

/// One instance's duty runner. The lease is held in the name of the instance
/// ([`AppState::instance`]), so any runner built from the same state renews the same lease.
pub struct Duties {
    state: AppState,
    last_cleanup: AtomicI64,
    /// When the last sign-in sync started (Unix seconds).
    last_sync: AtomicI64,
}

impl Duties {
    pub fn new(state: AppState) -> Self {
        let started = state.clock.now();
        Self {
            state,
            last_cleanup: AtomicI64::new(i64::MIN),
            last_sync: AtomicI64::new(started),
        }
    }

    /// One pass: local upkeep, then the shared duties if this instance holds the lease.
    pub async fn tick(&self) -> TickReport {
        let mut report = TickReport::default();
        match self.state.keys.reload().await {
            Ok(changed) => report.reloaded = changed,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload signing keys; keeping the current set")
            }
        }
        let now = self.state.clock.now();
        match self
            .state
            .sign_ins
            .sync(self.last_sync.load(Ordering::Relaxed))
            .await
        {
            Ok(_) => self.last_sync.store(now, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "could not pick up sign-ins ended elsewhere; will retry")
            }
        }
        self.state.store.prune().await;
        let ttl = self.state.settings.keys.timing.lease_ttl();
        match self
            .state
            .store
            .try_lock(LEASE, &self.state.instance, ttl)
            .await
        {
            Ok(Some(fence)) => {
                report.fence = Some(fence);
                self.shared_duties(fence, &mut report).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the store for the duty lease; skipping shared duties");
                self.state.alerts.store_unavailable(&e.to_string()).await;
            }
        }
        self.observe(&report).await;
        report
    }

    /// Refreshes the gauges a scrape must not compute itself: the lease, and the outbox depth
    /// (one `COUNT` per pass; every instance reports it, so it survives a change of holder).
    /// The signing key's age is set by the key reload at the start of the pass.
    async fn observe(&self, report: &TickReport) {
        crate::metrics::duties_lease(report.fence.is_some());
        match self.state.outbox.depth().await {
            Ok(depth) => crate::metrics::outbox_depth("mail", depth),
            Err(e) => tracing::debug!(error = %e, "could not count the mail outbox"),
        }
        match self.state.alerts.webhooks().pending().await {
            Ok(depth) => crate::metrics::outbox_depth("webhooks", depth),
            Err(e) => tracing::debug!(error = %e, "could not count the webhook outbox"),
        }
    }

    async fn shared_duties(&self, fence: u64, report: &mut TickReport) {
        let keys = &self.state.keys;
        match keys.ensure().await {
            Ok(created) => report.created = created,
            Err(e) => tracing::warn!(error = %e, "could not ensure a current and a next key"),
        }
        match keys.rotate_if_due(fence).await {
            Ok(Some(rotation)) => {
                tracing::info!(current = %rotation.current, next = %rotation.next, "scheduled key rotation");
                self.audit(
                    EventType::KeyRotated,
                    json!({
                        "current_kid": rotation.current,
                        "retired_kid": rotation.retired,
                        "next_kid": rotation.next,
                        "via": "schedule",
                    }),
                )
                .await;
                report.rotated = Some(rotation);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled key rotation failed; will retry"),
        }
        match keys.remove_expired().await {
            Ok(removed) => {
                for kid in &removed {
                    tracing::info!(%kid, "removed a retired key whose tokens have all expired");
                    self.audit(EventType::KeyRemoved, json!({"kid": kid})).await;
                }
                report.removed = removed;
            }
            Err(e) => tracing::warn!(error = %e, "could not remove expired keys"),
        }
        let now = self.state.clock.now();
        let last = self.last_cleanup.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= CLEANUP_EVERY_SECS {
            self.last_cleanup.store(now, Ordering::Relaxed);
            match self.state.refresh.purge_expired().await {
                Ok(n) => report.purged = n,
                Err(e) => tracing::warn!(error = %e, "could not purge expired refresh tokens"),
            }
            match self.state.codes.purge_expired().await {
                Ok(n) => report.purged = report.purged.saturating_add(n),
                Err(e) => tracing::warn!(error = %e, "could not purge expired authorization codes"),
            }
            match self.state.users.purge_expired_links().await {
                Ok(n) => report.purged = report.purged.saturating_add(n),
                Err(e) => tracing::warn!(error = %e, "could not purge expired mailed-link tokens"),
            }
            match self.state.upstreams.purge_expired().await {
                Ok(n) => report.purged = report.purged.saturating_add(n),
                Err(e) => tracing::warn!(error = %e, "could not purge expired upstream sign-ins"),
            }
            match self.state.mfa.purge_challenges(now).await {
                Ok(n) => report.purged = report.purged.saturating_add(n),
                Err(e) => tracing::warn!(error = %e, "could not purge expired second steps"),
            }
        }
        match self.state.mail_sender.send_due().await {
            Ok(sent) => report.mail = Some(sent),
            Err(e) => tracing::warn!(error = %e, "could not send the outbox; will retry"),
        }
        match self.state.alerts.sender().send_due().await {
            Ok(sent) => report.webhooks = Some(sent),
            Err(e) => tracing::warn!(error = %e, "could not send the webhook outbox; will retry"),
        }
        match keys.list().await {
            Ok(list) => {
                self.state
                    .alerts
                    .check_rotation(&list, keys.timing().rotation_interval)
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "could not list keys for the rotation check"),
        }
        if keys.reload().await.unwrap_or(false) {
            report.reloaded = true;
        }
    }

    async fn audit(&self, kind: EventType, details: serde_json::Value) {
        self.state
            .audit
            .record(
                &Origin::default(),
                Event::new(kind, Outcome::Success).details(details),
            )
            .await;
    }

    /// Runs a pass every `key_reload_interval` until `shutdown` resolves, then gives the lease
    /// back so another instance can take over without waiting for it to lapse.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // Start-up has just loaded the keys: the first pass comes one interval later.
        let period = self.state.settings.keys.timing.reload_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => {
                    let report = self.tick().await;
                    tracing::debug!(?report, "duty pass");
                }
            }
        }
        if let Err(e) = self.state.store.unlock(LEASE, &self.state.instance).await {
            tracing::debug!(error = %e, "could not release the duty lease; it will lapse");
        }
    }
}
