//! An overview of one strata process and the engines behind it, as one
//! snapshot: each engine's ping, the caches' counters, the pipelines'
//! queues and dead letters, the outbox's backlog, the sagas by state and
//! the feature views with how fresh the values they served were.
//!
//! [`snapshot`] gathers it over the services (never an engine directly),
//! every part at once and each within a time bound. A part that cannot be
//! gathered (its engine is down or slow) is left empty and named in
//! [`OpsSnapshot::unavailable`], and the snapshot says it is
//! [`OpsStatus::Degraded`]: the rest is still reported. The same snapshot
//! serves `GET /v1/ops` (the dashboard's data) and can be rendered as
//! gauges; nothing here knows HTTP.
//!
//! Layer: above `serving`, `pipelines` and `analytics` (whose queues it
//! lists), below `api` and `cli`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::analytics::scenario::Scenario;
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::Pipelines;
use crate::pipelines::handlers::read_model_queue;
use crate::platform::Platform;
use crate::platform::sagas::SagaState;
use crate::serving::Serving;

/// Whether every part of a snapshot could be gathered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpsStatus {
    /// Every part is there and every engine answered its ping.
    Ok,
    /// An engine is down, or a part could not be gathered (see
    /// `unavailable`).
    Degraded,
}

/// A part of the snapshot that could not be gathered.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Unavailable {
    /// `engines`, `queues`, `dead_letters`, `outbox`, `sagas` or
    /// `feature_views`.
    pub part: String,
    /// Why (the error's kind and message; no credentials).
    pub error: String,
}

/// One engine's ping.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EngineOps {
    /// `relational`, `documents`, `kv` or `queue`.
    pub engine: String,
    /// Its kind: `sqlite`, `postgres`, `embedded`, `mongodb`, `redis`,
    /// `rabbitmq`.
    pub kind: String,
    /// `up` or `down`.
    pub status: String,
    /// Round trip of the ping in milliseconds, when up.
    pub rtt_ms: Option<f64>,
    /// Why it is down.
    pub error: Option<String>,
    /// Its circuit breaker: `closed`, `open` or `half_open`; absent
    /// without layers.
    pub circuit: Option<String>,
}

/// One cache's lookups since the process started, per tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CacheOps {
    /// The cache.
    pub name: String,
    /// Answers from the process's memory (L1).
    pub l1_hits: u64,
    /// Answers from the key-value engine (L2).
    pub l2_hits: u64,
    /// Lookups neither tier answered fresh.
    pub misses: u64,
    /// Answers past their freshness, served because a load failed or was
    /// slow.
    pub stale_served: u64,
    /// Failed reads or writes of L2.
    pub l2_errors: u64,
    /// Entries in L1 now.
    pub l1_entries: u64,
}

/// One work queue of the pipelines.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueOps {
    /// Its name, without the prefix (`onboarding`, `analytics`, ...).
    pub queue: String,
    /// Messages ready for delivery; absent when the broker did not say.
    pub depth: Option<u64>,
    /// Consumers attached (in every process); absent when the broker did
    /// not say.
    pub consumers: Option<u64>,
    /// Why the broker did not say (a queue never declared is `not_found`).
    pub error: Option<String>,
}

/// Dead letters kept, per queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeadLetterOps {
    /// Every dead letter kept.
    pub total: u64,
    /// Per queue, every known queue listed (0 when it has none), then any
    /// other queue that has some.
    pub by_queue: Vec<QueueCount>,
}

/// A count for one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct QueueCount {
    /// The queue.
    pub queue: String,
    /// How many.
    pub count: u64,
}

/// How many sagas are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SagaCount {
    /// `running`, `compensating`, `completed` or `compensated`.
    pub state: String,
    /// How many sagas kept are in it.
    pub count: u64,
}

/// A feature view and how fresh the values it served were.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeatureViewOps {
    /// The view.
    pub view: String,
    /// Its entity type.
    pub entity: String,
    /// How many features it declares.
    pub features: u64,
    /// How long a value stays fresh after its event time, in seconds.
    pub ttl_seconds: u64,
    /// Feature values this process served fresh since it started.
    pub fresh_reads: u64,
    /// Feature values served stale (past the TTL or the request's
    /// `max_age`).
    pub stale_reads: u64,
    /// Features asked for that had no value.
    pub missing_reads: u64,
    /// `stale_reads` over the values served (fresh and stale); absent
    /// before any was.
    pub stale_share: Option<f64>,
}

/// The overview.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OpsSnapshot {
    /// When it was taken (UTC).
    pub taken_at: DateTime<Utc>,
    /// `ok`, or `degraded` when an engine is down or a part is missing.
    pub status: OpsStatus,
    /// The parts that could not be gathered, and why.
    pub unavailable: Vec<Unavailable>,
    /// Each engine's ping.
    pub engines: Vec<EngineOps>,
    /// Each cache of this process, by name.
    pub caches: Vec<CacheOps>,
    /// The pipelines' work queues, by name.
    pub queues: Vec<QueueOps>,
    /// Dead letters kept; absent when the document engine did not answer.
    pub dead_letters: Option<DeadLetterOps>,
    /// Outbox events not yet sent; absent when the relational engine did
    /// not answer.
    pub outbox_backlog: Option<u64>,
    /// Sagas by state, every state listed; absent when the relational
    /// engine did not answer.
    pub sagas: Option<Vec<SagaCount>>,
    /// The feature views, by name; absent when the document engine did
    /// not answer.
    pub feature_views: Option<Vec<FeatureViewOps>>,
}

/// The work queues strata's own consumers take (the read model's and the
/// scenario's), without the prefix.
pub fn known_queues() -> Vec<String> {
    std::iter::once(read_model_queue())
        .chain(Scenario::queues())
        .map(|spec| spec.name)
        .collect()
}

/// Runs `part` within `limit`; running over it is a `Timeout` error.
async fn bounded<T>(limit: Duration, part: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, part).await.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Timeout,
            format!("no answer within {limit:?}"),
        ))
    })
}

fn describe(e: &Error) -> String {
    format!("{}: {}", e.kind(), e.message())
}

/// Takes the snapshot, each part within `limit` (an engine's ping too),
/// all at once. Never fails: what cannot be gathered is reported in
/// [`OpsSnapshot::unavailable`].
pub async fn snapshot(
    platform: &Platform,
    serving: &Serving,
    pipelines: &Pipelines,
    limit: Duration,
) -> OpsSnapshot {
    let queues = known_queues();
    let health = platform.health();
    let (pings, queue_infos, dead_letters, backlog, sagas, views) = tokio::join!(
        health.check(limit),
        futures::future::join_all(
            queues
                .iter()
                .map(|q| bounded(limit, pipelines.queue_info(q)))
        ),
        bounded(limit, pipelines.dead_letters().counts_by_queue()),
        bounded(limit, platform.outbox().backlog()),
        bounded(limit, platform.sagas().counts()),
        bounded(limit, serving.features().views()),
    );
    let mut unavailable = Vec::new();
    let mut failed = |part: &str, error: Option<&Error>| {
        if let Some(e) = error {
            tracing::warn!(part, "an ops snapshot part is unavailable: {e}");
            unavailable.push(Unavailable {
                part: part.to_owned(),
                error: describe(e),
            });
        }
    };
    failed("dead_letters", dead_letters.as_ref().err());
    failed("outbox", backlog.as_ref().err());
    failed("sagas", sagas.as_ref().err());
    failed("feature_views", views.as_ref().err());

    let engines: Vec<EngineOps> = pings
        .into_iter()
        .map(|h| {
            let circuit = health.breaker(h.engine).map(|b| b.as_str().to_owned());
            let (status, rtt_ms, error) = match h.outcome {
                Ok(rtt) => ("up", Some(rtt.as_secs_f64() * 1000.0), None),
                Err(e) => ("down", None, Some(describe(&e))),
            };
            EngineOps {
                engine: h.engine.to_owned(),
                kind: h.kind.to_owned(),
                status: status.to_owned(),
                rtt_ms,
                error,
                circuit,
            }
        })
        .collect();

    let caches = platform
        .caches()
        .stats()
        .into_iter()
        .map(|s| CacheOps {
            name: s.name,
            l1_hits: s.l1_hits,
            l2_hits: s.l2_hits,
            misses: s.misses,
            stale_served: s.stale_served,
            l2_errors: s.l2_errors,
            l1_entries: s.l1_entries,
        })
        .collect();

    let queue_ops: Vec<QueueOps> = queues
        .iter()
        .zip(queue_infos)
        .map(|(queue, info)| match info {
            Ok(info) => QueueOps {
                queue: queue.clone(),
                depth: Some(info.messages),
                consumers: Some(info.consumers),
                error: None,
            },
            Err(e) => QueueOps {
                queue: queue.clone(),
                depth: None,
                consumers: None,
                error: Some(describe(&e)),
            },
        })
        .collect();
    // A queue nobody declared yet (no worker ran) is not a fault; any
    // other failure to ask is.
    if let Some(q) = queue_ops.iter().find(|q| {
        q.error
            .as_deref()
            .is_some_and(|e| !e.starts_with(ErrorKind::NotFound.as_str()))
    }) {
        unavailable.push(Unavailable {
            part: "queues".to_owned(),
            error: format!("queue `{}`: {}", q.queue, q.error.as_deref().unwrap_or("")),
        });
    }

    let dead_letters = dead_letters.ok().map(|counts| {
        let mut by_queue: Vec<QueueCount> = queues
            .iter()
            .map(|q| QueueCount {
                queue: q.clone(),
                count: counts.get(q).copied().unwrap_or(0),
            })
            .collect();
        by_queue.extend(
            counts
                .iter()
                .filter(|(q, _)| !queues.contains(q))
                .map(|(q, n)| QueueCount {
                    queue: q.clone(),
                    count: *n,
                }),
        );
        DeadLetterOps {
            total: counts.values().sum(),
            by_queue,
        }
    });

    let sagas = sagas.ok().map(|counts: BTreeMap<String, i64>| {
        [
            SagaState::Running,
            SagaState::Compensating,
            SagaState::Completed,
            SagaState::Compensated,
        ]
        .into_iter()
        .map(|state| SagaCount {
            state: state.as_str().to_owned(),
            count: counts
                .get(state.as_str())
                .and_then(|n| u64::try_from(*n).ok())
                .unwrap_or(0),
        })
        .collect()
    });

    let freshness = serving.features().freshness();
    let feature_views = views.ok().map(|views| {
        views
            .into_iter()
            .map(|v| {
                let reads = freshness.get(&v.name).copied().unwrap_or_default();
                let served = reads.fresh.saturating_add(reads.stale);
                FeatureViewOps {
                    stale_share: (served > 0).then(|| reads.stale as f64 / served as f64),
                    features: v.features.len() as u64,
                    ttl_seconds: v.ttl.as_secs(),
                    fresh_reads: reads.fresh,
                    stale_reads: reads.stale,
                    missing_reads: reads.missing,
                    view: v.name,
                    entity: v.entity,
                }
            })
            .collect()
    });

    let engines_down = engines.iter().any(|e| e.status != "up");
    OpsSnapshot {
        taken_at: crate::platform::now(),
        status: if engines_down || !unavailable.is_empty() {
            OpsStatus::Degraded
        } else {
            OpsStatus::Ok
        },
        unavailable,
        engines,
        caches,
        queues: queue_ops,
        dead_letters,
        outbox_backlog: backlog.ok(),
        sagas,
        feature_views,
    }
}
