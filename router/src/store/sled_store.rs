//! The embedded store on sled, with group commit.
//!
//! All writes go through one committer thread. It takes every write that is queued, applies
//! them to the `data` tree as one atomic batch, flushes once if any of them needs to be
//! durable, and then answers all of them. While one flush runs, new writes queue up and share
//! the next one, so the cost of an fsync is spread over every publish that arrived meanwhile.
//! Reads go straight to sled from the calling thread.

mod deletion;
mod guard;
mod manifest;
mod payloads;
mod retention;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

pub use guard::StoreOptions;
pub(super) use payloads::PayloadRef;

use super::keys;
use super::{
    CommitListener, Committed, NewMessage, PendingEntry, Published, SeekTarget, SnapshotRecord,
    Store, StoreError, StoredMessage, SubscriptionRecord, SubscriptionSpec, SweepReport,
    TopicMessage, TopicRecord, TopicSettings, DEFAULT_RETENTION_SECS,
};
use crate::filter::pubsub::SubscriptionFilter;

/// Writes queued for the committer before publishers wait for room.
const WRITE_QUEUE: usize = 4096;
/// Bytes of sled's page cache. With sled's default of 1 GiB, the resident memory grew with
/// the backlog, to 614 MiB at a million pending messages. At 64 MiB it was 155 MiB
/// (docs/benchmarks.md).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How often the committer records its sequence numbers in the manifest.
const MANIFEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most writes applied in one batch, so that one group cannot grow without bound.
const MAX_GROUP: usize = 1024;

/// The topics and subscriptions, kept in memory and written through to the `catalog` tree.
#[derive(Debug, Default)]
struct Catalog {
    topics: BTreeMap<String, TopicRecord>,
    subscriptions: BTreeMap<String, SubscriptionRecord>,
    /// The parsed filters of the subscriptions that have one, by subscription id, so that a
    /// publish does not parse them again.
    filters: HashMap<u32, SubscriptionFilter>,
    snapshots: BTreeMap<String, SnapshotRecord>,
}

impl Catalog {
    fn subscriptions_of(&self, topic: u32) -> Vec<u32> {
        self.subscriptions
            .values()
            .filter(|s| s.topic_id == topic)
            .map(|s| s.id)
            .collect()
    }

    /// Returns the ids of the subscriptions of `topic` whose filter `message` passes, and
    /// whether the topic has any subscription at all.
    fn receivers_of(&self, topic: u32, message: &NewMessage) -> (Vec<u32>, bool) {
        let mut any = false;
        let receivers = self
            .subscriptions
            .values()
            .filter(|s| s.topic_id == topic)
            .inspect(|_| any = true)
            .filter(|s| {
                self.filters
                    .get(&s.id)
                    .is_none_or(|filter| filter.matches(&message.attributes))
            })
            .map(|s| s.id)
            .collect();
        (receivers, any)
    }

    fn insert_subscription(
        &mut self,
        record: SubscriptionRecord,
        filter: Option<SubscriptionFilter>,
    ) {
        match filter {
            Some(filter) => self.filters.insert(record.id, filter),
            None => self.filters.remove(&record.id),
        };
        self.subscriptions.insert(record.spec.name.clone(), record);
    }

    /// Returns whether the topic keeps messages after every subscription acknowledged them:
    /// it has a retention, a subscription with `retain_acked_messages`, or a snapshot.
    fn retains_acked(&self, topic: u32) -> bool {
        let Some(record) = self.topics.values().find(|t| t.id == topic) else {
            return false;
        };
        record.settings.message_retention_secs.is_some()
            || self
                .subscriptions
                .values()
                .any(|s| s.topic_id == topic && s.spec.retain_acked_messages)
            || self.snapshots.values().any(|n| n.topic == record.name)
    }

    /// Returns whether a retention rule of the topic keeps a message that no subscription
    /// has pending: the topic's retention, a subscription's retention of acknowledged
    /// messages, a snapshot that holds everything from its creation on, or, for a topic
    /// without subscriptions, the default retention. Snapshot members are checked by the
    /// caller.
    fn keeps(&self, topic: u32, seq: u64, publish_time: SystemTime, now: SystemTime) -> bool {
        let Some(record) = self.topics.values().find(|t| t.id == topic) else {
            return false;
        };
        let within = |secs: u64| publish_time + Duration::from_secs(secs) > now;
        let mut subscribed = false;
        for subscription in self.subscriptions.values().filter(|s| s.topic_id == topic) {
            subscribed = true;
            let spec = &subscription.spec;
            if spec.retain_acked_messages
                && seq >= subscription.first_seq
                && within(spec.message_retention_secs)
            {
                return true;
            }
        }
        let topic_retention = match record.settings.message_retention_secs {
            Some(secs) => Some(secs),
            None if !subscribed => Some(DEFAULT_RETENTION_SECS),
            None => None,
        };
        topic_retention.is_some_and(within)
            || self
                .snapshots
                .values()
                .any(|n| n.topic == record.name && seq >= n.next_seq)
    }

    /// Returns the longest time-based retention of a topic, in seconds: how old a message
    /// must be before a sweep considers deleting it.
    fn longest_retention(&self, topic: u32) -> u64 {
        let Some(record) = self.topics.values().find(|t| t.id == topic) else {
            return 0;
        };
        let mut longest = record.settings.message_retention_secs.unwrap_or(0);
        let mut subscribed = false;
        for subscription in self.subscriptions.values().filter(|s| s.topic_id == topic) {
            subscribed = true;
            if subscription.spec.retain_acked_messages {
                longest = longest.max(subscription.spec.message_retention_secs);
            }
        }
        if !subscribed && record.settings.message_retention_secs.is_none() {
            longest = DEFAULT_RETENTION_SECS;
        }
        longest
    }

    fn snapshot_ids_of(&self, topic: &str) -> Vec<u32> {
        self.snapshots
            .values()
            .filter(|n| n.topic == topic)
            .map(|n| n.id)
            .collect()
    }

    fn topic_name(&self, topic: u32) -> Option<&str> {
        self.topics
            .values()
            .find(|t| t.id == topic)
            .map(|t| t.name.as_str())
    }

    fn next_topic_id(&self) -> u32 {
        self.topics.values().map(|t| t.id + 1).max().unwrap_or(1)
    }

    fn next_subscription_id(&self) -> u32 {
        self.subscriptions
            .values()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(1)
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Write {
    CreateTopic {
        name: String,
        reply: Reply<TopicRecord>,
    },
    CreateSubscription {
        spec: SubscriptionSpec,
        reply: Reply<SubscriptionRecord>,
    },
    Publish {
        messages: Vec<(u32, NewMessage)>,
        now: SystemTime,
        reply: Reply<Vec<Published>>,
    },
    Ack {
        subscription: u32,
        topic: u32,
        seqs: Vec<u64>,
        reply: Reply<()>,
    },
    Attempts {
        subscription: u32,
        counts: Vec<(u64, u32)>,
        reply: Reply<()>,
    },
    DeadLetter {
        subscription: u32,
        topic: u32,
        seq: u64,
        target: u32,
        message: NewMessage,
        now: SystemTime,
        reply: Reply<Published>,
    },
    Flush {
        reply: Reply<()>,
    },
    UpdateTopic {
        name: String,
        settings: TopicSettings,
        reply: Reply<TopicRecord>,
    },
    CreateSnapshot {
        name: String,
        subscription: String,
        now: SystemTime,
        reply: Reply<SnapshotRecord>,
    },
    DeleteSnapshot {
        name: String,
        reply: Reply<()>,
    },
    Seek {
        subscription: String,
        target: SeekTarget,
        now: SystemTime,
        reply: Reply<Vec<PendingEntry>>,
    },
    Sweep {
        now: SystemTime,
        reply: Reply<SweepReport>,
    },
    DeleteSubscription {
        name: String,
        now: SystemTime,
        reply: Reply<()>,
    },
    DeleteTopic {
        name: String,
        reply: Reply<()>,
    },
}

impl Write {
    /// Whether the write runs alone, after the writes queued before it are applied: writes
    /// that read what earlier writes change, or that change the catalog.
    fn is_exclusive(&self) -> bool {
        !matches!(
            self,
            Write::Publish { .. }
                | Write::Ack { .. }
                | Write::Attempts { .. }
                | Write::DeadLetter { .. }
                | Write::Flush { .. }
        )
    }
}

/// The commit listener, shared between the store and its committer.
#[derive(Clone, Default)]
struct Listener(Arc<RwLock<Option<Arc<dyn CommitListener>>>>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Listener {
    fn get(&self) -> Option<Arc<dyn CommitListener>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The sled implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SledStore {
    listener: Listener,
    data: sled::Tree,
    /// Shared with the committer, which is the only writer.
    catalog: Arc<RwLock<Catalog>>,
    writes: mpsc::Sender<Write>,
    guard: Arc<guard::Guard>,
    payloads: Arc<payloads::PayloadFiles>,
}

impl SledStore {
    /// Opens (or creates) the store in `path` with the default [`StoreOptions`] and starts
    /// its committer thread.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory or a stored record does not decode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the store in `path` with the given limits and starts its committer
    /// thread.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory or a stored record does not decode.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(200))
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let catalog_tree = db.open_tree("catalog")?;
        let data = db.open_tree("data")?;
        let catalog = Arc::new(RwLock::new(load_catalog(&catalog_tree)?));
        let mut last_seq = HashMap::new();
        for item in data.scan_prefix(b"q") {
            let (key, value) = item?;
            let topic = keys::decode_u32(&key, key.get(1..5).unwrap_or_default())?;
            last_seq.insert(topic, keys::decode_u64(&key, &value)?);
        }
        manifest::check(path, &last_seq, |topic| {
            catalog
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .topic_name(topic)
                .map(|name| format!("{name:?}"))
        })?;
        manifest::write(path, &last_seq);
        let payload_writer = payloads::PayloadWriter::open(path, &data)?;
        let payload_files = payload_writer.files();
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let guard = Arc::new(guard::Guard::new(path, options));
        let listener = Listener::default();
        let committer = Committer {
            dir: path.to_owned(),
            manifest_written: std::time::Instant::now(),
            listener: listener.clone(),
            guard: guard.clone(),
            db,
            catalog_tree,
            data: data.clone(),
            catalog: catalog.clone(),
            last_seq,
            sweep_from: HashMap::new(),
            // Settings may have changed while the store was closed.
            rescan: catalog_topic_ids(&catalog),
            last_publish_time: SystemTime::UNIX_EPOCH,
            payloads: payload_writer,
            seq_changed: HashSet::new(),
        };
        std::thread::Builder::new()
            .name("sluice-committer".to_owned())
            .spawn(move || committer.run(queue))
            .map_err(|err| StoreError::Database(sled::Error::Io(err)))?;
        Ok(SledStore {
            listener,
            data,
            catalog,
            writes,
            guard,
            payloads: payload_files,
        })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
        self.guard.check_stall()?;
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        // A poisoned lock means a panic while the committer held it; the catalog itself is
        // replaced whole on every change, so it is still consistent.
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn topic_id(&self, name: &str) -> Result<u32, StoreError> {
        self.catalog()
            .topics
            .get(name)
            .map(|t| t.id)
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))
    }

    fn subscription(&self, name: &str) -> Result<SubscriptionRecord, StoreError> {
        self.catalog()
            .subscriptions
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::SubscriptionNotFound(name.to_owned()))
    }
}

/// Returns the bytes a message takes in memory, roughly: data, attributes and ordering key.
fn message_bytes(message: &NewMessage) -> u64 {
    let attributes: usize = message
        .attributes
        .iter()
        .map(|(key, value)| key.len() + value.len())
        .sum();
    (message.data.len() + attributes + message.ordering_key.len()) as u64
}

fn catalog_topic_ids(catalog: &RwLock<Catalog>) -> HashSet<u32> {
    catalog
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .topics
        .values()
        .map(|t| t.id)
        .collect()
}

fn load_catalog(tree: &sled::Tree) -> Result<Catalog, StoreError> {
    let mut catalog = Catalog::default();
    for item in tree.iter() {
        let (key, value) = item?;
        let decode_error = |err: serde_json::Error| {
            keys::corrupt(&key, format!("catalog record does not decode: {err}"))
        };
        match key.first() {
            Some(b't') => {
                let topic: TopicRecord = serde_json::from_slice(&value).map_err(decode_error)?;
                catalog.topics.insert(topic.name.clone(), topic);
            }
            Some(b's') => {
                let subscription: SubscriptionRecord =
                    serde_json::from_slice(&value).map_err(decode_error)?;
                let filter = parse_filter(&subscription.spec).map_err(|err| {
                    keys::corrupt(&key, format!("stored filter does not parse: {err}"))
                })?;
                catalog.insert_subscription(subscription, filter);
            }
            Some(b'n') => {
                let snapshot: SnapshotRecord =
                    serde_json::from_slice(&value).map_err(decode_error)?;
                catalog.snapshots.insert(snapshot.name.clone(), snapshot);
            }
            _ => return Err(keys::corrupt(&key, "unknown catalog key")),
        }
    }
    Ok(catalog)
}

/// Parses the filter of `spec`, or returns `None` when it has none.
fn parse_filter(spec: &SubscriptionSpec) -> Result<Option<SubscriptionFilter>, StoreError> {
    let filter =
        SubscriptionFilter::parse(&spec.filter).map_err(|error| StoreError::InvalidFilter {
            name: spec.name.clone(),
            error,
        })?;
    Ok(filter.expression().is_some().then_some(filter))
}

/// Returns the first setting that is fixed at creation and differs between `existing` and
/// `requested`, as an error.
fn check_fixed_settings(
    existing: &SubscriptionSpec,
    requested: &SubscriptionSpec,
) -> Result<(), StoreError> {
    let conflict = |setting, existing: String| StoreError::SubscriptionConflict {
        name: requested.name.clone(),
        setting,
        existing,
    };
    if existing.topic != requested.topic {
        return Err(conflict("topic", format!("{:?}", existing.topic)));
    }
    if existing.filter != requested.filter {
        return Err(conflict("filter", format!("{:?}", existing.filter)));
    }
    if existing.enable_message_ordering != requested.enable_message_ordering {
        return Err(conflict(
            "enable_message_ordering",
            existing.enable_message_ordering.to_string(),
        ));
    }
    Ok(())
}

#[async_trait]
impl Store for SledStore {
    fn set_commit_listener(&self, listener: Arc<dyn CommitListener>) {
        *self
            .listener
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener);
    }

    async fn create_topic(&self, name: &str) -> Result<TopicRecord, StoreError> {
        if let Some(topic) = self.catalog().topics.get(name) {
            return Ok(topic.clone());
        }
        let name = name.to_owned();
        self.send(|reply| Write::CreateTopic { name, reply }).await
    }

    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError> {
        self.send(|reply| Write::CreateSubscription { spec, reply })
            .await
    }

    fn topics(&self) -> Vec<TopicRecord> {
        self.catalog().topics.values().cloned().collect()
    }

    fn subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.catalog().subscriptions.values().cloned().collect()
    }

    async fn publish(
        &self,
        messages: Vec<TopicMessage>,
        now: SystemTime,
    ) -> Result<Vec<Published>, StoreError> {
        let resolved = messages
            .into_iter()
            .map(|m| Ok((self.topic_id(&m.topic)?, m.message)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.guard.check_disk()?;
        let bytes = resolved.iter().map(|(_, m)| message_bytes(m)).sum();
        let _queued = self.guard.reserve(bytes)?;
        self.send(|reply| Write::Publish {
            messages: resolved,
            now,
            reply,
        })
        .await
    }

    fn pending(&self, subscription: &str) -> Result<Vec<PendingEntry>, StoreError> {
        let record = self.subscription(subscription)?;
        let mut entries = Vec::new();
        for item in self.data.scan_prefix(keys::pending_prefix(record.id)) {
            let (key, value) = item?;
            entries.push(PendingEntry {
                seq: keys::seq_of(&key)?,
                attempts: keys::decode_u32(&key, &value)?,
            });
        }
        Ok(entries)
    }

    fn pending_from(
        &self,
        subscription: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let record = self.subscription(subscription)?;
        let start = keys::pending(record.id, from);
        let end = keys::pending(record.id, u64::MAX);
        let mut entries = Vec::with_capacity(limit.min(4096));
        for item in self.data.range(start..=end).take(limit) {
            let (key, value) = item?;
            entries.push(PendingEntry {
                seq: keys::seq_of(&key)?,
                attempts: keys::decode_u32(&key, &value)?,
            });
        }
        Ok(entries)
    }

    fn pending_count(&self, subscription: &str) -> Result<u64, StoreError> {
        let record = self.subscription(subscription)?;
        let mut count = 0;
        for item in self
            .data
            .scan_prefix(keys::pending_prefix(record.id))
            .keys()
        {
            item?;
            count += 1;
        }
        Ok(count)
    }

    fn read(&self, topic: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        let topic_id = self.topic_id(topic)?;
        let key = keys::message(topic_id, seq);
        let Some(bytes) = self.data.get(key)? else {
            return Ok(None);
        };
        let mut decoded = keys::decode_message(&key, &bytes)?;
        if let Some(payload) = decoded.external {
            match self.payloads.read(&payload)? {
                Some(data) => decoded.message.data = data,
                // The message was deleted, and its segment with it, after its value was
                // read.
                None if !self.data.contains_key(key)? => return Ok(None),
                None => {
                    return Err(self
                        .payloads
                        .corrupt(&payload, "the payload segment file is missing"))
                }
            }
        }
        Ok(Some(StoredMessage {
            topic: topic.to_owned(),
            seq,
            publish_time: decoded.publish_time,
            message: decoded.message,
        }))
    }

    fn read_ordering_key(&self, topic: &str, seq: u64) -> Result<Option<String>, StoreError> {
        let topic_id = self.topic_id(topic)?;
        let key = keys::message(topic_id, seq);
        let Some(bytes) = self.data.get(key)? else {
            return Ok(None);
        };
        Ok(Some(
            keys::decode_message(&key, &bytes)?.message.ordering_key,
        ))
    }

    async fn set_attempts(
        &self,
        subscription: &str,
        counts: Vec<(u64, u32)>,
    ) -> Result<(), StoreError> {
        let subscription = self.subscription(subscription)?.id;
        self.send(|reply| Write::Attempts {
            subscription,
            counts,
            reply,
        })
        .await
    }

    async fn ack(&self, subscription: &str, seqs: Vec<u64>) -> Result<(), StoreError> {
        let record = self.subscription(subscription)?;
        self.send(|reply| Write::Ack {
            subscription: record.id,
            topic: record.topic_id,
            seqs,
            reply,
        })
        .await
    }

    async fn dead_letter(
        &self,
        subscription: &str,
        seq: u64,
        topic: &str,
        message: NewMessage,
        now: SystemTime,
    ) -> Result<Published, StoreError> {
        let record = self.subscription(subscription)?;
        let target = self.topic_id(topic)?;
        self.send(|reply| Write::DeadLetter {
            subscription: record.id,
            topic: record.topic_id,
            seq,
            target,
            message,
            now,
            reply,
        })
        .await
    }

    async fn delete_subscription(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        let now = SystemTime::now();
        self.send(|reply| Write::DeleteSubscription { name, now, reply })
            .await
    }

    async fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.send(|reply| Write::DeleteTopic { name, reply }).await
    }

    async fn update_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicRecord, StoreError> {
        let name = name.to_owned();
        self.send(|reply| Write::UpdateTopic {
            name,
            settings,
            reply,
        })
        .await
    }

    async fn create_snapshot(
        &self,
        name: &str,
        subscription: &str,
        now: SystemTime,
    ) -> Result<SnapshotRecord, StoreError> {
        let name = name.to_owned();
        let subscription = subscription.to_owned();
        self.send(|reply| Write::CreateSnapshot {
            name,
            subscription,
            now,
            reply,
        })
        .await
    }

    fn snapshots(&self) -> Vec<SnapshotRecord> {
        self.catalog().snapshots.values().cloned().collect()
    }

    async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.send(|reply| Write::DeleteSnapshot { name, reply })
            .await
    }

    async fn seek(
        &self,
        subscription: &str,
        target: SeekTarget,
        now: SystemTime,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let subscription = subscription.to_owned();
        self.send(|reply| Write::Seek {
            subscription,
            target,
            now,
            reply,
        })
        .await
    }

    async fn sweep(&self, now: SystemTime) -> Result<SweepReport, StoreError> {
        self.send(|reply| Write::Sweep { now, reply }).await
    }

    fn retained_messages(&self, topic: &str) -> Result<u64, StoreError> {
        let topic_id = self.topic_id(topic)?;
        Ok(self
            .data
            .scan_prefix(keys::message_prefix(topic_id))
            .count() as u64)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.send(|reply| Write::Flush { reply }).await
    }
}

/// The single writer: owns the sequence counters and applies queued writes in groups.
struct Committer {
    /// The data directory, where the manifest is written.
    dir: std::path::PathBuf,
    /// When the manifest was last written.
    manifest_written: std::time::Instant,
    listener: Listener,
    guard: Arc<guard::Guard>,
    db: sled::Db,
    catalog_tree: sled::Tree,
    data: sled::Tree,
    catalog: Arc<RwLock<Catalog>>,
    last_seq: HashMap<u32, u64>,
    /// Per topic, the sequence number where the next sweep starts looking for messages that
    /// nothing needs. Every message before it was deleted or was kept because a subscription
    /// had it pending or a snapshot held it; those are reconsidered when that changes.
    sweep_from: HashMap<u32, u64>,
    /// Topics that kept acknowledged messages until a setting changed, so that the next
    /// sweep looks through all their messages once.
    rescan: HashSet<u32>,
    /// The latest publish time given to a message since the store opened.
    last_publish_time: SystemTime,
    /// The segment files of large payloads.
    payloads: payloads::PayloadWriter,
    /// Topics whose last sequence number the group being built changed.
    seq_changed: HashSet<u32>,
}

/// A reply waiting for its group's batch to be applied and flushed.
enum Outcome {
    Published(Reply<Vec<Published>>, Vec<Published>),
    DeadLettered(Reply<Published>, Published),
    Done(Reply<()>),
}

impl Committer {
    fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        let mut next = None;
        while let Some(first) = next.take().or_else(|| queue.blocking_recv()) {
            self.guard.mark_busy();
            if first.is_exclusive() {
                self.run_exclusive(first);
                self.guard.mark_idle();
                continue;
            }
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(write) if write.is_exclusive() => {
                        next = Some(write);
                        break;
                    }
                    Ok(write) => group.push(write),
                    Err(_) => break,
                }
            }
            self.commit(group);
            self.guard.mark_idle();
            if self.manifest_written.elapsed() >= MANIFEST_INTERVAL {
                self.write_manifest();
            }
        }
        match self.db.flush() {
            Ok(_) => manifest::write(&self.dir, &self.last_seq),
            Err(err) => error!(error = %err, "final flush of the store failed"),
        }
        debug!("store committer stopped");
    }

    fn commit(&mut self, group: Vec<Write>) {
        let (started, writes) = (std::time::Instant::now(), group.len());
        let mut batch = sled::Batch::default();
        let mut removed = HashSet::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut durable = false;
        // The messages appended by this group, in sequence order, for the commit listener.
        let mut appended: Vec<(u32, u64, NewMessage)> = Vec::new();
        // An explicit flush, as at shutdown, also brings the manifest up to date.
        let mut flush_requested = false;
        // A payload that could not be written fails the whole group, as a failed batch does.
        let mut failure: Option<std::io::Error> = None;
        let now = SystemTime::now();
        for write in group {
            match write {
                Write::Publish {
                    messages,
                    now,
                    reply,
                } => {
                    let mut receipts = Vec::with_capacity(messages.len());
                    for (topic, message) in messages {
                        if failure.is_some() {
                            break;
                        }
                        match self.append(&mut batch, topic, &message, now) {
                            Ok(receipt) => {
                                appended.push((topic, receipt.seq, message));
                                receipts.push(receipt);
                            }
                            Err(err) => failure = Some(err),
                        }
                    }
                    outcomes.push(Outcome::Published(reply, receipts));
                    durable = true;
                }
                Write::Ack {
                    subscription,
                    topic,
                    seqs,
                    reply,
                } => {
                    for seq in seqs {
                        self.remove_pending(
                            &mut batch,
                            &mut removed,
                            (subscription, topic, seq),
                            now,
                        );
                    }
                    outcomes.push(Outcome::Done(reply));
                }
                Write::Attempts {
                    subscription,
                    counts,
                    reply,
                } => {
                    for (seq, attempts) in counts {
                        let key = keys::pending(subscription, seq);
                        // Only an entry that still exists is updated, so that a late count
                        // never brings back an acknowledged message.
                        if !removed.contains(&key) && self.data.contains_key(key).unwrap_or(false) {
                            batch.insert(&key, &attempts.to_be_bytes());
                        }
                    }
                    outcomes.push(Outcome::Done(reply));
                }
                Write::DeadLetter {
                    subscription,
                    topic,
                    seq,
                    target,
                    message,
                    now,
                    reply,
                } => {
                    let receipt = if failure.is_some() {
                        Published {
                            seq: 0,
                            publish_time: now,
                        }
                    } else {
                        match self.append(&mut batch, target, &message, now) {
                            Ok(receipt) => receipt,
                            Err(err) => {
                                failure = Some(err);
                                Published {
                                    seq: 0,
                                    publish_time: now,
                                }
                            }
                        }
                    };
                    appended.push((target, receipt.seq, message));
                    self.remove_pending(&mut batch, &mut removed, (subscription, topic, seq), now);
                    outcomes.push(Outcome::DeadLettered(reply, receipt));
                    durable = true;
                }
                Write::Flush { reply } => {
                    outcomes.push(Outcome::Done(reply));
                    durable = true;
                    flush_requested = true;
                }
                exclusive => self.run_exclusive(exclusive),
            }
        }
        for topic in std::mem::take(&mut self.seq_changed) {
            if let Some(seq) = self.last_seq.get(&topic) {
                batch.insert(&keys::last_seq(topic), &seq.to_be_bytes());
            }
        }
        let result = match failure {
            Some(err) => Err(sled::Error::Io(err)),
            // The payloads go to disk before the batch that refers to them.
            None => self.payloads.sync().map_err(sled::Error::Io),
        }
        .and_then(|()| self.data.apply_batch(batch))
        .and_then(|()| {
            if durable {
                self.db.flush().map(drop)
            } else {
                Ok(())
            }
        });
        crate::metrics::record_commit("sled", started.elapsed(), writes);
        if let Err(err) = &result {
            error!(error = %err, "store write failed");
            // The sequence numbers this group took were never written, so the manifest must
            // not record them.
            self.reload_last_seq();
        }
        if result.is_ok() && !appended.is_empty() {
            self.report_committed(&appended);
        }
        if result.is_ok() {
            self.payloads.collect(&self.db, &self.data);
        }
        if result.is_ok() && flush_requested {
            self.manifest_written = std::time::Instant::now();
            manifest::write(&self.dir, &self.last_seq);
        }
        for outcome in outcomes {
            let failed = |err: &sled::Error| StoreError::Database(err.clone());
            match outcome {
                Outcome::Published(reply, receipts) => {
                    let _ = reply.send(result.as_ref().map(|()| receipts).map_err(failed));
                }
                Outcome::DeadLettered(reply, receipt) => {
                    let _ = reply.send(result.as_ref().map(|()| receipt).map_err(failed));
                }
                Outcome::Done(reply) => {
                    let _ = reply.send(result.as_ref().copied().map_err(failed));
                }
            }
        }
    }

    /// Adds a message to `batch`, with its payload in a segment file when it is larger than
    /// [`payloads::INLINE_LIMIT`]. Fails only when the payload cannot be written.
    fn append(
        &mut self,
        batch: &mut sled::Batch,
        topic: u32,
        message: &NewMessage,
        now: SystemTime,
    ) -> std::io::Result<Published> {
        let (receivers, retained) = {
            let catalog = self.read_catalog();
            let (receivers, has_subscriptions) = catalog.receivers_of(topic, message);
            let retained = !has_subscriptions || catalog.retains_acked(topic);
            (receivers, retained)
        };
        // A message that every subscription's filter rejected is acknowledged by all of them
        // at once, so it is not kept unless a retention rule keeps acknowledged messages. A
        // topic without subscriptions keeps its messages for the default retention.
        let stored = !receivers.is_empty() || retained;
        let external = if stored && message.data.len() > payloads::INLINE_LIMIT {
            Some(self.payloads.append(&message.data)?)
        } else {
            None
        };
        // Publish times never go back within the store, so that sequence order is publish
        // order, which the retention sweep relies on.
        let now = now.max(self.last_publish_time);
        self.last_publish_time = now;
        let seq = self.last_seq.entry(topic).or_insert(0);
        *seq += 1;
        let seq = *seq;
        if stored {
            batch.insert(
                &keys::message(topic, seq),
                keys::encode_message(message, now, external),
            );
        }
        if let Some(payload) = external {
            batch.insert(&keys::payload_member(payload.segment, topic, seq), &[]);
        }
        // Written once per group, by `commit`, with the group's last number.
        self.seq_changed.insert(topic);
        for subscription in receivers {
            batch.insert(&keys::pending(subscription, seq), &0u32.to_be_bytes());
        }
        Ok(Published {
            seq,
            publish_time: now,
        })
    }

    /// Adds the removal of a stored message to `batch`, with its payload's index entry, and
    /// notes the segment so that it is deleted once nothing needs it.
    fn remove_message(&self, batch: &mut sled::Batch, topic: u32, seq: u64) {
        let key = keys::message(topic, seq);
        if let Ok(Some(bytes)) = self.data.get(key) {
            if let Ok(decoded) = keys::decode_message(&key, &bytes) {
                if let Some(payload) = decoded.external {
                    batch.remove(&keys::payload_member(payload.segment, topic, seq));
                    self.payloads.released(payload.segment);
                }
            }
        }
        batch.remove(&key);
    }

    /// Removes the pending entry `(subscription, topic, seq)`, and the message too once
    /// nothing needs it any longer (see [`Self::is_needed`]).
    fn remove_pending(
        &self,
        batch: &mut sled::Batch,
        removed: &mut HashSet<[u8; 13]>,
        (subscription, topic, seq): (u32, u32, u64),
        now: SystemTime,
    ) {
        let key = keys::pending(subscription, seq);
        batch.remove(&key);
        removed.insert(key);
        if !self.is_needed(removed, topic, seq, now) {
            self.remove_message(batch, topic, seq);
        }
    }

    /// Returns whether a message must stay stored: a subscription has it pending (entries in
    /// `removed` no longer count), a retention rule keeps it, or a snapshot holds it. On a
    /// read error it answers yes, so that nothing is deleted by mistake.
    fn is_needed(
        &self,
        removed: &HashSet<[u8; 13]>,
        topic: u32,
        seq: u64,
        now: SystemTime,
    ) -> bool {
        let catalog = self.read_catalog();
        let pending = catalog.subscriptions_of(topic).into_iter().any(|other| {
            let key = keys::pending(other, seq);
            !removed.contains(&key) && self.data.contains_key(key).unwrap_or(true)
        });
        if pending {
            return true;
        }
        let has_subscriptions = catalog.subscriptions.values().any(|s| s.topic_id == topic);
        if has_subscriptions && !catalog.retains_acked(topic) {
            return false;
        }
        let key = keys::message(topic, seq);
        let publish_time = match self.data.get(key) {
            Ok(Some(bytes)) => match keys::decode_publish_time(&key, &bytes) {
                Ok(time) => time,
                Err(_) => return true,
            },
            Ok(None) => return false,
            Err(_) => return true,
        };
        if catalog.keeps(topic, seq, publish_time, now) {
            return true;
        }
        let snapshots = catalog
            .topic_name(topic)
            .map(|name| catalog.snapshot_ids_of(name))
            .unwrap_or_default();
        snapshots.into_iter().any(|snapshot| {
            self.data
                .contains_key(keys::snapshot_member(snapshot, seq))
                .unwrap_or(true)
        })
    }

    fn read_catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_catalog(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads each topic's last sequence number back from the store.
    fn reload_last_seq(&mut self) {
        for item in self.data.scan_prefix(b"q") {
            let Ok((key, value)) = item else {
                continue;
            };
            let topic = keys::decode_u32(&key, key.get(1..5).unwrap_or_default());
            let seq = keys::decode_u64(&key, &value);
            if let (Ok(topic), Ok(seq)) = (topic, seq) {
                self.last_seq.insert(topic, seq);
            }
        }
    }

    /// Records the current sequence numbers in the manifest, after a flush so that the
    /// manifest never claims more than the disk holds.
    fn write_manifest(&mut self) {
        self.manifest_written = std::time::Instant::now();
        match self.db.flush() {
            Ok(_) => manifest::write(&self.dir, &self.last_seq),
            Err(err) => error!(error = %err, "flushing the store for its manifest failed"),
        }
    }

    /// Reports durable messages to the commit listener, before their publishers get their
    /// receipts.
    fn report_committed(&self, appended: &[(u32, u64, NewMessage)]) {
        let Some(listener) = self.listener.get() else {
            return;
        };
        let names: HashMap<u32, String> = {
            let catalog = self.read_catalog();
            catalog
                .topics
                .values()
                .map(|t| (t.id, t.name.clone()))
                .collect()
        };
        let committed: Vec<Committed<'_>> = appended
            .iter()
            .filter_map(|(topic, seq, message)| {
                Some(Committed {
                    topic: names.get(topic)?,
                    seq: *seq,
                    message,
                })
            })
            .collect();
        listener.committed(&committed);
    }

    /// Runs a write that must not share a batch with others, and answers it.
    fn run_exclusive(&mut self, write: Write) {
        match write {
            Write::CreateTopic { name, reply } => {
                let _ = reply.send(self.create_topic(name));
            }
            Write::CreateSubscription { spec, reply } => {
                let _ = reply.send(self.create_subscription(spec));
            }
            Write::UpdateTopic {
                name,
                settings,
                reply,
            } => {
                let _ = reply.send(self.update_topic(&name, settings));
            }
            Write::CreateSnapshot {
                name,
                subscription,
                now,
                reply,
            } => {
                let _ = reply.send(self.create_snapshot(name, &subscription, now));
            }
            Write::DeleteSnapshot { name, reply } => {
                let _ = reply.send(self.delete_snapshot(&name, SystemTime::now()));
            }
            Write::Seek {
                subscription,
                target,
                now,
                reply,
            } => {
                let _ = reply.send(self.seek(&subscription, &target, now));
            }
            Write::Sweep { now, reply } => {
                let _ = reply.send(self.sweep(now));
            }
            Write::DeleteSubscription { name, now, reply } => {
                let _ = reply.send(self.delete_subscription(&name, now));
            }
            Write::DeleteTopic { name, reply } => {
                let _ = reply.send(self.delete_topic(&name));
            }
            other => self.commit(vec![other]),
        }
        self.payloads.collect(&self.db, &self.data);
    }

    /// Applies a batch and flushes it.
    fn apply_durably(&self, batch: sled::Batch) -> Result<(), StoreError> {
        self.data.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn save(&self, key: String, value: &impl serde::Serialize) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|err| keys::corrupt(key.as_bytes(), err.to_string()))?;
        self.catalog_tree.insert(key.as_bytes(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    fn create_topic(&self, name: String) -> Result<TopicRecord, StoreError> {
        if let Some(topic) = self.read_catalog().topics.get(&name) {
            return Ok(topic.clone());
        }
        let topic = TopicRecord {
            id: self.read_catalog().next_topic_id(),
            name,
            settings: TopicSettings::default(),
        };
        self.save(format!("t/{}", topic.name), &topic)?;
        self.write_catalog()
            .topics
            .insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    fn create_subscription(
        &mut self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError> {
        let topic_id = self
            .read_catalog()
            .topics
            .get(&spec.topic)
            .map(|t| t.id)
            .ok_or_else(|| StoreError::TopicNotFound(spec.topic.clone()))?;
        let existing = self.read_catalog().subscriptions.get(&spec.name).cloned();
        let record = match existing {
            Some(existing) if existing.spec == spec => return Ok(existing),
            Some(existing) => {
                check_fixed_settings(&existing.spec, &spec)?;
                SubscriptionRecord { spec, ..existing }
            }
            None => SubscriptionRecord {
                id: self.read_catalog().next_subscription_id(),
                topic_id,
                spec,
                first_seq: self.last_seq.get(&topic_id).copied().unwrap_or(0) + 1,
            },
        };
        let filter = parse_filter(&record.spec)?;
        self.save(format!("s/{}", record.spec.name), &record)?;
        // A changed retention can free messages that the sweep already passed.
        self.sweep_from.remove(&topic_id);
        self.rescan.insert(topic_id);
        self.write_catalog()
            .insert_subscription(record.clone(), filter);
        Ok(record)
    }
}
