//! Analytical queries over runs: joins, aggregates and window functions,
//! built with sea-query so they run unchanged on SQLite and PostgreSQL.
//!
//! Only `completed` runs with an accuracy take part in rankings and
//! comparisons: a running or failed run has no result to compare. Ties are
//! broken by run id, so every order is total and identical on both
//! backends.

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, WindowStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, RelationTrait,
};
use serde::Serialize;

use super::{dataset_by_name, db_err};
use crate::error::{Error, Result};
use crate::platform::entities::{RunStatus, dataset, training_run};

/// `CAST(expr AS DOUBLE PRECISION)`: PostgreSQL's `AVG`/`SUM` of integers is
/// `numeric`, which does not decode into `f64`; SQLite reads the type name
/// as REAL affinity.
fn as_double(expr: impl Into<Expr>) -> Expr {
    expr.into().cast_as(Alias::new("DOUBLE PRECISION"))
}

/// `CAST(expr AS BIGINT)`, for sums of integers (see [`as_double`]).
fn as_bigint(expr: impl Into<Expr>) -> Expr {
    expr.into().cast_as(Alias::new("BIGINT"))
}

fn run_col(column: training_run::Column) -> Expr {
    Expr::col((training_run::Entity, column))
}

/// One of the best models.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct TopModel {
    /// The run's model id.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The dataset it trained on.
    pub dataset_name: String,
    /// The framework.
    pub framework: String,
    /// Its accuracy.
    pub accuracy: f64,
    /// Its training time in seconds, when recorded.
    pub training_time_seconds: Option<i64>,
    /// `accuracy / (training time in hours)`; `None` when the time is
    /// unknown or zero.
    pub accuracy_per_hour: Option<f64>,
}

/// The `n` completed runs with the highest accuracy, with their dataset
/// (an inner join) and accuracy per training hour, best first.
pub async fn top_models_by_accuracy(db: &impl ConnectionTrait, n: u64) -> Result<Vec<TopModel>> {
    use training_run::Column as C;
    // accuracy * 3600 / NULLIF(seconds, 0): no division by zero on
    // PostgreSQL, and the same NULL that SQLite would give.
    let per_hour = run_col(C::Accuracy).mul(3600.0).div(
        Func::cust(Alias::new("NULLIF"))
            .arg(run_col(C::TrainingTimeSeconds))
            .arg(0),
    );
    training_run::Entity::find()
        .select_only()
        .column(C::ModelId)
        .column(C::ModelName)
        .column_as(dataset::Column::Name, "dataset_name")
        .column(C::Framework)
        .column(C::Accuracy)
        .column(C::TrainingTimeSeconds)
        .expr_as(per_hour, "accuracy_per_hour")
        .join(
            sea_orm::JoinType::InnerJoin,
            training_run::Relation::Dataset.def(),
        )
        .filter(C::Status.eq(RunStatus::Completed))
        .filter(C::Accuracy.is_not_null())
        .order_by_desc(C::Accuracy)
        .order_by_asc(C::Id)
        .limit(n)
        .into_model::<TopModel>()
        .all(db)
        .await
        .map_err(db_err("top_models_by_accuracy"))
}

/// How one framework does across completed runs.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct FrameworkStats {
    /// The framework.
    pub framework: String,
    /// Completed runs.
    pub runs: i64,
    /// Mean accuracy of those with one.
    pub avg_accuracy: Option<f64>,
    /// Mean training time in seconds of those with one.
    pub avg_training_time_seconds: Option<f64>,
}

/// Completed runs grouped by framework: count, mean accuracy, mean training
/// time; best mean accuracy first (frameworks without accuracy last), then
/// by name.
pub async fn framework_comparison(db: &impl ConnectionTrait) -> Result<Vec<FrameworkStats>> {
    use training_run::Column as C;
    let mut select = training_run::Entity::find()
        .select_only()
        .column(C::Framework)
        .expr_as(Expr::col(C::Id).count(), "runs")
        .expr_as(as_double(Expr::col(C::Accuracy).avg()), "avg_accuracy")
        .expr_as(
            as_double(Expr::col(C::TrainingTimeSeconds).avg()),
            "avg_training_time_seconds",
        )
        .filter(C::Status.eq(RunStatus::Completed))
        .group_by(C::Framework);
    // NULL means smallest on SQLite; say so explicitly on PostgreSQL, whose
    // NULLs sort first in DESC.
    QueryTrait::query(&mut select).order_by_expr_with_nulls(
        Expr::col(Alias::new("avg_accuracy")),
        Order::Desc,
        sea_orm::sea_query::NullOrdering::Last,
    );
    select
        .order_by_asc(C::Framework)
        .into_model::<FrameworkStats>()
        .all(db)
        .await
        .map_err(db_err("framework_comparison"))
}

/// Training statistics of one dataset.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct DatasetStats {
    /// Every run on it.
    pub total_runs: i64,
    /// Runs still running.
    pub running: i64,
    /// Completed runs.
    pub completed: i64,
    /// Failed runs.
    pub failed: i64,
    /// Best accuracy reached.
    pub best_accuracy: Option<f64>,
    /// Mean accuracy of the runs with one.
    pub avg_accuracy: Option<f64>,
    /// Lowest loss reached.
    pub min_loss: Option<f64>,
    /// Training time summed over the runs with one, in seconds.
    pub total_training_seconds: Option<i64>,
    /// Distinct frameworks used.
    pub frameworks: i64,
}

/// The statistics of the dataset called `name`, or NotFound. A dataset
/// without runs has zero counts and `None` aggregates.
pub async fn dataset_statistics(
    db: &impl ConnectionTrait,
    name: &str,
) -> Result<(crate::platform::entities::dataset::Model, DatasetStats)> {
    use training_run::Column as C;
    let dataset = dataset_by_name(db, name).await?;
    let count_status = |status: RunStatus| {
        // SUM(CASE WHEN status = ? THEN 1 ELSE 0 END), bigint on both.
        as_bigint(Func::coalesce([
            Expr::case(Expr::col(C::Status).eq(status.as_str()), 1)
                .finally(0)
                .sum(),
            Expr::val(0),
        ]))
    };
    let stats = training_run::Entity::find()
        .select_only()
        .expr_as(Expr::col(C::Id).count(), "total_runs")
        .expr_as(count_status(RunStatus::Running), "running")
        .expr_as(count_status(RunStatus::Completed), "completed")
        .expr_as(count_status(RunStatus::Failed), "failed")
        .expr_as(as_double(Expr::col(C::Accuracy).max()), "best_accuracy")
        .expr_as(as_double(Expr::col(C::Accuracy).avg()), "avg_accuracy")
        .expr_as(as_double(Expr::col(C::Loss).min()), "min_loss")
        .expr_as(
            as_bigint(Expr::col(C::TrainingTimeSeconds).sum()),
            "total_training_seconds",
        )
        .expr_as(Func::count_distinct(Expr::col(C::Framework)), "frameworks")
        .filter(C::DatasetId.eq(dataset.id))
        .into_model::<DatasetStats>()
        .one(db)
        .await
        .map_err(db_err("dataset_statistics"))?
        .ok_or_else(|| {
            Error::internal("an aggregate without GROUP BY returned no row")
                .with_operation("dataset_statistics")
        })?;
    Ok((dataset, stats))
}

/// A completed run's place among the others.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize)]
pub struct RankedRun {
    /// The run's model id.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The framework.
    pub framework: String,
    /// Its accuracy.
    pub accuracy: f64,
    /// `RANK() OVER (ORDER BY accuracy DESC)`: 1 for the best; ties share
    /// a rank and leave a gap after them.
    pub overall_rank: i64,
    /// The same rank within its framework (`PARTITION BY framework`).
    pub framework_rank: i64,
    /// `PERCENT_RANK() OVER (ORDER BY accuracy)`: the share of runs with a
    /// lower accuracy, from 0.0 (worst) to 1.0 (best).
    pub percentile: f64,
}

/// Every completed run with an accuracy, ranked overall and within its
/// framework with `RANK()`, and placed with `PERCENT_RANK()`; best first,
/// ties by id.
pub async fn rank_runs(db: &impl ConnectionTrait) -> Result<Vec<RankedRun>> {
    use training_run::Column as C;
    let by_accuracy_desc = WindowStatement::new()
        .order_by(C::Accuracy, Order::Desc)
        .to_owned();
    let by_framework = WindowStatement::partition_by(C::Framework)
        .order_by(C::Accuracy, Order::Desc)
        .to_owned();
    let by_accuracy_asc = WindowStatement::new()
        .order_by(C::Accuracy, Order::Asc)
        .to_owned();
    let mut select = training_run::Entity::find()
        .select_only()
        .column(C::ModelId)
        .column(C::ModelName)
        .column(C::Framework)
        .column(C::Accuracy)
        .filter(C::Status.eq(RunStatus::Completed))
        .filter(C::Accuracy.is_not_null());
    QueryTrait::query(&mut select)
        .expr_window_as(
            Func::cust(Alias::new("RANK")),
            by_accuracy_desc,
            "overall_rank",
        )
        .expr_window_as(
            Func::cust(Alias::new("RANK")),
            by_framework,
            "framework_rank",
        )
        .expr_window_as(
            Func::cust(Alias::new("PERCENT_RANK")),
            by_accuracy_asc,
            "percentile",
        );
    select
        .order_by_desc(C::Accuracy)
        .order_by_asc(C::Id)
        .into_model::<RankedRun>()
        .all(db)
        .await
        .map_err(db_err("rank_runs"))
}
