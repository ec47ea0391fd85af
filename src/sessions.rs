//! Browser sessions: a sign-in on Portcullis's own pages, remembered by a cookie.
//!
//! A session is a sign-in record of kind `browser` (a `refresh_families` row, see
//! `oauth::refresh`), so it is recorded, listed and ended like every other sign-in (see
//! `signins`): only while the account is enabled and its access unchanged, and ending it ends
//! every sign-in a client obtained through it with an authorization code. The cookie carries
//! 256 random bits; the row keeps only their SHA-256. A session needs a new sign-in when it has
//! not been used for the idle timeout, and ends at its lifetime whatever its use; the refresh
//! tokens of its sign-ins end then too.

use entities::refresh_families;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use secrecy::SecretString;

use crate::audit::Origin;
use crate::clock::SharedClock;
use crate::config::SessionSettings;
use crate::crypto::{CryptoError, random_token, secret_digest};
use crate::db::WarmPool;
use crate::oauth::refresh::amr_list;
use crate::signins::{NewSignIn, SignInError, SignInKind, SignIns};
use crate::users::User;

/// Last-seen times are written at most this often (seconds): a session used in a burst costs
/// one write.
const TOUCH_GAP_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    SignIn(#[from] SignInError),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A live browser session.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    /// The `sid` of the ID tokens issued through it.
    pub id: String,
    pub user_id: String,
    /// When the user authenticated, and how (RFC 8176).
    pub auth_time: i64,
    pub amr: Vec<String>,
    /// Its absolute end.
    pub expires_at: i64,
}

/// A session just started, with the cookie value that names it (shown to the browser only).
pub struct Started {
    pub session: BrowserSession,
    pub cookie: SecretString,
}

#[derive(Clone)]
pub struct Sessions {
    /// The lookup of every authorization request goes through it (`db::WarmPool`).
    warm: WarmPool,
    sign_ins: SignIns,
    clock: SharedClock,
    idle_secs: i64,
    lifetime_secs: i64,
}

impl Sessions {
    pub fn new(
        warm: WarmPool,
        sign_ins: SignIns,
        clock: SharedClock,
        settings: &SessionSettings,
    ) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self {
            warm,
            sign_ins,
            clock,
            idle_secs: secs(settings.idle_timeout),
            lifetime_secs: secs(settings.lifetime),
        }
    }

    /// The session lifetime in seconds (the cookie's `Max-Age`).
    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_secs
    }

    /// Records a session for `user`, who just authenticated by `amr` on the way to
    /// `client_id` (the client the sign-in started for; the session is not bound to it).
    /// Refused with [`SignInError::UserChanged`] when the account changed since it was read.
    pub async fn start(
        &self,
        user: &User,
        client_id: &str,
        amr: &[&str],
        origin: &Origin,
    ) -> Result<Started, SessionError> {
        let now = self.clock.now();
        let cookie = random_token()?;
        let digest = secret_digest(&cookie);
        let id = SignIns::new_id();
        let amr_text = amr.join(" ");
        let expires_at = now.saturating_add(self.lifetime_secs);
        self.sign_ins
            .record(&NewSignIn {
                id: &id,
                kind: SignInKind::Browser,
                user_id: &user.id,
                access_version: user.access_version,
                client_id,
                scope: "",
                audience: None,
                with_refresh_token: false,
                session_id: None,
                auth_time: now,
                amr: &amr_text,
                ip: origin.ip.as_deref(),
                user_agent: origin.user_agent.as_deref(),
                expires_at: Some(expires_at),
                cookie_digest: Some(&digest),
                code: None,
            })
            .await?;
        Ok(Started {
            session: BrowserSession {
                id,
                user_id: user.id.clone(),
                auth_time: now,
                amr: amr.iter().map(|a| (*a).to_string()).collect(),
                expires_at,
            },
            cookie: SecretString::from(cookie),
        })
    }

    /// The live session the cookie names, if any (and marks it used): not ended, within its
    /// lifetime and used within the idle timeout.
    pub async fn current(&self, cookie: &str) -> Result<Option<BrowserSession>, SessionError> {
        if cookie.is_empty() || cookie.len() > 128 {
            return Ok(None);
        }
        let now = self.clock.now();
        let Some(row) = refresh_families::Entity::find()
            .filter(refresh_families::Column::CookieDigest.eq(secret_digest(cookie)))
            .filter(refresh_families::Column::Kind.eq(SignInKind::Browser.as_str()))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .one(&self.warm)
            .await?
        else {
            return Ok(None);
        };
        let expires_at = row.expires_at.unwrap_or(0);
        if expires_at <= now || row.last_used_at.saturating_add(self.idle_secs) <= now {
            return Ok(None);
        }
        // Used within the gap already (the row just read says so): nothing to write.
        if row.last_used_at < now.saturating_sub(TOUCH_GAP_SECS) {
            self.sign_ins.touch(&row.id, TOUCH_GAP_SECS).await?;
        }
        Ok(Some(BrowserSession {
            auth_time: row.auth_time.unwrap_or(row.created_at),
            amr: amr_list(row.amr.as_deref()),
            id: row.id,
            user_id: row.user_id,
            expires_at,
        }))
    }

    /// Ends a session and every sign-in of it. Returns whether it was open.
    pub async fn end(&self, id: &str, reason: &str) -> Result<bool, SessionError> {
        Ok(self.sign_ins.end(id, reason).await?)
    }
}
