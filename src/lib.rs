//! Portcullis: a standalone OAuth 2.0 / OpenID Connect authorization server.
//!
//! Where things are: `oauth/` (token endpoint and its grants, revocation, introspection,
//! userinfo, discovery), `keys/` (signing keys and JWKS), `users/`, `clients/`, `mail/`
//! (outgoing e-mail through an outbox), `store/` (Redis and in-process shared state), `http/`
//! (app assembly, middleware, errors), `audit`, `config`, `cli`.

pub mod abuse;
pub mod alerts;
pub mod articles;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod duties;
pub mod http;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod rbac;
pub mod sessions;
pub mod signins;
pub mod state;
pub mod store;
pub mod upstream;
pub mod users;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use poem::Server;
use poem::listener::TcpAcceptor;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Installs the process-wide rustls crypto provider (both ring and aws-lc-rs are in the tree,
/// so rustls cannot choose one itself).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Sets up logging with `filter` (e.g. `info`, `portcullis=debug`) on standard error, as text
/// or as one JSON object per line (`PORTCULLIS_LOG_FORMAT=json`) whose `span` and `spans`
/// carry the fields of the enclosing spans, so every line of a request has its `request_id`.
/// Later calls are no-ops.
pub fn init_tracing(filter: &str, format: config::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        config::LogFormat::Text => builder.try_init(),
        config::LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// Serves the app on `listener` (over TLS when configured) until `shutdown` resolves, with the
/// background duties (key reload, and the coordinated rotation and cleanup; see [`duties`]).
/// With `PORTCULLIS_TLS_CERT` / `PORTCULLIS_TLS_KEY` the certificate and key are read and
/// checked first; a file that cannot be used fails the start with an error naming the setting.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let tls = state
        .settings
        .server
        .tls
        .as_ref()
        .map(http::tls::ServerTls::load)
        .transpose()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    serve_with_tls(listener, state, tls, shutdown).await
}

/// [`serve_on`] with the TLS files already loaded (the command line loads them before anything
/// else runs); `None` serves plain HTTP. With `PORTCULLIS_METRICS_LISTEN`, `/metrics` is served
/// (plain HTTP) on that address alone, bound here first: an address that cannot be bound
/// fails the start with an error naming the setting.
pub async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    tls: Option<http::tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let metrics = match state.settings.observability.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr} (PORTCULLIS_METRICS_LISTEN): {e}"),
                    )
                })
                .and_then(TcpAcceptor::from_tokio)?,
        ),
        None => None,
    };
    let (metrics_stop, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = metrics.map(|acceptor| {
        let app = http::metrics::listener_app(state.metrics.clone());
        tokio::spawn(async move {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            if let Err(e) = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, stopped, Some(SHUTDOWN_GRACE))
                .await
            {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let duties = tokio::spawn(duties::Duties::new(state.clone()).run(async {
        let _ = stopped.await;
    }));
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let state_audit = state.audit.clone();
    let recovery = state.recovery.clone();
    let app = http::app(state);
    let result = match tls {
        // The same listener speaks HTTPS.
        Some(tls) => {
            Server::new_with_acceptor(http::tls::TlsAcceptor::new(acceptor, tls))
                .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
                .await
        }
        None => {
            Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, shutdown, Some(SHUTDOWN_GRACE))
                .await
        }
    };
    let _ = stop.send(());
    let _ = metrics_stop.send(());
    let _ = duties.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    // Work handed off after an answer (a password reset's mail) is done, then every audit
    // event recorded is written, before the process goes.
    if tokio::time::timeout(SHUTDOWN_GRACE, recovery.settle())
        .await
        .is_err()
    {
        tracing::warn!("work handed off after an answer did not finish in time");
    }
    state_audit.flush().await;
    result
}
