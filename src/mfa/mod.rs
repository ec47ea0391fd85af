//! Two-factor authentication with TOTP (RFC 6238) and recovery codes: enrolment (a secret
//! sealed under the master key, pending until a first code confirms it), checking codes (each
//! 30-second step accepted at most once per user, by a conditional `UPDATE` of the last step
//! used, so two concurrent uses of one code cannot both pass), single-use recovery codes stored
//! as digests, the pending second step of a sign-in (`challenges`), and the per-role policy
//! that requires MFA.
//!
//! What counts toward lockout, what is audited and what the user is told is decided by the
//! callers (the grants and `ops::MfaOps`); this module only keeps the factors.

pub mod challenges;
pub mod totp;

use std::sync::Arc;

use entities::{mfa_recovery_codes, mfa_totp, roles};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, Set,
};
use secrecy::SecretString;

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, MasterKey, random_bytes, secret_digest};

/// How many recovery codes a user gets at a time.
pub const RECOVERY_CODES: usize = 10;

/// The alphabet of recovery codes (Crockford's base32, lowercase): 5 bits per character.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters per recovery code: 20 × 5 = 100 bits, so a fast digest is enough to store it.
const RECOVERY_CHARS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// MFA is on already: a new enrolment needs it turned off first.
    #[error("two-factor authentication is already on")]
    AlreadyOn,
    /// There is no pending enrolment to confirm.
    #[error("no enrolment is pending; start one first")]
    NotPending,
    /// MFA is not on.
    #[error("two-factor authentication is not on")]
    NotOn,
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Totp(#[from] totp::TotpError),
    /// The notice to the account's address could not be queued (the change is not made).
    #[error("queuing the notice: {0}")]
    Notice(String),
}

/// A second factor as presented.
pub enum SecondFactor {
    Totp(SecretString),
    RecoveryCode(SecretString),
}

impl SecondFactor {
    /// The RFC 8176 method it proves, after the password: `otp` or `rcode`.
    pub fn amr(&self) -> &'static str {
        match self {
            Self::Totp(_) => "otp",
            Self::RecoveryCode(_) => "rcode",
        }
    }
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecondFactor({}, <hidden>)", self.amr())
    }
}

/// A new (pending) enrolment: shown once, to the user who asked.
pub struct Enrolment {
    /// The secret in base32, to type into an app.
    pub secret: SecretString,
    /// `otpauth://totp/…` with the secret.
    pub otpauth_uri: SecretString,
    /// The URI as an SVG QR code.
    pub qr_svg: SecretString,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(<hidden>)")
    }
}

/// Recovery codes, shown once.
pub struct RecoveryCodes(pub Vec<SecretString>);

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecoveryCodes({} codes, <hidden>)", self.0.len())
    }
}

/// A user's MFA state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MfaStatus {
    /// TOTP is confirmed: sign-ins need a second factor.
    pub on: bool,
    /// One of the user's roles requires MFA.
    pub required: bool,
}

impl MfaStatus {
    /// The user must enrol before they may use the API.
    pub fn must_enrol(&self) -> bool {
        self.required && !self.on
    }
}

#[derive(Clone)]
pub struct MfaService {
    db: DatabaseConnection,
    master: Arc<MasterKey>,
    clock: SharedClock,
    /// The issuer shown in authenticator apps.
    label: Arc<str>,
    users: crate::users::UserService,
    outbox: crate::mail::Outbox,
}

/// The associated data binding a sealed secret to its user.
fn seal_context(user_id: &str) -> String {
    format!("totp:{user_id}")
}

/// A recovery code as stored: lowercase, without separators, Crockford's look-alikes mapped.
fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            other => other,
        })
        .collect()
}

fn new_recovery_code() -> Result<String, CryptoError> {
    let bytes = random_bytes::<RECOVERY_CHARS>()?;
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| {
            RECOVERY_ALPHABET
                .get(usize::from(b & 31))
                .map_or('0', |c| char::from(*c))
        })
        .collect();
    Ok(chars
        .chunks(5)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

impl MfaService {
    /// `issuer_url` names the deployment in authenticator apps ("Portcullis (host)").
    pub fn new(
        db: DatabaseConnection,
        master: Arc<MasterKey>,
        clock: SharedClock,
        issuer_url: &str,
        users: crate::users::UserService,
        outbox: crate::mail::Outbox,
    ) -> Self {
        let label = match url::Url::parse(issuer_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
        {
            Some(host) => format!("Portcullis ({host})"),
            None => "Portcullis".to_string(),
        };
        Self {
            db,
            master,
            clock,
            label: label.into(),
            users,
            outbox,
        }
    }

    /// Queues `template` for the user's address inside `txn`, the transaction of the change
    /// it tells about (a notice exists iff its change committed).
    async fn notify(
        &self,
        txn: &impl sea_orm::ConnectionTrait,
        user_id: &str,
        template: crate::mail::MailTemplate,
    ) -> Result<(), MfaError> {
        let user = self
            .users
            .get(user_id)
            .await
            .map_err(|e| MfaError::Notice(e.to_string()))?;
        self.outbox
            .enqueue(
                txn,
                &crate::mail::Mail {
                    to: user.email,
                    username: user.username,
                    template,
                },
            )
            .await
            .map_err(|e| MfaError::Notice(e.to_string()))
    }

    /// Whether the user has MFA on, and whether one of `roles` requires it.
    pub async fn status(&self, user_id: &str, roles: &[String]) -> Result<MfaStatus, MfaError> {
        let on = mfa_totp::Entity::find_by_id(user_id.to_string())
            .one(&self.db)
            .await?
            .is_some_and(|r| r.confirmed_at.is_some());
        let required = !roles.is_empty()
            && roles::Entity::find()
                .filter(roles::Column::Name.is_in(roles.iter().cloned()))
                .filter(roles::Column::RequireMfa.eq(true))
                .one(&self.db)
                .await?
                .is_some();
        Ok(MfaStatus { on, required })
    }

    /// Whether the user has MFA on.
    pub async fn is_on(&self, user_id: &str) -> Result<bool, MfaError> {
        Ok(self.status(user_id, &[]).await?.on)
    }

    /// Starts (or restarts) an enrolment: a new secret, pending until confirmed; a previous
    /// pending one is replaced. Refused when MFA is on.
    pub async fn begin_enrolment(
        &self,
        user_id: &str,
        account: &str,
    ) -> Result<Enrolment, MfaError> {
        let secret = random_bytes::<{ totp::SECRET_LEN }>()?;
        let sealed = self.master.seal(&seal_context(user_id), &secret)?;
        let (text, uri, svg) = totp::provisioning(&secret, &self.label, account)?;
        let txn = crate::db::begin_write(&self.db).await?;
        let existing = mfa_totp::Entity::find_by_id(user_id.to_string())
            .one(&txn)
            .await?;
        match existing {
            Some(row) if row.confirmed_at.is_some() => return Err(MfaError::AlreadyOn),
            Some(_) => {
                mfa_totp::Entity::delete_by_id(user_id.to_string())
                    .exec(&txn)
                    .await?;
            }
            None => {}
        }
        mfa_totp::ActiveModel {
            user_id: Set(user_id.to_string()),
            secret_sealed: Set(sealed),
            created_at: Set(self.clock.now()),
            confirmed_at: Set(None),
            last_step: Set(None),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(Enrolment {
            secret: text.into(),
            otpauth_uri: uri.into(),
            qr_svg: svg.into(),
        })
    }

    /// The step of `code` under the user's secret (`confirmed`: the enrolment must be
    /// confirmed, else pending), or `None` for a wrong code.
    async fn step_of(
        &self,
        user_id: &str,
        code: &SecretString,
        confirmed: bool,
    ) -> Result<Option<i64>, MfaError> {
        use secrecy::ExposeSecret as _;
        let row = mfa_totp::Entity::find_by_id(user_id.to_string())
            .one(&self.db)
            .await?;
        let row = match row {
            Some(r) if r.confirmed_at.is_some() == confirmed => r,
            _ if confirmed => return Err(MfaError::NotOn),
            _ => return Err(MfaError::NotPending),
        };
        let secret = self
            .master
            .open(&seal_context(user_id), &row.secret_sealed)?;
        let step = totp::matching_step(&secret, code.expose_secret(), self.clock.now())?;
        Ok(step.and_then(|s| i64::try_from(s).ok()))
    }

    /// The condition "no code of `step` or later has been accepted".
    fn unused_step(step: i64) -> Condition {
        Condition::any()
            .add(mfa_totp::Column::LastStep.is_null())
            .add(mfa_totp::Column::LastStep.lt(step))
    }

    /// Confirms a pending enrolment with a first code: MFA is on, the code's step is used,
    /// and ten new recovery codes replace any old ones. `None` for a wrong code.
    pub async fn confirm(
        &self,
        user_id: &str,
        code: &SecretString,
    ) -> Result<Option<RecoveryCodes>, MfaError> {
        let Some(step) = self.step_of(user_id, code, false).await? else {
            return Ok(None);
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let confirmed = mfa_totp::Entity::update_many()
            .col_expr(mfa_totp::Column::ConfirmedAt, Expr::value(self.clock.now()))
            .col_expr(mfa_totp::Column::LastStep, Expr::value(step))
            .filter(mfa_totp::Column::UserId.eq(user_id))
            .filter(mfa_totp::Column::ConfirmedAt.is_null())
            .filter(Self::unused_step(step))
            .exec(&txn)
            .await?;
        if confirmed.rows_affected != 1 {
            // Confirmed concurrently (or replaced): this code did not do it.
            return Ok(None);
        }
        let codes = self.replace_recovery_codes(&txn, user_id).await?;
        self.notify(&txn, user_id, crate::mail::MailTemplate::MfaEnabled)
            .await?;
        txn.commit().await?;
        Ok(Some(codes))
    }

    /// Checks a TOTP code of a user with MFA on, and uses its step: a code is accepted once.
    pub async fn verify_totp(&self, user_id: &str, code: &SecretString) -> Result<bool, MfaError> {
        let Some(step) = self.step_of(user_id, code, true).await? else {
            return Ok(false);
        };
        let used = mfa_totp::Entity::update_many()
            .col_expr(mfa_totp::Column::LastStep, Expr::value(step))
            .filter(mfa_totp::Column::UserId.eq(user_id))
            .filter(mfa_totp::Column::ConfirmedAt.is_not_null())
            .filter(Self::unused_step(step))
            .exec(&self.db)
            .await?;
        Ok(used.rows_affected == 1)
    }

    /// Uses one of the user's recovery codes: accepted once.
    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        code: &SecretString,
    ) -> Result<bool, MfaError> {
        use secrecy::ExposeSecret as _;
        let normal = normalise_recovery(code.expose_secret());
        if normal.len() != RECOVERY_CHARS {
            return Ok(false);
        }
        if !self.is_on(user_id).await? {
            return Err(MfaError::NotOn);
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let used = mfa_recovery_codes::Entity::update_many()
            .col_expr(
                mfa_recovery_codes::Column::UsedAt,
                Expr::value(self.clock.now()),
            )
            .filter(mfa_recovery_codes::Column::UserId.eq(user_id))
            .filter(mfa_recovery_codes::Column::Digest.eq(secret_digest(&normal)))
            .filter(mfa_recovery_codes::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if used.rows_affected != 1 {
            return Ok(false);
        }
        let remaining = mfa_recovery_codes::Entity::find()
            .filter(mfa_recovery_codes::Column::UserId.eq(user_id))
            .filter(mfa_recovery_codes::Column::UsedAt.is_null())
            .count(&txn)
            .await?;
        self.notify(
            &txn,
            user_id,
            crate::mail::MailTemplate::RecoveryCodeUsed {
                remaining: usize::try_from(remaining).unwrap_or(0),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Checks a second factor of a user with MFA on (and uses it up).
    pub async fn verify(&self, user_id: &str, factor: &SecondFactor) -> Result<bool, MfaError> {
        match factor {
            SecondFactor::Totp(code) => self.verify_totp(user_id, code).await,
            SecondFactor::RecoveryCode(code) => self.use_recovery_code(user_id, code).await,
        }
    }

    /// How many unused recovery codes the user has.
    pub async fn recovery_codes_left(&self, user_id: &str) -> Result<usize, MfaError> {
        Ok(mfa_recovery_codes::Entity::find()
            .filter(mfa_recovery_codes::Column::UserId.eq(user_id))
            .filter(mfa_recovery_codes::Column::UsedAt.is_null())
            .select_only()
            .column(mfa_recovery_codes::Column::Digest)
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .len())
    }

    /// New recovery codes for a user with MFA on; the old ones stop working.
    pub async fn regenerate_recovery_codes(
        &self,
        user_id: &str,
    ) -> Result<RecoveryCodes, MfaError> {
        let txn = crate::db::begin_write(&self.db).await?;
        // Written first, so concurrent regenerations (and disabling) queue on the row.
        let on = mfa_totp::Entity::update_many()
            .col_expr(
                mfa_totp::Column::ConfirmedAt,
                Expr::col(mfa_totp::Column::ConfirmedAt),
            )
            .filter(mfa_totp::Column::UserId.eq(user_id))
            .filter(mfa_totp::Column::ConfirmedAt.is_not_null())
            .exec(&txn)
            .await?;
        if on.rows_affected != 1 {
            return Err(MfaError::NotOn);
        }
        let codes = self.replace_recovery_codes(&txn, user_id).await?;
        txn.commit().await?;
        Ok(codes)
    }

    async fn replace_recovery_codes<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        user_id: &str,
    ) -> Result<RecoveryCodes, MfaError> {
        mfa_recovery_codes::Entity::delete_many()
            .filter(mfa_recovery_codes::Column::UserId.eq(user_id))
            .exec(conn)
            .await?;
        let now = self.clock.now();
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        while codes.len() < RECOVERY_CODES {
            let code = new_recovery_code()?;
            mfa_recovery_codes::ActiveModel {
                user_id: Set(user_id.to_string()),
                digest: Set(secret_digest(&normalise_recovery(&code))),
                created_at: Set(now),
                used_at: Set(None),
            }
            .insert(conn)
            .await?;
            codes.push(SecretString::from(code));
        }
        Ok(RecoveryCodes(codes))
    }

    /// Turns MFA off: the secret, the recovery codes and pending second steps are deleted.
    pub async fn disable(&self, user_id: &str) -> Result<(), MfaError> {
        let txn = crate::db::begin_write(&self.db).await?;
        let deleted = mfa_totp::Entity::delete_many()
            .filter(mfa_totp::Column::UserId.eq(user_id))
            .filter(mfa_totp::Column::ConfirmedAt.is_not_null())
            .exec(&txn)
            .await?;
        if deleted.rows_affected != 1 {
            return Err(MfaError::NotOn);
        }
        mfa_recovery_codes::Entity::delete_many()
            .filter(mfa_recovery_codes::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        entities::mfa_tokens::Entity::delete_many()
            .filter(entities::mfa_tokens::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        self.notify(&txn, user_id, crate::mail::MailTemplate::MfaDisabled)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_carry_100_bits_and_normalise() {
        let code = new_recovery_code().unwrap();
        assert_eq!(code.len(), 23, "dashes between four groups of five: {code}");
        assert_eq!(normalise_recovery(&code).len(), RECOVERY_CHARS);
        assert_eq!(
            normalise_recovery(&code.to_uppercase().replace('-', " ")),
            normalise_recovery(&code)
        );
        assert_ne!(new_recovery_code().unwrap(), code);
        assert_eq!(normalise_recovery("O-I-L"), "011");
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let f = SecondFactor::Totp("123456".to_string().into());
        assert!(!format!("{f:?}").contains("123456"));
        let codes = RecoveryCodes(vec!["abcde-fghij".to_string().into()]);
        assert!(!format!("{codes:?}").contains("abcde"));
    }
}
