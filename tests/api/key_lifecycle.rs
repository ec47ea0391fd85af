//! Signing-key lifecycle with shortened durations and a moved clock: scheduled rotation only
//! promotes keys published for the lead time, a resource server refreshing the JWKS at the
//! advertised interval never meets an unknown kid, tokens signed before a rotation validate
//! until they expire, retired keys are removed afterwards, a revoked key's tokens fail at once,
//! and racing rotations leave exactly one current key.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use portcullis::clients::GrantType;
use portcullis::config::{DurationSetting, RawSettings};
use portcullis::duties::Duties;
use portcullis::keys::{KeyError, KeyInfo};
use reqwest::StatusCode;
use serde_json::Value;

use super::helpers::*;

const ACCESS_TTL: i64 = 60;
const JWKS_MAX_AGE: i64 = 60;
/// Long, so the server's own background pass (which runs once at start) stays out of the way
/// of the passes this test drives by hand with the moved clock.
const RELOAD: i64 = 300;
const MARGIN: i64 = 30;
const LEAD: i64 = JWKS_MAX_AGE + RELOAD + MARGIN;
const ROTATION: i64 = 600;
/// How long a retired key stays published: token lifetime + reload interval + clock skew.
const RETIRED_PUBLICATION: i64 = ACCESS_TTL + RELOAD + 5;

fn lifecycle_timings(raw: &mut RawSettings) {
    raw.access_token_ttl = DurationSetting::Seconds(ACCESS_TTL as u64);
    raw.jwks_max_age = DurationSetting::Seconds(JWKS_MAX_AGE as u64);
    raw.key_reload_interval = DurationSetting::Seconds(RELOAD as u64);
    raw.key_publication_margin = DurationSetting::Seconds(MARGIN as u64);
    raw.key_rotation_interval = DurationSetting::Seconds(ROTATION as u64);
}

/// A resource server's view of the JWKS: fetched over HTTP, kept for the advertised max-age,
/// never refreshed early (not even for an unknown kid), so any gap in publication shows.
struct RemoteKeys {
    keys: HashMap<String, DecodingKey>,
    fetched_at: i64,
    max_age: i64,
    fetches: u32,
}

impl RemoteKeys {
    async fn fetch(app: &TestApp) -> Self {
        let mut keys = Self {
            keys: HashMap::new(),
            fetched_at: 0,
            max_age: 0,
            fetches: 0,
        };
        keys.refresh(app).await;
        keys
    }

    async fn refresh(&mut self, app: &TestApp) {
        let resp = app
            .http
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap();
        let cache = resp.headers()["cache-control"]
            .to_str()
            .unwrap()
            .to_string();
        self.max_age = cache
            .split(',')
            .find_map(|d| d.trim().strip_prefix("max-age="))
            .unwrap()
            .parse()
            .unwrap();
        let jwks: Value = resp.json().await.unwrap();
        self.keys = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let key = DecodingKey::from_rsa_components(
                    k["n"].as_str().unwrap(),
                    k["e"].as_str().unwrap(),
                )
                .unwrap();
                (k["kid"].as_str().unwrap().to_string(), key)
            })
            .collect();
        self.fetched_at = app.clock.now_secs();
        self.fetches += 1;
    }

    /// Refreshes only when the cached copy is older than its max-age.
    async fn refresh_if_stale(&mut self, app: &TestApp) {
        if app.clock.now_secs() >= self.fetched_at + self.max_age {
            self.refresh(app).await;
        }
    }

    /// Signature check with the cached keys; `Err` names the failure.
    fn verify(&self, token: &str) -> Result<(), String> {
        let kid = jwt_part(token, 0)["kid"].as_str().unwrap().to_string();
        let key = self.keys.get(&kid).ok_or(format!("unknown kid {kid}"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, key, &validation)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

trait NowSecs {
    fn now_secs(&self) -> i64;
}

impl NowSecs for portcullis::clock::ManualClock {
    fn now_secs(&self) -> i64 {
        use portcullis::clock::Clock as _;
        self.now()
    }
}

async fn client_token(app: &TestApp, client: &Confidential) -> String {
    app.post_form_basic(
        "/oauth/token",
        client,
        &[("grant_type", "client_credentials")],
    )
    .await
    .str("access_token")
}

/// The details of the audit events of one type.
async fn audit_events(app: &TestApp, event_type: &str) -> Vec<Value> {
    let filter = portcullis::audit::AuditFilter {
        event_type: Some(event_type.into()),
        ..Default::default()
    };
    let (rows, _) = app.state.audit.list(&filter, None, 500).await.unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(&r.details).unwrap())
        .collect()
}

async fn keys(app: &TestApp) -> Vec<KeyInfo> {
    app.state.keys.list().await.unwrap()
}

async fn kid_in(app: &TestApp, state: &str) -> String {
    keys(app)
        .await
        .into_iter()
        .find(|k| k.state == state)
        .unwrap_or_else(|| panic!("no {state} key"))
        .kid
}

async fn assert_one_current_one_next(app: &TestApp) {
    let all = keys(app).await;
    let count = |s: &str| all.iter().filter(|k| k.state == s).count();
    assert_eq!(count("current"), 1, "{all:?}");
    assert_eq!(count("next"), 1, "{all:?}");
}

#[tokio::test]
async fn rotations_on_schedule_never_leave_a_resource_server_without_the_key() {
    let app = spawn_app_with(lifecycle_timings).await;
    let duties = Duties::new(app.state.clone());
    let client = app
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let rs = app.resource_server().await;
    let mut remote = RemoteKeys::fetch(&app).await;
    assert!(
        remote.max_age < LEAD,
        "the JWKS max-age ({}) must be shorter than the publication lead ({LEAD})",
        remote.max_age
    );

    let discovery = |app: &TestApp| {
        let (http, url) = (
            app.http.clone(),
            app.url("/.well-known/openid-configuration"),
        );
        async move { http.get(url).send().await.unwrap().bytes().await.unwrap() }
    };
    let discovery_before = discovery(&app).await;
    let first_current = kid_in(&app, "current").await;
    let mut live: Vec<(String, i64)> = Vec::new();
    let mut signing_kids = vec![first_current.clone()];
    let mut removed = Vec::new();
    // 55 simulated minutes in 20 s steps: five scheduled rotations.
    for _ in 0..165 {
        app.clock.advance(20);
        let report = duties.tick().await;
        assert!(report.fence.is_some(), "the only instance holds the lease");
        removed.extend(report.removed);
        remote.refresh_if_stale(&app).await;

        let token = client_token(&app, &client).await;
        let kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_string();
        if signing_kids.last() != Some(&kid) {
            signing_kids.push(kid);
        }
        live.push((token, app.clock.now_secs() + ACCESS_TTL));
        live.retain(|(_, exp)| *exp > app.clock.now_secs());
        for (token, _) in &live {
            // The resource server, refreshing only at the advertised interval, knows the key
            // of every live token, new or signed before a rotation ...
            remote
                .verify(token)
                .unwrap_or_else(|e| panic!("resource server refused a live token: {e}"));
            // ... and so does Portcullis itself.
            assert_eq!(app.introspect(&rs, token).await.body["active"], true);
        }
    }
    assert!(
        signing_kids.len() >= 5,
        "expected several scheduled rotations, saw keys {signing_kids:?}"
    );

    let all = keys(&app).await;
    for key in &all {
        if let Some(activated) = key.activated_at
            && key.kid != first_current
        {
            assert!(
                activated - key.created_at >= LEAD,
                "{} signed {} s after publication, before the lead time {LEAD}",
                key.kid,
                activated - key.created_at
            );
        }
    }
    assert_one_current_one_next(&app).await;
    assert_eq!(
        discovery(&app).await,
        discovery_before,
        "discovery metadata is unchanged by rotation"
    );
    // Retired keys whose tokens have all expired are gone from the database and the JWKS.
    assert!(removed.contains(&first_current), "removed: {removed:?}");
    assert!(all.iter().all(|k| k.kid != first_current));
    remote.refresh(&app).await;
    assert!(!remote.keys.contains_key(&first_current));
    for key in &all {
        if key.state == "retired" {
            let age = app.clock.now_secs() - key.retired_at.unwrap();
            assert!(
                age <= RETIRED_PUBLICATION,
                "{key:?} outlived its publication"
            );
        }
    }
    let rotated = audit_events(&app, "key.rotated").await.len();
    assert_eq!(rotated, signing_kids.len() - 1, "each rotation is audited");
}

#[tokio::test]
async fn a_young_next_is_not_promoted_by_the_schedule() {
    let app = spawn_app_with(lifecycle_timings).await;
    let duties = Duties::new(app.state.clone());
    let current = kid_in(&app, "current").await;
    // Let the current key become due, then replace next: the fresh one is young.
    app.clock.advance(ROTATION + 1);
    let old_next = kid_in(&app, "next").await;
    app.state.keys.revoke(&old_next).await.unwrap();
    let young = kid_in(&app, "next").await;

    for _ in 0..((LEAD - 1) / 30) {
        app.clock.advance(30);
        let report = duties.tick().await;
        assert!(report.rotated.is_none(), "promoted a young key: {report:?}");
        assert_eq!(kid_in(&app, "current").await, current);
    }
    app.clock.advance(LEAD);
    let report = duties.tick().await;
    assert_eq!(report.rotated.map(|r| r.current), Some(young.clone()));
    assert_eq!(kid_in(&app, "current").await, young);
}

#[tokio::test]
async fn a_revoked_key_stops_signing_and_validating_at_once() {
    let app = spawn_app_with(lifecycle_timings).await;
    let peer = app.spawn_peer().await;
    let rs = app.resource_server().await;
    let user = app.sign_in("alice", "openid").await;
    let token = user.str("access_token");
    let compromised = jwt_part(&token, 0)["kid"].as_str().unwrap().to_string();
    assert_eq!(compromised, kid_in(&app, "current").await);
    let next = kid_in(&app, "next").await;
    assert_eq!(app.introspect(&rs, &token).await.body["active"], true);
    assert_eq!(peer.introspect(&rs, &token).await.body["active"], true);

    let revoked = app
        .state
        .key_admin
        .revoke(&portcullis::ops::Caller::operator(), &compromised)
        .await
        .unwrap();
    assert_eq!(revoked.revocation.promoted.as_deref(), Some(next.as_str()));
    assert!(revoked.denied);

    // This instance: unpublished, refused, and new tokens come from the promoted key.
    assert_eq!(app.introspect(&rs, &token).await.body["active"], false);
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let published = published_kids(&app.http, &app.base).await;
    assert!(!published.contains(&compromised), "{published:?}");
    assert!(published.contains(&next));
    let fresh = app.password_grant("alice", "openid").await;
    assert_eq!(
        jwt_part(&fresh.str("access_token"), 0)["kid"],
        next.as_str()
    );
    assert_eq!(jwt_part(&fresh.str("id_token"), 0)["kid"], next.as_str());

    // Another instance that has not reloaded yet: with a shared store (Redis) the deny list
    // refuses the token at once; in-process stores are per instance, so there the refusal
    // comes with the reload.
    if std::env::var("PORTCULLIS_TEST_REDIS_URL").is_err() {
        peer.state.keys.reload().await.unwrap();
    }
    assert_eq!(peer.introspect(&rs, &token).await.body["active"], false);
    peer.state.keys.reload().await.unwrap();
    assert_eq!(
        peer.get_bearer("/oauth/userinfo", &token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The sealed private key is gone; the event is recorded; a second revocation is refused.
    let row = keys(&app)
        .await
        .into_iter()
        .find(|k| k.kid == compromised)
        .unwrap();
    assert_eq!(row.state, "revoked");
    assert!(row.revoked_at.is_some());
    use sea_orm::EntityTrait as _;
    let stored = entities::signing_keys::Entity::find_by_id(compromised.clone())
        .one(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.private_key_enc.is_empty());
    let events = audit_events(&app, "key.revoked").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kid"], compromised.as_str());
    assert_eq!(events[0]["deny_listed"], true);
    assert!(matches!(
        app.state.keys.revoke(&compromised).await,
        Err(KeyError::AlreadyRevoked(_))
    ));
    assert!(matches!(
        app.state.keys.revoke("no-such-kid").await,
        Err(KeyError::UnknownKid(_))
    ));
    assert_one_current_one_next(&app).await;
}

#[tokio::test]
async fn a_superseded_lease_holder_cannot_rotate() {
    let app = spawn_app_with(lifecycle_timings).await;
    app.clock.advance(ROTATION + LEAD);
    let first = app.state.keys.rotate_if_due(10).await.unwrap();
    assert!(first.is_some());
    app.clock.advance(ROTATION + LEAD);
    let current = kid_in(&app, "current").await;
    // A holder with an older fencing token (its lease passed to fence 10 meanwhile).
    assert!(app.state.keys.rotate_if_due(9).await.unwrap().is_none());
    assert_eq!(kid_in(&app, "current").await, current);
    assert!(app.state.keys.rotate_if_due(11).await.unwrap().is_some());
    assert_one_current_one_next(&app).await;
}

#[tokio::test]
async fn racing_rotations_leave_exactly_one_current_key() {
    let app = spawn_app_with(lifecycle_timings).await;
    let peers = [app.spawn_peer().await, app.spawn_peer().await];
    for clock in std::iter::once(&app.clock).chain(peers.iter().map(|p| &p.clock)) {
        clock.advance(ROTATION + LEAD);
    }
    // Scheduled rotations on three instances that all believe they hold the lease.
    let (a, b, c) = tokio::join!(
        app.state.keys.rotate_if_due(1),
        peers[0].state.keys.rotate_if_due(2),
        peers[1].state.keys.rotate_if_due(3),
    );
    let done: Vec<_> = [a, b, c]
        .into_iter()
        .map(|r| r.expect("no error"))
        .filter(Option::is_some)
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_one_current_one_next(&app).await;

    // On-demand rotations at once: each succeeds or reports a conflict; never two current.
    let (a, b, c) = tokio::join!(
        app.state.keys.rotate_now(),
        peers[0].state.keys.rotate_now(),
        peers[1].state.keys.rotate_now(),
    );
    let ok = [a, b, c]
        .into_iter()
        .filter(|r| match r {
            Ok(_) => true,
            Err(KeyError::Conflict | KeyError::NoNext | KeyError::Db(_)) => false,
            Err(e) => panic!("unexpected error {e}"),
        })
        .count();
    assert!(ok >= 1);
    assert_one_current_one_next(&app).await;
    // Every instance converges on the same signing key at its next reload.
    let client = app
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let current = kid_in(&app, "current").await;
    for instance in std::iter::once(&app).chain(peers.iter()) {
        instance.state.keys.reload().await.unwrap();
        let token = client_token(instance, &client).await;
        assert_eq!(jwt_part(&token, 0)["kid"], current.as_str());
    }
}

#[tokio::test]
async fn keys_are_administered_through_the_api_with_keys_admin() {
    use sea_orm::EntityTrait as _;
    let app = spawn_app().await;
    let reg = app.register("keeper").await;
    app.state
        .users
        .set_roles(&reg.str("id"), &["admin".to_string()])
        .await
        .unwrap();
    let without = app
        .password_grant("keeper", "users:read")
        .await
        .str("access_token");
    let with = app
        .password_grant("keeper", "keys:admin")
        .await
        .str("access_token");
    let call = |method: reqwest::Method, path: &str, token: &str| {
        let req = app.http.request(method, app.url(path)).bearer_auth(token);
        async move { Answer::from(req.send().await.unwrap()).await }
    };
    let refused = call(reqwest::Method::GET, "/api/v1/admin/keys", &without).await;
    assert_eq!(
        refused.status,
        reqwest::StatusCode::FORBIDDEN,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["code"], "insufficient_scope");

    let listed = call(reqwest::Method::GET, "/api/v1/admin/keys", &with).await;
    assert_eq!(listed.status, reqwest::StatusCode::OK, "{}", listed.body);
    let state_of = |body: &serde_json::Value, state: &str| -> String {
        body.as_array()
            .unwrap()
            .iter()
            .find(|k| k["state"] == state)
            .unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let next = state_of(&listed.body, "next");
    let current = state_of(&listed.body, "current");
    assert!(!listed.body.to_string().contains("private"));

    let rotated = call(reqwest::Method::POST, "/api/v1/admin/keys/rotate", &with).await;
    assert_eq!(rotated.status, reqwest::StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.body["current_kid"], next);
    assert_eq!(rotated.body["retired_kid"], current);

    let revoked = call(
        reqwest::Method::POST,
        &format!("/api/v1/admin/keys/{current}/revoke"),
        &with,
    )
    .await;
    assert_eq!(revoked.status, reqwest::StatusCode::OK, "{}", revoked.body);
    assert_eq!(revoked.body["was"], "retired");
    assert_eq!(revoked.body["deny_listed"], true);
    // The token above was signed by the key just revoked: it is refused now.
    let stale = call(reqwest::Method::GET, "/api/v1/admin/keys", &with).await;
    assert_eq!(
        stale.status,
        reqwest::StatusCode::UNAUTHORIZED,
        "{}",
        stale.body
    );
    let with = app
        .password_grant("keeper", "keys:admin")
        .await
        .str("access_token");
    let again = call(
        reqwest::Method::POST,
        &format!("/api/v1/admin/keys/{current}/revoke"),
        &with,
    )
    .await;
    assert_eq!(
        again.status,
        reqwest::StatusCode::CONFLICT,
        "{}",
        again.body
    );
    let unknown = call(
        reqwest::Method::POST,
        "/api/v1/admin/keys/nope/revoke",
        &with,
    )
    .await;
    assert_eq!(
        unknown.status,
        reqwest::StatusCode::NOT_FOUND,
        "{}",
        unknown.body
    );
    app.state.audit.flush().await;
    let events: Vec<String> = entities::audit_events::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(events.contains(&"key.rotated".to_string()));
    assert!(events.contains(&"key.revoked".to_string()));
}
