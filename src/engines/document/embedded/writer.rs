//! The writer thread: the only code that writes the log and the manifest.
//!
//! Committing a change (on the caller's thread, under the state lock)
//! applies it in memory and queues its framed record here; the caller's
//! future then waits for the acknowledgement. The thread takes every record
//! queued at the moment (group commit), writes them with one `write(2)`,
//! fsyncs once when `documents.fsync` is set, and acknowledges them in LSN
//! order. No async worker thread ever waits for a disk.
//!
//! # Contracts
//!
//! - Records reach the log in LSN order, since they are queued under the
//!   state lock in that order; an acknowledgement means the record and every
//!   one before it are written (and fsynced, in fsync mode).
//! - A failed write fails the store: the change is already visible in
//!   memory and cannot be taken back, so every later read and write fails
//!   (naming the cause) until the store is reopened, which loads what the
//!   files hold. The writer leaves the files as a crash would.
//! - Checkpoints: at most once a second while the log grows, the log is
//!   fsynced and the manifest records its length and last LSN; so without
//!   fsync mode a power loss loses at most about a second of acknowledged
//!   writes, and a log found shorter than the checkpoint is damage.
//! - Compaction to generation `g + 1` (the snapshot itself is written by the
//!   compaction thread): on `BeginCompaction` the writer creates
//!   `documents.log.next` and from then on appends every record to both
//!   logs, so the old log alone stays complete. On `FinishCompaction` it
//!   fsyncs the new log, renames the new snapshot into place, fsyncs the
//!   directory, renames the new log over the old one, fsyncs the directory
//!   and writes the manifest. A failure before the snapshot's rename leaves
//!   the old generation in use; one after it fails the store, since every
//!   state a crash can leave there is one that opening accepts.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bson::oid::ObjectId;
use tokio::sync::oneshot;

use crate::engines::document::embedded::manifest::SnapshotEntry;
use crate::engines::document::embedded::manifest::{self, FORMAT, LogCheckpoint, Manifest};
use crate::engines::document::embedded::recovery::Recovered;
use crate::engines::document::embedded::storage::{
    FileId, LOG_FILE, LOG_NEXT_FILE, LogFile, SNAPSHOT_FILE, SNAPSHOT_TMP_FILE, io_error,
    remove_if_exists, sync_dir,
};
use crate::error::{Error, Result};

/// How long the log may grow before a checkpoint records it.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Most bytes written by one group commit.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// The acknowledgement of one queued record.
pub(crate) type Ack = oneshot::Receiver<Result<()>>;

/// What the writer thread is asked to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Append one framed record.
    Append {
        lsn: u64,
        framed: Vec<u8>,
        done: oneshot::Sender<Result<()>>,
    },
    /// Start writing every record to the next generation's log too; answers
    /// with that generation.
    BeginCompaction { done: oneshot::Sender<Result<u64>> },
    /// Put the snapshot (written to `documents.snapshot.tmp`) and the next
    /// log in place.
    FinishCompaction {
        snapshot: SnapshotEntry,
        done: oneshot::Sender<Result<()>>,
    },
    /// Stop writing to the next log and remove it.
    AbortCompaction,
    /// Write a last checkpoint and stop.
    Shutdown,
}

/// Why the store stopped, once it has: shared by the store and the writer.
#[derive(Debug, Default)]
pub(crate) struct Failure(OnceLock<String>);

impl Failure {
    /// Records the first failure; later ones are consequences.
    pub(crate) fn set(&self, reason: String) {
        if self.0.set(reason.clone()).is_ok() {
            tracing::error!("the embedded document store stopped: {reason}");
        }
    }

    /// Whether the store has failed.
    pub(crate) fn is_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// `Err` naming the failure once the store has failed.
    pub(crate) fn check(&self, dir: &Path) -> Result<()> {
        match self.0.get() {
            None => Ok(()),
            Some(reason) => Err(Error::internal(format!(
                "the document store in {} stopped after a failure ({reason}); reopen it (restart strata): its files hold every acknowledged write",
                dir.display()
            ))),
        }
    }
}

/// Steps of switching generations where a test can stop the writer as a
/// crash would.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwitchStep {
    /// The snapshot and the next log are written, nothing renamed.
    BeforeSnapshotRename,
    /// The snapshot is in place, the old log still.
    BetweenRenames,
    /// Both are in place, the manifest not yet written.
    BeforeManifest,
}

/// Faults a test can inject.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Fail the write of the record with this LSN, as a full disk would.
    pub(crate) fail_append_at: std::sync::Mutex<Option<u64>>,
    /// Stop the next switch of generations at this step.
    pub(crate) crash_at: std::sync::Mutex<Option<SwitchStep>>,
    /// Hold the next compaction while it writes its snapshot.
    pub(crate) compaction_gate: std::sync::Mutex<Option<Gate>>,
}

#[cfg(test)]
impl Faults {
    /// The gate set for the next compaction, if any.
    pub(crate) fn take_gate(&self) -> Option<Gate> {
        self.compaction_gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Where a test holds a compaction: it says it got there, then waits to be
/// let go.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) reached: oneshot::Sender<()>,
    pub(crate) release: std::sync::mpsc::Receiver<()>,
}

#[cfg(test)]
impl Gate {
    /// Says it got here and waits to be let go (or for the test to end).
    pub(crate) fn wait(self) {
        let _ = self.reached.send(());
        let _ = self.release.recv();
    }
}

/// A record waiting to be written.
struct Queued {
    lsn: u64,
    framed: Vec<u8>,
    done: oneshot::Sender<Result<()>>,
}

/// The state of the writer thread.
struct LogWriter {
    dir: PathBuf,
    store: ObjectId,
    fsync: bool,
    log: LogFile,
    log_generation: u64,
    /// The next generation's log and its generation, during a compaction.
    next: Option<(LogFile, u64)>,
    /// Why writing to the next log failed, which fails the compaction.
    next_failed: Option<String>,
    snapshot: Option<SnapshotEntry>,
    last_lsn: u64,
    checkpoint_len: u64,
    checkpoint_at: Instant,
    failure: Arc<Failure>,
    #[cfg(test)]
    faults: Arc<Faults>,
}

/// Starts the writer thread over a freshly opened directory.
pub(crate) fn spawn(
    dir: &Path,
    recovered: Recovered,
    fsync: bool,
    failure: Arc<Failure>,
    #[cfg(test)] faults: Arc<Faults>,
) -> Result<(Sender<Command>, JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = LogWriter {
        dir: dir.to_path_buf(),
        store: recovered.store,
        fsync,
        checkpoint_len: recovered.log.len(),
        log: recovered.log,
        log_generation: recovered.log_generation,
        next: None,
        next_failed: None,
        snapshot: recovered.snapshot,
        last_lsn: recovered.last_lsn,
        checkpoint_at: Instant::now(),
        failure,
        #[cfg(test)]
        faults,
    };
    let thread = std::thread::Builder::new()
        .name("strata-docs-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| Error::internal(format!("starting the document log writer: {e}")))?;
    Ok((tx, thread))
}

impl LogWriter {
    fn run(mut self, rx: Receiver<Command>) {
        let mut pending: Option<Command> = None;
        loop {
            let command = match pending.take() {
                Some(c) => c,
                None => match self.receive(&rx) {
                    Some(c) => c,
                    None => break,
                },
            };
            match command {
                Command::Append { lsn, framed, done } => {
                    let mut bytes = framed.len();
                    let mut group = vec![Queued { lsn, framed, done }];
                    while bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Command::Append { lsn, framed, done }) => {
                                bytes += framed.len();
                                group.push(Queued { lsn, framed, done });
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_group(group);
                }
                Command::BeginCompaction { done } => {
                    let _ = done.send(self.begin_compaction());
                }
                Command::FinishCompaction { snapshot, done } => {
                    let _ = done.send(self.finish_compaction(snapshot));
                }
                Command::AbortCompaction => self.abort_compaction(),
                Command::Shutdown => break,
            }
            if self.checkpoint_due() {
                self.checkpoint_quietly();
            }
        }
        if !self.failure.is_set() {
            self.abort_compaction();
            if self.log.len() > self.checkpoint_len {
                self.checkpoint_quietly();
            }
        }
    }

    /// The next command, or `None` once the store is gone. Wakes up for a
    /// checkpoint when the log has grown since the last one.
    fn receive(&mut self, rx: &Receiver<Command>) -> Option<Command> {
        loop {
            if self.log.len() == self.checkpoint_len || self.failure.is_set() {
                return rx.recv().ok();
            }
            let wait = CHECKPOINT_INTERVAL.saturating_sub(self.checkpoint_at.elapsed());
            match rx.recv_timeout(wait) {
                Ok(c) => return Some(c),
                Err(RecvTimeoutError::Timeout) => self.checkpoint_quietly(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn failed(&self) -> Error {
        match self.failure.check(&self.dir) {
            Err(e) => e,
            Ok(()) => Error::internal("the document store failed"),
        }
    }

    fn write_group(&mut self, group: Vec<Queued>) {
        let result = self.write_records(&group);
        if let Err(e) = &result {
            self.failure.set(e.to_string());
        }
        for Queued { done, .. } in group {
            let answer = match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(self.failed()),
            };
            let _ = done.send(answer);
        }
    }

    fn write_records(&mut self, group: &[Queued]) -> Result<()> {
        if self.failure.is_set() {
            return Err(self.failed());
        }
        let mut buf = Vec::with_capacity(group.iter().map(|q| q.framed.len()).sum());
        for queued in group {
            buf.extend_from_slice(&queued.framed);
        }
        #[cfg(test)]
        {
            let fail_at = *self
                .faults
                .fail_append_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(lsn) = fail_at
                && group.iter().any(|q| q.lsn == lsn)
            {
                return Err(io_error(
                    std::io::Error::from(std::io::ErrorKind::StorageFull),
                    "appending to",
                    self.log.path(),
                ));
            }
        }
        self.log.append(&buf)?;
        if self.fsync {
            self.log.sync()?;
        }
        if let Some((next, _)) = &mut self.next {
            let copied = next
                .append(&buf)
                .and_then(|()| if self.fsync { next.sync() } else { Ok(()) });
            if let Err(e) = copied {
                // The old log holds the records: only the compaction fails.
                self.next_failed = Some(e.to_string());
                self.next = None;
                let _ = remove_if_exists(&self.dir.join(LOG_NEXT_FILE));
            }
        }
        if let Some(last) = group.last() {
            self.last_lsn = last.lsn;
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.log.len() > self.checkpoint_len && self.checkpoint_at.elapsed() >= CHECKPOINT_INTERVAL
    }

    /// Makes the log durable up to its length and records that in the
    /// manifest.
    fn checkpoint(&mut self) -> Result<()> {
        if self.failure.is_set() {
            return Err(self.failed());
        }
        if !self.fsync {
            self.log.sync()?;
        }
        let manifest = Manifest {
            format: FORMAT,
            store_id: self.store.to_hex(),
            snapshot: self.snapshot,
            log: LogCheckpoint {
                generation: self.log_generation,
                durable_bytes: self.log.len(),
                last_lsn: self.last_lsn,
            },
        };
        manifest::write(&self.dir, &manifest)?;
        self.checkpoint_len = self.log.len();
        self.checkpoint_at = Instant::now();
        Ok(())
    }

    /// A checkpoint whose failure is only worth a warning: the manifest on
    /// disk is an older checkpoint, which stays true.
    fn checkpoint_quietly(&mut self) {
        if let Err(e) = self.checkpoint() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "checkpointing the document log failed");
            // Try again in a second, not at once.
            self.checkpoint_at = Instant::now();
        }
    }

    fn begin_compaction(&mut self) -> Result<u64> {
        if self.failure.is_set() {
            return Err(self.failed());
        }
        self.abort_compaction();
        let snapshot = self.snapshot.map_or(0, |s| s.generation);
        let generation = snapshot.max(self.log_generation) + 1;
        let id = FileId {
            store: self.store,
            generation,
        };
        let next = LogFile::create(&self.dir.join(LOG_NEXT_FILE), id)?;
        self.next = Some((next, generation));
        self.next_failed = None;
        Ok(generation)
    }

    fn abort_compaction(&mut self) {
        if self.next.take().is_some() {
            let _ = remove_if_exists(&self.dir.join(LOG_NEXT_FILE));
        }
        self.next_failed = None;
    }

    #[cfg(test)]
    fn crash_at(&self, step: SwitchStep) -> Result<()> {
        let mut crash = self
            .faults
            .crash_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *crash == Some(step) {
            *crash = None;
            return Err(Error::internal(format!("simulated crash at {step:?}")));
        }
        Ok(())
    }

    fn finish_compaction(&mut self, snapshot: SnapshotEntry) -> Result<()> {
        if self.failure.is_set() {
            return Err(self.failed());
        }
        let Some((next, generation)) = self.next.take() else {
            let why = self
                .next_failed
                .take()
                .unwrap_or_else(|| "no compaction was begun".to_string());
            return Err(Error::internal(format!(
                "writing the next document log failed: {why}"
            )));
        };
        // Until the snapshot is renamed, the old generation is whole and in
        // place: a failure only fails this compaction.
        let prepared = next.sync().and_then(|()| {
            #[cfg(test)]
            self.crash_at(SwitchStep::BeforeSnapshotRename)?;
            let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
            let path = self.dir.join(SNAPSHOT_FILE);
            std::fs::rename(&tmp, &path).map_err(|e| io_error(e, "renaming the snapshot to", &path))
        });
        if let Err(e) = prepared {
            #[cfg(test)]
            if e.message().starts_with("simulated crash") {
                self.failure.set(e.to_string());
                return Err(e);
            }
            drop(next);
            let _ = remove_if_exists(&self.dir.join(LOG_NEXT_FILE));
            return Err(e);
        }
        let switched = self.switch(next, generation, snapshot);
        if let Err(e) = &switched {
            self.failure
                .set(format!("switching to generation {generation} failed: {e}"));
        }
        switched
    }

    /// The steps after the snapshot's rename.
    fn switch(
        &mut self,
        mut next: LogFile,
        generation: u64,
        snapshot: SnapshotEntry,
    ) -> Result<()> {
        sync_dir(&self.dir)?;
        #[cfg(test)]
        self.crash_at(SwitchStep::BetweenRenames)?;
        next.rename_to(&self.dir.join(LOG_FILE))?;
        sync_dir(&self.dir)?;
        #[cfg(test)]
        self.crash_at(SwitchStep::BeforeManifest)?;
        self.log = next;
        self.log_generation = generation;
        self.snapshot = Some(snapshot);
        self.checkpoint()
    }
}
