//! The paths that end a delivery without an acknowledgement: rejects, nacks and expired
//! leases. Each either returns the message to its queue, after the subscription's retry
//! backoff when it has a retry policy, or moves it to the dead-letter topic.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{debug, error, warn, Instrument as _};

use super::subscription::Subscription;
use super::{format_time, parse_ack_ids, read, Broker, BrokerError};
use super::{DEAD_LETTER_REASON_ATTRIBUTE, LEASE_CHECK_INTERVAL, SWEEP_INTERVAL};
use crate::store::{NewMessage, StoredMessage, SubscriptionSpec};
use crate::trace_context;

/// How often a broker over JetStream reads its consumers' statistics.
const SHARED_STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long [`Broker::reject`] holds a lease while it writes the dead-letter copy: the
/// longest ack deadline Pub/Sub allows, far above the time of one store write.
const REJECT_HOLD: std::time::Duration = std::time::Duration::from_secs(600);

impl Broker {
    /// Ends a delivery that its consumer cannot process, ever: the message goes to the
    /// subscription's dead-letter topic now, whatever its attempts, with `reason` in the
    /// [`DEAD_LETTER_REASON_ATTRIBUTE`] attribute of the copy.
    ///
    /// Without a dead-letter policy there is nowhere to keep the message, so it is
    /// acknowledged and the reason is logged at error level. Returns whether the message was
    /// dead-lettered. A delivery that is no longer leased (acknowledged, or expired and
    /// leased again) is left alone and `false` is returned.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription, a malformed ack id or a store failure; the message
    /// then stays pending and is delivered again.
    pub async fn reject(
        &self,
        name: &str,
        ack_id: &str,
        reason: &str,
    ) -> Result<bool, BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.reject(name, ack_id, reason).await;
        }
        let subscription = self.subscription(name)?;
        let [(seq, attempts)] =
            parse_ack_ids(std::slice::from_ref(&ack_id.to_owned()), subscription.tag())?[..]
        else {
            return Err(BrokerError::InvalidAckId(ack_id.to_owned()));
        };
        // The lease is kept, and moved out of the maintenance tick's reach, until the message
        // is dead-lettered or dropped. Releasing it first would leave the message in neither
        // the queue nor the leases for the length of the store write, so the backlog would
        // read 0 while the message is still on its way to the dead-letter topic.
        let hold = Instant::now() + REJECT_HOLD;
        if !subscription.state().extend(seq, attempts, hold) {
            return Ok(false);
        }
        let spec = subscription.spec();
        let Some(policy) = &spec.dead_letter else {
            error!(subscription = %name, message_id = seq, %reason, "message rejected and dropped: the subscription has no dead-letter topic");
            subscription.state().remove(seq);
            subscription.ready.notify_waiters();
            subscription.counters.acked.fetch_add(1, Ordering::Relaxed);
            self.store.ack(name, vec![seq]).await?;
            return Ok(false);
        };
        let Some(original) = self.store.read(&spec.topic, seq)? else {
            subscription.state().remove(seq);
            subscription.ready.notify_waiters();
            return Ok(false);
        };
        let mut message = dead_letter_copy(&original, name, attempts);
        message
            .attributes
            .insert(DEAD_LETTER_REASON_ATTRIBUTE.to_owned(), reason.to_owned());
        let span = trace_context::dead_letter_span(name, &policy.topic, &original, attempts);
        let receipt = match self
            .store
            .dead_letter(name, seq, &policy.topic, message, self.now())
            .instrument(span)
            .await
        {
            Ok(receipt) => receipt,
            Err(err) => {
                // The message stays pending, so offer it again rather than lose it.
                let mut state = subscription.state();
                state.release(seq, attempts);
                state.requeue(seq, attempts, None, Instant::now());
                drop(state);
                subscription.ready.notify_waiters();
                return Err(err.into());
            }
        };
        subscription.state().remove(seq);
        subscription.ready.notify_waiters();
        subscription
            .counters
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        warn!(subscription = %name, message_id = seq, attempts, dead_letter_topic = %policy.topic, %reason, "message rejected and dead-lettered");
        debug!(subscription = %name, dead_letter_id = receipt.seq, "dead-letter copy stored");
        Ok(true)
    }

    /// Returns expired leases of every subscription to their queues, or dead-letters them.
    /// Returns how many leases expired.
    pub async fn expire_leases(&self) -> usize {
        let now = Instant::now();
        let mut total = 0;
        for (name, subscription) in self.all_subscriptions() {
            let expired = subscription.state().expire(now);
            if expired.is_empty() {
                continue;
            }
            total += expired.len();
            subscription
                .counters
                .expired
                .fetch_add(expired.len() as u64, Ordering::Relaxed);
            debug!(subscription = %name, count = expired.len(), "ack deadlines expired");
            if let Err(err) = self.requeue(&name, &subscription, expired).await {
                warn!(subscription = %name, error = %err, "returning expired leases failed");
            }
        }
        total
    }

    /// Makes the delayed messages of every subscription whose retry backoff has ended ready
    /// for delivery, and wakes the pulls waiting for them. Returns how many became ready.
    ///
    /// Pulls also do this themselves, so this only keeps the ready counts current between
    /// pulls.
    pub fn promote_delayed(&self) -> usize {
        let now = Instant::now();
        let mut total = 0;
        for (_, subscription) in self.all_subscriptions() {
            let promoted = subscription.state().promote(now);
            if promoted > 0 {
                total += promoted;
                subscription.ready.notify_waiters();
            }
        }
        total
    }

    fn all_subscriptions(&self) -> Vec<(String, Arc<Subscription>)> {
        read(&self.subscriptions)
            .iter()
            .map(|(name, s)| (name.clone(), s.clone()))
            .collect()
    }

    /// Returns released messages to the queue, or dead-letters those that used up their
    /// attempts. With a retry policy, a message released after its delivery `n` becomes
    /// ready again only after the backoff for `n` (see
    /// [`SubscriptionSpec::redelivery_delay`](crate::store::SubscriptionSpec::redelivery_delay)).
    /// Without one, it is ready at once.
    pub(super) async fn requeue(
        &self,
        name: &str,
        subscription: &Subscription,
        released: Vec<(u64, u32)>,
    ) -> Result<(), BrokerError> {
        self.requeue_with(name, subscription, released, false).await
    }

    /// [`Broker::requeue`], with the delays of a consumer that runs in the server when
    /// `from_server` is set (see `SubscriptionSpec::server_redelivery_delay`).
    pub(super) async fn requeue_with(
        &self,
        name: &str,
        subscription: &Subscription,
        released: Vec<(u64, u32)>,
        from_server: bool,
    ) -> Result<(), BrokerError> {
        if released.is_empty() {
            return Ok(());
        }
        let spec = subscription.spec();
        let mut again = Vec::new();
        for (seq, attempts) in released {
            match &spec.dead_letter {
                Some(policy) if attempts >= policy.max_delivery_attempts => {
                    if let Err(err) = self
                        .dead_letter(name, subscription, &spec, seq, attempts)
                        .await
                    {
                        // The message stays pending, so nothing is lost and it is offered again.
                        warn!(subscription = %name, seq, error = %err, "dead-lettering failed");
                        again.push((seq, attempts));
                    }
                }
                _ => again.push((seq, attempts)),
            }
        }
        let now = Instant::now();
        {
            let mut state = subscription.state();
            for (seq, attempts) in again {
                let backoff = if from_server {
                    spec.server_redelivery_delay(attempts, seq)
                } else {
                    spec.redelivery_delay(attempts, seq)
                };
                if let Some(backoff) = backoff {
                    debug!(subscription = %name, message_id = seq, attempts, backoff_ms = backoff.as_millis() as u64, "redelivery delayed");
                }
                state.requeue(seq, attempts, backoff.map(|backoff| now + backoff), now);
            }
        }
        subscription.ready.notify_waiters();
        Ok(())
    }

    async fn dead_letter(
        &self,
        name: &str,
        subscription: &Subscription,
        spec: &SubscriptionSpec,
        seq: u64,
        attempts: u32,
    ) -> Result<(), BrokerError> {
        let Some(policy) = &spec.dead_letter else {
            return Ok(());
        };
        let Some(original) = self.store.read(&spec.topic, seq)? else {
            subscription.state().remove(seq);
            return Ok(());
        };
        let message = dead_letter_copy(&original, name, attempts);
        let span = trace_context::dead_letter_span(name, &policy.topic, &original, attempts);
        let receipt = self
            .store
            .dead_letter(name, seq, &policy.topic, message, self.now())
            .instrument(span)
            .await?;
        // Removing the message unblocks the next message of its ordering key; the caller
        // wakes the waiting pulls.
        subscription.state().remove(seq);
        subscription
            .counters
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        warn!(subscription = %name, message_id = seq, attempts, dead_letter_topic = %policy.topic, "message dead-lettered");
        debug!(subscription = %name, dead_letter_id = receipt.seq, "dead-letter copy stored");
        Ok(())
    }

    /// Expires leases and ends finished retry backoffs every [`LEASE_CHECK_INTERVAL`], and
    /// applies message retention every [`SWEEP_INTERVAL`], until `shutdown` completes.
    pub async fn run_maintenance(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        if let Some(shared) = &self.shared {
            // JetStream expires leases and applies retention itself; the broker only keeps
            // its statistics current.
            let mut interval = tokio::time::interval(SHARED_STATS_INTERVAL);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = interval.tick() => shared.refresh_stats().await,
                }
            }
        }
        let mut interval = tokio::time::interval(LEASE_CHECK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = interval.tick() => {
                    self.expire_leases().await;
                    self.promote_delayed();
                }
                _ = sweeps.tick() => {
                    if let Err(err) = self.sweep().await {
                        warn!(error = %err, "applying message retention failed; retrying at the next sweep");
                    }
                }
            }
        }
    }
}

/// Builds the copy of a message that goes to a dead-letter topic: the same data, attributes
/// and ordering key, plus the attributes Pub/Sub adds to dead-lettered messages.
pub(super) fn dead_letter_copy(
    original: &StoredMessage,
    subscription: &str,
    attempts: u32,
) -> NewMessage {
    let mut message = original.message.clone();
    let attributes = &mut message.attributes;
    attributes.insert(
        "CloudPubSubDeadLetterSourceDeliveryCount".to_owned(),
        attempts.to_string(),
    );
    attributes.insert(
        "CloudPubSubDeadLetterSourceSubscription".to_owned(),
        subscription.to_owned(),
    );
    attributes.insert(
        "CloudPubSubDeadLetterSourceSubscriptionProject".to_owned(),
        "local".to_owned(),
    );
    attributes.insert(
        "CloudPubSubDeadLetterSourceTopicPublishTime".to_owned(),
        format_time(original.publish_time),
    );
    message
}
