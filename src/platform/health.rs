//! [`Health`]: whether each engine answers, and how fast.

use std::time::{Duration, Instant};

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

/// Pings the engines. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    engines: Engines,
}

impl Health {
    pub(crate) fn new(engines: Engines) -> Health {
        Health { engines }
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
