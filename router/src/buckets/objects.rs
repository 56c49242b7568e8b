//! The object operations of [`FolderBuckets`]: write, read, list, delete and patch.
//!
//! Each change runs in the same order: validate, write and fsync the bytes (for a write),
//! apply the change in memory, write the index, and only then remove the bytes of versions
//! the change dropped. A failed index write undoes the change in memory.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::time::SystemTime;

use super::disk::BucketDir;
use super::error::BucketError;
use super::names::validate_object_name;
use super::object::{
    crc32c_base64, truncate_to_millis, Checksums, ObjectResource, DEFAULT_CONTENT_TYPE,
    STORAGE_CLASS,
};
use super::state::{Applied, BucketState, Listing, ObjectChange};
use super::store::FolderBuckets;

impl FolderBuckets {
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
    pub(crate) fn put(
        &self,
        bucket: &str,
        name: &str,
        bytes: &[u8],
        content_type: Option<&str>,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        let bucket = self.find(bucket)?;

        let checksums = Checksums::of(bytes);
        // Hashing and the fsync of the bytes happen before the bucket is locked, so that
        // writes of large objects do not hold up the bucket's other operations.
        let upload = bucket.dir.write_upload(self.next_temporary_id(), bytes)?;
        let mut state = bucket.lock()?;
        let now = SystemTime::now();
        // The generation is handed out under the bucket's lock, so the live version is
        // always the newest generation of its name.
        let generation = self.next_generation(now);
        upload.commit(&bucket.dir, generation)?;

        let created = truncate_to_millis(now);
        let object = ObjectResource {
            name: name.to_owned(),
            bucket: state.info.name.clone(),
            generation,
            metageneration: 1,
            content_type: content_type.unwrap_or(DEFAULT_CONTENT_TYPE).to_owned(),
            storage_class: STORAGE_CLASS.to_owned(),
            size: checksums.size,
            md5_hash: checksums.md5_hash,
            crc32c: checksums.crc32c,
            time_created: created,
            updated: created,
            time_deleted: None,
            time_storage_class_updated: created,
            metadata,
        };
        // A failed index write leaves the new bytes on disk: the index on disk may already
        // reference them if only the final fsync failed, and otherwise the next open
        // removes them.
        let applied = state.finalize(object, now);
        commit(&bucket.dir, &mut state, applied)
    }

    /// Returns the live version of an object, or the version of `generation`, live or
    /// noncurrent.
    ///
    /// # Errors
    ///
    /// [`BucketError::InvalidName`], [`BucketError::BucketNotFound`], or
    /// [`BucketError::NotFound`] when there is no such version.
    pub(crate) fn get(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectResource, BucketError> {
        check_name(name)?;
        let bucket = self.find(bucket)?;
        let state = bucket.lock()?;
        find_version(&state, name, generation).cloned()
    }

    /// Reads the bytes of the live version of an object, or of the version of `generation`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`BucketError::Corrupt`] when the stored bytes are
    /// missing or do not match the version's size and CRC32C.
    pub(crate) fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<Vec<u8>, BucketError> {
        check_name(name)?;
        let bucket = self.find(bucket)?;
        // The file is opened under the lock and read after it is released: an open file
        // stays readable even when a concurrent delete removes it.
        let (object, mut file) = {
            let state = bucket.lock()?;
            let object = find_version(&state, name, generation)?.clone();
            let file = bucket.dir.open_blob(object.generation)?;
            (object, file)
        };
        let path = bucket.dir.blob_path(object.generation);
        let mut bytes = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(BucketError::io("reading", &path))?;
        if bytes.len() as u64 != object.size || crc32c_base64(&bytes) != object.crc32c {
            return Err(BucketError::Corrupt {
                path,
                reason: format!(
                    "the bytes of generation {} of object {:?} do not match its size and CRC32C",
                    object.generation, object.name
                ),
            });
        }
        Ok(bytes)
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
    pub(crate) fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        versions: bool,
    ) -> Result<Listing, BucketError> {
        // TODO: add maxResults and pageToken. A list now returns every match in one response.
        let bucket = self.find(bucket)?;
        let state = bucket.lock()?;
        Ok(state.list(prefix, delimiter, versions))
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
    pub(crate) fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        let bucket = self.find(bucket)?;
        let mut state = bucket.lock()?;
        let applied = state
            .delete(name, generation, SystemTime::now())
            .ok_or_else(|| not_found(&state, name, generation))?;
        commit(&bucket.dir, &mut state, applied)
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
    pub(crate) fn patch_metadata(
        &self,
        bucket: &str,
        name: &str,
        changes: &BTreeMap<String, Option<String>>,
        content_type: Option<&str>,
    ) -> Result<ObjectChange, BucketError> {
        check_name(name)?;
        let bucket = self.find(bucket)?;
        let mut state = bucket.lock()?;
        let applied = state
            .patch(name, changes, content_type, SystemTime::now())
            .ok_or_else(|| not_found(&state, name, None))?;
        commit(&bucket.dir, &mut state, applied)
    }
}

/// Writes the index with `applied` in it and removes the bytes it dropped, or undoes it in
/// memory when the index cannot be written.
fn commit(
    dir: &BucketDir,
    state: &mut BucketState,
    applied: Applied,
) -> Result<ObjectChange, BucketError> {
    if let Err(err) = dir.save_index(state) {
        state.undo(applied.undo);
        return Err(err);
    }
    dir.remove_blobs(&applied.discarded);
    Ok(applied.change)
}

/// Checks an object name against Cloud Storage's rules.
pub(super) fn check_name(name: &str) -> Result<(), BucketError> {
    validate_object_name(name).map_err(|rule| BucketError::InvalidName {
        name: name.to_owned(),
        rule,
    })
}

/// Returns the version of `name` at `generation`, or the live one without a generation.
pub(super) fn find_version<'a>(
    state: &'a BucketState,
    name: &str,
    generation: Option<i64>,
) -> Result<&'a ObjectResource, BucketError> {
    state
        .get(name, generation)
        .ok_or_else(|| not_found(state, name, generation))
}

/// Returns the error for a missing object or generation.
pub(super) fn not_found(state: &BucketState, name: &str, generation: Option<i64>) -> BucketError {
    BucketError::NotFound {
        bucket: state.info.name.clone(),
        name: name.to_owned(),
        generation,
    }
}
