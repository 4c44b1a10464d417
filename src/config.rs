//! Configuration: built-in defaults, files, environment and flags, merged by
//! figment.
//!
//! # Order (later wins)
//!
//! 1. Built-in defaults: every engine embedded, data under `./data`.
//! 2. `config/default.toml` (in the configuration directory, `./config`
//!    unless `STRATA_CONFIG_DIR` names another), when present.
//! 3. `config/<profile>.toml` when `--profile NAME` or `STRATA_PROFILE`
//!    names one; a named profile whose file is missing is an error.
//! 4. `STRATA_*` environment variables, `__` for nesting:
//!    `STRATA_KV__URL=redis://...`, `STRATA_RELATIONAL__MAX_CONNECTIONS=20`,
//!    `STRATA_API__LISTEN=0.0.0.0:8080`. Every section can be set this way;
//!    see [`Environment`] for the rules.
//! 5. `--config FILE` (must exist).
//! 6. Command-line flags (`--data-dir`, `--log-sql`).
//!
//! Each engine kind is chosen on its own: `relational.url` (`sqlite://` or
//! `postgres://`), `documents.kind`, `kv.kind`, `queue.kind`; a section
//! that names no kind is `embedded`. Unknown keys are errors, so a typo
//! never silently falls back to a default. An error names the key and the
//! file or the variable it came from.
//!
//! Secrets (passwords, in their own keys or anywhere inside URLs) are
//! redacted whenever configuration is printed or logged: [`redact_url`] is
//! the one function that decides what of a URL may be shown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::engines::kv::DEFAULT_SUBSCRIPTION_CAPACITY;
use crate::error::{Error, ErrorKind, Result};

mod env;
mod redact;

use env::EnvLayer;
pub use env::Environment;
pub use redact::{REDACTED, redact_url, scrub, url_secrets};

/// The whole configuration of a strata process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded engines keep their files.
    pub data_dir: PathBuf,
    /// The relational engine (SQLite or PostgreSQL through sea-orm).
    pub relational: RelationalConfig,
    /// The document engine.
    pub documents: DocumentsConfig,
    /// The key-value engine.
    pub kv: KvConfig,
    /// The queue engine.
    pub queue: QueueConfig,
    /// The HTTP API (`strata serve`).
    pub api: ApiConfig,
    /// Operations that span engines (durable sagas).
    pub sagas: SagasConfig,
    /// Timeout, retry and circuit breaker around the document, key-value
    /// and queue engines (`engines::layers`).
    pub layers: LayersConfig,
    /// The three-tier cache: every cache's defaults (`crate::cache`).
    pub cache: crate::cache::CacheSettings,
    /// Online serving: features, predictions, rate limits.
    pub serving: crate::serving::ServingConfig,
    /// Async pipelines: topology, retries, dead letters, the worker.
    pub pipelines: crate::pipelines::PipelinesConfig,
    /// The transactional outbox and its relay.
    pub outbox: OutboxConfig,
    /// Customer analytics: segments, churn, lifetime value,
    /// recommendations (`crate::analytics`).
    pub analytics: AnalyticsConfig,
    /// Logs: their format (what is logged is `STRATA_LOG`, tracing's
    /// filter directives).
    pub log: LogConfig,
    /// Traces exported to an OpenTelemetry collector (the `otel` build
    /// feature; see [`crate::telemetry`]).
    pub telemetry: TelemetryConfig,
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (for people) or `json` (one object per line, with the
    /// request id and the other fields of the spans it happened in).
    pub format: LogFormat,
}

/// Where traces go: the `request` and `message` spans, exported over
/// OTLP/HTTP (protobuf) by a strata built with the `otel` feature. A
/// strata built without it warns at startup when an endpoint is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`; traces
    /// are posted to `/v1/traces` under it). Unset: the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// the full URL), and no export when neither is set.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "strata".to_owned(),
        }
    }
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            relational: RelationalConfig::default(),
            documents: DocumentsConfig::default(),
            kv: KvConfig::default(),
            queue: QueueConfig::default(),
            api: ApiConfig::default(),
            sagas: SagasConfig::default(),
            layers: LayersConfig::default(),
            cache: crate::cache::CacheSettings::default(),
            serving: crate::serving::ServingConfig::default(),
            pipelines: crate::pipelines::PipelinesConfig::default(),
            outbox: OutboxConfig::default(),
            analytics: AnalyticsConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// The thresholds and windows of the customer analytics
/// (`crate::analytics`, docs/analytics.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// A customer without an order for this long is `DORMANT`.
    #[serde(with = "humantime_serde")]
    pub dormant_after: Duration,
    /// The churn label: a customer churned when they bought nothing in
    /// this window after the training cutoff (the cutoff is the window
    /// before the data's latest order).
    #[serde(with = "humantime_serde")]
    pub churn_window: Duration,
    /// A churn probability above this is `AT_RISK` (0 to 1).
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub at_risk_probability: f64,
    /// The top fraction of customers by lifetime value is `VIP` (0 to 1).
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub vip_fraction: f64,
    /// A lifetime value at or above this is `VIP` whatever the fraction.
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub vip_ltv: f64,
    /// Expected customer lifetime in years, the third factor of the
    /// lifetime value.
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub lifetime_years: f64,
    /// Co-purchased products kept per product in the model.
    #[serde(deserialize_with = "crate::config::lenient::usize")]
    pub co_purchases_top: usize,
    /// Popular products kept per segment in the model.
    #[serde(deserialize_with = "crate::config::lenient::usize")]
    pub popular_top: usize,
    /// Percent of customers (by a hash of their id) held out of training
    /// to evaluate the churn model (1 to 99).
    #[serde(deserialize_with = "crate::config::lenient::u32")]
    pub holdout_percent: u32,
    /// Raw events older than this are deleted (a TTL index on their time,
    /// in whole seconds).
    #[serde(with = "humantime_serde")]
    pub event_retention: Duration,
    /// A day's share of `error` events above this raises `alert.error_rate`
    /// (0 to 1).
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub alert_error_rate: f64,
    /// Events a day must have before its error rate counts.
    #[serde(deserialize_with = "crate::config::lenient::u64")]
    pub alert_min_events: u64,
    /// A work queue with more ready messages than this raises
    /// `alert.queue_depth`.
    #[serde(deserialize_with = "crate::config::lenient::u64")]
    pub alert_queue_depth: u64,
    /// At most one alert per kind (and queue) per window; queue depths are
    /// checked once per window.
    #[serde(with = "humantime_serde")]
    pub alert_window: Duration,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            dormant_after: Duration::from_secs(90 * 86_400),
            churn_window: Duration::from_secs(90 * 86_400),
            at_risk_probability: 0.5,
            vip_fraction: 0.1,
            vip_ltv: 50_000.0,
            lifetime_years: 3.0,
            co_purchases_top: 20,
            popular_top: 20,
            holdout_percent: 30,
            event_retention: Duration::from_secs(400 * 86_400),
            alert_error_rate: 0.05,
            alert_min_events: 100,
            alert_queue_depth: 10_000,
            alert_window: Duration::from_secs(60),
        }
    }
}

impl AnalyticsConfig {
    /// Refuses values the analytics cannot use, naming the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, what: &str| {
            Err(Error::new(
                ErrorKind::Config,
                format!("analytics.{key} must be {what}"),
            ))
        };
        if self.dormant_after.is_zero() {
            return bad("dormant_after", "above zero");
        }
        if self.churn_window.is_zero() {
            return bad("churn_window", "above zero");
        }
        if !(0.0..=1.0).contains(&self.at_risk_probability) {
            return bad("at_risk_probability", "between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.vip_fraction) {
            return bad("vip_fraction", "between 0 and 1");
        }
        if !self.vip_ltv.is_finite() || self.vip_ltv < 0.0 {
            return bad("vip_ltv", "finite and not negative");
        }
        if !self.lifetime_years.is_finite() || self.lifetime_years <= 0.0 {
            return bad("lifetime_years", "finite and above zero");
        }
        if self.co_purchases_top == 0 || self.popular_top == 0 {
            return bad("co_purchases_top and popular_top", "at least 1");
        }
        if !(1..=99).contains(&self.holdout_percent) {
            return bad("holdout_percent", "between 1 and 99");
        }
        if self.event_retention.as_secs() == 0
            || self.event_retention.subsec_nanos() != 0
            || self.event_retention.as_secs() > i32::MAX as u64
        {
            return bad(
                "event_retention",
                "whole seconds, from 1s to about 68 years",
            );
        }
        if !(0.0..=1.0).contains(&self.alert_error_rate) {
            return bad("alert_error_rate", "between 0 and 1");
        }
        if self.alert_window < Duration::from_secs(1) {
            return bad("alert_window", "at least 1s");
        }
        Ok(())
    }
}

/// The layers around the document, key-value and queue engines, from the
/// caller inwards: metrics, circuit breaker, retry, timeout (see
/// `engines::layers`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayersConfig {
    /// Time allowed to one attempt of one engine operation.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries of an operation that is safe to repeat, after an error a
    /// retry may help.
    pub retry: crate::retry::RetryPolicy,
    /// When to stop calling an engine that keeps failing.
    pub breaker: BreakerConfig,
}

impl Default for LayersConfig {
    fn default() -> Self {
        LayersConfig {
            timeout: Duration::from_secs(10),
            retry: crate::retry::RetryPolicy::default()
                .with_delays(Duration::from_millis(20), Duration::from_millis(200))
                .with_max_attempts(3)
                .with_max_elapsed(Duration::from_secs(1)),
            breaker: BreakerConfig::default(),
        }
    }
}

/// A circuit breaker per engine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive calls failing because the engine was unreachable or too
    /// slow that open the circuit; 0 turns the breaker off.
    #[serde(deserialize_with = "lenient::u32")]
    pub failures: u32,
    /// How long the circuit stays open before a probe call goes through.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// The longest it stays open (the cooldown doubles after each failed
    /// probe).
    #[serde(with = "humantime_serde")]
    pub max_cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(1),
            max_cooldown: Duration::from_secs(30),
        }
    }
}

/// How operations that span engines (registering or removing a model) are
/// driven and recovered; see `platform::sagas`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagasConfig {
    /// How long a process holds an open saga between two of its writes; a
    /// saga whose holder is gone is taken over once this has passed.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often a running `strata serve` looks for such sagas.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Take-overs after which a registration is undone instead of finished.
    #[serde(deserialize_with = "lenient::u32")]
    pub max_takeovers: u32,
    /// Retries of one step that failed with an error a retry may help.
    pub retry: crate::retry::RetryPolicy,
    /// Ended sagas are kept this long (identical retries are recognised
    /// within it), then deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long after a registration was undone its config document and
    /// counter field are still looked for: a write whose answer was lost,
    /// or one by a driver that lost its lease, may land after the
    /// compensation deleted it.
    #[serde(with = "humantime_serde")]
    pub late_write_window: Duration,
}

impl Default for SagasConfig {
    fn default() -> Self {
        SagasConfig {
            lease: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            max_takeovers: 3,
            retry: crate::retry::RetryPolicy::default().with_max_elapsed(Duration::from_secs(8)),
            retention: Duration::from_secs(7 * 24 * 3600),
            late_write_window: Duration::from_secs(600),
        }
    }
}

/// The transactional outbox's relay (`platform::outbox`): how much it
/// publishes per pass, how often it looks when nothing woke it, how long
/// it holds what it claimed, and how long sent events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Most events claimed and published in one pass.
    #[serde(deserialize_with = "crate::config::lenient::usize")]
    pub batch: usize,
    /// How often a relay looks for unsent events when no commit of this
    /// process woke it (events of other processes, retries).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a relay holds the events it claimed; another relay takes
    /// them over once it has run out (the holder died or stalled).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Sent events are kept this long, then deleted by the relay.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            batch: 256,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The HTTP API served by `strata serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, `HOST:PORT` (port 0 picks a free one).
    pub listen: String,
    /// Largest request body accepted; a larger one is answered 413.
    pub body_limit: ByteSize,
    /// Time allowed to answer a request; a slower one is answered 503, or,
    /// for registering or removing a run, 202 with its saga (at 90% of it).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed for a request's headers to arrive, counted from when
    /// the connection opens or, on a kept-alive connection, from the end
    /// of the previous response; when it runs out the connection is
    /// closed. So it also bounds how long an idle kept-alive connection is
    /// held.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Most connections served at once. Beyond it strata stops accepting:
    /// new connections wait in the operating system's listen backlog until
    /// a served one closes (and are refused by the OS once that is full).
    #[serde(deserialize_with = "lenient::u32")]
    pub max_connections: u32,
    /// Serve without authentication on an address that is not loopback
    /// while no API token exists (`strata serve --allow-unauthenticated`).
    /// Off: without a token strata serves on loopback only.
    #[serde(deserialize_with = "lenient::bool")]
    pub allow_unauthenticated: bool,
    /// Host names (a port is ignored) requests may name in `Host`, against
    /// DNS rebinding; `*` turns the check off. Empty: on a loopback
    /// address, `localhost`, `127.0.0.1`, `[::1]` and the listen address;
    /// on another, no check. The loopback names and the listen address are
    /// always allowed. `/healthz` and `/readyz` are never checked.
    #[serde(deserialize_with = "lenient::strings")]
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://host[:port]`) whose browser pages may call the
    /// API (CORS); empty: none (no CORS headers at all).
    #[serde(deserialize_with = "lenient::strings")]
    pub cors_origins: Vec<String>,
    /// TLS: with both set, strata serves HTTPS only.
    pub tls: TlsConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".to_owned(),
            body_limit: ByteSize::mib(1),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            allow_unauthenticated: false,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            tls: TlsConfig::default(),
        }
    }
}

/// The API's TLS certificate and key (`api.tls`), PEM files. Both or
/// neither; `strata serve` refuses to start (exit 2) naming a file that
/// is missing or does not parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert: Option<PathBuf>,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// A secret value: printed as `<redacted>` by `Debug` and `Serialize`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REDACTED:?}")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// The relational engine: SQLite (embedded) or PostgreSQL, by URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelationalConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`. When absent, the
    /// SQLite file `strata.db` in the data dir.
    pub url: Option<String>,
    /// Password, overriding any in the URL (`STRATA_RELATIONAL__PASSWORD`).
    pub password: Option<Secret>,
    /// Most pooled connections.
    #[serde(deserialize_with = "lenient::u32")]
    pub max_connections: u32,
    /// Connections kept open when idle.
    #[serde(deserialize_with = "lenient::u32")]
    pub min_connections: u32,
    /// Time allowed to open a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed to take a connection from the pool.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// An idle connection is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection is replaced after this long.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// Log every SQL statement (target `sqlx::query`, shown with `--log-sql`).
    #[serde(deserialize_with = "lenient::bool")]
    pub log_statements: bool,
}

impl Default for RelationalConfig {
    fn default() -> Self {
        RelationalConfig {
            url: None,
            password: None,
            max_connections: 10,
            min_connections: 1,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            log_statements: false,
        }
    }
}

impl fmt::Debug for RelationalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelationalConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("password", &self.password)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("log_statements", &self.log_statements)
            .finish()
    }
}

impl RelationalConfig {
    /// The URL to connect to, with the password applied and the SQLite
    /// default resolved against `data_dir`.
    pub fn effective_url(&self, data_dir: &Path) -> Result<String> {
        let raw = match &self.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("strata.db").display()),
        };
        with_password(&raw, self.password.as_ref())
    }

    /// Whether the configured URL is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.url.as_deref().is_none_or(|u| u.starts_with("sqlite:"))
    }
}

/// The document engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DocumentsConfig {
    /// In-process, persisted in the data dir.
    Embedded(EmbeddedDocumentsConfig),
    /// MongoDB through the official driver.
    Mongodb(MongoConfig),
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        DocumentsConfig::Embedded(EmbeddedDocumentsConfig::default())
    }
}

/// Options of the embedded document engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedDocumentsConfig {
    /// Its directory; `documents` in the data dir when absent.
    pub path: Option<PathBuf>,
    /// fsync every acknowledged write (survives power loss, not just a
    /// crash of the process). Off by default.
    #[serde(deserialize_with = "lenient::bool")]
    pub fsync: bool,
}

/// Options of the MongoDB adapter.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// `mongodb://USER@HOST:PORT/?authSource=admin`.
    pub url: String,
    /// Password, overriding any in the URL.
    pub password: Option<Secret>,
    /// The database strata uses.
    pub database: String,
    /// Most pooled connections per server.
    #[serde(deserialize_with = "lenient::u32")]
    pub max_pool_size: u32,
    /// Connections kept open.
    #[serde(deserialize_with = "lenient::u32")]
    pub min_pool_size: u32,
    /// Time allowed to open a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed to find a usable server.
    #[serde(with = "humantime_serde")]
    pub server_selection_timeout: Duration,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            url: "mongodb://127.0.0.1:27017".into(),
            password: None,
            database: "strata".into(),
            max_pool_size: 10,
            min_pool_size: 0,
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for MongoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("database", &self.database)
            .field("max_pool_size", &self.max_pool_size)
            .field("min_pool_size", &self.min_pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .finish()
    }
}

/// The key-value engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum KvConfig {
    /// In-process, moka-backed, memory-bounded; lost on restart.
    Embedded(EmbeddedKvConfig),
    /// Redis through a bb8 pool.
    Redis(RedisConfig),
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig::Embedded(EmbeddedKvConfig::default())
    }
}

/// Options of the embedded key-value engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedKvConfig {
    /// Memory bound; least recently used keys are evicted beyond it
    /// (`"256 MiB"`, `"1 GiB"`).
    pub max_memory: ByteSize,
    /// Messages each subscription buffers for a slow reader; beyond it the
    /// oldest is dropped and the reader told it lagged. At least 1.
    #[serde(deserialize_with = "lenient::usize")]
    pub subscription_capacity: usize,
}

impl Default for EmbeddedKvConfig {
    fn default() -> Self {
        EmbeddedKvConfig {
            max_memory: ByteSize::mib(256),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
        }
    }
}

/// Options of the Redis adapter.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://default@HOST:PORT/DB` or `rediss://` for TLS.
    pub url: String,
    /// Password, overriding any in the URL.
    pub password: Option<Secret>,
    /// Most pooled connections.
    #[serde(deserialize_with = "lenient::u32")]
    pub pool_size: u32,
    /// Time allowed to open a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one command or pipeline.
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Prefix of every key and channel strata uses, so several deployments
    /// can share one Redis.
    pub key_prefix: String,
    /// Messages each subscription buffers for a slow reader; beyond it the
    /// oldest is dropped and the reader told it lagged. At least 1.
    #[serde(deserialize_with = "lenient::usize")]
    pub subscription_capacity: usize,
    /// A CA certificate file (PEM) to trust instead of the system's roots,
    /// for a `rediss://` URL; an error with a `redis://` one.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            password: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(2),
            key_prefix: "strata:".into(),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            tls_ca_file: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// The queue engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum QueueConfig {
    /// In-process broker; messages live in memory.
    Embedded(EmbeddedQueueConfig),
    /// RabbitMQ through lapin.
    Rabbitmq(RabbitConfig),
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig::Embedded(EmbeddedQueueConfig::default())
    }
}

/// Options of the embedded broker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedQueueConfig {
    /// Accepted, so that one setting serves both kinds, and ignored: the
    /// embedded broker has one type of queue, which keeps every contract
    /// (priorities included).
    pub queue_type: QueueType,
}

/// The type of the durable queues strata declares on RabbitMQ
/// (`queue.queue_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    /// Classic queues: every contract of the queue engine, priorities
    /// included.
    #[default]
    Classic,
    /// Quorum queues (replicated, Raft): every durable, non-exclusive,
    /// non-auto-delete queue is declared with `x-queue-type: quorum`, without
    /// `x-max-priority` (quorum queues of RabbitMQ 3.10 have no priorities:
    /// such a queue delivers in FIFO order). Exclusive, auto-delete and
    /// non-durable queues stay classic, as RabbitMQ requires.
    Quorum,
}

/// Options of the RabbitMQ adapter.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RabbitConfig {
    /// `amqp://USER@HOST:PORT/VHOST` or `amqps://`.
    pub url: String,
    /// Password, overriding any in the URL.
    pub password: Option<Secret>,
    /// Time allowed to connect.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// `classic` or `quorum`: the type of the durable queues declared.
    pub queue_type: QueueType,
    /// A CA certificate file (PEM) to trust, beside the bundled web roots,
    /// for an `amqps://` URL; an error with an `amqp://` one.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: "amqp://guest@127.0.0.1:5672/%2f".into(),
            password: None,
            connect_timeout: Duration::from_secs(5),
            queue_type: QueueType::Classic,
            tls_ca_file: None,
        }
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("connect_timeout", &self.connect_timeout)
            .field("queue_type", &self.queue_type)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// Where configuration comes from: everything the command line can say.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The configuration directory; `./config` when absent.
    pub config_dir: Option<PathBuf>,
    /// A profile to layer on top of `default.toml`.
    pub profile: Option<String>,
    /// An extra file, applied after the environment.
    pub config_file: Option<PathBuf>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-sql`: turns `relational.log_statements` on.
    pub log_statements: bool,
    /// Where `STRATA_*` variables come from: the process (the default), or
    /// a given set ([`Environment::none`] for none), so that tests can try
    /// variables without changing the process environment.
    pub environment: Environment,
}

impl Config {
    /// Loads the configuration from `sources`, in the documented order.
    pub fn load(sources: &Sources) -> Result<Config> {
        let (figment, env) = Self::layers(sources)?;
        let config: Config = figment
            .extract()
            .map_err(|e| config_error(e, &figment, &env))?;
        config.validate(&figment, &env)?;
        Ok(config)
    }

    /// The merged providers, before extraction.
    pub fn figment(sources: &Sources) -> Result<Figment> {
        Ok(Self::layers(sources)?.0)
    }

    /// The merged providers, and the environment layer among them (which
    /// knows the variable behind each key, for error messages).
    fn layers(sources: &Sources) -> Result<(Figment, EnvLayer)> {
        let dir = sources
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config"));
        let defaults = default_tree()?;
        // Other defaults come from `#[serde(default)]`, which keeps each
        // tagged engine section's defaults with its own kind; only the kinds
        // are layered, so that a section that names none is embedded and
        // any later layer can switch it.
        let mut figment = Figment::new().merge(Serialized::defaults(engine_kinds(&defaults)));
        let default_file = dir.join("default.toml");
        if default_file.is_file() {
            figment = figment.merge(Toml::file_exact(default_file));
        }
        if let Some(profile) = sources.profile.as_deref().filter(|p| !p.is_empty()) {
            let file = dir.join(format!("{profile}.toml"));
            if !file.is_file() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("profile `{profile}`: {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let sections: Vec<String> = defaults
            .as_table()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let env = EnvLayer::read(&sources.environment, &sections)?;
        figment = figment.merge(&env);
        if let Some(file) = &sources.config_file {
            if !file.is_file() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("--config {}: no such file", file.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        if let Some(dir) = &sources.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if sources.log_statements {
            figment = figment.merge(Serialized::default("relational.log_statements", true));
        }
        Ok((figment, env))
    }

    fn validate(&self, figment: &Figment, env: &EnvLayer) -> Result<()> {
        let origin = |key: &str| origin_of(figment, env, key);
        let check = |key: &str, url: &str, schemes: &[&str]| -> Result<()> {
            let parsed = url::Url::parse(url).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!(
                        "{key}: malformed URL `{}`: {e}{}",
                        redact_url(url),
                        origin(key)
                    ),
                )
            })?;
            if !schemes.contains(&parsed.scheme()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{key}: unsupported scheme `{}` (expected {}){}",
                        parsed.scheme(),
                        schemes.join(", "),
                        origin(key)
                    ),
                ));
            }
            // `amqp:user:pw@host` parses as a URL with no host at all, and
            // drivers quote such a string whole in their errors.
            if parsed.cannot_be_a_base() && parsed.scheme() != "sqlite" {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{key}: malformed URL `{}`: expected {}://...{}",
                        redact_url(url),
                        parsed.scheme(),
                        origin(key)
                    ),
                ));
            }
            Ok(())
        };
        if let Some(url) = &self.relational.url {
            check("relational.url", url, &["sqlite", "postgres", "postgresql"])?;
        }
        if let DocumentsConfig::Mongodb(m) = &self.documents {
            check("documents.url", &m.url, &["mongodb", "mongodb+srv"])?;
        }
        if let KvConfig::Redis(r) = &self.kv {
            check("kv.url", &r.url, &["redis", "rediss"])?;
        }
        if let QueueConfig::Rabbitmq(r) = &self.queue {
            check("queue.url", &r.url, &["amqp", "amqps"])?;
        }
        if self.sagas.retry.max_elapsed >= self.sagas.lease {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "sagas.retry.max_elapsed ({:?}) must be shorter than sagas.lease ({:?}): \
                     a step still retrying when its lease ends would be taken over{}",
                    self.sagas.retry.max_elapsed,
                    self.sagas.lease,
                    origin("sagas.lease")
                ),
            ));
        }
        if self.outbox.batch == 0 || self.outbox.poll_interval.is_zero() {
            let key = if self.outbox.batch == 0 {
                "outbox.batch"
            } else {
                "outbox.poll_interval"
            };
            return Err(Error::new(
                ErrorKind::Config,
                format!("{key} must be above zero{}", origin(key)),
            ));
        }
        let subscription_capacity = match &self.kv {
            KvConfig::Embedded(e) => e.subscription_capacity,
            KvConfig::Redis(r) => r.subscription_capacity,
        };
        if subscription_capacity == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "kv.subscription_capacity must be at least 1{}",
                    origin("kv.subscription_capacity")
                ),
            ));
        }
        // Every cache's defaults and the rate limits, refused by key name.
        self.cache.check()?;
        self.serving.rate_limits.check()?;
        self.pipelines.check()?;
        self.analytics.check()?;
        if self.relational.min_connections > self.relational.max_connections {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "relational.min_connections ({}) exceeds relational.max_connections ({}){}",
                    self.relational.min_connections,
                    self.relational.max_connections,
                    origin("relational.min_connections")
                ),
            ));
        }
        if self.api.max_connections == 0 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "api.max_connections must be at least 1{}",
                    origin("api.max_connections")
                ),
            ));
        }
        for (key, value) in [
            ("api.request_timeout", self.api.request_timeout),
            ("api.header_read_timeout", self.api.header_read_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{key} must be above zero{}", origin(key)),
                ));
            }
        }
        Ok(())
    }

    /// The directory of the embedded document engine.
    pub fn documents_dir(&self) -> PathBuf {
        match &self.documents {
            DocumentsConfig::Embedded(e) => e
                .path
                .clone()
                .unwrap_or_else(|| self.data_dir.join("documents")),
            DocumentsConfig::Mongodb(_) => self.data_dir.join("documents"),
        }
    }

    /// The configuration as TOML, every secret redacted.
    pub fn to_redacted_toml(&self) -> Result<String> {
        let mut value = toml::Value::try_from(self)
            .map_err(|e| Error::internal(format!("cannot render configuration: {e}")))?;
        redact_value(&mut value);
        toml::to_string_pretty(&value)
            .map_err(|e| Error::internal(format!("cannot render configuration: {e}")))
    }

    /// The configuration as JSON, every secret redacted.
    pub fn to_redacted_json(&self) -> Result<serde_json::Value> {
        let mut value = toml::Value::try_from(self)
            .map_err(|e| Error::internal(format!("cannot render configuration: {e}")))?;
        redact_value(&mut value);
        serde_json::to_value(&value)
            .map_err(|e| Error::internal(format!("cannot render configuration: {e}")))
    }
}

/// The built-in defaults as a tree: its top-level keys are the sections
/// that `STRATA_*` variables may set.
fn default_tree() -> Result<toml::Value> {
    toml::Value::try_from(Config::default())
        .map_err(|e| Error::internal(format!("cannot render the default configuration: {e}")))
}

/// `{section: {kind: ...}}` for each section of `defaults` that has a kind.
fn engine_kinds(defaults: &toml::Value) -> toml::Table {
    let mut kinds = toml::Table::new();
    for (section, value) in defaults.as_table().into_iter().flatten() {
        if let Some(kind) = value.get("kind") {
            let mut table = toml::Table::new();
            table.insert("kind".to_owned(), kind.clone());
            kinds.insert(section.clone(), toml::Value::Table(table));
        }
    }
    kinds
}

/// " (from SOURCE)" for a key, naming the file or variable that set it.
fn origin_of(figment: &Figment, env: &EnvLayer, key: &str) -> String {
    let path: Vec<&str> = key.split('.').collect();
    match figment.find_metadata(key) {
        Some(meta) => format!(" (from {})", describe_source(meta, &path, env)),
        None => String::new(),
    }
}

/// The file, environment variable or other source that set `path`.
fn describe_source(meta: &figment::Metadata, path: &[&str], env: &EnvLayer) -> String {
    match &meta.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        _ if meta.name == env::SOURCE_NAME => match env.variable_for(path) {
            Some(name) => format!("environment variable {name}"),
            None => format!(
                "environment variable {}{}",
                env::PREFIX,
                path.join("__").to_uppercase()
            ),
        },
        _ => meta.name.to_string(),
    }
}

fn config_error(error: figment::Error, figment: &Figment, env: &EnvLayer) -> Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let e = pinpoint(e, figment);
            let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            // figment's path ends at the unknown field for a plain
            // section, at the section for one tagged by `kind`.
            if let figment::error::Kind::UnknownField(field, _) = &e.kind
                && path.last() != Some(&field.as_str())
            {
                path.push(field);
            }
            let key = path.join(".");
            // figment quotes expected values in backticks and then the whole
            // list again; one pair is enough.
            let what = e.kind.to_string().replace("``", "`");
            let mut line = if key.is_empty() {
                what
            } else {
                format!("{key}: {what}")
            };
            if let Some(meta) = &e.metadata {
                line.push_str(&format!(" (from {})", describe_source(meta, &path, env)));
            }
            line
        })
        .collect();
    Error::new(ErrorKind::Config, lines.join("; "))
}

/// Names the key behind an error inside an engine section. serde reads a
/// section tagged by `kind` whole before choosing its variant, so a bad
/// value there is reported against the section (`kv`), not the key
/// (`kv.pool_size`), and so against the wrong file or variable. Each key
/// of the section is tried alone with the section's kind; the first that
/// fails is the culprit.
fn pinpoint(mut error: figment::Error, figment: &Figment) -> figment::Error {
    use figment::error::Kind;
    if matches!(
        error.kind,
        Kind::UnknownField(..) | Kind::MissingField(..) | Kind::DuplicateField(..)
    ) {
        return error;
    }
    let section = error.path.join(".");
    let Ok(figment::value::Value::Dict(_, keys)) = figment.find_value(&section) else {
        return error;
    };
    let Some(kind) = keys.get("kind") else {
        return error;
    };
    // An unknown variant is the kind's own unless the kind alone is fine
    // (then it is a key's, such as `queue.queue_type`).
    if matches!(error.kind, Kind::UnknownVariant(..))
        && Figment::new()
            .merge(Serialized::default(&format!("{section}.kind"), kind))
            .extract::<Config>()
            .is_err()
    {
        return error;
    }
    for (key, value) in keys.iter().filter(|(k, _)| k.as_str() != "kind") {
        let probe = Figment::new()
            .merge(Serialized::default(&format!("{section}.kind"), kind))
            .merge(Serialized::default(&format!("{section}.{key}"), value));
        if let Err(found) = probe.extract::<Config>() {
            let full = format!("{section}.{key}");
            error.metadata = figment.find_metadata(&full).cloned();
            error.path.push(key.clone());
            error.kind = found.kind;
            return error;
        }
    }
    error
}

/// Numbers and booleans read from text as well: environment variables are
/// text, and the engine sections (tagged by `kind`) are read through serde's
/// buffer, which does not convert on its own.
pub(crate) mod lenient {
    use std::fmt;

    use serde::de::{self, Deserializer, Unexpected, Visitor};

    /// A `u32` from a number, or from text holding one.
    pub(crate) fn u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
        struct Whole;
        impl Visitor<'_> for Whole {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a whole number from 0 to {}", u32::MAX)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
                u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
                v.trim()
                    .parse()
                    .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        deserializer.deserialize_any(Whole)
    }

    /// A `u8` from a number, or from text holding one.
    pub(crate) fn u8<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
        let v = u32(deserializer)?;
        u8::try_from(v).map_err(|_| {
            de::Error::invalid_value(
                Unexpected::Unsigned(u64::from(v)),
                &"a whole number from 0 to 255",
            )
        })
    }

    /// A `u16` from a number, or from text holding one.
    pub(crate) fn u16<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
        let v = u32(deserializer)?;
        u16::try_from(v).map_err(|_| {
            de::Error::invalid_value(
                Unexpected::Unsigned(u64::from(v)),
                &"a whole number from 0 to 65535",
            )
        })
    }

    /// A `u64` (up to `u32::MAX`) from a number, or from text holding one.
    pub(crate) fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        u32(deserializer).map(u64::from)
    }

    /// A `usize` from a number, or from text holding one.
    pub(crate) fn usize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
        let v = u32(deserializer)?;
        Ok(v as usize)
    }

    /// An `f64` from a number, or from text holding one (finite).
    pub(crate) fn f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        struct Real;
        impl Visitor<'_> for Real {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a finite number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(E::invalid_value(Unexpected::Float(v), &self))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
                match v.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Real)
    }

    /// A list of strings from a list, or from text holding them separated
    /// by commas (an environment variable: `a.example,b.example`).
    pub(crate) fn strings<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        struct Strings;
        impl<'de> Visitor<'de> for Strings {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, or text with them separated by commas")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
                Ok(v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(item);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_any(Strings)
    }

    /// A `bool` from a boolean, or from the text `true` or `false` (any
    /// case).
    pub(crate) fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
        struct Flag;
        impl Visitor<'_> for Flag {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(Flag)
    }
}

/// `url` with its password set to `password` (when given). A password in
/// the query string (`?password=`, `?pass=`) is dropped then: drivers read
/// it after the userinfo, and the `password` key must win.
pub fn with_password(url: &str, password: Option<&Secret>) -> Result<String> {
    let Some(password) = password else {
        return Ok(url.to_owned());
    };
    let mut parsed = url::Url::parse(url).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("malformed URL `{}`: {e}", redact_url(url)),
        )
    })?;
    parsed.set_password(Some(password.expose())).map_err(|_| {
        Error::new(
            ErrorKind::Config,
            format!("URL `{}` cannot carry a password", redact_url(url)),
        )
    })?;
    let is_password = |name: &str| matches!(name, "password" | "pass");
    if parsed.query_pairs().any(|(name, _)| is_password(&name)) {
        let kept: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(name, _)| !is_password(name))
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok(parsed.to_string())
}

/// Keys whose string values are secrets whatever they hold.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

/// Redacts, at any depth, the values of secret-named keys and every string
/// that is or looks like a URL.
fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                match v {
                    toml::Value::String(s) if is_secret_key(key) => *s = REDACTED.to_owned(),
                    toml::Value::String(s) if key == "url" || key.ends_with("_url") => {
                        *s = redact_url(s);
                    }
                    _ => redact_value(v),
                }
            }
        }
        toml::Value::String(s) if s.contains("://") => *s = redact_url(s),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut config = Config::default();
        config.relational.password = Some(Secret::new("hunter2"));
        config.relational.url = Some("postgres://u@h/db?sslpassword=qs-secret".into());
        config.kv = KvConfig::Redis(RedisConfig {
            url: "redis://default:topsecret@localhost:6379".into(),
            ..Default::default()
        });
        config.documents = DocumentsConfig::Mongodb(MongoConfig {
            url: "mongodb://u:mongo#pw@h1,h2/?authSource=admin".into(),
            ..Default::default()
        });
        let text = config.to_redacted_toml().unwrap();
        let json = config.to_redacted_json().unwrap().to_string();
        let debug = format!("{config:?}");
        for shown in [&text, &json, &debug] {
            for secret in ["hunter2", "topsecret", "qs-secret", "mongo#pw", "pw@h1"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
        assert!(text.contains("<redacted>"));
        assert!(text.contains("authSource=admin"), "{text}");
    }

    #[test]
    fn password_key_overrides_url_password_in_userinfo_and_query() {
        let url = with_password(
            "postgres://strata:old@localhost/strata",
            Some(&Secret::new("n3w")),
        )
        .unwrap();
        assert_eq!(url, "postgres://strata:n3w@localhost/strata");
        let url = with_password(
            "postgres://strata@localhost/strata?password=old&sslmode=disable",
            Some(&Secret::new("n3w")),
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://strata:n3w@localhost/strata?sslmode=disable"
        );
        let url = with_password(
            "postgres://strata@localhost/strata?password=old",
            Some(&Secret::new("n3w")),
        )
        .unwrap();
        assert_eq!(url, "postgres://strata:n3w@localhost/strata");
    }
}
