//! The OpenAPI 3.1 document of the API, generated from the handlers'
//! `#[utoipa::path]` attributes and the request/response types' schemas.
//! It MUST list exactly the routes of [`super::routes`]; the API tests
//! check both directions.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{
    aliases, analytics, dashboard, datasets, dead_letters, error, health, limits, metrics, models,
    ops, runs, sagas, scenario, serving,
};

/// The API's OpenAPI description.
#[derive(Debug, OpenApi)]
#[openapi(
    modifiers(&Access),
    info(title = "strata", description = "The data plane of an ML platform: datasets, training runs, aliases, analytics, online features, predictions and the leaderboard."),
    paths(
        health::healthz, health::readyz, health::cache, metrics::metrics, ops::overview, openapi_json,
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

/// The access rules of [`super::auth`] in the document: the `bearer`
/// scheme, optional at the top level (no token is needed while none
/// exists), none on the probes; and on every other operation the answers
/// 401 (no valid token), 403 (too small a scope) and 421 (a `Host` not
/// allowed).
#[derive(Debug)]
struct Access;

impl Modify for Access {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`strata token create`), needed once any exists. \
                         GET, HEAD, batch features and predictions need scope `read`; other \
                         changes `write`; replaying and purging dead letters `admin`.",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::default(),
        ]);
        let error = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                .build()
        };
        let challenge = HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .max_length(Some(200))
                    .pattern(Some("^Bearer ")),
            )
            .description(Some(
                "`Bearer realm=\"strata\"`, with `error=\"invalid_token\"` for a bad token",
            ))
            .build();
        let answers = [
            (
                "401",
                ResponseBuilder::new()
                    .description("No valid API token (`unauthorized`): needed once any token exists")
                    .header("WWW-Authenticate", challenge)
                    .content("application/json", error())
                    .build(),
            ),
            (
                "403",
                ResponseBuilder::new()
                    .description("The token's scope is too small (`forbidden`)")
                    .content("application/json", error())
                    .build(),
            ),
            (
                "421",
                ResponseBuilder::new()
                    .description("The Host header names a host not in api.allowed_hosts (`misdirected_request`)")
                    .content("application/json", error())
                    .build(),
            ),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = super::auth::is_public(path);
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if public {
                    operation.security = Some(vec![SecurityRequirement::default()]);
                    continue;
                }
                for (status, answer) in &answers {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| RefOr::T(answer.clone()));
                }
            }
        }
    }
}

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
