//! The transactional outbox: events written in the same SQL transaction as
//! the change they describe, and the [`Relay`] that publishes them.
//!
//! # What MUST hold
//!
//! - An event exists exactly when its change committed: [`enqueue`] takes
//!   the change's own transaction, so a rolled-back change leaves no row
//!   and a committed one always has its row.
//! - Every committed event is published at least once: a relay publishes
//!   a row, waits for the broker's confirm, and only then marks it sent. A
//!   relay that dies in between leaves the row unsent; once its claim has
//!   run out another relay publishes it again.
//! - A row is published again with the same `message_id`
//!   (`outbox-{seq}`) and the same body: consumers dedupe on it (or on
//!   `seq`), so at-least-once delivery has exactly-once effects for them.
//! - Several relays may run at once, in one process or many: a relay
//!   publishes only rows it claimed (`claimed_by`, `claimed_until`), and a
//!   claim is taken by one relay at a time (PostgreSQL: `FOR UPDATE SKIP
//!   LOCKED`; SQLite serialises writers).
//! - No order is promised between events: a batch is published with many
//!   confirms in flight, and a retried event comes after later ones.
//!   Consumers order by `seq` per aggregate (see `platform::read_model`).
//!
//! # The event
//!
//! The message body is JSON, `content_type = application/json`,
//! persistent, with header `x-strata-seq`, routed with the topic as
//! routing key:
//!
//! ```json
//! {"type": "run.completed", "seq": 42, "at": "2026-12-01T10:00:00.123456Z",
//!  "model_id": "fd-19", "data": {"run_id": 19, "status": "completed", ...}}
//! ```
//!
//! Topics and their `data` ([`topics`]):
//!
//! - `run.registered`: a registration completed on every engine (written
//!   with the saga's completion, so a registration that was undone never
//!   announces itself): `run_id`, `model_name`, `framework`, `dataset`,
//!   `dataset_id`, `status` (`running`), `started_at`.
//! - `run.completed`: a run ended: `run_id`, `model_name`, `framework`,
//!   `status` (`completed` or `failed`), `metrics` (`accuracy`, `loss`,
//!   `training_time_seconds`, each possibly `null`), `started_at`,
//!   `completed_at`.
//! - `alias.moved`: `model_name@alias` now points at an artifact of the
//!   run `model_id`: `model_name`, `alias`, `from_artifact_id`,
//!   `from_model_id` (both `null` for a new alias), `to_artifact_id`,
//!   `moved_by`, `reason`, `moved_at`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Set, Statement,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::OutboxConfig;
use crate::engines::queue::{Broker, Message, Outgoing, Published};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::platform::entities::outbox;
use crate::platform::now;
use crate::platform::registry::db_err;

/// The routing keys of the events strata writes.
pub mod topics {
    /// A registration completed on every engine.
    pub const RUN_REGISTERED: &str = "run.registered";
    /// A run ended (`completed` or `failed`), with its metrics.
    pub const RUN_COMPLETED: &str = "run.completed";
    /// An alias moved to another artifact (or was created).
    pub const ALIAS_MOVED: &str = "alias.moved";
}

/// The header carrying the event's sequence.
pub const SEQ_HEADER: &str = "x-strata-seq";

/// One event of the outbox, as stored and as published.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// Its sequence: the outbox row's id. Increasing in commit order per
    /// writer; a later `seq` of the same aggregate describes a later change.
    pub seq: i64,
    /// Its routing key ([`topics`]).
    pub topic: String,
    /// The `model_id` it is about.
    pub aggregate: String,
    /// When its change committed.
    pub at: DateTime<Utc>,
    /// The event's `data` (see the module docs for each topic's fields).
    pub payload: serde_json::Value,
}

impl OutboxEvent {
    fn from_row(row: &outbox::Model) -> Result<OutboxEvent> {
        let payload = serde_json::from_str(&row.payload).map_err(|e| {
            Error::internal(format!("outbox event {}: unreadable payload: {e}", row.id))
                .with_operation("outbox")
        })?;
        Ok(OutboxEvent {
            seq: row.id,
            topic: row.topic.clone(),
            aggregate: row.aggregate.clone(),
            at: row.created_at,
            payload,
        })
    }

    /// The message body: `{"type", "seq", "at", "model_id", "data"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": self.topic,
            "seq": self.seq,
            "at": self.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "model_id": self.aggregate,
            "data": self.payload,
        })
    }

    /// The message id every publication of this event carries:
    /// `outbox-{seq}`.
    pub fn message_id(&self) -> String {
        format!("outbox-{}", self.seq)
    }

    /// The message a relay publishes: JSON, persistent, with its message id
    /// and the `x-strata-seq` header.
    pub fn message(&self) -> Message {
        Message::json(&self.to_json())
            .persistent()
            .with_message_id(self.message_id())
            .with_header(SEQ_HEADER, self.seq)
    }
}

/// Reads a published event back from a message body. A body that is not
/// such an event is `InvalidInput` saying what is wrong.
pub fn parse_event(body: &[u8]) -> Result<OutboxEvent> {
    let invalid = |what: &str| Error::invalid(format!("not a strata outbox event: {what}"));
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(&format!("malformed JSON ({e})")))?;
    let text = |field: &str| {
        value
            .get(field)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| invalid(&format!("`{field}` must be a string")))
    };
    let seq = value
        .get("seq")
        .and_then(serde_json::Value::as_i64)
        .filter(|s| *s > 0)
        .ok_or_else(|| invalid("`seq` must be a positive integer"))?;
    let at = DateTime::parse_from_rfc3339(&text("at")?)
        .map_err(|e| invalid(&format!("`at` is not an RFC 3339 time ({e})")))?
        .with_timezone(&Utc);
    let payload = value
        .get("data")
        .filter(|d| d.is_object())
        .cloned()
        .ok_or_else(|| invalid("`data` must be an object"))?;
    Ok(OutboxEvent {
        seq,
        topic: text("type")?,
        aggregate: text("model_id")?,
        at,
        payload,
    })
}

/// Writes an event into the outbox on `conn`, which MUST be the
/// transaction of the change it describes. Returns its `seq`. The caller
/// wakes the relays once the transaction committed
/// ([`Outbox::committed`]).
pub(crate) async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    topic: &str,
    aggregate: &str,
    data: serde_json::Value,
) -> Result<i64> {
    let row = outbox::ActiveModel {
        id: NotSet,
        topic: Set(topic.to_owned()),
        aggregate: Set(aggregate.to_owned()),
        payload: Set(data.to_string()),
        created_at: Set(now()),
        sent_at: Set(None),
        claimed_by: Set(None),
        claimed_until: Set(None),
        attempts: Set(0),
        last_error: Set(None),
    }
    .insert(conn)
    .await
    .map_err(db_err("outbox"))?;
    Ok(row.id)
}

/// The outbox of this platform: hands out relays, counts the backlog, and
/// is told when this process committed an event. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    db: DatabaseConnection,
    config: OutboxConfig,
    /// Bumped after each local commit that wrote an event; every relay of
    /// this process watches it (a `watch` rather than a `Notify`, so that
    /// a relay busy publishing when the commit happens still sees it).
    commits: Arc<watch::Sender<u64>>,
}

impl Outbox {
    pub(crate) fn new(db: DatabaseConnection, config: OutboxConfig) -> Outbox {
        Outbox {
            db,
            config,
            commits: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Wakes this process's relays: an event was committed.
    pub(crate) async fn committed(&self) {
        // Lets a test stop the process between a commit and any
        // publication (`abort`); `error` only skips the wake-up, leaving
        // the event to the next poll.
        if let Err(e) = failpoint::check("outbox.after_commit").await {
            tracing::warn!("{e}");
            return;
        }
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A relay publishing this outbox to `exchange` (the pipelines' topic
    /// exchange, which must exist: the relay declares nothing) through
    /// `broker`, with the `[outbox]` settings.
    pub fn relay(&self, broker: Arc<dyn Broker>, exchange: impl Into<String>) -> Relay {
        Relay {
            db: self.db.clone(),
            broker,
            exchange: exchange.into(),
            config: self.config,
            id: format!("relay-{}", uuid::Uuid::now_v7().simple()),
            commits: self.commits.subscribe(),
            faults: None,
        }
    }

    /// How many events are not sent yet.
    pub async fn backlog(&self) -> Result<u64> {
        outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .count(&self.db)
            .await
            .map_err(db_err("outbox_backlog"))
    }

    /// Every event still kept (unsent or within its retention), oldest
    /// first, as stored: for inspection and replays.
    pub async fn events(&self) -> Result<Vec<OutboxEvent>> {
        use sea_orm::QueryOrder;
        outbox::Entity::find()
            .order_by_asc(outbox::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_err("outbox_events"))?
            .iter()
            .map(OutboxEvent::from_row)
            .collect()
    }
}

/// Where a relay's pass can be made to fail, for tests ([`Relay::with_faults`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayPoint {
    /// The batch is claimed, nothing is published yet.
    AfterClaim,
    /// The batch is published and confirmed, not yet marked sent.
    AfterPublish,
}

/// Called at each [`RelayPoint`]; an error ends the pass there, as a crash
/// would (the claims stay until their lease runs out).
pub type RelayFaults = Arc<dyn Fn(RelayPoint) -> Result<()> + Send + Sync>;

/// What one pass of a relay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayPass {
    /// Events published (confirmed by the broker) and marked sent.
    pub published: usize,
    /// Events whose publication failed: their claim is released, their
    /// `attempts` counted, and a later pass tries again.
    pub failed: usize,
}

/// Publishes the outbox to an exchange: claims a batch of unsent events,
/// publishes them with confirms, marks the confirmed ones sent. See the
/// module docs for what it guarantees.
pub struct Relay {
    db: DatabaseConnection,
    broker: Arc<dyn Broker>,
    exchange: String,
    config: OutboxConfig,
    id: String,
    commits: watch::Receiver<u64>,
    faults: Option<RelayFaults>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("id", &self.id)
            .field("exchange", &self.exchange)
            .field("config", &self.config)
            .field("faults", &self.faults.is_some())
            .finish()
    }
}

/// How often the relay loop deletes sent events past their retention.
const PURGE_EVERY: Duration = Duration::from_secs(60);

impl Relay {
    /// This relay's name, as written in `claimed_by`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The same relay with other settings (batch, lease, ...).
    pub fn with_config(mut self, config: OutboxConfig) -> Relay {
        self.config = config;
        self
    }

    /// The same relay with `faults` called at each [`RelayPoint`] (tests).
    pub fn with_faults(mut self, faults: RelayFaults) -> Relay {
        self.faults = Some(faults);
        self
    }

    async fn inject(&self, point: RelayPoint) -> Result<()> {
        let name = match point {
            RelayPoint::AfterClaim => "outbox.relay.after_claim",
            RelayPoint::AfterPublish => "outbox.relay.after_publish",
        };
        failpoint::check(name).await?;
        match &self.faults {
            Some(faults) => faults(point),
            None => Ok(()),
        }
    }

    /// One pass: claims up to `batch` unsent events whose claim is free or
    /// ran out, publishes them, marks the confirmed ones sent and releases
    /// the others. An error (of the relational engine, or injected) ends the
    /// pass; what it claimed is taken over once the lease runs out.
    pub async fn run_once(&self) -> Result<RelayPass> {
        let claimed = self.claim().await?;
        if claimed.is_empty() {
            return Ok(RelayPass::default());
        }
        self.inject(RelayPoint::AfterClaim).await?;
        let mut events = Vec::with_capacity(claimed.len());
        let mut unreadable = Vec::new();
        for row in &claimed {
            match OutboxEvent::from_row(row) {
                Ok(event) => events.push(event),
                Err(e) => unreadable.push((row.id, e)),
            }
        }
        let messages = events
            .iter()
            .map(|e| (e.topic.clone(), e.message()))
            .collect();
        let outcomes = publish_all(self.broker.as_ref(), &self.exchange, messages).await;
        self.inject(RelayPoint::AfterPublish).await?;
        let mut sent = Vec::new();
        let mut failed = unreadable;
        for (event, outcome) in events.iter().zip(outcomes) {
            match outcome {
                Ok(_) => sent.push(event.seq),
                Err(e) => failed.push((event.seq, e)),
            }
        }
        self.mark_sent(&sent).await?;
        for (seq, error) in &failed {
            tracing::warn!(seq, relay = %self.id, "outbox event not published: {error}");
            self.release(*seq, &error.to_string()).await?;
        }
        Ok(RelayPass {
            published: sent.len(),
            failed: failed.len(),
        })
    }

    /// Deletes events sent longer ago than the retention; returns how many.
    pub async fn purge_sent(&self) -> Result<u64> {
        let before = now() - chrono::Duration::from_std(self.config.retention).unwrap_or_default();
        outbox::Entity::delete_many()
            .filter(outbox::Column::SentAt.lt(before))
            .exec(&self.db)
            .await
            .map(|r| r.rows_affected)
            .map_err(db_err("outbox_purge"))
    }

    /// Runs passes until `shutdown` is cancelled: at once again while
    /// passes come back full, else when this process commits an event or
    /// `poll_interval` has passed. Deletes sent events past their retention
    /// every minute. Errors are logged, and the next pass tries again.
    pub fn spawn(mut self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_purge: Option<tokio::time::Instant> = None;
            loop {
                // Commits seen from here on wake the next wait.
                self.commits.mark_unchanged();
                let full = match self.run_once().await {
                    Ok(pass) => pass.published + pass.failed >= self.config.batch,
                    Err(e) => {
                        tracing::warn!(relay = %self.id, "outbox relay pass failed: {e}");
                        false
                    }
                };
                if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                    last_purge = Some(tokio::time::Instant::now());
                    if let Err(e) = self.purge_sent().await {
                        tracing::warn!(relay = %self.id, "outbox purge failed: {e}");
                    }
                }
                if shutdown.is_cancelled() {
                    break;
                }
                if full {
                    continue;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    changed = self.commits.changed() => {
                        if changed.is_err() {
                            // The platform is gone: only the poll is left.
                            tokio::select! {
                                () = shutdown.cancelled() => break,
                                () = tokio::time::sleep(self.config.poll_interval) => {}
                            }
                        }
                    }
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
        })
    }

    /// Claims the oldest unsent events that no live claim holds.
    async fn claim(&self) -> Result<Vec<outbox::Model>> {
        let backend = self.db.get_database_backend();
        let at = now();
        let until = at + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
        let limit = i64::try_from(self.config.batch).unwrap_or(i64::MAX);
        let sql = match backend {
            DbBackend::Postgres => {
                "UPDATE outbox SET claimed_by = $1, claimed_until = $2 \
                 WHERE id IN (SELECT id FROM outbox \
                   WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= $3) \
                   ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 RETURNING *"
            }
            // One writer at a time: the statement runs alone.
            _ => {
                "UPDATE outbox SET claimed_by = ?, claimed_until = ? \
                 WHERE id IN (SELECT id FROM outbox \
                   WHERE sent_at IS NULL AND (claimed_until IS NULL OR claimed_until <= ?) \
                   ORDER BY id LIMIT ?) \
                 RETURNING *"
            }
        };
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [
                self.id.clone().into(),
                until.into(),
                at.into(),
                limit.into(),
            ],
        );
        let mut rows = outbox::Entity::find()
            .from_raw_sql(statement)
            .all(&self.db)
            .await
            .map_err(db_err("outbox_claim"))?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    async fn mark_sent(&self, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(500) {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::SentAt, Expr::value(Some(now())))
                .col_expr(
                    outbox::Column::ClaimedBy,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    outbox::Column::ClaimedUntil,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .filter(outbox::Column::Id.is_in(chunk.iter().copied()))
                .filter(outbox::Column::SentAt.is_null())
                .exec(&self.db)
                .await
                .map_err(db_err("outbox_mark_sent"))?;
        }
        Ok(())
    }

    /// Counts a failed publication and frees the claim, if still ours.
    async fn release(&self, seq: i64, error: &str) -> Result<()> {
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .col_expr(
                outbox::Column::LastError,
                Expr::value(Some(error.to_owned())),
            )
            .col_expr(
                outbox::Column::ClaimedBy,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                outbox::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(outbox::Column::Id.eq(seq))
            .filter(outbox::Column::ClaimedBy.eq(self.id.clone()))
            .exec(&self.db)
            .await
            .map(|_| ())
            .map_err(db_err("outbox_release"))
    }
}

/// Publishes every message with its confirm awaited, all in flight at
/// once; one outcome per message, in order.
async fn publish_all(
    broker: &dyn Broker,
    exchange: &str,
    messages: Vec<(String, Message)>,
) -> Vec<Result<Published>> {
    broker
        .publish_batch(
            messages
                .into_iter()
                .map(|(key, message)| Outgoing::new(exchange, key, message))
                .collect(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_its_message_body() {
        let event = OutboxEvent {
            seq: 42,
            topic: topics::RUN_COMPLETED.into(),
            aggregate: "fd-19".into(),
            at: now(),
            payload: serde_json::json!({"run_id": 19, "status": "completed"}),
        };
        let message = event.message();
        assert_eq!(message.properties.message_id.as_deref(), Some("outbox-42"));
        assert!(message.properties.persistent);
        assert_eq!(parse_event(&message.body).unwrap(), event);
    }

    #[test]
    fn a_body_that_is_no_event_is_invalid_input() {
        for body in [
            &b"not json"[..],
            br#"{"type": "run.completed"}"#,
            br#"{"type": "t", "seq": 0, "at": "2026-01-01T00:00:00Z", "model_id": "m", "data": {}}"#,
            br#"{"type": "t", "seq": 1, "at": "yesterday", "model_id": "m", "data": {}}"#,
            br#"{"type": "t", "seq": 1, "at": "2026-01-01T00:00:00Z", "model_id": "m", "data": 3}"#,
        ] {
            let e = parse_event(body).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{e}");
            assert!(e.to_string().contains("not a strata outbox event"), "{e}");
        }
    }
}
