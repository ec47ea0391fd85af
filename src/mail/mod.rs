//! Outgoing e-mail through an outbox. A use case that changes something a user must hear about
//! calls [`Outbox::enqueue`] with its open transaction: the message is rendered
//! ([`templates`]) and written to the `outbox` table in that transaction, so a mail exists iff
//! the change committed. The background duties' lease holder sends due messages later
//! ([`Sender`]: SMTP, or `.eml` files when no SMTP server is configured), retrying with
//! back-off. Messages carry links with tokens: neither a link nor a body is ever logged.
//! See docs/ARCHITECTURE.md ("Outgoing e-mail").

mod sender;
pub mod templates;

use entities::outbox;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};

use crate::clock::SharedClock;

pub use sender::{SendReport, Sender};

/// One message to one account.
#[derive(Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The account's username (the greeting).
    pub username: String,
    pub template: MailTemplate,
}

impl std::fmt::Debug for Mail {
    // The template may hold a link with a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("username", &self.username)
            .field("kind", &self.template.kind())
            .finish()
    }
}

/// What a message says. Links are absolute `http(s)` URLs built by the caller (they carry a
/// token, and are never logged).
#[derive(Clone)]
pub enum MailTemplate {
    /// Confirm your address (registration, or a request to confirm it again).
    VerifyEmail {
        link: String,
    },
    /// Someone tried to register with an address that already has an account.
    AlreadyRegistered {
        reset_link: String,
    },
    PasswordReset {
        link: String,
    },
    /// Notice: the password was changed.
    PasswordChanged,
    /// Sent to the NEW address: confirm it.
    EmailChangeConfirm {
        link: String,
        new_email: String,
    },
    /// Notice to the OLD address.
    EmailChanged {
        new_email: String,
    },
    MfaEnabled,
    MfaDisabled,
    RecoveryCodeUsed {
        remaining: usize,
    },
    /// To the operator's alert address: a security alert was raised.
    SecurityAlert {
        /// One line: what happened.
        summary: String,
        /// The alert's facts, one per line (no secrets: addresses, ids, counts).
        facts: Vec<String>,
    },
}

impl MailTemplate {
    /// The stable name stored in `outbox.kind` (the one mapping).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VerifyEmail { .. } => "verify_email",
            Self::AlreadyRegistered { .. } => "already_registered",
            Self::PasswordReset { .. } => "password_reset",
            Self::PasswordChanged => "password_changed",
            Self::EmailChangeConfirm { .. } => "email_change_confirm",
            Self::EmailChanged { .. } => "email_changed",
            Self::MfaEnabled => "mfa_enabled",
            Self::MfaDisabled => "mfa_disabled",
            Self::RecoveryCodeUsed { .. } => "recovery_code_used",
            Self::SecurityAlert { .. } => "security_alert",
        }
    }

    /// The link the message carries, if any.
    pub fn link(&self) -> Option<&str> {
        match self {
            Self::VerifyEmail { link }
            | Self::PasswordReset { link }
            | Self::EmailChangeConfirm { link, .. } => Some(link),
            Self::AlreadyRegistered { reset_link } => Some(reset_link),
            Self::PasswordChanged
            | Self::EmailChanged { .. }
            | Self::MfaEnabled
            | Self::MfaDisabled
            | Self::RecoveryCodeUsed { .. }
            | Self::SecurityAlert { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("not an e-mail address a message can be sent to")]
    InvalidAddress,
    /// A link that is not an absolute http(s) URL (a bug in the caller).
    #[error("a link in a message must be an absolute http(s) URL")]
    InvalidLink,
    #[error("rendering a message: {0}")]
    Render(#[from] askama::Error),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("SMTP transport: {0}")]
    Transport(String),
}

/// Writes messages into the outbox.
#[derive(Clone)]
pub struct Outbox {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl Outbox {
    pub fn new(db: DatabaseConnection, clock: SharedClock) -> Self {
        Self { db, clock }
    }

    /// Writes the rendered message (subject, text and HTML bodies) into `outbox` on `conn`,
    /// which is the caller's open transaction, so the mail exists iff the change commits.
    /// Due at once: the next duty pass sends it.
    #[tracing::instrument(skip_all, fields(kind = mail.template.kind()))]
    pub async fn enqueue(&self, conn: &impl ConnectionTrait, mail: &Mail) -> Result<(), MailError> {
        let recipient = mail
            .to
            .parse::<lettre::Address>()
            .map_err(|_| MailError::InvalidAddress)?;
        let rendered = templates::render(&mail.username, &mail.template)?;
        let now = self.clock.now();
        outbox::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            recipient: Set(recipient.to_string()),
            subject: Set(rendered.subject),
            text_body: Set(rendered.text),
            html_body: Set(rendered.html),
            kind: Set(mail.template.kind().to_owned()),
            created_at: Set(now),
            next_attempt_at: Set(now),
            attempts: Set(0),
            last_error: Set(None),
            sent_at: Set(None),
            failed_at: Set(None),
        }
        .insert(conn)
        .await?;
        Ok(())
    }

    /// [`Self::enqueue`] on its own, for a message that goes with no change of state (e.g.
    /// [`MailTemplate::AlreadyRegistered`]).
    pub async fn enqueue_alone(&self, mail: &Mail) -> Result<(), MailError> {
        self.enqueue(&self.db, mail).await
    }

    /// How many messages wait: neither sent nor given up on (one `COUNT`, for the metrics).
    pub async fn depth(&self) -> Result<u64, MailError> {
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        Ok(outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .filter(outbox::Column::FailedAt.is_null())
            .count(&self.db)
            .await?)
    }
}
