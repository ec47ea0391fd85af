//! The committed OpenAPI document matches the code, and Swagger UI is served.

use reqwest::StatusCode;

use super::helpers::*;

#[test]
fn committed_openapi_document_is_current() {
    let generated = portcullis::http::openapi_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date; regenerate it with:\n    cargo run -- openapi > openapi/openapi.json"
    );
}

#[test]
fn document_declares_the_password_flow_and_every_endpoint() {
    let doc: serde_json::Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    let flow = &doc["components"]["securitySchemes"]["oauth2"]["flows"]["password"];
    assert_eq!(flow["tokenUrl"], "/oauth/token");
    assert!(flow["scopes"]["articles:read"].is_string());
    for (path, method) in [
        ("/oauth/token", "post"),
        ("/oauth/revoke", "post"),
        ("/oauth/introspect", "post"),
        ("/oauth/userinfo", "get"),
        ("/.well-known/openid-configuration", "get"),
        ("/.well-known/oauth-authorization-server", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // Reading one's profile needs `profile`, changing it `profile:write`.
    assert_eq!(
        doc["paths"]["/api/v1/users/me"]["get"]["security"][0]["oauth2"],
        serde_json::json!(["profile"])
    );
    assert_eq!(
        doc["paths"]["/api/v1/users/me"]["patch"]["security"][0]["oauth2"],
        serde_json::json!(["profile:write"])
    );
}

#[tokio::test]
async fn swagger_ui_and_spec_are_served() {
    let app = spawn_app().await;
    let docs = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    let spec = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(spec.status(), StatusCode::OK);
    let served: serde_json::Value = spec.json().await.unwrap();
    let generated: serde_json::Value =
        serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    assert_eq!(served, generated);
}
