//! The load generator: open loop at a fixed rate (the default), closed loop
//! at a fixed concurrency, and the sweep that raises the offered rate step
//! by step.
//!
//! # Open loop, and what "corrected" means
//!
//! A dispatcher thread hands out requests at their due times (`start +
//! seq / rate`), whatever the system under test is doing, into a queue
//! served by a fixed pool of sessions (connections, clients). Each
//! latency is measured twice:
//!
//! - **corrected**: from the request's due time (or from when the
//!   dispatcher handed it out, if that was a little earlier) to the end of
//!   its answer. A stall of the system holds every session; the requests
//!   falling due meanwhile wait in the queue, and each of them is charged
//!   the wait. This is what a user arriving at that moment would see.
//! - **uncorrected**: from when a session actually sent it. A load tool
//!   that sends the next request only when a session is free measures
//!   this, and misses the requests it never sent during the stall
//!   ("coordinated omission"): a stall then shows in the maximum only.
//!
//! The dispatcher sleeps between requests (it never spins, so it takes no
//! core from the system under test); how late it hands requests out is
//! kept as its own histogram, so the generator's own share is visible.
//!
//! Requests still queued when the run's drain time is over are counted as
//! `unfinished` and recorded in the corrected histogram at the lower bound
//! of their latency (the time they had waited so far).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The largest latency a histogram holds (10 minutes), in nanoseconds.
const HISTOGRAM_MAX_NS: u64 = 600_000_000_000;

/// The percentiles kept for the percentile curves (the chart's x axis).
pub const CURVE_PERCENTILES: [f64; 12] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// One client of the system under test: a connection, or whatever state
/// a sequence of requests shares. A session serves one request at a time.
#[async_trait]
pub trait Session: Send {
    /// Sends request number `seq` and waits for its whole answer; an
    /// error when the answer is wrong or missing.
    async fn call(&mut self, seq: u64) -> Result<()>;
}

/// Something to measure: hands out sessions.
#[async_trait]
pub trait Workload: Send + Sync {
    /// A new session (a connection, opened now).
    async fn session(&self) -> Result<Box<dyn Session>>;
}

/// A workload whose requests are calls of a closure; sessions share it.
pub fn from_fn<F, Fut>(f: F) -> Arc<dyn Workload>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(FnWorkload(Arc::new(f)))
}

struct FnWorkload<F>(Arc<F>);

struct FnSession<F>(Arc<F>);

#[async_trait]
impl<F, Fut> Workload for FnWorkload<F>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    async fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(FnSession(Arc::clone(&self.0))))
    }
}

#[async_trait]
impl<F, Fut> Session for FnSession<F>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    async fn call(&mut self, seq: u64) -> Result<()> {
        (self.0)(seq).await
    }
}

/// A latency distribution, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Requests recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// The largest.
    pub max_us: f64,
    /// `[percentile, µs]` at each of [`CURVE_PERCENTILES`].
    pub curve: Vec<[f64; 2]>,
}

impl Latency {
    /// The distribution recorded in `h` (nanoseconds).
    pub fn of(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|p| [*p, us(h.value_at_quantile(p / 100.0))])
                .collect(),
        }
    }
}

/// How a measurement was driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// Requests due at `rate` a second, served by `connections` sessions.
    Open {
        /// Offered requests a second.
        rate: f64,
        /// Sessions serving the queue.
        connections: usize,
    },
    /// `concurrency` sessions, each sending its next request when the
    /// previous answer ends.
    Closed {
        /// Sessions.
        concurrency: usize,
    },
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Open { rate, connections } => {
                write!(f, "open {} /s ×{connections}", fmt_rate(*rate))
            }
            Mode::Closed { concurrency } => write!(f, "closed ×{concurrency}"),
        }
    }
}

/// `12,345` or `1.5` (requests a second, for people).
pub fn fmt_rate(rate: f64) -> String {
    if rate >= 100.0 {
        let whole = rate.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{rate:.1}")
    }
}

/// What one run of a workload measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// How it was driven.
    pub mode: Mode,
    /// Requests answered well.
    pub ok: u64,
    /// Requests answered wrongly, failed or timed out.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Open loop: requests still queued when the drain time ran out.
    pub unfinished: u64,
    /// From the first request's due time to the last answer, in seconds.
    pub elapsed_s: f64,
    /// Answers (good or not) a second.
    pub throughput: f64,
    /// Open loop: from each request's due time (coordinated omission
    /// corrected). Closed loop: the same as `uncorrected`.
    pub corrected: Latency,
    /// From when each request was actually sent.
    pub uncorrected: Latency,
    /// Open loop: how late the dispatcher handed requests out (the load
    /// generator's own share of the corrected latency).
    pub dispatch_late: Option<Latency>,
}

fn histogram() -> Histogram<u64> {
    // 3 significant figures over 1 ns .. 10 min: the bounds are constants
    // that hdrhistogram accepts.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// What one session measured.
struct Tally {
    corrected: Histogram<u64>,
    uncorrected: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    unfinished: u64,
    last_end: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            corrected: histogram(),
            uncorrected: histogram(),
            ok: 0,
            errors: 0,
            first_error: None,
            unfinished: 0,
            last_end: None,
        }
    }

    fn outcome(&mut self, outcome: std::result::Result<Result<()>, tokio::time::error::Elapsed>) {
        match outcome {
            Ok(Ok(())) => self.ok += 1,
            Ok(Err(e)) => self.error(e.to_string()),
            Err(_) => self.error("no answer within the request timeout".to_owned()),
        }
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    fn absorb(&mut self, other: Tally) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.corrected.add(&other.corrected);
        let _ = self.uncorrected.add(&other.uncorrected);
        self.ok += other.ok;
        self.errors += other.errors;
        self.unfinished += other.unfinished;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.last_end = match (self.last_end, other.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

async fn sessions(workload: &Arc<dyn Workload>, n: usize) -> Result<Vec<Box<dyn Session>>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        out.push(workload.session().await?);
    }
    Ok(out)
}

async fn join(handles: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally> {
    let mut total = Tally::new();
    for handle in handles {
        total.absorb(
            handle
                .await
                .map_err(|e| Error::internal(format!("a load task ended abnormally: {e}")))?,
        );
    }
    Ok(total)
}

/// An open-loop run.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    /// Requests due a second.
    pub rate: f64,
    /// How long requests fall due.
    pub duration: Duration,
    /// Sessions serving the queue.
    pub connections: usize,
    /// The longest one request may take before it counts as failed.
    pub timeout: Duration,
    /// How long after the last due time queued requests are still served.
    pub drain: Duration,
}

/// A request due at `due`.
#[derive(Debug, Clone, Copy)]
struct Job {
    seq: u64,
    /// What its corrected latency is measured from: its due time, or when
    /// the dispatcher handed it out if that was earlier (an early hand-out
    /// can only lengthen a latency, never shorten it).
    start: Instant,
}

/// Runs `workload` open loop (see the module docs).
pub async fn open_loop(workload: &Arc<dyn Workload>, run: &OpenLoop) -> Result<Measurement> {
    if !(run.rate.is_finite() && run.rate > 0.0) {
        return Err(Error::invalid(format!(
            "the open-loop rate must be above 0, got {}",
            run.rate
        ))
        .with_field("rate"));
    }
    let pool = sessions(workload, run.connections).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
    let queue = Arc::new(tokio::sync::Mutex::new(rx));
    let total = (run.rate * run.duration.as_secs_f64()).round().max(1.0) as u64;
    let start = Instant::now();
    let drain_until = start + run.duration + run.drain;
    let handles: Vec<_> = pool
        .into_iter()
        .map(|mut session| {
            let queue = Arc::clone(&queue);
            let timeout = run.timeout;
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
                    let job = { queue.lock().await.recv().await };
                    let Some(job) = job else { break tally };
                    let picked = Instant::now();
                    if picked > drain_until {
                        tally.unfinished += 1;
                        tally
                            .corrected
                            .saturating_record(nanos(picked.saturating_duration_since(job.start)));
                        continue;
                    }
                    let outcome = tokio::time::timeout(timeout, session.call(job.seq)).await;
                    let end = Instant::now();
                    tally.outcome(outcome);
                    tally
                        .corrected
                        .saturating_record(nanos(end.saturating_duration_since(job.start)));
                    tally.uncorrected.saturating_record(nanos(end - picked));
                    tally.last_end = Some(end);
                }
            })
        })
        .collect();
    let interval = 1e9 / run.rate;
    let dispatcher = std::thread::Builder::new()
        .name("bench-dispatch".into())
        .spawn(move || dispatch(tx, start, total, interval))
        .map_err(|e| Error::internal(format!("cannot start the dispatcher thread: {e}")))?;
    // The dispatcher is a plain thread: wait for it off the runtime.
    let late = tokio::task::spawn_blocking(move || dispatcher.join())
        .await
        .map_err(|e| Error::internal(format!("the dispatcher's waiter failed: {e}")))?
        .map_err(|_| Error::internal("the dispatcher thread panicked"))?;
    let tally = join(handles).await?;
    Ok(measurement(
        Mode::Open {
            rate: run.rate,
            connections: run.connections,
        },
        tally,
        start,
        run.duration,
        Some(Latency::of(&late)),
    ))
}

/// Hands out requests `0..total`, request `seq` at `start + seq ×
/// interval` ns; returns how late each was handed out.
fn dispatch(
    tx: tokio::sync::mpsc::UnboundedSender<Job>,
    start: Instant,
    total: u64,
    interval: f64,
) -> Histogram<u64> {
    let mut late = histogram();
    // How much longer than asked a sleep lasts (the kernel's timer slack,
    // about 50 µs): learnt as it goes and slept that much less. A sleep,
    // not a spin: the dispatcher must not take a core from the system
    // under test.
    let mut oversleep = Duration::from_micros(50);
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
        late.saturating_record(nanos(emitted.saturating_duration_since(due)));
        if tx
            .send(Job {
                seq,
                start: emitted.min(due),
            })
            .is_err()
        {
            break;
        }
    }
    late
}

fn measurement(
    mode: Mode,
    tally: Tally,
    start: Instant,
    nominal: Duration,
    dispatch_late: Option<Latency>,
) -> Measurement {
    let elapsed = tally
        .last_end
        .map_or(nominal, |end| end.saturating_duration_since(start))
        .as_secs_f64()
        .max(1e-9);
    let answered = tally.ok + tally.errors;
    Measurement {
        mode,
        ok: tally.ok,
        errors: tally.errors,
        first_error: tally.first_error,
        unfinished: tally.unfinished,
        elapsed_s: elapsed,
        throughput: answered as f64 / elapsed,
        corrected: Latency::of(&tally.corrected),
        uncorrected: Latency::of(&tally.uncorrected),
        dispatch_late,
    }
}

/// Runs `workload` closed loop: `concurrency` sessions, each sending its
/// next request as soon as the previous answer ends, for `duration`.
pub async fn closed_loop(
    workload: &Arc<dyn Workload>,
    concurrency: usize,
    duration: Duration,
    timeout: Duration,
) -> Result<Measurement> {
    let pool = sessions(workload, concurrency).await?;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let handles: Vec<_> = pool
        .into_iter()
        .map(|mut session| {
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while Instant::now() < deadline {
                    let seq = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = Instant::now();
                    let outcome = tokio::time::timeout(timeout, session.call(seq)).await;
                    let end = Instant::now();
                    tally.outcome(outcome);
                    tally.uncorrected.saturating_record(nanos(end - sent));
                    tally.last_end = Some(end);
                }
                tally.corrected = tally.uncorrected.clone();
                tally
            })
        })
        .collect();
    let tally = join(handles).await?;
    Ok(measurement(
        Mode::Closed {
            concurrency: concurrency.max(1),
        },
        tally,
        start,
        duration,
        None,
    ))
}

/// One step of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepStep {
    /// Offered requests a second.
    pub offered: f64,
    /// Answers a second.
    pub achieved: f64,
    /// Corrected median, µs.
    pub p50_us: f64,
    /// Corrected 99th percentile, µs.
    pub p99_us: f64,
    /// Failed requests.
    pub errors: u64,
    /// Requests left unanswered at the end of the drain time.
    pub unfinished: u64,
}

/// When latency has left its floor: the p99 is over this many times the
/// lowest p99 of the steps before.
pub const KNEE_FACTOR: f64 = 3.0;
/// When throughput no longer follows the offered rate: achieved below this
/// share of offered.
pub const KNEE_SHORTFALL: f64 = 0.9;

/// The first step where latency leaves its floor (p99 over
/// [`KNEE_FACTOR`] × the lowest p99 before it) or the system stops keeping
/// up (achieved below [`KNEE_SHORTFALL`] × offered, or requests left
/// unanswered). The first step is the floor itself, never the knee.
pub fn find_knee(steps: &[SweepStep]) -> Option<usize> {
    let mut floor = f64::INFINITY;
    for (i, step) in steps.iter().enumerate() {
        if i > 0
            && (step.p99_us > KNEE_FACTOR * floor
                || step.achieved < KNEE_SHORTFALL * step.offered
                || step.unfinished > 0)
        {
            return Some(i);
        }
        floor = floor.min(step.p99_us);
    }
    None
}

/// What a sweep measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// Each step, by offered rate.
    pub steps: Vec<SweepStep>,
    /// The index of the knee in `steps`, if one was found.
    pub knee: Option<usize>,
}

/// Offers `rates` in turn, each for `run.duration` (`run.rate` is
/// ignored), and stops at the step after the knee (the system is then
/// saturated; going further only queues more).
pub async fn sweep(workload: &Arc<dyn Workload>, rates: &[f64], run: &OpenLoop) -> Result<Sweep> {
    let mut steps = Vec::new();
    let mut past_knee = 0;
    for rate in rates {
        let m = open_loop(
            workload,
            &OpenLoop {
                rate: *rate,
                ..run.clone()
            },
        )
        .await?;
        steps.push(SweepStep {
            offered: *rate,
            achieved: m.throughput,
            p50_us: m.corrected.p50_us,
            p99_us: m.corrected.p99_us,
            errors: m.errors,
            unfinished: m.unfinished,
        });
        if find_knee(&steps).is_some() {
            past_knee += 1;
            if past_knee > 1 {
                break;
            }
        }
    }
    let knee = find_knee(&steps);
    Ok(Sweep { steps, knee })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, achieved: f64, p99_us: f64) -> SweepStep {
        SweepStep {
            offered,
            achieved,
            p50_us: p99_us / 2.0,
            p99_us,
            errors: 0,
            unfinished: 0,
        }
    }

    #[test]
    fn knee_is_where_p99_leaves_its_floor_or_throughput_falls_behind() {
        let flat = [
            step(100.0, 100.0, 50.0),
            step(200.0, 200.0, 40.0),
            step(400.0, 399.0, 110.0),
        ];
        assert_eq!(find_knee(&flat), None);
        let mut rising = flat.to_vec();
        rising.push(step(800.0, 795.0, 130.0));
        assert_eq!(find_knee(&rising), Some(3), "130 > 3 × 40");
        let behind = [step(100.0, 100.0, 50.0), step(200.0, 170.0, 50.0)];
        assert_eq!(find_knee(&behind), Some(1));
        assert_eq!(find_knee(&[step(100.0, 10.0, 1e6)]), None);
    }

    #[test]
    fn rates_print_with_separators() {
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(100.0), "100");
        assert_eq!(fmt_rate(12.34), "12.3");
    }

    #[test]
    fn latency_of_an_empty_histogram_is_zero() {
        assert_eq!(Latency::of(&histogram()), Latency::default());
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        assert_eq!(l.curve.len(), CURVE_PERCENTILES.len());
    }
}
