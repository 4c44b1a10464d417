//! The HTTP API (axum), served by `strata serve`.
//!
//! Contracts every route keeps:
//!
//! - Every error answers with one JSON shape,
//!   `{"error":{"kind","message","field"?}}` ([`ErrorBody`]): 400 for
//!   invalid or unsupported input (including a body or query string that
//!   does not deserialize, naming what was wrong), 404 for a missing
//!   resource or an unknown route, 405 for a known route with another
//!   method, 409 for a conflict, 413 for a body over `api.body_limit`, 503
//!   when an engine is unavailable or the request ran over
//!   `api.request_timeout`, 500 for anything else, whose message never
//!   carries internals (they go to the log).
//! - Access ([`auth`]): once an API token exists, 401 (`unauthorized`)
//!   without a valid bearer token and 403 (`forbidden`) for too small a
//!   scope, on every route but the probes; 421 (`misdirected_request`) for
//!   a `Host` that is not allowed.
//! - Client-supplied JSON is only ever a value: request bodies deserialize
//!   into typed structs, filters are built by strata (the run search
//!   language compiles to bound parameters), so a `{"$where": ...}`-looking
//!   string is stored and returned as the string it is.
//! - `/openapi.json` documents exactly the routes the router serves: both
//!   are built from one table ([`routes`]), and the tests request every
//!   documented path.
//! - The document states every limit the handlers and the platform
//!   enforce (lengths, patterns, ranges, enums, required fields, unknown
//!   fields refused): a request valid by the schema is never answered 400,
//!   except where a query language's grammar (a run `filter`, `order_by`,
//!   a page token) does not parse. What a schema cannot say (a dataset
//!   that must exist, a `model_id` that must be free) is 404 or 409.
//! - Every `{model_id}` in a path and every `model_id` in a body is a model
//!   id ([`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN));
//!   anything else is 400 with `field: "model_id"`, before any engine is
//!   asked.
//!
//! # Layout
//!
//! - [`auth`]: bearer tokens and their scopes, the `Host` check, CORS.
//! - [`error`]: the JSON error shape, and extractors mapping axum's
//!   rejections into it.
//! - [`health`]: `/healthz`, `/readyz`, and `/v1/cache` (the caches' counters).
//! - [`datasets`], [`runs`], [`aliases`], [`analytics`]: one module per
//!   resource, over [`crate::platform::registry`] and
//!   [`crate::platform::search`].
//! - [`limits`]: the limits of every input, as schemas and as the
//!   extractors and checks that enforce them (the model id pattern,
//!   [`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN)).
//! - [`serving`]: feature views and features, predictions, the
//!   leaderboard (over [`crate::serving`]).
//! - [`openapi`]: the OpenAPI document.
//! - [`server`]: [`serve`], the HTTP server with its bounds on header
//!   time, connections and shutdown.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use crate::config::ApiConfig;
use crate::error::{Error, ErrorKind};
use crate::platform::Platform;
use crate::serving::Serving;
use crate::serving::ratelimit::{self, Group, RateLimiter};

pub mod aliases;
pub mod analytics;
pub mod auth;
pub mod dashboard;
pub mod datasets;
pub mod dead_letters;
pub mod error;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod ops;
pub mod runs;
pub mod sagas;
pub mod scenario;
pub mod server;
pub mod serving;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use server::serve;

/// What every handler can reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The platform's services.
    pub platform: Platform,
    /// The serving services (features, predictions, leaderboard).
    pub serving: Serving,
    /// The pipelines (events, tasks, dead letters).
    pub pipelines: crate::pipelines::Pipelines,
    /// How long `/readyz` waits for each engine's ping.
    pub ping_timeout: Duration,
    /// The scenario's services: analytics, personalization, alerts.
    pub scenario: crate::analytics::scenario::Scenario,
}

/// When a request must be answered by: set by the request-timeout layer,
/// read by handlers that start work which outlives them (sagas), so that
/// they answer with that work's state in time instead of being cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub tokio::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Deadline {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        // Without the layer (a router built in a test without it), an hour.
        Ok(parts
            .extensions
            .get::<Deadline>()
            .copied()
            .unwrap_or(Deadline(
                tokio::time::Instant::now() + Duration::from_secs(3600),
            )))
    }
}

/// Every route the router serves: `(method, path)` in axum's path syntax,
/// which is also OpenAPI's (`{name}`).
pub fn routes() -> Vec<(Method, &'static str)> {
    route_table(RouteTable::default()).table
}

/// The API's router over `platform`, with the body limit, request
/// timeout and access checks ([`auth`]) of `config` (whose `listen` should
/// be the address bound).
pub fn router(
    platform: Platform,
    serving: Serving,
    pipelines: crate::pipelines::Pipelines,
    scenario: crate::analytics::scenario::Scenario,
    config: &ApiConfig,
) -> Router {
    let limiter = serving
        .rate_limiter()
        .config()
        .any()
        .then(|| serving.rate_limiter().clone());
    let state = ApiState {
        platform,
        serving,
        pipelines,
        // Readiness must answer within the request timeout, with room to
        // build the answer.
        ping_timeout: config.request_timeout.mul_f64(0.8),
        scenario,
    };
    let body_limit = usize::try_from(config.body_limit.as_u64()).unwrap_or(usize::MAX);
    let tokens = state.platform.tokens().clone();
    let routes = route_table(RouteTable::default())
        .router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            config.request_timeout,
            request_timeout,
        ));
    // Tokens inside the rate limits, Host check and CORS outside (auth).
    let routes = auth::require_tokens(routes, tokens, config)
        .layer(middleware::from_fn_with_state(limiter, rate_limit));
    // Outermost: every answer, a 421, 429 or timeout included, carries its
    // request id and is counted.
    auth::check_origin(routes, config).layer(middleware::from_fn(metrics::observe))
}

/// The route group a request counts in; `None` for the probes
/// (`/healthz`, `/readyz`), which are never limited.
fn group_of(method: &Method, path: &str) -> Option<Group> {
    if path == "/healthz" || path == "/readyz" {
        None
    } else if *method == Method::POST && path.ends_with("/predict") {
        Some(Group::Predict)
    } else if *method == Method::GET || *method == Method::HEAD {
        Some(Group::Read)
    } else {
        Some(Group::Write)
    }
}

/// Rate limits per client and route group (`serving.rate_limits`): 429
/// with `Retry-After` past the limit; `RateLimit-*` headers on every
/// answer of a limited group. When the key-value engine cannot answer,
/// the request goes through, flagged `X-Strata-Degraded: kv`.
async fn rate_limit(
    State(limiter): State<Option<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = limiter else {
        return next.run(request).await;
    };
    let Some(group) = group_of(request.method(), request.uri().path())
        .filter(|group| limiter.limit(*group).is_some())
    else {
        return next.run(request).await;
    };
    let token = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let client = ratelimit::client_key(token, address);
    match limiter.check(group, &client).await {
        Ok(Some(decision)) => {
            let mut response = if decision.reply.allowed {
                next.run(request).await
            } else {
                ApiError::rate_limited(group.as_str(), decision.reply.retry_after).into_response()
            };
            let headers = response.headers_mut();
            let reset = decision.reply.reset_after.as_millis().div_ceil(1000);
            for (name, value) in [
                ("ratelimit-limit", decision.limit.requests.to_string()),
                ("ratelimit-remaining", decision.reply.remaining.to_string()),
                ("ratelimit-reset", reset.to_string()),
                (
                    "ratelimit-policy",
                    format!(
                        "{};w={}",
                        decision.limit.requests,
                        decision.limit.per.as_secs().max(1)
                    ),
                ),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
            response
        }
        Ok(None) => next.run(request).await,
        Err(e) => {
            tracing::warn!("rate limit not checked, the request goes through: {e}");
            let mut response = next.run(request).await;
            response.headers_mut().insert(
                HeaderName::from_static(models::DEGRADED_HEADER),
                HeaderValue::from_static("kv"),
            );
            response
        }
    }
}

/// The router and the list of its routes, built together so that they
/// cannot disagree.
#[derive(Default)]
struct RouteTable {
    router: Router<ApiState>,
    table: Vec<(Method, &'static str)>,
}

impl RouteTable {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        // The table below passes only methods axum can filter on; the tests
        // build this table, so a wrong one fails them, not a request.
        #[allow(clippy::expect_used)]
        let filter = MethodFilter::try_from(method.clone()).expect("a filterable method");
        // axum merges method routers registered on the same path.
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((method, path));
        self
    }
}

fn route_table(table: RouteTable) -> RouteTable {
    table
        .add(Method::GET, "/healthz", health::healthz)
        .add(Method::GET, "/readyz", health::readyz)
        .add(Method::GET, "/openapi.json", openapi::openapi_json)
        .add(Method::GET, "/metrics", metrics::metrics)
        .add(Method::GET, "/v1/cache", health::cache)
        .add(Method::GET, "/v1/ops", ops::overview)
        .add(Method::GET, "/", dashboard::index)
        .add(Method::GET, "/assets/{file}", dashboard::asset)
        .add(Method::POST, "/v1/datasets", datasets::create)
        .add(Method::GET, "/v1/datasets", datasets::list)
        .add(Method::GET, "/v1/datasets/{name}", datasets::get)
        .add(Method::GET, "/v1/datasets/{name}/stats", datasets::stats)
        .add(Method::POST, "/v1/runs", runs::create)
        .add(Method::GET, "/v1/runs", runs::search)
        .add(Method::GET, "/v1/runs/{model_id}", runs::get)
        .add(Method::DELETE, "/v1/runs/{model_id}", runs::delete)
        .add(Method::POST, "/v1/runs/{model_id}/complete", runs::complete)
        .add(Method::GET, "/v1/aliases/{name}", aliases::resolve)
        .add(Method::PUT, "/v1/aliases/{name}", aliases::move_to)
        .add(
            Method::GET,
            "/v1/analytics/frameworks",
            analytics::frameworks,
        )
        .add(Method::GET, "/v1/analytics/report", analytics::report)
        .add(Method::GET, "/v1/models", models::list)
        .add(Method::GET, "/v1/models/{model_id}", models::info)
        .add(Method::GET, "/v1/models/{model_id}/view", models::view)
        .add(
            Method::GET,
            "/v1/models/{model_id}/config",
            models::get_config,
        )
        .add(
            Method::PUT,
            "/v1/models/{model_id}/config",
            models::put_config,
        )
        .add(
            Method::PATCH,
            "/v1/models/{model_id}/config",
            models::patch_metrics,
        )
        .add(
            Method::POST,
            "/v1/models/{model_id}/predict",
            serving::predict,
        )
        .add(Method::POST, "/v1/users", scenario::signup)
        .add(
            Method::GET,
            "/v1/users/{user_id}/recommendations",
            scenario::recommendations,
        )
        .add(Method::POST, "/v1/events", scenario::ingest)
        .add(Method::GET, "/v1/analytics/today", scenario::today)
        .add(Method::GET, "/v1/alerts", scenario::list_alerts)
        .add(Method::GET, "/v1/dead-letters", dead_letters::list)
        .add(Method::GET, "/v1/dead-letters/{id}", dead_letters::get)
        .add(
            Method::POST,
            "/v1/dead-letters/replay",
            dead_letters::replay,
        )
        .add(Method::POST, "/v1/dead-letters/purge", dead_letters::purge)
        .add(Method::GET, "/v1/leaderboard", serving::leaderboard)
        .add(Method::GET, "/v1/leaderboard/{model_id}", serving::standing)
        .add(Method::GET, "/v1/feature-views", serving::list_views)
        .add(Method::GET, "/v1/feature-views/{view}", serving::get_view)
        .add(Method::PUT, "/v1/feature-views/{view}", serving::put_view)
        .add(
            Method::PUT,
            "/v1/features/{view}/{entity}",
            serving::put_features,
        )
        .add(
            Method::GET,
            "/v1/features/{view}/{entity}",
            serving::get_features,
        )
        .add(Method::POST, "/v1/features:batch", serving::batch)
        .add(Method::GET, "/v1/sagas", sagas::list)
        .add(Method::GET, "/v1/sagas/{id}", sagas::get)
}

/// Answers 503 (kind `timeout`) when the handler runs over `limit`; the
/// handler's future is dropped, which rolls back any open transaction.
/// Handlers that start work outliving them (sagas, which run in tasks of
/// their own) read the [`Deadline`] — 90% of `limit` after the request
/// arrived — and answer with that work's state before it.
async fn request_timeout(
    State(limit): State<Duration>,
    mut request: Request,
    next: Next,
) -> Response {
    let arrived = tokio::time::Instant::now();
    request
        .extensions_mut()
        .insert(Deadline(arrived + limit.mul_f64(0.9)));
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::from(Error::new(
            ErrorKind::Timeout,
            format!(
                "the request took longer than {limit:?} (api.request_timeout); \
                 a change spanning engines that it started goes on in the background \
                 and can be found under /v1/sagas"
            ),
        ))
        .into_response(),
    }
}
