//! Online serving: the latency-critical services above the platform.
//!
//! - [`features`]: the feature store (views, writes with event times,
//!   reads with freshness);
//! - [`predict`]: predictions scored from a model's config, cached;
//! - [`leaderboard`]: best accuracy per model, ranked;
//! - [`ratelimit`]: rate limits per client and route group;
//! - [`locks`]: distributed locks with fencing tokens.
//!
//! Each is written once against the engine traits and the
//! [`TieredCache`](crate::cache::TieredCache), so it runs the same on the
//! embedded profile and across many instances sharing Redis.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;
use crate::platform::Platform;
use crate::platform::records::Run;
use crate::platform::registry::RunOutcome;

pub mod features;
pub mod leaderboard;
pub mod locks;
pub mod predict;
pub mod ratelimit;

pub use features::{FeatureStore, FeatureView};
pub use leaderboard::Leaderboard;
pub use locks::Locks;
pub use predict::Predictions;
pub use ratelimit::RateLimiter;

/// `[serving]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServingConfig {
    /// Rate limits per client and route group (none by default).
    pub rate_limits: ratelimit::RateLimitsConfig,
    /// How long a feature view's declaration is cached (a change reaches
    /// every instance at once through the backplane anyway).
    #[serde(with = "humantime_serde")]
    pub view_cache_ttl: Duration,
    /// How long a prediction is cached.
    #[serde(with = "humantime_serde")]
    pub prediction_ttl: Duration,
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            rate_limits: ratelimit::RateLimitsConfig::default(),
            view_cache_ttl: Duration::from_secs(60),
            prediction_ttl: Duration::from_secs(300),
        }
    }
}

/// The serving services over one platform. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Serving {
    platform: Platform,
    features: FeatureStore,
    predictions: Predictions,
    leaderboard: Leaderboard,
    limiter: RateLimiter,
    locks: Locks,
}

/// What writing an entity's features did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeaturesWritten {
    /// The view written.
    pub view: FeatureView,
    /// Which features were written, and which ignored as older.
    pub outcome: features::WriteOutcome,
    /// Whether the entity's cached predictions were invalidated on every
    /// instance (`false`: they may be served until they expire).
    pub invalidated: bool,
}

/// A run's completion, and whether the leaderboard took it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completed {
    /// The run as stored.
    pub run: Run,
    /// `false` when the leaderboard could not be updated (it is rebuilt
    /// from the runs when `strata serve` starts and finds it empty).
    pub ranked: bool,
}

impl Serving {
    /// The serving services over `platform`.
    pub async fn open(platform: &Platform, config: &ServingConfig) -> Result<Serving> {
        let caches = platform.caches();
        let features = FeatureStore::new(
            platform.kv(),
            platform.documents(),
            caches,
            config.view_cache_ttl,
        )
        .await?;
        let predictions = Predictions::new(
            platform.clone(),
            features.clone(),
            caches,
            config.prediction_ttl,
        )?;
        Ok(Serving {
            leaderboard: Leaderboard::new(platform.kv()),
            limiter: RateLimiter::new(platform.kv(), config.rate_limits)?,
            locks: Locks::new(platform.kv()),
            platform: platform.clone(),
            features,
            predictions,
        })
    }

    /// The feature store.
    pub fn features(&self) -> &FeatureStore {
        &self.features
    }

    /// Predictions.
    pub fn predictions(&self) -> &Predictions {
        &self.predictions
    }

    /// The leaderboard.
    pub fn leaderboard(&self) -> &Leaderboard {
        &self.leaderboard
    }

    /// The rate limiter.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Distributed locks with fencing tokens.
    pub fn locks(&self) -> &Locks {
        &self.locks
    }

    /// A job that tags the run `model_id` under the lock `tag:{model_id}`
    /// (held for `ttl`): at most one tagger at a time, and a tagger that
    /// lost its lock while paused is refused by the registry (its fencing
    /// token is older than the one that wrote since). Conflict when the
    /// lock is held by another.
    pub async fn tag_run_exclusively(
        &self,
        model_id: &str,
        tags: BTreeMap<String, String>,
        ttl: Duration,
    ) -> Result<u64> {
        let name = format!("tag:{model_id}");
        let lease = self.locks.acquire(&name, ttl).await?.ok_or_else(|| {
            crate::Error::conflict(format!("lock `{name}` is held by another tagger"))
        })?;
        let fence = lease.fence;
        let written = self
            .platform
            .registry()
            .set_run_tags_fenced(model_id, tags, fence)
            .await;
        let released = self.locks.release(lease).await;
        written?;
        if !released? {
            tracing::warn!(
                model_id,
                "the tagging lock expired before the job released it"
            );
        }
        Ok(fence)
    }

    /// Writes an entity's features ([`FeatureStore::write`]) and
    /// invalidates its cached predictions everywhere.
    pub async fn write_features(
        &self,
        view: &str,
        entity: &str,
        values: &BTreeMap<String, Value>,
        event_time: Option<DateTime<Utc>>,
    ) -> Result<FeaturesWritten> {
        let (view, outcome) = self
            .features
            .write(view, entity, values, event_time)
            .await?;
        let invalidated = self.predictions.entity_changed(&view.entity, entity).await;
        Ok(FeaturesWritten {
            view,
            outcome,
            invalidated,
        })
    }

    /// Records how a run ended ([`Registry::complete_run`]) and puts its
    /// accuracy on the leaderboard.
    ///
    /// [`Registry::complete_run`]: crate::platform::Registry::complete_run
    pub async fn complete_run(&self, model_id: &str, outcome: RunOutcome) -> Result<Completed> {
        let run = self
            .platform
            .registry()
            .complete_run(model_id, outcome)
            .await?;
        let ranked = match (run.accuracy, run.completed_at) {
            (Some(accuracy), Some(at)) => {
                match self.leaderboard.submit(model_id, accuracy, at).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(model_id, "the leaderboard missed a completed run: {e}");
                        false
                    }
                }
            }
            _ => true,
        };
        Ok(Completed { run, ranked })
    }

    /// Puts every completed run's accuracy on the leaderboard (idempotent);
    /// how many entries changed.
    pub async fn rebuild_leaderboard(&self) -> Result<u64> {
        let entries = self.platform.registry().completed_accuracies().await?;
        self.leaderboard.submit_all(&entries).await
    }

    /// Rebuilds the leaderboard when the key-value engine has none (it
    /// lost it, or never had it); whether it did.
    pub async fn ensure_leaderboard(&self) -> Result<bool> {
        if self.leaderboard.is_empty().await? {
            self.rebuild_leaderboard().await?;
            return Ok(true);
        }
        Ok(false)
    }
}
