//! `/api/v1/users`: registration and one's own profile.
//!
//! Reading one's profile needs the `profile` scope (and `email` to see the address, as for
//! userinfo); changing it needs `profile:write`, and changing the address also the current
//! password, so a token alone (stolen, or held by a client the user trusted with less) cannot
//! move the account to another address.

use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;

use super::{ProfileUpdate, User, UserError};
use crate::abuse::LimitClass;
use crate::audit::{Event, EventType, Outcome};
use crate::domain::{Email, Password, Username, display_name};
use crate::http::auth::ApiScopes;
use crate::http::problem::ApiError;
use crate::http::{ApiTags, origin};
use crate::oauth::tokens::AccessClaims;
use crate::rbac::{Profile, ProfileWrite, Require};
use crate::state::AppState;

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

#[derive(ApiResponse)]
pub enum ProfileResponse {
    /// The user's profile.
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

#[derive(ApiResponse)]
pub enum RegisterResponse {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

fn user_error(e: UserError) -> ApiError {
    match e {
        UserError::Duplicate => {
            ApiError::conflict("an account with this username or email already exists")
        }
        UserError::NotFound => ApiError::invalid_token("the user no longer exists"),
        UserError::Hash(super::HashError::Busy) => {
            ApiError::Unavailable(Json(crate::http::problem::Problem::new(
                "busy",
                "the server is busy with other sign-ins; retry shortly",
            )))
        }
        UserError::UnknownRole(role) => {
            ApiError::invalid_input("roles", format!("unknown role `{role}`"))
        }
        other => ApiError::internal(&other),
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
        state: Data<&AppState>,
        req: &Request,
        body: Json<Registration>,
    ) -> Result<RegisterResponse, ApiError> {
        let origin = origin(req);
        if let Some(ip) = &origin.ip {
            state.limits.check(LimitClass::RegisterIp, ip).await?;
        }
        let username = Username::parse(&body.username)?;
        let email = Email::parse(&body.email)?;
        let password = Password::parse(&body.password, &username, &email)?;
        let user = state
            .users
            .register(&username, &email, &password, &[])
            .await
            .map_err(user_error)?;
        state
            .audit
            .record(
                &origin,
                Event::new(EventType::UserRegistered, Outcome::Success)
                    .actor(&user.id)
                    .details(json!({"username": user.username})),
            )
            .await;
        Ok(RegisterResponse::Created(Json(user.into())))
    }

    /// The signed-in user's profile
    ///
    /// Needs `profile`; the email address is shown with `email`.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(
        &self,
        state: Data<&AppState>,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
    ) -> Result<ProfileResponse, ApiError> {
        let user = state.users.get(auth.user_id()?).await.map_err(user_error)?;
        Ok(ProfileResponse::Ok(Json(profile_view(user, &auth.claims))))
    }

    /// Update the signed-in user's email or display name
    ///
    /// Needs `profile:write`. Changing the email address also needs the current password.
    /// Roles cannot be changed here.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(
        &self,
        state: Data<&AppState>,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<ProfileWrite>,
        body: Json<ProfilePatch>,
    ) -> Result<ProfileResponse, ApiError> {
        let user_id = auth.user_id()?;
        let body = body.0;
        if body.email.is_some() {
            let Some(current) = body.current_password.as_deref().filter(|p| !p.is_empty()) else {
                return Err(ApiError::invalid_input(
                    "current_password",
                    "the current password is required to change the email address",
                ));
            };
            state.limits.check(LimitClass::Login, user_id).await?;
            if !state
                .users
                .verify_current_password(user_id, current)
                .await
                .map_err(user_error)?
            {
                return Err(ApiError::forbidden(
                    "wrong_password",
                    "the current password is incorrect",
                ));
            }
        }
        let update = ProfileUpdate {
            email: body.email.as_deref().map(Email::parse).transpose()?,
            name: match body.name {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(v) => Some(Some(display_name(&v)?.to_string())),
            },
        };
        let changed: Vec<&str> = [
            update.email.as_ref().map(|_| "email"),
            update.name.as_ref().map(|_| "name"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let user = state
            .users
            .update_profile(user_id, update)
            .await
            .map_err(user_error)?;
        state
            .audit
            .record(
                &origin(req),
                Event::new(EventType::UserUpdated, Outcome::Success)
                    .actor(&user.id)
                    .client(&auth.claims.client_id)
                    .details(json!({"fields": changed})),
            )
            .await;
        Ok(ProfileResponse::Ok(Json(profile_view(user, &auth.claims))))
    }
}
