//! Account recovery through the JSON API: address verification, password reset, changing
//! one's password and address. The mails are read as the outbox holds them (rendered, as they
//! are sent); `mail.rs` checks the delivery over SMTP.

use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;

use super::helpers::{Answer, PASSWORD, TestApp, spawn_app, spawn_app_with};

/// The mails written for `to`, oldest first.
async fn mails_to(app: &TestApp, to: &str) -> Vec<entities::outbox::Model> {
    entities::outbox::Entity::find()
        .filter(entities::outbox::Column::Recipient.eq(to))
        .order_by_asc(entities::outbox::Column::CreatedAt)
        .all(&app.state.db)
        .await
        .unwrap()
}

/// The newest mail of `kind` to `to`, waiting a little for work done after the answer.
pub(super) async fn mail(app: &TestApp, to: &str, kind: &str) -> entities::outbox::Model {
    for _ in 0..100 {
        if let Some(m) = mails_to(app, to)
            .await
            .into_iter()
            .rev()
            .find(|m| m.kind == kind)
        {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no {kind} mail to {to}");
}

/// The `token` of the link in a mail's text body.
pub(super) fn token_in(mail: &entities::outbox::Model) -> String {
    let at = mail.text_body.find("token=").expect("a link with a token") + 6;
    mail.text_body[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Posts the token of a verification link, as its page does.
pub(super) async fn confirm_link(app: &TestApp, token: &str) -> Answer {
    post(
        app,
        "/api/v1/email-verification/confirm",
        json!({"token": token}),
    )
    .await
}

/// Asks for a password reset of `email` and returns the token of the link mailed.
async fn reset_link(app: &TestApp, email: &str) -> String {
    post(app, "/api/v1/password-reset", json!({"email": email})).await;
    token_in(&mail(app, email, "password_reset").await)
}

async fn post(app: &TestApp, path: &str, body: serde_json::Value) -> Answer {
    Answer::from(
        app.http
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn post_bearer(app: &TestApp, path: &str, token: &str, body: serde_json::Value) -> Answer {
    Answer::from(
        app.http
            .post(app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_once() {
    let app = spawn_app().await;
    let reg = app.register("alice").await;
    assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
    let t = app.password_grant("alice", "openid email").await;
    assert_eq!(jwt(&t.str("id_token"))["email_verified"], false);

    let m = mail(&app, "alice@example.com", "verify_email").await;
    assert!(
        m.text_body.contains("/ui/email/verify?token="),
        "{}",
        m.text_body
    );
    assert!(m.html_body.contains("/ui/email/verify?token="));
    let token = token_in(&m);
    let ok = post(
        &app,
        "/api/v1/email-verification/confirm",
        json!({"token": token}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let t = app.password_grant("alice", "openid email").await;
    assert_eq!(jwt(&t.str("id_token"))["email_verified"], true);
    let info = app
        .get_bearer("/oauth/userinfo", &t.str("access_token"))
        .await;
    assert_eq!(info.body["email_verified"], true);
    // Single use; a made-up token is refused alike.
    for token in [token.as_str(), "made-up"] {
        let again = post(
            &app,
            "/api/v1/email-verification/confirm",
            json!({"token": token}),
        )
        .await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
        assert_eq!(again.body["field"], "token");
    }
}

fn jwt(token: &str) -> serde_json::Value {
    super::helpers::jwt_part(token, 1)
}

#[tokio::test]
async fn with_verification_required_registration_reveals_nothing_and_unverified_accounts_cannot_sign_in()
 {
    let app = spawn_app_with(|raw| raw.require_verified_email = true).await;
    let body =
        |name: &str, email: &str| json!({"username": name, "email": email, "password": PASSWORD});
    let first = post(&app, "/api/v1/users", body("alice", "alice@example.com")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body, json!({"status": "verification_sent"}));
    // The same address again, and the same name again: the very same answer.
    let taken_address = post(&app, "/api/v1/users", body("mallory", "alice@example.com")).await;
    let taken_name = post(&app, "/api/v1/users", body("alice", "other@example.com")).await;
    for answer in [&taken_address, &taken_name] {
        assert_eq!(answer.status, StatusCode::ACCEPTED);
        assert_eq!(answer.body, first.body);
    }
    // The owner of the taken address is told instead.
    mail(&app, "alice@example.com", "already_registered").await;

    // Not verified yet: the password grant says no, as for a wrong password.
    app.password_grant("alice", "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let verify = mail(&app, "alice@example.com", "verify_email").await;
    let ok = post(
        &app,
        "/api/v1/email-verification/confirm",
        json!({"token": token_in(&verify)}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.password_grant("alice", "openid").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_reset_answers_alike_and_its_link_works_once_for_30_minutes() {
    let app = spawn_app().await;
    app.register("alice").await;
    let session = app.password_grant("alice", "openid profile").await;

    // Known and unknown addresses: the same answer.
    let known = post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "alice@example.com"}),
    )
    .await;
    let unknown = post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(known.status, StatusCode::ACCEPTED);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    let first = token_in(&mail(&app, "alice@example.com", "password_reset").await);
    assert!(mails_to(&app, "nobody@example.com").await.is_empty());

    // A newer request makes the first link void.
    post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "alice@example.com"}),
    )
    .await;
    let mut second = first.clone();
    for _ in 0..100 {
        second = token_in(&mail(&app, "alice@example.com", "password_reset").await);
        if second != first {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_ne!(first, second);
    let new_password = "a brand new passphrase 42";
    let confirm = |token: String, password: &str| {
        let app = &app;
        let password = password.to_string();
        async move {
            post(
                app,
                "/api/v1/password-reset/confirm",
                json!({"token": token, "new_password": password}),
            )
            .await
        }
    };
    let stale = confirm(first, new_password).await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST, "{}", stale.body);
    // A password the rules refuse leaves the link working.
    let weak = confirm(second.clone(), "short").await;
    assert_eq!(weak.status, StatusCode::BAD_REQUEST);
    assert_eq!(weak.body["field"], "password");
    let done = confirm(second.clone(), new_password).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    // Single use; every sign-in ended; the old password is gone, the new one works.
    assert_eq!(
        confirm(second, "yet another passphrase 7").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &session.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.password_grant("alice", "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let t = app.password_grant_as("alice", new_password, "openid").await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    mail(&app, "alice@example.com", "password_changed").await;

    // Links expire after 30 minutes.
    post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "alice@example.com"}),
    )
    .await;
    let mut late = String::new();
    for _ in 0..100 {
        let m = mails_to(&app, "alice@example.com").await;
        if m.iter().filter(|m| m.kind == "password_reset").count() == 3 {
            late = token_in(m.iter().rev().find(|m| m.kind == "password_reset").unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.clock.advance(31 * 60);
    assert_eq!(
        confirm(late, "the late passphrase 123").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_sign_in_voids_a_pending_reset_link_and_a_link_serves_only_its_account() {
    let app = spawn_app().await;
    app.register("alice").await;
    app.register("bob").await;
    let token = reset_link(&app, "alice@example.com").await;
    // Alice remembered her password: the link is void.
    assert_eq!(
        app.password_grant("alice", "openid").await.status,
        StatusCode::OK
    );
    let r = post(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "a brand new passphrase 42"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Bob's link changes Bob's password only.
    post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "bob@example.com"}),
    )
    .await;
    let token = token_in(&mail(&app, "bob@example.com", "password_reset").await);
    let r = post(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": "bobs brand new passphrase"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.password_grant("alice", "openid").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn password_reset_requests_are_limited_per_address() {
    let app = spawn_app_with(|raw| {
        raw.rate_limit_enabled = true;
        raw.rate_limit_recovery_address = "2/1h".into();
    })
    .await;
    for expected in [
        StatusCode::ACCEPTED,
        StatusCode::ACCEPTED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let r = post(
            &app,
            "/api/v1/password-reset",
            json!({"email": "someone@example.com"}),
        )
        .await;
        assert_eq!(r.status, expected, "{}", r.body);
    }
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_the_other_sign_ins() {
    let app = spawn_app().await;
    app.register("alice").await;
    let other = app.password_grant("alice", "openid profile").await;
    let this = app
        .password_grant("alice", "openid profile profile:write")
        .await;
    let at = this.str("access_token");
    let wrong = post_bearer(
        &app,
        "/api/v1/users/me/password",
        &at,
        json!({"current_password": "not the password at all", "new_password": "a brand new passphrase 42"}),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.body["code"], "wrong_password");
    let ok = post_bearer(
        &app,
        "/api/v1/users/me/password",
        &at,
        json!({"current_password": PASSWORD, "new_password": "a brand new passphrase 42"}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    // This sign-in goes on; the other one ended; the address is told.
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &at).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &other.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    mail(&app, "alice@example.com", "password_changed").await;
}

#[tokio::test]
async fn a_new_address_is_confirmed_from_itself_and_the_old_one_is_told() {
    let app = spawn_app().await;
    app.register("alice").await;
    app.register("bob").await;
    let at = app
        .password_grant("alice", "openid email profile profile:write")
        .await
        .str("access_token");
    let change = |email: &str| {
        let (app, at) = (&app, at.clone());
        let email = email.to_string();
        async move {
            post_bearer(
                app,
                "/api/v1/users/me/email",
                &at,
                json!({"current_password": PASSWORD, "new_email": email}),
            )
            .await
        }
    };
    // An address another account uses: the same answer, and nothing is sent to it.
    let taken = change("bob@example.com").await;
    assert_eq!(taken.status, StatusCode::ACCEPTED);
    let ok = change("alice@new.example.com").await;
    assert_eq!((ok.status, &ok.body), (taken.status, &taken.body));
    assert!(
        mails_to(&app, "bob@example.com")
            .await
            .iter()
            .all(|m| m.kind == "verify_email")
    );
    let confirm = mail(&app, "alice@new.example.com", "email_change_confirm").await;
    // Nothing changed yet.
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &at).await.body["email"],
        "alice@example.com"
    );
    let r = post(
        &app,
        "/api/v1/email-verification/confirm",
        json!({"token": token_in(&confirm)}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let me = app.get_bearer("/api/v1/users/me", &at).await;
    assert_eq!(me.body["email"], "alice@new.example.com");
    mail(&app, "alice@example.com", "email_changed").await;
    // The new address signs in, confirmed.
    let t = app
        .password_grant("alice@new.example.com", "openid email")
        .await;
    assert_eq!(jwt(&t.str("id_token"))["email_verified"], true);
}

#[tokio::test]
async fn the_pages_of_the_links_reset_a_password_and_confirm_an_address() {
    use super::browser_support::Browser;
    let app = spawn_app().await;
    app.register("alice").await;
    // Bob's address is confirmed through its page (alice's reset confirms hers).
    app.register("bob").await;
    let mut browser = Browser::new(&app);

    // Forgot: the same page whatever the address.
    let page = browser.get("/ui/password/forgot").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.input("csrf_token").unwrap();
    let sent = browser
        .post(
            "/ui/password/forgot",
            &[("csrf_token", &csrf), ("email", "alice@example.com")],
        )
        .await;
    let unknown = browser
        .post(
            "/ui/password/forgot",
            &[("csrf_token", &csrf), ("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK);
    assert_eq!(sent.body, unknown.body);
    // Without the form's token: refused.
    let forged = browser
        .post("/ui/password/forgot", &[("email", "alice@example.com")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // The link's page: two passwords that differ are refused; then the reset.
    let token = token_in(&mail(&app, "alice@example.com", "password_reset").await);
    let page = browser
        .get(&format!("/ui/password/reset?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let csrf = page.input("csrf_token").unwrap();
    let new = "a brand new passphrase 42";
    let differ = browser
        .post(
            "/ui/password/reset",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("new_password", new),
                ("new_password_again", "something else entirely"),
            ],
        )
        .await;
    assert_eq!(differ.status, StatusCode::BAD_REQUEST);
    let done = browser
        .post(
            "/ui/password/reset",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("new_password", new),
                ("new_password_again", new),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let again = browser
        .post(
            "/ui/password/reset",
            &[
                ("csrf_token", &csrf),
                ("token", &token),
                ("new_password", new),
                ("new_password_again", new),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    app.password_grant("alice", "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");

    // The verification link: fetching the page confirms nothing; the button does.
    let token = token_in(&mail(&app, "bob@example.com", "verify_email").await);
    let page = browser
        .get(&format!("/ui/email/verify?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let user = app
        .state
        .users
        .by_email("bob@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(!user.email_verified);
    let csrf = page.input("csrf_token").unwrap();
    let ok = browser
        .post(
            "/ui/email/verify",
            &[("csrf_token", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let user = app
        .state
        .users
        .by_email("bob@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(user.email_verified);
}

/// Over a real SMTP server: the verification and reset mails arrive with both bodies, and the
/// links in them do what they say; a reset asked for while the server is down arrives once it
/// is back.
#[tokio::test]
async fn recovery_mails_arrive_over_smtp_and_their_links_work() {
    use super::smtp::{SmtpServer, closed_port, parts};
    let port = closed_port();
    let app = spawn_app_with(move |raw| {
        raw.key_reload_interval = portcullis::config::DurationSetting::Text("5m".into());
        raw.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let pass = || async {
        portcullis::duties::Duties::new(app.state.clone())
            .tick()
            .await
    };

    // The server is down while the account is made and a reset is asked for.
    app.register("alice").await;
    post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "alice@example.com"}),
    )
    .await;
    mail(&app, "alice@example.com", "password_reset").await;
    pass().await;
    let smtp = SmtpServer::start_on(port);
    assert!(smtp.received().is_empty());
    // Back up: after the back-off (30 s after the first failure), both go out, within the
    // reset link's 30 minutes.
    app.clock.advance(60);
    pass().await;
    let got = smtp.wait_for(2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let text_of = |subject_kind: &str| {
        got.iter()
            .map(|m| parts(&m.data))
            .find(|p| p.iter().any(|(_, body)| body.contains(subject_kind)))
            .unwrap_or_else(|| panic!("no mail with {subject_kind}"))
    };
    let token_from = |body: &str| -> String {
        let at = body.find("token=").unwrap() + 6;
        body[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    };
    let verify = text_of("/ui/email/verify?token=");
    assert!(verify.iter().any(|(ct, _)| ct.starts_with("text/plain")));
    assert!(verify.iter().any(|(ct, _)| ct.starts_with("text/html")));
    let (_, plain) = verify
        .iter()
        .find(|(ct, _)| ct.starts_with("text/plain"))
        .unwrap();
    let ok = post(
        &app,
        "/api/v1/email-verification/confirm",
        json!({"token": token_from(plain)}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);

    let reset = text_of("/ui/password/reset?token=");
    let (_, plain) = reset
        .iter()
        .find(|(ct, _)| ct.starts_with("text/plain"))
        .unwrap();
    let done = post(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token_from(plain), "new_password": "a brand new passphrase 42"}),
    )
    .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
}

/// A reset asked for on an instance that stops before the mail goes out is sent by the
/// instance that takes over (the outbox is in the database), once the SMTP server is up.
#[tokio::test]
async fn a_restart_between_the_request_and_the_delivery_loses_no_mail() {
    use super::smtp::{SmtpServer, closed_port};
    let port = closed_port();
    let app = spawn_app_with(move |raw| {
        raw.key_reload_interval = portcullis::config::DurationSetting::Text("5m".into());
        raw.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    app.register("alice").await;
    post(
        &app,
        "/api/v1/password-reset",
        json!({"email": "alice@example.com"}),
    )
    .await;
    mail(&app, "alice@example.com", "password_reset").await;
    // The instance stops; another one starts on the same database, while SMTP is still down.
    let next = app.spawn_peer().await;
    drop(app);
    let report = portcullis::duties::Duties::new(next.state.clone())
        .tick()
        .await;
    assert_eq!(report.mail.map(|m| m.sent), Some(0));
    let smtp = SmtpServer::start_on(port);
    next.clock.advance(60);
    portcullis::duties::Duties::new(next.state.clone())
        .tick()
        .await;
    let got = smtp.wait_for(2).await;
    assert_eq!(got.len(), 2, "the verification and the reset: {got:?}");
    assert!(got.iter().all(|m| m.to == ["alice@example.com"]));
}

#[tokio::test]
async fn the_duties_purge_mailed_link_tokens_a_day_after_they_expire() {
    use sea_orm::PaginatorTrait;
    let app = spawn_app().await;
    app.register("alice").await;
    let count = || async {
        entities::account_tokens::Entity::find()
            .count(&app.state.db)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1, "the verification link");
    app.clock.advance(24 * 3600 + 60);
    portcullis::duties::Duties::new(app.state.clone())
        .tick()
        .await;
    assert_eq!(count().await, 1, "expired, but kept a day");
    app.clock.advance(24 * 3600);
    portcullis::duties::Duties::new(app.state.clone())
        .tick()
        .await;
    assert_eq!(count().await, 0);
}

#[tokio::test]
async fn a_password_reset_confirms_the_address_it_was_mailed_to() {
    // Verification required, and the first link never used (lost, or expired after a day):
    // the reset link proves the mailbox as well, so it is the way back in.
    let app = spawn_app_with(|raw| raw.require_verified_email = true).await;
    let reg = app.register("alice").await;
    assert_eq!(reg.status, StatusCode::ACCEPTED, "{}", reg.body);
    app.password_grant("alice", "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");
    let token = reset_link(&app, "alice@example.com").await;
    let new_password = "a brand new passphrase 42";
    let done = post(
        &app,
        "/api/v1/password-reset/confirm",
        json!({"token": token, "new_password": new_password}),
    )
    .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    let t = app
        .password_grant_as("alice", new_password, "openid email")
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert_eq!(jwt(&t.str("id_token"))["email_verified"], true);
}

#[tokio::test]
async fn a_reset_answered_before_a_shutdown_still_writes_its_mail() {
    // The request is answered before its link and mail are made; the shutdown waits for that
    // work (`Recovery::settle`, called by the server once it stops taking requests).
    let app = spawn_app().await;
    app.register("alice").await;
    let origin = portcullis::audit::Origin::default();
    app.state
        .recovery
        .request_reset(&origin, "alice@example.com")
        .await
        .unwrap();
    app.state.recovery.settle().await;
    let mails = mails_to(&app, "alice@example.com").await;
    assert!(
        mails.iter().any(|m| m.kind == "password_reset"),
        "{:?}",
        mails.iter().map(|m| &m.kind).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_new_confirmation_link_is_mailed_on_request_and_only_to_an_unconfirmed_address() {
    let app = spawn_app_with(|raw| raw.require_verified_email = true).await;
    app.register("alice").await;
    let first = token_in(&mail(&app, "alice@example.com", "verify_email").await);
    let ask = |email: &'static str| {
        let app = &app;
        async move { post(app, "/api/v1/email-verification", json!({"email": email})).await }
    };
    let verify_mails = || async {
        app.state.recovery.settle().await;
        mails_to(&app, "alice@example.com")
            .await
            .into_iter()
            .filter(|m| m.kind == "verify_email")
            .collect::<Vec<_>>()
    };
    // Known and unknown addresses: the same answer.
    let known = ask("alice@example.com").await;
    let unknown = ask("nobody@example.com").await;
    assert_eq!(known.status, StatusCode::ACCEPTED, "{}", known.body);
    assert_eq!(known.body, json!({"status": "verification_requested"}));
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    let mails = verify_mails().await;
    assert_eq!(mails.len(), 2);
    assert!(mails_to(&app, "nobody@example.com").await.is_empty());
    // The new link voids the first; it confirms, and the account signs in.
    let second = token_in(mails.last().unwrap());
    assert_eq!(
        confirm_link(&app, &first).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        confirm_link(&app, &second).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.password_grant("alice", "openid").await.status,
        StatusCode::OK
    );
    // Confirmed: asking again mails nothing.
    assert_eq!(ask("alice@example.com").await.status, StatusCode::ACCEPTED);
    assert_eq!(verify_mails().await.len(), 2);
}

#[tokio::test]
async fn the_sign_in_page_leads_to_a_form_for_a_new_confirmation_link() {
    use super::browser_support::{Browser, authorize_url, pkce};
    use super::helpers::CODE_APP_CB;
    let app = spawn_app().await;
    app.code_app().await;
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    let start = browser
        .get(&authorize_url(&[
            ("response_type", "code"),
            ("client_id", "app"),
            ("redirect_uri", CODE_APP_CB),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]))
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let login = browser.get(start.location.as_deref().unwrap()).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("href=\"/ui/email/resend\""),
        "{}",
        login.body
    );
    let page = browser.get("/ui/email/resend").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("action=\"/ui/email/resend\""),
        "{}",
        page.body
    );
    let csrf = page.input("csrf_token").unwrap();
    let sent = browser
        .post(
            "/ui/email/resend",
            &[("csrf_token", &csrf), ("email", "nobody@example.com")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(
        sent.body.contains("a new link is on its way"),
        "{}",
        sent.body
    );
    let forged = browser
        .post("/ui/email/resend", &[("email", "nobody@example.com")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}
