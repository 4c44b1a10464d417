//! Online serving, measured as load tools measure it, with a table of
//! results at the end.
//!
//! - `l1`: a `TieredCache<String>` hit in L1 (the embedded key-value
//!   engine as L2), each `get_or_load` timed on its own, in alternate
//!   batches with the same reads on a bare `moka::sync::Cache` (what L1 is
//!   built on) as the baseline. Target: p99 ≤ 2 µs.
//! - `l2`: an L2 hit on Redis (the full profile's, from
//!   `config/full.toml`; skipped when it is not reachable): closed loops at
//!   concurrency 8 and 1, each request `forget_local(key)` then
//!   `get_or_load(key)`, which must answer from L2. Beside it, the same
//!   reads through strata's Redis client alone (`RedisKv::get`, no cache),
//!   and `redis-benchmark` reading the very same key with the same
//!   concurrency and request count, as the baseline. The runs alternate
//!   (strata, client, redis-benchmark, strata, ...) so drift hits all; the
//!   table shows the median of each, and the ratios of their p50s and p99s.
//! - `http`: a real `strata serve` on the embedded profile (a temp data dir
//!   after `strata seed --runs 1000`), loaded over keep-alive HTTP/1.1
//!   connections by the small client of `strata::bench::http`. Open loop:
//!   requests are due at a fixed rate; a dispatcher thread puts each in a
//!   queue at its due time, a pool of connections serves the queue, and
//!   each latency is measured from the request's intended send time to the
//!   end of its answer (coordinated omission corrected) and, on a second
//!   row, from when it was actually sent. A short unrecorded run at the rate comes
//!   first. Closed loop: 64 connections, each sending its next request when
//!   the previous answer ends, for the achieved throughput. Workloads: `GET
//!   /healthz` (the server's floor), `GET /v1/features/{view}/{entity}`,
//!   `POST /v1/features:batch` (100 entities; open loop at its rate and at
//!   a fifth of it, away from saturation), `POST
//!   /v1/models/{id}/predict` (cached predictions) and `GET
//!   /v1/models/{id}` (cached). Every answer must be 200 and say what it
//!   should; anything else is a failure. Each phase also reports the CPU
//!   the server and the load generator used (and the server's CPU per
//!   request), and the machine's stalls ("hiccups": how late a thread
//!   sleeping 1 ms at a time wakes up).
//!
//! Latencies go into HDR histograms in nanoseconds and are printed in
//! microseconds. Performance targets are reported, not enforced; wrong
//! answers, errors and timeouts make the bench exit 1 after printing.
//!
//! `cargo bench --bench serving` (about 3 minutes); one section with
//! `cargo bench --bench serving -- http`. Under `cargo test --benches` it
//! runs as a short smoke test. Settings from the environment:
//! `STRATA_BENCH_SECONDS` (each measured phase, default 10),
//! `STRATA_BENCH_RATE` (open-loop rate, default 5000/s),
//! `STRATA_BENCH_BATCH_RATE` (default 500/s), `STRATA_BENCH_CONNECTIONS`
//! (open-loop pool, default 32), `STRATA_BENCH_CLOSED_CONNECTIONS`
//! (default 64), `STRATA_BENCH_CLIENT_THREADS` (the HTTP client's runtime
//! threads, default 1), `STRATA_BENCH_JSON` (a file to write the results
//! to as JSON).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use strata::bench::http::{
    Conn, FEATURES, Server, command, contains, feature_values, model_config, request, request_line,
    view_body,
};
use strata::cache::{CacheSettings, Tier, TieredCache};
use strata::config::{Config, KvConfig, RedisConfig, Sources};
use strata::engines::KvStore;
use strata::engines::kv::KvStoreExt;
use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
use strata::engines::kv::redis::RedisKv;
use strata::platform::seed;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

/// The largest latency a histogram holds (10 minutes), in nanoseconds.
const HISTOGRAM_MAX_NS: u64 = 600_000_000_000;
/// Keys the L1 measurement cycles through.
const L1_KEYS: usize = 1_000;
/// Calls timed back to back between two looks at the clock for the total.
const L1_BATCH: u64 = 1_000;
/// Keys each L2 task cycles through (its own, so tasks never share one).
const L2_KEYS_PER_TASK: usize = 64;
/// Bytes of each cached value.
const VALUE_BYTES: usize = 256;
/// The feature view.
const VIEW: &str = "user_activity";
/// One batch read in this many is checked answer by answer (JSON parsed).
const BATCH_CHECK_EVERY: u64 = 50;
/// Connections that send the set-up and warm-up requests.
const SETUP_CONNECTIONS: usize = 8;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = Settings::from_env(&args);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    print_header(&settings, cores);
    let load_before = load_average();
    println!("load average (1, 5, 15 min) before: {load_before}");

    let mut report = Report::default();
    if settings.wants("l1") {
        l1_hit(&settings, &mut report);
    }
    if settings.wants("l2") {
        l2_redis(&settings, &mut report);
    }
    if settings.wants("http") {
        http(&settings, &mut report);
    }

    report.note(format!(
        "load average at the start: {load_before}; at the end: {} (other work on the machine shows here)",
        load_average()
    ));
    report.print_table(cores);
    if let Some(path) = &settings.json {
        let document = report.to_json(&settings, cores);
        let text = serde_json::to_string_pretty(&document).unwrap_or_default();
        match std::fs::write(path, text + "\n") {
            Ok(()) => println!("results written to {}", path.display()),
            Err(e) => report.fail(format!("writing {}: {e}", path.display())),
        }
    }
    if !report.failures.is_empty() {
        eprintln!(
            "serving bench: {} failure(s), listed above",
            report.failures.len()
        );
        std::process::exit(1);
    }
}

/// The 1, 5 and 15 minute load averages, when the system tells them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

// --- Settings ------------------------------------------------------------

#[derive(Debug, Clone)]
struct Settings {
    /// `cargo bench` (`--bench`), not the smoke test of `cargo test`.
    full: bool,
    /// Each measured phase of the HTTP section, in seconds.
    seconds: f64,
    /// Open-loop rate of the single-entity workloads, per second.
    rate: u64,
    /// Open-loop rate of the batch read, per second.
    batch_rate: u64,
    /// Entities per batch read.
    batch_size: usize,
    /// The open loop's connection pool.
    connections: usize,
    /// Connections of a closed loop.
    closed_connections: usize,
    /// Worker threads of the HTTP client's runtime.
    client_threads: usize,
    /// Longest a request may take (queued or on the wire) before it counts
    /// as an error.
    request_timeout: Duration,
    /// Timed L1 lookups.
    l1_calls: u64,
    /// (concurrency, requests) of each L2 measurement.
    l2_loads: Vec<(usize, u64)>,
    /// Runs of each side of the L2 comparison, alternating.
    l2_rounds: usize,
    /// Entities with features.
    entities: usize,
    /// `strata seed --runs`.
    seed_runs: u64,
    /// Only the sections whose name contains it.
    filter: Option<String>,
    /// Where to write the results as JSON.
    json: Option<PathBuf>,
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            eprintln!("serving bench: {name}={text:?} does not parse; using the default");
            default
        }),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env(args: &[String]) -> Settings {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not.
        let full = args.iter().any(|a| a == "--bench");
        let seconds: f64 = env_parse("STRATA_BENCH_SECONDS", if full { 10.0 } else { 1.0 });
        let seconds = if seconds.is_finite() {
            seconds.max(0.2)
        } else {
            10.0
        };
        let l2_scale = if full { seconds / 10.0 } else { 0.05 };
        Settings {
            full,
            seconds,
            rate: env_parse("STRATA_BENCH_RATE", if full { 5_000 } else { 1_000 }).max(1),
            batch_rate: env_parse("STRATA_BENCH_BATCH_RATE", if full { 500 } else { 100 }).max(1),
            batch_size: 100,
            connections: env_parse("STRATA_BENCH_CONNECTIONS", 32usize).max(1),
            closed_connections: env_parse("STRATA_BENCH_CLOSED_CONNECTIONS", 64usize).max(1),
            client_threads: env_parse("STRATA_BENCH_CLIENT_THREADS", 1usize).max(1),
            request_timeout: Duration::from_secs(5),
            l1_calls: if full { 500_000 } else { 20_000 },
            l2_loads: vec![
                (8, ((50_000.0 * l2_scale) as u64).max(2_000)),
                (1, ((20_000.0 * l2_scale) as u64).max(1_000)),
            ],
            l2_rounds: 3,
            entities: 1_000,
            seed_runs: 1_000,
            filter: args.iter().find(|a| !a.starts_with('-')).cloned(),
            json: std::env::var_os("STRATA_BENCH_JSON")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| section.contains(f))
    }

    fn phase(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    /// The unrecorded run before each open loop.
    fn settle(&self) -> Duration {
        Duration::from_secs_f64((self.seconds / 5.0).clamp(0.2, 1.0))
    }

    fn to_json(&self) -> Value {
        json!({
            "mode": if self.full { "bench" } else { "smoke" },
            "seconds": self.seconds,
            "rate_per_s": self.rate,
            "batch_rate_per_s": self.batch_rate,
            "batch_size": self.batch_size,
            "open_loop_connections": self.connections,
            "closed_loop_connections": self.closed_connections,
            "client_threads": self.client_threads,
            "request_timeout_s": self.request_timeout.as_secs_f64(),
            "l1_calls": self.l1_calls,
            "l2_loads": self.l2_loads.iter().map(|(c, n)| json!({"concurrency": c, "requests": n})).collect::<Vec<_>>(),
            "l2_rounds": self.l2_rounds,
            "entities": self.entities,
            "seed_runs": self.seed_runs,
        })
    }
}

fn print_header(s: &Settings, cores: usize) {
    println!(
        "strata serving bench ({})",
        if s.full { "cargo bench" } else { "smoke test" }
    );
    println!(
        "machine: {cores} core(s). The load generator, `strata serve` and Redis (with redis-benchmark) \
         all share {}: every figure includes their contention for the CPU.",
        if cores == 1 {
            "this one core".to_owned()
        } else {
            format!("these {cores} cores")
        }
    );
    println!(
        "phases of {} s; open loop at {}/s ({}/s for batches of {}) over {} keep-alive connections; \
         closed loops on {} connections; HTTP client runtime: {} thread(s); request timeout {:?}",
        s.seconds,
        s.rate,
        s.batch_rate,
        s.batch_size,
        s.connections,
        s.closed_connections,
        s.client_threads,
        s.request_timeout,
    );
}

// --- Results -------------------------------------------------------------

/// A target the issue names.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// p99 at most this many microseconds.
    P99(f64),
    /// At least this many requests per second.
    Throughput(f64),
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::P99(us) if us >= 1000.0 => format!("p99 <= {} ms", us / 1000.0),
            Target::P99(us) => format!("p99 <= {us} µs"),
            Target::Throughput(rate) => format!(">= {rate:.0}/s"),
        }
    }

    fn met(self, row: &Row) -> bool {
        match self {
            Target::P99(us) => row.p99 <= us,
            Target::Throughput(rate) => row.throughput >= rate,
        }
    }
}

/// One line of the table. Latencies in microseconds.
#[derive(Debug, Clone)]
struct Row {
    section: &'static str,
    name: String,
    load: String,
    count: u64,
    errors: u64,
    p50: f64,
    p90: Option<f64>,
    p99: f64,
    p999: Option<f64>,
    max: f64,
    /// Achieved requests (answered correctly) per second.
    throughput: f64,
    target: Option<Target>,
    note: String,
}

impl Row {
    fn from_histogram(
        section: &'static str,
        name: impl Into<String>,
        load: impl Into<String>,
        h: &Histogram<u64>,
        errors: u64,
        throughput: f64,
    ) -> Row {
        let us = |ns: u64| ns as f64 / 1000.0;
        Row {
            section,
            name: name.into(),
            load: load.into(),
            count: h.len(),
            errors,
            p50: us(h.value_at_quantile(0.50)),
            p90: Some(us(h.value_at_quantile(0.90))),
            p99: us(h.value_at_quantile(0.99)),
            p999: Some(us(h.value_at_quantile(0.999))),
            max: us(h.max()),
            throughput,
            target: None,
            note: String::new(),
        }
    }

    fn with_target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self
    }

    fn with_note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    fn verdict(&self) -> Option<bool> {
        self.target.map(|t| t.met(self))
    }

    fn line(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), fmt_us);
        let target = match (self.target, self.verdict()) {
            (Some(t), Some(true)) => format!("{} ok", t.describe()),
            (Some(t), _) => format!("{} MISSED", t.describe()),
            (None, _) => String::new(),
        };
        let mut line = format!(
            "{:<46} {:>14} {:>8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.0}",
            self.name,
            self.load,
            self.count,
            self.errors,
            fmt_us(self.p50),
            opt(self.p90),
            fmt_us(self.p99),
            opt(self.p999),
            fmt_us(self.max),
            self.throughput,
        );
        for extra in [target.as_str(), self.note.as_str()] {
            if !extra.is_empty() {
                line.push_str("  ");
                line.push_str(extra);
            }
        }
        line
    }

    fn to_json(&self) -> Value {
        json!({
            "section": self.section,
            "name": self.name,
            "load": self.load,
            "count": self.count,
            "errors": self.errors,
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p999_us": self.p999,
            "max_us": self.max,
            "throughput_per_s": self.throughput,
            "target": self.target.map(Target::describe),
            "target_met": self.verdict(),
            "note": self.note,
        })
    }
}

fn fmt_us(us: f64) -> String {
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 1000.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The median of each column of `rows` (runs of one measurement).
fn median_row(rows: &[Row], name: String) -> Row {
    let column = |f: &dyn Fn(&Row) -> f64| median(rows.iter().map(f).collect());
    let optional = |f: &dyn Fn(&Row) -> Option<f64>| {
        let values: Option<Vec<f64>> = rows.iter().map(f).collect();
        values.map(median)
    };
    let mut out = rows[0].clone();
    out.name = name;
    out.count = median(rows.iter().map(|r| r.count as f64).collect()) as u64;
    out.errors = rows.iter().map(|r| r.errors).sum();
    out.p50 = column(&|r| r.p50);
    out.p90 = optional(&|r| r.p90);
    out.p99 = column(&|r| r.p99);
    out.p999 = optional(&|r| r.p999);
    out.max = column(&|r| r.max);
    out.throughput = column(&|r| r.throughput);
    out
}

#[derive(Debug, Default)]
struct Report {
    rows: Vec<Row>,
    /// (what, value, how it was computed)
    ratios: Vec<(String, f64, String)>,
    notes: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    fn row(&mut self, row: Row) {
        println!("  {}", row.line());
        self.rows.push(row);
    }

    fn ratio(&mut self, what: String, value: f64, how: String) {
        println!("  ratio: {what} = {value:.2} ({how})");
        self.ratios.push((what, value, how));
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        println!("  note: {note}");
        self.notes.push(note);
    }

    fn fail(&mut self, failure: impl Into<String>) {
        let failure = failure.into();
        eprintln!("  FAILURE: {failure}");
        self.failures.push(failure);
    }

    fn print_table(&self, cores: usize) {
        println!();
        println!(
            "=== results ({cores} core(s) shared by the load generator and every server; latencies in µs) ==="
        );
        println!(
            "{:<46} {:>14} {:>8} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}  target / note",
            "workload", "load", "count", "err", "p50", "p90", "p99", "p99.9", "max", "achieved/s"
        );
        let mut section = "";
        for row in &self.rows {
            if row.section != section {
                section = row.section;
                println!("-- {section}");
            }
            println!("{}", row.line());
        }
        if !self.ratios.is_empty() {
            println!("-- ratios");
            for (what, value, how) in &self.ratios {
                println!("{what:<60} {value:>8.2}   {how}");
            }
        }
        if !self.notes.is_empty() {
            println!("-- notes");
            for note in &self.notes {
                println!("- {note}");
            }
        }
        if self.failures.is_empty() {
            println!("-- no failures: every answer was correct");
        } else {
            println!("-- FAILURES");
            for failure in &self.failures {
                println!("- {failure}");
            }
        }
    }

    fn to_json(&self, settings: &Settings, cores: usize) -> Value {
        json!({
            "bench": "serving",
            "machine": {
                "cores": cores,
                "shared": "the load generator, strata serve and Redis run on the same cores",
            },
            "settings": settings.to_json(),
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "ratios": self.ratios.iter().map(|(what, value, how)| json!({"what": what, "value": value, "how": how})).collect::<Vec<_>>(),
            "notes": self.notes,
            "failures": self.failures,
        })
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("valid histogram bounds")
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What a set of requests (or lookups) came to.
#[derive(Debug)]
struct Tally {
    /// Latency: from the due time (open loop), else from the send.
    latency: Histogram<u64>,
    /// Open loop: from the actual send (not corrected).
    from_send: Histogram<u64>,
    /// Open loop: from the due time to the actual send (the dispatcher's
    /// lateness plus the wait for a free connection).
    queued: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// Answers that had the workload's mark (e.g. a cached prediction).
    marked: u64,
    reconnects: u64,
    /// Body bytes of the answers.
    bytes: u64,
    /// The first few failures.
    messages: Vec<String>,
    last_end: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: histogram(),
            from_send: histogram(),
            queued: histogram(),
            ok: 0,
            errors: 0,
            marked: 0,
            reconnects: 0,
            bytes: 0,
            messages: Vec::new(),
            last_end: None,
        }
    }

    fn fail(&mut self, message: String) {
        self.errors += 1;
        if self.messages.len() < 5 {
            self.messages.push(message);
        }
    }

    fn absorb(&mut self, other: Tally) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.from_send.add(&other.from_send);
        let _ = self.queued.add(&other.queued);
        self.ok += other.ok;
        self.errors += other.errors;
        self.marked += other.marked;
        self.reconnects += other.reconnects;
        self.bytes += other.bytes;
        for m in other.messages {
            if self.messages.len() < 5 {
                self.messages.push(m);
            }
        }
        self.last_end = self.last_end.max(other.last_end);
    }

    /// Reports failures (if any) as one failure of `what`.
    fn report_errors(&self, report: &mut Report, what: &str) {
        if self.errors > 0 {
            report.fail(format!(
                "{what}: {} of {} failed; first: {}",
                self.errors,
                self.ok + self.errors,
                self.messages.join(" | ")
            ));
        }
    }
}

// --- L1 ------------------------------------------------------------------

/// The loader of lookups that must be hits: never called when they are.
async fn no_load() -> strata::Result<Option<String>> {
    Err(strata::Error::internal(
        "the bench's loader ran: the key should have been cached",
    ))
}

fn value_of(key: &str) -> String {
    let mut value = format!("{key}=");
    while value.len() < VALUE_BYTES {
        value.push('x');
    }
    value
}

fn l1_hit(s: &Settings, report: &mut Report) {
    println!(
        "\n[l1] TieredCache<String> hit in L1 (embedded KV as L2), {} lookups over {L1_KEYS} keys, each timed on its own",
        s.l1_calls
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report.fail(format!("l1: a tokio runtime: {e}")),
    };
    let kv: Arc<dyn KvStore> = Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default()));
    let cache = match TieredCache::<String>::builder("bench_l1")
        .settings(CacheSettings::default())
        .l2(kv)
        .build()
    {
        Ok(cache) => cache,
        Err(e) => return report.fail(format!("l1: building the cache: {e}")),
    };
    let keys: Vec<String> = (0..L1_KEYS).map(|i| format!("user:{i:05}")).collect();
    let values: Vec<String> = keys.iter().map(|k| value_of(k)).collect();
    let measured = rt.block_on(async {
        for (key, value) in keys.iter().zip(&values) {
            let v = value.clone();
            match cache
                .get_or_load(key, move || async move { Ok(Some(v)) })
                .await
            {
                Ok(found) if found.tier == Tier::Loaded => {}
                Ok(found) => return Err(format!("loading `{key}` answered from {}", found.tier)),
                Err(e) => return Err(format!("loading `{key}`: {e}")),
            }
        }
        // The same lookups on a bare moka cache (what L1 is built on), timed
        // in alternate batches with the tiered cache's, as the baseline.
        let bare: moka::sync::Cache<String, Arc<String>> = moka::sync::Cache::builder()
            .max_capacity(64 << 20)
            .weigher(|k: &String, v: &Arc<String>| {
                u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
            })
            .build();
        for (key, value) in keys.iter().zip(&values) {
            bare.insert(key.clone(), Arc::new(value.clone()));
        }
        let (mut tiered, mut baseline) = (Tally::new(), Tally::new());
        // One untimed pass: every key is hot in L1 and the CPU caches.
        for key in &keys {
            let _ = cache.get_or_load(key, no_load).await;
            let _ = bare.get(key);
        }
        let (mut tiered_time, mut bare_time) = (Duration::ZERO, Duration::ZERO);
        let mut done = 0u64;
        while done < s.l1_calls {
            let started = Instant::now();
            for n in 0..L1_BATCH as usize {
                let i = (done as usize + n) % keys.len();
                let key = &keys[i];
                let t0 = Instant::now();
                let found = cache.get_or_load(key, no_load).await;
                let took = t0.elapsed();
                tiered.latency.saturating_record(nanos(took));
                match found {
                    Ok(f) if f.tier == Tier::L1 && f.value.as_ref() == Some(&values[i]) => {
                        tiered.ok += 1;
                    }
                    Ok(f) => tiered.fail(format!(
                        "`{key}` answered from {} with {}",
                        f.tier,
                        if f.value.is_some() {
                            "a value"
                        } else {
                            "nothing"
                        }
                    )),
                    Err(e) => tiered.fail(format!("`{key}`: {e}")),
                }
            }
            tiered_time += started.elapsed();
            let started = Instant::now();
            for n in 0..L1_BATCH as usize {
                let i = (done as usize + n) % keys.len();
                let key = &keys[i];
                let t0 = Instant::now();
                let found = bare.get(key);
                let took = t0.elapsed();
                baseline.latency.saturating_record(nanos(took));
                match found {
                    Some(v) if *v == values[i] => baseline.ok += 1,
                    _ => baseline.fail(format!("`{key}` is not in the bare moka cache")),
                }
            }
            bare_time += started.elapsed();
            done += L1_BATCH;
        }
        Ok((tiered, tiered_time, baseline, bare_time))
    });
    let (tiered, tiered_time, baseline, bare_time) = match measured {
        Ok(found) => found,
        Err(e) => return report.fail(format!("l1: {e}")),
    };
    tiered.report_errors(report, "l1 hits");
    baseline.report_errors(report, "bare moka hits");
    let over = |h: &Histogram<u64>| (1.0 - h.quantile_below(2_000)) * 100.0;
    let tiered_row = Row::from_histogram(
        "l1",
        "L1 hit: get_or_load (TieredCache<String>)",
        "1 task",
        &tiered.latency,
        tiered.errors,
        tiered.ok as f64 / tiered_time.as_secs_f64(),
    )
    .with_target(Target::P99(2.0))
    .with_note(format!(
        "{VALUE_BYTES}-byte values; {:.2}% of calls over 2 µs",
        over(&tiered.latency)
    ));
    let bare_row = Row::from_histogram(
        "l1",
        "  baseline: bare moka::sync::Cache::get",
        "1 task",
        &baseline.latency,
        baseline.errors,
        baseline.ok as f64 / bare_time.as_secs_f64(),
    )
    .with_note(format!(
        "same keys, alternate batches; {:.2}% of calls over 2 µs",
        over(&baseline.latency)
    ));
    report.ratio(
        "L1 hit: TieredCache p50 / bare moka p50".to_owned(),
        tiered_row.p50 / bare_row.p50.max(0.001),
        format!(
            "{} µs / {} µs",
            fmt_us(tiered_row.p50),
            fmt_us(bare_row.p50)
        ),
    );
    report.ratio(
        "L1 hit: TieredCache p99 / bare moka p99".to_owned(),
        tiered_row.p99 / bare_row.p99.max(0.001),
        format!(
            "{} µs / {} µs",
            fmt_us(tiered_row.p99),
            fmt_us(bare_row.p99)
        ),
    );
    report.row(tiered_row);
    report.row(bare_row);
}

// --- L2 on Redis -----------------------------------------------------------

/// `redis://user:secret@host` → `redis://user:***@host`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<an unparsable URL>".to_owned(),
    }
}

fn l2_redis(s: &Settings, report: &mut Report) {
    println!(
        "\n[l2] TieredCache<String> hit in L2 on Redis, against RedisKv::get alone and redis-benchmark"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = Sources {
        config_dir: Some(repo.join("config")),
        profile: Some("full".into()),
        ..Default::default()
    };
    let mut redis = match Config::load(&sources) {
        Ok(config) => match config.kv {
            KvConfig::Redis(redis) => redis,
            KvConfig::Embedded(_) => {
                return report.note("l2 skipped: the full profile's key-value engine is not Redis");
            }
        },
        Err(e) => return report.note(format!("l2 skipped: the full profile does not load: {e}")),
    };
    redis.key_prefix = format!("strata-bench-serving-{}:", std::process::id());
    redis.connect_timeout = Duration::from_secs(2);
    let shown = redact(&redis.url);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report.fail(format!("l2: a tokio runtime: {e}")),
    };
    let connected = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            let kv = RedisKv::connect(&redis).await?;
            kv.get("probe").await?;
            Ok::<_, strata::Error>(kv)
        })
        .await
    });
    let kv: Arc<dyn KvStore> = match connected {
        Ok(Ok(kv)) => Arc::new(kv),
        Ok(Err(e)) => {
            return report.note(format!(
                "l2 skipped: Redis at {shown} is not reachable: {e}"
            ));
        }
        Err(_) => {
            return report.note(format!(
                "l2 skipped: Redis at {shown} did not answer within 5 s"
            ));
        }
    };
    println!(
        "  Redis at {shown}, key prefix `{}`; tokio runtime with {} worker threads",
        redis.key_prefix,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    l2_measure(s, report, &rt, &redis, &kv);
    let cleaned = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), kv.delete_pattern("*")).await
    });
    match cleaned {
        Ok(Ok(removed)) => println!("  removed the bench's {removed} Redis keys"),
        Ok(Err(e)) => report.fail(format!(
            "l2: removing the bench's keys (prefix `{}`): {e}",
            redis.key_prefix
        )),
        Err(_) => report.fail(format!(
            "l2: removing the bench's keys (prefix `{}`) took over 30 s",
            redis.key_prefix
        )),
    }
}

fn l2_measure(
    s: &Settings,
    report: &mut Report,
    rt: &Runtime,
    redis: &RedisConfig,
    kv: &Arc<dyn KvStore>,
) {
    // A slow machine must not turn an L2 hit into a degraded lookup: the
    // timeouts are wide; the fast path is the same.
    let settings = CacheSettings {
        l2_timeout: Duration::from_secs(2),
        hard_timeout: Duration::from_secs(10),
        ..CacheSettings::default()
    };
    let cache = match TieredCache::<String>::builder("bench_l2")
        .settings(settings)
        .l2(Arc::clone(kv))
        .build()
    {
        Ok(cache) => cache,
        Err(e) => return report.fail(format!("l2: building the cache: {e}")),
    };
    let tasks = s.l2_loads.iter().map(|(c, _)| *c).max().unwrap_or(1);
    let keys: Vec<Arc<Vec<String>>> = (0..tasks)
        .map(|t| {
            Arc::new(
                (0..L2_KEYS_PER_TASK)
                    .map(|i| format!("t{t}:user:{i:03}"))
                    .collect(),
            )
        })
        .collect();
    let filled = rt.block_on(async {
        for key in keys.iter().flat_map(|k| k.iter()) {
            let value = value_of(key);
            match cache
                .get_or_load(key, move || async move { Ok(Some(value)) })
                .await
            {
                Ok(found) if found.tier == Tier::Loaded && !found.degraded => {}
                Ok(found) => {
                    return Err(format!(
                        "loading `{key}` answered from {} (degraded: {})",
                        found.tier, found.degraded
                    ));
                }
                Err(e) => return Err(format!("loading `{key}`: {e}")),
            }
        }
        // The entry's key in L2, which redis-benchmark reads too.
        let probe = format!("cache:bench_l2:v:{}", keys[0][0]);
        match kv.get(&probe).await {
            Ok(Some(raw)) => Ok((probe, raw.len())),
            Ok(None) => Err(format!(
                "the cache's entry is not at `{probe}` in L2: the bench needs updating"
            )),
            Err(e) => Err(format!("reading `{probe}`: {e}")),
        }
    });
    let (probe, entry_bytes) = match filled {
        Ok(found) => found,
        Err(e) => return report.fail(format!("l2: {e}")),
    };
    let baseline_key = format!("{}{probe}", redis.key_prefix);
    let tool = match std::process::Command::new("redis-benchmark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) => {
            report.note(format!(
                "redis-benchmark is not on PATH ({e}): no baseline, no ratio"
            ));
            false
        }
    };
    println!(
        "  each L2 entry is {entry_bytes} bytes in Redis; the baseline GETs `{baseline_key}`; \
         {} alternating rounds per concurrency",
        s.l2_rounds
    );
    for &(concurrency, requests) in &s.l2_loads {
        let load = format!("C={concurrency} closed");
        let mut ours = Vec::new();
        let mut raw = Vec::new();
        let mut theirs = Vec::new();
        let hiccups = Hiccups::start();
        for round in 1..=s.l2_rounds {
            let tally = rt.block_on(l2_closed_loop(
                &cache,
                &keys,
                concurrency,
                requests,
                s.request_timeout,
            ));
            let (tally, elapsed) = match tally {
                Ok(t) => t,
                Err(e) => return report.fail(format!("l2: {e}")),
            };
            tally.report_errors(
                report,
                &format!("l2 hits at C={concurrency}, round {round}"),
            );
            let row = Row::from_histogram(
                "l2",
                "L2 hit on Redis: forget_local + get_or_load",
                load.clone(),
                &tally.latency,
                tally.errors,
                tally.ok as f64 / elapsed.as_secs_f64(),
            );
            print_round(round, "strata cache", &row);
            ours.push(row);
            let tally = rt.block_on(l2_raw_loop(
                kv,
                &keys,
                concurrency,
                requests,
                s.request_timeout,
            ));
            let (tally, elapsed) = match tally {
                Ok(t) => t,
                Err(e) => return report.fail(format!("l2: {e}")),
            };
            tally.report_errors(
                report,
                &format!("RedisKv::get at C={concurrency}, round {round}"),
            );
            let row = Row::from_histogram(
                "l2",
                "RedisKv::get",
                load.clone(),
                &tally.latency,
                tally.errors,
                tally.ok as f64 / elapsed.as_secs_f64(),
            );
            print_round(round, "RedisKv::get", &row);
            raw.push(row);
            if tool {
                match rt.block_on(redis_benchmark(redis, concurrency, requests, &baseline_key)) {
                    Ok(row) => {
                        print_round(round, "redis-benchmark", &row);
                        theirs.push(row);
                    }
                    Err(e) => report.note(format!(
                        "redis-benchmark at C={concurrency}, round {round}: {e}"
                    )),
                }
            }
        }
        let hiccups = hiccups.stop();
        let ours = median_row(
            &ours,
            format!("L2 hit on Redis (strata, median of {})", ours.len()),
        )
        .with_note(format!(
            "tier asserted L2; {requests} requests per run; {hiccups}"
        ));
        let raw = median_row(
            &raw,
            format!("  RedisKv::get alone, same keys (median of {})", raw.len()),
        )
        .with_note("strata's Redis client without the cache");
        report.ratio(
            format!("L2 hit C={concurrency}: strata cache p50 / RedisKv::get p50"),
            ours.p50 / raw.p50.max(0.001),
            format!("{} µs / {} µs", fmt_us(ours.p50), fmt_us(raw.p50)),
        );
        let theirs = (!theirs.is_empty()).then(|| {
            let p95 = median(theirs.iter().map(|r| r.p90.unwrap_or(0.0)).collect());
            let mut row = median_row(
                &theirs,
                format!("redis-benchmark GET, same key (median of {})", theirs.len()),
            );
            row.p90 = None;
            row.note = format!("p95 {} µs; 1 µs resolution; -P 1", fmt_us(p95));
            row
        });
        if let Some(theirs) = &theirs {
            report.ratio(
                format!("L2 hit C={concurrency}: strata p99 / redis-benchmark p99"),
                ours.p99 / theirs.p99.max(0.001),
                format!("{} µs / {} µs", fmt_us(ours.p99), fmt_us(theirs.p99)),
            );
            report.ratio(
                format!("L2 hit C={concurrency}: strata p50 / redis-benchmark p50"),
                ours.p50 / theirs.p50.max(0.001),
                format!("{} µs / {} µs", fmt_us(ours.p50), fmt_us(theirs.p50)),
            );
            report.ratio(
                format!("L2 hit C={concurrency}: RedisKv::get p50 / redis-benchmark p50"),
                raw.p50 / theirs.p50.max(0.001),
                format!("{} µs / {} µs", fmt_us(raw.p50), fmt_us(theirs.p50)),
            );
        }
        report.row(ours);
        report.row(raw);
        if let Some(theirs) = theirs {
            report.row(theirs);
        }
    }
}

fn print_round(round: usize, who: &str, row: &Row) {
    println!(
        "    round {round} {who:<16} p50 {:>8} p99 {:>8} max {:>8} µs, {:.0}/s",
        fmt_us(row.p50),
        fmt_us(row.p99),
        fmt_us(row.max),
        row.throughput
    );
}

/// The same reads as [`l2_closed_loop`] with the key-value engine alone:
/// `GET` of each entry's L2 key through [`RedisKv`], no cache.
async fn l2_raw_loop(
    kv: &Arc<dyn KvStore>,
    keys: &[Arc<Vec<String>>],
    concurrency: usize,
    requests: u64,
    limit: Duration,
) -> Result<(Tally, Duration), String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for own in keys.iter().take(concurrency) {
        let l2_keys: Vec<String> = own
            .iter()
            .map(|k| format!("cache:bench_l2:v:{k}"))
            .collect();
        let (kv, next) = (Arc::clone(kv), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut i = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let key = &l2_keys[i % l2_keys.len()];
                i += 1;
                let t0 = Instant::now();
                let found = tokio::time::timeout(limit, kv.get(key)).await;
                let took = t0.elapsed();
                tally.latency.saturating_record(nanos(took));
                match found {
                    Ok(Ok(Some(raw))) if !raw.is_empty() => tally.ok += 1,
                    Ok(Ok(_)) => tally.fail(format!("`{key}` is not in Redis")),
                    Ok(Err(e)) => tally.fail(format!("`{key}`: {e}")),
                    Err(_) => tally.fail(format!("`{key}`: no answer within {limit:?}")),
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.absorb(
            task.await
                .map_err(|e| format!("an L2 task ended abnormally: {e}"))?,
        );
    }
    Ok((total, started.elapsed()))
}

/// `concurrency` tasks, each on keys of its own, sharing `requests`
/// lookups, each dropping its key from L1 and then reading it (an L2 hit).
async fn l2_closed_loop(
    cache: &TieredCache<String>,
    keys: &[Arc<Vec<String>>],
    concurrency: usize,
    requests: u64,
    limit: Duration,
) -> Result<(Tally, Duration), String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for own in keys.iter().take(concurrency) {
        let (cache, own, next) = (cache.clone(), Arc::clone(own), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut i = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let key = &own[i % own.len()];
                i += 1;
                cache.forget_local(key);
                let t0 = Instant::now();
                let found = tokio::time::timeout(limit, cache.get_or_load(key, no_load)).await;
                let took = t0.elapsed();
                tally.latency.saturating_record(nanos(took));
                match found {
                    Ok(Ok(f))
                        if f.tier == Tier::L2
                            && f.value.as_deref() == Some(value_of(key).as_str()) =>
                    {
                        tally.ok += 1;
                    }
                    Ok(Ok(f)) => tally.fail(format!(
                        "`{key}` answered from {} (degraded: {}), not L2",
                        f.tier, f.degraded
                    )),
                    Ok(Err(e)) => tally.fail(format!("`{key}`: {e}")),
                    Err(_) => tally.fail(format!("`{key}`: no answer within {limit:?}")),
                }
            }
            tally
        }));
    }
    let mut total = Tally::new();
    for task in tasks {
        total.absorb(
            task.await
                .map_err(|e| format!("an L2 task ended abnormally: {e}"))?,
        );
    }
    Ok((total, started.elapsed()))
}

/// `redis-benchmark` GETting `key` with `concurrency` clients, `requests`
/// in all, one per round trip; its CSV summary as a row.
async fn redis_benchmark(
    redis: &RedisConfig,
    concurrency: usize,
    requests: u64,
    key: &str,
) -> Result<Row, String> {
    let run = strata::bench::baseline::redis_benchmark(
        redis,
        concurrency,
        requests,
        key,
        Duration::from_secs(300),
    )
    .await
    .map_err(|e| e.to_string())?;
    let s = run.summary;
    Ok(Row {
        section: "l2",
        name: "redis-benchmark GET".to_owned(),
        load: format!("C={concurrency} closed"),
        count: run.requests,
        errors: 0,
        p50: s.p50_us,
        // Holds p95 until the median row is made.
        p90: Some(s.p95_us),
        p99: s.p99_us,
        p999: None,
        max: s.max_us,
        throughput: s.rps,
        target: None,
        note: String::new(),
    })
}

// --- Workloads over the HTTP client ---------------------------------------

/// Checks an answer (200 already checked): `Ok(marked)` or why it is wrong.
/// Arguments: the request's sequence number, whether to check thoroughly,
/// the head, the body.
type Check = Box<dyn Fn(u64, bool, &[u8], &[u8]) -> Result<bool, String> + Send + Sync>;

/// Requests sent round-robin, and how to check their answers.
struct Workload {
    name: String,
    requests: Vec<Vec<u8>>,
    check: Check,
    /// What a marked answer is, and the least fraction of them required.
    mark: Option<(&'static str, Option<f64>)>,
}

impl Workload {
    fn plain(name: &str, requests: Vec<Vec<u8>>) -> Workload {
        Workload {
            name: name.to_owned(),
            requests,
            check: Box::new(|_, _, _, _| Ok(false)),
            mark: None,
        }
    }

    fn request(&self, seq: u64) -> &[u8] {
        &self.requests[(seq % self.requests.len() as u64) as usize]
    }
}

/// Sends request `seq` of `w` on `conn` (connecting first when there is
/// none), within `limit`, and judges the answer into `tally`.
async fn send(
    conn: &mut Option<Conn>,
    address: &str,
    w: &Workload,
    seq: u64,
    thorough: bool,
    limit: Duration,
    tally: &mut Tally,
) {
    let reconnect = conn.is_none();
    let outcome = tokio::time::timeout(limit, async {
        if conn.is_none() {
            *conn = Some(Conn::connect(address).await.map_err(|e| e.to_string())?);
        }
        match conn.as_mut() {
            Some(c) => c.exchange(w.request(seq)).await.map_err(|e| e.to_string()),
            None => Err("no connection".to_owned()),
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no complete answer within {limit:?}")));
    if reconnect {
        tally.reconnects += 1;
    }
    let first_line = || request_line(w.request(seq));
    match (outcome, conn.as_ref()) {
        (Ok(reply), Some(c)) => {
            let body = c.body(&reply);
            tally.bytes += body.len() as u64;
            if reply.status != 200 {
                let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                tally.fail(format!("{}: {} {shown}", first_line(), reply.status));
            } else {
                match (w.check)(seq, thorough, c.head(&reply), body) {
                    Ok(marked) => {
                        tally.ok += 1;
                        tally.marked += u64::from(marked);
                    }
                    Err(wrong) => tally.fail(format!("{}: a wrong answer: {wrong}", first_line())),
                }
            }
            if reply.close {
                *conn = None;
            }
        }
        (Ok(_), None) => tally.fail(format!("{}: no connection", first_line())),
        (Err(e), _) => {
            tally.fail(format!("{}: {e}", first_line()));
            *conn = None;
        }
    }
}

async fn connect_all(
    address: &str,
    n: usize,
    limit: Duration,
) -> Result<Vec<Option<Conn>>, String> {
    let mut pool = Vec::with_capacity(n);
    for _ in 0..n {
        let conn = tokio::time::timeout(limit, Conn::connect(address))
            .await
            .map_err(|_| format!("connecting to {address} took over {limit:?}"))?
            .map_err(|e| e.to_string())?;
        pool.push(Some(conn));
    }
    Ok(pool)
}

/// Sends every request of `w` once, over `connections`, checking each
/// answer thoroughly.
fn run_each(
    rt: &Runtime,
    address: &str,
    w: &Arc<Workload>,
    connections: usize,
    limit: Duration,
) -> Result<Tally, String> {
    let next = Arc::new(AtomicU64::new(0));
    let total = w.requests.len() as u64;
    let handles: Vec<_> = (0..connections.min(w.requests.len()).max(1))
        .map(|_| {
            let (w, next, address) = (Arc::clone(w), Arc::clone(&next), address.to_owned());
            rt.spawn(async move {
                let mut tally = Tally::new();
                let mut conn = None;
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        break tally;
                    }
                    let sent = Instant::now();
                    send(&mut conn, &address, &w, seq, true, limit, &mut tally).await;
                    tally.latency.saturating_record(nanos(sent.elapsed()));
                }
            })
        })
        .collect();
    join_tallies(rt, handles)
}

fn join_tallies(
    rt: &Runtime,
    handles: Vec<tokio::task::JoinHandle<Tally>>,
) -> Result<Tally, String> {
    rt.block_on(async {
        let mut total = Tally::new();
        for handle in handles {
            total.absorb(
                handle
                    .await
                    .map_err(|e| format!("a client task ended abnormally: {e}"))?,
            );
        }
        Ok(total)
    })
}

/// A request due at `due`.
#[derive(Debug, Clone, Copy)]
struct Job {
    seq: u64,
    /// What its latency is measured from: its due time, or when the
    /// dispatcher emitted it if that was earlier (so an early emission can
    /// only lengthen a latency, never shorten it).
    start: Instant,
}

/// What an open-loop run measured.
struct OpenRun {
    tally: Tally,
    /// How late the dispatcher put requests in the queue.
    dispatch_late: Histogram<u64>,
    /// Requests the dispatcher emitted before they were due.
    early: u64,
    elapsed: Duration,
    sent: u64,
}

/// Requests of `w` due every `1/rate` s for `duration`, served by a pool of
/// `connections`; latencies from the due time and from the actual send.
fn open_loop(
    rt: &Runtime,
    address: &str,
    w: &Arc<Workload>,
    rate: u64,
    connections: usize,
    duration: Duration,
    limit: Duration,
) -> Result<OpenRun, String> {
    let pool = rt.block_on(connect_all(address, connections, limit))?;
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let queue = Arc::new(tokio::sync::Mutex::new(rx));
    let handles: Vec<_> = pool
        .into_iter()
        .map(|mut conn| {
            let (w, queue, address) = (Arc::clone(w), Arc::clone(&queue), address.to_owned());
            rt.spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let job = { queue.lock().await.recv().await };
                    let Some(job) = job else { break tally };
                    let picked = Instant::now();
                    let waited = picked.saturating_duration_since(job.start);
                    if waited > limit {
                        // Stuck in the queue as long as a request may take:
                        // an error with its time, not sent.
                        tally.latency.saturating_record(nanos(waited));
                        tally.fail(format!(
                            "request {} waited {waited:?} for a free connection",
                            job.seq
                        ));
                        continue;
                    }
                    send(&mut conn, &address, &w, job.seq, false, limit, &mut tally).await;
                    let end = Instant::now();
                    tally
                        .latency
                        .saturating_record(nanos(end.saturating_duration_since(job.start)));
                    tally.from_send.saturating_record(nanos(end - picked));
                    tally.queued.saturating_record(nanos(waited));
                    tally.last_end = Some(end);
                }
            })
        })
        .collect();
    let total = (rate as f64 * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = 1e9 / rate as f64;
    let mut dispatch_late = histogram();
    let mut early = 0u64;
    // How much longer than asked a sleep lasts (the kernel's timer slack,
    // about 50 µs): learnt as it goes and slept that much less. A sleep,
    // not a spin: the dispatcher must not take a core from the server.
    let mut oversleep = Duration::from_micros(50);
    let start = Instant::now();
    let mut sent = 0;
    for seq in 0..total {
        let due = start + Duration::from_nanos((seq as f64 * interval) as u64);
        loop {
            let now = Instant::now();
            if now + oversleep >= due {
                break;
            }
            let asked = due - now - oversleep;
            std::thread::sleep(asked);
            let over = now
                .elapsed()
                .saturating_sub(asked)
                .min(Duration::from_millis(1));
            oversleep = (oversleep * 7 + over) / 8;
        }
        let emitted = Instant::now();
        if emitted < due {
            early += 1;
        }
        dispatch_late.saturating_record(nanos(emitted.saturating_duration_since(due)));
        let job = Job {
            seq,
            start: emitted.max(due),
        };
        if tx.send(job).is_err() {
            break;
        }
        sent += 1;
    }
    drop(tx);
    let tally = join_tallies(rt, handles)?;
    let elapsed = tally
        .last_end
        .map_or(duration, |end| end.saturating_duration_since(start));
    Ok(OpenRun {
        tally,
        dispatch_late,
        early,
        elapsed,
        sent,
    })
}

/// `connections` connections each sending the next request of `w` as soon
/// as the previous answer ends, for `duration`.
fn closed_loop(
    rt: &Runtime,
    address: &str,
    w: &Arc<Workload>,
    connections: usize,
    duration: Duration,
    limit: Duration,
) -> Result<(Tally, Duration), String> {
    let pool = rt.block_on(connect_all(address, connections, limit))?;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = pool
        .into_iter()
        .map(|mut conn| {
            let (w, next, address) = (Arc::clone(w), Arc::clone(&next), address.to_owned());
            rt.spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    send(&mut conn, &address, &w, seq, false, limit, &mut tally).await;
                    let end = Instant::now();
                    tally.latency.saturating_record(nanos(end - sent));
                    tally.last_end = Some(end);
                }
                tally
            })
        })
        .collect();
    let tally = join_tallies(rt, handles)?;
    let elapsed = tally
        .last_end
        .map_or(duration, |end| end.saturating_duration_since(start));
    Ok((tally, elapsed))
}

// --- The server's CPU ------------------------------------------------------

/// CPU seconds (user + system) a process has used, from
/// `/proc/PID/stat` (in USER_HZ ticks, 100 a second on Linux).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields that follow it are
    // counted from its closing parenthesis (state is field 3, utime 14).
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The CPU the server and this process (the load generator) use over a
/// phase, as a share of one core, and the machine's stalls over it.
struct CpuMeter {
    server: String,
    at: Instant,
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    hiccups: Hiccups,
}

/// A thread that sleeps 1 ms at a time and records how much longer each
/// sleep lasted (jHiccup's idea): stalls of the machine itself (the
/// scheduler, the hypervisor), which every request in flight then suffers,
/// whatever the server does. A sleep overruns by the timer slack, about
/// 50 µs, even on an idle machine.
struct Hiccups {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Histogram<u64>>>,
}

impl Hiccups {
    fn start() -> Hiccups {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("hiccups".into())
            .spawn(move || {
                let mut h = histogram();
                let tick = Duration::from_millis(1);
                while !flag.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    std::thread::sleep(tick);
                    h.saturating_record(nanos(t0.elapsed().saturating_sub(tick)));
                }
                h
            })
            .ok();
        Hiccups { stop, thread }
    }

    /// `hiccups p99.9 X / max Y µs`.
    fn stop(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.map(|t| t.join()) {
            Some(Ok(h)) => format!(
                "hiccups p99.9 {} / max {} µs",
                fmt_us(h.value_at_quantile(0.999) as f64 / 1000.0),
                fmt_us(h.max() as f64 / 1000.0)
            ),
            _ => "hiccups ?".to_owned(),
        }
    }
}

impl CpuMeter {
    fn start(server_pid: u32) -> CpuMeter {
        let server = server_pid.to_string();
        CpuMeter {
            server_cpu: cpu_seconds(&server),
            client_cpu: cpu_seconds("self"),
            server,
            at: Instant::now(),
            hiccups: Hiccups::start(),
        }
    }

    fn stop(self) -> CpuUse {
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        let used = |before: Option<f64>, pid: &str| Some(cpu_seconds(pid)? - before?);
        CpuUse {
            wall,
            server: used(self.server_cpu, &self.server),
            client: used(self.client_cpu, "self"),
            hiccups: self.hiccups.stop(),
        }
    }
}

/// What a [`CpuMeter`] measured.
struct CpuUse {
    wall: f64,
    /// CPU seconds.
    server: Option<f64>,
    client: Option<f64>,
    hiccups: String,
}

impl CpuUse {
    /// `cpu: server 120% (31 µs/req), client 45%; hiccups ...`: shares of
    /// one core, and the server's CPU per request answered.
    fn describe(&self, requests: u64) -> String {
        let share = |cpu: Option<f64>| {
            cpu.map_or_else(
                || "?".to_owned(),
                |c| format!("{:.0}%", c / self.wall * 100.0),
            )
        };
        let per_request = self
            .server
            .filter(|_| requests > 0)
            .map_or_else(String::new, |c| {
                format!(" ({:.0} µs/req)", c * 1e6 / requests as f64)
            });
        format!(
            "cpu: server {}{per_request}, client {}; {}",
            share(self.server),
            share(self.client),
            self.hiccups
        )
    }
}

// --- HTTP --------------------------------------------------------------------

fn http(s: &Settings, report: &mut Report) {
    println!("\n[http] strata serve on the embedded profile, over keep-alive HTTP/1.1");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(s.client_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report.fail(format!("http: a tokio runtime: {e}")),
    };
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return report.fail(format!("http: a temp dir: {e}")),
    };
    // `strata --data-dir DIR` with the repository's configuration and no
    // `STRATA_*` variable of this process.
    let exe = Path::new(env!("CARGO_BIN_EXE_strata"));
    let global = [OsString::from("--data-dir"), dir.path().join("data").into()];
    let mut env: Vec<(OsString, Option<OsString>)> = std::env::vars_os()
        .filter(|(key, _)| key.to_string_lossy().starts_with("STRATA_"))
        .map(|(key, _)| (key, None))
        .collect();
    env.push((
        "STRATA_CONFIG_DIR".into(),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config").into()),
    ));
    let runs = s.seed_runs.to_string();
    let seeded = Instant::now();
    let out = rt.block_on(async {
        let mut seed = command(exe, &global, &env, &["seed", "--runs", &runs]);
        tokio::time::timeout(Duration::from_secs(600), seed.output()).await
    });
    match out {
        Ok(Ok(out)) if out.status.success() => {
            println!(
                "  strata seed --runs {runs}: {:.1} s",
                seeded.elapsed().as_secs_f64()
            );
        }
        Ok(Ok(out)) => {
            return report.fail(format!(
                "http: strata seed --runs {runs} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(Err(e)) => return report.fail(format!("http: running strata seed: {e}")),
        Err(_) => return report.fail("http: strata seed took over 600 s"),
    }
    let server = match rt.block_on(Server::start(exe, &global, &env)) {
        Ok(server) => server,
        Err(e) => return report.fail(format!("http: {e}")),
    };
    println!(
        "  strata serve (pid {}) listening on {}",
        server.pid(),
        server.address()
    );
    if let Err(e) = http_workloads(&rt, s, server.address(), server.pid(), report) {
        report.fail(format!("http: {e}; server log:\n{}", server.log()));
    }
    if let Err(trouble) = rt.block_on(server.stop()) {
        report.fail(format!("http: {trouble}"));
    }
}

/// Declares the view, writes the entities' features and the models'
/// configs (the first with a scorer over the view).
fn set_up(
    rt: &Runtime,
    address: &str,
    entities: &[String],
    models: &[String],
    limit: Duration,
) -> Result<(), String> {
    let view = view_body();
    let steps = [
        Workload::plain(
            "declaring the view",
            vec![request(
                "PUT",
                &format!("/v1/feature-views/{VIEW}"),
                Some(&view),
                address,
            )],
        ),
        Workload::plain(
            "writing the features",
            entities
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    request(
                        "PUT",
                        &format!("/v1/features/{VIEW}/{e}"),
                        Some(&feature_values(i)),
                        address,
                    )
                })
                .collect(),
        ),
        Workload::plain(
            "putting the model configs",
            models
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let config = model_config((i == 0).then_some(VIEW));
                    request(
                        "PUT",
                        &format!("/v1/models/{m}/config"),
                        Some(&config),
                        address,
                    )
                })
                .collect(),
        ),
    ];
    for step in steps {
        let started = Instant::now();
        let step = Arc::new(step);
        let tally = run_each(rt, address, &step, SETUP_CONNECTIONS, limit)?;
        if tally.errors > 0 {
            return Err(format!(
                "{}: {} failed; first: {}",
                step.name,
                tally.errors,
                tally.messages.join(" | ")
            ));
        }
        println!(
            "  set-up: {} ({} requests, {:.1} s)",
            step.name,
            step.requests.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// One workload of the HTTP section and what to measure of it.
struct Plan {
    workload: Arc<Workload>,
    /// The open loop's rates, one run each.
    open_rates: Vec<u64>,
    open_target: Option<Target>,
    closed_target: Option<Target>,
    /// The server's floor, which the others' throughput is compared to.
    floor: bool,
}

fn plans(s: &Settings, address: &str, entities: &[String], models: &[String]) -> Vec<Plan> {
    let entities = Arc::new(entities.to_vec());
    let models = Arc::new(models.to_vec());
    let n = entities.len() as u64;
    let healthz = Workload {
        name: "GET /healthz".to_owned(),
        requests: vec![request("GET", "/healthz", None, address)],
        check: Box::new(|_, _, _, body| {
            if contains(body, "\"status\":\"ok\"") {
                Ok(false)
            } else {
                Err(String::from_utf8_lossy(body).into_owned())
            }
        }),
        mark: None,
    };
    let features = {
        let entities = Arc::clone(&entities);
        Workload {
            name: format!("GET /v1/features/{VIEW}/{{entity}}"),
            requests: entities
                .iter()
                .map(|e| request("GET", &format!("/v1/features/{VIEW}/{e}"), None, address))
                .collect(),
            check: Box::new(move |seq, _, _, body| {
                let entity = &entities[(seq % n) as usize];
                if !contains(body, &format!("\"entity\":\"{entity}\"")) {
                    return Err(format!("not the features of `{entity}`"));
                }
                if contains(body, "\"missing\"") || contains(body, "\"stale\"") {
                    return Err(format!("a feature of `{entity}` is missing or stale"));
                }
                Ok(false)
            }),
            mark: None,
        }
    };
    let batch_size = s.batch_size.min(entities.len()).max(1);
    let variants = 97usize;
    let batch_of = |v: usize| -> Vec<usize> {
        (0..batch_size)
            .map(|k| (v * 37 + k) % entities.len())
            .collect()
    };
    let batches: Vec<Vec<usize>> = (0..variants).map(batch_of).collect();
    let batch = {
        let entities = Arc::clone(&entities);
        let requests = batches
            .iter()
            .map(|members| {
                let items: Vec<Value> = members
                    .iter()
                    .map(|&i| json!({"view": VIEW, "entity": entities[i]}))
                    .collect();
                request(
                    "POST",
                    "/v1/features:batch",
                    Some(&json!({ "items": items })),
                    address,
                )
            })
            .collect();
        Workload {
            name: format!("POST /v1/features:batch ({batch_size} entities)"),
            requests,
            check: Box::new(move |seq, thorough, _, body| {
                if !thorough && seq % BATCH_CHECK_EVERY != 0 {
                    // The rest are checked by size: 8 features each.
                    return if body.len() >= batch_size * FEATURES * 40 {
                        Ok(false)
                    } else {
                        Err(format!(
                            "{} bytes: too short for {batch_size} entities",
                            body.len()
                        ))
                    };
                }
                let members = &batches[(seq % batches.len() as u64) as usize];
                strata::bench::http::check_batch_answer(body, members, &entities)?;
                Ok(false)
            }),
            mark: None,
        }
    };
    let scored = models[0].clone();
    let predict = {
        let expected = format!("\"model_id\":\"{scored}\"");
        Workload {
            name: "POST /v1/models/{id}/predict (cached)".to_owned(),
            requests: entities
                .iter()
                .map(|e| {
                    request(
                        "POST",
                        &format!("/v1/models/{scored}/predict"),
                        Some(&json!({"entity": e})),
                        address,
                    )
                })
                .collect(),
            check: Box::new(move |_, _, _, body| {
                if !contains(body, &expected) || !contains(body, "\"score\":") {
                    return Err(format!(
                        "not a prediction of the model: {}",
                        String::from_utf8_lossy(body)
                    ));
                }
                Ok(contains(body, "\"cached\":true"))
            }),
            mark: Some(("cached", Some(0.9))),
        }
    };
    let info = {
        let models = Arc::clone(&models);
        let m = models.len() as u64;
        Workload {
            name: "GET /v1/models/{id} (cached)".to_owned(),
            requests: models
                .iter()
                .map(|id| request("GET", &format!("/v1/models/{id}"), None, address))
                .collect(),
            check: Box::new(move |seq, _, head, body| {
                let id = &models[(seq % m) as usize];
                if !contains(body, &format!("\"model_id\":\"{id}\"")) {
                    return Err(format!("not the model `{id}`"));
                }
                Ok(contains(head, "run=l1,config=l1"))
            }),
            mark: Some(("run and config from L1", None)),
        }
    };
    vec![
        Plan {
            workload: Arc::new(healthz),
            open_rates: vec![s.rate],
            open_target: None,
            closed_target: None,
            floor: true,
        },
        Plan {
            workload: Arc::new(features),
            open_rates: vec![s.rate],
            open_target: Some(Target::P99(1000.0)),
            closed_target: None,
            floor: false,
        },
        Plan {
            workload: Arc::new(batch),
            open_rates: vec![s.batch_rate, (s.batch_rate / 5).max(1)],
            open_target: Some(Target::P99(3000.0)),
            closed_target: None,
            floor: false,
        },
        Plan {
            workload: Arc::new(predict),
            open_rates: vec![s.rate],
            open_target: Some(Target::P99(1000.0)),
            closed_target: None,
            floor: false,
        },
        Plan {
            workload: Arc::new(info),
            open_rates: vec![s.rate],
            open_target: Some(Target::P99(1000.0)),
            closed_target: Some(Target::Throughput(40_000.0)),
            floor: false,
        },
    ]
}

/// Checks the fraction of marked answers; a line to print.
fn marks(w: &Workload, tally: &Tally, report: &mut Report, phase: &str) -> String {
    let Some((what, least)) = w.mark else {
        return String::new();
    };
    let fraction = tally.marked as f64 / tally.ok.max(1) as f64;
    if let Some(least) = least
        && tally.ok > 0
        && fraction < least
    {
        report.fail(format!(
            "{} ({phase}): only {:.1}% of answers {what}, expected at least {:.0}%",
            w.name,
            fraction * 100.0,
            least * 100.0
        ));
    }
    format!("{:.1}% {what}", fraction * 100.0)
}

fn http_workloads(
    rt: &Runtime,
    s: &Settings,
    address: &str,
    server_pid: u32,
    report: &mut Report,
) -> Result<(), String> {
    let limit = s.request_timeout;
    let entities: Vec<String> = (0..s.entities).map(|i| format!("u{i:04}")).collect();
    let models: Vec<String> = (1..=s.seed_runs.clamp(1, 1000))
        .map(seed::synthetic_model_id)
        .collect();
    set_up(rt, address, &entities, &models, limit)?;
    let mut floor = None;
    let mut closed = Vec::new();
    for plan in plans(s, address, &entities, &models) {
        let w = &plan.workload;
        println!("  {}:", w.name);
        // Every distinct request once, each answer checked thoroughly; for
        // the cached workloads this fills the caches.
        let warm = run_each(rt, address, w, SETUP_CONNECTIONS, limit)?;
        if warm.errors > 0 {
            warm.report_errors(report, &format!("{} (warm-up)", w.name));
            continue;
        }
        println!(
            "    warm-up: {} requests, all correct; answers of {} bytes on average",
            w.requests.len(),
            warm.bytes / warm.ok.max(1)
        );
        for &rate in &plan.open_rates {
            // A short unrecorded run at the rate first: the server's
            // connections, buffers and threads settle before measuring.
            let settle = open_loop(rt, address, w, rate, s.connections, s.settle(), limit)?;
            settle
                .tally
                .report_errors(report, &format!("{} (open loop, settling)", w.name));
            let cpu = CpuMeter::start(server_pid);
            let run = open_loop(rt, address, w, rate, s.connections, s.phase(), limit)?;
            let cpu = cpu.stop();
            let t = &run.tally;
            t.report_errors(report, &format!("{} (open loop)", w.name));
            let marked = marks(w, t, report, "open loop");
            let achieved = t.ok as f64 / run.elapsed.as_secs_f64();
            let us = |h: &Histogram<u64>, q: f64| fmt_us(h.value_at_quantile(q) as f64 / 1000.0);
            println!(
                "    open loop: {} due at {rate}/s; dispatcher: {} early, late p50 {} / p99 {} µs; waited for a connection p50 {} / p99 {} / max {} µs; {} reconnects{}",
                run.sent,
                run.early,
                us(&run.dispatch_late, 0.5),
                us(&run.dispatch_late, 0.99),
                us(&t.queued, 0.5),
                us(&t.queued, 0.99),
                fmt_us(t.queued.max() as f64 / 1000.0),
                t.reconnects,
                if marked.is_empty() {
                    String::new()
                } else {
                    format!("; {marked}")
                },
            );
            let mut row = Row::from_histogram(
                "http",
                w.name.clone(),
                format!("{rate}/s open"),
                &t.latency,
                t.errors,
                achieved,
            )
            .with_note(format!(
                "from intended send; dispatcher late p99 {} µs; {}{}",
                us(&run.dispatch_late, 0.99),
                cpu.describe(t.ok),
                if marked.is_empty() {
                    String::new()
                } else {
                    format!("; {marked}")
                }
            ));
            if let Some(target) = plan.open_target {
                row = row.with_target(target);
            }
            report.row(row);
            report.row(
                Row::from_histogram(
                    "http",
                    "  same, from actual send",
                    format!("{rate}/s open"),
                    &t.from_send,
                    t.errors,
                    achieved,
                )
                .with_note("uncorrected"),
            );
        }
        let cpu = CpuMeter::start(server_pid);
        let (t, elapsed) = closed_loop(rt, address, w, s.closed_connections, s.phase(), limit)?;
        let cpu = cpu.stop();
        t.report_errors(report, &format!("{} (closed loop)", w.name));
        let marked = marks(w, &t, report, "closed loop");
        let achieved = t.ok as f64 / elapsed.as_secs_f64();
        let mut row = Row::from_histogram(
            "http",
            w.name.clone(),
            format!("C={} closed", s.closed_connections),
            &t.latency,
            t.errors,
            achieved,
        )
        .with_note(if marked.is_empty() {
            cpu.describe(t.ok)
        } else {
            format!("{}; {marked}", cpu.describe(t.ok))
        });
        if let Some(target) = plan.closed_target {
            row = row.with_target(target);
        }
        report.row(row);
        if plan.floor {
            floor = Some((w.name.clone(), achieved));
        } else {
            closed.push((w.name.clone(), achieved));
        }
    }
    if let Some((floor_name, floor_rate)) = floor {
        for (name, rate) in closed {
            report.ratio(
                format!("{name}: closed-loop throughput / {floor_name}'s"),
                rate / floor_rate.max(1e-9),
                format!(
                    "{rate:.0}/s / {floor_rate:.0}/s at C={}",
                    s.closed_connections
                ),
            );
        }
    }
    Ok(())
}
