//! Portcullis: a standalone OAuth 2.0 / OpenID Connect authorization server.
//!
//! Where things are: `oauth/` (token endpoint and its grants, revocation, introspection,
//! userinfo, discovery), `keys/` (signing keys and JWKS), `users/`, `clients/`, `mail/`
//! (outgoing e-mail through an outbox), `store/` (Redis and in-process shared state), `http/`
//! (app assembly, middleware, errors), `audit`, `config`, `cli`.

pub mod abuse;
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
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod rbac;
pub mod sessions;
pub mod signins;
pub mod state;
pub mod store;
pub mod users;

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

/// Sets up logging with `filter` (e.g. `info`, `portcullis=debug`); later calls are no-ops.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
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
/// else runs); `None` serves plain HTTP.
pub async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    tls: Option<http::tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let duties = tokio::spawn(duties::Duties::new(state.clone()).run(async {
        let _ = stopped.await;
    }));
    let acceptor = TcpAcceptor::from_tokio(listener)?;
    let state_audit = state.audit.clone();
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
    let _ = duties.await;
    // Every audit event recorded is written before the process goes.
    state_audit.flush().await;
    result
}
