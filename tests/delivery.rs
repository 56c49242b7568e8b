//! Subscription filters, ordering keys and the retry policy end to end: the real `sluice
//! serve` on 127.0.0.1, driven over Pub/Sub Publish and Pull, the Admin API and `/metrics`.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, GetSubscriptionRequest, ModifyAckDeadlineRequest, PublishRequest,
    PubsubMessage, PullRequest, ReceivedMessage,
};
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use sluice_proto::tonic::transport::Channel;
use support::{channel, TestServer};

const CONFIG: &str = r#"
[[topics]]
name = "uploads"

[[topics]]
name = "orders"

[[topics]]
name = "orders-dead"

[[subscriptions]]
name = "finalized"
topic = "uploads"
filter = 'attributes.eventType = "OBJECT_FINALIZE"'

[[subscriptions]]
name = "all-uploads"
topic = "uploads"

[[subscriptions]]
name = "billing"
topic = "orders"
enable_message_ordering = true
[subscriptions.dead_letter]
topic = "orders-dead"
max_delivery_attempts = 5
[subscriptions.retry_policy]
minimum_backoff_secs = 1
maximum_backoff_secs = 1

[[subscriptions]]
name = "orders-dead"
topic = "orders-dead"
"#;

/// How long the tests wait for a message whose retry backoff of 1 s is running.
const BACKOFF_WAIT: Duration = Duration::from_secs(30);

fn topic(name: &str) -> String {
    format!("projects/local/topics/{name}")
}

fn subscription(name: &str) -> String {
    format!("projects/local/subscriptions/{name}")
}

fn message(data: &str, ordering_key: &str, attributes: &[(&str, &str)]) -> PubsubMessage {
    PubsubMessage {
        data: data.as_bytes().to_vec(),
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ordering_key: ordering_key.to_owned(),
        ..Default::default()
    }
}

async fn publish(server: &TestServer, topic_name: &str, messages: Vec<PubsubMessage>) {
    let mut publisher = PublisherClient::new(channel(server).await);
    publisher
        .publish(PublishRequest {
            topic: topic(topic_name),
            messages,
        })
        .await
        .expect("publish succeeds");
}

async fn pull(client: &mut SubscriberClient<Channel>, name: &str) -> Vec<ReceivedMessage> {
    #[allow(
        deprecated,
        reason = "return_immediately keeps empty pulls short in tests"
    )]
    let request = PullRequest {
        subscription: subscription(name),
        max_messages: 100,
        return_immediately: true,
    };
    client
        .pull(request)
        .await
        .expect("pull succeeds")
        .into_inner()
        .received_messages
}

/// Pulls with the server's own wait until something arrives or `limit` has passed.
async fn pull_within(
    client: &mut SubscriberClient<Channel>,
    name: &str,
    limit: Duration,
) -> Vec<ReceivedMessage> {
    let give_up = Instant::now() + limit;
    loop {
        let request = PullRequest {
            subscription: subscription(name),
            max_messages: 100,
            ..Default::default()
        };
        let received = client
            .pull(request)
            .await
            .expect("pull succeeds")
            .into_inner()
            .received_messages;
        if !received.is_empty() || Instant::now() > give_up {
            return received;
        }
    }
}

fn data_of(received: &[ReceivedMessage]) -> Vec<String> {
    received
        .iter()
        .map(|m| String::from_utf8_lossy(&m.message.as_ref().expect("message").data).into_owned())
        .collect()
}

async fn ack(client: &mut SubscriberClient<Channel>, name: &str, received: &ReceivedMessage) {
    client
        .acknowledge(AcknowledgeRequest {
            subscription: subscription(name),
            ack_ids: vec![received.ack_id.clone()],
        })
        .await
        .expect("ack succeeds");
}

async fn nack(client: &mut SubscriberClient<Channel>, name: &str, received: &ReceivedMessage) {
    client
        .modify_ack_deadline(ModifyAckDeadlineRequest {
            subscription: subscription(name),
            ack_ids: vec![received.ack_id.clone()],
            ack_deadline_seconds: 0,
        })
        .await
        .expect("nack succeeds");
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_drops_non_matching_messages() {
    let server = TestServer::start(Some(CONFIG));
    let events = [
        ("a", "OBJECT_FINALIZE"),
        ("b", "OBJECT_DELETE"),
        ("c", "OBJECT_FINALIZE"),
        ("d", "OBJECT_METADATA_UPDATE"),
    ];
    let messages = events
        .iter()
        .map(|(data, event_type)| message(data, "", &[("eventType", event_type)]))
        .collect();
    publish(&server, "uploads", messages).await;
    let mut subscriber = SubscriberClient::new(channel(&server).await);

    assert_eq!(
        data_of(&pull(&mut subscriber, "finalized").await),
        ["a", "c"]
    );
    assert!(
        pull(&mut subscriber, "finalized").await.is_empty(),
        "b and d are never delivered"
    );
    assert_eq!(
        data_of(&pull(&mut subscriber, "all-uploads").await),
        ["a", "b", "c", "d"]
    );

    let settings = subscriber
        .get_subscription(GetSubscriptionRequest {
            subscription: subscription("finalized"),
        })
        .await
        .expect("get subscription")
        .into_inner();
    assert_eq!(
        settings.filter,
        r#"attributes.eventType = "OBJECT_FINALIZE""#
    );

    let mut admin = AdminClient::new(channel(&server).await);
    let listed = admin
        .list_subscriptions(ListSubscriptionsRequest {
            topic: "uploads".to_owned(),
        })
        .await
        .expect("list subscriptions")
        .into_inner()
        .subscriptions;
    let finalized = listed
        .iter()
        .find(|s| s.name == "finalized")
        .expect("finalized listed");
    assert_eq!(finalized.filtered_out, 2, "b and d were filtered out");
    assert_eq!(finalized.backlog, 2, "a and c wait for their acks");

    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .expect("metrics respond")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains(
            r#"sluice_filtered_out_total{dead_letter="false",subscription="finalized"} 2"#
        ),
        "the counter is exported:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ordering_key_waits_for_failing_message() {
    let server = TestServer::start(Some(CONFIG));
    publish(
        &server,
        "orders",
        vec![
            message("poison", "customer-1", &[("step", "1")]),
            message("second", "customer-1", &[]),
            message("third", "customer-1", &[]),
            message("other", "customer-2", &[]),
        ],
    )
    .await;
    let mut subscriber = SubscriberClient::new(channel(&server).await);

    let first = pull(&mut subscriber, "billing").await;
    assert_eq!(
        data_of(&first),
        ["poison", "other"],
        "one message per key, and customer-2 does not wait"
    );
    ack(&mut subscriber, "billing", &first[1]).await;

    let mut attempts = vec![first[0].delivery_attempt];
    nack(&mut subscriber, "billing", &first[0]).await;
    for _ in 0..10 {
        let received = pull_within(&mut subscriber, "billing", BACKOFF_WAIT).await;
        if received.is_empty() {
            break;
        }
        assert_eq!(
            data_of(&received),
            ["poison"],
            "the rest of customer-1 waits behind the failing message"
        );
        attempts.push(received[0].delivery_attempt);
        nack(&mut subscriber, "billing", &received[0]).await;
        if attempts.len() == 5 {
            break;
        }
    }
    assert_eq!(
        attempts,
        [1, 2, 3, 4, 5],
        "delivery_attempt counts every delivery"
    );

    let next = pull_within(&mut subscriber, "billing", BACKOFF_WAIT).await;
    assert_eq!(
        data_of(&next),
        ["second"],
        "dead-lettering poison unblocks customer-1 in order"
    );
    ack(&mut subscriber, "billing", &next[0]).await;
    assert_eq!(data_of(&pull(&mut subscriber, "billing").await), ["third"]);

    let dead = pull(&mut subscriber, "orders-dead").await;
    assert_eq!(dead.len(), 1);
    let copy = dead[0].message.as_ref().expect("message");
    assert_eq!(copy.data, b"poison");
    assert_eq!(
        copy.ordering_key, "customer-1",
        "the copy keeps its ordering key"
    );
    assert_eq!(copy.attributes["step"], "1");
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nack_waits_for_retry_backoff() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, "orders", vec![message("x", "", &[])]).await;
    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let first = pull(&mut subscriber, "billing").await;
    // Taken before the nack is sent: the server starts the backoff while handling the nack,
    // which may be a moment before the reply arrives here.
    let nacked_at = Instant::now();
    nack(&mut subscriber, "billing", &first[0]).await;

    let again = pull_within(&mut subscriber, "billing", BACKOFF_WAIT).await;

    assert_eq!(data_of(&again), ["x"]);
    assert!(
        nacked_at.elapsed() >= Duration::from_secs(1),
        "delivered again only after the 1 s minimum backoff: {:?}",
        nacked_at.elapsed()
    );
    assert_eq!(again[0].delivery_attempt, 2);
}

#[test]
fn changed_filter_stops_start_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let first = dir.path().join("first.toml");
    std::fs::write(&first, CONFIG).expect("write config");
    let mut server = TestServer::start_in(&data_dir, Some(&first));
    let (status, _) = server.terminate();
    assert!(status.success(), "the first server stops cleanly");

    let changed = dir.path().join("changed.toml");
    std::fs::write(
        &changed,
        CONFIG.replace(r#""OBJECT_FINALIZE""#, r#""OBJECT_DELETE""#),
    )
    .expect("write config");
    let (code, stderr) = run_serve(&data_dir, &changed);

    assert_eq!(code, Some(1), "start-up fails:\n{stderr}");
    assert!(
        stderr.contains(r#"subscription "finalized" already exists with filter"#),
        "names the subscription and the setting:\n{stderr}"
    );
    assert!(
        stderr.contains("use a new subscription name"),
        "names the fix:\n{stderr}"
    );
}

#[test]
fn filter_error_reported_with_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[topics]]\nname = \"uploads\"\n\
         [[subscriptions]]\nname = \"finalized\"\ntopic = \"uploads\"\n\
         filter = 'attributes.eventType = OBJECT_FINALIZE'\n",
    )
    .expect("write config");

    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["rules", "check"])
        .arg(&path)
        .output()
        .expect("sluice runs");

    assert_eq!(output.status.code(), Some(1), "the check fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"subscription "finalized": invalid filter at line 1, column 24"#),
        "names the subscription and the position:\n{stderr}"
    );
}

/// Runs `sluice serve` on `data_dir` with `config`, expecting it to fail at start-up, and
/// returns its exit code and stderr. Kills it by its process id if it is still running
/// after 30 s.
fn run_serve(data_dir: &std::path::Path, config: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice starts");
    let give_up = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait for sluice").is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            let _ = child.wait();
            panic!("sluice serve kept running with a changed filter");
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "a synchronous wait outside any runtime"
        )]
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("sluice output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
