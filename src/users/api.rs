//! `/api/v1/users`: registration and one's own profile.

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
use crate::http::problem::ApiError;
use crate::http::{ApiTags, BearerAuth, origin};
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
    /// New email address.
    pub email: Option<String>,
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
    /// Lowercase email address.
    pub email: String,
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
            email: u.email,
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
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<ProfileResponse, ApiError> {
        let user = state.users.get(auth.user_id()?).await.map_err(user_error)?;
        Ok(ProfileResponse::Ok(Json(user.into())))
    }

    /// Update the signed-in user's email or display name
    ///
    /// Roles cannot be changed here.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<ProfilePatch>,
    ) -> Result<ProfileResponse, ApiError> {
        let user_id = auth.user_id()?;
        let body = body.0;
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
                    .client(&auth.0.client_id)
                    .details(json!({"fields": changed})),
            )
            .await;
        Ok(ProfileResponse::Ok(Json(user.into())))
    }
}
