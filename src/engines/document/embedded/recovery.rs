//! Opening a data directory: checking its files against the manifest,
//! loading the snapshot, replaying the log.
//!
//! # Contracts
//!
//! - A directory with no manifest and no files is a fresh store. Creating
//!   one writes its empty log (as `documents.log.next`, renamed into place),
//!   then the manifest, so a crash in between leaves an empty log of
//!   generation 1 and nothing else, which the next open adopts.
//! - A directory with a manifest must hold what it records: a missing or
//!   emptied log, a log shorter than the manifest's checkpoint, or one whose
//!   changes stop before the checkpoint's LSN is an error naming the file
//!   and what was expected, never an empty store. So are files of another
//!   store or generation, and log or snapshot files without a manifest
//!   (other than the adoptable case above).
//! - Records are numbered by consecutive LSNs. The log may begin with
//!   records the snapshot already holds (they are skipped), but a gap
//!   between the snapshot and the log, or inside the log, is damage.
//! - A torn tail after the checkpoint is the write a crash interrupted: it
//!   is cut off with a warning saying what went: the one incomplete record
//!   and its bytes. Damage before the
//!   checkpoint, or followed by intact data, is an error naming the file and
//!   offset.
//! - Compaction moves from generation `g` to `g + 1` by renaming the new
//!   snapshot into place, then the new log, then writing the manifest (see
//!   `writer`). Every state a crash can leave is accepted: both files at
//!   `g`; the snapshot at `g + 1` with the log at `g` (the old log holds
//!   every change, the snapshot's are skipped); both at `g + 1` with the
//!   manifest still at `g` (checked by LSN instead of length). Leftover
//!   `*.tmp` and `documents.log.next` files are never needed, and removed.
//! - A format-1 directory (no manifest) is upgraded on open: its content is
//!   written as a generation-1 snapshot and log of a new store, then the
//!   manifest.
//! - After opening, the log is fsynced and the manifest records it as the
//!   new checkpoint.

use std::fs::File;
use std::path::{Path, PathBuf};

use bson::oid::ObjectId;

use crate::engines::document::embedded::collection::Database;
use crate::engines::document::embedded::manifest::{
    self, FORMAT, LogCheckpoint, MANIFEST_FILE, MANIFEST_TMP_FILE, Manifest, SnapshotEntry,
};
use crate::engines::document::embedded::record;
use crate::engines::document::embedded::storage::{
    FileId, Frame, FrameReader, LOG_FILE, LOG_HEADER_LEN, LOG_NEXT_FILE, LogFile, LogHeader,
    LogProbe, SNAPSHOT_FILE, SNAPSHOT_TMP_FILE, SnapshotFile, SnapshotHeader, corrupt, damaged,
    io_error, probe_log, remove_if_exists, sync_dir, write_snapshot,
};
use crate::error::{Error, Result};

/// An opened directory, ready for appends.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The store's id.
    pub(crate) store: ObjectId,
    /// The log, positioned after its last intact record.
    pub(crate) log: LogFile,
    /// The log's generation.
    pub(crate) log_generation: u64,
    /// The snapshot in place, if any.
    pub(crate) snapshot: Option<SnapshotEntry>,
    /// The LSN of the last change loaded.
    pub(crate) last_lsn: u64,
}

/// How to treat the directory, decided from the manifest and file headers.
enum Plan {
    Fresh,
    Upgrade,
    Adopt(ObjectId),
    Checked(Manifest, ObjectId),
}

/// Opens `dir` (locked by the caller), loading everything into `db`.
pub(crate) fn open(dir: &Path, db: &mut Database) -> Result<Recovered> {
    for leftover in [SNAPSHOT_TMP_FILE, LOG_NEXT_FILE, MANIFEST_TMP_FILE] {
        remove_if_exists(&dir.join(leftover))?;
    }
    let log_path = dir.join(LOG_FILE);
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let manifest = manifest::read(dir)?;
    let snapshot = SnapshotFile::open(&snapshot_path)?;
    let probe = probe_log(&log_path)?;
    let snapshot_header = snapshot.as_ref().map(SnapshotFile::header);
    let plan = plan(dir, manifest, snapshot_header, probe)?;

    if let Plan::Fresh = plan {
        return create(dir);
    }
    let LogProbe::Found(log_header, log_total) = probe else {
        return Err(Error::internal(
            "a plan other than a fresh store needs a log",
        ));
    };

    // Load the snapshot.
    let snapshot_lsn = snapshot_header.map_or(0, |h| h.lsn);
    if let Some(file) = snapshot {
        file.replay(&mut |offset, payload| {
            let decoded =
                record::decode(payload).map_err(|e| corrupt(&snapshot_path, offset, &e))?;
            db.apply(decoded.change, &decoded.sizes)
                .map_err(|e| corrupt(&snapshot_path, offset, e.message()))
        })?;
    }

    // Replay the log.
    let durable = match &plan {
        Plan::Checked(m, _) if log_header == LogHeader::Current(file_id(m, m.log.generation)?) => {
            m.log.durable_bytes
        }
        _ => log_header.len(),
    };
    let replayed = replay_log(&log_path, log_header, log_total, durable, snapshot_lsn, db)?;
    let last_lsn = replayed.last_lsn;
    if let Plan::Checked(m, _) = &plan
        && last_lsn < m.log.last_lsn
    {
        return Err(damaged(
            &log_path,
            format!(
                "holds changes up to LSN {last_lsn}, but {MANIFEST_FILE} recorded changes up to LSN {} at its last checkpoint: records are missing",
                m.log.last_lsn
            ),
        ));
    }

    match plan {
        Plan::Fresh => Err(Error::internal("fresh store handled above")),
        Plan::Upgrade => upgrade(dir, db, last_lsn),
        Plan::Adopt(store) | Plan::Checked(_, store) => {
            let LogHeader::Current(id) = log_header else {
                return Err(Error::internal("only a format-1 log is upgraded"));
            };
            let log = LogFile::open(&log_path, replayed.valid_len)?;
            log.sync()?;
            let snapshot = snapshot_header.map(entry).transpose()?;
            let manifest = Manifest {
                format: FORMAT,
                store_id: store.to_hex(),
                snapshot,
                log: LogCheckpoint {
                    generation: id.generation,
                    durable_bytes: log.len(),
                    last_lsn,
                },
            };
            manifest::write(dir, &manifest)?;
            Ok(Recovered {
                store,
                log,
                log_generation: id.generation,
                snapshot,
                last_lsn,
            })
        }
    }
}

fn file_id(manifest: &Manifest, generation: u64) -> Result<FileId> {
    Ok(FileId {
        store: store_of(manifest)?,
        generation,
    })
}

fn store_of(manifest: &Manifest) -> Result<ObjectId> {
    ObjectId::parse_str(&manifest.store_id).map_err(|_| {
        Error::internal(format!(
            "{MANIFEST_FILE} names store {:?}, which is not a store id",
            manifest.store_id
        ))
    })
}

fn entry(header: SnapshotHeader) -> Result<SnapshotEntry> {
    let id = header
        .id
        .ok_or_else(|| Error::internal("a format-1 snapshot has no generation"))?;
    Ok(SnapshotEntry {
        generation: id.generation,
        lsn: header.lsn,
        records: header.records,
        bytes: header.bytes,
    })
}

/// What the manifest says it holds, for error messages.
fn recorded(m: &Manifest) -> String {
    let snapshot = match m.snapshot {
        Some(s) => format!(
            "a snapshot of {} records up to LSN {} and ",
            s.records, s.lsn
        ),
        None => String::new(),
    };
    format!(
        "{MANIFEST_FILE} records {snapshot}a log (generation {}) of at least {} bytes with changes up to LSN {}",
        m.log.generation, m.log.durable_bytes, m.log.last_lsn
    )
}

fn plan(
    dir: &Path,
    manifest: Option<Manifest>,
    snapshot: Option<SnapshotHeader>,
    probe: LogProbe,
) -> Result<Plan> {
    let log_path = dir.join(LOG_FILE);
    let snapshot_path = dir.join(SNAPSHOT_FILE);
    let Some(m) = manifest else {
        return plan_without_manifest(dir, snapshot, probe);
    };
    let store = store_of(&m)?;
    let next = m.next_generation();
    // The snapshot.
    let snapshot_generation = match (m.snapshot, snapshot) {
        (Some(_), None) => {
            return Err(damaged(
                &snapshot_path,
                format!("is missing; {}", recorded(&m)),
            ));
        }
        (expected, Some(found)) => {
            let Some(id) = found.id else {
                return Err(damaged(
                    &snapshot_path,
                    "is a format-1 snapshot in a directory with a manifest",
                ));
            };
            if id.store != store {
                return Err(damaged(
                    &snapshot_path,
                    format!(
                        "belongs to store {}, but {MANIFEST_FILE} names store {store}",
                        id.store
                    ),
                ));
            }
            match expected {
                Some(e) if e.generation == id.generation => {
                    if (e.lsn, e.records, e.bytes) != (found.lsn, found.records, found.bytes) {
                        return Err(damaged(
                            &snapshot_path,
                            format!(
                                "holds {} records up to LSN {} in {} bytes, but {MANIFEST_FILE} records {} records up to LSN {} in {} bytes",
                                found.records, found.lsn, found.bytes, e.records, e.lsn, e.bytes
                            ),
                        ));
                    }
                }
                // A compaction renamed it into place; a crash kept the
                // manifest from saying so.
                _ if id.generation == next => {}
                _ => {
                    return Err(damaged(
                        &snapshot_path,
                        format!(
                            "is generation {}, but {MANIFEST_FILE} expects {} (or {next} from an unfinished compaction): it was replaced by another copy",
                            id.generation,
                            expected.map_or("none".to_string(), |e| e.generation.to_string())
                        ),
                    ));
                }
            }
            Some(id.generation)
        }
        (None, None) => None,
    };
    // The log.
    match probe {
        LogProbe::Missing => Err(damaged(&log_path, format!("is missing; {}", recorded(&m)))),
        LogProbe::Short(len) => Err(damaged(
            &log_path,
            format!(
                "is {len} bytes, shorter than its {LOG_HEADER_LEN}-byte header (emptied or cut); {}",
                recorded(&m)
            ),
        )),
        LogProbe::Found(LogHeader::Legacy, _) => Err(damaged(
            &log_path,
            "is a format-1 log in a directory with a manifest",
        )),
        LogProbe::Found(LogHeader::Current(id), total) => {
            if id.store != store {
                return Err(damaged(
                    &log_path,
                    format!(
                        "belongs to store {}, but {MANIFEST_FILE} names store {store}",
                        id.store
                    ),
                ));
            }
            if id.generation == m.log.generation {
                if total < m.log.durable_bytes {
                    return Err(damaged(
                        &log_path,
                        format!(
                            "is {total} bytes, shorter than the {} bytes {MANIFEST_FILE} recorded as durable at its last checkpoint (changes up to LSN {}): it was cut short or replaced",
                            m.log.durable_bytes, m.log.last_lsn
                        ),
                    ));
                }
            } else if !(id.generation == next && snapshot_generation == Some(next)) {
                return Err(damaged(
                    &log_path,
                    format!(
                        "is generation {}, but {MANIFEST_FILE} expects {}: it was replaced by another copy",
                        id.generation, m.log.generation
                    ),
                ));
            }
            Ok(Plan::Checked(m, store))
        }
    }
}

fn plan_without_manifest(
    dir: &Path,
    snapshot: Option<SnapshotHeader>,
    probe: LogProbe,
) -> Result<Plan> {
    let log_path = dir.join(LOG_FILE);
    let manifest_path = dir.join(MANIFEST_FILE);
    match (probe, snapshot) {
        (LogProbe::Missing, None) => Ok(Plan::Fresh),
        // A format-1 directory, or one whose upgrade a crash interrupted
        // after the new snapshot was in place.
        (LogProbe::Found(LogHeader::Legacy, _), _) => Ok(Plan::Upgrade),
        // Created (or upgraded), then a crash before the manifest: nothing
        // was written to it since, so its files are all there is.
        (LogProbe::Found(LogHeader::Current(id), total), snapshot)
            if id.generation == 1
                && total == LOG_HEADER_LEN
                && snapshot.is_none_or(|s| {
                    s.id == Some(FileId {
                        store: id.store,
                        generation: 1,
                    })
                }) =>
        {
            Ok(Plan::Adopt(id.store))
        }
        (LogProbe::Missing, Some(_)) => Err(damaged(
            &log_path,
            format!(
                "is missing, and so is {}: only {SNAPSHOT_FILE} is left, without the changes made since it was written",
                manifest_path.display()
            ),
        )),
        (LogProbe::Short(len), _) => Err(damaged(
            &log_path,
            format!(
                "is {len} bytes, shorter than its {LOG_HEADER_LEN}-byte header (emptied or cut), and {} is missing",
                manifest_path.display()
            ),
        )),
        (LogProbe::Found(..), _) => Err(damaged(
            &manifest_path,
            format!(
                "is missing, but {} holds data: strata will not guess what the directory held",
                log_path.display()
            ),
        )),
    }
}

/// Creates a fresh store: its empty log, then the manifest.
fn create(dir: &Path) -> Result<Recovered> {
    let store = ObjectId::new();
    let id = FileId {
        store,
        generation: 1,
    };
    let mut log = LogFile::create(&dir.join(LOG_NEXT_FILE), id)?;
    log.rename_to(&dir.join(LOG_FILE))?;
    sync_dir(dir)?;
    let manifest = Manifest {
        format: FORMAT,
        store_id: store.to_hex(),
        snapshot: None,
        log: LogCheckpoint {
            generation: 1,
            durable_bytes: log.len(),
            last_lsn: 0,
        },
    };
    manifest::write(dir, &manifest)?;
    Ok(Recovered {
        store,
        log,
        log_generation: 1,
        snapshot: None,
        last_lsn: 0,
    })
}

/// Rewrites a format-1 directory's content (loaded in `db`) as generation 1
/// of a new store: the snapshot, the empty log, then the manifest.
fn upgrade(dir: &Path, db: &Database, last_lsn: u64) -> Result<Recovered> {
    let store = ObjectId::new();
    let id = FileId {
        store,
        generation: 1,
    };
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let header = write_snapshot(&tmp, id, last_lsn, db.image().records(last_lsn))?;
    std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))
        .map_err(|e| io_error(e, "renaming the snapshot to", &dir.join(SNAPSHOT_FILE)))?;
    sync_dir(dir)?;
    let mut log = LogFile::create(&dir.join(LOG_NEXT_FILE), id)?;
    log.rename_to(&dir.join(LOG_FILE))?;
    sync_dir(dir)?;
    let snapshot = Some(entry(header)?);
    let manifest = Manifest {
        format: FORMAT,
        store_id: store.to_hex(),
        snapshot,
        log: LogCheckpoint {
            generation: 1,
            durable_bytes: log.len(),
            last_lsn,
        },
    };
    manifest::write(dir, &manifest)?;
    tracing::info!(
        dir = %dir.display(),
        "upgraded the document store's files to format {FORMAT}"
    );
    Ok(Recovered {
        store,
        log,
        log_generation: 1,
        snapshot,
        last_lsn,
    })
}

/// What replaying a log found.
struct Replayed {
    /// Bytes of intact records (with the header): where appends go.
    valid_len: u64,
    /// The LSN of the last change loaded (the snapshot's when the log adds
    /// none).
    last_lsn: u64,
}

/// Replays the log's records after `snapshot_lsn` into `db`. Damage before
/// `durable` bytes is an error; a torn tail after it is dropped.
fn replay_log(
    path: &Path,
    header: LogHeader,
    total: u64,
    durable: u64,
    snapshot_lsn: u64,
    db: &mut Database,
) -> Result<Replayed> {
    let path: PathBuf = path.to_path_buf();
    let file = File::open(&path).map_err(|e| io_error(e, "opening", &path))?;
    let mut reader =
        FrameReader::new(file, header.len(), total).map_err(|e| io_error(e, "reading", &path))?;
    let mut previous: Option<u64> = None;
    let mut last_lsn = snapshot_lsn;
    loop {
        let offset = reader.offset();
        let frame = reader
            .next_frame()
            .map_err(|e| io_error(e, "reading", &path))?;
        match frame {
            Frame::End => break,
            Frame::Record(payload) => {
                let decoded = record::decode(&payload).map_err(|e| corrupt(&path, offset, &e))?;
                if let Some(p) = previous
                    && decoded.lsn != p + 1
                {
                    return Err(corrupt(
                        &path,
                        offset,
                        &format!(
                            "record has LSN {} after LSN {p}: the records between are missing",
                            decoded.lsn
                        ),
                    ));
                }
                previous = Some(decoded.lsn);
                if decoded.lsn <= snapshot_lsn {
                    continue;
                }
                if decoded.lsn != last_lsn + 1 {
                    return Err(corrupt(
                        &path,
                        offset,
                        &format!(
                            "the log continues at LSN {} but {SNAPSHOT_FILE} ends at LSN {snapshot_lsn}: the changes between are missing",
                            decoded.lsn
                        ),
                    ));
                }
                db.apply(decoded.change, &decoded.sizes)
                    .map_err(|e| corrupt(&path, offset, e.message()))?;
                last_lsn = decoded.lsn;
            }
            Frame::Torn if offset < durable => {
                return Err(corrupt(
                    &path,
                    offset,
                    &format!(
                        "damaged record within the {durable} bytes {MANIFEST_FILE} records as durable"
                    ),
                ));
            }
            Frame::Torn => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    dropped_records = 1,
                    dropped_bytes = total - offset,
                    last_lsn,
                    "dropping 1 incomplete record ({} bytes) at the end of the document log: a write a crash cut short after LSN {last_lsn}; every record before it is kept",
                    total - offset
                );
                break;
            }
            Frame::Corrupt(what) => return Err(corrupt(&path, offset, what)),
        }
    }
    Ok(Replayed {
        valid_len: reader.offset(),
        last_lsn,
    })
}
