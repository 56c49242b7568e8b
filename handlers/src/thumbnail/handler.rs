//! The thumbnail function: for each object finalized in a bucket, it renders a thumbnail and
//! writes it to a destination bucket as `name_prefix + name`.
//!
//! Every thumbnail carries the custom metadata `sourceBucket`, `sourceObject` and
//! `sourceGeneration`, which makes the function idempotent and keeps it from looping:
//!
//! - An object with all three keys is a thumbnail and is skipped, so the function's own
//!   output never triggers it again, even when the destination is the source bucket.
//! - When the destination already contains a thumbnail of the same object at this generation or
//!   a later one, the event is a redelivery or a stale event, and nothing is written.
//!
//! Only `google.storage.object.finalize` events make thumbnails. Deleting or overwriting a
//! source object leaves its thumbnail alone.

use async_trait::async_trait;
use sluice_router::buckets::BucketError;
use sluice_router::storage::{Storage, StorageError};
use tracing::{debug, info};

use super::{render, Thumbnail, ThumbnailOptions};
use crate::contract::{run_blocking, EventContext, Handler, HandlerError};
use crate::event::OBJECT_FINALIZE;
use crate::source::{covers, is_handler_output, SourceObject};

/// Settings of a [`ThumbnailHandler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailConfig {
    /// The bucket that receives the thumbnails. It may be the source bucket when
    /// `name_prefix` is not empty.
    pub destination_bucket: String,
    /// Prefix of thumbnail names: the thumbnail of `photos/cat.jpg` is
    /// `{name_prefix}photos/cat.jpg`. Empty by default.
    pub name_prefix: String,
    /// Size, quality and pixel limit of the thumbnails.
    pub options: ThumbnailOptions,
}

impl ThumbnailConfig {
    /// Returns a config that writes thumbnails under the source names into
    /// `destination_bucket`, with the default [`ThumbnailOptions`].
    pub fn new(destination_bucket: impl Into<String>) -> Self {
        Self {
            destination_bucket: destination_bucket.into(),
            name_prefix: String::new(),
            options: ThumbnailOptions::default(),
        }
    }
}

/// The thumbnail background function, for `google.storage.object.finalize` events.
///
/// An event ends without a thumbnail, acknowledged and logged at info level, when:
///
/// - the object is a thumbnail, or its name starts with `name_prefix` in the destination
///   bucket;
/// - the destination already contains a thumbnail of this generation or a later one;
/// - the generation no longer exists;
/// - the renderer skips the object (not an image, empty, unsupported format).
///
/// It fails permanently when the destination is the source bucket and `name_prefix` is
/// empty, when the image is too large or corrupt, and for an invalid name or a missing
/// destination bucket. Other storage failures are retryable.
#[derive(Debug)]
pub struct ThumbnailHandler {
    storage: Storage,
    config: ThumbnailConfig,
    /// Serializes the final check and write of thumbnails. Without it, a stale event could
    /// pass the check while a newer generation's thumbnail is being written and then replace
    /// that thumbnail with an older one.
    write_lock: tokio::sync::Mutex<()>,
}

impl ThumbnailHandler {
    /// Creates the handler over the buckets of `storage`.
    pub fn new(storage: Storage, config: ThumbnailConfig) -> Self {
        Self {
            storage,
            config,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns the handler's settings.
    pub fn config(&self) -> &ThumbnailConfig {
        &self.config
    }

    async fn make_thumbnail(&self, source: &SourceObject) -> Result<Outcome, HandlerError> {
        if is_handler_output(&source.metadata) {
            return Ok(Outcome::Skipped("the object is a thumbnail".to_owned()));
        }
        let destination = &self.config.destination_bucket;
        let prefix = &self.config.name_prefix;
        if source.bucket == *destination {
            if prefix.is_empty() {
                return Err(HandlerError::Permanent(format!(
                    "the thumbnail of {source} would overwrite its own source; set name_prefix \
                     or choose another destination bucket"
                )));
            }
            if source.name.starts_with(prefix.as_str()) {
                return Ok(Outcome::Skipped(format!(
                    "the name starts with the thumbnail prefix {prefix:?}"
                )));
            }
        }
        let thumbnail_name = format!("{prefix}{}", source.name);
        if self.has_current_thumbnail(source, &thumbnail_name).await? {
            return Ok(Outcome::Skipped(
                "the destination already has a thumbnail of this generation or a later one"
                    .to_owned(),
            ));
        }

        let bytes = match self.read_source(source).await? {
            SourceRead::Bytes(bytes) => bytes,
            SourceRead::Skip(reason) => return Ok(Outcome::Skipped(reason)),
        };
        let options = self.config.options.clone();
        let thumbnail = match run_blocking(move || render(&bytes, &options)).await? {
            Ok(thumbnail) => thumbnail,
            Err(err) if err.is_skip() => return Ok(Outcome::Skipped(err.to_string())),
            Err(err) => {
                return Err(HandlerError::Permanent(format!(
                    "cannot render a thumbnail of {source}: {err}"
                )))
            }
        };

        let _guard = self.write_lock.lock().await;
        // A newer generation's event may have written its thumbnail while this one rendered.
        if self.has_current_thumbnail(source, &thumbnail_name).await? {
            return Ok(Outcome::Skipped(
                "a thumbnail of a later generation was written meanwhile".to_owned(),
            ));
        }
        self.write(source, &thumbnail_name, thumbnail).await
    }

    /// Returns whether the destination contains a thumbnail of the source object at its
    /// generation or a later one.
    async fn has_current_thumbnail(
        &self,
        source: &SourceObject,
        thumbnail_name: &str,
    ) -> Result<bool, HandlerError> {
        let destination = &self.config.destination_bucket;
        match self.storage.get(destination, thumbnail_name, None).await {
            Ok(existing) => Ok(covers(&existing.metadata, source)),
            Err(StorageError::Bucket(BucketError::NotFound { .. })) => Ok(false),
            Err(err) => Err(storage_failure(
                format!("looking up the thumbnail gs://{destination}/{thumbnail_name}"),
                err,
            )),
        }
    }

    /// Reads the bytes of the event's generation.
    async fn read_source(&self, source: &SourceObject) -> Result<SourceRead, HandlerError> {
        // NOTE: this reads the whole object into memory before the renderer looks at its
        // signature, so a large object that is not an image costs its size in memory.
        let read = self
            .storage
            .read(&source.bucket, &source.name, Some(source.generation))
            .await;
        match read {
            Ok((object, bytes)) => {
                // A notification without payload carries no metadata, so the stored
                // object's metadata is checked here as well.
                if is_handler_output(&object.metadata) {
                    return Ok(SourceRead::Skip("the object is a thumbnail".to_owned()));
                }
                Ok(SourceRead::Bytes(bytes))
            }
            Err(StorageError::Bucket(
                BucketError::NotFound { .. } | BucketError::BucketNotFound { .. },
            )) => Ok(SourceRead::Skip(
                "the generation no longer exists".to_owned(),
            )),
            Err(err) => Err(storage_failure(format!("reading {source}"), err)),
        }
    }

    async fn write(
        &self,
        source: &SourceObject,
        thumbnail_name: &str,
        thumbnail: Thumbnail,
    ) -> Result<Outcome, HandlerError> {
        let destination = &self.config.destination_bucket;
        let metadata = source.link_metadata();
        let written = self
            .storage
            .put(
                destination,
                thumbnail_name,
                thumbnail.bytes,
                Some(thumbnail.content_type.to_owned()),
                metadata,
            )
            .await;
        let generation = match written {
            Ok(object) => object.generation,
            // The thumbnail is stored. Only the destination's own notifications were lost,
            // and Storage has logged that.
            Err(StorageError::Notify { change, .. }) => change.object.generation,
            Err(err) => {
                return Err(storage_failure(
                    format!("writing the thumbnail gs://{destination}/{thumbnail_name}"),
                    err,
                ))
            }
        };
        Ok(Outcome::Written {
            thumbnail: format!("gs://{destination}/{thumbnail_name}#{generation}"),
            width: thumbnail.width,
            height: thumbnail.height,
        })
    }
}

#[async_trait]
impl Handler for ThumbnailHandler {
    fn name(&self) -> &str {
        "thumbnail"
    }

    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError> {
        if context.event_type != OBJECT_FINALIZE {
            debug!(event_type = %context.event_type, "event ignored: only finalize events make thumbnails");
            return Ok(());
        }
        let source = SourceObject::parse(data).map_err(|err| {
            HandlerError::Permanent(format!(
                "the data of event {} is not a Cloud Storage object resource: {err}",
                context.event_id
            ))
        })?;
        match self.make_thumbnail(&source).await? {
            Outcome::Written {
                thumbnail,
                width,
                height,
            } => {
                // Debug-formatted, so that control characters in object names stay escaped.
                debug!(source = ?source.to_string(), thumbnail = ?thumbnail, width, height, "thumbnail written");
            }
            Outcome::Skipped(reason) => {
                info!(source = ?source.to_string(), %reason, "no thumbnail needed");
            }
        }
        Ok(())
    }
}

/// The result of one finalize event.
enum Outcome {
    /// A thumbnail was written.
    Written {
        /// The thumbnail's `gs://bucket/name#generation`.
        thumbnail: String,
        width: u32,
        height: u32,
    },
    /// No thumbnail is needed, for the reason given.
    Skipped(String),
}

enum SourceRead {
    Bytes(Vec<u8>),
    Skip(String),
}

/// Classifies a storage failure. Invalid names, missing buckets and damaged stored data are
/// permanent. Everything else, such as an I/O error or a runtime that is shutting down, is
/// retryable.
fn storage_failure(action: String, err: StorageError) -> HandlerError {
    let message = format!("{action} failed: {err}");
    match err {
        StorageError::Bucket(
            BucketError::InvalidName { .. }
            | BucketError::InvalidBucketName { .. }
            | BucketError::BucketNotFound { .. }
            | BucketError::Corrupt { .. },
        ) => HandlerError::Permanent(message),
        _ => HandlerError::Retryable(message),
    }
}
