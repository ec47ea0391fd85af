//! `/api/v1/users/me/mfa`: two-factor authentication of one's own account with TOTP
//! (RFC 6238) and recovery codes. Needs `profile:write`; these operations (and reading one's
//! profile) are the only ones open to a token whose user must set up MFA first.
//!
//! The secret leaves the server once, in the answer to the enrolment; recovery codes once, in
//! the answer that creates them. Neither is logged.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use secrecy::{ExposeSecret as _, SecretString};

use crate::http::auth::ApiScopes;
use crate::http::guard::{MfaEnrolment, Require};
use crate::http::problem::{ApiError, NoContent};
use crate::http::tags::ApiTags;
use crate::mfa::{RecoveryCodes, SecondFactor};
use crate::ops::MfaOps;

/// The account's current password.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordBody {
    #[oai(write_only)]
    pub password: String,
}

/// A code from the authenticator app.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CodeBody {
    /// Six digits.
    #[oai(write_only)]
    pub code: String,
}

/// Turning MFA off: the current password and a code from the app or a recovery code.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct DisableBody {
    #[oai(write_only)]
    pub password: String,
    /// Six digits from the app, or an unused recovery code.
    #[oai(write_only)]
    pub code: String,
}

/// A pending enrolment: add the secret to an authenticator app (scan the QR code or type the
/// secret), then confirm with a code. Shown once.
#[derive(Object)]
pub struct EnrolmentView {
    /// The secret, base32 (RFC 4648, no padding).
    pub secret: String,
    /// `otpauth://totp/…` (SHA-1, 6 digits, 30 s).
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// Recovery codes: each signs in once instead of a code from the app. Shown once; store them
/// somewhere safe.
#[derive(Object)]
pub struct RecoveryCodesView {
    pub recovery_codes: Vec<String>,
}

impl From<RecoveryCodes> for RecoveryCodesView {
    fn from(codes: RecoveryCodes) -> Self {
        Self {
            recovery_codes: codes
                .0
                .iter()
                .map(|c| c.expose_secret().to_string())
                .collect(),
        }
    }
}

/// A code as typed: six digits (with spaces allowed) are a TOTP code, anything else a
/// recovery code.
fn factor(code: &str) -> SecondFactor {
    if crate::mfa::totp::normalise(code).is_some() {
        SecondFactor::Totp(code.to_string().into())
    } else {
        SecondFactor::RecoveryCode(code.to_string().into())
    }
}

pub struct MfaApi;

#[OpenApi(prefix_path = "/api/v1/users/me/mfa", tag = "ApiTags::Users")]
impl MfaApi {
    /// Start setting up two-factor authentication
    ///
    /// Needs `profile:write` and the current password. Answers a new TOTP secret (replacing an
    /// enrolment not yet confirmed), its `otpauth://` URI and a QR code; MFA is on once
    /// `/totp/confirm` gets a first code. 409 when MFA is on already.
    #[oai(path = "/totp", method = "post", operation_id = "mfa_enrol_totp")]
    async fn enrol(
        &self,
        ops: &MfaOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<MfaEnrolment>,
        body: Json<PasswordBody>,
    ) -> Result<Json<EnrolmentView>, ApiError> {
        auth.user_id()?;
        let enrolment = ops
            .enrol(&auth.caller(req), &SecretString::from(body.0.password))
            .await?;
        Ok(Json(EnrolmentView {
            secret: enrolment.secret.expose_secret().to_string(),
            otpauth_uri: enrolment.otpauth_uri.expose_secret().to_string(),
            qr_svg: enrolment.qr_svg.expose_secret().to_string(),
        }))
    }

    /// Confirm two-factor authentication
    ///
    /// Needs `profile:write`. A first code from the app turns MFA on and answers ten recovery
    /// codes, shown once. 403 `wrong_code` for a wrong code; 409 when no enrolment is pending.
    #[oai(
        path = "/totp/confirm",
        method = "post",
        operation_id = "mfa_confirm_totp"
    )]
    async fn confirm(
        &self,
        ops: &MfaOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<MfaEnrolment>,
        body: Json<CodeBody>,
    ) -> Result<Json<RecoveryCodesView>, ApiError> {
        auth.user_id()?;
        let codes = ops
            .confirm(&auth.caller(req), &SecretString::from(body.0.code))
            .await?;
        Ok(Json(codes.into()))
    }

    /// Turn two-factor authentication off
    ///
    /// Needs `profile:write`, the current password and a code from the app or a recovery code
    /// (a wrong code counts toward the account's lockout like a wrong password).
    #[oai(path = "/totp", method = "delete", operation_id = "mfa_disable_totp")]
    async fn disable(
        &self,
        ops: &MfaOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<MfaEnrolment>,
        body: Json<DisableBody>,
    ) -> Result<NoContent, ApiError> {
        auth.user_id()?;
        let body = body.0;
        ops.disable(
            &auth.caller(req),
            &SecretString::from(body.password),
            &factor(&body.code),
        )
        .await?;
        Ok(NoContent::NoContent)
    }

    /// Replace the recovery codes
    ///
    /// Needs `profile:write` and the current password. Answers ten new recovery codes, shown
    /// once; the old ones stop working.
    #[oai(
        path = "/recovery-codes",
        method = "post",
        operation_id = "mfa_regenerate_recovery_codes"
    )]
    async fn regenerate(
        &self,
        ops: &MfaOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<MfaEnrolment>,
        body: Json<PasswordBody>,
    ) -> Result<Json<RecoveryCodesView>, ApiError> {
        auth.user_id()?;
        let codes = ops
            .regenerate_recovery_codes(&auth.caller(req), &SecretString::from(body.0.password))
            .await?;
        Ok(Json(codes.into()))
    }
}
