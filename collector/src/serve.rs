//! Serving the router on a socket: plain HTTP or TLS (rustls), with a cap
//! on concurrent connections, a deadline for a request's headers and for
//! the TLS handshake, and the certificate re-read when its files change.
//!
//! One accept loop for both schemes, over hyper-util's connection builder
//! and tokio-rustls, instead of `axum::serve`: axum's server has no TLS,
//! no connection cap and no header timeout, and a crate that wraps it
//! (axum-server) would hide exactly the loop these need. Both libraries
//! were already built for reqwest, so nothing new is compiled.
//!
//! A slow client (slowloris) holds a connection at most the header read
//! timeout; a flood of connections waits in the kernel's backlog once the
//! cap is reached, instead of taking file descriptors and memory from the
//! agents. Renewed certificates are picked up by polling the files' size
//! and modification time: cheap, and it works for the rename and the
//! symlink swap that renewal tools do, where inotify on the file would not.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// The certificate files of `[tls]` / `--tls-cert`, `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// TLS, or plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout: Duration,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
    /// Time open connections get to finish after shutdown is asked.
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    /// 1024 connections (an agent holds one, a browser a few), 10 s for
    /// headers and handshake, certificates checked every 5 s.
    fn default() -> ServeConfig {
        ServeConfig {
            tls: None,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            reload_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A certificate, key or CA file is unreadable or wrong.
    #[error("{path}: {message}")]
    Tls {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The socket failed.
    #[error("serving: {0}")]
    Io(#[from] io::Error),
}

fn tls_err(path: &Path, message: impl std::fmt::Display) -> ServeError {
    ServeError::Tls {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificate chain and key and checks that they belong together.
fn load_certified(files: &TlsFiles) -> Result<CertifiedKey, ServeError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| tls_err(&files.cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&files.cert_file, e))?;
    if chain.is_empty() {
        return Err(tls_err(&files.cert_file, "no PEM certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| tls_err(&files.key_file, format!("no usable PEM private key: {e}")))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        tls_err(
            &files.key_file,
            format!("does not fit the certificate: {e}"),
        )
    })
}

fn stamp(files: &TlsFiles) -> Option<[(SystemTime, u64); 2]> {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    Some([one(&files.cert_file)?, one(&files.key_file)?])
}

/// Modification time and size of the certificate and key files, as last
/// loaded: a change in either means a renewal to pick up.
type FileStamps = Option<[(SystemTime, u64); 2]>;

/// The certificate in force, swapped when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, FileStamps)>,
}

impl ReloadingCert {
    /// Loads the files now.
    ///
    /// # Errors
    /// [`ServeError::Tls`] naming the file that is wrong.
    pub fn load(files: TlsFiles) -> Result<ReloadingCert, ServeError> {
        let st = stamp(&files);
        let ck = load_certified(&files)?;
        Ok(ReloadingCert {
            files,
            current: RwLock::new((Arc::new(ck), st)),
        })
    }

    /// Re-reads the files if they changed since the last good load; true
    /// when a new certificate is in force. A half-written pair (the new
    /// certificate beside the old key) is refused and retried next time,
    /// while the old certificate keeps serving.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.files);
        let seen = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1;
        if now.is_none() || now == seen {
            return false;
        }
        match load_certified(&self.files) {
            Ok(ck) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = (Arc::new(ck), now);
                tracing::info!(cert = %self.files.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate changed but cannot be used yet; the previous one keeps serving");
                false
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// The TLS acceptor for these files, and the certificate it serves (to be
/// reloaded).
///
/// # Errors
/// [`ServeError::Tls`] naming the file that is wrong.
pub fn tls_acceptor(files: &TlsFiles) -> Result<(TlsAcceptor, Arc<ReloadingCert>), ServeError> {
    let cert = Arc::new(ReloadingCert::load(files.clone())?);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&files.cert_file, e))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| tls_err(ca, e))? {
                roots
                    .add(c.map_err(|e| tls_err(ca, e))?)
                    .map_err(|e| tls_err(ca, e))?;
            }
            if roots.is_empty() {
                return Err(tls_err(ca, "no PEM CA certificate in the file"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| tls_err(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), cert))
}

/// Serves `app` on `listener` until `shutdown` resolves, then gives open
/// connections [`ServeConfig::drain_timeout`] to finish. Handlers see the
/// peer as `ConnectInfo<SocketAddr>`, as with axum's own server.
///
/// # Errors
/// A certificate problem at start ([`ServeError::Tls`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = match &cfg.tls {
        Some(files) => {
            let (acceptor, cert) = tls_acceptor(files)?;
            let every = cfg.reload_interval;
            let watched = Arc::downgrade(&cert);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(c) = watched.upgrade() else { break };
                    tokio::task::spawn_blocking(move || c.reload_if_changed())
                        .await
                        .ok();
                }
            });
            Some((acceptor, cert))
        }
        None => None,
    };
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        // The permit is taken before accepting, so past the cap new
        // connections wait in the backlog instead of being half-served.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = connection_service(app.clone(), peer);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Some((acceptor, _)) => {
                let acceptor = acceptor.clone();
                let handshake = cfg.handshake_timeout;
                tokio::spawn(async move {
                    let tls_stream =
                        match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "TLS handshake refused");
                                return;
                            }
                            Err(_) => {
                                tracing::info!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(cfg.drain_timeout) => {
            tracing::warn!("connections still open after the drain timeout; closing them");
        }
    }
    Ok(())
}

/// The router as a hyper service for one connection, with the peer address
/// where axum's `ConnectInfo` extractor looks for it.
fn connection_service(
    app: Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { app.call(req.map(axum::body::Body::new)).await }
    })
}
