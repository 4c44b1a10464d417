//! `strata worker`: runs every pipeline consumer and the outbox relay until
//! SIGINT or SIGTERM; `strata serve` runs the same beside the API unless
//! told `--no-worker`.
//!
//! On a signal it stops taking messages, lets the handlers running finish
//! and acknowledge theirs (within `pipelines.shutdown_grace`), then exits
//! 0; what it had taken but not started goes back to its queue for another
//! worker.

use std::process::ExitCode;

use clap::Args;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::analytics::scenario::Scenario;
use crate::config::Config;
use crate::error::Result;
use crate::pipelines::handlers::{ReadModelHandler, read_model_queue};
use crate::pipelines::{Pipelines, Worker};
use crate::platform::Platform;
use crate::serving::Serving;

/// Options of `strata worker`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Messages handled at once per queue (also the prefetch); overrides
    /// `pipelines.concurrency`. Several workers on one RabbitMQ share the
    /// work.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Option<u16>,
}

/// The consumers and the relay of one process.
pub(crate) struct Background {
    stop: CancellationToken,
    worker: JoinHandle<Result<()>>,
    relay: JoinHandle<()>,
    watch: JoinHandle<()>,
}

impl Background {
    /// Starts every consumer and the relay.
    pub(crate) async fn start(
        platform: &Platform,
        serving: &Serving,
        pipelines: &Pipelines,
        scenario: &Scenario,
        concurrency: Option<u16>,
    ) -> Result<Background> {
        let mut worker =
            Worker::new(pipelines).handle(read_model_queue(), ReadModelHandler::new(platform));
        worker = scenario
            .register(platform, serving, pipelines, worker)
            .await?;
        if let Some(n) = concurrency {
            worker = worker.concurrency(n);
        }
        worker.declare().await?;
        let stop = CancellationToken::new();
        let watch = scenario
            .alerts
            .clone()
            .watch_queues(worker.queues(), stop.clone());
        let relay = platform
            .outbox()
            .relay(platform.broker(), pipelines.topology().events())
            .spawn(stop.clone());
        let token = stop.clone();
        let worker = tokio::spawn(async move { worker.run(token).await });
        Ok(Background {
            stop,
            worker,
            relay,
            watch,
        })
    }

    /// Stops taking messages, lets the handlers running finish, stops the
    /// relay.
    pub(crate) async fn stop(self) -> Result<()> {
        self.stop.cancel();
        let _ = self.relay.await;
        let _ = self.watch.await;
        match self.worker.await {
            Ok(result) => result,
            Err(e) => Err(crate::error::Error::internal(format!(
                "the worker failed: {e}"
            ))),
        }
    }
}

pub(crate) async fn run(config: &Config, args: WorkerArgs) -> Result<ExitCode> {
    let platform = Platform::open(config).await?;
    platform.start_background();
    let serving = Serving::open(&platform, &config.serving).await?;
    let pipelines = Pipelines::open(&platform, &config.pipelines).await?;
    let scenario = Scenario::open(&platform, &pipelines, &config.analytics)?;
    let background =
        Background::start(&platform, &serving, &pipelines, &scenario, args.concurrency).await?;
    let shutdown = super::serve::shutdown_signal();
    eprintln!(
        "strata: worker running (concurrency {} per queue)",
        args.concurrency.unwrap_or(config.pipelines.concurrency)
    );
    shutdown.await;
    eprintln!("strata: stopping; finishing the messages in hand");
    background.stop().await?;
    platform.close(config.pipelines.shutdown_grace).await?;
    eprintln!("strata: stopped");
    Ok(ExitCode::SUCCESS)
}
