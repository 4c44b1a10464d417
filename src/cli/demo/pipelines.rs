//! The pipelines the sections 10 to 12 run on: a worker with the
//! scenario's consumers, on queues and exchanges of the demo's own.
//!
//! Each demo run names its topology `demo-<run>` (a fresh token), so it
//! never takes messages from, nor hands them to, a strata running on the
//! same broker; at the end it stops its worker, deletes what it declared and
//! the dead letters its messages left. The users it onboards carry the token
//! too (a signup is keyed by its user id and time, so a second run could not
//! onboard the same id again); what is printed shows it as `<run>`, which
//! keeps the output the same on every run.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::analytics::scenario::Scenario;
use crate::config::AnalyticsConfig;
use crate::error::{Error, Result};
use crate::pipelines::{
    DeadLetter, DeadLetterFilter, Pipelines, PipelinesConfig, Worker, WorkerStats,
};
use crate::platform::Platform;
use crate::serving::Serving;

/// How long the demo waits for the worker to handle what it sent.
const WAIT: Duration = Duration::from_secs(60);

/// The demo's pipelines and the worker consuming them.
pub(super) struct DemoPipelines {
    /// Unique to this run: in the topology's prefix and the users' ids.
    pub(super) run: String,
    pub(super) pipelines: Pipelines,
    pub(super) scenario: Scenario,
    stats: Arc<WorkerStats>,
    started: DateTime<Utc>,
    stop: CancellationToken,
    worker: JoinHandle<Result<()>>,
}

impl DemoPipelines {
    /// Declares the demo's topology and starts a worker with the
    /// scenario's consumers.
    pub(super) async fn start(platform: &Platform, serving: &Serving) -> Result<DemoPipelines> {
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let config = PipelinesConfig {
            prefix: format!("demo-{run}"),
            ..Default::default()
        };
        let started = crate::platform::now();
        let pipelines = Pipelines::open(platform, &config).await?;
        let scenario = Scenario::open(platform, &pipelines, &AnalyticsConfig::default())?;
        let worker = scenario
            .register(platform, serving, &pipelines, Worker::new(&pipelines))
            .await?;
        worker.declare().await?;
        let stats = worker.stats();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let worker = tokio::spawn(async move { worker.run(token).await });
        Ok(DemoPipelines {
            run,
            pipelines,
            scenario,
            stats,
            started,
            stop,
            worker,
        })
    }

    /// `text` with the run's token shown as `<run>`.
    pub(super) fn shown(&self, text: &str) -> String {
        text.replace(&self.run, "<run>")
    }

    /// The worker's counters.
    pub(super) fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Waits (on the worker's counters, without polling) until `ready`
    /// holds; `what` names what was awaited in the error.
    pub(super) async fn wait(
        &self,
        what: &str,
        ready: impl Fn(&WorkerStats) -> bool,
    ) -> Result<()> {
        if self.stats.wait_until(WAIT, ready).await {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "the demo's worker did not handle {what} within {} s",
                WAIT.as_secs()
            )))
        }
    }

    /// The dead letters of this run's messages in `queue`, newest first.
    pub(super) async fn dead_letters(&self, queue: &str) -> Result<Vec<DeadLetter>> {
        let filter = DeadLetterFilter {
            queue: Some(queue.to_owned()),
            since: Some(self.started),
            ..Default::default()
        };
        let letters = self.pipelines.dead_letters().list(&filter, 1000).await?;
        Ok(letters
            .into_iter()
            .filter(|l| l.message_id.contains(&self.run))
            .collect())
    }

    /// Stops the worker (the handlers running finish), removes the dead
    /// letters of this run's messages, and deletes the queues and
    /// exchanges it declared.
    pub(super) async fn finish(self) -> Result<()> {
        self.stop.cancel();
        let stopped = match self.worker.await {
            Ok(result) => result,
            Err(e) => Err(Error::internal(format!("the demo's worker failed: {e}"))),
        };
        let filter = DeadLetterFilter {
            since: Some(self.started),
            ..Default::default()
        };
        let ids: Vec<String> = self
            .pipelines
            .dead_letters()
            .list(&filter, 1000)
            .await?
            .into_iter()
            .filter(|l| l.message_id.contains(&self.run))
            .map(|l| l.id)
            .collect();
        if !ids.is_empty() {
            let max = ids.len() as u64;
            let ours = DeadLetterFilter {
                ids: Some(ids),
                ..Default::default()
            };
            self.pipelines.dead_letters().purge(&ours, max).await?;
        }
        self.pipelines.delete(&Scenario::queues(), true).await?;
        stopped
    }
}
