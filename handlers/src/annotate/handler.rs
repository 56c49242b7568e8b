//! The annotate function: for each image finalized in a bucket, it writes the JSON
//! annotation to a destination bucket as `name_prefix + name + ".json"`.
//!
//! The annotation object carries the custom metadata `sourceBucket`, `sourceObject` and
//! `sourceGeneration`, as thumbnails do. That makes the function idempotent and keeps it from
//! looping:
//!
//! - An object with all three keys is the output of a built-in handler and is skipped.
//! - When the destination already contains an annotation of the same object at this
//!   generation or a later one, the event is a redelivery or a stale event, and nothing is
//!   written.
//!
//! Only `google.storage.object.finalize` events are annotated. Deleting or overwriting a
//! source object leaves its annotation alone.

use std::fmt;

use async_trait::async_trait;
use serde::Serialize;
use sluice_router::buckets::BucketError;
use sluice_router::storage::{Storage, StorageError};
use tracing::{debug, info};

use super::{annotate, AnnotateError, AnnotateOptions, ImageAnnotation};
use crate::contract::{run_blocking, EventContext, Handler, HandlerError};
use crate::event::OBJECT_FINALIZE;
use crate::source::{covers, is_handler_output, SourceObject};

/// Suffix of annotation names after the source name.
pub const ANNOTATION_SUFFIX: &str = ".json";

/// Content type of annotation objects.
const ANNOTATION_CONTENT_TYPE: &str = "application/json";

/// Settings of an [`AnnotateHandler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotateConfig {
    /// The bucket that receives the annotations. It may be the source bucket when
    /// `name_prefix` is not empty.
    pub destination_bucket: String,
    /// Prefix of annotation names: the annotation of `photos/cat.jpg` is
    /// `{name_prefix}photos/cat.jpg.json`. Empty by default.
    pub name_prefix: String,
    /// Pixel limit and number of colours.
    pub options: AnnotateOptions,
}

impl AnnotateConfig {
    /// Returns a config that writes annotations under the source names into
    /// `destination_bucket`, with the default [`AnnotateOptions`].
    pub fn new(destination_bucket: impl Into<String>) -> Self {
        Self {
            destination_bucket: destination_bucket.into(),
            name_prefix: String::new(),
            options: AnnotateOptions::default(),
        }
    }
}

/// The JSON document of an annotation object: the source, then the annotation's fields.
#[derive(Debug, Serialize)]
struct AnnotationDocument<'a> {
    source: SourceRef<'a>,
    #[serde(flatten)]
    annotation: &'a ImageAnnotation,
}

/// The source object in an annotation. The generation is a string, as the JSON API writes
/// int64 values.
#[derive(Debug, Serialize)]
struct SourceRef<'a> {
    bucket: &'a str,
    name: &'a str,
    generation: String,
}

/// The annotate background function, for `google.storage.object.finalize` events.
///
/// An event ends without an annotation, acknowledged and logged at info level, when:
///
/// - the object is the output of a built-in handler, or its name starts with `name_prefix`
///   in the destination bucket;
/// - the destination already contains an annotation of this generation or a later one;
/// - the generation no longer exists;
/// - the object is not an image, is empty, or is in a format the renderer does not decode.
///
/// It fails permanently when the destination is the source bucket and `name_prefix` is
/// empty, when the image is too large or damaged, and for an invalid name or a missing
/// destination bucket. Other storage failures are retryable.
#[derive(Debug)]
pub struct AnnotateHandler {
    storage: Storage,
    config: AnnotateConfig,
    /// Serializes the final check and write of annotations. Without it, a stale event could
    /// pass the check while a newer generation's annotation is being written and then replace
    /// that annotation with an older one.
    write_lock: tokio::sync::Mutex<()>,
}

impl AnnotateHandler {
    /// Creates the handler over the buckets of `storage`.
    pub fn new(storage: Storage, config: AnnotateConfig) -> Self {
        Self {
            storage,
            config,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns the handler's settings.
    pub fn config(&self) -> &AnnotateConfig {
        &self.config
    }

    async fn annotate_object(&self, source: &SourceObject) -> Result<Outcome, HandlerError> {
        if is_handler_output(&source.metadata) {
            return Ok(Outcome::Skipped(
                "the object is the output of a built-in handler".to_owned(),
            ));
        }
        let destination = &self.config.destination_bucket;
        let prefix = &self.config.name_prefix;
        if source.bucket == *destination {
            if prefix.is_empty() {
                return Err(HandlerError::Permanent(format!(
                    "the annotation of {source} would be written into its own bucket without \
                     a name prefix; set name_prefix or choose another destination bucket"
                )));
            }
            if source.name.starts_with(prefix.as_str()) {
                return Ok(Outcome::Skipped(format!(
                    "the name starts with the annotation prefix {prefix:?}"
                )));
            }
        }
        let annotation_name = format!("{prefix}{}{ANNOTATION_SUFFIX}", source.name);
        if self
            .has_current_annotation(source, &annotation_name)
            .await?
        {
            return Ok(Outcome::Skipped(
                "the destination already has an annotation of this generation or a later one"
                    .to_owned(),
            ));
        }

        let bytes = match self.read_source(source).await? {
            SourceRead::Bytes(bytes) => bytes,
            SourceRead::Skip(reason) => return Ok(Outcome::Skipped(reason)),
        };
        let options = self.config.options.clone();
        let annotation = match run_blocking(move || annotate(&bytes, &options)).await? {
            Ok(annotation) => annotation,
            Err(AnnotateError::Skipped { reason }) => return Ok(Outcome::Skipped(reason)),
            Err(AnnotateError::Invalid { reason }) => {
                return Err(HandlerError::Permanent(format!(
                    "cannot annotate {source}: {reason}"
                )))
            }
        };

        let _guard = self.write_lock.lock().await;
        // A newer generation's event may have written its annotation meanwhile.
        if self
            .has_current_annotation(source, &annotation_name)
            .await?
        {
            return Ok(Outcome::Skipped(
                "an annotation of a later generation was written meanwhile".to_owned(),
            ));
        }
        self.write(source, &annotation_name, &annotation).await
    }

    /// Returns whether the destination contains an annotation of the source object at its
    /// generation or a later one.
    async fn has_current_annotation(
        &self,
        source: &SourceObject,
        annotation_name: &str,
    ) -> Result<bool, HandlerError> {
        let destination = &self.config.destination_bucket;
        match self.storage.get(destination, annotation_name, None).await {
            Ok(existing) => Ok(covers(&existing.metadata, source)),
            Err(StorageError::Bucket(BucketError::NotFound { .. })) => Ok(false),
            Err(err) => Err(storage_failure(
                format!("looking up the annotation gs://{destination}/{annotation_name}"),
                err,
            )),
        }
    }

    /// Reads the bytes of the event's generation.
    async fn read_source(&self, source: &SourceObject) -> Result<SourceRead, HandlerError> {
        let read = self
            .storage
            .read(&source.bucket, &source.name, Some(source.generation))
            .await;
        match read {
            Ok((object, bytes)) => {
                // A notification without payload carries no metadata, so the stored
                // object's metadata is checked here as well.
                if is_handler_output(&object.metadata) {
                    return Ok(SourceRead::Skip(
                        "the object is the output of a built-in handler".to_owned(),
                    ));
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
        annotation_name: &str,
        annotation: &ImageAnnotation,
    ) -> Result<Outcome, HandlerError> {
        let document = AnnotationDocument {
            source: SourceRef {
                bucket: &source.bucket,
                name: &source.name,
                generation: source.generation.to_string(),
            },
            annotation,
        };
        let bytes = serde_json::to_vec_pretty(&document).map_err(|err| {
            HandlerError::Permanent(format!("the annotation of {source} is not JSON: {err}"))
        })?;
        let destination = &self.config.destination_bucket;
        let written = self
            .storage
            .put(
                destination,
                annotation_name,
                bytes,
                Some(ANNOTATION_CONTENT_TYPE.to_owned()),
                source.link_metadata(),
            )
            .await;
        let generation = match written {
            Ok(object) => object.generation,
            // The annotation is stored. Only the destination's own notifications were lost,
            // and Storage has logged that.
            Err(StorageError::Notify { change, .. }) => change.object.generation,
            Err(err) => {
                return Err(storage_failure(
                    format!("writing the annotation gs://{destination}/{annotation_name}"),
                    err,
                ))
            }
        };
        Ok(Outcome::Written(AnnotationRef {
            bucket: destination.clone(),
            name: annotation_name.to_owned(),
            generation,
        }))
    }
}

#[async_trait]
impl Handler for AnnotateHandler {
    fn name(&self) -> &str {
        "annotate"
    }

    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError> {
        if context.event_type != OBJECT_FINALIZE {
            debug!(event_type = %context.event_type, "event ignored: only finalize events are annotated");
            return Ok(());
        }
        let source = SourceObject::parse(data).map_err(|err| {
            HandlerError::Permanent(format!(
                "the data of event {} is not a Cloud Storage object resource: {err}",
                context.event_id
            ))
        })?;
        match self.annotate_object(&source).await? {
            Outcome::Written(annotation) => {
                // Debug-formatted, so that control characters in object names stay escaped.
                debug!(source = ?source.to_string(), annotation = ?annotation.to_string(), "annotation written");
            }
            Outcome::Skipped(reason) => {
                info!(source = ?source.to_string(), %reason, "no annotation needed");
            }
        }
        Ok(())
    }
}

/// The result of one finalize event.
enum Outcome {
    /// An annotation was written.
    Written(AnnotationRef),
    /// No annotation is needed, for the reason given.
    Skipped(String),
}

/// A written annotation object.
struct AnnotationRef {
    bucket: String,
    name: String,
    generation: i64,
}

impl fmt::Display for AnnotationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}#{}", self.bucket, self.name, self.generation)
    }
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
