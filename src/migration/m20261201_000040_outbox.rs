//! `outbox`: events written in the same SQL transaction as the change they
//! describe, published afterwards by the relay (`platform::outbox`).
//!
//! The id is the event's sequence: assigned at insert, increasing in
//! commit order per writer (not a gap-free global order: a transaction that
//! took an id may commit after a later one, or roll back and leave a gap).
//! The relay scans unsent rows oldest first, so `(sent_at, id)` is indexed.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Topic,
    Aggregate,
    Payload,
    CreatedAt,
    SentAt,
    ClaimedBy,
    ClaimedUntil,
    Attempts,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Outbox::Topic).string_len(255).not_null())
                    .col(ColumnDef::new(Outbox::Aggregate).string_len(255).not_null())
                    .col(ColumnDef::new(Outbox::Payload).text().not_null())
                    .col(
                        ColumnDef::new(Outbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Outbox::SentAt).timestamp_with_time_zone())
                    .col(ColumnDef::new(Outbox::ClaimedBy).string_len(255))
                    .col(ColumnDef::new(Outbox::ClaimedUntil).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(Outbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Outbox::LastError).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_unsent")
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(Outbox::SentAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).if_exists().to_owned())
            .await
    }
}
