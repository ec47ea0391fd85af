//! Swagger UI at `/docs`, set up for the authorization-code flow with PKCE: poem-openapi's
//! page (its built-in endpoint never calls `initOAuth`) with the seeded public client
//! `portcullis-spa` and PKCE configured, and the OAuth 2.0 redirect receiver at
//! `/docs/oauth-receiver.html` (`clients::SWAGGER_UI_REDIRECT_PATH`, registered for that
//! client), where the authorization response comes back to Swagger UI's window.

use bytes::Bytes;
use poem::endpoint::make_sync;
use poem::http::header;
use poem::{Endpoint, Response, Route};

use crate::clients::SEEDED_PUBLIC_CLIENT;

/// Swagger UI's OAuth 2.0 redirect receiver, copied from poem-openapi 5.1.16 (MIT OR
/// Apache-2.0), which does not export it; it is Swagger UI's `oauth2-redirect.html`
/// (Apache-2.0). The file names both origins.
const OAUTH_RECEIVER_HTML: &str = include_str!("swagger/oauth-receiver.html");

/// Where the page's own script calls Swagger UI; the instance it returns is kept for
/// `initOAuth`. Looked for from the end: the inlined bundle and the document come before it.
const BUNDLE_CALL: &str = "SwaggerUIBundle({";

/// Where the receiver's address is computed again before the call: the built-in page keeps
/// the fragment (Swagger UI's deep links, `#/Users/…`) in it, so the redirect URI would no
/// longer be the registered one.
const RECEIVER_URL: &str = "oauth2RedirectUrl = window.location.origin + \
     window.location.pathname.replace(/\\/*$/, \"/\") + \"oauth-receiver.html\";\n    \
     window.ui = ";

/// The Swagger UI page: `swagger_ui_html` (poem-openapi's `OpenApiService::swagger_ui_html`)
/// with the receiver's address made fragment-proof and `initOAuth` called with the seeded
/// public client and PKCE.
pub fn page(swagger_ui_html: &str) -> String {
    let client_id = serde_json::to_string(SEEDED_PUBLIC_CLIENT).unwrap_or_default();
    let init = format!(
        "<script>\n    window.ui.initOAuth({{\n        clientId: {client_id},\n        \
         usePkceWithAuthorizationCodeGrant: true,\n    }});\n</script>\n"
    );
    let mut html = swagger_ui_html.to_owned();
    if let Some(at) = html.rfind(BUNDLE_CALL) {
        html.insert_str(at, RECEIVER_URL);
    }
    match html.rfind("</body>") {
        Some(at) => html.insert_str(at, &init),
        None => html.push_str(&init),
    }
    html
}

/// The endpoint to nest at `/docs`: the page at `/docs` and `/docs/`, the receiver at
/// `/docs/oauth-receiver.html`.
pub fn endpoint(swagger_ui_html: &str) -> impl Endpoint + 'static {
    let page = Bytes::from(page(swagger_ui_html));
    Route::new()
        .at(
            "/",
            make_sync(move |_| {
                Response::builder()
                    .content_type("text/html; charset=utf-8")
                    .body(page.clone())
            }),
        )
        .at(
            "/oauth-receiver.html",
            make_sync(|_| {
                // The authorization code arrives in the query: kept from caches and referrers.
                Response::builder()
                    .content_type("text/html; charset=utf-8")
                    .header(header::CACHE_CONTROL, "no-store")
                    .header(header::REFERRER_POLICY, "no-referrer")
                    .body(OAUTH_RECEIVER_HTML)
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> String {
        crate::http::api_service().swagger_ui_html()
    }

    #[test]
    fn the_page_keeps_swagger_ui_and_configures_pkce_for_the_seeded_client() {
        let html = page(&built_in());
        let call = html.rfind(BUNDLE_CALL).unwrap();
        let receiver = html
            .rfind("oauth2RedirectUrl = window.location.origin")
            .unwrap();
        let init = html.rfind("window.ui.initOAuth({").unwrap();
        let body_end = html.rfind("</body>").unwrap();
        assert!(receiver < call && call < init && init < body_end);
        assert!(html[call - "window.ui = ".len()..].starts_with("window.ui = SwaggerUIBundle({"));
        assert!(html[init..].contains("clientId: \"portcullis-spa\""));
        assert!(html[init..].contains("usePkceWithAuthorizationCodeGrant: true"));
        assert_eq!(
            html.matches("initOAuth({").count(),
            1 + built_in().matches("initOAuth({").count()
        );
    }

    #[test]
    fn the_receiver_is_swagger_uis() {
        assert!(OAUTH_RECEIVER_HTML.starts_with("<!doctype html>"));
        assert!(OAUTH_RECEIVER_HTML.contains("window.opener.swaggerUIRedirectOauth2"));
    }
}
