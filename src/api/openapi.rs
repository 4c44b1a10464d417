//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types' schemas.
//! It MUST list exactly the routes of [`super::routes`]; the API tests
//! check both directions.

use axum::Json;
use utoipa::OpenApi;

use super::{
    aliases, analytics, dashboard, datasets, dead_letters, error, health, limits, models, ops,
    runs, sagas, scenario, serving,
};

/// The API's OpenAPI description.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "strata", description = "The data plane of an ML platform: datasets, training runs, aliases, analytics, online features, predictions and the leaderboard."),
    paths(
        health::healthz, health::readyz, health::cache, ops::overview, openapi_json,
        dashboard::index, dashboard::asset,
        datasets::create, datasets::list, datasets::get, datasets::stats,
        runs::create, runs::search, runs::get, runs::delete, runs::complete,
        aliases::resolve, aliases::move_to,
        analytics::frameworks, analytics::report,
        models::list, models::info, models::view, models::get_config, models::put_config, models::patch_metrics,
        sagas::list, sagas::get,
        serving::predict, serving::leaderboard, serving::standing,
        serving::list_views, serving::get_view, serving::put_view,
        serving::put_features, serving::get_features, serving::batch,
        dead_letters::list, dead_letters::get, dead_letters::replay, dead_letters::purge,
        scenario::signup, scenario::recommendations, scenario::ingest, scenario::today, scenario::list_alerts,
    ),
    components(schemas(
        error::ErrorBody, error::ErrorDetail,
        limits::ModelId, limits::ConfigObject, limits::ConfigValue,
    )),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "datasets", description = "Training datasets"),
        (name = "runs", description = "Training runs and their search"),
        (name = "aliases", description = "`model@alias` pointers to artifacts"),
        (name = "analytics", description = "Aggregates over runs, and the customer analytics report"),
        (name = "models", description = "A model across engines and its flexible config"),
        (name = "sagas", description = "Operations spanning engines, and where they stand"),
        (name = "features", description = "Feature views, and features served with their freshness"),
        (name = "pipelines", description = "Async pipelines: the dead letters they keep, to query, replay or purge"),
        (name = "dashboard", description = "The operations dashboard (HTML) and its files"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document, as served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
