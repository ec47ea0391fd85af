//! Two-factor authentication with TOTP (RFC 6238): enrolment, the window and replay of codes
//! under a moved clock, recovery codes, turning it off, the mfa-otp grant, the hosted page's
//! second step, lockout, and the per-role requirement.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::browser_support::{Browser, authorize_url, pkce};
use super::helpers::*;
use portcullis::clients::{GrantType, NewClient};
use portcullis::domain::{ClientId, Scope};
use sea_orm::EntityTrait;

const MFA_GRANT: &str = "urn:portcullis:params:oauth:grant-type:mfa-otp";
const STEP: i64 = 30;

/// The RFC 6238 code of `secret` (base32) at Unix time `at`, computed independently of the
/// server's code path with `totp-rs`.
fn code_at(secret: &str, at: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(secret.as_ref().to_vec())
        .build()
        .unwrap();
    totp.generate(u64::try_from(at).unwrap()).to_string()
}

fn now(app: &TestApp) -> i64 {
    app.state.clock.now()
}

pub(super) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> Answer {
    Answer::from(
        app.http
            .request(method, app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A user with MFA on: returns (access token before MFA, secret, recovery codes).
pub(super) async fn enrolled(app: &TestApp, username: &str) -> (String, String, Vec<String>) {
    let signed = app.sign_in(username, "openid profile profile:write").await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let token = signed.str("access_token");
    let started = call(
        app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/totp",
        &token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let secret = started.str("secret");
    assert!(started.str("otpauth_uri").starts_with("otpauth://totp/"));
    assert!(
        started
            .str("otpauth_uri")
            .contains(&format!("secret={secret}"))
    );
    assert!(started.str("qr_svg").contains("<svg"));
    let confirmed = call(
        app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/totp/confirm",
        &token,
        json!({"code": code_at(&secret, now(app))}),
    )
    .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let codes: Vec<String> = confirmed.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (token, secret, codes)
}

/// The first step: a right password answers `mfa_required` with a token.
async fn mfa_token(app: &TestApp, username: &str, scope: &str) -> String {
    let first = app.password_grant(username, scope).await;
    first.assert_oauth_error(400, "mfa_required");
    assert!(first.body.get("access_token").is_none());
    let token = first.str("mfa_token");
    assert!(token.len() >= 43, "≥ 256 bits: {token}");
    token
}

async fn complete(app: &TestApp, client_id: &str, token: &str, field: &str, value: &str) -> Answer {
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", MFA_GRANT),
            ("client_id", client_id),
            ("mfa_token", token),
            (field, value),
        ],
    )
    .await
}

#[tokio::test]
async fn enrolment_needs_the_password_and_a_first_code_and_keeps_the_secret_sealed() {
    let app = spawn_app().await;
    let signed = app.sign_in("mallory", "profile profile:write").await;
    let token = signed.str("access_token");
    let post =
        |path: &'static str, body: Value| call(&app, reqwest::Method::POST, path, &token, body);
    let wrong = post(
        "/api/v1/users/me/mfa/totp",
        json!({"password": "not it at all!!"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    assert_eq!(wrong.body["code"], "wrong_password", "{}", wrong.body);
    // Nothing pending yet.
    let early = post(
        "/api/v1/users/me/mfa/totp/confirm",
        json!({"code": "123456"}),
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);

    let first = post("/api/v1/users/me/mfa/totp", json!({"password": PASSWORD})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second = post("/api/v1/users/me/mfa/totp", json!({"password": PASSWORD})).await;
    let secret = second.str("secret");
    assert_ne!(
        secret,
        first.str("secret"),
        "a new enrolment replaces the pending one"
    );
    // Pending: the password grant still signs in with the password alone.
    assert_eq!(
        app.password_grant("mallory", "profile").await.status,
        StatusCode::OK
    );
    // The replaced secret no longer confirms.
    let stale = post(
        "/api/v1/users/me/mfa/totp/confirm",
        json!({"code": code_at(&first.str("secret"), now(&app))}),
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "{}", stale.body);
    assert_eq!(stale.body["code"], "wrong_code");

    // The secret is stored sealed, never as given.
    let rows = entities::mfa_totp::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].secret_sealed.contains(&secret));
    let ok = post(
        "/api/v1/users/me/mfa/totp/confirm",
        json!({"code": code_at(&secret, now(&app))}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // Recovery codes are stored as digests only.
    let stored = entities::mfa_recovery_codes::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    for code in ok.body["recovery_codes"].as_array().unwrap() {
        let code = code.as_str().unwrap();
        assert!(stored.iter().all(|r| !r.digest.contains(code)));
    }
    // On: a new enrolment is refused until MFA is turned off.
    let again = post("/api/v1/users/me/mfa/totp", json!({"password": PASSWORD})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    // Neither the secret nor the codes reach the audit log.
    app.state.audit.flush().await;
    let audit = serde_json::to_string(
        &entities::audit_events::Entity::find()
            .all(&app.state.db)
            .await
            .unwrap()
            .iter()
            .map(|e| format!("{} {:?}", e.event_type, e.details))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(audit.contains("mfa.enrolled"), "{audit}");
    assert!(!audit.contains(&secret));
    assert!(!audit.contains(ok.body["recovery_codes"][0].as_str().unwrap()));
}

#[tokio::test]
async fn codes_are_accepted_one_step_either_way_and_each_only_once() {
    // Many failures from one address on purpose: lockout is another test's subject.
    let app = spawn_app_with(|raw| {
        raw.lockout_threshold = 100;
        raw.lockout_ip_threshold = 100;
    })
    .await;
    let (_, secret, _) = enrolled(&app, "walter").await;
    // Leave the confirmation's step behind.
    app.clock.advance(10 * STEP);
    let t = now(&app);
    let token = mfa_token(&app, "walter", "openid profile").await;
    for (offset, what) in [(-2, "two steps early"), (2, "two steps late")] {
        let answer = complete(
            &app,
            SPA,
            &token,
            "otp",
            &code_at(&secret, t + offset * STEP),
        )
        .await;
        answer.assert_oauth_error(400, "invalid_grant");
        assert!(answer.body.get("access_token").is_none(), "{what}");
    }
    // The mfa_token survived the wrong tries; one step early is accepted.
    let early = complete(&app, SPA, &token, "otp", &code_at(&secret, t - STEP)).await;
    assert_eq!(early.status, StatusCode::OK, "{}", early.body);
    let claims = jwt_part(&early.str("access_token"), 1);
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    let id = jwt_part(&early.str("id_token"), 1);
    assert_eq!(id["amr"], json!(["pwd", "otp"]));
    // A used mfa_token is refused, even with a fresh code.
    complete(&app, SPA, &token, "otp", &code_at(&secret, t))
        .await
        .assert_oauth_error(400, "invalid_grant");

    for offset in [0, 1] {
        let token = mfa_token(&app, "walter", "profile").await;
        let answer = complete(
            &app,
            SPA,
            &token,
            "otp",
            &code_at(&secret, t + offset * STEP),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "step {offset}: {}",
            answer.body
        );
    }
    // Replays: the step just used, and an earlier one still inside the window.
    for offset in [1, 0] {
        let token = mfa_token(&app, "walter", "profile").await;
        complete(
            &app,
            SPA,
            &token,
            "otp",
            &code_at(&secret, t + offset * STEP),
        )
        .await
        .assert_oauth_error(400, "invalid_grant");
    }
    // The next step's code works once the clock gets there.
    app.clock.advance(2 * STEP);
    let token = mfa_token(&app, "walter", "profile").await;
    let later = complete(&app, SPA, &token, "otp", &code_at(&secret, now(&app))).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.body);
}

#[tokio::test]
async fn one_code_used_concurrently_signs_in_once() {
    let app = spawn_app().await;
    let (_, secret, _) = enrolled(&app, "twins").await;
    app.clock.advance(5 * STEP);
    let code = code_at(&secret, now(&app));
    let a = mfa_token(&app, "twins", "profile").await;
    let b = mfa_token(&app, "twins", "profile").await;
    let (x, y) = tokio::join!(
        complete(&app, SPA, &a, "otp", &code),
        complete(&app, SPA, &b, "otp", &code)
    );
    let ok = [&x, &y]
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1, "{} / {}", x.body, y.body);
    for r in [&x, &y] {
        assert!(
            r.status == StatusCode::OK || r.body["error"] == "invalid_grant",
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_regenerating_kills_the_old_ones() {
    let app = spawn_app().await;
    let (token, _, codes) = enrolled(&app, "rosa").await;
    let first = mfa_token(&app, "rosa", "openid profile").await;
    let used = complete(&app, SPA, &first, "recovery_code", &codes[0].to_uppercase()).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    assert_eq!(
        jwt_part(&used.str("access_token"), 1)["amr"],
        json!(["pwd", "rcode"])
    );
    assert_eq!(
        jwt_part(&used.str("id_token"), 1)["amr"],
        json!(["pwd", "rcode"])
    );
    let again = mfa_token(&app, "rosa", "profile").await;
    complete(&app, SPA, &again, "recovery_code", &codes[0])
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Both at once, or neither: a bad request.
    complete(&app, SPA, &again, "", "")
        .await
        .assert_oauth_error(400, "invalid_request");

    let wrong = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/recovery-codes",
        &token,
        json!({"password": "wrong password here"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.body);
    let fresh = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/recovery-codes",
        &token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    let fresh: Vec<String> = fresh.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(fresh.len(), 10);
    complete(&app, SPA, &again, "recovery_code", &codes[1])
        .await
        .assert_oauth_error(400, "invalid_grant");
    let ok = complete(&app, SPA, &again, "recovery_code", &fresh[0]).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    app.state.audit.flush().await;
    let events: Vec<String> = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        events.iter().any(|e| e == "mfa.recovery_code_used"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "mfa.recovery_codes_regenerated"),
        "{events:?}"
    );
}

#[tokio::test]
async fn turning_mfa_off_needs_the_password_and_a_code() {
    let app = spawn_app().await;
    let (token, secret, codes) = enrolled(&app, "dora").await;
    app.clock.advance(3 * STEP);
    let delete = |body: Value| {
        call(
            &app,
            reqwest::Method::DELETE,
            "/api/v1/users/me/mfa/totp",
            &token,
            body,
        )
    };
    let code = code_at(&secret, now(&app));
    let no_password = delete(json!({"password": "wrong password here", "code": code})).await;
    assert_eq!(
        no_password.status,
        StatusCode::FORBIDDEN,
        "{}",
        no_password.body
    );
    assert_eq!(no_password.body["code"], "wrong_password");
    let no_code = delete(json!({"password": PASSWORD, "code": "000000"})).await;
    assert_eq!(no_code.status, StatusCode::FORBIDDEN, "{}", no_code.body);
    assert_eq!(no_code.body["code"], "wrong_code");
    let missing = delete(json!({"password": PASSWORD})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    // Still on.
    mfa_token(&app, "dora", "profile").await;
    let off = delete(json!({"password": PASSWORD, "code": codes[3]})).await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.body);
    let plain = app.password_grant("dora", "profile").await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert_eq!(
        jwt_part(&plain.str("access_token"), 1)["amr"],
        json!(["pwd"])
    );
    let twice = delete(json!({"password": PASSWORD, "code": code})).await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{}", twice.body);
}

#[tokio::test]
async fn mfa_tokens_expire_are_single_use_and_belong_to_their_client() {
    let app = spawn_app().await;
    let (_, secret, _) = enrolled(&app, "ellen").await;
    let other = app
        .confidential_client("other-app", &[GrantType::Password], "openid profile")
        .await;
    app.clock.advance(4 * STEP);
    // Another client cannot complete it.
    let token = mfa_token(&app, "ellen", "profile").await;
    let stolen = app
        .post_form_basic(
            "/oauth/token",
            &other,
            &[
                ("grant_type", MFA_GRANT),
                ("mfa_token", &token),
                ("otp", &code_at(&secret, now(&app))),
            ],
        )
        .await;
    stolen.assert_oauth_error(400, "invalid_grant");
    // Unknown tokens.
    complete(
        &app,
        SPA,
        "not-a-token",
        "otp",
        &code_at(&secret, now(&app)),
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
    // Expired after five minutes.
    app.clock.advance(5 * 60 + 1);
    complete(&app, SPA, &token, "otp", &code_at(&secret, now(&app)))
        .await
        .assert_oauth_error(400, "invalid_grant");
    // A client without the password grant may not use the second step either.
    let cc = app
        .confidential_client("machine", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let token = mfa_token(&app, "ellen", "profile").await;
    app.post_form_basic(
        "/oauth/token",
        &cc,
        &[
            ("grant_type", MFA_GRANT),
            ("mfa_token", &token),
            ("otp", "123456"),
        ],
    )
    .await
    .assert_oauth_error(400, "unauthorized_client");
    // A token survives a few wrong codes, then ends.
    for _ in 0..5 {
        complete(&app, SPA, &token, "otp", "000000")
            .await
            .assert_oauth_error(400, "invalid_grant");
    }
    complete(&app, SPA, &token, "otp", &code_at(&secret, now(&app)))
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Only digests are stored.
    let rows = entities::mfa_tokens::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.digest != token));
}

#[tokio::test]
async fn wrong_codes_count_toward_lockout_and_a_right_password_does_not_forgive_them() {
    let app = spawn_app_with(|raw| {
        raw.lockout_threshold = 4;
        raw.lockout_ip_threshold = 100;
    })
    .await;
    let (_, secret, _) = enrolled(&app, "lucy").await;
    app.clock.advance(3 * STEP);
    // password (1), wrong code (2), password again (3), wrong code (4: locks).
    let token = mfa_token(&app, "lucy", "profile").await;
    complete(&app, SPA, &token, "otp", "000000")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let token = mfa_token(&app, "lucy", "profile").await;
    complete(&app, SPA, &token, "otp", "000001")
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Locked: the right code is not even checked.
    complete(&app, SPA, &token, "otp", &code_at(&secret, now(&app)))
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.password_grant("lucy", "profile")
        .await
        .assert_oauth_error(400, "invalid_grant");
    app.state.audit.flush().await;
    let events: Vec<String> = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(
        events.iter().any(|e| e == "auth.account_locked"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_role_that_requires_mfa_limits_the_api_until_enrolment() {
    let app = spawn_app().await;
    let admin = user_with_roles(&app, "boss", &["admin"]).await;
    let _ = admin;
    let boss = app
        .password_grant("boss", "users:admin users:read profile")
        .await;
    let boss_token = boss.str("access_token");
    user_with_roles(&app, "author1", &["author"]).await;

    let set = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/admin/roles/author/mfa",
        &boss_token,
        json!({"required": true}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["require_mfa"], true);
    let roles = app.get_bearer("/api/v1/admin/roles", &boss_token).await;
    let author = roles
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "author")
        .unwrap();
    assert_eq!(author["require_mfa"], true);
    let reader = roles
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "reader")
        .unwrap();
    assert_eq!(reader["require_mfa"], false);

    // Signed in, but with only what enrolling needs.
    let signed = app
        .password_grant("author1", "openid profile articles:read articles:write")
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    let token = signed.str("access_token");
    let claims = jwt_part(&token, 1);
    assert_eq!(claims["mfa_enrolment_required"], true);
    let scope: Vec<&str> = signed.body["scope"].as_str().unwrap().split(' ').collect();
    assert!(!scope.contains(&"articles:read"), "{scope:?}");
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/articles"),
        (reqwest::Method::GET, "/api/v1/users/me/sessions"),
        (reqwest::Method::PATCH, "/api/v1/users/me"),
    ] {
        let refused = call(&app, method, path, &token, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            refused.body
        );
        assert_eq!(refused.body["code"], "mfa_enrolment_required", "{path}");
    }
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &token).await.status,
        StatusCode::OK
    );
    // A refresh keeps the restriction.
    let refreshed = app.refresh(&signed.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(
        jwt_part(&refreshed.str("access_token"), 1)["mfa_enrolment_required"],
        true
    );

    // Enrolment is open to such a token.
    let started = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/totp",
        &token,
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let secret = started.str("secret");
    let confirmed = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/users/me/mfa/totp/confirm",
        &token,
        json!({"code": code_at(&secret, now(&app))}),
    )
    .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    // After enrolment, a new sign-in (with the second factor) reaches the API.
    app.clock.advance(2 * STEP);
    let mfa = mfa_token(&app, "author1", "profile articles:read").await;
    let full = complete(&app, SPA, &mfa, "otp", &code_at(&secret, now(&app))).await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    let full_token = full.str("access_token");
    assert!(
        jwt_part(&full_token, 1)
            .get("mfa_enrolment_required")
            .is_none()
    );
    assert_eq!(
        app.get_bearer("/api/v1/articles", &full_token).await.status,
        StatusCode::OK
    );

    // Changing the policy is audited; a reader cannot change it.
    app.state.audit.flush().await;
    let events: Vec<String> = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(events.iter().any(|e| e == "role.mfa_changed"), "{events:?}");
    let reader = app
        .sign_in("plainreader", "profile")
        .await
        .str("access_token");
    let refused = call(
        &app,
        reqwest::Method::PUT,
        "/api/v1/admin/roles/author/mfa",
        &reader,
        json!({"required": false}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}

/// A first-party code client with the password grant too.
async fn page_client(app: &TestApp) {
    app.state
        .clients
        .create(NewClient {
            client_id: ClientId::parse("pages").unwrap(),
            name: "Pages app".into(),
            secret: None,
            grant_types: vec![GrantType::AuthorizationCode, GrantType::Password],
            scopes: Scope::parse("openid profile profile:write").unwrap(),
            default_scopes: None,
            audiences: vec![],
            redirect_uris: vec!["http://127.0.0.1:9/cb".into()],
            post_logout_redirect_uris: vec![],
            first_party: true,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_sign_in_page_asks_for_a_second_factor() {
    let app = spawn_app().await;
    let (_, secret, codes) = enrolled(&app, "paula").await;
    page_client(&app).await;
    app.clock.advance(3 * STEP);
    let (verifier, challenge) = pkce();
    let query = authorize_url(&[
        ("response_type", "code"),
        ("client_id", "pages"),
        ("redirect_uri", "http://127.0.0.1:9/cb"),
        ("scope", "openid profile"),
        ("state", "s1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let mut browser = Browser::new(&app);
    let first = browser.get(&query).await;
    let second = browser.sign_in_at(&first, "paula").await;
    // The password does not start a session: the second form does.
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert!(
        second.body.contains("action=\"/ui/login/mfa\""),
        "{}",
        second.body
    );
    assert!(second.body.contains("Authentication code"));
    assert!(second.body.contains("name=\"recovery_code\""));
    assert!(!browser.cookies.keys().any(|k| k.contains("session")));
    let csrf = second.input("csrf_token").unwrap();
    let mfa = second.input("mfa_token").unwrap();
    let return_to = second.input("return_to").unwrap();
    // The page's token is not the grant's.
    complete(&app, "pages", &mfa, "otp", &code_at(&secret, now(&app)))
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Cross-site posts are refused.
    let forged = browser
        .post_from(
            "/ui/login/mfa",
            &[
                ("csrf_token", "forged"),
                ("mfa_token", &mfa),
                ("return_to", &return_to),
                ("otp", "000000"),
            ],
            Some(&app.base.clone()),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let wrong = browser
        .post(
            "/ui/login/mfa",
            &[
                ("csrf_token", &csrf),
                ("mfa_token", &mfa),
                ("return_to", &return_to),
                ("otp", "000000"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert!(
        wrong.body.contains("The code is incorrect."),
        "{}",
        wrong.body
    );
    let right = browser
        .post(
            "/ui/login/mfa",
            &[
                ("csrf_token", &csrf),
                ("mfa_token", &mfa),
                ("return_to", &return_to),
                ("otp", &code_at(&secret, now(&app))),
            ],
        )
        .await;
    assert_eq!(right.status, StatusCode::SEE_OTHER, "{}", right.body);
    let back = browser.get(right.location.as_deref().unwrap()).await;
    let code = back.redirect_param("code").expect("a code");
    let tokens = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "pages"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert_eq!(
        jwt_part(&tokens.str("id_token"), 1)["amr"],
        json!(["pwd", "otp"])
    );
    assert_eq!(
        jwt_part(&tokens.str("access_token"), 1)["amr"],
        json!(["pwd", "otp"])
    );
    // The same second step cannot be replayed.
    let replay = browser
        .post(
            "/ui/login/mfa",
            &[
                ("csrf_token", &csrf),
                ("mfa_token", &mfa),
                ("return_to", &return_to),
                ("recovery_code", &codes[0]),
            ],
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);
    assert!(
        replay.body.contains("action=\"/ui/login\""),
        "back to the password form"
    );

    // A recovery code on the page: amr pwd rcode.
    let mut other = Browser::new(&app);
    let (verifier, challenge) = pkce();
    let query = authorize_url(&[
        ("response_type", "code"),
        ("client_id", "pages"),
        ("redirect_uri", "http://127.0.0.1:9/cb"),
        ("scope", "openid"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let first = other.get(&query).await;
    let second = other.sign_in_at(&first, "paula").await;
    let done = other
        .post(
            "/ui/login/mfa",
            &[
                ("csrf_token", &second.input("csrf_token").unwrap()),
                ("mfa_token", &second.input("mfa_token").unwrap()),
                ("return_to", &second.input("return_to").unwrap()),
                ("recovery_code", &codes[1]),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let back = other.get(done.location.as_deref().unwrap()).await;
    let code = back.redirect_param("code").expect("a code");
    let tokens = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "pages"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:9/cb"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(
        jwt_part(&tokens.str("id_token"), 1)["amr"],
        json!(["pwd", "rcode"])
    );
}

#[tokio::test]
async fn the_owner_is_mailed_when_mfa_goes_on_off_or_a_recovery_code_is_used() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = spawn_app().await;
    let (token, secret, codes) = enrolled(&app, "nina").await;
    let kinds = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            entities::outbox::Entity::find()
                .filter(entities::outbox::Column::Recipient.eq("nina@example.com"))
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.kind, m.text_body))
                .collect::<Vec<_>>()
        }
    };
    assert!(kinds(&app).await.iter().any(|(k, _)| k == "mfa_enabled"));
    let first = mfa_token(&app, "nina", "openid").await;
    let used = complete(&app, SPA, &first, "recovery_code", &codes[0]).await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let mails = kinds(&app).await;
    let (_, text) = mails
        .iter()
        .find(|(k, _)| k == "recovery_code_used")
        .expect("a recovery_code_used mail");
    assert!(text.contains('9'), "the remaining count: {text}");
    app.clock.advance(30);
    let off = call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/users/me/mfa/totp",
        &token,
        json!({"password": PASSWORD, "code": code_at(&secret, now(&app))}),
    )
    .await;
    assert_eq!(off.status, StatusCode::NO_CONTENT, "{}", off.body);
    assert!(kinds(&app).await.iter().any(|(k, _)| k == "mfa_disabled"));
}
