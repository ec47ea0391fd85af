//! The browser sign-in use cases behind the authorization endpoint and the hosted pages:
//! deciding what an authorization request needs (sign-in, consent, or a code), signing in
//! with a password on the sign-in page (and a second factor when the user has MFA on),
//! recording consent, and RP-initiated logout.
//!
//! The HTTP front end owns cookies, CSRF tokens and rendering; everything that grants or ends
//! power is here: the browser session is checked and recorded through `sessions`, the request
//! through `oauth::authorize` (oxide-auth), codes are stored through its `Authorizer`, consent
//! is remembered per user and client, and logout ends the session and every token of it.

use std::sync::Arc;

use serde_json::json;

use crate::abuse::{LimitClass, RateLimiter};
use crate::audit::{Audit, Event, EventType, Origin, Outcome};
use crate::clients::{Client, ClientService};
use crate::domain::Scope;
use crate::mfa::SecondFactor;
use crate::mfa::challenges::ChallengePurpose;
use crate::oauth::authorize::{
    AuthorizeRequest, AuthzError, CodeGrant, CodeSlot, Codes, Consents, ErrorRedirect, PageProblem,
    Rejection, validate,
};
use crate::oauth::error::OAuthError;
use crate::oauth::grants::{Grants, check_credentials, check_second_factor, user_permitted_scopes};
use crate::oauth::scope::narrow;
use crate::oauth::tokens::TokenService;
use crate::sessions::{BrowserSession, Sessions, Started};
use crate::signins::SignInError;
use crate::users::{User, UserError};

/// What an authorization request comes to.
#[derive(Debug)]
pub enum AuthorizeStep {
    /// The user must sign in first (then the same request is made again).
    SignIn {
        client_name: String,
        login_hint: Option<String>,
    },
    /// The user must approve the client's access.
    Consent {
        client: Arc<Client>,
        username: String,
        scopes: Scope,
    },
    /// Send the browser to the client (with a code, or an error).
    Redirect(String),
    /// Show an error page; nothing is sent to the client.
    Page {
        problem: PageProblem,
        detail: String,
    },
}

/// Why a sign-in on the page failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// Unknown user, wrong password, disabled or locked account: one answer for all.
    Invalid,
    /// The authorization request names no known client.
    UnknownClient,
    TooMany,
    Busy,
    Internal,
    /// The second factor was wrong (the second step may be tried again).
    WrongCode,
    /// The second step is over (expired, used, or too many wrong codes): sign in again.
    Expired,
}

/// What a right password leads to on the sign-in page.
pub enum SignInStep {
    /// Signed in: the session started.
    Started(Started),
    /// The user has MFA on: the second form, carrying this token.
    SecondFactor { mfa_token: secrecy::SecretString },
}

/// RP-initiated logout parameters (OpenID Connect RP-Initiated Logout 1.0 §2).
#[derive(Debug, Default, Clone)]
pub struct LogoutRequest {
    pub id_token_hint: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    pub client_id: Option<String>,
}

/// What a logout request comes to.
#[derive(Debug)]
pub enum LogoutStep {
    /// Ask the user to confirm (the request could not be trusted to sign out by itself).
    Confirm { client_name: Option<String> },
    /// Signed out; send the browser back to the client.
    Redirect(String),
    /// Signed out; show the signed-out page.
    SignedOut,
    /// Refused (e.g. an unregistered `post_logout_redirect_uri`): show an error page and
    /// never redirect.
    Page {
        problem: PageProblem,
        detail: String,
    },
}

#[derive(Clone)]
pub struct BrowserSignIn {
    clients: ClientService,
    grants: Grants,
    sessions: Sessions,
    codes: Codes,
    consents: Consents,
    tokens: TokenService,
    limits: RateLimiter,
    audit: Audit,
}

impl BrowserSignIn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clients: ClientService,
        grants: Grants,
        sessions: Sessions,
        codes: Codes,
        consents: Consents,
        tokens: TokenService,
        limits: RateLimiter,
        audit: Audit,
    ) -> Self {
        Self {
            clients,
            grants,
            sessions,
            codes,
            consents,
            tokens,
            limits,
            audit,
        }
    }

    /// The session lifetime in seconds (the cookie's `Max-Age`).
    pub fn session_lifetime_secs(&self) -> i64 {
        self.sessions.lifetime_secs()
    }

    /// The live browser session the cookie names.
    pub async fn session(&self, cookie: Option<&str>) -> Option<BrowserSession> {
        let cookie = cookie?;
        match self.sessions.current(cookie).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "could not read a browser session");
                None
            }
        }
    }

    /// Ends a browser session (a new sign-in in the same browser replaces it).
    pub async fn end_session(&self, id: &str, origin: &Origin) {
        match self.sessions.end(id, "replaced").await {
            Ok(true) => {
                self.audit
                    .record(
                        origin,
                        Event::new(EventType::SessionEnded, Outcome::Success)
                            .details(json!({"reason": "replaced", "sids": [id]})),
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "could not end a replaced browser session"),
        }
    }

    /// The display name of a client, if it exists (for the sign-in page).
    pub async fn client_name(&self, client_id: &str) -> Option<String> {
        self.clients
            .get(client_id)
            .await
            .ok()
            .flatten()
            .map(|c| c.name.clone())
    }

    /// Decides what the authorization request `query` needs, for the browser whose session
    /// (if any) is `session`.
    pub async fn authorize(
        &self,
        query: &str,
        session: Option<&BrowserSession>,
        origin: &Origin,
    ) -> AuthorizeStep {
        match self.decide(query, session, None, origin).await {
            Ok(step) => step,
            Err(rejection) => self.rejected(rejection),
        }
    }

    /// The user's answer on the consent page for the request `query`.
    pub async fn consent(
        &self,
        query: &str,
        session: Option<&BrowserSession>,
        allow: bool,
        origin: &Origin,
    ) -> AuthorizeStep {
        match self.decide(query, session, Some(allow), origin).await {
            Ok(step) => step,
            Err(rejection) => self.rejected(rejection),
        }
    }

    fn rejected(&self, rejection: Rejection) -> AuthorizeStep {
        match rejection {
            Rejection::Page { problem, detail } => AuthorizeStep::Page { problem, detail },
            Rejection::Redirect(e) => AuthorizeStep::Redirect(self.error_location(&e)),
        }
    }

    /// The error response for the client (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
    fn error_location(&self, e: &ErrorRedirect) -> String {
        let mut pairs = vec![
            ("error", e.error.as_str().to_string()),
            ("error_description", e.description.clone()),
        ];
        if let Some(state) = &e.state {
            pairs.push(("state", state.clone()));
        }
        pairs.push(("iss", self.tokens.issuer.clone()));
        with_query(&e.redirect_uri, &pairs)
    }

    async fn decide(
        &self,
        query: &str,
        session: Option<&BrowserSession>,
        consent_answer: Option<bool>,
        origin: &Origin,
    ) -> Result<AuthorizeStep, Rejection> {
        let request = validate(&self.clients, &self.tokens.audience, query).await?;
        let now = self.tokens.now();
        // A session must exist, be recent enough for `max_age`, and not be refused by
        // `prompt=login` (the sign-in page drops `login` from the request it sends back).
        let session = session.filter(|s| {
            request
                .max_age
                .is_none_or(|max| now.saturating_sub(s.auth_time) <= max)
        });
        let session = match session {
            Some(s) if !request.prompt.login => s,
            _ if request.prompt.none => {
                return Err(request.error(AuthzError::LoginRequired, "the user is not signed in"));
            }
            _ if consent_answer.is_some() => {
                // The session ended between the consent page and the answer.
                return Ok(self.sign_in_step(&request));
            }
            _ => return Ok(self.sign_in_step(&request)),
        };
        let user = match self.grants.users.get(&session.user_id).await {
            Ok(u) if !u.disabled => u,
            Ok(_) | Err(UserError::NotFound) => {
                if request.prompt.none {
                    return Err(
                        request.error(AuthzError::LoginRequired, "the user is not signed in")
                    );
                }
                return Ok(self.sign_in_step(&request));
            }
            Err(e) => return Err(server_error(&request, &e)),
        };
        let permitted = user_permitted_scopes(&self.grants, &user)
            .await
            .map_err(|_| {
                request.error(
                    AuthzError::ServerError,
                    "the request could not be completed",
                )
            })?;
        let client = &request.client;
        let Some(scopes) = narrow(
            &request.scope,
            &client.default_scopes,
            &client.scopes,
            &permitted,
        ) else {
            return Err(request.error(
                AuthzError::InvalidScope,
                "none of the requested scopes may be granted to this client and user",
            ));
        };
        match consent_answer {
            Some(false) => {
                self.audit_consent(&user, client, &scopes, false, origin)
                    .await;
                return Err(request.error(AuthzError::AccessDenied, "the user denied the request"));
            }
            Some(true) => {
                self.consents
                    .remember(&user.id, &client.client_id, &scopes)
                    .await
                    .map_err(|e| server_error(&request, &e))?;
                self.audit_consent(&user, client, &scopes, true, origin)
                    .await;
            }
            None => {
                let consented = client.first_party
                    || (!request.prompt.consent
                        && scopes.is_subset(
                            &self
                                .consents
                                .granted(&user.id, &client.client_id)
                                .await
                                .map_err(|e| server_error(&request, &e))?,
                        ));
                if !consented {
                    if request.prompt.none {
                        return Err(request.error(
                            AuthzError::ConsentRequired,
                            "the user has not approved this client",
                        ));
                    }
                    return Ok(AuthorizeStep::Consent {
                        client: client.clone(),
                        username: user.username.clone(),
                        scopes,
                    });
                }
            }
        }
        self.issue_code(&request, session, &user, &scopes).await
    }

    fn sign_in_step(&self, request: &AuthorizeRequest) -> AuthorizeStep {
        AuthorizeStep::SignIn {
            client_name: request.client.name.clone(),
            login_hint: request.login_hint.clone(),
        }
    }

    async fn issue_code(
        &self,
        request: &AuthorizeRequest,
        session: &BrowserSession,
        user: &User,
        scopes: &Scope,
    ) -> Result<AuthorizeStep, Rejection> {
        let grant = CodeGrant {
            client_id: request.client.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            user_id: user.id.clone(),
            session_id: session.id.clone(),
            scope: scopes.to_string(),
            nonce: request.nonce.clone(),
            challenge: request.challenge.clone(),
            audience: request.audience.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
        };
        // oxide-auth mints the code through its `Authorizer`; the database keeps its digest.
        let mut slot = CodeSlot::default();
        let minted = oxide_grant(&grant).and_then(|g| {
            oxide_auth::primitives::authorizer::Authorizer::authorize(&mut slot, g).ok()
        });
        let Some(code) = minted else {
            return Err(request.error(AuthzError::ServerError, "the code could not be issued"));
        };
        self.codes
            .issue(&code, &grant)
            .await
            .map_err(|e| server_error(request, &e))?;
        let mut pairs = vec![("code", code)];
        if let Some(state) = &request.state {
            pairs.push(("state", state.clone()));
        }
        pairs.push(("iss", self.tokens.issuer.clone()));
        Ok(AuthorizeStep::Redirect(with_query(
            &request.redirect_uri,
            &pairs,
        )))
    }

    async fn audit_consent(
        &self,
        user: &User,
        client: &Client,
        scopes: &Scope,
        granted: bool,
        origin: &Origin,
    ) {
        let (event, outcome) = if granted {
            (EventType::ConsentGranted, Outcome::Success)
        } else {
            (EventType::ConsentGranted, Outcome::Failure)
        };
        self.audit
            .record(
                origin,
                Event::new(event, outcome)
                    .actor(&user.id)
                    .client(&client.client_id)
                    .details(json!({"scope": scopes.to_string()})),
            )
            .await;
    }

    /// Signs in with a password on the sign-in page: the password grant's checks (per-address
    /// and per-account limits, lockout, bcrypt pool, one answer for every failure), then a new
    /// browser session, or, for a user with MFA on, the second step.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &secrecy::SecretString,
        client_id: &str,
        origin: &Origin,
    ) -> Result<SignInStep, SignInFailure> {
        match self.clients.get(client_id).await {
            Ok(Some(_)) => {}
            Ok(None) | Err(crate::clients::ClientError::Invalid(_)) => {
                return Err(SignInFailure::UnknownClient);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not read a client");
                return Err(SignInFailure::Internal);
            }
        }
        self.address_limit(origin).await?;
        let verified = check_credentials(
            &self.grants,
            origin,
            Some(client_id),
            "browser",
            username,
            password,
        )
        .await
        .map_err(failure)?;
        self.after_first_factor(
            &verified.user,
            verified.second_factor,
            client_id,
            "pwd",
            origin,
        )
        .await
    }

    /// After a first factor (`pwd`, or `fed` for an upstream provider): the second step when
    /// the user has MFA on, else a new browser session.
    pub(super) async fn after_first_factor(
        &self,
        user: &User,
        second_factor: bool,
        client_id: &str,
        first: &str,
        origin: &Origin,
    ) -> Result<SignInStep, SignInFailure> {
        if second_factor {
            // A browser challenge carries no scope: its scope field names the first factor.
            let mfa_token = self
                .grants
                .mfa
                .challenge(ChallengePurpose::Browser, &user.id, client_id, first, None)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "could not start a second step");
                    SignInFailure::Internal
                })?;
            self.audit
                .record(
                    origin,
                    Event::new(EventType::MfaRequired, Outcome::Success)
                        .actor(&user.id)
                        .client(client_id)
                        .details(json!({"method": "browser", "first_factor": first})),
                )
                .await;
            return Ok(SignInStep::SecondFactor { mfa_token });
        }
        self.start(user, client_id, &[first], origin)
            .await
            .map(SignInStep::Started)
    }

    /// Whether the user has MFA on.
    pub(super) async fn mfa_on(&self, user_id: &str) -> Result<bool, SignInFailure> {
        self.grants.mfa.is_on(user_id).await.map_err(|e| {
            tracing::error!(error = %e, "could not read the second factor");
            SignInFailure::Internal
        })
    }

    /// The services of the password check (for the proof of an account before a link).
    pub(super) fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The per-address limit of the sign-in pages.
    pub(super) async fn limit_address(&self, origin: &Origin) -> Result<(), SignInFailure> {
        self.address_limit(origin).await
    }

    /// The second step on the sign-in page: the token of the first and a TOTP or recovery
    /// code (counted toward lockout like a password); then a new browser session.
    pub async fn second_factor(
        &self,
        mfa_token: &secrecy::SecretString,
        factor: &SecondFactor,
        client_id: &str,
        origin: &Origin,
    ) -> Result<Started, SignInFailure> {
        self.address_limit(origin).await?;
        let internal = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "could not check a second step");
            SignInFailure::Internal
        };
        let challenge = self
            .grants
            .mfa
            .pending_challenge(ChallengePurpose::Browser, mfa_token, client_id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or(SignInFailure::Expired)?;
        let user = match self.grants.users.get(&challenge.user_id).await {
            Ok(u) if !u.disabled => u,
            Ok(_) | Err(UserError::NotFound) => return Err(SignInFailure::Expired),
            Err(e) => return Err(internal(&e)),
        };
        if let Err(e) = check_second_factor(
            &self.grants,
            origin,
            Some(client_id),
            "browser",
            &user.id,
            factor,
        )
        .await
        {
            if let Err(e) = self.grants.mfa.challenge_failed(&challenge).await {
                tracing::warn!(error = %e, "could not count a wrong code against its challenge");
            }
            return Err(match failure(e) {
                SignInFailure::Invalid => SignInFailure::WrongCode,
                other => other,
            });
        }
        if !self
            .grants
            .mfa
            .claim_challenge(&challenge)
            .await
            .map_err(|e| internal(&e))?
        {
            return Err(SignInFailure::Expired);
        }
        let first = if challenge.scope.is_empty() {
            "pwd"
        } else {
            challenge.scope.as_str()
        };
        let started = self
            .start(&user, client_id, &[first, factor.amr()], origin)
            .await?;
        Ok(started)
    }

    async fn address_limit(&self, origin: &Origin) -> Result<(), SignInFailure> {
        if let Some(ip) = origin.ip.as_deref()
            && self.limits.check(LimitClass::TokenIp, ip).await.is_err()
        {
            return Err(SignInFailure::TooMany);
        }
        Ok(())
    }

    /// Records the browser session of `user`, authenticated by `amr`.
    async fn start(
        &self,
        user: &User,
        client_id: &str,
        amr: &[&str],
        origin: &Origin,
    ) -> Result<Started, SignInFailure> {
        let started = match self.sessions.start(user, client_id, amr, origin).await {
            Ok(s) => s,
            Err(crate::sessions::SessionError::SignIn(SignInError::UserChanged)) => {
                return Err(SignInFailure::Invalid);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record a browser session");
                return Err(SignInFailure::Internal);
            }
        };
        self.audit
            .record(
                origin,
                Event::new(EventType::SignIn, Outcome::Success)
                    .actor(&user.id)
                    .details(json!({"method": "browser", "sid": started.session.id, "amr": amr})),
            )
            .await;
        Ok(started)
    }

    /// RP-initiated logout. With a valid `id_token_hint` (signed by Portcullis for the client)
    /// and, if given, a `post_logout_redirect_uri` registered for that client, the session is
    /// ended and the browser sent back at once; otherwise the user confirms first
    /// (`confirmed`, a form post with a CSRF token) and the browser session is ended.
    pub async fn logout(
        &self,
        request: &LogoutRequest,
        session: Option<&BrowserSession>,
        confirmed: bool,
        origin: &Origin,
    ) -> LogoutStep {
        let page = |detail: &str| LogoutStep::Page {
            problem: PageProblem::InvalidRequest,
            detail: detail.to_string(),
        };
        // An unusable hint is no hint: the user confirms.
        let hint = request
            .id_token_hint
            .as_deref()
            .and_then(|h| self.tokens.decode_id_token_hint(h).ok());
        let client_id = match (
            hint.as_ref().map(|h| h.aud.as_str()),
            request.client_id.as_deref(),
        ) {
            (Some(a), Some(b)) if a != b => {
                return page("client_id does not match the id_token_hint");
            }
            (Some(a), _) => Some(a.to_string()),
            (None, b) => b.map(str::to_string),
        };
        let client = match &client_id {
            Some(id) => match self.clients.get(id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "could not read a client");
                    return page("the client could not be read");
                }
            },
            None => None,
        };
        let target = match request.post_logout_redirect_uri.as_deref() {
            Some(uri) => match &client {
                Some(c) if c.has_post_logout_redirect_uri(uri) => Some(uri.to_string()),
                Some(_) => {
                    return LogoutStep::Page {
                        problem: PageProblem::RedirectUriMismatch,
                        detail: "post_logout_redirect_uri is not registered for this client".into(),
                    };
                }
                None => {
                    return page("post_logout_redirect_uri needs an id_token_hint or a client_id");
                }
            },
            None => None,
        };
        if hint.is_none() && !confirmed {
            return LogoutStep::Confirm {
                client_name: client.map(|c| c.name.clone()),
            };
        }
        // End the session the hint names (if it is the hint's user's) and the browser's own.
        let mut ended = Vec::new();
        if let Some(h) = &hint
            && !h.sid.is_empty()
            && session.is_none_or(|s| s.id != h.sid)
        {
            match self.grants.sign_ins.end_own(&h.sub, &h.sid, "logout").await {
                Ok(true) => ended.push(h.sid.clone()),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not end a session at logout"),
            }
        }
        if let Some(s) = session
            && (hint.is_none() || hint.as_ref().is_some_and(|h| h.sub == s.user_id))
        {
            match self.sessions.end(&s.id, "logout").await {
                Ok(true) => ended.push(s.id.clone()),
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not end a session at logout"),
            }
        }
        let user = hint
            .as_ref()
            .map(|h| h.sub.clone())
            .or_else(|| session.map(|s| s.user_id.clone()));
        if !ended.is_empty() {
            let mut event = Event::new(EventType::SessionEnded, Outcome::Success)
                .details(json!({"reason": "logout", "sids": ended}));
            if let Some(user) = &user {
                event = event.actor(user);
            }
            if let Some(c) = &client_id {
                event = event.client(c);
            }
            self.audit.record(origin, event).await;
        }
        match target {
            Some(uri) => {
                let pairs: Vec<(&str, String)> =
                    request.state.iter().map(|s| ("state", s.clone())).collect();
                LogoutStep::Redirect(with_query(&uri, &pairs))
            }
            None => LogoutStep::SignedOut,
        }
    }
}

/// The sign-in page's answer to a refused check.
fn failure(e: OAuthError) -> SignInFailure {
    match e {
        OAuthError::TooMany(_) => SignInFailure::TooMany,
        OAuthError::Busy => SignInFailure::Busy,
        OAuthError::Refused {
            code: crate::oauth::error::ErrorCode::InvalidGrant,
            ..
        } => SignInFailure::Invalid,
        OAuthError::Refused { .. } | OAuthError::MfaRequired(_) => SignInFailure::Internal,
    }
}

/// The oxide-auth grant a code stands for (for its `Authorizer`).
fn oxide_grant(grant: &CodeGrant) -> Option<oxide_auth::primitives::grant::Grant> {
    Some(oxide_auth::primitives::grant::Grant {
        owner_id: grant.user_id.clone(),
        client_id: grant.client_id.clone(),
        scope: grant.scope.parse().ok()?,
        redirect_uri: grant.redirect_uri.parse().ok()?,
        until: chrono::Utc::now()
            + chrono::Duration::seconds(crate::oauth::authorize::CODE_TTL_SECS),
        extensions: oxide_auth::primitives::grant::Extensions::new(),
    })
}

fn server_error(request: &AuthorizeRequest, cause: &dyn std::fmt::Display) -> Rejection {
    tracing::error!(error = %cause, "authorization request failed inside the server");
    request.error(
        AuthzError::ServerError,
        "the request could not be completed",
    )
}

/// `uri` with `pairs` added to its query (its own query parameters are kept, RFC 6749
/// §3.1.2).
pub fn with_query(uri: &str, pairs: &[(&str, String)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in pairs {
                    query.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}
