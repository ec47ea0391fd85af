//! `/api/v1/users`: registration and one's own profile.
//!
//! Reading one's profile needs the `profile` scope (and `email` to see the address, as for
//! userinfo); changing it needs `profile:write`, and changing the address also the current
//! password, so a token alone (stolen, or held by a client the user trusted with less) cannot
//! move the account to another address.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};
use secrecy::SecretString;

use crate::abuse::{LimitClass, RateLimiter};
use crate::domain::{Email, Password, Username, display_name};
use crate::http::auth::ApiScopes;
use crate::http::guard::{ProfileOrEnrolling, ProfileWrite, Require};
use crate::http::origin::origin;
use crate::http::problem::{ApiError, Created};
use crate::http::tags::ApiTags;
use crate::oauth::tokens::AccessClaims;
use crate::ops::accounts::ProfileChange;
use crate::ops::{Accounts, OpError};
use crate::users::User;

/// New account.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct Registration {
    /// 3–32 characters of letters, digits, `_`, `.`, `-` (case-insensitive).
    pub username: String,
    /// A syntactically valid email address (case-insensitive).
    pub email: String,
    /// 12–128 characters, not equal to the username or email.
    #[oai(write_only)]
    pub password: String,
}

/// Changes to one's own profile; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ProfilePatch {
    /// New email address (needs `current_password`).
    pub email: Option<String>,
    /// The account's current password: required to change the email address.
    #[oai(write_only)]
    pub current_password: Option<String>,
    /// Display name (at most 200 characters); `null` clears it.
    #[oai(nullable)]
    pub name: MaybeUndefined<String>,
}

/// A user account as the API shows it (never the password hash).
#[derive(Debug, Object)]
pub struct UserView {
    /// User id (the `sub` of the user's tokens).
    pub id: String,
    /// Lowercase username.
    pub username: String,
    /// Lowercase email address (with the `email` scope).
    #[oai(skip_serializing_if_is_none)]
    pub email: Option<String>,
    /// Display name, when set.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// Roles held (`reader`, `author`, `admin`).
    pub roles: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: Some(u.email),
            name: u.name,
            roles: u.roles,
            created_at: u.created_at,
        }
    }
}

/// The problem answered when the token's user no longer exists.
fn gone(e: OpError) -> ApiError {
    match e {
        OpError::NotFound(_) => ApiError::invalid_token("the user no longer exists"),
        other => other.into(),
    }
}

/// The profile as a token with `claims` may see it (the address needs `email`).
fn profile_view(user: User, claims: &AccessClaims) -> UserView {
    let email = claims.has_scope("email");
    let mut view = UserView::from(user);
    if !email {
        view.email = None;
    }
    view
}

pub struct UsersApi;

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// Register a new account
    ///
    /// New users get the `reader` role.
    #[oai(path = "/", method = "post", operation_id = "register")]
    async fn register(
        &self,
        accounts: &Accounts,
        limits: &RateLimiter,
        req: &Request,
        body: Json<Registration>,
    ) -> Result<Created<UserView>, ApiError> {
        let origin = origin(req);
        if let Some(ip) = &origin.ip {
            limits.check(LimitClass::RegisterIp, ip).await?;
        }
        let username = Username::parse(&body.username)?;
        let email = Email::parse(&body.email)?;
        let password = Password::parse(&body.password, &username, &email)?;
        let user = accounts
            .register(&origin, &username, &email, &password)
            .await?;
        Ok(Created::Created(Json(user.into())))
    }

    /// The signed-in user's profile
    ///
    /// Needs `profile`; the email address is shown with `email`.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(
        &self,
        accounts: &Accounts,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<ProfileOrEnrolling>,
    ) -> Result<Json<UserView>, ApiError> {
        let user = accounts.get(auth.user_id()?).await.map_err(gone)?;
        Ok(Json(profile_view(user, &auth.claims)))
    }

    /// Update the signed-in user's email or display name
    ///
    /// Needs `profile:write`. Changing the email address also needs the current password.
    /// Roles cannot be changed here.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(
        &self,
        accounts: &Accounts,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<ProfileWrite>,
        body: Json<ProfilePatch>,
    ) -> Result<Json<UserView>, ApiError> {
        auth.user_id()?;
        let body = body.0;
        let change = ProfileChange {
            email: body.email.as_deref().map(Email::parse).transpose()?,
            current_password: body.current_password.map(SecretString::from),
            name: match body.name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(display_name(&v)?.to_string())),
            },
        };
        let user = accounts
            .update_profile(&auth.caller(req), change)
            .await
            .map_err(gone)?;
        Ok(Json(profile_view(user, &auth.claims)))
    }
}
