//! Section 9: online serving: features fresh then stale, a batch read, a
//! prediction computed then cached then invalidated by a feature write,
//! the leaderboard, a rate limit tripping, and a lock contended with a
//! stale fencing token refused.

use std::collections::BTreeMap;
use std::time::Duration;

use bson::doc;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};

use super::{DEMO_MODEL, Out, f4};
use crate::cli::output;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Platform;
use crate::retry::RetryPolicy;
use crate::serving::Serving;
use crate::serving::features::{FeatureSpec, FeatureType, FeatureView};
use crate::serving::predict::{Input, PredictRequest, Prediction};
use crate::serving::ratelimit::{Group, Limit, RateLimiter, RateLimitsConfig};

/// The model the demo gives a scorer (and removes at the end).
pub(super) const DEMO_SCORER: &str = "demo-churn-predictor";

fn activity() -> FeatureView {
    let feature = |name: &str, kind| FeatureSpec {
        name: name.into(),
        kind,
    };
    FeatureView {
        name: "user_activity".into(),
        entity: "user".into(),
        features: vec![
            feature("sessions_7d", FeatureType::Int),
            feature("days_since_last_order", FeatureType::Int),
            feature("avg_order_value", FeatureType::Float),
            feature("is_premium", FeatureType::Bool),
        ],
        ttl: Duration::from_secs(3600),
        description: Some("What a user did lately, for churn".into()),
    }
}

fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

pub(super) async fn section(
    platform: &Platform,
    serving: &Serving,
    out: &mut Out<'_>,
) -> Result<()> {
    let started = out.section(
        9,
        "Online serving: features, predictions, leaderboard, rate limits, locks",
        "Features live in one key-value hash per entity and view, each value with its event \
         time; freshness is judged when read, against the view's TTL.",
    )?;
    let view = serving.features().put_view(activity()).await?;
    out.line(format!(
        "view {}: entity {}, {} features, ttl {} s",
        view.name,
        view.entity,
        view.features.len(),
        view.ttl.as_secs()
    ))?;
    serving
        .write_features(
            "user_activity",
            "user_1001",
            &values(&[
                ("sessions_7d", json!(12)),
                ("days_since_last_order", json!(3)),
                ("avg_order_value", json!(41.5)),
                ("is_premium", json!(true)),
            ]),
            None,
        )
        .await?;
    serving
        .write_features(
            "user_activity",
            "user_1002",
            &values(&[
                ("sessions_7d", json!(1)),
                ("days_since_last_order", json!(40)),
            ]),
            Some(Utc::now() - TimeDelta::hours(2)),
        )
        .await?;

    out.step("Features of two users, with their freshness (one round trip for both)")?;
    let pairs = [
        ("user_activity".to_owned(), "user_1001".to_owned()),
        ("user_activity".to_owned(), "user_1002".to_owned()),
    ];
    let mut table = output::table(&["user", "feature", "value", "status"]);
    for read in serving.features().read(&pairs, None).await? {
        let read = read?;
        for (name, feature) in &read.features {
            table.add_row(vec![
                read.entity.clone(),
                name.clone(),
                feature
                    .value
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), Value::to_string),
                format!("{:?}", feature.status).to_lowercase(),
            ]);
        }
    }
    out.table(table)?;
    out.line(
        "user_1002's values were observed two hours ago: older than the view's TTL of one hour.",
    )?;

    out.step("A prediction: computed, then cached, then invalidated by a feature write")?;
    platform
        .configs()
        .put(
            DEMO_SCORER,
            doc! {
                "model_name": "churn-predictor",
                "framework": "sklearn",
                "scorer": {
                    "type": "logistic", "version": 1, "view": "user_activity", "bias": 1.0,
                    "weights": {"sessions_7d": -0.3, "days_since_last_order": 0.05, "is_premium": -1.2},
                },
            },
        )
        .await?;
    let predict = || {
        serving.predictions().predict(PredictRequest {
            model: DEMO_SCORER.into(),
            input: Input::Entity("user_1001".into()),
            on_missing: None,
            max_age: None,
        })
    };
    let mut table = output::table(&["request", "churn probability", "cached", "answered by"]);
    let mut row = |what: &str, p: &Prediction| {
        table.add_row(vec![
            what.to_owned(),
            f4(Some(p.score)),
            p.cached.to_string(),
            p.tier.to_string(),
        ]);
    };
    row("predict user_1001", &predict().await?);
    row("predict user_1001 again", &predict().await?);
    serving
        .write_features(
            "user_activity",
            "user_1001",
            &values(&[("sessions_7d", json!(2))]),
            None,
        )
        .await?;
    row("after sessions_7d := 2", &predict().await?);
    out.table(table)?;
    out.line(
        "The cache key is the model, its scorer's version and a hash of the feature values; \
         the entity's feature write also invalidated its predictions on every instance.",
    )?;

    out.step("Leaderboard: best accuracy per model (ties: who reached it first)")?;
    serving.rebuild_leaderboard().await?;
    let mut table = output::table(&["rank", "model_id", "accuracy"]);
    for standing in serving.leaderboard().top(5).await? {
        table.add_row(vec![
            standing.rank.to_string(),
            standing.model_id,
            f4(Some(standing.score)),
        ]);
    }
    out.table(table)?;

    rate_limit(platform, out).await?;
    fenced_lock(platform, serving, out).await?;
    out.took(started)
}

/// A limit of 3 requests a minute, tripping at the fourth.
async fn rate_limit(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    out.step(
        "Rate limit: 3 reads a minute per client (GCRA, one atomic step in the key-value engine)",
    )?;
    let limits = RateLimitsConfig {
        read: Some(Limit {
            requests: 3,
            per: Duration::from_secs(60),
        }),
        ..Default::default()
    };
    let limiter = RateLimiter::new(platform.kv(), limits)?;
    // A client of its own each run, so that a second demo starts afresh.
    let client = format!("demo-{}", uuid::Uuid::new_v4().simple());
    let mut table = output::table(&["request", "allowed", "remaining", "retry after"]);
    for i in 1..=4 {
        let Some(decision) = limiter.check(Group::Read, &client).await? else {
            return Err(Error::internal("the demo's read limit is not in force"));
        };
        table.add_row(vec![
            format!("read {i}"),
            decision.reply.allowed.to_string(),
            decision.reply.remaining.to_string(),
            if decision.reply.allowed {
                "-".to_owned()
            } else {
                format!(
                    "{} s",
                    decision.reply.retry_after.as_millis().div_ceil(1000)
                )
            },
        ]);
    }
    out.table(table)?;
    out.line("Over HTTP the fourth is 429 with Retry-After; the state lives in the key-value engine, so the limit holds across instances.")
}

/// Two holders of one lock; the first pauses past its TTL and its late
/// write is refused by its fencing token.
async fn fenced_lock(platform: &Platform, serving: &Serving, out: &mut Out<'_>) -> Result<()> {
    out.step(&format!(
        "Fenced lock: two taggers of {DEMO_MODEL}; the first pauses past its lock's TTL"
    ))?;
    let locks = serving.locks();
    let name = format!("tag:{DEMO_MODEL}");
    let first = locks
        .acquire(&name, Duration::from_millis(300))
        .await?
        .ok_or_else(|| Error::internal("the demo's lock is held by someone else"))?;
    let base = first.fence;
    let mut table = output::table(&["who", "does", "fencing token", "outcome"]);
    table.add_row(vec![
        "tagger A".to_owned(),
        "acquires the lock (ttl 300 ms)".into(),
        "n".into(),
        "held".into(),
    ]);
    let refused = locks.acquire(&name, Duration::from_secs(30)).await?;
    table.add_row(vec![
        "tagger B".to_owned(),
        "tries to acquire".into(),
        "-".into(),
        if refused.is_none() {
            "refused: held by A"
        } else {
            "acquired (unexpected)"
        }
        .into(),
    ]);
    // A pauses; its lock runs out; B takes it over.
    let second = locks
        .acquire_within(
            &name,
            Duration::from_secs(30),
            RetryPolicy::default()
                .with_delays(Duration::from_millis(20), Duration::from_millis(100))
                .with_max_attempts(200)
                .with_max_elapsed(Duration::from_secs(10)),
        )
        .await?
        .ok_or_else(|| Error::internal("the demo's lock never came free"))?;
    table.add_row(vec![
        "tagger B".to_owned(),
        "acquires it once A's TTL ran out".into(),
        format!("n+{}", second.fence - base),
        "held".into(),
    ]);
    let tags = |who: &str| BTreeMap::from([("tagged_by".to_owned(), who.to_owned())]);
    platform
        .registry()
        .set_run_tags_fenced(DEMO_MODEL, tags("B"), second.fence)
        .await?;
    table.add_row(vec![
        "tagger B".to_owned(),
        "writes tagged_by=B".into(),
        format!("n+{}", second.fence - base),
        "written".into(),
    ]);
    let late = platform
        .registry()
        .set_run_tags_fenced(DEMO_MODEL, tags("A"), first.fence)
        .await;
    let outcome: String = match late {
        Err(e) if e.kind() == ErrorKind::Conflict => {
            "refused: an older token than one already seen".into()
        }
        Err(e) => return Err(e),
        Ok(()) => "written (unexpected)".into(),
    };
    table.add_row(vec![
        "tagger A".to_owned(),
        "wakes up, writes tagged_by=A".into(),
        "n".into(),
        outcome,
    ]);
    locks.release(second).await?;
    out.table(table)?;
    let run = platform.registry().run(DEMO_MODEL).await?;
    out.line(format!(
        "{DEMO_MODEL} is tagged_by={}: the paused holder could not overwrite its successor.",
        run.tags.get("tagged_by").map_or("-", String::as_str)
    ))
}
