//! `strata serve`: the HTTP API on the configured engines.
//!
//! Prints `strata: listening on http://ADDR` (`https://` with `api.tls`)
//! to standard error once the socket is bound (with the real port when
//! `:0` asked for any). While no API token exists it says so, and refuses
//! (exit 2) an address that is not loopback unless
//! `api.allow_unauthenticated` / `--allow-unauthenticated` (see
//! [`crate::api::auth`]). It serves
//! within the bounds of the `api` section ([`crate::api::server`]),
//! finishes in the background the sagas that other processes left open,
//! runs the pipeline consumers and the outbox relay (unless `--no-worker`;
//! see [`super::worker`]),
//! and on SIGINT or SIGTERM stops accepting, lets requests in flight finish
//! and the sagas they started end (within `api.request_timeout`; any still
//! open are finished by the next strata process), closes the relational
//! pool and exits 0.

use std::process::ExitCode;

use clap::Args;
use tokio::net::TcpListener;

use crate::analytics::scenario::Scenario;
use crate::api;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::Pipelines;
use crate::platform::Platform;

use super::worker::Background;
use crate::serving::Serving;

/// Options of `strata serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on, `HOST:PORT`; overrides `api.listen`. Port 0
    /// picks a free port, printed once bound.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Serve the API only: run no pipeline consumer and no outbox relay in
    /// this process (run `strata worker` beside it).
    #[arg(long)]
    no_worker: bool,
    /// Messages handled at once per queue by the embedded worker; overrides
    /// `pipelines.concurrency`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024), conflicts_with = "no_worker")]
    concurrency: Option<u16>,
    /// Serve without authentication on an address that is not loopback
    /// while no API token exists (api.allow_unauthenticated). Without it,
    /// and without a token, strata refuses to serve beyond loopback.
    #[arg(long)]
    allow_unauthenticated: bool,
}

pub(crate) async fn run(config: &Config, args: ServeArgs) -> Result<ExitCode> {
    let listen = args.listen.unwrap_or_else(|| config.api.listen.clone());
    let mut api_config = config.api.clone();
    api_config.allow_unauthenticated |= args.allow_unauthenticated;
    // Configuration first: a bad file path or origin is exit 2, before
    // any engine is opened.
    api::auth::check_config(&api_config)?;
    let tls = api::server::tls_acceptor(&api_config.tls)?;
    let platform = Platform::open(config).await?;
    let listener = TcpListener::bind(&listen).await.map_err(|e| {
        // A malformed address is the user's; a taken port or a refused
        // bind is the system's.
        let kind = match e.kind() {
            std::io::ErrorKind::InvalidInput => ErrorKind::Config,
            _ => ErrorKind::Unavailable,
        };
        Error::new(kind, format!("cannot listen on `{listen}`: {e}"))
            .with_field("api.listen")
            .with_source(e)
    })?;
    let address = listener.local_addr()?;
    // The router checks tokens and hosts against the address bound.
    api_config.listen = address.to_string();
    if !platform.tokens().any_active().await? {
        if !address.ip().is_loopback() && !api_config.allow_unauthenticated {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "no API tokens exist, so strata serves only on loopback, and `{listen}` \
                     (api.listen or --listen) is not a loopback address: create a token with \
                     `strata token create --scope write`, or serve without authentication \
                     anyway with api.allow_unauthenticated = true or --allow-unauthenticated"
                ),
            )
            .with_field("api.listen"));
        }
        if address.ip().is_loopback() {
            eprintln!(
                "strata: no API tokens exist: serving without authentication, on loopback only \
                 (create one with `strata token create`)"
            );
        } else {
            eprintln!(
                "strata: no API tokens exist: serving WITHOUT authentication on {address} \
                 (api.allow_unauthenticated)"
            );
        }
    }
    // Before the listening line: a signal sent as soon as it is printed
    // must stop the process cleanly.
    let shutdown = shutdown_signal();
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("strata: listening on {scheme}://{address}");
    platform.start_background();
    let serving = Serving::open(&platform, &config.serving).await?;
    match serving.ensure_leaderboard().await {
        Ok(true) => tracing::info!("rebuilt the leaderboard from the completed runs"),
        Ok(false) => {}
        Err(e) => tracing::warn!("the leaderboard could not be rebuilt now: {e}"),
    }
    let pipelines = Pipelines::open(&platform, &config.pipelines).await?;
    let scenario = Scenario::open(&platform, &pipelines, &config.analytics)?;
    let background = if args.no_worker {
        None
    } else {
        Some(Background::start(&platform, &serving, &pipelines, &scenario, args.concurrency).await?)
    };
    let router = api::router(platform.clone(), serving, pipelines, scenario, &api_config);
    api::server::serve_with(listener, router, &api_config, tls, shutdown).await?;
    if let Some(background) = background {
        background.stop().await?;
    }
    platform.close(config.api.request_timeout).await?;
    eprintln!("strata: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled: a
/// signal that arrives in between (while the engines open, just after the
/// listening line) is kept and stops the process cleanly at once. If a
/// handler cannot be installed, that signal is logged and never fires; the
/// other still works.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::error!("cannot listen for {name}: {e}");
                None
            }
        };
        let mut interrupt = install(SignalKind::interrupt(), "SIGINT");
        let mut terminate = install(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |stream: Option<tokio::signal::unix::Signal>| async move {
                match stream {
                    Some(mut stream) => {
                        stream.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt.take()) => {}
                () = wait(terminate.take()) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    }
}
