//! How an OAuth endpoint's refusal (`oauth::error::OAuthError`) is answered, RFC 6749 §5.2
//! (also RFC 7009 and RFC 7662): `{"error": ..., "error_description": ...}`, `invalid_client`
//! as 401 with `WWW-Authenticate`, 429 with `Retry-After` and `RateLimit-*`, 503 with
//! `Retry-After`; `Cache-Control: no-store` is set for every `/oauth/` response by the
//! middleware.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object};

use crate::oauth::error::{ErrorCode as Code, OAuthError};

/// The RFC 6749 §5.2 error codes (plus RFC 7009's `unsupported_token_type` and RFC 8707's
/// `invalid_target`).
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
    /// The password was right; complete the sign-in with a second factor (grant type
    /// `urn:portcullis:params:oauth:grant-type:mfa-otp` and the `mfa_token`).
    MfaRequired,
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::InvalidRequest => Self::InvalidRequest,
            Code::InvalidClient => Self::InvalidClient,
            Code::InvalidGrant => Self::InvalidGrant,
            Code::UnauthorizedClient => Self::UnauthorizedClient,
            Code::UnsupportedGrantType => Self::UnsupportedGrantType,
            Code::InvalidScope => Self::InvalidScope,
            Code::UnsupportedTokenType => Self::UnsupportedTokenType,
            Code::InvalidTarget => Self::InvalidTarget,
            Code::TemporarilyUnavailable => Self::TemporarilyUnavailable,
            Code::ServerError => Self::ServerError,
            Code::MfaRequired => Self::MfaRequired,
        }
    }
}

/// Error body of the OAuth endpoints.
#[derive(Debug, Clone, Object)]
pub struct OAuthErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
    /// With `mfa_required`: the token that completes the sign-in (five minutes, single use,
    /// for this client only).
    #[oai(skip_serializing_if_is_none)]
    pub mfa_token: Option<String>,
}

/// An OAuth endpoint's error answer.
#[derive(Debug, ApiResponse)]
pub enum OAuthErrorResponse {
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

fn body(code: Code, description: String) -> Json<OAuthErrorBody> {
    Json(OAuthErrorBody {
        error: code.into(),
        error_description: description,
        mfa_token: None,
    })
}

impl From<OAuthError> for OAuthErrorResponse {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Refused { code, description } => {
                let json = body(code, description);
                match code {
                    Code::InvalidClient => Self::Unauthorized(
                        json,
                        r#"Basic realm="portcullis", charset="UTF-8""#.into(),
                    ),
                    Code::TemporarilyUnavailable | Code::ServerError => Self::Unavailable(json, 1),
                    _ => Self::BadRequest(json),
                }
            }
            OAuthError::MfaRequired(token) => Self::BadRequest(Json(OAuthErrorBody {
                error: ErrorCode::MfaRequired,
                error_description: "a second factor is required: send the mfa_token with an \
                                    otp or a recovery_code (grant type \
                                    urn:portcullis:params:oauth:grant-type:mfa-otp)"
                    .into(),
                mfa_token: Some(token.0),
            })),
            OAuthError::Busy => Self::Unavailable(
                body(
                    Code::TemporarilyUnavailable,
                    "the server is busy with other sign-ins; retry shortly".into(),
                ),
                1,
            ),
            OAuthError::TooMany(limited) => Self::TooManyRequests(
                body(
                    Code::TemporarilyUnavailable,
                    format!("too many requests; retry in {} s", limited.retry_after_secs),
                ),
                limited.retry_after_secs,
                limited.limit,
                0,
                limited.reset_secs,
            ),
        }
    }
}
