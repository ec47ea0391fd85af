//! Forged and misused access tokens are refused everywhere a token is accepted: bearer
//! endpoints answer 401 `invalid_token`, introspection answers `{"active": false}`.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::keys::{SigningKey, sign_with};
use portcullis::oauth::tokens::AccessClaims;
use reqwest::StatusCode;

use super::helpers::*;

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn foreign_key(kid: &str) -> SigningKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
    SigningKey {
        kid: kid.into(),
        pair: RsaKeyPair::from_pkcs8(der.as_ref()).unwrap(),
    }
}

/// Asserts that `token` is refused by userinfo, /users/me and introspection.
async fn assert_refused(app: &TestApp, rs: &Confidential, token: &str, what: &str) {
    for path in ["/oauth/userinfo", "/api/v1/users/me"] {
        let answer = app.get_bearer(path, token).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what} at {path}: {}",
            answer.body
        );
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{what}: {challenge}"
        );
    }
    let introspected = app.introspect(rs, token).await;
    assert_eq!(
        introspected.body,
        serde_json::json!({"active": false}),
        "{what}"
    );
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let good = app
        .sign_in("alice", "openid profile")
        .await
        .str("access_token");
    // Sanity: the genuine token is accepted, so the refusals below are meaningful.
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &good).await.status,
        StatusCode::OK
    );
    assert_eq!(app.introspect(&rs, &good).await.body["active"], true);

    let header = jwt_part(&good, 0);
    let claims: AccessClaims = serde_json::from_value(jwt_part(&good, 1)).unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();
    let real = app.state.keys.ring().clone();

    // 1. Signed by a key the server never published (unknown kid).
    let unknown_kid = sign_with(&foreign_key("not-a-published-kid"), "at+jwt", &claims).unwrap();
    assert_refused(&app, &rs, &unknown_kid, "unknown kid").await;

    // 2. Signed by a foreign key claiming a published kid.
    let stolen_kid = sign_with(&foreign_key(&kid), "at+jwt", &claims).unwrap();
    assert_refused(&app, &rs, &stolen_kid, "foreign key, published kid").await;

    // 3. alg: none.
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        b64(&serde_json::to_value(&claims).unwrap())
    );
    assert_refused(&app, &rs, &none, "alg none").await;

    // 4. HS256 with the public key (the published JWKS) as the HMAC secret.
    let jwks = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = Some(kid.clone());
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&jwks),
    )
    .unwrap();
    assert_refused(&app, &rs, &hs256, "HS256 with the public key").await;

    // 5. Wrong issuer and wrong audience, correctly signed.
    let wrong_iss = real
        .sign(
            "at+jwt",
            &AccessClaims {
                iss: "https://evil.example".into(),
                ..claims.clone()
            },
        )
        .unwrap();
    assert_refused(&app, &rs, &wrong_iss, "wrong issuer").await;
    let wrong_aud = real
        .sign(
            "at+jwt",
            &AccessClaims {
                aud: "another-api".into(),
                ..claims.clone()
            },
        )
        .unwrap();
    assert_refused(&app, &rs, &wrong_aud, "wrong audience").await;

    // 6. Not an access token: typ JWT (e.g. an ID token).
    let wrong_typ = real.sign("JWT", &claims).unwrap();
    assert_refused(&app, &rs, &wrong_typ, "typ JWT").await;

    // 7. Tampered payload with the original signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut widened = claims.clone();
    widened.scope = "openid profile users:admin".into();
    parts[1] = b64(&serde_json::to_value(&widened).unwrap());
    assert_refused(&app, &rs, &parts.join("."), "tampered payload").await;

    // 8. Not yet valid.
    let future = real
        .sign(
            "at+jwt",
            &AccessClaims {
                nbf: claims.nbf + 3600,
                ..claims.clone()
            },
        )
        .unwrap();
    assert_refused(&app, &rs, &future, "nbf in the future").await;

    // 9. Garbage.
    for junk in ["", "x", "a.b.c", "Bearer", &"A".repeat(10_000)] {
        let answer = app.get_bearer("/oauth/userinfo", junk).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{junk:.20}");
    }
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let app = spawn_app_with(short_tokens).await;
    let rs = app.resource_server().await;
    let t = app.sign_in("bob", "openid").await.str("access_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &t).await.status,
        StatusCode::OK
    );
    app.clock
        .advance(60 + portcullis::oauth::tokens::LEEWAY + 1);
    assert_refused(&app, &rs, &t, "expired").await;
}

#[tokio::test]
async fn missing_bearer_gets_a_challenge() {
    let app = spawn_app().await;
    let resp = app
        .http
        .get(app.url("/api/v1/users/me"))
        .send()
        .await
        .unwrap();
    let answer = Answer::from(resp).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.header("www-authenticate").as_deref(),
        Some(r#"Bearer realm="portcullis""#)
    );
    assert_eq!(answer.body["code"], "invalid_token");
}

#[tokio::test]
async fn userinfo_needs_openid_and_a_user() {
    let app = spawn_app().await;
    let t = app
        .sign_in("carol", "articles:read")
        .await
        .str("access_token");
    let answer = app.get_bearer("/oauth/userinfo", &t).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer
            .header("www-authenticate")
            .unwrap()
            .contains("insufficient_scope")
    );

    let svc = app.resource_server().await;
    let cc = app
        .post_form_basic(
            "/oauth/token",
            &svc,
            &[("grant_type", "client_credentials")],
        )
        .await
        .str("access_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &cc).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &cc).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn userinfo_claims_follow_scopes() {
    let app = spawn_app().await;
    let t = app.sign_in("dave", "openid").await.str("access_token");
    let minimal = app.get_bearer("/oauth/userinfo", &t).await.body;
    assert!(minimal["sub"].is_string());
    assert!(minimal.get("email").is_none() && minimal.get("preferred_username").is_none());
    let t = app
        .password_grant("dave", "openid profile email")
        .await
        .str("access_token");
    let full = app.get_bearer("/oauth/userinfo", &t).await.body;
    assert_eq!(full["preferred_username"], "dave");
    assert_eq!(full["email"], "dave@example.com");
}
