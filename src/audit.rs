//! The audit log: security events (registration, sign-ins, token issuance, refresh-token reuse,
//! revocation, key and client changes) with time, actor, client, IP, request id and outcome.
//!
//! Events go to the `audit_events` table and, as structured `tracing` events with target
//! `audit`, to the log stream, so an alerting pipeline can follow either. Event types are an
//! enum with stable string names: add variants, never rename them.
//!
//! Rows are written off the request path: [`Audit::record`] hands the row to one writer task
//! per instance, which inserts whatever has queued up in one multi-row `INSERT` (in the order
//! recorded). [`Audit::flush`] waits until every row recorded before it is written; reading
//! the log ([`Audit::list`]) and shutting down (`serve_with_tls`, the command line) flush
//! first, so nothing recorded is lost or missing from what a reader sees.

use entities::audit_events;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set,
};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

use crate::clock::SharedClock;
use crate::db::WarmPool;

/// Stable names of audited events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    UserRegistered,
    UserUpdated,
    SignIn,
    TokenIssued,
    RefreshReuseDetected,
    RefreshReplayed,
    TokenRevoked,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    ClientSecretRotated,
    KeyRotated,
    KeyRevoked,
    KeyRemoved,
    UserRolesChanged,
    UserDisabled,
    UserEnabled,
    AccountLocked,
    AccountUnlocked,
    RolePermissionsChanged,
    ArticleCreated,
    ArticleUpdated,
    ArticleDeleted,
    /// A browser session or sign-in was ended (logout, by the user, by an administrator).
    SessionEnded,
    /// A user granted a client scopes on the consent page, or withdrew them.
    ConsentGranted,
    ConsentWithdrawn,
    /// An authorization code was presented again; the sign-in it started was ended.
    CodeReplayDetected,
    EmailVerified,
    /// A new link to confirm the account's address was mailed, on request.
    EmailVerificationRequested,
    EmailChangeRequested,
    EmailChanged,
    PasswordResetRequested,
    PasswordReset,
    PasswordChanged,
    /// The password was right and a second factor is needed (the sign-in is pending).
    MfaRequired,
    /// Two-factor authentication was turned on (an enrolment confirmed).
    MfaEnrolled,
    /// Two-factor authentication was turned off.
    MfaDisabled,
    /// New recovery codes replaced the old ones.
    MfaRecoveryCodesRegenerated,
    /// A recovery code was used to sign in or to turn MFA off.
    MfaRecoveryCodeUsed,
    /// An administrator changed whether a role requires MFA.
    RoleMfaChanged,
    /// A security alert rule fired (see `alerts`); the details are the alert's payload.
    AlertRaised,
    /// An alert webhook endpoint was registered, changed, given a new secret or removed.
    WebhookCreated,
    WebhookUpdated,
    WebhookSecretRotated,
    WebhookDeleted,
    /// An upstream identity provider was added, changed or removed.
    IdentityProviderCreated,
    IdentityProviderUpdated,
    IdentityProviderDeleted,
    /// An upstream identity was linked to an account, or unlinked.
    IdentityLinked,
    IdentityUnlinked,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserRegistered => "user.registered",
            Self::UserUpdated => "user.updated",
            Self::SignIn => "auth.sign_in",
            Self::TokenIssued => "token.issued",
            Self::RefreshReuseDetected => "token.refresh_reuse_detected",
            Self::RefreshReplayed => "token.refresh_replayed",
            Self::TokenRevoked => "token.revoked",
            Self::ClientCreated => "client.created",
            Self::ClientUpdated => "client.updated",
            Self::ClientDeleted => "client.deleted",
            Self::ClientSecretRotated => "client.secret_rotated",
            Self::KeyRotated => "key.rotated",
            Self::KeyRevoked => "key.revoked",
            Self::KeyRemoved => "key.removed",
            Self::UserRolesChanged => "user.roles_changed",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::AccountLocked => "auth.account_locked",
            Self::AccountUnlocked => "user.unlocked",
            Self::RolePermissionsChanged => "role.permissions_changed",
            Self::ArticleCreated => "article.created",
            Self::ArticleUpdated => "article.updated",
            Self::ArticleDeleted => "article.deleted",
            Self::SessionEnded => "auth.session_ended",
            Self::ConsentGranted => "consent.granted",
            Self::ConsentWithdrawn => "consent.withdrawn",
            Self::CodeReplayDetected => "token.code_replay_detected",
            Self::EmailVerified => "user.email_verified",
            Self::EmailVerificationRequested => "user.email_verification_requested",
            Self::EmailChangeRequested => "user.email_change_requested",
            Self::EmailChanged => "user.email_changed",
            Self::PasswordResetRequested => "user.password_reset_requested",
            Self::PasswordReset => "user.password_reset",
            Self::PasswordChanged => "user.password_changed",
            Self::MfaRequired => "auth.mfa_required",
            Self::MfaEnrolled => "mfa.enrolled",
            Self::MfaDisabled => "mfa.disabled",
            Self::MfaRecoveryCodesRegenerated => "mfa.recovery_codes_regenerated",
            Self::MfaRecoveryCodeUsed => "mfa.recovery_code_used",
            Self::RoleMfaChanged => "role.mfa_changed",
            Self::AlertRaised => "alert.raised",
            Self::WebhookCreated => "webhook.created",
            Self::WebhookUpdated => "webhook.updated",
            Self::WebhookSecretRotated => "webhook.secret_rotated",
            Self::WebhookDeleted => "webhook.deleted",
            Self::IdentityProviderCreated => "idp.created",
            Self::IdentityProviderUpdated => "idp.updated",
            Self::IdentityProviderDeleted => "idp.deleted",
            Self::IdentityLinked => "user.identity_linked",
            Self::IdentityUnlinked => "user.identity_unlinked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// Who and where a request came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// The `User-Agent` header, cut to [`USER_AGENT_MAX`] characters (shown to users in
    /// their list of sign-ins; never used for a decision).
    pub user_agent: Option<String>,
}

/// The most characters of a `User-Agent` header kept.
pub const USER_AGENT_MAX: usize = 256;

/// One event to record. Details must never contain a secret or a token.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: EventType,
    pub outcome: Outcome,
    pub actor_user_id: Option<String>,
    pub client_id: Option<String>,
    pub details: Value,
    /// Not stored: a digest of the account name a sign-in was attempted for, so the alert
    /// rules can tell accounts apart when the name matches no user.
    pub attempted: Option<String>,
}

impl Event {
    pub fn new(event_type: EventType, outcome: Outcome) -> Self {
        Self {
            event_type,
            outcome,
            actor_user_id: None,
            client_id: None,
            details: Value::Object(Default::default()),
            attempted: None,
        }
    }

    /// The account name a sign-in was attempted for (kept only as a digest, never stored).
    pub fn attempted(mut self, name: &str) -> Self {
        self.attempted = Some(crate::crypto::secret_digest(&name.trim().to_lowercase()));
        self
    }

    pub fn actor(mut self, user_id: impl Into<String>) -> Self {
        self.actor_user_id = Some(user_id.into());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// Which events to list; every field narrows the result.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

/// Something that watches every recorded event (the alert rules), set once at start.
#[async_trait::async_trait]
pub trait Observer: Send + Sync {
    async fn observe(&self, origin: &Origin, event: &Event);
}

/// The most rows one `INSERT` carries (nine columns each: far below PostgreSQL's limit of
/// 65,535 bind parameters).
const BATCH_MAX: usize = 256;

/// How many recorded rows may wait for the writer before `record` waits for room.
const QUEUE: usize = 1_024;

/// How long the writer lets rows gather after the first of a batch, unless a flush waits:
/// under load this makes one `INSERT` (and one commit) of many rows instead of one per
/// request.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

enum Job {
    Row(Box<audit_events::ActiveModel>),
    /// Answered once every row queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Audit {
    db: DatabaseConnection,
    clock: SharedClock,
    observer: Arc<OnceLock<Arc<dyn Observer>>>,
    /// The writer task's queue; `None` outside a runtime (rows are then written in place).
    writer: Option<tokio::sync::mpsc::Sender<Job>>,
}

impl Audit {
    /// The audit log of `db`. Inside a tokio runtime this starts the writer task (writing on
    /// `warm`, the same database), which ends
    /// when the last clone of this `Audit` is dropped.
    pub fn new(db: DatabaseConnection, warm: WarmPool, clock: SharedClock) -> Self {
        let writer = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            runtime.spawn(write_batches(warm, rx));
            tx
        });
        Self {
            db,
            clock,
            observer: Arc::default(),
            writer,
        }
    }

    /// Shows every event recorded from now on, by this log and its clones, to `observer`
    /// (as it is recorded, before its row is written). The first observer set stays.
    pub fn observe_with(&self, observer: Arc<dyn Observer>) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("the audit log already has an observer");
        }
    }

    /// Waits until every event recorded before this call is in the database (or has failed
    /// to be written, which is logged).
    pub async fn flush(&self) {
        if let Some(writer) = &self.writer {
            let (done, written) = tokio::sync::oneshot::channel();
            if writer.send(Job::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        }
    }

    /// Events matching `filter`, newest first, with ids below `before` (keyset pagination).
    /// Returns one page and whether more follow.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u64,
    ) -> Result<(Vec<audit_events::Model>, bool), sea_orm::DbErr> {
        use audit_events::Column;
        // A reader sees every event recorded before it asked.
        self.flush().await;
        let mut select = audit_events::Entity::find().order_by_desc(Column::Id);
        if let Some(t) = &filter.event_type {
            select = select.filter(Column::EventType.eq(t.clone()));
        }
        if let Some(u) = &filter.user_id {
            select = select.filter(Column::ActorUserId.eq(u.clone()));
        }
        if let Some(c) = &filter.client_id {
            select = select.filter(Column::ClientId.eq(c.clone()));
        }
        if let Some(since) = filter.since {
            select = select.filter(Column::OccurredAt.gte(since));
        }
        if let Some(until) = filter.until {
            select = select.filter(Column::OccurredAt.lt(until));
        }
        if let Some(before) = before {
            select = select.filter(Column::Id.lt(before));
        }
        let mut rows = select.limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok((rows, more))
    }

    /// Records `event`. The row is written by the writer task (see the module docs); a failure
    /// to write is logged loudly but does not fail the request that caused it (the log line
    /// still carries the event).
    pub async fn record(&self, origin: &Origin, event: Event) {
        tracing::info!(
            target: "audit",
            event_type = event.event_type.as_str(),
            outcome = event.outcome.as_str(),
            actor = event.actor_user_id.as_deref(),
            client_id = event.client_id.as_deref(),
            ip = origin.ip.as_deref(),
            request_id = origin.request_id.as_deref(),
            details = %event.details,
            "audit event"
        );
        let row = audit_events::ActiveModel {
            occurred_at: Set(self.clock.now()),
            event_type: Set(event.event_type.as_str().into()),
            outcome: Set(event.outcome.as_str().into()),
            actor_user_id: Set(event.actor_user_id.clone()),
            client_id: Set(event.client_id.clone()),
            ip: Set(origin.ip.clone()),
            request_id: Set(origin.request_id.clone()),
            details: Set(event.details.to_string()),
            ..Default::default()
        };
        let unqueued = match &self.writer {
            Some(writer) => match writer.send(Job::Row(Box::new(row))).await {
                Ok(()) => None,
                // The writer is gone (the runtime is shutting down): write it here.
                Err(tokio::sync::mpsc::error::SendError(Job::Row(row))) => Some(*row),
                Err(_) => None,
            },
            None => Some(row),
        };
        if let Some(row) = unqueued
            && let Err(e) = row.insert(&self.db).await
        {
            tracing::error!(error = %e, "audit event could not be stored");
        }
        if let Some(observer) = self.observer.get() {
            observer.observe(origin, &event).await;
        }
    }
}

/// The writer task: takes what has queued up (at most [`BATCH_MAX`] rows), writes it in one
/// `INSERT`, then answers the flushes that were waiting behind those rows.
async fn write_batches(db: WarmPool, mut queue: tokio::sync::mpsc::Receiver<Job>) {
    let mut rows = Vec::with_capacity(BATCH_MAX);
    let mut flushes = Vec::new();
    while let Some(job) = queue.recv().await {
        let mut next = Some(job);
        // The rows of the requests running now join this batch until the deadline; a flush
        // cuts it short (it is answered once the batch is written).
        let deadline = tokio::time::Instant::now() + GATHER;
        loop {
            while let Some(job) = next.take() {
                match job {
                    Job::Row(row) => rows.push(*row),
                    Job::Flush(done) => flushes.push(done),
                }
                if rows.len() < BATCH_MAX {
                    next = queue.try_recv().ok();
                }
            }
            if !flushes.is_empty() || rows.len() >= BATCH_MAX {
                break;
            }
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(job)) => next = Some(job),
                Ok(None) | Err(_) => break,
            }
        }
        if !rows.is_empty() {
            insert_batch(&db, std::mem::take(&mut rows)).await;
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Inserts `rows` in one statement; if that fails, one by one, so one bad row costs only
/// itself.
async fn insert_batch(db: &WarmPool, rows: Vec<audit_events::ActiveModel>) {
    if rows.len() > 1 {
        // Not kept prepared: its shape changes with the number of rows.
        let insert =
            audit_events::Entity::insert_many(rows.clone()).build(db.get_database_backend());
        match db.execute_once(insert).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, rows = rows.len(), "audit batch failed; writing its rows one by one")
            }
        }
    }
    for row in rows {
        if let Err(e) = row.insert(db).await {
            tracing::error!(error = %e, "audit event could not be stored");
        }
    }
}
