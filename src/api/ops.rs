//! `/v1/ops`: one overview of this process and its engines (over
//! [`crate::ops`]), the data of the dashboard. A part that cannot be
//! gathered leaves the answer 200, `status: degraded`, naming the part in
//! `unavailable`.

use axum::Json;
use axum::extract::State;

use super::ApiState;
use crate::ops::{self, OpsSnapshot};

/// Engines' pings, caches per tier, queue depths, dead letters per queue,
/// the outbox backlog, sagas by state and feature views with how fresh
/// the values they served were.
#[utoipa::path(get, path = "/v1/ops", tag = "health",
    responses((status = 200, description = "The overview; `status` is `degraded` when an engine is down or a part could not be gathered", body = OpsSnapshot)))]
pub async fn overview(State(state): State<ApiState>) -> Json<OpsSnapshot> {
    Json(
        ops::snapshot(
            &state.platform,
            &state.serving,
            &state.pipelines,
            state.ping_timeout,
        )
        .await,
    )
}
