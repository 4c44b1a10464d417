//! [`Health`]: whether each engine answers, and how fast.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::engines::layers::{BreakerState, EngineLayers, OpStats};
use crate::engines::{Engines, relational};
use crate::error::{Error, ErrorKind, Result};

/// The four engines, by the names the API and `strata doctor` use.
pub const ENGINES: [&str; 4] = ["relational", "documents", "kv", "queue"];

/// How one engine answered its ping.
#[derive(Debug)]
pub struct EngineHealth {
    /// `relational`, `documents`, `kv` or `queue`.
    pub engine: &'static str,
    /// Its kind: `sqlite`, `postgres`, `embedded`, `mongodb`, ...
    pub kind: &'static str,
    /// The round trip, or why it did not answer.
    pub outcome: Result<Duration>,
}

/// Pings the engines, and tells where their circuit breakers stand. Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct Health {
    engines: Engines,
    layers: Arc<OnceLock<EngineLayers>>,
}

impl Health {
    pub(crate) fn new(engines: Engines) -> Health {
        Health {
            engines,
            layers: Arc::new(OnceLock::new()),
        }
    }

    pub(crate) fn set_layers(&self, layers: EngineLayers) {
        let _ = self.layers.set(layers);
    }

    /// The circuit breaker of `engine` (`relational`, `documents`, `kv`,
    /// `queue`), when the engines run behind layers.
    pub fn breaker(&self, engine: &str) -> Option<BreakerState> {
        let layers = self.layers.get()?;
        match engine {
            "relational" => Some(layers.relational.breaker_state()),
            "documents" => Some(layers.documents.breaker_state()),
            "kv" => Some(layers.kv.breaker_state()),
            "queue" => Some(layers.queue.breaker_state()),
            _ => None,
        }
    }

    /// The use of each engine's connection pool, for the engines that have
    /// one (`relational`, and `kv` on Redis).
    pub fn pools(&self) -> Vec<(&'static str, crate::engines::PoolUse)> {
        let mut pools = Vec::new();
        if let Some(pool) = relational::pool_use(&self.engines.relational) {
            pools.push((ENGINES[0], pool));
        }
        if let Some(pool) = self.engines.kv.pool_use() {
            pools.push((ENGINES[2], pool));
        }
        pools
    }

    /// Calls, errors and time per operation of each layered engine.
    pub fn operation_stats(&self) -> Vec<(&'static str, BTreeMap<&'static str, OpStats>)> {
        match self.layers.get() {
            None => Vec::new(),
            Some(l) => [&l.relational, &l.documents, &l.kv, &l.queue]
                .into_iter()
                .map(|layers| (layers.engine(), layers.stats()))
                .collect(),
        }
    }

    /// Pings every engine at once, each bounded by `timeout`, in the order
    /// of [`ENGINES`].
    pub async fn check(&self, timeout: Duration) -> Vec<EngineHealth> {
        let e = &self.engines;
        let (rel, docs, kv, queue) = tokio::join!(
            bounded(timeout, relational::ping(&e.relational)),
            bounded(timeout, timed(e.documents.ping())),
            bounded(timeout, timed(e.kv.ping())),
            bounded(timeout, timed(e.queue.ping())),
        );
        vec![
            EngineHealth {
                engine: ENGINES[0],
                kind: relational::backend_name(&e.relational),
                outcome: rel,
            },
            EngineHealth {
                engine: ENGINES[1],
                kind: e.documents.kind(),
                outcome: docs,
            },
            EngineHealth {
                engine: ENGINES[2],
                kind: e.kv.kind(),
                outcome: kv,
            },
            EngineHealth {
                engine: ENGINES[3],
                kind: e.queue.kind(),
                outcome: queue,
            },
        ]
    }
}

async fn timed(ping: impl Future<Output = Result<()>>) -> Result<Duration> {
    let started = Instant::now();
    ping.await?;
    Ok(started.elapsed())
}

/// Bounds one ping, so that a hung engine cannot hang the check.
async fn bounded(
    timeout: Duration,
    check: impl Future<Output = Result<Duration>>,
) -> Result<Duration> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer within {timeout:?}"),
            ))
        })
}
