//! TLS termination in the server (`PORTCULLIS_TLS_CERT` / `PORTCULLIS_TLS_KEY`): the PEM files
//! named by the validated settings are read and checked when the server starts
//! ([`ServerTls::load`]; errors name the setting and fail the start), served through rustls
//! with the aws-lc-rs provider and ALPN `h2` + `http/1.1`, and re-read every
//! `PORTCULLIS_TLS_RELOAD_INTERVAL` so a renewed certificate is picked up without a restart.
//!
//! Handshakes run on their own tasks with a time limit, so one slow or silent client never
//! holds up the others; a connection that does not speak TLS (plain HTTP to the TLS port) is
//! closed without an HTTP answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::config::TlsSettings;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used. Messages never quote the key file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    CertUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    KeyUnreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM certificate chain: {reason}")]
    CertNotPem { path: String, reason: String },
    #[error("{path} contains no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: String },
    #[error("{path} contains no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the private key in {path} cannot be used: {reason}")]
    BadKey { path: String, reason: String },
    #[error("the certificate in {path} cannot be used: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
}

impl TlsError {
    /// The setting at fault.
    pub fn setting(&self) -> &'static str {
        match self {
            Self::CertUnreadable { .. }
            | Self::CertNotPem { .. }
            | Self::NoCertificate { .. }
            | Self::BadCertificate { .. } => "PORTCULLIS_TLS_CERT",
            Self::KeyUnreadable { .. }
            | Self::NoKey { .. }
            | Self::BadKey { .. }
            | Self::KeyMismatch { .. } => "PORTCULLIS_TLS_KEY",
        }
    }
}

/// A certificate or key that cannot be used at start. The message names the setting at fault,
/// like a configuration error, and never quotes the key file.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {setting}: {0}", setting = .0.setting())]
pub struct TlsStartError(pub TlsError);

/// A rustls server configuration built from a certificate chain and its private key, with a
/// digest of the two files so that a reload can tell whether they changed.
#[derive(Clone)]
pub struct LoadedTls {
    pub config: Arc<ServerConfig>,
    digest: Vec<u8>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedTls")
            .field("key", &"<hidden>")
            .finish_non_exhaustive()
    }
}

/// Reads both PEM files and builds the server configuration.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<LoadedTls, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::CertUnreadable {
        path: cert_path.display().to_string(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| TlsError::KeyUnreadable {
        path: key_path.display().to_string(),
        source,
    })?;
    build(cert_path, &cert_pem, key_path, &key_pem)
}

/// Builds the server configuration from the contents of the two PEM files.
fn build(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<LoadedTls, TlsError> {
    let cert_name = || cert_path.display().to_string();
    let key_name = || key_path.display().to_string();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertNotPem {
            path: cert_name(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_name() });
    }
    // The key file's own parse errors are not quoted: they may contain a line of it.
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey { path: key_name() })?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    check_pair(&provider, &chain, &key, cert_path, key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_name(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::BadCertificate {
            path: cert_name(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(LoadedTls {
        config: Arc::new(config),
        digest: digest(cert_pem, key_pem),
    })
}

/// What identifies the contents of the two files (the key itself is not kept).
fn digest(cert_pem: &[u8], key_pem: &[u8]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(cert_pem.len() as u64).to_be_bytes());
    ctx.update(cert_pem);
    ctx.update(key_pem);
    ctx.finish().as_ref().to_vec()
}

/// Checks that the key is usable and belongs to the first certificate, so each failure can be
/// blamed on the right file.
fn check_pair(
    provider: &CryptoProvider,
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| TlsError::BadKey {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
    match CertifiedKey::new(chain.to_vec(), signing_key).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.display().to_string(),
                key: key_path.display().to_string(),
            })
        }
        // Consistency cannot be determined for this key type; rustls accepts it too.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(()),
        Err(e) => Err(TlsError::BadCertificate {
            path: cert_path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// TLS as the server runs it: the validated settings (where the files are, how often they are
/// re-read) and what was loaded from the files at start.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub settings: TlsSettings,
    pub loaded: LoadedTls,
}

impl ServerTls {
    /// Reads and checks both files, at start.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsStartError> {
        let loaded = load(&settings.cert_path, &settings.key_path).map_err(TlsStartError)?;
        Ok(Self {
            settings: settings.clone(),
            loaded,
        })
    }
}

type Accepted = (TlsStream<TcpStream>, LocalAddr, RemoteAddr);

/// A poem acceptor that terminates TLS on top of a TCP acceptor. A background task accepts
/// TCP connections, runs each handshake on its own task (bounded by [`HANDSHAKE_TIMEOUT`]) and
/// hands finished connections to the server; it also reloads the certificate.
pub struct TlsAcceptor {
    local_addr: Vec<LocalAddr>,
    incoming: mpsc::Receiver<Accepted>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsAcceptor {
    pub fn new(tcp: TcpAcceptor, tls: ServerTls) -> Self {
        let local_addr = tcp.local_addr();
        let (tx, incoming) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(tcp, tls, tx));
        Self {
            local_addr,
            incoming,
            task,
        }
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acceptor for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local_addr.clone()
    }

    async fn accept(&mut self) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        match self.incoming.recv().await {
            Some((io, local, remote)) => Ok((io, local, remote, Scheme::HTTPS)),
            None => Err(std::io::Error::other("the TLS listener stopped")),
        }
    }
}

async fn accept_loop(mut tcp: TcpAcceptor, tls: ServerTls, tx: mpsc::Sender<Accepted>) {
    let ServerTls {
        settings,
        loaded: mut current,
    } = tls;
    let mut acceptor = tokio_rustls::TlsAcceptor::from(current.config.clone());
    let mut reload = tokio::time::interval(settings.reload_interval);
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    reload.tick().await;
    loop {
        tokio::select! {
            () = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok((stream, local, remote, _)) => {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(io)) => {
                                let _ = tx.send((io, local, remote)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(peer = %remote, error = %e, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(peer = %remote, "TLS handshake timed out"),
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = reload.tick() => {
                if let Some(next) = reload_if_changed(&settings, &current).await {
                    acceptor = tokio_rustls::TlsAcceptor::from(next.config.clone());
                    current = next;
                    tracing::info!(
                        cert = %settings.cert_path.display(),
                        "TLS certificate reloaded"
                    );
                }
            }
        }
    }
}

/// Re-reads the files; returns the new configuration when they changed and are usable. A
/// broken or half-written pair is reported and the current configuration kept.
async fn reload_if_changed(settings: &TlsSettings, current: &LoadedTls) -> Option<LoadedTls> {
    let cert = tokio::fs::read(&settings.cert_path).await;
    let key = tokio::fs::read(&settings.key_path).await;
    let result = match (cert, key) {
        (Ok(cert), Ok(key)) if digest(&cert, &key) == current.digest => return None,
        (Ok(cert), Ok(key)) => build(&settings.cert_path, &cert, &settings.key_path, &key),
        (Err(source), _) => Err(TlsError::CertUnreadable {
            path: settings.cert_path.display().to_string(),
            source,
        }),
        (_, Err(source)) => Err(TlsError::KeyUnreadable {
            path: settings.key_path.display().to_string(),
            source,
        }),
    };
    match result {
        Ok(next) => Some(next),
        Err(e) => {
            tracing::warn!(
                setting = e.setting(),
                error = %e,
                "cannot reload the TLS certificate; keeping the current one"
            );
            None
        }
    }
}
