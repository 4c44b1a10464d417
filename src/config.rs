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
//!    `STRATA_KV__URL=redis://...`, `STRATA_RELATIONAL__MAX_CONNECTIONS=20`.
//! 5. `--config FILE` (must exist).
//! 6. Command-line flags (`--data-dir`, `--log-sql`).
//!
//! Each engine kind is chosen on its own: `relational.url` (`sqlite://` or
//! `postgres://`), `documents.kind`, `kv.kind`, `queue.kind`. Unknown keys
//! are errors, so a typo never silently falls back to a default.
//!
//! Secrets (passwords, in their own keys or inside URLs) are redacted
//! whenever configuration is printed or logged.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::engines::kv::DEFAULT_SUBSCRIPTION_CAPACITY;
use crate::error::{Error, ErrorKind, Result};

/// The string printed in place of a secret.
pub const REDACTED: &str = "<redacted>";

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
        }
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
    pub max_takeovers: u32,
    /// Retries of one step that failed with an error a retry may help.
    pub retry: crate::retry::RetryPolicy,
    /// Ended sagas are kept this long (identical retries are recognised
    /// within it), then deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for SagasConfig {
    fn default() -> Self {
        SagasConfig {
            lease: Duration::from_secs(30),
            sweep_interval: Duration::from_secs(10),
            max_takeovers: 3,
            retry: crate::retry::RetryPolicy::default().with_max_elapsed(Duration::from_secs(8)),
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
    /// Time allowed to answer a request; a slower one is answered 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".to_owned(),
            body_limit: ByteSize::mib(1),
            request_timeout: Duration::from_secs(30),
        }
    }
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
    pub max_connections: u32,
    /// Connections kept open when idle.
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
    pub max_pool_size: u32,
    /// Connections kept open.
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
    pub subscription_capacity: usize,
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

/// Options of the embedded broker (none yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedQueueConfig {}

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
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            url: "amqp://guest@127.0.0.1:5672/%2f".into(),
            password: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("connect_timeout", &self.connect_timeout)
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
    /// Whether to read `STRATA_*` variables (tests turn this off).
    pub skip_env: bool,
}

/// Top-level keys that `STRATA_*` variables may set. Other `STRATA_`
/// variables (`STRATA_PROFILE`, `STRATA_CONFIG_DIR`, `STRATA_TEST_FULL`) are
/// not configuration keys.
const ENV_SECTIONS: &[&str] = &[
    "data_dir",
    "relational",
    "documents",
    "kv",
    "queue",
    "api",
    "sagas",
    "layers",
];

impl Config {
    /// Loads the configuration from `sources`, in the documented order.
    pub fn load(sources: &Sources) -> Result<Config> {
        let figment = Self::figment(sources)?;
        let config: Config = figment.extract().map_err(config_error)?;
        config.validate(&figment)?;
        Ok(config)
    }

    /// The merged providers, before extraction.
    pub fn figment(sources: &Sources) -> Result<Figment> {
        let dir = sources
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("config"));
        // Defaults come from `#[serde(default)]`, which keeps each tagged
        // engine section's defaults with its own kind; a missing
        // `default.toml` simply adds nothing.
        let mut figment = Figment::new();
        let defaults = dir.join("default.toml");
        if defaults.is_file() {
            figment = figment.merge(Toml::file_exact(defaults));
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
        if !sources.skip_env {
            figment = figment.merge(
                Env::prefixed("STRATA_")
                    .filter(|key| {
                        let first = key.as_str().split("__").next().unwrap_or_default();
                        ENV_SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
                    })
                    .split("__"),
            );
        }
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
        Ok(figment)
    }

    fn validate(&self, figment: &Figment) -> Result<()> {
        let check = |key: &str, url: &str, schemes: &[&str]| -> Result<()> {
            let origin = origin_of(figment, key);
            let parsed = url::Url::parse(url).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("{key}: malformed URL `{}`: {e}{origin}", redact_url(url)),
                )
            })?;
            if !schemes.contains(&parsed.scheme()) {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{key}: unsupported scheme `{}` (expected {}){origin}",
                        parsed.scheme(),
                        schemes.join(", ")
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
                    origin_of(figment, "sagas.lease")
                ),
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
                    origin_of(figment, "kv.subscription_capacity")
                ),
            ));
        }
        if self.relational.min_connections > self.relational.max_connections {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "relational.min_connections ({}) exceeds relational.max_connections ({}){}",
                    self.relational.min_connections,
                    self.relational.max_connections,
                    origin_of(figment, "relational.min_connections")
                ),
            ));
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

/// " (from SOURCE)" for a key, naming the file or variable that set it.
fn origin_of(figment: &Figment, key: &str) -> String {
    let path: Vec<&str> = key.split('.').collect();
    match figment.find_metadata(key) {
        Some(meta) => format!(" (from {})", describe_source(meta, &path)),
        None => String::new(),
    }
}

/// The file, environment variable or other source that set `path`.
fn describe_source(meta: &figment::Metadata, path: &[&str]) -> String {
    match &meta.source {
        Some(figment::Source::File(file)) => file.display().to_string(),
        _ if meta.name.contains("environment") => {
            format!(
                "environment variable STRATA_{}",
                path.join("__").to_uppercase()
            )
        }
        _ => meta.name.to_string(),
    }
}

fn config_error(error: figment::Error) -> Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let mut path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
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
                line.push_str(&format!(" (from {})", describe_source(meta, &path)));
            }
            line
        })
        .collect();
    Error::new(ErrorKind::Config, lines.join("; "))
}

/// `url` with any password replaced by `<redacted>`. A string that does not
/// parse as a URL is returned as it is only when it has no `@`, else whole
/// redacted, so that nothing secret can leak through a malformed URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(REDACTED));
            }
            // The URL encoder escapes the placeholder's angle brackets.
            parsed.to_string().replacen("%3Credacted%3E", REDACTED, 1)
        }
        Err(_) if url.contains('@') => REDACTED.to_owned(),
        Err(_) => url.to_owned(),
    }
}

/// `url` with its password set to `password` (when given).
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
    Ok(parsed.to_string())
}

fn redact_value(value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table.iter_mut() {
                match (key.as_str(), &mut *v) {
                    ("url", toml::Value::String(s)) => *s = redact_url(s),
                    ("password", toml::Value::String(s)) => *s = REDACTED.to_owned(),
                    _ => redact_value(v),
                }
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("postgres://strata:hunter2@127.0.0.1:5432/strata"),
            "postgres://strata:<redacted>@127.0.0.1:5432/strata"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("not a url with a :secret@"), REDACTED);
    }

    #[test]
    fn secrets_never_print() {
        let mut config = Config::default();
        config.relational.password = Some(Secret::new("hunter2"));
        config.kv = KvConfig::Redis(RedisConfig {
            url: "redis://default:topsecret@localhost:6379".into(),
            ..Default::default()
        });
        let text = config.to_redacted_toml().unwrap();
        let debug = format!("{config:?}");
        for shown in [&text, &debug] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("topsecret"), "{shown}");
        }
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn password_key_overrides_url_password() {
        let url = with_password(
            "postgres://strata:old@localhost/strata",
            Some(&Secret::new("n3w")),
        )
        .unwrap();
        assert_eq!(url, "postgres://strata:n3w@localhost/strata");
    }
}
