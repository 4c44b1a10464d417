//! The closing table: which data lives in which engine, and why.

use super::Out;
use crate::cli::output;
use crate::error::Result;

pub(super) fn section(out: &mut Out<'_>) -> Result<()> {
    out.line("")?;
    out.line("Where the data lives")?;
    out.line("====================")?;
    let mut table = output::table(&["data", "engine", "why"]);
    for (data, engine, why) in [
        (
            "datasets, training runs, artifacts, deployments, aliases and their history",
            "relational",
            "relations with constraints (foreign keys, unique model_id, status check), \
             JOINs, GROUP BY, window functions, transactions, keyset pages",
        ),
        (
            "model configs, experiments",
            "documents",
            "each framework's config has its own shape; new metrics arrive with $set, \
             no migration; aggregation pipelines",
        ),
        (
            "migrated runs, migration checkpoints, dual-write failures",
            "documents",
            "run metadata gains free-form fields next to the configs; upserts by source id",
        ),
        (
            "registration counters, per-model counters",
            "kv",
            "atomic increments in memory, read on every model view; counts, not records",
        ),
        (
            "online features, cached predictions and rows (L2), leaderboard, rate-limit state, locks",
            "kv",
            "sub-millisecond reads by key, one round trip for a batch, atomic scripts \
             (newer-only writes, best score, GCRA, lock with fencing token); rebuilt or \
             refilled when lost",
        ),
        (
            "feature views",
            "documents",
            "declarations read through the cache, changed rarely, invalidated everywhere",
        ),
        (
            "fencing tokens seen per resource",
            "relational",
            "checked in the same transaction as the write they guard",
        ),
    ] {
        table.add_row(vec![data, engine, why]);
    }
    out.table(table)
}
