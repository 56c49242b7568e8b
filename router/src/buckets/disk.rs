//! The files of one bucket: its index and its object bytes.
//!
//! Every write that must survive a crash goes to a temporary file that is fsynced and then
//! renamed into place, and the folder is fsynced after the rename. See the module doc of
//! [`buckets`](super) for the layout and the order of the steps.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::error::BucketError;
use super::notify::NotificationConfig;
use super::object::ObjectResource;
use super::state::{BucketInfo, BucketState};

/// The index file in a bucket's folder.
const INDEX_FILE: &str = "index.json";
/// The folder of object bytes in a bucket's folder.
const BLOBS_DIR: &str = "blobs";
/// The version of the index's layout, raised on incompatible changes.
const INDEX_FORMAT: u32 = 1;
/// Prefix of upload files in the blobs folder that are not yet an object's bytes.
const UPLOAD_PREFIX: &str = ".upload-";
/// Prefix of bucket folders under the root that are being created.
pub(crate) const CREATING_PREFIX: &str = ".creating-";
/// Prefix of bucket folders under the root that are being removed.
pub(crate) const DELETED_PREFIX: &str = ".deleted-";

#[derive(Serialize)]
struct IndexOut<'a> {
    format: u32,
    bucket: &'a BucketInfo,
    next_notification_id: u64,
    notification_configs: &'a [NotificationConfig],
    objects: Vec<&'a ObjectResource>,
}

#[derive(Deserialize)]
struct IndexIn {
    format: u32,
    bucket: BucketInfo,
    next_notification_id: u64,
    notification_configs: Vec<NotificationConfig>,
    objects: Vec<ObjectResource>,
}

/// The folder of one bucket.
#[derive(Debug)]
pub(crate) struct BucketDir {
    path: PathBuf,
}

impl BucketDir {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Returns whether the folder has an index, which every complete bucket folder has.
    pub(crate) fn has_index(&self) -> bool {
        self.path.join(INDEX_FILE).is_file()
    }

    fn blobs(&self) -> PathBuf {
        self.path.join(BLOBS_DIR)
    }

    /// Returns the file of one generation's bytes. Generations are unique in a bucket, and
    /// the file name is the generation's decimal digits, so no object name reaches the path.
    pub(crate) fn blob_path(&self, generation: i64) -> PathBuf {
        self.blobs().join(generation.to_string())
    }

    /// Creates the folder of a new bucket at `<root>/<name>`.
    ///
    /// The folder is built under a temporary name and renamed into place, so after a crash
    /// there is either no bucket or a complete one.
    pub(crate) fn create(root: &Path, state: &BucketState) -> Result<Self, BucketError> {
        let name = &state.info.name;
        let staging = Self::new(root.join(format!("{CREATING_PREFIX}{name}")));
        if staging.path.exists() {
            fs::remove_dir_all(&staging.path)
                .map_err(BucketError::io("removing", &staging.path))?;
        }
        fs::create_dir_all(staging.blobs()).map_err(BucketError::io("creating", &staging.path))?;
        staging.save_index(state)?;
        sync_dir(&staging.path)?;
        let path = root.join(name);
        if let Err(err) = fs::rename(&staging.path, &path) {
            // Best effort: the next open removes a leftover staging folder anyway.
            let _ = fs::remove_dir_all(&staging.path);
            return Err(BucketError::io("renaming", &staging.path)(err));
        }
        sync_dir(root)?;
        Ok(Self::new(path))
    }

    /// Reads the index and removes files in the blobs folder that no version references:
    /// unfinished uploads and the bytes of versions deleted just before a crash.
    pub(crate) fn load(&self) -> Result<BucketState, BucketError> {
        let index_path = self.path.join(INDEX_FILE);
        let text = fs::read(&index_path).map_err(BucketError::io("reading", &index_path))?;
        let corrupt = |reason: String| BucketError::Corrupt {
            path: index_path.clone(),
            reason,
        };
        let state = decode_index(&text).map_err(corrupt)?;
        let folder_name = self.path.file_name().and_then(|n| n.to_str());
        if folder_name != Some(state.info.name.as_str()) {
            return Err(corrupt(format!(
                "the index is of bucket {:?}, not of its folder's name",
                state.info.name
            )));
        }
        let generations: HashSet<i64> = state.versions().map(|o| o.generation).collect();
        self.collect_garbage(&generations)?;
        Ok(state)
    }

    /// Writes the index of `state`, replacing the previous one atomically.
    pub(crate) fn save_index(&self, state: &BucketState) -> Result<(), BucketError> {
        write_atomic(&self.path.join(INDEX_FILE), &encode_index(state))
    }

    /// Writes object bytes to a new upload file and fsyncs them. `id` must be unique among
    /// the uploads of this process.
    pub(crate) fn write_upload(&self, id: u64, bytes: &[u8]) -> Result<Upload, BucketError> {
        let name = format!("{UPLOAD_PREFIX}{}-{id}", std::process::id());
        let upload = Upload {
            path: self.blobs().join(name),
            committed: false,
        };
        let mut file =
            File::create(&upload.path).map_err(BucketError::io("creating", &upload.path))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(BucketError::io("writing", &upload.path))?;
        Ok(upload)
    }

    /// Opens the bytes of one generation for reading.
    pub(crate) fn open_blob(&self, generation: i64) -> Result<File, BucketError> {
        let path = self.blob_path(generation);
        File::open(&path).map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => BucketError::Corrupt {
                path,
                reason: format!("the bytes of generation {generation} are missing"),
            },
            _ => BucketError::io("opening", &path)(err),
        })
    }

    /// Removes the bytes of generations that no version references any more. A file that
    /// cannot be removed is logged and left for the garbage collection of the next start.
    pub(crate) fn remove_blobs(&self, generations: &[i64]) {
        for &generation in generations {
            let path = self.blob_path(generation);
            if let Err(err) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %err, "removing object bytes failed");
            }
        }
    }

    fn collect_garbage(&self, referenced: &HashSet<i64>) -> Result<(), BucketError> {
        let blobs = self.blobs();
        let entries = fs::read_dir(&blobs).map_err(BucketError::io("listing", &blobs))?;
        let mut removed = 0_usize;
        for entry in entries {
            let entry = entry.map_err(BucketError::io("listing", &blobs))?;
            let name = entry.file_name();
            let generation = name.to_str().and_then(|n| n.parse::<i64>().ok());
            if generation.is_some_and(|g| referenced.contains(&g)) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(err) => {
                    warn!(path = %path.display(), error = %err, "removing unreferenced file failed");
                }
            }
        }
        if removed > 0 {
            debug!(bucket = %self.path.display(), removed, "removed unreferenced object files");
        }
        Ok(())
    }
}

/// Object bytes written and fsynced but not yet part of any version. Dropping an upload that
/// was not committed removes its file.
#[derive(Debug)]
pub(crate) struct Upload {
    path: PathBuf,
    committed: bool,
}

impl Upload {
    /// Renames the upload to the file of `generation` and fsyncs the folder.
    pub(crate) fn commit(mut self, dir: &BucketDir, generation: i64) -> Result<(), BucketError> {
        let target = dir.blob_path(generation);
        fs::rename(&self.path, &target).map_err(BucketError::io("renaming", &self.path))?;
        self.committed = true;
        sync_dir(&dir.blobs())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.committed {
            // The file may not exist when creating it failed. Any leftover is removed by the
            // garbage collection of the next start.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Encodes a bucket's settings, notification configs and versions as an index: the
/// content of `index.json`, and of a bucket's key in the JetStream backend.
pub(crate) fn encode_index(state: &BucketState) -> Vec<u8> {
    let index = IndexOut {
        format: INDEX_FORMAT,
        bucket: &state.info,
        next_notification_id: state.next_notification_id,
        notification_configs: &state.notification_configs,
        objects: state.versions().collect(),
    };
    serde_json::to_vec(&index).unwrap_or_else(|err| {
        unreachable!("an index has only string keys and always serializes: {err}")
    })
}

/// Decodes an index and checks it, or returns what is wrong with it.
pub(crate) fn decode_index(bytes: &[u8]) -> Result<BucketState, String> {
    let index: IndexIn =
        serde_json::from_slice(bytes).map_err(|err| format!("invalid index: {err}"))?;
    if index.format != INDEX_FORMAT {
        return Err(format!(
            "index format {} is not {INDEX_FORMAT}, the only format this version reads",
            index.format
        ));
    }
    let mut state = BucketState::new(index.bucket);
    state.next_notification_id = index.next_notification_id;
    state.notification_configs = index.notification_configs;

    let mut generations = HashSet::new();
    for object in index.objects {
        if object.bucket != state.info.name {
            return Err(format!(
                "generation {} of object {:?} names bucket {:?}",
                object.generation, object.name, object.bucket
            ));
        }
        if object.generation <= 0 {
            return Err(format!(
                "object {:?} has generation {}, which is not positive",
                object.name, object.generation
            ));
        }
        if !generations.insert(object.generation) {
            return Err(format!(
                "generation {} is used twice, so two versions would share one file",
                object.generation
            ));
        }
        state.insert_loaded(object)?;
    }
    Ok(state)
}

/// Replaces `path` with `bytes`: writes a temporary file beside it, fsyncs it, renames it
/// over `path` and fsyncs the folder.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BucketError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary).map_err(BucketError::io("creating", &temporary))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(BucketError::io("writing", &temporary))?;
    fs::rename(&temporary, path).map_err(BucketError::io("renaming", &temporary))?;
    match path.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Fsyncs a folder, so that renames and new files in it survive a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<(), BucketError> {
    File::open(path)
        .and_then(|folder| folder.sync_all())
        .map_err(BucketError::io("syncing", path))
}
