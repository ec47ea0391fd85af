//! User accounts: registration, password sign-in, profile, and the roles and permissions a
//! user holds.

mod password;
pub mod tokens;

use std::collections::BTreeSet;

use entities::{role_permissions, roles, user_roles, users};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, QueryFilter, Set, SqlErr,
};
use serde::Serialize;

pub use self::password::{HashError, PasswordHasher};
use crate::clock::SharedClock;
use crate::db::WarmPool;
use crate::domain::{Email, Password, Scope, Username};

/// The role every new user gets.
pub const DEFAULT_ROLE: &str = "reader";

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this username or email already exists")]
    Duplicate,
    #[error("no such user")]
    NotFound,
    #[error("unknown role `{0}`")]
    UnknownRole(String),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// A user as the rest of the server sees it (never the password hash).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub name: Option<String>,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub created_at: i64,
    /// Whether the owner of `email` confirmed it (the `email_verified` claim).
    pub email_verified: bool,
    /// Changes whenever the user's access is ended (see `signins`).
    #[serde(skip)]
    pub access_version: i64,
}

/// What a password sign-in checks. Never leaves the sign-in path.
pub struct Credentials {
    pub user_id: String,
    pub password_hash: String,
    pub disabled: bool,
    /// The account and its roles, read with the hash (its `access_version` guards the
    /// sign-in's record: anything that ends the user's access meanwhile refuses it).
    pub user: User,
    /// Whether two-factor authentication is on.
    pub mfa_on: bool,
    /// Whether a password-reset link is pending (a sign-in makes it void).
    pub reset_pending: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// Changes to one's own profile.
#[derive(Debug, Default)]
pub struct ProfileUpdate {
    pub email: Option<Email>,
    pub name: Option<Option<String>>,
}

#[derive(Clone)]
pub struct UserService {
    db: DatabaseConnection,
    /// The hot lookups of an account (a password sign-in's, an authorization request's) go
    /// through it (`db::WarmPool`).
    warm: WarmPool,
    hasher: PasswordHasher,
    clock: SharedClock,
}

impl UserService {
    pub fn new(
        db: DatabaseConnection,
        warm: WarmPool,
        hasher: PasswordHasher,
        clock: SharedClock,
    ) -> Self {
        Self {
            db,
            warm,
            hasher,
            clock,
        }
    }

    /// Registers a user with the given roles (the default role when `roles` is empty), its
    /// address confirmed or not (an operator may vouch for it).
    #[tracing::instrument(skip_all, fields(username = username.as_str()))]
    pub async fn register(
        &self,
        username: &Username,
        email: &Email,
        password: &Password,
        roles: &[String],
        email_verified: bool,
    ) -> Result<User, UserError> {
        let new = self
            .prepare(username, email, password, roles, email_verified)
            .await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let id = self.create_in(&txn, &new).await?;
        txn.commit().await?;
        self.get(&id).await
    }

    /// A new account, its password hashed (on the bcrypt pool), ready for [`Self::create_in`].
    pub async fn prepare(
        &self,
        username: &Username,
        email: &Email,
        password: &Password,
        roles: &[String],
        email_verified: bool,
    ) -> Result<NewUser, UserError> {
        Ok(NewUser {
            username: username.as_str().to_string(),
            email: email.as_str().to_string(),
            password_hash: self.hasher.hash(password.expose()).await?,
            roles: if roles.is_empty() {
                vec![DEFAULT_ROLE.to_string()]
            } else {
                roles.to_vec()
            },
            email_verified,
        })
    }

    /// A new account without a password (created through an upstream provider; a password
    /// can be set through a password reset). The stored hash is not a bcrypt hash: nothing
    /// verifies against it.
    pub fn without_password(username: &Username, email: &Email, email_verified: bool) -> NewUser {
        NewUser {
            username: username.as_str().to_string(),
            email: email.as_str().to_string(),
            password_hash: NO_PASSWORD.to_string(),
            roles: vec![DEFAULT_ROLE.to_string()],
            email_verified,
        }
    }

    /// Whether the user can sign in with a password.
    pub async fn has_password(&self, id: &str) -> Result<bool, UserError> {
        let row = users::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or(UserError::NotFound)?;
        Ok(row.password_hash != NO_PASSWORD)
    }

    /// Whether `username` is taken.
    pub async fn username_taken(&self, username: &Username) -> Result<bool, UserError> {
        Ok(users::Entity::find()
            .filter(users::Column::Username.eq(username.as_str()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Inserts a prepared account inside the caller's transaction; returns its id.
    pub async fn create_in(
        &self,
        txn: &impl ConnectionTrait,
        new: &NewUser,
    ) -> Result<String, UserError> {
        let now = self.clock.now();
        let id = uuid::Uuid::new_v4().to_string();
        for role in &new.roles {
            if roles::Entity::find_by_id(role.clone())
                .one(txn)
                .await?
                .is_none()
            {
                return Err(UserError::UnknownRole(role.clone()));
            }
        }
        let row = users::ActiveModel {
            id: Set(id.clone()),
            username: Set(new.username.clone()),
            email: Set(new.email.clone()),
            name: Set(None),
            password_hash: Set(new.password_hash.clone()),
            disabled: Set(false),
            access_version: Set(0),
            email_verified: Set(new.email_verified),
            created_at: Set(now),
            updated_at: Set(now),
        };
        if let Err(e) = row.insert(txn).await {
            return Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => UserError::Duplicate,
                _ => e.into(),
            });
        }
        for role in &new.roles {
            user_roles::ActiveModel {
                user_id: Set(id.clone()),
                role: Set(role.clone()),
            }
            .insert(txn)
            .await?;
        }
        Ok(id)
    }

    /// The account with this address, if any.
    pub async fn by_email(&self, email: &str) -> Result<Option<User>, UserError> {
        let Some(row) = users::Entity::find()
            .filter(users::Column::Email.eq(email.to_ascii_lowercase()))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let roles = self.roles(&row.id).await?;
        Ok(Some(to_user(row, roles)))
    }

    /// Revokes the user's unused password-reset links (a sign-in with the password).
    pub async fn forget_reset_links(&self, user_id: &str) -> Result<(), tokens::TokenError> {
        tokens::revoke_in(
            &self.db,
            user_id,
            tokens::Purpose::PasswordReset,
            self.clock.now(),
        )
        .await
    }

    /// Deletes mailed-link tokens expired for more than a day (run by the background duties).
    pub async fn purge_expired_links(&self) -> Result<u64, tokens::TokenError> {
        tokens::purge_expired(&self.db, self.clock.now()).await
    }

    /// Hashes a new password on the bcrypt pool.
    pub async fn hash_password(&self, password: &Password) -> Result<String, UserError> {
        Ok(self.hasher.hash(password.expose()).await?)
    }

    /// Sets a user's password hash inside the caller's transaction.
    pub async fn set_password_in(
        &self,
        txn: &impl ConnectionTrait,
        user_id: &str,
        hash: &str,
    ) -> Result<(), UserError> {
        let done = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash))
            .col_expr(users::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(users::Column::Id.eq(user_id))
            .exec(txn)
            .await?;
        if done.rows_affected != 1 {
            return Err(UserError::NotFound);
        }
        Ok(())
    }

    /// Sets a user's address, confirmed, inside the caller's transaction.
    pub async fn set_verified_email_in(
        &self,
        txn: &impl ConnectionTrait,
        user_id: &str,
        email: &str,
    ) -> Result<(), UserError> {
        let done = users::Entity::update_many()
            .col_expr(users::Column::Email, Expr::value(email))
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(users::Column::Id.eq(user_id))
            .exec(txn)
            .await;
        match done {
            Ok(d) if d.rows_affected == 1 => Ok(()),
            Ok(_) => Err(UserError::NotFound),
            Err(e) => Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => UserError::Duplicate,
                _ => e.into(),
            }),
        }
    }

    /// Marks the address confirmed inside the caller's transaction, only while the account
    /// still has `email` (the address a mailed link proved): a link sent before a change of
    /// address confirms nothing. Returns whether the account was unconfirmed until now.
    pub async fn confirm_address_in(
        &self,
        txn: &impl ConnectionTrait,
        user_id: &str,
        email: &str,
    ) -> Result<bool, UserError> {
        let done = users::Entity::update_many()
            .col_expr(users::Column::EmailVerified, Expr::value(true))
            .col_expr(users::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(users::Column::Id.eq(user_id))
            .filter(users::Column::Email.eq(email))
            .filter(users::Column::EmailVerified.eq(false))
            .exec(txn)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// The id of the user with this username (case-insensitive).
    pub async fn id_of(&self, username: &str) -> Result<String, UserError> {
        users::Entity::find()
            .filter(users::Column::Username.eq(username.to_ascii_lowercase()))
            .one(&self.db)
            .await?
            .map(|u| u.id)
            .ok_or(UserError::NotFound)
    }

    /// The user `id` with their roles, in one statement.
    pub async fn get(&self, id: &str) -> Result<User, UserError> {
        self.get_in(&self.warm, id).await
    }

    /// [`Self::get`] on `conn`: inside a caller's transaction, read there (a read through the
    /// hot path's connections could wait for that transaction's own lock).
    pub async fn get_in(
        &self,
        conn: &impl sea_orm::ConnectionTrait,
        id: &str,
    ) -> Result<User, UserError> {
        static SQL: crate::db::SqlText = crate::db::SqlText::new();
        let sql = SQL.get(self.db.get_database_backend(), || {
            format!(
                "SELECT {}, r.role AS r_role FROM users u \
                 LEFT JOIN user_roles r ON r.user_id = u.id WHERE u.id = {}",
                crate::db::select_list::<users::Entity>("u"),
                crate::db::first_placeholder(&self.db),
            )
        });
        let rows = conn
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [id.into()],
            ))
            .await?;
        if rows.is_empty() {
            return Err(UserError::NotFound);
        }
        Ok(user_from_rows(&rows)?)
    }

    /// The stored credentials for a username-or-email, if such an account exists.
    pub async fn credentials(&self, login: &str) -> Result<Option<Credentials>, UserError> {
        let login = login.to_ascii_lowercase();
        // No account has such a name: skip the lookup (PostgreSQL refuses NUL bytes in text).
        if login.len() > 254 || login.chars().any(char::is_control) {
            return Ok(None);
        }
        let column = if login.contains('@') {
            "email"
        } else {
            "username"
        };
        // One statement: the account, its roles (one row each), whether MFA is on and
        // whether a reset link is pending.
        let placeholder = crate::db::first_placeholder(&self.db);
        let sql = format!(
            "SELECT {users}, r.role AS r_role, \
             (m.confirmed_at IS NOT NULL) AS mfa_on, \
             EXISTS (SELECT 1 FROM account_tokens a WHERE a.user_id = u.id \
               AND a.purpose = '{reset}' AND a.used_at IS NULL) AS reset_pending \
             FROM users u \
             LEFT JOIN user_roles r ON r.user_id = u.id \
             LEFT JOIN mfa_totp m ON m.user_id = u.id \
             WHERE u.{column} = {placeholder}",
            users = crate::db::select_list::<users::Entity>("u"),
            reset = tokens::Purpose::PasswordReset.as_str(),
        );
        let rows = self
            .warm
            .query_all_raw(sea_orm::Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                [login.into()],
            ))
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let row = users::Model::from_query_result(first, "u_")?;
        Ok(Some(Credentials {
            user_id: row.id,
            password_hash: row.password_hash,
            disabled: row.disabled,
            user: user_from_rows(&rows)?,
            mfa_on: first
                .try_get::<Option<bool>>("", "mfa_on")?
                .unwrap_or(false),
            reset_pending: first.try_get::<bool>("", "reset_pending")?,
        }))
    }

    /// Verifies `password` against `hash`, or against a dummy hash of the same cost when
    /// `hash` is `None` (unknown or locked account), which never verifies: every sign-in
    /// attempt costs the same bcrypt work.
    pub async fn verify_password(
        &self,
        password: &str,
        hash: Option<&str>,
    ) -> Result<bool, UserError> {
        Ok(self.hasher.verify(password, hash).await?)
    }

    /// Whether `password` is the current password of the user `id` (bcrypt, on the pool).
    pub async fn verify_current_password(
        &self,
        id: &str,
        password: &str,
    ) -> Result<bool, UserError> {
        let row = users::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or(UserError::NotFound)?;
        Ok(self
            .hasher
            .verify(password, Some(&row.password_hash))
            .await?)
    }

    pub async fn update_profile(&self, id: &str, update: ProfileUpdate) -> Result<User, UserError> {
        let row = users::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or(UserError::NotFound)?;
        let mut active: users::ActiveModel = row.into();
        if let Some(email) = update.email {
            active.email = Set(email.as_str().to_string());
        }
        if let Some(name) = update.name {
            active.name = Set(name);
        }
        active.updated_at = Set(self.clock.now());
        if let Err(e) = active.update(&self.db).await {
            return Err(match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => UserError::Duplicate,
                _ => e.into(),
            });
        }
        self.get(id).await
    }

    /// Users whose username or email contains `query`, ordered by username, after `after`
    /// (keyset pagination). Returns one page and whether more follow.
    pub async fn search(
        &self,
        query: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<User>, bool), UserError> {
        use sea_orm::{Condition, QueryOrder, QuerySelect};
        let mut select = users::Entity::find().order_by_asc(users::Column::Username);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            let pattern = format!("%{}%", q.to_ascii_lowercase());
            select = select.filter(
                Condition::any()
                    .add(users::Column::Username.like(pattern.clone()))
                    .add(users::Column::Email.like(pattern)),
            );
        }
        if let Some(after) = after {
            select = select.filter(users::Column::Username.gt(after));
        }
        let mut rows = select.limit(limit + 1).all(&self.db).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        let mut roles: std::collections::HashMap<String, Vec<String>> = Default::default();
        for link in user_roles::Entity::find()
            .filter(user_roles::Column::UserId.is_in(ids))
            .all(&self.db)
            .await?
        {
            roles.entry(link.user_id).or_default().push(link.role);
        }
        let users = rows
            .into_iter()
            .map(|row| {
                let mut r = roles.remove(&row.id).unwrap_or_default();
                r.sort();
                to_user(row, r)
            })
            .collect();
        Ok((users, more))
    }

    /// Replaces the user's roles. Returns the user and the roles that were removed.
    pub async fn set_roles(
        &self,
        user_id: &str,
        new_roles: &[String],
    ) -> Result<(User, Vec<String>), UserError> {
        let txn = crate::db::begin_write(&self.db).await?;
        // The user row is written first: concurrent role changes of one user queue on its
        // lock (PostgreSQL) instead of each replacing rows the other cannot see yet.
        let user = users::Entity::update_many()
            .col_expr(users::Column::UpdatedAt, Expr::value(self.clock.now()))
            .filter(users::Column::Id.eq(user_id))
            .exec(&txn)
            .await?;
        if user.rows_affected != 1 {
            return Err(UserError::NotFound);
        }
        for role in new_roles {
            if roles::Entity::find_by_id(role.clone())
                .one(&txn)
                .await?
                .is_none()
            {
                return Err(UserError::UnknownRole(role.clone()));
            }
        }
        let old = roles_of(&txn, user_id).await?;
        user_roles::Entity::delete_many()
            .filter(user_roles::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        let wanted: BTreeSet<&String> = new_roles.iter().collect();
        for role in &wanted {
            user_roles::ActiveModel {
                user_id: Set(user_id.to_string()),
                role: Set((*role).clone()),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        let removed = old.into_iter().filter(|r| !wanted.contains(r)).collect();
        Ok((self.get(user_id).await?, removed))
    }

    /// Disables or enables an account. Returns the user.
    pub async fn set_disabled(&self, user_id: &str, disabled: bool) -> Result<User, UserError> {
        let row = users::Entity::find_by_id(user_id.to_string())
            .one(&self.db)
            .await?
            .ok_or(UserError::NotFound)?;
        let mut active: users::ActiveModel = row.into();
        active.disabled = Set(disabled);
        active.updated_at = Set(self.clock.now());
        active.update(&self.db).await?;
        self.get(user_id).await
    }

    pub async fn roles(&self, user_id: &str) -> Result<Vec<String>, UserError> {
        roles_of(&self.db, user_id).await
    }

    /// The permissions granted by the user's roles, as scope tokens.
    pub async fn permissions(&self, roles: &[String]) -> Result<Scope, UserError> {
        let rows = role_permissions::Entity::find()
            .filter(role_permissions::Column::Role.is_in(roles.iter().cloned()))
            .all(&self.db)
            .await?;
        Ok(Scope::from_tokens(rows.into_iter().map(|r| r.permission)))
    }
}

async fn roles_of(db: &impl ConnectionTrait, user_id: &str) -> Result<Vec<String>, UserError> {
    let rows = user_roles::Entity::find()
        .filter(user_roles::Column::UserId.eq(user_id))
        .all(db)
        .await?;
    let set: BTreeSet<String> = rows.into_iter().map(|r| r.role).collect();
    Ok(set.into_iter().collect())
}

/// The user of rows `SELECT <users as u_…>, r.role AS r_role … LEFT JOIN user_roles r`: one
/// row per role (one row with a null role for a user without roles).
pub(crate) fn user_from_rows(rows: &[sea_orm::QueryResult]) -> Result<User, sea_orm::DbErr> {
    let first = rows
        .first()
        .ok_or_else(|| sea_orm::DbErr::RecordNotFound("user".into()))?;
    let row = users::Model::from_query_result(first, "u_")?;
    let mut roles = BTreeSet::new();
    for r in rows {
        if let Some(role) = r.try_get::<Option<String>>("", "r_role")? {
            roles.insert(role);
        }
    }
    Ok(to_user(row, roles.into_iter().collect()))
}

fn to_user(row: users::Model, roles: Vec<String>) -> User {
    User {
        id: row.id,
        username: row.username,
        email: row.email,
        name: row.name,
        disabled: row.disabled,
        roles,
        created_at: row.created_at,
        email_verified: row.email_verified,
        access_version: row.access_version,
    }
}

/// An account about to be created (password already hashed).
/// The stored password hash of an account that has none.
pub const NO_PASSWORD: &str = "!";

pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub email_verified: bool,
}
