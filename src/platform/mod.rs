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
//! # Layout
//!
//! - [`entities`]: the sea-orm entities of the registry tables.
//! - [`registry`]: writes (create, complete, bulk upsert, alias moves) and
//!   queries (rankings, statistics, lineage, keyset pages).
//! - [`configs`]: model configs and experiments in the document engine.
//! - [`hybrid`]: operations spanning engines: the register saga, model
//!   info, the runs-to-docs migration, dual write and reconcile.
//! - [`search`]: the run filter language, parsed into an AST and compiled to
//!   sea-orm conditions, with `order_by` and page tokens.
//! - [`seed`]: the seed scenario's sample data and seeded synthetic runs.

use chrono::{DateTime, SubsecRound, Utc};

use crate::engines::Engines;
use crate::error::Result;

pub mod configs;
pub mod entities;
pub mod hybrid;
pub mod registry;
pub mod search;
pub mod seed;

/// The current time in UTC, truncated to microseconds (PostgreSQL's
/// precision) so that what is written reads back identically on both
/// backends.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Brings the document collections the platform writes to the state its
/// code expects: `model_configs` with its validator and indexes,
/// `experiments`, and the migration's collections. The relational schema is
/// migrated when the engine opens. Idempotent; every command that writes
/// through the platform calls it once at start.
pub async fn prepare(engines: &Engines) -> Result<()> {
    let docs = engines.documents.as_ref();
    configs::ensure_collections(docs).await?;
    hybrid::migrate::ensure_collections(docs).await
}
