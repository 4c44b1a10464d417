//! The relational schema of strata, as sea-orm migrations that run on
//! SQLite and PostgreSQL alike. The platform's composition root applies
//! them at start, idempotently: applied migrations are recorded in
//! `seaql_migrations` and skipped. Connecting alone applies nothing.
//!
//! The query planners choose an index over a sort only when their
//! statistics say the table is big enough to be worth it, so statistics are
//! refreshed here too ([`refresh_statistics`]): after migrating, and by
//! whatever bulk-loads rows (seeding).

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use sea_orm_migration::prelude::*;

use crate::engines::relational::map_db_err;
use crate::error::Result;

mod m20261122_000001_init;
mod m20261122_000002_registry;
mod m20261201_000003_run_order_indexes;
mod m20261201_000010_sagas;
mod m20261201_000020_fences;
mod m20261201_000030_customers;
mod m20261201_000040_outbox;
mod m20261215_000050_api_tokens;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261122_000002_registry::Migration),
            Box::new(m20261201_000003_run_order_indexes::Migration),
            Box::new(m20261201_000010_sagas::Migration),
            Box::new(m20261201_000020_fences::Migration),
            Box::new(m20261201_000030_customers::Migration),
            Box::new(m20261201_000040_outbox::Migration),
            Box::new(m20261215_000050_api_tokens::Migration),
        ]
    }
}

/// The name of every migration this strata has, oldest first (the names
/// `seaql_migrations` records).
pub fn known() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

/// Key of the PostgreSQL advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x5354_5241_5441; // "STRATA"

/// Applies every pending migration, all in one transaction.
///
/// Several strata processes (or pools) may start at once against a fresh
/// database, so the transaction first takes the database's write lock: a
/// transaction-scoped advisory lock on PostgreSQL, an `IMMEDIATE`
/// transaction on SQLite (the others wait within the busy timeout). The
/// processes that waited then find nothing left to apply.
///
/// Then the planner statistics are refreshed ([`refresh_statistics`]): on
/// SQLite at every call, which is how SQLite recommends running `PRAGMA
/// optimize` (it costs next to nothing when no table changed much); on
/// PostgreSQL only when a migration was applied, since its autovacuum
/// keeps statistics current as tables change, and an `ANALYZE` of a big
/// database at every start would cost hundreds of milliseconds.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    let fail = |e| map_db_err(e).with_operation("migrate");
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    let txn = db.begin_with_options(options).await.map_err(fail)?;
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            .await
            .map_err(fail)?;
    }
    let pending = Migrator::get_pending_migrations(&txn)
        .await
        .map_err(fail)?
        .len();
    Migrator::up(&txn, None).await.map_err(fail)?;
    txn.commit().await.map_err(fail)?;
    if pending > 0 || db.get_database_backend() == DbBackend::Sqlite {
        refresh_statistics(db).await?;
    }
    Ok(())
}

/// Refreshes the query planner's statistics of strata's tables, so that it
/// knows their sizes and how selective their indexes are. Call it after a
/// schema change or a bulk load.
///
/// - SQLite: `PRAGMA optimize=0x10012`, which runs `ANALYZE` on each table
///   that has an index without statistics or that grew or shrank tenfold
///   since its last analysis (`0x02`), looking at every table, not just
///   those this connection has queried (`0x10000`: the pool's connection
///   may have queried none), with a temporary `analysis_limit` (`0x10`)
///   so that each index is sampled rather than read whole, which keeps it
///   to milliseconds on a big database.
/// - PostgreSQL: `ANALYZE` of the tables of the current schema that the
///   connecting role owns (a plain `ANALYZE` would also visit the shared
///   catalogs, and warn that it may not). PostgreSQL samples a bounded
///   number of rows per table (300 × `default_statistics_target`).
pub async fn refresh_statistics(db: &DatabaseConnection) -> Result<()> {
    let fail = |e| map_db_err(e).with_operation("refresh_statistics");
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let owned = db
                .query_all_raw(Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT tablename FROM pg_tables \
                     WHERE schemaname = current_schema() AND tableowner = current_user \
                     ORDER BY tablename",
                ))
                .await
                .map_err(fail)?;
            let mut tables = Vec::with_capacity(owned.len());
            for row in owned {
                let name: String = row.try_get("", "tablename").map_err(fail)?;
                tables.push(format!("\"{}\"", name.replace('"', "\"\"")));
            }
            if !tables.is_empty() {
                db.execute_unprepared(&format!("ANALYZE {}", tables.join(", ")))
                    .await
                    .map_err(fail)?;
            }
        }
        _ => {
            db.execute_unprepared("PRAGMA optimize=0x10012")
                .await
                .map_err(fail)?;
        }
    }
    Ok(())
}

/// Names of the applied migrations, oldest first. Reads only: on a
/// database strata never migrated, the answer is empty and nothing is
/// created.
pub async fn applied(db: &DatabaseConnection) -> Result<Vec<String>> {
    let models = Migrator::get_applied_migrations_read_only(db)
        .await
        .map_err(|e| map_db_err(e).with_operation("migrate"))?;
    Ok(models.iter().map(|m| m.name().to_owned()).collect())
}
