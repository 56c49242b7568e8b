//! An object store with Cloud Storage semantics, and the Pub/Sub notifications its changes
//! cause.
//!
//! [`Buckets`] keeps buckets of objects under one root folder, normally
//! `<data dir>/buckets/`, or on NATS JetStream, where several sluice nodes share them
//! ([`Buckets::open_jetstream`], described in `jetstream.rs`). Both backends apply every
//! change with the same code, so the semantics below hold for both. The layout and
//! durability sections describe the folder backend.
//!
//! Every change to an object returns an [`ObjectChange`] with the
//! [`ObjectEvent`]s it caused. [`notification_message`] turns one event into the message
//! one bucket [`NotificationConfig`] publishes, and [`notification_messages`] does that for
//! all of a bucket's configs, so the server can hand the messages to
//! [`Broker::publish`](crate::deliver::Broker::publish).
//!
//! # Semantics
//!
//! - A write finalizes a new generation: an i64 unique in the bucket that increases with
//!   every write. It is the time in microseconds since the Unix epoch, as in Cloud Storage,
//!   raised where needed to stay above every generation handed out before, also across
//!   restarts. The metageneration starts at 1 and rises by 1 with every metadata patch.
//! - Object names follow Cloud Storage's rules ([`validate_object_name`]), bucket names too
//!   ([`validate_bucket_name`]).
//! - Overwriting a live object emits OBJECT_DELETE for the old generation, or OBJECT_ARCHIVE
//!   when the bucket is versioned, with `overwrittenByGeneration`, then OBJECT_FINALIZE for
//!   the new one with `overwroteGeneration`.
//! - Deleting the live version emits OBJECT_ARCHIVE in a versioned bucket, where the version
//!   stays as noncurrent, and OBJECT_DELETE otherwise. Deleting a generation by number
//!   removes it for good and emits OBJECT_DELETE, even for the live one.
//! - A metadata patch emits OBJECT_METADATA_UPDATE with the new metageneration.
//! - Noncurrent versions are readable by generation and listed with `versions`.
//!
//! # Layout on disk
//!
//! ```text
//! <root>/
//!   <bucket>/              one folder per bucket, named by its validated name
//!     index.json           the bucket's settings, notification configs and every version's
//!                          metadata (object resources in their JSON API form)
//!     blobs/
//!       <generation>       the bytes of one version, named by its decimal generation
//!       .upload-<pid>-<n>  bytes being written, not yet a version
//!   .creating-<bucket>/    a bucket being created
//!   .deleted-<bucket>-...  a bucket being removed
//! ```
//!
//! No path is ever derived from an object name: the bytes of a version live under its
//! generation, and names appear only inside `index.json`. A bucket name is used as a folder
//! name only after it passes Cloud Storage's rules, which allow neither `/` nor a name of
//! only dots.
//!
//! # Durability
//!
//! A write first stores the bytes in an upload file and fsyncs it, renames it to the
//! generation's file and fsyncs the folder, and only then writes the index (to
//! `index.json.tmp`, fsynced and renamed over `index.json`, then the folder fsynced). A
//! version becomes visible only with the index that lists it, so a crash between any two
//! steps leaves no visible version without bytes. The bytes of deleted versions are removed
//! after the index no longer lists them. Files that a crash left behind and that no index
//! lists are removed when [`Buckets::open`] runs.
//!
//! NOTE: every change rewrites the whole index of its bucket, so the cost of a change grows
//! with the number of versions in the bucket. That suits test and development buckets, not
//! buckets with millions of objects.

mod backend;
mod disk;
mod error;
mod jetstream;
mod names;
mod notify;
mod object;
mod objects;
mod state;
mod store;

pub use backend::Buckets;
pub use error::BucketError;
pub use jetstream::{INDEX_BUCKET, OBJECT_STORE};
pub use names::{
    validate_bucket_name, validate_object_name, BucketNameRule, ObjectNameRule,
    MAX_OBJECT_NAME_BYTES,
};
pub use notify::{
    notification_message, notification_messages, EventType, NotificationConfig, ObjectEvent,
    PayloadFormat, UnknownName, MAX_CONFIGS_PER_BUCKET, MAX_CONFIGS_PER_EVENT_TYPE,
};
pub use object::{Checksums, ObjectResource, DEFAULT_CONTENT_TYPE, STORAGE_CLASS};
pub use state::{BucketInfo, Listing, ObjectChange};
