//! Cache-aside for the rows read by id on serving paths: a run with its
//! dataset, tags and artifacts ([`RunDetails`], cache `runs`) and a
//! model's config document (cache `configs`), both by `model_id`, and
//! where `model@alias` leads (cache `aliases`).
//!
//! Reads go through [`TieredCache`]; every write that changes what they
//! hold calls [`RowCaches::model_changed`] once it has committed (a run
//! completed, a config replaced or its metrics set, a registration or
//! removal ended), which removes the entries from both tiers here and from
//! the L1 of every other instance. "Not found" is cached briefly, and a
//! registration's end removes that too.

use std::sync::Arc;

use bson::Document;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::cache::{CacheSettings, Caches, Lookup, TieredCache};
use crate::error::Result;
use crate::platform::registry::RunDetails;

/// A config document, cached as its BSON bytes (so every BSON type comes
/// back as it was stored), and shared: a hit clones a pointer, not the
/// document, and the same entry is the same `Arc` (callers may memoise
/// what they derive from it by pointer).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedDocument(pub Arc<Document>);

impl Serialize for CachedDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let bytes = bson::serialize_to_vec(&*self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for CachedDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = CachedDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the bytes of a BSON document")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Self::Value, E> {
                bson::deserialize_from_slice(v)
                    .map(|d| CachedDocument(Arc::new(d)))
                    .map_err(E::custom)
            }
            fn visit_byte_buf<E: de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Self::Value, E> {
                self.visit_bytes(&v)
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// The caches of rows by id. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RowCaches {
    runs: TieredCache<RunDetails>,
    configs: TieredCache<CachedDocument>,
    aliases: TieredCache<String>,
}

impl RowCaches {
    pub(crate) fn new(caches: &Caches, settings: CacheSettings) -> Result<RowCaches> {
        Ok(RowCaches {
            runs: caches.create("runs", settings)?,
            configs: caches.create("configs", settings)?,
            aliases: caches.create("aliases", settings)?,
        })
    }

    /// The run `model_id` with its details, through the `runs` cache;
    /// `load` reads it from the relational engine.
    pub(crate) async fn run<F, Fut>(&self, model_id: &str, load: F) -> Result<Lookup<RunDetails>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<RunDetails>>> + Send + 'static,
    {
        self.runs.get_or_load(model_id, load).await
    }

    /// The config document of `model_id` (without `_id`), through the
    /// `configs` cache.
    pub(crate) async fn config<F, Fut>(
        &self,
        model_id: &str,
        load: F,
    ) -> Result<Lookup<CachedDocument>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<CachedDocument>>> + Send + 'static,
    {
        self.configs.get_or_load(model_id, load).await
    }

    /// The `model_id` that `model@alias` (the key) leads to, through the
    /// `aliases` cache.
    pub(crate) async fn alias<F, Fut>(&self, alias: &str, load: F) -> Result<Lookup<String>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<String>>> + Send + 'static,
    {
        self.aliases.get_or_load(alias, load).await
    }

    /// `model@alias` moved: removes it everywhere.
    pub async fn alias_moved(&self, alias: &str) {
        if !self.aliases.invalidate(alias).await {
            tracing::warn!(
                alias,
                "an alias move may be served stale by other instances until its cache entry expires"
            );
        }
    }

    /// What is cached of `model_id` changed: removes it everywhere.
    /// Logged when an invalidation could not reach every tier (the
    /// entries then live until their TTL).
    pub async fn model_changed(&self, model_id: &str) {
        let (runs, configs) = futures::join!(
            self.runs.invalidate(model_id),
            self.configs.invalidate(model_id)
        );
        if !(runs && configs) {
            tracing::warn!(
                model_id,
                "a change may be served stale by other instances until its cache entry expires"
            );
        }
    }

    /// Many rows changed at once (seeding, a migration): empties both
    /// caches everywhere.
    pub async fn clear(&self) {
        let (runs, configs, aliases) = futures::join!(
            self.runs.clear(),
            self.configs.clear(),
            self.aliases.clear()
        );
        if !(runs && configs && aliases) {
            tracing::warn!("the row caches could not be cleared everywhere");
        }
    }
}
