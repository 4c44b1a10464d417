//! Engine decorators that fail on demand, for tests of what strata does
//! when an engine is down: every call passes through to the real engine
//! until the decorator is told to fail, then fails as an unreachable
//! engine would (`Unavailable`, which a retry may help).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bson::{Bson, Document};
use strata::engines::Engines;
use strata::engines::document::{
    CollectionOptions, DocumentStore, FindOptions, IndexSpec, UpdateOptions, UpdateResult,
};
use strata::engines::kv::{
    Command, KvInfo, KvStore, Reply, ScanCursor, ScanOptions, ScanPage, Subscription,
};
use strata::{Error, ErrorKind, Result};

fn down(what: &str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("injected failure: {what} is down"),
    )
}

/// Inserts held back, by collection.
type Held = Mutex<Vec<(String, Vec<Document>)>>;

/// A document store whose writes to chosen collections (or all) fail.
#[derive(Debug)]
pub struct FailingDocs {
    inner: Arc<dyn DocumentStore>,
    failing: Mutex<HashSet<String>>,
    fail_all: bool,
    fail_reads: bool,
    /// Writes to the failing collections are kept here instead of being
    /// refused, answered with a timeout: a write whose answer was lost,
    /// still to land ([`FailingDocs::land`]).
    held: Option<Held>,
    /// The first insert into this collection waits until released
    /// ([`FailingDocs::stalling`]).
    stall: Option<Stall>,
}

/// An insert that stalls: its collection, whether it came, and its release.
#[derive(Debug)]
struct Stall {
    collection: String,
    used: AtomicBool,
    entered: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl FailingDocs {
    pub fn on(inner: Arc<dyn DocumentStore>, collections: &[&str]) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(collections.iter().map(|c| (*c).to_owned()).collect()),
            fail_all: false,
            fail_reads: false,
            held: None,
            stall: None,
        })
    }

    pub fn all(inner: Arc<dyn DocumentStore>) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(HashSet::new()),
            fail_all: true,
            fail_reads: false,
            held: None,
            stall: None,
        })
    }

    /// Every read and every write fails: the engine is down.
    pub fn reads_too(inner: Arc<dyn DocumentStore>) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(HashSet::new()),
            fail_all: true,
            fail_reads: true,
            held: None,
            stall: None,
        })
    }

    /// Inserts into `collections` time out without being applied; they are
    /// applied, late, by [`FailingDocs::land`].
    pub fn holding(inner: Arc<dyn DocumentStore>, collections: &[&str]) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(collections.iter().map(|c| (*c).to_owned()).collect()),
            fail_all: false,
            fail_reads: false,
            held: Some(Mutex::new(Vec::new())),
            stall: None,
        })
    }

    /// The first insert into `collection` waits, as a driver stalled past
    /// its lease would, until [`FailingDocs::release`]; then it is applied.
    pub fn stalling(inner: Arc<dyn DocumentStore>, collection: &str) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(HashSet::new()),
            fail_all: false,
            fail_reads: false,
            held: None,
            stall: Some(Stall {
                collection: collection.to_owned(),
                used: AtomicBool::new(false),
                entered: tokio::sync::Notify::new(),
                release: tokio::sync::Notify::new(),
            }),
        })
    }

    /// Returns once the stalling insert has come.
    pub async fn stalled(&self) {
        if let Some(stall) = &self.stall {
            stall.entered.notified().await;
        }
    }

    /// Lets the stalling insert go on.
    pub fn release(&self) {
        if let Some(stall) = &self.stall {
            stall.release.notify_one();
        }
    }

    /// Applies the held inserts, as a server would that got them before
    /// their client gave up; returns how many documents landed.
    pub async fn land(&self) -> usize {
        let held = match &self.held {
            Some(held) => std::mem::take(&mut *held.lock().unwrap()),
            None => Vec::new(),
        };
        let mut landed = 0;
        for (collection, docs) in held {
            // Retries hold the same document again: only one lands.
            match self.inner.insert_many(&collection, docs).await {
                Ok(ids) => landed += ids.len(),
                Err(e) if e.kind() == ErrorKind::Conflict => {}
                Err(e) => panic!("landing a held write: {e}"),
            }
        }
        landed
    }

    fn check_read(&self) -> Result<()> {
        if self.fail_reads {
            return Err(down("the document engine"));
        }
        Ok(())
    }

    fn check(&self, collection: &str) -> Result<()> {
        if self.fail_all || self.failing.lock().unwrap().contains(collection) {
            return Err(down(&format!("writing to {collection}")));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DocumentStore for FailingDocs {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn create_collection(&self, c: &str, o: CollectionOptions) -> Result<()> {
        self.inner.create_collection(c, o).await
    }
    async fn list_collections(&self) -> Result<Vec<String>> {
        self.inner.list_collections().await
    }
    async fn drop_collection(&self, c: &str) -> Result<()> {
        self.inner.drop_collection(c).await
    }
    async fn drop_database(&self) -> Result<()> {
        self.inner.drop_database().await
    }
    async fn insert_many(&self, c: &str, d: Vec<Document>) -> Result<Vec<Bson>> {
        if let Some(stall) = &self.stall
            && stall.collection == c
            && !stall.used.swap(true, Ordering::SeqCst)
        {
            stall.entered.notify_one();
            stall.release.notified().await;
        }
        if let (Some(held), Err(_)) = (&self.held, self.check(c)) {
            held.lock().unwrap().push((c.to_owned(), d));
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("injected: writing to {c} timed out"),
            ));
        }
        self.check(c)?;
        self.inner.insert_many(c, d).await
    }
    async fn find(&self, c: &str, f: Document, o: FindOptions) -> Result<Vec<Document>> {
        self.check_read()?;
        self.inner.find(c, f, o).await
    }
    async fn count(&self, c: &str, f: Document) -> Result<u64> {
        self.check_read()?;
        self.inner.count(c, f).await
    }
    async fn update(
        &self,
        c: &str,
        f: Document,
        u: Document,
        o: UpdateOptions,
    ) -> Result<UpdateResult> {
        self.check(c)?;
        self.inner.update(c, f, u, o).await
    }
    async fn replace_one(
        &self,
        c: &str,
        f: Document,
        r: Document,
        u: bool,
    ) -> Result<UpdateResult> {
        self.check(c)?;
        self.inner.replace_one(c, f, r, u).await
    }
    async fn delete(&self, c: &str, f: Document, m: bool) -> Result<u64> {
        self.inner.delete(c, f, m).await
    }
    async fn aggregate(&self, c: &str, p: Vec<Document>) -> Result<Vec<Document>> {
        self.check_read()?;
        self.inner.aggregate(c, p).await
    }
    async fn create_index(&self, c: &str, i: IndexSpec) -> Result<String> {
        self.inner.create_index(c, i).await
    }
    async fn list_indexes(&self, c: &str) -> Result<Vec<IndexSpec>> {
        self.inner.list_indexes(c).await
    }
    async fn drop_index(&self, c: &str, n: &str) -> Result<()> {
        self.inner.drop_index(c, n).await
    }
}

/// `engines` with its document store replaced by `docs`.
pub fn with_docs(engines: &Engines, docs: Arc<dyn DocumentStore>) -> Engines {
    Engines {
        documents: docs,
        ..engines.clone()
    }
}

/// A key-value store that fails every operation while switched off.
#[derive(Debug)]
pub struct SwitchableKv {
    inner: Arc<dyn KvStore>,
    down: AtomicBool,
}

impl SwitchableKv {
    /// Passes through to `inner` until [`SwitchableKv::set_down`].
    pub fn new(inner: Arc<dyn KvStore>) -> Arc<SwitchableKv> {
        Arc::new(SwitchableKv {
            inner,
            down: AtomicBool::new(false),
        })
    }

    /// Makes every later operation fail (`true`) or pass again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(down("the key-value engine"))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl KvStore for SwitchableKv {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn ping(&self) -> Result<()> {
        self.check()?;
        self.inner.ping().await
    }
    async fn execute(&self, command: Command) -> Result<Reply> {
        self.check()?;
        self.inner.execute(command).await
    }
    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>> {
        self.check()?;
        self.inner.pipeline(commands).await
    }
    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage> {
        self.check()?;
        self.inner.scan(cursor, options).await
    }
    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        self.check()?;
        self.inner.subscribe(channels).await
    }
    async fn info(&self) -> Result<KvInfo> {
        self.check()?;
        self.inner.info().await
    }
}

/// `engines` with its key-value store replaced by `kv`.
pub fn with_kv(engines: &Engines, kv: Arc<dyn KvStore>) -> Engines {
    Engines {
        kv,
        ..engines.clone()
    }
}
