//! The runner over a real broker on the sled store: acknowledgement, dead letters, retries
//! with backoff, panics, lease extension and shutdown.
//!
//! Each message's data is a command for [`ScriptedHandler`], such as `ok` or `permanent`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sluice_handlers::contract::{EventContext, Handler, HandlerError};
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_router::deliver::{Broker, Delivery, SubscriptionStats};
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, RetryPolicy, SledStore, Store, SubscriptionSpec, TopicMessage,
};
use tokio::sync::{oneshot, Notify};

/// Maximum wait for a condition. It is far above what any step needs, so that only a stuck
/// runner fails a test.
const TIMEOUT: Duration = Duration::from_secs(60);

const TOPIC: &str = "events";
const SUBSCRIPTION: &str = "work";
const DEAD_LETTER_TOPIC: &str = "dead";
const DEAD_LETTER_SUBSCRIPTION: &str = "dead-letters";
const MAX_DELIVERY_ATTEMPTS: u32 = 5;

/// A handler whose behaviour is chosen by the message data:
///
/// - `ok`: succeeds.
/// - `permanent`: fails with a permanent error.
/// - `retry`: fails with a retryable error every time.
/// - `retry-once`, `panic-once`: fail with a retryable error, or panic, on the first call
///   and succeed on later ones.
/// - `block`: succeeds once `release` is notified.
/// - `slow`: succeeds after 12 s, longer than the 10 s ack deadline.
#[derive(Debug, Default)]
struct ScriptedHandler {
    calls: Mutex<Vec<(String, EventContext)>>,
    release: Notify,
}

impl ScriptedHandler {
    fn calls(&self) -> Vec<(String, EventContext)> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn count(&self, command: &str) -> usize {
        self.calls().iter().filter(|(c, _)| c == command).count()
    }
}

#[async_trait]
impl Handler for ScriptedHandler {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError> {
        let event: serde_json::Value = serde_json::from_slice(data).expect("Pub/Sub event JSON");
        let payload = BASE64
            .decode(event["data"].as_str().expect("data field"))
            .expect("base64 data");
        let command = String::from_utf8(payload).expect("UTF-8 command");
        let calls_before = {
            let mut calls = self.calls.lock().expect("calls lock");
            calls.push((command.clone(), context.clone()));
            calls.iter().filter(|(c, _)| *c == command).count() - 1
        };
        match command.as_str() {
            "ok" => Ok(()),
            "permanent" => Err(HandlerError::Permanent("bad input".to_owned())),
            "retry" => Err(HandlerError::Retryable("backend unavailable".to_owned())),
            "retry-once" if calls_before == 0 => {
                Err(HandlerError::Retryable("backend unavailable".to_owned()))
            }
            "panic-once" if calls_before == 0 => panic!("scripted panic"),
            "retry-once" | "panic-once" => Ok(()),
            "block" => {
                self.release.notified().await;
                Ok(())
            }
            "slow" => {
                tokio::time::sleep(Duration::from_secs(12)).await;
                Ok(())
            }
            other => panic!("unknown command {other:?}"),
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    handler: Arc<ScriptedHandler>,
}

impl Setup {
    /// Opens a broker with the subscription (with a dead-letter policy when `dead_letter`)
    /// and runs its lease maintenance.
    async fn new(dead_letter: bool) -> Self {
        Self::with_retry_policy(dead_letter, None).await
    }

    /// Opens a broker like [`Setup::new`], with `retry_policy` on the subscription.
    async fn with_retry_policy(dead_letter: bool, retry_policy: Option<RetryPolicy>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        for topic in [TOPIC, DEAD_LETTER_TOPIC] {
            broker.create_topic(topic).await.expect("topic");
        }
        let policy = dead_letter.then(|| DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts: MAX_DELIVERY_ATTEMPTS,
        });
        let subscription = SubscriptionSpec {
            retry_policy,
            ..spec(SUBSCRIPTION, TOPIC, policy)
        };
        broker
            .create_subscription(subscription)
            .await
            .expect("subscription");
        broker
            .create_subscription(spec(DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC, None))
            .await
            .expect("dead-letter subscription");
        tokio::spawn(broker.clone().run_maintenance(std::future::pending()));
        Self {
            _dir: dir,
            broker,
            handler: Arc::new(ScriptedHandler::default()),
        }
    }

    /// Starts a runner with a 1 s backoff. The runner stops when the returned sender is used
    /// or dropped.
    fn start(&self, concurrency: usize) -> (RunnerHandle, oneshot::Sender<()>) {
        let options = RunnerOptions {
            concurrency,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            ..RunnerOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = runner::spawn(
            self.broker.clone(),
            SUBSCRIPTION.to_owned(),
            self.handler.clone(),
            options,
            stopped,
        );
        (handle, stop)
    }

    async fn publish(&self, commands: &[&str]) -> Vec<String> {
        let messages = commands
            .iter()
            .map(|command| TopicMessage {
                topic: TOPIC.to_owned(),
                message: NewMessage {
                    data: command.as_bytes().to_vec(),
                    attributes: BTreeMap::new(),
                    ordering_key: String::new(),
                },
            })
            .collect();
        let receipts = self.broker.publish(messages).await.expect("publish");
        receipts.iter().map(|r| r.seq.to_string()).collect()
    }

    fn stats(&self) -> SubscriptionStats {
        self.broker
            .stats()
            .into_iter()
            .find(|stats| stats.spec.name == SUBSCRIPTION)
            .expect("subscription stats")
    }

    async fn pull_dead_letters(&self) -> Vec<Delivery> {
        self.broker
            .pull(DEAD_LETTER_SUBSCRIPTION, 10, Duration::ZERO)
            .await
            .expect("pull dead letters")
    }
}

fn spec(name: &str, topic: &str, dead_letter: Option<DeadLetterPolicy>) -> SubscriptionSpec {
    SubscriptionSpec {
        dead_letter,
        ..SubscriptionSpec::new(name, topic)
    }
}

/// Polls `condition` until it holds, and fails the test after [`TIMEOUT`].
async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + TIMEOUT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(mut handle: RunnerHandle, stop: oneshot::Sender<()>) {
    stop.send(()).expect("runner is listening");
    tokio::time::timeout(TIMEOUT, handle.join())
        .await
        .expect("runner stops in time")
        .expect("runner task ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_is_acknowledged() {
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(2);
    let ids = setup.publish(&["ok"]).await;

    let stats = handle.stats().clone();
    wait_for("the ack", || stats.handled() == 1).await;

    assert_eq!(
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(setup.stats().backlog, 0, "acknowledged");
    let calls = setup.handler.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1.event_id, ids[0]);
    assert_eq!(calls[0].1.event_type, "google.pubsub.topic.publish");
    assert_eq!(calls[0].1.resource["name"], "projects/local/topics/events");
    assert!(setup.pull_dead_letters().await.is_empty());
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_error_dead_letters_at_once() {
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(2);
    setup.publish(&["permanent"]).await;

    let stats = handle.stats().clone();
    wait_for("the rejection", || stats.handled() == 1).await;

    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(setup.handler.count("permanent"), 1, "not retried");
    assert_eq!(setup.stats().backlog, 0);
    let dead = setup.pull_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let attributes = &dead[0].message.message.attributes;
    assert_eq!(attributes["sluiceDeadLetterReason"], "bad input");
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "1");
    assert_eq!(dead[0].message.message.data, b"permanent");
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_error_gives_up_after_max_attempts() {
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(2);
    let ids = setup.publish(&["retry"]).await;

    let stats = handle.stats().clone();
    wait_for("the final rejection", || {
        stats.rejected.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    let calls = setup.handler.calls();
    assert_eq!(calls.len(), MAX_DELIVERY_ATTEMPTS as usize);
    assert!(
        calls.iter().all(|(_, context)| context.event_id == ids[0]),
        "a redelivery keeps the event id"
    );
    assert_eq!(
        stats.retried.load(std::sync::atomic::Ordering::Relaxed),
        u64::from(MAX_DELIVERY_ATTEMPTS - 1)
    );
    let dead = setup.pull_dead_letters().await;
    assert_eq!(dead.len(), 1);
    let attributes = &dead[0].message.message.attributes;
    assert_eq!(
        attributes["sluiceDeadLetterReason"],
        "gave up after 5 attempts: backend unavailable"
    );
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "5");
    assert_eq!(setup.stats().backlog, 0);
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_error_without_policy_is_redelivered() {
    let setup = Setup::new(false).await;
    let (handle, stopper) = setup.start(2);
    setup.publish(&["retry-once"]).await;

    let stats = handle.stats().clone();
    wait_for("the second attempt", || {
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    assert_eq!(setup.handler.count("retry-once"), 2);
    assert_eq!(stats.retried.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(setup.stats().backlog, 0);
    assert_eq!(
        setup.stats().nacked,
        0,
        "without a retry policy the runner delays by the ack deadline, not a nack"
    );
    assert!(setup.pull_dead_letters().await.is_empty());
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_error_with_retry_policy_nacks() {
    let policy = RetryPolicy::from_secs(1, 1);
    let setup = Setup::with_retry_policy(true, Some(policy)).await;
    let (handle, stopper) = setup.start(2);
    setup.publish(&["retry-once"]).await;

    let stats = handle.stats().clone();
    wait_for("the second attempt", || {
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    assert_eq!(setup.handler.count("retry-once"), 2);
    assert_eq!(stats.retried.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        setup.stats().nacked,
        1,
        "the runner nacks and leaves the backoff to the broker"
    );
    assert_eq!(setup.stats().backlog, 0);
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_policy_still_dead_letters_with_reason() {
    let policy = RetryPolicy::from_secs(0, 0);
    let setup = Setup::with_retry_policy(true, Some(policy)).await;
    let (handle, stopper) = setup.start(2);
    setup.publish(&["retry"]).await;

    let stats = handle.stats().clone();
    wait_for("the final rejection", || {
        stats.rejected.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    assert_eq!(setup.handler.count("retry"), MAX_DELIVERY_ATTEMPTS as usize);
    assert_eq!(
        setup.stats().nacked,
        u64::from(MAX_DELIVERY_ATTEMPTS - 1),
        "every attempt but the last is nacked"
    );
    let dead = setup.pull_dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].message.message.attributes["sluiceDeadLetterReason"],
        "gave up after 5 attempts: backend unavailable"
    );
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_does_not_stop_runner() {
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(1);
    setup.publish(&["panic-once", "ok"]).await;

    let stats = handle.stats().clone();
    wait_for("both events", || {
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 2
    })
    .await;

    assert!(!handle.is_finished(), "the runner is still running");
    assert_eq!(setup.handler.count("ok"), 1);
    assert_eq!(
        setup.handler.count("panic-once"),
        2,
        "retried after the panic"
    );
    assert_eq!(stats.retried.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(setup.stats().backlog, 0);
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_do_not_stop_runner() {
    let setup = Setup::new(true).await;
    let (stopper, stopped) = oneshot::channel::<()>();
    let handle = runner::spawn(
        setup.broker.clone(),
        "created-later".to_owned(),
        setup.handler.clone(),
        RunnerOptions::default(),
        stopped,
    );
    let stats = handle.stats().clone();
    wait_for("a failed pull", || {
        stats
            .broker_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;

    setup
        .broker
        .create_subscription(spec("created-later", TOPIC, None))
        .await
        .expect("subscription");
    setup.publish(&["ok"]).await;
    wait_for("the event", || {
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed) == 1
    })
    .await;

    assert_eq!(setup.handler.count("ok"), 1);
    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_idle_runner() {
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(2);

    stop(handle, stopper).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_event_in_flight_finish() {
    let setup = Setup::new(true).await;
    let (mut handle, stopper) = setup.start(2);
    setup.publish(&["block"]).await;
    let handler = setup.handler.clone();
    wait_for("the handler to start", || handler.count("block") == 1).await;

    stopper.send(()).expect("runner is listening");
    setup.handler.release.notify_one();
    let stats = handle.stats().clone();
    tokio::time::timeout(TIMEOUT, handle.join())
        .await
        .expect("runner stops in time")
        .expect("runner task ends cleanly");

    assert_eq!(
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(setup.stats().backlog, 0, "the event was acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_extended_while_handler_runs() {
    // The handler takes 12 s against a 10 s ack deadline. Without lease extension the
    // message would be delivered again to the runner's second slot.
    let setup = Setup::new(true).await;
    let (handle, stopper) = setup.start(2);
    setup.publish(&["slow"]).await;

    let stats = handle.stats().clone();
    wait_for("the slow event", || stats.handled() == 1).await;

    assert_eq!(
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(setup.handler.count("slow"), 1, "delivered once");
    assert_eq!(setup.stats().delivered, 1);
    stop(handle, stopper).await;
}
