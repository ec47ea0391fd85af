//! Why a use case refused or failed, whatever the front end.

use crate::abuse::Limited;
use crate::domain::Invalid;
use crate::rbac::Escalation;

/// Why a use case refused or failed. The front ends render it (HTTP status and problem code,
/// or a message on the command line).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// What was named does not exist (the message says what, e.g. `no such user`).
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Escalation(#[from] Escalation),
    #[error("the current password is incorrect")]
    WrongPassword,
    /// A TOTP or recovery code was wrong (or already used).
    #[error("the code is incorrect")]
    WrongCode,
    #[error("too many attempts; retry in {} s", .0.retry_after_secs)]
    Limited(Limited),
    /// Every password-hashing slot is busy: retry shortly.
    #[error("the server is busy with other sign-ins; retry shortly")]
    Busy,
    /// A failure inside the server (database or store); its cause is logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl OpError {
    /// An internal failure; the cause goes to the log by the front end.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<crate::users::UserError> for OpError {
    fn from(e: crate::users::UserError) -> Self {
        use crate::users::{HashError, UserError};
        match e {
            UserError::NotFound => Self::NotFound("no such user".into()),
            UserError::Duplicate => {
                Self::Conflict("an account with this username or email already exists".into())
            }
            UserError::UnknownRole(r) => Self::Invalid(Invalid {
                field: "roles",
                reason: format!("unknown role `{r}`"),
            }),
            UserError::Hash(HashError::Busy) => Self::Busy,
            other => Self::internal(&other),
        }
    }
}

impl From<crate::clients::ClientError> for OpError {
    fn from(e: crate::clients::ClientError) -> Self {
        use crate::clients::ClientError;
        match e {
            ClientError::NotFound => Self::NotFound("no such client".into()),
            ClientError::Duplicate => {
                Self::Conflict("a client with this client_id already exists".into())
            }
            ClientError::Invalid(i) => Self::Invalid(i),
            other => Self::internal(&other),
        }
    }
}

impl From<crate::rbac::RoleError> for OpError {
    fn from(e: crate::rbac::RoleError) -> Self {
        use crate::rbac::RoleError;
        match e {
            RoleError::UnknownRole(r) => {
                Self::NotFound(format!("no such role `{}`", r.escape_debug()))
            }
            RoleError::UnknownPermission(p) => Self::Invalid(Invalid {
                field: "permissions",
                reason: format!("unknown permission `{}`", p.escape_debug()),
            }),
            other => Self::internal(&other),
        }
    }
}

impl From<crate::signins::SignInError> for OpError {
    fn from(e: crate::signins::SignInError) -> Self {
        Self::internal(&e)
    }
}

impl From<crate::keys::KeyError> for OpError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        match e {
            KeyError::UnknownKid(_) => Self::NotFound(e.to_string()),
            KeyError::AlreadyRevoked(_) | KeyError::Conflict | KeyError::NoNext => {
                Self::Conflict(e.to_string())
            }
            other => Self::internal(&other),
        }
    }
}

impl From<crate::mfa::MfaError> for OpError {
    fn from(e: crate::mfa::MfaError) -> Self {
        use crate::mfa::MfaError;
        match e {
            MfaError::AlreadyOn | MfaError::NotPending | MfaError::NotOn => {
                Self::Conflict(e.to_string())
            }
            other => Self::internal(&other),
        }
    }
}

impl From<crate::store::StoreError> for OpError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(&e)
    }
}
