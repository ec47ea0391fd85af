//! Social sign-in: a second Portcullis, started by the test, is the upstream OpenID provider
//! of the first (kind `oidc`, through its discovery document: real codes, real ID tokens, real
//! JWKS); a hostile provider (signing with the upstream's real key whatever claims it likes)
//! checks every part of the ID token's validation; a server answering GitHub's endpoints with
//! the shapes GitHub documents stands in for GitHub. Attacks refused: `state` replayed, from
//! another browser or made up; wrong issuer, audience, nonce, signature, an unsigned or expired
//! ID token; an unverified address matching an account; linking without the account's
//! password; removing the last way to sign in.

use portcullis::clients::{GrantType, NewClient};
use portcullis::config::{DurationSetting, RawSettings};
use portcullis::domain::{ClientId, Email, Password, Scope, Username};
use portcullis::ops::Caller;
use portcullis::upstream::ProviderInput;
use reqwest::{Method, StatusCode};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use super::browser_support::{Browser, Page, authorize_url, pkce};
use super::helpers::*;
use super::recovery::{confirm_link, mail, token_in};

const APP_CB: &str = CODE_APP_CB;
const UPSTREAM_SECRET: &str = "the downstream's secret at the upstream, 32+ chars";

fn quiet(raw: &mut RawSettings) {
    raw.key_reload_interval = DurationSetting::Text("5m".into());
}

struct Fed {
    up: TestApp,
    down: TestApp,
}

/// `down` signs in through `up`: a confidential client at `up` whose redirect URI is
/// `down`'s callback, and the provider `up` at `down`.
async fn federation(allow_signup: bool) -> Fed {
    federation_with(allow_signup, quiet).await
}

/// [`federation`], `down` started with `settings`.
async fn federation_with(allow_signup: bool, settings: fn(&mut RawSettings)) -> Fed {
    let up = spawn_app_with(quiet).await;
    let down = spawn_app_with(settings).await;
    up.state
        .clients
        .create(NewClient {
            client_id: ClientId::parse("downstream").unwrap(),
            name: "Downstream".into(),
            secret: Some(Some(secrecy::SecretString::from(UPSTREAM_SECRET))),
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: Scope::parse("openid profile email").unwrap(),
            default_scopes: None,
            audiences: vec![],
            redirect_uris: vec![format!("{}/ui/upstream/up/callback", down.base)],
            post_logout_redirect_uris: vec![],
            first_party: true,
        })
        .await
        .unwrap();
    down.code_app().await;
    add_provider(&down, "up", "oidc", &up.base, "downstream", allow_signup).await;
    Fed { up, down }
}

async fn add_provider(
    app: &TestApp,
    id: &str,
    kind: &str,
    base: &str,
    client_id: &str,
    allow_signup: bool,
) {
    let github = kind == "github";
    app.state
        .idp_admin
        .create(
            &Caller::operator(),
            ProviderInput {
                id: Some(id.into()),
                kind: Some(kind.into()),
                display_name: Some(format!("{id} accounts")),
                client_id: Some(client_id.into()),
                client_secret: Some(secrecy::SecretString::from(UPSTREAM_SECRET)),
                allow_signup: Some(allow_signup),
                issuer: (!github).then(|| base.to_owned()),
                auth_base_url: github.then(|| base.to_owned()),
                api_base_url: github.then(|| base.to_owned()),
                ..ProviderInput::default()
            },
        )
        .await
        .unwrap();
}

/// A user at `app` with the test password, its address verified or not.
async fn user_at(app: &TestApp, name: &str, verified: bool) -> String {
    let username = Username::parse(name).unwrap();
    let email = Email::parse(&format!("{name}@example.com")).unwrap();
    let password = Password::parse(PASSWORD, &username, &email).unwrap();
    app.state
        .users
        .register(&username, &email, &password, &[], verified)
        .await
        .unwrap()
        .id
}

struct Flow {
    verifier: String,
    nonce: String,
    query: String,
}

fn flow() -> Flow {
    let (verifier, challenge) = pkce();
    let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
    let query = authorize_url(&[
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", APP_CB),
        ("scope", "openid profile email"),
        ("state", "app-state"),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    Flow {
        verifier,
        nonce,
        query,
    }
}

/// From the app's authorization request at `down` to the provider's button: returns the
/// redirect to the upstream.
async fn press_button(down: &mut Browser<'_>, f: &Flow, provider: &str) -> Page {
    let first = down.get(&f.query).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let login = down.get(first.location.as_deref().unwrap()).await;
    assert_eq!(login.status, StatusCode::OK);
    let action = format!("action=\"/ui/upstream/{provider}/start\"");
    assert!(login.body.contains(&action), "{}", login.body);
    let csrf = login.input("csrf_token").unwrap();
    let return_to = login.input("return_to").unwrap();
    let go = down
        .post(
            &format!("/ui/upstream/{provider}/start"),
            &[("csrf_token", &csrf), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.body);
    go
}

/// At the upstream Portcullis: signs in as `username`; returns the redirect to `down`'s
/// callback.
async fn upstream_sign_in(up: &mut Browser<'_>, go: &Page, username: &str) -> String {
    let location = go.location.clone().unwrap();
    assert!(location.starts_with(&up.app.base), "{location}");
    let at_up = up.get(&location).await;
    let back = up.sign_in_at(&at_up, username).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let answer = up.get(back.location.as_deref().unwrap()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer.location.unwrap()
}

/// After the callback signed the user in: resumes the app's request and redeems its code.
async fn tokens(down: &mut Browser<'_>, app: &TestApp, signed: &Page, f: &Flow) -> Answer {
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let resumed = down.get(signed.location.as_deref().unwrap()).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    let code = resumed.redirect_param("code").expect("a code for the app");
    let answer = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("code", &code),
                ("redirect_uri", APP_CB),
                ("code_verifier", &f.verifier),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer
}

/// The whole way through `up` as `username`; returns the callback's answer.
async fn callback_for(
    down: &mut Browser<'_>,
    up: &mut Browser<'_>,
    f: &Flow,
    username: &str,
) -> Page {
    let go = press_button(down, f, "up").await;
    let callback = upstream_sign_in(up, &go, username).await;
    down.get(&callback).await
}

/// A whole sign-in of `username` through `up`, in new browsers, to the app's tokens.
async fn signed_in(fed: &Fed, username: &str) -> Answer {
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let f = flow();
    let signed = callback_for(&mut down, &mut up, &f, username).await;
    tokens(&mut down, &fed.down, &signed, &f).await
}

async fn users(app: &TestApp) -> u64 {
    entities::users::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

async fn identities(app: &TestApp) -> u64 {
    entities::user_identities::Entity::find()
        .count(&app.state.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_signs_in_through_another_portcullis_and_gets_an_account() {
    let fed = federation(true).await;
    user_at(&fed.up, "alice", true).await;
    let before = users(&fed.down).await;
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let f = flow();
    let signed = callback_for(&mut down, &mut up, &f, "alice").await;
    let answer = tokens(&mut down, &fed.down, &signed, &f).await;
    let id = jwt_part(&answer.str("id_token"), 1);
    assert_eq!(id["amr"], json!(["fed"]));
    assert_eq!(id["nonce"], f.nonce.as_str());
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(users(&fed.down).await, before + 1);
    let account = fed
        .down
        .state
        .users
        .get(id["sub"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(account.roles, vec!["reader".to_string()]);
    // No password: the password grant cannot sign in to it.
    fed.down
        .password_grant(&account.username, "openid")
        .await
        .assert_oauth_error(400, "invalid_grant");
    // Listed among the user's identities.
    let listed = fed
        .down
        .get_bearer("/api/v1/users/me/identities", &answer.str("access_token"))
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body[0]["provider_id"], "up");
    assert_eq!(listed.body[0]["email"], "alice@example.com");
    // A second sign-in (a new browser) finds the same account.
    let mut down2 = Browser::new(&fed.down);
    let mut up2 = Browser::new(&fed.up);
    let f2 = flow();
    let again = callback_for(&mut down2, &mut up2, &f2, "alice").await;
    let answer2 = tokens(&mut down2, &fed.down, &again, &f2).await;
    assert_eq!(jwt_part(&answer2.str("id_token"), 1)["sub"], id["sub"]);
    assert_eq!(users(&fed.down).await, before + 1);
}

#[tokio::test]
async fn the_state_works_once_and_only_in_the_browser_that_started() {
    let fed = federation(true).await;
    user_at(&fed.up, "alice", true).await;
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let f = flow();
    let go = press_button(&mut down, &f, "up").await;
    let callback = upstream_sign_in(&mut up, &go, "alice").await;
    // Another browser (the attacker's, or a victim lured to the URL) gets nothing.
    let mut other = Browser::new(&fed.down);
    other.get("/ui/login").await;
    let stolen = other.get(&callback).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "{}", stolen.body);
    // A state made up.
    let forged = callback.replace("state=", "state=x");
    let page = down.get(&forged).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    // The browser that started it: once.
    let signed = down.get(&callback).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let mut replay = Browser::new(&fed.down);
    replay.cookies = down.cookies.clone();
    let again = replay.get(&callback).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(
        again.body.contains("expired, was already used"),
        "{}",
        again.body
    );
    tokens(&mut down, &fed.down, &signed, &f).await;
}

#[tokio::test]
async fn a_verified_address_of_an_existing_account_links_only_after_its_password() {
    let fed = federation(true).await;
    let bob = user_at(&fed.down, "bob", true).await;
    user_at(&fed.up, "bob", true).await;
    let before = users(&fed.down).await;
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let f = flow();
    let page = callback_for(&mut down, &mut up, &f, "bob").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("action=\"/ui/upstream/link\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("bob"), "{}", page.body);
    assert_eq!(
        identities(&fed.down).await,
        0,
        "not linked by the address alone"
    );
    let csrf = page.input("csrf_token").unwrap();
    let token = page.input("link_token").unwrap();
    // A wrong password links nothing.
    let wrong = down
        .post(
            "/ui/upstream/link",
            &[
                ("csrf_token", &csrf),
                ("link_token", &token),
                ("password", "not bob's password at all"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert_eq!(identities(&fed.down).await, 0);
    // Another browser cannot use the link token.
    let mut other = Browser::new(&fed.down);
    let form = other.get("/ui/login").await;
    let _ = form;
    let csrf_other = {
        let p = other.get(&f.query).await;
        let l = other.get(p.location.as_deref().unwrap()).await;
        l.input("csrf_token").unwrap()
    };
    let stolen = other
        .post(
            "/ui/upstream/link",
            &[
                ("csrf_token", &csrf_other),
                ("link_token", &token),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "{}", stolen.body);
    assert_eq!(identities(&fed.down).await, 0);
    // The right password: linked, and signed in as the existing account.
    let linked = down
        .post(
            "/ui/upstream/link",
            &[
                ("csrf_token", &csrf),
                ("link_token", &token),
                ("password", PASSWORD),
            ],
        )
        .await;
    let answer = tokens(&mut down, &fed.down, &linked, &f).await;
    assert_eq!(jwt_part(&answer.str("id_token"), 1)["sub"], bob.as_str());
    assert_eq!(identities(&fed.down).await, 1);
    assert_eq!(users(&fed.down).await, before, "no new account");
    // From now on the upstream signs bob in directly.
    let mut down2 = Browser::new(&fed.down);
    let mut up2 = Browser::new(&fed.up);
    let f2 = flow();
    let direct = callback_for(&mut down2, &mut up2, &f2, "bob").await;
    let answer2 = tokens(&mut down2, &fed.down, &direct, &f2).await;
    assert_eq!(jwt_part(&answer2.str("id_token"), 1)["sub"], bob.as_str());
    // Bob has a password: unlinking is allowed, and the link goes.
    let access = answer2.str("access_token");
    let token = fed
        .down
        .password_grant("bob", "openid profile profile:write")
        .await
        .str("access_token");
    let _ = access;
    let gone = Answer::from(
        fed.down
            .http
            .request(
                Method::DELETE,
                fed.down.url("/api/v1/users/me/identities/up"),
            )
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    assert_eq!(identities(&fed.down).await, 0);
}

#[tokio::test]
async fn an_unverified_upstream_address_never_matches_an_account() {
    let fed = federation(true).await;
    user_at(&fed.down, "carol", true).await;
    user_at(&fed.up, "carol", false).await;
    let before = users(&fed.down).await;
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let page = callback_for(&mut down, &mut up, &flow(), "carol").await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(!page.body.contains("/ui/upstream/link"));
    assert_eq!(identities(&fed.down).await, 0);
    assert_eq!(users(&fed.down).await, before);
}

#[tokio::test]
async fn an_address_the_upstream_does_not_vouch_for_gets_a_verification_link() {
    let fed = federation(true).await;
    user_at(&fed.up, "frank", false).await;
    // Confirmation not required: signed in at once, the address not confirmed, and the new
    // account's address mailed a link, as a registration's is.
    let answer = signed_in(&fed, "frank").await;
    assert_eq!(
        jwt_part(&answer.str("id_token"), 1)["email_verified"],
        false
    );
    let link = mail(&fed.down, "frank@example.com", "verify_email").await;
    let ok = confirm_link(&fed.down, &token_in(&link)).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
}

#[tokio::test]
async fn with_confirmation_required_an_upstream_sign_in_waits_for_the_confirmed_address() {
    fn required(raw: &mut RawSettings) {
        quiet(raw);
        raw.require_verified_email = true;
    }
    let fed = federation_with(true, required).await;
    user_at(&fed.up, "grace", false).await;
    let before = users(&fed.down).await;
    let attempt = || async {
        let mut down = Browser::new(&fed.down);
        let mut up = Browser::new(&fed.up);
        let f = flow();
        let page = callback_for(&mut down, &mut up, &f, "grace").await;
        (down, f, page)
    };
    // The first sign-in makes the account and its link, and does not sign in.
    let (_, _, first) = attempt().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(
        first.body.contains("Confirm your e-mail address"),
        "{}",
        first.body
    );
    assert!(!first.body.contains("code="), "{}", first.body);
    assert_eq!(users(&fed.down).await, before + 1);
    assert_eq!(identities(&fed.down).await, 1);
    let link = mail(&fed.down, "grace@example.com", "verify_email").await;
    // The linked account, its address still unconfirmed: refused on a page that says why
    // (no session, so no code for the app).
    let (_, _, refused) = attempt().await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("not confirmed"), "{}", refused.body);
    assert!(refused.location.is_none());
    // Confirmed from the mailed link: the next sign-in goes through.
    let ok = confirm_link(&fed.down, &token_in(&link)).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let (mut down, f, signed) = attempt().await;
    let answer = tokens(&mut down, &fed.down, &signed, &f).await;
    let id = jwt_part(&answer.str("id_token"), 1);
    assert_eq!(id["email_verified"], true);
    assert_eq!(users(&fed.down).await, before + 1);
    // Disabled, the account does not sign in through its link either, and the page says why.
    fed.down
        .state
        .users
        .set_disabled(id["sub"].as_str().unwrap(), true)
        .await
        .unwrap();
    let (_, _, disabled) = attempt().await;
    assert_eq!(disabled.status, StatusCode::FORBIDDEN, "{}", disabled.body);
    assert!(disabled.body.contains("is disabled"), "{}", disabled.body);
    assert!(disabled.location.is_none());
}

#[tokio::test]
async fn without_sign_up_an_unknown_user_is_refused_and_nothing_is_created() {
    let fed = federation(false).await;
    user_at(&fed.up, "dave", true).await;
    let before = users(&fed.down).await;
    let mut down = Browser::new(&fed.down);
    let mut up = Browser::new(&fed.up);
    let page = callback_for(&mut down, &mut up, &flow(), "dave").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("/ui/login?return_to="),
        "a way back: {}",
        page.body
    );
    assert_eq!(users(&fed.down).await, before);
    assert_eq!(identities(&fed.down).await, 0);
}

#[tokio::test]
async fn a_refusal_at_the_upstream_ends_on_a_clear_page() {
    let fed = federation(true).await;
    let mut down = Browser::new(&fed.down);
    let f = flow();
    let go = press_button(&mut down, &f, "up").await;
    let location = url::Url::parse(go.location.as_deref().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let page = down
        .get(&format!(
            "/ui/upstream/up/callback?error=access_denied&state={state}"
        ))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("did not let you sign in"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked() {
    let fed = federation(true).await;
    user_at(&fed.up, "erin", true).await;
    signed_in(&fed, "erin").await;
    // A token with profile:write for the new (password-less) account, through the flow.
    let user_id = entities::user_identities::Entity::find()
        .one(&fed.down.state.db)
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let user = fed.down.state.users.get(&user_id).await.unwrap();
    let caller = Caller::user(
        &user.id,
        "app",
        Scope::parse("profile profile:write").unwrap(),
        Default::default(),
    );
    let refused = fed.down.state.upstream_sign_in.unlink(&caller, "up").await;
    assert!(
        matches!(refused, Err(portcullis::ops::OpError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(identities(&fed.down).await, 1);
}

#[tokio::test]
async fn identity_providers_are_administered_with_the_secret_write_only() {
    let app = spawn_app_with(quiet).await;
    user_with_roles(&app, "root", &["admin"]).await;
    let token = app
        .password_grant("root", "users:admin")
        .await
        .str("access_token");
    let call = |method: Method, path: &str, body: Option<Value>| {
        let mut req = app.http.request(method, app.url(path)).bearer_auth(&token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { Answer::from(req.send().await.unwrap()).await }
    };
    let created = call(
        Method::POST,
        "/api/v1/admin/identity-providers",
        Some(json!({"id": "gh", "kind": "github", "client_id": "Iv1.abc",
                    "client_secret": "a github client secret value", "allow_signup": true})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["redirect_uri"],
        format!("{}/ui/upstream/gh/callback", app.base)
    );
    assert_eq!(created.body["scopes"], "read:user user:email");
    let listed = call(Method::GET, "/api/v1/admin/identity-providers", None).await;
    assert!(
        !listed
            .body
            .to_string()
            .contains("a github client secret value")
    );
    assert!(listed.body[0].get("client_secret").is_none());
    let row = entities::identity_providers::Entity::find_by_id("gh".to_string())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !row.sealed_client_secret
            .contains("a github client secret value")
    );
    // Bad input: named field, no 500.
    for (body, field) in [
        (
            json!({"id": "Bad Id", "kind": "github", "client_id": "x", "client_secret": "y"}),
            "id",
        ),
        (
            json!({"id": "o", "kind": "oidc", "client_id": "x", "client_secret": "y"}),
            "issuer",
        ),
        (
            json!({"id": "o", "kind": "oidc", "client_id": "x", "client_secret": "y",
                "issuer": "http://example.com"}),
            "issuer",
        ),
        (
            json!({"id": "o", "kind": "saml", "client_id": "x", "client_secret": "y"}),
            "kind",
        ),
    ] {
        let answer = call(Method::POST, "/api/v1/admin/identity-providers", Some(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(answer.body.to_string().contains(field), "{}", answer.body);
    }
    let dup = call(
        Method::POST,
        "/api/v1/admin/identity-providers",
        Some(json!({"id": "gh", "kind": "github", "client_id": "x", "client_secret": "y"})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
    let patched = call(
        Method::PATCH,
        "/api/v1/admin/identity-providers/gh",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(patched.body["enabled"], false, "{}", patched.body);
    let gone = call(Method::DELETE, "/api/v1/admin/identity-providers/gh", None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    // Without users:admin.
    let reader = {
        user_with_roles(&app, "reader", &["reader"]).await;
        app.password_grant("reader", "openid")
            .await
            .str("access_token")
    };
    let refused = Answer::from(
        app.http
            .get(app.url("/api/v1/admin/identity-providers"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}
