//! Removal of object bytes that no bucket index lists.
//!
//! A write stores the bytes of a version before the index lists it, so a node that stops
//! between the two leaves bytes that nothing reads. The sweep removes them once they are
//! older than the age it is given, because younger ones may belong to a write that another
//! node is still making.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use tracing::info;

use super::{
    blob_name, failure, BucketError, JetStreamBuckets, ObjectBytes, INDEX_BUCKET, INDEX_PREFIX,
    OBJECT_STORE,
};
use crate::kv_key;

impl JetStreamBuckets {
    /// Removes the bytes that no bucket index lists and that were stored more than
    /// `older_than` ago, and returns how many objects or files it removed.
    ///
    /// # Errors
    ///
    /// [`BucketError::Io`] when the indexes or the stored bytes cannot be listed, or bytes
    /// cannot be removed.
    pub(crate) async fn sweep_unlisted_bytes(
        &self,
        older_than: Duration,
    ) -> Result<usize, BucketError> {
        // The indexes are read before the bytes are listed, so bytes that a write stores in
        // between are young and stay.
        let listed = self.listed_blobs().await?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(UNIX_EPOCH);
        match &self.objects {
            ObjectBytes::ObjectStore(store) => {
                let mut objects = store
                    .list()
                    .await
                    .map_err(|err| failure("listing", OBJECT_STORE, err))?;
                let mut unlisted = Vec::new();
                while let Some(info) = objects.next().await {
                    let info = info.map_err(|err| failure("listing", OBJECT_STORE, err))?;
                    let stored_at = info.modified.map(SystemTime::from);
                    if !info.deleted
                        && !listed.contains(&info.name)
                        && stored_at.is_some_and(|time| time <= cutoff)
                    {
                        unlisted.push(info.name);
                    }
                }
                for name in &unlisted {
                    store
                        .delete(name.as_str())
                        .await
                        .map_err(|err| failure("removing", name, err))?;
                }
                Ok(unlisted.len())
            }
            // The file I/O blocks. Callers of `block_on` run on a blocking thread, and at
            // start-up the buckets open before the node serves any request.
            ObjectBytes::Folder(folder) => sweep_folder(folder, &listed, cutoff),
        }
    }

    /// Returns the names of the bytes of every version that a bucket index lists, in the
    /// form of [`blob_name`].
    async fn listed_blobs(&self) -> Result<HashSet<String>, BucketError> {
        let mut keys = self
            .index
            .keys()
            .await
            .map_err(|err| failure("listing", INDEX_BUCKET, err))?;
        let mut buckets = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|err| failure("listing", INDEX_BUCKET, err))?;
            if let Some(name) = key.strip_prefix(INDEX_PREFIX).and_then(kv_key::decode) {
                buckets.push(name);
            }
        }
        let mut listed = HashSet::new();
        for bucket in buckets {
            if let Some(loaded) = self.load(&bucket).await? {
                listed.extend(
                    loaded
                        .state
                        .versions()
                        .map(|version| blob_name(&bucket, version.generation)),
                );
            }
        }
        Ok(listed)
    }
}

/// Removes the files under `folder` older than `cutoff` whose path relative to it is not in
/// `listed`. Temporary files of writes that never finished are among them. Only the names
/// that sluice writes are removed, `<hex of the bucket>/<generation>` with an optional
/// `.tmp`, so that a file someone else put in the folder is left alone.
fn sweep_folder(
    folder: &Path,
    listed: &HashSet<String>,
    cutoff: SystemTime,
) -> Result<usize, BucketError> {
    let mut removed = 0;
    let buckets = std::fs::read_dir(folder).map_err(BucketError::io("listing", folder))?;
    for bucket in buckets {
        let bucket = bucket.map_err(BucketError::io("listing", folder))?;
        let bucket_path = bucket.path();
        if !bucket_path.is_dir() {
            continue;
        }
        let bucket_name = bucket.file_name().to_string_lossy().into_owned();
        if kv_key::decode(&bucket_name).is_none() {
            continue;
        }
        let files =
            std::fs::read_dir(&bucket_path).map_err(BucketError::io("listing", &bucket_path))?;
        for file in files {
            let file = file.map_err(BucketError::io("listing", &bucket_path))?;
            let path = file.path();
            let name = format!("{bucket_name}/{}", file.file_name().to_string_lossy());
            let modified = file
                .metadata()
                .and_then(|metadata| metadata.modified())
                .map_err(BucketError::io("reading", &path))?;
            let file_name = file.file_name().to_string_lossy().into_owned();
            let generation = file_name.strip_suffix(".tmp").unwrap_or(&file_name);
            let written_by_sluice = generation.parse::<i64>().is_ok();
            if !written_by_sluice || listed.contains(&name) || modified > cutoff {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    info!(path = %path.display(), "removed object bytes that no bucket index lists");
                }
                // Another node's sweep removed it first.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(BucketError::io("removing", &path)(err)),
            }
        }
    }
    Ok(removed)
}
