//! Alerts: an `alert.<kind>` event on the topic exchange when a threshold
//! is crossed, at most once per kind (and queue) per window; a consumer
//! keeps them in the document collection `alerts`.
//!
//! - `alert.error_rate`: the share of `error` events of a day, once at
//!   least `alert_min_events` events were counted that day, is above
//!   `alert_error_rate`;
//! - `alert.queue_depth`: a work queue holds more than `alert_queue_depth`
//!   ready messages (checked every `alert_window` by each worker).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::doc;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::engines::document::{DocumentStoreExt, FindOptions, IndexSpec};
use crate::engines::kv::{SetCondition, SetOptions};
use crate::engines::{DocumentStore, KvStore, KvStoreExt};
use crate::error::{ErrorKind, Result};
use crate::pipelines::{Handler, Outcome, Pipelines, QueueSpec, Task};

/// The collection of alerts.
pub const COLLECTION: &str = "alerts";

/// The queue of the alerts consumer.
pub fn queue() -> QueueSpec {
    QueueSpec::events("alerts", "alert.*")
}

/// The thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertThresholds {
    /// Share of error events above which an alert is raised.
    pub error_rate: f64,
    /// Events a day must have before its error rate counts.
    pub min_events: u64,
    /// Ready messages in a queue above which an alert is raised.
    pub queue_depth: u64,
    /// At most one alert per kind (and queue) per window.
    pub window: Duration,
}

/// Raises alerts.
#[derive(Debug, Clone)]
pub struct Alerts {
    pipelines: Pipelines,
    kv: Arc<dyn KvStore>,
    thresholds: AlertThresholds,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// Its id (the message id).
    pub id: String,
    /// `error_rate` or `queue_depth`.
    pub kind: String,
    /// What was measured and the threshold.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When it was raised.
    pub at: chrono::DateTime<chrono::Utc>,
}

impl Alerts {
    /// Alerts over `pipelines` with `thresholds`.
    pub fn new(pipelines: &Pipelines, kv: Arc<dyn KvStore>, thresholds: AlertThresholds) -> Self {
        Alerts {
            pipelines: pipelines.clone(),
            kv,
            thresholds,
        }
    }

    /// Publishes `alert.<kind>` unless one with `scope` was published
    /// within the window; `true` when this call published it.
    async fn raise(&self, kind: &str, scope: &str, details: serde_json::Value) -> Result<bool> {
        let window = self.thresholds.window.max(Duration::from_secs(1));
        let slot = crate::platform::now().timestamp()
            / i64::try_from(window.as_secs()).unwrap_or(60).max(1);
        let key = format!(
            "{}:alert:{kind}:{scope}:{slot}",
            self.pipelines.config().prefix
        );
        let first = self
            .kv
            .set_with(
                &key,
                Bytes::from_static(b"1"),
                SetOptions {
                    condition: SetCondition::IfAbsent,
                    ..SetOptions::ttl(window * 2)
                },
            )
            .await?;
        if !first {
            return Ok(false);
        }
        let payload =
            json!({"kind": kind, "scope": scope, "details": details, "at": crate::platform::now()});
        self.pipelines
            .publish_events(vec![(format!("alert.{kind}"), payload, Some(key))])
            .await
            .pop()
            .unwrap_or_else(|| Err(crate::error::Error::internal("no publish result")))?;
        tracing::warn!(kind, scope, "alert raised");
        Ok(true)
    }

    /// Checks a day's error rate from its per-type counters (hashes of
    /// event ids; the last key is the errors').
    pub async fn check_error_rate(
        &self,
        kv: &dyn KvStore,
        day: &str,
        counters: &[String],
    ) -> Result<bool> {
        let mut total = 0;
        let mut errors = 0;
        for key in counters {
            let n = kv.hlen(key).await?;
            total += n;
            if key.ends_with(":error") {
                errors = n;
            }
        }
        if total < self.thresholds.min_events.max(1) {
            return Ok(false);
        }
        let rate = errors as f64 / total as f64;
        if rate <= self.thresholds.error_rate {
            return Ok(false);
        }
        self.raise(
            "error_rate",
            day,
            json!({"day": day, "errors": errors, "events": total, "rate": rate, "threshold": self.thresholds.error_rate}),
        )
        .await
    }

    /// Checks the depth of each of `queues` once.
    pub async fn check_queue_depths(&self, queues: &[String]) -> Result<u32> {
        let mut raised = 0;
        for queue in queues {
            let depth = match self.pipelines.depth(queue).await {
                Ok(depth) => depth,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if depth > self.thresholds.queue_depth
                && self
                    .raise(
                        "queue_depth",
                        queue,
                        json!({"queue": queue, "depth": depth, "threshold": self.thresholds.queue_depth}),
                    )
                    .await?
            {
                raised += 1;
            }
        }
        Ok(raised)
    }

    /// Checks the queues' depths every window until `stop`.
    pub fn watch_queues(
        self,
        queues: Vec<String>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval(self.thresholds.window.max(Duration::from_secs(1)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                if let Err(e) = self.check_queue_depths(&queues).await {
                    tracing::warn!(error = %e, "cannot check the queues' depths");
                }
            }
        })
    }
}

/// Keeps each alert in the document engine.
#[derive(Debug, Clone)]
pub struct AlertsHandler {
    documents: Arc<dyn DocumentStore>,
}

impl AlertsHandler {
    /// The handler; creates the collection's index.
    pub async fn new(documents: Arc<dyn DocumentStore>) -> Result<Self> {
        documents
            .create_index(COLLECTION, IndexSpec::new(doc! {"at": -1}))
            .await?;
        Ok(AlertsHandler { documents })
    }
}

/// The latest alerts, newest first.
pub async fn latest(documents: &dyn DocumentStore, limit: u64) -> Result<Vec<Alert>> {
    let found = documents
        .find(
            COLLECTION,
            doc! {},
            FindOptions::sorted(doc! {"at": -1}).limit(limit.clamp(1, 1000)),
        )
        .await?;
    Ok(found
        .into_iter()
        .map(|d| Alert {
            id: d.get_str("_id").unwrap_or_default().to_owned(),
            kind: d.get_str("kind").unwrap_or_default().to_owned(),
            details: d
                .get("details")
                .cloned()
                .map(|b| b.into_relaxed_extjson())
                .unwrap_or_default(),
            at: match d.get("at") {
                Some(bson::Bson::DateTime(t)) => {
                    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
                        .unwrap_or_default()
                }
                _ => chrono::DateTime::default(),
            },
        })
        .collect())
}

#[async_trait]
impl Handler for AlertsHandler {
    async fn handle(&self, task: Task) -> Outcome {
        let alert: serde_json::Value = match task.json() {
            Ok(v) => v,
            Err(e) => return Outcome::invalid(e),
        };
        let details = bson::Bson::try_from(alert["details"].clone()).unwrap_or(bson::Bson::Null);
        let document = doc! {
            "_id": &task.id,
            "kind": alert["kind"].as_str().unwrap_or_default(),
            "scope": alert["scope"].as_str().unwrap_or_default(),
            "details": details,
            "at": bson::DateTime::from_millis(crate::platform::now().timestamp_millis()),
        };
        match self.documents.insert_one(COLLECTION, document).await {
            Ok(_) => Outcome::Done,
            Err(e) if e.kind() == ErrorKind::Conflict => Outcome::Done,
            Err(e) => Outcome::of(Err(e)),
        }
    }
}
