//! `fences`: the highest fencing token each protected resource has seen.
//!
//! A holder of a distributed lock (`serving::locks`) writes to the registry
//! with the lock's fencing token; the write is refused when a newer token
//! has already written to the same resource, so a holder that paused past
//! its lock's expiry cannot overwrite its successor's work.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Fences {
    Table,
    Resource,
    Fence,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut resource = ColumnDef::new(Fences::Resource).string_len(255).to_owned();
        if manager.get_database_backend() == DbBackend::Postgres {
            resource.extra("COLLATE \"C\"");
        }
        manager
            .create_table(
                Table::create()
                    .table(Fences::Table)
                    .if_not_exists()
                    .col(resource.not_null().primary_key())
                    .col(ColumnDef::new(Fences::Fence).big_integer().not_null())
                    .col(
                        ColumnDef::new(Fences::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Fences::Table).if_exists().to_owned())
            .await
    }
}
