//! A fresh document database per test case: an embedded store in a temp
//! dir, or (with `STRATA_TEST_FULL=1`) a database of its own on the full
//! profile's MongoDB, dropped when the case ends, also when it fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use strata::config::DocumentsConfig;
use strata::engines::document::DocumentStore;
use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};
use strata::engines::document::mongodb::MongoDocumentStore;

/// A fresh database of one backend, dropped by [`run_case`].
pub struct Backend {
    store: Arc<dyn DocumentStore>,
    /// Keeps the embedded store's directory alive until the case ends.
    _dir: Option<tempfile::TempDir>,
}

/// An embedded store in a fresh temp dir.
pub async fn embedded() -> Option<Backend> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default())
        .expect("open embedded store");
    Some(Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    })
}

/// A fresh database `t_<unique>` on the full profile's MongoDB, or `None`
/// (said once for `suite`) when the real services are not enabled.
pub async fn mongodb(suite: &str) -> Option<Backend> {
    let config = super::full_profile(suite)?;
    let DocumentsConfig::Mongodb(mongo) = &config.documents else {
        panic!("config/full.toml: documents.kind must be \"mongodb\"");
    };
    let store = MongoDocumentStore::connect(mongo)
        .await
        .unwrap_or_else(|e| panic!("connect to MongoDB (is scripts/services.sh up?): {e}"));
    Some(Backend {
        store: Arc::new(store.with_database(&super::unique_name("t"))),
        _dir: None,
    })
}

/// Runs one case on a fresh database and drops the database afterwards,
/// whether the case passed or panicked.
pub async fn run_case<C, F>(setup: impl Future<Output = Option<Backend>>, case: C)
where
    C: FnOnce(Arc<dyn DocumentStore>) -> F,
    F: Future<Output = ()>,
{
    let Some(backend) = setup.await else { return };
    let outcome = AssertUnwindSafe(case(Arc::clone(&backend.store)))
        .catch_unwind()
        .await;
    let dropped = backend.store.drop_database().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.expect("drop the test database");
}
