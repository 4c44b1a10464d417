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
//! - **Shutdown**: when `shutdown` resolves the listener is closed (new
//!   connections are refused), each connection finishes the request in
//!   flight and closes, and [`serve`] returns once all have.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ApiConfig;
use crate::error::{Error, Result};

/// Serves `router` on `listener` within the bounds of `config` until
/// `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ApiConfig,
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
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
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
