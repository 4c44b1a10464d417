//! The model registry: datasets, training runs and their tags, model
//! artifacts, deployments, and model aliases with their audit history.
//!
//! Written with sea-query's schema builder so the same migration runs on
//! SQLite and PostgreSQL. What MUST hold, on both backends:
//!
//! - Every timestamp is UTC (`timestamp with time zone` on PostgreSQL, RFC
//!   3339 text on SQLite).
//! - `training_runs.status` and `deployments.status` only ever hold the values
//!   of their Rust enums (CHECK constraints back the Rust validation).
//! - The text columns that searches compare and sort (names, ids, framework,
//!   status, tag keys and values) compare byte-wise: SQLite's default
//!   `BINARY` collation, and `COLLATE "C"` on PostgreSQL, whose database
//!   default collation may be a locale that orders `B` before `a`. Without
//!   this, keyset pagination and `<`/`>` on strings would give different
//!   answers on the two backends.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Datasets {
    Table,
    Id,
    Name,
    Description,
    TotalRows,
    TotalFeatures,
    CreatedAt,
    CreatedBy,
}

#[derive(DeriveIden)]
enum TrainingRuns {
    Table,
    Id,
    DatasetId,
    ModelId,
    ModelName,
    Framework,
    Status,
    Accuracy,
    Loss,
    TrainingTimeSeconds,
    StartedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum RunTags {
    Table,
    RunId,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum ModelArtifacts {
    Table,
    Id,
    RunId,
    Uri,
    Format,
    SizeBytes,
    Checksum,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Deployments {
    Table,
    Id,
    ArtifactId,
    Environment,
    Status,
    TrafficWeight,
    DeployedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum ModelAliases {
    Table,
    ModelName,
    Alias,
    ArtifactId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AliasHistory {
    Table,
    Id,
    ModelName,
    Alias,
    FromArtifactId,
    ToArtifactId,
    MovedAt,
    MovedBy,
    Reason,
}

/// Column helpers that keep the backend differences in one place.
struct Columns {
    backend: DbBackend,
}

impl Columns {
    /// A `BIGINT` auto-increment primary key (`integer primary key` on
    /// SQLite, which is its 64-bit rowid).
    fn id(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name)
            .big_integer()
            .not_null()
            .auto_increment()
            .primary_key()
            .to_owned()
    }

    /// A text column compared byte-wise on both backends (see the module
    /// docs for why).
    fn text(&self, name: impl IntoIden, len: u32) -> ColumnDef {
        let mut def = ColumnDef::new(name).string_len(len).to_owned();
        if self.backend == DbBackend::Postgres {
            def.extra("COLLATE \"C\"");
        }
        def
    }

    fn timestamp(&self, name: impl IntoIden) -> ColumnDef {
        ColumnDef::new(name).timestamp_with_time_zone().to_owned()
    }
}

fn index(name: &str, table: impl IntoIden, columns: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let c = Columns {
            backend: manager.get_database_backend(),
        };

        manager
            .create_table(
                Table::create()
                    .table(Datasets::Table)
                    .if_not_exists()
                    .col(c.id(Datasets::Id))
                    .col(c.text(Datasets::Name, 255).not_null().unique_key())
                    .col(ColumnDef::new(Datasets::Description).text().null())
                    .col(ColumnDef::new(Datasets::TotalRows).big_integer().null())
                    .col(ColumnDef::new(Datasets::TotalFeatures).integer().null())
                    .col(c.timestamp(Datasets::CreatedAt).not_null())
                    .col(c.text(Datasets::CreatedBy, 100).null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TrainingRuns::Table)
                    .if_not_exists()
                    .col(c.id(TrainingRuns::Id))
                    .col(
                        ColumnDef::new(TrainingRuns::DatasetId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(c.text(TrainingRuns::ModelId, 255).not_null().unique_key())
                    .col(c.text(TrainingRuns::ModelName, 255).not_null())
                    .col(c.text(TrainingRuns::Framework, 50).not_null())
                    .col(c.text(TrainingRuns::Status, 16).not_null().check(
                        Expr::col(TrainingRuns::Status).is_in(["running", "completed", "failed"]),
                    ))
                    .col(ColumnDef::new(TrainingRuns::Accuracy).double().null())
                    .col(ColumnDef::new(TrainingRuns::Loss).double().null())
                    .col(
                        ColumnDef::new(TrainingRuns::TrainingTimeSeconds)
                            .big_integer()
                            .null(),
                    )
                    .col(c.timestamp(TrainingRuns::StartedAt).not_null())
                    .col(c.timestamp(TrainingRuns::CompletedAt).null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_training_runs_dataset")
                            .from(TrainingRuns::Table, TrainingRuns::DatasetId)
                            .to(Datasets::Table, Datasets::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("idx_training_runs_status", &["status"][..]),
            ("idx_training_runs_model_name", &["model_name"][..]),
            ("idx_training_runs_framework", &["framework"][..]),
            ("idx_training_runs_dataset", &["dataset_id"][..]),
            // Run search sorts by accuracy most often; with `id` as the
            // tie-breaker this index serves its keyset pages in order.
            ("idx_training_runs_accuracy", &["accuracy", "id"][..]),
        ] {
            manager
                .create_index(index(name, TrainingRuns::Table, columns))
                .await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RunTags::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RunTags::RunId).big_integer().not_null())
                    .col(c.text(RunTags::Key, 255).not_null())
                    .col(c.text(RunTags::Value, 1024).not_null())
                    .primary_key(Index::create().col(RunTags::RunId).col(RunTags::Key))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_run_tags_run")
                            .from(RunTags::Table, RunTags::RunId)
                            .to(TrainingRuns::Table, TrainingRuns::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_run_tags_key_value",
                RunTags::Table,
                &["key", "value"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ModelArtifacts::Table)
                    .if_not_exists()
                    .col(c.id(ModelArtifacts::Id))
                    .col(
                        ColumnDef::new(ModelArtifacts::RunId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ModelArtifacts::Uri).text().not_null())
                    .col(c.text(ModelArtifacts::Format, 50).not_null())
                    .col(
                        ColumnDef::new(ModelArtifacts::SizeBytes)
                            .big_integer()
                            .not_null()
                            .check(Expr::col(ModelArtifacts::SizeBytes).gte(0)),
                    )
                    .col(c.text(ModelArtifacts::Checksum, 128).not_null())
                    .col(c.timestamp(ModelArtifacts::CreatedAt).not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_model_artifacts_run")
                            .from(ModelArtifacts::Table, ModelArtifacts::RunId)
                            .to(TrainingRuns::Table, TrainingRuns::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_model_artifacts_run",
                ModelArtifacts::Table,
                &["run_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Deployments::Table)
                    .if_not_exists()
                    .col(c.id(Deployments::Id))
                    .col(
                        ColumnDef::new(Deployments::ArtifactId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(c.text(Deployments::Environment, 50).not_null())
                    .col(c.text(Deployments::Status, 16).not_null().check(
                        Expr::col(Deployments::Status).is_in(["pending", "active", "retired"]),
                    ))
                    .col(
                        ColumnDef::new(Deployments::TrafficWeight)
                            .double()
                            .not_null()
                            .check(
                                Expr::col(Deployments::TrafficWeight)
                                    .gte(0.0)
                                    .and(Expr::col(Deployments::TrafficWeight).lte(1.0)),
                            ),
                    )
                    .col(c.timestamp(Deployments::DeployedAt).null())
                    .col(c.timestamp(Deployments::RetiredAt).null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_deployments_artifact")
                            .from(Deployments::Table, Deployments::ArtifactId)
                            .to(ModelArtifacts::Table, ModelArtifacts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_deployments_artifact",
                Deployments::Table,
                &["artifact_id"],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ModelAliases::Table)
                    .if_not_exists()
                    .col(c.text(ModelAliases::ModelName, 255).not_null())
                    .col(c.text(ModelAliases::Alias, 100).not_null())
                    .col(
                        ColumnDef::new(ModelAliases::ArtifactId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(c.timestamp(ModelAliases::UpdatedAt).not_null())
                    .primary_key(
                        Index::create()
                            .col(ModelAliases::ModelName)
                            .col(ModelAliases::Alias),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_model_aliases_artifact")
                            .from(ModelAliases::Table, ModelAliases::ArtifactId)
                            .to(ModelArtifacts::Table, ModelArtifacts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AliasHistory::Table)
                    .if_not_exists()
                    .col(c.id(AliasHistory::Id))
                    .col(c.text(AliasHistory::ModelName, 255).not_null())
                    .col(c.text(AliasHistory::Alias, 100).not_null())
                    .col(
                        ColumnDef::new(AliasHistory::FromArtifactId)
                            .big_integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(AliasHistory::ToArtifactId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(c.timestamp(AliasHistory::MovedAt).not_null())
                    .col(c.text(AliasHistory::MovedBy, 100).not_null())
                    .col(ColumnDef::new(AliasHistory::Reason).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alias_history_from")
                            .from(AliasHistory::Table, AliasHistory::FromArtifactId)
                            .to(ModelArtifacts::Table, ModelArtifacts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alias_history_to")
                            .from(AliasHistory::Table, AliasHistory::ToArtifactId)
                            .to(ModelArtifacts::Table, ModelArtifacts::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_alias_history_alias",
                AliasHistory::Table,
                &["model_name", "alias", "id"],
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Children first, so no foreign key is left dangling mid-way.
        for table in [
            AliasHistory::Table.into_iden(),
            ModelAliases::Table.into_iden(),
            Deployments::Table.into_iden(),
            ModelArtifacts::Table.into_iden(),
            RunTags::Table.into_iden(),
            TrainingRuns::Table.into_iden(),
            Datasets::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
