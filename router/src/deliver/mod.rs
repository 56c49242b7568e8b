//! Subscriptions and delivery: leases with an ack deadline, redelivery after the deadline or
//! a nack with the retry policy's backoff, ordering keys, subscription filters, and
//! dead-lettering after too many attempts.
//!
//! [`Broker`] sits on a [`Store`]. The store keeps what must survive a restart (messages,
//! each subscription's pending set and attempt counts); the broker keeps, per subscription, a
//! [`QueueState`](queue::QueueState) in memory that records which pending messages are ready,
//! which wait out a retry backoff, which wait behind an earlier message of their ordering
//! key, and which are leased to a consumer until when. On start it rebuilds that state from
//! the store, with every pending message ready again (except those behind an earlier message
//! of their key), because leases and backoffs do not survive a restart. For a subscription
//! with message ordering, that reads every pending message once to learn its key.
//!
//! Consumers pull with [`Broker::pull`] and answer with [`Broker::ack`] or
//! [`Broker::modify_ack_deadline`] (deadline 0 is a nack). [`Broker::expire_leases`], called
//! periodically by [`Broker::run_maintenance`], returns expired leases to the queue, or
//! dead-letters them once they have used up their attempts. A message that a subscription's
//! filter rejects is never added to that subscription. The store does not record it as
//! pending, and the broker counts it in [`SubscriptionCounters::filtered_out`].
//!
//! A broker built with [`Broker::open_shared`] over a
//! [`JetStreamStore`] keeps no queues: its leases are the JetStream consumers' own, so that
//! several processes share each subscription (see `docs/jetstream.md`).
//!
//! `docs/delivery.md` describes the delivery semantics for users.

mod flow;
mod queue;
mod redeliver;
mod retention;
mod retry;
mod shared;
mod subscription;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{debug, error, warn, Instrument as _};

use crate::store::jetstream::JetStreamStore;
use crate::store::{
    CommitListener, Committed, Published, Store, StoreError, StoredMessage, SubscriptionRecord,
    SubscriptionSpec, TopicMessage, TopicRecord,
};
use crate::{metrics, trace_context};
pub use flow::delivery_bytes;
use queue::QueueState;
use subscription::Subscription;

/// The attribute that carries the reason on a copy dead-lettered by [`Broker::reject`].
pub const DEAD_LETTER_REASON_ATTRIBUTE: &str = "sluiceDeadLetterReason";

/// How often leases are checked for expiry.
pub const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Most pending messages of one subscription kept ready or delayed in memory. The rest stay
/// in the store and are read in sequence order as the queue drains, so that memory does not
/// grow with the backlog.
pub const QUEUE_WINDOW: usize = 10_000;
/// The bytes of messages one pull reads into memory when its caller sets no other bound.
/// Pub/Sub's largest message is 10 MB, and a pull always returns at least one message.
pub const DEFAULT_PULL_BYTES: usize = 10 * 1024 * 1024;

/// How often message retention is applied. Retention is at least 10 minutes, so a message
/// outlives it by at most this much.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A subscription that does not exist.
    #[error("subscription {0:?} not found")]
    SubscriptionNotFound(String),
    /// An ack id this broker did not issue, or that another subscription issued.
    #[error("invalid ack id {0:?}; use the ack_id of a message received from this subscription")]
    InvalidAckId(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Identifies this delivery in acks and deadline changes.
    pub ack_id: String,
    /// The message.
    pub message: StoredMessage,
    /// Deliveries of this message so far, this one included, when the subscription has a
    /// dead-letter policy; 0 otherwise, as in Pub/Sub.
    pub delivery_attempt: u32,
}

impl Delivery {
    /// Returns the deliveries of this message so far, this one included, whether or not the
    /// subscription has a dead-letter policy.
    ///
    /// The count is read from the ack id, which is JetStream's own count for a broker over
    /// JetStream. For a `Delivery` built with an ack id that this
    /// broker did not issue, it falls back to [`delivery_attempt`](Self::delivery_attempt).
    pub fn attempts(&self) -> u32 {
        if let Some(ack) = crate::store::jetstream::AckSubject::parse(&self.ack_id) {
            return ack.delivered;
        }
        match split_ack_id(&self.ack_id) {
            Some((_, attempts, _)) => attempts,
            None => self.delivery_attempt,
        }
    }
}

/// Counters of one subscription since the process started.
#[derive(Debug, Default)]
pub struct SubscriptionCounters {
    /// Messages handed to consumers, redeliveries included.
    pub delivered: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
    /// Deliveries ended by a nack (a deadline change to 0).
    pub nacked: AtomicU64,
    /// Leases that reached their deadline.
    pub expired: AtomicU64,
    /// Messages moved to the dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Published messages that the subscription's filter rejected, which were acknowledged
    /// at once and never delivered.
    pub filtered_out: AtomicU64,
    /// Unacknowledged messages removed because they outlived the message retention.
    pub retention_expired: AtomicU64,
    /// Pending messages removed because the store could not read them back.
    pub unreadable: AtomicU64,
}

/// A snapshot of one subscription for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// The subscription's settings.
    pub spec: SubscriptionSpec,
    /// Messages not yet acknowledged, leased ones included.
    pub backlog: u64,
    /// Messages leased to consumers right now.
    pub outstanding: u64,
    /// Messages dead-lettered since the process started.
    pub dead_lettered: u64,
    /// Messages delivered since the process started.
    pub delivered: u64,
    /// Messages acknowledged since the process started.
    pub acked: u64,
    /// Nacks since the process started.
    pub nacked: u64,
    /// Messages the filter rejected since the process started.
    pub filtered_out: u64,
    /// Unacknowledged messages removed for outliving the message retention since the
    /// process started.
    pub retention_expired: u64,
    /// Pending messages removed because the store could not read them back, since the
    /// process started.
    pub unreadable: u64,
}

/// The live subscriptions by name, shared between the broker and its [`Dispatcher`].
type Subscriptions = Arc<RwLock<HashMap<String, Arc<Subscription>>>>;

/// Topics and subscriptions with delivery state, over a [`Store`].
#[derive(Debug)]
pub struct Broker {
    store: Arc<dyn Store>,
    subscriptions: Subscriptions,
    clock: Clock,
    /// Per topic without subscriptions, the messages that outlived its retention since the
    /// process started.
    unclaimed_expired: Mutex<BTreeMap<String, u64>>,
    /// Delivery through JetStream consumers, for a broker over a [`JetStreamStore`]; the
    /// in-memory queues in `subscriptions` stay empty then.
    shared: Option<shared::SharedDelivery>,
}

/// The wall clock as the broker sees it: the system time at start plus the time elapsed on
/// tokio's clock since, so that tests with a paused clock can advance it.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start_system: SystemTime,
    start_instant: Instant,
}

impl Clock {
    fn new() -> Self {
        Clock {
            start_system: SystemTime::now(),
            start_instant: Instant::now(),
        }
    }

    fn now(&self) -> SystemTime {
        self.start_system + self.start_instant.elapsed()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Broker {
    /// Builds the broker over `store`, with every pending message of every subscription ready
    /// for delivery, except those that wait behind an earlier message of their ordering key.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot list a subscription's pending messages or read their
    /// ordering keys, or when a stored filter does not parse.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let subscriptions = Subscriptions::default();
        store.set_commit_listener(Arc::new(Dispatcher {
            subscriptions: subscriptions.clone(),
        }));
        let broker = Broker {
            store,
            subscriptions,
            clock: Clock::new(),
            unclaimed_expired: Mutex::new(BTreeMap::new()),
            shared: None,
        };
        for record in broker.store.subscriptions() {
            broker.load(record)?;
        }
        Ok(broker)
    }

    /// Builds a broker that delivers through the JetStream consumers of `store`, so that it
    /// shares every subscription's leases with the other brokers on the same servers.
    pub fn open_shared(store: Arc<JetStreamStore>) -> Self {
        Broker {
            store: store.clone(),
            subscriptions: Subscriptions::default(),
            clock: Clock::new(),
            unclaimed_expired: Mutex::new(BTreeMap::new()),
            shared: Some(shared::SharedDelivery::new(store)),
        }
    }

    fn load(&self, record: SubscriptionRecord) -> Result<(), StoreError> {
        let subscription = Arc::new(Subscription::new(record.spec.clone())?);
        // The subscription is visible to the dispatcher before its pending set is read, and
        // its state stays locked until the read is done. A message committed meanwhile is
        // either in the read or pushed after it; pushing it twice changes nothing.
        let mut state = subscription.state();
        write(&self.subscriptions).insert(record.spec.name.clone(), subscription.clone());
        let filled = self.fill(&subscription, &record.spec, &mut state);
        drop(state);
        if filled.is_err() {
            write(&self.subscriptions).remove(&record.spec.name);
        }
        filled
    }

    /// Fills an empty `state` with a subscription's pending messages: the first
    /// [`QUEUE_WINDOW`] in memory, the rest counted as spilled.
    fn fill(
        &self,
        subscription: &Subscription,
        spec: &SubscriptionSpec,
        state: &mut QueueState,
    ) -> Result<(), StoreError> {
        state.spill_all(0, self.store.pending_count(&spec.name)?);
        self.refill(subscription, spec, state)
    }

    /// Reads spilled messages from the store when the queue runs low.
    fn refill(
        &self,
        subscription: &Subscription,
        spec: &SubscriptionSpec,
        state: &mut QueueState,
    ) -> Result<(), StoreError> {
        let Some(request) = state.refill_request(QUEUE_WINDOW) else {
            return Ok(());
        };
        let pending = self
            .store
            .pending_from(&spec.name, request.from, request.limit)?;
        let exhausted = pending.len() < request.limit;
        // The pending set is listed in sequence order, which is publish order, so each
        // ordering key's messages queue up behind its oldest one.
        let mut entries = Vec::with_capacity(pending.len());
        for entry in pending {
            let key = if subscription.is_ordered() {
                self.store
                    .read_ordering_key(&spec.topic, entry.seq)?
                    .and_then(|key| subscription.key_of(&key))
            } else {
                None
            };
            entries.push((entry.seq, entry.attempts, key));
        }
        state.refilled(entries, exhausted);
        Ok(())
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates a topic, or returns the existing one.
    ///
    /// # Errors
    ///
    /// Fails when the store cannot write the catalog.
    pub async fn create_topic(&self, name: &str) -> Result<TopicRecord, StoreError> {
        self.store.create_topic(name).await
    }

    /// Creates a subscription, or updates the settings of the existing one. The topic, the
    /// filter and `enable_message_ordering` cannot change.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::create_subscription`] does.
    pub async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError> {
        let record = self.store.create_subscription(spec).await?;
        if let Some(shared) = &self.shared {
            shared.forget(&record.spec.name);
            return Ok(record);
        }
        let existing = read(&self.subscriptions).get(&record.spec.name).cloned();
        match existing {
            Some(subscription) => *write(&subscription.spec) = record.spec.clone(),
            None => self.load(record.clone())?,
        }
        Ok(record)
    }

    /// Deletes a subscription and its backlog. Pulls waiting on it return empty.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::delete_subscription`] does.
    pub async fn delete_subscription(&self, name: &str) -> Result<(), StoreError> {
        self.store.delete_subscription(name).await?;
        if let Some(shared) = &self.shared {
            shared.forget(name);
        }
        if let Some(subscription) = write(&self.subscriptions).remove(name) {
            subscription.ready.notify_waiters();
        }
        Ok(())
    }

    /// Deletes a topic. Its subscriptions stay, detached, with an empty backlog.
    ///
    /// # Errors
    ///
    /// Fails as [`Store::delete_topic`] does.
    pub async fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        let detached = self.subscriptions_of(name);
        self.store.delete_topic(name).await?;
        for subscription in detached {
            write(&subscription.spec).topic = crate::store::DELETED_TOPIC.to_owned();
            *subscription.state() = QueueState::default();
            subscription.ready.notify_waiters();
        }
        Ok(())
    }

    /// Returns the current settings of a subscription.
    ///
    /// # Errors
    ///
    /// [`BrokerError::SubscriptionNotFound`] when the subscription does not exist.
    pub fn subscription_spec(&self, name: &str) -> Result<SubscriptionSpec, BrokerError> {
        if self.shared.is_some() {
            return self
                .store
                .subscriptions()
                .into_iter()
                .find(|record| record.spec.name == name)
                .map(|record| record.spec)
                .ok_or_else(|| BrokerError::SubscriptionNotFound(name.to_owned()));
        }
        Ok(self.subscription(name)?.spec())
    }

    fn subscription(&self, name: &str) -> Result<Arc<Subscription>, BrokerError> {
        read(&self.subscriptions)
            .get(name)
            .cloned()
            .ok_or_else(|| BrokerError::SubscriptionNotFound(name.to_owned()))
    }

    fn subscriptions_of(&self, topic: &str) -> Vec<Arc<Subscription>> {
        read(&self.subscriptions)
            .values()
            .filter(|s| read(&s.spec).topic == topic)
            .cloned()
            .collect()
    }

    /// Publishes messages durably and makes them ready in every subscription of their topics
    /// whose filter they pass.
    ///
    /// # Errors
    ///
    /// Fails when a topic does not exist or the store cannot write; then nothing is published.
    pub async fn publish(
        &self,
        mut messages: Vec<TopicMessage>,
    ) -> Result<Vec<Published>, StoreError> {
        let span = trace_context::publish_span(&messages);
        trace_context::inject_into(&span, &mut messages);
        self.publish_in(messages, span).await
    }

    /// [`Broker::publish`] for the messages of a routed batch, each already carrying the
    /// context of its entry's trace that `contexts` lists. The publish span links to those
    /// contexts without reading them back from every message, and the messages keep them.
    /// Without entry contexts, as when tracing is off, this is [`Broker::publish`].
    ///
    /// # Errors
    ///
    /// As [`Broker::publish`].
    pub async fn publish_routed(
        &self,
        messages: Vec<TopicMessage>,
        contexts: trace_context::EntryContexts,
    ) -> Result<Vec<Published>, StoreError> {
        if contexts.is_empty() {
            return self.publish(messages).await;
        }
        let span = trace_context::entries_publish_span(&messages, contexts);
        self.publish_in(messages, span).await
    }

    async fn publish_in(
        &self,
        messages: Vec<TopicMessage>,
        span: tracing::Span,
    ) -> Result<Vec<Published>, StoreError> {
        let per_topic = metrics::messages_per_topic(&messages);
        // The store reports the messages to the dispatcher, which makes them ready, in
        // sequence order and before this returns.
        let published = self
            .store
            .publish(messages, self.now())
            .instrument(span)
            .await?;
        metrics::count_sent(per_topic);
        Ok(published)
    }

    /// Leases up to `max` messages of a subscription, waiting up to `wait` for the first one.
    /// Returns an empty list when nothing arrives in time. A message whose retry backoff ends
    /// while the pull waits is delivered then.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription or when the store cannot be read.
    pub async fn pull(
        &self,
        name: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        self.pull_bounded(name, max, DEFAULT_PULL_BYTES, wait).await
    }

    /// [`Broker::pull`] with a bound on the bytes of the leased messages (see
    /// [`flow::delivery_bytes`]). The first message is delivered even when it alone is
    /// larger, so that a large message cannot block the subscription.
    async fn pull_bounded(
        &self,
        name: &str,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.pull(name, max, max_bytes, wait).await;
        }
        let subscription = self.subscription(name)?;
        let give_up = Instant::now() + wait;
        loop {
            let notified = subscription.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deliveries = self.lease(name, &subscription, max, max_bytes).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let next_ready = subscription.state().next_ready_at();
            let wake = next_ready.map_or(give_up, |at| at.min(give_up));
            if tokio::time::timeout_at(wake, notified).await.is_err() && wake >= give_up {
                return Ok(Vec::new());
            }
        }
    }

    /// Leases up to `max` messages and reads them until their bytes would pass `max_bytes`.
    /// The leases it did not read are undone without counting an attempt, and only then are
    /// the attempts recorded, so that a large batch is never read into memory at once.
    async fn lease(
        &self,
        name: &str,
        subscription: &Subscription,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let spec = subscription.spec();
        let ack_deadline = Duration::from_secs(u64::from(spec.ack_deadline_secs));
        let now = Instant::now();
        let leased = {
            let mut state = subscription.state();
            self.refill(subscription, &spec, &mut state)?;
            state.promote(now);
            state.lease(max, now, ack_deadline)
        };
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        let mut read = Vec::with_capacity(leased.len());
        let mut bytes = 0;
        let mut rest = Vec::new();
        let mut unread = leased.iter().copied();
        for (seq, attempts) in unread.by_ref() {
            let message = match self.store.read(&spec.topic, seq) {
                Ok(message) => message,
                Err(err @ StoreError::Corrupt { .. }) => {
                    // A message that cannot be read back would fail every pull after it.
                    // Its content is gone either way, so it leaves the pending set, loudly.
                    error!(
                        subscription = %name,
                        message_id = seq,
                        error = %err,
                        "unreadable message removed from the subscription"
                    );
                    subscription.state().remove(seq);
                    subscription
                        .counters
                        .unreadable
                        .fetch_add(1, Ordering::Relaxed);
                    if let Err(ack_err) = self.store.ack(name, vec![seq]).await {
                        warn!(subscription = %name, message_id = seq, error = %ack_err, "removing an unreadable message from the store failed");
                    }
                    subscription.ready.notify_waiters();
                    continue;
                }
                Err(err) => {
                    self.undo_leases(subscription, leased.iter().copied());
                    return Err(err.into());
                }
            };
            let Some(message) = message else {
                // Acknowledged through another path while it was queued here. Removing it
                // may make the next message of its ordering key ready.
                subscription.state().remove(seq);
                subscription.ready.notify_waiters();
                continue;
            };
            let size = flow::message_bytes(&message.message);
            if !read.is_empty() && bytes + size > max_bytes {
                rest.push((seq, attempts));
                break;
            }
            bytes += size;
            read.push((seq, attempts, message));
        }
        rest.extend(unread);
        if !rest.is_empty() {
            self.undo_leases(subscription, rest.into_iter());
            subscription.ready.notify_waiters();
        }
        if read.is_empty() {
            return Ok(Vec::new());
        }
        let counts = read
            .iter()
            .map(|(seq, attempts, _)| (*seq, *attempts))
            .collect();
        self.store.set_attempts(name, counts).await?;
        let mut deliveries = Vec::with_capacity(read.len());
        for (seq, attempts, message) in read {
            subscription
                .counters
                .delivered
                .fetch_add(1, Ordering::Relaxed);
            debug!(subscription = %name, message_id = seq, attempt = attempts, "message delivered");
            let delivery_attempt = if spec.dead_letter.is_some() {
                attempts
            } else {
                0
            };
            deliveries.push(Delivery {
                ack_id: format!("{seq}-{attempts}-{}", subscription.tag()),
                message,
                delivery_attempt,
            });
        }
        Ok(deliveries)
    }

    /// Puts leased messages back as they were before [`QueueState::lease`] took them: ready
    /// at once, with the attempt it counted taken back.
    fn undo_leases(&self, subscription: &Subscription, leases: impl Iterator<Item = (u64, u32)>) {
        let now = Instant::now();
        let mut state = subscription.state();
        for (seq, attempts) in leases {
            if state.release(seq, attempts).is_some() {
                state.requeue(seq, attempts.saturating_sub(1), None, now);
            }
        }
    }

    /// Acknowledges deliveries. Acknowledging a delivery whose lease expired still removes the
    /// message, as Pub/Sub allows.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription, a malformed ack id (then nothing is acknowledged)
    /// or a store failure.
    pub async fn ack(&self, name: &str, ack_ids: &[String]) -> Result<(), BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.ack(name, ack_ids).await;
        }
        let subscription = self.subscription(name)?;
        let parsed = parse_ack_ids(ack_ids, subscription.tag())?;
        let mut seqs = Vec::with_capacity(parsed.len());
        {
            let mut state = subscription.state();
            for (seq, attempts) in parsed {
                // An ack id names the delivery that issued it, so one for a delivery that
                // has not happened yet (a guess, or an id from before a seek) is ignored.
                let delivered = state
                    .attempts_of(seq)
                    .is_some_and(|had| attempts >= 1 && had >= attempts);
                if delivered && state.remove(seq) {
                    seqs.push(seq);
                }
            }
        }
        if subscription.is_ordered() && !seqs.is_empty() {
            // An acknowledged message may have held back the next one of its ordering key.
            subscription.ready.notify_waiters();
        }
        subscription
            .counters
            .acked
            .fetch_add(seqs.len() as u64, Ordering::Relaxed);
        debug!(subscription = %name, message_ids = ?seqs, "messages acknowledged");
        if !seqs.is_empty() {
            self.store.ack(name, seqs).await?;
        }
        Ok(())
    }

    /// Changes the deadline of deliveries to `seconds` from now; 0 ends them now (a nack), so
    /// the messages are delivered again, after the retry policy's backoff when the
    /// subscription has one, or dead-lettered.
    ///
    /// # Errors
    ///
    /// Fails for an unknown subscription, a malformed ack id or a store failure.
    pub async fn modify_ack_deadline(
        &self,
        name: &str,
        ack_ids: &[String],
        seconds: u32,
    ) -> Result<(), BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.modify_ack_deadline(name, ack_ids, seconds).await;
        }
        let subscription = self.subscription(name)?;
        let parsed = parse_ack_ids(ack_ids, subscription.tag())?;
        if seconds > 0 {
            let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
            let mut state = subscription.state();
            for (seq, attempts) in parsed {
                state.extend(seq, attempts, deadline);
            }
            return Ok(());
        }
        self.nack_leased(name, &subscription, parsed, false).await
    }

    /// Releases the leased deliveries `parsed` of a subscription held in this process and
    /// returns them to the queue, with the delays of a consumer in the server when
    /// `from_server` is set.
    async fn nack_leased(
        &self,
        name: &str,
        subscription: &Subscription,
        parsed: Vec<(u64, u32)>,
        from_server: bool,
    ) -> Result<(), BrokerError> {
        let released: Vec<(u64, u32)> = {
            let mut state = subscription.state();
            parsed
                .into_iter()
                .filter(|&(seq, attempts)| state.release(seq, attempts).is_some())
                .collect()
        };
        subscription
            .counters
            .nacked
            .fetch_add(released.len() as u64, Ordering::Relaxed);
        debug!(subscription = %name, deliveries = ?released, "deliveries nacked");
        self.requeue_with(name, subscription, released, from_server)
            .await
    }

    /// Nacks deliveries as `modify_ack_deadline` with 0 s does, for a consumer that runs in
    /// the server, such as a deployed function or a built-in handler. The retry policy's
    /// backoff then gets the push backoff and its spread per message (see
    /// [`SubscriptionSpec::server_redelivery_delay`]), so messages that failed together, as
    /// when a function's process crashed under them, come back apart.
    ///
    /// # Errors
    ///
    /// As `modify_ack_deadline`.
    pub async fn nack_from_server(
        &self,
        name: &str,
        ack_ids: &[String],
    ) -> Result<(), BrokerError> {
        if let Some(shared) = &self.shared {
            return shared.nack(name, ack_ids, true).await;
        }
        let subscription = self.subscription(name)?;
        let parsed = parse_ack_ids(ack_ids, subscription.tag())?;
        self.nack_leased(name, &subscription, parsed, true).await
    }

    /// Returns a snapshot of every subscription, ordered by name.
    pub fn stats(&self) -> Vec<SubscriptionStats> {
        if let Some(shared) = &self.shared {
            return shared.stats();
        }
        let mut stats: Vec<SubscriptionStats> = read(&self.subscriptions)
            .values()
            .map(|subscription| {
                let state = subscription.state();
                let counters = &subscription.counters;
                SubscriptionStats {
                    spec: subscription.spec(),
                    backlog: state.backlog() as u64,
                    outstanding: state.outstanding() as u64,
                    dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
                    delivered: counters.delivered.load(Ordering::Relaxed),
                    acked: counters.acked.load(Ordering::Relaxed),
                    nacked: counters.nacked.load(Ordering::Relaxed),
                    filtered_out: counters.filtered_out.load(Ordering::Relaxed),
                    retention_expired: counters.retention_expired.load(Ordering::Relaxed),
                    unreadable: counters.unreadable.load(Ordering::Relaxed),
                }
            })
            .collect();
        stats.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        stats
    }

    /// Whether a subscription has messages ready for delivery now, counting those whose
    /// retry backoff has ended.
    pub fn has_ready(&self, name: &str) -> bool {
        if let Some(shared) = &self.shared {
            return shared.has_ready(name);
        }
        self.subscription(name).is_ok_and(|s| {
            let mut state = s.state();
            state.promote(Instant::now());
            state.has_ready()
        })
    }
}

/// Makes newly committed messages ready in every subscription of their topic whose filter
/// they pass. The store calls it in sequence order, so each ordering key's messages queue up
/// in publish order, even when concurrent publishes return in another order.
struct Dispatcher {
    subscriptions: Subscriptions,
}

impl CommitListener for Dispatcher {
    fn committed(&self, messages: &[Committed<'_>]) {
        let mut by_topic: HashMap<&str, Vec<&Committed<'_>>> = HashMap::new();
        for message in messages {
            by_topic.entry(message.topic).or_default().push(message);
        }
        for (topic, messages) in by_topic {
            // The map's lock is released before any state is locked; `Broker::load` takes
            // them in the other order.
            let receivers: Vec<Arc<Subscription>> = read(&self.subscriptions)
                .values()
                .filter(|s| read(&s.spec).topic == topic)
                .cloned()
                .collect();
            for subscription in receivers {
                make_ready(&subscription, &messages);
            }
        }
    }
}

/// Adds committed messages, in sequence order, to one subscription whose topic they are on.
fn make_ready(subscription: &Subscription, messages: &[&Committed<'_>]) {
    let mut filtered_out = 0;
    {
        let mut state = subscription.state();
        for committed in messages {
            let message = committed.message;
            if !subscription.accepts(&message.attributes) {
                filtered_out += 1;
                continue;
            }
            state.admit(
                committed.seq,
                subscription.key_of(&message.ordering_key),
                QUEUE_WINDOW,
            );
        }
    }
    if filtered_out > 0 {
        subscription
            .counters
            .filtered_out
            .fetch_add(filtered_out, Ordering::Relaxed);
        debug!(subscription = %read(&subscription.spec).name, count = filtered_out, "messages filtered out");
    }
    subscription.ready.notify_waiters();
}

/// Formats a time as RFC 3339 in UTC with milliseconds, as Pub/Sub writes publish times.
pub fn format_time(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads an ack id, `{seq}-{attempts}-{tag}`, into its parts.
fn split_ack_id(id: &str) -> Option<(u64, u32, &str)> {
    let mut parts = id.splitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let attempts = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    Some((seq, attempts, tag))
}

/// Reads ack ids issued by the subscription with `tag` as `(seq, attempts)` pairs.
///
/// # Errors
///
/// [`BrokerError::InvalidAckId`] for a malformed id or one of another subscription, as
/// Pub/Sub rejects those.
fn parse_ack_ids(ack_ids: &[String], tag: &str) -> Result<Vec<(u64, u32)>, BrokerError> {
    ack_ids
        .iter()
        .map(|id| match split_ack_id(id) {
            Some((seq, attempts, issued_by)) if issued_by == tag => Ok((seq, attempts)),
            _ => Err(BrokerError::InvalidAckId(id.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;

    fn delivery(ack_id: &str, delivery_attempt: u32) -> Delivery {
        Delivery {
            ack_id: ack_id.to_owned(),
            message: StoredMessage {
                topic: "t".to_owned(),
                seq: 7,
                publish_time: SystemTime::UNIX_EPOCH,
                message: NewMessage::default(),
            },
            delivery_attempt,
        }
    }

    #[test]
    fn attempts_read_from_ack_id() {
        assert_eq!(delivery("7-3-0badcafe", 0).attempts(), 3);
        assert_eq!(delivery("7-3-0badcafe", 3).attempts(), 3);
    }

    #[test]
    fn attempts_of_foreign_ack_id() {
        assert_eq!(delivery("not-an-ack-id", 2).attempts(), 2);
        assert_eq!(delivery("", 0).attempts(), 0);
    }
}
