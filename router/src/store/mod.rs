//! Durable state: topics, subscriptions, messages and each subscription's pending set.
//!
//! Everything the router keeps across restarts goes through the [`Store`] trait, and nothing
//! outside this module opens a sled tree. [`SledStore`] is the embedded implementation, and
//! [`jetstream::JetStreamStore`] keeps the same data on NATS JetStream, where several
//! processes share it.
//!
//! # Semantics every implementation keeps
//!
//! - [`Store::publish`] returns only after the messages are on disk (flushed), so an
//!   acknowledged publish survives a crash. Many concurrent publishes share one flush.
//! - A message is appended to its topic with a sequence number that only grows; the decimal
//!   sequence number is the message id, unique per topic for the life of the data dir.
//! - Publishing adds the message to the pending set of every subscription the topic has at
//!   that moment and whose filter the message's attributes match, so a subscription receives
//!   messages published after it was created. A message that no filter lets through is
//!   not stored, unless the topic has no subscription at all.
//! - Acknowledging removes a message from one subscription's pending set; the message itself
//!   is deleted once no subscription has it pending. Acknowledgements and delivery-attempt
//!   counts are written without waiting for a flush: after a crash some acknowledged
//!   messages may be delivered again, which at-least-once delivery allows.

pub mod jetstream;
mod keys;
mod sled_store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::filter::FilterError;

pub use sled_store::{SledStore, StoreOptions};

/// A message as a publisher sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// The payload.
    pub data: Vec<u8>,
    /// String attributes.
    pub attributes: BTreeMap<String, String>,
    /// Messages with the same non-empty key are delivered in publish order.
    pub ordering_key: String,
}

/// A message as stored, with the fields the server sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The topic's name.
    pub topic: String,
    /// The position in the topic; its decimal form is the message id.
    pub seq: u64,
    /// When the store accepted the message.
    pub publish_time: SystemTime,
    /// The payload, attributes and ordering key as published.
    pub message: NewMessage,
}

impl StoredMessage {
    /// The message id: the sequence number in decimal, unique within the topic.
    pub fn id(&self) -> String {
        self.seq.to_string()
    }
}

/// One message of a [`Store::publish`] call, with its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// The topic's name.
    pub topic: String,
    /// The message.
    pub message: NewMessage,
}

/// The receipt for one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The position in the topic; its decimal form is the message id.
    pub seq: u64,
    /// When the store accepted the message.
    pub publish_time: SystemTime,
}

/// A topic in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Internal id, used in storage keys.
    pub id: u32,
    /// The topic's name.
    pub name: String,
    /// The settings that can change after creation.
    #[serde(default)]
    pub settings: TopicSettings,
}

/// The settings of a topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// How long the topic keeps every message, acknowledged or not, in seconds, so that
    /// subscriptions can seek back over it; `None` keeps messages only while a subscription
    /// or a snapshot needs them. 600 to 2,678,400 (31 days) as in Pub/Sub.
    pub message_retention_secs: Option<u64>,
}

/// Shortest message retention Pub/Sub accepts, for topics and subscriptions: 10 minutes.
pub const MIN_RETENTION_SECS: u64 = 600;
/// Longest message retention Pub/Sub accepts: 31 days.
pub const MAX_RETENTION_SECS: u64 = 31 * 24 * 3600;
/// A subscription's message retention when none is set: 7 days, as in Pub/Sub. It is also
/// how long a topic without subscriptions keeps its messages, and the longest a snapshot
/// lives.
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// Where messages go after too many failed deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPolicy {
    /// The topic that receives dead-lettered messages.
    pub topic: String,
    /// Deliveries before a message is dead-lettered, 5 to 100 as in Pub/Sub.
    pub max_delivery_attempts: u32,
}

/// How long a message waits before it is delivered again after a nack or an expired lease.
///
/// The delay grows exponentially from `minimum_backoff` to `maximum_backoff`; the broker
/// computes it (see `RetryPolicy::backoff`). Both keep fractions of a second, as Pub/Sub's
/// `google.protobuf.Duration` does.
///
/// In the catalog a policy is stored as whole seconds plus nanoseconds
/// (`minimum_backoff_secs` and `minimum_backoff_nanos`, and the same for the maximum). The
/// nanoseconds are left out when they are 0, so that catalogs written before they existed
/// load unchanged and whole-second policies read the same in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredRetryPolicy", into = "StoredRetryPolicy")]
pub struct RetryPolicy {
    /// Delay after the first failed delivery, 0 to 600 s as in Pub/Sub.
    pub minimum_backoff: Duration,
    /// Maximum delay, 0 to 600 s and not below `minimum_backoff`.
    pub maximum_backoff: Duration,
}

impl RetryPolicy {
    /// Returns a policy of whole seconds.
    pub const fn from_secs(minimum_backoff_secs: u64, maximum_backoff_secs: u64) -> Self {
        RetryPolicy {
            minimum_backoff: Duration::from_secs(minimum_backoff_secs),
            maximum_backoff: Duration::from_secs(maximum_backoff_secs),
        }
    }
}

impl Default for RetryPolicy {
    /// Returns Pub/Sub's defaults: 10 s to 600 s.
    fn default() -> Self {
        RetryPolicy::from_secs(10, 600)
    }
}

/// A [`RetryPolicy`] as the catalog stores it.
#[derive(Serialize, Deserialize)]
struct StoredRetryPolicy {
    minimum_backoff_secs: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    minimum_backoff_nanos: u32,
    maximum_backoff_secs: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    maximum_backoff_nanos: u32,
}

fn is_zero(nanos: &u32) -> bool {
    *nanos == 0
}

impl From<StoredRetryPolicy> for RetryPolicy {
    fn from(stored: StoredRetryPolicy) -> Self {
        let duration = |secs: u64, nanos: u32| {
            // Saturating, so that an edited record with a huge value cannot panic the load.
            Duration::from_secs(secs).saturating_add(Duration::from_nanos(u64::from(nanos)))
        };
        RetryPolicy {
            minimum_backoff: duration(stored.minimum_backoff_secs, stored.minimum_backoff_nanos),
            maximum_backoff: duration(stored.maximum_backoff_secs, stored.maximum_backoff_nanos),
        }
    }
}

impl From<RetryPolicy> for StoredRetryPolicy {
    fn from(policy: RetryPolicy) -> Self {
        StoredRetryPolicy {
            minimum_backoff_secs: policy.minimum_backoff.as_secs(),
            minimum_backoff_nanos: policy.minimum_backoff.subsec_nanos(),
            maximum_backoff_secs: policy.maximum_backoff.as_secs(),
            maximum_backoff_nanos: policy.maximum_backoff.subsec_nanos(),
        }
    }
}

/// The settings of a subscription.
///
/// The fields added after the first release carry `#[serde(default)]`, so that catalogs
/// written before them still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// The subscription's name.
    pub name: String,
    /// The topic it receives from.
    pub topic: String,
    /// Seconds a consumer has to acknowledge a delivery, 10 to 600.
    pub ack_deadline_secs: u32,
    /// Dead-letter settings, if any.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterPolicy>,
    /// Redelivery delays. Without a policy, a nacked or expired message is ready again at
    /// once, as in Pub/Sub.
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    /// Delivers messages with the same non-empty ordering key in publish order, one at a
    /// time. Fixed when the subscription is created.
    #[serde(default)]
    pub enable_message_ordering: bool,
    /// A filter in Pub/Sub's filter dialect; messages that do not match it are acknowledged
    /// when they are published. Empty passes every message. Fixed when the subscription is
    /// created.
    #[serde(default)]
    pub filter: String,
    /// How long an unacknowledged message stays in the subscription, in seconds, 600 to
    /// 2,678,400. A message older than this is removed, counted and logged. With
    /// `retain_acked_messages`, acknowledged messages are kept as long, for seeking back.
    #[serde(default = "default_retention_secs")]
    pub message_retention_secs: u64,
    /// Keeps acknowledged messages for `message_retention_secs`, so that a seek to an earlier
    /// time delivers them again.
    #[serde(default)]
    pub retain_acked_messages: bool,
    /// Where the server pushes messages; `None` for a pull subscription.
    #[serde(default)]
    pub push: Option<PushConfig>,
}

impl SubscriptionSpec {
    /// Lists the settings that can change after creation and differ between `self` and
    /// `other`, as `(setting, value in self, value in other)`.
    pub fn changed_settings(
        &self,
        other: &SubscriptionSpec,
    ) -> Vec<(&'static str, String, String)> {
        let mut changed = Vec::new();
        let mut compare = |setting, mine: String, theirs: String| {
            if mine != theirs {
                changed.push((setting, mine, theirs));
            }
        };
        compare(
            "ack_deadline_secs",
            self.ack_deadline_secs.to_string(),
            other.ack_deadline_secs.to_string(),
        );
        compare(
            "dead_letter",
            format!("{:?}", self.dead_letter),
            format!("{:?}", other.dead_letter),
        );
        compare(
            "retry_policy",
            format!("{:?}", self.retry_policy),
            format!("{:?}", other.retry_policy),
        );
        compare(
            "message_retention_secs",
            self.message_retention_secs.to_string(),
            other.message_retention_secs.to_string(),
        );
        compare(
            "retain_acked_messages",
            self.retain_acked_messages.to_string(),
            other.retain_acked_messages.to_string(),
        );
        compare(
            "push",
            format!("{:?}", self.push),
            format!("{:?}", other.push),
        );
        changed
    }
}

/// The push endpoint of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushConfig {
    /// The URL that receives each message in a POST request.
    pub endpoint: String,
    /// Endpoint attributes, such as `x-goog-version`, as Pub/Sub's `PushConfig.attributes`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// How each message is written into the request.
    #[serde(default)]
    pub format: PushFormat,
    /// Messages published longer ago than this, in seconds, are acknowledged without a
    /// request and counted as dropped. `None` pushes messages of any age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_age_secs: Option<u64>,
}

/// How a push request carries a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushFormat {
    /// Pub/Sub's JSON body: `{"message": {...}, "subscription": "..."}`.
    #[default]
    Wrapped,
    /// The message data as the body, with Pub/Sub's `x-goog-*` headers; with
    /// `write_metadata`, the attributes become headers too.
    Unwrapped {
        /// Whether the attributes are sent as headers.
        write_metadata: bool,
    },
    /// The legacy background event of Cloud Functions as a JSON body:
    /// `{"context": {"eventId", "timestamp", "eventType", "resource"}, "data": ...}`.
    Background,
    /// A CloudEvent in binary mode: the attributes in `ce-*` headers and the event data as
    /// the body, with Eventarc's event types.
    #[serde(rename = "cloudevent")]
    CloudEvent,
}

/// The topic name Pub/Sub gives the subscriptions of a deleted topic.
pub const DELETED_TOPIC: &str = "_deleted-topic_";

fn default_retention_secs() -> u64 {
    DEFAULT_RETENTION_SECS
}

impl SubscriptionSpec {
    /// Returns a spec with Pub/Sub's defaults: a 10 s ack deadline, no dead-letter or retry
    /// policy, no ordering, no filter, and unacknowledged messages kept for 7 days.
    pub fn new(name: impl Into<String>, topic: impl Into<String>) -> Self {
        SubscriptionSpec {
            name: name.into(),
            topic: topic.into(),
            ack_deadline_secs: 10,
            dead_letter: None,
            retry_policy: None,
            enable_message_ordering: false,
            filter: String::new(),
            message_retention_secs: DEFAULT_RETENTION_SECS,
            retain_acked_messages: false,
            push: None,
        }
    }
}

/// A subscription in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Internal id, used in storage keys.
    pub id: u32,
    /// The id of the topic it receives from.
    pub topic_id: u32,
    /// The settings.
    pub spec: SubscriptionSpec,
    /// The first sequence number of the topic that the subscription received: messages
    /// before it were published before the subscription existed. Records written before this
    /// field load as 0.
    #[serde(default)]
    pub first_seq: u64,
}

/// A snapshot: the acknowledgement state of a subscription at one moment, which a
/// subscription of the same topic can seek to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Internal id, used in storage keys.
    pub id: u32,
    /// The snapshot's name.
    pub name: String,
    /// The topic of the subscription it was taken from.
    pub topic: String,
    /// The subscription it was taken from.
    pub subscription: String,
    /// When it was taken, in seconds since the Unix epoch.
    pub created_secs: u64,
    /// When it is deleted, in seconds since the Unix epoch: 7 days after the publish time of
    /// the oldest message it holds unacknowledged, or after its creation when it holds none.
    pub expire_secs: u64,
    /// The first sequence number published after the snapshot was taken. A seek to the
    /// snapshot makes every message from here on unacknowledged again.
    pub next_seq: u64,
    /// How many messages were unacknowledged when it was taken.
    pub unacked: u64,
}

/// Where [`Store::seek`] moves a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeekTarget {
    /// Messages published before the time count as acknowledged, the retained messages
    /// published at or after it as unacknowledged.
    Time(SystemTime),
    /// The acknowledgement state recorded by the named snapshot.
    Snapshot(String),
}

/// What one [`Store::sweep`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Unacknowledged messages removed from subscriptions because they outlived the
    /// subscription's retention, as `(subscription, seq, publish time)`.
    pub expired: Vec<(String, u64, SystemTime)>,
    /// Messages of topics without subscriptions that outlived their retention, as
    /// `(topic, count)`.
    pub unclaimed: Vec<(String, u64)>,
    /// Messages deleted because nothing needed them any longer.
    pub deleted: u64,
    /// Names of snapshots deleted because they expired.
    pub expired_snapshots: Vec<String>,
    /// Whether the sweep stopped at its limit of messages examined per call, so that
    /// another call has more to do.
    pub more: bool,
}

/// A message waiting in a subscription, with the deliveries it has had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEntry {
    /// The message's position in the topic.
    pub seq: u64,
    /// Deliveries so far.
    pub attempts: u32,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A topic that does not exist.
    #[error("topic {0:?} not found")]
    TopicNotFound(String),
    /// A subscription that does not exist.
    #[error("subscription {0:?} not found")]
    SubscriptionNotFound(String),
    /// A subscription that exists with a different value of a setting that is fixed at
    /// creation: its topic, filter or message ordering.
    #[error(
        "subscription {name:?} already exists with {setting} {existing}, and a subscription's \
         {setting} cannot change after it is created: restore the old value, or use a new \
         subscription name for the new {setting}"
    )]
    SubscriptionConflict {
        /// The subscription's name.
        name: String,
        /// The setting that differs: `topic`, `filter` or `enable_message_ordering`.
        setting: &'static str,
        /// The stored value, quoted when it is a string.
        existing: String,
    },
    /// A subscription filter that does not parse.
    #[error("subscription {name:?} has an invalid filter: {error}")]
    InvalidFilter {
        /// The subscription's name.
        name: String,
        /// The parse error, with its position in the filter.
        error: FilterError,
    },
    /// A snapshot that does not exist.
    #[error("snapshot {0:?} not found")]
    SnapshotNotFound(String),
    /// A snapshot name that is already taken.
    #[error("snapshot {0:?} already exists; delete it first or choose another name")]
    SnapshotExists(String),
    /// A seek to a snapshot taken from a subscription of another topic.
    #[error(
        "snapshot {snapshot:?} was taken on topic {snapshot_topic:?}, but subscription \
         {subscription:?} receives from topic {topic:?}; seek only to a snapshot of the same topic"
    )]
    SnapshotTopicMismatch {
        /// The snapshot's name.
        snapshot: String,
        /// The snapshot's topic.
        snapshot_topic: String,
        /// The subscription's name.
        subscription: String,
        /// The subscription's topic.
        topic: String,
    },
    /// The data directory's file system has less free space than the store keeps in reserve,
    /// so publishes are rejected until space is freed. Acknowledgements still work.
    #[error(
        "the disk of the data directory {path} has {available_mib} MiB free, below the \
         reserve of {reserve_mib} MiB: free disk space or acknowledge messages, then retry"
    )]
    DiskFull {
        /// The data directory.
        path: PathBuf,
        /// Free space now, in MiB.
        available_mib: u64,
        /// The reserve, in MiB.
        reserve_mib: u64,
    },
    /// Publishes waiting for the store already hold the maximum number of bytes.
    #[error(
        "the store has {queued_mib} MiB of publishes waiting to be written, at its limit of \
         {limit_mib} MiB: retry with backoff"
    )]
    Overloaded {
        /// Bytes waiting, in MiB.
        queued_mib: u64,
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// The store's writer has been busy with one write for too long, so new writes are
    /// rejected instead of queued.
    #[error(
        "the store has not finished a write for {busy_secs} s, so it takes no new ones; check \
         the disk of the data directory, then retry"
    )]
    Stalled {
        /// Seconds the current write has taken so far.
        busy_secs: u64,
    },
    /// The store opened with fewer messages than it had flushed before, which means its
    /// files were damaged other than by a crash.
    #[error(
        "the store in {path} has lost data: topic {topic} had reached message {recorded} when \
         it was last flushed, but now ends at {found}. A crash does not do this; the files were \
         truncated or overwritten. Restore the directory from a backup, or, to start with \
         what is left, delete {path}/sluice-manifest.json"
    )]
    Lost {
        /// The data directory.
        path: PathBuf,
        /// The topic whose messages are missing, by name when the catalog still has it.
        topic: String,
        /// The last sequence number the manifest recorded.
        recorded: u64,
        /// The last sequence number the store has now.
        found: u64,
    },
    /// The underlying database failed.
    #[error("storage failed: {0}")]
    Database(#[from] sled::Error),
    /// Stored bytes that do not decode, which means the data dir is damaged.
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt {
        /// The key of the record, in hex.
        key: String,
        /// What failed to decode.
        reason: String,
    },
    /// The store is shutting down and accepts no more writes.
    #[error("the store is closed")]
    Closed,
    /// No JetStream server could be reached at start-up, or the connection to it is lost.
    #[error(
        "failed to connect to JetStream at {urls}: {error}. Check that nats-server runs there \
         with JetStream enabled (-js), or change [store] urls"
    )]
    Unreachable {
        /// The configured server URLs, comma-separated.
        urls: String,
        /// The client's error.
        error: String,
    },
    /// The NATS credentials file could not be read.
    #[error(
        "failed to read the NATS credentials file {path} of [store] credentials_file: {error}. \
         Set credentials_file to a readable file with a user JWT and NKey seed, or remove it \
         when the servers need no credentials"
    )]
    CredentialsFile {
        /// The configured path.
        path: PathBuf,
        /// The client's error.
        error: String,
    },
    /// A server URL that the NATS client cannot use.
    #[error(
        "invalid JetStream server URL {url:?} in [store] urls: {error}. Write it as \
         nats://HOST:PORT, or with tls://, ws:// or wss://"
    )]
    InvalidUrl {
        /// The configured URL.
        url: String,
        /// The client's error.
        error: String,
    },
    /// A stream that JetStream did not create with the configured replicas.
    #[error(
        "JetStream failed to create stream {stream} with [store] replicas = {replicas}: \
         {error}{hint}"
    )]
    StreamNotCreated {
        /// The stream's name; a key-value bucket `B` is the stream `KV_B`, and an object
        /// store `O` is the stream `OBJ_O`.
        stream: String,
        /// The configured replicas.
        replicas: usize,
        /// The server's error.
        error: String,
        /// The fix to append, starting with ". ", or empty when the error gives no clue.
        hint: &'static str,
    },
    /// A message larger than the NATS server accepts in one publish.
    #[error(
        "the message is {size} bytes once encoded, over the {limit}-byte max_payload of the \
         NATS server; publish a smaller message, or raise max_payload in the nats-server \
         configuration"
    )]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The server's max_payload in bytes.
        limit: usize,
    },
    /// A JetStream request failed.
    #[error("JetStream failed to {operation}: {error}")]
    JetStream {
        /// What the store was doing, as a verb phrase.
        operation: &'static str,
        /// The client's or server's error.
        error: String,
    },
    /// An operation that this store cannot perform.
    #[error("{operation} is not supported by the JetStream store; see docs/jetstream.md")]
    Unsupported {
        /// The operation, as a noun phrase.
        operation: &'static str,
    },
}

impl StoreError {
    /// Returns whether the error is another process holding the lock on the data directory.
    pub fn is_locked(&self) -> bool {
        // sled wraps the failed flock in an error of kind `Other` whose message carries the
        // original `WouldBlock` error, so the message is what identifies it.
        matches!(
            self,
            StoreError::Database(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("could not acquire lock")
        )
    }

    /// Returns whether the error is the file system denying access to the store's files.
    pub fn is_permission_denied(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::PermissionDenied
                    || io.raw_os_error() == Some(1)
        )
    }

    /// Returns whether the error is the file system reporting that it is out of space.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::StorageFull
        )
    }
}

/// A message the store has made durable, as reported to a [`CommitListener`].
#[derive(Debug, Clone, Copy)]
pub struct Committed<'a> {
    /// The topic's name.
    pub topic: &'a str,
    /// The position in the topic.
    pub seq: u64,
    /// The message as published.
    pub message: &'a NewMessage,
}

/// Receives every message the store makes durable, in sequence order per topic, before the
/// publish that wrote it returns.
///
/// The store calls it from its writer, so it must not block and must not call back into
/// the store's write methods. Because the writer calls it whatever happens to the publisher
/// afterwards, a publish whose caller went away still reaches the subscriptions.
pub trait CommitListener: Send + Sync {
    /// Handles messages that were just flushed, in sequence order per topic.
    fn committed(&self, messages: &[Committed<'_>]);
}

/// Durable topics, subscriptions and messages.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Sets the listener that every durable message is reported to, replacing any earlier
    /// one.
    fn set_commit_listener(&self, listener: Arc<dyn CommitListener>);

    /// Creates a topic, or returns the existing one of that name.
    async fn create_topic(&self, name: &str) -> Result<TopicRecord, StoreError>;

    /// Creates a subscription, or updates the mutable settings of the existing one.
    ///
    /// # Errors
    ///
    /// [`StoreError::TopicNotFound`] when the topic does not exist,
    /// [`StoreError::InvalidFilter`] when the filter does not parse, and
    /// [`StoreError::SubscriptionConflict`] when the subscription exists with another topic,
    /// filter or `enable_message_ordering`.
    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError>;

    /// Returns the settings that a subscription declared in this node's configuration is
    /// created or updated with at start-up.
    ///
    /// The default returns `spec`, so the configuration sets the subscription. A store that
    /// several nodes share keeps the changeable settings of an existing subscription
    /// instead, because they belong to the subscription and UpdateSubscription changes them,
    /// and logs a warning for each one that `spec` would change.
    fn declared_subscription(&self, spec: SubscriptionSpec) -> SubscriptionSpec {
        spec
    }

    /// Checks that the store can serve requests now, for the health endpoint.
    ///
    /// # Errors
    ///
    /// The reason it cannot, such as [`StoreError::Unreachable`] while the connection to a
    /// JetStream server is lost.
    fn check_health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Returns the topics, ordered by name.
    fn topics(&self) -> Vec<TopicRecord>;

    /// Returns the subscriptions, ordered by name.
    fn subscriptions(&self) -> Vec<SubscriptionRecord>;

    /// Appends messages to their topics, with `now` as their publish time, and returns once
    /// they are flushed to disk.
    ///
    /// The receipts are in the order of `messages`.
    async fn publish(
        &self,
        messages: Vec<TopicMessage>,
        now: SystemTime,
    ) -> Result<Vec<Published>, StoreError>;

    /// Lists the messages pending in a subscription, in sequence order.
    fn pending(&self, subscription: &str) -> Result<Vec<PendingEntry>, StoreError>;

    /// Lists up to `limit` messages pending in a subscription from sequence number `from`
    /// on, in sequence order.
    fn pending_from(
        &self,
        subscription: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<PendingEntry>, StoreError>;

    /// Counts the messages pending in a subscription.
    fn pending_count(&self, subscription: &str) -> Result<u64, StoreError>;

    /// Reads one message; `None` when it no longer exists.
    fn read(&self, topic: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError>;

    /// Reads only a message's ordering key, which a store may do without reading its payload;
    /// `None` when the message no longer exists.
    fn read_ordering_key(&self, topic: &str, seq: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .read(topic, seq)?
            .map(|stored| stored.message.ordering_key))
    }

    /// Records how many deliveries pending messages have had, as `(seq, attempts)` pairs.
    /// Entries that are no longer pending are left alone.
    async fn set_attempts(
        &self,
        subscription: &str,
        counts: Vec<(u64, u32)>,
    ) -> Result<(), StoreError>;

    /// Removes messages from a subscription's pending set.
    async fn ack(&self, subscription: &str, seqs: Vec<u64>) -> Result<(), StoreError>;

    /// Publishes `message` to `topic` with `now` as its publish time, and removes `seq` from
    /// the subscription's pending set, in one atomic write that is flushed before this
    /// returns.
    async fn dead_letter(
        &self,
        subscription: &str,
        seq: u64,
        topic: &str,
        message: NewMessage,
        now: SystemTime,
    ) -> Result<Published, StoreError>;

    /// Deletes a subscription with its pending set, and the messages nothing else needs.
    ///
    /// # Errors
    ///
    /// [`StoreError::SubscriptionNotFound`] when it does not exist.
    async fn delete_subscription(&self, name: &str) -> Result<(), StoreError>;

    /// Deletes a topic with its messages and snapshots. Its subscriptions stay, detached:
    /// their topic becomes [`DELETED_TOPIC`] and they receive nothing more, as in Pub/Sub.
    ///
    /// # Errors
    ///
    /// [`StoreError::TopicNotFound`] when it does not exist.
    async fn delete_topic(&self, name: &str) -> Result<(), StoreError>;

    /// Changes the settings of a topic.
    ///
    /// # Errors
    ///
    /// [`StoreError::TopicNotFound`] when the topic does not exist.
    async fn update_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicRecord, StoreError>;

    /// Takes a snapshot of a subscription: its unacknowledged messages now, and every
    /// message published from now on, which the store keeps until the snapshot expires or is
    /// deleted. `now` is the creation time.
    ///
    /// # Errors
    ///
    /// [`StoreError::SnapshotExists`] when the name is taken and
    /// [`StoreError::SubscriptionNotFound`] when the subscription does not exist.
    async fn create_snapshot(
        &self,
        name: &str,
        subscription: &str,
        now: SystemTime,
    ) -> Result<SnapshotRecord, StoreError>;

    /// Returns the snapshots, ordered by name.
    fn snapshots(&self) -> Vec<SnapshotRecord>;

    /// Deletes a snapshot, and the messages that only it kept.
    ///
    /// # Errors
    ///
    /// [`StoreError::SnapshotNotFound`] when it does not exist.
    async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError>;

    /// Replaces a subscription's pending set as the target says, in one atomic write.
    ///
    /// Messages that stay pending keep their attempt counts; messages that become pending
    /// again start from 0. Only messages that the subscription may still see come back: those
    /// that its topic retains, those it retains itself with `retain_acked_messages`, and
    /// those a snapshot holds. Returns the new pending set.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription or snapshot, and with
    /// [`StoreError::SnapshotTopicMismatch`] for a snapshot of another topic.
    async fn seek(
        &self,
        subscription: &str,
        target: SeekTarget,
        now: SystemTime,
    ) -> Result<Vec<PendingEntry>, StoreError>;

    /// Applies retention as of `now`: removes unacknowledged messages older than their
    /// subscription's retention, deletes expired snapshots and the messages nothing needs
    /// any longer. Returns what it removed, so that the caller can count and log it.
    async fn sweep(&self, now: SystemTime) -> Result<SweepReport, StoreError>;

    /// Counts the messages a topic still stores.
    fn retained_messages(&self, topic: &str) -> Result<u64, StoreError>;

    /// Flushes every write so far to disk.
    async fn flush(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod push_config_tests {
    use super::*;

    #[test]
    fn push_config_written_before_formats_loads() {
        let stored =
            r#"{"endpoint":"http://127.0.0.1:8080/push","attributes":{},"format":"wrapped"}"#;
        let config: PushConfig = serde_json::from_str(stored).expect("old config loads");

        assert_eq!(config.format, PushFormat::Wrapped);
        assert_eq!(config.max_event_age_secs, None);
    }

    #[test]
    fn push_config_round_trips_new_formats() {
        for (format, name) in [
            (PushFormat::Background, "\"background\""),
            (PushFormat::CloudEvent, "\"cloudevent\""),
        ] {
            let config = PushConfig {
                endpoint: "http://127.0.0.1:8080/push".to_owned(),
                attributes: BTreeMap::new(),
                format,
                max_event_age_secs: Some(3600),
            };
            let text = serde_json::to_string(&config).expect("serializes");

            assert!(text.contains(name), "{text}");
            let loaded: PushConfig = serde_json::from_str(&text).expect("loads");
            assert_eq!(loaded, config);
        }
    }

    #[test]
    fn push_config_without_max_age_keeps_old_form() {
        let config = PushConfig {
            endpoint: "http://127.0.0.1:8080/push".to_owned(),
            attributes: BTreeMap::new(),
            format: PushFormat::Unwrapped {
                write_metadata: true,
            },
            max_event_age_secs: None,
        };

        assert_eq!(
            serde_json::to_string(&config).expect("serializes"),
            r#"{"endpoint":"http://127.0.0.1:8080/push","attributes":{},"format":{"unwrapped":{"write_metadata":true}}}"#
        );
    }
}
