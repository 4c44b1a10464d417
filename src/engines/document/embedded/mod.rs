//! The embedded document store: MongoDB's model in process, persisted to a
//! log in the data directory.
//!
//! [`EmbeddedDocumentStore`] keeps every collection in memory and evaluates
//! filters, updates, sorts, projections, pipelines and validators with the
//! [query layer](crate::engines::document::query), within the subset
//! documented on [`DocumentStore`].
//!
//! # Contracts
//!
//! - Durability: each committed change is appended to the log (one
//!   `write(2)`, plus `fsync` when [`EmbeddedDocumentOptions::fsync`] is set)
//!   before the call returns, so an acknowledged write survives `kill -9`
//!   (and, with `fsync`, power loss). The `storage` module describes the
//!   file format, recovery and compaction.
//! - Atomicity: a change is checked in full (unique keys, validator, `_id`)
//!   before it is logged or applied, so a failed write leaves no trace. An
//!   `update_many` is one log record: after a crash it is there whole or not
//!   at all. (MongoDB applies it document by document; its uniqueness checks
//!   here look at the final state of all updated documents together.)
//! - One process per directory: a lock file makes a second open fail with
//!   "documents directory X is in use by another strata process".
//! - Concurrency: one std `RwLock` around the state. Operations are short
//!   and CPU-bound (plus an append to a file), and no lock is held across an
//!   `.await`, so a blocking lock is cheaper than an async one here.
//!   Readers run in parallel; writers are serialized, which is what makes
//!   check-then-apply atomic.
//! - Reads return documents in natural order unless sorted; sorts are
//!   stable. A `limit` of 0 means no limit, as in MongoDB. A find sorted by
//!   `_id` alone walks the `_id` map from the filter's `_id` bounds, so
//!   keyset pages ([`DocumentStoreExt::find_batches`]) cost their own size.
//!
//! # Layout
//!
//! - `storage`: the log, the snapshot, the directory lock.
//! - `record`: the logged changes and their BSON encoding.
//! - `collection`: documents, the `_id` map, indexes and validator of a
//!   collection; the database of collections.
//! - `index`: secondary indexes and key extraction.
//! - `plan`: picking candidates from an index.
//!
//! [`DocumentStoreExt::find_batches`]: crate::engines::document::DocumentStoreExt::find_batches

mod collection;
mod index;
mod plan;
mod record;
mod storage;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{Bson, Document};

use crate::engines::document::query::aggregate::Pipeline;
use crate::engines::document::query::compare::bson_equal;
use crate::engines::document::query::filter::FieldBounds;
use crate::engines::document::query::path::set_path;
use crate::engines::document::query::projection::Projection;
use crate::engines::document::query::schema::Validator;
use crate::engines::document::query::sort::SortSpec;
use crate::engines::document::query::update::Update;
use crate::engines::document::{
    CollectionOptions, DocumentStore, FindOptions, IndexSpec, UpdateOptions, UpdateResult,
};
use crate::error::{Error, Result};
use collection::{Collection, Database, ID_INDEX, IndexPlan};
use plan::Query;
use record::Change;

/// The log is compacted once it is larger than this and than twice the live
/// data: small stores are not worth rewriting.
const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// Options of [`EmbeddedDocumentStore::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedDocumentOptions {
    /// `fsync` the log after every committed change, so acknowledged writes
    /// survive power loss, not just a crash of the process.
    pub fsync: bool,
}

/// The in-process [`DocumentStore`], persisted in one directory.
///
/// Cheap to clone: clones share the same database. The directory stays
/// locked until the last clone is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> strata::Result<()> {
/// use strata::engines::document::DocumentStore;
/// use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = EmbeddedDocumentStore::open(dir.path(), EmbeddedDocumentOptions::default())?;
/// assert_eq!(store.kind(), "embedded");
/// assert!(store.list_collections().await?.is_empty());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct EmbeddedDocumentStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    options: EmbeddedDocumentOptions,
    state: RwLock<State>,
    _lock: storage::DirLock,
}

struct State {
    db: Database,
    log: storage::Log,
    next_lsn: u64,
    /// Do not compact before the log reaches this size.
    compact_floor: u64,
}

impl fmt::Debug for EmbeddedDocumentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDocumentStore")
            .field("dir", &self.inner.dir)
            .field("fsync", &self.inner.options.fsync)
            .finish_non_exhaustive()
    }
}

impl EmbeddedDocumentStore {
    /// Opens (creating when missing) the database stored in `dir`: loads the
    /// snapshot, replays the log and truncates a torn tail left by a crash.
    ///
    /// # Errors
    ///
    /// `Unavailable` when another process (or another open store in this
    /// one) holds the directory; `Internal` naming the file and offset when
    /// a record in the middle of the log is damaged; I/O errors otherwise.
    pub fn open(dir: &Path, options: EmbeddedDocumentOptions) -> Result<Self> {
        Self::open_with(dir, options, COMPACT_MIN_BYTES)
    }

    fn open_with(dir: &Path, options: EmbeddedDocumentOptions, compact_min: u64) -> Result<Self> {
        let op = |e: Error| {
            e.with_operation("open")
                .with_target(dir.display().to_string())
        };
        std::fs::create_dir_all(dir).map_err(|e| op(e.into()))?;
        let lock = storage::lock_dir(dir).map_err(op)?;
        let mut db = Database::default();
        let (log, next_lsn) = storage::open(dir, options.fsync, &mut |decoded| {
            db.apply(decoded.change, &decoded.sizes)
                .map_err(|e| e.message().to_string())
        })
        .map_err(op)?;
        let state = State {
            db,
            log,
            next_lsn,
            compact_floor: compact_min,
        };
        Ok(EmbeddedDocumentStore {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                options,
                state: RwLock::new(state),
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Rewrites the snapshot from the live data and empties the log now,
    /// rather than when the log outgrows the data.
    pub fn compact(&self) -> Result<()> {
        let mut state = self.write()?;
        state.compact(&self.inner.dir)
    }

    /// Size of the log file in bytes (for inspection and tests).
    pub fn log_len(&self) -> Result<u64> {
        Ok(self.read()?.log.len())
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.inner
            .state
            .read()
            .map_err(|_| Error::internal("document store state lock poisoned by a panic"))
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.inner
            .state
            .write()
            .map_err(|_| Error::internal("document store state lock poisoned by a panic"))
    }

    fn target_of(&self, collection: &str) -> String {
        format!("{}/{collection}", self.inner.dir.display())
    }
}

impl State {
    /// Logs `change`, then applies it. `encoded` holds the documents of an
    /// `Insert`/`Put` as encoded by `record::encode_document`.
    fn commit(&mut self, dir: &Path, change: Change, encoded: Vec<Vec<u8>>) -> Result<()> {
        let payload = record::encode(self.next_lsn, &change, &encoded)?;
        self.log.append(&payload)?;
        self.next_lsn += 1;
        let sizes: Vec<u32> = encoded.iter().map(|b| b.len() as u32).collect();
        self.db.apply(change, &sizes).map_err(|e| {
            Error::internal(format!(
                "a logged change could not be applied in memory: {}",
                e.message()
            ))
        })?;
        self.maybe_compact(dir);
        Ok(())
    }

    fn maybe_compact(&mut self, dir: &Path) {
        let len = self.log.len();
        if len < self.compact_floor || len < 2 * self.db.live_bytes() {
            return;
        }
        if let Err(e) = self.compact(dir) {
            // The change that triggered this is already durable in the log,
            // so it must not fail; retry once the log has doubled again.
            tracing::warn!(dir = %dir.display(), error = %e, "compacting the document log failed");
            self.compact_floor = len.saturating_mul(2);
        }
    }

    fn compact(&mut self, dir: &Path) -> Result<()> {
        let lsn = self.next_lsn - 1;
        storage::compact(dir, lsn, self.db.snapshot(), &mut self.log)
            .map_err(|e| e.with_operation("compact"))
    }
}

/// Refuses collection names MongoDB refuses.
fn check_collection_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('\0') || name.contains('$') || name.starts_with("system.") {
        return Err(Error::invalid(format!("invalid collection name {name:?}")));
    }
    Ok(())
}

/// Puts `_id` first, adding an ObjectId when absent, as mongod stores it.
fn with_id_first(mut doc: Document, id: Option<Bson>) -> Document {
    let id = doc
        .remove("_id")
        .or(id)
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    let mut out = Document::new();
    out.insert("_id", id);
    out.extend(doc);
    out
}

fn id_of(doc: &Document) -> Bson {
    doc.get("_id").cloned().unwrap_or(Bson::Null)
}

/// `limit` of [`FindOptions`] as a count: 0 and none both mean unlimited.
fn limit_of(limit: Option<u64>) -> Option<usize> {
    limit
        .filter(|l| *l > 0)
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX))
}

impl EmbeddedDocumentStore {
    /// Inserts documents whose `_id` is set, in order, stopping at the first
    /// that cannot be inserted.
    fn insert_prepared(
        &self,
        state: &mut State,
        collection: &str,
        docs: Vec<Document>,
    ) -> Result<Vec<Bson>> {
        let empty = Collection::default();
        let coll = state.db.collection(collection).unwrap_or(&empty);
        let (ok, mut failure) = coll.check_inserts(collection, &docs);
        let mut accepted = Vec::with_capacity(ok);
        let mut encoded = Vec::with_capacity(ok);
        for doc in docs.into_iter().take(ok) {
            match record::encode_document(&doc) {
                Ok(bytes) => {
                    accepted.push(doc);
                    encoded.push(bytes);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let ids: Vec<Bson> = accepted.iter().map(id_of).collect();
        if !accepted.is_empty() {
            let change = Change::Insert {
                collection: collection.to_string(),
                documents: accepted,
            };
            state.commit(&self.inner.dir, change, encoded)?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(ids),
        }
    }

    /// Replaces documents by new contents (same slots), if any changed.
    fn put(&self, state: &mut State, collection: &str, docs: Vec<(u64, Document)>) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        let coll = state
            .db
            .collection(collection)
            .ok_or_else(|| Error::internal("updated collection vanished"))?;
        coll.check_replacements(collection, &docs)?;
        let documents: Vec<Document> = docs.into_iter().map(|(_, d)| d).collect();
        let encoded = documents
            .iter()
            .map(record::encode_document)
            .collect::<Result<Vec<_>>>()?;
        let change = Change::Put {
            collection: collection.to_string(),
            documents,
        };
        state.commit(&self.inner.dir, change, encoded)
    }

    fn run_update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<UpdateResult> {
        check_collection_name(collection)?;
        let filter = Query::parse(filter)?;
        let update = Update::parse(&update)?;
        let mut state = self.write()?;
        let (matched, changes) = match state.db.collection(collection) {
            None => (0, Vec::new()),
            Some(coll) => {
                let limit = if options.multi { None } else { Some(1) };
                let hits = plan::matching(coll, &filter, limit);
                let mut changes = Vec::new();
                for (slot, doc) in &hits {
                    let mut new = (*doc).clone();
                    if update.apply(&mut new)? {
                        same_id(doc, &new)?;
                        changes.push((*slot, new));
                    }
                }
                (hits.len() as u64, changes)
            }
        };
        if matched == 0 && options.upsert {
            let mut doc = Document::new();
            for (path, value) in filter.filter.equality_fields() {
                set_path(&mut doc, &path, value)?;
            }
            let seeded = doc.clone();
            update.apply(&mut doc)?;
            if seeded.contains_key("_id") {
                same_id(&seeded, &doc)?;
            }
            let doc = with_id_first(doc, None);
            let mut ids = self.insert_prepared(&mut state, collection, vec![doc])?;
            return Ok(UpdateResult {
                matched: 0,
                modified: 0,
                upserted_id: ids.pop(),
            });
        }
        let modified = changes.len() as u64;
        self.put(&mut state, collection, changes)?;
        Ok(UpdateResult {
            matched,
            modified,
            upserted_id: None,
        })
    }

    fn run_replace(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        check_collection_name(collection)?;
        if let Some(key) = replacement.keys().find(|k| k.starts_with('$')) {
            return Err(Error::invalid(format!(
                "a replacement document cannot contain operators, found {key}"
            ))
            .with_field(key.clone()));
        }
        let filter = Query::parse(filter)?;
        let mut state = self.write()?;
        let hit = state
            .db
            .collection(collection)
            .and_then(|c| plan::matching(c, &filter, Some(1)).pop())
            .map(|(slot, doc)| (slot, doc.clone()));
        let Some((slot, old)) = hit else {
            if !upsert {
                return Ok(UpdateResult::default());
            }
            let filter_id = filter
                .filter
                .equality_fields()
                .into_iter()
                .find(|(path, _)| path == "_id")
                .map(|(_, v)| v);
            if let (Some(wanted), Some(given)) = (&filter_id, replacement.get("_id"))
                && !bson_equal(wanted, given)
            {
                return Err(id_changed());
            }
            let doc = with_id_first(replacement, filter_id);
            let mut ids = self.insert_prepared(&mut state, collection, vec![doc])?;
            return Ok(UpdateResult {
                matched: 0,
                modified: 0,
                upserted_id: ids.pop(),
            });
        };
        let id = id_of(&old);
        if let Some(given) = replacement.get("_id")
            && !bson_equal(&id, given)
        {
            return Err(id_changed());
        }
        let new = with_id_first(replacement, Some(id));
        let modified = u64::from(new != old);
        if modified == 1 {
            self.put(&mut state, collection, vec![(slot, new)])?;
        }
        Ok(UpdateResult {
            matched: 1,
            modified,
            upserted_id: None,
        })
    }
}

impl EmbeddedDocumentStore {
    /// Documents of `coll` matching `filter`, sorted, skipped and limited
    /// (before projection).
    fn select<'c>(
        coll: &'c Collection,
        filter: &Query,
        sort: Option<(&SortSpec, &Document)>,
        skip: usize,
        limit: Option<usize>,
    ) -> Vec<&'c Document> {
        let Some((sort, sort_doc)) = sort else {
            let stop = limit.map(|l| l.saturating_add(skip));
            return plan::matching(coll, filter, stop)
                .into_iter()
                .skip(skip)
                .map(|(_, d)| d)
                .collect();
        };
        if let Some(ascending) = id_only_sort(sort_doc) {
            // `_id` order is the `_id` map's order: walk it from the
            // filter's `_id` bounds and stop at the limit, rather than
            // collect and sort every match. Taken when there are such bounds
            // (a keyset page), or when no index would narrow the search.
            let walk = match filter.filter.bounds("_id") {
                Some(FieldBounds::Range { lower, upper }) => Some((lower, upper)),
                Some(FieldBounds::In(_)) => None,
                None if limit.is_some() && !plan::narrows(coll, filter) => Some((None, None)),
                None => None,
            };
            if let Some((lower, upper)) = walk {
                fn end(b: &Option<(Bson, bool)>) -> Option<(&Bson, bool)> {
                    b.as_ref().map(|(v, inc)| (v, *inc))
                }
                return coll
                    .documents_by_id(end(&lower), end(&upper), ascending)
                    .filter(|(_, d)| filter.filter.matches(d))
                    .skip(skip)
                    .take(limit.unwrap_or(usize::MAX))
                    .map(|(_, d)| d)
                    .collect();
            }
        }
        let mut hits = plan::matching(coll, filter, None);
        // Vec::sort_by is stable: ties keep natural order.
        hits.sort_by(|a, b| sort.compare(a.1, b.1));
        hits.into_iter()
            .skip(skip)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(_, d)| d)
            .collect()
    }
}

/// `Some(ascending)` when a sort is by `_id` alone.
fn id_only_sort(sort: &Document) -> Option<bool> {
    if sort.len() != 1 {
        return None;
    }
    match sort.get("_id")? {
        Bson::Int32(1) | Bson::Int64(1) => Some(true),
        Bson::Int32(-1) | Bson::Int64(-1) => Some(false),
        Bson::Double(d) if *d == 1.0 => Some(true),
        Bson::Double(d) if *d == -1.0 => Some(false),
        _ => None,
    }
}

fn id_changed() -> Error {
    Error::invalid("the (immutable) field '_id' cannot be changed").with_field("_id")
}

/// An update must not change `_id` (the query layer refuses it; this makes
/// sure of it before anything is stored).
fn same_id(old: &Document, new: &Document) -> Result<()> {
    match (old.get("_id"), new.get("_id")) {
        (Some(a), Some(b)) if bson_equal(a, b) => Ok(()),
        (None, None) => Ok(()),
        _ => Err(id_changed()),
    }
}

#[async_trait]
impl DocumentStore for EmbeddedDocumentStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn target(&self) -> String {
        self.inner.dir.display().to_string()
    }

    async fn ping(&self) -> Result<()> {
        self.read().map(|_| ())
    }

    async fn create_collection(&self, collection: &str, options: CollectionOptions) -> Result<()> {
        let op = |e: Error| {
            e.with_operation("create_collection")
                .with_target(self.target_of(collection))
        };
        check_collection_name(collection).map_err(op)?;
        if let Some(v) = &options.validator {
            Validator::parse(v).map_err(op)?;
        }
        let mut state = self.write().map_err(op)?;
        let needed = match state.db.collection(collection) {
            None => true,
            Some(c) => options.validator.is_some() && c.validator() != options.validator.as_ref(),
        };
        if needed {
            let change = Change::CreateCollection {
                collection: collection.to_string(),
                validator: options.validator,
            };
            state
                .commit(&self.inner.dir, change, Vec::new())
                .map_err(op)?;
        }
        Ok(())
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        Ok(self.read()?.db.names())
    }

    async fn drop_collection(&self, collection: &str) -> Result<()> {
        let mut state = self.write()?;
        if state.db.collection(collection).is_some() {
            let change = Change::DropCollection {
                collection: collection.to_string(),
            };
            state
                .commit(&self.inner.dir, change, Vec::new())
                .map_err(|e| e.with_operation("drop_collection"))?;
        }
        Ok(())
    }

    async fn drop_database(&self) -> Result<()> {
        let mut state = self.write()?;
        if !state.db.names().is_empty() {
            state
                .commit(&self.inner.dir, Change::DropDatabase, Vec::new())
                .map_err(|e| e.with_operation("drop_database"))?;
        }
        Ok(())
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<Vec<Bson>> {
        let op = |e: Error| {
            e.with_operation("insert_many")
                .with_target(self.target_of(collection))
        };
        check_collection_name(collection).map_err(op)?;
        let docs: Vec<Document> = documents
            .into_iter()
            .map(|d| with_id_first(d, None))
            .collect();
        let mut state = self.write().map_err(op)?;
        self.insert_prepared(&mut state, collection, docs)
            .map_err(op)
    }

    async fn find(
        &self,
        collection: &str,
        filter: Document,
        options: FindOptions,
    ) -> Result<Vec<Document>> {
        let op = |e: Error| {
            e.with_operation("find")
                .with_target(self.target_of(collection))
        };
        let filter = Query::parse(filter).map_err(op)?;
        let sort = options
            .sort
            .as_ref()
            .map(|s| SortSpec::parse(s).map(|spec| (spec, s)))
            .transpose()
            .map_err(op)?;
        let projection = options
            .projection
            .as_ref()
            .map(Projection::parse)
            .transpose()
            .map_err(op)?;
        let skip = usize::try_from(options.skip.unwrap_or(0)).unwrap_or(usize::MAX);
        let limit = limit_of(options.limit);
        let found: Vec<Document> = {
            let state = self.read().map_err(op)?;
            let Some(coll) = state.db.collection(collection) else {
                return Ok(Vec::new());
            };
            let sort = sort.as_ref().map(|(spec, doc)| (spec, *doc));
            Self::select(coll, &filter, sort, skip, limit)
                .into_iter()
                .cloned()
                .collect()
        };
        Ok(match projection {
            Some(p) => found.iter().map(|d| p.apply(d)).collect(),
            None => found,
        })
    }

    async fn count(&self, collection: &str, filter: Document) -> Result<u64> {
        let op = |e: Error| {
            e.with_operation("count")
                .with_target(self.target_of(collection))
        };
        let filter = Query::parse(filter).map_err(op)?;
        let state = self.read().map_err(op)?;
        Ok(state
            .db
            .collection(collection)
            .map_or(0, |c| plan::matching(c, &filter, None).len() as u64))
    }

    async fn update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<UpdateResult> {
        self.run_update(collection, filter, update, options)
            .map_err(|e| {
                e.with_operation("update")
                    .with_target(self.target_of(collection))
            })
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        self.run_replace(collection, filter, replacement, upsert)
            .map_err(|e| {
                e.with_operation("replace_one")
                    .with_target(self.target_of(collection))
            })
    }

    async fn delete(&self, collection: &str, filter: Document, multi: bool) -> Result<u64> {
        let op = |e: Error| {
            e.with_operation("delete")
                .with_target(self.target_of(collection))
        };
        let filter = Query::parse(filter).map_err(op)?;
        let mut state = self.write().map_err(op)?;
        let ids: Vec<Bson> = match state.db.collection(collection) {
            None => return Ok(0),
            Some(coll) => {
                let limit = if multi { None } else { Some(1) };
                plan::matching(coll, &filter, limit)
                    .into_iter()
                    .map(|(_, d)| id_of(d))
                    .collect()
            }
        };
        let deleted = ids.len() as u64;
        if deleted > 0 {
            let change = Change::Delete {
                collection: collection.to_string(),
                ids,
            };
            state
                .commit(&self.inner.dir, change, Vec::new())
                .map_err(op)?;
        }
        Ok(deleted)
    }

    async fn aggregate(&self, collection: &str, pipeline: Vec<Document>) -> Result<Vec<Document>> {
        let op = |e: Error| {
            e.with_operation("aggregate")
                .with_target(self.target_of(collection))
        };
        let parsed = Pipeline::parse(&pipeline).map_err(op)?;
        // A leading $match can be answered from an index; the pipeline runs
        // it again over the candidates, which is harmless.
        let leading = match pipeline.first().map(|s| s.get("$match")) {
            Some(Some(Bson::Document(m))) if pipeline.first().is_some_and(|s| s.len() == 1) => {
                Some(Query::parse(m.clone()).map_err(op)?)
            }
            _ => None,
        };
        let (input, mut foreign) = {
            let state = self.read().map_err(op)?;
            let input: Vec<Document> = match state.db.collection(collection) {
                None => Vec::new(),
                Some(c) => match &leading {
                    Some(f) => plan::matching(c, f, None)
                        .into_iter()
                        .map(|(_, d)| d.clone())
                        .collect(),
                    None => c.documents().map(|(_, d)| d.clone()).collect(),
                },
            };
            let mut foreign: HashMap<String, Vec<Document>> = HashMap::new();
            for name in parsed.foreign_collections() {
                let docs = state
                    .db
                    .collection(&name)
                    .map(|c| c.documents().map(|(_, d)| d.clone()).collect())
                    .unwrap_or_default();
                foreign.insert(name, docs);
            }
            (input, foreign)
        };
        let mut load = |name: &str| -> Result<Vec<Document>> {
            if let Some(docs) = foreign.get(name) {
                return Ok(docs.clone());
            }
            let state = self.read()?;
            let docs: Vec<Document> = state
                .db
                .collection(name)
                .map(|c| c.documents().map(|(_, d)| d.clone()).collect())
                .unwrap_or_default();
            drop(state);
            foreign.insert(name.to_string(), docs.clone());
            Ok(docs)
        };
        parsed.run(input, &mut load).map_err(op)
    }

    async fn create_index(&self, collection: &str, index: IndexSpec) -> Result<String> {
        let op = |e: Error| {
            e.with_operation("create_index")
                .with_target(self.target_of(collection))
        };
        check_collection_name(collection).map_err(op)?;
        let mut state = self.write().map_err(op)?;
        let empty = Collection::default();
        let coll = state.db.collection(collection).unwrap_or(&empty);
        match coll.check_index(collection, &index).map_err(op)? {
            IndexPlan::Exists(name) => Ok(name),
            IndexPlan::Create(spec) => {
                let name = spec.effective_name();
                let change = Change::CreateIndex {
                    collection: collection.to_string(),
                    spec,
                };
                state
                    .commit(&self.inner.dir, change, Vec::new())
                    .map_err(op)?;
                Ok(name)
            }
        }
    }

    async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexSpec>> {
        let state = self.read()?;
        let Some(coll) = state.db.collection(collection) else {
            return Ok(Vec::new());
        };
        let mut out = vec![IndexSpec::new(bson::doc! {"_id": 1}).named(ID_INDEX)];
        out.extend(coll.indexes().iter().map(|i| i.spec().clone()));
        Ok(out)
    }

    async fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        let op = |e: Error| {
            e.with_operation("drop_index")
                .with_target(self.target_of(collection))
        };
        if name == ID_INDEX {
            return Err(op(Error::invalid("cannot drop _id index")));
        }
        if name == "*" {
            return Err(op(Error::unsupported(
                "drop_index \"*\" (dropping every index at once) is not supported",
            )));
        }
        let mut state = self.write().map_err(op)?;
        let exists = state
            .db
            .collection(collection)
            .is_some_and(|c| c.indexes().iter().any(|i| i.name() == name));
        if exists {
            let change = Change::DropIndex {
                collection: collection.to_string(),
                name: name.to_string(),
            };
            state
                .commit(&self.inner.dir, change, Vec::new())
                .map_err(op)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;
    use proptest::prelude::*;

    use super::*;
    use crate::engines::document::DocumentStoreExt;

    #[tokio::test]
    async fn log_compacts_itself_once_it_outgrows_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedDocumentOptions::default();
        let store = EmbeddedDocumentStore::open_with(dir.path(), options, 64 * 1024).unwrap();
        store
            .insert_one("c", doc! {"_id": 1, "n": 0, "pad": "p".repeat(200)})
            .await
            .unwrap();
        let mut shrank = false;
        let mut previous = store.log_len().unwrap();
        for i in 1..=2000 {
            store
                .update_one("c", doc! {"_id": 1}, doc! {"$set": {"n": i}}, false)
                .await
                .unwrap();
            let len = store.log_len().unwrap();
            shrank |= len < previous;
            previous = len;
            assert!(len < 2 * 64 * 1024, "log grew to {len} without compacting");
        }
        assert!(shrank, "the log never compacted");
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        let found = store
            .find("c", doc! {}, FindOptions::default())
            .await
            .unwrap();
        assert_eq!(
            found,
            vec![doc! {"_id": 1, "n": 2000, "pad": "p".repeat(200)}]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_tasks_see_every_acknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        store
            .create_index("c", IndexSpec::new(doc! {"task": 1}))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for task in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50u64 {
                    store
                        .insert_one("c", doc! {"task": task, "i": i as i64})
                        .await
                        .unwrap();
                    // A task's own acknowledged writes are visible at once.
                    let seen = store.count("c", doc! {"task": task}).await.unwrap();
                    assert_eq!(seen, i + 1);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.count("c", doc! {}).await.unwrap(), 400);
    }

    #[tokio::test]
    async fn fsync_mode_persists_too() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedDocumentOptions { fsync: true };
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        store.insert_one("c", doc! {"_id": 1}).await.unwrap();
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        assert_eq!(store.count("c", doc! {}).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn invalid_names_and_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        for name in ["", "a$b", "system.x"] {
            let err = store.insert_one(name, doc! {}).await.unwrap_err();
            assert_eq!(
                err.kind(),
                crate::error::ErrorKind::InvalidInput,
                "{name:?}"
            );
        }
        let err = store.insert_one("c", doc! {"_id": [1]}).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
        let err = store
            .create_index("c", IndexSpec::new(doc! {"a": "text"}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Unsupported);
        assert!(store.list_collections().await.unwrap().is_empty());
    }

    fn id_value() -> impl Strategy<Value = Bson> {
        prop_oneof![
            (-5i32..5).prop_map(Bson::Int32),
            (-5i64..5).prop_map(|i| Bson::Double(i as f64 + 0.5)),
            "[a-c]{0,2}".prop_map(Bson::String),
            Just(Bson::Null),
            any::<bool>().prop_map(Bson::Boolean),
            (0i64..3).prop_map(|i| Bson::DateTime(bson::DateTime::from_millis(i))),
        ]
    }

    fn id_filter() -> impl Strategy<Value = Document> {
        prop_oneof![
            Just(doc! {}),
            id_value().prop_map(|v| doc! {"_id": {"$gt": v}}),
            id_value().prop_map(|v| doc! {"_id": {"$lte": v}}),
            (id_value(), id_value()).prop_map(|(a, b)| doc! {"_id": {"$gte": a, "$lt": b}}),
            (id_value(), 0i32..3).prop_map(|(a, m)| doc! {"$and": [{"_id": {"$gt": a}}, {"m": m}]}),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A find sorted by `_id` alone (answered by walking the `_id` map)
        /// returns what the general sort returns.
        #[test]
        fn id_order_walks_equal_sorting(
            ids in proptest::collection::btree_set("[a-z]{0,3}|-?[0-9]", 0..12),
            extra in proptest::collection::vec(id_value(), 0..10),
            filter in id_filter(),
            ascending in any::<bool>(),
            skip in 0u64..3,
            limit in 0u64..5,
            indexed in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
                if indexed {
                    store.create_index("c", IndexSpec::new(doc! {"m": 1})).await.unwrap();
                }
                let mut all_ids: Vec<Bson> = ids.into_iter().map(|s| match s.parse::<i32>() {
                    Ok(i) => Bson::Int32(i),
                    Err(_) => Bson::String(s),
                }).collect();
                all_ids.extend(extra);
                for (n, id) in all_ids.into_iter().enumerate() {
                    // Duplicates (1 and 1.0, say) are refused; that is fine.
                    let _ = store.insert_one("c", doc! {"_id": id, "m": (n % 3) as i32}).await;
                }
                let dir_ = if ascending { 1 } else { -1 };
                let walked = store
                    .find("c", filter.clone(), FindOptions::sorted(doc! {"_id": dir_}).skip(skip).limit(limit))
                    .await
                    .unwrap();
                // A second sort key makes the store sort in general; `_id`
                // is unique, so the order is the same.
                let sorted = store
                    .find("c", filter.clone(), FindOptions::sorted(doc! {"_id": dir_, "m": 1}).skip(skip).limit(limit))
                    .await
                    .unwrap();
                prop_assert_eq!(walked, sorted, "filter {}", filter);
                Ok(())
            })?;
        }
    }
}
