//! One collection in memory, and the database of them.
//!
//! # Contracts
//!
//! - Documents live in slots numbered in insertion order; iterating the slots
//!   is MongoDB's natural order. An update or replace keeps the slot.
//! - `_id` is unique (ordered by `compare_bson`, so `1` and `1.0` collide).
//! - The `check_*` methods decide whether a change may happen without
//!   touching anything; [`Database::apply`] then applies a change that was
//!   checked (or that replay read from the log) and only fails on a log that
//!   contradicts the state.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use bson::{Bson, Document};

use crate::engines::document::IndexSpec;
use crate::engines::document::embedded::index::{Index, KeyPattern, OrdBson, compare_keys};
use crate::engines::document::embedded::record::{self, Change};
use crate::engines::document::query::compare::type_bracket;
use crate::engines::document::query::schema::Validator;
use crate::error::{Error, Result};

/// Name of the index every collection has on `_id`.
pub(crate) const ID_INDEX: &str = "_id_";

/// Documents per `Insert` record when a collection is written to a snapshot.
const SNAPSHOT_BATCH: usize = 1000;

/// A stored document and its encoded size.
///
/// The document is shared so that compaction can take a consistent image of
/// a collection by copying pointers under a short read lock, then encode it
/// while reads and writes go on.
#[derive(Debug, Clone)]
struct Slot {
    doc: Arc<Document>,
    size: u32,
}

/// A collection: documents in natural order, the `_id` map, secondary
/// indexes and the validator.
#[derive(Debug, Default, Clone)]
pub(crate) struct Collection {
    slots: BTreeMap<u64, Slot>,
    next_slot: u64,
    ids: BTreeMap<OrdBson, u64>,
    indexes: Vec<Index>,
    validator: Option<(Document, Validator)>,
    bytes: u64,
}

/// What creating an index would do.
#[derive(Debug)]
pub(crate) enum IndexPlan {
    /// The same index exists: nothing to do.
    Exists(String),
    /// A new index, checked against the documents.
    Create(IndexSpec),
}

impl Collection {
    /// Documents in natural order with their slots.
    pub(crate) fn documents(&self) -> impl Iterator<Item = (u64, &Document)> {
        self.slots.iter().map(|(slot, s)| (*slot, &*s.doc))
    }

    /// The document in `slot`.
    pub(crate) fn get(&self, slot: u64) -> Option<&Document> {
        self.slots.get(&slot).map(|s| &*s.doc)
    }

    /// The slot of the document with this `_id`.
    pub(crate) fn slot_of_id(&self, id: &Bson) -> Option<u64> {
        self.ids.get(&OrdBson(id.clone())).copied()
    }

    /// Documents in `_id` order (descending when `ascending` is false),
    /// starting from `lower`/`upper` (`(value, inclusive)`) and never leaving
    /// the type bracket of a given end: a filter's `$gt: 5` matches numbers
    /// only, so a walk bounded by it stops where the numbers stop.
    pub(crate) fn documents_by_id<'a>(
        &'a self,
        lower: Option<(&Bson, bool)>,
        upper: Option<(&Bson, bool)>,
        ascending: bool,
    ) -> Box<dyn Iterator<Item = (u64, &'a Document)> + 'a> {
        let end = |bound: Option<(&Bson, bool)>| match bound {
            None => Bound::Unbounded,
            Some((v, true)) => Bound::Included(OrdBson(v.clone())),
            Some((v, false)) => Bound::Excluded(OrdBson(v.clone())),
        };
        let (start, stop) = (end(lower), end(upper));
        // BTreeMap::range panics on an inverted or empty-exclusive range;
        // such bounds select nothing.
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (&start, &stop)
        {
            let both_inclusive =
                matches!(start, Bound::Included(_)) && matches!(stop, Bound::Included(_));
            match s.cmp(e) {
                std::cmp::Ordering::Greater => return Box::new(std::iter::empty()),
                std::cmp::Ordering::Equal if !both_inclusive => {
                    return Box::new(std::iter::empty());
                }
                _ => {}
            }
        }
        let mut brackets = [lower, upper]
            .into_iter()
            .flatten()
            .filter(|(v, _)| !matches!(v, Bson::MinKey | Bson::MaxKey))
            .map(|(v, _)| type_bracket(v));
        let bracket = brackets.next();
        if bracket.is_some() && brackets.any(|b| Some(b) != bracket) {
            // `$gt: 5, $lt: "a"`: no value is both a number and a string.
            return Box::new(std::iter::empty());
        }
        // A bracket's ids are contiguous in the map: skip those before it
        // (an unbounded start), stop at the first after it.
        let in_bracket = move |id: &&OrdBson| bracket.is_none_or(|b| type_bracket(&id.0) == b);
        let slots = &self.slots;
        let found = move |(_, slot): (&OrdBson, &u64)| slots.get(slot).map(|s| (*slot, &*s.doc));
        let range = self.ids.range((start, stop));
        if ascending {
            Box::new(
                range
                    .skip_while(move |(id, _)| !in_bracket(id))
                    .take_while(move |(id, _)| in_bracket(id))
                    .filter_map(found),
            )
        } else {
            Box::new(
                range
                    .rev()
                    .skip_while(move |(id, _)| !in_bracket(id))
                    .take_while(move |(id, _)| in_bracket(id))
                    .filter_map(found),
            )
        }
    }

    /// Secondary indexes in creation order.
    pub(crate) fn indexes(&self) -> &[Index] {
        &self.indexes
    }

    /// The validator document, if any.
    pub(crate) fn validator(&self) -> Option<&Document> {
        self.validator.as_ref().map(|(d, _)| d)
    }

    /// Encoded bytes of the live documents.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    fn validate(&self, doc: &Document) -> Result<()> {
        match &self.validator {
            Some((_, validator)) => validator.validate(doc),
            None => Ok(()),
        }
    }

    /// Checks documents for insertion in order, as an ordered `insert_many`
    /// does: returns how many of them, from the start, can be inserted
    /// together, and the error that stops the rest.
    pub(crate) fn check_inserts(&self, name: &str, docs: &[Document]) -> (usize, Option<Error>) {
        let mut batch_ids: BTreeSet<OrdBson> = BTreeSet::new();
        let mut batch_keys: Vec<BTreeSet<KeyOf>> = vec![BTreeSet::new(); self.indexes.len()];
        for (n, doc) in docs.iter().enumerate() {
            if let Err(e) = self.check_insert(name, doc, &mut batch_ids, &mut batch_keys) {
                return (n, Some(e));
            }
        }
        (docs.len(), None)
    }

    fn check_insert(
        &self,
        name: &str,
        doc: &Document,
        batch_ids: &mut BTreeSet<OrdBson>,
        batch_keys: &mut [BTreeSet<KeyOf>],
    ) -> Result<()> {
        let id = doc
            .get("_id")
            .ok_or_else(|| Error::internal("document reached the store without an _id"))?;
        check_id(id)?;
        self.validate(doc)?;
        let id_key = OrdBson(id.clone());
        if self.ids.contains_key(&id_key) || batch_ids.contains(&id_key) {
            return Err(duplicate(name, ID_INDEX, &format!("{{ _id: {id} }}")));
        }
        let mut all_keys = Vec::with_capacity(self.indexes.len());
        for (index, batch) in self.indexes.iter().zip(batch_keys.iter()) {
            let keys = index.pattern().keys(doc)?;
            if index.spec().unique {
                for key in &keys {
                    if index.holder(key, |_| false).is_some() || batch.contains(&KeyOf(key.clone()))
                    {
                        return Err(duplicate(name, index.name(), &index.describe_key(key)));
                    }
                }
            }
            all_keys.push(keys);
        }
        batch_ids.insert(id_key);
        for ((index, keys), batch) in self.indexes.iter().zip(all_keys).zip(batch_keys.iter_mut()) {
            if index.spec().unique {
                batch.extend(keys.into_iter().map(KeyOf));
            }
        }
        Ok(())
    }

    /// Checks replacing the documents in the given slots by new contents,
    /// all together: validator, and unique keys against the documents that
    /// stay and among the new contents.
    pub(crate) fn check_replacements(&self, name: &str, changes: &[(u64, Document)]) -> Result<()> {
        let changing: BTreeSet<u64> = changes.iter().map(|(slot, _)| *slot).collect();
        for (_, doc) in changes {
            self.validate(doc)?;
        }
        for index in &self.indexes {
            let mut seen: BTreeSet<KeyOf> = BTreeSet::new();
            for (_, doc) in changes {
                let keys = index.pattern().keys(doc)?;
                if !index.spec().unique {
                    continue;
                }
                for key in keys {
                    let taken = index
                        .holder(&key, |slot| changing.contains(&slot))
                        .is_some();
                    let key = KeyOf(key);
                    if taken || seen.contains(&key) {
                        return Err(duplicate(name, index.name(), &index.describe_key(&key.0)));
                    }
                    seen.insert(key);
                }
            }
        }
        Ok(())
    }

    /// Checks creating `spec` (name set): the same index again is a no-op,
    /// the same name or keys under another definition is a conflict, and a
    /// unique index must hold over the documents already stored.
    pub(crate) fn check_index(&self, name: &str, spec: &IndexSpec) -> Result<IndexPlan> {
        let pattern = KeyPattern::parse(&spec.keys)?;
        spec.check_ttl()?;
        let index_name = spec.effective_name();
        if is_id_pattern(&spec.keys) {
            if spec.unique {
                return Err(Error::invalid(
                    "the field 'unique' is not valid for an _id index specification",
                ));
            }
            if spec.name.is_none() || index_name == ID_INDEX {
                return Ok(IndexPlan::Exists(ID_INDEX.to_string()));
            }
            return Err(Error::conflict(format!(
                "index {index_name} has the keys of the _id index of collection {name}"
            )));
        }
        if index_name == ID_INDEX {
            return Err(Error::conflict(format!(
                "an index named {ID_INDEX} already exists on collection {name} with a different definition"
            )));
        }
        for existing in &self.indexes {
            let same_name = existing.name() == index_name;
            let same_keys = existing.spec().keys == spec.keys;
            if same_name
                && same_keys
                && existing.spec().unique == spec.unique
                && existing.spec().expire_after == spec.expire_after
            {
                return Ok(IndexPlan::Exists(index_name));
            }
            if same_name {
                return Err(Error::conflict(format!(
                    "an index named {index_name} already exists on collection {name} with a different definition"
                )));
            }
            if same_keys {
                return Err(Error::conflict(format!(
                    "an index with keys {} already exists on collection {name} as {}",
                    spec.keys,
                    existing.name()
                )));
            }
        }
        let mut index = Index::new(
            IndexSpec {
                keys: spec.keys.clone(),
                name: Some(index_name.clone()),
                unique: spec.unique,
                expire_after: spec.expire_after,
            },
            pattern,
        );
        for (slot, doc) in self.documents() {
            index.insert(slot, index.pattern().keys_of(doc)?);
        }
        if spec.unique
            && let Some((key, _, _)) = index.first_duplicate()
        {
            return Err(duplicate(name, &index_name, &index.describe_key(&key)));
        }
        Ok(IndexPlan::Create(index.spec().clone()))
    }

    fn insert(&mut self, doc: Document, size: u32) -> Result<()> {
        let id = doc
            .get("_id")
            .ok_or_else(|| "inserted document has no _id".to_string())
            .map_err(Error::internal)?
            .clone();
        let slot = self.next_slot;
        let mut keys = Vec::with_capacity(self.indexes.len());
        for index in &self.indexes {
            keys.push(index.pattern().keys_of(&doc)?);
        }
        if self.ids.insert(OrdBson(id.clone()), slot).is_some() {
            return Err(Error::internal(format!("inserted duplicate _id {id}")));
        }
        for (index, keys) in self.indexes.iter_mut().zip(keys) {
            index.insert(slot, keys);
        }
        self.next_slot += 1;
        self.bytes += u64::from(size);
        let doc = Arc::new(doc);
        self.slots.insert(slot, Slot { doc, size });
        Ok(())
    }

    fn put(&mut self, doc: Document, size: u32) -> Result<()> {
        let id = doc
            .get("_id")
            .ok_or_else(|| Error::internal("replacement has no _id"))?;
        let slot = self
            .slot_of_id(id)
            .ok_or_else(|| Error::internal(format!("no document with _id {id} to replace")))?;
        let old = self
            .slots
            .get(&slot)
            .ok_or_else(|| Error::internal("id map points at an empty slot"))?;
        let mut changes = Vec::with_capacity(self.indexes.len());
        for index in &self.indexes {
            changes.push((
                index.pattern().keys_of(&old.doc)?,
                index.pattern().keys_of(&doc)?,
            ));
        }
        for (index, (old_keys, new_keys)) in self.indexes.iter_mut().zip(changes) {
            index.remove(slot, old_keys);
            index.insert(slot, new_keys);
        }
        self.bytes = self.bytes - u64::from(old.size) + u64::from(size);
        let doc = Arc::new(doc);
        self.slots.insert(slot, Slot { doc, size });
        Ok(())
    }

    fn remove(&mut self, id: &Bson) -> Result<()> {
        let slot = self
            .ids
            .remove(&OrdBson(id.clone()))
            .ok_or_else(|| Error::internal(format!("no document with _id {id} to delete")))?;
        let old = self
            .slots
            .remove(&slot)
            .ok_or_else(|| Error::internal("id map points at an empty slot"))?;
        for index in &mut self.indexes {
            let keys = index.pattern().keys_of(&old.doc)?;
            index.remove(slot, keys);
        }
        self.bytes -= u64::from(old.size);
        Ok(())
    }

    fn create_index(&mut self, spec: IndexSpec) -> Result<()> {
        let pattern = KeyPattern::parse(&spec.keys)?;
        let mut index = Index::new(spec, pattern);
        for (slot, s) in &self.slots {
            index.insert(*slot, index.pattern().keys_of(&s.doc)?);
        }
        self.indexes.retain(|i| i.name() != index.name());
        self.indexes.push(index);
        Ok(())
    }

    /// A consistent image of this collection for a snapshot: its options
    /// and its documents in natural order, shared rather than copied.
    fn image(&self, name: &str) -> CollectionImage {
        CollectionImage {
            name: name.to_string(),
            validator: self.validator().cloned(),
            indexes: self.indexes.iter().map(|i| i.spec().clone()).collect(),
            documents: self.slots.values().map(|s| Arc::clone(&s.doc)).collect(),
        }
    }
}

/// A collection as compaction writes it: taken under a read lock in the
/// time it takes to copy one pointer per document, encoded afterwards.
#[derive(Debug)]
pub(crate) struct CollectionImage {
    name: String,
    validator: Option<Document>,
    indexes: Vec<IndexSpec>,
    documents: Vec<Arc<Document>>,
}

/// Every collection of the database, as of one log sequence number.
#[derive(Debug, Default)]
pub(crate) struct DatabaseImage {
    collections: Vec<CollectionImage>,
}

impl DatabaseImage {
    /// The payloads of the log records that recreate the database, stamped
    /// with `lsn`: per collection its creation, its indexes, then its
    /// documents in batches. Lazy, so one batch is encoded at a time.
    pub(crate) fn records(&self, lsn: u64) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        self.collections.iter().flat_map(move |c| {
            let create = Change::CreateCollection {
                collection: c.name.clone(),
                validator: c.validator.clone(),
            };
            let indexes = c.indexes.iter().map(|spec| Change::CreateIndex {
                collection: c.name.clone(),
                spec: spec.clone(),
            });
            let metadata = std::iter::once(create)
                .chain(indexes)
                .map(move |change| record::encode(lsn, &change, &[]));
            let batches = c.documents.chunks(SNAPSHOT_BATCH).map(move |batch| {
                let encoded = batch
                    .iter()
                    .map(|d| record::encode_document(d))
                    .collect::<Result<Vec<_>>>()?;
                record::encode_insert(lsn, &c.name, &encoded)
            });
            metadata.chain(batches)
        })
    }
}

/// An index key ordered by `compare_bson`, for checking a batch.
#[derive(Debug, Clone)]
struct KeyOf(Vec<Bson>);

impl PartialEq for KeyOf {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for KeyOf {}

impl PartialOrd for KeyOf {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyOf {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        compare_keys(&self.0, &other.0)
    }
}

fn is_id_pattern(keys: &Document) -> bool {
    keys.len() == 1 && matches!(keys.get("_id"), Some(Bson::Int32(1) | Bson::Int64(1)))
}

/// MongoDB refuses arrays as `_id` (and regular expressions); so does the
/// embedded store, since the `_id` map holds one key per document.
pub(crate) fn check_id(id: &Bson) -> Result<()> {
    match id {
        Bson::Array(_) => Err(Error::invalid("can't use an array for _id").with_field("_id")),
        Bson::RegularExpression(_) => {
            Err(Error::invalid("can't use a regex for _id").with_field("_id"))
        }
        _ => Ok(()),
    }
}

/// MongoDB's duplicate key error.
pub(crate) fn duplicate(collection: &str, index: &str, key: &str) -> Error {
    Error::conflict(format!(
        "E11000 duplicate key error collection: {collection} index: {index} dup key: {key}"
    ))
}

/// Every collection of the database.
#[derive(Debug, Default)]
pub(crate) struct Database {
    collections: BTreeMap<String, Collection>,
}

impl Database {
    /// The collection, if it exists.
    pub(crate) fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    /// Names of the collections, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.collections.keys().cloned().collect()
    }

    /// Encoded bytes of every live document.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.collections.values().map(Collection::bytes).sum()
    }

    /// Applies a change that was checked, or read from the log. `sizes` are
    /// the encoded sizes of an `Insert`/`Put`'s documents.
    pub(crate) fn apply(&mut self, change: Change, sizes: &[u32]) -> Result<()> {
        match change {
            Change::CreateCollection {
                collection,
                validator,
            } => {
                let parsed = match validator {
                    Some(v) => Some((v.clone(), Validator::parse(&v)?)),
                    None => None,
                };
                let entry = self.collections.entry(collection).or_default();
                if parsed.is_some() {
                    entry.validator = parsed;
                }
            }
            Change::DropCollection { collection } => {
                self.collections.remove(&collection);
            }
            Change::DropDatabase => self.collections.clear(),
            Change::CreateIndex { collection, spec } => {
                self.collections
                    .entry(collection)
                    .or_default()
                    .create_index(spec)?;
            }
            Change::DropIndex { collection, name } => {
                if let Some(c) = self.collections.get_mut(&collection) {
                    c.indexes.retain(|i| i.name() != name);
                }
            }
            Change::Insert {
                collection,
                documents,
            } => {
                check_sizes(&documents, sizes)?;
                let c = self.collections.entry(collection).or_default();
                for (doc, size) in documents.into_iter().zip(sizes) {
                    c.insert(doc, *size)?;
                }
            }
            Change::Put {
                collection,
                documents,
            } => {
                check_sizes(&documents, sizes)?;
                let c = self
                    .collections
                    .get_mut(&collection)
                    .ok_or_else(|| Error::internal(format!("no collection {collection}")))?;
                for (doc, size) in documents.into_iter().zip(sizes) {
                    c.put(doc, *size)?;
                }
            }
            Change::Delete { collection, ids } => {
                let c = self
                    .collections
                    .get_mut(&collection)
                    .ok_or_else(|| Error::internal(format!("no collection {collection}")))?;
                for id in &ids {
                    c.remove(id)?;
                }
            }
        }
        Ok(())
    }

    /// A consistent image of the database for a snapshot.
    pub(crate) fn image(&self) -> DatabaseImage {
        DatabaseImage {
            collections: self
                .collections
                .iter()
                .map(|(name, c)| c.image(name))
                .collect(),
        }
    }
}

fn check_sizes(documents: &[Document], sizes: &[u32]) -> Result<()> {
    if documents.len() == sizes.len() {
        Ok(())
    } else {
        Err(Error::internal(
            "documents and their sizes differ in number",
        ))
    }
}
