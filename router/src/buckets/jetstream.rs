//! The JetStream backend of [`Buckets`](super::Buckets): bucket indexes in a key-value
//! bucket and object bytes in an object store, so that several sluice nodes share them.
//!
//! Each bucket's index, in the form of the folder backend's `index.json`, is the value of
//! the key `bucket.<hex of the name>` in the key-value bucket [`INDEX_BUCKET`]. Every
//! change reads the index with its revision, applies the change with the same
//! [`BucketState`] code as the folder backend, and writes it back only if the revision is
//! unchanged. When another node changed the index in between, the change starts again from
//! the new index, so no update is lost.
//!
//! Generations come from the key `generation.<hex of the name>`, raised by compare-and-set
//! to the time in microseconds or to one above its last value, whichever is larger. So a
//! generation is handed out once per bucket across all nodes. The bytes of a version are
//! the object `<hex of the bucket>/<generation>` in the object store [`OBJECT_STORE`], or
//! the file of that path in a folder that every node mounts. They are written before the
//! index lists them.
//!
//! Bytes that a node stored before it stopped, and that no index lists because the index
//! write never happened, stay until a node opens the buckets more than an hour later
//! (`sweep.rs`).

use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, object_store};
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::runtime::Handle;
use tracing::warn;

use super::disk::{decode_index, encode_index, write_atomic};
use super::error::BucketError;
use super::names::validate_bucket_name;
use super::notify::NotificationConfig;
use super::object::{
    crc32c_base64, truncate_to_millis, Checksums, ObjectResource, DEFAULT_CONTENT_TYPE,
    STORAGE_CLASS,
};
use super::objects::{check_name, find_version, not_found};
use super::state::{Applied, BucketInfo, BucketState, Listing, ObjectChange};
use crate::kv_key;
use crate::store::jetstream::{create_kv_stream, stream_not_created};

mod sweep;

/// The key-value bucket of the bucket indexes and generation counters.
pub const INDEX_BUCKET: &str = "sluice_buckets";
/// The object store of the object bytes.
pub const OBJECT_STORE: &str = "sluice_objects";
/// Bytes of a key-value write's headers, such as the expected revision, kept free beside
/// the index under the servers' max_payload. async-nats 0.45 sends one header with an
/// update, `Nats-Expected-Last-Subject-Sequence`, which takes under 100 bytes.
const INDEX_HEADER_ALLOWANCE: usize = 256;
/// The chunk size of the object store, async-nats' default, unless max_payload is smaller.
const DEFAULT_CHUNK_BYTES: usize = 128 * 1024;
const INDEX_PREFIX: &str = "bucket.";
const GENERATION_PREFIX: &str = "generation.";

/// Bucket indexes on a key-value bucket and bytes in an object store.
pub(crate) struct JetStreamBuckets {
    index: kv::Store,
    /// The connection, for the servers' max_payload.
    client: async_nats::Client,
    objects: ObjectBytes,
    runtime: Handle,
}

/// The storage of the bytes of object versions.
enum ObjectBytes {
    /// The object store [`OBJECT_STORE`].
    ObjectStore(Box<object_store::ObjectStore>),
    /// A folder that every node mounts, with one file per version at
    /// `<folder>/<hex of the bucket>/<generation>`.
    Folder(PathBuf),
}

impl std::fmt::Debug for JetStreamBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamBuckets")
            .field("index", &INDEX_BUCKET)
            .field(
                "objects",
                &match &self.objects {
                    ObjectBytes::ObjectStore(_) => PathBuf::from(OBJECT_STORE),
                    ObjectBytes::Folder(folder) => folder.clone(),
                },
            )
            .finish_non_exhaustive()
    }
}

/// One index as read, with the revision that a change must find unchanged.
struct Loaded {
    revision: u64,
    state: BucketState,
}

impl JetStreamBuckets {
    /// Opens the key-value bucket and the object store, creating them when missing. With
    /// `objects_folder`, the bytes go to files in that folder instead of the object store.
    pub(crate) async fn open(
        context: &jetstream::Context,
        replicas: usize,
        objects_folder: Option<PathBuf>,
    ) -> Result<Self, BucketError> {
        let index = match context.get_key_value(INDEX_BUCKET).await {
            Ok(index) => index,
            Err(_) => {
                create_kv_stream(context, INDEX_BUCKET, "sluice bucket indexes", replicas)
                    .await
                    .map_err(|err| failure("creating", INDEX_BUCKET, err))?;
                context
                    .get_key_value(INDEX_BUCKET)
                    .await
                    .map_err(|err| failure("opening", INDEX_BUCKET, err))?
            }
        };
        let objects = match objects_folder {
            Some(folder) => {
                std::fs::create_dir_all(&folder).map_err(BucketError::io("creating", &folder))?;
                ObjectBytes::Folder(folder)
            }
            None => ObjectBytes::ObjectStore(Box::new(open_object_store(context, replicas).await?)),
        };
        Ok(Self {
            index,
            client: context.client(),
            objects,
            runtime: Handle::current(),
        })
    }

    /// Runs one async operation to its end. Callers are blocking threads, never the
    /// runtime's own workers, as for the folder backend.
    pub(super) fn block_on<T>(&self, operation: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(operation)
    }

    /// Runs one bucket operation, or fails at once while the connection to the servers is
    /// lost. Otherwise every request would wait for the client's request timeout and fail
    /// with a bare "timed out".
    fn run<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, BucketError>>,
    ) -> Result<T, BucketError> {
        if !matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        ) {
            return Err(BucketError::Unavailable {
                reason: "the connection to the JetStream servers is lost, and the client keeps \
                         reconnecting; check that nats-server runs, and retry"
                    .to_owned(),
            });
        }
        self.block_on(operation)
    }

    async fn load(&self, name: &str) -> Result<Option<Loaded>, BucketError> {
        let key = index_key(name);
        let entry = self
            .index
            .entry(key.as_str())
            .await
            .map_err(|err| failure("reading", &key, err))?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        if !matches!(entry.operation, kv::Operation::Put) {
            return Ok(None);
        }
        let state = decode_index(&entry.value).map_err(|reason| BucketError::Corrupt {
            path: nats_path(&key),
            reason,
        })?;
        Ok(Some(Loaded {
            revision: entry.revision,
            state,
        }))
    }

    /// Checks that an encoded index fits in one key-value write. A larger write would make
    /// the server close the connection that every request of this node shares, and the
    /// write would end in a timeout.
    fn check_index_size(&self, name: &str, encoded: &[u8]) -> Result<(), BucketError> {
        let limit = self
            .client
            .server_info()
            .max_payload
            .saturating_sub(INDEX_HEADER_ALLOWANCE);
        if encoded.len() > limit {
            return Err(BucketError::IndexFull {
                bucket: name.to_owned(),
                size: encoded.len(),
                limit,
            });
        }
        Ok(())
    }

    async fn load_existing(&self, name: &str) -> Result<Loaded, BucketError> {
        self.load(name)
            .await?
            .ok_or_else(|| BucketError::BucketNotFound {
                bucket: name.to_owned(),
            })
    }

    /// Applies `change` to the bucket's index and writes it back if no other change came
    /// first, or else applies it again to the newer index. `change` returns its result and
    /// whether it changed the index, and an unchanged index is not written.
    async fn modify<T>(
        &self,
        name: &str,
        mut change: impl FnMut(&mut BucketState) -> Result<(T, bool), BucketError>,
    ) -> Result<T, BucketError> {
        let key = index_key(name);
        loop {
            let Loaded {
                revision,
                mut state,
            } = self.load_existing(name).await?;
            let (result, changed) = change(&mut state)?;
            if !changed {
                return Ok(result);
            }
            let encoded = encode_index(&state);
            self.check_index_size(name, &encoded)?;
            match self
                .index
                .update(key.as_str(), encoded.into(), revision)
                .await
            {
                Ok(_) => return Ok(result),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                Err(err) => return Err(failure("writing", &key, err)),
            }
        }
    }

    pub(crate) fn create_bucket(
        &self,
        name: &str,
        versioning: bool,
    ) -> Result<BucketInfo, BucketError> {
        validate_bucket_name(name).map_err(|rule| BucketError::InvalidBucketName {
            name: name.to_owned(),
            rule,
        })?;
        let info = BucketInfo {
            name: name.to_owned(),
            versioning,
            time_created: truncate_to_millis(SystemTime::now()),
        };
        let state = BucketState::new(info.clone());
        let key = index_key(name);
        self.run(async {
            match self
                .index
                .create(key.as_str(), encode_index(&state).into())
                .await
            {
                Ok(_) => Ok(info),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                    Err(BucketError::BucketExists {
                        bucket: name.to_owned(),
                    })
                }
                Err(err) => Err(failure("creating", &key, err)),
            }
        })
    }

    pub(crate) fn bucket(&self, name: &str) -> Result<BucketInfo, BucketError> {
        self.run(async { Ok(self.load_existing(name).await?.state.info) })
    }

    pub(crate) fn list_buckets(&self) -> Result<Vec<BucketInfo>, BucketError> {
        self.run(async {
            let mut keys = self
                .index
                .keys()
                .await
                .map_err(|err| failure("listing", INDEX_BUCKET, err))?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|err| failure("listing", INDEX_BUCKET, err))?;
                if let Some(name) = key.strip_prefix(INDEX_PREFIX).and_then(kv_key::decode) {
                    names.push(name);
                }
            }
            names.sort();
            let mut infos = Vec::with_capacity(names.len());
            for name in names {
                if let Some(loaded) = self.load(&name).await? {
                    infos.push(loaded.state.info);
                }
            }
            Ok(infos)
        })
    }

    pub(crate) fn set_versioning(
        &self,
        name: &str,
        versioning: bool,
    ) -> Result<BucketInfo, BucketError> {
        self.run(self.modify(name, |state| {
            let changed = state.info.versioning != versioning;
            state.info.versioning = versioning;
            Ok((state.info.clone(), changed))
        }))
    }

    pub(crate) fn delete_bucket(&self, name: &str) -> Result<(), BucketError> {
        let key = index_key(name);
        self.run(async {
            loop {
                let loaded = self.load_existing(name).await?;
                let versions = loaded.state.versions().count();
                if versions > 0 {
                    return Err(BucketError::BucketNotEmpty {
                        bucket: name.to_owned(),
                        versions,
                    });
                }
                // The generation counter stays, so a bucket created again under the name
                // continues above the generations that notifications already reported.
                match self
                    .index
                    .delete_expect_revision(key.as_str(), Some(loaded.revision))
                    .await
                {
                    Ok(()) => return Ok(()),
                    Err(err) => {
                        // When a change came first, the delete is rejected, so look at the
                        // bucket again. Any other failure leaves the revision as it was.
                        let now = self.load(name).await?.map(|loaded| loaded.revision);
                        if now == Some(loaded.revision) {
                            return Err(failure("deleting", &key, err));
                        }
                    }
                }
            }
        })
    }

    pub(crate) fn insert_notification_config(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
    ) -> Result<NotificationConfig, BucketError> {
        self.run(self.modify(bucket_name, |state| {
            let stored = state.insert_config(config.clone()).map_err(|reason| {
                BucketError::InvalidNotification {
                    bucket: bucket_name.to_owned(),
                    reason,
                }
            })?;
            Ok((stored, true))
        }))
    }

    pub(crate) fn insert_notification_config_if_new(
        &self,
        bucket_name: &str,
        config: NotificationConfig,
        same: impl Fn(&NotificationConfig, &NotificationConfig) -> bool,
    ) -> Result<Option<NotificationConfig>, BucketError> {
        self.run(self.modify(bucket_name, |state| {
            if state.notification_configs.iter().any(|c| same(c, &config)) {
                return Ok((None, false));
            }
            let stored = state.insert_config(config.clone()).map_err(|reason| {
                BucketError::InvalidNotification {
                    bucket: bucket_name.to_owned(),
                    reason,
                }
            })?;
            Ok((Some(stored), true))
        }))
    }

    pub(crate) fn notification_configs(
        &self,
        bucket: &str,
    ) -> Result<Vec<NotificationConfig>, BucketError> {
        self.run(async { Ok(self.load_existing(bucket).await?.state.notification_configs) })
    }

    pub(crate) fn delete_notification_config(
        &self,
        bucket_name: &str,
        id: &str,
    ) -> Result<(), BucketError> {
        self.run(self.modify(bucket_name, |state| {
            let position = state
                .notification_configs
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| BucketError::NotificationNotFound {
                    bucket: bucket_name.to_owned(),
                    id: id.to_owned(),
                })?;
            state.notification_configs.remove(position);
            Ok(((), true))
        }))
    }

    pub(crate) fn put(
        &self,
        bucket: &str,
        name: &str,
        bytes: &[u8],
        content_type: Option<&str>,
        metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        let checksums = Checksums::of(bytes);
        self.run(async {
            // Fails early, before any bytes are stored, when the bucket does not exist.
            self.load_existing(bucket).await?;
            loop {
                let generation = self.next_generation(bucket).await?;
                self.write_blob(bucket, generation, bytes).await?;
                let outcome = self
                    .modify(bucket, |state| {
                        // The live version is always the newest generation of its name. A
                        // newer one that another node wrote since this generation was handed
                        // out means starting again with a new generation.
                        let newest = state
                            .versions()
                            .filter(|o| o.name == name)
                            .map(|o| o.generation)
                            .max();
                        if newest.is_some_and(|newest| newest > generation) {
                            return Ok((None, false));
                        }
                        let now = SystemTime::now();
                        let created = truncate_to_millis(now);
                        let object = ObjectResource {
                            name: name.to_owned(),
                            bucket: state.info.name.clone(),
                            generation,
                            metageneration: 1,
                            content_type: content_type.unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
                            storage_class: STORAGE_CLASS.to_owned(),
                            size: checksums.size,
                            md5_hash: checksums.md5_hash.clone(),
                            crc32c: checksums.crc32c.clone(),
                            time_created: created,
                            updated: created,
                            time_deleted: None,
                            time_storage_class_updated: created,
                            metadata: metadata.clone(),
                        };
                        let Applied {
                            change, discarded, ..
                        } = state.finalize(object, now);
                        Ok((Some((change, discarded)), true))
                    })
                    .await;
                match outcome {
                    Ok(Some((change, discarded))) => {
                        self.remove_blobs(bucket, &discarded).await;
                        return Ok(change);
                    }
                    Ok(None) => self.remove_blobs(bucket, &[generation]).await,
                    Err(err) => {
                        self.remove_blobs(bucket, &[generation]).await;
                        return Err(err);
                    }
                }
            }
        })
    }

    pub(crate) fn get(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectResource, BucketError> {
        check_name(name)?;
        self.run(async {
            let loaded = self.load_existing(bucket).await?;
            find_version(&loaded.state, name, generation).cloned()
        })
    }

    pub(crate) fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<Vec<u8>, BucketError> {
        check_name(name)?;
        self.run(async {
            let loaded = self.load_existing(bucket).await?;
            let object = find_version(&loaded.state, name, generation)?.clone();
            let blob = blob_name(bucket, object.generation);
            let bytes = match self.read_blob(bucket, object.generation).await? {
                Some(bytes) => bytes,
                None => {
                    // A delete on another node may have removed the version after the
                    // index was read: report it as gone when the index agrees.
                    let loaded = self.load_existing(bucket).await?;
                    find_version(&loaded.state, name, Some(object.generation))?;
                    return Err(BucketError::Corrupt {
                        path: nats_path(&blob),
                        reason: format!(
                            "the bytes of generation {} of object {:?} are missing",
                            object.generation, object.name
                        ),
                    });
                }
            };
            if bytes.len() as u64 != object.size || crc32c_base64(&bytes) != object.crc32c {
                return Err(BucketError::Corrupt {
                    path: nats_path(&blob),
                    reason: format!(
                        "the bytes of generation {} of object {:?} do not match its size and \
                         CRC32C",
                        object.generation, object.name
                    ),
                });
            }
            Ok(bytes)
        })
    }

    pub(crate) fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        versions: bool,
    ) -> Result<Listing, BucketError> {
        self.run(async {
            let loaded = self.load_existing(bucket).await?;
            Ok(loaded.state.list(prefix, delimiter, versions))
        })
    }

    pub(crate) fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        self.run(async {
            let (change, discarded) = self
                .modify(bucket, |state| {
                    let applied = state
                        .delete(name, generation, SystemTime::now())
                        .ok_or_else(|| not_found(state, name, generation))?;
                    Ok(((applied.change, applied.discarded), true))
                })
                .await?;
            self.remove_blobs(bucket, &discarded).await;
            Ok(change)
        })
    }

    pub(crate) fn patch_metadata(
        &self,
        bucket: &str,
        name: &str,
        changes: &std::collections::BTreeMap<String, Option<String>>,
        content_type: Option<&str>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        self.run(self.modify(bucket, |state| {
            let applied = state
                .patch(name, changes, content_type, SystemTime::now())
                .ok_or_else(|| not_found(state, name, None))?;
            Ok((applied.change, true))
        }))
    }

    /// Hands out the next generation of a bucket: the time in microseconds, or one above
    /// the last generation any node handed out, whichever is larger.
    async fn next_generation(&self, bucket: &str) -> Result<i64, BucketError> {
        let key = format!("{GENERATION_PREFIX}{}", kv_key::encode(bucket));
        loop {
            let micros = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
                });
            let entry = self
                .index
                .entry(key.as_str())
                .await
                .map_err(|err| failure("reading", &key, err))?;
            let written = match entry {
                Some(entry) if matches!(entry.operation, kv::Operation::Put) => {
                    let last: i64 = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| BucketError::Corrupt {
                            path: nats_path(&key),
                            reason: "the last generation is not a number".to_owned(),
                        })?;
                    let next = micros.max(last.saturating_add(1));
                    match self
                        .index
                        .update(key.as_str(), next.to_string().into(), entry.revision)
                        .await
                    {
                        Ok(_) => Some(next),
                        Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => None,
                        Err(err) => return Err(failure("writing", &key, err)),
                    }
                }
                _ => match self
                    .index
                    .create(key.as_str(), micros.to_string().into())
                    .await
                {
                    Ok(_) => Some(micros),
                    Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => None,
                    Err(err) => return Err(failure("writing", &key, err)),
                },
            };
            // A failed compare-and-set means another node took a generation first.
            if let Some(generation) = written {
                return Ok(generation);
            }
        }
    }

    /// Stores the bytes of a new version. A file in the objects folder is written under a
    /// temporary name, fsynced and renamed into place.
    async fn write_blob(
        &self,
        bucket: &str,
        generation: i64,
        bytes: &[u8],
    ) -> Result<(), BucketError> {
        match &self.objects {
            ObjectBytes::ObjectStore(store) => {
                let blob = blob_name(bucket, generation);
                // The object store's 128 KiB chunks would be over a smaller max_payload, and
                // the server would close the connection that every request shares.
                let chunk_size = self
                    .client
                    .server_info()
                    .max_payload
                    .saturating_sub(INDEX_HEADER_ALLOWANCE)
                    .clamp(1, DEFAULT_CHUNK_BYTES);
                let metadata = object_store::ObjectMetadata {
                    name: blob.clone(),
                    chunk_size: Some(chunk_size),
                    ..Default::default()
                };
                store
                    .put(metadata, &mut &bytes[..])
                    .await
                    .map_err(|err| failure("writing", &blob, err))?;
                Ok(())
            }
            // This runs on the blocking thread that called `block_on`, so blocking file I/O
            // stalls no runtime worker.
            ObjectBytes::Folder(folder) => {
                let bucket_folder = folder.join(kv_key::encode(bucket));
                std::fs::create_dir_all(&bucket_folder)
                    .map_err(BucketError::io("creating", &bucket_folder))?;
                write_atomic(&bucket_folder.join(generation.to_string()), bytes)
            }
        }
    }

    /// Reads the bytes of one version, or `None` when there are none.
    async fn read_blob(
        &self,
        bucket: &str,
        generation: i64,
    ) -> Result<Option<Vec<u8>>, BucketError> {
        match &self.objects {
            ObjectBytes::ObjectStore(store) => {
                let blob = blob_name(bucket, generation);
                let mut object = match store.get(blob.as_str()).await {
                    Ok(object) => object,
                    Err(err) if err.kind() == object_store::GetErrorKind::NotFound => {
                        return Ok(None)
                    }
                    Err(err) => return Err(failure("opening", &blob, err)),
                };
                let mut bytes = Vec::new();
                object
                    .read_to_end(&mut bytes)
                    .await
                    .map_err(|err| failure("reading", &blob, err))?;
                Ok(Some(bytes))
            }
            ObjectBytes::Folder(folder) => {
                let path = blob_path(folder, bucket, generation);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(err) => Err(BucketError::io("reading", &path)(err)),
                }
            }
        }
    }

    /// Removes the bytes of versions that no index lists any more. A failure is logged: the
    /// bytes then stay, unreferenced.
    async fn remove_blobs(&self, bucket: &str, generations: &[i64]) {
        for &generation in generations {
            match &self.objects {
                ObjectBytes::ObjectStore(store) => {
                    let blob = blob_name(bucket, generation);
                    if let Err(err) = store.delete(blob.as_str()).await {
                        warn!(object = %blob, error = %err, "removing object bytes failed");
                    }
                }
                ObjectBytes::Folder(folder) => {
                    let path = blob_path(folder, bucket, generation);
                    if let Err(err) = std::fs::remove_file(&path) {
                        warn!(path = %path.display(), error = %err, "removing object bytes failed");
                    }
                }
            }
        }
    }
}

/// Opens the object store, creating it when missing.
async fn open_object_store(
    context: &jetstream::Context,
    replicas: usize,
) -> Result<object_store::ObjectStore, BucketError> {
    if let Ok(store) = context.get_object_store(OBJECT_STORE).await {
        return Ok(store);
    }
    context
        .create_object_store(object_store::Config {
            bucket: OBJECT_STORE.to_owned(),
            description: Some("sluice object bytes".to_owned()),
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        })
        .await
        .map_err(|err| {
            let error = stream_not_created(&format!("OBJ_{OBJECT_STORE}"), replicas, err);
            failure("creating", OBJECT_STORE, error)
        })
}

fn blob_path(folder: &std::path::Path, bucket: &str, generation: i64) -> PathBuf {
    folder
        .join(kv_key::encode(bucket))
        .join(generation.to_string())
}

fn index_key(bucket: &str) -> String {
    format!("{INDEX_PREFIX}{}", kv_key::encode(bucket))
}

fn blob_name(bucket: &str, generation: i64) -> String {
    format!("{}/{generation}", kv_key::encode(bucket))
}

/// Names a key or object for an error message, as `nats:<store>/<key>`.
fn nats_path(key: &str) -> PathBuf {
    PathBuf::from(format!("nats:{key}"))
}

/// Wraps a JetStream error as the I/O error of the key or object it concerns.
fn failure(operation: &'static str, key: &str, error: impl std::fmt::Display) -> BucketError {
    BucketError::Io {
        operation,
        path: nats_path(key),
        source: io::Error::other(error.to_string()),
    }
}
