//! `strata demo`: the main job. On whatever engines are configured it loads
//! the sample data, then walks through every capability in titled sections
//! with readable tables, and ends with where each kind of data lives.
//!
//! What MUST hold:
//!
//! - It runs again and again on the same engines: the sample data is
//!   seeded idempotently, and what the demo registers itself (the
//!   `demo-`-prefixed models) is removed from every engine before it ends,
//!   and before it starts in case an earlier demo was interrupted.
//! - Its output on fresh engines is the same on every profile, once the
//!   `engines:` line, ids (`#12`), timestamps and timings (`1.2 ms`) are set
//!   aside: the snapshot test runs it on the embedded and on the full
//!   profile against one snapshot. So everything else it prints is
//!   deterministic: fixed sample data, total orders, rounded numbers.
//! - It talks to the platform's services only, like the API does.
//!
//! # Layout
//!
//! One module per section, in the order they print: [`registry`] (2),
//! [`documents`] (3), [`models`] (4), [`sagas`] (5), [`migration`] (6),
//! [`search`] (7), [`cache`] (8), [`serving`] (9), the async pipelines
//! [`onboarding`] (10), [`realtime`] (11) and [`personalization`] (12),
//! then [`routing`]. [`pipelines`] starts the worker the pipeline sections
//! share, on a topology of the run's own. This module holds the output
//! helpers and runs them in turn.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use bson::{Bson, doc};
use comfy_table::Table;

use super::seed::report_table;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Platform;
use crate::platform::sagas::RegisterRun;
use crate::serving::{Serving, ServingConfig};

mod cache;
mod documents;
mod migration;
mod models;
mod onboarding;
mod personalization;
mod pipelines;
mod realtime;
mod registry;
mod routing;
mod sagas;
mod search;
mod serving;

/// The width tables wrap to: the output is the same on every terminal.
const WIDTH: u16 = 110;

/// The model the demo registers across engines (and removes at the end).
pub const DEMO_MODEL: &str = "demo-fraud-detector-v3";

/// Writes to `out`, mapping I/O errors (a closed pipe) into strata's.
pub(super) struct Out<'a> {
    out: &'a mut dyn Write,
}

impl Out<'_> {
    pub(super) fn line(&mut self, text: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "{}", text.as_ref())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot write output: {e}")))
    }

    /// Prints a table, wrapped to [`WIDTH`] columns whatever the terminal.
    pub(super) fn table(&mut self, mut table: Table) -> Result<()> {
        table.set_width(WIDTH);
        self.line(table.to_string())
    }

    pub(super) fn section(&mut self, number: u32, title: &str, what: &str) -> Result<Instant> {
        self.line("")?;
        let heading = format!("{number}. {title}");
        self.line(&heading)?;
        self.line("=".repeat(heading.chars().count()))?;
        self.line(what)?;
        Ok(Instant::now())
    }

    pub(super) fn step(&mut self, title: &str) -> Result<()> {
        self.line("")?;
        self.line(format!("-- {title}"))
    }

    pub(super) fn took(&mut self, started: Instant) -> Result<()> {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.line(format!("(section took {ms:.1} ms)"))
    }
}

pub(super) fn f4(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

pub(super) fn opt<T: ToString>(x: Option<T>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

pub(super) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A BSON value as compact text (relaxed extended JSON).
pub(super) fn bson_text(value: &Bson) -> String {
    value.clone().into_relaxed_extjson().to_string()
}

/// Runs the demo on `platform`, writing to `out`.
pub async fn run_demo(platform: &Platform, out: &mut dyn Write) -> Result<()> {
    let mut out = Out { out };
    out.line("strata demo: the data plane of an ML platform, on the configured engines")?;
    let [relational, documents, kv, queue] = platform.engine_kinds();
    out.line(format!(
        "engines: relational={relational}, documents={documents}, kv={kv}, queue={queue}"
    ))?;
    remove_demo_models(platform).await?;

    let started = out.section(
        1,
        "Sample data",
        "The seed scenario, loaded idempotently: what exists is left as it is.",
    )?;
    let report = platform.seeder().scenario().await?;
    out.table(report_table(&report))?;
    out.took(started)?;

    registry::section(platform, &mut out).await?;
    documents::section(platform, &mut out).await?;
    models::section(platform, &mut out).await?;
    sagas::section(platform, &mut out).await?;
    migration::section(platform, &mut out).await?;
    search::section(platform, &mut out).await?;
    cache::section(platform, &mut out).await?;
    let serving = Serving::open(platform, &ServingConfig::default()).await?;
    serving::section(platform, &serving, &mut out).await?;

    let demo = pipelines::DemoPipelines::start(platform, &serving).await?;
    let shown = pipeline_sections(platform, &demo, &mut out).await;
    // The demo's queues, exchanges and dead letters go even when a section
    // failed.
    let finished = demo.finish().await;
    shown?;
    finished?;

    remove_demo_models(platform).await?;
    out.line("")?;
    out.line(format!(
        "Removed {DEMO_MODEL} from every engine again; the sample data stays."
    ))?;
    routing::section(&mut out)
}

/// Sections 10 to 12, on the demo's own pipelines.
async fn pipeline_sections(
    platform: &Platform,
    demo: &pipelines::DemoPipelines,
    out: &mut Out<'_>,
) -> Result<()> {
    onboarding::section(platform, demo, out).await?;
    realtime::section(platform, demo, out).await?;
    personalization::section(platform, demo, out).await
}

/// Removes what a demo registers, from every engine.
async fn remove_demo_models(platform: &Platform) -> Result<()> {
    let sagas = platform.sagas();
    sagas.unregister_run(DEMO_MODEL, None).await?;
    for model in sagas::models() {
        sagas.unregister_run(&model, None).await?;
    }
    sagas.unregister_run(serving::DEMO_SCORER, None).await?;
    let board = crate::serving::Leaderboard::new(platform.kv());
    board.remove(DEMO_MODEL).await?;
    Ok(())
}

/// The registration the demo makes (of `model_id`).
pub(super) fn demo_request(model_id: &str) -> RegisterRun {
    RegisterRun {
        dataset_name: "fraud-train-v1".into(),
        model_id: model_id.into(),
        model_name: "fraud-detector".into(),
        framework: "pytorch".into(),
        config: doc! {
            "hyperparameters": {
                "learning_rate": 0.001,
                "batch_size": 64,
                "epochs": 20,
                "layers": [128, 64, 32],
            }
        },
        tags: BTreeMap::from([
            ("team".to_owned(), "risk".to_owned()),
            ("source".to_owned(), "demo".to_owned()),
        ]),
        started_at: None,
    }
}

/// `strata demo`: opens the platform on the configured engines, runs the
/// demo to standard output and closes it. `--json` is refused: the demo is
/// for people; its parts have JSON commands and routes of their own.
pub(crate) async fn run(
    config: &crate::config::Config,
    json: bool,
) -> Result<std::process::ExitCode> {
    if json {
        return Err(Error::invalid(
            "`strata demo` prints tables for people and has no --json output; \
             `strata seed --json`, `strata migrate verify --json` and the HTTP API give JSON",
        )
        .with_field("json"));
    }
    let platform = Platform::open(config).await?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run_demo(&platform, &mut lock).await?;
    let _ = lock.flush();
    drop(lock);
    println!();
    println!(
        "Next: `strata serve` (listening on {}), then for example\n  curl 'http://{}/v1/runs?filter=framework%20IN%20(%27pytorch%27)%20OR%20accuracy%3E0.95'",
        config.api.listen, config.api.listen
    );
    platform.close(std::time::Duration::from_secs(5)).await?;
    Ok(std::process::ExitCode::SUCCESS)
}
