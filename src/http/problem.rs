//! The JSON API's one error shape: `{"code": "...", "message": "..."}` with a stable,
//! machine-readable `code`, and the [`ApiError`] response every JSON operation may return.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// A problem answered by the JSON API.
#[derive(Debug, Clone, Object)]
pub struct Problem {
    /// Stable machine-readable code, e.g. `invalid_input`, `conflict`, `invalid_token`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// The input field at fault, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            field: None,
        }
    }
}

/// `WWW-Authenticate` value for a missing or bad bearer token (RFC 6750 §3).
pub fn bearer_challenge(error: Option<(&str, &str)>) -> String {
    match error {
        None => r#"Bearer realm="portcullis""#.to_string(),
        Some((code, description)) => format!(
            r#"Bearer realm="portcullis", error="{code}", error_description="{}""#,
            description.replace(['"', '\\'], "'")
        ),
    }
}

/// Errors of the JSON API.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The input is invalid (`invalid_input`) or malformed (`malformed_request`).
    #[oai(status = 400)]
    BadRequest(Json<Problem>),
    /// The bearer token is missing, invalid, expired or revoked (`invalid_token`).
    #[oai(status = 401)]
    Unauthorized(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// The token is valid but lacks the required scope (`insufficient_scope`).
    #[oai(status = 403)]
    Forbidden(Json<Problem>, #[oai(header = "WWW-Authenticate")] String),
    /// No such resource (`not_found`).
    #[oai(status = 404)]
    NotFound(Json<Problem>),
    /// The resource already exists (`conflict`).
    #[oai(status = 409)]
    Conflict(Json<Problem>),
    /// The request body is larger than the server accepts (`payload_too_large`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<Problem>),
    /// The operation takes a JSON body and the request's `Content-Type` is missing or is not
    /// `application/json` (`unsupported_media_type`).
    #[oai(status = 415)]
    UnsupportedMediaType(Json<Problem>),
    /// Too many requests (`rate_limited`): retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<Problem>,
        #[oai(header = "Retry-After")] u64,
        #[oai(header = "RateLimit-Limit")] u32,
        #[oai(header = "RateLimit-Remaining")] u32,
        #[oai(header = "RateLimit-Reset")] u64,
    ),
    /// A dependency (database, store) is unreachable or the server is saturated
    /// (`unavailable`); retry later.
    #[oai(status = 503)]
    Unavailable(Json<Problem>),
}

impl ApiError {
    pub fn invalid_input(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest(Json(Problem {
            code: "invalid_input".into(),
            message: message.into(),
            field: Some(field.into()),
        }))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(Json(Problem::new("conflict", message)))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(Json(Problem::new("not_found", message)))
    }

    pub fn invalid_token(message: &str) -> Self {
        Self::Unauthorized(
            Json(Problem::new("invalid_token", message)),
            bearer_challenge(Some(("invalid_token", message))),
        )
    }

    /// 403 for a valid token that may not do this (not a scope problem).
    pub fn forbidden(code: &str, message: &str) -> Self {
        Self::Forbidden(
            Json(Problem::new(code, message)),
            bearer_challenge(Some(("insufficient_scope", message))),
        )
    }

    pub fn user_token_required() -> Self {
        Self::forbidden(
            "user_token_required",
            "this operation needs a token issued to a user, not to a client",
        )
    }

    pub fn insufficient_scope(scope: &str) -> Self {
        let message = format!("this operation needs the `{scope}` scope");
        Self::Forbidden(
            Json(Problem::new("insufficient_scope", message.clone())),
            format!(
                r#"Bearer realm="portcullis", error="insufficient_scope", scope="{scope}", error_description="{message}""#
            ),
        )
    }

    /// An internal failure: logged with its cause, answered without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed inside the server");
        Self::Unavailable(Json(Problem::new(
            "unavailable",
            "the server cannot complete this request right now; retry later",
        )))
    }
}

impl From<crate::abuse::Limited> for ApiError {
    fn from(limited: crate::abuse::Limited) -> Self {
        Self::TooManyRequests(
            Json(Problem::new(
                "rate_limited",
                format!("too many requests; retry in {} s", limited.retry_after_secs),
            )),
            limited.retry_after_secs,
            limited.limit,
            0,
            limited.reset_secs,
        )
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(e: crate::domain::Invalid) -> Self {
        Self::invalid_input(e.field, e.reason)
    }
}

impl From<crate::ops::OpError> for ApiError {
    fn from(e: crate::ops::OpError) -> Self {
        use crate::ops::OpError;
        match e {
            OpError::NotFound(message) => Self::not_found(message),
            OpError::Invalid(invalid) => invalid.into(),
            OpError::Conflict(message) => Self::conflict(message),
            OpError::Escalation(e) => Self::forbidden("escalation", &e.to_string()),
            OpError::WrongPassword => {
                Self::forbidden("wrong_password", "the current password is incorrect")
            }
            OpError::WrongCode => Self::forbidden("wrong_code", "the code is incorrect"),
            OpError::Limited(limited) => limited.into(),
            OpError::Busy => Self::Unavailable(Json(Problem::new(
                "busy",
                "the server is busy with other sign-ins; retry shortly",
            ))),
            OpError::Internal(cause) => Self::internal(&cause),
        }
    }
}

/// An operation that answers 200 with no body.
#[derive(Debug, poem_openapi::ApiResponse)]
pub enum Done {
    /// Done.
    #[oai(status = 200)]
    Ok,
}

/// An operation that answers 204 No Content.
#[derive(Debug, poem_openapi::ApiResponse)]
pub enum NoContent {
    /// Done; nothing to return.
    #[oai(status = 204)]
    NoContent,
}

/// An operation that creates something and answers 201 with it.
#[derive(Debug, poem_openapi::ApiResponse)]
pub enum Created<T: poem_openapi::types::ToJSON + Send + Sync> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
}
