//! Two-factor authentication of one's own account: enrolling TOTP (password first), confirming
//! it with a first code (recovery codes shown once), regenerating recovery codes (password),
//! and turning it off (password and a code, which counts toward lockout like a sign-in).
//! Every change is audited; the account's address is told (by the MFA service, in the
//! transaction of the change) when MFA goes on or off and when a recovery code is used.

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::abuse::{LimitClass, RateLimiter};
use crate::audit::{Audit, EventType};
use crate::mfa::{Enrolment, MfaService, RecoveryCodes, SecondFactor};
use crate::oauth::error::OAuthError;
use crate::oauth::grants::{Grants, check_second_factor};
use crate::oauth::scope::administrative_in;
use crate::users::UserService;

#[derive(Clone)]
pub struct MfaOps {
    users: UserService,
    mfa: MfaService,
    grants: Grants,
    limits: RateLimiter,
    audit: Audit,
}

fn own_id(caller: &Caller) -> Result<String, OpError> {
    caller
        .actor()
        .user_id()
        .map(str::to_string)
        .ok_or_else(|| OpError::NotFound("no such user".into()))
}

impl MfaOps {
    pub fn new(
        users: UserService,
        mfa: MfaService,
        grants: Grants,
        limits: RateLimiter,
        audit: Audit,
    ) -> Self {
        Self {
            users,
            mfa,
            grants,
            limits,
            audit,
        }
    }

    /// The current password of the caller, checked on the bcrypt pool within the account's
    /// sign-in rate limit.
    async fn check_password(&self, user_id: &str, password: &SecretString) -> Result<(), OpError> {
        if password.expose_secret().is_empty() {
            return Err(crate::domain::Invalid {
                field: "password",
                reason: "the current password is required".into(),
            }
            .into());
        }
        self.limits
            .check(LimitClass::Login, user_id)
            .await
            .map_err(OpError::Limited)?;
        if self
            .users
            .verify_current_password(user_id, password.expose_secret())
            .await?
        {
            Ok(())
        } else {
            Err(OpError::WrongPassword)
        }
    }

    /// Starts an enrolment (replacing a pending one): the secret, its URI and QR code.
    pub async fn enrol(
        &self,
        caller: &Caller,
        password: &SecretString,
    ) -> Result<Enrolment, OpError> {
        let user_id = own_id(caller)?;
        self.check_password(&user_id, password).await?;
        let user = self.users.get(&user_id).await?;
        Ok(self.mfa.begin_enrolment(&user.id, &user.username).await?)
    }

    /// Confirms the pending enrolment with a first code: MFA is on; the recovery codes are
    /// shown once.
    pub async fn confirm(
        &self,
        caller: &Caller,
        code: &SecretString,
    ) -> Result<RecoveryCodes, OpError> {
        let user_id = own_id(caller)?;
        self.limits
            .check(LimitClass::Login, &user_id)
            .await
            .map_err(OpError::Limited)?;
        let Some(codes) = self.mfa.confirm(&user_id, code).await? else {
            return Err(OpError::WrongCode);
        };
        caller
            .record(
                &self.audit,
                EventType::MfaEnrolled,
                json!({"factor": "totp"}),
            )
            .await;
        Ok(codes)
    }

    /// Turns MFA off: the password and a TOTP or recovery code.
    pub async fn disable(
        &self,
        caller: &Caller,
        password: &SecretString,
        factor: &SecondFactor,
    ) -> Result<(), OpError> {
        let user_id = own_id(caller)?;
        if !self.mfa.is_on(&user_id).await? {
            return Err(crate::mfa::MfaError::NotOn.into());
        }
        self.check_password(&user_id, password).await?;
        check_second_factor(
            &self.grants,
            &caller.origin,
            caller.actor().client_id(),
            "mfa_disable",
            &user_id,
            factor,
        )
        .await
        .map_err(|e| match e {
            OAuthError::TooMany(limited) => OpError::Limited(limited),
            OAuthError::Busy => OpError::Busy,
            OAuthError::Refused {
                code: crate::oauth::error::ErrorCode::InvalidGrant,
                ..
            } => OpError::WrongCode,
            other => OpError::internal(&format!("{other:?}")),
        })?;
        self.mfa.disable(&user_id).await?;
        // Whether the account holds administrative power (the alert on MFA turned off).
        let roles = self.users.roles(&user_id).await?;
        let administrative = administrative_in(&self.users.permissions(&roles).await?);
        caller
            .record(
                &self.audit,
                EventType::MfaDisabled,
                json!({"factor": factor.amr(), "administrative": administrative}),
            )
            .await;
        Ok(())
    }

    /// New recovery codes (the password first); the old ones stop working.
    pub async fn regenerate_recovery_codes(
        &self,
        caller: &Caller,
        password: &SecretString,
    ) -> Result<RecoveryCodes, OpError> {
        let user_id = own_id(caller)?;
        if !self.mfa.is_on(&user_id).await? {
            return Err(crate::mfa::MfaError::NotOn.into());
        }
        self.check_password(&user_id, password).await?;
        let codes = self.mfa.regenerate_recovery_codes(&user_id).await?;
        caller
            .record(
                &self.audit,
                EventType::MfaRecoveryCodesRegenerated,
                json!({"count": codes.0.len()}),
            )
            .await;
        Ok(codes)
    }
}
