//! The dead-letter store: every message a queue gave up on, kept in the
//! document engine with its payload, headers and history, to be queried,
//! replayed or purged.
//!
//! Collection `dead_letters`, indexed by queue, error class, attempts and
//! time. A dead letter older than `pipelines.dead_letter_retention` is
//! deleted by the worker's recorder.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bson::{Bson, Document, doc};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engines::DocumentStore;
use crate::engines::document::{DocumentStoreExt, FindOptions, IndexSpec};
use crate::engines::queue::{Delivery, FieldValue, Message};
use crate::error::{Error, ErrorKind, Result};

use super::envelope::{self, Attempt};

/// The collection of dead letters.
pub const COLLECTION: &str = "dead_letters";

/// The most dead letters one query returns.
pub const MAX_LIST: u64 = 1000;

/// A message a queue gave up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    /// Its id in the store.
    pub id: String,
    /// The queue it died in (without the prefix).
    pub queue: String,
    /// The message id (its idempotency key; kept on replay).
    pub message_id: String,
    /// The exchange it was first published to.
    pub exchange: String,
    /// The routing key it was first published with.
    pub routing_key: String,
    /// The last error.
    pub error: String,
    /// The class of the last error: `invalid` (its data was refused),
    /// `aborted` (its handler gave up), `exhausted` (every attempt failed),
    /// `poison` (delivered too often without an answer), or the broker's
    /// reason (`rejected`, `expired`, `maxlen`).
    pub error_class: String,
    /// Attempts made.
    pub attempts: u32,
    /// The attempts, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Attempt>,
    /// The message's other headers, as JSON.
    #[schema(value_type = Object)]
    pub headers: BTreeMap<String, serde_json::Value>,
    /// The payload (decompressed): text, or hex when it is not UTF-8.
    pub payload: String,
    /// `utf8` or `hex`.
    pub payload_encoding: String,
    /// The message's priority.
    pub priority: Option<u8>,
    /// When it died.
    pub dead_at: DateTime<Utc>,
    /// Times it was replayed.
    pub replays: u32,
    /// When it was last replayed.
    pub replayed_at: Option<DateTime<Utc>>,
}

impl DeadLetter {
    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Vec<u8> {
        if self.payload_encoding == "hex" {
            (0..self.payload.len() / 2)
                .filter_map(|i| u8::from_str_radix(&self.payload[2 * i..2 * i + 2], 16).ok())
                .collect()
        } else {
            self.payload.as_bytes().to_vec()
        }
    }

    /// The message to put back on its original route: the same id, payload
    /// and priority, the history kept, the attempt count started again.
    pub fn to_message(&self) -> Message {
        let mut message = Message::new(self.payload_bytes());
        message.properties.message_id = Some(self.message_id.clone());
        message.properties.priority = self.priority;
        message.properties.persistent = true;
        message.properties.content_type = self
            .headers
            .get("content_type")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        envelope::set_history(&mut message, &self.history);
        message.properties.headers.insert(
            envelope::REPLAYS.into(),
            FieldValue::Int(i64::from(self.replays) + 1),
        );
        message
    }
}

/// Which dead letters a query, replay or purge takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterFilter {
    /// Only this queue's.
    pub queue: Option<String>,
    /// Only those whose error or error class contains this text (case-insensitive).
    pub error: Option<String>,
    /// Only those that died at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only these ids.
    pub ids: Option<Vec<String>>,
}

impl DeadLetterFilter {
    fn to_document(&self) -> Document {
        let mut filter = Document::new();
        if let Some(queue) = &self.queue {
            filter.insert("queue", queue.as_str());
        }
        if let Some(since) = self.since {
            filter.insert("dead_at", doc! {"$gte": bson_time(since)});
        }
        if let Some(ids) = &self.ids {
            filter.insert(
                "_id",
                doc! {"$in": ids.iter().map(|s| Bson::String(s.clone())).collect::<Vec<_>>()},
            );
        }
        if let Some(text) = &self.error {
            let pattern = regex::escape(text);
            filter.insert(
                "$or",
                vec![
                    Bson::Document(doc! {"error": {"$regex": pattern.clone(), "$options": "i"}}),
                    Bson::Document(doc! {"error_class": {"$regex": pattern, "$options": "i"}}),
                ],
            );
        }
        filter
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    documents: Arc<dyn DocumentStore>,
    retention: Duration,
}

impl DeadLetters {
    /// The store over `documents`.
    pub fn new(documents: Arc<dyn DocumentStore>, retention: Duration) -> Self {
        DeadLetters {
            documents,
            retention,
        }
    }

    /// Creates the collection's indexes (idempotent).
    pub async fn ensure_indexes(&self) -> Result<()> {
        for keys in [
            doc! {"queue": 1, "dead_at": -1},
            doc! {"error_class": 1},
            doc! {"attempts": 1},
            doc! {"dead_at": -1},
        ] {
            self.documents
                .create_index(COLLECTION, IndexSpec::new(keys))
                .await?;
        }
        Ok(())
    }

    /// Keeps a dead letter taken from `queue`'s dead-letter queue and
    /// returns its id. Recording the same one again (a redelivery) keeps
    /// one copy.
    pub async fn record(&self, queue: &str, delivery: &Delivery) -> Result<String> {
        let message = &delivery.message;
        let id = envelope::header_str(message, envelope::DEAD_ID)
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let (exchange, routing_key) = match (
            envelope::header_str(message, envelope::EXCHANGE),
            envelope::header_str(message, envelope::ROUTING_KEY),
        ) {
            (Some(e), Some(k)) => (e.to_owned(), k.to_owned()),
            _ => death_route(message)
                .unwrap_or_else(|| (delivery.exchange.clone(), delivery.routing_key.clone())),
        };
        let history = envelope::history_of(message);
        let attempts = envelope::header_int(message, envelope::ATTEMPT)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(history.len().max(1) as u32);
        let broker_reason = envelope::header_str(message, "x-first-death-reason");
        let error_class = envelope::header_str(message, envelope::ERROR_CLASS)
            .or(broker_reason)
            .unwrap_or("unknown")
            .to_owned();
        let error = envelope::header_str(message, envelope::ERROR)
            .map(str::to_owned)
            .unwrap_or_else(|| match broker_reason {
                Some(reason) => format!("dead-lettered by the broker ({reason})"),
                None => "dead-lettered without a recorded error".into(),
            });
        let payload = envelope::payload_of(message).unwrap_or_else(|_| message.body.clone());
        let (payload, encoding) = match std::str::from_utf8(&payload) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (payload.iter().map(|b| format!("{b:02x}")).collect(), "hex"),
        };
        let mut headers = Document::new();
        for (name, value) in &message.properties.headers {
            if name == envelope::HISTORY {
                continue;
            }
            headers.insert(name.clone(), field_to_bson(value));
        }
        if let Some(ct) = &message.properties.content_type {
            headers.insert("content_type", ct.as_str());
        }
        let history_bson = bson::serialize_to_bson(&history)
            .map_err(|e| Error::internal(format!("dead letter history: {e}")))?;
        let document = doc! {
            "_id": &id,
            "queue": queue,
            "message_id": envelope::message_id(delivery),
            "exchange": exchange,
            "routing_key": routing_key,
            "error": error,
            "error_class": error_class,
            "attempts": i64::from(attempts),
            "history": history_bson,
            "headers": headers,
            "payload": payload,
            "payload_encoding": encoding,
            "priority": message.properties.priority.map(i32::from),
            "dead_at": bson_time(crate::platform::now()),
            "replays": 0i64,
            "replayed_at": Bson::Null,
        };
        match self.documents.insert_one(COLLECTION, document).await {
            Ok(_) => Ok(id),
            Err(e) if e.kind() == ErrorKind::Conflict => Ok(id),
            Err(e) => Err(e),
        }
    }

    /// Dead letters matching `filter`, newest first, at most `limit`
    /// (capped at [`MAX_LIST`]).
    pub async fn list(&self, filter: &DeadLetterFilter, limit: u64) -> Result<Vec<DeadLetter>> {
        let found = self
            .documents
            .find(
                COLLECTION,
                filter.to_document(),
                FindOptions::sorted(doc! {"dead_at": -1, "_id": -1})
                    .limit(limit.clamp(1, MAX_LIST)),
            )
            .await?;
        found.iter().map(from_document).collect()
    }

    /// How many dead letters match `filter`.
    pub async fn count(&self, filter: &DeadLetterFilter) -> Result<u64> {
        self.documents.count(COLLECTION, filter.to_document()).await
    }

    /// How many dead letters each queue has, by queue (queues without
    /// any are absent).
    pub async fn counts_by_queue(&self) -> Result<BTreeMap<String, u64>> {
        let groups = self
            .documents
            .aggregate(
                COLLECTION,
                vec![doc! {"$group": {"_id": "$queue", "n": {"$sum": 1}}}],
            )
            .await?;
        let mut counts = BTreeMap::new();
        for group in groups {
            let queue = group.get_str("_id").unwrap_or_default().to_owned();
            let n = match group.get("n") {
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
                _ => 0,
            };
            *counts.entry(queue).or_insert(0) += n;
        }
        Ok(counts)
    }

    /// One dead letter.
    pub async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        let found = self
            .documents
            .find_one(COLLECTION, doc! {"_id": id}, FindOptions::default())
            .await?;
        found.as_ref().map(from_document).transpose()
    }

    /// Notes that `id` was put back on its route.
    pub async fn mark_replayed(&self, id: &str) -> Result<()> {
        self.documents
            .update_one(
                COLLECTION,
                doc! {"_id": id},
                doc! {"$inc": {"replays": 1i64}, "$set": {"replayed_at": bson_time(crate::platform::now())}},
                false,
            )
            .await?;
        Ok(())
    }

    /// Deletes the dead letters matching `filter`, never more than `max`
    /// (the oldest first); returns how many.
    pub async fn purge(&self, filter: &DeadLetterFilter, max: u64) -> Result<u64> {
        if max == 0 {
            return Ok(0);
        }
        let found = self
            .documents
            .find(
                COLLECTION,
                filter.to_document(),
                FindOptions::sorted(doc! {"dead_at": 1, "_id": 1})
                    .limit(max)
                    .projection(doc! {"_id": 1}),
            )
            .await?;
        let ids: Vec<Bson> = found
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.documents
            .delete_many(COLLECTION, doc! {"_id": {"$in": ids}})
            .await
    }

    /// Deletes the dead letters past their retention; returns how many.
    pub async fn expire(&self) -> Result<u64> {
        let cutoff = crate::platform::now()
            - chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        self.documents
            .delete_many(COLLECTION, doc! {"dead_at": {"$lt": bson_time(cutoff)}})
            .await
    }
}

fn from_document(document: &Document) -> Result<DeadLetter> {
    let text = |k: &str| document.get_str(k).unwrap_or_default().to_owned();
    let int = |k: &str| match document.get(k) {
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Int32(i)) => i64::from(*i),
        Some(Bson::Double(f)) => *f as i64,
        _ => 0,
    };
    let date = |k: &str| match document.get(k) {
        Some(Bson::DateTime(d)) => DateTime::from_timestamp_millis(d.timestamp_millis()),
        _ => None,
    };
    let history: Vec<Attempt> = match document.get("history") {
        Some(history) => bson::deserialize_from_bson(history.clone()).unwrap_or_default(),
        None => Vec::new(),
    };
    let headers = match document.get("headers") {
        Some(Bson::Document(h)) => h
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_relaxed_extjson()))
            .collect(),
        _ => BTreeMap::new(),
    };
    let id = match document.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => return Err(Error::internal("a dead letter without an _id")),
    };
    Ok(DeadLetter {
        id,
        queue: text("queue"),
        message_id: text("message_id"),
        exchange: text("exchange"),
        routing_key: text("routing_key"),
        error: text("error"),
        error_class: text("error_class"),
        attempts: u32::try_from(int("attempts")).unwrap_or(0),
        history,
        headers,
        payload: text("payload"),
        payload_encoding: text("payload_encoding"),
        priority: match document.get("priority") {
            Some(Bson::Int32(p)) => u8::try_from(*p).ok(),
            Some(Bson::Int64(p)) => u8::try_from(*p).ok(),
            _ => None,
        },
        dead_at: date("dead_at").unwrap_or_default(),
        replays: u32::try_from(int("replays")).unwrap_or(0),
        replayed_at: date("replayed_at"),
    })
}

/// The route in the broker's own death record (`x-death`), for messages
/// the broker dead-lettered itself.
fn death_route(message: &Message) -> Option<(String, String)> {
    let exchange = envelope::header_str(message, "x-first-death-exchange")?.to_owned();
    let key = match message.properties.headers.get("x-death") {
        Some(FieldValue::Array(deaths)) => deaths.first().and_then(|d| match d {
            FieldValue::Table(t) => match t.get("routing-keys") {
                Some(FieldValue::Array(keys)) => keys.first().and_then(|k| match k {
                    FieldValue::String(s) => Some(s.clone()),
                    _ => None,
                }),
                _ => None,
            },
            _ => None,
        }),
        _ => None,
    }?;
    Some((exchange, key))
}

fn field_to_bson(value: &FieldValue) -> Bson {
    match value {
        FieldValue::String(s) => Bson::String(s.clone()),
        FieldValue::Int(i) => Bson::Int64(*i),
        FieldValue::Float(f) => Bson::Double(*f),
        FieldValue::Bool(b) => Bson::Boolean(*b),
        FieldValue::Array(items) => Bson::Array(items.iter().map(field_to_bson).collect()),
        FieldValue::Table(table) => Bson::Document(
            table
                .iter()
                .map(|(k, v)| (k.clone(), field_to_bson(v)))
                .collect(),
        ),
    }
}

fn bson_time(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}
