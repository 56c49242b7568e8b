//! Message payloads larger than [`INLINE_LIMIT`], kept outside sled in append-only segment
//! files under `payloads/` in the data directory.
//!
//! sled stores a value inside the page of its key, and writes a page of more than 128 KiB
//! as a separate blob file. With large messages in the `data` tree, every publish and every
//! acknowledgement rewrote such pages, and the blobs were never reclaimed: 2,400
//! acknowledged messages of 1 MB left 10 GB on disk. Here sled keeps only a reference
//! ([`PayloadRef`]) in the message's value, and the bytes go to a segment file.
//!
//! - The committer appends the payloads of a commit group to the active segment and syncs
//!   it before it applies the sled batch that refers to them, so a reference on disk always
//!   points to bytes on disk. A segment is closed when it reaches [`SEGMENT_BYTES`], and a
//!   new one is started at each open, so that no file is appended after a crash.
//! - Each external message also has an index key `x{segment}{topic}{seq}` in the same batch
//!   as its value, and loses it in the batch that removes the message. A closed segment
//!   without index keys contains nothing that is still needed, so its file is deleted once
//!   a flush of sled makes that state durable.
//! - At open, a segment file without index keys is deleted: it is either empty of live
//!   messages or was written by a commit group that never reached sled.
//!
//! A segment stays on disk while any of its messages is needed, so one message that is
//! never acknowledged keeps up to [`SEGMENT_BYTES`] until its retention ends.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::keys;
use crate::store::StoreError;

/// Payloads up to this many bytes stay inside sled, next to their attributes.
pub(crate) const INLINE_LIMIT: usize = 1024;
/// The size at which a segment is closed and a new one started. A payload larger than
/// this still goes into one segment, alone.
pub(crate) const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// The directory of the segment files, inside the data directory.
pub(crate) const DIR: &str = "payloads";
const SUFFIX: &str = ".seg";

/// The location of a payload: its segment, its offset and length in it, and its CRC-32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PayloadRef {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// The segment files, for reading. Shared by the store's readers and the committer.
#[derive(Debug)]
pub(crate) struct PayloadFiles {
    dir: PathBuf,
    /// Open handles, so that a read does not open the file again. Removed when the
    /// segment is deleted.
    open: Mutex<HashMap<u64, Arc<File>>>,
}

impl PayloadFiles {
    fn path(&self, segment: u64) -> PathBuf {
        segment_path(&self.dir, segment)
    }

    /// Reads a payload and checks its CRC. `Ok(None)` when the segment file does not exist,
    /// which the caller must tell apart from corruption: the message may have been deleted
    /// since its reference was read.
    pub(crate) fn read(&self, payload: &PayloadRef) -> Result<Option<Vec<u8>>, StoreError> {
        let file = match self.handle(payload.segment) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.io_error(payload, &err)),
        };
        let mut bytes = vec![0; payload.len as usize];
        file.read_exact_at(&mut bytes, payload.offset)
            .map_err(|err| self.io_error(payload, &err))?;
        if crc32c::crc32c(&bytes) != payload.crc {
            return Err(self.corrupt(payload, "the payload's checksum does not match"));
        }
        Ok(Some(bytes))
    }

    fn handle(&self, segment: u64) -> io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = open.get(&segment) {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(self.path(segment))?);
        open.insert(segment, file.clone());
        Ok(file)
    }

    fn forget(&self, segment: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&segment);
    }

    pub(crate) fn corrupt(&self, payload: &PayloadRef, reason: &str) -> StoreError {
        StoreError::Corrupt {
            key: format!(
                "{} at offset {} ({} bytes)",
                self.path(payload.segment).display(),
                payload.offset,
                payload.len
            ),
            reason: reason.to_owned(),
        }
    }

    fn io_error(&self, payload: &PayloadRef, err: &io::Error) -> StoreError {
        self.corrupt(payload, &format!("reading the payload failed: {err}"))
    }
}

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    id: u64,
    file: File,
    len: u64,
    /// Whether bytes were written since the last sync.
    dirty: bool,
}

/// The committer's side: appends payloads and deletes the segments nothing needs.
#[derive(Debug)]
pub(crate) struct PayloadWriter {
    files: Arc<PayloadFiles>,
    active: Option<Active>,
    next_segment: u64,
    /// Closed segments whose messages were written while the active one was open, synced
    /// when the group syncs.
    unsynced: Vec<File>,
    /// Segments that lost a message since the last collection, and closed segments not yet
    /// checked.
    touched: Mutex<HashSet<u64>>,
}

impl PayloadWriter {
    /// Opens the payload directory of a store at `dir`, creating it when missing, and deletes
    /// the segment files that no stored message refers to.
    pub(crate) fn open(dir: &Path, data: &sled::Tree) -> Result<Self, StoreError> {
        let dir = dir.join(DIR);
        fs::create_dir_all(&dir).map_err(|err| io_store_error(&dir, err))?;
        let mut next_segment = 1;
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(|err| io_store_error(&dir, err))? {
            let entry = entry.map_err(|err| io_store_error(&dir, err))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|name| name.strip_suffix(SUFFIX))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            next_segment = next_segment.max(id + 1);
            if data.scan_prefix(keys::payload_prefix(id)).next().is_none() {
                fs::remove_file(entry.path()).map_err(|err| io_store_error(&entry.path(), err))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&dir).map_err(|err| io_store_error(&dir, err))?;
            debug!(removed, "payload segments without messages deleted at open");
        }
        Ok(PayloadWriter {
            files: Arc::new(PayloadFiles {
                dir,
                open: Mutex::new(HashMap::new()),
            }),
            active: None,
            next_segment,
            unsynced: Vec::new(),
            touched: Mutex::new(HashSet::new()),
        })
    }

    /// Returns the files, for readers.
    pub(crate) fn files(&self) -> Arc<PayloadFiles> {
        self.files.clone()
    }

    /// Appends a payload to the active segment, starting a new one when it is full. The
    /// bytes are durable only after [`Self::sync`].
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<PayloadRef> {
        let full = self.active.as_ref().is_some_and(|active| {
            active.len > 0 && active.len + bytes.len() as u64 > SEGMENT_BYTES
        });
        if full {
            self.close_active();
        }
        if self.active.is_none() {
            self.active = Some(self.create_segment()?);
        }
        let Some(active) = self.active.as_mut() else {
            return Err(io::Error::other("no active payload segment"));
        };
        let payload = PayloadRef {
            segment: active.id,
            offset: active.len,
            len: u32::try_from(bytes.len())
                .map_err(|_| io::Error::other("a payload of 4 GiB or more"))?,
            crc: crc32c::crc32c(bytes),
        };
        let written = active.file.write_all(bytes);
        if let Err(err) = written {
            // The segment's length is unknown now. What it contains is reclaimed once nothing
            // refers to it.
            self.abandon_active();
            return Err(err);
        }
        active.len += bytes.len() as u64;
        active.dirty = true;
        Ok(payload)
    }

    /// Makes the appended payloads durable. Call it before applying the batch that refers
    /// to them.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        for file in self.unsynced.drain(..) {
            file.sync_data()?;
        }
        if let Some(active) = self.active.as_mut() {
            if active.dirty {
                if let Err(err) = active.file.sync_data() {
                    self.abandon_active();
                    return Err(err);
                }
                active.dirty = false;
            }
        }
        Ok(())
    }

    /// Notes that a message of `segment` was removed, so that the next
    /// [`Self::collect`] checks whether the segment is still needed.
    pub(crate) fn released(&self, segment: u64) {
        self.touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(segment);
    }

    /// Deletes the closed segments that lost their last message. The removals must already
    /// be applied to `data`. They are flushed before any file goes, so that a crash cannot
    /// bring back a message whose payload is gone.
    pub(crate) fn collect(&mut self, db: &sled::Db, data: &sled::Tree) {
        let candidates: Vec<u64> = {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            let active = self.active.as_ref().map(|active| active.id);
            let candidates = touched
                .iter()
                .copied()
                .filter(|segment| Some(*segment) != active)
                .collect();
            touched.retain(|segment| Some(*segment) == active);
            candidates
        };
        let dead: Vec<u64> = candidates
            .into_iter()
            .filter(|segment| {
                // A read error yields an item, which keeps the segment.
                data.scan_prefix(keys::payload_prefix(*segment))
                    .next()
                    .is_none()
            })
            .collect();
        if dead.is_empty() {
            return;
        }
        if let Err(err) = db.flush() {
            warn!(error = %err, "flushing the store before deleting payload segments failed");
            self.touched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(dead);
            return;
        }
        for segment in dead {
            self.files.forget(segment);
            let path = self.files.path(segment);
            match fs::remove_file(&path) {
                Ok(()) => debug!(segment, "payload segment deleted"),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    warn!(path = %path.display(), error = %err, "deleting a payload segment failed")
                }
            }
        }
    }

    fn create_segment(&mut self) -> io::Result<Active> {
        let id = self.next_segment;
        self.next_segment += 1;
        let path = self.files.path(id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        // The file's directory entry must be durable before a batch refers to it.
        sync_dir(&self.files.dir)?;
        Ok(Active {
            id,
            file,
            len: 0,
            dirty: false,
        })
    }

    fn close_active(&mut self) {
        if let Some(active) = self.active.take() {
            if active.dirty {
                self.unsynced.push(active.file);
            }
            self.released(active.id);
        }
    }

    fn abandon_active(&mut self) {
        if let Some(active) = self.active.take() {
            self.released(active.id);
        }
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016x}{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io_store_error(path: &Path, err: io::Error) -> StoreError {
    StoreError::Database(sled::Error::Io(io::Error::new(
        err.kind(),
        format!("{}: {err}", path.display()),
    )))
}
