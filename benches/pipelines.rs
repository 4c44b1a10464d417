//! Throughput of the pipelines, each figure beside a baseline measured in
//! the same run, with a table at the end:
//!
//! - `embedded`: publish → worker handler → ack over the embedded broker,
//!   key-value and document engines (a temp dir): `N` tasks published with
//!   `Publisher::publish_many` (in chunks, from a few tasks) to a
//!   `QueueSpec::tasks("bench")` queue whose `Worker` runs a handler that
//!   answers `Outcome::Done`; timed until `WorkerStats::done` reaches `N`.
//!   Once with the default `dedupe_window` (the key-value idempotency check
//!   and mark per message), once with `0s` (no check). Baseline: the same
//!   messages through the bare `EmbeddedBroker` (`publish_batch`, one
//!   consumer with the worker's prefetch acking each delivery).
//! - `rabbitmq` (full profile, `STRATA_TEST_FULL=1`): the same end to end
//!   over RabbitMQ (persistent messages, publisher confirms) with Redis as
//!   the key-value engine (a key prefix of the run's own) and the embedded
//!   document engine (only dead letters would reach it); under a
//!   `pipelines.prefix` of the run's own, deleted at the end. Then the
//!   publish-only rate into the declared queue: the batching `Publisher`
//!   (`publish_many`) vs one `Broker::publish` after another; baseline
//!   `Broker::publish_batch` of 1,024 messages at a time (what
//!   `benches/queue.rs` measures).
//! - `events`: `POST /v1/events` with 100 events a request through the API
//!   router in process (`tower::ServiceExt::oneshot`, the whole axum stack
//!   but the socket) from several concurrent tasks on the embedded profile,
//!   every answer 202; the analytics queue is declared (so the events are
//!   routed and kept) and purged between phases, and nothing consumes it.
//!   Baseline: `analytics::events::publish` with the same batches, no HTTP.
//! - `outbox`: `M` outbox rows (`run.completed` events as the registry
//!   writes them, inserted in bulk through the `outbox` entity), then
//!   `Relay::run_once` until the backlog is 0, publishing to a topic
//!   exchange with a queue bound to `#`: on SQLite with the embedded broker,
//!   and (full profile) on a fresh PostgreSQL database of the run's own,
//!   dropped at the end, with RabbitMQ. Baseline: `Broker::publish_batch`
//!   of the same messages in batches of `outbox.batch`, as a relay's pass
//!   publishes them.
//!
//! `cargo bench --bench pipelines` (every section; those of the full
//! profile say they are skipped unless `STRATA_TEST_FULL=1`), or one
//! section: `cargo bench --bench pipelines -- embedded|rabbitmq|events|outbox`.
//! Under `cargo test --benches` it runs as a short smoke test. Settings
//! from the environment: `STRATA_BENCH_MESSAGES` (embedded tasks, default
//! 200,000), `STRATA_BENCH_RABBIT_MESSAGES` (default 30,000),
//! `STRATA_BENCH_EVENTS` (default 200,000), `STRATA_BENCH_OUTBOX_ROWS`
//! (default 20,000), `STRATA_BENCH_JSON` (a file to write the results to
//! as JSON). Targets (from the pipelines issue) are reported, not enforced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use serde_json::{Value, json};
use strata::analytics::events::{self, NewEvent};
use strata::config::{Config, KvConfig, OutboxConfig, Sources};
use strata::engines::queue::embedded::EmbeddedBroker;
use strata::engines::queue::{
    Broker, ConsumeOptions, ExchangeKind, ExchangeOptions, Message, Outgoing, QueueOptions,
};
use strata::engines::{self, Engines, KvStore};
use strata::pipelines::{
    HandlerFn, Outcome, Pipelines, PipelinesConfig, QueueSpec, Task, Worker, WorkerStats,
};
use strata::platform::entities::outbox as outbox_rows;
use strata::platform::{OutboxEvent, Platform};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Tasks per `publish_many` call.
const CHUNK: usize = 1_000;
/// Concurrent publishing tasks (end to end) and HTTP clients (events).
const PUBLISHERS: usize = 4;
/// Concurrent clients of `POST /v1/events`.
const CLIENTS: usize = 8;
/// Events per request.
const EVENTS_PER_REQUEST: usize = 100;
/// The longest a phase may take before it counts as a failure.
const PATIENCE: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env(&args);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "pipelines bench: {cores} core(s); embedded {} tasks, rabbitmq {} tasks, {} events, {} outbox rows{}",
        settings.messages,
        settings.rabbit_messages,
        settings.events,
        settings.outbox_rows,
        if settings.full { "" } else { " (smoke test)" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(1, 4))
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report::default();
    if settings.wants("embedded") {
        runtime.block_on(embedded(&settings, &mut report));
    }
    if settings.wants("rabbitmq") {
        match full_profile("rabbitmq") {
            Some(config) => runtime.block_on(rabbitmq(&settings, &config, &mut report)),
            None => report.note("rabbitmq: skipped (set STRATA_TEST_FULL=1)".into()),
        }
    }
    if settings.wants("events") {
        runtime.block_on(events_ingest(&settings, &mut report));
    }
    if settings.wants("outbox") {
        runtime.block_on(outbox_sqlite(&settings, &mut report));
        match full_profile("outbox") {
            Some(config) => runtime.block_on(outbox_postgres(&settings, &config, &mut report)),
            None => report.note("outbox on PostgreSQL: skipped (set STRATA_TEST_FULL=1)".into()),
        }
    }
    report.print_table();
    if let Some(path) = &settings.json {
        let document = json!({
            "bench": "pipelines",
            "cores": cores,
            "settings": {
                "messages": settings.messages,
                "rabbit_messages": settings.rabbit_messages,
                "events": settings.events,
                "outbox_rows": settings.outbox_rows,
                "section": settings.filter,
            },
            "rows": report.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "notes": report.notes,
        });
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        match std::fs::write(path, text + "\n") {
            Ok(()) => println!("results written to {}", path.display()),
            Err(e) => report
                .failures
                .push(format!("writing {}: {e}", path.display())),
        }
    }
    if !report.failures.is_empty() {
        for failure in &report.failures {
            eprintln!("FAILED: {failure}");
        }
        std::process::exit(1);
    }
}

// --- Settings and report -------------------------------------------------

struct Settings {
    /// `cargo bench` (`--bench`), not the smoke test of `cargo test`.
    full: bool,
    messages: usize,
    rabbit_messages: usize,
    events: usize,
    outbox_rows: usize,
    filter: Option<String>,
    json: Option<PathBuf>,
}

fn env_parse(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.trim().replace('_', "").parse().unwrap_or_else(|_| {
            eprintln!("pipelines bench: {name}={text:?} does not parse; using {default}");
            default
        }),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env(args: &[String]) -> Settings {
        let full = args.iter().any(|a| a == "--bench");
        let scale = |n: usize| if full { n } else { n / 100 };
        Settings {
            full,
            messages: env_parse("STRATA_BENCH_MESSAGES", scale(200_000)).max(1),
            rabbit_messages: env_parse("STRATA_BENCH_RABBIT_MESSAGES", scale(30_000)).max(1),
            events: env_parse("STRATA_BENCH_EVENTS", scale(200_000)).max(EVENTS_PER_REQUEST),
            outbox_rows: env_parse("STRATA_BENCH_OUTBOX_ROWS", scale(20_000)).max(1),
            filter: args.iter().find(|a| !a.starts_with('-')).cloned(),
            json: std::env::var_os("STRATA_BENCH_JSON")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| section.contains(f))
    }
}

struct Row {
    section: &'static str,
    figure: String,
    /// Per second.
    value: f64,
    unit: &'static str,
    baseline: Option<(String, f64)>,
    target: Option<f64>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|(_, b)| *b > 0.0)
            .map(|(_, b)| self.value / b)
    }

    fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline.as_ref().map(|(name, _)| name),
            "baseline_value": self.baseline.as_ref().map(|(_, v)| v),
            "ratio": self.ratio(),
            "target": self.target,
        })
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn row(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: Option<(&str, f64)>,
        target: Option<f64>,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            value,
            unit,
            baseline: baseline.map(|(n, v)| (n.to_owned(), v)),
            target,
        };
        println!(
            "  {section}: {} = {} {unit}{}",
            row.figure,
            thousands(value),
            row.baseline
                .as_ref()
                .map(|(n, v)| format!(" (baseline {n}: {})", thousands(*v)))
                .unwrap_or_default()
        );
        self.rows.push(row);
    }

    fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    fn print_table(&self) {
        println!();
        println!(
            "{:<9} {:<46} {:>12} {:<9} {:<44} {:>12} {:>6} {:>9}",
            "section", "figure", "value", "unit", "baseline", "baseline", "ratio", "target"
        );
        for row in &self.rows {
            let (name, base) = match &row.baseline {
                Some((name, value)) => (name.as_str(), thousands(*value)),
                None => ("", String::new()),
            };
            println!(
                "{:<9} {:<46} {:>12} {:<9} {:<44} {:>12} {:>6} {:>9}",
                row.section,
                row.figure,
                thousands(row.value),
                row.unit,
                name,
                base,
                row.ratio().map(|r| format!("{r:.2}")).unwrap_or_default(),
                row.target
                    .map(|t| format!(
                        "{}{}",
                        if row.value >= t { "ok " } else { "LOW " },
                        thousands(t)
                    ))
                    .unwrap_or_default(),
            );
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}

fn thousands(value: f64) -> String {
    let n = value.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64().max(1e-9)
}

/// The full profile's configuration, or `None` unless `STRATA_TEST_FULL=1`.
fn full_profile(section: &str) -> Option<Config> {
    if std::env::var("STRATA_TEST_FULL").as_deref() != Ok("1") {
        return None;
    }
    let sources = Sources {
        config_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")),
        profile: Some("full".into()),
        ..Default::default()
    };
    match Config::load(&sources) {
        Ok(config) => Some(config),
        Err(e) => {
            eprintln!("{section}: the full profile does not load: {e}");
            None
        }
    }
}

/// A name of this run's own: letters, digits and `_`.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos:x}", std::process::id())
}

// --- End to end ------------------------------------------------------------

/// A task message as `Pipelines::send_task` builds it (JSON, persistent,
/// a UUIDv7 id, normal priority).
fn task_message(i: usize) -> Message {
    let mut message = Message::json(&json!({"n": i, "kind": "bench"}))
        .persistent()
        .with_message_id(uuid::Uuid::now_v7().to_string())
        .with_priority(0);
    message.properties.content_type = Some("application/json".into());
    message
}

/// Publishes `n` tasks to the queue `bench` through the pipelines'
/// batching publisher, `PUBLISHERS` tasks at once, `CHUNK` a call.
async fn publish_tasks(pipelines: &Pipelines, n: usize) -> Result<(), String> {
    let exchange = pipelines.topology().tasks();
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let pipelines = pipelines.clone();
        let exchange = exchange.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = p * CHUNK;
            while i < n {
                let end = (i + CHUNK).min(n);
                let outgoing = (i..end)
                    .map(|k| Outgoing::new(exchange.clone(), "bench", task_message(k)))
                    .collect();
                for result in pipelines.publisher().publish_many(outgoing).await {
                    match result {
                        Ok(p) if p.routed => {}
                        Ok(_) => return Err("a task was not routed".to_owned()),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                i += PUBLISHERS * CHUNK;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Publishes `n` tasks while a worker with a `Done` handler runs; the
/// rate from the first publish to the `n`th `Done`.
async fn end_to_end(pipelines: &Pipelines, n: usize) -> Result<f64, String> {
    let spec = QueueSpec::tasks("bench");
    let worker =
        Worker::new(pipelines).handle(spec, HandlerFn(|_task: Task| async { Outcome::Done }));
    worker.declare().await.map_err(|e| e.to_string())?;
    let stats = worker.stats();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    let start = Instant::now();
    publish_tasks(pipelines, n).await?;
    let published = start.elapsed();
    let finished = stats
        .wait_until(PATIENCE, |s| WorkerStats::get(&s.done) >= n as u64)
        .await;
    let took = start.elapsed();
    shutdown.cancel();
    let _ = running.await;
    if !finished {
        return Err(format!(
            "only {} of {n} tasks done within {PATIENCE:?}",
            WorkerStats::get(&stats.done)
        ));
    }
    let odd = WorkerStats::get(&stats.duplicates)
        + WorkerStats::get(&stats.dead)
        + WorkerStats::get(&stats.retried);
    if odd > 0 {
        return Err(format!("{odd} tasks were not simply done"));
    }
    println!(
        "    {n} tasks: published in {:.2} s, all done after {:.2} s",
        published.as_secs_f64(),
        took.as_secs_f64()
    );
    Ok(rate(n, took))
}

/// The bare broker: `n` messages published in batches of 1,024 by one task
/// while one consumer with `prefetch` acks each delivery.
async fn raw_round_trip(broker: Arc<dyn Broker>, queue: &str, n: usize, prefetch: u16) -> f64 {
    let mut consumer = broker
        .consume(
            queue,
            ConsumeOptions {
                prefetch,
                consumer_tag: None,
            },
        )
        .await
        .expect("consume");
    let start = Instant::now();
    let publisher = {
        let broker = Arc::clone(&broker);
        let queue = queue.to_owned();
        tokio::spawn(async move {
            let mut i = 0;
            while i < n {
                let end = (i + 1_024).min(n);
                let batch = (i..end)
                    .map(|k| Outgoing::new("", queue.clone(), task_message(k)))
                    .collect();
                for result in broker.publish_batch(batch).await {
                    assert!(result.expect("publish").routed);
                }
                i = end;
            }
        })
    };
    for _ in 0..n {
        let delivery = consumer.next().await.expect("open").expect("delivery");
        delivery.ack().await.expect("ack");
    }
    let took = start.elapsed();
    publisher.await.expect("publisher");
    rate(n, took)
}

async fn embedded_pipelines(dedupe: bool) -> (Pipelines, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let mut pipelines_config = PipelinesConfig {
        prefix: "bench".into(),
        ..Default::default()
    };
    if !dedupe {
        pipelines_config.dedupe_window = Duration::ZERO;
    }
    let pipelines = Pipelines::with_engines(
        Arc::new(EmbeddedBroker::new()),
        engines::open_kv(&config).await.expect("kv"),
        engines::open_documents(&config).await.expect("documents"),
        &pipelines_config,
    )
    .await
    .expect("pipelines");
    (pipelines, dir)
}

async fn embedded(settings: &Settings, report: &mut Report) {
    println!(
        "embedded: publish -> worker -> ack, {} tasks",
        settings.messages
    );
    let n = settings.messages;
    let prefetch = PipelinesConfig::default().concurrency;
    let raw = {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        broker
            .declare_queue("raw", QueueOptions::default())
            .await
            .expect("declare");
        raw_round_trip(broker, "raw", n, prefetch).await
    };
    let baseline = format!("bare EmbeddedBroker, prefetch {prefetch}");
    for (dedupe, figure) in [
        (true, "e2e, dedupe on (default 24h window)"),
        (false, "e2e, dedupe_window = 0s"),
    ] {
        let (pipelines, _dir) = embedded_pipelines(dedupe).await;
        match end_to_end(&pipelines, n).await {
            Ok(value) => report.row(
                "embedded",
                figure,
                value,
                "msg/s",
                Some((&baseline, raw)),
                Some(300_000.0),
            ),
            Err(e) => report.failures.push(format!("embedded {figure}: {e}")),
        }
    }
    report.row(
        "embedded",
        format!("bare broker publish+consume+ack (prefetch {prefetch})"),
        raw,
        "msg/s",
        None,
        None,
    );
}

// --- RabbitMQ ---------------------------------------------------------------

async fn rabbitmq(settings: &Settings, full: &Config, report: &mut Report) {
    let n = settings.rabbit_messages;
    println!("rabbitmq: {n} persistent tasks with confirms");
    let broker = match engines::open_queue(full).await {
        Ok(broker) => broker,
        Err(e) => {
            report.failures.push(format!("rabbitmq: connect: {e}"));
            return;
        }
    };
    let KvConfig::Redis(mut redis) = full.kv.clone() else {
        report
            .failures
            .push("rabbitmq: the full profile's kv is not Redis".into());
        return;
    };
    let prefix = unique("bench");
    redis.key_prefix = format!("{prefix}:");
    let kv: Arc<dyn KvStore> = match strata::engines::kv::redis::RedisKv::connect(&redis).await {
        Ok(kv) => Arc::new(kv),
        Err(e) => {
            report
                .failures
                .push(format!("rabbitmq: connect to Redis: {e}"));
            return;
        }
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let local = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let documents = engines::open_documents(&local).await.expect("documents");
    let spec = QueueSpec::tasks("bench");
    let mut figures = Vec::new();
    for dedupe in [true, false] {
        let config = PipelinesConfig {
            prefix: format!("{prefix}{}", if dedupe { "d" } else { "n" }),
            // Long enough for the run; the keys go away on their own.
            dedupe_window: if dedupe {
                Duration::from_secs(600)
            } else {
                Duration::ZERO
            },
            ..Default::default()
        };
        let pipelines = match Pipelines::with_engines(
            Arc::clone(&broker),
            Arc::clone(&kv),
            Arc::clone(&documents),
            &config,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                report.failures.push(format!("rabbitmq: pipelines: {e}"));
                return;
            }
        };
        let outcome = end_to_end(&pipelines, n).await;
        // Publish-only, into the same (now empty) queue, nobody consuming.
        let publish_only = if dedupe {
            Some(publish_only(&pipelines, broker.as_ref(), n).await)
        } else {
            None
        };
        if let Err(e) = pipelines.delete(std::slice::from_ref(&spec), true).await {
            report
                .failures
                .push(format!("rabbitmq: deleting the topology: {e}"));
        }
        figures.push((dedupe, outcome, publish_only));
    }
    let mut publish_batch_rate = None;
    for (_, _, publish_only) in &figures {
        if let Some(Ok((_, _, batch))) = publish_only {
            publish_batch_rate = Some(*batch);
        }
    }
    let baseline = publish_batch_rate.map(|b| ("Broker::publish_batch(1024), publish only", b));
    for (dedupe, outcome, publish_only) in figures {
        let figure = if dedupe {
            "e2e, dedupe on Redis"
        } else {
            "e2e, dedupe_window = 0s"
        };
        match outcome {
            Ok(value) => report.row("rabbitmq", figure, value, "msg/s", baseline, Some(15_000.0)),
            Err(e) => report.failures.push(format!("rabbitmq {figure}: {e}")),
        }
        match publish_only {
            Some(Ok((many, sequential, batch))) => {
                report.row(
                    "rabbitmq",
                    "publish only: Publisher::publish_many",
                    many,
                    "msg/s",
                    Some(("Broker::publish_batch(1024)", batch)),
                    None,
                );
                report.row(
                    "rabbitmq",
                    "publish only: sequential Broker::publish",
                    sequential,
                    "msg/s",
                    Some(("Broker::publish_batch(1024)", batch)),
                    None,
                );
                report.row(
                    "rabbitmq",
                    "publish only: Broker::publish_batch(1024)",
                    batch,
                    "msg/s",
                    None,
                    None,
                );
            }
            Some(Err(e)) => report.failures.push(format!("rabbitmq publish only: {e}")),
            None => {}
        }
    }
}

/// Publish-only rates into the declared `bench` queue: the batching
/// publisher, sequential `publish`, and `publish_batch` of 1,024.
async fn publish_only(
    pipelines: &Pipelines,
    broker: &dyn Broker,
    n: usize,
) -> Result<(f64, f64, f64), String> {
    let queue = pipelines.topology().queue("bench");
    let exchange = pipelines.topology().tasks();
    broker
        .purge_queue(&queue)
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    publish_tasks(pipelines, n).await?;
    let many = rate(n, start.elapsed());
    broker
        .purge_queue(&queue)
        .await
        .map_err(|e| e.to_string())?;

    // One confirm at a time is slow: a tenth of the messages (at least 500).
    let few = (n / 10).max(500).min(n);
    let start = Instant::now();
    for i in 0..few {
        let published = broker
            .publish(&exchange, "bench", task_message(i))
            .await
            .map_err(|e| e.to_string())?;
        if !published.routed {
            return Err("not routed".into());
        }
    }
    let sequential = rate(few, start.elapsed());
    broker
        .purge_queue(&queue)
        .await
        .map_err(|e| e.to_string())?;

    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + 1_024).min(n);
        let batch = (i..end)
            .map(|k| Outgoing::new(exchange.clone(), "bench", task_message(k)))
            .collect();
        for result in broker.publish_batch(batch).await {
            result.map_err(|e| e.to_string())?;
        }
        i = end;
    }
    let batch = rate(n, start.elapsed());
    broker
        .purge_queue(&queue)
        .await
        .map_err(|e| e.to_string())?;
    Ok((many, sequential, batch))
}

// --- POST /v1/events ---------------------------------------------------------

fn new_event(i: usize) -> NewEvent {
    let kind = ["view", "view", "view", "click", "purchase", "error"][i % 6];
    NewEvent {
        id: None,
        user_id: format!("u{}", i % 1_000),
        kind: kind.into(),
        product_id: (kind != "error").then(|| format!("p{}", i % 500)),
        category: Some("books".into()),
        amount: (kind == "purchase").then_some(12.5),
        at: None,
    }
}

async fn events_ingest(settings: &Settings, report: &mut Report) {
    let requests = settings.events / EVENTS_PER_REQUEST;
    let total = requests * EVENTS_PER_REQUEST;
    println!("events: {requests} requests of {EVENTS_PER_REQUEST} events from {CLIENTS} clients");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let engines = Engines::open(&config).await.expect("engines");
    let platform = Platform::with_engines(engines.clone(), config.sagas)
        .await
        .expect("platform");
    let serving = strata::serving::Serving::open(&platform, &config.serving)
        .await
        .expect("serving");
    let pipelines = Pipelines::open(&platform, &config.pipelines)
        .await
        .expect("pipelines");
    let scenario =
        strata::analytics::scenario::Scenario::open(&platform, &pipelines, &config.analytics)
            .expect("scenario");
    let router = strata::api::router(platform, serving, pipelines.clone(), scenario, &config.api);
    let queue = events::queue();
    pipelines.declare(&queue).await.expect("declare");
    let queue_name = pipelines.topology().queue(&queue.name);
    let broker = engines.queue.clone();

    let body = |r: usize| {
        let events: Vec<Value> = (0..EVENTS_PER_REQUEST)
            .map(|k| serde_json::to_value(new_event(r * EVENTS_PER_REQUEST + k)).unwrap())
            .map(|mut v| {
                // `id: null` etc. are accepted, but a client omits them.
                v.as_object_mut()
                    .unwrap()
                    .retain(|_, value| !value.is_null());
                v
            })
            .collect();
        serde_json::to_vec(&json!({ "events": events })).unwrap()
    };
    // Bodies are built before the clock starts: the client's JSON is not
    // the server's work.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new((0..requests.min(1_000)).map(body).collect());

    let http = {
        let start = Instant::now();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (router, bodies) = (router.clone(), Arc::clone(&bodies));
            clients.push(tokio::spawn(async move {
                let mut r = c;
                while r < requests {
                    let request = Request::post("/v1/events")
                        .header("content-type", "application/json")
                        .body(Body::from(bodies[r % bodies.len()].clone()))
                        .unwrap();
                    let response = router.clone().oneshot(request).await.unwrap();
                    let status = response.status();
                    if status != StatusCode::ACCEPTED {
                        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                            .await
                            .unwrap_or_default();
                        return Err(format!(
                            "answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
                    r += CLIENTS;
                }
                Ok(())
            }));
        }
        let mut failure = None;
        for client in clients {
            if let Err(e) = client.await.unwrap() {
                failure = Some(e);
            }
        }
        (failure, rate(total, start.elapsed()))
    };
    let kept = broker.queue_info(&queue_name).await.map(|i| i.messages);
    broker.purge_queue(&queue_name).await.expect("purge");

    let direct = {
        let batches: Arc<Vec<Vec<NewEvent>>> = Arc::new(
            (0..requests.min(1_000))
                .map(|r| {
                    (0..EVENTS_PER_REQUEST)
                        .map(|k| new_event(r * EVENTS_PER_REQUEST + k))
                        .collect()
                })
                .collect(),
        );
        let start = Instant::now();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (pipelines, batches) = (pipelines.clone(), Arc::clone(&batches));
            clients.push(tokio::spawn(async move {
                let mut r = c;
                while r < requests {
                    let results = events::publish(&pipelines, batches[r % batches.len()].clone())
                        .await
                        .map_err(|e| e.to_string())?;
                    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                        return Err(e.to_string());
                    }
                    r += CLIENTS;
                }
                Ok::<(), String>(())
            }));
        }
        let mut failure = None;
        for client in clients {
            if let Err(e) = client.await.unwrap() {
                failure = Some(e);
            }
        }
        (failure, rate(total, start.elapsed()))
    };
    broker.purge_queue(&queue_name).await.expect("purge");
    if let Some(e) = http.0 {
        report.failures.push(format!("POST /v1/events: {e}"));
    }
    if let Some(e) = direct.0 {
        report.failures.push(format!("events::publish: {e}"));
    }
    match kept {
        Ok(k) if k == total as u64 => {}
        other => report.failures.push(format!(
            "POST /v1/events: the analytics queue holds {other:?}, not {total}"
        )),
    }
    report.row(
        "events",
        format!("POST /v1/events, {EVENTS_PER_REQUEST}/request, {CLIENTS} clients"),
        http.1,
        "events/s",
        Some(("analytics::events::publish, no HTTP", direct.1)),
        Some(20_000.0),
    );
    report.row(
        "events",
        "analytics::events::publish (no HTTP)",
        direct.1,
        "events/s",
        None,
        None,
    );
    engines.relational.close().await.ok();
}

// --- Outbox relay --------------------------------------------------------------

/// A `run.completed` event's data as the registry writes it.
fn completed_data(i: usize) -> Value {
    json!({
        "run_id": i,
        "model_name": "fraud-detector",
        "framework": "pytorch",
        "status": "completed",
        "metrics": {"accuracy": 0.95, "loss": 0.12, "training_time_seconds": 3600.0},
        "started_at": "2026-01-01T10:00:00Z",
        "completed_at": "2026-01-01T11:00:00Z",
    })
}

/// Inserts `m` unsent outbox rows in bulk.
async fn insert_rows(db: &sea_orm::DatabaseConnection, m: usize) {
    let now = chrono::Utc::now();
    let mut i = 0;
    while i < m {
        let end = (i + 500).min(m);
        let rows = (i..end).map(|k| outbox_rows::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            topic: Set("run.completed".into()),
            aggregate: Set(format!("fd-{k}")),
            payload: Set(completed_data(k).to_string()),
            created_at: Set(now),
            sent_at: Set(None),
            claimed_by: Set(None),
            claimed_until: Set(None),
            attempts: Set(0),
            last_error: Set(None),
        });
        outbox_rows::Entity::insert_many(rows)
            .exec(db)
            .await
            .expect("insert outbox rows");
        i = end;
    }
}

/// The relay over `m` rows and, as baseline, `publish_batch` of the same
/// messages in batches of `outbox.batch`.
async fn relay_and_baseline(
    engines: Engines,
    broker: Arc<dyn Broker>,
    label: &'static str,
    m: usize,
    report: &mut Report,
    target: Option<f64>,
) {
    let exchange = unique("bench_outbox_x");
    let queue = unique("bench_outbox_q");
    broker
        .declare_exchange(&exchange, ExchangeKind::Topic, ExchangeOptions::default())
        .await
        .expect("declare exchange");
    broker
        .declare_queue(&queue, QueueOptions::default())
        .await
        .expect("declare queue");
    broker
        .bind_queue(&queue, &exchange, "#", Default::default())
        .await
        .expect("bind");
    let db = engines.relational.clone();
    let platform = Platform::with_engines(engines, Default::default())
        .await
        .expect("platform");
    insert_rows(&db, m).await;
    let outbox = platform.outbox().clone();
    assert_eq!(outbox.backlog().await.expect("backlog"), m as u64);
    let batch = OutboxConfig::default().batch;
    let relay = outbox.relay(Arc::clone(&broker), exchange.clone());
    let start = Instant::now();
    let mut published = 0;
    let mut passes = 0;
    loop {
        let pass = relay.run_once().await.expect("relay pass");
        passes += 1;
        published += pass.published;
        if pass.failed > 0 {
            report
                .failures
                .push(format!("outbox {label}: {} events failed", pass.failed));
        }
        if pass.published == 0 && pass.failed == 0 {
            break;
        }
    }
    let relayed = start.elapsed();
    let backlog = outbox.backlog().await.expect("backlog");
    if backlog != 0 || published != m {
        report.failures.push(format!(
            "outbox {label}: published {published} of {m}, backlog {backlog}"
        ));
    }
    let routed = broker
        .queue_info(&queue)
        .await
        .expect("queue info")
        .messages;
    broker.purge_queue(&queue).await.expect("purge");

    // The same messages, straight through the broker.
    let messages: Vec<Message> = (0..m)
        .map(|k| {
            OutboxEvent {
                seq: k as i64 + 1,
                topic: "run.completed".into(),
                aggregate: format!("fd-{k}"),
                at: chrono::Utc::now(),
                payload: completed_data(k),
            }
            .message()
        })
        .collect();
    let start = Instant::now();
    for chunk in messages.chunks(batch) {
        let outgoing = chunk
            .iter()
            .map(|m| Outgoing::new(exchange.clone(), "run.completed", m.clone()))
            .collect();
        for result in broker.publish_batch(outgoing).await {
            result.expect("publish");
        }
    }
    let direct = start.elapsed();
    broker.delete_queue(&queue).await.ok();
    broker.delete_exchange(&exchange).await.ok();
    println!(
        "    {m} rows in {passes} passes, {:.2} s ({routed} routed); publish_batch alone {:.2} s",
        relayed.as_secs_f64(),
        direct.as_secs_f64()
    );
    report.row(
        "outbox",
        format!("relay, {label}, batch {batch}"),
        rate(m, relayed),
        "events/s",
        Some((&format!("publish_batch({batch}) alone"), rate(m, direct))),
        target,
    );
    db.close().await.ok();
}

async fn outbox_sqlite(settings: &Settings, report: &mut Report) {
    let m = settings.outbox_rows;
    println!("outbox: {m} rows on SQLite, embedded broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let engines = Engines::open(&config).await.expect("engines");
    strata::platform::schema::apply(&engines)
        .await
        .expect("schema");
    let broker = engines.queue.clone();
    relay_and_baseline(engines, broker, "SQLite + embedded broker", m, report, None).await;
}

async fn outbox_postgres(settings: &Settings, full: &Config, report: &mut Report) {
    let m = settings.outbox_rows;
    println!("outbox: {m} rows on PostgreSQL (a database of its own), RabbitMQ");
    let name = unique("bench");
    let admin = strata::engines::relational::connect(&full.relational, &full.data_dir)
        .await
        .expect("the full profile's PostgreSQL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the bench database");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.relational = full.relational.clone();
    let base = full.relational.url.clone().expect("full profile URL");
    let (server, _) = base.rsplit_once('/').expect("URL names a database");
    config.relational.url = Some(format!("{server}/{name}"));
    let run = async {
        let engines = Engines::open(&config).await.expect("engines");
        strata::platform::schema::apply(&engines)
            .await
            .expect("schema");
        let rabbit = engines::open_queue(full).await.expect("RabbitMQ");
        relay_and_baseline(
            engines,
            rabbit,
            "PostgreSQL + RabbitMQ",
            m,
            report,
            Some(5_000.0),
        )
        .await;
    };
    run.await;
    if let Err(e) = admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
    {
        report
            .failures
            .push(format!("dropping the bench database {name}: {e}"));
    }
    admin.close().await.ok();
}
