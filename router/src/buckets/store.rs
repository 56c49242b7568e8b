//! [`FolderBuckets`]: the buckets under one root folder, and the operations on buckets and their
//! notification configs. The object operations are in `objects.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::disk::{sync_dir, BucketDir, CREATING_PREFIX, DELETED_PREFIX};
use super::error::BucketError;
use super::names::validate_bucket_name;
use super::notify::NotificationConfig;
use super::object::truncate_to_millis;
use super::state::{BucketInfo, BucketState};

/// A local object store with Cloud Storage semantics: buckets of objects with generations,
/// metagenerations, versioning and notification configs, kept under one root folder.
///
/// All methods block on file I/O, so call them from `spawn_blocking` in async code.
///
/// Only one `FolderBuckets` may use a root folder at a time, because each one removes the files it
/// does not know about when it opens. Nothing checks this.
#[derive(Debug)]
pub(crate) struct FolderBuckets {
    root: PathBuf,
    /// The open buckets by name. Its lock is held only to find, add or remove a bucket, and
    /// each bucket's own lock serializes the changes to that bucket.
    buckets: RwLock<BTreeMap<String, Arc<Bucket>>>,
    /// The last generation handed out in any bucket. Each new one is above it, so
    /// generations increase strictly even within one microsecond or when the clock goes back,
    /// and they are unique in a bucket, which the file names of object bytes rely on.
    last_generation: Mutex<i64>,
    /// Numbers upload files and removed bucket folders uniquely within this process.
    next_temporary_id: AtomicU64,
}

/// One open bucket.
#[derive(Debug)]
pub(super) struct Bucket {
    pub(super) dir: BucketDir,
    state: Mutex<BucketState>,
}

impl Bucket {
    /// Locks the bucket's state, or reports the bucket as not found when it was deleted
    /// while the caller waited.
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, BucketState>, BucketError> {
        let state = lock(&self.state);
        if state.deleted {
            return Err(BucketError::BucketNotFound {
                bucket: state.info.name.clone(),
            });
        }
        Ok(state)
    }
}

// A panic while a lock is held leaves no partial change behind: every change is applied in
// memory only after the steps that can fail, or undone when the index write fails.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FolderBuckets {
    /// Opens the buckets under `root`, creating the folder if it does not exist.
    ///
    /// Folders of buckets whose creation or removal a crash interrupted are removed, and so
    /// are object files that no index references. Other folders that are not buckets are
    /// logged and left alone.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] when the root cannot be read, and [`BucketError::Corrupt`] when a
    /// bucket's index does not decode.
    pub(crate) fn open(root: impl Into<PathBuf>) -> Result<Self, BucketError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(BucketError::io("creating", &root))?;
        let mut buckets = BTreeMap::new();
        let mut last_generation = 0;
        let entries = fs::read_dir(&root).map_err(BucketError::io("listing", &root))?;
        for entry in entries {
            let entry = entry.map_err(BucketError::io("listing", &root))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let folder_name = entry.file_name();
            let Some(name) = folder_name.to_str() else {
                warn!(path = %path.display(), "ignoring a folder that is not a bucket");
                continue;
            };
            if name.starts_with(CREATING_PREFIX) || name.starts_with(DELETED_PREFIX) {
                if let Err(err) = fs::remove_dir_all(&path) {
                    warn!(path = %path.display(), error = %err, "removing a folder failed");
                }
                continue;
            }
            let dir = BucketDir::new(path);
            if validate_bucket_name(name).is_err() || !dir.has_index() {
                warn!(path = %dir.path().display(), "ignoring a folder that is not a bucket");
                continue;
            }
            let state = dir.load()?;
            let newest = state.versions().map(|o| o.generation).max().unwrap_or(0);
            last_generation = last_generation.max(newest);
            let bucket = Bucket {
                dir,
                state: Mutex::new(state),
            };
            buckets.insert(name.to_owned(), Arc::new(bucket));
        }
        Ok(Self {
            root,
            buckets: RwLock::new(buckets),
            last_generation: Mutex::new(last_generation),
            next_temporary_id: AtomicU64::new(0),
        })
    }

    /// Creates an empty bucket.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidBucketName`] for a name that breaks Cloud Storage's rules, and
    /// [`BucketError::BucketExists`] when the bucket exists.
    pub(crate) fn create_bucket(
        &self,
        name: &str,
        versioning: bool,
    ) -> Result<BucketInfo, BucketError> {
        validate_bucket_name(name).map_err(|rule| BucketError::InvalidBucketName {
            name: name.to_owned(),
            rule,
        })?;
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        if buckets.contains_key(name) {
            return Err(BucketError::BucketExists {
                bucket: name.to_owned(),
            });
        }
        let info = BucketInfo {
            name: name.to_owned(),
            versioning,
            time_created: truncate_to_millis(SystemTime::now()),
        };
        let state = BucketState::new(info.clone());
        let dir = BucketDir::create(&self.root, &state)?;
        let bucket = Bucket {
            dir,
            state: Mutex::new(state),
        };
        buckets.insert(name.to_owned(), Arc::new(bucket));
        Ok(info)
    }

    /// Returns a bucket's settings.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`] when the bucket does not exist.
    pub(crate) fn bucket(&self, name: &str) -> Result<BucketInfo, BucketError> {
        Ok(self.find(name)?.lock()?.info.clone())
    }

    /// Returns the settings of every bucket, ordered by name.
    pub(crate) fn list_buckets(&self) -> Vec<BucketInfo> {
        let buckets: Vec<Arc<Bucket>> = self.read_buckets().values().cloned().collect();
        buckets
            .iter()
            .filter_map(|bucket| bucket.lock().ok().map(|state| state.info.clone()))
            .collect()
    }

    /// Turns a bucket's versioning on or off. Noncurrent versions stay when it is turned
    /// off, as in Cloud Storage.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], or [`BucketError::Io`] when the index cannot be
    /// written.
    pub(crate) fn set_versioning(
        &self,
        name: &str,
        versioning: bool,
    ) -> Result<BucketInfo, BucketError> {
        let bucket = self.find(name)?;
        let mut state = bucket.lock()?;
        let previous = state.info.versioning;
        state.info.versioning = versioning;
        if let Err(err) = bucket.dir.save_index(&state) {
            state.info.versioning = previous;
            return Err(err);
        }
        Ok(state.info.clone())
    }

    /// Deletes an empty bucket with its notification configs.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], [`BucketError::BucketNotEmpty`] while any live or
    /// noncurrent version remains, or [`BucketError::Io`] when the folder cannot be moved.
    pub(crate) fn delete_bucket(&self, name: &str) -> Result<(), BucketError> {
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets
            .get(name)
            .cloned()
            .ok_or_else(|| BucketError::BucketNotFound {
                bucket: name.to_owned(),
            })?;
        let mut state = bucket.lock()?;

        let versions = state.versions().count();
        if versions > 0 {
            return Err(BucketError::BucketNotEmpty {
                bucket: name.to_owned(),
                versions,
            });
        }
        // Renaming first makes the removal atomic: a crash during remove_dir_all leaves a
        // folder that the next open removes, never a half-removed bucket.
        let removed = self.root.join(format!(
            "{DELETED_PREFIX}{name}-{}-{}",
            std::process::id(),
            self.next_temporary_id()
        ));
        fs::rename(bucket.dir.path(), &removed)
            .map_err(BucketError::io("renaming", bucket.dir.path()))?;
        sync_dir(&self.root)?;
        state.deleted = true;
        buckets.remove(name);
        drop(state);
        drop(buckets);
        if let Err(err) = fs::remove_dir_all(&removed) {
            warn!(path = %removed.display(), error = %err, "removing a deleted bucket failed");
        }
        Ok(())
    }

    /// Adds a notification config to a bucket, or replaces the config with the same id.
    ///
    /// A config with an empty id gets the next free integer id, as Cloud Storage assigns
    /// them. Returns the config as stored.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], and [`BucketError::InvalidNotification`] for an
    /// empty topic, an id that is not a decimal integer, or a bucket at Cloud Storage's
    /// limits of 100 configs, or of 10 configs that include one event type.
    pub(crate) fn insert_notification_config(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
    ) -> Result<NotificationConfig, BucketError> {
        let bucket = self.find(bucket_name)?;
        let mut state = bucket.lock()?;
        insert_config(&bucket, &mut state, bucket_name, config)
    }

    /// Adds a notification config unless the bucket has one that `same` matches with it,
    /// as one change. Returns the config as stored, or `None` when it was not added.
    pub(crate) fn insert_notification_config_if_new(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
        same: impl Fn(&NotificationConfig, &NotificationConfig) -> bool,
    ) -> Result<Option<NotificationConfig>, BucketError> {
        let bucket = self.find(bucket_name)?;
        let mut state = bucket.lock()?;
        if state.notification_configs.iter().any(|c| same(c, &config)) {
            return Ok(None);
        }
        insert_config(&bucket, &mut state, bucket_name, config).map(Some)
    }

    /// Returns a bucket's notification configs in the order they were added.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`] when the bucket does not exist.
    pub(crate) fn notification_configs(
        &self,
        bucket: &str,
    ) -> Result<Vec<NotificationConfig>, BucketError> {
        Ok(self.find(bucket)?.lock()?.notification_configs.clone())
    }

    /// Deletes one notification config of a bucket.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], [`BucketError::NotificationNotFound`], or
    /// [`BucketError::Io`] when the index cannot be written.
    pub(crate) fn delete_notification_config(
        &self,
        bucket_name: &str,
        id: &str,
    ) -> Result<(), BucketError> {
        let bucket = self.find(bucket_name)?;
        let mut state = bucket.lock()?;
        let position = state
            .notification_configs
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| BucketError::NotificationNotFound {
                bucket: bucket_name.to_owned(),
                id: id.to_owned(),
            })?;
        let removed = state.notification_configs.remove(position);
        if let Err(err) = bucket.dir.save_index(&state) {
            state.notification_configs.insert(position, removed);
            return Err(err);
        }
        Ok(())
    }

    pub(super) fn find(&self, name: &str) -> Result<Arc<Bucket>, BucketError> {
        self.read_buckets()
            .get(name)
            .cloned()
            .ok_or_else(|| BucketError::BucketNotFound {
                bucket: name.to_owned(),
            })
    }

    fn read_buckets(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Bucket>>> {
        self.buckets.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands out a generation: the time in microseconds since the Unix epoch, as in Cloud
    /// Storage, raised where needed to stay above every generation handed out before.
    pub(super) fn next_generation(&self, now: SystemTime) -> i64 {
        let micros = now.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        });
        let mut last = lock(&self.last_generation);
        *last = micros.max(last.saturating_add(1));
        *last
    }

    pub(super) fn next_temporary_id(&self) -> u64 {
        self.next_temporary_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Adds `config` to a locked bucket and writes the index, or restores the configs when the
/// write fails.
fn insert_config(
    bucket: &Bucket,
    state: &mut BucketState,
    bucket_name: &str,
    config: NotificationConfig,
) -> Result<NotificationConfig, BucketError> {
    let previous_configs = state.notification_configs.clone();
    let previous_next_id = state.next_notification_id;

    let config =
        state
            .insert_config(config)
            .map_err(|reason| BucketError::InvalidNotification {
                bucket: bucket_name.to_owned(),
                reason,
            })?;
    if let Err(err) = bucket.dir.save_index(state) {
        state.notification_configs = previous_configs;
        state.next_notification_id = previous_next_id;
        return Err(err);
    }
    Ok(config)
}
