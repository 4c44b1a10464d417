//! The relational schema of strata, as sea-orm migrations that run on
//! SQLite and PostgreSQL alike. They are applied at start, idempotently:
//! applied migrations are recorded in `seaql_migrations` and skipped.

use sea_orm::DatabaseConnection;
use sea_orm_migration::prelude::*;

use crate::engines::relational::map_db_err;
use crate::error::Result;

mod m20261122_000001_init;
mod m20261122_000002_registry;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_init::Migration),
            Box::new(m20261122_000002_registry::Migration),
        ]
    }
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None)
        .await
        .map_err(|e| map_db_err(e).with_operation("migrate"))
}

/// Names of the applied migrations, oldest first.
pub async fn applied(db: &DatabaseConnection) -> Result<Vec<String>> {
    let models = Migrator::get_applied_migrations(db)
        .await
        .map_err(|e| map_db_err(e).with_operation("migrate"))?;
    Ok(models.iter().map(|m| m.name().to_owned()).collect())
}
