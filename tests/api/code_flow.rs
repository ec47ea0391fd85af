//! The authorization-code flow with PKCE through the hosted pages (RFC 6749 §4.1, RFC 7636,
//! OIDC Core §3.1, RFC 9207), and the attacks of RFC 9700 it must refuse.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;

use super::browser_support::{Browser, Page, authorize_url, pkce};
use super::helpers::{Answer, TestApp, jwt_part, spawn_app};
use portcullis::clients::{GrantType, NewClient};
use portcullis::domain::{ClientId, Scope};
use portcullis::oauth::authorize::{Found, Lookup};
use portcullis::signins::{NewSignIn, SignInError, SignInKind};

const CB: &str = "http://127.0.0.1:9/cb";
const BYE: &str = "http://127.0.0.1:9/bye";

/// A code-flow client: public unless `secret`, third-party unless `first_party`.
async fn code_client(app: &TestApp, id: &str, secret: Option<&str>, first_party: bool) {
    app.state
        .clients
        .create(NewClient {
            client_id: ClientId::parse(id).unwrap(),
            name: format!("{id} app"),
            secret: secret.map(|s| Some(secrecy::SecretString::from(s.to_string()))),
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: Scope::parse("openid profile email articles:read").unwrap(),
            default_scopes: None,
            audiences: vec![],
            redirect_uris: vec![CB.to_string()],
            post_logout_redirect_uris: vec![BYE.to_string()],
            first_party,
        })
        .await
        .unwrap();
}

struct Flow {
    verifier: String,
    state: String,
    nonce: String,
    query: String,
}

fn flow(client_id: &str) -> Flow {
    let (verifier, challenge) = pkce();
    let state = format!("st-{}", uuid::Uuid::new_v4().simple());
    let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
    let query = authorize_url(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CB),
        ("scope", "openid profile email"),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    Flow {
        verifier,
        state,
        nonce,
        query,
    }
}

/// Signs `username` in through the pages and consents when asked; returns the redirect.
async fn authorize(browser: &mut Browser<'_>, flow: &Flow, username: &str) -> Page {
    let first = browser.get(&flow.query).await;
    let mut page = if first
        .location
        .as_deref()
        .is_some_and(|l| l.starts_with("/ui/login"))
    {
        let back = browser.sign_in_at(&first, username).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        browser.get(back.location.as_deref().unwrap()).await
    } else {
        first
    };
    if page.status == StatusCode::OK {
        page = browser.consent(&page, "allow").await;
    }
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    page
}

async fn redeem(app: &TestApp, client_id: &str, code: &str, verifier: &str) -> Answer {
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", CB),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn signed_in(
    app: &TestApp,
    browser: &mut Browser<'_>,
    client: &str,
    user: &str,
) -> (Flow, Answer) {
    let f = flow(client);
    let back = authorize(browser, &f, user).await;
    let code = back.redirect_param("code").expect("a code");
    let answer = redeem(app, client, &code, &f.verifier).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    (f, answer)
}

#[tokio::test]
async fn the_code_flow_signs_in_consents_once_and_issues_oidc_tokens() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, false).await;
    let mut browser = Browser::new(&app);
    let f = flow("spa");

    // Not signed in: the sign-in page, then the consent page naming the scopes.
    let first = browser.get(&f.query).await;
    let back = browser.sign_in_at(&first, "alice").await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let consent = browser.get(back.location.as_deref().unwrap()).await;
    assert_eq!(consent.status, StatusCode::OK);
    assert!(consent.body.contains("spa app"), "{}", consent.body);
    let done = browser.consent(&consent, "allow").await;
    let location = done.location.clone().unwrap();
    assert!(location.starts_with(&format!("{CB}?")), "{location}");
    assert_eq!(
        done.redirect_param("state").as_deref(),
        Some(f.state.as_str())
    );
    assert_eq!(
        done.redirect_param("iss").as_deref(),
        Some(app.base.as_str())
    );
    let code = done.redirect_param("code").unwrap();

    let tokens = redeem(&app, "spa", &code, &f.verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let access = tokens.str("access_token");
    let id = jwt_part(&tokens.str("id_token"), 1);
    assert_eq!(id["nonce"], f.nonce.as_str());
    assert_eq!(id["aud"], "spa");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id["auth_time"].as_i64().unwrap() > 0);
    // at_hash: left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
    let digest = ring::digest::digest(&ring::digest::SHA256, access.as_bytes());
    let half = &digest.as_ref()[..16];
    use base64::Engine;
    let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half);
    assert_eq!(id["at_hash"], expected.as_str());
    // The ID token's sid is the browser session; the access token's sid is this client's
    // sign-in within it.
    let at = jwt_part(&access, 1);
    assert!(id["sid"].is_string() && at["sid"].is_string());
    assert_eq!(at["amr"], serde_json::json!(["pwd"]));
    assert!(tokens.body["refresh_token"].is_string());
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &access).await.status,
        StatusCode::OK
    );
    let refreshed = app.refresh_with("spa", &tokens.str("refresh_token")).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    assert_eq!(jwt_part(&refreshed.str("id_token"), 1)["sid"], id["sid"]);

    // Consent is remembered: the next request goes straight back with a code.
    let again = flow("spa");
    let direct = browser.get(&again.query).await;
    assert_eq!(direct.status, StatusCode::SEE_OTHER, "{}", direct.body);
    assert!(direct.redirect_param("code").is_some());

    // The sign-in and the consent are audited.
    let events: Vec<String> = sqlx_free_events(&app).await;
    assert!(events.iter().any(|e| e == "consent.granted"), "{events:?}");
}

/// The audit event types recorded so far.
async fn sqlx_free_events(app: &TestApp) -> Vec<String> {
    app.state
        .audit
        .list(&Default::default(), None, 500)
        .await
        .unwrap()
        .0
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[tokio::test]
async fn a_first_party_client_is_not_asked_for_consent() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "own", None, true).await;
    let mut browser = Browser::new(&app);
    let f = flow("own");
    let first = browser.get(&f.query).await;
    let back = browser.sign_in_at(&first, "alice").await;
    let done = browser.get(back.location.as_deref().unwrap()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(done.redirect_param("code").is_some());
}

#[tokio::test]
async fn a_code_redeemed_twice_ends_what_the_first_redemption_got() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let f = flow("spa");
    let back = authorize(&mut browser, &f, "alice").await;
    let code = back.redirect_param("code").unwrap();
    let first = redeem(&app, "spa", &code, &f.verifier).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = redeem(&app, "spa", &code, &f.verifier).await;
    second.assert_oauth_error(400, "invalid_grant");
    // RFC 6749 §4.1.2: what the first redemption produced is revoked.
    let me = app
        .get_bearer("/api/v1/users/me", &first.str("access_token"))
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{}", me.body);
    app.refresh_with("spa", &first.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let events = sqlx_free_events(&app).await;
    assert!(
        events.iter().any(|e| e == "token.code_replay_detected"),
        "{events:?}"
    );
}

/// A code authorized for alice (signed in by `browser`, or signing in now) at "spa", with its
/// flow (the PKCE verifier).
async fn spa_code(browser: &mut Browser<'_>) -> (Flow, String) {
    let f = flow("spa");
    let code = authorize(browser, &f, "alice")
        .await
        .redirect_param("code")
        .expect("a code");
    (f, code)
}

/// A code authorized for alice at "spa", as the token endpoint reads it before its claim.
async fn fresh_code(app: &TestApp, browser: &mut Browser<'_>) -> (String, Flow, Box<Found>) {
    let (f, code) = spa_code(browser).await;
    let Lookup::Fresh(found) = app.state.codes.find(&code, "spa").await.unwrap() else {
        panic!("a fresh code");
    };
    (code, f, found)
}

#[tokio::test]
async fn a_code_is_claimed_only_together_with_the_sign_in_it_starts() {
    // The exchange reads the code, checks it and mints, then claims the code and records its
    // sign-in in one transaction: a redemption whose claim loses (to another redemption, or
    // to the clock) records nothing, and a claimed code always has its sign-in for a replay
    // to end.
    let app = spawn_app().await;
    let user_id = app.register("alice").await.str("id");
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let record = |found: Box<Found>| {
        let (app, user_id) = (&app, user_id.clone());
        async move {
            let access_version = app.state.users.get(&user_id).await.unwrap().access_version;
            let recorded = app
                .state
                .sign_ins
                .record(&NewSignIn {
                    id: &found.family_id,
                    kind: SignInKind::Code,
                    user_id: &user_id,
                    access_version,
                    client_id: "spa",
                    scope: "openid",
                    audience: None,
                    with_refresh_token: true,
                    session_id: Some(&found.grant.session_id),
                    auth_time: found.grant.auth_time,
                    amr: "pwd",
                    ip: None,
                    user_agent: None,
                    expires_at: None,
                    cookie_digest: None,
                    code: Some(&found.digest),
                })
                .await;
            let open = app
                .state
                .refresh
                .open_family(&found.family_id)
                .await
                .unwrap();
            (recorded, open.is_some(), found.family_id)
        }
    };

    // Another redemption of the code wins between this one's read and its claim.
    let (code, f, found) = fresh_code(&app, &mut browser).await;
    let winner = redeem(&app, "spa", &code, &f.verifier).await;
    assert_eq!(winner.status, StatusCode::OK, "{}", winner.body);
    let (late, recorded, _) = record(found).await;
    assert!(matches!(late, Err(SignInError::CodeTaken)), "{late:?}");
    assert!(!recorded);
    let me = app
        .get_bearer("/api/v1/users/me", &winner.str("access_token"))
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);

    // Read within its minute, claimed after it.
    let (_, _, found) = fresh_code(&app, &mut browser).await;
    app.clock.advance(61);
    let (late, recorded, _) = record(found).await;
    assert!(matches!(late, Err(SignInError::CodeTaken)), "{late:?}");
    assert!(!recorded);

    // Claimed in time: recorded, and a later presentation is the replay of that sign-in.
    let (code, _, found) = fresh_code(&app, &mut browser).await;
    let (issued, recorded, family_id) = record(found).await;
    assert!(issued.unwrap().is_some());
    assert!(recorded);
    match app.state.codes.find(&code, "spa").await.unwrap() {
        Lookup::Replayed {
            family_id: Some(id),
        } => assert_eq!(id, family_id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_redemption_that_loses_the_claim_ends_what_the_winner_got() {
    // Two redemptions of one code both read it fresh and mint; the code's row is held (as by
    // a slow writer) so that both reach the claim before either commits. One wins; the other
    // finds the code taken, which is a replay: what the winner got is ended.
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (f, code) = spa_code(&mut browser).await;
    let db = &app.state.db;
    let held = portcullis::db::begin_write(db).await.unwrap();
    held.execute_raw(sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "UPDATE authorization_codes SET replayed_at = replayed_at WHERE digest = {}",
            portcullis::db::first_placeholder(db)
        ),
        [portcullis::crypto::secret_digest(&code).into()],
    ))
    .await
    .unwrap();
    let (a, b, ()) = tokio::join!(
        redeem(&app, "spa", &code, &f.verifier),
        redeem(&app, "spa", &code, &f.verifier),
        async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            held.commit().await.unwrap();
        }
    );
    let (won, lost) = if a.status == StatusCode::OK {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(won.status, StatusCode::OK, "{}", won.body);
    lost.assert_oauth_error(400, "invalid_grant");
    let me = app
        .get_bearer("/api/v1/users/me", &won.str("access_token"))
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{}", me.body);
    let events = sqlx_free_events(&app).await;
    assert!(
        events.iter().any(|e| e == "token.code_replay_detected"),
        "{events:?}"
    );
}

#[tokio::test]
async fn codes_expire_after_a_minute_and_belong_to_their_client() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    code_client(&app, "other", None, true).await;
    let mut browser = Browser::new(&app);

    // Another client cannot redeem it, and cannot burn it for its owner either.
    let (f, code) = spa_code(&mut browser).await;
    redeem(&app, "other", &code, &f.verifier)
        .await
        .assert_oauth_error(400, "invalid_grant");
    assert_eq!(
        redeem(&app, "spa", &code, &f.verifier).await.status,
        StatusCode::OK
    );

    // A minute later a code is dead.
    let (f, code) = spa_code(&mut browser).await;
    app.clock.advance(61);
    redeem(&app, "spa", &code, &f.verifier)
        .await
        .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn pkce_is_required_for_public_clients_s256_only_and_checked() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    code_client(&app, "web", Some(&"w".repeat(40)), true).await;
    let mut browser = Browser::new(&app);
    // Sign in once.
    let f = flow("spa");
    authorize(&mut browser, &f, "alice").await;

    let base = |client: &str| {
        vec![
            ("response_type", "code".to_string()),
            ("client_id", client.to_string()),
            ("redirect_uri", CB.to_string()),
            ("scope", "openid".to_string()),
            ("state", "s1".to_string()),
        ]
    };
    let ask = |params: Vec<(&'static str, String)>| {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        authorize_url(&p)
    };
    // Public client without a challenge: refused, sent back to the client with its state.
    let page = browser.get(&ask(base("spa"))).await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(page.redirect_param("state").as_deref(), Some("s1"));
    assert_eq!(
        page.redirect_param("iss").as_deref(),
        Some(app.base.as_str())
    );
    // `plain`, and a missing method (which means plain), are refused.
    let (_, challenge) = pkce();
    for method in [Some("plain"), None] {
        let mut p = base("spa");
        p.push(("code_challenge", challenge.clone()));
        if let Some(m) = method {
            p.push(("code_challenge_method", m.to_string()));
        }
        let page = browser.get(&ask(p)).await;
        assert_eq!(
            page.redirect_param("error").as_deref(),
            Some("invalid_request"),
            "{method:?}"
        );
    }

    // Wrong verifier, and no verifier, are refused at the token endpoint.
    for verifier in [Some("x".repeat(43)), None] {
        let (f, code) = spa_code(&mut browser).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code.as_str()),
            ("redirect_uri", CB),
        ];
        if let Some(v) = &verifier {
            form.push(("code_verifier", v.as_str()));
        }
        app.post_form("/oauth/token", &form)
            .await
            .assert_oauth_error(400, "invalid_grant");
        // Refused without spending the code: its owner, with the right verifier, still can.
        assert_eq!(
            redeem(&app, "spa", &code, &f.verifier).await.status,
            StatusCode::OK
        );
    }

    // A confidential client may go without PKCE, but a verifier sent for a code issued
    // without a challenge is a downgrade (RFC 9700 §4.8.2).
    let page = browser.get(&ask(base("web"))).await;
    let code = page
        .redirect_param("code")
        .expect("no PKCE is fine for a confidential client");
    let web = super::helpers::Confidential {
        id: "web".into(),
        secret: "w".repeat(40),
    };
    let answer = app
        .post_form_basic(
            "/oauth/token",
            &web,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CB),
                ("code_verifier", &"v".repeat(43)),
            ],
        )
        .await;
    answer.assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn redirect_uris_match_exactly_or_nothing_is_sent_anywhere() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, challenge) = pkce();
    let attempts = [
        ("prefix", "http://127.0.0.1:9/c"),
        ("suffix", "http://127.0.0.1:9/cb/evil"),
        ("extra query", "http://127.0.0.1:9/cb?next=evil"),
        ("path traversal", "http://127.0.0.1:9/cb/../evil"),
        ("encoded traversal", "http://127.0.0.1:9/cb/%2e%2e/evil"),
        ("other host", "http://evil.example/cb"),
        ("userinfo", "http://127.0.0.1:9@evil.example/cb"),
        ("userinfo before host", "http://evil@127.0.0.1:9/cb"),
        ("other port", "http://127.0.0.1:10/cb"),
        ("other scheme", "https://127.0.0.1:9/cb"),
        ("trailing slash", "http://127.0.0.1:9/cb/"),
        ("fragment", "http://127.0.0.1:9/cb#x"),
        ("upper case", "HTTP://127.0.0.1:9/cb"),
        ("not a URL", "cb"),
    ];
    for (name, uri) in attempts {
        let page = browser
            .get(&authorize_url(&[
                ("response_type", "code"),
                ("client_id", "spa"),
                ("redirect_uri", uri),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ]))
            .await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            page.body
        );
        assert!(page.location.is_none(), "{name}: redirected");
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{name}"
        );
    }
    // Unknown client, missing or repeated redirect_uri: a page too.
    for query in [
        "/oauth/authorize?response_type=code&client_id=nobody&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb",
        "/oauth/authorize?response_type=code&client_id=spa",
        "/oauth/authorize?response_type=code&client_id=spa&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb&redirect_uri=http%3A%2F%2Fevil.example%2Fcb",
    ] {
        let page = browser.get(query).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.location.is_none(), "{query}");
    }
    // And at the token endpoint the redirect URI must be the one of the request.
    let (f, code) = spa_code(&mut browser).await;
    app.post_form(
        "/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb/"),
            ("code_verifier", &f.verifier),
        ],
    )
    .await
    .assert_oauth_error(400, "invalid_grant");
}

#[tokio::test]
async fn prompt_none_login_and_max_age_behave_as_openid_connect_says() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, false).await;
    let mut browser = Browser::new(&app);
    let with = |f: &Flow, extra: &str| format!("{}&{extra}", f.query);

    // No session: prompt=none answers login_required to the client.
    let f = flow("spa");
    let page = browser.get(&with(&f, "prompt=none")).await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );
    assert_eq!(
        page.redirect_param("state").as_deref(),
        Some(f.state.as_str())
    );

    // Signed in but not consented: consent_required.
    let first = browser.get(&f.query).await;
    let back = browser.sign_in_at(&first, "alice").await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let page = browser.get(&with(&f, "prompt=none")).await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("consent_required")
    );

    // Consented: prompt=none gets a code without any page.
    let consent = browser.get(&f.query).await;
    browser.consent(&consent, "allow").await;
    let page = browser.get(&with(&flow("spa"), "prompt=none")).await;
    assert!(page.redirect_param("code").is_some(), "{:?}", page.location);

    // prompt=login and max_age=0 ask for the password again; after it, the request goes on.
    for extra in ["prompt=login", "max_age=0"] {
        app.clock.advance(2);
        let page = browser.get(&with(&flow("spa"), extra)).await;
        assert!(
            page.location
                .as_deref()
                .is_some_and(|l| l.starts_with("/ui/login")),
            "{extra}: {:?}",
            page.location
        );
        let back = browser.sign_in_at(&page, "alice").await;
        // Even a second later, the request resumes with a code (the sign-in satisfied it).
        app.clock.advance(1);
        let done = browser.get(back.location.as_deref().unwrap()).await;
        assert!(
            done.redirect_param("code").is_some(),
            "{extra}: {:?}",
            done.location
        );
    }

    // Denied consent: access_denied.
    let mut other = Browser::new(&app);
    let f = flow("spa");
    let first = other.get(&format!("{}&prompt=consent", f.query)).await;
    let back = other.sign_in_at(&first, "alice").await;
    let consent = other.get(back.location.as_deref().unwrap()).await;
    let denied = other.consent(&consent, "deny").await;
    assert_eq!(
        denied.redirect_param("error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        denied.redirect_param("iss").as_deref(),
        Some(app.base.as_str())
    );
}

#[tokio::test]
async fn sign_in_forms_refuse_cross_site_posts_and_wrong_passwords_alike() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let f = flow("spa");
    let mut browser = Browser::new(&app);
    let first = browser.get(&f.query).await;
    let login = browser.get(first.location.as_deref().unwrap()).await;
    // Clickjacking and leak protection on the page.
    let csp = login.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(login.header("x-frame-options"), Some("DENY"));
    assert_eq!(login.header("referrer-policy"), Some("no-referrer"));
    let csrf = login.input("csrf_token").unwrap();
    let return_to = login.input("return_to").unwrap();
    let form = |csrf: &str, password: &str| {
        vec![
            ("csrf_token".to_string(), csrf.to_string()),
            ("return_to".to_string(), return_to.clone()),
            ("username".to_string(), "alice".to_string()),
            ("password".to_string(), password.to_string()),
        ]
    };
    let password = super::helpers::PASSWORD;
    // No token; another browser's token; a foreign Origin: all refused, nobody signed in.
    let none = post(&mut browser, form("", password), Some(app.base.clone())).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    let mut stranger = Browser::new(&app);
    let theirs = stranger.get(first.location.as_deref().unwrap()).await;
    let their_csrf = theirs.input("csrf_token").unwrap();
    assert_ne!(their_csrf, csrf);
    let foreign = post(
        &mut browser,
        form(&their_csrf, password),
        Some(app.base.clone()),
    )
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let cross = post(
        &mut browser,
        form(&csrf, password),
        Some("http://evil.example".into()),
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    // `Origin: null` (what browsers send under `Referrer-Policy: no-referrer`) from a
    // cross-site page: its Fetch Metadata gives it away.
    let refs = form(&csrf, password);
    let refs: Vec<(&str, &str)> = refs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = app
        .http
        .post(app.url("/ui/login"))
        .header("cookie", browser.cookie_header())
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .form(&refs)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(!browser.cookies.keys().any(|k| k.contains("session")));

    // A wrong password and an unknown user get the same page.
    let wrong = post(
        &mut browser,
        form(&csrf, "not the password at all"),
        Some(app.base.clone()),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong
            .body
            .contains("The username or password is incorrect.")
    );
    let mut unknown_form = form(&csrf, password);
    unknown_form[2].1 = "nobody".into();
    let unknown = post(&mut browser, unknown_form, Some(app.base.clone())).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        strip_values(&unknown.body).replace("nobody", "alice"),
        strip_values(&wrong.body)
    );
    // The right one signs in and sets an HttpOnly, SameSite session cookie.
    let ok = post(&mut browser, form(&csrf, password), Some(app.base.clone())).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let set = ok.header("set-cookie").unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
}

async fn post(b: &mut Browser<'_>, fields: Vec<(String, String)>, origin: Option<String>) -> Page {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    b.post_from("/ui/login", &refs, origin.as_deref()).await
}

/// A page without its per-browser values (CSRF token), to compare two pages.
fn strip_values(body: &str) -> String {
    body.lines()
        .filter(|l| !l.contains("csrf_token"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn logout_ends_the_session_and_its_tokens_and_never_redirects_elsewhere() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let id_token = tokens.str("id_token");

    // An unregistered post-logout URI: an error page, no redirect (open redirect).
    let evil = authorize_url(&[]).replace(
        "/oauth/authorize?",
        &format!(
            "/oauth/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}",
            "http%3A%2F%2Fevil.example%2F"
        ),
    );
    let page = browser.get(&evil).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.location.is_none());
    // Without a hint, a confirmation page (a cross-site link cannot sign anyone out).
    let page = browser.get("/oauth/end_session").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("action=\"/oauth/end_session\""));
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &tokens.str("access_token"))
            .await
            .status,
        StatusCode::OK
    );

    // A valid hint and a registered URI: signed out at once, back to the client with state.
    let logout = format!(
        "/oauth/end_session?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye-1",
        "http%3A%2F%2F127.0.0.1%3A9%2Fbye"
    );
    let page = browser.get(&logout).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        page.location.as_deref(),
        Some("http://127.0.0.1:9/bye?state=bye-1")
    );
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &tokens.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.refresh_with("spa", &tokens.str("refresh_token"))
        .await
        .assert_oauth_error(400, "invalid_grant");
    let page = browser
        .get(&format!("{}&prompt=none", flow("spa").query))
        .await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn the_confirmed_logout_form_signs_out() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let page = browser.get("/oauth/end_session").await;
    let csrf = page.input("csrf_token").unwrap();
    // Without the form's token: refused.
    let forged = browser
        .post("/oauth/end_session", &[("csrf_token", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let done = browser
        .post("/oauth/end_session", &[("csrf_token", &csrf)])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("signed out"), "{}", done.body);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &tokens.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sessions_are_listed_and_ended_by_their_user_and_by_administrators() {
    let app = spawn_app().await;
    app.register("alice").await;
    app.register("bob").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let access = tokens.str("access_token");
    // A password-grant sign-in of the same user is listed too.
    let pw = app.password_grant("alice", "openid profile").await;
    assert_eq!(pw.status, StatusCode::OK);

    let list = app.get_bearer("/api/v1/users/me/sessions", &access).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{}", list.body);
    let browser_item = items.iter().find(|i| i["method"] == "browser").unwrap();
    assert_eq!(browser_item["current"], true);
    assert_eq!(browser_item["clients"], serde_json::json!(["spa"]));
    assert_eq!(
        browser_item["id"],
        jwt_part(&tokens.str("id_token"), 1)["sid"]
    );
    let pw_item = items.iter().find(|i| i["method"] == "password").unwrap();
    assert_eq!(pw_item["current"], false);

    // Bob cannot end Alice's session.
    let bob = app
        .password_grant("bob", "openid profile")
        .await
        .str("access_token");
    let id = browser_item["id"].as_str().unwrap();
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/users/me/sessions/{id}")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &access).await.status,
        StatusCode::OK
    );

    // Alice ends the password sign-in from the browser's token; then the browser session.
    let pw_id = pw_item["id"].as_str().unwrap();
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/users/me/sessions/{pw_id}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &pw.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let resp = app
        .http
        .delete(app.url(&format!("/api/v1/users/me/sessions/{id}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The browser needs to sign in again.
    let page = browser
        .get(&format!("{}&prompt=none", flow("spa").query))
        .await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn withdrawing_consent_asks_again_and_ends_the_clients_tokens() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, false).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let access = tokens.str("access_token");
    let consents = app.get_bearer("/api/v1/users/me/consents", &access).await;
    assert_eq!(
        consents.body["items"][0]["client_id"], "spa",
        "{}",
        consents.body
    );
    let resp = app
        .http
        .delete(app.url("/api/v1/users/me/consents/spa"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let page = browser.get(&flow("spa").query).await;
    assert_eq!(page.status, StatusCode::OK, "consent is asked again");
    assert!(page.body.contains("action=\"/ui/consent\""));
}

#[tokio::test]
async fn disabling_the_user_ends_browser_sessions_too() {
    let app = spawn_app().await;
    let id = app.register("alice").await.str("id");
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    app.state.sign_ins.end_all(&id, "test").await.unwrap();
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &tokens.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let page = browser
        .get(&format!("{}&prompt=none", flow("spa").query))
        .await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn of_concurrent_redemptions_of_a_code_exactly_one_wins() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (f, code) = spa_code(&mut browser).await;
    let (a, b, c, d) = tokio::join!(
        redeem(&app, "spa", &code, &f.verifier),
        redeem(&app, "spa", &code, &f.verifier),
        redeem(&app, "spa", &code, &f.verifier),
        redeem(&app, "spa", &code, &f.verifier),
    );
    let answers = [a, b, c, d];
    let won: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .collect();
    assert!(won.len() <= 1, "{} redemptions won", won.len());
    for a in answers.iter().filter(|a| a.status != StatusCode::OK) {
        a.assert_oauth_error(400, "invalid_grant");
    }
    // Whatever a winner got is ended by the replays that followed it.
    for a in won {
        assert_eq!(
            app.get_bearer("/api/v1/users/me", &a.str("access_token"))
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_browser_session_needs_a_new_sign_in_when_idle_or_too_old() {
    let app = spawn_app().await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let none = |f: Flow| format!("{}&prompt=none", f.query);

    // Used within the idle timeout (1 h): still signed in, and each use starts it again.
    for _ in 0..2 {
        app.clock.advance(50 * 60);
        let page = browser.get(&none(flow("spa"))).await;
        assert!(page.redirect_param("code").is_some(), "{:?}", page.location);
    }
    // Unused for longer: a new sign-in is needed.
    app.clock.advance(61 * 60);
    let page = browser.get(&none(flow("spa"))).await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );

    // The lifetime (12 h) bounds the refresh tokens of the apps signed in through it.
    let mut browser = Browser::new(&app);
    let (_, tokens2) = signed_in(&app, &mut browser, "spa", "alice").await;
    let mut refresh = tokens2.str("refresh_token");
    // Refreshing keeps the apps going for the whole lifetime (past the idle timeout)…
    for _ in 0..13 {
        app.clock.advance(55 * 60);
        let answer = app.refresh_with("spa", &refresh).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        refresh = answer.str("refresh_token");
    }
    // …and not a moment longer.
    app.clock.advance(10 * 60);
    app.refresh_with("spa", &refresh)
        .await
        .assert_oauth_error(400, "invalid_grant");
    drop(tokens);
}

#[tokio::test]
async fn administrators_list_and_end_a_users_sessions() {
    let app = spawn_app().await;
    app.register("alice").await;
    super::helpers::user_with_roles(&app, "root", &["admin"]).await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let (_, tokens) = signed_in(&app, &mut browser, "spa", "alice").await;
    let alice = jwt_part(&tokens.str("access_token"), 1)["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = app
        .password_grant("root", "users:read users:admin")
        .await
        .str("access_token");
    let reader = app
        .password_grant("alice", "openid profile")
        .await
        .str("access_token");
    let path = format!("/api/v1/admin/users/{alice}/sessions");

    // An ordinary user may not.
    assert_eq!(
        app.get_bearer(&path, &reader).await.status,
        StatusCode::FORBIDDEN
    );
    let list = app.get_bearer(&path, &admin).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        list.body
    );
    let resp = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/api/v1/users/me", &tokens.str("access_token"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_bearer(&path, &admin).await.body["items"],
        serde_json::json!([])
    );
    let page = browser
        .get(&format!("{}&prompt=none", flow("spa").query))
        .await;
    assert_eq!(
        page.redirect_param("error").as_deref(),
        Some("login_required")
    );
}

#[tokio::test]
async fn a_locked_account_gets_the_same_answer_on_the_sign_in_page() {
    let app = super::helpers::spawn_app_with(|raw| raw.lockout_threshold = 3).await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let first = browser.get(&flow("spa").query).await;
    let login = browser.get(first.location.as_deref().unwrap()).await;
    let csrf = login.input("csrf_token").unwrap();
    let return_to = login.input("return_to").unwrap();
    let attempt = |password: &'static str| {
        vec![
            ("csrf_token".to_string(), csrf.clone()),
            ("return_to".to_string(), return_to.clone()),
            ("username".to_string(), "alice".to_string()),
            ("password".to_string(), password.to_string()),
        ]
    };
    for _ in 0..3 {
        let page = post(&mut browser, attempt("wrong password here"), None).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
    }
    // Locked now: the right password gets the very same answer, and no session.
    let page = post(&mut browser, attempt(super::helpers::PASSWORD), None).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("The username or password is incorrect."));
    assert!(!browser.cookies.keys().any(|k| k.contains("session")));
}

#[tokio::test]
async fn the_purge_keeps_a_browser_session_for_its_whole_idle_timeout() {
    let app = super::helpers::spawn_app_with(|raw| {
        raw.session_idle_timeout = portcullis::config::DurationSetting::Text("8h".into());
    })
    .await;
    app.register("alice").await;
    code_client(&app, "spa", None, true).await;
    let mut browser = Browser::new(&app);
    let f = flow("spa");
    let first = browser.get(&f.query).await;
    browser.sign_in_at(&first, "alice").await;
    // Idle for longer than the purge's grace, shorter than the idle timeout.
    app.clock.advance(3 * 3600);
    app.state.refresh.purge_expired().await.unwrap();
    let page = browser
        .get(&format!("{}&prompt=none", flow("spa").query))
        .await;
    assert!(page.redirect_param("code").is_some(), "{:?}", page.location);
}
