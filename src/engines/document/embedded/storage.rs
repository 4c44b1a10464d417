//! Files of the embedded document store: the change log, the snapshot and
//! the directory lock.
//!
//! # Layout of the data directory
//!
//! - `documents.lock`: held (`flock`) by the one process that has the
//!   directory open.
//! - `documents.snapshot`: the whole database as of a log sequence number
//!   (LSN), written by compaction.
//! - `documents.log`: every change committed since, one framed record each.
//!
//! # Contracts
//!
//! - A record is framed as `len: u32 LE | crc32(len): u32 LE |
//!   crc32(payload): u32 LE | payload`. It is written with one `write(2)`
//!   before the change is acknowledged (and `fsync`ed when asked), so a
//!   `kill -9` loses nothing acknowledged.
//! - A torn tail (a record cut short by a crash, or zeros a power loss left)
//!   is detected by its checksums and truncated on open; the records before
//!   it are kept. A damaged record followed by more data is corruption: open
//!   fails with an error naming the file and offset instead of guessing.
//! - Compaction writes the snapshot to a temporary file, fsyncs it, renames
//!   it over the old one and fsyncs the directory, then empties the log. Log
//!   records carry their LSN and replay skips those the snapshot already
//!   holds, so a crash between any two steps leaves a consistent store.
//! - A failed append truncates the log back to where it was; if even that
//!   fails, the log refuses further writes until the store is reopened,
//!   rather than append after a damaged record.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::engines::document::embedded::record::{self, Change, Decoded};
use crate::error::{Error, ErrorKind, Result};

/// Name of the change log in the data directory.
pub(crate) const LOG_FILE: &str = "documents.log";
/// Name of the snapshot in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "documents.snapshot";
const SNAPSHOT_TMP_FILE: &str = "documents.snapshot.tmp";
const LOCK_FILE: &str = "documents.lock";

const LOG_MAGIC: &[u8; 16] = b"strata-doclog-v1";
const SNAPSHOT_MAGIC: &[u8; 16] = b"strata-docsnap-1";
/// Snapshot header: magic, LSN, record count.
const SNAPSHOT_HEADER_LEN: usize = 16 + 8 + 8;
const FRAME_HEADER_LEN: usize = 12;

/// Holds the directory's lock file for as long as the store is open.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Takes the directory's lock, failing clearly when another process (or
/// another open store in this process) holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(e, "opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "documents directory {} is in use by another strata process",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(e, "locking", &path)),
    }
}

fn io_error(e: std::io::Error, what: &str, path: &Path) -> Error {
    let message = format!("{what} {}: {e}", path.display());
    let kind = Error::from(e).kind();
    Error::new(kind, message)
}

fn corrupt(path: &Path, offset: u64, what: &str) -> Error {
    Error::internal(format!(
        "corrupt record in {} at offset {offset}: {what}",
        path.display()
    ))
}

/// One frame read from a buffer.
enum Frame<'a> {
    /// A whole, intact record and the offset after it.
    Record(&'a [u8], usize),
    /// The buffer ends here.
    End,
    /// A record cut short by a crash: everything from here is dropped.
    Torn,
    /// A damaged record with data after it.
    Corrupt(&'static str),
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn next_frame(buf: &[u8], offset: usize) -> Frame<'_> {
    let rest = buf.get(offset..).unwrap_or(&[]);
    if rest.is_empty() {
        return Frame::End;
    }
    let all_zero = || rest.iter().all(|b| *b == 0);
    let (Some(len), Some(len_crc), Some(crc)) = (
        read_u32(buf, offset),
        read_u32(buf, offset + 4),
        read_u32(buf, offset + 8),
    ) else {
        return Frame::Torn;
    };
    if len_crc != crc32fast::hash(&len.to_le_bytes()) || len == 0 {
        return if all_zero() {
            Frame::Torn
        } else {
            Frame::Corrupt("bad record header")
        };
    }
    let start = offset + FRAME_HEADER_LEN;
    let end = start + len as usize;
    let Some(payload) = buf.get(start..end) else {
        // The header is intact, so the length is right: the payload was not
        // fully written.
        return Frame::Torn;
    };
    if crc32fast::hash(payload) != crc {
        return if end == buf.len() || all_zero() {
            Frame::Torn
        } else {
            Frame::Corrupt("checksum mismatch")
        };
    }
    Frame::Record(payload, end)
}

fn frame(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::invalid("change is too large for one log record"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&len.to_le_bytes()).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// The append-only change log.
#[derive(Debug)]
pub(crate) struct Log {
    file: File,
    path: PathBuf,
    len: u64,
    fsync: bool,
    broken: Option<String>,
}

impl Log {
    /// Bytes in the log file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Appends one record and, when asked, fsyncs it.
    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<()> {
        if let Some(reason) = &self.broken {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{} refuses writes after an earlier failure ({reason}); reopen the store",
                    self.path.display()
                ),
            ));
        }
        let framed = frame(payload)?;
        let written = self.file.write_all(&framed).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.len += framed.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut off whatever part of the record reached the file, so
                // the next record does not follow a damaged one.
                if let Err(cut) = self.file.set_len(self.len) {
                    self.broken = Some(format!("{e}; truncating back failed: {cut}"));
                }
                Err(io_error(e, "appending to", &self.path))
            }
        }
    }

    /// Empties the log after a snapshot has taken over its records.
    fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(LOG_MAGIC.len() as u64)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_error(e, "truncating", &self.path))?;
        self.len = LOG_MAGIC.len() as u64;
        Ok(())
    }
}

/// Opens the data directory: loads the snapshot and replays the log through
/// `apply`, truncating a torn tail. Returns the log, ready for appends, and
/// the next LSN to use.
pub(crate) fn open(
    dir: &Path,
    fsync: bool,
    apply: &mut dyn FnMut(Decoded) -> std::result::Result<(), String>,
) -> Result<(Log, u64)> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    if tmp.exists() {
        // A compaction that did not finish: the old snapshot and log still
        // hold everything.
        fs::remove_file(&tmp).map_err(|e| io_error(e, "removing", &tmp))?;
    }
    let snapshot_lsn = load_snapshot(&dir.join(SNAPSHOT_FILE), apply)?;

    let path = dir.join(LOG_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_error(e, "opening", &path))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(|e| io_error(e, "reading", &path))?;
    if buf.len() < LOG_MAGIC.len() {
        // New, or created by a process that died before the header was
        // complete: nothing was ever committed to it.
        if !LOG_MAGIC.starts_with(&buf) {
            return Err(corrupt(&path, 0, "not a strata document log"));
        }
        file.set_len(0)
            .and_then(|()| file.write_all(LOG_MAGIC))
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(e, "initialising", &path))?;
        sync_dir(dir)?;
        buf = LOG_MAGIC.to_vec();
    } else if !buf.starts_with(LOG_MAGIC) {
        return Err(corrupt(&path, 0, "not a strata document log"));
    }

    let mut offset = LOG_MAGIC.len();
    let mut last_lsn = snapshot_lsn;
    loop {
        match next_frame(&buf, offset) {
            Frame::End => break,
            Frame::Record(payload, next) => {
                let decoded =
                    record::decode(payload).map_err(|e| corrupt(&path, offset as u64, &e))?;
                if decoded.lsn > snapshot_lsn {
                    last_lsn = last_lsn.max(decoded.lsn);
                    apply(decoded).map_err(|e| corrupt(&path, offset as u64, &e))?;
                }
                offset = next;
            }
            Frame::Torn => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    dropped = buf.len() - offset,
                    "truncating a torn record at the end of the document log"
                );
                file.set_len(offset as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error(e, "truncating", &path))?;
                break;
            }
            Frame::Corrupt(what) => return Err(corrupt(&path, offset as u64, what)),
        }
    }
    let log = Log {
        file,
        path,
        len: offset as u64,
        fsync,
        broken: None,
    };
    Ok((log, last_lsn + 1))
}

fn load_snapshot(
    path: &Path,
    apply: &mut dyn FnMut(Decoded) -> std::result::Result<(), String>,
) -> Result<u64> {
    let buf = match fs::read(path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(e, "reading", path)),
    };
    let header = buf
        .get(..SNAPSHOT_HEADER_LEN)
        .filter(|h| h.starts_with(SNAPSHOT_MAGIC))
        .ok_or_else(|| corrupt(path, 0, "not a strata document snapshot"))?;
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let lsn = word(16);
    let count = word(24);
    let mut offset = SNAPSHOT_HEADER_LEN;
    let mut seen = 0u64;
    loop {
        match next_frame(&buf, offset) {
            Frame::End => break,
            Frame::Record(payload, next) => {
                let decoded =
                    record::decode(payload).map_err(|e| corrupt(path, offset as u64, &e))?;
                apply(decoded).map_err(|e| corrupt(path, offset as u64, &e))?;
                seen += 1;
                offset = next;
            }
            // A snapshot is complete before it is renamed into place, so
            // any damage is corruption, even at the end.
            Frame::Torn => return Err(corrupt(path, offset as u64, "truncated record")),
            Frame::Corrupt(what) => return Err(corrupt(path, offset as u64, what)),
        }
    }
    if seen != count {
        return Err(corrupt(
            path,
            offset as u64,
            "snapshot holds fewer records than its header says",
        ));
    }
    Ok(lsn)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(e, "syncing directory", dir))
}

/// Writes a snapshot of `changes` as of `lsn` and empties `log`, in the
/// crash-safe order described in the module docs.
pub(crate) fn compact(
    dir: &Path,
    lsn: u64,
    changes: impl Iterator<Item = Result<(Change, Vec<Vec<u8>>)>>,
    log: &mut Log,
) -> Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let result = write_snapshot(&tmp, lsn, changes);
    if let Err(e) = result {
        // Best effort: a leftover temporary file is removed on next open.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let path = dir.join(SNAPSHOT_FILE);
    fs::rename(&tmp, &path).map_err(|e| io_error(e, "renaming snapshot to", &path))?;
    sync_dir(dir)?;
    log.reset()
}

fn write_snapshot(
    tmp: &Path,
    lsn: u64,
    changes: impl Iterator<Item = Result<(Change, Vec<Vec<u8>>)>>,
) -> Result<()> {
    let file = File::create(tmp).map_err(|e| io_error(e, "creating", tmp))?;
    let mut out = BufWriter::new(file);
    let io = |e| io_error(e, "writing", tmp);
    out.write_all(SNAPSHOT_MAGIC).map_err(io)?;
    out.write_all(&lsn.to_le_bytes()).map_err(io)?;
    out.write_all(&0u64.to_le_bytes()).map_err(io)?;
    let mut count = 0u64;
    for item in changes {
        let (change, encoded) = item?;
        let payload = record::encode(lsn, &change, &encoded)?;
        out.write_all(&frame(&payload)?).map_err(io)?;
        count += 1;
    }
    let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.seek(SeekFrom::Start(24)).map_err(io)?;
    file.write_all(&count.to_le_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn insert(id: i32) -> (Change, Vec<Vec<u8>>) {
        let document = doc! {"_id": id};
        let encoded = vec![record::encode_document(&document).unwrap()];
        let change = Change::Insert {
            collection: "c".into(),
            documents: vec![document],
        };
        (change, encoded)
    }

    fn replay(dir: &Path) -> Result<(Log, Vec<Change>)> {
        let mut seen = Vec::new();
        let (log, _) = open(dir, false, &mut |d| {
            seen.push(d.change);
            Ok(())
        })?;
        Ok((log, seen))
    }

    fn append(log: &mut Log, lsn: u64, id: i32) {
        let (change, encoded) = insert(id);
        log.append(&record::encode(lsn, &change, &encoded).unwrap())
            .unwrap();
    }

    #[test]
    fn records_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, seen) = replay(dir.path()).unwrap();
        assert!(seen.is_empty());
        for i in 1..=3 {
            append(&mut log, i as u64, i);
        }
        drop(log);
        let (_, seen) = replay(dir.path()).unwrap();
        assert_eq!(seen, (1..=3).map(|i| insert(i).0).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tails_of_every_length_are_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = replay(dir.path()).unwrap();
        append(&mut log, 1, 1);
        let good = log.len();
        append(&mut log, 2, 2);
        let full = log.len();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let bytes = fs::read(&path).unwrap();
        for cut in good + 1..full {
            fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (log, seen) = replay(dir.path()).unwrap();
            assert_eq!(seen, vec![insert(1).0], "cut at {cut}");
            assert_eq!(log.len(), good);
            assert_eq!(fs::metadata(&path).unwrap().len(), good);
        }
        // Zeros left by a power loss are a torn tail too.
        let mut zeros = bytes[..good as usize].to_vec();
        zeros.extend([0u8; 64]);
        fs::write(&path, &zeros).unwrap();
        let (_, seen) = replay(dir.path()).unwrap();
        assert_eq!(seen, vec![insert(1).0]);
    }

    #[test]
    fn damage_in_the_middle_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = replay(dir.path()).unwrap();
        append(&mut log, 1, 1);
        append(&mut log, 2, 2);
        append(&mut log, 3, 3);
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&path).unwrap();
        let at = LOG_MAGIC.len() + FRAME_HEADER_LEN + 6;
        bytes[at] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let err = replay(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(LOG_FILE), "{text}");
        assert!(
            text.contains(&format!("offset {}", LOG_MAGIC.len())),
            "{text}"
        );
    }

    #[test]
    fn snapshot_supersedes_older_log_records() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = replay(dir.path()).unwrap();
        append(&mut log, 1, 1);
        append(&mut log, 2, 2);
        // Simulate a crash after the snapshot was renamed into place but
        // before the log was emptied: the log's records must not replay.
        let tmp = dir.path().join(SNAPSHOT_TMP_FILE);
        write_snapshot(&tmp, 2, [Ok(insert(1)), Ok(insert(2))].into_iter()).unwrap();
        fs::rename(&tmp, dir.path().join(SNAPSHOT_FILE)).unwrap();
        append(&mut log, 3, 3);
        drop(log);
        let (mut log, seen) = replay(dir.path()).unwrap();
        assert_eq!(seen, vec![insert(1).0, insert(2).0, insert(3).0]);
        // And a full compaction leaves the same content.
        compact(
            dir.path(),
            3,
            [Ok(insert(1)), Ok(insert(2)), Ok(insert(3))].into_iter(),
            &mut log,
        )
        .unwrap();
        assert_eq!(log.len(), LOG_MAGIC.len() as u64);
        drop(log);
        let (_, seen) = replay(dir.path()).unwrap();
        assert_eq!(seen, vec![insert(1).0, insert(2).0, insert(3).0]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever follows intact records, open keeps those records (the
        /// tail is torn) or refuses with an error naming the file; it never
        /// panics and never replays anything else.
        #[test]
        fn arbitrary_tails_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..80)) {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = replay(dir.path()).unwrap();
            append(&mut log, 1, 1);
            append(&mut log, 2, 2);
            drop(log);
            let path = dir.path().join(LOG_FILE);
            let mut bytes = fs::read(&path).unwrap();
            bytes.extend_from_slice(&tail);
            fs::write(&path, &bytes).unwrap();
            match replay(dir.path()) {
                Ok((_, seen)) => proptest::prop_assert_eq!(seen, vec![insert(1).0, insert(2).0]),
                Err(e) => proptest::prop_assert!(e.to_string().contains(LOG_FILE), "{}", e),
            }
        }
    }

    #[test]
    fn second_lock_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("is in use by another strata process"),
            "{err}"
        );
    }
}
