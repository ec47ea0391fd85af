//! `/api/v1/users`: registration and one's own profile.
//!
//! Reading one's profile needs the `profile` scope (and `email` to see the address, as for
//! userinfo); changing it needs `profile:write`, and changing the address also the current
//! password, so a token alone (stolen, or held by a client the user trusted with less) cannot
//! move the account to another address.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::abuse::{LimitClass, RateLimiter};
use crate::domain::{Email, Password, Username, display_name};
use crate::http::auth::ApiScopes;
use crate::http::guard::{ProfileOrEnrolling, ProfileWrite, Require};
use crate::http::origin::origin;
use crate::http::problem::ApiError;
use crate::http::tags::ApiTags;
use crate::oauth::tokens::AccessClaims;
use crate::ops::accounts::ProfileChange;
use crate::ops::recovery::Registered;
use crate::ops::{Accounts, OpError, Recovery};
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

/// Changes to one's own profile; absent fields stay as they are. The address changes with
/// `POST /api/v1/users/me/email` (confirmed from the new address).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ProfilePatch {
    /// Display name: at most 200 characters, without control, invisible or direction-changing
    /// characters (bidirectional overrides and isolates, zero-width spaces); `null` clears it.
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

/// Registration is accepted; the account becomes usable once its address is confirmed.
#[derive(Debug, Object)]
pub struct RegisterStatus {
    /// `verification_sent`.
    pub status: String,
}

#[derive(Debug, ApiResponse)]
pub enum RegisterResponse {
    /// The account, created (a confirmation link went to its address).
    #[oai(status = 201)]
    Created(Json<UserView>),
    /// Accepted: a link was sent, or the owner of a taken address was told.
    #[oai(status = 202)]
    Accepted(Json<RegisterStatus>),
}

pub struct UsersApi;

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// Register a new account
    ///
    /// New users get the `reader` role, and their address a confirmation link. With
    /// `PORTCULLIS_REQUIRE_VERIFIED_EMAIL=true` the answer is 202 whether or not the username or
    /// address is taken (the owner of a taken address is mailed instead), and the account may
    /// sign in once its address is confirmed; otherwise 201 with the account.
    #[oai(path = "/", method = "post", operation_id = "register")]
    async fn register(
        &self,
        recovery: &Recovery,
        limits: &RateLimiter,
        req: &Request,
        body: Json<Registration>,
    ) -> Result<RegisterResponse, ApiError> {
        let origin = origin(req);
        if let Some(ip) = &origin.ip {
            limits.check(LimitClass::RegisterIp, ip).await?;
        }
        let username = Username::parse(&body.username)?;
        let email = Email::parse(&body.email)?;
        let password = Password::parse(&body.password, &username, &email)?;
        Ok(
            match recovery
                .register(&origin, &username, &email, &password)
                .await?
            {
                Registered::Created(user) => RegisterResponse::Created(Json(user.into())),
                Registered::VerificationSent => RegisterResponse::Accepted(Json(RegisterStatus {
                    status: "verification_sent".into(),
                })),
            },
        )
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

    /// Update the signed-in user's display name
    ///
    /// Needs `profile:write`. Roles cannot be changed here; the address changes with
    /// `POST /api/v1/users/me/email`.
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
