//! Engines for cases that span engines: the embedded profile (SQLite,
//! embedded documents and KV in a temp dir) or the full profile (a fresh
//! PostgreSQL database, a MongoDB database and a Redis key prefix named after
//! it), each removed when the case ends, also when it fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use strata::config::{Config, DocumentsConfig, KvConfig, RelationalConfig};
use strata::engines::document::mongodb::MongoDocumentStore;
use strata::engines::kv::redis::RedisKv;
use strata::engines::queue::embedded::EmbeddedBroker;
use strata::engines::{self, Engines, KvStoreExt};

use super::TestDb;

/// One case's engines and what to remove afterwards.
pub struct Env {
    /// The engines.
    pub engines: Engines,
    _dir: tempfile::TempDir,
    postgres: Option<TestDb>,
}

pub async fn setup_embedded() -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        relational: RelationalConfig {
            max_connections: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let engines = Engines::open(&config).await.unwrap();
    strata::platform::schema::apply(&engines).await.unwrap();
    Some(Env {
        engines,
        _dir: dir,
        postgres: None,
    })
}

pub async fn setup_full(suite: &str) -> Option<Env> {
    // The relational database is the shared fixture's (dropped even when the
    // case fails); MongoDB's database and Redis's key prefix take its name.
    let db = TestDb::postgres(suite).await?;
    let config = db.config.clone();
    let url = config.relational.url.clone().expect("full profile URL");
    let name = url
        .rsplit('/')
        .next()
        .expect("URL names a database")
        .to_owned();
    let relational = engines::open_relational(&config).await.unwrap();
    let DocumentsConfig::Mongodb(mongo) = &config.documents else {
        panic!("config/full.toml: documents.kind must be \"mongodb\"");
    };
    let documents = MongoDocumentStore::connect(mongo)
        .await
        .unwrap_or_else(|e| panic!("connect to MongoDB: {e}"))
        .with_database(&name);
    let KvConfig::Redis(mut redis) = config.kv.clone() else {
        panic!("config/full.toml: kv.kind must be \"redis\"");
    };
    redis.key_prefix = format!("{name}:");
    let kv = RedisKv::connect(&redis)
        .await
        .unwrap_or_else(|e| panic!("connect to Redis: {e}"));
    let engines = Engines {
        relational,
        documents: Arc::new(documents),
        kv: Arc::new(kv),
        queue: Arc::new(EmbeddedBroker::new()),
    };
    strata::platform::schema::apply(&engines).await.unwrap();
    Some(Env {
        engines,
        _dir: tempfile::tempdir().unwrap(),
        postgres: Some(db),
    })
}

/// [`setup_full`] with RabbitMQ as the queue engine.
pub async fn setup_full_rabbit(suite: &str) -> Option<Env> {
    let mut env = setup_full(suite).await?;
    let config = env.postgres.as_ref().expect("full profile").config.clone();
    env.engines.queue = engines::open_queue(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to RabbitMQ: {e}"));
    Some(env)
}

/// Runs one case, then removes everything it wrote, whether it passed or
/// panicked.
pub async fn run_case<C, F>(setup: impl Future<Output = Option<Env>>, case: C)
where
    C: FnOnce(Engines) -> F,
    F: Future<Output = ()>,
{
    let Some(env) = setup.await else { return };
    let outcome = AssertUnwindSafe(case(env.engines.clone()))
        .catch_unwind()
        .await;
    let docs = env.engines.documents.drop_database().await;
    // Under the full profile the key prefix is the test's own.
    let kv = env.engines.kv.delete_pattern("*").await;
    let _ = env.engines.relational.clone().close().await;
    if let Some(db) = env.postgres {
        db.cleanup().await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    docs.expect("drop the test documents");
    kv.expect("delete the test keys");
}
