//! The relational schema of strata, as sea-orm migrations that run on
//! SQLite and PostgreSQL alike. The platform's composition root applies
//! them at start, idempotently: applied migrations are recorded in
//! `seaql_migrations` and skipped. Connecting alone applies nothing.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::prelude::*;

use crate::engines::relational::map_db_err;
use crate::error::Result;

mod m20261122_000001_init;
mod m20261122_000002_registry;
mod m20261201_000010_sagas;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261122_000002_registry::Migration),
            Box::new(m20261201_000010_sagas::Migration),
        ]
    }
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
    Migrator::up(&txn, None).await.map_err(fail)?;
    txn.commit().await.map_err(fail)
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
