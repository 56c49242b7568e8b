//! Deleting subscriptions and topics. Each runs alone in the committer, because it rewrites
//! the catalog and removes whole key ranges.

use std::collections::HashSet;
use std::time::SystemTime;

use tracing::info;

use super::{keys, Committer};
use crate::store::{StoreError, DELETED_TOPIC};

impl Committer {
    pub(super) fn delete_subscription(
        &mut self,
        name: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let record = self
            .read_catalog()
            .subscriptions
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::SubscriptionNotFound(name.to_owned()))?;
        let pending: Vec<u64> = self
            .data
            .scan_prefix(keys::pending_prefix(record.id))
            .keys()
            .map(|key| keys::seq_of(&key?))
            .collect::<Result<_, _>>()?;
        // The record goes first, so that a crash in between leaves pending entries of an
        // unknown subscription, which nothing reads, rather than a subscription that lost
        // its messages.
        self.catalog_tree.remove(format!("s/{name}").as_bytes())?;
        self.db.flush()?;
        {
            let mut catalog = self.write_catalog();
            catalog.subscriptions.remove(name);
            catalog.filters.remove(&record.id);
        }
        let (orphaned, retains) = {
            let catalog = self.read_catalog();
            let orphaned = catalog.subscriptions_of(record.topic_id).is_empty();
            (orphaned, catalog.retains_acked(record.topic_id))
        };
        let mut batch = sled::Batch::default();
        let mut removed = HashSet::new();
        for &seq in &pending {
            if orphaned && !retains {
                // No subscription is left to need the message. The default retention of a
                // topic without subscriptions is for messages published while nobody
                // listened, not for a backlog the operator deleted.
                batch.remove(&keys::pending(record.id, seq));
                self.remove_message(&mut batch, record.topic_id, seq);
            } else {
                self.remove_pending(
                    &mut batch,
                    &mut removed,
                    (record.id, record.topic_id, seq),
                    now,
                );
            }
        }
        self.apply_durably(batch)?;
        self.rescan.insert(record.topic_id);
        info!(
            subscription = name,
            pending = pending.len(),
            "subscription deleted"
        );
        Ok(())
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<(), StoreError> {
        let topic = self
            .read_catalog()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))?;
        let (detached, snapshots) = {
            let catalog = self.read_catalog();
            let detached: Vec<_> = catalog
                .subscriptions
                .values()
                .filter(|s| s.topic_id == topic.id)
                .cloned()
                .collect();
            let snapshots: Vec<_> = catalog
                .snapshots
                .values()
                .filter(|n| n.topic == name)
                .cloned()
                .collect();
            (detached, snapshots)
        };

        let mut batch = sled::Batch::default();
        for subscription in &detached {
            for key in self
                .data
                .scan_prefix(keys::pending_prefix(subscription.id))
                .keys()
            {
                batch.remove(key?);
            }
        }
        for snapshot in &snapshots {
            for key in self
                .data
                .scan_prefix(keys::snapshot_prefix(snapshot.id))
                .keys()
            {
                batch.remove(key?);
            }
        }
        for key in self.data.scan_prefix(keys::message_prefix(topic.id)).keys() {
            self.remove_message(&mut batch, topic.id, keys::seq_of(&key?)?);
        }
        // The topic's last sequence number stays, so that a topic given the same id later
        // continues its numbering instead of reusing message ids.

        for subscription in &detached {
            let mut record = subscription.clone();
            record.spec.topic = DELETED_TOPIC.to_owned();
            record.topic_id = 0;
            self.save(format!("s/{}", record.spec.name), &record)?;
            self.write_catalog()
                .subscriptions
                .insert(record.spec.name.clone(), record);
        }
        for snapshot in &snapshots {
            self.catalog_tree
                .remove(format!("n/{}", snapshot.name).as_bytes())?;
            self.write_catalog().snapshots.remove(&snapshot.name);
        }
        self.catalog_tree.remove(format!("t/{name}").as_bytes())?;
        self.db.flush()?;
        self.write_catalog().topics.remove(name);
        self.apply_durably(batch)?;
        self.sweep_from.remove(&topic.id);
        info!(
            topic = name,
            detached = detached.len(),
            snapshots = snapshots.len(),
            "topic deleted"
        );
        Ok(())
    }
}
