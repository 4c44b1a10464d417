//! Section 12: personalization: a seeded population, the analytics model
//! trained on it, and a customer's recommendations, first provisional
//! (no prediction yet, a prediction task queued), then their own once the
//! task ran.

use super::pipelines::DemoPipelines;
use super::{Out, opt, timestamp};
use crate::analytics::personalize::Recommendations;
use crate::analytics::population::{self, seed_population};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::pipelines::WorkerStats;
use crate::platform::Platform;

/// The population: small enough to seed in seconds, large enough to train.
const USERS: u64 = 300;
const EVENTS: u64 = 6000;
const SEED: u64 = 42;

/// The customer asked about.
const CUSTOMER: u64 = 7;

/// Recommended items shown.
const ITEMS: usize = 5;

pub(super) async fn section(
    platform: &Platform,
    demo: &DemoPipelines,
    out: &mut Out<'_>,
) -> Result<()> {
    let started = out.section(
        12,
        "Pipeline: personalization",
        "Recommendations come through the `recommendations` cache, from the profile (SQL), the \
         activity (an aggregation of the raw events) and the customer's predictions (key-value). \
         Before the first prediction the answer is provisional, and an urgent prediction task \
         is queued; once it ran, the answer is the customer's own.",
    )?;
    out.step(&format!(
        "A seeded population ({USERS} customers, {EVENTS} events, seed {SEED}), then the analytics model trained on it"
    ))?;
    let seeded = seed_population(platform, USERS, EVENTS, SEED, &|_| {}).await?;
    let evaluation = demo.scenario.analytics.train().await?;
    let report = &evaluation.report;
    let mut table = output::table(&["what", "value"]);
    for (what, value) in [
        (
            "customers added / asked for",
            format!("{} / {}", seeded.users_added, seeded.users),
        ),
        (
            "events added / asked for",
            format!("{} / {}", seeded.events_added, seeded.events),
        ),
        ("trained as of (the latest order)", timestamp(report.as_of)),
        ("customers in the model", report.users.to_string()),
        ("orders", report.orders.to_string()),
        (
            "churn AUC (held out)",
            opt(report.churn.auc.map(|a| format!("{a:.2}"))),
        ),
        (
            "churn AUC of recency alone",
            opt(report.churn.recency_auc.map(|a| format!("{a:.2}"))),
        ),
    ] {
        table.add_row(vec![what.to_owned(), value]);
    }
    out.table(table)?;

    let user = population::user_id(CUSTOMER);
    let personalization = &demo.scenario.personalization;
    // An answer an earlier demo left in the cache would skip the first act.
    personalization.forget(&user).await;
    let mut table = output::table(&[
        "request",
        "provisional",
        "segment",
        "churn probability",
        "lifetime value",
        &format!("top {ITEMS} items"),
    ]);
    let mut row = |what: &str, answer: &Recommendations| {
        table.add_row(vec![
            what.to_owned(),
            answer.provisional.to_string(),
            answer.segment.clone(),
            opt(answer.churn_probability.map(|p| format!("{p:.3}"))),
            opt(answer.ltv.map(|v| format!("{v:.2}"))),
            answer
                .items
                .iter()
                .take(ITEMS)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    };
    let done_before = WorkerStats::get(&demo.stats().done);
    let (first, _) = personalization.recommend(&user).await?;
    if !first.provisional {
        return Err(Error::internal(format!(
            "{user} had predictions before the demo asked"
        )));
    }
    row("first: no prediction yet", &first);
    demo.wait("the prediction task", |s| {
        WorkerStats::get(&s.done) > done_before
    })
    .await?;
    let (second, _) = personalization.recommend(&user).await?;
    row("again, once the task ran", &second);
    out.step(&format!(
        "GET /v1/users/{user}/recommendations, twice ({} views, {} clicks, {} purchases in the raw events)",
        first.activity.views, first.activity.clicks, first.activity.purchases
    ))?;
    out.table(table)?;
    out.line(
        "The provisional answer (the ACTIVE segment's popular items) is never cached; the \
         prediction task stored the scores and invalidated the cached answer on every \
         instance, so the next request loaded the customer's own.",
    )?;
    out.took(started)
}
