//! `/v1/analytics/frameworks`: completed runs compared by framework;
//! `/v1/analytics/report`: the customer analytics report
//! ([`crate::analytics`]).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ErrorBody};

/// How one framework does across completed runs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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

/// Completed runs by framework: count, mean accuracy, mean training time;
/// best mean accuracy first.
#[utoipa::path(get, path = "/v1/analytics/frameworks", tag = "analytics",
    responses(
        (status = 200, description = "One entry per framework", body = Vec<FrameworkStats>),
        (status = 503, description = "The relational engine is unavailable", body = ErrorBody)))]
pub async fn frameworks(
    State(state): State<ApiState>,
) -> Result<Json<Vec<FrameworkStats>>, ApiError> {
    let rows = state.platform.registry().framework_comparison().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| FrameworkStats {
                framework: r.framework,
                runs: r.runs,
                avg_accuracy: r.avg_accuracy,
                avg_training_time_seconds: r.avg_training_time_seconds,
            })
            .collect(),
    ))
}

/// The customer analytics report: segments, revenue by segment and by
/// country, the churn model's AUC beside recency alone, and precision@10
/// of co-purchase recommendations beside popularity. Trains the models
/// afresh from the stored orders, in memory, on the data's own clock (as
/// of the latest order), and stores nothing: `strata analytics train`
/// stores the model. 404 when there is no order yet.
#[utoipa::path(get, path = "/v1/analytics/report", tag = "analytics",
    responses(
        (status = 200, description = "The report", body = crate::analytics::AnalyticsReport),
        (status = 404, description = "No orders yet: nothing to analyse", body = ErrorBody),
        (status = 503, description = "An engine is unavailable", body = ErrorBody)))]
pub async fn report(
    State(state): State<ApiState>,
) -> Result<Json<crate::analytics::AnalyticsReport>, ApiError> {
    Ok(Json(state.scenario.analytics.evaluate().await?.report))
}
