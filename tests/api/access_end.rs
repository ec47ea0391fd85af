//! Ending a user's access reaches every token: whatever grant or client issued it, whichever
//! path ends it (admin API, command line), on the embedded default and with Redis. And the
//! administrative permissions are re-checked against the database on every use.

use std::process::Command;
use std::time::Duration;

use portcullis::clients::GrantType;
use portcullis::signins::{NewSignIn, SignInError, SignInKind, SignIns};
use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;

use super::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const ADMIN_SCOPES: &str = "openid profile email articles:read articles:write articles:delete users:read users:admin clients:admin audit:read keys:admin webhooks:admin";

/// A password sign-in of `user_id` at the SPA client, as the grant would record it, without a
/// refresh token; tests change the fields they are about.
fn sign_in<'a>(sid: &'a str, user_id: &'a str, access_version: i64) -> NewSignIn<'a> {
    NewSignIn {
        id: sid,
        user_id,
        access_version,
        client_id: SPA,
        scope: "openid",
        audience: None,
        with_refresh_token: false,
        kind: SignInKind::Password,
        session_id: None,
        auth_time: 0,
        amr: "pwd",
        ip: None,
        user_agent: None,
        expires_at: None,
        cookie_digest: None,
        code: None,
    }
}

/// Records `sign_in` while `ending` (a transaction that ended access, not yet committed) is
/// held, committing it after long enough for the sign-in to reach the rows `ending` wrote.
async fn record_during(
    app: &TestApp,
    sign_in: &NewSignIn<'_>,
    ending: sea_orm::DatabaseTransaction,
) -> Result<Option<portcullis::oauth::refresh::Issued>, SignInError> {
    let (recorded, ()) = tokio::join!(app.state.sign_ins.record(sign_in), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        ending.commit().await.unwrap();
    });
    recorded
}

/// A password grant through a confidential client that has no refresh grant: the answer
/// carries no refresh token, and the access token must still belong to a recorded sign-in.
async fn no_refresh_sign_in(app: &TestApp, client: &Confidential, username: &str) -> String {
    let t = app
        .post_form_basic(
            "/oauth/token",
            client,
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", PASSWORD),
                ("scope", ADMIN_SCOPES),
            ],
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    assert!(t.body.get("refresh_token").is_none(), "{}", t.body);
    t.str("access_token")
}

async fn admin_call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Answer {
    let mut req = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Answer::from(req.send().await.unwrap()).await
}

/// Asserts that Portcullis's own API, userinfo and introspection all refuse `token`.
async fn assert_refused_everywhere(app: &TestApp, rs: &Confidential, token: &str) {
    for path in ["/api/v1/users/me", "/oauth/userinfo", "/api/v1/admin/users"] {
        let a = app.get_bearer(path, token).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.body);
    }
    let i = app.introspect(rs, token).await;
    assert_eq!(i.body, json!({"active": false}), "introspection");
}

#[tokio::test]
async fn a_disabled_and_demoted_admin_cannot_use_a_token_issued_without_refresh() {
    // The review's attack: an admin signs in through a client without the refresh grant,
    // is demoted and disabled, and uses the token to give herself the role back.
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let pw_only = app
        .confidential_client("pw-only", &[GrantType::Password], ADMIN_SCOPES)
        .await;
    let mallory = user_with_roles(&app, "mallory", &["admin"]).await;
    let boss = user_with_roles(&app, "boss", &["admin"]).await;
    let _ = boss;
    let stolen = no_refresh_sign_in(&app, &pw_only, "mallory").await;
    let boss_token = app
        .password_grant("boss", ADMIN_SCOPES)
        .await
        .str("access_token");

    // The token works before.
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &stolen).await.status,
        StatusCode::OK
    );
    let roles = admin_call(
        &app,
        &boss_token,
        reqwest::Method::PUT,
        &format!("/api/v1/admin/users/{mallory}/roles"),
        Some(json!({"roles": ["reader"]})),
    )
    .await;
    assert_eq!(roles.status, StatusCode::OK, "{}", roles.body);
    let disabled = admin_call(
        &app,
        &boss_token,
        reqwest::Method::POST,
        &format!("/api/v1/admin/users/{mallory}/disable"),
        None,
    )
    .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);

    assert_refused_everywhere(&app, &rs, &stolen).await;
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            format!("/api/v1/admin/users/{mallory}/roles"),
            Some(json!({"roles": ["admin"]})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/admin/users/{mallory}/enable"),
            None,
        ),
    ] {
        let a = admin_call(&app, &stolen, method, &path, body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.body);
    }
    let user = app.state.users.get(&mallory).await.unwrap();
    assert!(user.disabled);
    assert_eq!(user.roles, vec!["reader".to_string()]);
}

#[tokio::test]
async fn every_password_sign_in_is_recorded_and_ends_with_the_user() {
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let pw_only = app
        .confidential_client("pw-only", &[GrantType::Password], "openid profile email")
        .await;
    let id = user_with_roles(&app, "carol", &["reader"]).await;
    let token = no_refresh_sign_in(&app, &pw_only, "carol").await;
    let sid = jwt_part(&token, 1)["sid"].as_str().unwrap().to_string();
    let family = app.state.refresh.open_family(&sid).await.unwrap();
    assert_eq!(
        family.map(|f| f.user_id),
        Some(id.clone()),
        "the token's sid names a recorded sign-in of the user"
    );
    let ended = app.state.sign_ins.end_all(&id, "test").await.unwrap();
    assert_eq!(ended, vec![sid]);
    assert_refused_everywhere(&app, &rs, &token).await;
}

#[tokio::test]
async fn a_sign_in_that_read_the_account_before_its_access_ended_is_refused() {
    // The sign-in reads the account (and its roles), then records itself; an ending of the
    // user's access in between must win, or a concurrent sign-in would outlive it.
    let app = spawn_app().await;
    let id = user_with_roles(&app, "dave", &["admin"]).await;
    let record_late = |access_version: i64, with_refresh_token: bool| {
        let (app, id) = (&app, id.clone());
        async move {
            let sid = SignIns::new_id();
            let late = app
                .state
                .sign_ins
                .record(&NewSignIn {
                    with_refresh_token,
                    ..sign_in(&sid, &id, access_version)
                })
                .await;
            assert!(matches!(late, Err(SignInError::UserChanged)), "{late:?}");
            assert!(app.state.refresh.open_family(&sid).await.unwrap().is_none());
        }
    };
    let read = app.state.users.get(&id).await.unwrap();
    app.state.sign_ins.end_all(&id, "test").await.unwrap();
    record_late(read.access_version, true).await;

    // Likewise a disable in between.
    let read = app.state.users.get(&id).await.unwrap();
    app.state.users.set_disabled(&id, true).await.unwrap();
    record_late(read.access_version, false).await;
}

#[tokio::test]
async fn a_sign_in_recorded_while_the_users_access_ends_is_refused() {
    // Ending a user's access raises the account's version and then ends every open sign-in,
    // in one transaction. A sign-in recorded meanwhile must wait for it and then see the new
    // version: had it read the old one and gone ahead, the ending would have missed it.
    let app = spawn_app().await;
    let id = user_with_roles(&app, "frank", &[]).await;
    let read = app.state.users.get(&id).await.unwrap();
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let ending = portcullis::db::begin_write(db).await.unwrap();
    ending
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "UPDATE users SET access_version = access_version + 1 WHERE id = {}",
                portcullis::db::first_placeholder(db)
            ),
            [id.clone().into()],
        ))
        .await
        .unwrap();
    let sid = SignIns::new_id();
    let late = NewSignIn {
        with_refresh_token: true,
        ..sign_in(&sid, &id, read.access_version)
    };
    let recorded = record_during(&app, &late, ending).await;
    assert!(
        matches!(recorded, Err(SignInError::UserChanged)),
        "{recorded:?}"
    );
    assert!(app.state.refresh.open_family(&sid).await.unwrap().is_none());
}

#[tokio::test]
async fn a_sign_in_recorded_while_its_browser_session_ends_is_refused() {
    // Ending a browser session writes its row and then ends its sign-ins, in one transaction.
    // A code sign-in recorded into it meanwhile must wait and then find it ended.
    let app = spawn_app().await;
    let id = user_with_roles(&app, "grace", &[]).await;
    let now = portcullis::clock::Clock::now(&app.clock);
    let access_version = app.state.users.get(&id).await.unwrap().access_version;
    let of_kind = |sid: &'static str, kind: SignInKind, session: Option<&'static str>| NewSignIn {
        kind,
        session_id: session,
        auth_time: now,
        expires_at: (kind == SignInKind::Browser).then_some(now + 600),
        ..sign_in(sid, &id, access_version)
    };
    let session = "7f0c2a4e-session-ending";
    let member = "7f0c2a4e-member-late";
    app.state
        .sign_ins
        .record(&of_kind(session, SignInKind::Browser, None))
        .await
        .unwrap();
    let db = &app.state.db;
    let p = portcullis::db::first_placeholder(db);
    let ending = portcullis::db::begin_write(db).await.unwrap();
    for sql in [
        format!("UPDATE refresh_families SET revoked_at = 1 WHERE id = {p}"),
        format!("UPDATE refresh_families SET revoked_at = 1 WHERE session_id = {p}"),
    ] {
        ending
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                sql,
                [session.into()],
            ))
            .await
            .unwrap();
    }
    let late = of_kind(member, SignInKind::Code, Some(session));
    let recorded = record_during(&app, &late, ending).await;
    assert!(
        matches!(recorded, Err(SignInError::SessionEnded)),
        "{recorded:?}"
    );
    assert!(
        app.state
            .refresh
            .open_family(member)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_sign_in_recorded_into_an_ended_or_expired_browser_session_is_refused() {
    // A code sign-in belongs to the browser session it was authorized in: recorded while
    // the session is open, its refresh tokens end with the session; recorded after the
    // session ended (signed out, or past its end), it is refused and nothing is stored.
    let app = spawn_app().await;
    let id = user_with_roles(&app, "erin", &[]).await;
    let now = portcullis::clock::Clock::now(&app.clock);
    let record = |kind: SignInKind, session: Option<String>, expires_at: Option<i64>| {
        let (app, id) = (&app, id.clone());
        async move {
            let sid = SignIns::new_id();
            let access_version = app.state.users.get(&id).await.unwrap().access_version;
            let recorded = app
                .state
                .sign_ins
                .record(&NewSignIn {
                    with_refresh_token: kind == SignInKind::Code,
                    kind,
                    session_id: session.as_deref(),
                    auth_time: now,
                    expires_at,
                    ..sign_in(&sid, &id, access_version)
                })
                .await;
            let open = app.state.refresh.open_family(&sid).await.unwrap();
            (sid, recorded, open)
        }
    };
    let session_end = now + 600;
    let (session, recorded, open) = record(SignInKind::Browser, None, Some(session_end)).await;
    assert!(matches!(recorded, Ok(None)), "{recorded:?}");
    assert_eq!(open.unwrap().expires_at, Some(session_end));

    // Inside the open session: stored, its refresh token capped at the session's end.
    let (_, recorded, open) = record(SignInKind::Code, Some(session.clone()), None).await;
    let issued = recorded.unwrap().expect("a refresh token");
    assert_eq!(open.unwrap().session_id.as_deref(), Some(session.as_str()));
    let (token, active) = app
        .state
        .refresh
        .inspect(&issued.token)
        .await
        .unwrap()
        .unwrap();
    assert!(active);
    assert_eq!(token.expires_at, session_end);

    // The session signed out: refused, nothing stored.
    assert!(app.state.sign_ins.end(&session, "test").await.unwrap());
    let (_, recorded, open) = record(SignInKind::Code, Some(session), None).await;
    assert!(
        matches!(recorded, Err(SignInError::SessionEnded)),
        "{recorded:?}"
    );
    assert!(open.is_none());

    // A session past its end (not yet swept): refused, nothing stored.
    let (past, recorded, _) = record(SignInKind::Browser, None, Some(now - 1)).await;
    assert!(matches!(recorded, Ok(None)), "{recorded:?}");
    let (_, recorded, open) = record(SignInKind::Code, Some(past), None).await;
    assert!(
        matches!(recorded, Err(SignInError::SessionEnded)),
        "{recorded:?}"
    );
    assert!(open.is_none());
}

#[tokio::test]
async fn administrative_permissions_are_rechecked_against_current_roles() {
    // Roles changed in the database without ending the sign-ins (as if the revocation had not
    // propagated yet): the administrative guard still refuses at once.
    let app = spawn_app().await;
    let id = user_with_roles(&app, "erin", &["admin"]).await;
    let token = app
        .password_grant("erin", ADMIN_SCOPES)
        .await
        .str("access_token");
    for path in [
        "/api/v1/admin/users",
        "/api/v1/admin/clients",
        "/api/v1/admin/audit-events",
    ] {
        assert_eq!(app.get_bearer(path, &token).await.status, StatusCode::OK);
    }
    app.state
        .users
        .set_roles(&id, &["reader".to_string()])
        .await
        .unwrap();
    for path in [
        "/api/v1/admin/users",
        "/api/v1/admin/clients",
        "/api/v1/admin/audit-events",
    ] {
        let a = app.get_bearer(path, &token).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
        assert_eq!(a.body["code"], "permission_revoked", "{}", a.body);
    }
    // Non-administrative permissions are carried by the token until its sign-in ends.
    assert_eq!(
        app.get_bearer("/api/v1/articles", &token).await.status,
        StatusCode::OK
    );
    // A disabled administrator is refused too.
    app.state
        .users
        .set_roles(&id, &["admin".to_string()])
        .await
        .unwrap();
    app.state.users.set_disabled(&id, true).await.unwrap();
    let a = app.get_bearer("/api/v1/admin/users", &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
}

#[tokio::test]
async fn a_client_acting_for_itself_loses_administrative_power_when_its_scopes_shrink() {
    let app = spawn_app().await;
    let ops = app
        .confidential_client("ops", &[GrantType::ClientCredentials], "users:read")
        .await;
    let token = app
        .post_form_basic(
            "/oauth/token",
            &ops,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "users:read"),
            ],
        )
        .await
        .str("access_token");
    assert_eq!(
        app.get_bearer("/api/v1/admin/users", &token).await.status,
        StatusCode::OK
    );
    app.state
        .clients
        .update(
            "ops",
            portcullis::clients::ClientChange {
                scopes: Some(portcullis::domain::Scope::parse("articles:read").unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let a = app.get_bearer("/api/v1/admin/users", &token).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
}

/// Runs the command line against the database (and store) of `app`.
fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(&app.dir)
        .env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_REDIS_URL")
        .env(
            "PORTCULLIS_DATABASE_URL",
            app.raw.database_url.clone().unwrap(),
        )
        .env(
            "PORTCULLIS_KEYS_DIR",
            app.raw.keys_dir.display().to_string(),
        )
        .env("PORTCULLIS_BCRYPT_COST", "4")
        .env("PORTCULLIS_SEED_PUBLIC_CLIENT", "false")
        .env("PORTCULLIS_LOG", "warn");
    if let Some(redis) = &app.raw.redis_url {
        cmd.env("PORTCULLIS_REDIS_URL", redis)
            .env("PORTCULLIS_REDIS_PREFIX", &app.store_prefix);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn sign_ins_ended_by_the_command_line_reach_the_running_server() {
    // On the embedded default the command line cannot reach the server's in-process store:
    // the server picks the ended sign-ins up from the database within its reload interval.
    // With Redis the command line denies them in the shared store at once.
    let app = spawn_app_with(|raw| {
        raw.key_reload_interval = portcullis::config::DurationSetting::Seconds(1);
    })
    .await;
    let rs = app.resource_server().await;
    let pw_only = app
        .confidential_client("pw-only", &[GrantType::Password], ADMIN_SCOPES)
        .await;
    user_with_roles(&app, "frank", &["admin"]).await;
    let without_refresh = no_refresh_sign_in(&app, &pw_only, "frank").await;
    let with_refresh = app.password_grant("frank", ADMIN_SCOPES).await;
    assert_eq!(with_refresh.status, StatusCode::OK, "{}", with_refresh.body);
    let with_refresh_at = with_refresh.str("access_token");

    let out = cli(
        &app,
        &[
            "user",
            "set-roles",
            "--username",
            "frank",
            "--role",
            "reader",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let a = app.get_bearer("/api/v1/users/me", &without_refresh).await;
        let b = app.get_bearer("/api/v1/users/me", &with_refresh_at).await;
        if a.status == StatusCode::UNAUTHORIZED && b.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tokens still accepted after the command line ended the sign-ins: {} {}",
            a.status,
            b.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_refused_everywhere(&app, &rs, &without_refresh).await;
    assert_refused_everywhere(&app, &rs, &with_refresh_at).await;
    let refreshed = app.refresh(&with_refresh.str("refresh_token")).await;
    refreshed.assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn an_instance_refuses_sign_ins_ended_before_it_started() {
    // The sign-in is ended while another instance runs; a new instance (its own in-process
    // store on the embedded default) must refuse the tokens from its first request, before
    // any reload pass.
    let app = spawn_app().await;
    let rs = app.resource_server().await;
    let id = user_with_roles(&app, "gina", &["reader"]).await;
    let token = app
        .password_grant("gina", "openid profile")
        .await
        .str("access_token");
    app.state.sign_ins.end_all(&id, "test").await.unwrap();
    let peer = app.spawn_peer().await;
    let a = peer.get_bearer("/api/v1/users/me", &token).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(
        peer.introspect(&rs, &token).await.body,
        json!({"active": false})
    );
}

#[tokio::test]
async fn a_sign_in_without_refresh_tokens_is_kept_as_long_as_its_access_tokens_live() {
    // The purge removes sign-ins left without refresh tokens, but not while an access token
    // of theirs may still be used: ending the user's access must still find them.
    let app = spawn_app_with(|raw| {
        raw.access_token_ttl = portcullis::config::DurationSetting::Seconds(2 * 3_600);
    })
    .await;
    let pw_only = app
        .confidential_client("pw-only", &[GrantType::Password], "openid profile")
        .await;
    let id = user_with_roles(&app, "hank", &["reader"]).await;
    let t = app
        .post_form_basic(
            "/oauth/token",
            &pw_only,
            &[
                ("grant_type", "password"),
                ("username", "hank"),
                ("password", PASSWORD),
                ("scope", "openid profile"),
            ],
        )
        .await;
    let token = t.str("access_token");
    app.clock.advance(90 * 60);
    app.state.refresh.purge_expired().await.unwrap();
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &token).await.status,
        StatusCode::OK,
        "the token still lives"
    );
    let ended = app.state.sign_ins.end_all(&id, "test").await.unwrap();
    assert_eq!(ended.len(), 1, "the purge kept the sign-in");
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}
