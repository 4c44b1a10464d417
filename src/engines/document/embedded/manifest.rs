//! `documents.manifest`: what the data directory holds.
//!
//! A small JSON file naming the store, the snapshot it should find (with its
//! LSN, record count and size) and a checkpoint of the log (its generation,
//! how many of its bytes were durable, the last LSN they hold). Opening
//! checks the files against it, so a log that was deleted, emptied or cut
//! short is an error naming the file instead of an empty store.
//!
//! # Contracts
//!
//! - Written atomically: a temporary file, fsynced, renamed over the old
//!   one, then the directory fsynced. A crash leaves the old manifest or the
//!   new one, never a mix.
//! - It never claims more than is durable: the log is fsynced up to
//!   `durable_bytes` before a manifest saying so is written. The log may be
//!   longer than the checkpoint (changes since), never shorter.
//! - Human-readable on purpose: an operator can see what a directory holds.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engines::document::embedded::storage::{damaged, io_error, sync_dir};
use crate::error::Result;

/// Name of the manifest in the data directory.
pub(crate) const MANIFEST_FILE: &str = "documents.manifest";
/// The manifest being written.
pub(crate) const MANIFEST_TMP_FILE: &str = "documents.manifest.tmp";
/// The on-disk format this code writes (1 had no manifest).
pub(crate) const FORMAT: u32 = 2;

/// What the data directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The on-disk format.
    pub(crate) format: u32,
    /// The store's id (an ObjectId in hex), also in every file's header.
    pub(crate) store_id: String,
    /// The snapshot, when compaction has written one.
    pub(crate) snapshot: Option<SnapshotEntry>,
    /// The log as of the last checkpoint.
    pub(crate) log: LogCheckpoint,
}

/// The snapshot the directory should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotEntry {
    /// Its generation.
    pub(crate) generation: u64,
    /// The LSN of the last change it holds.
    pub(crate) lsn: u64,
    /// Records in it.
    pub(crate) records: u64,
    /// Its size in bytes.
    pub(crate) bytes: u64,
}

/// The log as of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogCheckpoint {
    /// Its generation.
    pub(crate) generation: u64,
    /// Bytes known durable (fsynced) at the checkpoint.
    pub(crate) durable_bytes: u64,
    /// The LSN of the last change in those bytes (or in the snapshot, when
    /// the log held none).
    pub(crate) last_lsn: u64,
}

impl Manifest {
    /// The generation the next compaction writes.
    pub(crate) fn next_generation(&self) -> u64 {
        let snapshot = self.snapshot.map_or(0, |s| s.generation);
        snapshot.max(self.log.generation) + 1
    }
}

/// Reads the manifest: `Ok(None)` when there is none; an error naming the
/// file when it cannot be read or parsed.
pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_FILE);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e, "reading", &path)),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| damaged(&path, format!("is not a readable manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(damaged(
            &path,
            format!(
                "is written in format {}, this strata reads format {FORMAT}",
                manifest.format
            ),
        ));
    }
    Ok(Some(manifest))
}

/// Replaces the manifest atomically and durably.
pub(crate) fn write(dir: &Path, manifest: &Manifest) -> Result<()> {
    let tmp = dir.join(MANIFEST_TMP_FILE);
    let path = dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_vec_pretty(manifest)
        .map_err(|e| crate::error::Error::internal(format!("encoding the manifest: {e}")))?;
    text.push(b'\n');
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(&text)?;
        f.sync_all()
    });
    written.map_err(|e| io_error(e, "writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(|e| io_error(e, "renaming the manifest to", &path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            store_id: bson::oid::ObjectId::new().to_hex(),
            snapshot: Some(SnapshotEntry {
                generation: 2,
                lsn: 10,
                records: 3,
                bytes: 300,
            }),
            log: LogCheckpoint {
                generation: 2,
                durable_bytes: 40,
                last_lsn: 10,
            },
        }
    }

    #[test]
    fn round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let mut manifest = sample();
        write(dir.path(), &manifest).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(manifest.clone()));
        manifest.log.durable_bytes = 4096;
        write(dir.path(), &manifest).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(manifest.clone()));
        assert!(!dir.path().join(MANIFEST_TMP_FILE).exists());
        assert_eq!(manifest.next_generation(), 3);
    }

    #[test]
    fn unreadable_or_foreign_manifests_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANIFEST_FILE);
        fs::write(&path, b"{\"format\": 2").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(MANIFEST_FILE) && err.contains("not a readable manifest"),
            "{err}"
        );
        let mut newer = serde_json::to_value(sample()).unwrap();
        newer["format"] = 3.into();
        fs::write(&path, newer.to_string()).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("format 3"), "{err}");
    }
}
