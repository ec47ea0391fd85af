//! RFC 6749 §5.2 error responses (also used by RFC 7009 revocation and RFC 7662 introspection):
//! `{"error": ..., "error_description": ...}`, `invalid_client` as 401 with `WWW-Authenticate`,
//! and `Cache-Control: no-store` (set for every `/oauth/` response by the HTTP layer).

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object};

/// The RFC 6749 §5.2 error codes (plus RFC 7009's `unsupported_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    UnsupportedTokenType,
    /// RFC 8707 §2: the requested resource is invalid or not allowed to the client.
    InvalidTarget,
    /// RFC 6749 §4.1.2.1: the server is temporarily unable to answer (e.g. storage down).
    TemporarilyUnavailable,
    ServerError,
}

/// Error body of the OAuth endpoints.
#[derive(Debug, Clone, Object)]
pub struct OAuthErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
}

/// An OAuth endpoint's error answer.
#[derive(Debug, ApiResponse)]
pub enum OAuthError {
    /// The request is malformed, or the grant, scope or client is refused (RFC 6749 §5.2).
    #[oai(status = 400)]
    BadRequest(Json<OAuthErrorBody>),
    /// Client authentication failed (`invalid_client`).
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
    /// The request body is larger than the server accepts (`invalid_request`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<OAuthErrorBody>),
    /// Too many requests: retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<OAuthErrorBody>,
        #[oai(header = "Retry-After")] u64,
        #[oai(header = "RateLimit-Limit")] u32,
        #[oai(header = "RateLimit-Remaining")] u32,
        #[oai(header = "RateLimit-Reset")] u64,
    ),
    /// The server could not answer right now (database or store unreachable, or every
    /// password-hashing slot busy); `Retry-After` says when to try again.
    #[oai(status = 503)]
    Unavailable(Json<OAuthErrorBody>, #[oai(header = "Retry-After")] u64),
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let body = Json(OAuthErrorBody {
            error: code,
            error_description: description.into(),
        });
        match code {
            ErrorCode::InvalidClient => {
                Self::Unauthorized(body, r#"Basic realm="portcullis", charset="UTF-8""#.into())
            }
            ErrorCode::TemporarilyUnavailable | ErrorCode::ServerError => {
                Self::Unavailable(body, 1)
            }
            _ => Self::BadRequest(body),
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnauthorizedClient, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidTarget, d)
    }

    /// An internal failure: logged with its cause, answered without it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "OAuth request failed inside the server");
        Self::new(
            ErrorCode::TemporarilyUnavailable,
            "the server cannot complete this request right now; retry later",
        )
    }

    /// Every password-hashing slot and the queue are busy: retry shortly.
    pub fn busy() -> Self {
        Self::Unavailable(
            Json(OAuthErrorBody {
                error: ErrorCode::TemporarilyUnavailable,
                error_description: "the server is busy with other sign-ins; retry shortly".into(),
            }),
            1,
        )
    }

    /// Over a rate limit (the body keeps the RFC 6749 shape).
    pub fn too_many(limited: crate::abuse::Limited) -> Self {
        Self::TooManyRequests(
            Json(OAuthErrorBody {
                error: ErrorCode::TemporarilyUnavailable,
                error_description: format!(
                    "too many requests; retry in {} s",
                    limited.retry_after_secs
                ),
            }),
            limited.retry_after_secs,
            limited.limit,
            0,
            limited.reset_secs,
        )
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(b)
            | Self::PayloadTooLarge(b)
            | Self::Unauthorized(b, _)
            | Self::Unavailable(b, _)
            | Self::TooManyRequests(b, ..) => b.error,
        }
    }
}
