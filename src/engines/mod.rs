//! The four engine kinds: relational (sea-orm), document, key-value and
//! queue. Each non-relational kind is a trait shaped after its reference
//! system, with an embedded implementation and a real adapter; which one
//! runs is chosen by configuration, here, in one `match` per kind.
//!
//! This layer knows nothing of ML: it stores rows, documents, values and
//! messages.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::config::{Config, DocumentsConfig, KvConfig, QueueConfig};
use crate::error::{Error, Result};

pub mod document;
pub mod kv;
pub mod layers;
pub mod queue;
pub mod relational;
pub mod tls;

/// How much of an engine's connection pool is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open (idle or in use).
    pub open: u64,
    /// Of those, idle.
    pub idle: u64,
    /// The most the pool opens.
    pub max: u64,
}

pub use document::DocumentStore;
pub use kv::{KvStore, KvStoreExt};
pub use queue::Broker;

/// Every engine, opened from configuration. Cheap to clone.
///
/// Opening connects and nothing more: no schema is created or migrated
/// here (the platform's composition root applies it), so commands that
/// only read, such as `strata doctor`, write nothing.
#[derive(Debug, Clone)]
pub struct Engines {
    /// The relational database.
    pub relational: DatabaseConnection,
    /// The document store.
    pub documents: Arc<dyn DocumentStore>,
    /// The key-value store.
    pub kv: Arc<dyn KvStore>,
    /// The message broker.
    pub queue: Arc<dyn Broker>,
}

impl Engines {
    /// Connects to every configured engine.
    pub async fn open(config: &Config) -> Result<Engines> {
        Ok(Engines {
            relational: open_relational(config).await?,
            documents: open_documents(config).await?,
            kv: open_kv(config).await?,
            queue: open_queue(config).await?,
        })
    }
}

/// Connects to the relational engine (for SQLite, creating the file when
/// missing, as SQLite does).
pub async fn open_relational(config: &Config) -> Result<DatabaseConnection> {
    relational::connect(&config.relational, &config.data_dir).await
}

/// Opens the configured document store.
pub async fn open_documents(config: &Config) -> Result<Arc<dyn DocumentStore>> {
    match &config.documents {
        DocumentsConfig::Embedded(e) => {
            let dir = config.documents_dir();
            let options = document::embedded::EmbeddedDocumentOptions { fsync: e.fsync };
            // Opening replays the log from disk: blocking work, off the
            // async worker threads.
            let store = tokio::task::spawn_blocking(move || {
                document::embedded::EmbeddedDocumentStore::open(&dir, options)
            })
            .await
            .map_err(|e| Error::internal(format!("opening the document store panicked: {e}")))??;
            Ok(Arc::new(store))
        }
        DocumentsConfig::Mongodb(m) => Ok(Arc::new(
            document::mongodb::MongoDocumentStore::connect(m).await?,
        )),
    }
}

/// Opens the configured key-value store.
pub async fn open_kv(config: &Config) -> Result<Arc<dyn KvStore>> {
    match &config.kv {
        KvConfig::Embedded(e) => Ok(Arc::new(kv::embedded::EmbeddedKv::new(
            kv::embedded::EmbeddedKvOptions {
                max_memory: e.max_memory.as_u64(),
                subscription_capacity: e.subscription_capacity,
            },
        ))),
        KvConfig::Redis(redis) => Ok(Arc::new(kv::redis::RedisKv::connect(redis).await?)),
    }
}

/// Opens the configured broker.
pub async fn open_queue(config: &Config) -> Result<Arc<dyn Broker>> {
    match &config.queue {
        QueueConfig::Embedded(_) => Ok(Arc::new(queue::embedded::EmbeddedBroker::new())),
        QueueConfig::Rabbitmq(rabbit) => Ok(Arc::new(
            queue::rabbitmq::RabbitBroker::connect(rabbit).await?,
        )),
    }
}
