//! Predictions: a model's scorer, read from its config document, applied to
//! a feature vector, and the result cached.
//!
//! # The scorer
//!
//! A model's config document holds it under `scorer`:
//!
//! ```json
//! {"scorer": {"type": "logistic", "version": 3, "view": "user_activity",
//!             "bias": -1.5, "weights": {"sessions_7d": 0.2, "avg_order_value": 0.01},
//!             "on_missing": "impute", "impute": {"sessions_7d": 0}}}
//! ```
//!
//! `linear` scores `bias + Σ weight × value`; `logistic` the sigmoid of it.
//! Int, float and bool (as 0/1) features may be weighted.
//!
//! # Stale and missing features
//!
//! When the features come from the feature store (`entity`), a value that
//! is stale or missing is handled by the scorer's `on_missing` (the
//! request may override it): `refuse` (the default) answers Conflict naming
//! the features; `impute` uses the scorer's `impute` value (0 when none)
//! for a missing feature, keeps a stale value, and lists both in the answer.
//!
//! # Caching
//!
//! A prediction is cached under the model id, the scorer's version and a
//! hash of the feature values, so a new feature value or a new model
//! version never meets an old prediction. A prediction made for an entity
//! is tagged with it; writing that entity's features invalidates its
//! predictions on every instance.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::cache::{CacheSettings, Caches, Tier, TieredCache};
use crate::engines::KvStore;
use crate::engines::kv::KvStoreExt;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Platform;
use crate::platform::hybrid::model_counters_key;
use crate::platform::registry::aliases::AliasRef;

use super::features::{FeatureStore, Freshness};

/// How a scorer combines its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScorerKind {
    /// `bias + Σ weight × value`.
    Linear,
    /// The sigmoid of the linear score: a probability.
    Logistic,
}

/// What to do with a stale or missing feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MissingPolicy {
    /// Answer Conflict naming the features.
    #[default]
    Refuse,
    /// Impute a missing one, keep a stale one, and say so.
    Impute,
}

/// A model's scorer, as its config document declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scorer {
    /// Linear or logistic.
    #[serde(rename = "type")]
    pub kind: ScorerKind,
    /// Its version: part of every prediction's cache key.
    pub version: i64,
    /// The feature view its features come from, for predictions by entity.
    #[serde(default)]
    pub view: Option<String>,
    /// The intercept.
    #[serde(default)]
    pub bias: f64,
    /// The weight of each feature, by name.
    pub weights: BTreeMap<String, f64>,
    /// The stale and missing features policy.
    #[serde(default)]
    pub on_missing: MissingPolicy,
    /// The value imputed for a missing feature (0 when absent here).
    #[serde(default)]
    pub impute: BTreeMap<String, f64>,
}

impl Scorer {
    fn check(&self, model_id: &str) -> Result<()> {
        let bad = |why: String| {
            Error::new(
                ErrorKind::Conflict,
                format!("the scorer of `{model_id}` cannot score: {why}"),
            )
            .with_field("scorer")
        };
        if self.weights.is_empty() {
            return Err(bad("it weights no feature".into()));
        }
        if let Some((name, _)) = self
            .weights
            .iter()
            .chain(self.impute.iter())
            .find(|(_, w)| !w.is_finite())
        {
            return Err(bad(format!("the number of `{name}` is not finite")));
        }
        if !self.bias.is_finite() {
            return Err(bad("its bias is not finite".into()));
        }
        Ok(())
    }

    /// The score of `features` (every weighted feature present).
    pub fn score(&self, features: &BTreeMap<String, f64>) -> f64 {
        let z = self.bias
            + self
                .weights
                .iter()
                .map(|(name, w)| w * features.get(name).copied().unwrap_or(0.0))
                .sum::<f64>();
        match self.kind {
            ScorerKind::Linear => z,
            ScorerKind::Logistic => 1.0 / (1.0 + (-z).exp()),
        }
    }
}

/// What to predict for.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An entity: its features come from the scorer's view.
    Entity(String),
    /// An explicit feature vector.
    Features(BTreeMap<String, Value>),
}

/// A prediction request.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictRequest {
    /// A model id, or `model@alias`.
    pub model: String,
    /// What to predict for.
    pub input: Input,
    /// Overrides the scorer's policy.
    pub on_missing: Option<MissingPolicy>,
    /// Features older than this are stale too.
    pub max_age: Option<Duration>,
}

/// The cached part of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The score.
    pub score: f64,
}

/// A prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The model that scored (an alias resolved).
    pub model_id: String,
    /// The scorer's version.
    pub version: i64,
    /// The score (a probability for a logistic scorer).
    pub score: f64,
    /// Whether it came from the cache.
    pub cached: bool,
    /// Which tier answered (`loaded` when computed now).
    pub tier: Tier,
    /// The feature values scored, by name.
    pub features: BTreeMap<String, f64>,
    /// Features that were missing and imputed.
    pub imputed: Vec<String>,
    /// Features that were stale and used as they were.
    pub stale: Vec<String>,
}

/// Predictions, computed and cached. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Predictions {
    platform: Platform,
    features: FeatureStore,
    kv: Arc<dyn KvStore>,
    cache: TieredCache<Scored>,
    /// Scorers parsed, by model, beside the cached config they came from.
    scorers: moka::sync::Cache<String, (Arc<bson::Document>, Arc<Scorer>)>,
}

/// The tag of an entity's cached predictions.
pub fn entity_tag(entity_type: &str, entity: &str) -> String {
    format!("{entity_type}:{entity}")
}

impl Predictions {
    pub(crate) fn new(
        platform: Platform,
        features: FeatureStore,
        caches: &Caches,
        ttl: Duration,
    ) -> Result<Predictions> {
        let settings = CacheSettings {
            ttl,
            ..caches.defaults()
        };
        Ok(Predictions {
            kv: platform.kv(),
            cache: caches.create("predictions", settings)?,
            scorers: moka::sync::Cache::new(10_000),
            platform,
            features,
        })
    }

    /// Resolves `model` (a model id or `model@alias`) to a model id.
    async fn model_id(&self, model: &str) -> Result<String> {
        if model.contains('@') {
            let alias: AliasRef = model.parse()?;
            Ok(self.platform.registry().model_of_alias(&alias).await?.0)
        } else {
            crate::platform::names::check_model_id("model_id", model)?;
            Ok(model.to_owned())
        }
    }

    /// The scorer of `model_id`, from its (cached) config. The scorer read
    /// from a cache entry is kept beside that entry's document, so a hit
    /// parses nothing; a new entry (a changed config) is parsed anew.
    async fn scorer(&self, model_id: &str) -> Result<Arc<Scorer>> {
        let config = self.platform.configs().get_cached(model_id).await?;
        let document = config.value.ok_or_else(|| {
            Error::not_found(format!("model `{model_id}` has no config, hence no scorer"))
                .with_field("model_id")
        })?;
        if let Some((seen, scorer)) = self.scorers.get(model_id)
            && Arc::ptr_eq(&seen, &document.0)
        {
            return Ok(scorer);
        }
        let scorer = document.0.get_document("scorer").map_err(|_| {
            Error::new(
                ErrorKind::Conflict,
                format!("the config of `{model_id}` declares no `scorer` object"),
            )
            .with_field("scorer")
        })?;
        let scorer: Scorer = bson::deserialize_from_document(scorer.clone()).map_err(|e| {
            Error::new(
                ErrorKind::Conflict,
                format!("the scorer of `{model_id}` does not read: {e}"),
            )
            .with_field("scorer")
        })?;
        scorer.check(model_id)?;
        let scorer = Arc::new(scorer);
        self.scorers
            .insert(model_id.to_owned(), (document.0, Arc::clone(&scorer)));
        Ok(scorer)
    }

    /// Scores `request` (see the module documentation).
    pub async fn predict(&self, request: PredictRequest) -> Result<Prediction> {
        let model_id = self.model_id(&request.model).await?;
        let scorer = self.scorer(&model_id).await?;
        let policy = request.on_missing.unwrap_or(scorer.on_missing);
        let mut imputed = Vec::new();
        let mut stale = Vec::new();
        let mut vector = BTreeMap::new();
        let mut tags = Vec::new();
        match &request.input {
            Input::Features(given) => {
                for name in scorer.weights.keys() {
                    match given.get(name) {
                        Some(value) => {
                            vector.insert(
                                name.clone(),
                                number(name, value, ErrorKind::InvalidInput)?,
                            );
                        }
                        None if policy == MissingPolicy::Impute => {
                            vector.insert(
                                name.clone(),
                                scorer.impute.get(name).copied().unwrap_or(0.0),
                            );
                            imputed.push(name.clone());
                        }
                        None => {
                            return Err(Error::invalid(format!(
                                "feature `{name}` is missing and the scorer of `{model_id}` weights it"
                            ))
                            .with_field("features"));
                        }
                    }
                }
            }
            Input::Entity(entity) => {
                let view = scorer.view.clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Conflict,
                        format!("the scorer of `{model_id}` names no feature `view` to read an entity's features from"),
                    )
                    .with_field("scorer")
                })?;
                let read = self
                    .features
                    .read(&[(view.clone(), entity.clone())], request.max_age)
                    .await?
                    .pop()
                    .ok_or_else(|| Error::internal("a feature read answered nothing"))??;
                tags.push(entity_tag(&read.entity_type, entity));
                let mut refused = Vec::new();
                for name in scorer.weights.keys() {
                    let feature = read.features.get(name).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Conflict,
                            format!("the scorer of `{model_id}` weights `{name}`, which view `{view}` does not have"),
                        )
                        .with_field("scorer")
                    })?;
                    match (feature.status, &feature.value) {
                        (Freshness::Fresh, Some(value)) => {
                            vector.insert(name.clone(), number(name, value, ErrorKind::Conflict)?);
                        }
                        (Freshness::Stale, Some(value)) if policy == MissingPolicy::Impute => {
                            vector.insert(name.clone(), number(name, value, ErrorKind::Conflict)?);
                            stale.push(name.clone());
                        }
                        (_, _) if policy == MissingPolicy::Impute => {
                            vector.insert(
                                name.clone(),
                                scorer.impute.get(name).copied().unwrap_or(0.0),
                            );
                            imputed.push(name.clone());
                        }
                        (status, _) => refused.push(format!(
                            "{name} ({})",
                            if status == Freshness::Stale {
                                "stale"
                            } else {
                                "missing"
                            }
                        )),
                    }
                }
                if !refused.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        format!(
                            "entity `{entity}` cannot be scored by `{model_id}`: {} (the policy is `refuse`; ask with on_missing=impute to impute)",
                            refused.join(", ")
                        ),
                    )
                    .with_field("entity"));
                }
            }
        }
        let key = cache_key(&model_id, scorer.version, &vector);
        let (to_score, scorer_for_load) = (vector.clone(), Arc::clone(&scorer));
        let lookup = self
            .cache
            .get_or_load_tagged(&key, &tags, move || async move {
                Ok(Some(Scored {
                    score: scorer_for_load.score(&to_score),
                }))
            })
            .await?;
        let scored = lookup
            .value
            .ok_or_else(|| Error::internal("a cached prediction holds nothing"))?;
        self.count(&model_id);
        Ok(Prediction {
            model_id,
            version: scorer.version,
            score: scored.score,
            cached: lookup.tier != Tier::Loaded,
            tier: lookup.tier,
            features: vector,
            imputed,
            stale,
        })
    }

    /// An entity's features changed: its cached predictions go, everywhere.
    pub async fn entity_changed(&self, entity_type: &str, entity: &str) -> bool {
        self.cache
            .invalidate_tag(&entity_tag(entity_type, entity))
            .await
    }

    /// Counts a prediction of `model_id` in its counters (off the request
    /// path; a failure is logged).
    fn count(&self, model_id: &str) {
        let kv = Arc::clone(&self.kv);
        let key = model_counters_key(model_id);
        tokio::spawn(async move {
            if let Err(e) = kv.hincr_by(&key, "predictions", 1).await {
                tracing::warn!(%key, "a prediction was not counted: {e}");
            }
        });
    }
}

/// A feature's value as a number: int, float or bool (0/1).
fn number(name: &str, value: &Value, kind: ErrorKind) -> Result<f64> {
    match value {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
    .ok_or_else(|| {
        Error::new(
            kind,
            format!("feature `{name}` is not a number or a bool, so it cannot be weighted"),
        )
        .with_field(name.to_owned())
    })
}

/// `{model_id}:v{version}:{hash of the feature values}`.
pub fn cache_key(model_id: &str, version: i64, features: &BTreeMap<String, f64>) -> String {
    let mut hash = Sha256::new();
    for (name, value) in features {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.to_bits().to_le_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{model_id}:v{version}:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(kind: ScorerKind) -> Scorer {
        Scorer {
            kind,
            version: 1,
            view: None,
            bias: -1.0,
            weights: [("a".to_string(), 2.0), ("b".to_string(), 0.5)].into(),
            on_missing: MissingPolicy::Refuse,
            impute: BTreeMap::new(),
        }
    }

    #[test]
    fn linear_and_logistic_scores_are_arithmetic() {
        let x: BTreeMap<String, f64> = [("a".to_string(), 1.5), ("b".to_string(), 4.0)].into();
        assert_eq!(scorer(ScorerKind::Linear).score(&x), -1.0 + 3.0 + 2.0);
        let p = scorer(ScorerKind::Logistic).score(&x);
        assert!((p - 1.0 / (1.0 + (-4.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn the_key_changes_with_a_value_or_the_version() {
        let x: BTreeMap<String, f64> = [("a".to_string(), 1.0)].into();
        let y: BTreeMap<String, f64> = [("a".to_string(), 1.000_000_1)].into();
        assert_ne!(cache_key("m", 1, &x), cache_key("m", 1, &y));
        assert_ne!(cache_key("m", 1, &x), cache_key("m", 2, &x));
        assert_eq!(cache_key("m", 1, &x), cache_key("m", 1, &x.clone()));
    }
}
