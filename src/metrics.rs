//! The process's metrics, exposed by `GET /metrics` in the Prometheus text
//! format (version 0.0.4), through the Prometheus project's own client
//! (`prometheus-client`).
//!
//! Two kinds:
//!
//! - **Events**, recorded where they happen into the process-wide
//!   [`Metrics`] ([`global`]): HTTP requests, engine operations and their
//!   retries, pipeline messages by outcome, handler time and consumer lag.
//! - **State**, read at each scrape by whoever renders the page (the API's
//!   `/metrics` handler, from the ops snapshot) and written into a
//!   [`Scrape`]: engine pings, cache counters per tier, pool use, feature
//!   reads by freshness, queue depths, dead letters, the outbox backlog,
//!   saga states, breaker states.
//!
//! Names follow Prometheus conventions: `strata_` first, base units
//! (`_seconds`), counters end in `_total`. Label values are bounded sets
//! (routes as templates, never raw paths; engine, operation, queue, view
//! and cache names strata itself defines), so the series count stays
//! bounded whatever clients send. Nothing a client supplies beyond those
//! names, and no token or secret, ever becomes a label.
//!
//! The registry is process-wide because a Prometheus scrape is of one
//! process: several platforms in one process (tests) add up.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Label set: `(name, value)` pairs in a fixed order.
type Labels = Vec<(&'static str, String)>;

/// Builds histograms with one set of buckets.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Latency buckets, 100 µs to 30 s: engine calls on loopback take tens of
/// microseconds, a saga or a slow scan seconds.
const LATENCY: Buckets = Buckets(&[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
]);

/// Lag buckets, 1 ms to 1 hour: a message may wait behind a backlog, or
/// for a retry's delay.
const LAG: Buckets = Buckets(&[
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
]);

/// The event metrics of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Histogram, Buckets>,
    engine_operations: Family<Labels, Histogram, Buckets>,
    engine_errors: Family<Labels, Counter>,
    engine_retries: Family<Labels, Counter>,
    messages: Family<Labels, Counter>,
    handler_time: Family<Labels, Histogram, Buckets>,
    consumer_lag: Family<Labels, Histogram, Buckets>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("strata");
        let http_requests = Family::new_with_constructor(LATENCY);
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests by method, route template and status, from arrival to the answer's headers",
            Unit::Seconds,
            http_requests.clone(),
        );
        let engine_operations = Family::new_with_constructor(LATENCY);
        registry.register_with_unit(
            "engine_operation_duration",
            "Engine operations as their callers saw them (retries and breaker included), by engine and operation",
            Unit::Seconds,
            engine_operations.clone(),
        );
        let engine_errors = Family::default();
        registry.register(
            "engine_operation_errors",
            "Engine operations that failed, by engine, operation and error kind",
            engine_errors.clone(),
        );
        let engine_retries = Family::default();
        registry.register(
            "engine_retries",
            "Attempts of engine operations repeated after an unavailable or timed-out attempt",
            engine_retries.clone(),
        );
        let messages = Family::default();
        registry.register(
            "pipeline_messages",
            "Messages handled by workers, by queue and outcome (done, retried, dead_lettered, duplicate, panicked)",
            messages.clone(),
        );
        let handler_time = Family::new_with_constructor(LATENCY);
        registry.register_with_unit(
            "pipeline_handler_duration",
            "Time handlers took per message, by queue",
            Unit::Seconds,
            handler_time.clone(),
        );
        let consumer_lag = Family::new_with_constructor(LAG);
        registry.register_with_unit(
            "pipeline_consumer_lag",
            "Time from a message's publication to a worker starting on it, by queue",
            Unit::Seconds,
            consumer_lag.clone(),
        );
        Metrics {
            registry,
            http_requests,
            engine_operations,
            engine_errors,
            engine_retries,
            messages,
            handler_time,
            consumer_lag,
        }
    }

    /// One HTTP request: `route` is the matched template (`/v1/runs/{model_id}`),
    /// or `unmatched`.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ])
            .observe(elapsed.as_secs_f64());
    }

    /// One engine operation, and the kind of its error if it failed.
    pub fn engine_operation(
        &self,
        engine: &'static str,
        operation: &'static str,
        elapsed: Duration,
        error: Option<crate::ErrorKind>,
    ) {
        let labels = vec![
            ("engine", engine.to_owned()),
            ("operation", operation.to_owned()),
        ];
        self.engine_operations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            let mut labels = labels;
            labels.push(("kind", kind.as_str().to_owned()));
            self.engine_errors.get_or_create(&labels).inc();
        }
    }

    /// One repeated attempt of an engine operation.
    pub fn engine_retry(&self, engine: &'static str, operation: &'static str) {
        self.engine_retries
            .get_or_create(&vec![
                ("engine", engine.to_owned()),
                ("operation", operation.to_owned()),
            ])
            .inc();
    }

    /// One message of `queue` settled with `outcome`.
    pub fn message(&self, queue: &str, outcome: &'static str) {
        self.messages
            .get_or_create(&vec![
                ("queue", queue.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// A handler of `queue` ran for `elapsed`.
    pub fn handler_time(&self, queue: &str, elapsed: Duration) {
        self.handler_time
            .get_or_create(&vec![("queue", queue.to_owned())])
            .observe(elapsed.as_secs_f64());
    }

    /// A message of `queue` waited `lag` between publication and handling.
    pub fn consumer_lag(&self, queue: &str, lag: Duration) {
        self.consumer_lag
            .get_or_create(&vec![("queue", queue.to_owned())])
            .observe(lag.as_secs_f64());
    }

    /// The page: these event metrics, then `scrape`'s state.
    pub fn render(&self, scrape: &Scrape) -> Result<String, std::fmt::Error> {
        let mut page = String::new();
        prometheus_text::encode(&mut page, &self.registry)?;
        prometheus_text::encode(&mut page, &scrape.registry)?;
        Ok(page)
    }
}

/// State read at one scrape, as gauges and counters.
#[derive(Debug)]
pub struct Scrape {
    registry: Registry,
}

impl Default for Scrape {
    fn default() -> Self {
        Scrape {
            registry: Registry::with_prefix("strata"),
        }
    }
}

impl Scrape {
    /// An empty scrape.
    pub fn new() -> Scrape {
        Scrape::default()
    }

    /// A gauge family `name` with one sample per `(labels, value)`.
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, f64)>,
    ) {
        let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).set(value);
        }
        self.registry.register(name, help, family);
    }

    /// A counter family `name` (`_total` is added) with one sample per
    /// `(labels, value)`: totals kept elsewhere since the process started.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'static str, String)>, u64)>,
    ) {
        let family = Family::<Labels, Counter>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).inc_by(value);
        }
        self.registry.register(name, help, family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_renders_gauges_and_counters_in_the_text_format() {
        let mut scrape = Scrape::new();
        scrape.gauge(
            "queue_depth",
            "Messages ready",
            [(vec![("queue", "q1".to_owned())], 3.0)],
        );
        scrape.counter(
            "cache_hits",
            "Hits",
            [(
                vec![("cache", "runs".to_owned()), ("tier", "l1".to_owned())],
                7,
            )],
        );
        let mut page = String::new();
        prometheus_text::encode(&mut page, &scrape.registry).unwrap();
        assert!(page.contains("# TYPE strata_queue_depth gauge"), "{page}");
        assert!(
            page.contains("strata_queue_depth{queue=\"q1\"} 3"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE strata_cache_hits_total counter"),
            "{page}"
        );
        assert!(
            page.contains("strata_cache_hits_total{cache=\"runs\",tier=\"l1\"} 7"),
            "{page}"
        );
    }
}
