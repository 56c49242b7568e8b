//! Subscription filters in the broker: messages that do not match are acknowledged when
//! they are published, never delivered and never stored as pending, and they are counted.

mod harness;

use harness::TestBroker;
use sluice_router::store::{StoreError, SubscriptionSpec};

const TOPIC: &str = "uploads";
const FILTERED: &str = "finalized";
const UNFILTERED: &str = "everything";
const FILTER: &str = r#"attributes.eventType = "OBJECT_FINALIZE""#;

fn filtered(filter: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        filter: filter.to_owned(),
        ..SubscriptionSpec::new(FILTERED, TOPIC)
    }
}

async fn publish_events(test: &TestBroker) {
    for (data, event_type) in [
        ("a", "OBJECT_FINALIZE"),
        ("b", "OBJECT_DELETE"),
        ("c", "OBJECT_FINALIZE"),
        ("d", "OBJECT_METADATA_UPDATE"),
    ] {
        test.publish_with(TOPIC, data, &[("eventType", event_type)])
            .await;
    }
    test.publish_with(TOPIC, "e", &[]).await;
}

#[tokio::test]
async fn only_matching_messages_delivered() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered(FILTER)).await;
    test.subscribe(SubscriptionSpec::new(UNFILTERED, TOPIC))
        .await;

    publish_events(&test).await;

    assert_eq!(test.pull_data(FILTERED).await, ["a", "c"]);
    assert_eq!(
        test.pull_data(UNFILTERED).await,
        ["a", "b", "c", "d", "e"],
        "a subscription without a filter gets every message"
    );
}

#[tokio::test]
async fn non_matching_messages_counted() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered(FILTER)).await;

    publish_events(&test).await;

    let stats = test.stats(FILTERED);
    assert_eq!(stats.filtered_out, 3, "b, d and e did not match");
    assert_eq!(stats.backlog, 2, "only a and c are pending");
    assert_eq!(stats.delivered, 0);
}

#[tokio::test]
async fn non_matching_messages_never_pending() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered(FILTER)).await;
    publish_events(&test).await;

    let pending = test
        .broker
        .store()
        .pending(FILTERED)
        .expect("pending entries");
    assert_eq!(
        pending.iter().map(|entry| entry.seq).collect::<Vec<_>>(),
        [1, 3],
        "only a and c are stored as pending"
    );
    assert_eq!(
        test.broker.store().retained_messages(TOPIC).expect("count"),
        2,
        "messages that no subscription takes are not kept"
    );

    let test = test.reopen().await;
    assert_eq!(
        test.pull_data(FILTERED).await,
        ["a", "c"],
        "a restart delivers only the matching messages"
    );
}

#[tokio::test]
async fn empty_filter_passes_everything() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered("  ")).await;

    publish_events(&test).await;

    assert_eq!(test.pull_data(FILTERED).await.len(), 5);
    assert_eq!(test.stats(FILTERED).filtered_out, 0);
}

#[tokio::test]
async fn dead_letter_topic_subscription_filters_copies() {
    let test = TestBroker::with_topics(&[TOPIC, "dead"]).await;
    let source = SubscriptionSpec {
        dead_letter: Some(sluice_router::store::DeadLetterPolicy {
            topic: "dead".to_owned(),
            max_delivery_attempts: 5,
        }),
        ..SubscriptionSpec::new("source", TOPIC)
    };
    test.subscribe(source).await;
    let dead_letters = SubscriptionSpec {
        filter: r#"attributes.eventType = "OBJECT_FINALIZE""#.to_owned(),
        ..SubscriptionSpec::new("dead-finalized", "dead")
    };
    test.subscribe(dead_letters).await;
    publish_events(&test).await;

    for delivery in test.pull("source", 10).await {
        test.broker
            .reject("source", &delivery.ack_id, "unwanted")
            .await
            .expect("reject");
    }

    assert_eq!(test.pull_data("dead-finalized").await, ["a", "c"]);
    assert_eq!(test.stats("dead-finalized").filtered_out, 3);
}

#[tokio::test]
async fn filter_fixed_at_creation() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered(FILTER)).await;

    let err = test
        .broker
        .create_subscription(filtered("attributes:eventType"))
        .await
        .expect_err("the filter cannot change");

    assert!(
        matches!(
            err,
            StoreError::SubscriptionConflict {
                setting: "filter",
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(FILTER.replace('"', "\\\"").as_str()),
        "quotes the filter: {message}"
    );
    assert!(
        message.contains("use a new subscription name"),
        "names the fix: {message}"
    );
    let same = test.broker.create_subscription(filtered(FILTER)).await;
    assert!(same.is_ok(), "the same filter again is fine: {same:?}");
}

#[tokio::test]
async fn other_settings_change_with_filter() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(filtered(FILTER)).await;

    let changed = SubscriptionSpec {
        ack_deadline_secs: 60,
        ..filtered(FILTER)
    };
    test.subscribe(changed).await;

    assert_eq!(test.stats(FILTERED).spec.ack_deadline_secs, 60);
}

#[tokio::test]
async fn invalid_filter_rejected() {
    let test = TestBroker::with_topics(&[TOPIC]).await;

    let err = test
        .broker
        .create_subscription(filtered("attributes.eventType ="))
        .await
        .expect_err("the filter does not parse");

    assert!(matches!(err, StoreError::InvalidFilter { .. }), "{err:?}");
    assert!(
        err.to_string().contains("column"),
        "gives the position: {err}"
    );
}
