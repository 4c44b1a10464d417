//! Real-time analytics: behaviour events (views, clicks, purchases,
//! errors) accepted over HTTP, published on the topic exchange as
//! `event.<type>`, and consumed into
//!
//! - the raw event, in the document collection `events` (`_id` = the
//!   event's id, time-indexed, deleted after `analytics.event_retention`
//!   by a TTL index);
//! - a purchase, in the relational `orders` of its customer;
//! - counters per day and type, and a top-products leaderboard per day and
//!   type, in the key-value engine.
//!
//! Every effect is idempotent, so a redelivered event counts once: the
//! document and the order are keyed by the event id, and a counter is the
//! size of a per-day hash of event ids (`HSET` of an id already there
//! changes nothing); a product's score on the leaderboard is set to that
//! size with `zadd_best`, which only raises it.

use std::sync::Arc;

use async_trait::async_trait;
use bson::doc;
use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engines::document::{DocumentStoreExt, IndexSpec};
use crate::engines::{DocumentStore, KvStore, KvStoreExt};
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::{Handler, Outcome, Pipelines, QueueSpec, Task};
use crate::platform::Platform;
use crate::platform::customers::{Customers, Order};

use super::alerts::Alerts;
use super::population::EVENTS;

/// The kinds of events.
pub const EVENT_TYPES: [&str; 4] = ["view", "click", "purchase", "error"];

/// The most events one request may carry.
pub const MAX_BATCH: usize = 1000;

/// How long the per-day counters and leaderboards are kept.
const COUNTER_DAYS: u64 = 8;

/// The queue of the analytics consumer.
pub fn queue() -> QueueSpec {
    QueueSpec::events("analytics", "event.*")
}

/// An event as a client sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Its id (1 to 128 letters, digits, `-`, `_`, `.`, `:`), which makes
    /// sending it twice harmless; generated when absent.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", max_length = 128)]
    pub id: Option<String>,
    /// The customer.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", max_length = 128)]
    pub user_id: String,
    /// `view`, `click`, `purchase` or `error`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(view|click|purchase|error)$", max_length = 8)]
    pub kind: String,
    /// The product (required for views, clicks and purchases).
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,128}$", max_length = 128)]
    pub product_id: Option<String>,
    /// The product's category.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$", max_length = 64)]
    pub category: Option<String>,
    /// What was paid (purchases only): more than 0, at most 1,000,000.
    #[schema(exclusive_minimum = 0, maximum = 1_000_000)]
    pub amount: Option<f64>,
    /// When it happened (RFC 3339); now when absent.
    #[schema(value_type = Option<String>, format = DateTime, pattern = "^[0-9]{4}-", max_length = 40)]
    pub at: Option<DateTime<Utc>>,
}

/// An event as it travels and is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its id.
    pub id: String,
    /// The customer.
    pub user_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The product.
    pub product_id: Option<String>,
    /// The category.
    pub category: Option<String>,
    /// What was paid.
    pub amount: Option<f64>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

fn is_token(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

impl NewEvent {
    /// Checks the event and completes it (id, time); the error names the
    /// field.
    pub fn check(self, now: DateTime<Utc>) -> Result<Event> {
        let field = |name: &str, why: String| Err(Error::invalid(why).with_field(name));
        if let Some(id) = &self.id
            && !is_token(id)
        {
            return field(
                "id",
                format!("`{id}` is not an event id (1 to 128 letters, digits, `_`, `.`, `:`, `-`)"),
            );
        }
        if !is_token(&self.user_id) {
            return field(
                "user_id",
                "`user_id` must be 1 to 128 letters, digits, `_`, `.`, `:`, `-`".into(),
            );
        }
        if !EVENT_TYPES.contains(&self.kind.as_str()) {
            return field(
                "type",
                format!(
                    "`{}` is not an event type (view, click, purchase, error)",
                    self.kind
                ),
            );
        }
        if let Some(product) = &self.product_id
            && !is_token(product)
        {
            return field(
                "product_id",
                "`product_id` must be 1 to 128 letters, digits, `_`, `.`, `:`, `-`".into(),
            );
        }
        if self.kind != "error" && self.product_id.is_none() {
            return field(
                "product_id",
                format!("a `{}` event needs a `product_id`", self.kind),
            );
        }
        if let Some(category) = &self.category
            && (category.is_empty()
                || category.chars().count() > 64
                || category.chars().any(char::is_control))
        {
            return field(
                "category",
                "`category` must be 1 to 64 characters without control characters".into(),
            );
        }
        match (self.kind.as_str(), self.amount) {
            ("purchase", Some(a)) if a.is_finite() && a > 0.0 && a <= 1_000_000.0 => {}
            ("purchase", _) => {
                return field(
                    "amount",
                    "a purchase needs an `amount` above 0 and at most 1000000".into(),
                );
            }
            (_, Some(_)) => return field("amount", "only a purchase has an `amount`".into()),
            _ => {}
        }
        let at = self.at.unwrap_or(now);
        if !(1..=9998).contains(&at.year()) {
            return field("at", "`at` must be a time in the years 0001 to 9998".into());
        }
        Ok(Event {
            id: self.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            user_id: self.user_id,
            kind: self.kind,
            product_id: self.product_id,
            category: self.category,
            amount: self.amount,
            at,
        })
    }
}

/// Checks a batch and publishes it, all confirmations in flight together.
/// Nothing is published when one event is invalid (the error names it).
/// Returns each event's id, or why the broker did not take it.
pub async fn publish(pipelines: &Pipelines, events: Vec<NewEvent>) -> Result<Vec<Result<String>>> {
    if events.is_empty() || events.len() > MAX_BATCH {
        return Err(Error::invalid(format!("send 1 to {MAX_BATCH} events")).with_field("events"));
    }
    let now = crate::platform::now();
    let mut checked = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let event = event.check(now).map_err(|e| {
            Error::invalid(format!("event {i}: {}", e.message())).with_field(format!("events[{i}]"))
        })?;
        checked.push(event);
    }
    let outgoing = checked
        .into_iter()
        .map(|e| {
            let kind = format!("event.{}", e.kind);
            let id = e.id.clone();
            let value = serde_json::to_value(&e).unwrap_or_default();
            (kind, value, Some(id))
        })
        .collect();
    Ok(pipelines.publish_events(outgoing).await)
}

/// A product and how many events of one type it had.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProductCount {
    /// The product.
    pub product: String,
    /// Its events of the leaderboard's type that day.
    pub count: u64,
}

/// Today's (or a day's) counters and top products.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DaySummary {
    /// The day (UTC).
    pub day: NaiveDate,
    /// Events of each type.
    pub counts: std::collections::BTreeMap<String, u64>,
    /// The most purchased products, most first.
    pub top_purchased: Vec<ProductCount>,
    /// The most viewed products, most first.
    pub top_viewed: Vec<ProductCount>,
}

fn day_key(day: NaiveDate) -> String {
    day.format("%Y%m%d").to_string()
}

fn count_key(day: &str, kind: &str) -> String {
    format!("analytics:events:{day}:{kind}")
}

fn product_key(day: &str, kind: &str, product: &str) -> String {
    format!("analytics:product:{day}:{kind}:{product}")
}

fn top_key(day: &str, kind: &str) -> String {
    format!("analytics:top:{day}:{kind}")
}

fn product_counts(scored: Vec<(String, f64)>) -> Vec<ProductCount> {
    scored
        .into_iter()
        .map(|(product, score)| ProductCount {
            product,
            // Scores are counts, whole and not negative.
            count: score.max(0.0) as u64,
        })
        .collect()
}

/// The counters and leaderboards of `day`.
pub async fn summary(kv: &dyn KvStore, day: NaiveDate, top: usize) -> Result<DaySummary> {
    let key = day_key(day);
    let mut counts = std::collections::BTreeMap::new();
    for kind in EVENT_TYPES {
        counts.insert(kind.to_owned(), kv.hlen(&count_key(&key, kind)).await?);
    }
    let stop = i64::try_from(top.max(1)).unwrap_or(i64::MAX) - 1;
    Ok(DaySummary {
        day,
        counts,
        top_purchased: product_counts(kv.zrevrange(&top_key(&key, "purchase"), 0, stop).await?),
        top_viewed: product_counts(kv.zrevrange(&top_key(&key, "view"), 0, stop).await?),
    })
}

/// The consumer of `event.*`.
#[derive(Debug, Clone)]
pub struct EventsHandler {
    documents: Arc<dyn DocumentStore>,
    kv: Arc<dyn KvStore>,
    customers: Customers,
    alerts: Alerts,
}

impl EventsHandler {
    /// The handler; creates the collection's indexes (a TTL index on `at`
    /// of `retention`).
    pub async fn new(
        platform: &Platform,
        alerts: Alerts,
        retention: std::time::Duration,
    ) -> Result<Self> {
        let documents = platform.documents();
        ensure_indexes(documents.as_ref(), retention).await?;
        Ok(EventsHandler {
            documents,
            kv: platform.kv(),
            customers: platform.customers().clone(),
            alerts,
        })
    }

    async fn apply(&self, event: &Event) -> Result<()> {
        let mut document = doc! {
            "_id": &event.id,
            "user_id": &event.user_id,
            "type": &event.kind,
            "at": bson::DateTime::from_millis(event.at.timestamp_millis()),
        };
        if let Some(p) = &event.product_id {
            document.insert("product_id", p.as_str());
        }
        if let Some(c) = &event.category {
            document.insert("category", c.as_str());
        }
        if let Some(a) = event.amount {
            document.insert("amount", a);
        }
        match self.documents.insert_one(EVENTS, document).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
        if event.kind == "purchase"
            && let (Some(product), Some(amount)) = (&event.product_id, event.amount)
        {
            let order = Order {
                id: event.id.clone(),
                user_id: event.user_id.clone(),
                product_id: product.clone(),
                category: event.category.clone().unwrap_or_else(|| "unknown".into()),
                amount,
                ordered_at: event.at,
            };
            match self.customers.record_order(order).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    return Err(Error::invalid(format!(
                        "purchase {} is by `{}`, who is not a customer; its order was not recorded",
                        event.id, event.user_id
                    )));
                }
                Err(e) => return Err(e),
            }
        }
        let day = day_key(event.at.date_naive());
        let ttl = std::time::Duration::from_secs(COUNTER_DAYS * 86_400);
        let counter = count_key(&day, &event.kind);
        self.kv
            .hset(&counter, vec![(event.id.clone(), Bytes::from_static(b"1"))])
            .await?;
        self.kv.expire(&counter, ttl).await?;
        if let Some(product) = &event.product_id {
            let per_product = product_key(&day, &event.kind, product);
            self.kv
                .hset(
                    &per_product,
                    vec![(event.id.clone(), Bytes::from_static(b"1"))],
                )
                .await?;
            self.kv.expire(&per_product, ttl).await?;
            let count = self.kv.hlen(&per_product).await?;
            let top = top_key(&day, &event.kind);
            self.kv
                .zadd_best(
                    &top,
                    product,
                    count as f64,
                    &format!("{top}:at"),
                    event.at.timestamp_millis(),
                )
                .await?;
            self.kv.expire(&top, ttl).await?;
            self.kv.expire(&format!("{top}:at"), ttl).await?;
        }
        if event.kind == "error" {
            self.alerts
                .check_error_rate(
                    self.kv.as_ref(),
                    &day,
                    &EVENT_TYPES.map(|k| count_key(&day, k)),
                )
                .await?;
        }
        Ok(())
    }
}

/// The indexes of `events`: by user and time, and the TTL index on `at`.
pub async fn ensure_indexes(
    documents: &dyn DocumentStore,
    retention: std::time::Duration,
) -> Result<()> {
    documents
        .create_index(EVENTS, IndexSpec::new(doc! {"user_id": 1, "at": -1}))
        .await?;
    let ttl = IndexSpec::new(doc! {"at": 1}).expire_after(retention);
    match documents.create_index(EVENTS, ttl.clone()).await {
        Ok(_) => Ok(()),
        // `analytics.event_retention` changed: the index takes the new one.
        Err(e) if e.kind() == ErrorKind::Conflict => {
            tracing::info!("the raw events' retention changed; recreating their TTL index");
            documents.drop_index(EVENTS, &ttl.effective_name()).await?;
            documents.create_index(EVENTS, ttl).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Handler for EventsHandler {
    async fn handle(&self, task: Task) -> Outcome {
        let event: Event = match task.json() {
            Ok(event) => event,
            Err(e) => return Outcome::invalid(e),
        };
        Outcome::of(self.apply(&event).await)
    }
}
