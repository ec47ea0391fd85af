//! Swagger UI's Authorize button: the authorization-code flow with PKCE for the seeded public
//! client, its redirect receiver, and the flow in the OpenAPI document.

use portcullis::clients::SWAGGER_UI_REDIRECT_PATH;
use reqwest::StatusCode;

use super::helpers::*;

#[tokio::test]
async fn docs_configure_pkce_for_the_seeded_client_with_or_without_the_slash() {
    let app = spawn_app().await;
    for path in ["/docs", "/docs/"] {
        let docs = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(docs.status(), StatusCode::OK, "{path}");
        assert!(
            docs.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
        let html = docs.text().await.unwrap();
        assert!(html.contains("SwaggerUIBundle({"), "{path}");
        assert!(html.contains(".initOAuth({"), "{path}");
        assert!(
            html.contains("usePkceWithAuthorizationCodeGrant: true"),
            "{path}"
        );
        assert!(html.contains("clientId: \"portcullis-spa\""), "{path}");
    }
}

#[tokio::test]
async fn the_oauth_receiver_is_served_where_the_seeded_client_expects_it() {
    let app = spawn_app().await;
    let spa = app.state.clients.get(SPA).await.unwrap().unwrap();
    let receiver = app.url(SWAGGER_UI_REDIRECT_PATH);
    assert!(spa.has_redirect_uri(&receiver), "{:?}", spa.redirect_uris);
    assert!(spa.first_party);

    let answer = app
        .http
        .get(format!("{receiver}?code=abc&state=xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let headers = answer.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let html = answer.text().await.unwrap();
    assert!(html.contains("swaggerUIRedirectOauth2"));
}

#[tokio::test]
async fn the_document_offers_the_authorization_code_flow_beside_the_password_flow() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let flows = &doc["components"]["securitySchemes"]["oauth2"]["flows"];
    let code = &flows["authorizationCode"];
    assert_eq!(code["authorizationUrl"], "/oauth/authorize");
    assert_eq!(code["tokenUrl"], "/oauth/token");
    assert!(code["scopes"]["openid"].is_string());
    assert!(code["scopes"]["articles:read"].is_string());
    assert_eq!(flows["password"]["tokenUrl"], "/oauth/token");
}
