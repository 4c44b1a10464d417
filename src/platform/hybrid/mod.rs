//! Operations that read across engines: complete model info ([`Models`]),
//! and the runs-to-documents migration with its verification, dual write
//! and reconciliation ([`migrate`]). Operations that *write* across engines
//! are durable sagas ([`crate::platform::sagas`]).
//!
//! Everything here receives engine handles and names no concrete backend,
//! so it runs the same on the embedded and the full profile.
//!
//! # Model info, degraded rather than failed
//!
//! A model's run row is the source of truth: without it there is no
//! answer. Its config document and its counters are read at once from the
//! other two engines; when one of those is unreachable (down, timed out,
//! its circuit open), the answer is still given, with that part missing and
//! the engine named in [`ModelInfo::unavailable`], never silently.

use std::collections::BTreeMap;

use std::sync::Arc;

use bson::Bson;
use serde::Serialize;

use crate::cache::Tier;
use crate::engines::KvStore;
use crate::engines::kv::KvStoreExt;
use crate::error::{Error, Result};
use crate::platform::configs::ModelConfigs;
use crate::platform::records::{Dataset, Run};
use crate::platform::registry::Registry;

pub mod migrate;

/// The KV hash of a model's counters (predictions served, cache hits, ...),
/// read by [`Models::info`].
pub fn model_counters_key(model_id: &str) -> String {
    format!("counters:model:{model_id}")
}

/// A KV counter's stored text as a number; `None` when it is not an
/// integer.
fn counter_value(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// Everything strata knows of one model, gathered from every engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Which tier answered for the run and for the config (`l1`, `l2`,
    /// `loaded`, `stale`): the counters are always read live.
    pub served_by: ServedBy,
    /// The SQL run.
    pub run: Run,
    /// The dataset it trained on.
    pub dataset: Dataset,
    /// The config document, as relaxed extended JSON without its `_id`;
    /// `None` when the model has none, or when the document engine could
    /// not answer (then `unavailable` names it).
    pub config: Option<serde_json::Value>,
    /// The model's counters from the key-value engine (absent ones are not
    /// listed); `None` when the key-value engine could not answer.
    pub counters: Option<BTreeMap<String, i64>>,
    /// The engines that could not answer (`documents`, `kv`): the answer
    /// is degraded when this is not empty.
    pub unavailable: Vec<&'static str>,
}

/// Which cache tier answered each cached part of a [`ModelInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ServedBy {
    /// The run and its dataset.
    pub run: Tier,
    /// The config document; `None` when it could not be read.
    pub config: Option<Tier>,
}

impl ModelInfo {
    /// Whether a part of the answer is missing because its engine could
    /// not answer.
    pub fn is_degraded(&self) -> bool {
        !self.unavailable.is_empty()
    }
}

/// A model across engines, as a service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Models {
    registry: Registry,
    configs: ModelConfigs,
    kv: Arc<dyn KvStore>,
}

impl Models {
    pub(crate) fn new(registry: Registry, configs: ModelConfigs, kv: Arc<dyn KvStore>) -> Models {
        Models {
            registry,
            configs,
            kv,
        }
    }

    /// The run with its dataset, the config document and the KV counters
    /// of `model_id`, in one call (see the module docs for what happens
    /// when an engine is down). NotFound when there is no such run.
    pub async fn info(&self, model_id: &str) -> Result<ModelInfo> {
        // The run and its dataset, from the `runs` cache (a miss reads the
        // relational engine, behind its breaker).
        let (details, run_tier) = self.registry.run_cached(model_id).await.map_err(|e| {
            if e.kind() == crate::ErrorKind::NotFound {
                Error::not_found(format!("no model with model_id `{model_id}`"))
                    .with_field("model_id")
            } else {
                e
            }
        })?;
        // The other two engines are independent: ask them at once.
        let counters_key = model_counters_key(model_id);
        let (config, counters) = futures::join!(
            self.configs.get_cached(model_id),
            self.kv.hgetall(&counters_key),
        );
        let mut unavailable = Vec::new();
        let mut config_tier = None;
        let config = match config {
            Ok(found) => {
                config_tier = Some(found.tier);
                found.value.map(|d| {
                    Bson::Document(std::sync::Arc::unwrap_or_clone(d.0)).into_relaxed_extjson()
                })
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(model_id, "model info without its config: {e}");
                unavailable.push("documents");
                None
            }
            Err(e) => return Err(e.with_operation("model_info")),
        };
        let counters = match counters {
            Ok(raw) => Some(
                raw.into_iter()
                    .map(|(name, raw)| {
                        counter_value(&raw)
                            .map(|n| (name.clone(), n))
                            .ok_or_else(|| {
                                Error::invalid(format!(
                                    "counter `{name}` of `{model_id}` is not an integer"
                                ))
                                .with_operation("model_info")
                            })
                    })
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
            Err(e) if e.is_retryable() => {
                tracing::warn!(model_id, "model info without its counters: {e}");
                unavailable.push("kv");
                None
            }
            Err(e) => return Err(e.with_operation("model_info")),
        };
        Ok(ModelInfo {
            served_by: ServedBy {
                run: run_tier,
                config: config_tier,
            },
            run: details.run,
            dataset: details.dataset,
            config,
            counters,
            unavailable,
        })
    }

    /// How many models of `framework` were registered.
    pub async fn registrations(&self, framework: &str) -> Result<i64> {
        crate::platform::sagas::register::registrations(self.kv.as_ref(), framework).await
    }
}
