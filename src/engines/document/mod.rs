//! The document engine: a MongoDB-shaped store of BSON documents.
//!
//! [`DocumentStore`] is one database of named collections. Filters, updates,
//! sorts, projections and aggregation pipelines are BSON documents written
//! exactly as for MongoDB, so the MongoDB adapter passes them through and the
//! embedded engine interprets a documented subset of them.
//!
//! # The subset every implementation keeps
//!
//! - Filters: implicit equality, `$eq $ne $gt $gte $lt $lte $in $nin $all
//!   $exists $type $mod $and $or $nor $not $size $elemMatch $regex` (with
//!   `$options`), dot paths into nested documents and array indexes, and
//!   MongoDB's array rule: a field holding an array matches when the array
//!   itself or any element matches.
//! - Updates: `$set $unset $inc $push $addToSet` (`$push`/`$addToSet` accept
//!   `$each`), with upsert.
//! - Sort: MongoDB's cross-type BSON order (MinKey < null/missing < numbers <
//!   strings < documents < arrays < binary < ObjectId < booleans < dates <
//!   timestamps < regex < MaxKey); an array sorts by its smallest element
//!   ascending and its largest descending.
//! - Aggregation stages `$match $project $addFields $set $group $sort $skip
//!   $limit $unwind $lookup $count $replaceRoot $replaceWith $facet
//!   $sortByCount`, accumulators `$sum $avg $min $max $count $push $addToSet
//!   $first $last`, and expressions: field paths, `$$ROOT $$CURRENT
//!   $$REMOVE`, `$literal $add $subtract $multiply $divide $mod $round $abs
//!   $concat $toString $toLower $toUpper $dateToString $ifNull $cond $eq $ne
//!   $gt $gte $lt $lte $and $or $not $in $size $arrayElemAt $max $min $sum
//!   $avg` (`$dateToString` with `UTC` and `±HH:MM` offsets, not named time
//!   zones).
//! - Indexes: single and compound, unique, named, and TTL indexes
//!   ([`IndexSpec::expire_after`], MongoDB's `expireAfterSeconds`) on one
//!   date field. Expiry is a background sweep, not a read-time filter: an
//!   expired document stays visible until the next sweep, which runs every
//!   60 seconds on both engines (mongod's TTL monitor; the embedded store's
//!   sweeper thread, whose sweep
//!   [`sweep_expired`](embedded::EmbeddedDocumentStore::sweep_expired) also
//!   runs on demand).
//! - Collection validators: `$jsonSchema` with `bsonType`, `required` and
//!   `properties`.
//!
//! Anything outside the subset fails with [`ErrorKind::Unsupported`] naming
//! the operator or stage; it is never ignored.
//!
//! # Core and helpers
//!
//! [`DocumentStore`] holds only the operations a backend implements; the
//! conveniences built on them (`insert_one`, `find_one`, `update_one`,
//! `update_many`, `delete_one`, `delete_many`, and
//! [`find_batches`](DocumentStoreExt::find_batches), which walks a whole
//! collection or filter result in bounded keyset batches) live in
//! [`DocumentStoreExt`], implemented once for every store.
//!
//! [`ErrorKind::Unsupported`]: crate::error::ErrorKind::Unsupported

use std::time::Duration;

use async_trait::async_trait;
use bson::{Bson, Document};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result};

pub mod embedded;
pub mod mongodb;
pub mod query;

/// Options of [`DocumentStore::find`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindOptions {
    /// Sort specification, `{field: 1 | -1, ...}`, applied before skip/limit.
    pub sort: Option<Document>,
    /// Number of documents to skip after sorting.
    pub skip: Option<u64>,
    /// Maximum number of documents to return. `None` returns every match.
    pub limit: Option<u64>,
    /// Projection, `{field: 0 | 1 | expression}` as MongoDB takes it.
    pub projection: Option<Document>,
}

impl FindOptions {
    /// Options with a sort.
    pub fn sorted(sort: Document) -> Self {
        FindOptions {
            sort: Some(sort),
            ..Default::default()
        }
    }

    /// Sets the limit.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets the skip.
    pub fn skip(mut self, skip: u64) -> Self {
        self.skip = Some(skip);
        self
    }

    /// Sets the projection.
    pub fn projection(mut self, projection: Document) -> Self {
        self.projection = Some(projection);
        self
    }
}

/// Options of [`DocumentStore::update`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Update every matching document, not just the first.
    pub multi: bool,
    /// Insert a document when nothing matches: the filter's equality
    /// conditions, then the update applied to them.
    pub upsert: bool,
}

/// What an update or replace did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateResult {
    /// Documents that matched the filter.
    pub matched: u64,
    /// Documents whose content changed (an update that sets a field to the
    /// value it already holds matches but does not modify).
    pub modified: u64,
    /// The `_id` of the inserted document when an upsert inserted one.
    pub upserted_id: Option<Bson>,
}

/// An index to create, or one that exists.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    /// Keys in order, `{field: 1 | -1, ...}`. Dot paths are allowed.
    pub keys: Document,
    /// The index name. When absent on creation, MongoDB's default name is
    /// used: `field_1_other_-1`.
    pub name: Option<String>,
    /// Reject a second document with the same key (missing counts as null).
    pub unique: bool,
    /// A TTL index (MongoDB's `expireAfterSeconds`): a document whose one
    /// key field holds a date older than `now - expire_after` is deleted by
    /// a background sweep (for an array of dates, its earliest counts). A
    /// document where the field is missing or not a date never expires.
    /// Whole seconds, at most `i32::MAX`; the index must have exactly one
    /// key, not `_id`. See [`IndexSpec::check_ttl`].
    pub expire_after: Option<Duration>,
}

impl IndexSpec {
    /// A non-unique index on `keys` with the default name.
    pub fn new(keys: Document) -> Self {
        IndexSpec {
            keys,
            name: None,
            unique: false,
            expire_after: None,
        }
    }

    /// Makes it a TTL index: documents expire `after` the date in its field.
    pub fn expire_after(mut self, after: Duration) -> Self {
        self.expire_after = Some(after);
        self
    }

    /// Checks a TTL index's shape, as MongoDB does, so every store refuses
    /// the same specs: `InvalidInput` for more than one key, for `_id`, and
    /// for an `expire_after` that is not whole seconds within `0..=i32::MAX`
    /// (MongoDB's `expireAfterSeconds` range). A spec without
    /// `expire_after` passes.
    pub fn check_ttl(&self) -> Result<()> {
        let Some(after) = self.expire_after else {
            return Ok(());
        };
        if self.keys.len() != 1 {
            return Err(Error::invalid(format!(
                "a TTL index (expire_after) takes exactly one key, not {}: {}",
                self.keys.len(),
                self.keys
            ))
            .with_field("expire_after"));
        }
        if self.keys.contains_key("_id") {
            return Err(Error::invalid(
                "the field 'expireAfterSeconds' is not valid for an _id index specification",
            )
            .with_field("expire_after"));
        }
        if after.subsec_nanos() != 0 || after.as_secs() > i32::MAX as u64 {
            return Err(Error::invalid(format!(
                "expire_after must be whole seconds between 0 and {}, not {after:?}",
                i32::MAX
            ))
            .with_field("expire_after"));
        }
        Ok(())
    }

    /// Makes the index unique.
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Names the index.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The name MongoDB gives an index on `keys`: `a_1_b_-1`.
    pub fn default_name(keys: &Document) -> String {
        keys.iter()
            .map(|(k, v)| {
                let dir = match v {
                    Bson::Int32(i) => i64::from(*i),
                    Bson::Int64(i) => *i,
                    Bson::Double(d) => *d as i64,
                    other => return format!("{k}_{other}"),
                };
                format!("{k}_{dir}")
            })
            .collect::<Vec<_>>()
            .join("_")
    }

    /// The explicit name, or the default one.
    pub fn effective_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| Self::default_name(&self.keys))
    }
}

/// Options of [`DocumentStore::create_collection`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectionOptions {
    /// A validator, `{"$jsonSchema": {...}}`. Inserts, updates and replaces
    /// that produce a document failing it are rejected with
    /// [`ErrorKind::InvalidInput`](crate::error::ErrorKind::InvalidInput)
    /// naming the failing field.
    pub validator: Option<Document>,
}

/// A MongoDB-shaped document database.
///
/// Implementations: [`embedded::EmbeddedDocumentStore`] (in-process,
/// persisted in the data dir) and the MongoDB adapter. Both keep the
/// contracts below; the conformance suite in `tests/document_conformance.rs`
/// checks each of them against every implementation.
///
/// # Contracts
///
/// - A collection springs into existence on first insert or upsert; reading a
///   collection that does not exist returns nothing, not an error.
/// - Inserting a document without `_id` adds an ObjectId `_id` first. A
///   duplicate `_id`, or a duplicate key of a unique index, fails with
///   [`ErrorKind::Conflict`](crate::error::ErrorKind::Conflict) and stores
///   nothing of that document. `insert_many` is ordered: documents before the
///   failing one stay inserted, the rest are not attempted.
/// - Filters, updates and pipelines are checked before anything runs: an
///   operator outside the subset fails with `Unsupported` naming it even when
///   the collection is empty; a malformed one fails with `InvalidInput`.
/// - An update document must consist of update operators only; a replacement
///   must contain none. Changing `_id` is `InvalidInput`.
/// - `drop_collection` and `drop_index` of something absent succeed.
/// - An acknowledged write is visible to every later read through any handle
///   on the same store.
#[async_trait]
pub trait DocumentStore: Send + Sync + std::fmt::Debug {
    /// The implementation: `"embedded"` or `"mongodb"`.
    fn kind(&self) -> &'static str;

    /// Where it stores, for humans, with secrets redacted.
    fn target(&self) -> String;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<()>;

    /// Creates a collection, or, when it exists, sets its options (MongoDB's
    /// `create` then `collMod`). Idempotent.
    async fn create_collection(&self, collection: &str, options: CollectionOptions) -> Result<()>;

    /// Names of the collections, sorted.
    async fn list_collections(&self) -> Result<Vec<String>>;

    /// Drops a collection with its documents and indexes. Absent is fine.
    async fn drop_collection(&self, collection: &str) -> Result<()>;

    /// Drops every collection of this database. Used by tests to leave
    /// nothing behind.
    async fn drop_database(&self) -> Result<()>;

    /// Inserts documents in order and returns their `_id`s.
    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<Vec<Bson>>;

    /// Documents matching `filter`, sorted, skipped, limited and projected.
    async fn find(
        &self,
        collection: &str,
        filter: Document,
        options: FindOptions,
    ) -> Result<Vec<Document>>;

    /// Number of documents matching `filter`.
    async fn count(&self, collection: &str, filter: Document) -> Result<u64>;

    /// Applies update operators to the first (or every, with `multi`)
    /// matching document.
    async fn update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<UpdateResult>;

    /// Replaces the first matching document whole, keeping its `_id`.
    async fn replace_one(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult>;

    /// Deletes the first (or every, with `multi`) matching document and
    /// returns how many were deleted.
    async fn delete(&self, collection: &str, filter: Document, multi: bool) -> Result<u64>;

    /// Runs an aggregation pipeline.
    async fn aggregate(&self, collection: &str, pipeline: Vec<Document>) -> Result<Vec<Document>>;

    /// Creates an index and returns its name. Creating the same index again
    /// is a no-op; an index whose keys exist under another definition fails
    /// with `Conflict`. Creating a unique index over existing duplicates fails
    /// with `Conflict` and creates nothing. A TTL index
    /// ([`IndexSpec::expire_after`]) redeclared with another `expire_after`
    /// fails with `Conflict` (MongoDB's `IndexOptionsConflict`); one of the
    /// wrong shape with `InvalidInput` ([`IndexSpec::check_ttl`]).
    async fn create_index(&self, collection: &str, index: IndexSpec) -> Result<String>;

    /// The collection's indexes, `_id_` first.
    async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexSpec>>;

    /// Drops an index by name. Absent is fine; `_id_` cannot be dropped.
    async fn drop_index(&self, collection: &str, name: &str) -> Result<()>;
}

/// Helpers over the core [`DocumentStore`] methods, for every store.
///
/// The one implementation is the blanket one below, for every
/// `T: DocumentStore + ?Sized` (`dyn DocumentStore` included), and
/// coherence allows no other: a backend cannot override a helper, so a
/// layer wrapping `Arc<dyn DocumentStore>` (timeouts, retries, metrics, a
/// circuit breaker) sees every operation through the core methods.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> strata::Result<()> {
/// use std::sync::Arc;
///
/// use bson::doc;
/// use futures::TryStreamExt;
/// use strata::engines::document::embedded::EmbeddedDocumentStore;
/// use strata::engines::document::{DocumentStore, DocumentStoreExt, FindOptions};
///
/// let dir = tempfile::tempdir()?;
/// let store: Arc<dyn DocumentStore> =
///     Arc::new(EmbeddedDocumentStore::open(dir.path(), Default::default())?);
/// store.insert_one("runs", doc! {"_id": 1, "loss": 0.5}).await?;
/// store.insert_one("runs", doc! {"_id": 2, "loss": 0.25}).await?;
/// let found = store.find_one("runs", doc! {"_id": 2}, FindOptions::default()).await?;
/// assert_eq!(found, Some(doc! {"_id": 2, "loss": 0.25}));
///
/// // A whole collection, one bounded batch at a time.
/// let mut seen = 0;
/// let mut batches = store.find_batches("runs", doc! {}, 1);
/// while let Some(batch) = batches.try_next().await? {
///     assert_eq!(batch.len(), 1);
///     seen += batch.len();
/// }
/// assert_eq!(seen, 2);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait DocumentStoreExt: DocumentStore {
    /// Inserts one document and returns its `_id`.
    async fn insert_one(&self, collection: &str, document: Document) -> Result<Bson> {
        let mut ids = self.insert_many(collection, vec![document]).await?;
        ids.pop()
            .ok_or_else(|| crate::error::Error::internal("insert returned no id"))
    }

    /// The first document matching `filter` in `options`' order.
    async fn find_one(
        &self,
        collection: &str,
        filter: Document,
        options: FindOptions,
    ) -> Result<Option<Document>> {
        let mut found = self.find(collection, filter, options.limit(1)).await?;
        Ok(found.pop())
    }

    /// [`update`](DocumentStore::update) of the first matching document.
    async fn update_one(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let options = UpdateOptions {
            multi: false,
            upsert,
        };
        self.update(collection, filter, update, options).await
    }

    /// [`update`](DocumentStore::update) of every matching document.
    async fn update_many(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
    ) -> Result<UpdateResult> {
        let options = UpdateOptions {
            multi: true,
            upsert: false,
        };
        self.update(collection, filter, update, options).await
    }

    /// Deletes the first matching document.
    async fn delete_one(&self, collection: &str, filter: Document) -> Result<u64> {
        self.delete(collection, filter, false).await
    }

    /// Deletes every matching document.
    async fn delete_many(&self, collection: &str, filter: Document) -> Result<u64> {
        self.delete(collection, filter, true).await
    }

    /// Every document matching `filter`, in `_id` order, as a stream of
    /// batches of at most `batch` documents, so that a caller walking a
    /// million documents holds one batch at a time.
    ///
    /// Keyset paging: each batch is one [`find`](DocumentStore::find)
    /// sorted by `_id` with the filter and `_id` greater than the last one
    /// seen, so no document is skipped or repeated however large the
    /// collection. Since `$gt` stays within a BSON type bracket, the walk
    /// moves to the next bracket (null, numbers, strings, documents,
    /// binary, ObjectIds, booleans, dates, timestamps, MaxKey) when one is
    /// exhausted. The batches are not one snapshot: a document inserted
    /// behind the walk's position is not seen, one inserted ahead is.
    ///
    /// A `batch` of 0 is `InvalidInput`, as the stream's only item.
    fn find_batches<'a>(
        &'a self,
        collection: &'a str,
        filter: Document,
        batch: u64,
    ) -> BoxStream<'a, Result<Vec<Document>>> {
        if batch == 0 {
            let error = crate::error::Error::invalid("`batch` must be at least 1")
                .with_field("batch")
                .with_operation("find_batches");
            return futures::stream::once(async move { Err(error) }).boxed();
        }
        futures::stream::try_unfold(Some(Resume::Start), move |resume| {
            let filter = filter.clone();
            async move {
                let mut resume = match resume {
                    Some(r) => r,
                    None => return Ok(None),
                };
                loop {
                    let query = match resume.condition() {
                        None => filter.clone(),
                        Some(condition) if filter.is_empty() => bson::doc! {"_id": condition},
                        Some(condition) => {
                            bson::doc! {"$and": [filter.clone(), {"_id": condition}]}
                        }
                    };
                    let options = FindOptions::sorted(bson::doc! {"_id": 1}).limit(batch);
                    let page = self.find(collection, query, options).await?;
                    let full = page.len() as u64 >= batch;
                    let next = match page.last().and_then(|d| d.get("_id")) {
                        Some(last) if full => Some(Resume::after(last.clone())),
                        _ => resume.exhausted(),
                    };
                    if !page.is_empty() {
                        return Ok(Some((page, next)));
                    }
                    match next {
                        Some(n) => resume = n,
                        None => return Ok(None),
                    }
                }
            }
        })
        .boxed()
    }
}

impl<T: DocumentStore + ?Sized> DocumentStoreExt for T {}

/// Where [`DocumentStoreExt::find_batches`] goes on from.
#[derive(Debug, Clone)]
enum Resume {
    /// The first page: no `_id` condition.
    Start,
    /// After this `_id`, within its type bracket.
    After(Bson),
    /// From the start of the type bracket of `BRACKET_FLOORS[i]`.
    Floor(usize),
}

/// Conditions selecting each type bracket an `_id` can be in, from its
/// lowest value, in MongoDB's order with the bracket's rank. NaN sorts
/// below every other number but no range selects it, so it has its own;
/// dates come in two parts.
fn bracket_floor(i: usize) -> Option<(i32, Document)> {
    use bson::spec::BinarySubtype;
    let (rank, condition) = match i {
        0 => (5, bson::doc! {"$gte": Bson::Null}),
        1 => (10, bson::doc! {"$eq": f64::NAN}),
        2 => (10, bson::doc! {"$gte": f64::NEG_INFINITY}),
        3 => (15, bson::doc! {"$gte": ""}),
        4 => (20, bson::doc! {"$gte": {}}),
        5 => (
            30,
            bson::doc! {"$gte": bson::Binary { subtype: BinarySubtype::Generic, bytes: Vec::new() }},
        ),
        6 => (
            35,
            bson::doc! {"$gte": bson::oid::ObjectId::from_bytes([0; 12])},
        ),
        7 => (40, bson::doc! {"$gte": false}),
        // Dates in two halves around the epoch rather than from the
        // smallest date, which some servers cannot take in a query.
        8 => (45, bson::doc! {"$lt": bson::DateTime::from_millis(0)}),
        9 => (45, bson::doc! {"$gte": bson::DateTime::from_millis(0)}),
        10 => (
            47,
            bson::doc! {"$gte": bson::Timestamp { time: 0, increment: 0 }},
        ),
        11 => (127, bson::doc! {"$eq": Bson::MaxKey}),
        _ => return None,
    };
    Some((rank, condition))
}

impl Resume {
    /// After `last`; a NaN `_id` goes on with the other numbers, which no
    /// `$gt: NaN` selects.
    fn after(last: Bson) -> Resume {
        match last {
            Bson::Double(d) if d.is_nan() => Resume::Floor(2),
            other => Resume::After(other),
        }
    }

    /// The `_id` condition of the next page.
    fn condition(&self) -> Option<Document> {
        match self {
            Resume::Start => None,
            Resume::After(last) => Some(bson::doc! {"$gt": last.clone()}),
            Resume::Floor(i) => bracket_floor(*i).map(|(_, c)| c),
        }
    }

    /// Where to go on once a page came back short: the part of `_id`
    /// order this position covered is done.
    fn exhausted(&self) -> Option<Resume> {
        match self {
            // The first page has no `_id` condition, and `$gt: MinKey`
            // crosses brackets: either covered everything.
            Resume::Start | Resume::After(Bson::MinKey) => None,
            Resume::After(last) => {
                let rank = query::compare::type_bracket(last);
                (0..)
                    .map_while(|i| bracket_floor(i).map(|(r, _)| (i, r)))
                    .find(|(_, r)| *r > rank)
                    .map(|(i, _)| Resume::Floor(i))
            }
            Resume::Floor(i) => bracket_floor(i + 1).map(|_| Resume::Floor(i + 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;
    use futures::TryStreamExt;

    use super::*;
    use crate::engines::document::embedded::EmbeddedDocumentStore;

    /// The brackets the conformance case leaves out (MongoDB servers differ
    /// on them): MinKey, NaN, MaxKey, and `$gt: MinKey` crossing brackets.
    #[tokio::test]
    async fn find_batches_walks_min_max_and_nan_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        let ids = [
            Bson::MaxKey,
            Bson::Double(f64::NAN),
            Bson::Double(f64::NEG_INFINITY),
            Bson::Int32(1),
            Bson::MinKey,
            Bson::String("a".into()),
            Bson::Null,
        ];
        let docs = ids.iter().map(|id| doc! {"_id": id.clone()}).collect();
        store.insert_many("c", docs).await.unwrap();
        let expected = store
            .find("c", doc! {}, FindOptions::sorted(doc! {"_id": 1}))
            .await
            .unwrap();
        assert_eq!(expected.len(), ids.len());
        for batch in 1..=8 {
            let walked: Vec<Vec<Document>> = store
                .find_batches("c", doc! {}, batch)
                .try_collect()
                .await
                .unwrap();
            let walked: Vec<Document> = walked.into_iter().flatten().collect();
            // NaN is not equal to itself as f64, so compare as BSON order.
            let ids_of = |docs: &[Document]| -> Vec<String> {
                docs.iter().map(|d| format!("{:?}", d.get("_id"))).collect()
            };
            assert_eq!(ids_of(&walked), ids_of(&expected), "batch {batch}");
        }
    }
}
