//! Cross-cutting HTTP behaviour: a request id and tracing span per request (every log line
//! of the request carries the id), its count and latency in the metrics (by route template,
//! see [`super::routes::Routes::label`]), the body-size
//! limit, the JSON type check of request bodies and the `Allow` header of a 405 (both from
//! the documented operations, see [`super::routes`]), error rendering (so no framework error
//! ever reaches a client as plain text or a 500), `no-store` on OAuth responses, protective
//! response headers, and `Strict-Transport-Security` over HTTPS.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use poem::http::{HeaderValue, StatusCode, header};
use poem::middleware::SetHeader;
use poem::{Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use super::api::oauth_error::{ErrorCode, OAuthErrorBody};
use super::problem::{Problem, bearer_challenge};
use super::routes::Routes;

/// Largest request body accepted (bigger ones get 413).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The id of the current request, also returned as `x-request-id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Request ids: a random per-app prefix and a counter. Unique across instances and restarts
/// without a system call per request (ids need not be unpredictable).
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        Self {
            prefix: crate::crypto::random_bytes::<8>().map_or(0, u64::from_ne_bytes),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}-{n:x}", self.prefix)
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn around<E: Endpoint>(
    next: E,
    mut req: Request,
    ids: Arc<RequestIds>,
    routes: Arc<Routes>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let request_id = ids.next();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let oauth = path.starts_with("/oauth/");
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %path,
    );
    async move {
        // A refused body gets the same headers as every other answer (request id, no-store).
        let checked = match limit_body(req, oauth).await {
            Ok(req) => check_json_types(req, &routes, &path).await,
            Err(refused) => Err(refused),
        };
        let mut resp = match checked {
            Err(refused) => refused,
            Ok(req) => match next.call(req).await {
                Ok(resp) => resp.into_response(),
                Err(err) => {
                    let mut resp = render_error(err, oauth);
                    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
                        && let Some(allow) = routes.allow(&path)
                        && let Ok(value) = HeaderValue::from_str(allow)
                    {
                        resp.headers_mut().insert(header::ALLOW, value);
                    }
                    resp
                }
            },
        };
        let status = resp.status();
        crate::metrics::http_request(
            method.as_str(),
            routes.label(&path),
            status.as_u16(),
            started.elapsed(),
        );
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), "request failed");
        }
        tracing::debug!(
            status = status.as_u16(),
            micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request done"
        );
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            headers.insert("x-request-id", v);
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if oauth || path.starts_with("/api/") {
            // RFC 6749 §5.1: token responses must not be cached; the same holds for
            // introspection, userinfo and personal API data.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
        Ok(resp)
    }
    .instrument(span)
    .await
}

/// `Strict-Transport-Security: max-age=N` (RFC 6797) on every response, error answers
/// included, when `max_age` is given (see settings `server.hsts_max_age`: the server terminates TLS
/// or the issuer is `https://`); nothing otherwise. No `includeSubDomains`: the policy of
/// other hosts of the domain is not ours to set.
pub fn strict_transport_security(max_age: Option<Duration>) -> SetHeader {
    match max_age {
        Some(max_age) => SetHeader::new().overriding(
            header::STRICT_TRANSPORT_SECURITY,
            format!("max-age={}", max_age.as_secs()),
        ),
        None => SetHeader::new(),
    }
}

/// Buffers the body up to [`MAX_BODY_BYTES`]; bigger bodies are refused with 413
/// before any handler reads them. A declared `Content-Length` over the limit is refused
/// without reading; otherwise the body is read as it streams in and refused as soon as it
/// passes the limit, the rest left unread. The headers alone do not tell whether there is a
/// body: over HTTP/2 (h2c or h2 through TLS ALPN) a body may come with neither
/// `Content-Length` nor `Transfer-Encoding`, so every body is read this way, whatever the
/// protocol and route (an absent HTTP/1.1 body reads as empty at once). Refusals are in the
/// RFC 6749 shape on the OAuth endpoints.
async fn limit_body(mut req: Request, oauth: bool) -> Result<Request, Response> {
    use tokio::io::AsyncReadExt as _;
    let limit = MAX_BODY_BYTES;
    let refuse = |status: StatusCode, code: &str, message: String| {
        if oauth {
            let body = OAuthErrorBody {
                error: ErrorCode::InvalidRequest,
                error_description: message,
                mfa_token: None,
            };
            return json(status, &body);
        }
        json(status, &Problem::new(code, message))
    };
    let too_large = || {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // HTTP/1.x frames the body by those headers alone: neither means no body (RFC 9112 §6.3),
    // so there is nothing to read. HTTP/2 streams carry bodies without them.
    let http1 = req.version() < poem::http::Version::HTTP_2;
    if declared == Some(0)
        || (http1 && declared.is_none() && !req.headers().contains_key(header::TRANSFER_ENCODING))
    {
        return Ok(req);
    }
    let mut buf = Vec::new();
    let mut reader = req.take_body().into_async_read().take(limit as u64 + 1);
    if reader.read_to_end(&mut buf).await.is_err() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            "the request body could not be read".into(),
        ));
    }
    if buf.len() > limit {
        return Err(too_large());
    }
    req.set_body(buf);
    Ok(req)
}

/// Refuses a JSON body whose values do not have the documented types (see [`Routes`]) with
/// 400 `malformed_request` naming the field, before the operation parses it (as the
/// operation's parser does for the types it refuses itself, e.g. an array for a string).
async fn check_json_types(
    mut req: Request,
    routes: &Routes,
    path: &str,
) -> Result<Request, Response> {
    let json_body = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(super::routes::is_json);
    if !json_body || !routes.takes_json(req.method(), path) {
        return Ok(req);
    }
    let Ok(body) = req.take_body().into_bytes().await else {
        return Err(json(
            StatusCode::BAD_REQUEST,
            &Problem::new("malformed_request", "the request body could not be read"),
        ));
    };
    let checked = routes.check_json_body(req.method(), path, &body);
    req.set_body(body);
    match checked {
        Ok(()) => Ok(req),
        Err(wrong) => {
            let (message, field) = if wrong.field.is_empty() {
                (format!("the request body {}", wrong.reason), None)
            } else {
                (wrong.reason, Some(wrong.field))
            };
            Err(json(
                StatusCode::BAD_REQUEST,
                &Problem {
                    code: "malformed_request".into(),
                    message,
                    field,
                },
            ))
        }
    }
}

/// Turns any error that escaped a handler into a proper answer: RFC 6749 shape on `/oauth/`,
/// the problem shape elsewhere. Responses built by our own handlers pass through unchanged.
fn render_error(err: poem::Error, oauth: bool) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let is_auth = err.is::<poem_openapi::error::AuthorizationError>();
    let message = err.to_string();
    if status.is_server_error() {
        tracing::error!(error = %message, "unhandled error");
    }
    if is_auth {
        let body = Problem::new("invalid_token", "a bearer access token is required");
        return json(StatusCode::UNAUTHORIZED, &body)
            .with_header(header::WWW_AUTHENTICATE, bearer_challenge(None))
            .into_response();
    }
    let (status, code, description) = match status {
        StatusCode::NOT_FOUND => (status, "not_found", "no such resource".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            status,
            "method_not_allowed",
            "this method is not allowed here".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            status,
            "payload_too_large",
            "the request body is too large".to_string(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            status,
            "unsupported_media_type",
            format!("unsupported content type: {message}"),
        ),
        s if s.is_server_error() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server cannot complete this request right now; retry later".to_string(),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("the request could not be parsed: {message}"),
        ),
    };
    if oauth && status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
        let code = if status == StatusCode::SERVICE_UNAVAILABLE {
            ErrorCode::TemporarilyUnavailable
        } else {
            ErrorCode::InvalidRequest
        };
        let status = if status == StatusCode::SERVICE_UNAVAILABLE {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        return json(
            status,
            &OAuthErrorBody {
                error: code,
                error_description: description,
                mfa_token: None,
            },
        );
    }
    json(status, &Problem::new(code, description))
}

fn json<T: poem_openapi::types::ToJSON>(status: StatusCode, body: &T) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body.to_json_string())
}
