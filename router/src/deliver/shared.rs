//! Delivery through JetStream consumers, for brokers that share a [`JetStreamStore`] with
//! other nodes.
//!
//! Leases live on the servers: a pull fetches from the subscription's durable consumer, the
//! ack id is the JetStream acknowledgement subject of the delivery, and the consumer's ack
//! wait is the ack deadline. So any node can acknowledge, extend or nack a delivery that
//! another node handed out, and the leases of a node that dies expire on the servers and
//! go to the consumers of the other nodes. This node keeps only counters and the last
//! consumer statistics it read.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::Message;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{debug, error, warn, Instrument as _};

use super::redeliver::dead_letter_copy;
use super::{
    flow, lock, BrokerError, Delivery, SubscriptionCounters, SubscriptionStats,
    DEAD_LETTER_REASON_ATTRIBUTE,
};
use crate::filter::pubsub::SubscriptionFilter;
use crate::store::jetstream::{decode_message, AckSubject, JetStreamStore};
use crate::store::{
    Store, StoreError, StoredMessage, SubscriptionRecord, TopicMessage, DELETED_TOPIC,
};
use crate::trace_context;

/// Shortest wait a pull request asks the servers for; a shorter remaining wait ends the
/// pull instead.
const MIN_SERVER_WAIT: Duration = Duration::from_millis(10);

/// How long a fetch may take beyond the wait it asked the servers for.
const FETCH_GRACE: Duration = Duration::from_secs(5);

/// How long an acknowledgement waits for the server's confirmation.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Delivery state of a broker over JetStream.
#[derive(Debug)]
pub(super) struct SharedDelivery {
    store: Arc<JetStreamStore>,
    /// Consumers and filters by subscription name, built on first use and rebuilt when the
    /// catalog record changes.
    subscriptions: Mutex<HashMap<String, Arc<SharedSubscription>>>,
    /// Counters by subscription name; they outlive a rebuilt consumer.
    counters: Mutex<HashMap<String, Arc<SubscriptionCounters>>>,
    /// The last backlog and outstanding count read from each consumer, for the synchronous
    /// [`SharedDelivery::stats`].
    consumer_stats: Mutex<HashMap<String, (u64, u64)>>,
}

/// One subscription's consumer, as of one catalog record.
#[derive(Debug)]
struct SharedSubscription {
    record: SubscriptionRecord,
    filter: Option<SubscriptionFilter>,
    /// `None` once the topic is deleted: the subscription then receives nothing.
    consumer: Option<PullConsumer>,
    stream_name: String,
    consumer_name: String,
}

impl SharedDelivery {
    pub(super) fn new(store: Arc<JetStreamStore>) -> Self {
        SharedDelivery {
            store,
            subscriptions: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            consumer_stats: Mutex::new(HashMap::new()),
        }
    }

    fn counters(&self, name: &str) -> Arc<SubscriptionCounters> {
        lock(&self.counters)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    async fn subscription(&self, name: &str) -> Result<Arc<SharedSubscription>, BrokerError> {
        let record = self
            .store
            .subscription(name)
            .ok_or_else(|| BrokerError::SubscriptionNotFound(name.to_owned()))?;
        if let Some(cached) = lock(&self.subscriptions).get(name) {
            if cached.record == record {
                return Ok(cached.clone());
            }
        }
        let filter = SubscriptionFilter::parse(&record.spec.filter).map_err(|error| {
            StoreError::InvalidFilter {
                name: name.to_owned(),
                error,
            }
        })?;
        let consumer = if record.spec.topic == DELETED_TOPIC {
            None
        } else {
            Some(self.store.consumer(&record).await?)
        };
        let (stream_name, consumer_name) = self.store.consumer_names(&record);
        let subscription = Arc::new(SharedSubscription {
            filter: filter.expression().is_some().then_some(filter),
            consumer,
            stream_name,
            consumer_name,
            record,
        });
        lock(&self.subscriptions).insert(name.to_owned(), subscription.clone());
        Ok(subscription)
    }

    /// Forgets the cached consumer of a subscription, after it was deleted or replaced.
    pub(super) fn forget(&self, name: &str) {
        lock(&self.subscriptions).remove(name);
    }

    /// Leases up to `max` messages within `max_bytes`, waiting up to `wait` for the first.
    pub(super) async fn pull(
        &self,
        name: &str,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        // A pull request sent while the connection is lost gets no response, so the pull
        // fails at once instead.
        self.store.check_connected()?;
        let subscription = self.subscription(name).await?;
        let Some(consumer) = &subscription.consumer else {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        };
        let give_up = Instant::now() + wait;
        loop {
            let remaining = give_up.saturating_duration_since(Instant::now());
            // An ordered subscription's consumer has one delivery outstanding at a time.
            // Asking nats-server 2.9 for more made it hand out that one message again and
            // again within the same pull, each time counting an attempt.
            let batch = if subscription.record.spec.enable_message_ordering {
                1
            } else {
                max.max(1)
            };
            // A connection lost during the fetch leaves it without a response, and a fetch
            // without a wait has no timeout of its own.
            let fetching = fetch(consumer, batch, remaining);
            let Ok(fetched) = tokio::time::timeout(remaining + FETCH_GRACE, fetching).await else {
                self.store.check_connected()?;
                return Ok(Vec::new());
            };
            let fetched = fetched?;
            let deliveries = self
                .settle_fetched(name, &subscription, fetched, max_bytes)
                .await;
            if !deliveries.is_empty() || Instant::now() + MIN_SERVER_WAIT >= give_up {
                return Ok(deliveries);
            }
        }
    }

    /// Turns fetched messages into deliveries, dead-lettering those past their last attempt
    /// and acknowledging those the filter rejects.
    async fn settle_fetched(
        &self,
        name: &str,
        subscription: &SharedSubscription,
        fetched: Vec<Message>,
        max_bytes: usize,
    ) -> Vec<Delivery> {
        let counters = self.counters(name);
        let spec = &subscription.record.spec;
        let mut deliveries = Vec::with_capacity(fetched.len());
        let mut bytes = 0;
        let mut seen = std::collections::HashSet::new();
        for message in fetched {
            let Some(ack_id) = message.reply.as_ref().map(|reply| reply.to_string()) else {
                continue;
            };
            let Some(ack) = AckSubject::parse(&ack_id) else {
                warn!(subscription = %name, ack_id = %ack_id, "message without an acknowledgement subject skipped");
                continue;
            };
            if !seen.insert(ack.stream_seq) {
                // The same message twice in one pull; the first delivery stands.
                continue;
            }
            let stored = match decode_message(&spec.topic, ack.stream_seq, &message.payload) {
                Ok(stored) => stored,
                Err(err) => {
                    error!(subscription = %name, message_id = ack.stream_seq, error = %err, "unreadable message removed from the subscription");
                    counters.unreadable.fetch_add(1, Ordering::Relaxed);
                    settle(&message, AckKind::Term).await;
                    continue;
                }
            };
            // NOTE: the attempt is the consumer's delivery count of this stream message. A
            // message published twice, such as after a retried publish, counts each copy on
            // its own, so the second copy starts again at 1.
            if let Some(policy) = &spec.dead_letter {
                if ack.delivered > policy.max_delivery_attempts {
                    let attempts = ack.delivered - 1;
                    self.dead_letter(name, &message, &stored, attempts, None)
                        .await;
                    continue;
                }
            }
            let accepted = subscription
                .filter
                .as_ref()
                .is_none_or(|filter| filter.matches(&stored.message.attributes));
            if !accepted {
                counters.filtered_out.fetch_add(1, Ordering::Relaxed);
                settle(&message, AckKind::Ack).await;
                continue;
            }
            let size = flow::message_bytes(&stored.message);
            if !deliveries.is_empty() && bytes + size > max_bytes {
                // NOTE: JetStream counts this return as a delivery attempt, unlike the
                // embedded store.
                settle(&message, AckKind::Nak(None)).await;
                continue;
            }
            bytes += size;
            counters.delivered.fetch_add(1, Ordering::Relaxed);
            debug!(subscription = %name, message_id = ack.stream_seq, attempt = ack.delivered, "message delivered");
            deliveries.push(Delivery {
                delivery_attempt: if spec.dead_letter.is_some() {
                    ack.delivered
                } else {
                    0
                },
                ack_id,
                message: stored,
            });
        }
        deliveries
    }

    /// Publishes a copy of a message to the dead-letter topic and ends its delivery for
    /// good. Returns whether the copy was written; if not, the message stays pending and is
    /// delivered again after the ack deadline.
    async fn dead_letter(
        &self,
        name: &str,
        acker: &impl Settle,
        original: &StoredMessage,
        attempts: u32,
        reason: Option<&str>,
    ) -> bool {
        let Some(spec) = self.store.subscription(name).map(|record| record.spec) else {
            return false;
        };
        let Some(policy) = &spec.dead_letter else {
            return false;
        };
        let mut copy = dead_letter_copy(original, name, attempts);
        if let Some(reason) = reason {
            copy.attributes
                .insert(DEAD_LETTER_REASON_ATTRIBUTE.to_owned(), reason.to_owned());
        }
        let span = trace_context::dead_letter_span(name, &policy.topic, original, attempts);
        let published = self
            .store
            .publish(
                vec![TopicMessage {
                    topic: policy.topic.clone(),
                    message: copy,
                }],
                std::time::SystemTime::now(),
            )
            .instrument(span)
            .await;
        if let Err(err) = published {
            warn!(subscription = %name, message_id = original.seq, error = %err, "dead-lettering failed");
            return false;
        }
        acker.settle(AckKind::Term).await;
        self.counters(name)
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        warn!(subscription = %name, message_id = original.seq, attempts, dead_letter_topic = %policy.topic, "message dead-lettered");
        true
    }

    /// Reads ack ids and checks that this subscription's consumer issued them.
    async fn parse_ack_ids<'a>(
        &self,
        name: &str,
        ack_ids: &'a [String],
    ) -> Result<Vec<(&'a str, AckSubject<'a>)>, BrokerError> {
        let subscription = self.subscription(name).await?;
        ack_ids
            .iter()
            .map(|id| match AckSubject::parse(id) {
                Some(ack)
                    if ack.stream == subscription.stream_name
                        && ack.consumer == subscription.consumer_name =>
                {
                    Ok((id.as_str(), ack))
                }
                _ => Err(BrokerError::InvalidAckId(id.clone())),
            })
            .collect()
    }

    pub(super) async fn ack(&self, name: &str, ack_ids: &[String]) -> Result<(), BrokerError> {
        let parsed = self.parse_ack_ids(name, ack_ids).await?;
        let acks = parsed.iter().map(|(id, _)| async move {
            let acker = self.acker(id);
            tokio::time::timeout(ACK_TIMEOUT, acker.double_ack()).await
        });
        let results = futures::future::join_all(acks).await;
        let failed = results
            .iter()
            .filter(|result| !matches!(result, Ok(Ok(()))))
            .count();
        let counters = self.counters(name);
        counters
            .acked
            .fetch_add((results.len() - failed) as u64, Ordering::Relaxed);
        if failed > 0 {
            // The messages stay pending and are delivered again, which at-least-once
            // delivery allows, so the caller is not failed for it.
            warn!(subscription = %name, failed, "acknowledgements not confirmed by JetStream");
        }
        Ok(())
    }

    /// Nacks deliveries, with the delays of a consumer that runs in the server when
    /// `from_server` is set (see `SubscriptionSpec::server_redelivery_delay`).
    pub(super) async fn nack(
        &self,
        name: &str,
        ack_ids: &[String],
        from_server: bool,
    ) -> Result<(), BrokerError> {
        let parsed = self.parse_ack_ids(name, ack_ids).await?;
        let spec = self.store.subscription(name).map(|record| record.spec);
        for (id, ack) in &parsed {
            let delay = spec.as_ref().and_then(|spec| {
                if from_server {
                    spec.server_redelivery_delay(ack.delivered, ack.stream_seq)
                } else {
                    spec.redelivery_delay(ack.delivered, ack.stream_seq)
                }
            });
            if let Err(err) = self.acker(id).ack_with(AckKind::Nak(delay)).await {
                warn!(subscription = %name, error = %err, "nack not sent to JetStream");
            }
        }
        self.counters(name)
            .nacked
            .fetch_add(parsed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub(super) async fn modify_ack_deadline(
        &self,
        name: &str,
        ack_ids: &[String],
        seconds: u32,
    ) -> Result<(), BrokerError> {
        if seconds == 0 {
            return self.nack(name, ack_ids, false).await;
        }
        let parsed = self.parse_ack_ids(name, ack_ids).await?;
        for (id, _) in &parsed {
            // NOTE: JetStream extends a lease by the consumer's ack wait (the subscription's
            // ack deadline), whatever `seconds` asks for.
            if let Err(err) = self.acker(id).ack_with(AckKind::Progress).await {
                warn!(subscription = %name, error = %err, "deadline change not sent to JetStream");
            }
        }
        Ok(())
    }

    /// Returns deliveries that never reached the consumer, ready again at once.
    pub(super) async fn return_unsent(
        &self,
        name: &str,
        ack_ids: &[String],
    ) -> Result<(), BrokerError> {
        let parsed = self.parse_ack_ids(name, ack_ids).await?;
        for (id, _) in &parsed {
            // NOTE: JetStream counts the returned delivery as an attempt.
            if let Err(err) = self.acker(id).ack_with(AckKind::Nak(None)).await {
                warn!(subscription = %name, error = %err, "unsent delivery not returned to JetStream");
            }
        }
        Ok(())
    }

    pub(super) async fn reject(
        &self,
        name: &str,
        ack_id: &str,
        reason: &str,
    ) -> Result<bool, BrokerError> {
        let ids = [ack_id.to_owned()];
        let parsed = self.parse_ack_ids(name, &ids).await?;
        let Some((id, ack)) = parsed.first() else {
            return Err(BrokerError::InvalidAckId(ack_id.to_owned()));
        };
        let record = self
            .store
            .subscription(name)
            .ok_or_else(|| BrokerError::SubscriptionNotFound(name.to_owned()))?;
        // NOTE: unlike the embedded broker, this also ends a delivery whose lease already
        // expired, because JetStream does not tell whether this delivery is still current.
        let acker = self.acker(id);
        if record.spec.dead_letter.is_none() {
            error!(subscription = %name, message_id = ack.stream_seq, %reason, "message rejected and dropped: the subscription has no dead-letter topic");
            acker.settle(AckKind::Term).await;
            self.counters(name).acked.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let Some(original) = self
            .store
            .read_message(&record.spec.topic, ack.stream_seq)
            .await?
        else {
            return Ok(false);
        };
        Ok(self
            .dead_letter(name, &acker, &original, ack.delivered, Some(reason))
            .await)
    }

    fn acker(&self, ack_id: &str) -> Acker {
        Acker::new(
            self.store.context().clone(),
            Some(async_nats::Subject::from(ack_id)),
        )
    }

    /// Reads every subscription's consumer statistics for [`SharedDelivery::stats`].
    pub(super) async fn refresh_stats(&self) {
        for record in self.store.subscriptions() {
            let name = record.spec.name.clone();
            if record.spec.topic == DELETED_TOPIC {
                lock(&self.consumer_stats).insert(name, (0, 0));
                continue;
            }
            match self.store.consumer_info(&record).await {
                Ok(info) => {
                    let outstanding = info.num_ack_pending as u64;
                    lock(&self.consumer_stats)
                        .insert(name, (info.num_pending + outstanding, outstanding));
                }
                Err(err) => {
                    debug!(subscription = %name, error = %err, "consumer statistics not read")
                }
            }
        }
    }

    pub(super) fn stats(&self) -> Vec<SubscriptionStats> {
        let consumer_stats = lock(&self.consumer_stats).clone();
        self.store
            .subscriptions()
            .into_iter()
            .map(|record| {
                let name = &record.spec.name;
                let counters = self.counters(name);
                let (backlog, outstanding) = consumer_stats.get(name).copied().unwrap_or_default();
                SubscriptionStats {
                    backlog,
                    outstanding,
                    dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
                    delivered: counters.delivered.load(Ordering::Relaxed),
                    acked: counters.acked.load(Ordering::Relaxed),
                    nacked: counters.nacked.load(Ordering::Relaxed),
                    filtered_out: counters.filtered_out.load(Ordering::Relaxed),
                    retention_expired: counters.retention_expired.load(Ordering::Relaxed),
                    unreadable: counters.unreadable.load(Ordering::Relaxed),
                    spec: record.spec,
                }
            })
            .collect()
    }

    /// Whether the last statistics read showed messages waiting for a first delivery.
    pub(super) fn has_ready(&self, name: &str) -> bool {
        lock(&self.consumer_stats)
            .get(name)
            .is_some_and(|(backlog, outstanding)| backlog > outstanding)
    }
}

/// Fetches up to `max` messages, waiting up to `wait` for the first one.
async fn fetch(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<Message>, BrokerError> {
    let mut fetched = collect(consumer.fetch().max_messages(max).messages().await).await?;
    if fetched.is_empty() && wait >= MIN_SERVER_WAIT {
        // One message with a wait, then whatever else is ready without one, so that the
        // pull returns as soon as anything arrives.
        fetched = collect(
            consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await,
        )
        .await?;
        if !fetched.is_empty() && max > 1 {
            fetched.extend(collect(consumer.fetch().max_messages(max - 1).messages().await).await?);
        }
    }
    Ok(fetched)
}

async fn collect<E: std::fmt::Display>(
    batch: Result<async_nats::jetstream::consumer::pull::Batch, E>,
) -> Result<Vec<Message>, BrokerError> {
    let mut batch = batch.map_err(|err| StoreError::JetStream {
        operation: "pull from the subscription's consumer",
        error: err.to_string(),
    })?;
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        match message {
            Ok(message) => messages.push(message),
            Err(err) => {
                debug!(error = %err, "pull request ended");
                break;
            }
        }
    }
    Ok(messages)
}

/// Sends one acknowledgement kind for a delivery, logging a failure: a lost
/// acknowledgement only means another delivery.
trait Settle {
    async fn settle(&self, kind: AckKind);
}

impl Settle for Message {
    async fn settle(&self, kind: AckKind) {
        if let Err(err) = self.ack_with(kind).await {
            warn!(error = %err, "acknowledgement not sent to JetStream");
        }
    }
}

impl Settle for Acker {
    async fn settle(&self, kind: AckKind) {
        if let Err(err) = self.ack_with(kind).await {
            warn!(error = %err, "acknowledgement not sent to JetStream");
        }
    }
}

async fn settle(message: &Message, kind: AckKind) {
    message.settle(kind).await;
}
