//! A real HTTP receiver of webhooks, on a random loopback port, that checks every message's
//! Standard Webhooks signature itself (HMAC-SHA256 over `id.timestamp.body`, base64) and
//! answers with a status the test sets (200, or e.g. 503 to play an endpoint that is down).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use poem::http::StatusCode;
use poem::{Body, EndpointExt, Request, Route, handler, post, web::Data};
use serde_json::Value;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub json: Value,
    /// What the receiver answered.
    pub answered: u16,
}

#[derive(Default)]
struct Shared {
    got: Mutex<Vec<Received>>,
    status: AtomicU16,
    /// Sent as `Location` with every answer, when set (to play a redirecting endpoint).
    location: Mutex<Option<String>>,
}

pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

#[handler]
async fn hook(req: &Request, body: Body, shared: Data<&Arc<Shared>>) -> poem::Response {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body = body.into_string().await.unwrap_or_default();
    let answered = shared.status.load(Ordering::SeqCst);
    shared.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        json: serde_json::from_str(&body).unwrap_or(Value::Null),
        body,
        answered,
    });
    let mut resp =
        poem::Response::builder().status(StatusCode::from_u16(answered).unwrap_or(StatusCode::OK));
    if let Some(location) = shared.location.lock().unwrap().clone() {
        resp = resp.header("location", location);
    }
    resp.finish()
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// On `port` (0: any free one).
    pub async fn start_on(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            got: Mutex::default(),
            status: AtomicU16::new(200),
            location: Mutex::default(),
        });
        let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
        let app = Route::new().at("/hook", post(hook)).data(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = rx.await;
                    },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            shared,
            _shutdown: tx,
        }
    }

    /// Answer every next message with `status`.
    pub fn answer(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Answer every next message with `status` and `Location: location`.
    pub fn redirect(&self, status: u16, location: &str) {
        self.answer(status);
        *self.shared.location.lock().unwrap() = Some(location.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.got.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until `n` messages came; returns all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.received()
    }
}

/// Whether `msg` carries a valid `v1` signature by `secret` (a `whsec_…` string).
pub fn signed_by(msg: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("base64 secret");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let content = format!("{}.{}.{}", msg.id, msg.timestamp, msg.body);
    msg.signature.split(' ').any(|sig| {
        sig.strip_prefix("v1,")
            .and_then(|b64| STANDARD.decode(b64).ok())
            .is_some_and(|tag| ring::hmac::verify(&key, content.as_bytes(), &tag).is_ok())
    })
}
