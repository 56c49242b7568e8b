//! The delivery behaviour that both stores keep: acknowledgements, ack deadlines, retries
//! with backoff, dead letters, ordering keys, filters, crash survival and seeks, and the
//! documented differences of JetStream. Every test runs
//! once over the embedded sled store and once over JetStream.
//!
//! The clock is real, because JetStream's ack deadlines run on the server, so the tests
//! use deadlines and backoffs of one second.

mod nats;
mod stores;

use std::collections::HashMap;
use std::time::Duration;

use sluice_router::store::{
    DeadLetterPolicy, NewMessage, RetryPolicy, SeekTarget, StoreError, SubscriptionSpec,
    TopicMessage, TopicSettings, DEFAULT_RETENTION_SECS,
};
use stores::{data_of, Fixture, StoreKind, KINDS};

const WAIT: Duration = Duration::from_secs(3);
const NO_WAIT: Duration = Duration::ZERO;

fn spec(name: &str, topic: &str, ack_deadline_secs: u32) -> SubscriptionSpec {
    SubscriptionSpec {
        ack_deadline_secs,
        ..SubscriptionSpec::new(name, topic)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_are_not_redelivered() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 1)).await;
        fixture
            .publish("t", &[("a", ""), ("b", ""), ("c", "")])
            .await;

        let mut deliveries = fixture.pull_wait("s", 10, WAIT).await;
        while deliveries.len() < 3 {
            let more = fixture.pull_wait("s", 10, WAIT).await;
            assert!(
                !more.is_empty(),
                "{kind:?}: fewer than 3 messages delivered"
            );
            deliveries.extend(more);
        }
        assert_eq!(data_of(&deliveries), ["a", "b", "c"], "{kind:?}");
        fixture.ack("s", &deliveries).await;

        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let again = fixture.pull_wait("s", 10, Duration::from_millis(500)).await;
        assert!(
            again.is_empty(),
            "{kind:?}: redelivered {:?}",
            data_of(&again)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_deadline_redelivers() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 1)).await;
        fixture.publish("t", &[("a", "")]).await;

        let first = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(data_of(&first), ["a"], "{kind:?}");
        assert_eq!(first[0].attempts(), 1, "{kind:?}");
        let before_deadline = fixture.pull_wait("s", 1, NO_WAIT).await;
        assert!(
            before_deadline.is_empty(),
            "{kind:?}: leased message delivered twice"
        );

        let second = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(data_of(&second), ["a"], "{kind:?}");
        assert_eq!(second[0].attempts(), 2, "{kind:?}");
        fixture.ack("s", &second).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_deadline_holds_lease() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 2)).await;
        fixture.publish("t", &[("a", "")]).await;
        let first = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(first.len(), 1, "{kind:?}");

        // Extend twice, each time before the deadline, for 3 s in all past the first one.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            fixture
                .broker
                .modify_ack_deadline("s", &[first[0].ack_id.clone()], 2)
                .await
                .expect("extend");
        }
        let during = fixture.pull_wait("s", 1, Duration::from_millis(500)).await;
        assert!(during.is_empty(), "{kind:?}: extended lease redelivered");
        fixture.ack("s", &first).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_retries_after_backoff() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                retry_policy: Some(RetryPolicy::from_secs(2, 2)),
                ..spec("s", "t", 10)
            })
            .await;
        fixture.publish("t", &[("a", "")]).await;
        let first = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(first.len(), 1, "{kind:?}");

        fixture.nack("s", &first).await;
        let started = tokio::time::Instant::now();
        let during_backoff = fixture
            .pull_wait("s", 1, Duration::from_millis(1_000))
            .await;
        assert!(
            during_backoff.is_empty(),
            "{kind:?}: redelivered during the backoff"
        );

        let retried = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(data_of(&retried), ["a"], "{kind:?}");
        assert!(
            started.elapsed() >= Duration::from_millis(1_900),
            "{kind:?}"
        );
        assert_eq!(retried[0].attempts(), 2, "{kind:?}");
        fixture.ack("s", &retried).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t", "dead"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                dead_letter: Some(DeadLetterPolicy {
                    topic: "dead".to_owned(),
                    max_delivery_attempts: 2,
                }),
                ..spec("s", "t", 10)
            })
            .await;
        fixture.subscribe(spec("dead-s", "dead", 10)).await;
        fixture.publish("t", &[("a", "")]).await;

        for attempt in 1..=2 {
            let delivery = fixture.pull_wait("s", 1, WAIT).await;
            assert_eq!(data_of(&delivery), ["a"], "{kind:?} attempt {attempt}");
            assert_eq!(delivery[0].delivery_attempt, attempt, "{kind:?}");
            fixture.nack("s", &delivery).await;
        }
        // JetStream moves the message when it is fetched once more; sled when the nack
        // ends the last attempt. Either way no third delivery reaches a consumer.
        let third = fixture.pull_wait("s", 1, Duration::from_millis(500)).await;
        assert!(
            third.is_empty(),
            "{kind:?}: delivered {:?}",
            data_of(&third)
        );

        let dead = fixture.pull_wait("dead-s", 1, WAIT).await;
        assert_eq!(data_of(&dead), ["a"], "{kind:?}");
        let attributes = &dead[0].message.message.attributes;
        assert_eq!(
            attributes
                .get("CloudPubSubDeadLetterSourceDeliveryCount")
                .map(String::as_str),
            Some("2"),
            "{kind:?}"
        );
        assert_eq!(
            attributes
                .get("CloudPubSubDeadLetterSourceSubscription")
                .map(String::as_str),
            Some("s"),
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_dead_lettered_with_reason() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t", "dead"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                dead_letter: Some(DeadLetterPolicy {
                    topic: "dead".to_owned(),
                    max_delivery_attempts: 5,
                }),
                ..spec("s", "t", 10)
            })
            .await;
        fixture.subscribe(spec("dead-s", "dead", 10)).await;
        fixture.publish("t", &[("a", "")]).await;
        let delivery = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(delivery.len(), 1, "{kind:?}");

        let moved = fixture
            .broker
            .reject("s", &delivery[0].ack_id, "bad input")
            .await
            .expect("reject");
        assert!(moved, "{kind:?}");

        let dead = fixture.pull_wait("dead-s", 1, WAIT).await;
        assert_eq!(data_of(&dead), ["a"], "{kind:?}");
        assert_eq!(
            dead[0]
                .message
                .message
                .attributes
                .get(sluice_router::deliver::DEAD_LETTER_REASON_ATTRIBUTE)
                .map(String::as_str),
            Some("bad input"),
            "{kind:?}"
        );
        let again = fixture.pull_wait("s", 1, Duration::from_millis(500)).await;
        assert!(again.is_empty(), "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_key_order_survives_nack() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                enable_message_ordering: true,
                ..spec("s", "t", 10)
            })
            .await;
        fixture
            .publish("t", &[("a1", "a"), ("b1", "b"), ("a2", "a"), ("b2", "b")])
            .await;

        let mut seen: HashMap<String, Vec<String>> = HashMap::new();
        let mut nacked_once = false;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
        while seen.values().map(Vec::len).sum::<usize>() < 4 {
            assert!(tokio::time::Instant::now() < give_up, "{kind:?}: {seen:?}");
            let deliveries = fixture.pull_wait("s", 10, WAIT).await;
            for delivery in deliveries {
                let data = String::from_utf8_lossy(&delivery.message.message.data).into_owned();
                if data == "a1" && !nacked_once {
                    nacked_once = true;
                    fixture.nack("s", std::slice::from_ref(&delivery)).await;
                    continue;
                }
                seen.entry(delivery.message.message.ordering_key.clone())
                    .or_default()
                    .push(data);
                fixture.ack("s", std::slice::from_ref(&delivery)).await;
            }
        }
        assert_eq!(seen["a"], ["a1", "a2"], "{kind:?}");
        assert_eq!(seen["b"], ["b1", "b2"], "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_delivers_only_matches() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                filter: "attributes.color = \"red\"".to_owned(),
                ..spec("s", "t", 10)
            })
            .await;
        fixture
            .publish_with("t", "red-1", &[("color", "red")])
            .await;
        fixture
            .publish_with("t", "blue", &[("color", "blue")])
            .await;
        fixture.publish_with("t", "none", &[]).await;
        fixture
            .publish_with("t", "red-2", &[("color", "red")])
            .await;

        let mut delivered = Vec::new();
        loop {
            let deliveries = fixture
                .pull_wait("s", 10, Duration::from_millis(1_000))
                .await;
            if deliveries.is_empty() {
                break;
            }
            fixture.ack("s", &deliveries).await;
            delivered.extend(data_of(&deliveries));
        }
        assert_eq!(delivered, ["red-1", "red-2"], "{kind:?}");
        let stats = fixture
            .broker
            .stats()
            .into_iter()
            .find(|stats| stats.spec.name == "s")
            .expect("stats");
        assert_eq!(stats.filtered_out, 2, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_survive_crash() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 1)).await;
        fixture.publish("t", &[("a", ""), ("b", "")]).await;
        let first = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(data_of(&first), ["a"], "{kind:?}");
        fixture.ack("s", &first).await;
        let leased = fixture.pull_wait("s", 1, WAIT).await;
        assert_eq!(data_of(&leased), ["b"], "{kind:?}");

        let fixture = fixture.crash_and_reopen().await;

        let after = fixture.pull_wait("s", 10, WAIT).await;
        assert_eq!(data_of(&after), ["b"], "{kind:?}");
        fixture.ack("s", &after).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_subscription_is_not_found() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 10)).await;
        fixture
            .broker
            .delete_subscription("s")
            .await
            .expect("delete");

        let result = fixture.broker.pull("s", 1, NO_WAIT).await;
        assert!(
            matches!(
                result,
                Err(sluice_router::deliver::BrokerError::SubscriptionNotFound(_))
            ),
            "{kind:?}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_ack_id_is_rejected() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture.subscribe(spec("s", "t", 10)).await;
        fixture.subscribe(spec("other", "t", 10)).await;
        fixture.publish("t", &[("a", "")]).await;
        let delivery = fixture.pull_wait("other", 1, WAIT).await;
        assert_eq!(delivery.len(), 1, "{kind:?}");

        let result = fixture.broker.ack("s", &[delivery[0].ack_id.clone()]).await;
        assert!(
            matches!(
                result,
                Err(sluice_router::deliver::BrokerError::InvalidAckId(_))
            ),
            "{kind:?}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_one_subscription() {
    let fixture = Fixture::open(StoreKind::JetStream, &["t"]).await;
    fixture.subscribe(spec("s", "t", 10)).await;
    let other = fixture.another_node().await;
    fixture.publish("t", &[("a", ""), ("b", "")]).await;

    let this_node = fixture.pull_wait("s", 1, WAIT).await;
    let other_node = other
        .pull("s", 1, WAIT)
        .await
        .expect("pull on the other node");
    assert_eq!(this_node.len(), 1);
    assert_eq!(other_node.len(), 1);
    assert_ne!(
        data_of(&this_node),
        data_of(&other_node),
        "one message went to both nodes"
    );

    // An ack id issued by one node is settled by the other.
    other
        .ack("s", &[this_node[0].ack_id.clone()])
        .await
        .expect("ack on the other node");
    fixture.ack("s", &other_node).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = fixture.pull_wait("s", 10, Duration::from_millis(500)).await;
    assert!(rest.is_empty(), "redelivered {:?}", data_of(&rest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_error_names_url() {
    let url = format!("nats://127.0.0.1:{}", nats::free_port());
    let mut options = sluice_router::store::jetstream::JetStreamOptions::new(vec![url.clone()]);
    options.connect_timeout = Duration::from_secs(1);

    let error = sluice_router::store::jetstream::JetStreamStore::connect(&options)
        .await
        .expect_err("nothing listens there");

    let text = error.to_string();
    assert!(text.contains(&url), "{text}");
    assert!(text.contains("failed to connect to JetStream"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_to_time_redelivers_acked() {
    for kind in KINDS {
        let fixture = Fixture::open(kind, &["t"]).await;
        fixture
            .subscribe(SubscriptionSpec {
                retain_acked_messages: true,
                ..spec("s", "t", 10)
            })
            .await;
        let before = std::time::SystemTime::now();
        fixture.publish("t", &[("a", ""), ("b", "")]).await;
        let mut delivered = fixture.pull_wait("s", 10, WAIT).await;
        if delivered.len() < 2 {
            delivered.extend(fixture.pull_wait("s", 10, WAIT).await);
        }
        assert_eq!(data_of(&delivered), ["a", "b"], "{kind:?}");
        fixture.ack("s", &delivered).await;

        fixture
            .broker
            .seek("s", SeekTarget::Time(before))
            .await
            .expect("seek");

        let mut again = fixture.pull_wait("s", 10, WAIT).await;
        if again.len() < 2 {
            again.extend(fixture.pull_wait("s", 10, WAIT).await);
        }
        assert_eq!(data_of(&again), ["a", "b"], "{kind:?}");
    }
}

/// JetStream keeps acknowledged messages until the stream's maximum age, so a seek back
/// redelivers them even without `retain_acked_messages`, where the sled store has deleted
/// them. docs/compatibility.md lists the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_seek_ignores_retain_acked() {
    let fixture = Fixture::open(StoreKind::JetStream, &["t"]).await;
    fixture.subscribe(spec("s", "t", 10)).await;
    let before = std::time::SystemTime::now();
    fixture.publish("t", &[("a", "")]).await;
    let delivered = fixture.pull_wait("s", 10, WAIT).await;
    fixture.ack("s", &delivered).await;

    fixture
        .broker
        .seek("s", SeekTarget::Time(before))
        .await
        .expect("seek");

    let again = fixture.pull_wait("s", 10, WAIT).await;
    assert_eq!(data_of(&again), ["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_snapshots_are_unsupported() {
    let fixture = Fixture::open(StoreKind::JetStream, &["t"]).await;
    fixture.subscribe(spec("s", "t", 10)).await;

    let result = fixture.broker.create_snapshot("snap", "s").await;

    assert!(
        matches!(result, Err(StoreError::Unsupported { .. })),
        "{result:?}"
    );
    assert!(fixture.broker.snapshots().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_topic_retention_sets_max_age() {
    let fixture = Fixture::open(StoreKind::JetStream, &["t"]).await;
    let store = stores::connect(&fixture.server.as_ref().expect("server").url()).await;
    let mut stream = store.topic_stream("t").await.expect("stream");
    let default_age = stream.info().await.expect("info").config.max_age;
    assert_eq!(default_age, Duration::from_secs(DEFAULT_RETENTION_SECS));

    fixture
        .broker
        .update_topic(
            "t",
            TopicSettings {
                message_retention_secs: Some(600),
            },
        )
        .await
        .expect("update topic");

    let mut stream = store.topic_stream("t").await.expect("stream");
    let updated_age = stream.info().await.expect("info").config.max_age;
    assert_eq!(updated_age, Duration::from_secs(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_rejects_message_over_max_payload() {
    let fixture = Fixture::open(StoreKind::JetStream, &["t"]).await;
    fixture.subscribe(spec("s", "t", 10)).await;
    // nats-server's default max_payload is 1 MiB; Pub/Sub allows 10 MB.
    let large = TopicMessage {
        topic: "t".to_owned(),
        message: NewMessage {
            data: vec![b'x'; 2 * 1024 * 1024],
            attributes: Default::default(),
            ordering_key: String::new(),
        },
    };

    let result = fixture.broker.publish(vec![large]).await;

    let Err(StoreError::TooLarge { size, limit }) = result else {
        panic!("expected TooLarge, got {result:?}");
    };
    assert!(size > limit, "{size} <= {limit}");
    // The connection survives: a small message still goes through at once.
    fixture.publish("t", &[("small", "")]).await;
    let deliveries = fixture.pull_wait("s", 10, WAIT).await;
    assert_eq!(data_of(&deliveries), ["small"]);
}
