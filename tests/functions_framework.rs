//! Push subscriptions in the `background` and `cloudevent` formats against Python functions
//! served by the real functions-framework from PyPI, which Cloud Functions runs them with. A
//! real `sluice serve` pushes storage notifications and Pub/Sub messages to the function, and
//! the function records what it received (tests/python/functions/record_events.py).
//!
//! functions-framework comes from `scripts/test`, which exports `SLUICE_TEST_PYTHON`. Without
//! it the tests fail with a message that names the fix.

mod support;

use std::time::Duration;

use base64::Engine as _;
use chrono::DateTime;
use serde_json::{json, Value};
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use support::functions::{FunctionHost, Signature};
use support::{channel, TestServer};
use tokio::time::Instant;

/// How long a test waits for something the server should do. It bounds a hung test, and is
/// never a measure of speed.
const GIVE_UP: Duration = Duration::from_secs(120);

const SOURCE: &str = "record_events.py";

const PUBSUB_MESSAGE_TYPE: &str = "type.googleapis.com/google.pubsub.v1.PubsubMessage";

/// Returns a config with the topic `orders`, the bucket `uploads` whose finalized objects are
/// announced on the topic `uploads-events`, the topic `dead` with the pull subscription
/// `dead-letters`, and `subscriptions` (TOML text) after them.
fn config(subscriptions: &str) -> String {
    format!(
        "[[topics]]\nname = \"orders\"\n\
         [[topics]]\nname = \"uploads-events\"\n\
         [[topics]]\nname = \"dead\"\n\
         [[subscriptions]]\nname = \"dead-letters\"\ntopic = \"dead\"\n\
         [[buckets]]\nname = \"uploads\"\n\
         [[buckets.notifications]]\ntopic = \"uploads-events\"\n\
         event_types = [\"OBJECT_FINALIZE\"]\n\
         {subscriptions}"
    )
}

/// Returns a `[[subscriptions]]` table named `name` on `topic` that pushes to `endpoint` in
/// `format`.
fn push_subscription(name: &str, topic: &str, endpoint: &str, format: &str) -> String {
    format!(
        "[[subscriptions]]\nname = \"{name}\"\ntopic = \"{topic}\"\n\
         [subscriptions.push]\nendpoint = \"{endpoint}\"\nformat = \"{format}\"\n"
    )
}

/// Uploads `data` as `name` to the bucket `uploads` and returns the object resource.
async fn upload(server: &TestServer, name: &str, data: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/upload/storage/v1/b/uploads/o?uploadType=media&name={}",
            server.url,
            support::encode_segment(name)
        ))
        .header("content-type", "text/plain")
        .body(data.to_owned())
        .send()
        .await
        .expect("the upload completes");
    assert!(
        response.status().is_success(),
        "upload: {}",
        response.status()
    );
    response.json().await.expect("the object resource is JSON")
}

/// Publishes one message to `orders` and returns its id.
async fn publish(server: &TestServer, data: &[u8], attributes: &[(&str, &str)]) -> String {
    let message = PubsubMessage {
        data: data.to_vec(),
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ..Default::default()
    };
    PublisherClient::new(channel(server).await)
        .publish(PublishRequest {
            topic: "projects/local/topics/orders".to_owned(),
            messages: vec![message],
        })
        .await
        .expect("publish succeeds")
        .into_inner()
        .message_ids
        .remove(0)
}

/// Returns the value of a per-subscription counter on `/metrics`, 0 when absent.
async fn metric(server: &TestServer, name: &str, subscription: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics respond")
        .text()
        .await
        .expect("metrics text");
    // Broker metrics carry a `dead_letter` label besides `subscription`.
    let label = format!("subscription=\"{subscription}\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{')?.split_once("} "))
        .find(|(labels, _)| labels.split(',').any(|pair| pair == label))
        .map_or(0, |(_, value)| value.parse().expect("numeric metric"))
}

/// Waits until a counter of `subscription` reaches `expected`.
async fn wait_for_metric(server: &TestServer, name: &str, subscription: &str, expected: u64) {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let value = metric(server, name, subscription).await;
        if value == expected {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "{name} of {subscription} is {value}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pulls and acknowledges the messages of `dead-letters` until `count` have arrived.
async fn pull_dead_letters(server: &TestServer, count: usize) -> Vec<PubsubMessage> {
    let mut client = SubscriberClient::new(channel(server).await);
    let subscription = "projects/local/subscriptions/dead-letters".to_owned();
    let give_up = Instant::now() + GIVE_UP;
    let mut messages = Vec::new();
    while messages.len() < count {
        assert!(
            Instant::now() < give_up,
            "{} of {count} dead letters arrived",
            messages.len()
        );
        let received = client
            .pull(PullRequest {
                subscription: subscription.clone(),
                max_messages: 10,
                ..Default::default()
            })
            .await
            .expect("pull succeeds")
            .into_inner()
            .received_messages;
        if received.is_empty() {
            continue;
        }
        let ack_ids = received.iter().map(|m| m.ack_id.clone()).collect();
        client
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.clone(),
                ack_ids,
            })
            .await
            .expect("ack succeeds");
        messages.extend(received.into_iter().filter_map(|m| m.message));
    }
    messages
}

fn assert_rfc3339(field: &str, value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {value}"));
    assert!(
        DateTime::parse_from_rfc3339(text).is_ok(),
        "{field} {text:?} is an RFC 3339 time"
    );
}

fn assert_message_id(field: &str, value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string: {value}"));
    assert!(
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()),
        "{field} {text:?} is a message id"
    );
}

/// Checks that a function received the object `object` as its data: the notification's
/// object resource, whose int64 fields are strings.
fn assert_object_data(data: &Value, object: &Value) {
    for key in [
        "bucket",
        "name",
        "generation",
        "metageneration",
        "size",
        "md5Hash",
        "crc32c",
    ] {
        assert_eq!(data[key], object[key], "data.{key}");
    }
    assert_eq!(data["kind"], "storage#object");
    assert!(data["size"].is_string(), "size is an int64 string");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_function_receives_storage_event() {
    let function = FunctionHost::start(SOURCE, "record_background", Signature::Event);
    let server = TestServer::start(Some(&config(&push_subscription(
        "fn-storage",
        "uploads-events",
        &function.url,
        "background",
    ))));

    let object = upload(&server, "photos/cat 1.txt", "meow").await;
    let call = function.wait_for(1).await.remove(0);

    let context = &call["context"];
    assert_eq!(context["eventType"], "google.storage.object.finalize");
    assert_eq!(
        context["resource"],
        json!({
            "service": "storage.googleapis.com",
            "name": "projects/_/buckets/uploads/objects/photos/cat 1.txt",
            "type": "storage#object",
        })
    );
    assert_message_id("eventId", &context["eventId"]);
    assert_rfc3339("timestamp", &context["timestamp"]);
    assert_object_data(&call["data"], &object);
    assert_eq!(call["data"]["name"], "photos/cat 1.txt");
    wait_for_metric(&server, "sluice_acks_total", "fn-storage", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn background_function_receives_pubsub_message() {
    let function = FunctionHost::start(SOURCE, "record_background", Signature::Event);
    let server = TestServer::start(Some(&config(&push_subscription(
        "fn-orders",
        "orders",
        &function.url,
        "background",
    ))));

    let id = publish(&server, b"order \x00\xff", &[("origin", "web")]).await;
    let call = function.wait_for(1).await.remove(0);

    assert_eq!(
        call["data"],
        json!({
            "@type": PUBSUB_MESSAGE_TYPE,
            "data": "b3JkZXIgAP8=",
            "attributes": {"origin": "web"},
        })
    );
    let context = &call["context"];
    assert_eq!(context["eventId"], id.as_str());
    assert_eq!(context["eventType"], "google.pubsub.topic.publish");
    assert_eq!(
        context["resource"],
        json!({
            "service": "pubsub.googleapis.com",
            "name": "projects/local/topics/orders",
            "type": PUBSUB_MESSAGE_TYPE,
        })
    );
    assert_rfc3339("timestamp", &context["timestamp"]);
    wait_for_metric(&server, "sluice_acks_total", "fn-orders", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevent_function_receives_storage_and_pubsub_events() {
    let function = FunctionHost::start(SOURCE, "record_cloudevent", Signature::CloudEvent);
    let subscriptions =
        push_subscription("ce-storage", "uploads-events", &function.url, "cloudevent")
            + &push_subscription("ce-orders", "orders", &function.url, "cloudevent");
    let server = TestServer::start(Some(&config(&subscriptions)));

    let object = upload(&server, "docs/readme.txt", "hello").await;
    let storage = function.wait_for(1).await.remove(0);
    let id = publish(&server, b"order 7", &[("origin", "web")]).await;
    let pubsub = function.wait_for(2).await.remove(1);

    assert_eq!(storage["type"], "google.cloud.storage.object.v1.finalized");
    assert_eq!(
        storage["source"],
        "//storage.googleapis.com/projects/_/buckets/uploads"
    );
    assert_eq!(storage["subject"], "objects/docs/readme.txt");
    assert_eq!(storage["bucket"], "uploads", "the bucket extension");
    assert_eq!(storage["specversion"], "1.0");
    assert_eq!(storage["datacontenttype"], "application/json");
    assert_message_id("id", &storage["id"]);
    assert_rfc3339("time", &storage["time"]);
    assert_object_data(&storage["data"], &object);

    assert_eq!(
        pubsub["type"],
        "google.cloud.pubsub.topic.v1.messagePublished"
    );
    assert_eq!(
        pubsub["source"],
        "//pubsub.googleapis.com/projects/local/topics/orders"
    );
    assert_eq!(pubsub["id"], id.as_str());
    assert_eq!(
        pubsub.get("subject"),
        None,
        "a Pub/Sub event has no subject"
    );
    assert_rfc3339("time", &pubsub["time"]);
    let data = &pubsub["data"];
    assert_eq!(
        data["subscription"],
        "projects/local/subscriptions/ce-orders"
    );
    assert_eq!(data["message"]["data"], "b3JkZXIgNw==");
    assert_eq!(data["message"]["messageId"], id.as_str());
    assert_eq!(data["message"]["attributes"], json!({"origin": "web"}));
    assert_eq!(data["message"]["publishTime"], pubsub["time"]);
    wait_for_metric(&server, "sluice_acks_total", "ce-storage", 1).await;
    wait_for_metric(&server, "sluice_acks_total", "ce-orders", 1).await;
}

/// functions-framework converts a binary-mode CloudEvent for a background function and a
/// background event for a CloudEvent function. The conversions must yield what the other
/// format sends directly.
#[tokio::test(flavor = "multi_thread")]
async fn formats_convert_in_functions_framework() {
    let background = FunctionHost::start(SOURCE, "record_background", Signature::Event);
    let cloudevent = FunctionHost::start(SOURCE, "record_cloudevent", Signature::CloudEvent);
    let subscriptions =
        push_subscription(
            "direct-background",
            "uploads-events",
            &background.url,
            "background",
        ) + &push_subscription(
            "ce-to-background",
            "uploads-events",
            &background.url,
            "cloudevent",
        ) + &push_subscription("direct-ce", "uploads-events", &cloudevent.url, "cloudevent")
            + &push_subscription(
                "background-to-ce",
                "uploads-events",
                &cloudevent.url,
                "background",
            );
    let server = TestServer::start(Some(&config(&subscriptions)));

    upload(&server, "a/b.txt", "converted").await;
    let legacy = background.wait_for(2).await;
    let cloudevents = cloudevent.wait_for(2).await;

    assert_eq!(
        legacy[0], legacy[1],
        "the background function sees one event twice"
    );
    let converted = &cloudevents[0];
    let direct = &cloudevents[1];
    for attribute in [
        "id",
        "source",
        "subject",
        "type",
        "time",
        "datacontenttype",
        "data",
    ] {
        assert_eq!(
            converted[attribute], direct[attribute],
            "CloudEvent {attribute}, converted or direct"
        );
    }
    assert_eq!(legacy[0]["context"]["eventId"], cloudevents[0]["id"]);
}

/// Waits for the 5 calls of a failing function, checks that its event was then
/// dead-lettered and never acknowledged, and returns the calls.
async fn assert_retried_then_dead_lettered(
    server: &TestServer,
    function: &FunctionHost,
    subscription: &str,
) -> Vec<Value> {
    let calls = function.wait_for(5).await;
    wait_for_metric(server, "sluice_dead_letters_total", subscription, 1).await;
    assert_eq!(
        metric(server, "sluice_push_failed_total", subscription).await,
        5,
        "{subscription}: failed pushes"
    );
    assert_eq!(
        metric(server, "sluice_acks_total", subscription).await,
        0,
        "{subscription}: a failure is never acknowledged"
    );
    calls
}

#[tokio::test(flavor = "multi_thread")]
async fn raising_function_retried_then_dead_lettered() {
    let background = FunctionHost::start(SOURCE, "fail_background", Signature::Event);
    let cloudevent = FunctionHost::start(SOURCE, "fail_cloudevent", Signature::CloudEvent);
    let retry = "[subscriptions.dead_letter]\ntopic = \"dead\"\nmax_delivery_attempts = 5\n\
                 [subscriptions.retry_policy]\nminimum_backoff_secs = 1\nmaximum_backoff_secs = 1\n";
    let subscriptions =
        push_subscription("fails-background", "orders", &background.url, "background")
            + retry
            + &push_subscription("fails-cloudevent", "orders", &cloudevent.url, "cloudevent")
            + retry;
    let server = TestServer::start(Some(&config(&subscriptions)));

    let id = publish(&server, b"doomed order", &[]).await;

    let legacy = assert_retried_then_dead_lettered(&server, &background, "fails-background").await;
    let cloudevents =
        assert_retried_then_dead_lettered(&server, &cloudevent, "fails-cloudevent").await;
    for call in &legacy {
        assert_eq!(
            call, &legacy[0],
            "every attempt carries the same background event"
        );
    }
    assert_eq!(legacy[0]["context"]["eventId"], id.as_str());
    let expected = base64::engine::general_purpose::STANDARD.encode(b"doomed order");
    assert_eq!(legacy[0]["data"]["data"], expected.as_str());
    let attempts: Vec<&Value> = cloudevents
        .iter()
        .map(|call| &call["data"]["deliveryAttempt"])
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3, 4, 5],
        "the CloudEvent data counts the attempts"
    );
    for call in &cloudevents {
        assert_eq!(
            call["id"],
            id.as_str(),
            "every attempt has the message's id"
        );
    }
    let dead = pull_dead_letters(&server, 2).await;
    for message in &dead {
        assert_eq!(
            message.data, b"doomed order",
            "the dead letter keeps the data"
        );
        let reason = &message.attributes["sluiceDeadLetterReason"];
        assert!(
            reason.contains("HTTP 500"),
            "reason names the status: {reason}"
        );
    }
    assert_eq!(background.invocations().len(), 5, "no sixth attempt");
    assert_eq!(cloudevent.invocations().len(), 5, "no sixth attempt");
}
