//! The hosted HTML pages of browser sign-in (sign-in, consent, sign-out, errors): their
//! rendering (`pages`, from the askama templates under `templates/`), their words (`texts`),
//! the protective headers every page is sent with ([`html`]) and the one stylesheet
//! ([`stylesheet`], served at [`STYLESHEET_PATH`]). The pages carry no script and no inline
//! style, so the Content-Security-Policy allows nothing but the stylesheet and images from
//! Portcullis itself.

pub mod pages;
pub mod texts;

use poem::http::{StatusCode, header};
use poem::{Response, handler};

/// Where [`stylesheet`] is mounted; the page layout links to it.
pub const STYLESHEET_PATH: &str = "/ui/static/portcullis.css";

/// The Content-Security-Policy of every page. No `form-action`: a form post answered by a
/// redirect to a client's redirect URI on another origin would be blocked by it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("static/portcullis.css");

/// A page response: `body` as `text/html` with the protective headers (Content-Security-
/// Policy, no framing, no referrer, no sniffing, no caching: pages carry CSRF tokens and
/// account names).
pub fn html(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache")
        .body(body)
}

/// The stylesheet of every page (mounted at [`STYLESHEET_PATH`]); cacheable for an hour.
#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=3600")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(STYLESHEET)
}

#[cfg(test)]
mod tests {
    use poem::{Endpoint, Request};

    use super::*;

    fn header(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    #[test]
    fn html_sets_every_protective_header() {
        let resp = html(StatusCode::BAD_REQUEST, "<p>x</p>".to_owned());
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            header(&resp, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            header(&resp, header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
             frame-ancestors 'none'"
        );
        assert!(!header(&resp, header::CONTENT_SECURITY_POLICY).contains("form-action"));
        assert_eq!(header(&resp, header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(&resp, header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&resp, header::CACHE_CONTROL), "no-store");
        assert_eq!(header(&resp, header::PRAGMA), "no-cache");
    }

    #[tokio::test]
    async fn the_stylesheet_is_served_as_cacheable_css() {
        let resp = stylesheet
            .call(Request::builder().uri_str(STYLESHEET_PATH).finish())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        assert_eq!(header(&resp, header::CACHE_CONTROL), "public, max-age=3600");
        assert_eq!(header(&resp, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let body = resp.into_body().into_string().await.unwrap();
        assert!(body.contains(":focus-visible"));
    }
}
