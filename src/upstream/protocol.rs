//! The protocol half of social sign-in, on the `openidconnect` and `oauth2` crates: the
//! authorization URL (code flow, PKCE S256, `state`, `nonce`), the code exchange, and what the
//! upstream says about the user: for OpenID providers the ID token, validated fully (issuer,
//! audience, signature from the upstream's JWKS, expiry, nonce); for GitHub the user and its
//! primary verified e-mail from the REST API. Requests go through reqwest (no redirects
//! followed, a timeout on each).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use super::{Kind, Provider};

/// How long a discovery document (with its JWKS) is reused.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// The timeout of each request to an upstream.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upstream round trip failed (shown to the user as a clear page; logged).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider's configuration could not be read: {0}")]
    Discovery(String),
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the provider's answer was not valid: {0}")]
    Invalid(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
}

/// What the upstream says about the user.
#[derive(Debug, Clone)]
pub struct UpstreamUser {
    /// The upstream's stable id of the user (`sub`; GitHub's numeric id).
    pub subject: String,
    pub email: Option<String>,
    /// Whether the upstream says the address is the user's (only then may it match).
    pub email_verified: bool,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
}

/// Talks to upstream providers; caches their discovery documents.
#[derive(Clone)]
pub struct Protocol {
    http: reqwest::Client,
    discovered: Arc<Mutex<HashMap<String, (std::time::Instant, CoreProviderMetadata)>>>,
}

impl Default for Protocol {
    fn default() -> Self {
        Self::new()
    }
}

type HttpRequest = openidconnect::HttpRequest;
type HttpResponse = openidconnect::HttpResponse;

async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let bytes = response.bytes().await?;
    Ok(builder.body(bytes.to_vec()).unwrap_or_default())
}

impl Protocol {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            http,
            discovered: Arc::default(),
        }
    }

    fn client_fn(
        &self,
    ) -> impl Fn(
        HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send>,
    > {
        let http = self.http.clone();
        move |request| Box::pin(send(http.clone(), request))
    }

    async fn metadata(&self, provider: &Provider) -> Result<CoreProviderMetadata, UpstreamError> {
        let issuer = provider
            .issuer()
            .ok_or_else(|| UpstreamError::Discovery("no issuer".into()))?;
        if let Some((at, metadata)) = self
            .discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&provider.id)
            .filter(|(at, m)| at.elapsed() < DISCOVERY_TTL && m.issuer().as_str() == issuer)
            .cloned()
        {
            let _ = at;
            return Ok(metadata);
        }
        let issuer_url =
            IssuerUrl::new(issuer.clone()).map_err(|e| UpstreamError::Discovery(e.to_string()))?;
        let client = self.client_fn();
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &client)
            .await
            .map_err(|e| UpstreamError::Discovery(error_chain(&e)))?;
        self.discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                provider.id.clone(),
                (std::time::Instant::now(), metadata.clone()),
            );
        Ok(metadata)
    }

    /// Forgets the cached discovery document of `provider_id` (its keys may have rotated).
    pub fn forget(&self, provider_id: &str) {
        self.discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(provider_id);
    }

    /// The URL to send the browser to. `verifier` is the PKCE verifier kept for the exchange.
    pub async fn authorize_url(
        &self,
        provider: &Provider,
        secret: &str,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<String, UpstreamError> {
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.to_owned(),
        ));
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        let scopes: Vec<Scope> = provider
            .scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
            .map(|s| Scope::new(s.to_owned()))
            .collect();
        match provider.kind {
            Kind::Oidc | Kind::Google => {
                let metadata = self.metadata(provider).await?;
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(provider.client_id.clone()),
                    Some(ClientSecret::new(secret.to_owned())),
                )
                .set_redirect_uri(redirect);
                let state = state.to_owned();
                let nonce = nonce.to_owned();
                let (url, _, _) = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        move || CsrfToken::new(state.clone()),
                        move || Nonce::new(nonce.clone()),
                    )
                    .add_scopes(scopes)
                    .set_pkce_challenge(challenge)
                    .url();
                Ok(url.to_string())
            }
            Kind::Github => {
                let client = github_client(provider, secret, redirect)?;
                let state = state.to_owned();
                let (url, _) = client
                    .authorize_url(move || oauth2::CsrfToken::new(state.clone()))
                    .add_scopes(
                        provider
                            .scopes
                            .split_whitespace()
                            .map(|s| oauth2::Scope::new(s.to_owned())),
                    )
                    .set_pkce_challenge(oauth2::PkceCodeChallenge::from_code_verifier_sha256(
                        &oauth2::PkceCodeVerifier::new(verifier.to_owned()),
                    ))
                    .url();
                Ok(url.to_string())
            }
        }
    }

    /// Exchanges `code` and returns who the upstream says the user is.
    pub async fn finish(
        &self,
        provider: &Provider,
        secret: &str,
        redirect_uri: &str,
        code: &str,
        nonce: &str,
        verifier: &str,
    ) -> Result<UpstreamUser, UpstreamError> {
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
        let http = self.client_fn();
        match provider.kind {
            Kind::Oidc | Kind::Google => {
                let metadata = self.metadata(provider).await?;
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(provider.client_id.clone()),
                    Some(ClientSecret::new(secret.to_owned())),
                )
                .set_redirect_uri(redirect);
                let tokens = client
                    .exchange_code(AuthorizationCode::new(code.to_owned()))
                    .map_err(|e| UpstreamError::Discovery(e.to_string()))?
                    .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
                    .request_async(&http)
                    .await
                    .map_err(|e| UpstreamError::Refused(error_chain(&e)))?;
                let id_token = tokens
                    .id_token()
                    .ok_or_else(|| UpstreamError::Invalid("no ID token".into()))?;
                let verifier = client.id_token_verifier();
                let claims = match id_token.claims(&verifier, &Nonce::new(nonce.to_owned())) {
                    Ok(claims) => claims,
                    Err(e) => {
                        // The upstream may have rotated its keys: read them again next time.
                        self.forget(&provider.id);
                        return Err(UpstreamError::Invalid(error_chain(&e)));
                    }
                };
                let _ = tokens.access_token();
                Ok(UpstreamUser {
                    subject: claims.subject().to_string(),
                    email: claims.email().map(|e| e.to_string()),
                    email_verified: claims.email_verified().unwrap_or(false),
                    preferred_username: claims.preferred_username().map(|u| u.to_string()),
                    name: claims
                        .name()
                        .and_then(|n| n.get(None))
                        .map(|n| n.to_string()),
                })
            }
            Kind::Github => {
                let client = github_client(provider, secret, redirect)?;
                let tokens = client
                    .exchange_code(oauth2::AuthorizationCode::new(code.to_owned()))
                    .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier.to_owned()))
                    .request_async(&http)
                    .await
                    .map_err(|e| UpstreamError::Refused(error_chain(&e)))?;
                self.github_user(provider, tokens.access_token().secret())
                    .await
            }
        }
    }

    /// GitHub's `GET /user` and `GET /user/emails`: the numeric id, the login, and the primary
    /// verified address (no other address is taken).
    async fn github_user(
        &self,
        provider: &Provider,
        token: &str,
    ) -> Result<UpstreamUser, UpstreamError> {
        let api = provider.api_base();
        let get = |path: &str| {
            self.http
                .get(format!("{}{path}", api.trim_end_matches('/')))
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .send()
        };
        let user: serde_json::Value = read_json(get("/user").await).await?;
        let field = |name: &str| user.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let subject = match user.get("id") {
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(UpstreamError::Invalid("the user has no id".into())),
        };
        let emails: serde_json::Value = read_json(get("/user/emails").await).await?;
        let primary = emails
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e.get("primary").and_then(serde_json::Value::as_bool) == Some(true)
                    && e.get("verified").and_then(serde_json::Value::as_bool) == Some(true)
            })
            .and_then(|e| e.get("email").and_then(|v| v.as_str()).map(str::to_owned));
        Ok(UpstreamUser {
            subject,
            email_verified: primary.is_some(),
            email: primary,
            preferred_username: field("login"),
            name: field("name"),
        })
    }
}

async fn read_json(
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<serde_json::Value, UpstreamError> {
    let response = sent.map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
    if !response.status().is_success() {
        return Err(UpstreamError::Refused(format!(
            "the API answered {}",
            response.status().as_u16()
        )));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| UpstreamError::Unreachable(e.without_url().to_string()))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| UpstreamError::Invalid("the API's answer is not JSON".into()))
}

type GithubClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn github_client(
    provider: &Provider,
    secret: &str,
    redirect: RedirectUrl,
) -> Result<GithubClient, UpstreamError> {
    let base = provider.auth_base();
    let base = base.trim_end_matches('/');
    let auth = oauth2::AuthUrl::new(format!("{base}/login/oauth/authorize"))
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    let token = oauth2::TokenUrl::new(format!("{base}/login/oauth/access_token"))
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    let redirect = oauth2::RedirectUrl::new(redirect.to_string())
        .map_err(|e| UpstreamError::Invalid(e.to_string()))?;
    Ok(
        oauth2::basic::BasicClient::new(oauth2::ClientId::new(provider.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(secret.to_owned()))
            .set_auth_uri(auth)
            .set_token_uri(token)
            .set_redirect_uri(redirect),
    )
}

/// An error and its sources on one line (no secrets: these errors carry none).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(300).collect()
}
