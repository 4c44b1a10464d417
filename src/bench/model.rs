//! What a bench run measured, as written to `--json FILE` and read back by
//! `strata bench compare` and `strata bench report`.
//!
//! The format is versioned by [`SCHEMA`]; a file of another version is
//! refused with a message naming both versions.

use serde::{Deserialize, Serialize};

use super::harness::{Measurement, Sweep};

/// The version of the JSON format.
pub const SCHEMA: u32 = 1;

/// A whole bench run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    /// [`SCHEMA`].
    pub schema: u32,
    /// When it started (RFC 3339, UTC).
    pub started_at: String,
    /// The command line that ran it, to reproduce it.
    pub command: String,
    /// `--quick`.
    pub quick: bool,
    /// Seconds of each measured phase.
    pub phase_seconds: f64,
    /// The machine it ran on.
    pub machine: Machine,
    /// One entry per profile benched.
    pub profiles: Vec<ProfileRun>,
}

/// The machine and build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical cores.
    pub cores: usize,
    /// Total memory in bytes, when the system tells it.
    pub memory_bytes: Option<u64>,
    /// The CPU model, when the system tells it.
    pub cpu: Option<String>,
    /// `linux 6.1.0 x86_64`.
    pub os: String,
    /// strata's version.
    pub strata_version: String,
    /// `release` or `debug`: a debug build is much slower, and says so.
    pub build: String,
    /// The 1, 5 and 15 minute load averages at the start.
    pub load_average: Option<String>,
    /// Versions of the native tools used as baselines.
    pub tools: Vec<ToolVersion>,
}

/// A native tool and its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolVersion {
    /// `redis-benchmark`.
    pub name: String,
    /// What `--version` printed, or why it could not run.
    pub version: String,
}

/// The engines a profile ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSet {
    /// `sqlite` or `postgres`.
    pub relational: String,
    /// `embedded` or `mongodb`.
    pub documents: String,
    /// `embedded` or `redis`.
    pub kv: String,
    /// `embedded` or `rabbitmq`.
    pub queue: String,
    /// Where each is (passwords removed), and the server's version when
    /// it tells it.
    pub targets: Vec<String>,
}

/// The store a workload exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// The key-value engine.
    Kv,
    /// The relational engine.
    Relational,
    /// The document engine.
    Documents,
    /// The three-tier cache.
    Cache,
    /// The queue engine.
    Queue,
    /// Run search (relational).
    Search,
    /// The HTTP API of `strata serve`.
    Http,
}

impl Store {
    /// `key-value`, `relational`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Store::Kv => "key-value",
            Store::Relational => "relational",
            Store::Documents => "document",
            Store::Cache => "cache",
            Store::Queue => "queue",
            Store::Search => "run search",
            Store::Http => "HTTP",
        }
    }
}

/// What one profile measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRun {
    /// The profile's name (`embedded`, `full`).
    pub profile: String,
    /// Its engines.
    pub engines: EngineSet,
    /// The name of the bench's own database, key prefix and queues on
    /// the profile's services (all removed at the end).
    #[serde(default)]
    pub sandbox: String,
    /// Its configuration, secrets redacted.
    pub config: serde_json::Value,
    /// Each workload measured.
    pub workloads: Vec<WorkloadRun>,
    /// The sweep, when one ran.
    pub sweep: Option<SweepRun>,
    /// strata beside the native tools.
    pub baselines: Vec<Comparison>,
    /// Derived comparisons.
    pub ratios: Vec<Ratio>,
    /// Workloads or baselines not run, and why.
    pub skipped: Vec<Skipped>,
}

/// One workload's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRun {
    /// Stable id, `kv.read`, `relational.join`, `cache.l1`, ...
    pub id: String,
    /// What it does, for people.
    pub title: String,
    /// The store it exercises.
    pub store: Store,
    /// The engine under it (`redis`, `sqlite`, `embedded`, ...).
    pub engine: String,
    /// Items per request (100 for a batch), so per-item costs can be
    /// derived.
    pub items: u32,
    /// The open-loop runs (one per round).
    pub open: Vec<Measurement>,
    /// The closed-loop runs, by concurrency.
    pub closed: Vec<Measurement>,
}

impl WorkloadRun {
    /// The closed-loop run at `concurrency`.
    pub fn closed_at(&self, concurrency: usize) -> Option<&Measurement> {
        self.closed.iter().find(|m| {
            matches!(m.mode, super::harness::Mode::Closed { concurrency: c } if c == concurrency)
        })
    }

    /// The highest closed-loop throughput.
    pub fn max_throughput(&self) -> f64 {
        self.closed.iter().map(|m| m.throughput).fold(0.0, f64::max)
    }
}

/// A sweep of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRun {
    /// The workload's id.
    pub workload: String,
    /// Sessions serving the queue.
    pub connections: usize,
    /// The steps and the knee.
    pub sweep: Sweep,
}

/// One round of strata against a native tool, both closed loop with the
/// same clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Requests a second.
    pub throughput: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Requests.
    pub requests: u64,
}

/// strata beside a native tool doing the same work, in interleaved rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `redis-get`, `pgbench-select`.
    pub id: String,
    /// `KvStore GET vs redis-benchmark GET`.
    pub title: String,
    /// The native tool's exact command line (password removed).
    pub command: String,
    /// What strata ran, in words.
    pub strata: String,
    /// Clients on both sides.
    pub clients: usize,
    /// strata's rounds.
    pub strata_rounds: Vec<Side>,
    /// The tool's rounds, interleaved with strata's.
    pub baseline_rounds: Vec<Side>,
    /// Median strata throughput / median tool throughput.
    pub throughput_ratio: f64,
    /// Median strata p50 / median tool p50.
    pub p50_ratio: f64,
    /// Median strata p99 / median tool p99.
    pub p99_ratio: f64,
}

/// A derived comparison: "key-value read vs relational read: 14.2×".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Stable id, `kv-vs-relational-read`.
    pub id: String,
    /// `key-value read vs relational read`.
    pub title: String,
    /// How many times faster the first is (above 1: faster).
    pub value: f64,
    /// What was compared: `closed ×8 throughput, 41,000 vs 2,900 /s`.
    pub basis: String,
    /// What the scenario expects, if it says (`≥ 5×`).
    pub expectation: Option<String>,
}

/// Something not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The workload or baseline.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The middle value (the mean of the two middle ones for an even count);
/// 0 for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median([]), 0.0);
        assert_eq!(median([f64::NAN, 1.0]), 1.0);
    }
}
