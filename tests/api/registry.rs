//! The one registry of scopes (`oauth::scope::SCOPES`) is what the migrations seeded, what the
//! OpenAPI document offers, and what discovery advertises.

use std::collections::BTreeSet;

use portcullis::oauth::scope::{SCOPES, ScopeKind, all_scopes, permission_scopes};
use sea_orm::EntityTrait;

use super::helpers::*;

#[tokio::test]
async fn the_seeded_permissions_are_the_registrys_permission_scopes() {
    let app = spawn_app().await;
    let seeded: BTreeSet<String> = entities::permissions::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let registry: BTreeSet<String> = permission_scopes().iter().map(str::to_string).collect();
    assert_eq!(
        seeded, registry,
        "migrations seed exactly the registry's permissions"
    );
    let admin = app.state.roles.get("admin").await.unwrap();
    let admin: BTreeSet<String> = admin.permissions.into_iter().collect();
    assert_eq!(admin, registry, "the admin role grants every permission");
}

#[tokio::test]
async fn the_openapi_document_and_discovery_offer_the_registrys_scopes() {
    let doc: serde_json::Value = serde_json::from_str(&portcullis::http::openapi_json()).unwrap();
    let offered: BTreeSet<String> =
        doc["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["scopes"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
    let registry: BTreeSet<String> = SCOPES.iter().map(|d| d.name.to_string()).collect();
    assert_eq!(offered, registry);
    for def in SCOPES {
        assert_eq!(
            doc["components"]["securitySchemes"]["oauth2"]["flows"]["password"]["scopes"][def.name],
            def.description,
            "{}",
            def.name
        );
    }
    let app = spawn_app().await;
    let discovery: serde_json::Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let advertised: BTreeSet<String> = discovery["scopes_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        advertised,
        all_scopes().iter().map(str::to_string).collect()
    );
    assert!(SCOPES.iter().any(|d| d.kind == ScopeKind::Identity));
}
