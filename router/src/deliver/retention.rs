//! Message retention, snapshots and seek on the broker: the store changes the pending sets,
//! and the broker brings each subscription's queue in line and counts what expired.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tracing::{info, warn};

use super::queue::QueueState;
use super::{read, Broker, BrokerError, Subscription};
use crate::store::{SeekTarget, SnapshotRecord, StoreError, TopicRecord, TopicSettings};

impl Broker {
    /// Returns the broker's wall clock: the system time, advanced with tokio's clock so that
    /// tests with a paused clock can move it.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Changes the settings of a topic.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::update_topic`](crate::store::Store::update_topic) does.
    pub async fn update_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicRecord, StoreError> {
        self.store.update_topic(name, settings).await
    }

    /// Takes a snapshot of a subscription's acknowledgement state.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::create_snapshot`](crate::store::Store::create_snapshot) does.
    pub async fn create_snapshot(
        &self,
        name: &str,
        subscription: &str,
    ) -> Result<SnapshotRecord, StoreError> {
        let snapshot = self
            .store
            .create_snapshot(name, subscription, self.now())
            .await?;
        info!(snapshot = %snapshot.name, subscription, unacked = snapshot.unacked, "snapshot created");
        Ok(snapshot)
    }

    /// Returns the snapshots, ordered by name.
    pub fn snapshots(&self) -> Vec<SnapshotRecord> {
        self.store.snapshots()
    }

    /// Deletes a snapshot.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::delete_snapshot`](crate::store::Store::delete_snapshot) does.
    pub async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        self.store.delete_snapshot(name).await?;
        info!(snapshot = name, "snapshot deleted");
        Ok(())
    }

    /// Moves a subscription to a time or a snapshot, and rebuilds its queue from the new
    /// pending set. Leases outstanding at the seek end: their messages are ready again if
    /// they are still unacknowledged, and acknowledging one of them through an old ack id
    /// acknowledges the message.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription or snapshot, a snapshot of another topic, or a
    /// store failure.
    pub async fn seek(&self, name: &str, target: SeekTarget) -> Result<(), BrokerError> {
        if let Some(shared) = &self.shared {
            self.store.seek(name, target.clone(), self.now()).await?;
            shared.forget(name);
            info!(subscription = name, target = ?target, "subscription sought");
            return Ok(());
        }
        let subscription = self.subscription(name)?;
        let entries = self.store.seek(name, target.clone(), self.now()).await?;
        self.reload(&subscription)?;
        info!(subscription = name, target = ?target, backlog = entries.len(), "subscription sought");
        Ok(())
    }

    /// Replaces a subscription's queue with its pending set as the store has it now.
    ///
    /// The state lock is held while the store is read. A publish that the store took before
    /// the read is in it, and its later push into the queue changes nothing. A publish after
    /// the read pushes into the new queue.
    fn reload(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let spec = subscription.spec();
        {
            let mut state = subscription.state();
            let mut fresh = QueueState::default();
            self.fill(subscription, &spec, &mut fresh)?;
            *state = fresh;
        }
        subscription.ready.notify_waiters();
        Ok(())
    }

    /// Applies message retention now: removes expired unacknowledged messages from their
    /// subscriptions' queues, counts and logs them, and deletes expired snapshots. Returns
    /// how many unacknowledged messages expired.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot apply it; nothing is then removed from the queues.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let report = self.store.sweep(self.now()).await?;
            total += report.expired.len();
            let mut by_subscription: std::collections::BTreeMap<&str, Vec<(u64, SystemTime)>> =
                std::collections::BTreeMap::new();
            for (name, seq, publish_time) in &report.expired {
                by_subscription
                    .entry(name)
                    .or_default()
                    .push((*seq, *publish_time));
            }
            for (name, messages) in by_subscription {
                let Some(subscription) = read(&self.subscriptions).get(name).cloned() else {
                    continue;
                };
                {
                    let mut state = subscription.state();
                    for (seq, _) in &messages {
                        state.forget(*seq);
                    }
                }
                subscription
                    .counters
                    .retention_expired
                    .fetch_add(messages.len() as u64, Ordering::Relaxed);
                subscription.ready.notify_waiters();
                let (first, first_published) = messages[0];
                let last = messages[messages.len() - 1].0;
                warn!(
                    subscription = name,
                    count = messages.len(),
                    first_message_id = first,
                    last_message_id = last,
                    oldest_publish_time = %super::format_time(first_published),
                    retention_secs = subscription.spec().message_retention_secs,
                    "unacknowledged messages expired: they outlived the subscription's message retention"
                );
            }
            for (topic, count) in &report.unclaimed {
                *super::lock(&self.unclaimed_expired)
                    .entry(topic.clone())
                    .or_default() += count;
                warn!(topic = %topic, count, "messages of a topic without subscriptions expired unread");
            }
            for name in &report.expired_snapshots {
                info!(snapshot = %name, "snapshot expired and was deleted");
            }
            if !report.more {
                return Ok(total);
            }
        }
    }

    /// Returns, per topic without subscriptions, how many messages expired unread since the
    /// process started.
    pub fn unclaimed_expired(&self) -> Vec<(String, u64)> {
        super::lock(&self.unclaimed_expired)
            .iter()
            .map(|(topic, count)| (topic.clone(), *count))
            .collect()
    }
}
