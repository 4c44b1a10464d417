//! Personalization: `GET /v1/users/{id}/recommendations`.
//!
//! The answer comes through a [`TieredCache`] (`recommendations`). Its
//! loader reads the profile (relational, through the `profiles` cache),
//! the user's activity from the raw events (one aggregation in the
//! document engine), and the user's predictions, which the prediction task
//! stores in the key-value engine. Without predictions yet, the answer is
//! the popular items of the user's likely segment, marked `provisional`,
//! is not kept in the cache, and an urgent prediction task is queued; the
//! task scores the user with the stored analytics model (training one
//! first when there is none), stores the scores and invalidates the cached
//! answer on every instance, so the next request gets them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, doc};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::cache::{Tier, TieredCache};
use crate::engines::kv::SetOptions;
use crate::engines::{DocumentStore, KvStore, KvStoreExt};
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::{Handler, Outcome, Pipelines, Priority, QueueSpec, Task};
use crate::platform::Platform;
use crate::platform::customers::{Customers, Profile};

use super::population::EVENTS;
use super::{Analytics, UserScores};

/// The queue of prediction tasks.
pub const QUEUE: &str = "predictions";

/// How a prediction without any analytics model to score with begins.
const NO_MODEL: &str = "there is no analytics model and none could be trained";

/// How long a user's scores are kept.
const SCORES_TTL: Duration = Duration::from_secs(24 * 3600);

/// The queue of the prediction consumer.
pub fn queue() -> QueueSpec {
    QueueSpec::tasks(QUEUE)
}

/// A user's activity, aggregated from the raw events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    /// Views.
    pub views: u64,
    /// Clicks.
    pub clicks: u64,
    /// Purchases.
    pub purchases: u64,
    /// The latest event's time.
    pub last_event_at: Option<DateTime<Utc>>,
}

/// Recommendations for a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendations {
    /// The user.
    pub user_id: String,
    /// Their segment (`DORMANT`, `AT_RISK`, `VIP`, `ACTIVE`), or `NEW`
    /// before their first prediction.
    pub segment: String,
    /// Products to recommend, best first.
    pub items: Vec<String>,
    /// The probability they churn, once predicted.
    pub churn_probability: Option<f64>,
    /// Their lifetime value, once predicted.
    pub ltv: Option<f64>,
    /// What the events say they did.
    pub activity: Activity,
    /// The segment's popular items, standing in until the user's
    /// predictions exist; a prediction task was queued.
    pub provisional: bool,
}

/// The personalization service. Cheap to clone.
#[derive(Clone)]
pub struct Personalization {
    inner: Arc<Inner>,
}

struct Inner {
    customers: Customers,
    documents: Arc<dyn DocumentStore>,
    kv: Arc<dyn KvStore>,
    pipelines: Pipelines,
    analytics: Analytics,
    profiles: TieredCache<Profile>,
    answers: TieredCache<Recommendations>,
}

impl std::fmt::Debug for Personalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personalization").finish_non_exhaustive()
    }
}

fn scores_key(pipelines: &Pipelines, user: &str) -> String {
    format!("{}:predictions:user:{user}", pipelines.config().prefix)
}

/// Queues a prediction task for `user`; tasks with the same `reason`
/// within the dedupe window run once.
pub async fn queue_prediction(
    pipelines: &Pipelines,
    user: &str,
    reason: &str,
    priority: Priority,
) -> Result<String> {
    pipelines
        .send_task(
            QUEUE,
            &json!({"user_id": user}),
            priority,
            Some(format!("predict-{user}-{reason}")),
        )
        .await
}

impl Personalization {
    /// The service over the platform's engines and caches.
    pub fn new(platform: &Platform, pipelines: &Pipelines, analytics: &Analytics) -> Result<Self> {
        let caches = platform.caches();
        Ok(Personalization {
            inner: Arc::new(Inner {
                customers: platform.customers().clone(),
                documents: platform.documents(),
                kv: platform.kv(),
                pipelines: pipelines.clone(),
                analytics: analytics.clone(),
                profiles: caches.create("profiles", caches.defaults())?,
                answers: caches.create("recommendations", caches.defaults())?,
            }),
        })
    }

    /// The cache of profiles.
    pub fn profiles(&self) -> &TieredCache<Profile> {
        &self.inner.profiles
    }

    /// Forgets the cached answer of `user` on every instance.
    pub async fn forget(&self, user: &str) {
        self.inner.answers.invalidate(user).await;
    }

    /// A user's activity: one aggregation over their raw events.
    pub async fn activity(&self, user: &str) -> Result<Activity> {
        activity(self.inner.documents.as_ref(), user).await
    }

    /// Recommendations for `user`, and the tier that answered. NotFound for
    /// an unknown user.
    pub async fn recommend(&self, user: &str) -> Result<(Recommendations, Tier)> {
        let inner = Arc::clone(&self.inner);
        let key = user.to_owned();
        let lookup = self
            .inner
            .answers
            .get_or_load(
                user,
                move || async move { load(&inner, &key).await.map(Some) },
            )
            .await?;
        let Some(answer) = lookup.value else {
            return Err(
                Error::new(ErrorKind::NotFound, format!("no user `{user}`")).with_field("user_id")
            );
        };
        if answer.provisional {
            // Never served from the cache: the real answer is on its way.
            self.inner.answers.invalidate(user).await;
            let minute = crate::platform::now().timestamp() / 60;
            queue_prediction(
                &self.inner.pipelines,
                user,
                &format!("miss-{minute}"),
                Priority::Urgent,
            )
            .await?;
        }
        Ok((answer, lookup.tier))
    }

    /// Scores `user` and stores the scores; trains the analytics model
    /// first when there is none.
    pub async fn predict(&self, user: &str) -> Result<UserScores> {
        let inner = &self.inner;
        let scores = match inner.analytics.score_user(user).await {
            Err(e)
                if e.kind() == ErrorKind::NotFound && inner.analytics.load().await?.is_none() =>
            {
                inner
                    .analytics
                    .train()
                    .await
                    .map_err(|t| Error::new(t.kind(), format!("{NO_MODEL}: {t}")))?;
                inner.analytics.score_user(user).await?
            }
            other => other?,
        };
        let bytes = serde_json::to_vec(&scores).map_err(|e| Error::internal(e.to_string()))?;
        inner
            .kv
            .set_with(
                &scores_key(&inner.pipelines, user),
                Bytes::from(bytes),
                SetOptions::ttl(SCORES_TTL),
            )
            .await?;
        inner.answers.invalidate(user).await;
        Ok(scores)
    }
}

async fn load(inner: &Inner, user: &str) -> Result<Recommendations> {
    let customers = inner.customers.clone();
    let key = user.to_owned();
    let profile = inner
        .profiles
        .get_or_load(user, move || async move { customers.profile(&key).await })
        .await?
        .value
        .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no user `{user}`")))?;
    let activity = activity(inner.documents.as_ref(), user).await?;
    let stored = inner.kv.get(&scores_key(&inner.pipelines, user)).await?;
    if let Some(bytes) = stored
        && let Ok(scores) = serde_json::from_slice::<UserScores>(&bytes)
    {
        return Ok(Recommendations {
            user_id: profile.id,
            segment: scores.segment.as_str().to_owned(),
            items: scores.recommendations,
            churn_probability: Some(scores.churn_probability),
            ltv: Some(scores.ltv),
            activity,
            provisional: false,
        });
    }
    let model = inner.analytics.load().await?;
    let items = model
        .map(|m| {
            m.popular_by_segment
                .get("ACTIVE")
                .cloned()
                .unwrap_or(m.popular)
        })
        .unwrap_or_default();
    Ok(Recommendations {
        user_id: profile.id,
        segment: "NEW".into(),
        items,
        churn_probability: None,
        ltv: None,
        activity,
        provisional: true,
    })
}

/// A user's activity from the raw events.
pub async fn activity(documents: &dyn DocumentStore, user: &str) -> Result<Activity> {
    let rows = documents
        .aggregate(
            EVENTS,
            vec![
                doc! {"$match": {"user_id": user}},
                doc! {"$group": {"_id": "$type", "n": {"$sum": 1}, "last": {"$max": "$at"}}},
            ],
        )
        .await?;
    let mut activity = Activity::default();
    for row in rows {
        let n = match row.get("n") {
            Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
            Some(Bson::Double(n)) => *n as u64,
            _ => 0,
        };
        match row.get_str("_id").unwrap_or_default() {
            "view" => activity.views = n,
            "click" => activity.clicks = n,
            "purchase" => activity.purchases = n,
            _ => {}
        }
        if let Some(Bson::DateTime(last)) = row.get("last") {
            let last = DateTime::from_timestamp_millis(last.timestamp_millis());
            activity.last_event_at = activity.last_event_at.max(last);
        }
    }
    Ok(activity)
}

/// The consumer of prediction tasks.
#[derive(Debug, Clone)]
pub struct PredictionHandler {
    personalization: Personalization,
}

impl PredictionHandler {
    /// The handler.
    pub fn new(personalization: &Personalization) -> Self {
        PredictionHandler {
            personalization: personalization.clone(),
        }
    }
}

#[derive(Deserialize)]
struct PredictionTask {
    user_id: String,
}

#[async_trait]
impl Handler for PredictionHandler {
    async fn handle(&self, task: Task) -> Outcome {
        let request: PredictionTask = match task.json() {
            Ok(r) => r,
            Err(e) => return Outcome::invalid(e),
        };
        match self.personalization.predict(&request.user_id).await {
            Ok(_) => Outcome::Done,
            Err(e) if e.message().starts_with(NO_MODEL) => Outcome::Abort {
                class: "no_model".into(),
                error: e.to_string(),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => Outcome::invalid(e),
            Err(e) => Outcome::of(Err(e)),
        }
    }
}
