//! Durable state: topics, subscriptions, messages and each subscription's pending set.
//!
//! Everything the router keeps across restarts goes through the [`Store`] trait, and nothing
//! outside this module opens a sled tree. [`SledStore`] is the embedded implementation.
//!
//! # Semantics every implementation keeps
//!
//! - [`Store::publish`] returns only after the messages are on disk (flushed), so an
//!   acknowledged publish survives a crash. Many concurrent publishes share one flush.
//! - A message is appended to its topic with a sequence number that only grows; the decimal
//!   sequence number is the message id, unique per topic for the life of the data dir.
//! - Publishing adds the message to the pending set of every subscription the topic has at
//!   that moment, so a subscription sees messages published after it was created.
//! - Acknowledging removes a message from one subscription's pending set; the message itself
//!   is deleted once no subscription has it pending. Acknowledgements and delivery-attempt
//!   counts are written without waiting for a flush: after a crash some acknowledged
//!   messages may be delivered again, which at-least-once delivery allows.

mod keys;
mod sled_store;

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use sled_store::SledStore;

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
}

/// Where messages go after too many failed deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPolicy {
    /// The topic that receives dead-lettered messages.
    pub topic: String,
    /// Deliveries before a message is dead-lettered, 5 to 100 as in Pub/Sub.
    pub max_delivery_attempts: u32,
}

/// The settings of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// The subscription's name.
    pub name: String,
    /// The topic it receives from.
    pub topic: String,
    /// Seconds a consumer has to acknowledge a delivery, 10 to 600.
    pub ack_deadline_secs: u32,
    /// Dead-letter settings, if any.
    pub dead_letter: Option<DeadLetterPolicy>,
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
    /// A subscription that exists with different immutable settings.
    #[error("subscription {name:?} already exists with topic {existing:?}; delete it first to change its topic")]
    SubscriptionConflict {
        /// The subscription's name.
        name: String,
        /// The topic it is bound to.
        existing: String,
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
}

/// Durable topics, subscriptions and messages.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates a topic, or returns the existing one of that name.
    async fn create_topic(&self, name: &str) -> Result<TopicRecord, StoreError>;

    /// Creates a subscription, or updates the mutable settings of the existing one.
    ///
    /// # Errors
    ///
    /// [`StoreError::TopicNotFound`] when the topic does not exist, and
    /// [`StoreError::SubscriptionConflict`] when the subscription exists on another topic.
    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError>;

    /// Returns the topics, ordered by name.
    fn topics(&self) -> Vec<TopicRecord>;

    /// Returns the subscriptions, ordered by name.
    fn subscriptions(&self) -> Vec<SubscriptionRecord>;

    /// Appends messages to their topics and returns once they are flushed to disk.
    ///
    /// The receipts are in the order of `messages`.
    async fn publish(&self, messages: Vec<TopicMessage>) -> Result<Vec<Published>, StoreError>;

    /// Lists the messages pending in a subscription, in sequence order.
    fn pending(&self, subscription: &str) -> Result<Vec<PendingEntry>, StoreError>;

    /// Reads one message; `None` when it no longer exists.
    fn read(&self, topic: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError>;

    /// Records how many deliveries pending messages have had, as `(seq, attempts)` pairs.
    /// Entries that are no longer pending are left alone.
    async fn set_attempts(
        &self,
        subscription: &str,
        counts: Vec<(u64, u32)>,
    ) -> Result<(), StoreError>;

    /// Removes messages from a subscription's pending set.
    async fn ack(&self, subscription: &str, seqs: Vec<u64>) -> Result<(), StoreError>;

    /// Publishes `message` to `topic` and removes `seq` from the subscription's pending set,
    /// in one atomic write that is flushed before this returns.
    async fn dead_letter(
        &self,
        subscription: &str,
        seq: u64,
        topic: &str,
        message: NewMessage,
    ) -> Result<Published, StoreError>;

    /// Counts the messages a topic still stores.
    fn retained_messages(&self, topic: &str) -> Result<u64, StoreError>;

    /// Flushes every write so far to disk.
    async fn flush(&self) -> Result<(), StoreError>;
}
