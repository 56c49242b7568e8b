//! Retention, snapshots and seek for the committer: the writes that read the pending sets
//! and the messages before they change them, so each runs alone.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::debug;

use super::{keys, Committer};
use crate::store::{
    PendingEntry, SeekTarget, SnapshotRecord, StoreError, SubscriptionRecord, SweepReport,
    TopicRecord, TopicSettings, DEFAULT_RETENTION_SECS,
};

/// Maximum number of messages one sweep examines or removes, so that the committer handles
/// other writes between sweeps.
const MAX_SWEEP_STEPS: usize = 50_000;

fn epoch_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Committer {
    pub(super) fn update_topic(
        &mut self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicRecord, StoreError> {
        let mut topic = self
            .read_catalog()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))?;
        topic.settings = settings;
        self.save(format!("t/{name}"), &topic)?;
        self.write_catalog()
            .topics
            .insert(topic.name.clone(), topic.clone());
        // A shorter retention can free messages the sweep already passed.
        self.sweep_from.remove(&topic.id);
        self.rescan.insert(topic.id);
        Ok(topic)
    }

    fn subscription_record(&self, name: &str) -> Result<SubscriptionRecord, StoreError> {
        self.read_catalog()
            .subscriptions
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::SubscriptionNotFound(name.to_owned()))
    }

    /// Reads a subscription's pending set as `seq -> attempts`.
    fn pending_of(&self, subscription: u32) -> Result<BTreeMap<u64, u32>, StoreError> {
        let mut pending = BTreeMap::new();
        for item in self.data.scan_prefix(keys::pending_prefix(subscription)) {
            let (key, value) = item?;
            pending.insert(keys::seq_of(&key)?, keys::decode_u32(&key, &value)?);
        }
        Ok(pending)
    }

    fn publish_time(&self, topic: u32, seq: u64) -> Result<Option<SystemTime>, StoreError> {
        let key = keys::message(topic, seq);
        match self.data.get(key)? {
            Some(bytes) => Ok(Some(keys::decode_publish_time(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    pub(super) fn create_snapshot(
        &mut self,
        name: String,
        subscription: &str,
        now: SystemTime,
    ) -> Result<SnapshotRecord, StoreError> {
        if self.read_catalog().snapshots.contains_key(&name) {
            return Err(StoreError::SnapshotExists(name));
        }
        let source = self.subscription_record(subscription)?;
        let pending = self.pending_of(source.id)?;
        let oldest = match pending.keys().next() {
            Some(&seq) => self.publish_time(source.topic_id, seq)?,
            None => None,
        };
        let lifetime = Duration::from_secs(DEFAULT_RETENTION_SECS);
        let expire = oldest.unwrap_or(now).min(now) + lifetime;
        let id = {
            let catalog = self.read_catalog();
            catalog
                .snapshots
                .values()
                .map(|n| n.id + 1)
                .max()
                .unwrap_or(1)
        };
        let snapshot = SnapshotRecord {
            id,
            name,
            topic: source.spec.topic.clone(),
            subscription: source.spec.name.clone(),
            created_secs: epoch_secs(now),
            expire_secs: epoch_secs(expire),
            next_seq: self.last_seq.get(&source.topic_id).copied().unwrap_or(0) + 1,
            unacked: pending.len() as u64,
        };
        let mut batch = sled::Batch::default();
        // Members left by a snapshot of the same id whose catalog record was never written
        // (a crash between the two writes) must not leak into this one.
        for item in self.data.scan_prefix(keys::snapshot_prefix(id)) {
            batch.remove(item?.0);
        }
        for &seq in pending.keys() {
            batch.insert(&keys::snapshot_member(id, seq), &[]);
        }
        self.apply_durably(batch)?;
        self.save(format!("n/{}", snapshot.name), &snapshot)?;
        self.write_catalog()
            .snapshots
            .insert(snapshot.name.clone(), snapshot.clone());
        debug!(snapshot = %snapshot.name, subscription, unacked = snapshot.unacked, "snapshot created");
        Ok(snapshot)
    }

    pub(super) fn delete_snapshot(
        &mut self,
        name: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let snapshot = self
            .read_catalog()
            .snapshots
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::SnapshotNotFound(name.to_owned()))?;
        self.catalog_tree.remove(format!("n/{name}").as_bytes())?;
        self.db.flush()?;
        self.write_catalog().snapshots.remove(name);
        let topic = self
            .read_catalog()
            .topics
            .get(&snapshot.topic)
            .map(|t| t.id);
        let mut batch = sled::Batch::default();
        let mut members = Vec::new();
        for item in self.data.scan_prefix(keys::snapshot_prefix(snapshot.id)) {
            let (key, _) = item?;
            members.push(keys::seq_of(&key)?);
            batch.remove(key);
        }
        self.data.apply_batch(batch)?;
        if let Some(topic) = topic {
            let mut batch = sled::Batch::default();
            let none = HashSet::new();
            for seq in members {
                if !self.is_needed(&none, topic, seq, now) {
                    self.remove_message(&mut batch, topic, seq);
                }
            }
            self.data.apply_batch(batch)?;
            // The messages it kept from its creation on are left to the next sweep.
            self.sweep_from.remove(&topic);
            self.rescan.insert(topic);
        }
        Ok(())
    }

    pub(super) fn seek(
        &mut self,
        subscription: &str,
        target: &SeekTarget,
        now: SystemTime,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let record = self.subscription_record(subscription)?;
        let current = self.pending_of(record.id)?;
        let unacked = match target {
            SeekTarget::Time(time) => self.seek_time(&record, &current, *time, now)?,
            SeekTarget::Snapshot(name) => self.seek_snapshot(&record, name)?,
        };
        let mut batch = sled::Batch::default();
        let mut removed = HashSet::new();
        let mut entries = Vec::with_capacity(unacked.len());
        for &seq in &unacked {
            let attempts = current.get(&seq).copied().unwrap_or(0);
            if !current.contains_key(&seq) {
                batch.insert(&keys::pending(record.id, seq), &attempts.to_be_bytes());
            }
            entries.push(PendingEntry { seq, attempts });
        }
        for &seq in current.keys().filter(|seq| !unacked.contains(seq)) {
            self.remove_pending(
                &mut batch,
                &mut removed,
                (record.id, record.topic_id, seq),
                now,
            );
        }
        self.apply_durably(batch)?;
        debug!(subscription, target = ?target, before = current.len(), after = entries.len(), "subscription sought");
        Ok(entries)
    }

    /// Returns the messages that are unacknowledged after a seek to `time`: those published
    /// at or after it that are pending now, or that the topic or the subscription retains.
    fn seek_time(
        &self,
        record: &SubscriptionRecord,
        current: &BTreeMap<u64, u32>,
        time: SystemTime,
        now: SystemTime,
    ) -> Result<HashSet<u64>, StoreError> {
        let catalog = self.read_catalog();
        let topic_retention = catalog
            .topics
            .get(&record.spec.topic)
            .and_then(|t| t.settings.message_retention_secs);
        let own_retention = record
            .spec
            .retain_acked_messages
            .then_some(record.spec.message_retention_secs);
        let within =
            |publish_time: SystemTime, secs: u64| publish_time + Duration::from_secs(secs) > now;
        let filter = catalog.filters.get(&record.id);
        let mut unacked = HashSet::new();
        for item in self.data.scan_prefix(keys::message_prefix(record.topic_id)) {
            let (key, bytes) = item?;
            let seq = keys::seq_of(&key)?;
            let decoded = keys::decode_message(&key, &bytes)?;
            let (message, publish_time) = (decoded.message, decoded.publish_time);
            if publish_time < time {
                continue;
            }
            let available = current.contains_key(&seq)
                || topic_retention.is_some_and(|secs| within(publish_time, secs))
                || own_retention
                    .is_some_and(|secs| seq >= record.first_seq && within(publish_time, secs));
            let passes = filter.is_none_or(|filter| filter.matches(&message.attributes));
            if available && passes {
                unacked.insert(seq);
            }
        }
        Ok(unacked)
    }

    /// Returns the messages that are unacknowledged after a seek to a snapshot: those it
    /// recorded as unacknowledged and every message published since it was taken, that are
    /// still stored and pass the subscription's filter.
    fn seek_snapshot(
        &self,
        record: &SubscriptionRecord,
        name: &str,
    ) -> Result<HashSet<u64>, StoreError> {
        let catalog = self.read_catalog();
        let snapshot = catalog
            .snapshots
            .get(name)
            .ok_or_else(|| StoreError::SnapshotNotFound(name.to_owned()))?;
        if snapshot.topic != record.spec.topic {
            return Err(StoreError::SnapshotTopicMismatch {
                snapshot: name.to_owned(),
                snapshot_topic: snapshot.topic.clone(),
                subscription: record.spec.name.clone(),
                topic: record.spec.topic.clone(),
            });
        }
        let filter = catalog.filters.get(&record.id);
        let passes = |key: &[u8], bytes: &[u8]| -> Result<bool, StoreError> {
            let message = keys::decode_message(key, bytes)?.message;
            Ok(filter.is_none_or(|filter| filter.matches(&message.attributes)))
        };
        let mut unacked = HashSet::new();
        for item in self.data.scan_prefix(keys::snapshot_prefix(snapshot.id)) {
            let (member, _) = item?;
            let seq = keys::seq_of(&member)?;
            let key = keys::message(record.topic_id, seq);
            if let Some(bytes) = self.data.get(key)? {
                if passes(&key, &bytes)? {
                    unacked.insert(seq);
                }
            }
        }
        let start = keys::message(record.topic_id, snapshot.next_seq);
        let end = keys::message(record.topic_id, u64::MAX);
        for item in self.data.range(start..=end) {
            let (key, bytes) = item?;
            if passes(&key, &bytes)? {
                unacked.insert(keys::seq_of(&key)?);
            }
        }
        Ok(unacked)
    }

    pub(super) fn sweep(&mut self, now: SystemTime) -> Result<SweepReport, StoreError> {
        let mut report = SweepReport::default();
        let expired: Vec<String> = self
            .read_catalog()
            .snapshots
            .values()
            .filter(|n| n.expire_secs <= epoch_secs(now))
            .map(|n| n.name.clone())
            .collect();
        for name in expired {
            self.delete_snapshot(&name, now)?;
            report.expired_snapshots.push(name);
        }

        let mut batch = sled::Batch::default();
        let mut removed = HashSet::new();
        let mut budget = MAX_SWEEP_STEPS;
        let subscriptions: Vec<SubscriptionRecord> = self
            .read_catalog()
            .subscriptions
            .values()
            .cloned()
            .collect();
        for record in &subscriptions {
            let retention = Duration::from_secs(record.spec.message_retention_secs);
            for item in self.data.scan_prefix(keys::pending_prefix(record.id)) {
                let (key, _) = item?;
                let seq = keys::seq_of(&key)?;
                let Some(publish_time) = self.publish_time(record.topic_id, seq)? else {
                    // An entry whose message is gone can never be delivered.
                    batch.remove(key);
                    continue;
                };
                // Pending entries are in sequence order, which is publish order, so the
                // first one inside the retention ends the scan.
                if publish_time + retention > now {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                budget -= 1;
                self.remove_pending(
                    &mut batch,
                    &mut removed,
                    (record.id, record.topic_id, seq),
                    now,
                );
                report
                    .expired
                    .push((record.spec.name.clone(), seq, publish_time));
            }
        }

        let topics: Vec<TopicRecord> = self.read_catalog().topics.values().cloned().collect();
        for topic in topics {
            let (retains, subscribed, longest) = {
                let catalog = self.read_catalog();
                (
                    catalog.retains_acked(topic.id),
                    catalog
                        .subscriptions
                        .values()
                        .any(|s| s.topic_id == topic.id),
                    catalog.longest_retention(topic.id),
                )
            };
            // A topic that keeps nothing beyond its pending sets loses its messages as they
            // are acknowledged or expire, so there is nothing to look for, unless it kept
            // more before a setting changed.
            if subscribed && !retains && !self.rescan.contains(&topic.id) {
                continue;
            }
            let longest = Duration::from_secs(longest);
            let from = self.sweep_from.get(&topic.id).copied().unwrap_or(0);
            let start = keys::message(topic.id, from);
            let end = keys::message(topic.id, u64::MAX);
            let mut unclaimed = 0;
            let mut next = from;
            for item in self.data.range(start..=end) {
                let (key, bytes) = item?;
                let seq = keys::seq_of(&key)?;
                let publish_time = keys::decode_publish_time(&key, &bytes)?;
                if publish_time + longest > now {
                    break;
                }
                if budget == 0 {
                    report.more = true;
                    break;
                }
                next = seq + 1;
                budget -= 1;
                if self.is_needed(&removed, topic.id, seq, now) {
                    continue;
                }
                self.remove_message(&mut batch, topic.id, seq);
                if subscribed {
                    report.deleted += 1;
                } else {
                    unclaimed += 1;
                }
            }
            self.sweep_from.insert(topic.id, next);
            if !report.more {
                self.rescan.remove(&topic.id);
            }
            if unclaimed > 0 {
                report.unclaimed.push((topic.name.clone(), unclaimed));
            }
        }
        self.apply_durably(batch)?;
        Ok(report)
    }
}
