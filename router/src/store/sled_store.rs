//! The embedded store on sled, with group commit.
//!
//! All writes go through one committer thread. It takes every write that is queued, applies
//! them to the `data` tree as one atomic batch, flushes once if any of them needs to be
//! durable, and then answers all of them. While one flush runs, new writes queue up and share
//! the next one, so the cost of an fsync is spread over every publish that arrived meanwhile.
//! Reads go straight to sled from the calling thread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error};

use super::keys;
use super::{
    NewMessage, PendingEntry, Published, Store, StoreError, StoredMessage, SubscriptionRecord,
    SubscriptionSpec, TopicMessage, TopicRecord,
};
use crate::filter::pubsub::SubscriptionFilter;

/// Writes queued for the committer before publishers wait for room.
const WRITE_QUEUE: usize = 4096;
/// Bytes of sled's page cache. With sled's default of 1 GiB, the resident memory grew with
/// the backlog, to 614 MiB at a million pending messages. At 64 MiB it was 155 MiB
/// (docs/benchmarks.md).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
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
        reply: Reply<Published>,
    },
    Flush {
        reply: Reply<()>,
    },
}

/// The sled implementation of [`Store`].
#[derive(Debug, Clone)]
pub struct SledStore {
    data: sled::Tree,
    /// Shared with the committer, which is the only writer.
    catalog: Arc<RwLock<Catalog>>,
    writes: mpsc::Sender<Write>,
}

impl SledStore {
    /// Opens (or creates) the store in `path` and starts its committer thread.
    ///
    /// # Errors
    ///
    /// Fails when sled cannot open the directory or a stored record does not decode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
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
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let committer = Committer {
            db,
            catalog_tree,
            data: data.clone(),
            catalog: catalog.clone(),
            last_seq,
        };
        std::thread::Builder::new()
            .name("sluice-committer".to_owned())
            .spawn(move || committer.run(queue))
            .map_err(|err| StoreError::Database(sled::Error::Io(err)))?;
        Ok(SledStore {
            data,
            catalog,
            writes,
        })
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, StoreError> {
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

    async fn publish(&self, messages: Vec<TopicMessage>) -> Result<Vec<Published>, StoreError> {
        let resolved = messages
            .into_iter()
            .map(|m| Ok((self.topic_id(&m.topic)?, m.message)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.send(|reply| Write::Publish {
            messages: resolved,
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

    fn read(&self, topic: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        let topic_id = self.topic_id(topic)?;
        let key = keys::message(topic_id, seq);
        let Some(bytes) = self.data.get(key)? else {
            return Ok(None);
        };
        let (message, publish_time) = keys::decode_message(&key, &bytes)?;
        Ok(Some(StoredMessage {
            topic: topic.to_owned(),
            seq,
            publish_time,
            message,
        }))
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
    ) -> Result<Published, StoreError> {
        let record = self.subscription(subscription)?;
        let target = self.topic_id(topic)?;
        self.send(|reply| Write::DeadLetter {
            subscription: record.id,
            topic: record.topic_id,
            seq,
            target,
            message,
            reply,
        })
        .await
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
    db: sled::Db,
    catalog_tree: sled::Tree,
    data: sled::Tree,
    catalog: Arc<RwLock<Catalog>>,
    last_seq: HashMap<u32, u64>,
}

/// A reply waiting for its group's batch to be applied and flushed.
enum Outcome {
    Published(Reply<Vec<Published>>, Vec<Published>),
    DeadLettered(Reply<Published>, Published),
    Done(Reply<()>),
}

impl Committer {
    fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        while let Some(first) = queue.blocking_recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(write) => group.push(write),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        if let Err(err) = self.db.flush() {
            error!(error = %err, "final flush of the store failed");
        }
        debug!("store committer stopped");
    }

    fn commit(&mut self, group: Vec<Write>) {
        let mut batch = sled::Batch::default();
        let mut removed = HashSet::new();
        let mut outcomes = Vec::with_capacity(group.len());
        let mut durable = false;
        let now = SystemTime::now();
        for write in group {
            match write {
                Write::CreateTopic { name, reply } => {
                    let _ = reply.send(self.create_topic(name));
                }
                Write::CreateSubscription { spec, reply } => {
                    let _ = reply.send(self.create_subscription(spec));
                }
                Write::Publish { messages, reply } => {
                    let receipts = messages
                        .into_iter()
                        .map(|(topic, message)| self.append(&mut batch, topic, &message, now))
                        .collect();
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
                        self.remove_pending(&mut batch, &mut removed, subscription, topic, seq);
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
                    reply,
                } => {
                    let receipt = self.append(&mut batch, target, &message, now);
                    self.remove_pending(&mut batch, &mut removed, subscription, topic, seq);
                    outcomes.push(Outcome::DeadLettered(reply, receipt));
                    durable = true;
                }
                Write::Flush { reply } => {
                    outcomes.push(Outcome::Done(reply));
                    durable = true;
                }
            }
        }
        let result = self.data.apply_batch(batch).and_then(|()| {
            if durable {
                self.db.flush().map(drop)
            } else {
                Ok(())
            }
        });
        if let Err(err) = &result {
            error!(error = %err, "store write failed");
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

    fn append(
        &mut self,
        batch: &mut sled::Batch,
        topic: u32,
        message: &NewMessage,
        now: SystemTime,
    ) -> Published {
        let seq = self.last_seq.entry(topic).or_insert(0);
        *seq += 1;
        let seq = *seq;
        let (receivers, has_subscriptions) = self.read_catalog().receivers_of(topic, message);
        // A message that every subscription's filter rejected is acknowledged by all of them
        // at once, so it is not kept. A topic without subscriptions keeps its messages.
        if !receivers.is_empty() || !has_subscriptions {
            batch.insert(
                &keys::message(topic, seq),
                keys::encode_message(message, now),
            );
        }
        batch.insert(&keys::last_seq(topic), &seq.to_be_bytes());
        for subscription in receivers {
            batch.insert(&keys::pending(subscription, seq), &0u32.to_be_bytes());
        }
        Published {
            seq,
            publish_time: now,
        }
    }

    /// Removes one pending entry, and the message too once no other subscription of its topic
    /// has it pending.
    fn remove_pending(
        &self,
        batch: &mut sled::Batch,
        removed: &mut HashSet<[u8; 13]>,
        subscription: u32,
        topic: u32,
        seq: u64,
    ) {
        let key = keys::pending(subscription, seq);
        batch.remove(&key);
        removed.insert(key);
        let others = self.read_catalog().subscriptions_of(topic);
        let still_pending = others.into_iter().any(|other| {
            let key = keys::pending(other, seq);
            !removed.contains(&key) && self.data.contains_key(key).unwrap_or(true)
        });
        if !still_pending {
            batch.remove(&keys::message(topic, seq));
        }
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
        };
        self.save(format!("t/{}", topic.name), &topic)?;
        self.write_catalog()
            .topics
            .insert(topic.name.clone(), topic.clone());
        Ok(topic)
    }

    fn create_subscription(
        &self,
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
            },
        };
        let filter = parse_filter(&record.spec)?;
        self.save(format!("s/{}", record.spec.name), &record)?;
        self.write_catalog()
            .insert_subscription(record.clone(), filter);
        Ok(record)
    }
}
