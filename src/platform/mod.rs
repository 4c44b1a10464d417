//! Registry and tracking: datasets, training runs, artifacts, deployments
//! and model aliases in the relational engine, and the run search language.
//!
//! Everything here runs unchanged on SQLite and PostgreSQL and MUST give the
//! same answers on both; the tests run every case on each. What makes that
//! hold:
//!
//! - Timestamps are UTC and truncated to microseconds when written
//!   ([`now`]), PostgreSQL's precision, so a value reads back the same from
//!   either backend.
//! - Text compares byte-wise on both (see the registry migration), and every
//!   `ORDER BY` ends with a unique key, so orders are total.
//! - Aggregates are cast to the Rust type they decode into (PostgreSQL's
//!   `SUM(bigint)` is `numeric`, SQLite's is an integer).
//!
//! # The composition root
//!
//! [`Platform::open`] connects to every configured engine, applies the
//! schema ([`schema`]), finishes or compensates the open sagas whose lease
//! has run out, and hands out typed services: [`Platform::registry`],
//! [`Platform::configs`], [`Platform::customers`], [`Platform::models`], [`Platform::sagas`],
//! [`Platform::migration`], [`Platform::seeder`] and
//! [`Platform::health`]. It alone holds the engines; the API and the
//! command line talk to the services.
//!
//! # Layout
//!
//! - [`entities`]: the sea-orm entities of the relational tables.
//! - [`names`]: what model ids, names and text may hold, as checks and as
//!   the patterns the API publishes.
//! - [`schema`]: the schema on every engine, applied at open.
//! - [`registry`]: writes (create, complete, bulk upsert, alias moves) and
//!   queries (rankings, statistics, lineage, keyset pages); the
//!   [`Registry`] service.
//! - [`customers`]: users, addresses in reference cities, orders, and the
//!   set queries the analytics read; the [`Customers`] service.
//! - [`configs`]: model configs and experiments in the document engine;
//!   the [`ModelConfigs`] service.
//! - [`sagas`]: operations that write across engines (registering and
//!   removing a model) as durable sagas; the [`Sagas`] service.
//! - [`hybrid`]: reads across engines ([`Models`]: model info, degraded
//!   rather than failed) and the runs-to-docs migration ([`Migration`]).
//! - [`search`]: the run filter language, parsed into an AST and compiled to
//!   sea-orm conditions, with `order_by` and page tokens.
//! - [`seed`]: the seed scenario's sample data and seeded synthetic runs
//!   ([`Seeder`]).
//! - [`health`]: each engine's ping ([`Health`]).
//! - [`outbox`]: events written with the changes they describe, and the
//!   [`Relay`] that publishes them ([`Outbox`]).
//! - [`read_model`]: one document per model, kept from those events
//!   ([`ReadModel`]).
//! - [`tokens`]: the HTTP API's bearer tokens, stored hashed
//!   ([`Tokens`]).
//! - [`routes`]: which engine holds each kind of data, and why (the
//!   table `strata demo` closes with and `strata explain` prints).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};

use crate::cache::{Backplane, CacheSettings, Caches};
use crate::config::{Config, OutboxConfig, SagasConfig};
use crate::engines::Engines;
use crate::engines::layers::Layers;
use crate::error::Result;

pub mod configs;
pub mod customers;
pub mod entities;
pub mod health;
pub mod hybrid;
pub mod names;
pub mod outbox;
pub mod read_model;
pub mod records;
pub mod registry;
pub mod routes;
pub mod rows;
pub mod sagas;
pub mod schema;
pub mod search;
pub mod seed;
pub mod tokens;

pub use configs::ModelConfigs;
pub use customers::Customers;
pub use health::Health;
pub use hybrid::Models;
pub use hybrid::migrate::Migration;
pub use outbox::{Outbox, OutboxEvent, Relay, RelayPass};
pub use read_model::ReadModel;
pub use registry::Registry;
pub use rows::RowCaches;
pub use sagas::Sagas;
pub use seed::Seeder;
pub use tokens::Tokens;

/// How long opening the platform waits for the cache backplane's
/// subscription before going on without it (it keeps trying).
const BACKPLANE_WAIT: Duration = Duration::from_secs(2);

/// The current time in UTC, truncated to microseconds (PostgreSQL's
/// precision) so that what is written reads back identically on both
/// backends.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The platform over the configured engines: every service, one schema.
/// Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engines: Engines,
    registry: Registry,
    configs: ModelConfigs,
    customers: Customers,
    models: Models,
    sagas: Sagas,
    migration: Migration,
    seeder: Seeder,
    health: Health,
    caches: Caches,
    rows: RowCaches,
    outbox: Outbox,
    read_model: ReadModel,
    tokens: Tokens,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Platform {
    /// Connects to every configured engine, applies the schema, and
    /// finishes or compensates the open sagas whose lease has run out (see
    /// [`Platform::with_engines`]).
    pub async fn open(config: &Config) -> Result<Platform> {
        let engines = Engines::open(config).await?;
        Platform::assemble(engines, config).await
    }

    async fn assemble(engines: Engines, config: &Config) -> Result<Platform> {
        let (engines, layers) = crate::engines::layers::wrap(engines, &config.layers);
        let platform = Platform::build(
            engines,
            config.sagas,
            config.outbox,
            config.cache,
            Arc::clone(&layers.relational),
        )
        .await?;
        platform.inner.health.set_layers(layers);
        Ok(platform)
    }

    /// [`Platform::open`] for commands that never touch the queue engine
    /// (the migration): an in-process broker stands in for it, so they
    /// run without a message broker reachable.
    pub async fn open_without_queue(config: &Config) -> Result<Platform> {
        let engines = Engines {
            relational: crate::engines::open_relational(config).await?,
            documents: crate::engines::open_documents(config).await?,
            kv: crate::engines::open_kv(config).await?,
            queue: Arc::new(crate::engines::queue::embedded::EmbeddedBroker::new()),
        };
        Platform::assemble(engines, config).await
    }

    /// The platform over engines already open, as they are (no layers:
    /// tests give it engines that fail on purpose): applies the schema,
    /// then recovers open sagas whose lease ran out. (Sagas of a process killed
    /// a moment ago are recovered once their lease runs out, by
    /// [`Platform::start_background`] or the next start.)
    pub async fn with_engines(engines: Engines, sagas: SagasConfig) -> Result<Platform> {
        // No breaker either: the relational engine's calls go straight through.
        let off = crate::config::LayersConfig {
            breaker: crate::config::BreakerConfig {
                failures: 0,
                ..Default::default()
            },
            ..Default::default()
        };
        let cache = CacheSettings::default();
        Platform::build(
            engines,
            sagas,
            OutboxConfig::default(),
            cache,
            Layers::new("relational", &off),
        )
        .await
    }

    async fn build(
        engines: Engines,
        sagas: SagasConfig,
        outbox: OutboxConfig,
        cache: CacheSettings,
        relational: Arc<Layers>,
    ) -> Result<Platform> {
        schema::apply(&engines).await?;
        let db = engines.relational.clone();
        // Invalidations reach every instance sharing the key-value engine.
        let backplane = Backplane::start(
            engines.kv.clone(),
            crate::cache::CHANNEL,
            crate::retry::RetryPolicy::default(),
        );
        if !backplane.connected(BACKPLANE_WAIT).await {
            tracing::warn!(
                "the cache backplane is not subscribed yet (the key-value engine does not answer); \
                 caches serve from this instance and the loaders until it is"
            );
        }
        let caches = Caches::new(Some(engines.kv.clone()), backplane, cache);
        let rows = RowCaches::new(&caches, cache)?;
        let outbox = Outbox::new(db.clone(), outbox);
        let sagas = Sagas::new(
            db.clone(),
            Arc::clone(&relational),
            engines.documents.clone(),
            engines.kv.clone(),
            sagas,
            rows.clone(),
            outbox.clone(),
        );
        let registry = Registry::new(
            db.clone(),
            Arc::clone(&relational),
            rows.clone(),
            outbox.clone(),
        );
        let configs = ModelConfigs::new(engines.documents.clone(), rows.clone());
        let read_model = ReadModel::new(db.clone(), engines.documents.clone());
        let platform = Platform {
            inner: Arc::new(Inner {
                read_model,
                models: Models::new(registry.clone(), configs.clone(), engines.kv.clone()),
                registry,
                configs,
                customers: Customers::new(db.clone()),
                tokens: Tokens::new(db.clone()),
                migration: Migration::new(engines.clone()),
                seeder: Seeder::new(engines.clone(), rows.clone()),
                health: Health::new(engines.clone()),
                sagas,
                engines,
                caches,
                rows,
                outbox,
                sweeper: Mutex::new(None),
            }),
        };
        let recovered = platform.inner.sagas.recover().await?;
        if !recovered.is_empty() {
            tracing::info!(
                count = recovered.len(),
                "finished sagas left open by an earlier process"
            );
        }
        Ok(platform)
    }

    /// Datasets, runs, aliases and their analytics.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Model configs and experiments.
    pub fn configs(&self) -> &ModelConfigs {
        &self.inner.configs
    }

    /// Customers, their addresses and orders.
    pub fn customers(&self) -> &Customers {
        &self.inner.customers
    }

    /// A model across engines.
    pub fn models(&self) -> &Models {
        &self.inner.models
    }

    /// Operations that write across engines.
    pub fn sagas(&self) -> &Sagas {
        &self.inner.sagas
    }

    /// The relational migrations applied, oldest first (opening the
    /// platform applied every pending one).
    pub async fn applied_migrations(&self) -> Result<Vec<String>> {
        crate::migration::applied(&self.inner.engines.relational).await
    }

    /// The runs-to-documents migration.
    pub fn migration(&self) -> &Migration {
        &self.inner.migration
    }

    /// The sample data.
    pub fn seeder(&self) -> &Seeder {
        &self.inner.seeder
    }

    /// Each engine's health.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The process's caches: their counters, the backplane, and new caches
    /// for the services above the platform.
    pub fn caches(&self) -> &Caches {
        &self.inner.caches
    }

    /// The caches of runs and configs by id; a service that changes them
    /// from outside the platform says so here.
    pub fn rows(&self) -> &RowCaches {
        &self.inner.rows
    }

    /// The transactional outbox: its relays and its backlog.
    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// The models' read model, fed by the outbox's events.
    pub fn read_model(&self) -> &ReadModel {
        &self.inner.read_model
    }

    /// The HTTP API's bearer tokens.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// The queue engine (with its layers), for the services above the
    /// platform (pipelines, the outbox's relay); they name no backend.
    pub fn broker(&self) -> Arc<dyn crate::engines::Broker> {
        self.inner.engines.queue.clone()
    }

    /// The key-value engine (with its layers), for the services above the
    /// platform (serving); they name no backend.
    pub fn kv(&self) -> Arc<dyn crate::engines::KvStore> {
        self.inner.engines.kv.clone()
    }

    /// The document engine (with its layers), for the services above the
    /// platform.
    pub fn documents(&self) -> Arc<dyn crate::engines::DocumentStore> {
        self.inner.engines.documents.clone()
    }

    /// The kind of each engine, for people: `(relational, documents, kv,
    /// queue)`, e.g. `("sqlite", "embedded", "embedded", "embedded")`.
    pub fn engine_kinds(&self) -> [&'static str; 4] {
        let e = &self.inner.engines;
        [
            crate::engines::relational::backend_name(&e.relational),
            e.documents.kind(),
            e.kv.kind(),
            e.queue.kind(),
        ]
    }

    /// Starts the work a long-running process does in the background:
    /// the saga sweeper. Idempotent.
    pub fn start_background(&self) {
        let mut sweeper = self
            .inner
            .sweeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sweeper.is_none() {
            *sweeper = Some(self.inner.sagas.spawn_sweeper());
        }
    }

    /// Stops the background work, lets the sagas this process drives end
    /// (at most `grace`; the others are recovered by the next process) and
    /// closes the relational pool.
    pub async fn close(&self, grace: Duration) -> Result<()> {
        let sweeper = self
            .inner
            .sweeper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        if !self.inner.sagas.drain(grace).await {
            tracing::warn!("sagas still running at exit are finished by the next strata process");
        }
        self.inner
            .engines
            .relational
            .clone()
            .close()
            .await
            .map_err(|e| crate::engines::relational::map_db_err(e).with_operation("close"))
    }
}
