//! `strata bench`: open-loop latency and throughput of every engine, tier
//! and endpoint, beside the native tools, and the analysis generated from
//! it.
//!
//! - [`harness`]: the load generator (open loop at a fixed rate with
//!   coordinated omission corrected, closed loop, the sweep and its knee).
//! - [`model`]: what a run measured, as JSON (`--json FILE`).
//! - `workloads` and `sandbox`: what is measured on each engine, in a
//!   sandbox of its own (a temporary data dir; on the real services a
//!   database, a key prefix and queue names of its own, removed at the
//!   end).
//! - [`http`]: a keep-alive HTTP/1.1 client and a `strata serve` child
//!   process, for the end-to-end workloads.
//! - [`baseline`]: `redis-benchmark` and `pgbench -S`, run interleaved with
//!   strata doing the same work.
//! - [`render`]: the terminal table, Markdown, the SVG chart, and `strata
//!   bench compare`.
//! - [`analysis`]: `docs/ANALYSIS.md` from a run's JSON (`strata bench
//!   report`), and the decision matrix of `strata explain`.
//!
//! Like `cli`, this module is a tool over the whole stack: it may import
//! every layer.

use std::sync::Arc;

pub mod analysis;
pub mod baseline;
pub mod harness;
pub mod http;
pub mod model;
pub mod render;
mod run;
pub(crate) mod sandbox;
mod workloads;

pub use run::{Options, run};

use harness::Workload;
use model::Store;

/// A workload to measure, and what it is.
#[derive(Clone)]
pub struct Subject {
    /// Stable id (`kv.read`).
    pub id: String,
    /// What it does, for people.
    pub title: String,
    /// The store it exercises.
    pub store: Store,
    /// The engine under it.
    pub engine: String,
    /// Items per request.
    pub items: u32,
    /// The requests.
    pub workload: Arc<dyn Workload>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subject")
            .field("id", &self.id)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
