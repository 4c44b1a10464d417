//! Indexes that serve every order run search offers, so a page is read off
//! an index in order instead of sorting every match (see
//! [`crate::platform::search`] for the orders).
//!
//! Search sorts by one or more run fields, then by the run id in the last
//! key's direction, with a missing value as the smallest (first ascending,
//! last descending). An index serves such an order, and its reverse, when
//! it holds the same columns in the same order, with the same collation and
//! the same place for NULLs. The backends differ in what that takes:
//!
//! - SQLite: an index on `(column)` already ends with the rowid, which is
//!   `training_runs.id`, and NULLs are always the smallest, as search
//!   wants; so one column is enough, and `(column, id)` would only store
//!   the id twice.
//! - PostgreSQL: the id must be named, and a nullable column needs `NULLS
//!   FIRST` (its default puts NULLs last ascending, the opposite of
//!   search). The registry migration's indexes on `status`, `model_name`,
//!   `framework` (no id) and `accuracy` (NULLs last) are rebuilt to match.
//!
//! Text columns are indexed with their own collation (`"C"` on PostgreSQL,
//! see the registry migration), which is the one `ORDER BY` uses.
//! `model_id` needs no new index: it is unique, so search orders by it
//! alone and its unique index serves. Ordering by `dataset` (a column of
//! `datasets`) is served on SQLite by the dataset name's unique index and
//! `idx_training_runs_dataset`, joined in order; PostgreSQL does not carry
//! the order through such a join and sorts (see `docs/engines.md`).

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// `(index, column, nullable)`: one index per orderable column of
/// `training_runs`.
const ORDER_INDEXES: [(&str, &str, bool); 8] = [
    ("idx_training_runs_status", "status", false),
    ("idx_training_runs_model_name", "model_name", false),
    ("idx_training_runs_framework", "framework", false),
    ("idx_training_runs_accuracy", "accuracy", true),
    ("idx_training_runs_loss", "loss", true),
    (
        "idx_training_runs_training_time",
        "training_time_seconds",
        true,
    ),
    ("idx_training_runs_started_at", "started_at", false),
    ("idx_training_runs_completed_at", "completed_at", true),
];

/// The indexes the registry migration made, as it made them.
const REGISTRY_INDEXES: [(&str, &str); 4] = [
    ("idx_training_runs_status", "\"status\""),
    ("idx_training_runs_model_name", "\"model_name\""),
    ("idx_training_runs_framework", "\"framework\""),
    ("idx_training_runs_accuracy", "\"accuracy\", \"id\""),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, column, nullable) in ORDER_INDEXES {
            let sql = match manager.get_database_backend() {
                DbBackend::Postgres => {
                    let nulls = if nullable { " NULLS FIRST" } else { "" };
                    db.execute_unprepared(&format!("DROP INDEX IF EXISTS \"{name}\""))
                        .await?;
                    format!(
                        "CREATE INDEX \"{name}\" ON \"training_runs\" (\"{column}\"{nulls}, \"id\")"
                    )
                }
                // The registry's indexes already serve on SQLite (see the
                // module docs): only the missing ones are made.
                _ => format!(
                    "CREATE INDEX IF NOT EXISTS \"{name}\" ON \"training_runs\" (\"{column}\")"
                ),
            };
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _, _) in ORDER_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS \"{name}\""))
                .await?;
        }
        for (name, columns) in REGISTRY_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS \"{name}\" ON \"training_runs\" ({columns})"
            ))
            .await?;
        }
        Ok(())
    }
}
