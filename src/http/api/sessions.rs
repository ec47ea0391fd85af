//! Sign-ins as their user and the administrators see them: `/api/v1/users/me/sessions`
//! (list, end one, sign out everywhere; scope `profile`), `/api/v1/users/me/consents` (the
//! clients the user approved; withdrawing ends that client's sign-ins), and
//! `/api/v1/admin/users/{id}/sessions` (`users:read` to list, `users:admin` to end).
//!
//! A session's `id` is the `sid` of its tokens (of the ID tokens for a browser session);
//! `current` marks the one the presenting token belongs to.

use poem::Request;
use poem_openapi::Object;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;

use crate::http::auth::ApiScopes;
use crate::http::guard::{Profile, Require, UsersAdmin, UsersRead};
use crate::http::problem::{ApiError, NoContent};
use crate::http::tags::ApiTags;
use crate::oauth::authorize::Consent;
use crate::ops::SessionOps;
use crate::signins::{SignInKind, SignInRecord};

/// One open sign-in.
#[derive(Debug, Object)]
pub struct SessionView {
    /// The `sid` of its tokens.
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the last sign-in or token refresh through it.
    pub last_seen_at: i64,
    /// The address it signed in from, when known.
    #[oai(skip_serializing_if_is_none)]
    pub ip: Option<String>,
    /// The browser or program it signed in with (its `User-Agent`), when known.
    #[oai(skip_serializing_if_is_none)]
    pub user_agent: Option<String>,
    /// How it signed in: `browser` (Portcullis's sign-in page) or `password` (the password
    /// grant of a client).
    pub method: String,
    /// Authentication methods (RFC 8176), e.g. `["pwd"]`.
    pub amr: Vec<String>,
    /// The clients it signed in to.
    pub clients: Vec<String>,
    /// Whether the token of this request belongs to it.
    pub current: bool,
}

/// A list of sign-ins.
#[derive(Debug, Object)]
pub struct SessionList {
    pub items: Vec<SessionView>,
}

/// A client the user approved on the consent page.
#[derive(Debug, Object)]
pub struct ConsentView {
    pub client_id: String,
    /// Space-separated scopes approved.
    pub scope: String,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The consents of a user.
#[derive(Debug, Object)]
pub struct ConsentList {
    pub items: Vec<ConsentView>,
}

fn view(record: SignInRecord, current_sid: Option<&str>) -> SessionView {
    let current =
        current_sid.is_some_and(|sid| sid == record.id || record.members.iter().any(|m| m == sid));
    SessionView {
        method: match record.kind {
            SignInKind::Browser => "browser",
            SignInKind::Password => "password",
            SignInKind::Code => "authorization_code",
        }
        .to_string(),
        id: record.id,
        created_at: record.created_at,
        last_seen_at: record.last_seen_at,
        ip: record.ip,
        user_agent: record.user_agent,
        amr: record.amr,
        clients: record.clients,
        current,
    }
}

fn consent_view(c: Consent) -> ConsentView {
    ConsentView {
        client_id: c.client_id,
        scope: c.scope.to_string(),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

pub struct SessionsApi;

#[OpenApi(prefix_path = "/api/v1", tag = "ApiTags::Users")]
impl SessionsApi {
    /// The signed-in user's sessions
    ///
    /// Needs `profile`. Every open sign-in: browser sessions on Portcullis's pages (with the
    /// clients that signed in through them) and password-grant sign-ins.
    #[oai(
        path = "/users/me/sessions",
        method = "get",
        operation_id = "list_my_sessions"
    )]
    async fn my_sessions(
        &self,
        ops: &SessionOps,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
    ) -> Result<Json<SessionList>, ApiError> {
        let user = auth.user_id()?;
        let sid = auth.claims.sid.as_deref();
        let items = ops
            .list(user)
            .await?
            .into_iter()
            .map(|r| view(r, sid))
            .collect();
        Ok(Json(SessionList { items }))
    }

    /// Sign out everywhere
    ///
    /// Needs `profile`. Ends every session of the signed-in user, this one included, and
    /// every token of them.
    #[oai(
        path = "/users/me/sessions",
        method = "delete",
        operation_id = "end_my_sessions"
    )]
    async fn end_my_sessions(
        &self,
        ops: &SessionOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
    ) -> Result<NoContent, ApiError> {
        let user = auth.user_id()?.to_string();
        ops.end_all(&auth.caller(req), &user).await?;
        Ok(NoContent::NoContent)
    }

    /// End one of the signed-in user's sessions
    ///
    /// Needs `profile`. Ends the session and every token of it; 404 when the user has no
    /// open session with this id.
    #[oai(
        path = "/users/me/sessions/:id",
        method = "delete",
        operation_id = "end_my_session"
    )]
    async fn end_my_session(
        &self,
        ops: &SessionOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        let user = auth.user_id()?.to_string();
        ops.end(&auth.caller(req), &user, &id.0).await?;
        Ok(NoContent::NoContent)
    }

    /// The clients the signed-in user approved
    ///
    /// Needs `profile`.
    #[oai(
        path = "/users/me/consents",
        method = "get",
        operation_id = "list_my_consents"
    )]
    async fn my_consents(
        &self,
        ops: &SessionOps,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
    ) -> Result<Json<ConsentList>, ApiError> {
        let items = ops
            .consents(auth.user_id()?)
            .await?
            .into_iter()
            .map(consent_view)
            .collect();
        Ok(Json(ConsentList { items }))
    }

    /// Withdraw a consent
    ///
    /// Needs `profile`. The client will ask again, and its sign-ins of this user end (its
    /// refresh and access tokens stop working).
    #[oai(
        path = "/users/me/consents/:client_id",
        method = "delete",
        operation_id = "withdraw_my_consent"
    )]
    async fn withdraw_consent(
        &self,
        ops: &SessionOps,
        req: &Request,
        #[oai(scope = "ApiScopes::PROFILE")] auth: Require<Profile>,
        client_id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        let user = auth.user_id()?.to_string();
        ops.withdraw_consent(&auth.caller(req), &user, &client_id.0)
            .await?;
        Ok(NoContent::NoContent)
    }

    /// A user's sessions
    ///
    /// Needs `users:read`.
    #[oai(
        path = "/admin/users/:id/sessions",
        method = "get",
        operation_id = "admin_list_user_sessions",
        tag = "ApiTags::Admin"
    )]
    async fn user_sessions(
        &self,
        ops: &SessionOps,
        #[oai(scope = "ApiScopes::USERS_READ")] _auth: Require<UsersRead>,
        id: Path<String>,
    ) -> Result<Json<SessionList>, ApiError> {
        let items = ops
            .list(&id.0)
            .await?
            .into_iter()
            .map(|r| view(r, None))
            .collect();
        Ok(Json(SessionList { items }))
    }

    /// End a user's sessions
    ///
    /// Needs `users:admin`. Ends every session of the user and every token of them.
    #[oai(
        path = "/admin/users/:id/sessions",
        method = "delete",
        operation_id = "admin_end_user_sessions",
        tag = "ApiTags::Admin"
    )]
    async fn end_user_sessions(
        &self,
        ops: &SessionOps,
        req: &Request,
        #[oai(scope = "ApiScopes::USERS_ADMIN")] auth: Require<UsersAdmin>,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        ops.end_all(&auth.caller(req), &id.0).await?;
        Ok(NoContent::NoContent)
    }
}
