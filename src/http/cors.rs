//! Cross-origin resource sharing (the Fetch standard's CORS protocol) for single-page apps
//! served from their own origin: they call the token, revocation, introspection and userinfo
//! endpoints and the JSON API with `Authorization: Bearer`, never with cookies, so no
//! `Access-Control-Allow-Credentials` is ever sent. The public metadata (discovery, JWKS) is
//! readable from any origin (`*`); the rest only from an origin of a registered redirect or
//! post-logout URI ([`ClientService::web_origins`]). A request from another origin proceeds
//! as usual without CORS headers, so the browser withholds the answer; its preflight is
//! refused with 403. The hosted pages, the authorization and logout endpoints, the docs and
//! the metrics get no CORS headers at all. Preflights are answered here, before the body
//! checks, the router (and its 405) and the rate limits of the operations.

use poem::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::clients::ClientService;

/// Methods a cross-origin caller may use (`Access-Control-Allow-Methods`).
pub const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";

/// Request headers a cross-origin caller may send beyond the CORS-safelisted ones, lowercase.
pub const ALLOW_HEADERS: [&str; 2] = ["authorization", "content-type"];

/// Response headers a cross-origin caller may read beyond the CORS-safelisted ones: the bearer
/// challenge, the rate-limit answer and the request id.
pub const EXPOSE_HEADERS: &str = "WWW-Authenticate, Retry-After, RateLimit-Limit, \
     RateLimit-Remaining, RateLimit-Reset, X-Request-Id";

/// How long a browser may cache a preflight answer (`Access-Control-Max-Age`), in seconds.
pub const MAX_AGE_SECS: u32 = 600;

/// The public metadata, readable from any origin.
const PUBLIC_PATHS: [&str; 3] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
    "/.well-known/jwks.json",
];

/// The endpoints a registered web origin may call.
const CLIENT_PATHS: [&str; 4] = [
    "/oauth/token",
    "/oauth/revoke",
    "/oauth/introspect",
    "/oauth/userinfo",
];

/// Which origins a path is shared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Public,
    /// The web origins of the registered clients.
    Registered,
}

/// How `path` is shared across origins; `None`: not at all.
pub fn sharing(path: &str) -> Option<Sharing> {
    if PUBLIC_PATHS.contains(&path) {
        Some(Sharing::Public)
    } else if CLIENT_PATHS.contains(&path) || path.starts_with("/api/v1/") {
        Some(Sharing::Registered)
    } else {
        None
    }
}

/// The CORS middleware (see the module documentation), around everything but the
/// transport-security header.
pub async fn around<E: Endpoint>(
    next: E,
    req: Request,
    clients: ClientService,
) -> poem::Result<Response> {
    let Some(sharing) = sharing(req.uri().path()) else {
        return next.call(req).await.map(IntoResponse::into_response);
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let preflight = req.method() == Method::OPTIONS
        && origin.is_some()
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = match (&origin, sharing) {
        // Also without `Origin`: a cached copy then serves browsers too.
        (_, Sharing::Public) => Some(HeaderValue::from_static("*")),
        (None, Sharing::Registered) => None,
        (Some(origin), Sharing::Registered) => match clients.web_origins().await {
            Ok(origins) if origins.contains(origin) => HeaderValue::from_str(origin).ok(),
            Ok(_) => None,
            Err(e) => {
                // Refusing is safe: the browser withholds the answer, nothing else changes.
                tracing::warn!(error = %e, "the registered web origins could not be read");
                None
            }
        },
    };
    if preflight {
        return Ok(preflight_answer(req.headers(), allowed, sharing));
    }
    let mut resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => err.into_response(),
    };
    let headers = resp.headers_mut();
    if sharing == Sharing::Registered {
        // The answer depends on `Origin` whether or not it is shared.
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(allowed) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    Ok(resp)
}

/// 204 with what a caller from the allowed origin may do; 403 without CORS headers for any
/// other origin.
fn preflight_answer(
    request: &HeaderMap,
    allowed: Option<HeaderValue>,
    sharing: Sharing,
) -> Response {
    let mut resp = Response::builder().finish();
    let headers = resp.headers_mut();
    if sharing == Sharing::Registered {
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    let Some(allowed) = allowed else {
        resp.set_status(StatusCode::FORBIDDEN);
        return resp;
    };
    resp.set_status(StatusCode::NO_CONTENT);
    let headers = resp.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    let allow_headers = allow_headers(request);
    if !allow_headers.is_empty()
        && let Ok(value) = HeaderValue::from_str(&allow_headers)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(MAX_AGE_SECS),
    );
    resp
}

/// The allowed headers among those the preflight asks for (`Access-Control-Request-Headers`),
/// or all of them when it asks for none (empty when it asks only for others).
fn allow_headers(request: &HeaderMap) -> String {
    let requested: Vec<String> = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    if requested.is_empty() {
        return ALLOW_HEADERS.join(", ");
    }
    ALLOW_HEADERS
        .iter()
        .filter(|allowed| requested.iter().any(|r| r == *allowed))
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_metadata_the_client_endpoints_and_the_api_are_shared() {
        assert_eq!(
            sharing("/.well-known/openid-configuration"),
            Some(Sharing::Public)
        );
        assert_eq!(sharing("/.well-known/jwks.json"), Some(Sharing::Public));
        assert_eq!(sharing("/oauth/token"), Some(Sharing::Registered));
        assert_eq!(sharing("/oauth/userinfo"), Some(Sharing::Registered));
        assert_eq!(sharing("/api/v1/users/me"), Some(Sharing::Registered));
        for path in [
            "/oauth/authorize",
            "/oauth/end_session",
            "/ui/login",
            "/ui/consent",
            "/docs",
            "/docs/oauth-receiver.html",
            "/metrics",
            "/openapi.json",
            "/healthz",
            "/api/v1",
            "/oauth/token/",
        ] {
            assert_eq!(sharing(path), None, "{path}");
        }
    }

    #[test]
    fn a_preflight_is_told_only_the_allowed_headers_it_asks_for() {
        let mut request = HeaderMap::new();
        assert_eq!(allow_headers(&request), "authorization, content-type");
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("Authorization, x-custom"),
        );
        assert_eq!(allow_headers(&request), "authorization");
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type,authorization"),
        );
        assert_eq!(allow_headers(&request), "authorization, content-type");
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-custom"),
        );
        assert_eq!(allow_headers(&request), "");
    }
}
