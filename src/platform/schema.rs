//! The schema strata's data lives in, on every engine: the relational
//! migrations, and the document collections with their validators and
//! indexes. Applied once per process by the composition root
//! ([`crate::platform::Platform::open`]), never by opening an engine, so
//! that read-only commands (`strata doctor`, `strata sql`) write nothing.

use crate::engines::Engines;
use crate::error::Result;
use crate::platform::{configs, hybrid};

/// Brings every engine's schema to the state the code expects:
/// pending relational migrations (all in one transaction, once across
/// processes starting together), then `model_configs` with its validator
/// and indexes, `experiments`, and the migration's collections.
/// Idempotent.
pub async fn apply(engines: &Engines) -> Result<()> {
    crate::migration::migrate(&engines.relational).await?;
    let docs = engines.documents.as_ref();
    configs::ensure_collections(docs).await?;
    hybrid::migrate::ensure_collections(docs).await
}
