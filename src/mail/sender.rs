//! Sending the outbox. The background duties' lease holder calls [`Sender::send_due`] on every
//! pass: it takes up to [`BATCH`] due messages, claims each with a conditional `UPDATE` (so an
//! overlapping pass, here or on an instance that took over the lease, skips it), delivers it
//! (SMTP, or an `.eml` file 0600 when no SMTP server is configured) and only then marks it
//! sent. A failure is retried with exponential back-off ([`retry_delay`]) and recorded as a
//! short reason; a permanent refusal (5xx), a message that cannot be built, or
//! [`GIVE_UP_AFTER_SECS`] of failures ends it as failed. A crash between delivery and the mark
//! sends the message again once its claim lapses: at least once, never lost. The pass stops at
//! the first transient failure (the server is likely unreachable; the others would wait on the
//! same timeout). Delivered and failed rows are deleted after [`KEEP_SECS`] (their links carry
//! tokens).

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use entities::outbox;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use secrecy::ExposeSecret;

use super::MailError;
use crate::clock::SharedClock;
use crate::config::{MailSettings, SmtpSecurity};

/// Messages taken per pass.
pub const BATCH: u64 = 20;
/// How long a claim keeps other passes off a message (longer than one SMTP transaction can
/// take with [`SMTP_TIMEOUT`]).
pub const CLAIM_SECS: i64 = 300;
/// The timeout of each SMTP command (and of connecting).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// The first retry comes this long after a failure; each next one twice as late.
pub const FIRST_RETRY_SECS: i64 = 30;
/// ... but never later than this.
pub const MAX_RETRY_SECS: i64 = 3_600;
/// A message still failing this long after it was queued is given up.
pub const GIVE_UP_AFTER_SECS: i64 = 86_400;
/// Delivered and failed messages are deleted this long after.
pub const KEEP_SECS: i64 = 7 * 86_400;
/// The recorded reason of a failure is cut to this many characters.
const MAX_ERROR_CHARS: usize = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Messages delivered (to the SMTP server, or written as files).
    pub sent: u32,
    /// Messages that failed this time and will be retried.
    pub deferred: u32,
    /// Messages given up.
    pub failed: u32,
}

/// The delay before the next attempt after `attempts` failures (1, 2, …): 30 s doubling,
/// capped at an hour.
pub fn retry_delay(attempts: i32) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(0);
    FIRST_RETRY_SECS
        .saturating_mul(1_i64 << doublings)
        .min(MAX_RETRY_SECS)
}

#[derive(Clone)]
enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

/// How one delivery failed.
enum Failure {
    /// Worth retrying (connection, timeout, 4xx).
    Transient(String),
    /// Will never work (5xx, a message that cannot be built).
    Permanent(String),
}

/// Sends due messages from the outbox.
#[derive(Clone)]
pub struct Sender {
    db: DatabaseConnection,
    clock: SharedClock,
    from: Mailbox,
    delivery: Delivery,
}

impl Sender {
    pub fn new(
        db: DatabaseConnection,
        clock: SharedClock,
        settings: &MailSettings,
    ) -> Result<Self, MailError> {
        let delivery = match &settings.smtp {
            None => Delivery::Files(settings.dir.clone()),
            Some(smtp) => {
                let tls = |host: &str| {
                    TlsParameters::new(host.to_owned())
                        .map_err(|e| MailError::Transport(format!("TLS set-up: {e}")))
                };
                let tls = match smtp.security {
                    SmtpSecurity::Plain => Tls::None,
                    SmtpSecurity::StartTls => Tls::Required(tls(&smtp.host)?),
                    SmtpSecurity::Tls => Tls::Wrapper(tls(&smtp.host)?),
                };
                let mut builder =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
                        .port(smtp.port)
                        .tls(tls)
                        .timeout(Some(SMTP_TIMEOUT));
                if let Some(c) = &smtp.credentials {
                    builder = builder.credentials(Credentials::new(
                        c.user.clone(),
                        c.password.expose_secret().to_owned(),
                    ));
                }
                Delivery::Smtp(builder.build())
            }
        };
        Ok(Self {
            db,
            clock,
            from: settings.from.clone(),
            delivery,
        })
    }

    /// One pass: delivers the due messages (up to [`BATCH`]), then deletes old finished ones.
    #[tracing::instrument(skip_all)]
    pub async fn send_due(&self) -> Result<SendReport, MailError> {
        let mut report = SendReport::default();
        let now = self.clock.now();
        let due = outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::FailedAt.is_null())
            .filter(outbox::Column::NextAttemptAt.lte(now))
            .order_by_asc(outbox::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        for row in due {
            if !self.claim(&row).await? {
                continue;
            }
            match self.deliver(&row).await {
                Ok(()) => {
                    self.mark_sent(&row).await?;
                    report.sent = report.sent.saturating_add(1);
                }
                Err(Failure::Permanent(reason)) => {
                    self.mark_failed(&row, &reason).await?;
                    report.failed = report.failed.saturating_add(1);
                }
                Err(Failure::Transient(reason)) => {
                    if self.defer(&row, &reason).await? {
                        report.deferred = report.deferred.saturating_add(1);
                    } else {
                        report.failed = report.failed.saturating_add(1);
                    }
                    break;
                }
            }
        }
        self.purge().await?;
        Ok(report)
    }

    /// Takes `row` for this pass: moves its next attempt past the claim, if no one else did.
    async fn claim(&self, row: &outbox::Model) -> Result<bool, MailError> {
        let claimed = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::NextAttemptAt,
                Expr::value(self.clock.now().saturating_add(CLAIM_SECS)),
            )
            .filter(outbox::Column::Id.eq(row.id.as_str()))
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::FailedAt.is_null())
            .filter(outbox::Column::NextAttemptAt.eq(row.next_attempt_at))
            .exec(&self.db)
            .await?;
        Ok(claimed.rows_affected == 1)
    }

    fn message(&self, row: &outbox::Model) -> Result<Message, Failure> {
        let to = row
            .recipient
            .parse::<lettre::Address>()
            .map_err(|_| Failure::Permanent("the recipient is not a valid address".into()))?;
        let domain = self.from.email.domain().to_owned();
        let date = UNIX_EPOCH + Duration::from_secs(u64::try_from(self.clock.now()).unwrap_or(0));
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(row.subject.as_str())
            .date(date)
            // The same on every attempt, so a receiver can recognize a message sent twice.
            .message_id(Some(format!("<{}@{domain}>", row.id)))
            .multipart(MultiPart::alternative_plain_html(
                row.text_body.clone(),
                row.html_body.clone(),
            ))
            .map_err(|e| Failure::Permanent(short(&format!("cannot build the message: {e}"))))
    }

    async fn deliver(&self, row: &outbox::Model) -> Result<(), Failure> {
        let message = self.message(row)?;
        match &self.delivery {
            Delivery::Smtp(transport) => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(Failure::Permanent(short(&e.to_string()))),
                Err(e) => Err(Failure::Transient(short(&e.to_string()))),
            },
            Delivery::Files(dir) => {
                // Beside the message, its plain text as it reads (the `.eml` encodes long lines
                // as quoted-printable, which breaks links for a reader without a mail client).
                write_file(dir, &row.id, "txt", row.text_body.as_bytes())
                    .await
                    .map_err(|e| Failure::Transient(short(&format!("writing the file: {e}"))))?;
                let path = write_file(dir, &row.id, "eml", &message.formatted())
                    .await
                    .map_err(|e| Failure::Transient(short(&format!("writing the file: {e}"))))?;
                // The path only: the content has a link with a token.
                tracing::info!(path = %path.display(), kind = %row.kind, "no SMTP server configured: wrote the message to a file");
                Ok(())
            }
        }
    }

    async fn mark_sent(&self, row: &outbox::Model) -> Result<(), MailError> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Expr::value(self.clock.now()))
            .col_expr(
                outbox::Column::Attempts,
                Expr::value(row.attempts.saturating_add(1)),
            )
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Option::<String>::None),
            )
            .filter(outbox::Column::Id.eq(row.id.as_str()))
            .filter(outbox::Column::SentAt.is_null())
            .exec(&self.db)
            .await?;
        tracing::info!(id = %row.id, kind = %row.kind, "sent a message");
        Ok(())
    }

    async fn mark_failed(&self, row: &outbox::Model, reason: &str) -> Result<(), MailError> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::FailedAt, Expr::value(self.clock.now()))
            .col_expr(
                outbox::Column::Attempts,
                Expr::value(row.attempts.saturating_add(1)),
            )
            .col_expr(outbox::Column::LastError, Expr::value(reason))
            .filter(outbox::Column::Id.eq(row.id.as_str()))
            .filter(outbox::Column::SentAt.is_null())
            .exec(&self.db)
            .await?;
        tracing::warn!(id = %row.id, kind = %row.kind, attempts = row.attempts.saturating_add(1), reason, "gave up sending a message");
        Ok(())
    }

    /// Schedules the next attempt, or gives up after [`GIVE_UP_AFTER_SECS`]. True: deferred.
    async fn defer(&self, row: &outbox::Model, reason: &str) -> Result<bool, MailError> {
        let now = self.clock.now();
        if now.saturating_sub(row.created_at) >= GIVE_UP_AFTER_SECS {
            self.mark_failed(row, reason).await?;
            return Ok(false);
        }
        let attempts = row.attempts.saturating_add(1);
        let next = now.saturating_add(retry_delay(attempts));
        outbox::Entity::update_many()
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(next))
            .col_expr(outbox::Column::Attempts, Expr::value(attempts))
            .col_expr(outbox::Column::LastError, Expr::value(reason))
            .filter(outbox::Column::Id.eq(row.id.as_str()))
            .filter(outbox::Column::SentAt.is_null())
            .exec(&self.db)
            .await?;
        tracing::warn!(id = %row.id, kind = %row.kind, attempts, retry_in = next.saturating_sub(now), reason, "could not send a message; will retry");
        Ok(true)
    }

    /// Deletes messages delivered or given up more than [`KEEP_SECS`] ago.
    async fn purge(&self) -> Result<u64, MailError> {
        let before = self.clock.now().saturating_sub(KEEP_SECS);
        let deleted = outbox::Entity::delete_many()
            .filter(
                Condition::any()
                    .add(outbox::Column::SentAt.lt(before))
                    .add(outbox::Column::FailedAt.lt(before)),
            )
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}

/// Cuts a failure reason to [`MAX_ERROR_CHARS`] characters on one line.
fn short(reason: &str) -> String {
    reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_CHARS)
        .collect()
}

/// Writes `<dir>/<id>.eml` (the folder 0700, the file 0600), whole or not at all (a temporary
/// file renamed into place).
async fn write_file(
    dir: &Path,
    id: &str,
    extension: &str,
    content: &[u8],
) -> std::io::Result<PathBuf> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await?;
    let path = dir.join(format!("{id}.{extension}"));
    let partial = dir.join(format!(".{id}.{extension}.partial"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&partial).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, content).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, &path).await?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_30_seconds_doubling_up_to_an_hour() {
        let delays: Vec<i64> = (1..=9).map(retry_delay).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay(0), 30);
        assert_eq!(retry_delay(i32::MAX), 3600);
    }

    #[test]
    fn failure_reasons_are_short_single_lines() {
        let r = short(&format!("550 no\r\nsuch user {}", "x".repeat(500)));
        assert!(r.chars().count() <= MAX_ERROR_CHARS);
        assert!(!r.contains('\n') && !r.contains('\r'));
    }
}
