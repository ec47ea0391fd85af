//! The authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OpenID Connect Core §3.1.2.1),
//! validated by driving oxide-auth's authorization state machine against the client read from
//! our database: its `Registrar` (exact redirect-URI match, [`ClientRegistrar`]) and its PKCE
//! extension (S256 only; required for public clients). What oxide-auth does not cover (OpenID
//! Connect parameters, RFC 8707 `resource`, repeated parameters) is checked here after it.
//!
//! Errors come in two kinds (RFC 6749 §4.1.2.1): until the client and its redirect URI are
//! known to match, nothing is sent to the redirect URI (a [`Rejection::Page`]); after, the
//! error goes to the client with its `state` (a [`Rejection::Redirect`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use oxide_auth::code_grant::authorization::{
    Authorization, Error as MachineError, Input, Output, Request as OxideRequest,
};
use oxide_auth::code_grant::extensions::Pkce;
use oxide_auth::primitives::grant::{Extensions, Value};
use oxide_auth::primitives::registrar::{
    BoundClient, ClientUrl, PreGrant, RegisteredUrl, Registrar, RegistrarError,
};

use crate::clients::{Client, ClientService, GrantType};
use crate::domain::{Resource, Scope};

/// The longest query string read (browsers and proxies cut URLs near 8 KiB anyway).
pub const MAX_QUERY_LEN: usize = 8 * 1024;
/// The longest `state`, `nonce` and `login_hint` accepted.
const MAX_STATE_LEN: usize = 1024;
const MAX_NONCE_LEN: usize = 512;
const MAX_LOGIN_HINT_LEN: usize = 256;

/// Errors sent to the redirect URI (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6, RFC 8707, RFC 9101).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthzError {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    LoginRequired,
    ConsentRequired,
    InvalidTarget,
    RequestNotSupported,
    RequestUriNotSupported,
}

impl AuthzError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::LoginRequired => "login_required",
            Self::ConsentRequired => "consent_required",
            Self::InvalidTarget => "invalid_target",
            Self::RequestNotSupported => "request_not_supported",
            Self::RequestUriNotSupported => "request_uri_not_supported",
        }
    }
}

/// Why an error cannot be sent to the client, shown on an error page instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageProblem {
    /// The request is malformed before its client and redirect URI could be trusted.
    InvalidRequest,
    /// No client with this `client_id`.
    UnknownClient,
    /// `redirect_uri` missing, malformed, or not registered for the client.
    RedirectUriMismatch,
}

/// An error for the client, sent to its redirect URI.
#[derive(Debug, Clone)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub error: AuthzError,
    pub description: String,
    pub state: Option<String>,
}

/// A refused authorization request.
#[derive(Debug, Clone)]
pub enum Rejection {
    Page {
        problem: PageProblem,
        detail: String,
    },
    Redirect(ErrorRedirect),
}

/// OpenID Connect `prompt` (Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A valid authorization request: the client and its redirect URI are trusted.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub client: Arc<Client>,
    /// Exactly as registered (and as sent).
    pub redirect_uri: String,
    pub state: Option<String>,
    /// As requested (empty: the client's default scopes).
    pub scope: Scope,
    pub nonce: Option<String>,
    /// The PKCE challenge as oxide-auth encodes it (method and value).
    pub challenge: Option<String>,
    pub prompt: Prompt,
    /// OIDC `max_age` in seconds.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The resource (RFC 8707) the access tokens are for; `None`: Portcullis's own API.
    pub audience: Option<String>,
}

impl AuthorizeRequest {
    /// An error for this request's client.
    pub fn error(&self, error: AuthzError, description: impl Into<String>) -> Rejection {
        Rejection::Redirect(ErrorRedirect {
            redirect_uri: self.redirect_uri.clone(),
            error,
            description: description.into(),
            state: self.state.clone(),
        })
    }
}

/// The query parameters, each with every value it was given.
struct Params(HashMap<String, Vec<String>>);

impl Params {
    fn parse(query: &str) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Self(map)
    }

    /// The value of a parameter given once; `None` when absent, empty or repeated.
    fn one(&self, name: &str) -> Option<&str> {
        match self.0.get(name).map(Vec::as_slice) {
            Some([v]) if !v.is_empty() => Some(v.as_str()),
            _ => None,
        }
    }

    fn repeated(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(_, v)| v.len() > 1)
            .map(|(k, _)| k.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// oxide-auth's view of the request.
impl OxideRequest for Params {
    fn valid(&self) -> bool {
        true
    }
    fn client_id(&self) -> Option<Cow<'_, str>> {
        self.one("client_id").map(Cow::Borrowed)
    }
    fn scope(&self) -> Option<Cow<'_, str>> {
        self.one("scope").map(Cow::Borrowed)
    }
    fn redirect_uri(&self) -> Option<Cow<'_, str>> {
        self.one("redirect_uri").map(Cow::Borrowed)
    }
    fn state(&self) -> Option<Cow<'_, str>> {
        self.one("state").map(Cow::Borrowed)
    }
    fn response_type(&self) -> Option<Cow<'_, str>> {
        self.one("response_type").map(Cow::Borrowed)
    }
    fn extension(&self, key: &str) -> Option<Cow<'_, str>> {
        self.one(key).map(Cow::Borrowed)
    }
}

/// oxide-auth's `Registrar` over one client read from our database: a redirect URI is bound
/// only when it is, character for character, one the client registered (no default, no
/// pattern, no partial match; RFC 9700 §4.1.3).
pub struct ClientRegistrar<'a>(pub &'a Client);

impl Registrar for ClientRegistrar<'_> {
    fn bound_redirect<'b>(&self, bound: ClientUrl<'b>) -> Result<BoundClient<'b>, RegistrarError> {
        if bound.client_id != self.0.client_id {
            return Err(RegistrarError::Unspecified);
        }
        let Some(asked) = bound.redirect_uri else {
            return Err(RegistrarError::Unspecified);
        };
        if !self.0.has_redirect_uri(asked.as_str()) {
            return Err(RegistrarError::Unspecified);
        }
        Ok(BoundClient {
            client_id: bound.client_id,
            redirect_uri: Cow::Owned(RegisteredUrl::Exact(asked.into_owned())),
        })
    }

    fn negotiate(
        &self,
        client: BoundClient<'_>,
        scope: Option<oxide_auth::primitives::scope::Scope>,
    ) -> Result<PreGrant, RegistrarError> {
        // Scope is narrowed later against the user's permissions (see `ops::browser`).
        let scope = match scope {
            Some(s) => s,
            None => "".parse().map_err(|_| RegistrarError::PrimitiveError)?,
        };
        Ok(PreGrant {
            client_id: client.client_id.into_owned(),
            redirect_uri: client.redirect_uri.into_owned(),
            scope,
        })
    }

    fn check(&self, client_id: &str, passphrase: Option<&[u8]>) -> Result<(), RegistrarError> {
        if client_id != self.0.client_id {
            return Err(RegistrarError::Unspecified);
        }
        match passphrase {
            None if self.0.is_public() => Ok(()),
            Some(secret) => std::str::from_utf8(secret)
                .ok()
                .filter(|s| self.0.secret_matches(s))
                .map(|_| ())
                .ok_or(RegistrarError::Unspecified),
            None => Err(RegistrarError::Unspecified),
        }
    }
}

/// The PKCE policy for a client: S256 only (`plain` is refused); required for public clients.
pub fn pkce_for(client: &Client) -> Pkce {
    if client.is_public() {
        Pkce::required()
    } else {
        Pkce::optional()
    }
}

/// RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA-256(verifier)), 43 characters.
fn valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates an authorization request given as its raw query string.
/// `own_audience` is Portcullis's own API audience (a `resource` naming it means no resource).
pub async fn validate(
    clients: &ClientService,
    own_audience: &str,
    query: &str,
) -> Result<AuthorizeRequest, Rejection> {
    let page = |problem: PageProblem, detail: &str| Rejection::Page {
        problem,
        detail: detail.to_string(),
    };
    if query.len() > MAX_QUERY_LEN {
        return Err(page(PageProblem::InvalidRequest, "the request is too long"));
    }
    let params = Params::parse(query);
    let Some(client_id) = params.one("client_id") else {
        return Err(page(
            PageProblem::InvalidRequest,
            "client_id is missing or given more than once",
        ));
    };
    let client = match clients.get(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) | Err(crate::clients::ClientError::Invalid(_)) => {
            return Err(page(
                PageProblem::UnknownClient,
                "no client has this client_id",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "could not read a client");
            return Err(page(
                PageProblem::InvalidRequest,
                "the client could not be read",
            ));
        }
    };
    if params.one("redirect_uri").is_none() {
        return Err(page(
            PageProblem::RedirectUriMismatch,
            "redirect_uri is missing or given more than once",
        ));
    }

    // oxide-auth's state machine: bind (exact redirect URI), response type, PKCE, scope.
    let registrar = ClientRegistrar(&client);
    let pkce = pkce_for(&client);
    let mut machine = Authorization::new(&params);
    let mut input = Input::None;
    let mut bound_uri: Option<String> = None;
    let (pre_grant, state, extensions) = loop {
        match machine.advance(input) {
            Output::Bind {
                client_id,
                redirect_uri,
            } => {
                let bound = registrar.bound_redirect(ClientUrl {
                    client_id: Cow::Owned(client_id),
                    redirect_uri: redirect_uri.map(Cow::Owned),
                });
                match bound {
                    Ok(bound_client) => {
                        bound_uri = Some(bound_client.redirect_uri.as_str().to_string());
                        input = Input::Bound {
                            request: &params,
                            bound_client: BoundClient {
                                client_id: Cow::Owned(bound_client.client_id.into_owned()),
                                redirect_uri: Cow::Owned(bound_client.redirect_uri.into_owned()),
                            },
                        };
                    }
                    Err(_) => {
                        return Err(page(
                            PageProblem::RedirectUriMismatch,
                            "redirect_uri is not registered for this client",
                        ));
                    }
                }
            }
            Output::Extend => {
                let challenge = pkce.challenge(
                    params.one("code_challenge_method").map(Cow::Borrowed),
                    params.one("code_challenge").map(Cow::Borrowed),
                );
                let redirect = |description: &str| {
                    Rejection::Redirect(ErrorRedirect {
                        redirect_uri: bound_uri.clone().unwrap_or_default(),
                        error: AuthzError::InvalidRequest,
                        description: description.to_string(),
                        state: params.one("state").map(str::to_string),
                    })
                };
                let value = match challenge {
                    Ok(v) => v,
                    Err(()) if params.one("code_challenge").is_none() => {
                        return Err(redirect(
                            "code_challenge is required (PKCE with code_challenge_method=S256)",
                        ));
                    }
                    Err(()) => {
                        return Err(redirect(
                            "code_challenge_method must be S256 (plain is not supported)",
                        ));
                    }
                };
                if value.is_some()
                    && !params
                        .one("code_challenge")
                        .is_some_and(valid_s256_challenge)
                {
                    return Err(redirect(
                        "code_challenge must be 43 characters of base64url (S256)",
                    ));
                }
                let mut extensions = Extensions::new();
                if let Some(value) = value {
                    extensions.set(&pkce, value);
                }
                input = Input::Extended(extensions);
            }
            Output::Negotiate {
                bound_client,
                scope,
            } => match registrar.negotiate(bound_client.clone(), scope) {
                Ok(pre_grant) => {
                    input = Input::Negotiated {
                        pre_grant,
                        state: params.one("state").map(str::to_string),
                    };
                }
                Err(_) => {
                    return Err(page(
                        PageProblem::InvalidRequest,
                        "the request could not be negotiated",
                    ));
                }
            },
            Output::Ok {
                pre_grant,
                state,
                extensions,
            } => break (pre_grant, state, extensions),
            Output::Err(MachineError::Redirect(_)) => {
                let error = if params.one("response_type") == Some("code") {
                    (AuthzError::InvalidScope, "scope is malformed")
                } else {
                    (
                        AuthzError::UnsupportedResponseType,
                        "only response_type=code is supported",
                    )
                };
                return Err(Rejection::Redirect(ErrorRedirect {
                    redirect_uri: bound_uri.unwrap_or_default(),
                    error: error.0,
                    description: error.1.to_string(),
                    state: params.one("state").map(str::to_string),
                }));
            }
            Output::Err(_) => {
                return Err(page(
                    PageProblem::RedirectUriMismatch,
                    "redirect_uri is not a valid URL",
                ));
            }
        }
    };
    let challenge = extensions
        .clone()
        .remove(&pkce)
        .and_then(|v: Value| v.into_private_value().ok().flatten());

    let request = AuthorizeRequest {
        redirect_uri: pre_grant.redirect_uri.as_str().to_string(),
        client: client.clone(),
        state,
        scope: Scope::default(),
        nonce: None,
        challenge,
        prompt: Prompt::default(),
        max_age: None,
        login_hint: None,
        audience: None,
    };
    refine(request, &params, own_audience)
}

/// The checks after the redirect URI is trusted: errors go to the client.
fn refine(
    mut request: AuthorizeRequest,
    params: &Params,
    own_audience: &str,
) -> Result<AuthorizeRequest, Rejection> {
    let invalid =
        |request: &AuthorizeRequest, d: &str| request.error(AuthzError::InvalidRequest, d);
    if let Some(name) = params.repeated() {
        let d = format!(
            "parameter `{}` is given more than once",
            name.escape_debug()
        );
        return Err(invalid(&request, &d));
    }
    if request
        .state
        .as_ref()
        .is_some_and(|s| s.len() > MAX_STATE_LEN)
    {
        // Not echoed: it is the oversized part.
        request.state = None;
        return Err(invalid(&request, "state is too long"));
    }
    if !request.client.allows(GrantType::AuthorizationCode) {
        return Err(request.error(
            AuthzError::UnauthorizedClient,
            "this client may not use the authorization code flow",
        ));
    }
    if params.has("request") {
        return Err(request.error(
            AuthzError::RequestNotSupported,
            "request objects are not supported",
        ));
    }
    if params.has("request_uri") {
        return Err(request.error(
            AuthzError::RequestUriNotSupported,
            "request_uri is not supported",
        ));
    }
    if let Some(mode) = params.one("response_mode")
        && mode != "query"
    {
        return Err(invalid(&request, "only response_mode=query is supported"));
    }
    request.scope = match Scope::parse(params.one("scope").unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return Err(request.error(AuthzError::InvalidScope, e.reason)),
    };
    if let Some(nonce) = params.one("nonce") {
        if nonce.len() > MAX_NONCE_LEN {
            return Err(invalid(&request, "nonce is too long"));
        }
        request.nonce = Some(nonce.to_string());
    }
    if let Some(prompt) = params.one("prompt") {
        let mut parsed = Prompt::default();
        for value in prompt.split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => parsed.none = true,
                "login" => parsed.login = true,
                "consent" => parsed.consent = true,
                // One account per browser session: there is nothing to select.
                "select_account" => {}
                _ => return Err(invalid(&request, "prompt must be none, login or consent")),
            }
        }
        if parsed.none && (parsed.login || parsed.consent) {
            return Err(invalid(
                &request,
                "prompt=none cannot be combined with other values",
            ));
        }
        request.prompt = parsed;
    }
    if let Some(max_age) = params.one("max_age") {
        match max_age.parse::<i64>() {
            Ok(v) if v >= 0 => request.max_age = Some(v),
            _ => return Err(invalid(&request, "max_age must be a non-negative integer")),
        }
    }
    if let Some(hint) = params.one("login_hint") {
        if hint.len() > MAX_LOGIN_HINT_LEN || hint.chars().any(char::is_control) {
            return Err(invalid(&request, "login_hint is malformed"));
        }
        request.login_hint = Some(hint.to_string());
    }
    if let Some(resource) = params.one("resource") {
        match Resource::parse(resource) {
            Ok(r) if r.as_str() == own_audience => {}
            Ok(r) if request.client.allows_audience(r.as_str()) => {
                request.audience = Some(r.as_str().to_string());
            }
            Ok(_) => {
                return Err(request.error(
                    AuthzError::InvalidTarget,
                    "this client may not ask for tokens for this resource",
                ));
            }
            Err(e) => return Err(request.error(AuthzError::InvalidTarget, e.reason)),
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_challenges_are_43_base64url_characters() {
        assert!(valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!valid_s256_challenge("short"));
        assert!(!valid_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }

    #[test]
    fn repeated_parameters_are_seen() {
        let p = Params::parse("a=1&b=2&a=3");
        assert_eq!(p.repeated(), Some("a"));
        assert_eq!(p.one("a"), None);
        assert_eq!(p.one("b"), Some("2"));
    }
}
