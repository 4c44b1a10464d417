//! The online feature store: feature views, features written per entity
//! with an event time each, and reads that say how fresh every value is.
//!
//! - A [`FeatureView`] names an entity type (`user`), typed features and a
//!   TTL. Views live in the document engine (collection `feature_views`)
//!   and are read through a [`TieredCache`], so a changed view reaches
//!   every instance at once.
//! - An entity's features of one view are one key-value hash,
//!   `features:{view}:{entity}`: field `f` holds the value (JSON text),
//!   field `@f` its event time (Unix ms). A write is one atomic
//!   `hset_if_newer`: a value older than the stored one for that feature
//!   is ignored, so out-of-order events are safe.
//! - Freshness is computed when read, against the view's TTL of that
//!   moment and the request's `max_age`: a changed TTL applies at once to
//!   what is stored.
//! - Any number of (view, entity) pairs are read in one pipeline: one round
//!   trip to the key-value engine whatever their number.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bson::doc;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::{CacheSettings, Caches, TieredCache};
use crate::engines::document::CollectionOptions;
use crate::engines::document::DocumentStoreExt;
use crate::engines::kv::{Command, KvStoreExt, Reply};
use crate::engines::{DocumentStore, KvStore};
use crate::error::{Error, ErrorKind, Result};

/// The collection of feature views.
pub const FEATURE_VIEWS: &str = "feature_views";

/// A view's and a feature's name: letters, digits and `_`, 1 to 64.
pub const FEATURE_NAME_PATTERN: &str = "^[A-Za-z0-9_]{1,64}$";

/// An entity id: what a model id may be.
pub const ENTITY_ID_PATTERN: &str = crate::platform::names::MODEL_ID_PATTERN;

/// The most features a view declares.
pub const MAX_FEATURES: usize = 256;

/// The most (view, entity) pairs one batch reads.
pub const MAX_BATCH: usize = 1000;

/// The most bytes of one string feature.
pub const MAX_STRING: usize = 4096;

/// The field prefix of a feature's event time in its hash.
const TIME_PREFIX: &str = "@";

/// A feature's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeatureType {
    /// A 64-bit integer.
    Int,
    /// A 64-bit float (an integer is taken as one).
    Float,
    /// `true` or `false`.
    Bool,
    /// Text of at most 4,096 bytes.
    String,
}

impl FeatureType {
    fn as_str(self) -> &'static str {
        match self {
            FeatureType::Int => "int",
            FeatureType::Float => "float",
            FeatureType::Bool => "bool",
            FeatureType::String => "string",
        }
    }

    /// Whether `value` is of this type.
    fn admits(self, value: &Value) -> bool {
        match (self, value) {
            (FeatureType::Int, Value::Number(n)) => n.is_i64(),
            (FeatureType::Float, Value::Number(n)) => n.as_f64().is_some_and(f64::is_finite),
            (FeatureType::Bool, Value::Bool(_)) => true,
            (FeatureType::String, Value::String(s)) => s.len() <= MAX_STRING,
            _ => false,
        }
    }
}

/// One feature of a view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Its name ([`FEATURE_NAME_PATTERN`]).
    #[schema(pattern = "^[A-Za-z0-9_]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FeatureType,
}

/// A feature view: typed features of one entity type, with a TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureView {
    /// Its name ([`FEATURE_NAME_PATTERN`]).
    pub name: String,
    /// The entity type its features describe (`user`).
    pub entity: String,
    /// Its features, in order.
    pub features: Vec<FeatureSpec>,
    /// How long a value stays fresh after its event time.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
}

impl FeatureView {
    /// Refuses a view that is not well formed, naming the field.
    pub fn check(&self) -> Result<()> {
        check_feature_name("name", &self.name)?;
        check_feature_name("entity", &self.entity)?;
        if self.features.is_empty() || self.features.len() > MAX_FEATURES {
            return Err(Error::invalid(format!(
                "a view declares 1 to {MAX_FEATURES} features, not {}",
                self.features.len()
            ))
            .with_field("features"));
        }
        let mut seen = std::collections::HashSet::new();
        for feature in &self.features {
            check_feature_name("features", &feature.name)?;
            if !seen.insert(feature.name.as_str()) {
                return Err(Error::invalid(format!(
                    "feature `{}` is declared twice",
                    feature.name
                ))
                .with_field("features"));
            }
        }
        if self.ttl.is_zero() {
            return Err(Error::invalid("a view's ttl must be more than zero").with_field("ttl"));
        }
        if let Some(description) = &self.description {
            crate::platform::names::check_text("description", description, 1000)?;
        }
        Ok(())
    }

    fn spec(&self, feature: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == feature)
    }
}

fn is_feature_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// InvalidInput naming `field` unless `value` is a feature or view name.
pub fn check_feature_name(field: &'static str, value: &str) -> Result<()> {
    if is_feature_name(value) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "`{}` is not a name: 1 to 64 letters, digits or `_`",
            value.escape_debug()
        ))
        .with_field(field))
    }
}

/// InvalidInput unless `entity` is an entity id.
pub fn check_entity_id(entity: &str) -> Result<()> {
    crate::platform::names::check_model_id("entity", entity)
}

/// How fresh a feature's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Freshness {
    /// Younger than the view's TTL and the request's `max_age`.
    Fresh,
    /// As old as one of them, or older (`max_age=0` makes every value
    /// stale).
    Stale,
    /// Never written (or written with a value this view no longer reads).
    Missing,
}

/// One feature as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureValue {
    /// The value; `null` when missing.
    pub value: Option<Value>,
    /// Its age at the read (now − event time); `None` when missing.
    pub age: Option<Duration>,
    /// Its event time.
    pub event_time: Option<DateTime<Utc>>,
    /// Fresh, stale or missing.
    pub status: Freshness,
}

/// One view's features of one entity, as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityFeatures {
    /// The view.
    pub view: String,
    /// The view's entity type (`user`).
    pub entity_type: String,
    /// The entity.
    pub entity: String,
    /// Each feature of the view, by name.
    pub features: BTreeMap<String, FeatureValue>,
}

impl EntityFeatures {
    /// Whether every feature is fresh.
    pub fn all_fresh(&self) -> bool {
        self.features.values().all(|f| f.status == Freshness::Fresh)
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteOutcome {
    /// The features written.
    pub written: Vec<String>,
    /// The features not written because a newer value was stored.
    pub ignored_older: Vec<String>,
}

/// How fresh the values one view served were, counted per feature value
/// read by this process since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FreshnessCounts {
    /// Values younger than the TTL (and the request's `max_age`).
    pub fresh: u64,
    /// Values read past it.
    pub stale: u64,
    /// Features asked for that had no value.
    pub missing: u64,
}

impl FreshnessCounts {
    fn count(&mut self, status: Freshness) {
        let counter = match status {
            Freshness::Fresh => &mut self.fresh,
            Freshness::Stale => &mut self.stale,
            Freshness::Missing => &mut self.missing,
        };
        *counter = counter.saturating_add(1);
    }
}

/// The feature store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeatureStore {
    kv: Arc<dyn KvStore>,
    docs: Arc<dyn DocumentStore>,
    views: TieredCache<FeatureView>,
    /// Per view, how fresh the values read were.
    reads: Arc<Mutex<BTreeMap<String, FreshnessCounts>>>,
}

/// The key of an entity's hash of one view.
pub fn features_key(view: &str, entity: &str) -> String {
    format!("features:{view}:{entity}")
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl FeatureStore {
    pub(crate) async fn new(
        kv: Arc<dyn KvStore>,
        docs: Arc<dyn DocumentStore>,
        caches: &Caches,
        view_ttl: Duration,
    ) -> Result<FeatureStore> {
        docs.create_collection(FEATURE_VIEWS, CollectionOptions::default())
            .await?;
        let settings = CacheSettings {
            ttl: view_ttl,
            ..caches.defaults()
        };
        Ok(FeatureStore {
            kv,
            docs,
            views: caches.create("feature_views", settings)?,
            reads: Arc::default(),
        })
    }

    /// Per view, how fresh the feature values this process served were
    /// (since it started; a view never read is absent).
    pub fn freshness(&self) -> BTreeMap<String, FreshnessCounts> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count_reads(&self, read: &[Result<EntityFeatures>]) {
        let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
        for entity in read.iter().flatten() {
            // Views are declared by name pattern, so the map stays as
            // small as the set of views.
            let counts = reads.entry(entity.view.clone()).or_default();
            for feature in entity.features.values() {
                counts.count(feature.status);
            }
        }
    }

    /// Declares `view`, or replaces its declaration (a changed TTL applies
    /// at once to stored values, everywhere).
    pub async fn put_view(&self, view: FeatureView) -> Result<FeatureView> {
        view.check()?;
        let document = bson::serialize_to_document(&view)
            .map_err(|e| Error::internal(format!("a view does not serialize: {e}")))?;
        self.docs
            .replace_one(FEATURE_VIEWS, doc! {"name": &view.name}, document, true)
            .await?;
        self.views.invalidate(&view.name).await;
        Ok(view)
    }

    /// The view `name`, or NotFound.
    pub async fn view(&self, name: &str) -> Result<FeatureView> {
        check_feature_name("view", name)?;
        let docs = Arc::clone(&self.docs);
        let key = name.to_owned();
        let lookup = self
            .views
            .get_or_load(
                name,
                move || async move { load_view(docs.as_ref(), &key).await },
            )
            .await?;
        lookup.value.ok_or_else(|| no_view(name))
    }

    /// Every view, by name.
    pub async fn views(&self) -> Result<Vec<FeatureView>> {
        let found = self
            .docs
            .find(
                FEATURE_VIEWS,
                doc! {},
                crate::engines::document::FindOptions::sorted(doc! {"name": 1}),
            )
            .await?;
        found
            .into_iter()
            .map(|mut d| {
                d.remove("_id");
                bson::deserialize_from_document(d)
                    .map_err(|e| Error::internal(format!("a stored view does not read: {e}")))
            })
            .collect()
    }

    /// Writes `values` of `entity` in `view`, with `event_time` (now when
    /// `None`). Every value is checked against the view first: an unknown
    /// feature or a wrong type is InvalidInput naming it, and nothing is
    /// written.
    pub async fn write(
        &self,
        view: &str,
        entity: &str,
        values: &BTreeMap<String, Value>,
        event_time: Option<DateTime<Utc>>,
    ) -> Result<(FeatureView, WriteOutcome)> {
        check_entity_id(entity)?;
        let view = self.view(view).await?;
        if values.is_empty() {
            return Err(Error::invalid("no feature to write").with_field("features"));
        }
        for (name, value) in values {
            let spec = view.spec(name).ok_or_else(|| {
                Error::invalid(format!(
                    "view `{}` has no feature `{}`",
                    view.name,
                    name.escape_debug()
                ))
                .with_field(name.clone())
            })?;
            if !spec.kind.admits(value) {
                return Err(Error::invalid(format!(
                    "feature `{name}` of view `{}` is of type {}, not {}",
                    view.name,
                    spec.kind.as_str(),
                    describe(value)
                ))
                .with_field(name.clone()));
            }
        }
        let at = event_time.map_or_else(now_ms, |t| t.timestamp_millis());
        let fields: Vec<(String, Bytes, i64)> = values
            .iter()
            .map(|(name, value)| (name.clone(), Bytes::from(value.to_string()), at))
            .collect();
        let written = self
            .kv
            .hset_if_newer(&features_key(&view.name, entity), fields, TIME_PREFIX)
            .await?;
        let mut outcome = WriteOutcome {
            written: Vec::new(),
            ignored_older: Vec::new(),
        };
        for ((name, _), done) in values.iter().zip(written) {
            if done {
                outcome.written.push(name.clone());
            } else {
                outcome.ignored_older.push(name.clone());
            }
        }
        Ok((view, outcome))
    }

    /// Reads each (view, entity) pair, in one round trip to the key-value
    /// engine. A value older than its view's TTL, or than `max_age`, is
    /// stale. Errors per pair: an unknown view or a bad entity id.
    pub async fn read(
        &self,
        pairs: &[(String, String)],
        max_age: Option<Duration>,
    ) -> Result<Vec<Result<EntityFeatures>>> {
        if pairs.len() > MAX_BATCH {
            return Err(Error::invalid(format!(
                "a batch reads at most {MAX_BATCH} (view, entity) pairs, not {}",
                pairs.len()
            )));
        }
        // The views, from the cache (L1 almost always).
        let mut views: BTreeMap<&str, Result<FeatureView>> = BTreeMap::new();
        for (view, _) in pairs {
            if !views.contains_key(view.as_str()) {
                let found = self.view(view).await;
                views.insert(view.as_str(), found);
            }
        }
        let mut commands = Vec::new();
        let mut slots = Vec::with_capacity(pairs.len());
        for (view_name, entity) in pairs {
            let checked = check_entity_id(entity).and_then(|()| match &views[view_name.as_str()] {
                Ok(view) => Ok(view),
                Err(e) => Err(Error::new(e.kind(), e.message()).with_field("view")),
            });
            match checked {
                Ok(view) => {
                    let mut fields = Vec::with_capacity(view.features.len() * 2);
                    for f in &view.features {
                        fields.push(f.name.clone());
                        fields.push(format!("{TIME_PREFIX}{}", f.name));
                    }
                    slots.push(Ok(commands.len()));
                    commands.push(Command::HMGet {
                        key: features_key(view_name, entity),
                        fields,
                    });
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let replies = if commands.is_empty() {
            Vec::new()
        } else {
            self.kv.pipeline(commands).await?
        };
        let mut replies: Vec<Option<Result<Reply>>> = replies.into_iter().map(Some).collect();
        let now = now_ms();
        let mut out = Vec::with_capacity(pairs.len());
        for ((view_name, entity), slot) in pairs.iter().zip(slots) {
            let answer = slot.and_then(|index| {
                let reply = replies[index]
                    .take()
                    .ok_or_else(|| Error::internal("a feature read lost its reply"))??;
                let Reply::Values(values) = reply else {
                    return Err(Error::internal("HMGET answered something else")
                        .with_operation("features_read"));
                };
                let view = views[view_name.as_str()]
                    .as_ref()
                    .map_err(|e| Error::new(e.kind(), e.message()))?;
                Ok(decode(view, entity, &values, now, max_age))
            });
            out.push(answer);
        }
        self.count_reads(&out);
        Ok(out)
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(s) if s.len() > MAX_STRING => "a string over 4096 bytes",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn decode(
    view: &FeatureView,
    entity: &str,
    values: &[Option<Bytes>],
    now: i64,
    max_age: Option<Duration>,
) -> EntityFeatures {
    let mut features = BTreeMap::new();
    for (i, spec) in view.features.iter().enumerate() {
        let raw = values.get(2 * i).cloned().flatten();
        let at = values
            .get(2 * i + 1)
            .cloned()
            .flatten()
            .and_then(|t| std::str::from_utf8(&t).ok()?.parse::<i64>().ok());
        let value = raw
            .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
            // A value of another type (the view's type changed) reads as
            // missing rather than as a lie.
            .filter(|v| spec.kind.admits(v));
        let feature = match (value, at) {
            (Some(value), Some(at)) => {
                let age = Duration::from_millis(u64::try_from(now - at).unwrap_or(0));
                let fresh = age < view.ttl && max_age.is_none_or(|max| age < max);
                FeatureValue {
                    value: Some(value),
                    age: Some(age),
                    event_time: DateTime::from_timestamp_millis(at),
                    status: if fresh {
                        Freshness::Fresh
                    } else {
                        Freshness::Stale
                    },
                }
            }
            _ => FeatureValue {
                value: None,
                age: None,
                event_time: None,
                status: Freshness::Missing,
            },
        };
        features.insert(spec.name.clone(), feature);
    }
    EntityFeatures {
        view: view.name.clone(),
        entity_type: view.entity.clone(),
        entity: entity.to_owned(),
        features,
    }
}

async fn load_view(docs: &dyn DocumentStore, name: &str) -> Result<Option<FeatureView>> {
    let found = docs
        .find_one(
            FEATURE_VIEWS,
            doc! {"name": name},
            crate::engines::document::FindOptions::default(),
        )
        .await?;
    found
        .map(|mut d| {
            d.remove("_id");
            bson::deserialize_from_document(d)
                .map_err(|e| Error::internal(format!("stored view `{name}` does not read: {e}")))
        })
        .transpose()
}

fn no_view(name: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no feature view `{name}`")).with_field("view")
}
