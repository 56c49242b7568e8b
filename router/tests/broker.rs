//! The broker over the sled store: publish, pull, ack, redelivery and dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::{Broker, BrokerError};
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage,
};

const NO_WAIT: Duration = Duration::ZERO;

fn spec(name: &str, topic: &str) -> SubscriptionSpec {
    SubscriptionSpec::new(name, topic)
}

fn message(text: &str) -> NewMessage {
    let mut attributes = BTreeMap::new();
    attributes.insert("kind".to_owned(), "test".to_owned());
    NewMessage {
        data: text.as_bytes().to_vec(),
        attributes,
        ordering_key: String::new(),
    }
}

fn to(topic: &str, text: &str) -> TopicMessage {
    TopicMessage {
        topic: topic.to_owned(),
        message: message(text),
    }
}

async fn broker(dir: &std::path::Path) -> Broker {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).expect("store opens"));
    Broker::open(store).expect("broker opens")
}

#[tokio::test]
async fn publish_pull_ack_roundtrip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    let receipts = broker
        .publish(vec![to("t", "one"), to("t", "two")])
        .await
        .expect("publish");
    assert_eq!(
        receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2],
        "ids count up"
    );

    let deliveries = broker.pull("s", 10, NO_WAIT).await.expect("pull");
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].message.message.data, b"one");
    assert_eq!(deliveries[0].message.id(), "1");
    assert_eq!(deliveries[0].message.message.attributes["kind"], "test");
    assert_eq!(
        deliveries[0].delivery_attempt, 0,
        "no dead-letter policy, so no attempt count"
    );
    assert!(
        broker
            .pull("s", 10, NO_WAIT)
            .await
            .expect("pull")
            .is_empty(),
        "both are leased"
    );

    let ack_ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
    broker.ack("s", &ack_ids).await.expect("ack");
    assert_eq!(broker.stats()[0].backlog, 0);
    assert_eq!(
        broker.store().retained_messages("t").expect("count"),
        0,
        "acked messages are deleted"
    );
}

#[tokio::test]
async fn every_subscription_gets_each_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("a", "t"))
        .await
        .expect("subscription a");
    broker
        .create_subscription(spec("b", "t"))
        .await
        .expect("subscription b");
    broker.publish(vec![to("t", "x")]).await.expect("publish");
    let a = broker.pull("a", 10, NO_WAIT).await.expect("pull a");
    let b = broker.pull("b", 10, NO_WAIT).await.expect("pull b");
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    broker
        .ack("a", &[a[0].ack_id.clone()])
        .await
        .expect("ack a");
    assert_eq!(
        broker.store().retained_messages("t").expect("count"),
        1,
        "b still needs it"
    );
    broker
        .ack("b", &[b[0].ack_id.clone()])
        .await
        .expect("ack b");
    assert_eq!(broker.store().retained_messages("t").expect("count"), 0);
}

#[tokio::test]
async fn subscription_sees_only_later_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .publish(vec![to("t", "before")])
        .await
        .expect("publish");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    broker
        .publish(vec![to("t", "after")])
        .await
        .expect("publish");
    let deliveries = broker.pull("s", 10, NO_WAIT).await.expect("pull");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].message.message.data, b"after");
}

#[tokio::test]
async fn pending_messages_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let broker = broker(dir.path()).await;
        broker.create_topic("t").await.expect("topic");
        broker
            .create_subscription(spec("s", "t"))
            .await
            .expect("subscription");
        broker
            .publish(vec![to("t", "kept"), to("t", "acked")])
            .await
            .expect("publish");
        let deliveries = broker.pull("s", 10, NO_WAIT).await.expect("pull");
        broker
            .ack("s", &[deliveries[1].ack_id.clone()])
            .await
            .expect("ack");
        broker.store().flush().await.expect("flush");
    }
    // The committer thread of the first store may still hold the database lock briefly.
    let reopened = loop {
        match SledStore::open(dir.path()) {
            Ok(store) => break store,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let broker = Broker::open(Arc::new(reopened)).expect("broker reopens");
    let deliveries = broker.pull("s", 10, NO_WAIT).await.expect("pull");
    assert_eq!(
        deliveries.len(),
        1,
        "only the unacknowledged message is pending"
    );
    assert_eq!(deliveries[0].message.message.data, b"kept");
    let receipts = broker.publish(vec![to("t", "new")]).await.expect("publish");
    assert_eq!(receipts[0].seq, 3, "ids are not reused after a restart");
}

#[tokio::test(start_paused = true)]
async fn redelivers_after_ack_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    broker.publish(vec![to("t", "x")]).await.expect("publish");
    let first = broker.pull("s", 1, NO_WAIT).await.expect("pull");
    assert_eq!(first.len(), 1);

    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        broker.expire_leases().await,
        0,
        "deadline not reached after 9 s"
    );
    assert!(broker.pull("s", 1, NO_WAIT).await.expect("pull").is_empty());

    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        broker.expire_leases().await,
        1,
        "deadline passed after 11 s"
    );
    let second = broker.pull("s", 1, NO_WAIT).await.expect("pull");
    assert_eq!(second.len(), 1, "redelivered");
    assert_ne!(
        second[0].ack_id, first[0].ack_id,
        "a new delivery has a new ack id"
    );
}

#[tokio::test(start_paused = true)]
async fn modify_deadline_extends_lease() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    broker.publish(vec![to("t", "x")]).await.expect("publish");
    let first = broker.pull("s", 1, NO_WAIT).await.expect("pull");
    broker
        .modify_ack_deadline("s", &[first[0].ack_id.clone()], 60)
        .await
        .expect("extend");
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(broker.expire_leases().await, 0, "extended to 60 s");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(broker.expire_leases().await, 1);
}

#[tokio::test]
async fn dead_letters_after_max_attempts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker.create_topic("dlq").await.expect("dead-letter topic");
    let mut with_policy = spec("s", "t");
    with_policy.dead_letter = Some(DeadLetterPolicy {
        topic: "dlq".to_owned(),
        max_delivery_attempts: 5,
    });
    broker
        .create_subscription(with_policy)
        .await
        .expect("subscription");
    broker
        .create_subscription(spec("dlq", "dlq"))
        .await
        .expect("dead-letter subscription");
    broker
        .publish(vec![to("t", "poison")])
        .await
        .expect("publish");

    let mut seen = Vec::new();
    for _ in 0..10 {
        let deliveries = broker.pull("s", 1, NO_WAIT).await.expect("pull");
        let Some(delivery) = deliveries.first() else {
            break;
        };
        seen.push(delivery.delivery_attempt);
        broker
            .modify_ack_deadline("s", std::slice::from_ref(&delivery.ack_id), 0)
            .await
            .expect("nack");
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "attempts 1..5, never 6");

    let dead = broker
        .pull("dlq", 10, NO_WAIT)
        .await
        .expect("pull dead letters");
    assert_eq!(dead.len(), 1);
    let copy = &dead[0].message.message;
    assert_eq!(copy.data, b"poison", "data kept");
    assert_eq!(copy.attributes["kind"], "test", "attributes kept");
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceSubscription"],
        "s"
    );
    assert!(copy
        .attributes
        .contains_key("CloudPubSubDeadLetterSourceTopicPublishTime"));
    let stats = broker.stats();
    let source = stats
        .iter()
        .find(|s| s.spec.name == "s")
        .expect("stats of s");
    assert_eq!(
        source.backlog, 0,
        "the dead-lettered message left the subscription"
    );
    assert_eq!(source.dead_lettered, 1);
}

#[tokio::test]
async fn malformed_ack_id_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    let err = broker
        .ack("s", &["nonsense".to_owned()])
        .await
        .expect_err("rejected");
    assert!(err.to_string().contains("nonsense"), "{err}");
    assert!(
        broker.ack("missing", &[]).await.is_err(),
        "unknown subscription"
    );
}

#[tokio::test]
async fn waiting_pull_wakes_on_publish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Arc::new(broker(dir.path()).await);
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    let puller = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.pull("s", 1, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker
        .publish(vec![to("t", "wake")])
        .await
        .expect("publish");
    let deliveries = tokio::time::timeout(Duration::from_secs(10), puller)
        .await
        .expect("pull returned before its wait ran out")
        .expect("task")
        .expect("pull");
    assert_eq!(deliveries.len(), 1);
}

#[tokio::test]
async fn reject_dead_letters_at_once_with_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker.create_topic("dead").await.expect("topic");
    let mut with_policy = spec("s", "t");
    with_policy.dead_letter = Some(DeadLetterPolicy {
        topic: "dead".to_owned(),
        max_delivery_attempts: 5,
    });
    broker
        .create_subscription(with_policy)
        .await
        .expect("subscription");
    broker
        .create_subscription(spec("dead", "dead"))
        .await
        .expect("subscription");
    broker.publish(vec![to("t", "bad")]).await.expect("publish");

    let delivery = broker.pull("s", 1, NO_WAIT).await.expect("pull").remove(0);
    assert_eq!(delivery.delivery_attempt, 1);
    let moved = broker
        .reject("s", &delivery.ack_id, "not a JPEG")
        .await
        .expect("reject");
    assert!(moved, "the first attempt is enough to dead-letter");

    let dead = broker.pull("dead", 10, NO_WAIT).await.expect("pull");
    assert_eq!(dead.len(), 1);
    let attributes = &dead[0].message.message.attributes;
    assert_eq!(dead[0].message.message.data, b"bad");
    assert_eq!(attributes["sluiceDeadLetterReason"], "not a JPEG");
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "1");
    assert_eq!(attributes["kind"], "test", "the original attributes stay");
    assert!(broker
        .pull("s", 10, NO_WAIT)
        .await
        .expect("pull")
        .is_empty());
    let again = broker
        .reject("s", &delivery.ack_id, "again")
        .await
        .expect("reject");
    assert!(!again, "a delivery that is no longer leased is left alone");
}

#[tokio::test]
async fn reject_without_policy_drops_the_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    broker.publish(vec![to("t", "bad")]).await.expect("publish");
    let delivery = broker.pull("s", 1, NO_WAIT).await.expect("pull").remove(0);

    let moved = broker
        .reject("s", &delivery.ack_id, "corrupt")
        .await
        .expect("reject");

    assert!(!moved);
    assert_eq!(broker.stats()[0].backlog, 0, "nothing stays pending");
}

#[test]
fn spec_written_before_new_settings_loads() {
    // A catalog record as data dirs created before retry policies, ordering and filters
    // store it.
    let old = r#"{"name":"s","topic":"t","ack_deadline_secs":20,"dead_letter":null}"#;

    let spec: SubscriptionSpec = serde_json::from_str(old).expect("the old record decodes");

    assert_eq!(
        spec,
        SubscriptionSpec {
            ack_deadline_secs: 20,
            ..SubscriptionSpec::new("s", "t")
        }
    );
}

#[tokio::test]
async fn pull_within_returns_what_does_not_fit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(SubscriptionSpec {
            dead_letter: None,
            ..spec("s", "t")
        })
        .await
        .expect("subscription");
    let big = "x".repeat(600);
    broker
        .publish(vec![to("t", &big), to("t", &big), to("t", &big)])
        .await
        .expect("publish");

    let first = broker
        .pull_within("s", 10, 1000, NO_WAIT)
        .await
        .expect("pull");
    assert_eq!(
        first.len(),
        1,
        "a second 600-byte message would pass 1000 bytes"
    );
    let rest = broker.pull("s", 10, NO_WAIT).await.expect("pull");
    assert_eq!(rest.len(), 2, "the others were returned at once");
    assert!(
        rest.iter().all(|delivery| delivery.attempts() == 1),
        "the returned messages' first delivery is still their first attempt"
    );

    let alone = broker
        .pull_within("s", 10, 10, NO_WAIT)
        .await
        .expect("pull");
    assert!(alone.is_empty(), "everything is leased");
    broker
        .modify_ack_deadline("s", &[rest[0].ack_id.clone()], 0)
        .await
        .expect("nack");
    let oversized = broker
        .pull_within("s", 10, 10, NO_WAIT)
        .await
        .expect("pull");
    assert_eq!(
        oversized.len(),
        1,
        "one message is delivered even when larger than the limit"
    );
}

#[tokio::test]
async fn ack_id_of_other_subscription_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    for name in ["a", "b"] {
        broker
            .create_subscription(spec(name, "t"))
            .await
            .expect("subscription");
    }
    broker.publish(vec![to("t", "x")]).await.expect("publish");
    let from_a = broker.pull("a", 1, NO_WAIT).await.expect("pull").remove(0);
    let from_b = broker.pull("b", 1, NO_WAIT).await.expect("pull").remove(0);
    assert_ne!(
        from_a.ack_id, from_b.ack_id,
        "each subscription issues its own"
    );

    let err = broker
        .ack("b", std::slice::from_ref(&from_a.ack_id))
        .await
        .expect_err("a's ack id is not b's");
    assert!(matches!(err, BrokerError::InvalidAckId(_)), "{err}");
    assert_eq!(broker.stats()[1].backlog, 1, "b's message is still pending");
}

#[tokio::test]
async fn ack_id_of_undelivered_message_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(spec("s", "t"))
        .await
        .expect("subscription");
    broker
        .publish(vec![to("t", "first"), to("t", "second")])
        .await
        .expect("publish");
    let delivered = broker.pull("s", 1, NO_WAIT).await.expect("pull").remove(0);
    let tag = delivered.ack_id.rsplit('-').next().expect("tag").to_owned();

    // A well-formed id for the second message, which was never delivered, and one for a
    // later attempt of the first.
    let guesses = [
        format!("2-1-{tag}"),
        format!("1-2-{tag}"),
        format!("2-0-{tag}"),
    ];
    broker
        .ack("s", &guesses)
        .await
        .expect("guesses are ignored");
    assert_eq!(broker.stats()[0].backlog, 2, "nothing was acknowledged");

    let second = broker.pull("s", 1, NO_WAIT).await.expect("pull");
    assert_eq!(second.len(), 1, "the second message is still delivered");
    broker
        .ack("s", &[delivered.ack_id.clone(), second[0].ack_id.clone()])
        .await
        .expect("ack");
    assert_eq!(broker.stats()[0].backlog, 0, "real ack ids still work");
}

#[tokio::test]
async fn pull_reads_at_most_its_byte_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = broker(dir.path()).await;
    broker.create_topic("t").await.expect("topic");
    broker
        .create_subscription(SubscriptionSpec {
            dead_letter: None,
            ..spec("s", "t")
        })
        .await
        .expect("subscription");
    let mib = "m".repeat(1024 * 1024);
    for _ in 0..3 {
        let batch = (0..10).map(|_| to("t", &mib)).collect();
        broker.publish(batch).await.expect("publish");
    }

    let first = broker.pull("s", 1000, NO_WAIT).await.expect("pull");
    let bytes: usize = first.iter().map(|d| d.message.message.data.len()).sum();
    assert!(
        bytes <= sluice_router::deliver::DEFAULT_PULL_BYTES,
        "one pull read {bytes} bytes"
    );
    assert!(
        first.len() >= 9,
        "a pull still fills its budget: {}",
        first.len()
    );
    let mut total = first.len();
    for _ in 0..10 {
        let more = broker.pull("s", 1000, NO_WAIT).await.expect("pull");
        assert!(
            more.iter().all(|delivery| delivery.attempts() == 1),
            "what did not fit was never counted as delivered"
        );
        total += more.len();
    }
    assert_eq!(total, 30, "every message is delivered once");
}
