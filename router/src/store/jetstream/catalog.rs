//! The catalog of topics and subscriptions in a JetStream key-value bucket, with an
//! in-memory copy that a watch keeps current, so that every node sees the topics and
//! subscriptions that any node creates.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use super::{failed, stream_not_created, JetStreamOptions};
use crate::kv_key;
use crate::store::{StoreError, SubscriptionRecord, TopicRecord};

/// The key-value bucket that holds the catalog.
pub(super) const CATALOG_BUCKET: &str = "sluice_catalog";
/// The key whose value is the last id given to a topic or subscription.
const LAST_ID_KEY: &str = "last_id";
const TOPIC_PREFIX: &str = "topic.";
const SUBSCRIPTION_PREFIX: &str = "subscription.";

/// One catalog entry as the node last saw it: the key-value revision that wrote it, and the
/// record, or `None` after a delete.
type Versioned<T> = (u64, Option<T>);

/// The node's copy of the catalog, by name.
#[derive(Debug, Default)]
pub(super) struct CatalogCache {
    topics: BTreeMap<String, Versioned<TopicRecord>>,
    subscriptions: BTreeMap<String, Versioned<SubscriptionRecord>>,
}

impl CatalogCache {
    pub(super) fn topic(&self, name: &str) -> Option<TopicRecord> {
        self.topics.get(name).and_then(|(_, record)| record.clone())
    }

    pub(super) fn subscription(&self, name: &str) -> Option<SubscriptionRecord> {
        self.subscriptions
            .get(name)
            .and_then(|(_, record)| record.clone())
    }

    pub(super) fn topics(&self) -> Vec<TopicRecord> {
        self.topics
            .values()
            .filter_map(|(_, record)| record.clone())
            .collect()
    }

    pub(super) fn subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.subscriptions
            .values()
            .filter_map(|(_, record)| record.clone())
            .collect()
    }

    /// Applies one key-value entry, unless the cache already holds a later revision of it:
    /// the initial listing and the watch can see the same key in either order.
    fn apply(&mut self, entry: &kv::Entry) {
        let deleted = !matches!(entry.operation, kv::Operation::Put);
        if let Some(hex) = entry.key.strip_prefix(TOPIC_PREFIX) {
            apply_versioned(&mut self.topics, hex, entry, deleted);
        } else if let Some(hex) = entry.key.strip_prefix(SUBSCRIPTION_PREFIX) {
            apply_versioned(&mut self.subscriptions, hex, entry, deleted);
        }
    }
}

fn apply_versioned<T: DeserializeOwned>(
    map: &mut BTreeMap<String, Versioned<T>>,
    hex: &str,
    entry: &kv::Entry,
    deleted: bool,
) {
    let Some(name) = kv_key::decode(hex) else {
        warn!(key = %entry.key, "catalog key with an invalid name ignored");
        return;
    };
    if map
        .get(&name)
        .is_some_and(|(revision, _)| *revision >= entry.revision)
    {
        return;
    }
    let record = if deleted {
        None
    } else {
        match serde_json::from_slice(&entry.value) {
            Ok(record) => Some(record),
            Err(err) => {
                warn!(key = %entry.key, error = %err, "catalog record that does not decode ignored");
                return;
            }
        }
    };
    map.insert(name, (entry.revision, record));
}

/// The catalog bucket and the node's copy of it.
#[derive(Debug, Clone)]
pub(super) struct Catalog {
    bucket: kv::Store,
    cache: Arc<RwLock<CatalogCache>>,
}

impl Catalog {
    /// Opens the catalog bucket, creating it when missing, loads it and starts the watch
    /// that keeps the copy current. The watch ends when the catalog is dropped.
    pub(super) async fn open(
        jetstream: &async_nats::jetstream::Context,
        options: &JetStreamOptions,
    ) -> Result<Self, StoreError> {
        let bucket = match jetstream.get_key_value(CATALOG_BUCKET).await {
            Ok(bucket) => bucket,
            Err(_) => {
                create_kv_stream(
                    jetstream,
                    CATALOG_BUCKET,
                    "sluice topics and subscriptions",
                    options.replicas,
                )
                .await?;
                jetstream
                    .get_key_value(CATALOG_BUCKET)
                    .await
                    .map_err(|err| failed("open the catalog bucket", err))?
            }
        };
        let cache = Arc::new(RwLock::new(CatalogCache::default()));
        // The watch starts before the listing, so that a change made between the two is
        // seen by one of them; revisions keep the later one.
        let mut watch = bucket
            .watch_all()
            .await
            .map_err(|err| failed("watch the catalog", err))?;
        let weak: Weak<RwLock<CatalogCache>> = Arc::downgrade(&cache);
        tokio::spawn(async move {
            while let Some(entry) = watch.next().await {
                let Some(cache) = weak.upgrade() else {
                    return;
                };
                match entry {
                    Ok(entry) => write(&cache).apply(&entry),
                    Err(err) => warn!(error = %err, "catalog watch failed"),
                }
            }
        });
        let catalog = Catalog { bucket, cache };
        catalog.reload().await?;
        Ok(catalog)
    }

    /// Reads every catalog key into the cache.
    pub(super) async fn reload(&self) -> Result<(), StoreError> {
        let mut keys = self
            .bucket
            .keys()
            .await
            .map_err(|err| failed("list the catalog", err))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|err| failed("list the catalog", err))?);
        }
        for key in names {
            if let Some(entry) = self
                .bucket
                .entry(key)
                .await
                .map_err(|err| failed("read the catalog", err))?
            {
                write(&self.cache).apply(&entry);
            }
        }
        Ok(())
    }

    pub(super) fn cache(&self) -> std::sync::RwLockReadGuard<'_, CatalogCache> {
        self.cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Returns a new id for a topic or subscription, unique across the nodes that share
    /// the bucket.
    pub(super) async fn next_id(&self) -> Result<u32, StoreError> {
        loop {
            let entry = self
                .bucket
                .entry(LAST_ID_KEY)
                .await
                .map_err(|err| failed("read the last catalog id", err))?;
            let written = match entry {
                Some(entry) if matches!(entry.operation, kv::Operation::Put) => {
                    let last: u32 = std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .ok_or_else(|| StoreError::Corrupt {
                            key: LAST_ID_KEY.to_owned(),
                            reason: "the last catalog id is not a number".to_owned(),
                        })?;
                    let next = last + 1;
                    self.bucket
                        .update(LAST_ID_KEY, next.to_string().into(), entry.revision)
                        .await
                        .map(|_| next)
                        .ok()
                }
                _ => self
                    .bucket
                    .create(LAST_ID_KEY, "1".into())
                    .await
                    .map(|_| 1)
                    .ok(),
            };
            // A failed compare-and-set means another node took the id first.
            if let Some(id) = written {
                return Ok(id);
            }
        }
    }

    /// Writes a topic record only if no record of that name exists, and returns the record
    /// that the catalog holds afterwards: `record`, or the one another node wrote first.
    pub(super) async fn create_topic(
        &self,
        record: TopicRecord,
    ) -> Result<TopicRecord, StoreError> {
        let key = topic_key(&record.name);
        if self.bucket.create(&key, encode(&record)?).await.is_ok() {
            self.refresh(&key).await?;
            return Ok(record);
        }
        self.refresh(&key).await?;
        self.cache()
            .topic(&record.name)
            .ok_or_else(|| failed("create the topic record", "the record vanished"))
    }

    /// Writes a subscription record only if no record of that name exists. Returns whether
    /// it was written; either way the cache holds the catalog's record afterwards.
    pub(super) async fn create_subscription(
        &self,
        record: &SubscriptionRecord,
    ) -> Result<bool, StoreError> {
        let key = subscription_key(&record.spec.name);
        let created = self.bucket.create(&key, encode(record)?).await.is_ok();
        self.refresh(&key).await?;
        Ok(created)
    }

    pub(super) async fn put_topic(&self, record: &TopicRecord) -> Result<(), StoreError> {
        self.put(&topic_key(&record.name), encode(record)?).await
    }

    pub(super) async fn put_subscription(
        &self,
        record: &SubscriptionRecord,
    ) -> Result<(), StoreError> {
        self.put(&subscription_key(&record.spec.name), encode(record)?)
            .await
    }

    pub(super) async fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        self.delete(&topic_key(name)).await
    }

    pub(super) async fn delete_subscription(&self, name: &str) -> Result<(), StoreError> {
        self.delete(&subscription_key(name)).await
    }

    async fn put(&self, key: &str, value: bytes::Bytes) -> Result<(), StoreError> {
        self.bucket
            .put(key, value)
            .await
            .map_err(|err| failed("write the catalog", err))?;
        self.refresh(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket
            .delete(key)
            .await
            .map_err(|err| failed("delete from the catalog", err))?;
        self.refresh(key).await
    }

    /// Reads one key into the cache at once, so that this node sees its own write without
    /// waiting for the watch.
    async fn refresh(&self, key: &str) -> Result<(), StoreError> {
        let entry = self
            .bucket
            .entry(key)
            .await
            .map_err(|err| failed("read the catalog", err))?;
        match entry {
            Some(entry) => write(&self.cache).apply(&entry),
            // A deleted key without a marker: drop it from the cache directly.
            None => {
                let mut cache = write(&self.cache);
                if let Some(name) = key.strip_prefix(TOPIC_PREFIX).and_then(kv_key::decode) {
                    cache.topics.remove(&name);
                } else if let Some(name) = key
                    .strip_prefix(SUBSCRIPTION_PREFIX)
                    .and_then(kv_key::decode)
                {
                    cache.subscriptions.remove(&name);
                }
            }
        }
        Ok(())
    }
}

/// Creates the stream behind a key-value bucket, such as the catalog, with the settings
/// that async-nats 0.45 gives a key-value bucket of history 1.
///
/// The client's own `create_key_value` first reads the account information, whose reply
/// from nats-server 2.9 lacks fields that the client requires, so the bucket is made as
/// the stream it is.
pub(crate) async fn create_kv_stream(
    jetstream: &async_nats::jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<(), StoreError> {
    use async_nats::jetstream::stream;
    let name = format!("KV_{bucket}");
    jetstream
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            description: Some(description.to_owned()),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: replicas.max(1),
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|err| stream_not_created(&name, replicas, err))
}

fn write(cache: &RwLock<CatalogCache>) -> std::sync::RwLockWriteGuard<'_, CatalogCache> {
    cache
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn encode<T: Serialize>(record: &T) -> Result<bytes::Bytes, StoreError> {
    serde_json::to_vec(record)
        .map(bytes::Bytes::from)
        .map_err(|err| failed("encode a catalog record", err))
}

/// Returns the key of a topic's record.
fn topic_key(name: &str) -> String {
    format!("{TOPIC_PREFIX}{}", kv_key::encode(name))
}

fn subscription_key(name: &str) -> String {
    format!("{SUBSCRIPTION_PREFIX}{}", kv_key::encode(name))
}
