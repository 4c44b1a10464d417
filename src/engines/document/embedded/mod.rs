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
//! - Durability: each committed change is appended to the log by the writer
//!   thread (one `write(2)` per group of queued changes, plus one `fsync`
//!   when [`EmbeddedDocumentOptions::fsync`] is set) before the call
//!   returns, so an acknowledged write survives `kill -9` (and, with
//!   `fsync`, power loss; without it, a power loss loses at most about the
//!   last second of writes, since the log is fsynced at each checkpoint).
//! - Honest files: the data directory's manifest records what it holds, and
//!   opening checks the files against it: a deleted or emptied log, or one
//!   cut short, is an error naming the file and what was expected, never an
//!   empty store. The `recovery` module lists every case.
//! - Never blocking the async runtime: callers wait for the disk by awaiting
//!   an acknowledgement; the log is written on the writer thread and the
//!   snapshot on a compaction thread. Compaction runs in the background
//!   while reads and writes go on (`compaction`).
//! - Visibility: a change is visible to reads as soon as it is applied,
//!   just before it is written to the log, so a read racing a write may see
//!   it before the write is acknowledged (as MongoDB's default read concern
//!   `local` does); a crash in that window loses it, and nothing
//!   acknowledged.
//! - Atomicity: a change is checked in full (unique keys, validator, `_id`)
//!   before it is applied or logged, so a refused write leaves no trace. An
//!   `update_many` is one log record: after a crash it is there whole or not
//!   at all. (MongoDB applies it document by document; its uniqueness checks
//!   here look at the final state of all updated documents together.)
//! - A write the log could not take fails the store: the change is in
//!   memory already, so every later call fails naming the cause until the
//!   store is reopened, which loads what the files hold.
//! - One process per directory: a lock file makes a second open fail with
//!   "documents directory X is in use by another strata process".
//! - Concurrency: one std `RwLock` around the in-memory state, held only for
//!   CPU work (never across an `.await` or a file write), so a blocking lock
//!   is cheaper than an async one here. Readers run in parallel; writers
//!   are serialized, which is what makes check-then-apply atomic and gives
//!   the log its order.
//! - Reads return documents in natural order unless sorted; sorts are
//!   stable. A `limit` of 0 means no limit, as in MongoDB. A find sorted by
//!   `_id` alone walks the `_id` map from the filter's `_id` bounds, so
//!   keyset pages ([`DocumentStoreExt::find_batches`]) cost their own size.
//! - TTL indexes: a sweeper thread (holding the store weakly, stopped
//!   when it is dropped) deletes expired documents every
//!   [`TTL_SWEEP_INTERVAL`], under the write lock and through the log like
//!   any delete; [`EmbeddedDocumentStore::sweep_expired`] runs one sweep
//!   on demand.
//! - Memory: every document is held decoded (about 1.5 KiB for a typical
//!   model config; `docs/engines.md` has the measurements).
//!
//! # Layout
//!
//! - `storage`: framed records, log and snapshot files, the directory lock.
//! - `manifest`: what the directory holds.
//! - `recovery`: opening a directory, checking it, replaying it.
//! - `writer`: the thread that writes the log and the manifest.
//! - `compaction`: the background rewrite of the snapshot.
//! - `record`: the logged changes and their BSON encoding.
//! - `collection`: documents, the `_id` map, indexes and validator of a
//!   collection; the database of collections.
//! - `index`: secondary indexes and key extraction.
//! - `plan`: picking candidates from an index.
//!
//! [`DocumentStoreExt::find_batches`]: crate::engines::document::DocumentStoreExt::find_batches

mod collection;
mod compaction;
mod index;
mod manifest;
mod plan;
mod record;
mod recovery;
mod storage;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bson::oid::ObjectId;
use bson::{Bson, Document};
use tokio::sync::oneshot;

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
use crate::error::{Error, ErrorKind, Result};
use collection::{Collection, Database, ID_INDEX, IndexPlan};
use plan::Query;
use record::Change;
use writer::{Ack, Command, Failure};

/// How often the sweeper thread deletes documents TTL indexes expire: every
/// 60 s, as mongod's TTL monitor.
pub const TTL_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The log is compacted once it is larger than this and than twice the live
/// data: small stores are not worth rewriting.
const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// What a data directory holds, as [`EmbeddedDocumentStore::inspect`]
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryState {
    /// No store yet: the first open creates it.
    Absent,
    /// A running strata process holds it (its files are not read).
    InUse,
    /// A store no process holds, its manifest readable.
    Idle {
        /// Log bytes known durable at the last checkpoint.
        durable_log_bytes: u64,
        /// The last change's sequence number at that checkpoint.
        last_lsn: u64,
    },
    /// Files without a manifest: a store written by an older strata (the
    /// next open rewrites it), or one whose manifest was lost (the next
    /// open refuses it, naming the damage).
    Unmanifested,
}

/// Options of [`EmbeddedDocumentStore::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbeddedDocumentOptions {
    /// `fsync` the log after every group of committed changes, so
    /// acknowledged writes survive power loss, not just a crash of the
    /// process.
    pub fsync: bool,
}

/// The in-process [`DocumentStore`], persisted in one directory.
///
/// Cheap to clone: clones share the same database. The directory stays
/// locked until the last clone is dropped; dropping it waits for the writer
/// thread's last checkpoint (a few milliseconds) and cancels a running
/// compaction.
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
    shared: Arc<Shared>,
    options: EmbeddedDocumentOptions,
    writer: Option<JoinHandle<()>>,
    sweeper: Option<Sweeper>,
    _lock: storage::DirLock,
}

/// The thread that deletes expired documents every [`TTL_SWEEP_INTERVAL`].
struct Sweeper {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    /// Starts the thread; it holds the store weakly, so it does not keep it
    /// open.
    fn spawn(store: Weak<Inner>) -> Result<Sweeper> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("strata-docs-ttl".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TTL_SWEEP_INTERVAL)
                {
                    let Some(inner) = store.upgrade() else { return };
                    let store = EmbeddedDocumentStore { inner };
                    // The records are written whether or not their
                    // acknowledgements are awaited.
                    match store.expire(bson::DateTime::now()) {
                        Ok((0, _)) => {}
                        Ok((deleted, _)) => {
                            tracing::debug!(dir = %store.dir().display(), deleted, "deleted expired documents");
                        }
                        Err(e) => {
                            tracing::warn!(dir = %store.dir().display(), error = %e, "could not delete expired documents");
                        }
                    }
                }
            })
            .map_err(|e| Error::internal(format!("starting the TTL sweeper thread: {e}")))?;
        Ok(Sweeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            // The sweeper may hold the last handle itself, and then drops
            // the store on its own thread: it must not wait for itself.
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// What the store's handles, the writer thread's commands and the
/// compaction thread share.
struct Shared {
    dir: PathBuf,
    store: ObjectId,
    state: RwLock<State>,
    failure: Arc<Failure>,
    compaction: Mutex<Compaction>,
    /// Set when the store is dropped: a running compaction stops.
    cancel: AtomicBool,
    compact_min: u64,
    #[cfg(test)]
    faults: Arc<writer::Faults>,
}

#[derive(Default)]
struct Compaction {
    thread: Option<JoinHandle<()>>,
    /// Callers of [`EmbeddedDocumentStore::compact`] waiting for the running
    /// compaction.
    waiters: Vec<oneshot::Sender<Result<()>>>,
    completed: u64,
}

struct State {
    db: Database,
    next_lsn: u64,
    /// Bytes the log holds once every queued record is written.
    log_bytes: u64,
    compacting: bool,
    /// Do not compact before the log reaches this size.
    compact_floor: u64,
    writer: Sender<Command>,
}

impl Shared {
    fn read(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.failure.check(&self.dir)?;
        self.state.read().map_err(|_| poisoned())
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.failure.check(&self.dir)?;
        self.state.write().map_err(|_| poisoned())
    }

    /// The state even after a panic elsewhere, for bookkeeping that must
    /// happen regardless.
    fn lock_write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_compaction(&self) -> MutexGuard<'_, Compaction> {
        self.compaction
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn poisoned() -> Error {
    Error::internal("document store state lock poisoned by a panic")
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.sweeper.take());
        self.shared.cancel.store(true, Ordering::Relaxed);
        let compaction = self.shared.lock_compaction().thread.take();
        if let Some(thread) = compaction {
            let _ = thread.join();
        }
        let _ = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .writer
            .send(Command::Shutdown);
        if let Some(thread) = self.writer.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for EmbeddedDocumentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedDocumentStore")
            .field("dir", &self.inner.shared.dir)
            .field("fsync", &self.inner.options.fsync)
            .finish_non_exhaustive()
    }
}

/// Waits until a queued change is in the log.
async fn durable(ack: Option<Ack>) -> Result<()> {
    match ack {
        None => Ok(()),
        Some(ack) => ack.await.map_err(|_| {
            Error::internal("the document log writer stopped before acknowledging a write")
        })?,
    }
}

impl EmbeddedDocumentStore {
    /// What `dir` holds, learnt without writing to it or creating
    /// anything (for `strata doctor`): nothing yet, a directory a running
    /// strata holds, or an idle store whose manifest reads. Damage beyond
    /// the manifest is found by [`open`](Self::open) only.
    ///
    /// # Errors
    ///
    /// `Config` when `dir` is not a directory; `Internal` naming the
    /// manifest when it cannot be parsed; I/O errors otherwise.
    pub fn inspect(dir: &Path) -> Result<DirectoryState> {
        let op = |e: Error| {
            e.with_operation("inspect")
                .with_target(dir.display().to_string())
        };
        match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(op(Error::new(
                    ErrorKind::Config,
                    format!("{} is not a directory", dir.display()),
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DirectoryState::Absent);
            }
            Err(e) => return Err(op(storage::io_error(e, "reading", dir))),
        }
        if storage::lock_held(dir).map_err(op)? {
            return Ok(DirectoryState::InUse);
        }
        match manifest::read(dir).map_err(op)? {
            Some(m) => Ok(DirectoryState::Idle {
                durable_log_bytes: m.log.durable_bytes,
                last_lsn: m.log.last_lsn,
            }),
            None => {
                let empty = std::fs::read_dir(dir)
                    .map_err(|e| op(storage::io_error(e, "listing", dir)))?
                    .filter_map(|entry| entry.ok())
                    .all(|entry| entry.file_name() == std::ffi::OsStr::new(storage::LOCK_FILE));
                Ok(if empty {
                    DirectoryState::Absent
                } else {
                    DirectoryState::Unmanifested
                })
            }
        }
    }

    /// Opens (creating when missing) the database stored in `dir`: checks
    /// the files against the manifest, loads the snapshot, replays the log
    /// and cuts off a torn tail left by a crash. Blocking: call it off the
    /// async worker threads (`spawn_blocking`).
    ///
    /// # Errors
    ///
    /// `Unavailable` when another process (or another open store in this
    /// one) holds the directory; `Internal` naming the file (and offset)
    /// when a file is missing, emptied, cut short or damaged where the
    /// manifest says data was; I/O errors otherwise.
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
        let recovered = recovery::open(dir, &mut db).map_err(op)?;
        let store = recovered.store;
        let next_lsn = recovered.last_lsn + 1;
        let log_bytes = recovered.log.len();
        let failure = Arc::new(Failure::default());
        #[cfg(test)]
        let faults = Arc::new(writer::Faults::default());
        let (tx, thread) = writer::spawn(
            dir,
            recovered,
            options.fsync,
            Arc::clone(&failure),
            #[cfg(test)]
            Arc::clone(&faults),
        )
        .map_err(op)?;
        let state = State {
            db,
            next_lsn,
            log_bytes,
            compacting: false,
            compact_floor: compact_min,
            writer: tx,
        };
        let shared = Shared {
            dir: dir.to_path_buf(),
            store,
            state: RwLock::new(state),
            failure,
            compaction: Mutex::new(Compaction::default()),
            cancel: AtomicBool::new(false),
            compact_min,
            #[cfg(test)]
            faults,
        };
        let mut failed = None;
        let inner = Arc::new_cyclic(|weak| {
            let sweeper = Sweeper::spawn(weak.clone())
                .map_err(|e| failed = Some(e))
                .ok();
            Inner {
                shared: Arc::new(shared),
                options,
                writer: Some(thread),
                sweeper,
                _lock: lock,
            }
        });
        match failed {
            // Dropping `inner` stops the writer and unlocks the directory.
            Some(e) => Err(op(e)),
            None => Ok(EmbeddedDocumentStore { inner }),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Rewrites the snapshot from the live data and starts a new log now,
    /// rather than when the log outgrows the data, and waits until it is
    /// done. Reads and writes go on meanwhile. When a compaction is already
    /// running, waits for it, then runs a fresh one.
    pub async fn compact(&self) -> Result<()> {
        loop {
            let (done, mine) = {
                let mut state = self.write()?;
                let (tx, rx) = oneshot::channel();
                let mine = !state.compacting;
                if mine {
                    self.start_compaction(&mut state)
                        .map_err(|e| e.with_operation("compact"))?;
                }
                self.inner.shared.lock_compaction().waiters.push(tx);
                (rx, mine)
            };
            let result = done
                .await
                .map_err(|_| Error::internal("a compaction ended without a result"))?;
            if mine {
                return result;
            }
        }
    }

    /// Deletes, now, every document a TTL index
    /// ([`IndexSpec::expire_after`]) says has expired, and returns how many
    /// once their deletion is in the log. The sweeper thread does the same
    /// every [`TTL_SWEEP_INTERVAL`] (60 s, as mongod's TTL monitor); this
    /// runs a sweep on demand (tests, `strata` commands).
    ///
    /// A document expires when the indexed field holds a date (for an array,
    /// its earliest date) before `now - expire_after`; a missing field or
    /// one of another type never expires. The deletions go through the log
    /// like any `delete`, one record per collection, so they survive a
    /// restart.
    pub async fn sweep_expired(&self) -> Result<u64> {
        let op = |e: Error| e.with_operation("sweep_expired").with_target(self.target());
        let (deleted, acks) = self.expire(bson::DateTime::now()).map_err(op)?;
        for ack in acks {
            durable(Some(ack)).await.map_err(op)?;
        }
        Ok(deleted)
    }

    /// Deletes the documents expired at `now`; how many, and the
    /// acknowledgements of their records.
    fn expire(&self, now: bson::DateTime) -> Result<(u64, Vec<Ack>)> {
        let mut state = self.write()?;
        let mut expired: Vec<(String, Vec<Bson>)> = Vec::new();
        for name in state.db.names() {
            let Some(coll) = state.db.collection(&name) else {
                continue;
            };
            // By slot: a document two TTL indexes expire is deleted once.
            let mut ids: std::collections::BTreeMap<u64, Bson> = Default::default();
            for index in coll.indexes() {
                let spec = index.spec();
                let (Some(after), Some(field)) = (spec.expire_after, spec.keys.keys().next())
                else {
                    continue;
                };
                let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
                let cutoff =
                    bson::DateTime::from_millis(now.timestamp_millis().saturating_sub(after));
                // `$lt` a date matches dates only (and an array holding
                // one), as MongoDB's type bracketing has it.
                let filter = Query::parse(bson::doc! {field.as_str(): {"$lt": cutoff}})?;
                for (slot, doc) in plan::matching(coll, &filter, None) {
                    ids.entry(slot).or_insert_with(|| id_of(doc));
                }
            }
            if !ids.is_empty() {
                expired.push((name, ids.into_values().collect()));
            }
        }
        let mut deleted = 0;
        let mut acks = Vec::with_capacity(expired.len());
        for (collection, ids) in expired {
            deleted += ids.len() as u64;
            let change = Change::Delete { collection, ids };
            acks.push(self.commit(&mut state, change, Vec::new())?);
        }
        Ok((deleted, acks))
    }

    /// Size of the log in bytes once every acknowledged write is in it (for
    /// inspection and tests).
    pub fn log_len(&self) -> Result<u64> {
        Ok(self.read()?.log_bytes)
    }

    /// Compactions completed since the store was opened.
    #[cfg(test)]
    fn compactions(&self) -> u64 {
        self.inner.shared.lock_compaction().completed
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, State>> {
        self.inner.shared.read()
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, State>> {
        self.inner.shared.write()
    }

    fn target_of(&self, collection: &str) -> String {
        format!("{}/{collection}", self.inner.shared.dir.display())
    }

    /// Starts a compaction thread; the caller holds the state lock, so the
    /// thread begins once the caller is done.
    fn start_compaction(&self, state: &mut State) -> Result<()> {
        let shared = Arc::clone(&self.inner.shared);
        let thread = std::thread::Builder::new()
            .name("strata-docs-compact".into())
            .spawn(move || compaction::run(shared))
            .map_err(|e| Error::internal(format!("starting a compaction thread: {e}")))?;
        state.compacting = true;
        // A previous thread, if any, has finished its work (`compacting`
        // was false); it needs no joining.
        self.inner.shared.lock_compaction().thread = Some(thread);
        Ok(())
    }

    /// Applies `change` in memory and queues its record for the log; the
    /// acknowledgement resolves once the record is written. `encoded` holds
    /// the documents of an `Insert`/`Put` as encoded by
    /// `record::encode_document`.
    fn commit(&self, state: &mut State, change: Change, encoded: Vec<Vec<u8>>) -> Result<Ack> {
        let shared = &self.inner.shared;
        let lsn = state.next_lsn;
        let payload = record::encode(lsn, &change, &encoded)?;
        let framed = storage::frame(&payload)?;
        let framed_len = framed.len() as u64;
        let sizes: Vec<u32> = encoded.iter().map(|b| b.len() as u32).collect();
        if let Err(e) = state.db.apply(change, &sizes) {
            // A checked change that does not apply is a bug, and memory may
            // hold part of it now: only the files can be trusted.
            shared.failure.set(format!(
                "a checked change could not be applied in memory: {}",
                e.message()
            ));
            shared.failure.check(&shared.dir)?;
        }
        let (done, ack) = oneshot::channel();
        if state
            .writer
            .send(Command::Append { lsn, framed, done })
            .is_err()
        {
            shared
                .failure
                .set("the document log writer has stopped".to_string());
            shared.failure.check(&shared.dir)?;
        }
        state.next_lsn += 1;
        state.log_bytes += framed_len;
        if !state.compacting
            && state.log_bytes >= state.compact_floor
            && state.log_bytes >= 2 * state.db.live_bytes()
            && let Err(e) = self.start_compaction(state)
        {
            tracing::warn!(dir = %shared.dir.display(), error = %e, "could not start compacting the document log");
            state.compact_floor = state.log_bytes.saturating_mul(2);
        }
        Ok(ack)
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

/// What inserting a batch did: the `_id`s inserted, the error that stopped
/// the rest, and the acknowledgement of the inserted ones.
struct Inserted {
    ids: Vec<Bson>,
    failure: Option<Error>,
    ack: Option<Ack>,
}

impl EmbeddedDocumentStore {
    /// Inserts documents whose `_id` is set, in order, stopping at the first
    /// that cannot be inserted.
    fn insert_prepared(
        &self,
        state: &mut State,
        collection: &str,
        docs: Vec<Document>,
    ) -> Result<Inserted> {
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
        let ack = if accepted.is_empty() {
            None
        } else {
            let change = Change::Insert {
                collection: collection.to_string(),
                documents: accepted,
            };
            Some(self.commit(state, change, encoded)?)
        };
        Ok(Inserted { ids, failure, ack })
    }

    /// Replaces documents by new contents (same slots), if any changed.
    fn put(
        &self,
        state: &mut State,
        collection: &str,
        docs: Vec<(u64, Document)>,
    ) -> Result<Option<Ack>> {
        if docs.is_empty() {
            return Ok(None);
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
        self.commit(state, change, encoded).map(Some)
    }

    fn run_update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<(UpdateResult, Option<Ack>)> {
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
            return self.upsert(&mut state, collection, doc);
        }
        let modified = changes.len() as u64;
        let ack = self.put(&mut state, collection, changes)?;
        let result = UpdateResult {
            matched,
            modified,
            upserted_id: None,
        };
        Ok((result, ack))
    }

    /// Inserts the document an upsert made.
    fn upsert(
        &self,
        state: &mut State,
        collection: &str,
        doc: Document,
    ) -> Result<(UpdateResult, Option<Ack>)> {
        let mut inserted = self.insert_prepared(state, collection, vec![doc])?;
        if let Some(e) = inserted.failure {
            // One document: refused whole, nothing was committed.
            return Err(e);
        }
        let result = UpdateResult {
            matched: 0,
            modified: 0,
            upserted_id: inserted.ids.pop(),
        };
        Ok((result, inserted.ack))
    }

    fn run_replace(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<(UpdateResult, Option<Ack>)> {
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
                return Ok((UpdateResult::default(), None));
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
            return self.upsert(&mut state, collection, doc);
        };
        let id = id_of(&old);
        if let Some(given) = replacement.get("_id")
            && !bson_equal(&id, given)
        {
            return Err(id_changed());
        }
        let new = with_id_first(replacement, Some(id));
        let modified = u64::from(new != old);
        let ack = if modified == 1 {
            self.put(&mut state, collection, vec![(slot, new)])?
        } else {
            None
        };
        let result = UpdateResult {
            matched: 1,
            modified,
            upserted_id: None,
        };
        Ok((result, ack))
    }

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
        self.inner.shared.dir.display().to_string()
    }

    async fn ping(&self) -> Result<()> {
        self.read()
            .map(|_| ())
            .map_err(|e| e.with_operation("ping").with_target(self.target()))
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
        let ack = {
            let mut state = self.write().map_err(op)?;
            let needed = match state.db.collection(collection) {
                None => true,
                Some(c) => {
                    options.validator.is_some() && c.validator() != options.validator.as_ref()
                }
            };
            if needed {
                let change = Change::CreateCollection {
                    collection: collection.to_string(),
                    validator: options.validator,
                };
                Some(self.commit(&mut state, change, Vec::new()).map_err(op)?)
            } else {
                None
            }
        };
        durable(ack).await.map_err(op)
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        Ok(self.read()?.db.names())
    }

    async fn drop_collection(&self, collection: &str) -> Result<()> {
        let op = |e: Error| {
            e.with_operation("drop_collection")
                .with_target(self.target_of(collection))
        };
        let ack = {
            let mut state = self.write().map_err(op)?;
            if state.db.collection(collection).is_some() {
                let change = Change::DropCollection {
                    collection: collection.to_string(),
                };
                Some(self.commit(&mut state, change, Vec::new()).map_err(op)?)
            } else {
                None
            }
        };
        durable(ack).await.map_err(op)
    }

    async fn drop_database(&self) -> Result<()> {
        let op = |e: Error| e.with_operation("drop_database").with_target(self.target());
        let ack = {
            let mut state = self.write().map_err(op)?;
            if state.db.names().is_empty() {
                None
            } else {
                Some(
                    self.commit(&mut state, Change::DropDatabase, Vec::new())
                        .map_err(op)?,
                )
            }
        };
        durable(ack).await.map_err(op)
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
        let inserted = {
            let mut state = self.write().map_err(op)?;
            self.insert_prepared(&mut state, collection, docs)
                .map_err(op)?
        };
        durable(inserted.ack).await.map_err(op)?;
        match inserted.failure {
            Some(e) => Err(op(e)),
            None => Ok(inserted.ids),
        }
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
        let op = |e: Error| {
            e.with_operation("update")
                .with_target(self.target_of(collection))
        };
        let (result, ack) = self
            .run_update(collection, filter, update, options)
            .map_err(op)?;
        durable(ack).await.map_err(op)?;
        Ok(result)
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let op = |e: Error| {
            e.with_operation("replace_one")
                .with_target(self.target_of(collection))
        };
        let (result, ack) = self
            .run_replace(collection, filter, replacement, upsert)
            .map_err(op)?;
        durable(ack).await.map_err(op)?;
        Ok(result)
    }

    async fn delete(&self, collection: &str, filter: Document, multi: bool) -> Result<u64> {
        let op = |e: Error| {
            e.with_operation("delete")
                .with_target(self.target_of(collection))
        };
        let filter = Query::parse(filter).map_err(op)?;
        let (deleted, ack) = {
            let mut state = self.write().map_err(op)?;
            let ids: Vec<Bson> = match state.db.collection(collection) {
                None => Vec::new(),
                Some(coll) => {
                    let limit = if multi { None } else { Some(1) };
                    plan::matching(coll, &filter, limit)
                        .into_iter()
                        .map(|(_, d)| id_of(d))
                        .collect()
                }
            };
            let deleted = ids.len() as u64;
            let ack = if deleted > 0 {
                let change = Change::Delete {
                    collection: collection.to_string(),
                    ids,
                };
                Some(self.commit(&mut state, change, Vec::new()).map_err(op)?)
            } else {
                None
            };
            (deleted, ack)
        };
        durable(ack).await.map_err(op)?;
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
        let (name, ack) = {
            let mut state = self.write().map_err(op)?;
            let empty = Collection::default();
            let coll = state.db.collection(collection).unwrap_or(&empty);
            match coll.check_index(collection, &index).map_err(op)? {
                IndexPlan::Exists(name) => (name, None),
                IndexPlan::Create(spec) => {
                    let name = spec.effective_name();
                    let change = Change::CreateIndex {
                        collection: collection.to_string(),
                        spec,
                    };
                    let ack = self.commit(&mut state, change, Vec::new()).map_err(op)?;
                    (name, Some(ack))
                }
            }
        };
        durable(ack).await.map_err(op)?;
        Ok(name)
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
        let ack = {
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
                Some(self.commit(&mut state, change, Vec::new()).map_err(op)?)
            } else {
                None
            }
        };
        durable(ack).await.map_err(op)
    }
}

#[cfg(test)]
impl EmbeddedDocumentStore {
    /// Waits for a running compaction, without starting one.
    async fn settle(&self) {
        let done = {
            let state = self.read().unwrap();
            if !state.compacting {
                return;
            }
            let (tx, rx) = oneshot::channel();
            self.inner.shared.lock_compaction().waiters.push(tx);
            rx
        };
        let _ = done.await;
    }

    fn faults(&self) -> &writer::Faults {
        &self.inner.shared.faults
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bson::doc;
    use proptest::prelude::*;

    use super::*;
    use crate::engines::document::DocumentStoreExt;
    use crate::error::ErrorKind;
    use writer::{Gate, SwitchStep};

    fn log_file_len(dir: &Path) -> u64 {
        std::fs::metadata(dir.join(storage::LOG_FILE))
            .unwrap()
            .len()
    }

    async fn all(store: &EmbeddedDocumentStore) -> Vec<Document> {
        store
            .find("c", doc! {}, FindOptions::sorted(doc! {"_id": 1}))
            .await
            .unwrap()
    }

    /// Holds the store's next compaction once it has taken its image;
    /// returns (reached, release).
    fn hold_next_compaction(
        store: &EmbeddedDocumentStore,
    ) -> (oneshot::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (release_tx, release) = std::sync::mpsc::channel();
        *store.faults().compaction_gate.lock().unwrap() = Some(Gate { reached, release });
        (reached_rx, release_tx)
    }

    #[tokio::test]
    async fn log_compacts_itself_once_it_outgrows_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedDocumentOptions::default();
        let store = EmbeddedDocumentStore::open_with(dir.path(), options, 64 * 1024).unwrap();
        store
            .insert_one("c", doc! {"_id": 1, "n": 0, "pad": "p".repeat(200)})
            .await
            .unwrap();
        let mut written = 0;
        for i in 1..=2000 {
            let before = store.log_len().unwrap();
            store
                .update_one("c", doc! {"_id": 1}, doc! {"$set": {"n": i}}, false)
                .await
                .unwrap();
            written += store.log_len().unwrap().saturating_sub(before);
        }
        store.settle().await;
        assert!(store.compactions() >= 1, "the log never compacted");
        let len = store.log_len().unwrap();
        assert!(len < written / 4, "the log holds {len} of {written} bytes");
        assert_eq!(log_file_len(dir.path()), len);
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        assert_eq!(
            all(&store).await,
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_writes_proceed_while_a_compaction_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        store
            .create_index("c", IndexSpec::new(doc! {"k": 1}))
            .await
            .unwrap();
        for chunk in 0..3 {
            let docs = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| doc! {"_id": i, "k": i})
                .collect();
            store.insert_many("c", docs).await.unwrap();
        }
        let (reached, release) = hold_next_compaction(&store);
        let compaction = tokio::spawn({
            let store = store.clone();
            async move { store.compact().await }
        });
        reached.await.unwrap();
        // The compaction has its image and is writing the snapshot. A stall
        // behind it fails the test rather than hanging it.
        let during = tokio::time::timeout(Duration::from_secs(60), async {
            let found = store
                .find_one("c", doc! {"k": 7}, FindOptions::default())
                .await
                .unwrap();
            assert_eq!(found, Some(doc! {"_id": 7, "k": 7}));
            store
                .insert_one("c", doc! {"_id": 5000, "k": 5000})
                .await
                .unwrap();
            store
                .update_one("c", doc! {"_id": 1}, doc! {"$set": {"k": -1}}, false)
                .await
                .unwrap();
            store.delete_one("c", doc! {"_id": 2}).await.unwrap();
            store.count("c", doc! {}).await.unwrap()
        })
        .await
        .expect("reads and writes waited for the compaction");
        assert_eq!(during, 3000);
        assert!(!compaction.is_finished(), "the compaction was not held");
        release.send(()).unwrap();
        compaction.await.unwrap().unwrap();
        assert_eq!(store.compactions(), 1);
        let expected = all(&store).await;
        assert_eq!(expected.len(), 3000);
        // The new log holds the three writes made during the compaction.
        let len = store.log_len().unwrap();
        assert_eq!(log_file_len(dir.path()), len);
        assert!(len < 1000, "{len}");
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        assert_eq!(all(&store).await, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_at_any_step_of_a_compaction_loses_nothing() {
        for step in [
            SwitchStep::BeforeSnapshotRename,
            SwitchStep::BetweenRenames,
            SwitchStep::BeforeManifest,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
            let docs = (0..200).map(|i| doc! {"_id": i, "n": i}).collect();
            store.insert_many("c", docs).await.unwrap();
            store
                .delete_many("c", doc! {"n": {"$lt": 50}})
                .await
                .unwrap();
            *store.faults().crash_at.lock().unwrap() = Some(step);
            let (reached, release) = hold_next_compaction(&store);
            let compaction = tokio::spawn({
                let store = store.clone();
                async move { store.compact().await }
            });
            reached.await.unwrap();
            // Written to both logs while the snapshot is written.
            store
                .update_many(
                    "c",
                    doc! {"n": {"$gte": 150}},
                    doc! {"$set": {"late": true}},
                )
                .await
                .unwrap();
            store.insert_one("c", doc! {"_id": 1000}).await.unwrap();
            let expected = all(&store).await;
            release.send(()).unwrap();
            let err = compaction.await.unwrap().unwrap_err();
            assert!(
                err.to_string().contains("simulated crash"),
                "{step:?}: {err}"
            );
            // The store stopped, as a crashed process would.
            let stopped = store.find("c", doc! {}, FindOptions::default()).await;
            assert!(stopped.is_err(), "{step:?}");
            drop(store);

            let store = EmbeddedDocumentStore::open(dir.path(), Default::default())
                .unwrap_or_else(|e| panic!("{step:?}: {e}"));
            assert_eq!(all(&store).await, expected, "{step:?}");
            // And it goes on from there.
            store.insert_one("c", doc! {"_id": 1001}).await.unwrap();
            store.compact().await.unwrap();
            store.insert_one("c", doc! {"_id": 1002}).await.unwrap();
            drop(store);
            let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
            assert_eq!(all(&store).await.len(), expected.len() + 2, "{step:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_log_write_stops_the_store_until_it_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        store.insert_one("c", doc! {"_id": 1}).await.unwrap();
        *store.faults().fail_append_at.lock().unwrap() = Some(2);
        let err = store.insert_one("c", doc! {"_id": 2}).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("appending to") && text.contains(storage::LOG_FILE),
            "{text}"
        );
        for err in [
            store
                .find("c", doc! {}, FindOptions::default())
                .await
                .unwrap_err(),
            store.insert_one("c", doc! {"_id": 3}).await.unwrap_err(),
            store.ping().await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::Internal);
            let text = err.to_string();
            assert!(
                text.contains("stopped after a failure") && text.contains("reopen"),
                "{text}"
            );
        }
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        assert_eq!(all(&store).await, vec![doc! {"_id": 1}]);
    }

    #[tokio::test]
    async fn format_1_directories_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let insert = |lsn: u64, ids: &[i32]| {
            let documents: Vec<Document> = ids.iter().map(|i| doc! {"_id": *i}).collect();
            let encoded: Vec<Vec<u8>> = documents
                .iter()
                .map(|d| record::encode_document(d).unwrap())
                .collect();
            let change = Change::Insert {
                collection: "c".into(),
                documents,
            };
            record::encode(lsn, &change, &encoded).unwrap()
        };
        let index = Change::CreateIndex {
            collection: "c".into(),
            spec: IndexSpec::new(doc! {"_id": 1, "x": 1}).named("_id_1_x_1"),
        };
        let snapshot = vec![record::encode(2, &index, &[]).unwrap(), insert(2, &[1, 2])];
        storage::legacy::write_snapshot(&dir.path().join(storage::SNAPSHOT_FILE), 2, &snapshot);
        // The log still holds what the snapshot has (a crash kept format 1
        // from emptying it), then one change more.
        let log = vec![
            record::encode(1, &index, &[]).unwrap(),
            insert(2, &[1, 2]),
            insert(3, &[3]),
        ];
        storage::legacy::write_log(&dir.path().join(storage::LOG_FILE), &log);

        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        let expected = vec![doc! {"_id": 1}, doc! {"_id": 2}, doc! {"_id": 3}];
        assert_eq!(all(&store).await, expected);
        store.insert_one("c", doc! {"_id": 4}).await.unwrap();
        drop(store);
        let manifest = manifest::read(dir.path()).unwrap().unwrap();
        assert_eq!(manifest.snapshot.map(|s| s.lsn), Some(3));
        assert_eq!(manifest.log.last_lsn, 4);
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        assert_eq!(all(&store).await.len(), 4);
        let names: Vec<String> = store
            .list_indexes("c")
            .await
            .unwrap()
            .iter()
            .map(IndexSpec::effective_name)
            .collect();
        assert_eq!(names, vec!["_id_", "_id_1_x_1"]);
    }

    #[tokio::test]
    async fn a_store_created_just_before_a_crash_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap());
        // The log was in place, the manifest not yet.
        std::fs::remove_file(dir.path().join(manifest::MANIFEST_FILE)).unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        store.insert_one("c", doc! {"_id": 1}).await.unwrap();
        drop(store);
        assert!(dir.path().join(manifest::MANIFEST_FILE).exists());
        // Once it holds data, a missing manifest is an error naming it.
        std::fs::remove_file(dir.path().join(manifest::MANIFEST_FILE)).unwrap();
        let err = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap_err();
        assert!(
            err.to_string().contains("documents.manifest is missing"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn fsync_mode_persists_too() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedDocumentOptions { fsync: true };
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        store.insert_one("c", doc! {"_id": 1}).await.unwrap();
        store.compact().await.unwrap();
        store.insert_one("c", doc! {"_id": 2}).await.unwrap();
        drop(store);
        let store = EmbeddedDocumentStore::open(dir.path(), options).unwrap();
        assert_eq!(store.count("c", doc! {}).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn invalid_names_and_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedDocumentStore::open(dir.path(), Default::default()).unwrap();
        for name in ["", "a$b", "system.x"] {
            let err = store.insert_one(name, doc! {}).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}");
        }
        let err = store.insert_one("c", doc! {"_id": [1]}).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = store
            .create_index("c", IndexSpec::new(doc! {"a": "text"}))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
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
