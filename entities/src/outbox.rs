//! `outbox`: outgoing e-mail, written in the transaction of the change that causes it and sent
//! by the background duties (see `mail` in the server crate). Bodies are rendered at enqueue.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// A UUID; also the name of the `.eml` file when no SMTP server is configured.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
    /// Which template produced it (`verify_email`, `password_reset`, …).
    pub kind: String,
    pub created_at: i64,
    /// When it may next be tried; while a sender has claimed it, when that claim lapses.
    pub next_attempt_at: i64,
    pub attempts: i32,
    /// A short reason of the last failure (never a secret).
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    /// When sending was given up.
    pub failed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
