//! Ordering keys on a subscription with `enable_message_ordering`: publish order within a
//! key, one outstanding message per key, redelivery that keeps the order, and dead letters
//! that unblock their key.

mod harness;

use std::time::Duration;

use harness::{data_of, TestBroker};
use sluice_router::store::{DeadLetterPolicy, RetryPolicy, SubscriptionSpec};
use tokio::time::advance;

const TOPIC: &str = "orders";
const DEAD_LETTER_TOPIC: &str = "orders-dead";
const SUBSCRIPTION: &str = "billing";

fn ordered() -> SubscriptionSpec {
    SubscriptionSpec {
        enable_message_ordering: true,
        ..SubscriptionSpec::new(SUBSCRIPTION, TOPIC)
    }
}

async fn setup(spec: SubscriptionSpec) -> TestBroker {
    let test = TestBroker::with_topics(&[TOPIC, DEAD_LETTER_TOPIC]).await;
    test.subscribe(spec).await;
    test
}

#[tokio::test]
async fn one_message_per_key_outstanding() {
    let test = setup(ordered()).await;
    test.publish(
        TOPIC,
        &[
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("u1", ""),
            ("u2", ""),
        ],
    )
    .await;

    let first = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(
        data_of(&first),
        ["a1", "b1", "u1", "u2"],
        "each key's first message and every unkeyed one"
    );
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "a2 waits for a1"
    );
    assert_eq!(
        test.stats(SUBSCRIPTION).backlog,
        5,
        "a2 counts in the backlog"
    );

    test.ack(SUBSCRIPTION, &first[0]).await;
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["a2"]);
}

#[tokio::test]
async fn failing_key_does_not_block_others() {
    let test = setup(ordered()).await;
    test.publish(
        TOPIC,
        &[
            ("a1", "a"),
            ("a2", "a"),
            ("b1", "b"),
            ("b2", "b"),
            ("b3", "b"),
        ],
    )
    .await;

    let mut delivered_b = Vec::new();
    for _ in 0..5 {
        for delivery in test.pull(SUBSCRIPTION, 10).await {
            let data = data_of(std::slice::from_ref(&delivery)).remove(0);
            if data.starts_with('a') {
                assert_eq!(data, "a1", "a2 is never delivered while a1 fails");
                test.nack(SUBSCRIPTION, &delivery).await;
            } else {
                delivered_b.push(data);
                test.ack(SUBSCRIPTION, &delivery).await;
            }
        }
    }

    assert_eq!(delivered_b, ["b1", "b2", "b3"], "key b flows in order");
    assert_eq!(
        test.stats(SUBSCRIPTION).backlog,
        2,
        "a1 and a2 are still pending"
    );
}

#[tokio::test(start_paused = true)]
async fn order_kept_across_redelivery() {
    let spec = SubscriptionSpec {
        retry_policy: Some(RetryPolicy::from_secs(5, 5)),
        ..ordered()
    };
    let test = setup(spec).await;
    test.publish(TOPIC, &[("k1", "k"), ("k2", "k"), ("k3", "k")])
        .await;

    // k1's lease expires, then k1 is nacked: both times it comes back before k2.
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k1"]);
    advance(Duration::from_secs(10)).await;
    assert_eq!(test.broker.expire_leases().await, 1);
    assert!(
        test.pull(SUBSCRIPTION, 10).await.is_empty(),
        "k2 waits during k1's backoff"
    );
    advance(Duration::from_secs(5)).await;
    let again = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(data_of(&again), ["k1"], "k1 again after its lease expired");
    test.nack(SUBSCRIPTION, &again[0]).await;
    advance(Duration::from_secs(5)).await;
    let third = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(data_of(&third), ["k1"], "k1 again after the nack");
    assert_eq!(third[0].attempts(), 3);

    test.ack(SUBSCRIPTION, &third[0]).await;
    let second = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(data_of(&second), ["k2"]);
    test.ack(SUBSCRIPTION, &second[0]).await;
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k3"]);
}

#[tokio::test]
async fn dead_letter_unblocks_key_in_order() {
    let spec = SubscriptionSpec {
        dead_letter: Some(DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts: 5,
        }),
        ..ordered()
    };
    let test = setup(spec).await;
    test.publish(TOPIC, &[("poison", "k"), ("k2", "k"), ("k3", "k")])
        .await;

    for attempt in 1..=5 {
        let deliveries = test.pull(SUBSCRIPTION, 10).await;
        assert_eq!(data_of(&deliveries), ["poison"], "attempt {attempt}");
        test.nack(SUBSCRIPTION, &deliveries[0]).await;
    }
    assert_eq!(test.stats(SUBSCRIPTION).dead_lettered, 1);

    let next = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(
        data_of(&next),
        ["k2"],
        "k2 follows once poison is dead-lettered"
    );
    test.ack(SUBSCRIPTION, &next[0]).await;
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k3"]);
}

#[tokio::test]
async fn reject_unblocks_key() {
    let spec = SubscriptionSpec {
        dead_letter: Some(DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts: 5,
        }),
        ..ordered()
    };
    let test = setup(spec).await;
    test.publish(TOPIC, &[("bad", "k"), ("k2", "k")]).await;

    let bad = test.pull(SUBSCRIPTION, 10).await.remove(0);
    let moved = test
        .broker
        .reject(SUBSCRIPTION, &bad.ack_id, "unreadable")
        .await
        .expect("reject");

    assert!(moved);
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k2"]);
}

#[tokio::test]
async fn waiting_pull_wakes_when_key_unblocks() {
    let test = setup(ordered()).await;
    test.publish(TOPIC, &[("k1", "k"), ("k2", "k")]).await;
    let first = test.pull(SUBSCRIPTION, 10).await;
    let puller = {
        let broker = test.broker.clone();
        tokio::spawn(async move { broker.pull(SUBSCRIPTION, 10, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;

    test.ack(SUBSCRIPTION, &first[0]).await;

    let next = tokio::time::timeout(Duration::from_secs(10), puller)
        .await
        .expect("the pull returned before its wait ran out")
        .expect("task")
        .expect("pull");
    assert_eq!(data_of(&next), ["k2"]);
}

#[tokio::test]
async fn keys_ignored_without_ordering() {
    let test = setup(SubscriptionSpec::new(SUBSCRIPTION, TOPIC)).await;
    test.publish(TOPIC, &[("k1", "k"), ("k2", "k")]).await;

    assert_eq!(
        test.pull_data(SUBSCRIPTION).await,
        ["k1", "k2"],
        "both at once without enable_message_ordering"
    );
}

#[tokio::test]
async fn key_order_survives_restart() {
    let test = setup(ordered()).await;
    test.publish(TOPIC, &[("k1", "k"), ("k2", "k"), ("u1", "")])
        .await;
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k1", "u1"]);

    let test = test.reopen().await;

    let deliveries = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(
        data_of(&deliveries),
        ["k1", "u1"],
        "k1 is delivered again before k2"
    );
    test.ack(SUBSCRIPTION, &deliveries[0]).await;
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["k2"]);
}

#[tokio::test]
async fn ordering_fixed_at_creation() {
    let test = setup(ordered()).await;

    let err = test
        .broker
        .create_subscription(SubscriptionSpec::new(SUBSCRIPTION, TOPIC))
        .await
        .expect_err("ordering cannot be turned off");

    let message = err.to_string();
    assert!(
        message.contains("enable_message_ordering true"),
        "names the setting and its stored value: {message}"
    );
    assert!(
        message.contains("use a new subscription name"),
        "names the fix: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_keep_key_order() {
    let test = setup(ordered()).await;
    let broker = test.broker.clone();
    // Many one-message publishes of one key at once: the store gives them sequence numbers
    // in some order, and the key must be delivered in exactly that order.
    let publishes: Vec<_> = (0..64)
        .map(|index| {
            let broker = broker.clone();
            tokio::spawn(async move {
                let message = harness::message(&index.to_string(), "k", &[]);
                broker
                    .publish(vec![sluice_router::store::TopicMessage {
                        topic: TOPIC.to_owned(),
                        message,
                    }])
                    .await
                    .expect("publish")
            })
        })
        .collect();
    for publish in publishes {
        publish.await.expect("publish task");
    }

    let mut seqs = Vec::new();
    loop {
        let deliveries = test.pull(SUBSCRIPTION, 10).await;
        assert!(deliveries.len() <= 1, "one outstanding message per key");
        let Some(delivery) = deliveries.first() else {
            break;
        };
        seqs.push(delivery.message.seq);
        test.ack(SUBSCRIPTION, delivery).await;
    }
    assert_eq!(seqs.len(), 64);
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "delivered in sequence order: {seqs:?}"
    );
}
