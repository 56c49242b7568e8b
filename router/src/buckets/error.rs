//! Errors of the bucket store.

use std::io;
use std::path::{Path, PathBuf};

use super::names::{BucketNameRule, ObjectNameRule};

/// Errors of the bucket store.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// An object name that breaks Cloud Storage's naming rules.
    #[error("invalid object name {}: {rule}", shorten(.name))]
    InvalidName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        rule: ObjectNameRule,
    },
    /// A bucket name that breaks Cloud Storage's naming rules.
    #[error("invalid bucket name {}: {rule}", shorten(.name))]
    InvalidBucketName {
        /// The rejected name.
        name: String,
        /// The rule it breaks.
        rule: BucketNameRule,
    },
    /// A bucket that does not exist.
    #[error("bucket {bucket:?} not found; create it first")]
    BucketNotFound {
        /// The bucket's name.
        bucket: String,
    },
    /// A bucket name that is taken.
    #[error("bucket {bucket:?} already exists; use it or choose another name")]
    BucketExists {
        /// The bucket's name.
        bucket: String,
    },
    /// A bucket that still stores object versions, so it cannot be deleted.
    #[error(
        "bucket {bucket:?} is not empty: it stores {versions} object versions; delete them \
         first, noncurrent versions included"
    )]
    BucketNotEmpty {
        /// The bucket's name.
        bucket: String,
        /// Live and noncurrent versions in the bucket.
        versions: usize,
    },
    /// An object, or one generation of it, that does not exist.
    #[error(
        "{} not found in bucket {bucket:?}{}",
        describe_object(.name, *.generation),
        if .generation.is_some() { "; list the object's versions to see which exist" } else { "" }
    )]
    NotFound {
        /// The bucket's name.
        bucket: String,
        /// The object's name.
        name: String,
        /// The requested generation, or `None` for the live one.
        generation: Option<i64>,
    },
    /// A notification config that does not exist.
    #[error("notification config {id:?} not found in bucket {bucket:?}")]
    NotificationNotFound {
        /// The bucket's name.
        bucket: String,
        /// The config's id.
        id: String,
    },
    /// A notification config that cannot be added.
    #[error("invalid notification config for bucket {bucket:?}: {reason}")]
    InvalidNotification {
        /// The bucket's name.
        bucket: String,
        /// The problem and its fix.
        reason: String,
    },
    /// A change that would make a bucket's index larger than the NATS servers accept as one
    /// key-value value.
    #[error(
        "bucket {bucket:?} is full: its index would be {size} bytes, over the limit of {limit} \
         bytes that the servers' max_payload sets for one key-value value; delete object \
         versions, noncurrent ones included, or raise max_payload in the nats-server \
         configuration"
    )]
    IndexFull {
        /// The bucket's name.
        bucket: String,
        /// The encoded index after the change, in bytes.
        size: usize,
        /// The largest index the servers accept, in bytes.
        limit: usize,
    },
    /// A file operation failed.
    #[error("{operation} {} failed: {source}", .path.display())]
    Io {
        /// The operation, such as "writing".
        operation: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error of the operating system.
        source: io::Error,
    },
    /// The storage behind the buckets cannot be reached now.
    #[error("the bucket storage is unavailable: {reason}")]
    Unavailable {
        /// Why, and what to do.
        reason: String,
    },
    /// Stored data that does not decode or does not match its checksums.
    #[error(
        "{} is corrupt: {reason}; restore the bucket folder from a backup or move it away",
        .path.display()
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// The damage found.
        reason: String,
    },
}

impl BucketError {
    /// Builds a closure for `map_err` that wraps an I/O error with its operation and path.
    pub(crate) fn io(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            operation,
            path,
            source,
        }
    }
}

/// Quotes a name for a message, cut short when it is long.
fn shorten(name: &str) -> String {
    const SHOWN_CHARS: usize = 80;
    if name.chars().count() <= SHOWN_CHARS {
        return format!("{name:?}");
    }
    let start: String = name.chars().take(SHOWN_CHARS).collect();
    format!("{start:?}... ({} bytes)", name.len())
}

fn describe_object(name: &str, generation: Option<i64>) -> String {
    match generation {
        Some(generation) => format!("generation {generation} of object {}", shorten(name)),
        None => format!("live object {}", shorten(name)),
    }
}
