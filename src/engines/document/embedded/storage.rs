//! Files of the embedded document store: framed records, the change log,
//! the snapshot and the directory lock.
//!
//! # Layout of the data directory
//!
//! - `documents.lock`: held (`flock`) by the one process that has the
//!   directory open.
//! - `documents.manifest`: what the directory holds (see `manifest`).
//! - `documents.snapshot`: the whole database as of a log sequence number
//!   (LSN), written by compaction.
//! - `documents.log`: every change committed since, one framed record each.
//! - `documents.snapshot.tmp`, `documents.log.next`,
//!   `documents.manifest.tmp`: files being written; a crash may leave them,
//!   and opening removes them (they are never needed, see `recovery`).
//!
//! # Contracts
//!
//! - A record is framed as `len: u32 LE | crc32(len): u32 LE |
//!   crc32(payload): u32 LE | payload`.
//! - The log and the snapshot start with a header naming the store (a
//!   random id chosen when the directory was created) and the file's
//!   generation (one more at each compaction), checksummed, so a file from
//!   another store or an older generation is recognised as such.
//! - A snapshot is complete before it is renamed into place: any damage in
//!   it is corruption. A log may end in a torn record (a crash mid-write, or
//!   zeros a power loss left); [`FrameReader`] tells that apart from damage
//!   followed by more data.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bson::oid::ObjectId;

use crate::error::{Error, ErrorKind, Result};

/// Name of the change log in the data directory.
pub(crate) const LOG_FILE: &str = "documents.log";
/// The next generation's log while a compaction runs.
pub(crate) const LOG_NEXT_FILE: &str = "documents.log.next";
/// Name of the snapshot in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "documents.snapshot";
/// The next generation's snapshot while a compaction writes it.
pub(crate) const SNAPSHOT_TMP_FILE: &str = "documents.snapshot.tmp";
pub(crate) const LOCK_FILE: &str = "documents.lock";

/// Format 1 had no manifest and no store id in its headers; it is read
/// once, to upgrade a directory it wrote.
const LOG_MAGIC_V1: &[u8; 16] = b"strata-doclog-v1";
const LOG_MAGIC: &[u8; 16] = b"strata-doclog-v2";
const SNAPSHOT_MAGIC_V1: &[u8; 16] = b"strata-docsnap-1";
const SNAPSHOT_MAGIC: &[u8; 16] = b"strata-docsnap-2";
/// Log header: magic, store id, generation, crc32 of those.
pub(crate) const LOG_HEADER_LEN: u64 = 16 + 12 + 8 + 4;
const LOG_HEADER_LEN_V1: u64 = 16;
/// Snapshot header: magic, store id, generation, LSN, record count, crc32.
const SNAPSHOT_HEADER_LEN: u64 = 16 + 12 + 8 + 8 + 8 + 4;
/// Format 1 snapshot header: magic, LSN, record count.
const SNAPSHOT_HEADER_LEN_V1: u64 = 16 + 8 + 8;
const FRAME_HEADER_LEN: u64 = 12;
/// Read buffer for replaying files.
const READ_BUFFER: usize = 1 << 20;

/// The store and generation a log or snapshot belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) store: ObjectId,
    pub(crate) generation: u64,
}

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

/// Whether a running strata process holds the directory's lock. Opens the
/// lock file read-only and creates nothing: no lock file means no holder.
pub(crate) fn lock_held(dir: &Path) -> Result<bool> {
    let path = dir.join(LOCK_FILE);
    let file = match OpenOptions::new().read(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(e, "opening", &path)),
    };
    match file.try_lock_shared() {
        // Released when `file` is dropped.
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => Err(io_error(e, "locking", &path)),
    }
}

/// An I/O error naming what was done to which file.
pub(crate) fn io_error(e: std::io::Error, what: &str, path: &Path) -> Error {
    let message = format!("{what} {}: {e}", path.display());
    let kind = Error::from(e).kind();
    Error::new(kind, message)
}

/// Damage found in a file, with where.
pub(crate) fn corrupt(path: &Path, offset: u64, what: &str) -> Error {
    Error::internal(format!(
        "corrupt record in {} at offset {offset}: {what}",
        path.display()
    ))
}

/// A file that does not hold what it should, said plainly: `what`
/// continues a sentence whose subject is the file ("is missing; ...").
pub(crate) fn damaged(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::internal(format!("{} {what}", path.display()))
}

/// Fsyncs a directory, so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(e, "syncing directory", dir))
}

/// Removes a file if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(e, "removing", path)),
    }
}

/// Frames one payload.
pub(crate) fn frame(payload: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(payload.len())
        .map_err(|_| Error::invalid("change is too large for one log record"))?;
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN as usize + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&len.to_le_bytes()).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn object_id_at(bytes: &[u8], at: usize) -> ObjectId {
    let mut b = [0u8; 12];
    b.copy_from_slice(&bytes[at..at + 12]);
    ObjectId::from_bytes(b)
}

/// One frame read by a [`FrameReader`].
#[derive(Debug)]
pub(crate) enum Frame {
    /// A whole, intact record's payload.
    Record(Vec<u8>),
    /// The file ends here.
    End,
    /// A record cut short by a crash (or zeros a power loss left): nothing
    /// from here on is a record.
    Torn,
    /// A damaged record with data after it.
    Corrupt(&'static str),
}

/// Reads frames from a file one at a time, so replaying a large log or
/// snapshot holds one record in memory, not the file.
pub(crate) struct FrameReader {
    reader: BufReader<File>,
    /// Offset of the next frame.
    offset: u64,
    total: u64,
}

impl FrameReader {
    /// Reads the frames of `file` from `offset` (just after its header) to
    /// `total`, its length.
    pub(crate) fn new(mut file: File, offset: u64, total: u64) -> std::io::Result<Self> {
        file.seek(SeekFrom::Start(offset))?;
        Ok(FrameReader {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            offset,
            total,
        })
    }

    /// Offset of the next frame (of the torn or corrupt one after
    /// [`Frame::Torn`] or [`Frame::Corrupt`]).
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame.
    pub(crate) fn next_frame(&mut self) -> std::io::Result<Frame> {
        let remaining = self.total - self.offset;
        if remaining == 0 {
            return Ok(Frame::End);
        }
        if remaining < FRAME_HEADER_LEN {
            return Ok(Frame::Torn);
        }
        let mut header = [0u8; FRAME_HEADER_LEN as usize];
        self.reader.read_exact(&mut header)?;
        let len = u32_at(&header, 0);
        let len_crc = u32_at(&header, 4);
        let crc = u32_at(&header, 8);
        if len_crc != crc32fast::hash(&len.to_le_bytes()) || len == 0 {
            let zeros = header.iter().all(|b| *b == 0) && self.rest_is_zero()?;
            return Ok(if zeros {
                Frame::Torn
            } else {
                Frame::Corrupt("bad record header")
            });
        }
        let end = self.offset + FRAME_HEADER_LEN + u64::from(len);
        if end > self.total {
            // The header is intact, so the length is right: the payload was
            // not fully written.
            return Ok(Frame::Torn);
        }
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != crc {
            return Ok(if end == self.total {
                Frame::Torn
            } else {
                Frame::Corrupt("checksum mismatch")
            });
        }
        self.offset = end;
        Ok(Frame::Record(payload))
    }

    fn rest_is_zero(&mut self) -> std::io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.reader.read(&mut buf)?;
            if n == 0 {
                return Ok(true);
            }
            if buf[..n].iter().any(|b| *b != 0) {
                return Ok(false);
            }
        }
    }
}

/// What a log file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogHeader {
    /// A format-1 log (no manifest, no id).
    Legacy,
    /// A log of this store's format.
    Current(FileId),
}

impl LogHeader {
    /// Bytes the header takes: where the first record starts.
    pub(crate) fn len(self) -> u64 {
        match self {
            LogHeader::Legacy => LOG_HEADER_LEN_V1,
            LogHeader::Current(_) => LOG_HEADER_LEN,
        }
    }
}

fn log_header(id: FileId) -> Vec<u8> {
    let mut out = Vec::with_capacity(LOG_HEADER_LEN as usize);
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&id.store.bytes());
    out.extend_from_slice(&id.generation.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// What is found where a log should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogProbe {
    /// No file.
    Missing,
    /// A file of this many bytes, too short for a header: emptied or cut.
    Short(u64),
    /// A log with this header, of this many bytes.
    Found(LogHeader, u64),
}

/// Opens `path` and reads its first `header_len` bytes (fewer when the file
/// is shorter): the file, its size and those bytes; `Ok(None)` when there is
/// no such file.
fn open_with_head(path: &Path, header_len: u64) -> Result<Option<(File, u64, Vec<u8>)>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e, "opening", path)),
    };
    let size = file
        .metadata()
        .map_err(|e| io_error(e, "reading the size of", path))?
        .len();
    let mut head = vec![0u8; header_len.min(size) as usize];
    file.read_exact(&mut head)
        .map_err(|e| io_error(e, "reading", path))?;
    Ok(Some((file, size, head)))
}

/// Reads the header of the log at `path`; an error naming the file when it
/// is not a strata document log or its header is damaged.
pub(crate) fn probe_log(path: &Path) -> Result<LogProbe> {
    let Some((_, total, head)) = open_with_head(path, LOG_HEADER_LEN)? else {
        return Ok(LogProbe::Missing);
    };
    if head.starts_with(LOG_MAGIC_V1) {
        return Ok(LogProbe::Found(LogHeader::Legacy, total));
    }
    if total < LOG_HEADER_LEN {
        return Ok(LogProbe::Short(total));
    }
    if !head.starts_with(LOG_MAGIC) {
        return Err(corrupt(path, 0, "not a strata document log"));
    }
    let body = LOG_HEADER_LEN as usize - 4;
    if crc32fast::hash(&head[..body]) != u32_at(&head, body) {
        return Err(corrupt(path, 0, "damaged log header"));
    }
    let id = FileId {
        store: object_id_at(&head, 16),
        generation: u64_at(&head, 28),
    };
    Ok(LogProbe::Found(LogHeader::Current(id), total))
}

/// A log file open for appending.
#[derive(Debug)]
pub(crate) struct LogFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl LogFile {
    /// Creates (or empties) `path` as a log of `id`, holding only its
    /// header, and fsyncs it (the caller fsyncs the directory).
    pub(crate) fn create(path: &Path, id: FileId) -> Result<LogFile> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(e, "creating", path))?;
        file.write_all(&log_header(id))
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(e, "writing the header of", path))?;
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            len: LOG_HEADER_LEN,
        })
    }

    /// Opens an existing log whose first `len` bytes are intact records,
    /// cutting off anything after them (a torn tail) durably.
    pub(crate) fn open(path: &Path, len: u64) -> Result<LogFile> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(e, "opening", path))?;
        let actual = file
            .metadata()
            .map_err(|e| io_error(e, "reading the size of", path))?
            .len();
        if actual != len {
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(e, "truncating", path))?;
        }
        file.seek(SeekFrom::Start(len))
            .map_err(|e| io_error(e, "seeking in", path))?;
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            len,
        })
    }

    /// Bytes in the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The file's path.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `path` (the caller fsyncs the directory).
    pub(crate) fn rename_to(&mut self, path: &Path) -> Result<()> {
        fs::rename(&self.path, path)
            .map_err(|e| io_error(e, &format!("renaming {} to", self.path.display()), path))?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Appends framed records with one `write(2)` (as far as the kernel
    /// takes it). On failure, cuts off whatever part reached the file, so
    /// that nothing follows a partial record.
    pub(crate) fn append(&mut self, framed: &[u8]) -> Result<()> {
        match self.file.write_all(framed) {
            Ok(()) => {
                self.len += framed.len() as u64;
                Ok(())
            }
            Err(e) => {
                let cut = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.seek(SeekFrom::Start(self.len)).map(|_| ()));
                let mut error = io_error(e, "appending to", &self.path);
                if let Err(cut) = cut {
                    error = Error::new(
                        error.kind(),
                        format!("{}; truncating back failed: {cut}", error.message()),
                    );
                }
                Err(error)
            }
        }
    }

    /// Makes every appended byte durable (`fdatasync`).
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| io_error(e, "syncing", &self.path))
    }
}

/// What a snapshot file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    /// `None` for a format-1 snapshot.
    pub(crate) id: Option<FileId>,
    /// The LSN of the last change the snapshot holds.
    pub(crate) lsn: u64,
    /// Records in the snapshot.
    pub(crate) records: u64,
    /// Bytes in the file.
    pub(crate) bytes: u64,
}

/// Writes a snapshot of `records` (payloads stamped with `lsn`) to `path`
/// and fsyncs it; the caller renames it into place.
pub(crate) fn write_snapshot(
    path: &Path,
    id: FileId,
    lsn: u64,
    records: impl Iterator<Item = Result<Vec<u8>>>,
) -> Result<SnapshotHeader> {
    let file = File::create(path).map_err(|e| io_error(e, "creating", path))?;
    let mut out = BufWriter::with_capacity(READ_BUFFER, file);
    let io = |e| io_error(e, "writing", path);
    out.write_all(&snapshot_header(id, lsn, 0)).map_err(io)?;
    let mut count = 0u64;
    let mut bytes = SNAPSHOT_HEADER_LEN;
    for payload in records {
        let framed = frame(&payload?)?;
        out.write_all(&framed).map_err(io)?;
        bytes += framed.len() as u64;
        count += 1;
    }
    let mut file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&snapshot_header(id, lsn, count))
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(SnapshotHeader {
        id: Some(id),
        lsn,
        records: count,
        bytes,
    })
}

fn snapshot_header(id: FileId, lsn: u64, records: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN as usize);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&id.store.bytes());
    out.extend_from_slice(&id.generation.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A snapshot file, its header read.
pub(crate) struct SnapshotFile {
    file: File,
    path: PathBuf,
    header: SnapshotHeader,
    header_len: u64,
}

impl SnapshotFile {
    /// Opens the snapshot at `path` and reads its header: `Ok(None)` when
    /// there is none.
    pub(crate) fn open(path: &Path) -> Result<Option<SnapshotFile>> {
        let Some((file, bytes, head)) = open_with_head(path, SNAPSHOT_HEADER_LEN)? else {
            return Ok(None);
        };
        let (header, header_len) =
            if head.starts_with(SNAPSHOT_MAGIC_V1) && bytes >= SNAPSHOT_HEADER_LEN_V1 {
                let header = SnapshotHeader {
                    id: None,
                    lsn: u64_at(&head, 16),
                    records: u64_at(&head, 24),
                    bytes,
                };
                (header, SNAPSHOT_HEADER_LEN_V1)
            } else if head.starts_with(SNAPSHOT_MAGIC) && bytes >= SNAPSHOT_HEADER_LEN {
                let body = SNAPSHOT_HEADER_LEN as usize - 4;
                if crc32fast::hash(&head[..body]) != u32_at(&head, body) {
                    return Err(corrupt(path, 0, "damaged snapshot header"));
                }
                let header = SnapshotHeader {
                    id: Some(FileId {
                        store: object_id_at(&head, 16),
                        generation: u64_at(&head, 28),
                    }),
                    lsn: u64_at(&head, 36),
                    records: u64_at(&head, 44),
                    bytes,
                };
                (header, SNAPSHOT_HEADER_LEN)
            } else {
                return Err(corrupt(path, 0, "not a strata document snapshot"));
            };
        Ok(Some(SnapshotFile {
            file,
            path: path.to_path_buf(),
            header,
            header_len,
        }))
    }

    /// The header.
    pub(crate) fn header(&self) -> SnapshotHeader {
        self.header
    }

    /// Hands every record's payload to `apply`, checking that there are as
    /// many as the header says. A snapshot is complete before it is renamed
    /// into place, so any damage is corruption, even at the end.
    pub(crate) fn replay(self, apply: &mut dyn FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let path = self.path;
        let mut reader = FrameReader::new(self.file, self.header_len, self.header.bytes)
            .map_err(|e| io_error(e, "reading", &path))?;
        let mut seen = 0u64;
        loop {
            let offset = reader.offset();
            match reader
                .next_frame()
                .map_err(|e| io_error(e, "reading", &path))?
            {
                Frame::End => break,
                Frame::Record(payload) => {
                    apply(offset, &payload)?;
                    seen += 1;
                }
                Frame::Torn => return Err(corrupt(&path, offset, "truncated record")),
                Frame::Corrupt(what) => return Err(corrupt(&path, offset, what)),
            }
        }
        if seen != self.header.records {
            return Err(corrupt(
                &path,
                reader.offset(),
                &format!(
                    "snapshot holds {seen} records but its header says {}",
                    self.header.records
                ),
            ));
        }
        Ok(())
    }
}

/// Writes a format-1 log and snapshot, for tests of the upgrade.
#[cfg(test)]
pub(crate) mod legacy {
    use super::*;

    /// A format-1 log holding `payloads`.
    pub(crate) fn write_log(path: &Path, payloads: &[Vec<u8>]) {
        let mut bytes = LOG_MAGIC_V1.to_vec();
        for p in payloads {
            bytes.extend(frame(p).unwrap());
        }
        fs::write(path, bytes).unwrap();
    }

    /// A format-1 snapshot holding `payloads` as of `lsn`.
    pub(crate) fn write_snapshot(path: &Path, lsn: u64, payloads: &[Vec<u8>]) {
        let mut bytes = SNAPSHOT_MAGIC_V1.to_vec();
        bytes.extend(lsn.to_le_bytes());
        bytes.extend((payloads.len() as u64).to_le_bytes());
        for p in payloads {
            bytes.extend(frame(p).unwrap());
        }
        fs::write(path, bytes).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(path: &Path, from: u64) -> (Vec<Vec<u8>>, Frame, u64) {
        let file = File::open(path).unwrap();
        let total = file.metadata().unwrap().len();
        let mut reader = FrameReader::new(file, from, total).unwrap();
        let mut out = Vec::new();
        loop {
            match reader.next_frame().unwrap() {
                Frame::Record(p) => out.push(p),
                other => return (out, other, reader.offset()),
            }
        }
    }

    #[test]
    fn log_header_round_trips_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let id = FileId {
            store: ObjectId::new(),
            generation: 7,
        };
        let mut log = LogFile::create(&path, id).unwrap();
        log.append(&frame(b"one").unwrap()).unwrap();
        drop(log);
        assert_eq!(
            probe_log(&path).unwrap(),
            LogProbe::Found(LogHeader::Current(id), LOG_HEADER_LEN + 12 + 3)
        );
        let (records, end, _) = frames_of(&path, LOG_HEADER_LEN);
        assert_eq!(records, vec![b"one".to_vec()]);
        assert!(matches!(end, Frame::End));

        let mut bytes = fs::read(&path).unwrap();
        bytes[30] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = probe_log(&path).unwrap_err().to_string();
        assert!(err.contains(LOG_FILE) && err.contains("header"), "{err}");

        for cut in [0usize, 10, 39] {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert_eq!(probe_log(&path).unwrap(), LogProbe::Short(cut as u64));
        }
        fs::write(
            &path,
            "something else entirely, and certainly not a log".repeat(2),
        )
        .unwrap();
        let err = probe_log(&path).unwrap_err().to_string();
        assert!(err.contains("not a strata document log"), "{err}");
        fs::remove_file(&path).unwrap();
        assert_eq!(probe_log(&path).unwrap(), LogProbe::Missing);
    }

    #[test]
    fn torn_tails_of_every_length_are_told_from_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let id = FileId {
            store: ObjectId::new(),
            generation: 1,
        };
        let mut log = LogFile::create(&path, id).unwrap();
        log.append(&frame(b"first record").unwrap()).unwrap();
        let good = log.len();
        log.append(&frame(b"second record").unwrap()).unwrap();
        let full = log.len();
        drop(log);
        let bytes = fs::read(&path).unwrap();
        for cut in good + 1..full {
            fs::write(&path, &bytes[..cut as usize]).unwrap();
            let (records, end, offset) = frames_of(&path, LOG_HEADER_LEN);
            assert_eq!(records.len(), 1, "cut at {cut}");
            assert!(matches!(end, Frame::Torn), "cut at {cut}: {end:?}");
            assert_eq!(offset, good);
        }
        // Zeros left by a power loss are a torn tail too.
        let mut zeros = bytes[..good as usize].to_vec();
        zeros.extend([0u8; 64]);
        fs::write(&path, &zeros).unwrap();
        assert!(matches!(frames_of(&path, LOG_HEADER_LEN).1, Frame::Torn));
        // A damaged first record followed by an intact one is corruption.
        let mut damaged = bytes.clone();
        damaged[LOG_HEADER_LEN as usize + 14] ^= 0x55;
        fs::write(&path, &damaged).unwrap();
        let (records, end, offset) = frames_of(&path, LOG_HEADER_LEN);
        assert!(records.is_empty());
        assert!(
            matches!(end, Frame::Corrupt("checksum mismatch")),
            "{end:?}"
        );
        assert_eq!(offset, LOG_HEADER_LEN);
    }

    #[test]
    fn snapshots_check_their_count_and_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SNAPSHOT_FILE);
        let id = FileId {
            store: ObjectId::new(),
            generation: 3,
        };
        let payloads = vec![b"a".to_vec(), b"bb".to_vec()];
        let written = write_snapshot(&path, id, 9, payloads.clone().into_iter().map(Ok)).unwrap();
        assert_eq!(written.bytes, fs::metadata(&path).unwrap().len());
        let snapshot = SnapshotFile::open(&path).unwrap().unwrap();
        assert_eq!(snapshot.header(), written);
        let mut seen = Vec::new();
        snapshot
            .replay(&mut |_, p| {
                seen.push(p.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, payloads);

        // Cut at the end: a snapshot is never torn, it is damaged.
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let err = SnapshotFile::open(&path)
            .unwrap()
            .unwrap()
            .replay(&mut |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(SNAPSHOT_FILE) && err.contains("truncated"),
            "{err}"
        );
        // One whole record fewer than the header says.
        let one = SNAPSHOT_HEADER_LEN as usize + 13;
        fs::write(&path, &bytes[..one]).unwrap();
        let err = SnapshotFile::open(&path)
            .unwrap()
            .unwrap()
            .replay(&mut |_, _| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds 1 records but its header says 2"),
            "{err}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever follows intact records, the reader returns those records
        /// and then a torn tail or corruption; it never panics and never
        /// returns anything else as a record.
        #[test]
        fn arbitrary_tails_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..80)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG_FILE);
            let id = FileId { store: ObjectId::new(), generation: 1 };
            let mut log = LogFile::create(&path, id).unwrap();
            log.append(&frame(b"one").unwrap()).unwrap();
            log.append(&frame(b"two").unwrap()).unwrap();
            drop(log);
            let mut bytes = fs::read(&path).unwrap();
            bytes.extend_from_slice(&tail);
            fs::write(&path, &bytes).unwrap();
            let (records, end, _) = frames_of(&path, LOG_HEADER_LEN);
            proptest::prop_assert_eq!(&records[..2], &[b"one".to_vec(), b"two".to_vec()][..]);
            // A tail may, by chance, frame a valid record of its own; what
            // matters is that it ends in one of the three outcomes.
            proptest::prop_assert!(matches!(end, Frame::End | Frame::Torn | Frame::Corrupt(_)));
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
