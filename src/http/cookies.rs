//! Cookies and CSRF tokens of the browser pages (see `http::browser`): the browser cookie
//! (random; what CSRF tokens are bound to) and the session cookie (names a browser session;
//! the database keeps only its digest). Both `HttpOnly`, `SameSite=Lax`, `Path=/`; with an
//! `https` issuer they are `Secure` and `__Host-` prefixed (browsers refuse that prefix without
//! `Secure`, so a plain-http development issuer gets unprefixed names). A CSRF token is
//! HMAC-SHA256 of the browser cookie under a key derived from the master key, so every
//! instance checks every other's tokens, in constant time.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::http::{HeaderValue, header};
use poem::{Request, Response};

use crate::ops::BrowserSignIn;

/// What the browser pages need, built once at start.
#[derive(Clone)]
pub struct BrowserFront {
    pub browser: BrowserSignIn,
    /// Sign-in through upstream providers (the sign-in page's buttons, the callback).
    pub upstream: crate::ops::UpstreamSignIn,
    pub csrf_key: Arc<ring::hmac::Key>,
    /// Whether the issuer is `https` (cookies `Secure` and `__Host-` prefixed).
    pub secure: bool,
    /// The issuer's origin (`scheme://host[:port]`), which form posts must come from.
    pub issuer_origin: String,
}

impl BrowserFront {
    pub fn new(
        browser: BrowserSignIn,
        upstream: crate::ops::UpstreamSignIn,
        csrf_key: Arc<ring::hmac::Key>,
        issuer: &str,
    ) -> Self {
        let (secure, issuer_origin) = issuer_parts(issuer);
        Self {
            browser,
            upstream,
            csrf_key,
            secure,
            issuer_origin,
        }
    }

    pub fn cookie_name(&self, base: &str) -> String {
        cookie_name(self.secure, base)
    }

    pub fn set_cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> String {
        set_cookie(self.secure, name, value, max_age)
    }

    pub fn csrf_token(&self, browser_id: &str) -> String {
        let tag = ring::hmac::sign(&self.csrf_key, format!("csrf:{browser_id}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    pub fn csrf_valid(&self, browser_id: Option<&str>, token: Option<&str>) -> bool {
        let (Some(id), Some(token)) = (browser_id, token) else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        ring::hmac::verify(&self.csrf_key, format!("csrf:{id}").as_bytes(), &tag).is_ok()
    }
}

/// Whether the issuer is `https` (cookies `Secure` and `__Host-` prefixed), and its origin.
fn issuer_parts(issuer: &str) -> (bool, String) {
    let url = url::Url::parse(issuer).ok();
    (
        url.as_ref().is_some_and(|u| u.scheme() == "https"),
        url.map(|u| u.origin().ascii_serialization())
            .unwrap_or_default(),
    )
}

fn cookie_name(secure: bool, base: &str) -> String {
    if secure {
        format!("__Host-portcullis-{base}")
    } else {
        format!("portcullis-{base}")
    }
}

fn set_cookie(secure: bool, name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax",
        cookie_name(secure, name)
    );
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The browser cookie of the request, or a new one to set.
pub fn browser_id(front: &BrowserFront, req: &Request) -> (String, Option<String>) {
    if let Some(id) = cookie(req, &front.cookie_name("browser")) {
        return (id.to_string(), None);
    }
    let id = crate::crypto::random_token().unwrap_or_default();
    let set = front.set_cookie("browser", &id, None);
    (id, Some(set))
}

/// A page with a form: `render` gets the CSRF token of the request's browser (whose cookie is
/// set with the page when the browser had none).
pub fn form_page(
    front: &BrowserFront,
    req: &Request,
    status: poem::http::StatusCode,
    render: impl FnOnce(&str) -> String,
) -> Response {
    let (id, set) = browser_id(front, req);
    let body = render(&front.csrf_token(&id));
    with_cookies(
        super::ui::html(status, body),
        &set.into_iter().collect::<Vec<_>>(),
    )
}

/// `resp` with `Set-Cookie` headers added.
pub fn with_cookies(mut resp: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_issuer_gets_secure_host_prefixed_cookies() {
        let (secure, origin) = issuer_parts("https://auth.example.com/");
        assert!(secure);
        assert_eq!(origin, "https://auth.example.com");
        let c = set_cookie(secure, "session", "v", Some(60));
        assert!(c.starts_with("__Host-portcullis-session=v; Path=/;"), "{c}");
        for part in ["HttpOnly", "SameSite=Lax", "Max-Age=60", "Secure"] {
            assert!(c.contains(part), "{part} in {c}");
        }
        assert!(
            !c.contains("Domain="),
            "__Host- cookies carry no Domain: {c}"
        );
    }

    #[test]
    fn a_plain_http_issuer_gets_unprefixed_cookies_without_secure() {
        let (secure, origin) = issuer_parts("http://127.0.0.1:8080");
        assert!(!secure);
        assert_eq!(origin, "http://127.0.0.1:8080");
        let c = set_cookie(secure, "browser", "v", None);
        assert_eq!(c, "portcullis-browser=v; Path=/; HttpOnly; SameSite=Lax");
    }
}
