//! Refresh tokens: opaque 256-bit values stored only as SHA-256 digests, grouped in families
//! (one family per sign-in), rotated on every use (RFC 9700 §4.14.2).
//!
//! A family is the record of a sign-in, whether or not it holds refresh tokens: every user
//! access token carries its family id as `sid`, so ending the family ends all its tokens (see
//! `signins`). A family is recorded only while the user is enabled and the user's
//! `access_version` is the one the sign-in read ([`RefreshService::start`]); every operation
//! that ends a user's access bumps that version in the transaction that revokes the user's
//! families ([`RefreshService::revoke_user`]), so a concurrent sign-in either lands before the
//! revocation (and is revoked by it) or is refused.
//!
//! A refresh happens in two steps. [`RefreshService::begin`] looks the presented token up and
//! checks what can be checked without writing (client binding, expiry, scope); for an active
//! token the caller then mints its answer (access token, maybe an ID token, and the new refresh
//! token `begin` drew) and hands it to [`RefreshService::finish`], which performs the rotation
//! in one transaction: write the family row, one conditional `UPDATE … WHERE state = 'active'`
//! of the presented token, insert its successor and, with a reuse window, the sealed answer.
//! Of concurrent presentations exactly one rotation happens. Tokens are minted before that
//! transaction, so every token a rotation hands out is older than any revocation that follows it.
//!
//! Family row first: rotation, replay and revocation of a family all write the family row
//! before anything else in their transaction. Its row lock (PostgreSQL) or the database write
//! lock (SQLite) serializes them, so a request that loses a race sees the winner's committed
//! work, and no token minted by a concurrent rotation survives a revocation.
//!
//! What happens to a presentation of an already-rotated token (a retry, or the losing side of
//! a race) depends on the reuse window (`PORTCULLIS_REFRESH_REUSE_INTERVAL`):
//! - zero (strict, the default): it is reuse; the whole family is revoked.
//! - otherwise: within the window after the rotation, while the family is open and the token
//!   the rotation issued is still unused, the presenting client (the token is bound to it) gets
//!   the very answer the rotation produced. That answer is kept only for the window, sealed
//!   with AES-256-GCM under a key derived (HKDF-SHA256, its own label) from the rotated token
//!   itself, so the database alone never yields it; the digest that names the row is a
//!   different function of the token. After the window, or once the successor was used, the
//!   presentation is reuse, as in strict mode.

use entities::{refresh_families, refresh_replays, refresh_tokens, users};
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::hkdf;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    FromQueryResult, QueryFilter, Statement,
};
use secrecy::{ExposeSecret, SecretString};

use crate::clock::SharedClock;
use crate::crypto::{CryptoError, random_token, secret_digest};
use crate::db::{SqlText, WarmPool};
use crate::domain::Scope;
use crate::users::User;

/// Families left without tokens are kept this long after their last use before a purge
/// removes them, so a purge never races a rotation that is still running.
const EMPTY_FAMILY_GRACE_SECS: i64 = 3_600;

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is invalid, expired or revoked")]
    Invalid,
    /// RFC 6749 §6: the requested scope is not within the originally granted one. Checked
    /// before rotation, so the client keeps its (unused) token.
    #[error("the requested scope exceeds the scope originally granted")]
    ScopeExceeded,
    /// An already-rotated token was presented outside the reuse window; the family is now
    /// revoked.
    #[error("the refresh token was already used; the sign-in has been revoked")]
    Reused { family_id: String, user_id: String },
    /// The user was disabled, or their access was ended, after the sign-in read the account.
    #[error("the account changed during the sign-in")]
    UserChanged,
    /// The browser session a `code` sign-in was to belong to has ended.
    #[error("the browser session has ended")]
    SessionEnded,
    /// The authorization code a sign-in was to redeem was claimed by another redemption
    /// first, or has expired.
    #[error("the authorization code was already redeemed or has expired")]
    CodeTaken,
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The state of a refresh token, stored as text through [`TokenState::as_str`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// May be presented (until it expires).
    Active,
    /// Was presented and replaced by its successor.
    Rotated,
    /// Its family was revoked before it was used.
    Revoked,
}

impl TokenState {
    pub const ALL: [Self; 3] = [Self::Active, Self::Rotated, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state of a stored token (`None` for text no version of Portcullis writes).
    fn of(token: &refresh_tokens::Model) -> Option<Self> {
        Self::parse(&token.state)
    }
}

/// Whether a family (a sign-in) is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyState {
    Open,
    /// Ended: revoked by the user, a client, an administrator, or reuse detection.
    Revoked,
}

impl FamilyState {
    pub fn of(family: &refresh_families::Model) -> Self {
        if family.revoked_at.is_some() {
            Self::Revoked
        } else {
            Self::Open
        }
    }
}

/// What kind of sign-in a family records, stored as text through [`SignInKind::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInKind {
    /// The password grant (with or without a refresh token).
    Password,
    /// A sign-in on Portcullis's own pages: the browser session, which holds no tokens itself.
    Browser,
    /// What one client obtained from a browser session with an authorization code; ended with
    /// its session.
    Code,
}

impl SignInKind {
    pub const ALL: [SignInKind; 3] = [Self::Password, Self::Browser, Self::Code];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Browser => "browser",
            Self::Code => "code",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// A sign-in about to be recorded.
pub struct NewSignIn<'a> {
    /// The family id; the `sid` of the sign-in's tokens unless it belongs to a session.
    pub id: &'a str,
    pub kind: SignInKind,
    pub user_id: &'a str,
    /// The account's `access_version` as read when the sign-in checked it.
    pub access_version: i64,
    /// The client (for a browser session, the one its sign-in started for).
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The resource the access tokens are for (`None`: Portcullis's own API).
    pub audience: Option<&'a str>,
    /// Whether the client gets a refresh token.
    pub with_refresh_token: bool,
    /// The browser session a `code` sign-in belongs to (it must still be open).
    pub session_id: Option<&'a str>,
    /// When and how the user authenticated (RFC 8176 `amr` values, space-separated).
    pub auth_time: i64,
    pub amr: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// Absolute end of a browser session; caps the refresh tokens of the sign-in.
    pub expires_at: Option<i64>,
    /// SHA-256 of a browser session's cookie.
    pub cookie_digest: Option<&'a str>,
    /// The digest of the authorization code this sign-in redeems: claimed for it (by
    /// `client_id`) in the same transaction, so the sign-in is recorded only if the claim
    /// wins ([`RefreshError::CodeTaken`] otherwise), and a replay of the code never comes
    /// between the claim and the sign-in it must end.
    pub code: Option<&'a str>,
}

/// What revoking a family did.
#[derive(Debug, Default)]
pub struct Revoked {
    /// Whether the family itself was still open.
    pub closed: bool,
    /// The families this revocation closed (the family and, for a browser session, its
    /// sign-ins): the `sid`s whose access tokens must now be refused.
    pub ended: Vec<String>,
}

/// A refresh token that was just issued.
#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub family_id: String,
}

/// What introspection learns about a refresh token.
#[derive(Debug)]
pub struct RefreshInfo {
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// What [`RefreshService::begin`] found.
#[derive(Debug)]
pub enum Presented {
    /// The token is active: mint the answer, then [`RefreshService::finish`] the rotation.
    Rotate(Box<PendingRotation>),
    /// The token was rotated moments ago for this client: the answer that rotation produced.
    Replay(Replayed),
}

/// How [`RefreshService::finish`] ended.
#[derive(Debug)]
pub enum Finished {
    /// This request rotated the token; the answer it minted is the one to send.
    Rotated,
    /// A concurrent request rotated the token first; send its answer instead.
    Replayed(Replayed),
}

/// An answer stored by an earlier rotation of the presented token, opened.
pub struct Replayed {
    pub family_id: String,
    pub user_id: String,
    /// The bytes handed to [`RefreshService::finish`] by the rotation (they carry tokens).
    pub answer: Vec<u8>,
}

impl std::fmt::Debug for Replayed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayed")
            .field("family_id", &self.family_id)
            .field("user_id", &self.user_id)
            .field("answer", &"<hidden>")
            .finish()
    }
}

/// An active token that is about to be rotated, with the successor it will get.
pub struct PendingRotation {
    digest: String,
    key: ReplayKey,
    family: refresh_families::Model,
    scope: String,
    successor: SecretString,
    /// The sign-in's user as the lookup read it, with their roles (`None`: gone).
    user: Option<User>,
}

impl std::fmt::Debug for PendingRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRotation")
            .field("family_id", &self.family.id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl PendingRotation {
    /// The refresh token the rotation will issue (put it in the answer).
    pub fn successor(&self) -> &str {
        self.successor.expose_secret()
    }

    pub fn family_id(&self) -> &str {
        &self.family.id
    }

    pub fn user_id(&self) -> &str {
        &self.family.user_id
    }

    /// The user and their current roles, read with the token (`None`: the account is gone).
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The scope of the presented token (the sign-in's scope).
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The browser session the sign-in belongs to (the `sid` of its ID tokens), if any.
    pub fn session_id(&self) -> Option<&str> {
        self.family.session_id.as_deref()
    }

    /// When the user authenticated (OIDC `auth_time`).
    pub fn auth_time(&self) -> i64 {
        self.family.auth_time.unwrap_or(self.family.created_at)
    }

    /// How the user authenticated (RFC 8176).
    pub fn amr(&self) -> Vec<String> {
        amr_list(self.family.amr.as_deref())
    }

    /// The resource the sign-in's access tokens are for (`None`: Portcullis's own API).
    pub fn audience(&self) -> Option<&str> {
        self.family.audience.as_deref()
    }
}

/// The AES-256-GCM key that seals the answer to one rotation, derived from the rotated token
/// with HKDF-SHA256 under labels of its own (the row is named by a plain SHA-256 of the token,
/// which says nothing about this key).
struct ReplayKey(LessSafeKey);

const REPLAY_SALT: &[u8] = b"portcullis refresh-replay salt v1";
const REPLAY_INFO: &[u8] = b"portcullis refresh-replay aes-256-gcm key";

impl ReplayKey {
    fn derive(token: &str) -> Result<Self, CryptoError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, REPLAY_SALT).extract(token.as_bytes());
        let okm = prk
            .expand(&[REPLAY_INFO], &AES_256_GCM)
            .map_err(|_| CryptoError::Seal)?;
        Ok(Self(LessSafeKey::new(UnboundKey::from(okm))))
    }

    /// base64(nonce || ciphertext || tag), bound to `context` as associated data.
    fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        crate::crypto::seal(&self.0, context, plaintext)
    }

    fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        crate::crypto::open(&self.0, context, sealed)
    }
}

/// The associated data of a sealed answer: it opens only in the row it was written to.
fn replay_context(digest: &str, family_id: &str, successor_digest: &str) -> String {
    format!("refresh-replay:{digest}:{family_id}:{successor_digest}")
}

/// What a presentation of an already-rotated token comes to (decided under the family lock).
enum Settled {
    Replay(Replayed),
    Reused,
    Invalid,
}

/// What the rotation statement or script of [`RefreshService::finish`] did.
enum Rotation {
    /// The token was rotated: its successor (and the sealed answer) are stored.
    Done,
    /// Nothing changed: someone else rotated the token first (on SQLite, also: the family
    /// closed).
    NotDone,
    /// Nothing changed: the family is closed.
    FamilyClosed,
}

/// Which steps the statement or script of [`RefreshService::start`] takes besides the user
/// row and the family: claiming an authorization code, checking (and locking) the browser
/// session's row, inserting the first refresh token.
#[derive(Clone, Copy)]
struct Steps {
    claim: bool,
    session: bool,
    token: bool,
}

/// What the statement or script of [`RefreshService::start`] did.
enum Recorded {
    /// The sign-in (and its first refresh token) are stored.
    Done,
    /// No sign-in stored (a code's claim is, if it came first): the user is disabled or at
    /// another access version.
    UserChanged,
    /// No sign-in stored (a code's claim is, if it came first): the browser session ended
    /// (or its end has passed).
    SessionEnded,
    /// Nothing stored: the authorization code was claimed first, or expired.
    CodeTaken,
}

#[derive(Clone)]
pub struct RefreshService {
    db: DatabaseConnection,
    /// The hot path's connections: the lookup of [`Self::begin`] and the rotation of
    /// [`Self::finish`] go through it (see `db::WarmPool`).
    warm: WarmPool,
    clock: SharedClock,
    ttl_secs: i64,
    /// How long a family without tokens is kept after its last use: its access tokens may
    /// live that long, and ending a user's access must still find it.
    empty_family_grace_secs: i64,
    /// The reuse window in seconds; 0 is strict rotation.
    reuse_secs: i64,
}

impl RefreshService {
    pub fn new(
        db: DatabaseConnection,
        warm: WarmPool,
        clock: SharedClock,
        ttl: std::time::Duration,
        reuse_interval: std::time::Duration,
        access_ttl: std::time::Duration,
    ) -> Self {
        let access_secs = i64::try_from(access_ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            db,
            warm,
            clock,
            ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            empty_family_grace_secs: Ord::max(
                EMPTY_FAMILY_GRACE_SECS,
                access_secs.saturating_add(crate::oauth::tokens::LEEWAY.saturating_mul(2)),
            ),
            reuse_secs: i64::try_from(reuse_interval.as_secs()).unwrap_or(0),
        }
    }

    /// Whether rotations keep their answer for a reuse window (the answer handed to
    /// [`Self::finish`] is unused otherwise).
    pub fn keeps_answers(&self) -> bool {
        self.reuse_secs > 0
    }

    /// Records a sign-in, with a first refresh token when `new.with_refresh_token`. Refused
    /// with [`RefreshError::UserChanged`] unless the user is enabled and still at
    /// `access_version` (the user row is written first, so this serializes with
    /// [`Self::revoke_user`]); a `code` sign-in also needs its browser session still open
    /// (the session row is written next, so this serializes with ending the session).
    pub async fn start(&self, new: &NewSignIn<'_>) -> Result<Option<Issued>, RefreshError> {
        let now = self.clock.now();
        let token = if new.with_refresh_token {
            Some(random_token()?)
        } else {
            None
        };
        // The bound values, the same in both backends' SQL: $1 the user, $2 the access version
        // read, $3 the family, $4 the client, $5 the audience, $6 now, $7 the kind, $8 when
        // the user authenticated, $9 how, $10 the address, $11 the user agent, $12 the
        // sign-in's own end, $13 a browser session's cookie digest, $14 the browser session
        // a sign-in belongs to, $15 the digest of the authorization code it redeems; with a
        // refresh token $16 its digest, $17 its scope, $18 its expiry before the cap.
        let mut values: Vec<sea_orm::Value> = vec![
            new.user_id.to_string().into(),
            new.access_version.into(),
            new.id.to_string().into(),
            new.client_id.to_string().into(),
            new.audience.map(str::to_string).into(),
            now.into(),
            new.kind.as_str().to_string().into(),
            new.auth_time.into(),
            new.amr.to_string().into(),
            new.ip.map(str::to_string).into(),
            new.user_agent.map(str::to_string).into(),
            new.expires_at.into(),
            new.cookie_digest.map(str::to_string).into(),
            new.session_id.map(str::to_string).into(),
            new.code.map(str::to_string).into(),
        ];
        if let Some(token) = &token {
            values.push(secret_digest(token).into());
            values.push(new.scope.to_string().into());
            values.push(now.saturating_add(self.ttl_secs).into());
        }
        let steps = Steps {
            claim: new.code.is_some(),
            session: new.session_id.is_some(),
            token: token.is_some(),
        };
        let recorded = if self.db.get_database_backend() == DbBackend::Postgres {
            self.start_in_one_statement(values, steps).await?
        } else {
            self.start_in_one_script(values, steps).await?
        };
        match recorded {
            Recorded::Done => Ok(token.map(|token| Issued {
                token,
                family_id: new.id.to_string(),
            })),
            Recorded::UserChanged => Err(RefreshError::UserChanged),
            Recorded::SessionEnded => Err(RefreshError::SessionEnded),
            Recorded::CodeTaken => Err(RefreshError::CodeTaken),
        }
    }

    /// [`Self::start`] on SQLite: one script, one hop to the connection's thread, in one
    /// `BEGIN IMMEDIATE` transaction. Its statements run in the order of the PostgreSQL
    /// statement's parts, each only when the statement before it changed a row
    /// (`changes()`): the authorization code claimed (unredeemed, unexpired, this client's),
    /// the user row written (enabled, at the access version read), the browser session's row
    /// (still open; its end caps the sign-in), the family (only while the cap lies ahead),
    /// its first token. Each but the last returns its `step`.
    async fn start_in_one_script(
        &self,
        values: Vec<sea_orm::Value>,
        steps: Steps,
    ) -> Result<Recorded, RefreshError> {
        let (claim, claimed) = if steps.claim {
            (
                "UPDATE authorization_codes SET redeemed_at = $6, family_id = $3 \
                 WHERE digest = $15 AND client_id = $4 AND redeemed_at IS NULL \
                 AND expires_at > $6 RETURNING 'code' AS step; ",
                "AND changes() = 1 ",
            )
        } else {
            ("", "")
        };
        // `cap`: the end of the sign-in, the earlier of its own and its session's. With a
        // session, a sign-in whose cap has passed is refused (the session has ended).
        let (session, cap, capped) = if steps.session {
            (
                "UPDATE refresh_families SET last_used_at = last_used_at \
                 WHERE id = $14 AND revoked_at IS NULL AND changes() = 1 \
                 RETURNING 'session' AS step; ",
                "(SELECT CASE WHEN s.expires_at IS NULL THEN $12 WHEN $12 IS NULL THEN s.expires_at \
                 ELSE min($12, s.expires_at) END FROM refresh_families s WHERE s.id = $14)",
                "AND (cap IS NULL OR cap > $6)",
            )
        } else {
            ("", "$12", "")
        };
        let first_token = if steps.token {
            format!(
                "INSERT INTO refresh_tokens \
                 (digest, family_id, scope, state, issued_at, expires_at, rotated_at) \
                 SELECT $16, id, $17, '{active}', $6, \
                 CASE WHEN expires_at IS NULL THEN $18 ELSE min($18, expires_at) END, NULL \
                 FROM refresh_families WHERE id = $3 AND changes() = 1; ",
                active = TokenState::Active.as_str()
            )
        } else {
            String::new()
        };
        let sql = format!(
            "BEGIN IMMEDIATE; \
             {claim}UPDATE users SET access_version = access_version \
             WHERE id = $1 AND access_version = $2 AND disabled = 0 {claimed}\
             RETURNING 'user' AS step; \
             {session}\
             INSERT INTO refresh_families (id, user_id, client_id, audience, created_at, \
             last_used_at, revoked_at, revoked_reason, kind, session_id, auth_time, amr, ip, \
             user_agent, expires_at, cookie_digest) \
             SELECT $3, $1, $4, $5, $6, $6, NULL, NULL, $7, $14, $8, $9, $10, $11, cap, $13 \
             FROM (SELECT {cap} AS cap) WHERE changes() = 1 {capped} RETURNING 'family' AS step; \
             {first_token}COMMIT"
        );
        let rows = self.sqlite_script(sql, values).await?;
        let mut done = Vec::with_capacity(rows.len());
        for row in &rows {
            done.push(row.try_get::<String>("", "step")?);
        }
        let took = |step: &str| done.iter().any(|s| s == step);
        Ok(if steps.claim && !took("code") {
            Recorded::CodeTaken
        } else if !took("user") {
            Recorded::UserChanged
        } else if took("family") {
            Recorded::Done
        } else {
            Recorded::SessionEnded
        })
    }

    /// [`Self::start`] on PostgreSQL: one statement. As in the script on SQLite, the
    /// authorization code is claimed first (a conditional `UPDATE`: of concurrent claims one
    /// wins, the others wait for its row and then find it redeemed), then the user row is
    /// locked (`FOR SHARE`, guarded by `disabled` and `access_version`: [`Self::revoke_user`]
    /// and disabling write it, so they wait for this statement or it for them and then reads
    /// the new version), then the browser session's row if the sign-in belongs to one (still
    /// open, `FOR SHARE`: ending the session writes it first; its end caps the refresh
    /// tokens); each only from the rows the one before returned; the family and its first
    /// token are inserted only from those rows, and only while the cap lies ahead. Shared
    /// locks: concurrent sign-ins of one user, or into one session, do not wait for each
    /// other.
    async fn start_in_one_statement(
        &self,
        values: Vec<sea_orm::Value>,
        steps: Steps,
    ) -> Result<Recorded, RefreshError> {
        let (claim, claimed, claims) = if steps.claim {
            (
                "k AS (UPDATE authorization_codes SET redeemed_at = $6, family_id = $3 \
                 WHERE digest = $15 AND client_id = $4 AND redeemed_at IS NULL \
                 AND expires_at > $6 RETURNING 1 AS one), ",
                "AND EXISTS (SELECT 1 FROM k) ",
                "(SELECT count(*) FROM k)",
            )
        } else {
            ("", "", "1::bigint")
        };
        // `c.cap`: the end of the sign-in, the earlier of its own and its session's.
        // With a session, a sign-in whose cap has passed is refused (the session has ended).
        let (session, capped) = if steps.session {
            (
                "s AS (SELECT expires_at FROM refresh_families \
             WHERE id = $14 AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM u) FOR SHARE), \
             c AS (SELECT CASE WHEN s.expires_at IS NULL THEN $12::bigint \
             WHEN $12::bigint IS NULL THEN s.expires_at \
             ELSE LEAST($12::bigint, s.expires_at) END AS cap FROM s)",
                "WHERE c.cap IS NULL OR c.cap > $6",
            )
        } else {
            (
                "s AS (SELECT 1 AS one), c AS (SELECT $12::bigint AS cap)",
                "",
            )
        };
        let first_token = if steps.token {
            format!(
                ", tok AS (INSERT INTO refresh_tokens \
                 (digest, family_id, scope, state, issued_at, expires_at, rotated_at) \
                 SELECT $16, id, $17, '{active}', $6, \
                 CASE WHEN expires_at IS NULL THEN $18 ELSE LEAST($18, expires_at) END, \
                 NULL FROM fam RETURNING digest)",
                active = TokenState::Active.as_str()
            )
        } else {
            String::new()
        };
        let sql = format!(
            "WITH {claim}u AS (SELECT id FROM users \
             WHERE id = $1 AND access_version = $2 AND disabled = false {claimed}FOR SHARE), \
             {session}, \
             fam AS (INSERT INTO refresh_families (id, user_id, client_id, audience, created_at, \
             last_used_at, revoked_at, revoked_reason, kind, session_id, auth_time, amr, ip, \
             user_agent, expires_at, cookie_digest) \
             SELECT $3, u.id, $4, $5, $6, $6, NULL, NULL, $7, $14, $8, $9, $10, $11, c.cap, $13 \
             FROM u, c {capped} \
             RETURNING id, expires_at){first_token} \
             SELECT {claims} AS claimed, (SELECT count(*) FROM u) AS recorded, \
             (SELECT count(*) FROM s) AS session_open, \
             (SELECT count(*) FROM fam) AS inserted"
        );
        let row = self.postgres_row(sql, values, "sign-in").await?;
        let claimed: i64 = row.try_get("", "claimed")?;
        let recorded: i64 = row.try_get("", "recorded")?;
        let session_open: i64 = row.try_get("", "session_open")?;
        let inserted: i64 = row.try_get("", "inserted")?;
        Ok(if claimed != 1 {
            Recorded::CodeTaken
        } else if recorded != 1 {
            Recorded::UserChanged
        } else if session_open != 1 || inserted != 1 {
            Recorded::SessionEnded
        } else {
            Recorded::Done
        })
    }

    async fn find(
        &self,
        conn: &impl ConnectionTrait,
        presented: &str,
    ) -> Result<Option<(refresh_tokens::Model, refresh_families::Model)>, RefreshError> {
        let Some(token) = refresh_tokens::Entity::find_by_id(secret_digest(presented))
            .one(conn)
            .await?
        else {
            return Ok(None);
        };
        let family = refresh_families::Entity::find_by_id(token.family_id.clone())
            .one(conn)
            .await?;
        Ok(family.map(|f| (token, f)))
    }

    /// Looks a presented token up with its family, the family's user and the user's roles, in
    /// one statement (one row per role). The user is `None` when the account is gone.
    async fn find_with_user(
        &self,
        presented: &str,
    ) -> Result<Option<(refresh_tokens::Model, refresh_families::Model, Option<User>)>, RefreshError>
    {
        static SQL: SqlText = SqlText::new();
        let backend = self.db.get_database_backend();
        let sql = SQL.get(backend, || {
            format!(
                "SELECT {}, {}, {}, r.role AS r_role \
                 FROM refresh_tokens t \
                 JOIN refresh_families f ON f.id = t.family_id \
                 LEFT JOIN users u ON u.id = f.user_id \
                 LEFT JOIN user_roles r ON r.user_id = f.user_id \
                 WHERE t.digest = {}",
                crate::db::select_list::<refresh_tokens::Entity>("t"),
                crate::db::select_list::<refresh_families::Entity>("f"),
                crate::db::select_list::<users::Entity>("u"),
                crate::db::first_placeholder(&self.db),
            )
        });
        let rows = self
            .warm
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [secret_digest(presented).into()],
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let token = refresh_tokens::Model::from_query_result(first, "t_")?;
        let family = refresh_families::Model::from_query_result(first, "f_")?;
        let user = match first.try_get::<Option<String>>("", "u_id")? {
            None => None,
            Some(_) => Some(crate::users::user_from_rows(&rows)?),
        };
        Ok(Some((token, family, user)))
    }

    /// Writes the family row if the family is still open; the first statement of every
    /// transaction that rotates, replays or revokes (see module docs). Returns whether it was.
    async fn lock_open_family(
        &self,
        txn: &DatabaseTransaction,
        family_id: &str,
        now: i64,
    ) -> Result<bool, RefreshError> {
        let open = refresh_families::Entity::update_many()
            .col_expr(refresh_families::Column::LastUsedAt, Expr::value(now))
            .filter(refresh_families::Column::Id.eq(family_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        Ok(open.rows_affected == 1)
    }

    /// First step of a refresh by `client_id` with the `presented` token. A non-empty
    /// `requested` scope must lie within the token's. Nothing is written for an active token;
    /// a rotated one is settled here (replayed, or the family revoked as reuse).
    pub async fn begin(
        &self,
        presented: &str,
        client_id: &str,
        requested: &Scope,
    ) -> Result<Presented, RefreshError> {
        let now = self.clock.now();
        let Some((token, family, user)) = self.find_with_user(presented).await? else {
            return Err(RefreshError::Invalid);
        };
        // A token is bound to the client it was issued to; another client learns nothing and
        // changes nothing.
        if family.client_id != client_id || FamilyState::of(&family) == FamilyState::Revoked {
            return Err(RefreshError::Invalid);
        }
        match TokenState::of(&token) {
            Some(TokenState::Active) if token.expires_at > now => {
                if !requested.is_subset(&Scope::parse(&token.scope).unwrap_or_default()) {
                    return Err(RefreshError::ScopeExceeded);
                }
                Ok(Presented::Rotate(Box::new(PendingRotation {
                    key: ReplayKey::derive(presented)?,
                    digest: token.digest,
                    family,
                    scope: token.scope,
                    successor: SecretString::from(random_token()?),
                    user,
                })))
            }
            Some(TokenState::Rotated) => {
                let key = ReplayKey::derive(presented)?;
                self.settle_under_lock(&token.digest, &key, &family, now)
                    .await
                    .map(Presented::Replay)
            }
            _ => Err(RefreshError::Invalid),
        }
    }

    /// Second step: rotates the token of `pending` and stores `answer` (what the caller is
    /// about to send, including [`PendingRotation::successor`]) for the reuse window. When a
    /// concurrent request rotated the token first, its answer is returned instead (within the
    /// window) or the family is revoked (strict mode).
    pub async fn finish(
        &self,
        pending: Box<PendingRotation>,
        answer: &[u8],
    ) -> Result<Finished, RefreshError> {
        let now = self.clock.now();
        let PendingRotation {
            digest,
            key,
            family,
            scope,
            successor,
            user: _,
        } = *pending;
        let successor_digest = secret_digest(successor.expose_secret());
        // The bound values, the same in both backends' SQL: $1 now, $2 the family, $3 the
        // presented token's digest, $4 the successor's, $5 its scope, $6 its expiry; with a
        // reuse window $7 the sealed answer and $8 until when it is kept.
        let mut values: Vec<sea_orm::Value> = vec![
            now.into(),
            family.id.clone().into(),
            digest.clone().into(),
            successor_digest.clone().into(),
            scope.into(),
            self.successor_expiry(now, family.expires_at).into(),
        ];
        let keeps_answer = self.keeps_answers();
        if keeps_answer {
            let sealed = key.seal(
                &replay_context(&digest, &family.id, &successor_digest),
                answer,
            )?;
            values.push(sealed.into());
            values.push(now.saturating_add(self.reuse_secs).into());
        }
        let rotation = if self.db.get_database_backend() == DbBackend::Postgres {
            self.rotate_in_one_statement(values, keeps_answer).await?
        } else {
            self.rotate_in_one_script(values, keeps_answer).await?
        };
        match rotation {
            Rotation::Done => Ok(Finished::Rotated),
            Rotation::FamilyClosed => Err(RefreshError::Invalid),
            // Someone else rotated it first (or, on SQLite, the family may have closed):
            // settle under the family lock, as `begin` would.
            Rotation::NotDone => self
                .settle_under_lock(&digest, &key, &family, now)
                .await
                .map(Finished::Replayed),
        }
    }

    /// [`Self::finish`]'s rotation on SQLite: one script, one hop to the connection's thread,
    /// in one `BEGIN IMMEDIATE` transaction. Its statements run in the order the other paths
    /// run them: the family row is written first (if still open), then the conditional
    /// rotation (only while the family is open), then the successor and the sealed answer,
    /// each inserted only when the statement before it changed a row (`changes()`). It does
    /// not tell a closed family from a lost race: both are [`Rotation::NotDone`].
    async fn rotate_in_one_script(
        &self,
        values: Vec<sea_orm::Value>,
        keeps_answer: bool,
    ) -> Result<Rotation, RefreshError> {
        static STRICT: SqlText = SqlText::new();
        static WINDOWED: SqlText = SqlText::new();
        let text = if keeps_answer { &WINDOWED } else { &STRICT };
        let sql = text.get(DbBackend::Sqlite, || {
            let replay = if keeps_answer {
                "INSERT INTO refresh_replays \
                 (digest, family_id, successor_digest, sealed, expires_at) \
                 SELECT $3, $2, $4, $7, $8 WHERE changes() = 1; "
            } else {
                ""
            };
            format!(
                "BEGIN IMMEDIATE; \
                 UPDATE refresh_families SET last_used_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL; \
                 UPDATE refresh_tokens SET state = '{rotated}', rotated_at = $1 \
                 WHERE digest = $3 AND state = '{active}' AND expires_at > $1 \
                 AND EXISTS (SELECT 1 FROM refresh_families \
                 WHERE id = $2 AND revoked_at IS NULL); \
                 INSERT INTO refresh_tokens \
                 (digest, family_id, scope, state, issued_at, expires_at, rotated_at) \
                 SELECT $4, $2, $5, '{active}', $1, $6, NULL WHERE changes() = 1 \
                 RETURNING digest; \
                 {replay}COMMIT",
                rotated = TokenState::Rotated.as_str(),
                active = TokenState::Active.as_str(),
            )
        });
        let rows = self.sqlite_script(sql.to_string(), values).await?;
        Ok(if rows.is_empty() {
            Rotation::NotDone
        } else {
            Rotation::Done
        })
    }

    /// [`Self::finish`]'s rotation on PostgreSQL: one statement, one round trip. Its
    /// data-modifying parts run in the order the transactional path runs them: the family row
    /// is written first (the token's `UPDATE` waits for it through `EXISTS (SELECT 1 FROM
    /// fam)`, so the family row lock is taken before the token's, as by revocation), then the
    /// conditional rotation, then the successor and the sealed answer, inserted only from the
    /// row the rotation changed. It commits as a whole or not at all.
    async fn rotate_in_one_statement(
        &self,
        values: Vec<sea_orm::Value>,
        keeps_answer: bool,
    ) -> Result<Rotation, RefreshError> {
        static STRICT: SqlText = SqlText::new();
        static WINDOWED: SqlText = SqlText::new();
        let text = if keeps_answer { &WINDOWED } else { &STRICT };
        let sql = text.get(DbBackend::Postgres, || {
            let replay = if keeps_answer {
                ", rep AS (INSERT INTO refresh_replays \
             (digest, family_id, successor_digest, sealed, expires_at) \
             SELECT $3, family_id, $4, $7, $8 FROM rot RETURNING digest)"
            } else {
                ""
            };
            format!(
                "WITH fam AS (UPDATE refresh_families SET last_used_at = $1 \
             WHERE id = $2 AND revoked_at IS NULL RETURNING id), \
             rot AS (UPDATE refresh_tokens SET state = '{rotated}', rotated_at = $1 \
             WHERE digest = $3 AND state = '{active}' AND expires_at > $1 \
             AND EXISTS (SELECT 1 FROM fam) RETURNING family_id), \
             ins AS (INSERT INTO refresh_tokens \
             (digest, family_id, scope, state, issued_at, expires_at, rotated_at) \
             SELECT $4, family_id, $5, '{active}', $1, $6, NULL FROM rot RETURNING digest)\
             {replay} \
             SELECT (SELECT count(*) FROM fam) AS open, (SELECT count(*) FROM rot) AS won",
                rotated = TokenState::Rotated.as_str(),
                active = TokenState::Active.as_str(),
            )
        });
        let row = self
            .postgres_row(sql.to_string(), values, "rotation")
            .await?;
        let open: i64 = row.try_get("", "open")?;
        let won: i64 = row.try_get("", "won")?;
        Ok(match (open, won) {
            (1, 1) => Rotation::Done,
            (1, _) => Rotation::NotDone,
            _ => Rotation::FamilyClosed,
        })
    }

    /// Sends a script of [`Self::start`] or [`Self::finish`] on SQLite through the warm
    /// connections (one hop; see `db::WarmPool::script`).
    async fn sqlite_script(
        &self,
        sql: String,
        values: Vec<sea_orm::Value>,
    ) -> Result<Vec<sea_orm::QueryResult>, RefreshError> {
        Ok(self
            .warm
            .script(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                values,
            ))
            .await?)
    }

    /// Sends a statement of [`Self::start`] or [`Self::finish`] on PostgreSQL through the
    /// warm connections; its one row reports what it did (`what`: which statement).
    async fn postgres_row(
        &self,
        sql: String,
        values: Vec<sea_orm::Value>,
        what: &str,
    ) -> Result<sea_orm::QueryResult, RefreshError> {
        self.warm
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await?
            .ok_or_else(|| sea_orm::DbErr::RecordNotFound(format!("{what} result")).into())
    }

    /// When a token issued at `now` expires: the refresh lifetime, capped by `cap` (the end
    /// of the browser session the sign-in belongs to).
    fn successor_expiry(&self, now: i64, cap: Option<i64>) -> i64 {
        let expires_at = now.saturating_add(self.ttl_secs);
        cap.map_or(expires_at, |cap| Ord::min(expires_at, cap))
    }

    /// Settles a presentation of an already-rotated token in a transaction of its own that
    /// first takes the family lock (see module docs): the answer its rotation stored, when it
    /// may be replayed; otherwise [`RefreshError::Reused`] (the family is revoked in that
    /// transaction) or [`RefreshError::Invalid`] (the family is closed, or the token is gone).
    async fn settle_under_lock(
        &self,
        digest: &str,
        key: &ReplayKey,
        family: &refresh_families::Model,
        now: i64,
    ) -> Result<Replayed, RefreshError> {
        let txn = crate::db::begin_write(&self.db).await?;
        if !self.lock_open_family(&txn, &family.id, now).await? {
            txn.rollback().await?;
            return Err(RefreshError::Invalid);
        }
        let settled = self.settle_rotated(&txn, digest, key, family, now).await?;
        txn.commit().await?;
        match settled {
            Settled::Replay(r) => Ok(r),
            Settled::Reused => Err(reused(family)),
            Settled::Invalid => Err(RefreshError::Invalid),
        }
    }

    /// Decides, inside a transaction holding the family lock, what a presentation of an
    /// already-rotated token comes to: the stored answer, or reuse (the family is revoked in
    /// this same transaction).
    async fn settle_rotated(
        &self,
        txn: &DatabaseTransaction,
        digest: &str,
        key: &ReplayKey,
        family: &refresh_families::Model,
        now: i64,
    ) -> Result<Settled, RefreshError> {
        let Some(token) = refresh_tokens::Entity::find_by_id(digest).one(txn).await? else {
            return Ok(Settled::Invalid);
        };
        if TokenState::of(&token) != Some(TokenState::Rotated) {
            // Expired, purged or revoked meanwhile: nothing to replay, nothing reused.
            return Ok(Settled::Invalid);
        }
        if let Some(answer) = self.replayable(txn, &token, key, now).await? {
            return Ok(Settled::Replay(Replayed {
                family_id: family.id.clone(),
                user_id: family.user_id.clone(),
                answer,
            }));
        }
        self.revoke_in(txn, &family.id, "reuse_detected", now)
            .await?;
        Ok(Settled::Reused)
    }

    /// The stored answer to the rotation of `token`, when it may be served: a window is
    /// configured, the rotation is within it, and the token it issued is still unused.
    async fn replayable(
        &self,
        txn: &DatabaseTransaction,
        token: &refresh_tokens::Model,
        key: &ReplayKey,
        now: i64,
    ) -> Result<Option<Vec<u8>>, RefreshError> {
        if self.reuse_secs <= 0 {
            return Ok(None);
        }
        let rotated_at = token.rotated_at.unwrap_or(i64::MIN);
        if now > rotated_at.saturating_add(self.reuse_secs) {
            return Ok(None);
        }
        let Some(replay) = refresh_replays::Entity::find_by_id(token.digest.as_str())
            .one(txn)
            .await?
        else {
            return Ok(None);
        };
        if now > replay.expires_at {
            return Ok(None);
        }
        let successor_unused = refresh_tokens::Entity::find_by_id(replay.successor_digest.as_str())
            .one(txn)
            .await?
            .is_some_and(|s| TokenState::of(&s) == Some(TokenState::Active) && s.expires_at > now);
        if !successor_unused {
            return Ok(None);
        }
        let context = replay_context(&token.digest, &token.family_id, &replay.successor_digest);
        Ok(Some(key.open(&context, &replay.sealed)?))
    }

    /// Revokes a family inside `txn`: the family row, its active tokens, its stored answers,
    /// and, for a browser session, every sign-in of the session. Returns whether the family
    /// was still open.
    async fn revoke_in(
        &self,
        txn: &DatabaseTransaction,
        family_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Revoked, RefreshError> {
        // The session row first: a `code` sign-in being recorded for it writes it too.
        let closed = self.revoke_one(txn, family_id, reason, now).await?;
        let mut ended = Vec::new();
        if closed {
            ended.push(family_id.to_string());
        }
        let children: Vec<String> = refresh_families::Entity::find()
            .filter(refresh_families::Column::SessionId.eq(family_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .all(txn)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        for child in children {
            if self.revoke_one(txn, &child, reason, now).await? {
                ended.push(child);
            }
        }
        Ok(Revoked { closed, ended })
    }

    async fn revoke_one(
        &self,
        txn: &DatabaseTransaction,
        family_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, RefreshError> {
        let closed = refresh_families::Entity::update_many()
            .col_expr(refresh_families::Column::RevokedAt, Expr::value(now))
            .col_expr(refresh_families::Column::RevokedReason, Expr::value(reason))
            .filter(refresh_families::Column::Id.eq(family_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        refresh_tokens::Entity::update_many()
            .col_expr(
                refresh_tokens::Column::State,
                Expr::value(TokenState::Revoked.as_str()),
            )
            .filter(refresh_tokens::Column::FamilyId.eq(family_id))
            .filter(refresh_tokens::Column::State.eq(TokenState::Active.as_str()))
            .exec(txn)
            .await?;
        refresh_replays::Entity::delete_many()
            .filter(refresh_replays::Column::FamilyId.eq(family_id))
            .exec(txn)
            .await?;
        Ok(closed.rows_affected == 1)
    }

    /// Revokes a family and every token in it, and erases its stored answers; a browser
    /// session takes its sign-ins with it.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        reason: &str,
    ) -> Result<Revoked, RefreshError> {
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db).await?;
        let revoked = self.revoke_in(&txn, family_id, reason, now).await?;
        txn.commit().await?;
        Ok(revoked)
    }

    /// Ends a user's access in the database, in one transaction: bumps the user's
    /// `access_version` (so no sign-in that read the account before can still be recorded),
    /// then revokes every open family (sign-in) of the user with its tokens and stored answers.
    /// Returns the ids of the families revoked.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        reason: &str,
    ) -> Result<Vec<String>, RefreshError> {
        let now = self.clock.now();
        let txn = crate::db::begin_write(&self.db).await?;
        users::Entity::update_many()
            .col_expr(
                users::Column::AccessVersion,
                Expr::col(users::Column::AccessVersion).add(1),
            )
            .filter(users::Column::Id.eq(user_id))
            .exec(&txn)
            .await?;
        let open: Vec<String> = refresh_families::Entity::find()
            .filter(refresh_families::Column::UserId.eq(user_id))
            .filter(refresh_families::Column::RevokedAt.is_null())
            .all(&txn)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        let mut revoked = Vec::with_capacity(open.len());
        for family_id in open {
            revoked.extend(self.revoke_in(&txn, &family_id, reason, now).await?.ended);
        }
        txn.commit().await?;
        Ok(revoked)
    }

    /// Families revoked at or after `since` (Unix seconds), with when: what an instance picks
    /// up to refuse their tokens when the revocation happened elsewhere.
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>, RefreshError> {
        Ok(refresh_families::Entity::find()
            .filter(refresh_families::Column::RevokedAt.gte(since))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|f| f.revoked_at.map(|at| (f.id, at)))
            .collect())
    }

    /// The open family (sign-in) `family_id`, if it exists and is not revoked.
    pub async fn open_family(
        &self,
        family_id: &str,
    ) -> Result<Option<refresh_families::Model>, RefreshError> {
        Ok(refresh_families::Entity::find_by_id(family_id.to_string())
            .one(&self.db)
            .await?
            .filter(|f| FamilyState::of(f) == FamilyState::Open))
    }

    /// Looks up a presented token for revocation or introspection. Returns its family's info
    /// whatever the token's state, with `active` telling whether it may still be used.
    pub async fn inspect(
        &self,
        presented: &str,
    ) -> Result<Option<(RefreshInfo, bool)>, RefreshError> {
        let now = self.clock.now();
        let Some((token, family)) = self.find(&self.db, presented).await? else {
            return Ok(None);
        };
        let active = TokenState::of(&token) == Some(TokenState::Active)
            && token.expires_at > now
            && FamilyState::of(&family) == FamilyState::Open;
        Ok(Some((
            RefreshInfo {
                family_id: family.id,
                user_id: family.user_id,
                client_id: family.client_id,
                scope: token.scope,
                issued_at: token.issued_at,
                expires_at: token.expires_at,
            },
            active,
        )))
    }

    /// Deletes what has outlived its use: stored answers whose window has ended, refresh
    /// tokens past their expiry (whatever their state), and families left without tokens that
    /// have not been used for an hour. Returns the number of rows deleted. Safe to run while
    /// the server serves; meant for one instance at a time, on a schedule.
    pub async fn purge_expired(&self) -> Result<u64, RefreshError> {
        let now = self.clock.now();
        // A stored answer is served while `now <= expires_at`.
        let replays = refresh_replays::Entity::delete_many()
            .filter(refresh_replays::Column::ExpiresAt.lt(now))
            .exec(&self.db)
            .await?;
        // A token is usable while `now < expires_at`.
        let tokens = refresh_tokens::Entity::delete_many()
            .filter(refresh_tokens::Column::ExpiresAt.lte(now))
            .exec(&self.db)
            .await?;
        // `last_used_at` is written by every rotation: a family a rotation is working on is
        // never old enough here (and on PostgreSQL the row lock makes the purge re-check it).
        let has_tokens = Query::select()
            .expr(Expr::val(1))
            .from(refresh_tokens::Entity)
            .and_where(
                Expr::col((refresh_tokens::Entity, refresh_tokens::Column::FamilyId))
                    .equals((refresh_families::Entity, refresh_families::Column::Id)),
            )
            .to_owned();
        // A browser session stays while any sign-in of it does.
        let children = Alias::new("children");
        let has_children = Query::select()
            .expr(Expr::val(1))
            .from_as(refresh_families::Entity, children.clone())
            .and_where(
                Expr::col((children, refresh_families::Column::SessionId))
                    .equals((refresh_families::Entity, refresh_families::Column::Id)),
            )
            .to_owned();
        let families = refresh_families::Entity::delete_many()
            .filter(
                refresh_families::Column::LastUsedAt
                    .lt(now.saturating_sub(self.empty_family_grace_secs)),
            )
            .filter(Expr::exists(has_tokens).not())
            .filter(Expr::exists(has_children).not())
            // A browser session may be idle longer than the grace (its idle timeout is a
            // setting): it stays until its lifetime is over.
            .filter(
                sea_orm::Condition::any()
                    .add(refresh_families::Column::ExpiresAt.is_null())
                    .add(refresh_families::Column::ExpiresAt.lt(now)),
            )
            .exec(&self.db)
            .await?;
        Ok(replays
            .rows_affected
            .saturating_add(tokens.rows_affected)
            .saturating_add(families.rows_affected))
    }
}

/// The `amr` values of a sign-in (`pwd` for sign-ins recorded before they were kept).
pub fn amr_list(stored: Option<&str>) -> Vec<String> {
    match stored {
        Some(text) if !text.trim().is_empty() => {
            text.split_whitespace().map(str::to_string).collect()
        }
        _ => vec!["pwd".to_string()],
    }
}

fn reused(family: &refresh_families::Model) -> RefreshError {
    RefreshError::Reused {
        family_id: family.id.clone(),
        user_id: family.user_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_states_are_stored_through_one_mapping() {
        for state in TokenState::ALL {
            assert_eq!(TokenState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TokenState::parse("Active"), None);
    }

    #[test]
    fn replay_key_depends_on_the_token_and_seals_to_its_row() {
        let key = ReplayKey::derive("token-a").unwrap();
        let sealed = key.seal("ctx", b"answer").unwrap();
        assert_eq!(key.open("ctx", &sealed).unwrap(), b"answer");
        assert!(key.open("other", &sealed).is_err(), "context is bound");
        let other = ReplayKey::derive("token-b").unwrap();
        assert!(other.open("ctx", &sealed).is_err(), "another token fails");
        // The digest that names the row is not the key: deriving from it opens nothing.
        let from_digest = ReplayKey::derive(&secret_digest("token-a")).unwrap();
        assert!(from_digest.open("ctx", &sealed).is_err());
        assert!(key.open("ctx", "AAAA").is_err());
        assert!(key.open("ctx", "not base64!").is_err());
    }
}
