//! The request body limit (`MAX_BODY_BYTES`) holds for every protocol the server speaks:
//! HTTP/1.1 (declared or chunked), cleartext HTTP/2 with prior knowledge (h2c) and HTTP/2 over
//! TLS, where a body may come with neither `Content-Length` nor `Transfer-Encoding`. An
//! oversize body is answered 413 once the limit is passed and the rest is never read: the
//! client's stream is pulled for at most the limit plus flow-control windows, and a real
//! server process refusing several such bodies at once keeps its memory small.

use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis::clients::GrantType;
use portcullis::http::MAX_BODY_BYTES;
use reqwest::{StatusCode, Version};
use serde_json::Value;

use super::helpers::*;
use super::tls::{Files, test_pki, trusting};

const MIB: u64 = 1024 * 1024;

/// What an attacker offers per request.
const OFFERED: u64 = 800 * MIB;

/// The most a client may have pushed before the refusal stops it: the limit, the server's
/// HTTP/2 receive windows (1 MiB per stream and per connection), the client's send buffer and,
/// for HTTP/1.1, the loopback socket buffers.
const PULL_BOUND: u64 = MAX_BODY_BYTES as u64 + 8 * MIB;

/// A request body of `left` bytes made on demand in 64 KiB chunks, counting what the HTTP
/// client pulled from it.
struct Offered {
    left: u64,
    pulled: Arc<AtomicU64>,
    chunk: Bytes,
}

impl futures_core::Stream for Offered {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        self.pulled.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Some(Ok(self.chunk.slice(..n as usize))))
    }
}

/// A streamed body of `total` bytes of `fill` (no `Content-Length` of its own) and the count of
/// bytes pulled from it.
fn offer(total: u64, fill: &[u8]) -> (reqwest::Body, Arc<AtomicU64>) {
    let pulled = Arc::new(AtomicU64::new(0));
    let chunk: Vec<u8> = fill.iter().copied().cycle().take(64 * 1024).collect();
    let body = reqwest::Body::wrap_stream(Offered {
        left: total,
        pulled: pulled.clone(),
        chunk: Bytes::from(chunk),
    });
    (body, pulled)
}

/// What the server answered to an oversize body, and how much of it the client sent.
struct Refusal {
    status: StatusCode,
    version: Version,
    body: Value,
    pulled: u64,
}

impl Refusal {
    #[track_caller]
    fn assert_refused_early(&self, case: &str) {
        assert_eq!(
            self.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{case}: {}",
            self.body
        );
        // The middleware's answer, the same on every route as for an oversize Content-Length:
        // the RFC 6749 shape on the OAuth endpoints, the problem shape elsewhere.
        if case.contains("/oauth/") {
            assert_eq!(
                self.body["error"], "invalid_request",
                "{case}: {}",
                self.body
            );
        } else {
            assert_eq!(
                self.body["code"], "payload_too_large",
                "{case}: {}",
                self.body
            );
        }
        assert!(
            self.pulled <= PULL_BOUND,
            "{case}: the server read on: {} MiB of the body were sent",
            self.pulled / MIB
        );
    }
}

/// The two kinds of endpoint: an OAuth form endpoint and a JSON API operation.
const TARGETS: [(&str, &str); 2] = [
    ("/oauth/token", "application/x-www-form-urlencoded"),
    ("/api/v1/users", "application/json"),
];

/// Posts `total` bytes as a stream to `url`, with `Content-Length` when `declared`. Fails
/// when no answer comes within a minute.
async fn post_oversize(
    client: &reqwest::Client,
    url: String,
    content_type: &str,
    total: u64,
    declared: bool,
) -> Result<Refusal, String> {
    let (body, pulled) = offer(total, b"a");
    let mut req = client
        .post(url)
        .header("content-type", content_type)
        .body(body);
    if declared {
        req = req.header("content-length", total.to_string());
    }
    let answer = tokio::time::timeout(Duration::from_secs(60), async {
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let (status, version) = (resp.status(), resp.version());
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, String>((status, version, text))
    })
    .await
    .map_err(|_| "no answer within 60 s".to_string())??;
    let (status, version, text) = answer;
    Ok(Refusal {
        status,
        version,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        pulled: pulled.load(Ordering::Relaxed),
    })
}

/// Every target, streamed without a length and with an oversize declared length, over a
/// client that speaks `version`.
async fn assert_every_oversize_body_refused(app: &TestApp, client: &reqwest::Client, v: Version) {
    for (path, content_type) in TARGETS {
        for declared in [false, true] {
            let case = format!("{v:?} {path} declared={declared}");
            let refusal = post_oversize(client, app.url(path), content_type, OFFERED, declared)
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(refusal.version, v, "{case}");
            refusal.assert_refused_early(&case);
        }
    }
}

#[tokio::test]
async fn h2c_bodies_over_the_limit_are_refused_without_reading_on() {
    let app = spawn_app().await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert_every_oversize_body_refused(&app, &h2c, Version::HTTP_2).await;
}

#[tokio::test]
async fn h2_over_tls_bodies_over_the_limit_are_refused_without_reading_on() {
    let pki = test_pki();
    let files = Files::new(&pki);
    let app = spawn_app_with(files.tls()).await;
    // HTTP/2 chosen through ALPN.
    let h2 = trusting(&pki.ca_pem).build().unwrap();
    assert_every_oversize_body_refused(&app, &h2, Version::HTTP_2).await;
}

#[tokio::test]
async fn http1_chunked_and_declared_bodies_over_the_limit_are_refused() {
    let app = spawn_app().await;
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    assert_every_oversize_body_refused(&app, &h1, Version::HTTP_11).await;
}

#[tokio::test]
async fn streamed_bodies_within_the_limit_are_served_over_each_protocol() {
    let app = spawn_app().await;
    let service = app
        .confidential_client(
            "streaming-service",
            &[GrantType::ClientCredentials],
            "articles:read",
        )
        .await;
    // A form as big as the limit allows: the grant type, then padding in an ignored field.
    let head = b"grant_type=client_credentials&padding=";
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let h1 = reqwest::Client::builder().http1_only().build().unwrap();
    for (client, version) in [(&h2c, Version::HTTP_2), (&h1, Version::HTTP_11)] {
        let body = head
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'x', MAX_BODY_BYTES - head.len()))
            .collect::<Vec<u8>>();
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(16 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let resp = client
            .post(app.url("/oauth/token"))
            .basic_auth(&service.id, Some(&service.secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(reqwest::Body::wrap_stream(Chunks(chunks.into_iter())))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), version);
        let answer = Answer::from(resp).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{version:?}: {}",
            answer.body
        );
        assert!(answer.body["access_token"].is_string(), "{}", answer.body);
    }
}

struct Chunks(std::vec::IntoIter<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next())
    }
}

/// A `portcullis serve` process on the embedded SQLite database in a folder of its own.
struct Process {
    child: Child,
    base: String,
    dir: std::path::PathBuf,
}

impl Process {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("portcullis-mem-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .current_dir(&dir)
            .env_remove("PORTCULLIS_DATABASE_URL")
            .env_remove("PORTCULLIS_REDIS_URL")
            .env_remove("PORTCULLIS_CONFIG")
            .env_remove("PORTCULLIS_MASTER_KEY")
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_ISSUER", format!("http://127.0.0.1:{port}"))
            .env("PORTCULLIS_BCRYPT_COST", "4")
            .env("PORTCULLIS_RATE_LIMIT_ENABLED", "false")
            .env("PORTCULLIS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                process.child.try_wait().unwrap().is_none(),
                "the server exited"
            );
            let ready = http
                .get(format!("{}/readyz", process.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                return process;
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The peak resident memory of the process so far (`VmHWM`), in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"));
        kib * 1024
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Peak resident memory allowed to a server process that refused the bodies below. The
/// server holds at most the limit plus its receive windows per request; reading the bodies
/// (hundreds of MiB) would take far more.
const PEAK_RSS_BOUND: u64 = 150 * MIB;

#[tokio::test]
async fn refusing_concurrent_oversize_bodies_keeps_the_server_memory_small() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("memory test skipped: no /proc to read the peak resident memory from");
        return;
    }
    let server = Process::start().await;
    let started = server.peak_rss();
    // Eight connections offering 100 MiB each at once, to both kinds of endpoint.
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (path, content_type) = TARGETS[i % TARGETS.len()];
        let url = format!("{}{path}", server.base);
        requests.spawn(async move {
            let h2c = reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap();
            (
                path,
                post_oversize(&h2c, url, content_type, 100 * MIB, false).await,
            )
        });
    }
    let refusals = requests.join_all().await;
    let peak = server.peak_rss();
    eprintln!(
        "peak resident memory: {} MiB after start, {} MiB after the refusals",
        started / MIB,
        peak / MIB
    );
    assert!(
        peak < PEAK_RSS_BOUND,
        "the server's peak resident memory reached {} MiB",
        peak / MIB
    );
    for (path, refusal) in refusals {
        let refusal = refusal.unwrap();
        assert_eq!(refusal.version, Version::HTTP_2);
        refusal.assert_refused_early(&format!("h2c, concurrent {path}"));
    }
}
