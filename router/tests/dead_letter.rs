//! Dead-lettering with a retry policy: delivery attempts counted up to the limit, and the
//! dead-lettered copy of a message.

mod harness;

use std::time::Duration;

use harness::TestBroker;
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, RetryPolicy, SubscriptionSpec, TopicMessage,
};
use tokio::time::advance;

const TOPIC: &str = "orders";
const SUBSCRIPTION: &str = "billing";
const DEAD_LETTER_TOPIC: &str = "orders-dead";
const DEAD_LETTER_SUBSCRIPTION: &str = "orders-dead";

fn spec(max_delivery_attempts: u32) -> SubscriptionSpec {
    SubscriptionSpec {
        dead_letter: Some(DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts,
        }),
        retry_policy: Some(RetryPolicy::from_secs(1, 4)),
        enable_message_ordering: true,
        ..SubscriptionSpec::new(SUBSCRIPTION, TOPIC)
    }
}

async fn setup(max_delivery_attempts: u32) -> TestBroker {
    let test = TestBroker::with_topics(&[TOPIC, DEAD_LETTER_TOPIC]).await;
    test.subscribe(spec(max_delivery_attempts)).await;
    test.subscribe(SubscriptionSpec::new(
        DEAD_LETTER_SUBSCRIPTION,
        DEAD_LETTER_TOPIC,
    ))
    .await;
    let poison = NewMessage {
        data: b"poison".to_vec(),
        attributes: [("customer".to_owned(), "42".to_owned())].into(),
        ordering_key: "customer-42".to_owned(),
    };
    test.broker
        .publish(vec![TopicMessage {
            topic: TOPIC.to_owned(),
            message: poison,
        }])
        .await
        .expect("publish");
    test
}

/// Nacks every delivery, waiting out each backoff, and returns the `delivery_attempt` of
/// each delivery seen.
async fn nack_until_gone(test: &TestBroker) -> Vec<u32> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let deliveries = test.pull(SUBSCRIPTION, 10).await;
        for delivery in &deliveries {
            seen.push(delivery.delivery_attempt);
            test.nack(SUBSCRIPTION, delivery).await;
        }
        if deliveries.is_empty() && test.stats(SUBSCRIPTION).backlog == 0 {
            break;
        }
        advance(Duration::from_secs(4)).await;
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn always_nacked_message_seen_max_times() {
    for max_delivery_attempts in [5, 7] {
        let test = setup(max_delivery_attempts).await;

        let seen = nack_until_gone(&test).await;

        let expected: Vec<u32> = (1..=max_delivery_attempts).collect();
        assert_eq!(
            seen, expected,
            "attempts 1 to {max_delivery_attempts}, never more"
        );
        let stats = test.stats(SUBSCRIPTION);
        assert_eq!(stats.dead_lettered, 1);
        assert_eq!(stats.backlog, 0, "the message left the subscription");
    }
}

#[tokio::test(start_paused = true)]
async fn dead_letter_copy_keeps_message() {
    let test = setup(5).await;
    nack_until_gone(&test).await;

    let dead = test.pull(DEAD_LETTER_SUBSCRIPTION, 10).await;
    assert_eq!(dead.len(), 1);
    let copy = &dead[0].message.message;
    assert_eq!(copy.data, b"poison", "data kept");
    assert_eq!(copy.attributes["customer"], "42", "attributes kept");
    assert_eq!(copy.ordering_key, "customer-42", "ordering key kept");
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceSubscription"],
        SUBSCRIPTION
    );
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceSubscriptionProject"],
        "local"
    );
    assert!(
        copy.attributes
            .contains_key("CloudPubSubDeadLetterSourceTopicPublishTime"),
        "publish time of the original: {:?}",
        copy.attributes
    );
    assert_eq!(
        dead[0].delivery_attempt, 0,
        "the dead-letter subscription has no dead-letter policy"
    );
}
