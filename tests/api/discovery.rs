//! Discovery metadata, the JWKS (public keys only, ETag / 304, caching), and signing keys at
//! rest.

use reqwest::StatusCode;

use super::helpers::*;

#[tokio::test]
async fn metadata_advertises_what_works() {
    let app = spawn_app().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let answer = Answer::from(app.http.get(app.url(path)).send().await.unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK);
        let m = &answer.body;
        assert_eq!(m["issuer"], app.base);
        assert_eq!(m["token_endpoint"], app.url("/oauth/token"));
        assert_eq!(m["jwks_uri"], app.url("/.well-known/jwks.json"));
        assert_eq!(m["revocation_endpoint"], app.url("/oauth/revoke"));
        assert_eq!(m["introspection_endpoint"], app.url("/oauth/introspect"));
        assert_eq!(m["userinfo_endpoint"], app.url("/oauth/userinfo"));
        assert_eq!(
            m["grant_types_supported"],
            serde_json::json!([
                "authorization_code",
                "password",
                "refresh_token",
                "client_credentials",
                "urn:portcullis:params:oauth:grant-type:mfa-otp"
            ])
        );
        // The code flow, advertised exactly as it works.
        assert_eq!(m["authorization_endpoint"], app.url("/oauth/authorize"));
        assert_eq!(m["end_session_endpoint"], app.url("/oauth/end_session"));
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(m["response_modes_supported"], serde_json::json!(["query"]));
        assert_eq!(
            m["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            m["prompt_values_supported"],
            serde_json::json!(["none", "login", "consent"])
        );
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(
            m["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
        // Every advertised endpoint exists.
        // The authorization endpoint without parameters answers a page about the bad request;
        // the end-session endpoint without parameters, the sign-out confirmation page.
        for (key, expected) in [
            ("authorization_endpoint", StatusCode::BAD_REQUEST),
            ("end_session_endpoint", StatusCode::OK),
        ] {
            let url = m[key].as_str().unwrap();
            let status = app.http.get(url).send().await.unwrap().status();
            assert_eq!(status, expected, "{key}");
        }
        for key in [
            "token_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            let url = m[key].as_str().unwrap();
            let status = app.http.post(url).send().await.unwrap().status();
            assert_ne!(status, StatusCode::NOT_FOUND, "{key}");
        }
    }
}

#[tokio::test]
async fn jwks_is_public_only_cacheable_and_conditional() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );
    assert_eq!(resp.headers()["cache-control"], "public, max-age=300");
    let jwks: serde_json::Value = resp.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "current and next are published");
    for key in keys {
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "RS256");
        assert!(key["kid"].is_string() && key["n"].is_string() && key["e"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} published"
            );
        }
    }
    let not_modified = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(not_modified.headers()["etag"].to_str().unwrap(), etag);
    let other = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_changes_the_etag() {
    let app = spawn_app().await;
    let before = app.sign_in("alice", "openid").await.str("access_token");
    let etag = |app: &TestApp| {
        let (http, url) = (app.http.clone(), app.url("/.well-known/jwks.json"));
        async move {
            http.get(url).send().await.unwrap().headers()["etag"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    let etag_before = etag(&app).await;
    let next_kid = app
        .state
        .keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.state == "next")
        .unwrap()
        .kid;
    let promoted = app.state.keys.rotate().await.unwrap();
    assert_eq!(
        promoted, next_kid,
        "rotation promotes the already-published next key"
    );
    assert_ne!(etag(&app).await, etag_before);
    let after = app
        .password_grant("alice", "openid")
        .await
        .str("access_token");
    assert_eq!(jwt_part(&after, 0)["kid"], next_kid.as_str());
    // Tokens signed by the now-retired key still verify.
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &before).await.status,
        StatusCode::OK
    );
    let states: Vec<String> = app
        .state
        .keys
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.state)
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "current").count(), 1);
    assert_eq!(states.iter().filter(|s| *s == "next").count(), 1);
}

#[tokio::test]
async fn private_keys_are_encrypted_at_rest() {
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let rows = entities::signing_keys::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let sealed = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            &row.private_key_enc,
        )
        .unwrap();
        // A PKCS#8 DER key starts with a SEQUENCE (0x30 0x82); the sealed form starts with
        // a random nonce and must not parse as a key.
        assert!(aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&sealed).is_err());
        assert!(aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&sealed[12..]).is_err());
        // A different master key cannot open it.
        let other = portcullis::crypto::MasterKey::from_bytes(&[9u8; 32]).unwrap();
        assert!(other.open(&row.kid, &row.private_key_enc).is_err());
    }
}
