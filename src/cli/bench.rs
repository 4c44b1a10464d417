//! `strata bench` (run, `compare`, `report`) and `strata explain`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::bench::model::{BenchRun, SCHEMA};
use crate::bench::{Options, analysis, render};
use crate::config::{Config, Sources};
use crate::error::{Error, Result};

/// `strata bench`: a run, or one of its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Compare two runs' JSON: what got faster or slower beyond the noise.
    ///
    /// Workloads are matched by profile, id and engine. A change counts
    /// when it is larger than --threshold and than the spread of that
    /// figure across each file's rounds. Exit status 1 when anything got
    /// slower.
    Compare(CompareArgs),
    /// Write docs/ANALYSIS.md (or --out) from runs' JSON: the measured
    /// results, the commands that reproduce them, the decision matrix,
    /// the trade-offs, the architecture and the migration strategy.
    Report(ReportArgs),
}

/// What `strata bench` measures and how.
#[derive(Debug, Args)]
struct RunArgs {
    /// About a minute: phases of 0.4 s, 2 rounds, 10,000 runs to search.
    #[arg(long)]
    quick: bool,
    /// Seconds of each measured phase (default 3, --quick 0.4).
    #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
    seconds: Option<Duration>,
    /// Open-loop rate for every workload, requests a second (default: a
    /// quarter of the workload's best closed-loop throughput, at most
    /// --max-rate).
    #[arg(long, value_name = "PER_SECOND", value_parser = positive_rate)]
    rate: Option<f64>,
    /// The highest automatic open-loop rate.
    #[arg(long, value_name = "PER_SECOND", default_value = "10000", value_parser = positive_rate)]
    max_rate: f64,
    /// Sessions (connections) serving the open loop's queue.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    connections: u16,
    /// Closed-loop concurrencies, comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "1,8,64", value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Vec<u16>,
    /// Open-loop rounds per workload and interleaved rounds of each
    /// baseline (default 3, --quick 2).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: Option<u16>,
    /// Only these workloads: ids or store prefixes, comma-separated
    /// (`kv`, `relational.join`, `cache`, `http`). `strata bench --only
    /// list` lists them.
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    only: Vec<String>,
    /// The workload whose offered rate is raised step by step, to find
    /// the knee; `none` for no sweep.
    #[arg(long, value_name = "ID", default_value = "kv.read")]
    sweep: String,
    /// A running `strata serve` (http://HOST:PORT) for the HTTP workloads,
    /// instead of one the bench starts on its own data dir. The bench
    /// writes a feature view `bench_activity` and models `bench-*` to it.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Skip the HTTP workloads.
    #[arg(long)]
    no_http: bool,
    /// Synthetic runs seeded for run search (default 100,000, --quick
    /// 10,000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    runs: Option<u64>,
    /// Profiles to bench in turn, comma-separated (`embedded,full`); a
    /// profile whose services do not answer is reported as skipped.
    /// Default: the configuration as loaded (--profile).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    profiles: Vec<String>,
    /// Write the results as JSON (machine, versions, configuration, every
    /// histogram's percentiles) to FILE.
    #[arg(long = "json-file", value_name = "FILE")]
    json_file: Option<PathBuf>,
    /// Write the results as Markdown tables to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Draw the percentile curves and the sweep to FILE (SVG).
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// The longest one request may take before it counts as failed.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = positive_seconds)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct CompareArgs {
    /// The earlier run's JSON (from --json-file).
    old: PathBuf,
    /// The later run's JSON.
    new: PathBuf,
    /// The smallest relative change that counts, in percent.
    #[arg(long, value_name = "PERCENT", default_value = "10", value_parser = positive_rate)]
    threshold: f64,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Runs' JSON (from --json-file), e.g. one per profile.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Where to write the analysis; `-` for standard output.
    #[arg(long, value_name = "FILE", default_value = "docs/ANALYSIS.md")]
    out: PathBuf,
}

/// `strata explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// A bench run's JSON: the decision matrix then cites its figures.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

fn positive_seconds(s: &str) -> std::result::Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 3600.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{s} must be above 0 and at most 3600 seconds"))
    }
}

fn positive_rate(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 10_000_000.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be above 0 and at most 10,000,000"))
    }
}

/// Every workload id, for `--only list` and its checks.
const WORKLOADS: [&str; 22] = [
    "kv.read",
    "kv.write",
    "kv.batch_read",
    "kv.batch_write",
    "relational.read",
    "relational.write",
    "relational.batch_read",
    "relational.batch_write",
    "relational.join",
    "documents.read",
    "documents.write",
    "documents.batch_read",
    "documents.batch_write",
    "documents.aggregate",
    "cache.l1",
    "cache.l2",
    "cache.miss",
    "queue.roundtrip",
    "search.runs",
    "http.features",
    "http.features_batch",
    "http.predict",
];

fn matches(id: &str, pattern: &str) -> bool {
    id == pattern || (id.starts_with(pattern) && id[pattern.len()..].starts_with('.'))
}

pub(crate) async fn run(sources: &Sources, args: BenchArgs, json: bool) -> Result<ExitCode> {
    match args.command {
        Some(BenchCommand::Compare(c)) => compare(c),
        Some(BenchCommand::Report(r)) => report(r),
        None => measure(sources, args.run, json).await,
    }
}

async fn measure(sources: &Sources, args: RunArgs, json: bool) -> Result<ExitCode> {
    if args.only.iter().any(|o| o == "list") {
        for id in WORKLOADS {
            println!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    for pattern in &args.only {
        if !WORKLOADS.iter().any(|id| matches(id, pattern)) {
            return Err(Error::invalid(format!(
                "--only {pattern}: no such workload or store (`strata bench --only list` lists them)"
            ))
            .with_field("only"));
        }
    }
    let sweep = match args.sweep.as_str() {
        "none" => None,
        id if WORKLOADS.contains(&id) => Some(id.to_owned()),
        other => {
            return Err(Error::invalid(format!(
                "--sweep {other}: no such workload (`strata bench --only list` lists them; `none` for no sweep)"
            ))
            .with_field("sweep"));
        }
    };
    for path in [&args.json_file, &args.markdown, &args.chart]
        .into_iter()
        .flatten()
    {
        check_writable(path)?;
    }
    let mut options = Options::new(sources.clone(), args.quick);
    if let Some(seconds) = args.seconds {
        options.phase = seconds;
    }
    options.rate = args.rate;
    options.max_rate = args.max_rate;
    options.connections = usize::from(args.connections);
    options.concurrency = args.concurrency.iter().map(|c| usize::from(*c)).collect();
    if let Some(rounds) = args.rounds {
        options.rounds = usize::from(rounds);
    }
    options.only = args.only.clone();
    options.sweep = sweep;
    options.url = args.url.clone();
    options.no_http = args.no_http;
    if let Some(runs) = args.runs {
        options.runs = runs;
    }
    options.profiles = args.profiles.clone();
    options.timeout = args.timeout;
    options.progress = !json;
    let command = std::iter::once("strata".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let result = crate::bench::run(&options, command).await?;
    if let Some(path) = &args.json_file {
        let text = serde_json::to_string_pretty(&result)
            .map_err(|e| Error::internal(format!("cannot render the results as JSON: {e}")))?;
        write(path, &text)?;
    }
    if let Some(path) = &args.markdown {
        write(path, &render::markdown(&result))?;
    }
    if let Some(path) = &args.chart {
        write(path, &render::chart_svg(&result)?)?;
    }
    if json {
        super::output::print_json(
            &serde_json::to_value(&result)
                .map_err(|e| Error::internal(format!("cannot render the results: {e}")))?,
        )?;
    } else {
        print!("{}", render::table(&result));
    }
    for (path, what) in [
        (&args.json_file, "JSON"),
        (&args.markdown, "Markdown"),
        (&args.chart, "chart"),
    ] {
        if let Some(path) = path {
            eprintln!("bench: {what} written to {}", path.display());
        }
    }
    let failed: Vec<String> = result
        .profiles
        .iter()
        .flat_map(|p| {
            let errors = p.workloads.iter().filter_map(move |w| {
                let all = || w.open.iter().chain(&w.closed);
                let errors: u64 = all().map(|m| m.errors - m.timeouts).sum();
                let first = all()
                    .find_map(|m| m.first_error.clone())
                    .unwrap_or_default();
                (errors > 0).then(|| {
                    format!(
                        "{} {}: {errors} failed requests; first: {first}",
                        p.profile, w.id
                    )
                })
            });
            let broken = p
                .skipped
                .iter()
                .filter(|s| WORKLOADS.contains(&s.what.as_str()))
                .map(move |s| format!("{} {}: {}", p.profile, s.what, s.reason));
            errors.chain(broken).collect::<Vec<_>>()
        })
        .collect();
    // Timeouts are the system being slower than the load: reported, but
    // measured figures like any other, not a failure of the bench.
    for p in &result.profiles {
        for w in &p.workloads {
            let timeouts: u64 = w.open.iter().chain(&w.closed).map(|m| m.timeouts).sum();
            if timeouts > 0 {
                eprintln!(
                    "bench: {} {}: {timeouts} requests had no answer within {} s",
                    p.profile,
                    w.id,
                    args.timeout.as_secs_f64()
                );
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for line in &failed {
            eprintln!("bench: {line}");
        }
        Ok(ExitCode::from(1))
    }
}

/// Fails before measuring, rather than after, when a result cannot be
/// written where asked.
fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::invalid(format!(
            "cannot write {}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

/// Reads a run's JSON, refusing other versions of the format.
pub(crate) fn read_run(path: &Path) -> Result<BenchRun> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not JSON: {e}", path.display())))?;
    match value.get("schema").and_then(|s| s.as_u64()) {
        Some(v) if v == u64::from(SCHEMA) => {}
        Some(v) => {
            return Err(Error::invalid(format!(
                "{} is bench results format {v}; this strata reads format {SCHEMA}",
                path.display()
            )));
        }
        None => {
            return Err(Error::invalid(format!(
                "{} is not the JSON of `strata bench --json-file` (no \"schema\" field)",
                path.display()
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        Error::invalid(format!(
            "{} is not the JSON of `strata bench --json-file`: {e}",
            path.display()
        ))
    })
}

fn compare(args: CompareArgs) -> Result<ExitCode> {
    let old = read_run(&args.old)?;
    let new = read_run(&args.new)?;
    let report = render::compare(&old, &new, args.threshold / 100.0);
    print!("{}", report.render());
    Ok(if report.regressions() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn report(args: ReportArgs) -> Result<ExitCode> {
    let runs = args
        .files
        .iter()
        .map(|f| read_run(f))
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let text = analysis::analysis_markdown(&runs, &names);
    if args.out.as_os_str() == "-" {
        print!("{text}");
    } else {
        check_writable(&args.out)?;
        write(&args.out, &text)?;
        eprintln!("bench: analysis written to {}", args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn explain(config: &Config, args: ExplainArgs) -> Result<ExitCode> {
    let run = args.from.as_deref().map(read_run).transpose()?;
    print!("{}", analysis::explain(config, run.as_ref()));
    Ok(ExitCode::SUCCESS)
}
