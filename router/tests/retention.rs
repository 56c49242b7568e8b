//! Message retention, seek and snapshots, on tokio's paused clock: the broker's wall clock
//! moves with `advance`, so days of retention pass at once.

mod harness;

use std::time::{Duration, SystemTime};

use harness::TestBroker;
use sluice_router::deliver::BrokerError;
use sluice_router::store::{SeekTarget, StoreError, SubscriptionSpec, TopicSettings};
use tokio::time::advance;

const TOPIC: &str = "events";
const OTHER_TOPIC: &str = "other";
const SUBSCRIPTION: &str = "work";
const TEN_MINUTES: u64 = 600;
const SEVEN_DAYS: u64 = 7 * 24 * 3600;

fn spec(retention_secs: u64, retain_acked: bool) -> SubscriptionSpec {
    SubscriptionSpec {
        message_retention_secs: retention_secs,
        retain_acked_messages: retain_acked,
        ..SubscriptionSpec::new(SUBSCRIPTION, TOPIC)
    }
}

async fn broker_with(spec: SubscriptionSpec) -> TestBroker {
    let test = TestBroker::with_topics(&[TOPIC, OTHER_TOPIC]).await;
    test.subscribe(spec).await;
    test
}

/// Pulls and acknowledges everything that is ready, and returns its data.
async fn drain(test: &TestBroker) -> Vec<String> {
    let deliveries = test.pull(SUBSCRIPTION, 100).await;
    for delivery in &deliveries {
        test.ack(SUBSCRIPTION, delivery).await;
    }
    harness::data_of(&deliveries)
}

fn retained(test: &TestBroker) -> u64 {
    test.broker.store().retained_messages(TOPIC).expect("count")
}

async fn seek_time(test: &TestBroker, time: SystemTime) {
    test.broker
        .seek(SUBSCRIPTION, SeekTarget::Time(time))
        .await
        .expect("seek to time");
}

async fn seek_snapshot(test: &TestBroker, name: &str) -> Result<(), BrokerError> {
    test.broker
        .seek(SUBSCRIPTION, SeekTarget::Snapshot(name.to_owned()))
        .await
}

#[tokio::test(start_paused = true)]
async fn unacked_messages_expire_after_retention() {
    let test = broker_with(spec(TEN_MINUTES, false)).await;
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;

    advance(Duration::from_secs(TEN_MINUTES - 1)).await;
    assert_eq!(test.broker.sweep().await.expect("sweep"), 0);
    assert_eq!(
        test.stats(SUBSCRIPTION).backlog,
        2,
        "still inside retention"
    );

    advance(Duration::from_secs(2)).await;
    assert_eq!(test.broker.sweep().await.expect("sweep"), 2);
    let stats = test.stats(SUBSCRIPTION);
    assert_eq!(stats.backlog, 0, "expired messages leave the backlog");
    assert_eq!(stats.retention_expired, 2, "expired messages are counted");
    assert!(test.pull(SUBSCRIPTION, 10).await.is_empty());
    assert_eq!(retained(&test), 0, "expired messages are deleted");
}

#[tokio::test(start_paused = true)]
async fn expiry_keeps_newer_messages() {
    let test = broker_with(spec(TEN_MINUTES, false)).await;
    test.publish(TOPIC, &[("old", "")]).await;
    advance(Duration::from_secs(300)).await;
    test.publish(TOPIC, &[("new", "")]).await;
    advance(Duration::from_secs(301)).await;

    assert_eq!(test.broker.sweep().await.expect("sweep"), 1);
    assert_eq!(test.pull_data(SUBSCRIPTION).await, ["new"]);
}

#[tokio::test(start_paused = true)]
async fn leased_message_expiry_ends_lease() {
    let test = broker_with(spec(TEN_MINUTES, false)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    let deliveries = test.pull(SUBSCRIPTION, 10).await;
    assert_eq!(deliveries.len(), 1);

    advance(Duration::from_secs(TEN_MINUTES + 1)).await;
    assert_eq!(test.broker.sweep().await.expect("sweep"), 1);
    assert_eq!(test.stats(SUBSCRIPTION).outstanding, 0);
    // A late ack of the expired message is accepted and changes nothing.
    test.ack(SUBSCRIPTION, &deliveries[0]).await;
    assert_eq!(test.stats(SUBSCRIPTION).backlog, 0);
}

#[tokio::test(start_paused = true)]
async fn seek_back_without_retention_keeps_acked_gone() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    let start = test.broker.now();
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;
    let deliveries = test.pull(SUBSCRIPTION, 1).await;
    test.ack(SUBSCRIPTION, &deliveries[0]).await;
    assert_eq!(
        retained(&test),
        1,
        "an acknowledged message is not retained"
    );

    seek_time(&test, start).await;
    assert_eq!(
        drain(&test).await,
        ["b"],
        "only the unacknowledged message comes back"
    );
}

#[tokio::test(start_paused = true)]
async fn retain_acked_replays_from_time() {
    let test = broker_with(spec(SEVEN_DAYS, true)).await;
    let start = test.broker.now();
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;
    advance(Duration::from_secs(60)).await;
    let middle = test.broker.now();
    test.publish(TOPIC, &[("c", "")]).await;
    assert_eq!(drain(&test).await, ["a", "b", "c"]);
    assert_eq!(retained(&test), 3, "acknowledged messages are retained");
    assert_eq!(test.stats(SUBSCRIPTION).backlog, 0);

    seek_time(&test, start).await;
    assert_eq!(
        drain(&test).await,
        ["a", "b", "c"],
        "a seek back replays all"
    );

    seek_time(&test, middle).await;
    assert_eq!(drain(&test).await, ["c"], "only messages from the time on");
}

#[tokio::test(start_paused = true)]
async fn seek_forward_acknowledges_everything_before() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;
    advance(Duration::from_secs(60)).await;

    seek_time(&test, test.broker.now()).await;
    assert_eq!(test.stats(SUBSCRIPTION).backlog, 0);
    assert!(test.pull(SUBSCRIPTION, 10).await.is_empty());
    assert_eq!(retained(&test), 0, "acknowledged by the seek and deleted");
}

#[tokio::test(start_paused = true)]
async fn retained_acked_messages_expire() {
    let test = broker_with(spec(TEN_MINUTES, true)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    assert_eq!(drain(&test).await, ["a"]);
    assert_eq!(retained(&test), 1);

    advance(Duration::from_secs(TEN_MINUTES + 1)).await;
    assert_eq!(
        test.broker.sweep().await.expect("sweep"),
        0,
        "an acknowledged message is not counted as expired"
    );
    assert_eq!(retained(&test), 0, "deleted after the retention");
}

#[tokio::test(start_paused = true)]
async fn topic_retention_replays_before_subscription() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.broker
        .update_topic(
            TOPIC,
            TopicSettings {
                message_retention_secs: Some(3600),
            },
        )
        .await
        .expect("topic retention");
    let start = test.broker.now();
    test.publish(TOPIC, &[("early", "")]).await;
    test.subscribe(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("late", "")]).await;
    assert_eq!(
        drain(&test).await,
        ["late"],
        "a new subscription starts empty"
    );

    seek_time(&test, start).await;
    assert_eq!(
        drain(&test).await,
        ["early", "late"],
        "the topic's retention covers messages from before the subscription"
    );

    advance(Duration::from_secs(3601)).await;
    test.broker.sweep().await.expect("sweep");
    assert_eq!(retained(&test), 0, "deleted after the topic's retention");
}

#[tokio::test(start_paused = true)]
async fn seek_respects_filter() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.subscribe(SubscriptionSpec {
        filter: "attributes.kind = \"keep\"".to_owned(),
        ..spec(SEVEN_DAYS, true)
    })
    .await;
    let start = test.broker.now();
    test.publish_with(TOPIC, "kept", &[("kind", "keep")]).await;
    test.publish_with(TOPIC, "dropped", &[("kind", "drop")])
        .await;
    assert_eq!(drain(&test).await, ["kept"]);

    seek_time(&test, start).await;
    assert_eq!(drain(&test).await, ["kept"]);
}

#[tokio::test(start_paused = true)]
async fn snapshot_replays_unacked_and_later() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;
    let first = test.pull(SUBSCRIPTION, 1).await;
    test.ack(SUBSCRIPTION, &first[0]).await;

    let snapshot = test
        .broker
        .create_snapshot("before-c", SUBSCRIPTION)
        .await
        .expect("snapshot");
    assert_eq!(snapshot.unacked, 1, "b is unacknowledged");
    assert_eq!(snapshot.topic, TOPIC);

    test.publish(TOPIC, &[("c", "")]).await;
    assert_eq!(drain(&test).await, ["b", "c"]);
    assert_eq!(retained(&test), 2, "the snapshot keeps b and c");

    seek_snapshot(&test, "before-c").await.expect("seek");
    assert_eq!(drain(&test).await, ["b", "c"], "a stays acknowledged");
}

#[tokio::test(start_paused = true)]
async fn snapshot_survives_restart() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    test.broker
        .create_snapshot("snap", SUBSCRIPTION)
        .await
        .expect("snapshot");
    assert_eq!(drain(&test).await, ["a"]);

    let test = test.reopen().await;
    assert_eq!(test.broker.snapshots().len(), 1);
    seek_snapshot(&test, "snap").await.expect("seek");
    assert_eq!(drain(&test).await, ["a"]);
}

#[tokio::test(start_paused = true)]
async fn snapshot_create_list_delete() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    let created = test
        .broker
        .create_snapshot("snap", SUBSCRIPTION)
        .await
        .expect("snapshot");
    let again = test.broker.create_snapshot("snap", SUBSCRIPTION).await;
    assert!(
        matches!(again, Err(StoreError::SnapshotExists(ref name)) if name == "snap"),
        "a taken name is rejected: {again:?}"
    );
    assert_eq!(test.broker.snapshots(), [created]);

    test.broker.delete_snapshot("snap").await.expect("delete");
    assert!(test.broker.snapshots().is_empty());
    let deleted = test.broker.delete_snapshot("snap").await;
    assert!(matches!(deleted, Err(StoreError::SnapshotNotFound(_))));
    let sought = seek_snapshot(&test, "snap").await;
    assert!(
        matches!(
            sought,
            Err(BrokerError::Store(StoreError::SnapshotNotFound(_)))
        ),
        "seek to a deleted snapshot: {sought:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn deleted_snapshot_frees_messages() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    test.broker
        .create_snapshot("snap", SUBSCRIPTION)
        .await
        .expect("snapshot");
    test.publish(TOPIC, &[("b", "")]).await;
    assert_eq!(drain(&test).await, ["a", "b"]);
    assert_eq!(retained(&test), 2);

    test.broker.delete_snapshot("snap").await.expect("delete");
    test.broker.sweep().await.expect("sweep");
    assert_eq!(retained(&test), 0);
}

#[tokio::test(start_paused = true)]
async fn snapshot_of_other_topic_rejected() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.subscribe(SubscriptionSpec::new("elsewhere", OTHER_TOPIC))
        .await;
    test.broker
        .create_snapshot("other-snap", "elsewhere")
        .await
        .expect("snapshot");
    let sought = seek_snapshot(&test, "other-snap").await;
    assert!(
        matches!(
            sought,
            Err(BrokerError::Store(StoreError::SnapshotTopicMismatch { .. }))
        ),
        "seek across topics: {sought:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn snapshot_expires_after_seven_days() {
    let test = broker_with(spec(SEVEN_DAYS, false)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    advance(Duration::from_secs(3600)).await;
    let snapshot = test
        .broker
        .create_snapshot("snap", SUBSCRIPTION)
        .await
        .expect("snapshot");
    let created = snapshot.created_secs;
    assert_eq!(
        snapshot.expire_secs,
        created + SEVEN_DAYS - 3600,
        "lifetime shortened by the age of the oldest unacknowledged message"
    );

    advance(Duration::from_secs(SEVEN_DAYS - 3600 + 1)).await;
    test.broker.sweep().await.expect("sweep");
    assert!(
        test.broker.snapshots().is_empty(),
        "expired snapshot deleted"
    );
}

#[tokio::test(start_paused = true)]
async fn topic_without_subscriptions_expires_messages() {
    let test = TestBroker::with_topics(&[TOPIC]).await;
    test.publish(TOPIC, &[("a", ""), ("b", "")]).await;
    assert_eq!(retained(&test), 2, "kept while nobody subscribes");

    advance(Duration::from_secs(SEVEN_DAYS + 1)).await;
    test.broker.sweep().await.expect("sweep");
    assert_eq!(retained(&test), 0);
    assert_eq!(
        test.broker.unclaimed_expired(),
        [(TOPIC.to_owned(), 2)],
        "counted per topic"
    );
}

#[tokio::test(start_paused = true)]
async fn maintenance_applies_retention() {
    let test = broker_with(spec(TEN_MINUTES, false)).await;
    test.publish(TOPIC, &[("a", "")]).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let maintenance = tokio::spawn(test.broker.clone().run_maintenance(async {
        let _ = stopped.await;
    }));

    tokio::time::sleep(Duration::from_secs(TEN_MINUTES + 120)).await;
    // The sweep waits for the store's thread, which the paused clock does not wait for, so
    // give it real time to finish.
    for _ in 0..400 {
        if test.stats(SUBSCRIPTION).retention_expired > 0 {
            break;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "tokio's sleep would move the paused clock instead of waiting"
        )]
        std::thread::sleep(Duration::from_millis(5));
        tokio::task::yield_now().await;
    }
    assert_eq!(test.stats(SUBSCRIPTION).retention_expired, 1);
    let _ = stop.send(());
    maintenance.await.expect("maintenance stops");
}
