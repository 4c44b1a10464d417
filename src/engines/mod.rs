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
pub mod queue;
pub mod relational;

pub use document::DocumentStore;
pub use kv::KvStore;
pub use queue::Broker;

/// Every engine, opened from configuration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Engines {
    /// The relational database, migrated.
    pub relational: DatabaseConnection,
    /// The document store.
    pub documents: Arc<dyn DocumentStore>,
    /// The key-value store.
    pub kv: Arc<dyn KvStore>,
    /// The message broker.
    pub queue: Arc<dyn Broker>,
}

impl Engines {
    /// Opens every configured engine and applies pending migrations.
    pub async fn open(config: &Config) -> Result<Engines> {
        Ok(Engines {
            relational: open_relational(config).await?,
            documents: open_documents(config).await?,
            kv: open_kv(config).await?,
            queue: open_queue(config).await?,
        })
    }
}

/// Connects to the relational engine and applies pending migrations.
pub async fn open_relational(config: &Config) -> Result<DatabaseConnection> {
    let db = relational::connect(&config.relational, &config.data_dir).await?;
    crate::migration::migrate(&db).await?;
    Ok(db)
}

fn not_built(what: &str) -> Error {
    Error::unsupported(format!("{what}: this adapter is not part of strata yet"))
}

/// Opens the configured document store.
pub async fn open_documents(config: &Config) -> Result<Arc<dyn DocumentStore>> {
    match &config.documents {
        DocumentsConfig::Embedded(_) => Err(not_built("documents.kind = \"embedded\"")),
        DocumentsConfig::Mongodb(m) => Ok(Arc::new(
            document::mongodb::MongoDocumentStore::connect(m).await?,
        )),
    }
}

/// Opens the configured key-value store.
pub async fn open_kv(config: &Config) -> Result<Arc<dyn KvStore>> {
    match &config.kv {
        KvConfig::Embedded(_) => Err(not_built("kv.kind = \"embedded\"")),
        KvConfig::Redis(_) => Err(not_built("kv.kind = \"redis\"")),
    }
}

/// Opens the configured broker.
pub async fn open_queue(config: &Config) -> Result<Arc<dyn Broker>> {
    match &config.queue {
        QueueConfig::Embedded(_) => Err(not_built("queue.kind = \"embedded\"")),
        QueueConfig::Rabbitmq(_) => Err(not_built("queue.kind = \"rabbitmq\"")),
    }
}
