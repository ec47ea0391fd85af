//! Account recovery and credential changes: confirming an address from a mailed link,
//! password reset, and changing one's password or address. The links in mails lead to the
//! hosted pages (`http::browser_account`), which post the token here; SPAs may post it too.

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use secrecy::SecretString;

use crate::domain::Email;
use crate::http::auth::ApiScopes;
use crate::http::guard::{ProfileWrite, Require};
use crate::http::origin::origin;
use crate::http::problem::{ApiError, NoContent};
use crate::http::tags::ApiTags;
use crate::ops::Recovery;

/// A token from a mailed link.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct TokenBody {
    /// The `token` query parameter of the link.
    #[oai(write_only)]
    pub token: String,
}

/// Asks for a mailed link: a password reset, or a new confirmation of the address.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's e-mail address.
    pub email: String,
}

/// A new password from a reset link.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ResetConfirm {
    #[oai(write_only)]
    pub token: String,
    /// 12–128 characters, not equal to the username or address.
    #[oai(write_only)]
    pub new_password: String,
}

/// Changes one's password.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordChange {
    #[oai(write_only)]
    pub current_password: String,
    /// 12–128 characters, not equal to the username or address.
    #[oai(write_only)]
    pub new_password: String,
}

/// Changes one's address (confirmed from the new address).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct EmailChange {
    #[oai(write_only)]
    pub current_password: String,
    pub new_email: String,
}

/// What happens next.
#[derive(Debug, Object)]
pub struct StatusView {
    /// `reset_requested`, `verification_requested` or `confirmation_sent`.
    pub status: String,
}

#[derive(Debug, ApiResponse)]
pub enum Accepted {
    /// Accepted: a mail is on its way if there is someone to send it to.
    #[oai(status = 202)]
    Accepted(Json<StatusView>),
}

fn accepted(status: &str) -> Accepted {
    Accepted::Accepted(Json(StatusView {
        status: status.to_string(),
    }))
}

pub struct AccountApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl AccountApi {
    /// Confirm an e-mail address
    ///
    /// The token of a verification link (a new account's address, or the new address of an
    /// address change, which then replaces the old one; the old address is told).
    #[oai(
        path = "/email-verification/confirm",
        method = "post",
        operation_id = "confirm_email"
    )]
    async fn confirm_email(
        &self,
        recovery: &Recovery,
        req: &Request,
        body: Json<TokenBody>,
    ) -> Result<NoContent, ApiError> {
        recovery.confirm_email(&origin(req), &body.token).await?;
        Ok(NoContent::NoContent)
    }

    /// Ask for a new link to confirm an address
    ///
    /// Always 202, at once, whether or not an account has this address; if an enabled
    /// account has it and has not confirmed it yet, a new link valid for 24 hours is mailed
    /// to it (the older links stop working). Limited per address and per client address,
    /// with the same budgets as password-reset requests.
    #[oai(
        path = "/email-verification",
        method = "post",
        operation_id = "request_email_verification"
    )]
    async fn request_verification(
        &self,
        recovery: &Recovery,
        req: &Request,
        body: Json<ResetRequest>,
    ) -> Result<Accepted, ApiError> {
        recovery
            .request_verification(&origin(req), &body.email)
            .await?;
        Ok(accepted("verification_requested"))
    }

    /// Ask for a password-reset link
    ///
    /// Always 202, at once, whether or not an account has this address; if one has, a link
    /// valid for 30 minutes is mailed to it (a newer request, a password change or a sign-in
    /// makes it void). Limited per address and per client address.
    #[oai(
        path = "/password-reset",
        method = "post",
        operation_id = "request_password_reset"
    )]
    async fn request_reset(
        &self,
        recovery: &Recovery,
        req: &Request,
        body: Json<ResetRequest>,
    ) -> Result<Accepted, ApiError> {
        recovery.request_reset(&origin(req), &body.email).await?;
        Ok(accepted("reset_requested"))
    }

    /// Set a new password from a reset link
    ///
    /// Every sign-in of the account ends; the address is told.
    #[oai(
        path = "/password-reset/confirm",
        method = "post",
        operation_id = "confirm_password_reset"
    )]
    async fn confirm_reset(
        &self,
        recovery: &Recovery,
        req: &Request,
        body: Json<ResetConfirm>,
    ) -> Result<NoContent, ApiError> {
        let body = body.0;
        recovery
            .confirm_reset(
                &origin(req),
                &body.token,
                &SecretString::from(body.new_password),
            )
            .await?;
        Ok(NoContent::NoContent)
    }

    /// Change the signed-in user's password
    ///
    /// Needs `profile:write` and the current password. The user's other sign-ins end; the
    /// address is told.
    #[oai(
        path = "/users/me/password",
        method = "post",
        operation_id = "change_password"
    )]
    async fn change_password(
        &self,
        recovery: &Recovery,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<ProfileWrite>,
        body: Json<PasswordChange>,
    ) -> Result<NoContent, ApiError> {
        let user = auth.user_id()?.to_string();
        let body = body.0;
        recovery
            .change_password(
                &auth.caller(req),
                &user,
                &SecretString::from(body.current_password),
                &SecretString::from(body.new_password),
                auth.claims.sid.as_deref(),
            )
            .await?;
        Ok(NoContent::NoContent)
    }

    /// Change the signed-in user's e-mail address
    ///
    /// Needs `profile:write` and the current password. The new address gets a confirmation
    /// link; the address changes when it is followed (and the old address is told then).
    #[oai(
        path = "/users/me/email",
        method = "post",
        operation_id = "change_email"
    )]
    async fn change_email(
        &self,
        recovery: &Recovery,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE_WRITE")] auth: Require<ProfileWrite>,
        body: Json<EmailChange>,
    ) -> Result<Accepted, ApiError> {
        let user = auth.user_id()?.to_string();
        let body = body.0;
        let email = Email::parse(&body.new_email).map_err(|mut e| {
            e.field = "new_email";
            e
        })?;
        recovery
            .change_email(
                &auth.caller(req),
                &user,
                &SecretString::from(body.current_password),
                &email,
            )
            .await?;
        Ok(accepted("confirmation_sent"))
    }
}
