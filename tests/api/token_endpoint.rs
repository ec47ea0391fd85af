//! The token endpoint: each grant, client authentication methods, scope narrowing, and every
//! RFC 6749 §5.2 error case (table-driven).

use base64::Engine as _;
use portcullis::clients::GrantType;
use reqwest::StatusCode;

use super::helpers::*;

#[tokio::test]
async fn password_grant_issues_rfc9068_access_token_refresh_and_id_token() {
    let app = spawn_app().await;
    let t = app.sign_in("alice", "openid profile articles:read").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(t.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(t.header("pragma").as_deref(), Some("no-cache"));
    assert_eq!(t.str("token_type"), "Bearer");
    assert_eq!(t.body["expires_in"], 900);
    assert_eq!(t.str("scope"), "articles:read openid profile");
    assert!(t.str("refresh_token").len() >= 43, "256-bit refresh token");

    let at = t.str("access_token");
    let header = jwt_part(&at, 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().unwrap().to_string();
    let claims = jwt_part(&at, 1);
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "roles",
    ] {
        assert!(!claims[claim].is_null(), "claim {claim} missing: {claims}");
    }
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["aud"], app.base);
    assert_eq!(claims["client_id"], SPA);
    assert_eq!(claims["roles"], serde_json::json!(["reader"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );

    // The signing key is published.
    let jwks: serde_json::Value = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );

    let id = t.str("id_token");
    let id_claims = jwt_part(&id, 1);
    assert_eq!(id_claims["aud"], SPA);
    assert_eq!(id_claims["sub"], claims["sub"]);
    assert_eq!(id_claims["preferred_username"], "alice");
    assert_eq!(jwt_part(&id, 0)["typ"], "JWT");
}

#[tokio::test]
async fn password_grant_accepts_email_as_username() {
    let app = spawn_app().await;
    app.register("bob").await;
    let t = app.password_grant("BOB@example.com", "").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
}

#[tokio::test]
async fn no_id_token_without_openid() {
    let app = spawn_app().await;
    let t = app.sign_in("carol", "articles:read").await;
    assert_eq!(t.status, StatusCode::OK);
    assert!(t.body.get("id_token").is_none());
}

#[tokio::test]
async fn scope_is_narrowed_to_what_client_and_user_permit() {
    let app = spawn_app().await;
    // A reader may not have articles:write: the request is narrowed, not refused (§3.3).
    let t = app.sign_in("dave", "articles:read articles:write").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(t.str("scope"), "articles:read");
    assert_eq!(
        jwt_part(&t.str("access_token"), 1)["scope"],
        "articles:read"
    );
    // Nothing requested can be granted: invalid_scope.
    app.password_grant("dave", "users:admin")
        .await
        .assert_oauth_error(400, "invalid_scope");
    app.password_grant("dave", "no-such-scope")
        .await
        .assert_oauth_error(400, "invalid_scope");
    // A malformed scope token is invalid_scope too.
    app.password_grant("dave", "bad\"scope")
        .await
        .assert_oauth_error(400, "invalid_scope");
    // No scope: the client's default scopes (`openid profile email`), never everything it
    // allows.
    let defaults = app.password_grant("dave", "").await;
    assert_eq!(defaults.str("scope"), "email openid profile");
}

#[tokio::test]
async fn client_credentials_with_basic_and_post_authentication() {
    let app = spawn_app().await;
    let c = app
        .confidential_client(
            "svc",
            &[GrantType::ClientCredentials],
            "articles:read users:read openid",
        )
        .await;
    // No scope: the client's default scopes, without the administrative `users:read` (granted
    // only when asked for by name) and without identity scopes (there is no user).
    let defaults = app
        .post_form_basic("/oauth/token", &c, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(defaults.status, StatusCode::OK, "{}", defaults.body);
    assert_eq!(defaults.str("scope"), "articles:read");
    let basic = app
        .post_form_basic(
            "/oauth/token",
            &c,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "articles:read users:read openid"),
            ],
        )
        .await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.body);
    assert_eq!(
        basic.str("scope"),
        "articles:read users:read",
        "no identity scopes without a user"
    );
    assert!(basic.body.get("refresh_token").is_none());
    let claims = jwt_part(&basic.str("access_token"), 1);
    assert_eq!(claims["sub"], "svc");
    assert_eq!(claims["client_id"], "svc");
    assert_eq!(claims["roles"], serde_json::json!([]));

    let post = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &c.id),
                ("client_secret", &c.secret),
                ("scope", "users:read"),
            ],
        )
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.body);
    assert_eq!(post.str("scope"), "users:read");
}

#[tokio::test]
async fn client_secrets_are_stored_only_as_digests() {
    use sea_orm::EntityTrait;
    let app = spawn_app().await;
    let c = app
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let row = entities::clients::Entity::find_by_id("svc".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    let stored = row.secret_digest.unwrap();
    assert!(!stored.contains(&c.secret));
    assert_eq!(stored, portcullis::crypto::secret_digest(&c.secret));
    let public = entities::clients::Entity::find_by_id(SPA.to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(public.secret_digest.is_none());
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    // RFC 6749 §2.3.1: a client id and secret with reserved characters are urlencoded first.
    let app = spawn_app().await;
    let created = app
        .state
        .clients
        .create(portcullis::clients::NewClient {
            client_id: portcullis::domain::ClientId::parse("svc.one~2").unwrap(),
            name: "svc".into(),
            secret: Some(Some(
                "p@ss:w+rd/with %reserved& chars=!!".to_string().into(),
            )),
            grant_types: vec![GrantType::ClientCredentials],
            scopes: portcullis::domain::Scope::parse("articles:read").unwrap(),
            default_scopes: None,
            audiences: vec![],
            redirect_uris: vec![],
            post_logout_redirect_uris: Vec::new(),
            first_party: false,
        })
        .await
        .unwrap();
    assert!(
        created.client_secret.is_none(),
        "an operator-given secret is never echoed"
    );
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!(
        "{}:{}",
        encode("svc.one~2"),
        encode("p@ss:w+rd/with %reserved& chars=!!")
    );
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    );
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .header("authorization", header)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "articles:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn swagger_style_basic_with_empty_secret_identifies_a_public_client() {
    let app = spawn_app().await;
    app.register("erin").await;
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(SPA, Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Every RFC 6749 §5.2 error the token endpoint can give, with the exact status.
#[tokio::test]
async fn rfc6749_error_matrix() {
    let app = spawn_app().await;
    app.register("frank").await;
    let svc = app
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let wrong_secret = Confidential {
        id: "svc".into(),
        secret: "x".repeat(43),
    };
    let unknown = Confidential {
        id: "nobody".into(),
        secret: "x".repeat(43),
    };

    struct Case<'a> {
        name: &'a str,
        basic: Option<&'a Confidential>,
        form: Vec<(&'a str, &'a str)>,
        status: u16,
        error: &'a str,
    }
    let pw = |extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![("grant_type", "password"), ("client_id", SPA)];
        form.extend(extra);
        form
    };
    let cases = vec![
        Case {
            name: "no grant_type",
            basic: None,
            form: vec![("client_id", SPA)],
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "empty grant_type",
            basic: None,
            form: vec![("grant_type", ""), ("client_id", SPA)],
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "unknown grant_type",
            basic: None,
            form: vec![("grant_type", "urn:x:magic"), ("client_id", SPA)],
            status: 400,
            error: "unsupported_grant_type",
        },
        Case {
            name: "authorization_code without code",
            basic: None,
            form: vec![("grant_type", "authorization_code"), ("client_id", SPA)],
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "authorization_code with an unknown code",
            basic: None,
            form: vec![
                ("grant_type", "authorization_code"),
                ("client_id", SPA),
                ("code", "no-such-code"),
                ("redirect_uri", "http://127.0.0.1/cb"),
                (
                    "code_verifier",
                    "0123456789012345678901234567890123456789abc",
                ),
            ],
            status: 400,
            error: "invalid_grant",
        },
        Case {
            name: "password without username",
            basic: None,
            form: pw(vec![("password", PASSWORD)]),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "password without password",
            basic: None,
            form: pw(vec![("username", "frank")]),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "refresh without refresh_token",
            basic: None,
            form: vec![("grant_type", "refresh_token"), ("client_id", SPA)],
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "duplicate parameter",
            basic: None,
            form: pw(vec![
                ("username", "frank"),
                ("username", "frank"),
                ("password", PASSWORD),
            ]),
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "no client at all",
            basic: None,
            form: vec![
                ("grant_type", "password"),
                ("username", "frank"),
                ("password", PASSWORD),
            ],
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "unknown client",
            basic: Some(&unknown),
            form: vec![("grant_type", "client_credentials")],
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "wrong secret",
            basic: Some(&wrong_secret),
            form: vec![("grant_type", "client_credentials")],
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "confidential client without secret",
            basic: None,
            form: vec![("grant_type", "client_credentials"), ("client_id", "svc")],
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "secret for a public client",
            basic: None,
            form: pw(vec![
                ("username", "frank"),
                ("password", PASSWORD),
                ("client_secret", "guess"),
            ]),
            status: 401,
            error: "invalid_client",
        },
        Case {
            name: "two auth methods",
            basic: Some(&svc),
            form: vec![("grant_type", "client_credentials"), ("client_secret", "x")],
            status: 400,
            error: "invalid_request",
        },
        Case {
            name: "wrong password",
            basic: None,
            form: pw(vec![
                ("username", "frank"),
                ("password", "not the password at all"),
            ]),
            status: 400,
            error: "invalid_grant",
        },
        Case {
            name: "unknown user",
            basic: None,
            form: pw(vec![("username", "nobody"), ("password", PASSWORD)]),
            status: 400,
            error: "invalid_grant",
        },
        Case {
            name: "unknown refresh token",
            basic: None,
            form: vec![
                ("grant_type", "refresh_token"),
                ("client_id", SPA),
                ("refresh_token", "made-up"),
            ],
            status: 400,
            error: "invalid_grant",
        },
        Case {
            name: "public client may not use client_credentials",
            basic: None,
            form: vec![("grant_type", "client_credentials"), ("client_id", SPA)],
            status: 400,
            error: "unauthorized_client",
        },
        Case {
            name: "client not allowed the password grant",
            basic: Some(&svc),
            form: vec![
                ("grant_type", "password"),
                ("username", "frank"),
                ("password", PASSWORD),
            ],
            status: 400,
            error: "unauthorized_client",
        },
        Case {
            name: "scope outside the client",
            basic: Some(&svc),
            form: vec![
                ("grant_type", "client_credentials"),
                ("scope", "users:admin"),
            ],
            status: 400,
            error: "invalid_scope",
        },
        Case {
            name: "malformed scope",
            basic: Some(&svc),
            form: vec![("grant_type", "client_credentials"), ("scope", "a\\b")],
            status: 400,
            error: "invalid_scope",
        },
    ];
    for case in cases {
        let req = app.http.post(app.url("/oauth/token")).form(&case.form);
        let req = match case.basic {
            Some(c) => req.basic_auth(&c.id, Some(&c.secret)),
            None => req,
        };
        let answer = Answer::from(req.send().await.unwrap()).await;
        assert_eq!(
            answer.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            answer.body
        );
        assert_eq!(
            answer.body["error"], case.error,
            "{}: {}",
            case.name, answer.body
        );
        assert_eq!(
            answer.header("cache-control").as_deref(),
            Some("no-store"),
            "{}",
            case.name
        );
        if case.status == 401 {
            let challenge = answer.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Basic"), "{}: {challenge}", case.name);
        }
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let app = spawn_app().await;
    app.register("grace").await;
    let wrong = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", SPA),
                ("username", "grace"),
                ("password", "wrong password!!"),
            ],
        )
        .await;
    let unknown = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("client_id", SPA),
                ("username", "nobody-here"),
                ("password", "wrong password!!"),
            ],
        )
        .await;
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn token_endpoint_requires_form_encoding() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/oauth/token"))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    Answer::from(resp)
        .await
        .assert_oauth_error(400, "invalid_request");
}

#[tokio::test]
async fn sign_ins_are_audited_without_secrets() {
    use portcullis::audit::EventType;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let ok = app.sign_in("heidi", "").await;
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("client_id", SPA),
            ("username", "heidi"),
            ("password", "definitely wrong"),
        ],
    )
    .await;
    app.state.audit.flush().await;
    let events = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq(EventType::SignIn.as_str()))
        .all(&app.state.db)
        .await
        .unwrap();
    let outcomes: Vec<&str> = events.iter().map(|e| e.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"success") && outcomes.contains(&"failure"),
        "{outcomes:?}"
    );
    for e in &events {
        assert_eq!(e.client_id.as_deref(), Some(SPA));
        assert_eq!(e.ip.as_deref(), Some("127.0.0.1"));
        assert!(e.request_id.is_some());
        assert!(!e.details.contains(PASSWORD) && !e.details.contains("definitely wrong"));
        assert!(!e.details.contains(&ok.str("refresh_token")));
    }
    let registered = entities::audit_events::Entity::find()
        .filter(entities::audit_events::Column::EventType.eq(EventType::UserRegistered.as_str()))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(registered.len(), 1);
}
