//! The HTTP server under `strata serve`: hyper's HTTP/1.1 connection
//! builder on a TCP listener, with the bounds that `axum::serve` cannot
//! set.
//!
//! - **Headers**: a request's headers must arrive within
//!   `api.header_read_timeout`, counted from when the connection opens or
//!   the previous response ends; otherwise hyper closes the connection. A
//!   client trickling one header line at a time cannot hold a connection
//!   longer than that.
//! - **Idle keep-alive**: hyper waits for the next request's headers under
//!   the same timer, so an idle kept-alive connection is closed after
//!   `api.header_read_timeout` too.
//! - **Connections**: at most `api.max_connections` are served at once.
//!   At the bound the accept loop stops accepting, so further connections
//!   wait in the operating system's listen backlog and are served as soon
//!   as one closes (the OS refuses them once the backlog is full). Waiting
//!   rather than refusing lets a short burst through; the header timeout
//!   keeps slow or idle clients from holding the slots.
//! - **Bodies and handlers** are bounded by `api.body_limit` and
//!   `api.request_timeout` in the router (see [`super::router`]).
//! - **TLS** (`api.tls`): the handshake must end within
//!   `api.header_read_timeout` too; a client speaking plain HTTP to it
//!   fails the handshake and is closed.
//! - **Shutdown**: when `shutdown` resolves the listener is closed (new
//!   connections are refused), each connection finishes the request in
//!   flight and closes, and [`serve`] returns once all have.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ApiConfig, TlsConfig};
use crate::error::{Error, ErrorKind, Result};

/// Serves `router` on `listener` within the bounds of `config` until
/// `shutdown` resolves, then lets requests in flight finish. With
/// `api.tls` set, over TLS ([`tls_acceptor`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let tls = tls_acceptor(&config.tls)?;
    serve_with(listener, router, config, tls, shutdown).await
}

/// The TLS acceptor of `api.tls` (TLS 1.2 and 1.3, ring's cryptography,
/// HTTP/1.1 by ALPN); `None` when neither file is set. A missing, unreadable
/// or unparseable file, a key that does not fit the certificate, or only
/// one of the two set is a configuration error naming the key and path.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (&tls.cert, &tls.key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::new(
                ErrorKind::Config,
                "api.tls.cert and api.tls.key go together: set both or neither",
            ));
        }
    };
    let pem = |key: &str, path: &Path| -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{key}: cannot read `{}`: {e}", path.display()),
            )
        })
    };
    let unparseable = |key: &str, path: &Path, what: &str| {
        Error::new(
            ErrorKind::Config,
            format!("{key}: `{}` holds no {what} in PEM", path.display()),
        )
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&pem("api.tls.cert", cert)?)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| unparseable("api.tls.cert", cert, "certificate"))?;
    if chain.is_empty() {
        return Err(unparseable("api.tls.cert", cert, "certificate"));
    }
    let private = PrivateKeyDer::from_pem_slice(&pem("api.tls.key", key)?)
        .map_err(|_| unparseable("api.tls.key", key, "private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "api.tls.key: `{}` does not go with the certificate of `{}`: {e}",
                    key.display(),
                    cert.display()
                ),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// [`serve`] with the TLS acceptor given (`None`: plain HTTP). The TLS
/// handshake must end within `api.header_read_timeout`, as the headers
/// must.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    config: &ApiConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(
        usize::try_from(config.max_connections).unwrap_or(usize::MAX),
    ));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let handshake_limit = config.header_read_timeout;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first, then a connection: at the bound nothing is
        // accepted, and new connections wait in the backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot
                .map_err(|e| Error::internal(format!("connection slots closed: {e}")).with_operation("serve"))?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin, and try again.
                    tracing::error!("cannot accept a connection: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are small: send them at once rather than wait for more.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        // Each request knows its client's address (rate limits).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    match tokio::time::timeout(handshake_limit, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake failed: {e}");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = served {
                // Header timeouts and clients that went away end here.
                tracing::debug!(%peer, "connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection that failed while being accepted; the
/// listener itself is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
