//! Section 11: real-time analytics: a batch of views, clicks and purchases
//! published with all confirmations in flight together, consumed into raw
//! event documents, orders, and the day's counters and top products.

use chrono::{NaiveDate, TimeZone, Utc};

use super::Out;
use super::onboarding::ada;
use super::pipelines::DemoPipelines;
use crate::analytics::events::{self, NewEvent};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::pipelines::WorkerStats;
use crate::platform::Platform;

/// The day of the demo's events: fixed, so their counters are the same on
/// every run (and, keyed by the events' fixed ids, counted once).
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default()
}

/// The batch: (type, product, amount, minute of the day's 10 o'clock hour).
const EVENTS: [(&str, &str, Option<f64>, u32); 12] = [
    ("view", "books-01", None, 0),
    ("view", "games-03", None, 1),
    ("view", "books-01", None, 2),
    ("click", "books-01", None, 3),
    ("view", "music-02", None, 4),
    ("view", "games-03", None, 5),
    ("view", "books-01", None, 6),
    ("click", "games-03", None, 7),
    ("purchase", "books-01", Some(24.99), 8),
    ("view", "kitchen-04", None, 9),
    ("purchase", "games-03", Some(59.0), 10),
    ("purchase", "books-01", Some(24.99), 11),
];

pub(super) async fn section(
    platform: &Platform,
    demo: &DemoPipelines,
    out: &mut Out<'_>,
) -> Result<()> {
    let started = out.section(
        11,
        "Pipeline: real-time analytics",
        "Events are published on the topic exchange as `event.<type>`; the analytics consumer \
         keeps each raw event as a document (deleted by a TTL index), each purchase as an \
         order, and per-day counters and top products in the key-value engine, all keyed by \
         the event's id so that a redelivery counts once.",
    )?;
    let user = ada(demo);
    let batch: Vec<NewEvent> = EVENTS
        .iter()
        .enumerate()
        .map(|(i, (kind, product, amount, minute))| NewEvent {
            id: Some(format!("demo-event-{:02}", i + 1)),
            user_id: user.clone(),
            kind: (*kind).to_owned(),
            product_id: Some((*product).to_owned()),
            category: product.split('-').next().map(str::to_owned),
            amount: *amount,
            at: day()
                .and_hms_opt(10, *minute, 0)
                .map(|t| Utc.from_utc_datetime(&t)),
        })
        .collect();
    let count = batch.len() as u64;
    let done_before = WorkerStats::get(&demo.stats().done);
    let published = events::publish(&demo.pipelines, batch).await?;
    let taken = published.iter().filter(|r| r.is_ok()).count();
    if let Some(Err(e)) = published.into_iter().find(|r| r.is_err()) {
        return Err(e);
    }
    out.line(format!(
        "Published {taken} events of {} by {} in one batch (POST /v1/events), every \
         confirmation in flight together.",
        day(),
        demo.shown(&user)
    ))?;
    demo.wait("the events", |s| {
        WorkerStats::get(&s.done) >= done_before + count
    })
    .await?;

    let summary = events::summary(platform.kv().as_ref(), day(), 3).await?;
    out.step(&format!(
        "The counters of {} (GET /v1/analytics/today, for that day)",
        summary.day
    ))?;
    let mut table = output::table(&["event type", "events"]);
    for (kind, n) in &summary.counts {
        table.add_row(vec![kind.clone(), n.to_string()]);
    }
    out.table(table)?;

    out.step("Top products of the day, by type (ties: who got there first)")?;
    let mut table = output::table(&[
        "rank",
        "most viewed",
        "views",
        "most purchased",
        "purchases",
    ]);
    let rows = summary.top_viewed.len().max(summary.top_purchased.len());
    let cell = |list: &[crate::analytics::events::ProductCount], i: usize| match list.get(i) {
        Some(top) => (top.product.clone(), top.count.to_string()),
        None => ("-".to_owned(), "-".to_owned()),
    };
    for i in 0..rows {
        let (viewed, views) = cell(&summary.top_viewed, i);
        let (bought, purchases) = cell(&summary.top_purchased, i);
        table.add_row(vec![(i + 1).to_string(), viewed, views, bought, purchases]);
    }
    out.table(table)?;
    if summary.counts.values().sum::<u64>() < count {
        return Err(Error::internal(
            "the day's counters miss some of the demo's events",
        ));
    }
    out.line(
        "A counter is the size of a per-day hash of event ids, and a product's score only \
         rises: sending the same batch again changes none of these numbers.",
    )?;
    out.took(started)
}
