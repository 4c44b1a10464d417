//! `sagas`: the durable log of operations that span engines (registering a
//! model, removing one, and those to come). A saga's row is written before
//! its first step and updated as each step is done or undone, so that the
//! operation can be finished or compensated by any strata process after
//! the one that started it is gone.
//!
//! What MUST hold, on both backends:
//!
//! - `active_subject` holds the subject (a `model_id`) while the saga is
//!   open and NULL once it has ended. It is unique, so at most one open
//!   saga touches a subject at a time; NULLs do not collide on SQLite or
//!   PostgreSQL.
//! - `state` only ever holds `running`, `compensating`, `completed` or
//!   `compensated` (CHECK constraint).
//! - `owner` and `lease_until` say which process drives the saga and until
//!   when; a saga whose lease ran out may be claimed by another process.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Sagas {
    Table,
    Id,
    Kind,
    Subject,
    ActiveSubject,
    Request,
    RequestHash,
    State,
    Steps,
    Result,
    Error,
    Attempts,
    Owner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
}

fn text(backend: DbBackend, name: Sagas, len: u32) -> ColumnDef {
    let mut def = ColumnDef::new(name).string_len(len).to_owned();
    if backend == DbBackend::Postgres {
        def.extra("COLLATE \"C\"");
    }
    def
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(Sagas::Table)
                    .if_not_exists()
                    .col(text(backend, Sagas::Id, 36).not_null().primary_key())
                    .col(text(backend, Sagas::Kind, 32).not_null())
                    .col(text(backend, Sagas::Subject, 255).not_null())
                    .col(text(backend, Sagas::ActiveSubject, 255).null().unique_key())
                    .col(ColumnDef::new(Sagas::Request).text().not_null())
                    .col(text(backend, Sagas::RequestHash, 64).not_null())
                    .col(text(backend, Sagas::State, 16).not_null().check(
                        Expr::col(Sagas::State).is_in([
                            "running",
                            "compensating",
                            "completed",
                            "compensated",
                        ]),
                    ))
                    .col(ColumnDef::new(Sagas::Steps).text().not_null())
                    .col(ColumnDef::new(Sagas::Result).text().null())
                    .col(ColumnDef::new(Sagas::Error).text().null())
                    .col(
                        ColumnDef::new(Sagas::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(text(backend, Sagas::Owner, 64).null())
                    .col(
                        ColumnDef::new(Sagas::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Sagas::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Sagas::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The sweeper's question: open sagas whose lease ran out.
        manager
            .create_index(
                Index::create()
                    .name("idx_sagas_state_lease")
                    .table(Sagas::Table)
                    .col(Sagas::State)
                    .col(Sagas::LeaseUntil)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // A subject's sagas, newest first (idempotent retries, lookups).
        manager
            .create_index(
                Index::create()
                    .name("idx_sagas_subject_created")
                    .table(Sagas::Table)
                    .col(Sagas::Subject)
                    .col(Sagas::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Sagas::Table).if_exists().to_owned())
            .await
    }
}
