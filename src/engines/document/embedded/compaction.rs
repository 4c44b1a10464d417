//! Compaction: rewriting the snapshot from the live data, in the background.
//!
//! # Contracts
//!
//! - Reads and writes go on while a compaction runs. It holds the state's
//!   read lock only while it copies one pointer per document (documents
//!   are shared, immutable) and queues `BeginCompaction` for the writer, so
//!   the image is exactly the state as of LSN `L`, and every record after
//!   `L` goes to the next generation's log too.
//! - The snapshot is encoded and written on the compaction thread, never on
//!   an async worker thread; then the writer thread puts it and the next
//!   log in place (see `writer`).
//! - One compaction at a time. A failed one leaves the store as it was and
//!   waits for the log to double again before the next automatic try.
//! - Dropping the store cancels a running compaction (its temporary files
//!   are removed) and waits for its thread.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::Shared;
use crate::engines::document::embedded::manifest::SnapshotEntry;
use crate::engines::document::embedded::storage::{
    FileId, LOG_HEADER_LEN, SNAPSHOT_TMP_FILE, remove_if_exists, write_snapshot,
};
use crate::engines::document::embedded::writer::Command;
use crate::error::{Error, ErrorKind, Result};

/// Runs one compaction on the calling (dedicated) thread, then tells every
/// waiter how it went.
pub(super) fn run(shared: Arc<Shared>) {
    let result = compact(&shared);
    let waiters = {
        let mut state = shared.lock_write();
        state.compacting = false;
        match &result {
            Ok(()) => state.compact_floor = shared.compact_min,
            Err(_) if shared.cancel.load(Ordering::Relaxed) => {}
            Err(e) => {
                tracing::warn!(dir = %shared.dir.display(), error = %e, "compacting the document log failed");
                // Try again once the log has doubled.
                state.compact_floor = state.log_bytes.saturating_mul(2);
            }
        }
        // Under the state lock, so that a caller who sees `compacting`
        // false registers for the next compaction, not this one.
        let mut compaction = shared.lock_compaction();
        if result.is_ok() {
            compaction.completed += 1;
        }
        std::mem::take(&mut compaction.waiters)
    };
    for waiter in waiters {
        let copy = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(Error::new(e.kind(), e.message()).with_operation("compact")),
        };
        let _ = waiter.send(copy);
    }
}

fn writer_gone() -> Error {
    Error::internal("the document log writer has stopped")
}

fn compact(shared: &Shared) -> Result<()> {
    let (image, lsn, start_bytes, begun) = {
        let state = shared.read()?;
        let (tx, rx) = oneshot::channel();
        state
            .writer
            .send(Command::BeginCompaction { done: tx })
            .map_err(|_| writer_gone())?;
        (state.db.image(), state.next_lsn - 1, state.log_bytes, rx)
    };
    let generation = begun.blocking_recv().map_err(|_| writer_gone())??;
    let id = FileId {
        store: shared.store,
        generation,
    };
    let tmp = shared.dir.join(SNAPSHOT_TMP_FILE);
    #[cfg(test)]
    let mut gate = shared.faults.take_gate();
    let records = image.records(lsn).enumerate().map(|(n, record)| {
        if shared.cancel.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "compaction cancelled: the store was closed",
            ));
        }
        #[cfg(test)]
        if n == 1
            && let Some(gate) = gate.take()
        {
            gate.wait();
        }
        #[cfg(not(test))]
        let _ = n;
        record
    });
    let written = write_snapshot(&tmp, id, lsn, records);
    drop(image);
    let header = match written {
        Ok(header) => header,
        Err(e) => {
            if let Ok(state) = shared.read() {
                let _ = state.writer.send(Command::AbortCompaction);
            }
            if !shared.failure.is_set() {
                let _ = remove_if_exists(&tmp);
            }
            return Err(e);
        }
    };
    let snapshot = SnapshotEntry {
        generation,
        lsn,
        records: header.records,
        bytes: header.bytes,
    };
    let (tx, rx) = oneshot::channel();
    shared
        .read()?
        .writer
        .send(Command::FinishCompaction { snapshot, done: tx })
        .map_err(|_| writer_gone())?;
    if let Err(e) = rx.blocking_recv().map_err(|_| writer_gone())? {
        // A failed store leaves its files as a crash would.
        if !shared.failure.is_set() {
            let _ = remove_if_exists(&tmp);
        }
        return Err(e);
    }
    let mut state = shared.write()?;
    // Records queued since the image went to both logs; the new log holds
    // those and its header.
    state.log_bytes = LOG_HEADER_LEN + (state.log_bytes - start_bytes);
    Ok(())
}
