//! The retry policy's backoff on nacks and expired leases, on tokio's paused clock: a message
//! released after delivery `n` is ready again only after `minimum * 2^(n-1)`, capped at the
//! maximum.

mod harness;

use std::time::Duration;

use harness::{TestBroker, NO_WAIT};
use sluice_router::store::{RetryPolicy, SubscriptionSpec};
use tokio::time::{advance, Instant};

const TOPIC: &str = "events";
const SUBSCRIPTION: &str = "work";

fn with_backoff(minimum_backoff_secs: u64, maximum_backoff_secs: u64) -> SubscriptionSpec {
    SubscriptionSpec {
        retry_policy: Some(RetryPolicy::from_secs(
            minimum_backoff_secs,
            maximum_backoff_secs,
        )),
        ..SubscriptionSpec::new(SUBSCRIPTION, TOPIC)
    }
}

async fn broker_with(spec: SubscriptionSpec) -> TestBroker {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(spec).await;
    test.publish(TOPIC, &[("x", "")]).await;
    test
}

/// Nacks the one delivery that is ready now, and returns its attempt count.
async fn pull_and_nack(test: &TestBroker) -> u32 {
    let deliveries = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(deliveries.len(), 1, "one delivery is ready");
    test.nack(SUBSCRIPTION, &deliveries[0]).await;
    deliveries[0].attempts()
}

/// Asserts that the message is not ready `secs - 1` seconds from now, and is ready after
/// `secs` seconds.
async fn assert_ready_after(test: &TestBroker, secs: u64) {
    advance(Duration::from_secs(secs - 1)).await;
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not ready 1 s before the {secs} s backoff ends"
    );
    advance(Duration::from_secs(1)).await;
    assert!(
        test.broker.has_ready(SUBSCRIPTION),
        "ready when the {secs} s backoff ends"
    );
}

#[tokio::test(start_paused = true)]
async fn nack_waits_for_minimum_backoff() {
    let test = broker_with(with_backoff(10, 600)).await;
    pull_and_nack(&test).await;

    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not ready right after the nack"
    );
    advance(Duration::from_secs(9)).await;
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not ready after 9 s"
    );
    advance(Duration::from_secs(1)).await;
    let again = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(again.len(), 1, "ready after 10 s");
    assert_eq!(again[0].attempts(), 2, "the second delivery");
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_per_attempt() {
    let test = broker_with(with_backoff(10, 600)).await;
    for (attempt, backoff_secs) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
        assert_eq!(pull_and_nack(&test).await, attempt);
        assert_ready_after(&test, backoff_secs).await;
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_capped_at_maximum() {
    let test = broker_with(with_backoff(10, 25)).await;
    for (attempt, backoff_secs) in [(1, 10), (2, 20), (3, 25), (4, 25)] {
        assert_eq!(pull_and_nack(&test).await, attempt);
        assert_ready_after(&test, backoff_secs).await;
    }
}

#[tokio::test(start_paused = true)]
async fn expired_lease_backs_off() {
    let test = broker_with(with_backoff(30, 600)).await;
    assert_eq!(test.pull(SUBSCRIPTION, 10).await.len(), 1);

    advance(Duration::from_secs(10)).await;
    assert_eq!(
        test.broker.expire_leases().await,
        1,
        "the 10 s deadline passed"
    );
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not ready right after the lease expired"
    );
    advance(Duration::from_secs(29)).await;
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not ready after 29 s"
    );
    advance(Duration::from_secs(1)).await;
    let again = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(again.len(), 1, "ready 30 s after the lease expired");
    assert_eq!(again[0].attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_retry_policy_redelivers_at_once() {
    let test = broker_with(SubscriptionSpec::new(SUBSCRIPTION, TOPIC)).await;
    pull_and_nack(&test).await;

    let again = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(again.len(), 1, "ready right after the nack");
    assert_eq!(again[0].attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_backoff_redelivers_at_once() {
    let test = broker_with(with_backoff(0, 0)).await;
    pull_and_nack(&test).await;

    assert_eq!(test.pull(SUBSCRIPTION, 10).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn waiting_pull_returns_when_backoff_ends() {
    let test = broker_with(with_backoff(10, 600)).await;
    pull_and_nack(&test).await;
    let start = Instant::now();

    let deliveries = test
        .broker
        .pull(SUBSCRIPTION, 10, Duration::from_secs(60))
        .await
        .expect("pull");

    assert_eq!(deliveries.len(), 1, "delivered within the pull's wait");
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "not before the backoff ended: {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "not only when the wait ran out: {:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn maintenance_promotes_due_messages() {
    let test = broker_with(with_backoff(10, 600)).await;
    pull_and_nack(&test).await;
    assert_eq!(
        test.stats(SUBSCRIPTION).backlog,
        1,
        "a delayed message is in the backlog"
    );

    advance(Duration::from_secs(9)).await;
    assert_eq!(test.broker.promote_delayed(), 0, "not due after 9 s");
    advance(Duration::from_secs(1)).await;
    assert_eq!(test.broker.promote_delayed(), 1, "due after 10 s");
    assert_eq!(
        test.broker
            .pull(SUBSCRIPTION, 10, NO_WAIT)
            .await
            .expect("pull")
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn ack_during_backoff_removes_message() {
    let test = broker_with(with_backoff(10, 600)).await;
    let deliveries = test.pull(SUBSCRIPTION, 10).await;
    test.nack(SUBSCRIPTION, &deliveries[0]).await;

    test.ack(SUBSCRIPTION, &deliveries[0]).await;

    assert_eq!(
        test.stats(SUBSCRIPTION).backlog,
        0,
        "acknowledged while delayed"
    );
    advance(Duration::from_secs(10)).await;
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "not delivered again"
    );
}

#[tokio::test(start_paused = true)]
async fn server_nack_spreads_messages() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(with_backoff(10, 600)).await;
    let messages: Vec<(String, String)> =
        (0..20).map(|i| (format!("m{i}"), String::new())).collect();
    let messages: Vec<(&str, &str)> = messages
        .iter()
        .map(|(data, key)| (data.as_str(), key.as_str()))
        .collect();
    test.publish(TOPIC, &messages).await;
    let deliveries = test.pull(SUBSCRIPTION, 20).await;
    assert_eq!(deliveries.len(), 20);
    let ack_ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
    test.broker
        .nack_from_server(SUBSCRIPTION, &ack_ids)
        .await
        .expect("nack");

    // Each delay lies between the 10 s minimum and a quarter above it, by message.
    advance(Duration::from_millis(9_900)).await;
    assert!(
        test.pull(SUBSCRIPTION, 20).await.is_empty(),
        "none before 10 s"
    );
    advance(Duration::from_millis(1_100)).await;
    let early = test.pull(SUBSCRIPTION, 20).await.len();
    assert!(early > 0, "some ready after 11 s");
    assert!(early < 20, "{early} of 20 ready after 11 s, so not all");
    advance(Duration::from_millis(1_600)).await;
    let late = test.pull(SUBSCRIPTION, 20).await.len();
    assert_eq!(early + late, 20, "all ready by 12.6 s");
}
