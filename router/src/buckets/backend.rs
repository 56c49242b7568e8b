//! [`Buckets`]: the bucket store with its two backends, a root folder on this machine
//! (`store.rs` and `objects.rs`) or JetStream shared by several nodes (`jetstream.rs`).
//! Both apply every change with the same code (`state.rs`), so they have the same
//! semantics.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use async_nats::jetstream;
use tracing::{info, warn};

use super::error::BucketError;
use super::jetstream::JetStreamBuckets;
use super::notify::NotificationConfig;
use super::object::ObjectResource;
use super::state::{BucketInfo, Listing, ObjectChange};
use super::store::FolderBuckets;

/// Age from which object bytes that no bucket index lists are removed when the buckets
/// open on JetStream. A write stores its bytes before the index lists them, and a write
/// takes far less than this, so younger bytes may belong to a write in progress.
const UNLISTED_BYTES_AGE: Duration = Duration::from_secs(3600);

/// An object store with Cloud Storage semantics: buckets of objects with generations,
/// metagenerations, versioning and notification configs.
///
/// [`open`](Self::open) keeps them under one root folder; [`open_jetstream`](Self::open_jetstream)
/// keeps them on JetStream, shared by every node that opens the same servers.
///
/// All methods block, on file I/O or on JetStream, so call them from `spawn_blocking` in
/// async code, never from a runtime's worker thread.
#[derive(Debug)]
pub struct Buckets {
    root: PathBuf,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Folder(FolderBuckets),
    // Boxed: the key-value and object store handles are large.
    JetStream(Box<JetStreamBuckets>),
}

/// Calls the same method on whichever backend the store has.
macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match &$self.backend {
            Backend::Folder($backend) => $call,
            Backend::JetStream($backend) => $call,
        }
    };
}

impl Buckets {
    /// Opens the buckets under the folder `root`, creating the folder if it does not exist.
    ///
    /// Folders of buckets whose creation or removal a crash interrupted are removed, and so
    /// are object files that no index references. Only one `Buckets` may use a root folder
    /// at a time, because each one removes the files it does not know about when it opens.
    /// Nothing checks this.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] when the root cannot be read, and [`BucketError::Corrupt`] when a
    /// bucket's index does not decode.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BucketError> {
        let root = root.into();
        let folder = FolderBuckets::open(root.clone())?;
        Ok(Self {
            root,
            backend: Backend::Folder(folder),
        })
    }

    /// Opens the buckets on JetStream: the indexes in the key-value bucket
    /// `sluice_buckets` and the bytes in the object store `sluice_objects`, both created
    /// with `replicas` copies when missing. Every node that opens them shares the buckets.
    /// With `objects_folder`, the bytes are files in that folder instead, which every node
    /// must mount at the same path.
    ///
    /// `root` is a folder of this node, which [`root`](Self::root) returns; this store
    /// keeps nothing there. The methods run their JetStream requests on the runtime that
    /// calls this function.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] naming the key-value bucket, object store or folder that cannot
    /// be opened or created.
    pub async fn open_jetstream(
        root: impl Into<PathBuf>,
        context: &jetstream::Context,
        replicas: usize,
        objects_folder: Option<PathBuf>,
    ) -> Result<Self, BucketError> {
        let shared = JetStreamBuckets::open(context, replicas, objects_folder).await?;
        // A failed sweep leaves only unused bytes, so the buckets open anyway.
        match shared.sweep_unlisted_bytes(UNLISTED_BYTES_AGE).await {
            Ok(0) => {}
            Ok(removed) => info!(removed, "removed object bytes that no bucket index lists"),
            Err(err) => {
                warn!(error = %err, "removing object bytes that no bucket index lists failed")
            }
        }
        Ok(Self {
            root: root.into(),
            backend: Backend::JetStream(Box::new(shared)),
        })
    }

    /// Removes the object bytes on JetStream, or in the folder of object bytes, that no
    /// bucket index lists and that were stored more than `older_than` ago. Returns how many
    /// it removed. [`open_jetstream`](Self::open_jetstream) does this for bytes older than
    /// an hour. The folder store removes its unreferenced files when it opens, and this
    /// returns 0 for it.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] when the indexes or bytes cannot be listed, or bytes cannot be
    /// removed.
    pub fn sweep_unlisted_bytes(&self, older_than: Duration) -> Result<usize, BucketError> {
        match &self.backend {
            Backend::Folder(_) => Ok(0),
            Backend::JetStream(shared) => shared.block_on(shared.sweep_unlisted_bytes(older_than)),
        }
    }

    /// Returns whether the buckets are on JetStream, shared with other nodes.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::JetStream(_))
    }

    /// Returns the root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates an empty bucket.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidBucketName`] for a name that breaks Cloud Storage's rules, and
    /// [`BucketError::BucketExists`] when the bucket exists.
    pub fn create_bucket(&self, name: &str, versioning: bool) -> Result<BucketInfo, BucketError> {
        dispatch!(self, b => b.create_bucket(name, versioning))
    }

    /// Returns a bucket's settings.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`] when the bucket does not exist.
    pub fn bucket(&self, name: &str) -> Result<BucketInfo, BucketError> {
        dispatch!(self, b => b.bucket(name))
    }

    /// Returns the settings of every bucket, ordered by name.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] when the JetStream backend cannot list them.
    pub fn list_buckets(&self) -> Result<Vec<BucketInfo>, BucketError> {
        match &self.backend {
            Backend::Folder(folder) => Ok(folder.list_buckets()),
            Backend::JetStream(shared) => shared.list_buckets(),
        }
    }

    /// Turns a bucket's versioning on or off. Noncurrent versions stay when it is turned
    /// off, as in Cloud Storage.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], or [`BucketError::Io`] when the index cannot be
    /// written.
    pub fn set_versioning(&self, name: &str, versioning: bool) -> Result<BucketInfo, BucketError> {
        dispatch!(self, b => b.set_versioning(name, versioning))
    }

    /// Deletes an empty bucket with its notification configs.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], [`BucketError::BucketNotEmpty`] while any live or
    /// noncurrent version remains, or [`BucketError::Io`] when the bucket cannot be removed.
    pub fn delete_bucket(&self, name: &str) -> Result<(), BucketError> {
        dispatch!(self, b => b.delete_bucket(name))
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
    pub fn insert_notification_config(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
    ) -> Result<NotificationConfig, BucketError> {
        dispatch!(self, b => b.insert_notification_config(bucket_name, config))
    }

    /// Adds a notification config unless the bucket has one that `same` matches with it,
    /// checked and written as one change. So nodes that share the buckets and start with
    /// the same configuration add a configured config once. Returns the config as stored,
    /// or `None` when it was not added.
    ///
    /// # Errors
    ///
    /// As [`insert_notification_config`](Self::insert_notification_config).
    pub fn insert_notification_config_if_new(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
        same: impl Fn(&NotificationConfig, &NotificationConfig) -> bool,
    ) -> Result<Option<NotificationConfig>, BucketError> {
        dispatch!(self, b => b.insert_notification_config_if_new(bucket_name, config, &same))
    }

    /// Returns a bucket's notification configs, in the order they were added.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`] when the bucket does not exist.
    pub fn notification_configs(
        &self,
        bucket: &str,
    ) -> Result<Vec<NotificationConfig>, BucketError> {
        dispatch!(self, b => b.notification_configs(bucket))
    }

    /// Deletes one notification config of a bucket.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`], [`BucketError::NotificationNotFound`], or
    /// [`BucketError::Io`] when the index cannot be written.
    pub fn delete_notification_config(
        &self,
        bucket_name: &str,
        id: &str,
    ) -> Result<(), BucketError> {
        dispatch!(self, b => b.delete_notification_config(bucket_name, id))
    }

    /// Writes `bytes` as a new generation of the object and makes it the live version.
    ///
    /// The generation starts with metageneration 1. Without a content type it is
    /// `application/octet-stream`, as in Cloud Storage. When a live version existed, the
    /// change also deletes it, or archives it in a versioned bucket, and the events report it.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidName`], [`BucketError::BucketNotFound`], or
    /// [`BucketError::Io`] when the bytes or the index cannot be written.
    pub fn put(
        &self,
        bucket: &str,
        name: &str,
        bytes: &[u8],
        content_type: Option<&str>,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectChange, BucketError> {
        dispatch!(self, b => b.put(bucket, name, bytes, content_type, metadata))
    }

    /// Returns the live version of an object, or the version of `generation`, live or
    /// noncurrent.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidName`], [`BucketError::BucketNotFound`], or
    /// [`BucketError::NotFound`] when there is no such version.
    pub fn get(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectResource, BucketError> {
        dispatch!(self, b => b.get(bucket, name, generation))
    }

    /// Reads the bytes of the live version of an object, or of the version of `generation`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`BucketError::Corrupt`] when the stored bytes are
    /// missing or do not match the version's size and CRC32C.
    pub fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<Vec<u8>, BucketError> {
        dispatch!(self, b => b.read(bucket, name, generation))
    }

    /// Lists a bucket's objects as Cloud Storage's `objects.list` does, without pagination.
    ///
    /// Only names that start with `prefix` match. With a delimiter, names whose rest after
    /// the prefix contains it are grouped into [`Listing::prefixes`] (each up to and
    /// including the delimiter) instead of being listed. With `versions`, noncurrent
    /// versions are listed too.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketNotFound`] when the bucket does not exist.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        versions: bool,
    ) -> Result<Listing, BucketError> {
        dispatch!(self, b => b.list(bucket, prefix, delimiter, versions))
    }

    /// Deletes the live version of an object (`generation` `None`) or one generation.
    ///
    /// In a versioned bucket, deleting the live version makes it noncurrent and emits
    /// OBJECT_ARCHIVE. Every other delete removes the version and its bytes for good and
    /// emits OBJECT_DELETE. The returned object is the deleted or archived version.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidName`], [`BucketError::BucketNotFound`],
    /// [`BucketError::NotFound`] when there is no such version, or [`BucketError::Io`] when
    /// the index cannot be written.
    pub fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectChange, BucketError> {
        dispatch!(self, b => b.delete(bucket, name, generation))
    }

    /// Changes the custom metadata and, if given, the content type of the live version, and
    /// raises its metageneration by one.
    ///
    /// A key with the value `None` in `changes` is removed. Keys not in `changes` keep their
    /// values. The event is OBJECT_METADATA_UPDATE.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidName`], [`BucketError::BucketNotFound`],
    /// [`BucketError::NotFound`] when the object has no live version, or
    /// [`BucketError::Io`] when the index cannot be written.
    pub fn patch_metadata(
        &self,
        bucket: &str,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
        content_type: Option<&str>,
    ) -> Result<ObjectChange, BucketError> {
        dispatch!(self, b => b.patch_metadata(bucket, name, changes, content_type))
    }
}
