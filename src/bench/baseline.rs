//! strata beside the native tools doing the same work: `redis-benchmark`
//! GETting one key, and `pgbench -S` reading `pgbench_accounts` by key.
//!
//! Each comparison runs in interleaved rounds (strata, tool, strata,
//! tool, ...), both sides closed loop with the same number of clients, so
//! a drift of the machine (another process, thermal throttling) falls on
//! both. The ratios are of the medians over the rounds: strata / tool.
//!
//! The tools run as child processes. A missing tool is an
//! [`ErrorKind::Unavailable`] naming it and its Debian package, which the
//! caller reports as skipped.
//!
//! Passwords never appear in a [`Comparison`] or an error: `pgbench` reads
//! its from `PGPASSWORD`; `redis-benchmark` (7.0) reads no environment
//! variable (unlike `redis-cli`, it ignores `REDISCLI_AUTH`), so its
//! password is on its command line, which other users of the machine can
//! see while it runs, and shown as `***` in [`Comparison::command`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DbBackend, Statement};

use super::harness::{self, Latency, Measurement};
use super::model::{Comparison, Side, ToolVersion, median};
use crate::config::{RedisConfig, redact_url, with_password};
use crate::engines::KvStore;
use crate::engines::kv::KvStoreExt;
use crate::engines::relational::map_db_err;
use crate::error::{Error, ErrorKind, Result};

/// A native tool, and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The executable (`redis-benchmark`).
    pub name: &'static str,
    /// Its Debian package (`redis-tools`).
    pub package: &'static str,
}

/// `redis-benchmark`.
pub const REDIS_BENCHMARK: Tool = Tool {
    name: "redis-benchmark",
    package: "redis-tools",
};

/// `pgbench`.
pub const PGBENCH: Tool = Tool {
    name: "pgbench",
    package: "postgresql-client",
};

impl Tool {
    /// The error when it is not on `PATH`.
    fn missing(self) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} is not installed (Debian package {})",
                self.name, self.package
            ),
        )
    }
}

/// What the value GET by [`redis_get`] holds: 256 bytes.
pub const REDIS_VALUE_BYTES: usize = 256;

/// The key [`redis_get`] writes and reads (under the store's key prefix).
const REDIS_KEY: &str = "bench:baseline:get";

/// The rows of `pgbench_accounts` at scale 1: aids `1..=100_000`.
const PGBENCH_ACCOUNTS: i32 = 100_000;

/// The statement both sides of [`pgbench_select`] run (pgbench's built-in
/// `select-only` script, with `:aid` as `$1`).
const PGBENCH_SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

/// The longest one strata request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest the strata warm-up before the first round lasts.
const WARM_UP: Duration = Duration::from_millis(500);

/// Shown in place of a password.
const HIDDEN: &str = "***";

/// The version of each native tool: what `--version` printed, or `not
/// installed`. Runs two short processes (blocking).
pub fn tool_versions() -> Vec<ToolVersion> {
    [REDIS_BENCHMARK, PGBENCH]
        .into_iter()
        .map(|tool| ToolVersion {
            name: tool.name.to_owned(),
            version: version_of(tool),
        })
        .collect()
}

fn version_of(tool: Tool) -> String {
    match std::process::Command::new(tool.name)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            line.trim().to_owned()
        }
        Ok(out) => format!(
            "`{} --version` failed ({}): {}",
            tool.name,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "not installed".to_owned(),
        Err(e) => format!("`{} --version` could not run: {e}", tool.name),
    }
}

// --- Running a tool ----------------------------------------------------------

/// A command line of a native tool; at most one argument is a secret.
#[derive(Debug, Clone)]
struct ToolCommand {
    tool: Tool,
    args: Vec<String>,
    /// The index in `args` of the password, shown as [`HIDDEN`].
    secret_arg: Option<usize>,
    /// Set in the child's environment, never shown.
    env: Vec<(&'static str, String)>,
}

impl ToolCommand {
    fn new(tool: Tool) -> ToolCommand {
        ToolCommand {
            tool,
            args: Vec::new(),
            secret_arg: None,
            env: Vec::new(),
        }
    }

    fn arg(&mut self, arg: impl Into<String>) -> &mut Self {
        self.args.push(arg.into());
        self
    }

    fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn secret(&mut self, secret: &str) -> &mut Self {
        self.secret_arg = Some(self.args.len());
        self.args.push(secret.to_owned());
        self
    }

    fn env(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.env.push((name, value.into()));
        self
    }

    /// The command line as a shell would take it, the password as `***`.
    fn shown(&self) -> String {
        let mut out = self.tool.name.to_owned();
        for (i, arg) in self.args.iter().enumerate() {
            out.push(' ');
            if Some(i) == self.secret_arg {
                out.push_str(HIDDEN);
            } else {
                out.push_str(&shell_quote(arg));
            }
        }
        out
    }

    /// Every secret the child is given, to scrub from its output.
    fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self
            .secret_arg
            .and_then(|i| self.args.get(i))
            .map(String::as_str)
            .into_iter()
            .chain(
                self.env
                    .iter()
                    .filter(|(name, _)| name.contains("PASSWORD"))
                    .map(|(_, value)| value.as_str()),
            )
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets
    }

    /// `text` with every secret replaced by `***`.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.secrets() {
            out = out.replace(secret, HIDDEN);
        }
        out
    }

    /// Runs it to its end, within `limit` (then it is killed); its output
    /// when it exits with 0.
    async fn run(&self, limit: Duration) -> Result<ToolOutput> {
        let mut command = std::process::Command::new(self.tool.name);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                self.tool.missing()
            } else {
                Error::from(e)
                    .with_operation("spawn")
                    .with_target(self.shown())
            }
        })?;
        let mut child = Reaper(Some(child));
        let stdout = read_all(child.0.as_mut().and_then(|c| c.stdout.take()));
        let stderr = read_all(child.0.as_mut().and_then(|c| c.stderr.take()));
        let deadline = Instant::now() + limit;
        let status = loop {
            let Some(running) = child.0.as_mut() else {
                return Err(Error::internal("the child process went missing"));
            };
            if let Some(status) = running.try_wait()? {
                child.0 = None;
                break status;
            }
            if Instant::now() >= deadline {
                // Dropping the reaper kills and reaps it.
                drop(child);
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no result within {limit:?}; killed"),
                )
                .with_target(self.shown()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let stdout = self.scrub(&stdout.await?);
        let stderr = self.scrub(&stderr.await?);
        if !status.success() {
            return Err(Error::internal(format!(
                "exited with {status}: {}",
                [stdout.trim(), stderr.trim()]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
            .with_target(self.shown()));
        }
        Ok(ToolOutput { stdout, stderr })
    }
}

/// What a tool printed.
#[derive(Debug)]
struct ToolOutput {
    stdout: String,
    stderr: String,
}

/// Kills and reaps a child still running when dropped (a timeout, or the
/// caller giving up on the future).
struct Reaper(Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a pipe to its end on a blocking thread.
fn read_all<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
) -> impl Future<Output = Result<String>> {
    let task = tokio::task::spawn_blocking(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_end(&mut bytes)?;
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&bytes).into_owned())
    });
    async move {
        task.await
            .map_err(|e| Error::internal(format!("reading a tool's output failed: {e}")))?
            .map_err(Error::from)
    }
}

/// `arg` as a POSIX shell reads it back.
fn shell_quote(arg: &str) -> Cow<'_, str> {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        Cow::Borrowed(arg)
    } else {
        Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")))
    }
}

/// `%XX` escapes decoded (not `+`: URL user names, passwords and paths
/// keep it).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// --- Comparisons -------------------------------------------------------------

/// strata's side of a round, from a closed-loop run; an error when any
/// request failed (the comparison would not be of the same work).
fn strata_side(m: &Measurement, what: &str) -> Result<Side> {
    if m.errors > 0 {
        return Err(Error::internal(format!(
            "{what}: {} of {} requests failed; the first: {}",
            m.errors,
            m.errors + m.ok,
            m.first_error.as_deref().unwrap_or("(no message)")
        )));
    }
    if m.ok == 0 {
        return Err(Error::internal(format!(
            "{what}: no request finished within the phase"
        )));
    }
    Ok(Side {
        throughput: m.throughput,
        p50_us: m.uncorrected.p50_us,
        p99_us: m.uncorrected.p99_us,
        requests: m.ok,
    })
}

/// `a / b`, or 0 when `b` is not above 0 (a tool that measured nothing:
/// JSON has no infinity).
fn ratio(a: f64, b: f64) -> f64 {
    let r = a / b;
    if b > 0.0 && r.is_finite() { r } else { 0.0 }
}

/// A comparison of the rounds, with the ratios of their medians.
fn comparison(
    id: &str,
    title: &str,
    command: String,
    strata: String,
    clients: usize,
    strata_rounds: Vec<Side>,
    baseline_rounds: Vec<Side>,
) -> Comparison {
    let of = |rounds: &[Side], f: fn(&Side) -> f64| median(rounds.iter().map(f));
    let ratio_of = |f: fn(&Side) -> f64| ratio(of(&strata_rounds, f), of(&baseline_rounds, f));
    Comparison {
        id: id.to_owned(),
        title: title.to_owned(),
        command,
        strata,
        clients,
        throughput_ratio: ratio_of(|s| s.throughput),
        p50_ratio: ratio_of(|s| s.p50_us),
        p99_ratio: ratio_of(|s| s.p99_us),
        strata_rounds,
        baseline_rounds,
    }
}

/// The latency distribution of `latencies_us`, as strata's side records
/// its own (nanoseconds, 3 significant figures).
fn latency_of(latencies_us: impl IntoIterator<Item = u64>) -> Latency {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()));
    for us in latencies_us {
        h.saturating_record(us.saturating_mul(1000).max(1));
    }
    Latency::of(&h)
}

// --- redis-benchmark ---------------------------------------------------------

/// Where `redis-benchmark` connects, from a [`RedisConfig`].
#[derive(Debug, Clone, PartialEq)]
struct RedisTarget {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
    db: u32,
}

fn redis_target(redis: &RedisConfig) -> Result<RedisTarget> {
    let url = url::Url::parse(&redis.url).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!(
                "the Redis URL `{}` does not parse: {e}",
                redact_url(&redis.url)
            ),
        )
    })?;
    if url.scheme() != "redis" {
        return Err(Error::unsupported(format!(
            "a `{}` URL: redis-benchmark is run on plain `redis://` only",
            url.scheme()
        )));
    }
    let host = url
        .host_str()
        .unwrap_or("127.0.0.1")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        n => n.parse().map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!("the Redis URL's database `{n}` is not a number"),
            )
        })?,
    };
    let password = redis
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .or_else(|| url.password().map(percent_decode));
    Ok(RedisTarget {
        host,
        port: url.port().unwrap_or(6379),
        user: Some(percent_decode(url.username())).filter(|u| !u.is_empty()),
        password,
        db,
    })
}

/// The `redis-benchmark` command GETting `key`.
fn redis_benchmark_command(
    target: &RedisTarget,
    clients: usize,
    requests: u64,
    key: &str,
) -> ToolCommand {
    let mut command = ToolCommand::new(REDIS_BENCHMARK);
    command.args(["-h", &target.host, "-p", &target.port.to_string()]);
    if let Some(password) = &target.password {
        // `--user` needs `-a`: without a password the user is not sent.
        if let Some(user) = &target.user {
            command.args(["--user", user]);
        }
        command.arg("-a").secret(password);
    }
    if target.db != 0 {
        command.args(["--dbnum", &target.db.to_string()]);
    }
    command
        .args(["-c", &clients.max(1).to_string(), "-P", "1"])
        .args(["-n", &requests.max(1).to_string(), "--csv", "GET", key]);
    command
}

/// The summary line of `redis-benchmark --csv`, latencies in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBenchmarkSummary {
    /// Its `test` column (`GET strata:key`).
    pub test: String,
    /// Requests a second.
    pub rps: f64,
    /// Mean latency.
    pub avg_us: f64,
    /// Least latency.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 95th percentile.
    pub p95_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest latency.
    pub max_us: f64,
}

/// One run of `redis-benchmark`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBenchmarkRun {
    /// Its command line, the password as `***`.
    pub command: String,
    /// Requests sent (`-n`).
    pub requests: u64,
    /// What it printed.
    pub summary: RedisBenchmarkSummary,
}

/// Parses the output of `redis-benchmark --csv` for one test: a header
/// line (`"test","rps",...`) and the test's line. Columns are found by
/// name; the test's name may hold commas (it is the command line).
fn parse_redis_csv(stdout: &str) -> Result<RedisBenchmarkSummary> {
    let bad = |why: String| Error::internal(format!("redis-benchmark --csv: {why}"));
    let mut lines = stdout.lines().map(str::trim).filter(|l| !l.is_empty());
    let header = lines
        .find(|l| l.starts_with("\"test\""))
        .ok_or_else(|| bad(format!("no header line in `{}`", stdout.trim())))?;
    let columns: Vec<&str> = header.split(',').map(|c| c.trim_matches('"')).collect();
    let line = lines
        .next()
        .ok_or_else(|| bad("no line after the header".to_owned()))?;
    // Right to left: every column but the first is a quoted number.
    let mut fields: Vec<&str> = line.rsplitn(columns.len(), ',').collect();
    fields.reverse();
    if fields.len() != columns.len() {
        return Err(bad(format!(
            "`{line}` has {} columns, the header {}",
            fields.len(),
            columns.len()
        )));
    }
    let number = |name: &str| -> Result<f64> {
        let i = columns.iter().position(|c| *c == name).ok_or_else(|| {
            bad(format!(
                "no `{name}` column (redis-benchmark 6.2 or later prints it)"
            ))
        })?;
        let text = fields[i].trim().trim_matches('"');
        text.parse::<f64>()
            .map_err(|_| bad(format!("`{name}` is `{text}`, not a number")))
    };
    let us = |name: &str| number(name).map(|ms| ms * 1000.0);
    Ok(RedisBenchmarkSummary {
        test: fields[0].trim().trim_matches('"').to_owned(),
        rps: number("rps")?,
        avg_us: us("avg_latency_ms")?,
        min_us: us("min_latency_ms")?,
        p50_us: us("p50_latency_ms")?,
        p95_us: us("p95_latency_ms")?,
        p99_us: us("p99_latency_ms")?,
        max_us: us("max_latency_ms")?,
    })
}

/// Runs `redis-benchmark -c clients -P 1 -n requests --csv GET key` on the
/// server of `redis` (plain `redis://` only; `key` as stored, with any key
/// prefix), within `limit`.
///
/// # Errors
///
/// `Unavailable` when `redis-benchmark` is not installed; `Unsupported`
/// for a `rediss://` URL; `Timeout` past `limit`; `Internal` when it
/// fails or its output does not parse.
pub async fn redis_benchmark(
    redis: &RedisConfig,
    clients: usize,
    requests: u64,
    key: &str,
    limit: Duration,
) -> Result<RedisBenchmarkRun> {
    let target = redis_target(redis)?;
    let command = redis_benchmark_command(&target, clients, requests, key);
    let out = command.run(limit).await?;
    let summary = parse_redis_csv(&out.stdout).map_err(|e| {
        let stderr = out.stderr.trim();
        if stderr.is_empty() {
            e
        } else {
            Error::internal(format!("{}; it said: {stderr}", e.message()))
        }
    })?;
    Ok(RedisBenchmarkRun {
        command: command.shown(),
        requests: requests.max(1),
        summary,
    })
}

/// How long `STRLEN` of the tool's key may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The length of the value at `key` (as stored), read with a connection
/// of its own: that the tool GETs what strata wrote.
async fn stored_length(redis: &RedisConfig, key: &str) -> Result<i64> {
    let url = with_password(&redis.url, redis.password.as_ref())?;
    let failed = |e: redis::RedisError| {
        Error::new(
            ErrorKind::Unavailable,
            format!("redis at {}: {e}", redact_url(&url)),
        )
    };
    let check = async {
        let client = redis::Client::open(url.as_str()).map_err(failed)?;
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(failed)?;
        redis::cmd("STRLEN")
            .arg(key)
            .query_async::<i64>(&mut connection)
            .await
            .map_err(failed)
    };
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .map_err(|_| Error::new(ErrorKind::Timeout, "no answer to STRLEN"))?
}

/// `KvStoreExt::get` of one [`REDIS_VALUE_BYTES`]-byte value against
/// `redis-benchmark -P 1 GET` of the same key, `clients` clients each side,
/// in `rounds` interleaved rounds of about `phase` each.
///
/// `kv` must be the Redis store opened with `redis` (the tool GETs
/// `redis.key_prefix` + the key; this is checked), and its pool should
/// hold at least `clients` connections. The key is deleted at the end.
/// The tool's request count (`-n`) is set so it lasts about `phase`, from
/// its own last rate: first that of an uncounted run as long as strata's
/// warm-up (at most 0.5 s), sized from strata's warm-up throughput.
///
/// # Errors
///
/// `Unavailable` when `redis-benchmark` is not installed (or Redis cannot
/// be reached); `Unsupported` for a `rediss://` URL; `Internal` when a
/// strata request or the tool fails.
pub async fn redis_get(
    kv: Arc<dyn KvStore>,
    redis: &RedisConfig,
    clients: usize,
    rounds: usize,
    phase: Duration,
) -> Result<Comparison> {
    // Before writing anything: the URL is one the tool can use.
    redis_target(redis)?;
    kv.set(REDIS_KEY, Bytes::from(vec![b'x'; REDIS_VALUE_BYTES]))
        .await?;
    let measured = redis_rounds(Arc::clone(&kv), redis, clients, rounds, phase).await;
    let deleted = kv.del(&[REDIS_KEY.to_owned()]).await;
    let comparison = measured?;
    deleted?;
    Ok(comparison)
}

async fn redis_rounds(
    kv: Arc<dyn KvStore>,
    redis: &RedisConfig,
    clients: usize,
    rounds: usize,
    phase: Duration,
) -> Result<Comparison> {
    let clients = clients.max(1);
    let stored_key = format!("{}{REDIS_KEY}", redis.key_prefix);
    let length = stored_length(redis, &stored_key).await?;
    if usize::try_from(length).ok() != Some(REDIS_VALUE_BYTES) {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "strata wrote {REDIS_VALUE_BYTES} bytes at `{REDIS_KEY}`, but `{stored_key}` \
                 holds {length}: the key-value store is not the Redis of this configuration, \
                 or not with its key prefix `{}`",
                redis.key_prefix
            ),
        ));
    }
    let workload = harness::from_fn(move |_| {
        let kv = Arc::clone(&kv);
        async move {
            match kv.get(REDIS_KEY).await? {
                Some(value) if value.len() == REDIS_VALUE_BYTES => Ok(()),
                Some(value) => Err(Error::internal(format!(
                    "GET `{REDIS_KEY}` answered {} bytes, not {REDIS_VALUE_BYTES}",
                    value.len()
                ))),
                None => Err(Error::not_found(format!("GET `{REDIS_KEY}` found nothing"))),
            }
        }
    });
    // Warm-ups, not counted: strata's pool fills; the tool runs about as
    // long as strata's warm-up, which gives its rate for the first round.
    let warm_up = phase.min(WARM_UP);
    let limit = phase * 10 + Duration::from_secs(60);
    let requests_for = |rate: f64, time: Duration| {
        ((rate * time.as_secs_f64()).ceil() as u64).max(100 * clients as u64)
    };
    let warm = harness::closed_loop(&workload, clients, warm_up, REQUEST_TIMEOUT).await?;
    let warm = strata_side(&warm, "KvStore GET, warm-up")?;
    let calibration = redis_benchmark(
        redis,
        clients,
        requests_for(warm.throughput, warm_up),
        &stored_key,
        limit,
    )
    .await?;
    let mut rate = calibration.summary.rps;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut command = None;
    for round in 1..=rounds.max(1) {
        let m = harness::closed_loop(&workload, clients, phase, REQUEST_TIMEOUT).await?;
        ours.push(strata_side(&m, &format!("KvStore GET, round {round}"))?);
        let run = redis_benchmark(
            redis,
            clients,
            requests_for(rate, phase),
            &stored_key,
            limit,
        )
        .await?;
        rate = run.summary.rps;
        command.get_or_insert(run.command);
        theirs.push(Side {
            throughput: run.summary.rps,
            p50_us: run.summary.p50_us,
            p99_us: run.summary.p99_us,
            requests: run.requests,
        });
    }
    Ok(comparison(
        "redis-get",
        "KvStore GET vs redis-benchmark GET",
        command.unwrap_or_default(),
        format!(
            "KvStoreExt::get of one {REDIS_VALUE_BYTES}-byte value, closed loop, {clients} sessions"
        ),
        clients,
        ours,
        theirs,
    ))
}

// --- pgbench -----------------------------------------------------------------

/// Where `pgbench` connects, from a `postgres://` URL.
#[derive(Debug, Clone, PartialEq)]
struct PgTarget {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    dbname: String,
    password: Option<String>,
    sslmode: Option<String>,
}

fn pg_target(url: &str, password: Option<&str>) -> Result<PgTarget> {
    let config = |why: String| Error::new(ErrorKind::Config, why);
    let parsed = url::Url::parse(url)
        .map_err(|e| config(format!("the URL `{}` does not parse: {e}", redact_url(url))))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(config(format!(
            "`{}` is not a postgres:// URL",
            redact_url(url)
        )));
    }
    let dbname = percent_decode(parsed.path().trim_start_matches('/'));
    if dbname.is_empty() {
        return Err(config(format!(
            "the URL `{}` names no database",
            redact_url(url)
        )));
    }
    let query = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let host = query("host").or_else(|| {
        parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
    });
    Ok(PgTarget {
        host: host.filter(|h| !h.is_empty()),
        port: parsed.port(),
        user: Some(percent_decode(parsed.username())).filter(|u| !u.is_empty()),
        dbname,
        password: password
            .map(str::to_owned)
            .or_else(|| parsed.password().map(percent_decode)),
        sslmode: query("sslmode"),
    })
}

/// `pgbench` with `args`, then the connection options and the database.
fn pgbench_command(target: &PgTarget, args: &[&str]) -> ToolCommand {
    let mut command = ToolCommand::new(PGBENCH);
    command.args(args.iter().copied());
    if let Some(host) = &target.host {
        command.args(["-h", host]);
    }
    if let Some(port) = target.port {
        command.args(["-p", &port.to_string()]);
    }
    if let Some(user) = &target.user {
        command.args(["-U", user]);
    }
    command.arg(target.dbname.clone());
    if let Some(password) = &target.password {
        command.env("PGPASSWORD", password.clone());
    }
    if let Some(mode) = &target.sslmode {
        command.env("PGSSLMODE", mode.clone());
    }
    command
}

/// What `pgbench` printed at the end of a run.
#[derive(Debug, Clone, PartialEq)]
struct PgbenchSummary {
    /// `number of transactions actually processed`.
    transactions: u64,
    /// `number of failed transactions` (pgbench 15 and later; else 0).
    failed: u64,
    /// `latency average`, µs.
    latency_avg_us: f64,
    /// `tps`, without the connection time.
    tps: f64,
}

fn parse_pgbench_summary(stdout: &str) -> Result<PgbenchSummary> {
    let bad = |why: String| Error::internal(format!("pgbench's summary: {why}"));
    let after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::trim))
    };
    let leading_number = |text: &str| -> Option<f64> {
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        text[..end].parse().ok()
    };
    let transactions = after("number of transactions actually processed:")
        .and_then(leading_number)
        .ok_or_else(|| bad(format!("no transaction count in `{}`", stdout.trim())))?;
    let failed = after("number of failed transactions:")
        .and_then(leading_number)
        .unwrap_or(0.0);
    let latency_avg_us = after("latency average =")
        .and_then(|t| t.strip_suffix("ms"))
        .and_then(|t| t.trim().parse::<f64>().ok())
        .ok_or_else(|| bad(format!("no `latency average` in `{}`", stdout.trim())))?
        * 1000.0;
    // pgbench 14+: one line, "(without initial connection time)"; before,
    // "(including ...)" then "(excluding connections establishing)".
    let tps_lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tps ="))
        .collect();
    let tps_line = tps_lines
        .iter()
        .find(|l| l.contains("without") || l.contains("excluding"))
        .or(tps_lines.last())
        .ok_or_else(|| bad(format!("no `tps` in `{}`", stdout.trim())))?;
    let tps = leading_number(tps_line.trim())
        .ok_or_else(|| bad(format!("`tps ={tps_line}` holds no number")))?;
    Ok(PgbenchSummary {
        transactions: transactions as u64,
        failed: failed as u64,
        latency_avg_us,
        tps,
    })
}

/// One line of a `pgbench -l` log: `client_id transaction_no time
/// script_no time_epoch time_us [schedule_lag] [retries]`, `time` in µs or
/// `failed` / `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoggedTransaction {
    /// Done in this many µs.
    Done(u64),
    /// Failed (a serialization or deadlock failure, pgbench 15+).
    Failed,
    /// Skipped (over `--latency-limit` before it started).
    Skipped,
}

fn parse_pgbench_log_line(line: &str) -> Result<LoggedTransaction> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 6 {
        return Err(Error::internal(format!(
            "the pgbench log line `{line}` has {} fields, not 6 or more",
            fields.len()
        )));
    }
    match fields[2] {
        "failed" => Ok(LoggedTransaction::Failed),
        "skipped" => Ok(LoggedTransaction::Skipped),
        time => time.parse().map(LoggedTransaction::Done).map_err(|_| {
            Error::internal(format!(
                "the pgbench log line `{line}` has `{time}` for its time"
            ))
        }),
    }
}

/// The latencies of every transaction logged in the files of `dir`.
fn read_pgbench_logs(dir: &Path) -> Result<Latency> {
    let mut done = Vec::new();
    let mut other = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_pgbench_log_line(line)? {
                LoggedTransaction::Done(us) => done.push(us),
                LoggedTransaction::Failed | LoggedTransaction::Skipped => other += 1,
            }
        }
    }
    if other > 0 {
        return Err(Error::internal(format!(
            "pgbench logged {other} failed or skipped transactions"
        )));
    }
    if done.is_empty() {
        return Err(Error::internal("pgbench logged no transaction"));
    }
    Ok(latency_of(done))
}

/// A directory of its own under the system's temp dir, removed when
/// dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{nanos:x}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path)
            .map_err(|e| Error::from(e).with_target(path.display().to_string()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `pgbench -S` round: its command line and its side.
async fn pgbench_round(
    target: &PgTarget,
    clients: usize,
    jobs: usize,
    seconds: u64,
) -> Result<(String, Side)> {
    let dir = TempDir::new("strata-pgbench")?;
    let prefix = format!("--log-prefix={}/pgbench_log", dir.0.display());
    let (c, j, t) = (clients.to_string(), jobs.to_string(), seconds.to_string());
    let args = [
        "-S", "-M", "prepared", "-c", &c, "-j", &j, "-T", &t, "-n", "-l", &prefix,
    ];
    let command = pgbench_command(target, &args);
    let limit = Duration::from_secs(seconds * 10 + 60);
    let out = command.run(limit).await?;
    let summary = parse_pgbench_summary(&out.stdout)?;
    if summary.failed > 0 {
        return Err(Error::internal(format!(
            "pgbench: {} of {} transactions failed: {}",
            summary.failed,
            summary.transactions + summary.failed,
            out.stderr.trim()
        )));
    }
    let logs = dir.0.clone();
    let latency = tokio::task::spawn_blocking(move || read_pgbench_logs(&logs))
        .await
        .map_err(|e| Error::internal(format!("reading pgbench's logs failed: {e}")))??;
    drop(dir);
    let shown = command.shown().replace(
        &shell_quote(&prefix).into_owned(),
        "--log-prefix=TMPDIR/pgbench_log",
    );
    Ok((
        shown,
        Side {
            throughput: summary.tps,
            p50_us: latency.p50_us,
            p99_us: latency.p99_us,
            requests: summary.transactions,
        },
    ))
}

/// `SELECT abalance FROM pgbench_accounts WHERE aid = $1` (a random aid)
/// through sea-orm against `pgbench -S -M prepared` (the same statement,
/// prepared), `clients` clients each side, in `rounds` interleaved rounds
/// of `phase` each (pgbench's rounded up to whole seconds, at least 1).
///
/// `url` is a `postgres://` URL of a database reserved for this (the
/// caller creates and drops it), `password` its password (over any in
/// the URL; pgbench gets it as `PGPASSWORD`), and `db` a pool on the
/// same database holding at least `clients` connections (checked), so
/// strata's sessions never wait for one. pgbench's tables are created in
/// it first (`pgbench -i -s 1 -q`: 100,000 accounts). pgbench runs with
/// `-j` = the lesser of `clients` and the cores, and logs each transaction
/// (`-l`, in a temp dir removed after each round), so its p50 and p99 are
/// of every transaction, as strata's are.
///
/// # Errors
///
/// `Unavailable` when `pgbench` is not installed; `Unsupported` when `db`
/// is not a PostgreSQL pool; `InvalidInput` when its pool is smaller than
/// `clients`; `Config` for a URL pgbench cannot use; `Internal` when a
/// strata request or pgbench fails.
pub async fn pgbench_select(
    db: &DatabaseConnection,
    url: &str,
    password: Option<&str>,
    clients: usize,
    rounds: usize,
    phase: Duration,
) -> Result<Comparison> {
    let clients = clients.max(1);
    if !matches!(
        db.inner,
        DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    ) {
        return Err(Error::unsupported(
            "pgbench -S is compared with a PostgreSQL pool only",
        ));
    }
    let pool_size = db
        .get_postgres_connection_pool()
        .options()
        .get_max_connections();
    if usize::try_from(pool_size).unwrap_or(usize::MAX) < clients {
        return Err(Error::invalid(format!(
            "the pool holds at most {pool_size} connections, fewer than the {clients} clients"
        ))
        .with_field("clients"));
    }
    let target = pg_target(url, password)?;
    pgbench_command(&target, &["-i", "-s", "1", "-q"])
        .run(Duration::from_secs(300))
        .await?;

    let pool = db.clone();
    let workload = harness::from_fn(move |_| {
        let db = pool.clone();
        async move {
            let aid = rand::random_range(1..=PGBENCH_ACCOUNTS);
            let statement =
                Statement::from_sql_and_values(DbBackend::Postgres, PGBENCH_SELECT, [aid.into()]);
            let row = db
                .query_one_raw(statement)
                .await
                .map_err(map_db_err)?
                .ok_or_else(|| Error::not_found(format!("no account {aid}")))?;
            row.try_get::<i32>("", "abalance").map_err(map_db_err)?;
            Ok(())
        }
    });
    harness::closed_loop(&workload, clients, phase.min(WARM_UP), REQUEST_TIMEOUT).await?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let jobs = clients.min(cores).max(1);
    let seconds = phase.as_secs_f64().ceil().max(1.0) as u64;
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut command = None;
    for round in 1..=rounds.max(1) {
        let m = harness::closed_loop(&workload, clients, phase, REQUEST_TIMEOUT).await?;
        ours.push(strata_side(&m, &format!("sea-orm SELECT, round {round}"))?);
        let (shown, side) = pgbench_round(&target, clients, jobs, seconds).await?;
        command.get_or_insert(shown);
        theirs.push(side);
    }
    Ok(comparison(
        "pgbench-select",
        "sea-orm SELECT by key vs pgbench -S",
        command.unwrap_or_default(),
        format!(
            "`{PGBENCH_SELECT}` (a random aid of {PGBENCH_ACCOUNTS}) through sea-orm, \
             closed loop, {clients} sessions"
        ),
        clients,
        ours,
        theirs,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// `redis-benchmark 7.0.15 -c 8 -P 1 -n 50000 --csv GET
    /// strata:bench_probe:baseline` on a 256-byte value, on loopback.
    const REDIS_CSV: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
\"GET strata:bench_probe:baseline\",\"69930.07\",\"0.068\",\"0.024\",\"0.055\",\"0.127\",\"0.391\",\"1.879\"\n";

    /// The same with the key `a,b "c`: the test name is not escaped.
    const REDIS_CSV_ODD_KEY: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
\"GET a,b \"c\",\"93283.58\",\"0.051\",\"0.016\",\"0.055\",\"0.071\",\"0.103\",\"1.903\"\n";

    /// `pgbench 15.18 -S -M prepared -c 4 -j 2 -T 1 -n -l`, on loopback.
    const PGBENCH_OUT: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: prepared
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 49903
number of failed transactions: 0 (0.000%)
latency average = 0.077 ms
initial connection time = 47.194 ms
tps = 52140.342079 (without initial connection time)
";

    /// The same, 2 clients, with `-R 50000 -L 0.05` (so some are skipped).
    const PGBENCH_OUT_RATE: &str = "pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: prepared
number of clients: 2
number of threads: 2
maximum number of tries: 1
duration: 1 s
number of transactions actually processed: 27556
number of failed transactions: 0 (0.000%)
number of transactions skipped: 21590 (43.930%)
number of transactions above the 0.1 ms latency limit: 23098/27556 (83.822%)
latency average = 0.078 ms
latency stddev = 0.040 ms
rate limit schedule lag: avg 0.038 (max 0.320) ms
initial connection time = 20.855 ms
tps = 27894.866842 (without initial connection time)
";

    #[test]
    fn redis_csv_parses_to_microseconds() {
        let s = parse_redis_csv(REDIS_CSV).unwrap();
        assert_eq!(s.test, "GET strata:bench_probe:baseline");
        assert_eq!(s.rps, 69930.07);
        assert!((s.p50_us - 55.0).abs() < 1e-9, "{s:?}");
        assert!((s.p95_us - 127.0).abs() < 1e-9, "{s:?}");
        assert!((s.p99_us - 391.0).abs() < 1e-9, "{s:?}");
        assert!((s.max_us - 1879.0).abs() < 1e-9, "{s:?}");
        assert!((s.min_us - 24.0).abs() < 1e-9, "{s:?}");
        assert!((s.avg_us - 68.0).abs() < 1e-9, "{s:?}");

        let odd = parse_redis_csv(REDIS_CSV_ODD_KEY).unwrap();
        assert_eq!(odd.test, "GET a,b \"c");
        assert_eq!(odd.rps, 93283.58);
        assert!((odd.p99_us - 103.0).abs() < 1e-9, "{odd:?}");
    }

    #[test]
    fn redis_csv_without_percentiles_or_lines_is_refused() {
        // redis-benchmark 6.0 printed the throughput only.
        let old = "\"GET\",\"72992.70\"\n";
        assert!(parse_redis_csv(old).is_err());
        let no_p50 = "\"test\",\"rps\"\n\"GET k\",\"1.0\"\n";
        let e = parse_redis_csv(no_p50).unwrap_err();
        assert!(e.message().contains("avg_latency_ms"), "{e}");
        let header_only = REDIS_CSV.lines().next().unwrap();
        assert!(parse_redis_csv(header_only).is_err());
        let not_a_number = REDIS_CSV.replace("69930.07", "fast");
        assert!(parse_redis_csv(&not_a_number).is_err());
    }

    #[test]
    fn pgbench_summary_parses() {
        let s = parse_pgbench_summary(PGBENCH_OUT).unwrap();
        assert_eq!(s.transactions, 49903);
        assert_eq!(s.failed, 0);
        assert!((s.latency_avg_us - 77.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.tps, 52140.342079);

        let rate = parse_pgbench_summary(PGBENCH_OUT_RATE).unwrap();
        assert_eq!(rate.transactions, 27556);
        assert_eq!(rate.tps, 27894.866842);

        // pgbench 13 and before: two tps lines, the second without the
        // connection time.
        let old = "number of transactions actually processed: 400/400\n\
                   latency average = 0.250 ms\n\
                   tps = 3900.1 (including connections establishing)\n\
                   tps = 4000.5 (excluding connections establishing)\n";
        let old = parse_pgbench_summary(old).unwrap();
        assert_eq!(old.transactions, 400);
        assert_eq!(old.tps, 4000.5);

        assert!(parse_pgbench_summary("connection to server failed").is_err());
    }

    #[test]
    fn pgbench_log_lines_parse() {
        // From the `-l` files of the runs above (the second with `-R`,
        // which adds the schedule lag).
        assert_eq!(
            parse_pgbench_log_line("1 1 1741 0 1796166771 157700").unwrap(),
            LoggedTransaction::Done(1741)
        );
        assert_eq!(
            parse_pgbench_log_line("2 3 78 0 1796166771 157279").unwrap(),
            LoggedTransaction::Done(78)
        );
        assert_eq!(
            parse_pgbench_log_line("0 1 1438 0 1796166770 25954 67").unwrap(),
            LoggedTransaction::Done(1438)
        );
        assert_eq!(
            parse_pgbench_log_line("0 2 skipped 0 1796166770 25977 0").unwrap(),
            LoggedTransaction::Skipped
        );
        // As pgbench 15's documentation shows a failed one.
        assert_eq!(
            parse_pgbench_log_line("3 0 failed 0 1499414498 84905 9").unwrap(),
            LoggedTransaction::Failed
        );
        assert!(parse_pgbench_log_line("1 1 1741").is_err());
        assert!(parse_pgbench_log_line("1 1 soon 0 1796166771 157700").is_err());
    }

    #[test]
    fn pgbench_logs_in_a_dir_give_percentiles() {
        let dir = TempDir::new("strata-pgbench-test").unwrap();
        let lines: String = (1..=100)
            .map(|i| format!("0 {i} {} 0 1796166771 157700\n", i * 10))
            .collect();
        std::fs::write(dir.0.join("pgbench_log.1"), &lines).unwrap();
        std::fs::write(
            dir.0.join("pgbench_log.1.1"),
            "1 1 5000 0 1796166771 157700\n",
        )
        .unwrap();
        let l = read_pgbench_logs(&dir.0).unwrap();
        assert_eq!(l.count, 101);
        assert!((l.p50_us - 510.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 1000.0).abs() < 1.0, "{l:?}");
        std::fs::write(
            dir.0.join("pgbench_log.1.1"),
            "1 1 skipped 0 1796166771 157700 0\n",
        )
        .unwrap();
        assert!(read_pgbench_logs(&dir.0).is_err());
        let path = dir.0.clone();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn redis_command_hides_the_password() {
        let redis = RedisConfig {
            url: "redis://default@127.0.0.1:56379/2".into(),
            password: Some(Secret::new("s3cret pass")),
            ..RedisConfig::default()
        };
        let target = redis_target(&redis).unwrap();
        let command = redis_benchmark_command(&target, 8, 5000, "strata:bench:baseline:get");
        assert_eq!(
            command.shown(),
            "redis-benchmark -h 127.0.0.1 -p 56379 --user default -a *** --dbnum 2 \
             -c 8 -P 1 -n 5000 --csv GET strata:bench:baseline:get"
        );
        assert!(command.args.contains(&"s3cret pass".to_owned()));
        assert_eq!(
            command.scrub("AUTH default s3cret pass"),
            "AUTH default ***"
        );

        // The URL's own password, percent-decoded; no user, no --user.
        let redis = RedisConfig {
            url: "redis://:p%40ss@localhost".into(),
            ..RedisConfig::default()
        };
        let target = redis_target(&redis).unwrap();
        assert_eq!(target.password.as_deref(), Some("p@ss"));
        assert_eq!(target.user, None);
        assert_eq!((target.port, target.db), (6379, 0));
        let shown = redis_benchmark_command(&target, 1, 1, "k").shown();
        assert!(
            !shown.contains("p@ss") && !shown.contains("--user"),
            "{shown}"
        );

        let tls = RedisConfig {
            url: "rediss://h:6380".into(),
            ..RedisConfig::default()
        };
        assert_eq!(
            redis_target(&tls).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn pgbench_command_takes_the_password_from_the_environment() {
        let target = pg_target(
            "postgres://strata@127.0.0.1:55432/bench_x?sslmode=disable",
            Some("strata-dev"),
        )
        .unwrap();
        let command = pgbench_command(&target, &["-i", "-s", "1", "-q"]);
        assert_eq!(
            command.shown(),
            "pgbench -i -s 1 -q -h 127.0.0.1 -p 55432 -U strata bench_x"
        );
        assert!(
            command
                .env
                .contains(&("PGPASSWORD", "strata-dev".to_owned()))
        );
        assert!(command.env.contains(&("PGSSLMODE", "disable".to_owned())));
        assert_eq!(
            command.scrub("password strata-dev refused"),
            "password *** refused"
        );

        let in_url = pg_target("postgresql://u%20x:p%2Fw@db/name", None).unwrap();
        assert_eq!(in_url.user.as_deref(), Some("u x"));
        assert_eq!(in_url.password.as_deref(), Some("p/w"));
        assert_eq!(in_url.port, None);
        assert_eq!(
            pgbench_command(&in_url, &["-S"]).shown(),
            "pgbench -S -h db -U 'u x' name"
        );
        assert_eq!(
            pg_target("postgres://h/", None).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(pg_target("mysql://h/db", None).is_err());
    }

    #[test]
    fn ratios_of_medians_and_of_nothing() {
        let side = |t: f64, p50: f64, p99: f64| Side {
            throughput: t,
            p50_us: p50,
            p99_us: p99,
            requests: 1,
        };
        let c = comparison(
            "x",
            "x",
            String::new(),
            String::new(),
            1,
            vec![
                side(100.0, 10.0, 40.0),
                side(300.0, 30.0, 60.0),
                side(200.0, 20.0, 50.0),
            ],
            vec![
                side(400.0, 5.0, 25.0),
                side(400.0, 5.0, 25.0),
                side(1.0, 500.0, 900.0),
            ],
        );
        assert_eq!(c.throughput_ratio, 0.5);
        assert_eq!(c.p50_ratio, 4.0);
        assert_eq!(c.p99_ratio, 2.0);
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(ratio(f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn quoting_and_decoding() {
        assert_eq!(shell_quote("GET"), "GET");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(percent_decode("a%2Fb+c%"), "a/b+c%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[tokio::test]
    async fn a_missing_tool_is_unavailable_and_named_with_its_package() {
        let tool = Tool {
            name: "strata-no-such-tool",
            package: "strata-no-such-package",
        };
        let e = ToolCommand::new(tool)
            .run(Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.message().contains("strata-no-such-tool"), "{e}");
        assert!(
            e.message()
                .contains("Debian package strata-no-such-package"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_tool_past_its_limit_is_killed() {
        let mut command = ToolCommand::new(Tool {
            name: "sleep",
            package: "coreutils",
        });
        command.arg("30");
        let started = Instant::now();
        let e = command.run(Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn versions_name_both_tools() {
        let versions = tool_versions();
        let names: Vec<&str> = versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["redis-benchmark", "pgbench"]);
        assert!(
            versions.iter().all(|v| !v.version.is_empty()),
            "{versions:?}"
        );
    }
}
