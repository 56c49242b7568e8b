//! Deleting subscriptions and topics: what goes, what stays, and that it lasts across a
//! restart.

mod harness;

use harness::TestBroker;
use sluice_router::store::{StoreError, SubscriptionSpec, DELETED_TOPIC};

const TOPIC: &str = "events";

#[tokio::test]
async fn deleted_subscription_frees_messages() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec::new("a", TOPIC)).await;
    test.subscribe(SubscriptionSpec::new("b", TOPIC)).await;
    test.publish(TOPIC, &[("x", ""), ("y", "")]).await;
    assert_eq!(test.pull_data("a").await, ["x", "y"]);

    test.broker.delete_subscription("b").await.expect("delete");
    assert!(
        test.broker.stats().iter().all(|s| s.spec.name != "b"),
        "gone from the broker"
    );
    let err = test.broker.delete_subscription("b").await;
    assert!(matches!(err, Err(StoreError::SubscriptionNotFound(_))));
    let retained = test.broker.store().retained_messages(TOPIC).expect("count");
    assert_eq!(retained, 2, "a still needs both");

    test.broker.delete_subscription("a").await.expect("delete");
    let retained = test.broker.store().retained_messages(TOPIC).expect("count");
    assert_eq!(retained, 0, "nobody needs them any longer");

    let test = test.reopen().await;
    assert!(
        test.broker.store().subscriptions().is_empty(),
        "deleted for good"
    );
}

#[tokio::test]
async fn recreated_subscription_starts_empty() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec::new("a", TOPIC)).await;
    test.publish(TOPIC, &[("old", "")]).await;
    test.broker.delete_subscription("a").await.expect("delete");
    test.subscribe(SubscriptionSpec::new("a", TOPIC)).await;
    test.publish(TOPIC, &[("new", "")]).await;
    assert_eq!(test.pull_data("a").await, ["new"]);
}

#[tokio::test]
async fn deleted_topic_detaches_subscriptions() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec::new("a", TOPIC)).await;
    test.publish(TOPIC, &[("x", "")]).await;
    test.broker
        .create_snapshot("snap", "a")
        .await
        .expect("snapshot");

    test.broker.delete_topic(TOPIC).await.expect("delete");
    let stats = test.stats("a");
    assert_eq!(stats.spec.topic, DELETED_TOPIC, "detached as in Pub/Sub");
    assert_eq!(stats.backlog, 0);
    assert!(test.pull_data("a").await.is_empty());
    assert!(test.broker.snapshots().is_empty(), "its snapshots go too");
    let err = test.broker.delete_topic(TOPIC).await;
    assert!(matches!(err, Err(StoreError::TopicNotFound(_))));

    let test = test.reopen().await;
    assert_eq!(test.stats("a").spec.topic, DELETED_TOPIC);
    test.broker.create_topic(TOPIC).await.expect("recreate");
    test.subscribe(SubscriptionSpec::new("b", TOPIC)).await;
    test.publish(TOPIC, &[("after", "")]).await;
    let deliveries = test.pull("b", 10).await;
    assert_eq!(harness::data_of(&deliveries), ["after"]);
    assert_eq!(
        deliveries[0].message.id(),
        "2",
        "the recreated topic does not reuse message ids"
    );
    assert!(test.pull_data("a").await.is_empty(), "a stays detached");
}
