//! A bench run: for each profile, a sandbox, its workloads measured closed
//! loop (for the maximum throughput) and then open loop (for latency at a
//! fixed rate), a sweep, the native baselines, the derived ratios.

use std::sync::Arc;
use std::time::Duration;

use super::Subject;
use super::harness::{self, OpenLoop};
use super::model::{
    BenchRun, EngineSet, Machine, ProfileRun, Ratio, SCHEMA, Skipped, SweepRun, WorkloadRun,
};
use super::sandbox::Sandbox;
use crate::config::{Config, KvConfig, Sources};
use crate::error::{Error, Result};

/// The share of a workload's best closed-loop throughput offered open
/// loop by default: well below saturation, where latency is the system's
/// and not a queue's (the sweep shows what happens above).
pub const OPEN_SHARE: f64 = 0.25;

/// Options of a bench run (`strata bench --help` describes each).
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the configuration comes from; each profile of `profiles` is
    /// loaded from it.
    pub sources: Sources,
    /// Profiles to bench; empty: the configuration as loaded.
    pub profiles: Vec<String>,
    /// `--quick`: shorter phases, fewer runs to search.
    pub quick: bool,
    /// Each measured phase.
    pub phase: Duration,
    /// The open-loop rate; `None`: [`OPEN_SHARE`] of the workload's best
    /// closed-loop throughput, at most `max_rate`.
    pub rate: Option<f64>,
    /// The highest automatic open-loop rate.
    pub max_rate: f64,
    /// Sessions serving the open loop's queue.
    pub connections: usize,
    /// Closed-loop concurrencies.
    pub concurrency: Vec<usize>,
    /// Open-loop rounds per workload, and rounds of each baseline
    /// comparison (interleaved with strata's).
    pub rounds: usize,
    /// Workload ids (or prefixes: `kv`, `cache.l1`) to run; empty: all.
    pub only: Vec<String>,
    /// The workload to sweep; `None`: no sweep.
    pub sweep: Option<String>,
    /// A running `strata serve` for the HTTP workloads, instead of one
    /// started by the bench.
    pub url: Option<String>,
    /// Skip the HTTP workloads.
    pub no_http: bool,
    /// Synthetic runs seeded for run search.
    pub runs: u64,
    /// The longest one request may take.
    pub timeout: Duration,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// The executable to start `strata serve` from.
    pub exe: Option<std::path::PathBuf>,
}

impl Options {
    /// The defaults, or `--quick`'s.
    pub fn new(sources: Sources, quick: bool) -> Options {
        Options {
            sources,
            profiles: Vec::new(),
            quick,
            phase: if quick {
                Duration::from_millis(400)
            } else {
                Duration::from_secs(3)
            },
            rate: None,
            max_rate: 10_000.0,
            connections: 8,
            concurrency: vec![1, 8, 64],
            rounds: if quick { 2 } else { 3 },
            only: Vec::new(),
            sweep: Some("kv.read".to_owned()),
            url: None,
            no_http: false,
            runs: if quick { 10_000 } else { 100_000 },
            timeout: Duration::from_secs(10),
            progress: true,
            exe: std::env::current_exe().ok(),
        }
    }

    fn wants(&self, id: &str) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|o| id == o || (id.starts_with(o.as_str()) && id[o.len()..].starts_with('.')))
    }
}

/// Runs the bench; `command` is the command line, kept in the results.
pub async fn run(options: &Options, command: String) -> Result<BenchRun> {
    if options.rounds == 0 || options.connections == 0 || options.concurrency.contains(&0) {
        return Err(Error::invalid(
            "rounds, connections and every concurrency must be at least 1",
        ));
    }
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // `--version` of the native tools: short processes, off the runtime.
    let tools = tokio::task::spawn_blocking(super::baseline::tool_versions)
        .await
        .map_err(|e| Error::internal(format!("asking the native tools' versions failed: {e}")))?;
    let machine = machine(tools);
    let names: Vec<Option<String>> = if options.profiles.is_empty() {
        vec![options.sources.profile.clone()]
    } else {
        // `embedded` is the built-in default: no profile file over it.
        options
            .profiles
            .iter()
            .map(|p| (p != "embedded").then(|| p.clone()))
            .collect()
    };
    let mut profiles = Vec::new();
    for name in &names {
        let sources = Sources {
            profile: name.clone(),
            ..options.sources.clone()
        };
        let config = Config::load(&sources)?;
        let label = name.clone().unwrap_or_else(|| {
            let e = engine_set(&config);
            let embedded = e.relational == "sqlite"
                && [&e.documents, &e.kv, &e.queue]
                    .iter()
                    .all(|k| *k == "embedded");
            if embedded { "embedded" } else { "default" }.to_owned()
        });
        eprintln!("bench: profile {label}");
        match profile(options, &sources, &config, &label).await {
            Ok(run) => profiles.push(run),
            Err(e) if names.len() > 1 => {
                eprintln!("bench: profile {label} skipped: {e}");
                profiles.push(ProfileRun {
                    profile: label.clone(),
                    engines: engine_set(&config),
                    sandbox: String::new(),
                    config: config.to_redacted_json().unwrap_or_default(),
                    workloads: Vec::new(),
                    sweep: None,
                    baselines: Vec::new(),
                    ratios: Vec::new(),
                    skipped: vec![Skipped {
                        what: format!("profile {label}"),
                        reason: e.to_string(),
                    }],
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(BenchRun {
        schema: SCHEMA,
        started_at,
        command,
        quick: options.quick,
        phase_seconds: options.phase.as_secs_f64(),
        machine,
        profiles,
    })
}

fn engine_set(config: &Config) -> EngineSet {
    let relational = match &config.relational.url {
        Some(url) if url.starts_with("postgres") => "postgres",
        _ => "sqlite",
    };
    let kind = |v: serde_json::Value| {
        v.get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("embedded")
            .to_owned()
    };
    let json = config.to_redacted_json().unwrap_or_default();
    EngineSet {
        relational: relational.to_owned(),
        documents: kind(json["documents"].clone()),
        kv: kind(json["kv"].clone()),
        queue: kind(json["queue"].clone()),
        targets: Vec::new(),
    }
}

/// Progress over a profile's phases.
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(total: u64, wanted: bool, unit: &str) -> Progress {
        let bar = if wanted && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {unit}, {{elapsed}} {{msg}}"
            )) {
                bar.set_style(style);
            }
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }

    fn phase(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }

    fn done(&self) {
        self.bar.inc(1);
    }
}

async fn profile(
    options: &Options,
    sources: &Sources,
    config: &Config,
    label: &str,
) -> Result<ProfileRun> {
    let sandbox = Sandbox::open(config).await?;
    let result = measure_profile(options, sources, config, label, &sandbox).await;
    sandbox.remove().await;
    result
}

async fn measure_profile(
    options: &Options,
    sources: &Sources,
    config: &Config,
    label: &str,
    sandbox: &Sandbox,
) -> Result<ProfileRun> {
    let mut skipped = Vec::new();
    let mut engines = engine_set(config);
    engines.targets = vec![
        format!("relational: {}", relational_target(&sandbox.config)),
        format!("documents: {}", sandbox.engines.documents.target()),
        format!("kv: {}", sandbox.engines.kv.target()),
        format!("queue: {}", sandbox.engines.queue.target()),
    ];
    if options.wants("search.runs") {
        eprintln!("bench: loading the data ({} runs to search)", options.runs);
    } else {
        eprintln!("bench: loading the data");
    }
    let seeding = Progress::new(options.runs, options.progress, "runs");
    let wants = |id: &str| options.wants(id);
    let mut subjects = super::workloads::subjects(sandbox, options.runs, &wants, &|n| {
        seeding.bar.set_position(n)
    })
    .await?;
    seeding.bar.finish_and_clear();
    let mut server = None;
    if !options.no_http
        && ["http.features", "http.features_batch", "http.predict"]
            .iter()
            .any(|id| options.wants(id))
    {
        match http_subjects(options, sources, sandbox).await {
            Ok((found, started)) => {
                if let Some(url) = &options.url {
                    engines.targets.push(format!(
                        "http: the strata serve at {url}, on its own engines, not this profile's"
                    ));
                }
                subjects.extend(found);
                server = started;
            }
            Err(e) => skipped.push(Skipped {
                what: "HTTP workloads".to_owned(),
                reason: e.to_string(),
            }),
        }
    }
    subjects.retain(|s| options.wants(&s.id));
    let sweep_id = options
        .sweep
        .clone()
        .filter(|id| subjects.iter().any(|s| &s.id == id));
    let phases = subjects.len() as u64 * (options.concurrency.len() + options.rounds) as u64
        + u64::from(sweep_id.is_some()) * 8;
    let progress = Progress::new(phases, options.progress, "phases");
    let mut workloads = Vec::new();
    for subject in &subjects {
        match measure(options, subject, &progress).await {
            Ok(run) => workloads.push(run),
            Err(e) => skipped.push(Skipped {
                what: subject.id.clone(),
                reason: e.to_string(),
            }),
        }
    }
    let mut sweep = None;
    if let Some(id) = &sweep_id
        && let (Some(subject), Some(run)) = (
            subjects.iter().find(|s| &s.id == id),
            workloads.iter().find(|w| &w.id == id),
        )
    {
        progress.phase(&format!("{id}: sweep"));
        let capacity = run.max_throughput().max(10.0);
        let rates: Vec<f64> = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5]
            .iter()
            .map(|f| (f * capacity).round().max(1.0))
            .collect();
        let step = OpenLoop {
            rate: 1.0,
            duration: options.phase,
            connections: options.connections,
            timeout: options.timeout,
            drain: options.phase,
        };
        match harness::sweep(&subject.workload, &rates, &step).await {
            Ok(found) => {
                sweep = Some(SweepRun {
                    workload: id.clone(),
                    connections: options.connections,
                    sweep: found,
                })
            }
            Err(e) => skipped.push(Skipped {
                what: format!("sweep of {id}"),
                reason: e.to_string(),
            }),
        }
        progress.bar.inc(8);
    }
    progress.phase("baselines");
    let baselines = baselines(options, config, sandbox, &mut skipped).await;
    progress.bar.finish_and_clear();
    if let Some(server) = server
        && let Err(trouble) = server.stop().await
    {
        skipped.push(Skipped {
            what: "strata serve".to_owned(),
            reason: trouble.to_string(),
        });
    }
    let ratios = ratios(&workloads);
    Ok(ProfileRun {
        profile: label.to_owned(),
        engines,
        sandbox: sandbox.name.clone(),
        config: config.to_redacted_json()?,
        workloads,
        sweep,
        baselines,
        ratios,
        skipped,
    })
}

fn relational_target(config: &Config) -> String {
    match &config.relational.url {
        Some(url) => crate::config::redact_url(url),
        None => "sqlite in the bench's temporary data dir".to_owned(),
    }
}

/// Warm-up, closed loops at each concurrency, then open-loop rounds.
async fn measure(options: &Options, subject: &Subject, progress: &Progress) -> Result<WorkloadRun> {
    let warm = options.phase.min(Duration::from_millis(500)) / 2;
    harness::closed_loop(
        &subject.workload,
        options.connections,
        warm,
        options.timeout,
    )
    .await?;
    let mut closed = Vec::new();
    for c in &options.concurrency {
        progress.phase(&format!("{}: closed ×{c}", subject.id));
        closed.push(
            harness::closed_loop(&subject.workload, *c, options.phase, options.timeout).await?,
        );
        progress.done();
    }
    let best = closed.iter().map(|m| m.throughput).fold(0.0, f64::max);
    let rate = options
        .rate
        .unwrap_or_else(|| (best * OPEN_SHARE).min(options.max_rate))
        .max(1.0)
        .round();
    let mut open = Vec::new();
    for round in 0..options.rounds {
        progress.phase(&format!(
            "{}: open {} /s, round {}",
            subject.id,
            harness::fmt_rate(rate),
            round + 1
        ));
        open.push(
            harness::open_loop(
                &subject.workload,
                &OpenLoop {
                    rate,
                    duration: options.phase,
                    connections: options.connections,
                    timeout: options.timeout,
                    drain: options.phase.max(Duration::from_secs(1)),
                },
            )
            .await?,
        );
        progress.done();
    }
    Ok(WorkloadRun {
        id: subject.id.clone(),
        title: subject.title.clone(),
        store: subject.store,
        engine: subject.engine.clone(),
        items: subject.items,
        open,
        closed,
    })
}

async fn http_subjects(
    options: &Options,
    sources: &Sources,
    sandbox: &Sandbox,
) -> Result<(Vec<Subject>, Option<super::http::Server>)> {
    let (address, server) = match &options.url {
        Some(url) => (
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            None,
        ),
        None => {
            let exe = options
                .exe
                .clone()
                .ok_or_else(|| Error::internal("cannot find strata's own executable"))?;
            let mut args: Vec<std::ffi::OsString> = Vec::new();
            if let Some(dir) = &sources.config_dir {
                args.push("--config-dir".into());
                args.push(dir.into());
            }
            if let Some(profile) = &sources.profile {
                args.push("--profile".into());
                args.push(profile.into());
            }
            if let Some(file) = &sources.config_file {
                args.push("--config".into());
                args.push(file.into());
            }
            args.push("--data-dir".into());
            args.push(sandbox.data_dir().join("serve").into());
            let env: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = sandbox
                .overrides()
                .into_iter()
                .map(|(k, v)| (k.into(), Some(v.into())))
                .collect();
            let server = super::http::Server::start(&exe, &args, &env).await?;
            (server.address().to_owned(), Some(server))
        }
    };
    let fixture = super::http::prepare(&address, 1_000).await?;
    // A server named by --url runs on engines of its own, which the
    // profile's label and targets do not describe.
    let engine = match &options.url {
        Some(_) => format!("strata serve at {address}"),
        None => "strata serve".to_owned(),
    };
    Ok((super::http::subjects(&address, &fixture, &engine), server))
}

async fn baselines(
    options: &Options,
    config: &Config,
    sandbox: &Sandbox,
    skipped: &mut Vec<Skipped>,
) -> Vec<super::model::Comparison> {
    let mut out = Vec::new();
    let clients = 8;
    if !options.wants("kv.read") && !options.wants("relational.read") {
        return out;
    }
    match &sandbox.config.kv {
        KvConfig::Redis(redis) => {
            match super::baseline::redis_get(
                Arc::clone(&sandbox.engines.kv),
                redis,
                clients,
                options.rounds,
                options.phase,
            )
            .await
            {
                Ok(c) => out.push(c),
                Err(e) => skipped.push(Skipped {
                    what: "redis-benchmark".to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        _ => skipped.push(Skipped {
            what: "redis-benchmark".to_owned(),
            reason: "the key-value engine is not Redis; the baseline runs on the full profile"
                .to_owned(),
        }),
    }
    match &sandbox.config.relational.url {
        Some(url) if url.starts_with("postgres") => {
            let password = config
                .relational
                .password
                .as_ref()
                .map(|p| p.expose().to_owned());
            match super::baseline::pgbench_select(
                &sandbox.engines.relational,
                url,
                password.as_deref(),
                clients,
                options.rounds,
                options.phase,
            )
            .await
            {
                Ok(c) => out.push(c),
                Err(e) => skipped.push(Skipped {
                    what: "pgbench -S".to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        _ => skipped.push(Skipped {
            what: "pgbench -S".to_owned(),
            reason:
                "the relational engine is not PostgreSQL; the baseline runs on the full profile"
                    .to_owned(),
        }),
    }
    out
}

/// The figure compared: closed-loop throughput at 8 (the baselines'
/// clients), else the best.
fn throughput(w: &WorkloadRun) -> f64 {
    w.closed_at(8)
        .map_or_else(|| w.max_throughput(), |m| m.throughput)
}

/// The derived comparisons between workloads measured.
pub(crate) fn ratios(workloads: &[WorkloadRun]) -> Vec<Ratio> {
    let find = |id: &str| {
        workloads
            .iter()
            .find(|w| w.id == id && w.open.iter().chain(&w.closed).all(|m| m.ok > 0))
    };
    let mut out = Vec::new();
    let mut by_throughput = |id: &str, title: &str, a: &str, b: &str, expectation: Option<&str>| {
        if let (Some(a), Some(b)) = (find(a), find(b)) {
            let (ta, tb) = (throughput(a), throughput(b));
            if tb > 0.0 {
                out.push(Ratio {
                    id: id.to_owned(),
                    title: title.to_owned(),
                    value: ta / tb,
                    basis: format!(
                        "closed-loop throughput at 8: {} vs {} /s ({} vs {})",
                        harness::fmt_rate(ta),
                        harness::fmt_rate(tb),
                        a.engine,
                        b.engine
                    ),
                    expectation: expectation.map(str::to_owned),
                });
            }
        }
    };
    by_throughput(
        "kv-vs-relational-read",
        "key-value read vs relational read",
        "kv.read",
        "relational.read",
        Some("≥ 5× (the scenario's expectation)"),
    );
    by_throughput(
        "kv-vs-documents-read",
        "key-value read vs document read",
        "kv.read",
        "documents.read",
        None,
    );
    by_throughput(
        "documents-vs-relational-read",
        "document read vs relational read",
        "documents.read",
        "relational.read",
        None,
    );
    by_throughput(
        "kv-vs-relational-write",
        "key-value write vs relational write",
        "kv.write",
        "relational.write",
        None,
    );
    by_throughput(
        "relational-join-vs-documents-aggregate",
        "relational join + group by vs document aggregation pipeline",
        "relational.join",
        "documents.aggregate",
        None,
    );
    // By the latency of one session alone (closed loop ×1): the cost of a
    // lookup itself, which at a few microseconds the open loop's hand-off
    // from its dispatcher would hide.
    let mut by_latency = |id: &str, title: &str, fast: &str, slow: &str| {
        if let (Some(f), Some(s)) = (find(fast), find(slow))
            && let (Some(fo), Some(so)) = (f.closed_at(1), s.closed_at(1))
            && fo.uncorrected.p50_us > 0.0
        {
            out.push(Ratio {
                id: id.to_owned(),
                title: title.to_owned(),
                value: so.uncorrected.p50_us / fo.uncorrected.p50_us,
                basis: format!(
                    "p50 of one session (closed loop ×1): {:.1} vs {:.1} µs",
                    fo.uncorrected.p50_us, so.uncorrected.p50_us
                ),
                expectation: None,
            });
        }
    };
    by_latency(
        "cache-l1-vs-l2",
        "cache L1 hit vs L2 hit",
        "cache.l1",
        "cache.l2",
    );
    by_latency(
        "cache-l2-vs-miss",
        "cache L2 hit vs miss to L3",
        "cache.l2",
        "cache.miss",
    );
    by_latency(
        "cache-l1-vs-relational-read",
        "cache L1 hit vs relational read",
        "cache.l1",
        "relational.read",
    );
    for store in ["kv", "relational", "documents"] {
        if let (Some(single), Some(batch)) = (
            find(&format!("{store}.read")),
            find(&format!("{store}.batch_read")),
        ) {
            let (ts, tb) = (
                throughput(single),
                throughput(batch) * f64::from(batch.items),
            );
            if ts > 0.0 {
                out.push(Ratio {
                    id: format!("{store}-batch-vs-single"),
                    title: format!("{store}: items read a second, batches of 100 vs one by one"),
                    value: tb / ts,
                    basis: format!(
                        "closed-loop at 8: {} vs {} items/s",
                        harness::fmt_rate(tb),
                        harness::fmt_rate(ts)
                    ),
                    expectation: None,
                });
            }
        }
    }
    out
}

/// The machine, build and tools.
pub(crate) fn machine(tools: Vec<super::model::ToolVersion>) -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let memory_bytes = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let cpu = read("/proc/cpuinfo").and_then(|c| {
        c.lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
    });
    let kernel = read("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_bytes,
        cpu,
        os: format!(
            "{} {}{}",
            std::env::consts::OS,
            kernel.map(|k| format!("{k} ")).unwrap_or_default(),
            std::env::consts::ARCH
        ),
        strata_version: env!("CARGO_PKG_VERSION").to_owned(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_owned(),
        load_average: read("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        tools,
    }
}
