//! Several real `portcullis serve` processes on one PostgreSQL and one Redis, as behind a load
//! balancer: tokens, revocation and refresh work across instances; a rotation reaches every
//! instance within the reload bound; concurrent rotations leave one current key; killing the
//! duty-lease holder hands the duties to another instance; 32 concurrent refreshes of one
//! token spread over the instances have exactly one winner.
//!
//! These need PORTCULLIS_TEST_DATABASE_URL and PORTCULLIS_TEST_REDIS_URL (CI's second pass);
//! with the embedded default there is nothing shared between processes to test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;

use super::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

struct Instance {
    base: String,
    child: Child,
}

struct Cluster {
    instances: Vec<Instance>,
    env: Vec<(String, String)>,
    redis_url: String,
    prefix: String,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for instance in &mut self.instances {
            let _ = instance.child.kill();
            let _ = instance.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shared services, or `None` (with a note) when the suite runs on the embedded default.
fn services() -> Option<(String, String)> {
    match (
        std::env::var("PORTCULLIS_TEST_DATABASE_URL"),
        std::env::var("PORTCULLIS_TEST_REDIS_URL"),
    ) {
        (Ok(db), Ok(redis)) => Some((db, redis)),
        _ => {
            eprintln!(
                "multi-instance test skipped: set PORTCULLIS_TEST_DATABASE_URL and \
                 PORTCULLIS_TEST_REDIS_URL (CI does in its PostgreSQL + Redis pass)"
            );
            None
        }
    }
}

impl Cluster {
    /// Starts `n` instances sharing a fresh database, the Redis, one master key and one
    /// issuer; `extra` settings apply to all.
    async fn start(n: usize, extra: &[(&str, &str)]) -> Option<Self> {
        let (db, redis_url) = services()?;
        let dir = std::env::temp_dir().join(format!("portcullis-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let prefix = format!("cluster:{}:", uuid::Uuid::new_v4().simple());
        let master = base64::engine::general_purpose::STANDARD.encode(rand_bytes());
        let mut env: Vec<(String, String)> = vec![
            ("PORTCULLIS_DATABASE_URL".into(), fresh_postgres(&db).await),
            ("PORTCULLIS_REDIS_URL".into(), redis_url.clone()),
            ("PORTCULLIS_REDIS_PREFIX".into(), prefix.clone()),
            ("PORTCULLIS_MASTER_KEY".into(), master),
            // One public URL for all, as behind a load balancer.
            (
                "PORTCULLIS_ISSUER".into(),
                format!("http://127.0.0.1:{}", ports[0]),
            ),
            (
                "PORTCULLIS_KEYS_DIR".into(),
                dir.join("keys").display().to_string(),
            ),
            ("PORTCULLIS_BCRYPT_COST".into(), "4".into()),
            ("PORTCULLIS_RATE_LIMIT_ENABLED".into(), "false".into()),
            ("PORTCULLIS_SEED_PUBLIC_CLIENT".into(), "true".into()),
            ("PORTCULLIS_KEY_RELOAD_INTERVAL".into(), "1s".into()),
            ("PORTCULLIS_LOG".into(), "warn".into()),
        ];
        for (k, v) in extra {
            env.push(((*k).into(), (*v).into()));
        }
        let mut cluster = Self {
            instances: Vec::new(),
            env,
            redis_url,
            prefix,
            dir,
            http: reqwest::Client::new(),
        };
        // Migrations and first keys once, so the instances start on a ready database.
        let out = cluster.cli(&["migrate"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for port in ports {
            let child = cluster
                .command(&["serve"])
                .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            cluster.instances.push(Instance {
                base: format!("http://127.0.0.1:{port}"),
                child,
            });
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        Some(cluster)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(&self.dir)
            .env_remove("PORTCULLIS_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    async fn wait_ready(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                self.instances[i].child.try_wait().unwrap().is_none(),
                "instance {i} exited"
            );
            let ready = self
                .http
                .get(format!("{}/readyz", self.instances[i].base))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "instance {i} did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.instances[i % self.instances.len()].base)
    }

    async fn post(
        &self,
        i: usize,
        path: &str,
        client: Option<&Confidential>,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut req = self.http.post(self.url(i, path)).form(form);
        if let Some(c) = client {
            req = req.basic_auth(&c.id, Some(&c.secret));
        }
        Answer::from(req.send().await.unwrap()).await
    }

    /// A confidential client made with the command line.
    fn client(&self, id: &str, grants: &str, scopes: &str) -> Confidential {
        let out = self.cli(&[
            "client",
            "create",
            "--client-id",
            id,
            "--grant-types",
            grants,
            "--scopes",
            scopes,
            "--default-scopes",
            scopes,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        Confidential {
            id: id.into(),
            secret: created["client_secret"].as_str().unwrap().into(),
        }
    }

    async fn sign_in(&self, i: usize, username: &str) -> Answer {
        let reg = self
            .http
            .post(self.url(i, "/api/v1/users"))
            .json(&serde_json::json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": PASSWORD,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(reg.status(), StatusCode::CREATED);
        self.post(
            i,
            "/oauth/token",
            None,
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", PASSWORD),
                ("client_id", SPA),
                ("scope", "openid"),
            ],
        )
        .await
    }

    async fn introspect(&self, i: usize, rs: &Confidential, token: &str) -> bool {
        let answer = self
            .post(i, "/oauth/introspect", Some(rs), &[("token", token)])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer.body["active"].as_bool().unwrap()
    }

    async fn client_token(&self, i: usize, client: &Confidential) -> String {
        self.post(
            i,
            "/oauth/token",
            Some(client),
            &[("grant_type", "client_credentials")],
        )
        .await
        .str("access_token")
    }

    fn keys(&self) -> Vec<Value> {
        let out = self.cli(&["keys", "list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn kid_in(&self, state: &str) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|k| k["state"] == state)
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    async fn jwks_kids(&self, i: usize) -> Vec<String> {
        published_kids(&self.http, &self.instances[i % self.instances.len()].base).await
    }

    /// The instance name holding the duty lease in Redis (`pid<pid>-…`), if any.
    async fn lease_holder(&self) -> Option<String> {
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("GET")
            .arg(format!("{}lock:duties", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(16).enumerate() {
        let id = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&id.as_bytes()[..16]);
        chunk[0] ^= i as u8;
    }
    bytes
}

async fn until<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revocation_and_refresh_work_across_instances() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let rs = cluster.client("rs", "client_credentials", "articles:read");
    // Issued on A, introspected on B and C.
    let first = cluster.sign_in(0, "alice").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let access = first.str("access_token");
    assert!(cluster.introspect(1, &rs, &access).await);
    assert!(cluster.introspect(2, &rs, &access).await);
    // Refreshed on B after issue on A.
    let refreshed = cluster
        .post(
            1,
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first.str("refresh_token")),
                ("client_id", SPA),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let access2 = refreshed.str("access_token");
    assert!(cluster.introspect(0, &rs, &access2).await);
    // An access token revoked on B is inactive on A.
    let revoke = cluster
        .post(
            1,
            "/oauth/revoke",
            None,
            &[("token", &access), ("client_id", SPA)],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    assert!(!cluster.introspect(0, &rs, &access).await);
    assert!(cluster.introspect(0, &rs, &access2).await);
    // The refresh token revoked on C ends the sign-in everywhere.
    let revoke = cluster
        .post(
            2,
            "/oauth/revoke",
            None,
            &[
                ("token", &refreshed.str("refresh_token")),
                ("client_id", SPA),
            ],
        )
        .await;
    assert_eq!(revoke.status, StatusCode::OK);
    for i in 0..3 {
        assert!(!cluster.introspect(i, &rs, &access2).await, "instance {i}");
        assert!(
            !cluster
                .introspect(i, &rs, &refreshed.str("refresh_token"))
                .await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_every_instance_within_the_reload_bound() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let svc = cluster.client("svc", "client_credentials", "articles:read");
    let next = cluster.kid_in("next").pop().unwrap();
    for i in 0..3 {
        assert!(
            cluster.jwks_kids(i).await.contains(&next),
            "next is published"
        );
    }
    let out = cluster.cli(&["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh_next = cluster.kid_in("next").pop().unwrap();
    assert_ne!(fresh_next, next);
    // Reload interval 1 s; allow for a busy machine, but far below the 30 s default bound.
    for i in 0..3 {
        let took = until("new key signs", Duration::from_secs(10), || {
            let cluster = &cluster;
            let svc = &svc;
            let next = &next;
            async move {
                let token = cluster.client_token(i, svc).await;
                jwt_part(&token, 0)["kid"] == next.as_str()
            }
        })
        .await;
        eprintln!("instance {i} signs with the new key after {took:?}");
        assert!(cluster.jwks_kids(i).await.contains(&fresh_next));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_leave_exactly_one_current_key() {
    let Some(cluster) = Cluster::start(2, &[]).await else {
        return;
    };
    let children: Vec<_> = (0..4)
        .map(|_| {
            cluster
                .command(&["keys", "rotate"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut succeeded = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if out.status.success() {
            succeeded += 1;
        }
    }
    assert!(succeeded >= 1);
    assert_eq!(cluster.kid_in("current").len(), 1);
    assert_eq!(cluster.kid_in("next").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_lease_holder_hands_the_duties_to_another_instance() {
    // Short lifecycle: lead = 1 + 1 + 1 = 3 s, rotation every 4 s, lease 3 s.
    let Some(mut cluster) = Cluster::start(
        2,
        &[
            ("PORTCULLIS_JWKS_MAX_AGE", "1s"),
            ("PORTCULLIS_KEY_PUBLICATION_MARGIN", "1s"),
            ("PORTCULLIS_KEY_ROTATION_INTERVAL", "4s"),
        ],
    )
    .await
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let holder = loop {
        if let Some(holder) = cluster.lease_holder().await {
            break holder;
        }
        assert!(Instant::now() < deadline, "no instance took the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let index = cluster
        .instances
        .iter()
        .position(|i| holder.starts_with(&format!("pid{}-", i.child.id())))
        .expect("the holder is one of the instances");
    let survivor = 1 - index;
    let survivor_pid = format!("pid{}-", cluster.instances[survivor].child.id());
    cluster.instances[index].child.kill().unwrap();
    cluster.instances[index].child.wait().unwrap();
    let before = cluster.kid_in("current");

    let took = until(
        "the survivor takes the lease",
        Duration::from_secs(15),
        || {
            let cluster = &cluster;
            let survivor_pid = &survivor_pid;
            async move {
                cluster
                    .lease_holder()
                    .await
                    .is_some_and(|h| h.starts_with(survivor_pid.as_str()))
            }
        },
    )
    .await;
    eprintln!("lease taken over {took:?} after the holder was killed");
    // And it performs the duties: the schedule keeps rotating.
    until(
        "a scheduled rotation by the survivor",
        Duration::from_secs(20),
        || {
            let cluster = &cluster;
            let before = &before;
            async move { &cluster.kid_in("current") != before }
        },
    )
    .await;
    assert_eq!(cluster.kid_in("current").len(), 1);
    assert_eq!(cluster.kid_in("next").len(), 1);
    let svc = cluster.client("svc", "client_credentials", "articles:read");
    let token = cluster.client_token(survivor, &svc).await;
    let kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_string();
    assert!(cluster.jwks_kids(survivor).await.contains(&kid));
}

/// 32 concurrent presentations of one refresh token, spread over the instances.
async fn refresh_storm(cluster: &Cluster, username: &str) -> Vec<Answer> {
    let first = cluster.sign_in(0, username).await;
    let refresh = first.str("refresh_token");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (http, url, refresh) = (
                cluster.http.clone(),
                cluster.url(i, "/oauth/token"),
                refresh.clone(),
            );
            tokio::spawn(async move {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", SPA),
                ];
                Answer::from(http.post(url).form(&form).send().await.unwrap()).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_spread_over_instances_have_one_winner() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let answers = refresh_storm(&cluster, "carol").await;
    let winners = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert_eq!(winners, 1, "exactly one refresh wins");
    for a in answers.iter().filter(|a| a.status != StatusCode::OK) {
        a.assert_oauth_error(400, "invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_reuse_window_every_retry_across_instances_gets_the_same_pair() {
    let Some(cluster) = Cluster::start(3, &[("PORTCULLIS_REFRESH_REUSE_INTERVAL", "30s")]).await
    else {
        return;
    };
    let answers = refresh_storm(&cluster, "dave").await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let pair = |a: &Answer| (a.str("access_token"), a.str("refresh_token"));
    let first = pair(&answers[0]);
    assert!(
        answers.iter().all(|a| pair(a) == first),
        "one identical pair for all"
    );
    // The new refresh token is the one live token of the family, usable once.
    let next = cluster
        .post(
            2,
            "/oauth/token",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &first.1),
                ("client_id", SPA),
            ],
        )
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
}
