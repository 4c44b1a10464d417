//! Layers around an engine: metrics, a circuit breaker, retries and a
//! timeout, wrapped around any `Arc<dyn DocumentStore>`, `Arc<dyn KvStore>`
//! or `Arc<dyn Broker>` by [`document`], [`kv`] and [`queue`]. The
//! composition root wraps every configured engine once; the engines
//! themselves stay unaware of them.
//!
//! # Order
//!
//! From the caller inwards:
//!
//! 1. **metrics**: every call, as the caller saw it (calls, errors,
//!    latency per operation), failures of the layers below included.
//! 2. **circuit breaker**: after `layers.breaker.failures` consecutive
//!    calls failed because the engine was unreachable or too slow
//!    (`Unavailable`, `Timeout`), the circuit opens and calls fail at once
//!    with `Unavailable` and a `retry_after` for `cooldown`, instead of each
//!    waiting for its own timeout. After the cooldown one call goes through
//!    as a probe (half-open): success closes the circuit, failure opens it
//!    again for twice as long, up to `max_cooldown`. Errors of the caller's
//!    input (`InvalidInput`, `Conflict`, ...) say nothing of the engine's
//!    health and leave the breaker alone.
//! 3. **retry**: an operation that is safe to repeat (a read, or a write
//!    whose repetition leaves the data as one run would: a plain `SET`, a
//!    document replacement or delete of every match, a declaration; each
//!    engine's module lists its own) is
//!    retried after `Unavailable` or `Timeout` by `layers.retry`, within
//!    the breaker, so that a blip costs one slower call rather than an
//!    error. Operations that are not safe to repeat (`INCRBY`, an insert, a
//!    publish) are never retried here: their callers decide.
//! 4. **timeout**: each attempt is bounded by `layers.timeout`; an attempt
//!    over it fails with `Timeout`.
//!
//! Then the engine.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{BreakerConfig, LayersConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

pub mod document;
pub mod kv;
pub mod queue;

/// The layers of each wrapped engine, for their breakers and metrics.
#[derive(Debug, Clone)]
pub struct EngineLayers {
    /// Around the relational engine's calls, made by the platform's
    /// services: breaker and metrics only ([`Layers::guard`]).
    pub relational: Arc<Layers>,
    /// Around the document store.
    pub documents: Arc<Layers>,
    /// Around the key-value store.
    pub kv: Arc<Layers>,
    /// Around the broker.
    pub queue: Arc<Layers>,
}

/// `engines` with the document, key-value and queue engines behind the
/// layers of `config`. (The relational engine is sea-orm's pool, with its
/// own acquire and connect timeouts.)
pub fn wrap(
    engines: crate::engines::Engines,
    config: &LayersConfig,
) -> (crate::engines::Engines, EngineLayers) {
    let layers = EngineLayers {
        relational: Layers::new("relational", config),
        documents: Layers::new("documents", config),
        kv: Layers::new("kv", config),
        queue: Layers::new("queue", config),
    };
    let wrapped = crate::engines::Engines {
        relational: engines.relational,
        documents: document::wrap(engines.documents, Arc::clone(&layers.documents)),
        kv: kv::wrap(engines.kv, Arc::clone(&layers.kv)),
        queue: queue::wrap(engines.queue, Arc::clone(&layers.queue)),
    };
    (wrapped, layers)
}

/// Where a circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail at once until the cooldown has passed.
    Open,
    /// One probe call is under way; the others fail at once.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct BreakerInner {
    state: BreakerState,
    /// Consecutive failures while closed.
    failures: u32,
    /// How long the circuit stays open next time it opens.
    cooldown: Duration,
    /// When an open circuit lets a probe through.
    open_until: Instant,
    /// The failure that opened it, for the errors it answers with.
    last_error: String,
}

/// A circuit breaker for one engine (see the module docs). Cheap to share.
#[derive(Debug)]
pub struct Breaker {
    engine: &'static str,
    config: BreakerConfig,
    inner: Mutex<BreakerInner>,
}

/// What the breaker says about a call about to start.
enum Admission {
    /// Go ahead; report the outcome.
    Call,
    /// Go ahead as the probe of a half-open circuit.
    Probe,
}

impl Breaker {
    /// A closed breaker for `engine` (`relational`, `documents`, `kv`,
    /// `queue`).
    pub fn new(engine: &'static str, config: BreakerConfig) -> Breaker {
        Breaker {
            engine,
            config,
            inner: Mutex::new(BreakerInner {
                state: BreakerState::Closed,
                failures: 0,
                cooldown: config.cooldown,
                open_until: Instant::now(),
                last_error: String::new(),
            }),
        }
    }

    /// Where it stands now.
    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        if inner.state != BreakerState::Closed && Instant::now() >= inner.open_until {
            // Due for a probe; the next call will be it.
            return BreakerState::HalfOpen;
        }
        inner.state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self, operation: &'static str) -> Result<Admission> {
        if self.config.failures == 0 {
            return Ok(Admission::Call);
        }
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            BreakerState::Closed => Ok(Admission::Call),
            // Due for a probe; or a probe went out and never reported (its
            // caller was dropped), so another goes.
            BreakerState::Open | BreakerState::HalfOpen if now >= inner.open_until => {
                inner.state = BreakerState::HalfOpen;
                inner.open_until = now + self.config.max_cooldown.max(inner.cooldown);
                Ok(Admission::Probe)
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                Err(self.refusal(&inner, operation, now))
            }
        }
    }

    /// Fails as [`admit`](Self::admit) would while the circuit is open,
    /// without taking the probe's place when it is due.
    fn refuse_if_open(&self, operation: &'static str) -> Result<()> {
        if self.config.failures == 0 {
            return Ok(());
        }
        let inner = self.lock();
        let now = Instant::now();
        if inner.state == BreakerState::Closed || now >= inner.open_until {
            return Ok(());
        }
        Err(self.refusal(&inner, operation, now))
    }

    /// The error a call refused by an open circuit gets.
    fn refusal(&self, inner: &BreakerInner, operation: &'static str, now: Instant) -> Error {
        let wait = inner.open_until.saturating_duration_since(now);
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "the {} engine is failing (circuit open after: {}); not trying",
                self.engine, inner.last_error
            ),
        )
        .with_operation(operation)
        .with_retry_after(wait.max(Duration::from_millis(1)))
    }

    fn record(&self, admission: &Admission, outcome: std::result::Result<(), &Error>) {
        if self.config.failures == 0 {
            return;
        }
        let mut inner = self.lock();
        match outcome {
            Ok(()) => {
                inner.state = BreakerState::Closed;
                inner.failures = 0;
                inner.cooldown = self.config.cooldown;
            }
            Err(e) if !counts_against_engine(e) => {
                // The engine answered; only the request was wrong.
                if matches!(admission, Admission::Probe) {
                    inner.state = BreakerState::Closed;
                    inner.failures = 0;
                    inner.cooldown = self.config.cooldown;
                }
            }
            Err(e) => {
                inner.last_error = e.to_string();
                match admission {
                    Admission::Probe => {
                        inner.cooldown = (inner.cooldown * 2).min(self.config.max_cooldown);
                        self.open(&mut inner);
                    }
                    Admission::Call => {
                        inner.failures = inner.failures.saturating_add(1);
                        if inner.failures >= self.config.failures
                            && inner.state == BreakerState::Closed
                        {
                            self.open(&mut inner);
                        }
                    }
                }
            }
        }
    }

    fn open(&self, inner: &mut BreakerInner) {
        inner.state = BreakerState::Open;
        inner.open_until = Instant::now() + inner.cooldown;
        tracing::warn!(
            engine = self.engine,
            cooldown = ?inner.cooldown,
            "circuit open: {}",
            inner.last_error
        );
    }
}

/// Whether an error says the engine is unwell (rather than the request).
fn counts_against_engine(error: &Error) -> bool {
    matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
}

/// Calls, errors and time of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Time spent in all calls, in microseconds.
    pub total_micros: u64,
    /// The slowest call, in microseconds.
    pub max_micros: u64,
}

/// The layers' state for one engine: its breaker and its metrics.
#[derive(Debug)]
pub struct Layers {
    engine: &'static str,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: Breaker,
    stats: RwLock<BTreeMap<&'static str, Mutex<OpStats>>>,
}

impl Layers {
    /// The layers of `engine` as configured.
    pub fn new(engine: &'static str, config: &LayersConfig) -> Arc<Layers> {
        Arc::new(Layers {
            engine,
            timeout: config.timeout,
            retry: config.retry,
            breaker: Breaker::new(engine, config.breaker),
            stats: RwLock::new(BTreeMap::new()),
        })
    }

    /// The engine's name.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// Where the engine's breaker stands.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Runs `work`, one operation on the relational engine (which the
    /// layers do not wrap: it is sea-orm's pool), behind the breaker and
    /// the metrics only. No retry, since a transaction is not safe to run
    /// twice as a whole, and no timeout of the layers, since the pool
    /// bounds the wait for a connection (`relational.acquire_timeout`) and
    /// `api.request_timeout` the request.
    pub async fn guard<T>(
        &self,
        operation: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let outcome = async {
            let admission = self.breaker.admit(operation)?;
            let outcome = work.await;
            self.breaker
                .record(&admission, outcome.as_ref().map(|_| ()));
            outcome
        }
        .await;
        self.observe(operation, started.elapsed(), outcome.as_ref().err());
        outcome
    }

    /// Fails at once while the breaker is open; for an operation that
    /// spans engines, whose failure would say nothing of this engine alone.
    pub fn refuse_if_open(&self, operation: &'static str) -> Result<()> {
        self.breaker.refuse_if_open(operation)
    }

    /// Calls, errors and time per operation so far.
    pub fn stats(&self) -> BTreeMap<&'static str, OpStats> {
        let stats = self.stats.read().unwrap_or_else(PoisonError::into_inner);
        stats
            .iter()
            .map(|(op, s)| (*op, *s.lock().unwrap_or_else(PoisonError::into_inner)))
            .collect()
    }

    fn observe(&self, operation: &'static str, elapsed: Duration, error: Option<&Error>) {
        let failed = error.is_some();
        crate::metrics::global().engine_operation(
            self.engine,
            operation,
            elapsed,
            error.map(Error::kind),
        );
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let add = |s: &Mutex<OpStats>| {
            let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
            s.calls += 1;
            s.errors += u64::from(failed);
            s.total_micros = s.total_micros.saturating_add(micros);
            s.max_micros = s.max_micros.max(micros);
        };
        {
            let stats = self.stats.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) = stats.get(operation) {
                add(s);
                return;
            }
        }
        let mut stats = self.stats.write().unwrap_or_else(PoisonError::into_inner);
        add(stats.entry(operation).or_default());
    }

    /// Runs `attempt` through the layers, in the documented order.
    /// `repeatable` says whether the operation may be retried.
    pub async fn call<T, F, Fut>(
        &self,
        operation: &'static str,
        repeatable: bool,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let outcome = async {
            let admission = self.breaker.admit(operation)?;
            let policy = if repeatable {
                self.retry
            } else {
                RetryPolicy::never()
            };
            let outcome = policy
                .run(|number| {
                    if number > 1 {
                        crate::metrics::global().engine_retry(self.engine, operation);
                    }
                    let call = attempt();
                    async move {
                        match tokio::time::timeout(self.timeout, call).await {
                            Ok(outcome) => outcome,
                            Err(_) => Err(Error::new(
                                ErrorKind::Timeout,
                                format!(
                                    "the {} engine did not answer within {:?} (layers.timeout)",
                                    self.engine, self.timeout
                                ),
                            )
                            .with_operation(operation)),
                        }
                    }
                })
                .await;
            self.breaker
                .record(&admission, outcome.as_ref().map(|_| ()));
            outcome
        }
        .await;
        self.observe(operation, started.elapsed(), outcome.as_ref().err());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn config(failures: u32) -> LayersConfig {
        LayersConfig {
            timeout: Duration::from_secs(1),
            retry: RetryPolicy::never(),
            breaker: BreakerConfig {
                failures,
                cooldown: Duration::from_secs(1),
                max_cooldown: Duration::from_secs(4),
            },
        }
    }

    fn down() -> Error {
        Error::new(ErrorKind::Unavailable, "connection refused")
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_whose_caller_is_dropped_does_not_hold_the_circuit_half_open() {
        let layers = Layers::new("relational", &config(1));
        let e = layers
            .guard("q", async { Err::<(), _>(down()) })
            .await
            .unwrap_err();
        assert_eq!(e.message(), "connection refused");
        assert_eq!(layers.breaker_state(), BreakerState::Open);
        assert!(layers.refuse_if_open("saga").is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        // Due for a probe: a check alone does not take its place.
        layers.refuse_if_open("saga").unwrap();
        // The probe goes out, and its caller gives up on it.
        let probe = layers.guard("q", std::future::pending::<Result<()>>());
        assert!(
            tokio::time::timeout(Duration::from_millis(10), probe)
                .await
                .is_err()
        );
        let e = layers.guard("q", async { Ok(()) }).await.unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Unavailable,
            "others wait for the probe"
        );
        // Not for ever: after max_cooldown another probe goes, and closes it.
        tokio::time::advance(Duration::from_secs(4)).await;
        layers.guard("q", async { Ok(()) }).await.unwrap();
        assert_eq!(layers.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_and_fails_fast() {
        let layers = Layers::new("kv", &config(3));
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let e = layers
                .call("get", true, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Err::<(), _>(down()) }
                })
                .await
                .unwrap_err();
            assert_eq!(e.message(), "connection refused");
        }
        assert_eq!(layers.breaker_state(), BreakerState::Open);
        let e = layers
            .call("get", true, || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            })
            .await
            .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the engine was not asked");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.to_string().contains("circuit open"), "{e}");
        assert!(e.retry_after().unwrap() <= Duration::from_secs(1));
        let stats = layers.stats()["get"];
        assert_eq!((stats.calls, stats.errors), (4, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_after_the_cooldown_closes_or_reopens_longer() {
        let layers = Layers::new("documents", &config(1));
        let fail = || async { Err::<(), _>(down()) };
        layers.call("find", true, fail).await.unwrap_err();
        assert_eq!(layers.breaker_state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(layers.breaker_state(), BreakerState::HalfOpen);
        // The probe fails: open again, for twice as long.
        layers.call("find", true, fail).await.unwrap_err();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let e = layers.call("find", true, fail).await.unwrap_err();
        assert!(e.to_string().contains("circuit open"), "{e}");
        tokio::time::advance(Duration::from_millis(600)).await;
        // The next probe succeeds: closed, and calls go through.
        layers
            .call("find", true, || async { Ok(()) })
            .await
            .unwrap();
        assert_eq!(layers.breaker_state(), BreakerState::Closed);
        layers
            .call("find", true, || async { Ok(()) })
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn errors_of_the_request_leave_the_breaker_closed() {
        let layers = Layers::new("kv", &config(1));
        for _ in 0..5 {
            layers
                .call("hset", false, || async {
                    Err::<(), _>(Error::wrong_type())
                })
                .await
                .unwrap_err();
        }
        assert_eq!(layers.breaker_state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_is_bounded_and_only_repeatable_calls_are_retried() {
        let mut c = config(0);
        c.retry =
            RetryPolicy::default().with_delays(Duration::from_millis(1), Duration::from_millis(1));
        let layers = Layers::new("kv", &c);
        let calls = AtomicU32::new(0);
        let e = layers
            .call("incrby", false, || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<()>>()
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "not repeatable: one attempt"
        );
        calls.store(0, Ordering::SeqCst);
        layers
            .call("get", true, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err(down()) } else { Ok(()) } }
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "retried until it answered");
    }
}
