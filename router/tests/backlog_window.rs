//! A backlog larger than the in-memory window: the broker keeps at most `QUEUE_WINDOW`
//! ready messages per subscription and reads the rest from the store as the queue drains,
//! in order, with ordering keys intact, and across a restart.

mod harness;

use harness::{message, TestBroker};
use sluice_router::deliver::QUEUE_WINDOW;
use sluice_router::store::{SubscriptionSpec, TopicMessage};

const TOPIC: &str = "events";
const SUBSCRIPTION: &str = "work";
const BACKLOG: usize = QUEUE_WINDOW * 2 + 500;

/// Publishes `BACKLOG` messages whose data is their index, cycling over `keys` ordering
/// keys (none when `keys` is 0).
async fn publish_backlog(test: &TestBroker, keys: usize) {
    let all: Vec<TopicMessage> = (0..BACKLOG)
        .map(|index| {
            let key = if keys == 0 {
                String::new()
            } else {
                format!("key-{}", index % keys)
            };
            TopicMessage {
                topic: TOPIC.to_owned(),
                message: message(&index.to_string(), &key, &[]),
            }
        })
        .collect();
    for batch in all.chunks(1000) {
        test.broker.publish(batch.to_vec()).await.expect("publish");
    }
}

/// Pulls and acknowledges until nothing is ready, and returns the data in delivery order.
async fn drain(test: &TestBroker) -> Vec<usize> {
    let mut seen = Vec::new();
    loop {
        let deliveries = test.pull(SUBSCRIPTION, 1000).await;
        if deliveries.is_empty() {
            return seen;
        }
        let ack_ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
        for data in harness::data_of(&deliveries) {
            seen.push(data.parse().expect("index"));
        }
        test.broker.ack(SUBSCRIPTION, &ack_ids).await.expect("ack");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_beyond_window_delivered_in_order() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec::new(SUBSCRIPTION, TOPIC))
        .await;
    publish_backlog(&test, 0).await;
    assert_eq!(test.stats(SUBSCRIPTION).backlog, BACKLOG as u64);

    let seen = drain(&test).await;
    assert_eq!(seen.len(), BACKLOG, "every message delivered once");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    assert_eq!(test.stats(SUBSCRIPTION).backlog, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_beyond_window_survives_restart() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec::new(SUBSCRIPTION, TOPIC))
        .await;
    publish_backlog(&test, 0).await;

    let test = test.reopen().await;
    assert_eq!(test.stats(SUBSCRIPTION).backlog, BACKLOG as u64);
    let seen = drain(&test).await;
    assert_eq!(seen.len(), BACKLOG);
}

#[tokio::test(flavor = "multi_thread")]
async fn ordered_backlog_beyond_window_keeps_keys() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec {
        enable_message_ordering: true,
        ..SubscriptionSpec::new(SUBSCRIPTION, TOPIC)
    })
    .await;
    publish_backlog(&test, 7).await;

    let seen = drain(&test).await;
    assert_eq!(seen.len(), BACKLOG, "every message delivered once");
    for key in 0..7 {
        let of_key: Vec<usize> = seen.iter().copied().filter(|i| i % 7 == key).collect();
        assert!(
            of_key.windows(2).all(|pair| pair[0] < pair[1]),
            "key {key} in publish order"
        );
    }
}
