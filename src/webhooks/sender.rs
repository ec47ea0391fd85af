//! Sending the webhook outbox. The background duties' lease holder calls
//! [`WebhookSender::send_due`] on every pass, and the instance that raises an alert tries its
//! deliveries at once ([`WebhookSender::send`]). Each delivery is claimed with a conditional
//! `UPDATE` (an overlapping pass skips it), posted, and only then marked delivered: at least
//! once, never lost, the same `webhook-id` on every attempt so receivers can drop repeats.
//! A failure (no answer, an answer other than 2xx) is retried after [`RETRY_SECS`]; a target
//! that now resolves to a private address is refused for good. Redirects are not followed.

use std::time::Duration;

use entities::{webhook_deliveries, webhook_endpoints};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{WebhookError, Webhooks, signing, target};

/// Deliveries taken per pass.
pub const BATCH: u64 = 50;
/// How long a claim keeps other passes off a delivery (longer than one attempt can take).
pub const CLAIM_SECS: i64 = 60;
/// The timeout of one attempt (connecting, sending and reading the answer).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits after the 1st, 2nd, … failed attempt; after the last, the delivery is given up
/// (about a day and a half in all).
pub const RETRY_SECS: [i64; 9] = [5, 30, 120, 600, 1_800, 3_600, 7_200, 21_600, 43_200];
/// Delivered and failed deliveries are deleted this long after.
pub const KEEP_SECS: i64 = 30 * 86_400;
const MAX_ERROR_CHARS: usize = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub delivered: u32,
    pub deferred: u32,
    pub failed: u32,
}

enum Outcome {
    Delivered(u16),
    Retry(Option<u16>, String),
    GiveUp(String),
}

/// Posts due deliveries.
#[derive(Clone)]
pub struct WebhookSender {
    webhooks: Webhooks,
}

impl WebhookSender {
    pub fn new(webhooks: Webhooks) -> Self {
        Self { webhooks }
    }

    /// Tries every due delivery (up to [`BATCH`]); then deletes old finished ones.
    pub async fn send_due(&self) -> Result<DeliveryReport, WebhookError> {
        let now = self.webhooks.clock.now();
        let due = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::DeliveredAt.is_null())
            .filter(webhook_deliveries::Column::FailedAt.is_null())
            .filter(webhook_deliveries::Column::NextAttemptAt.lte(now))
            .order_by_asc(webhook_deliveries::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.webhooks.db)
            .await?;
        let report = self.attempt_all(due).await?;
        self.purge().await?;
        Ok(report)
    }

    /// Tries the deliveries `ids` now, if they are due (what raising an alert calls).
    pub async fn send(&self, ids: &[String]) -> Result<DeliveryReport, WebhookError> {
        let now = self.webhooks.clock.now();
        let due = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::Id.is_in(ids.iter().cloned()))
            .filter(webhook_deliveries::Column::DeliveredAt.is_null())
            .filter(webhook_deliveries::Column::FailedAt.is_null())
            .filter(webhook_deliveries::Column::NextAttemptAt.lte(now))
            .all(&self.webhooks.db)
            .await?;
        self.attempt_all(due).await
    }

    async fn attempt_all(
        &self,
        due: Vec<webhook_deliveries::Model>,
    ) -> Result<DeliveryReport, WebhookError> {
        let mut report = DeliveryReport::default();
        for row in due {
            if !self.claim(&row).await? {
                continue;
            }
            match self.attempt(&row).await {
                Outcome::Delivered(status) => {
                    self.finish(&row, Some(status), None, true).await?;
                    report.delivered = report.delivered.saturating_add(1);
                }
                Outcome::Retry(status, reason) => {
                    if self.defer(&row, status, &reason).await? {
                        report.deferred = report.deferred.saturating_add(1);
                    } else {
                        report.failed = report.failed.saturating_add(1);
                    }
                }
                Outcome::GiveUp(reason) => {
                    self.finish(&row, None, Some(&reason), false).await?;
                    report.failed = report.failed.saturating_add(1);
                }
            }
        }
        Ok(report)
    }

    async fn claim(&self, row: &webhook_deliveries::Model) -> Result<bool, WebhookError> {
        let claimed = webhook_deliveries::Entity::update_many()
            .col_expr(
                webhook_deliveries::Column::NextAttemptAt,
                Expr::value(self.webhooks.clock.now().saturating_add(CLAIM_SECS)),
            )
            .filter(webhook_deliveries::Column::Id.eq(row.id.as_str()))
            .filter(webhook_deliveries::Column::DeliveredAt.is_null())
            .filter(webhook_deliveries::Column::FailedAt.is_null())
            .filter(webhook_deliveries::Column::NextAttemptAt.eq(row.next_attempt_at))
            .exec(&self.webhooks.db)
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    async fn attempt(&self, row: &webhook_deliveries::Model) -> Outcome {
        let endpoint = match webhook_endpoints::Entity::find_by_id(row.endpoint_id.clone())
            .one(&self.webhooks.db)
            .await
        {
            Ok(Some(e)) if e.enabled => e,
            Ok(_) => return Outcome::GiveUp("the endpoint is disabled or gone".into()),
            Err(e) => return Outcome::Retry(None, short(&format!("database: {e}"))),
        };
        let keys = match self.webhooks.signing_keys(&endpoint) {
            Ok(keys) => keys,
            Err(e) => return Outcome::GiveUp(short(&e.to_string())),
        };
        let target = match target::parse(&endpoint.url) {
            Ok(t) => t,
            Err(e) => return Outcome::GiveUp(short(&e.to_string())),
        };
        // Checked again now: the name may resolve elsewhere than at registration.
        let addrs = match target::resolve(&target, self.webhooks.allow_private).await {
            Ok(addrs) => addrs,
            Err(e @ WebhookError::PrivateTarget(_)) => {
                tracing::warn!(delivery = %row.id, endpoint = %endpoint.id, "refused a webhook delivery to a private address");
                return Outcome::GiveUp(short(&e.to_string()));
            }
            Err(e) => return Outcome::Retry(None, short(&e.to_string())),
        };
        // Connect only to the addresses just checked.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .resolve_to_addrs(&target.host, &addrs)
            .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => return Outcome::Retry(None, short(&format!("HTTP client: {e}"))),
        };
        let timestamp = self.webhooks.clock.now();
        let signature = signing::signature_header(&keys, &row.id, timestamp, &row.payload);
        let sent = client
            .post(target.url.as_str())
            .header("content-type", "application/json")
            .header("webhook-id", row.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(row.payload.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered(resp.status().as_u16()),
            Ok(resp) => Outcome::Retry(
                Some(resp.status().as_u16()),
                format!("the endpoint answered {}", resp.status().as_u16()),
            ),
            // Without the URL: it may carry a token of the receiver's.
            Err(e) => Outcome::Retry(None, short(&e.without_url().to_string())),
        }
    }

    async fn finish(
        &self,
        row: &webhook_deliveries::Model,
        status: Option<u16>,
        reason: Option<&str>,
        delivered: bool,
    ) -> Result<(), WebhookError> {
        let now = self.webhooks.clock.now();
        let column = if delivered {
            webhook_deliveries::Column::DeliveredAt
        } else {
            webhook_deliveries::Column::FailedAt
        };
        webhook_deliveries::Entity::update_many()
            .col_expr(column, Expr::value(now))
            .col_expr(
                webhook_deliveries::Column::Attempts,
                Expr::value(row.attempts.saturating_add(1)),
            )
            .col_expr(
                webhook_deliveries::Column::LastStatus,
                Expr::value(status.map(i32::from)),
            )
            .col_expr(
                webhook_deliveries::Column::LastError,
                Expr::value(reason.map(str::to_owned)),
            )
            .filter(webhook_deliveries::Column::Id.eq(row.id.as_str()))
            .exec(&self.webhooks.db)
            .await?;
        if delivered {
            tracing::info!(delivery = %row.id, event_type = %row.event_type, "delivered a webhook");
        } else {
            tracing::warn!(delivery = %row.id, event_type = %row.event_type, reason, "gave up a webhook delivery");
        }
        Ok(())
    }

    /// Schedules the next attempt, or gives up after the last of [`RETRY_SECS`].
    async fn defer(
        &self,
        row: &webhook_deliveries::Model,
        status: Option<u16>,
        reason: &str,
    ) -> Result<bool, WebhookError> {
        let attempts = row.attempts.saturating_add(1);
        let Some(wait) = usize::try_from(attempts - 1)
            .ok()
            .and_then(|i| RETRY_SECS.get(i))
        else {
            self.finish(row, status, Some(reason), false).await?;
            return Ok(false);
        };
        let next = self.webhooks.clock.now().saturating_add(*wait);
        webhook_deliveries::Entity::update_many()
            .col_expr(webhook_deliveries::Column::NextAttemptAt, Expr::value(next))
            .col_expr(webhook_deliveries::Column::Attempts, Expr::value(attempts))
            .col_expr(
                webhook_deliveries::Column::LastStatus,
                Expr::value(status.map(i32::from)),
            )
            .col_expr(webhook_deliveries::Column::LastError, Expr::value(reason))
            .filter(webhook_deliveries::Column::Id.eq(row.id.as_str()))
            .filter(webhook_deliveries::Column::DeliveredAt.is_null())
            .exec(&self.webhooks.db)
            .await?;
        tracing::warn!(delivery = %row.id, attempts, retry_in = wait, reason, "a webhook delivery failed; will retry");
        Ok(true)
    }

    async fn purge(&self) -> Result<u64, WebhookError> {
        let before = self.webhooks.clock.now().saturating_sub(KEEP_SECS);
        let deleted = webhook_deliveries::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(webhook_deliveries::Column::DeliveredAt.lt(before))
                    .add(webhook_deliveries::Column::FailedAt.lt(before)),
            )
            .exec(&self.webhooks.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}

fn short(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect()
}
