//! Google's official Rust client, google-cloud-pubsub, against a real `sluice serve` on
//! 127.0.0.1. Its admin clients (`TopicAdmin`, `SubscriptionAdmin`) speak REST over HTTP/1.1
//! and its `Publisher` and `Subscriber` speak gRPC; sluice serves both on one port, so every
//! client gets the same endpoint.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{Publisher, Subscriber, SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{Message, Subscription};
use google_cloud_wkt::FieldMask;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::PullRequest;
use support::{channel, TestServer};

const TOPIC: &str = "projects/local/topics/client-orders";
const SUBSCRIPTION: &str = "projects/local/subscriptions/client-orders";
/// How long the test waits for one message from the subscriber stream before it fails.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(30);

async fn topic_admin(server: &TestServer) -> TopicAdmin {
    TopicAdmin::builder()
        .with_endpoint(server.url())
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .expect("the TopicAdmin client builds")
}

async fn subscription_admin(server: &TestServer) -> SubscriptionAdmin {
    SubscriptionAdmin::builder()
        .with_endpoint(server.url())
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .expect("the SubscriptionAdmin client builds")
}

/// Returns the messages waiting on `subscription` without leasing them for long, through
/// sluice's gRPC Pull with return_immediately.
async fn waiting_messages(server: &TestServer, subscription: &str) -> usize {
    let mut client = SubscriberClient::new(channel(server).await);
    #[allow(
        deprecated,
        reason = "return_immediately is the way to pull without waiting"
    )]
    let request = PullRequest {
        subscription: subscription.to_owned(),
        return_immediately: true,
        max_messages: 100,
    };
    let response = client.pull(request).await.expect("Pull succeeds");
    response.into_inner().received_messages.len()
}

/// Publishes three messages to `topic` with the Publisher, receives them from
/// `subscription` with the Subscriber and acknowledges them, then checks over gRPC that none
/// is waiting any more.
async fn publish_receive_ack(server: &TestServer, topic: &str, subscription: &str) {
    let publisher = Publisher::builder(topic)
        .with_endpoint(server.url())
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .expect("the Publisher builds");
    let mut sent = BTreeMap::new();
    for n in 0..3 {
        let data = format!("order {n}");
        let id = publisher
            .publish(
                Message::new()
                    .set_data(data.clone())
                    .set_attributes([("n", n.to_string())]),
            )
            .await
            .expect("Publish succeeds");
        assert!(!id.is_empty(), "message {n} got an id");
        sent.insert(id, data);
    }
    assert_eq!(sent.len(), 3, "every message got its own id");

    let subscriber = Subscriber::builder()
        .with_endpoint(server.url())
        .with_credentials(Anonymous::new().build())
        .build()
        .await
        .expect("the Subscriber builds");
    let mut stream = subscriber.subscribe(subscription).build();
    let mut received = BTreeMap::new();
    while received.len() < sent.len() {
        let (message, handler) = tokio::time::timeout(RECEIVE_TIMEOUT, stream.next())
            .await
            .expect("a message arrives in time")
            .expect("the stream stays open")
            .expect("the stream delivers a message");
        let data = String::from_utf8(message.data.to_vec()).expect("the data is the text sent");
        assert_eq!(message.attributes.len(), 1, "{message:?}");
        received.insert(message.message_id.clone(), data);
        handler.ack();
    }
    // The shutdown returns once the acknowledgements are sent.
    stream.shutdown_token().shutdown().await;
    assert_eq!(received, sent);
    assert_eq!(
        waiting_messages(server, subscription).await,
        0,
        "acknowledged messages are not delivered again"
    );
}

#[tokio::test]
async fn configured_catalog_over_rest_and_grpc() {
    let config = r#"
[[topics]]
name = "configured"

[[subscriptions]]
name = "configured-pull"
topic = "configured"
ack_deadline_secs = 15
"#;
    let server = TestServer::start(Some(config));
    let topics = topic_admin(&server).await;
    let subscriptions = subscription_admin(&server).await;
    let topic = topics
        .get_topic()
        .set_topic("projects/local/topics/configured")
        .send()
        .await
        .expect("GetTopic succeeds");
    assert_eq!(topic.name, "projects/local/topics/configured");
    let subscription = subscriptions
        .get_subscription()
        .set_subscription("projects/local/subscriptions/configured-pull")
        .send()
        .await
        .expect("GetSubscription succeeds");
    assert_eq!(subscription.topic, "projects/local/topics/configured");
    assert_eq!(subscription.ack_deadline_seconds, 15);
    let listed = subscriptions
        .list_subscriptions()
        .set_project("projects/local")
        .send()
        .await
        .expect("ListSubscriptions succeeds");
    assert!(listed.subscriptions.contains(&subscription), "{listed:?}");

    publish_receive_ack(
        &server,
        "projects/local/topics/configured",
        "projects/local/subscriptions/configured-pull",
    )
    .await;

    let err = subscriptions
        .get_subscription()
        .set_subscription("projects/local/subscriptions/missing")
        .send()
        .await
        .expect_err("the subscription does not exist");
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound), "{err}");
    assert_eq!(err.http_status_code(), Some(404), "{err}");
}

#[tokio::test]
async fn admin_publish_subscribe_ack() {
    let server = TestServer::start(None);
    let topics = topic_admin(&server).await;
    let subscriptions = subscription_admin(&server).await;

    let topic = topics
        .create_topic()
        .set_name(TOPIC)
        .send()
        .await
        .expect("CreateTopic succeeds");
    assert_eq!(topic.name, TOPIC);
    let subscription = subscriptions
        .create_subscription()
        .set_name(SUBSCRIPTION)
        .set_topic(TOPIC)
        .set_ack_deadline_seconds(20)
        .send()
        .await
        .expect("CreateSubscription succeeds");
    assert_eq!(subscription.name, SUBSCRIPTION);
    assert_eq!(subscription.topic, TOPIC);
    assert_eq!(subscription.ack_deadline_seconds, 20);
    let fetched = subscriptions
        .get_subscription()
        .set_subscription(SUBSCRIPTION)
        .send()
        .await
        .expect("GetSubscription succeeds");
    assert_eq!(fetched, subscription);

    publish_receive_ack(&server, TOPIC, SUBSCRIPTION).await;

    let updated = subscriptions
        .update_subscription()
        .set_subscription(
            Subscription::new()
                .set_name(SUBSCRIPTION)
                .set_ack_deadline_seconds(30),
        )
        .set_update_mask(FieldMask::default().set_paths(["ack_deadline_seconds"]))
        .send()
        .await
        .expect("UpdateSubscription succeeds");
    assert_eq!(updated.ack_deadline_seconds, 30);

    let listed = topics
        .list_topics()
        .set_project("projects/local")
        .send()
        .await
        .expect("ListTopics succeeds");
    let names: BTreeSet<&str> = listed.topics.iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(TOPIC), "{names:?}");
    let attached = topics
        .list_topic_subscriptions()
        .set_topic(TOPIC)
        .send()
        .await
        .expect("ListTopicSubscriptions succeeds");
    assert_eq!(attached.subscriptions, [SUBSCRIPTION]);

    subscriptions
        .delete_subscription()
        .set_subscription(SUBSCRIPTION)
        .send()
        .await
        .expect("DeleteSubscription succeeds");
    topics
        .delete_topic()
        .set_topic(TOPIC)
        .send()
        .await
        .expect("DeleteTopic succeeds");
    let err = topics
        .get_topic()
        .set_topic(TOPIC)
        .send()
        .await
        .expect_err("the topic is gone");
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound), "{err}");
}

#[tokio::test]
async fn admin_errors_carry_status_codes() {
    let server = TestServer::start(None);
    let topics = topic_admin(&server).await;
    let subscriptions = subscription_admin(&server).await;

    topics
        .create_topic()
        .set_name(TOPIC)
        .send()
        .await
        .expect("CreateTopic succeeds");
    let err = topics
        .create_topic()
        .set_name(TOPIC)
        .send()
        .await
        .expect_err("the topic exists");
    assert_eq!(
        err.status().map(|s| s.code),
        Some(Code::AlreadyExists),
        "{err}"
    );
    assert_eq!(err.http_status_code(), Some(409), "{err}");

    let err = subscriptions
        .create_subscription()
        .set_name(SUBSCRIPTION)
        .set_topic("projects/local/topics/missing")
        .send()
        .await
        .expect_err("the topic does not exist");
    assert_eq!(err.status().map(|s| s.code), Some(Code::NotFound), "{err}");
}

#[tokio::test]
async fn listing_follows_page_tokens() {
    let server = TestServer::start(None);
    let topics = topic_admin(&server).await;
    let created: BTreeSet<String> = (0..5)
        .map(|n| format!("projects/local/topics/paged-{n}"))
        .collect();
    for name in &created {
        topics
            .create_topic()
            .set_name(name)
            .send()
            .await
            .expect("CreateTopic succeeds");
    }

    let mut listed = BTreeSet::new();
    let mut token = String::new();
    for _ in 0..10 {
        let page = topics
            .list_topics()
            .set_project("projects/local")
            .set_page_size(2)
            .set_page_token(token.clone())
            .send()
            .await
            .expect("ListTopics succeeds");
        assert!(
            page.topics.len() <= 2,
            "{} topics on one page",
            page.topics.len()
        );
        listed.extend(page.topics.into_iter().map(|t| t.name));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "the listing ends");
    assert!(created.is_subset(&listed), "{listed:?}");
}
