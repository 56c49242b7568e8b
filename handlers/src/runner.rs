//! The runner: serves one [`Broker`] subscription to one [`Handler`] or [`DeliveryHandler`].
//!
//! [`spawn`] starts a task that pulls deliveries, converts each message into `(data, context)`
//! with [`to_event`] and calls the handler through [`invoke`], which turns a panic into a
//! retryable error. [`spawn_for_deliveries`] does the same for a [`DeliveryHandler`], which
//! receives each delivery as it is, with the subscription's settings. The push client in
//! [`crate::push`] is one. At most [`RunnerOptions::concurrency`] events are handled at once,
//! and the runner pulls only as many messages as it has free slots. While the handler runs, the
//! runner extends the delivery's lease every half ack deadline so that the message is not
//! delivered again meanwhile. The handler's result decides what happens to the delivery:
//!
//! - `Ok(())`: the delivery is acknowledged.
//! - [`HandlerError::Permanent`]: [`Broker::reject`] dead-letters the message at once with
//!   the reason, or acknowledges and logs it when the subscription has no dead-letter topic.
//! - [`HandlerError::Retryable`]: when the subscription has a retry policy, the delivery is
//!   nacked with [`Broker::nack_from_server`], and the broker delays the redelivery by the
//!   policy's backoff, spread per message.
//!   Without one, the runner applies its own backoff ([`RunnerOptions::backoff`]) by setting
//!   the ack deadline to it, so the message is delivered again once that has passed. When
//!   the subscription has a dead-letter policy and this was the last allowed attempt, the
//!   message is rejected with the reason instead.
//!
//! Redelivery after a backoff relies on [`Broker::run_maintenance`], which returns expired
//! leases to the queue and ends retry backoffs. The owner of the broker must run it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use sluice_router::deliver::{Broker, BrokerError, Delivery};
use sluice_router::store::SubscriptionSpec;
use sluice_router::trace_context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn, Instrument as _};

use crate::contract::{invoke, Handler, HandlerError};
use crate::event::to_event;
use crate::log_limit::LogLimiter;
use crate::metrics;

/// How long one pull waits for messages. The runner checks for shutdown between pulls, so this
/// bounds how long a shutdown waits for the pull loop to stop.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// The pause after a failed pull, so that a broken subscription does not spin the loop.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Consecutive pull failures per warning. The first failure after a success is logged at warn
/// level, and so is every failure this many after it. The others are logged at debug level.
const PULL_FAILURES_PER_WARNING: u64 = 60;

/// The ack deadline assumed when the subscription's settings cannot be read: Pub/Sub's
/// minimum and default.
const FALLBACK_ACK_DEADLINE_SECS: u32 = 10;

/// A consumer of deliveries, which a runner calls once per delivery.
///
/// [`spawn`] wraps a background function in one that converts the message with [`to_event`].
/// Implement this trait directly to see the delivery itself: its delivery attempt, ordering key
/// and attributes, which the `(data, context)` pair of a background function does not carry.
#[async_trait]
pub trait DeliveryHandler: Send + Sync + std::fmt::Debug {
    /// Name of the handler, used in logs.
    fn name(&self) -> &str;

    /// Processes one delivery. `spec` contains the subscription's settings as read for this
    /// delivery, or `None` when they could not be read. The result decides what happens to
    /// the delivery, as the module documentation describes.
    async fn handle_delivery(
        &self,
        delivery: &Delivery,
        spec: Option<&SubscriptionSpec>,
    ) -> Result<(), HandlerError>;
}

/// A background function seen as a [`DeliveryHandler`].
#[derive(Debug)]
struct EventHandler(Arc<dyn Handler>);

#[async_trait]
impl DeliveryHandler for EventHandler {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn handle_delivery(
        &self,
        delivery: &Delivery,
        _spec: Option<&SubscriptionSpec>,
    ) -> Result<(), HandlerError> {
        let (data, context) = to_event(&delivery.message);
        invoke(self.0.as_ref(), &data, &context).await
    }
}

/// Settings of a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Maximum number of events handled at once. 0 means one per available CPU.
    pub concurrency: usize,
    /// Redelivery delay after the first retryable failure of an event. It doubles with every
    /// further attempt up to `max_backoff`. It applies only when the subscription has no
    /// retry policy, because the broker applies the policy's backoff otherwise.
    pub min_backoff: Duration,
    /// Maximum redelivery delay when the subscription has no retry policy.
    pub max_backoff: Duration,
    /// Maximum number of messages taken in one pull. 0 counts as 1.
    pub max_messages_per_pull: usize,
}

impl Default for RunnerOptions {
    /// Returns one event at a time per available CPU, and Pub/Sub's default retry policy:
    /// a backoff from 10 s to 600 s.
    fn default() -> Self {
        Self {
            concurrency: available_cpus(),
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            max_messages_per_pull: 100,
        }
    }
}

impl RunnerOptions {
    /// Returns the redelivery delay after a retryable failure of delivery `attempt` (1 for
    /// the first delivery): `min_backoff * 2^(attempt - 1)`, at most `max_backoff`.
    /// Attempt 0 counts as 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let factor = 2_u32.checked_pow(doublings).unwrap_or(u32::MAX);
        self.min_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Counters of one runner since it started.
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Events the handler accepted, whose deliveries were acknowledged.
    pub succeeded: AtomicU64,
    /// Events that failed with a retryable error and wait for redelivery.
    pub retried: AtomicU64,
    /// Events rejected: permanent errors, and retryable errors on the last allowed attempt.
    pub rejected: AtomicU64,
    /// Broker calls that failed (pull, ack, deadline change, reject). A failed ack or reject
    /// leaves the message pending, so it is delivered again.
    pub broker_errors: AtomicU64,
}

impl RunnerStats {
    /// Returns the number of events whose handling finished, whatever the outcome.
    pub fn handled(&self) -> u64 {
        self.succeeded.load(Ordering::Relaxed)
            + self.retried.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }
}

/// A running runner: its task and its counters.
#[derive(Debug)]
pub struct RunnerHandle {
    task: JoinHandle<()>,
    stats: Arc<RunnerStats>,
}

impl RunnerHandle {
    /// Returns the runner's counters.
    pub fn stats(&self) -> &Arc<RunnerStats> {
        &self.stats
    }

    /// Returns whether the runner's task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the runner now, without waiting for events in flight. Their leases lapse, so the
    /// messages are delivered again.
    pub fn abort(&self) {
        self.task.abort();
    }

    /// Waits until the runner's task ends: after its shutdown future completed and every
    /// event in flight was handled.
    ///
    /// # Errors
    ///
    /// Fails when the task was aborted or panicked.
    pub async fn join(&mut self) -> Result<(), JoinError> {
        (&mut self.task).await
    }
}

/// Starts a task on the current Tokio runtime that feeds `subscription` to `handler` until
/// `shutdown` completes.
///
/// On shutdown the runner stops pulling and waits for the events in flight to finish. It sets
/// no time limit on them, so a caller that needs one can [`abort`](RunnerHandle::abort) the
/// runner. Failed broker calls are logged and counted and never end the runner, and neither
/// does a panicking handler.
///
/// # Panics
///
/// Panics when called outside a Tokio runtime.
pub fn spawn<F>(
    broker: Arc<Broker>,
    subscription: String,
    handler: Arc<dyn Handler>,
    options: RunnerOptions,
    shutdown: F,
) -> RunnerHandle
where
    F: Future + Send + 'static,
{
    let handler = Arc::new(EventHandler(handler));
    spawn_for_deliveries(broker, subscription, handler, options, shutdown)
}

/// Starts a runner like [`spawn`] that passes each delivery to a [`DeliveryHandler`].
///
/// Unlike [`spawn`], it does not catch a panic of the handler. The panic ends the event's
/// task and is logged, and the delivery's lease lapses, so the message is delivered again.
///
/// # Panics
///
/// Panics when called outside a Tokio runtime.
pub fn spawn_for_deliveries<F>(
    broker: Arc<Broker>,
    subscription: String,
    handler: Arc<dyn DeliveryHandler>,
    options: RunnerOptions,
    shutdown: F,
) -> RunnerHandle
where
    F: Future + Send + 'static,
{
    let stats = Arc::new(RunnerStats::default());
    let runner = Arc::new(Runner {
        broker,
        subscription,
        handler,
        options,
        stats: stats.clone(),
        retry_log: LogLimiter::default(),
    });
    let task = tokio::spawn(runner.run(shutdown));
    RunnerHandle { task, stats }
}

#[derive(Debug)]
struct Runner {
    broker: Arc<Broker>,
    subscription: String,
    handler: Arc<dyn DeliveryHandler>,
    options: RunnerOptions,
    stats: Arc<RunnerStats>,
    /// Limits the warnings about retried events, which a failing handler causes for every
    /// event.
    retry_log: LogLimiter,
}

impl Runner {
    async fn run<F: Future>(self: Arc<Self>, shutdown: F) {
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        let concurrency = match self.options.concurrency {
            0 => available_cpus(),
            configured => configured,
        };
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut in_flight = JoinSet::new();
        let mut consecutive_failures: u64 = 0;
        info!(subscription = %self.subscription, handler = self.handler.name(), concurrency, "runner started");

        loop {
            while let Some(result) = in_flight.try_join_next() {
                self.log_task_end(result);
            }
            let batch = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                batch = self.acquire_slots(&slots) => batch,
            };
            let Some(batch) = batch else { break };

            // The pull is not raced against the shutdown: dropping a pull that has already
            // leased messages would strand them until their ack deadline.
            match self
                .broker
                .pull(&self.subscription, batch.len(), PULL_WAIT)
                .await
            {
                Ok(deliveries) => {
                    consecutive_failures = 0;
                    for (delivery, slot) in deliveries.into_iter().zip(batch) {
                        let runner = self.clone();
                        in_flight.spawn(async move {
                            runner.process(delivery).await;
                            drop(slot);
                        });
                    }
                }
                Err(err) => {
                    drop(batch);
                    consecutive_failures += 1;
                    self.log_pull_failure(&err, consecutive_failures);
                    tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                }
            }
        }

        info!(subscription = %self.subscription, handler = self.handler.name(), in_flight = in_flight.len(), "runner stopping");
        while let Some(result) = in_flight.join_next().await {
            self.log_task_end(result);
        }
        info!(subscription = %self.subscription, handler = self.handler.name(), "runner stopped");
    }

    /// Waits for one free slot and takes the others that are free now, up to the pull size.
    /// Returns `None` when the semaphore was closed, which this runner never does.
    async fn acquire_slots(&self, slots: &Arc<Semaphore>) -> Option<Vec<OwnedSemaphorePermit>> {
        let first = slots.clone().acquire_owned().await.ok()?;
        let max = self.options.max_messages_per_pull.max(1);
        let mut batch = vec![first];
        while batch.len() < max {
            match slots.clone().try_acquire_owned() {
                Ok(slot) => batch.push(slot),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Handles one delivery and settles it with the broker.
    async fn process(self: Arc<Self>, delivery: Delivery) {
        // The message id is the event id of the background event that `to_event` builds.
        let span = tracing::info_span!(
            "event",
            otel.name = %format_args!("receive {}", self.subscription),
            otel.kind = "consumer",
            messaging.system = "gcp_pubsub",
            messaging.operation.type = "receive",
            messaging.destination.subscription.name = %self.subscription,
            subscription = %self.subscription,
            handler = self.handler.name(),
            event_id = %delivery.message.id(),
            messaging.message.id = %delivery.message.id(),
            attempt = i64::from(delivery.attempts()),
        );
        // Every attempt continues the trace that the message carries from its publish.
        trace_context::set_parent(&span, &delivery.message.message.attributes);
        async {
            let spec = match self.broker.subscription_spec(&self.subscription) {
                Ok(spec) => Some(spec),
                Err(err) => {
                    warn!(error = %err, "reading the subscription's settings failed");
                    None
                }
            };
            let result = self.handle_with_lease(&delivery, spec.as_ref()).await;
            match result {
                Ok(()) | Err(HandlerError::Dropped(_)) => self.acknowledge(&delivery).await,
                Err(HandlerError::Permanent(reason)) => self.reject(&delivery, &reason).await,
                Err(HandlerError::Retryable(reason)) => {
                    self.retry(&delivery, &reason, spec.as_ref()).await;
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Runs the handler and extends the delivery's lease every half ack deadline until it
    /// returns.
    async fn handle_with_lease(
        &self,
        delivery: &Delivery,
        spec: Option<&SubscriptionSpec>,
    ) -> Result<(), HandlerError> {
        let deadline_secs = spec.map_or(FALLBACK_ACK_DEADLINE_SECS, |s| s.ack_deadline_secs);
        let period =
            (Duration::from_secs(u64::from(deadline_secs)) / 2).max(Duration::from_secs(1));
        let mut lease_ticks = tokio::time::interval_at(Instant::now() + period, period);
        lease_ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let handler_span = tracing::info_span!(
            "handler",
            otel.name = %format_args!("process {}", self.handler.name()),
            messaging.operation.type = "process",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        metrics::record_delivery(&self.subscription, delivery.message.publish_time);
        let started = Instant::now();
        let handling = self
            .handler
            .handle_delivery(delivery, spec)
            .instrument(handler_span.clone())
            .inspect(|result| {
                let error_type = error_type(result);
                if let Some(kind) = error_type {
                    handler_span.record("otel.status_code", "error");
                    handler_span.record("error.type", kind);
                }
                let handler = self.handler.name();
                metrics::record_run(&self.subscription, handler, started.elapsed(), error_type);
            });
        tokio::pin!(handling);
        loop {
            tokio::select! {
                result = &mut handling => return result,
                _ = lease_ticks.tick() => self.extend_lease(delivery, deadline_secs).await,
            }
        }
    }

    async fn extend_lease(&self, delivery: &Delivery, seconds: u32) {
        let ack_ids = std::slice::from_ref(&delivery.ack_id);
        match self
            .broker
            .modify_ack_deadline(&self.subscription, ack_ids, seconds)
            .await
        {
            Ok(()) => debug!(seconds, "lease extended"),
            Err(err) => {
                self.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, "extending the lease failed; the event may be delivered again while it is handled");
            }
        }
    }

    async fn acknowledge(&self, delivery: &Delivery) {
        let ack_ids = std::slice::from_ref(&delivery.ack_id);
        match self.broker.ack(&self.subscription, ack_ids).await {
            Ok(()) => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!("event handled");
            }
            Err(err) => {
                self.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, "event handled but the ack failed; it will be delivered again");
            }
        }
    }

    /// Rejects the delivery. The broker logs where the message went.
    async fn reject(&self, delivery: &Delivery, reason: &str) {
        match self
            .broker
            .reject(&self.subscription, &delivery.ack_id, reason)
            .await
        {
            Ok(dead_lettered) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                debug!(dead_lettered, %reason, "event rejected");
            }
            Err(err) => {
                self.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, %reason, "rejecting the event failed; it will be delivered again");
            }
        }
    }

    /// Delays the redelivery of a failed event by the backoff, or rejects it when it has used
    /// up the attempts of the subscription's dead-letter policy. The backoff is the retry
    /// policy's, applied by the broker after a nack, when the subscription has one, and the
    /// runner's own otherwise.
    async fn retry(&self, delivery: &Delivery, reason: &str, spec: Option<&SubscriptionSpec>) {
        let policy = spec.and_then(|spec| spec.dead_letter.as_ref());
        if let Some(policy) = policy {
            if delivery.delivery_attempt >= policy.max_delivery_attempts {
                let reason = format!(
                    "gave up after {} attempts: {reason}",
                    delivery.delivery_attempt
                );
                self.reject(delivery, &reason).await;
                return;
            }
        }

        let attempt = delivery.attempts();
        let broker_delay =
            spec.and_then(|spec| spec.server_redelivery_delay(attempt, delivery.message.seq));
        let backoff = broker_delay.unwrap_or_else(|| self.options.backoff(attempt));
        if let Some(suppressed) = self.retry_log.allow() {
            warn!(attempt, backoff_ms = backoff.as_millis() as u64, broker_backoff = broker_delay.is_some(), error = %reason, suppressed, "handler failed; the event will be retried");
        }
        let ack_ids = std::slice::from_ref(&delivery.ack_id);
        let delayed = match broker_delay {
            // A nack, after which the broker delays the redelivery by the policy's backoff,
            // spread per message.
            Some(_) => {
                self.broker
                    .nack_from_server(&self.subscription, ack_ids)
                    .await
            }
            None => {
                self.broker
                    .modify_ack_deadline(&self.subscription, ack_ids, whole_seconds(backoff))
                    .await
            }
        };
        match delayed {
            Ok(()) => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => {
                self.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, "setting the backoff failed; the event is delivered again after its ack deadline");
            }
        }
    }

    fn log_pull_failure(&self, err: &BrokerError, consecutive_failures: u64) {
        self.stats.broker_errors.fetch_add(1, Ordering::Relaxed);
        if consecutive_failures % PULL_FAILURES_PER_WARNING == 1 {
            warn!(subscription = %self.subscription, handler = self.handler.name(), error = %err, consecutive_failures, "pull failed; retrying");
        } else {
            debug!(subscription = %self.subscription, handler = self.handler.name(), error = %err, consecutive_failures, "pull failed; retrying");
        }
    }

    fn log_task_end(&self, result: Result<(), JoinError>) {
        // Background functions' panics are caught by `invoke`, so a panic here comes from the
        // runner's own code or from a `DeliveryHandler`. The delivery's lease lapses and the
        // message is delivered again.
        if let Err(err) = result {
            error!(subscription = %self.subscription, handler = self.handler.name(), error = %err, "event task failed");
        }
    }
}

/// Returns the kind of a handler failure, as the `error.type` of its span and metric.
fn error_type(result: &Result<(), HandlerError>) -> Option<&'static str> {
    match result {
        Ok(()) => None,
        Err(HandlerError::Retryable(_)) => Some("retryable"),
        Err(HandlerError::Permanent(_)) => Some("permanent"),
        Err(HandlerError::Dropped(_)) => Some("dropped"),
    }
}

/// Returns the number of CPUs this process may use, or 1 when that is unknown.
fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Rounds a duration up to whole seconds, at least 1, for an ack deadline.
fn whole_seconds(duration: Duration) -> u32 {
    let seconds = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(min_secs: u64, max_secs: u64) -> RunnerOptions {
        RunnerOptions {
            min_backoff: Duration::from_secs(min_secs),
            max_backoff: Duration::from_secs(max_secs),
            ..RunnerOptions::default()
        }
    }

    #[test]
    fn backoff_doubles_per_attempt() {
        let options = options(10, 600);

        assert_eq!(options.backoff(1), Duration::from_secs(10));
        assert_eq!(options.backoff(2), Duration::from_secs(20));
        assert_eq!(options.backoff(3), Duration::from_secs(40));
        assert_eq!(options.backoff(6), Duration::from_secs(320));
    }

    #[test]
    fn backoff_stops_at_max() {
        let options = options(10, 600);

        assert_eq!(options.backoff(7), Duration::from_secs(600));
        assert_eq!(options.backoff(40), Duration::from_secs(600));
        assert_eq!(options.backoff(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn backoff_of_attempt_zero_is_min() {
        assert_eq!(options(10, 600).backoff(0), Duration::from_secs(10));
    }

    #[test]
    fn backoff_with_max_below_min_is_max() {
        assert_eq!(options(10, 5).backoff(1), Duration::from_secs(5));
    }

    #[test]
    fn whole_seconds_rounds_up_to_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(600)), 600);
        assert_eq!(whole_seconds(Duration::MAX), u32::MAX);
    }

    #[test]
    fn default_options_follow_pubsub_retry_policy() {
        let options = RunnerOptions::default();

        assert!(options.concurrency >= 1);
        assert_eq!(options.min_backoff, Duration::from_secs(10));
        assert_eq!(options.max_backoff, Duration::from_secs(600));
    }
}
