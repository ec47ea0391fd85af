//! A Redis outage: the test runs its own redis-server, stops it under a running Portcullis and
//! starts it again. The server keeps serving what it safely can, fails closed where an answer
//! needs Redis (the deny list and lock state), reports the degradation in /readyz and as an
//! alert, never answers 500 or panics, and recovers by itself.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::clients::GrantType;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::helpers::*;

struct RedisServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    fn start(port: u16, dir: &std::path::Path) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self {
            child,
            port,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_degrades_safely_and_recovers_when_redis_goes_away() {
    let dir = std::env::temp_dir().join(format!("portcullis-redis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(redis) = RedisServer::start(free_port(), &dir) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app_with(|raw| {
        raw.redis_url = Some(url.clone());
        raw.rate_limit_enabled = true;
    })
    .await;
    let svc = app
        .confidential_client("svc", &[GrantType::ClientCredentials], "articles:read")
        .await;
    let rs = app.resource_server().await;
    let user_token = app.sign_in("alice", "openid").await.str("access_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &user_token).await.status,
        StatusCode::OK
    );

    let (port, dir) = redis.stop();

    // Still served: liveness, keys, discovery, client credentials (rate limits fall back to
    // this instance's memory).
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.http
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let cc = app
        .post_form_basic(
            "/oauth/token",
            &svc,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(cc.status, StatusCode::OK, "{}", cc.body);

    // Readiness says which dependency is missing.
    let ready = Answer::from(app.http.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["store"], "unreachable");
    assert_eq!(ready.body["database"], "ok");

    // The duties notice and raise `store_unavailable` (written in the database, which is up).
    portcullis::duties::Duties::new(app.state.clone())
        .tick()
        .await;
    let raised = entities::alerts::Entity::find()
        .filter(entities::alerts::Column::Rule.eq("store_unavailable"))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(raised.len(), 1, "{raised:?}");

    // Fail closed: without the deny list a revoked token could pass, so token checks answer
    // 503 rather than guess; the same for sign-ins (lock state).
    let info = app.get_bearer("/oauth/userinfo", &user_token).await;
    assert_eq!(
        info.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        info.body
    );
    assert_eq!(info.body["code"], "unavailable");
    app.introspect(&rs, &user_token)
        .await
        .assert_oauth_error(503, "temporarily_unavailable");
    app.password_grant("alice", "openid")
        .await
        .assert_oauth_error(503, "temporarily_unavailable");

    // Redis comes back on the same address: everything recovers without a restart.
    let _redis = RedisServer::start(port, &dir).expect("redis restarts");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = app.get_bearer("/oauth/userinfo", &user_token).await;
        if info.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {} {}",
            info.status,
            info.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        app.password_grant("alice", "openid").await.status,
        StatusCode::OK
    );
    let _ = std::fs::remove_dir_all(&dir);
}
