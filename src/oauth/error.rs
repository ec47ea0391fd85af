//! Why an OAuth endpoint refuses a request: the RFC 6749 §5.2 error codes (also used by RFC
//! 7009 revocation, RFC 7662 introspection and RFC 8707 resource indicators), a rate limit,
//! or a busy sign-in queue. The HTTP layer renders them (`http::api::oauth_error`).

use crate::abuse::Limited;

/// The RFC 6749 §5.2 error codes (plus RFC 7009's `unsupported_token_type` and RFC 8707's
/// `invalid_target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The password was right; a second factor completes the sign-in (grant type
    /// `urn:portcullis:params:oauth:grant-type:mfa-otp` with the `mfa_token`).
    MfaRequired,
}

impl ErrorCode {
    /// The code as it is written on the wire (`invalid_grant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::InvalidTarget => "invalid_target",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
            Self::MfaRequired => "mfa_required",
        }
    }
}

/// The `mfa_token` of an `mfa_required` answer (never shown by `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct MfaToken(pub String);

impl std::fmt::Debug for MfaToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaToken(<hidden>)")
    }
}

/// An OAuth endpoint's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// An RFC 6749 §5.2 error with its description (safe to show to the client).
    Refused {
        code: ErrorCode,
        description: String,
    },
    /// Over a rate limit.
    TooMany(Limited),
    /// Every password-hashing slot and the queue are busy: retry shortly.
    Busy,
    /// The password was right and the user has MFA on: complete with the token.
    MfaRequired(MfaToken),
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::Refused {
            code,
            description: description.into(),
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

    pub fn busy() -> Self {
        Self::Busy
    }

    /// Over a rate limit.
    pub fn too_many(limited: Limited) -> Self {
        Self::TooMany(limited)
    }

    /// Why, in a word from a fixed list (the metrics' `reason` label): the error code, or
    /// `rate_limited`, `busy` or `mfa_required`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused { code, .. } => code.as_str(),
            Self::TooMany(_) => "rate_limited",
            Self::Busy => "busy",
            Self::MfaRequired(_) => "mfa_required",
        }
    }

    /// The RFC 6749 error code the answer carries.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Refused { code, .. } => *code,
            Self::TooMany(_) | Self::Busy => ErrorCode::TemporarilyUnavailable,
            Self::MfaRequired(_) => ErrorCode::MfaRequired,
        }
    }
}
