//! Sign-ins as their user and the administrators see them: listing a user's browser sessions
//! and password-grant sign-ins, ending one or all of them, and the consents a user gave
//! (withdrawing one ends that client's sign-ins). Every ending is audited.

use serde_json::json;

use super::caller::Caller;
use super::error::OpError;
use crate::audit::{Audit, EventType};
use crate::oauth::authorize::{Consent, Consents};
use crate::signins::{SignInRecord, SignIns};
use crate::users::UserService;

#[derive(Clone)]
pub struct SessionOps {
    sign_ins: SignIns,
    consents: Consents,
    users: UserService,
    audit: Audit,
}

impl SessionOps {
    pub fn new(sign_ins: SignIns, consents: Consents, users: UserService, audit: Audit) -> Self {
        Self {
            sign_ins,
            consents,
            users,
            audit,
        }
    }

    /// The open sign-ins of `user_id` (the user must exist).
    pub async fn list(&self, user_id: &str) -> Result<Vec<SignInRecord>, OpError> {
        self.users.get(user_id).await?;
        self.sign_ins
            .list(user_id)
            .await
            .map_err(|e| OpError::internal(&e))
    }

    /// Ends the sign-in `sid` of `user_id` and every token of it.
    pub async fn end(&self, caller: &Caller, user_id: &str, sid: &str) -> Result<(), OpError> {
        let ended = self
            .sign_ins
            .end_own(user_id, sid, "ended_by_user")
            .await
            .map_err(|e| OpError::internal(&e))?;
        if !ended {
            return Err(OpError::NotFound("no such session".into()));
        }
        caller
            .record(
                &self.audit,
                EventType::SessionEnded,
                json!({"user_id": user_id, "sids": [sid]}),
            )
            .await;
        Ok(())
    }

    /// Ends every sign-in of `user_id` ("sign out everywhere"). Returns how many.
    pub async fn end_all(&self, caller: &Caller, user_id: &str) -> Result<usize, OpError> {
        self.users.get(user_id).await?;
        let ended = self
            .sign_ins
            .end_all(user_id, "ended_everywhere")
            .await
            .map_err(|e| OpError::internal(&e))?;
        caller
            .record(
                &self.audit,
                EventType::SessionEnded,
                json!({"user_id": user_id, "sids": ended, "all": true}),
            )
            .await;
        Ok(ended.len())
    }

    /// The consents `user_id` gave.
    pub async fn consents(&self, user_id: &str) -> Result<Vec<Consent>, OpError> {
        self.consents
            .list(user_id)
            .await
            .map_err(|e| OpError::internal(&e))
    }

    /// Withdraws the consent `user_id` gave `client_id`, and ends that client's sign-ins of
    /// the user (its refresh and access tokens).
    pub async fn withdraw_consent(
        &self,
        caller: &Caller,
        user_id: &str,
        client_id: &str,
    ) -> Result<(), OpError> {
        let had = self
            .consents
            .withdraw(user_id, client_id)
            .await
            .map_err(|e| OpError::internal(&e))?;
        if !had {
            return Err(OpError::NotFound("no consent for this client".into()));
        }
        let ended = self
            .sign_ins
            .end_for_client(user_id, client_id, "consent_withdrawn")
            .await
            .map_err(|e| OpError::internal(&e))?;
        caller
            .record(
                &self.audit,
                EventType::ConsentWithdrawn,
                json!({"user_id": user_id, "client_id": client_id, "sids": ended}),
            )
            .await;
        Ok(())
    }
}
