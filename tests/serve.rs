//! `sluice serve` end to end: ingest, routing, durable publish, redelivery, dead letters,
//! configuration errors and shutdown, against the real binary on 127.0.0.1.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::Value;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, ModifyAckDeadlineRequest, PublishRequest, PubsubMessage, PullRequest,
    ReceivedMessage,
};
use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
use sluice_proto::sluice::v1::IngestBatch;
use sluice_proto::tonic::transport::Channel;
use sluice_router::filter::LogFilter;
use support::{channel, TestServer};

fn topic(name: &str) -> String {
    format!("projects/local/topics/{name}")
}

fn subscription(name: &str) -> String {
    format!("projects/local/subscriptions/{name}")
}

async fn pull(
    client: &mut SubscriberClient<Channel>,
    name: &str,
    max: i32,
) -> Vec<ReceivedMessage> {
    #[allow(
        deprecated,
        reason = "return_immediately keeps empty pulls short in tests"
    )]
    let request = PullRequest {
        subscription: subscription(name),
        max_messages: max,
        return_immediately: true,
    };
    client
        .pull(request)
        .await
        .expect("pull succeeds")
        .into_inner()
        .received_messages
}

/// Pulls until a pull comes back empty, acknowledging everything.
async fn drain(client: &mut SubscriberClient<Channel>, name: &str) -> Vec<ReceivedMessage> {
    let mut all = Vec::new();
    loop {
        let batch = pull(client, name, 100).await;
        if batch.is_empty() {
            return all;
        }
        let ack_ids = batch.iter().map(|m| m.ack_id.clone()).collect();
        client
            .acknowledge(AcknowledgeRequest {
                subscription: subscription(name),
                ack_ids,
            })
            .await
            .expect("ack succeeds");
        all.extend(batch);
    }
}

fn fixture_entries() -> Vec<(String, String)> {
    let dir = support::fixtures().join("audit-logs");
    let entries = std::fs::read_to_string(dir.join("entries.jsonl")).expect("entries.jsonl");
    let manifest = std::fs::read_to_string(dir.join("manifest.jsonl")).expect("manifest.jsonl");
    manifest
        .lines()
        .map(|row| {
            serde_json::from_str::<Value>(row).expect("manifest row")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .zip(entries.lines().map(str::to_owned))
        .collect()
}

/// The ids of the fixture entries that `filter` matches.
fn expected_ids(filter: &str, entries: &[(String, String)]) -> BTreeSet<String> {
    let filter = LogFilter::new(filter).expect("filter compiles");
    entries
        .iter()
        .filter(|(_, line)| filter.matches(&serde_json::from_str(line).expect("entry JSON")))
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_entries_reach_their_topics_once() {
    let server = TestServer::start(None);
    let entries = fixture_entries();
    let mut ingest = LogIngestClient::new(channel(&server).await);
    let batches: Vec<IngestBatch> = entries
        .chunks(10)
        .enumerate()
        .map(|(i, chunk)| IngestBatch {
            sequence: i as u64,
            entries: chunk.iter().map(|(_, line)| line.clone()).collect(),
        })
        .collect();
    let batch_count = batches.len();
    let mut acks = ingest
        .stream_entries(futures::stream::iter(batches))
        .await
        .expect("stream opens")
        .into_inner();
    let mut accepted = 0;
    let mut matches: BTreeMap<String, u32> = BTreeMap::new();
    let mut sequences = Vec::new();
    while let Some(ack) = acks.message().await.expect("ack arrives") {
        sequences.push(ack.sequence);
        accepted += ack.accepted;
        assert!(
            ack.errors.is_empty(),
            "batch {} had errors: {:?}",
            ack.sequence,
            ack.errors
        );
        for (sink, count) in ack.sink_matches {
            *matches.entry(sink).or_default() += count;
        }
    }
    assert_eq!(
        sequences,
        (0..batch_count as u64).collect::<Vec<_>>(),
        "one ack per batch, in order"
    );
    assert_eq!(accepted, 37);

    let mut subscriber = SubscriberClient::new(channel(&server).await);
    // The embedded default configuration: each sink's topic has a subscription of its name.
    for (sink, name, filter) in [
        (
            "storage-audit",
            "audit-storage",
            r#"resource.type="gcs_bucket""#,
        ),
        ("errors", "audit-errors", "severity>=ERROR"),
    ] {
        let expected = expected_ids(filter, &entries);
        assert_eq!(
            matches.get(sink).copied().unwrap_or(0) as usize,
            expected.len(),
            "matches of sink {sink}"
        );
        let received = drain(&mut subscriber, name).await;
        let by_line: HashMap<&str, &str> = entries
            .iter()
            .map(|(id, line)| (line.trim(), id.as_str()))
            .collect();
        let mut ids = Vec::new();
        for message in &received {
            let data = std::str::from_utf8(&message.message.as_ref().expect("message").data)
                .expect("UTF-8");
            ids.push(
                by_line
                    .get(data)
                    .copied()
                    .unwrap_or("<changed entry>")
                    .to_owned(),
            );
        }
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            ids.len(),
            unique.len(),
            "{name}: each entry arrives once: {ids:?}"
        );
        assert_eq!(
            unique, expected,
            "{name}: exactly the entries its sink selects"
        );
        assert!(
            pull(&mut subscriber, name, 10).await.is_empty(),
            "{name}: empty after the acks"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_publish_survives_kill_9() {
    let mut server = TestServer::start(None);
    let shared = channel(&server).await;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let mut publisher = PublisherClient::new(shared.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..25 {
                let data = format!("task {task} message {i}").into_bytes();
                let message = PubsubMessage {
                    data: data.clone(),
                    ..Default::default()
                };
                let request = PublishRequest {
                    topic: topic("audit-errors"),
                    messages: vec![message],
                };
                let response = publisher
                    .publish(request)
                    .await
                    .expect("publish succeeds")
                    .into_inner();
                acknowledged.push((response.message_ids[0].clone(), data));
            }
            acknowledged
        }));
    }
    let mut acknowledged = BTreeMap::new();
    for task in tasks {
        acknowledged.extend(task.await.expect("publisher task"));
    }
    server.kill9();

    let data_dir = server.data_dir.clone();
    let restarted = TestServer::start_in(&data_dir, None);
    let mut subscriber = SubscriberClient::new(channel(&restarted).await);
    let received: BTreeMap<String, Vec<u8>> = drain(&mut subscriber, "audit-errors")
        .await
        .into_iter()
        .map(|m| {
            let message = m.message.expect("message");
            (message.message_id, message.data)
        })
        .collect();
    assert_eq!(acknowledged.len(), 100, "every publish was acknowledged");
    for (id, data) in &acknowledged {
        assert_eq!(
            received.get(id),
            Some(data),
            "acknowledged message {id} survived with its data"
        );
    }
}

const DELIVERY_CONFIG: &str = r#"
[[topics]]
name = "work"
[[topics]]
name = "work-dead-letter"

[[subscriptions]]
name = "work"
topic = "work"
ack_deadline_secs = 10
[subscriptions.dead_letter]
topic = "work-dead-letter"
max_delivery_attempts = 5

[[subscriptions]]
name = "work-dead-letter"
topic = "work-dead-letter"
"#;

async fn publish_one(server: &TestServer, text: &str) -> String {
    let mut publisher = PublisherClient::new(channel(server).await);
    let mut attributes = HashMap::new();
    attributes.insert("origin".to_owned(), "test".to_owned());
    let message = PubsubMessage {
        data: text.as_bytes().to_vec(),
        attributes,
        ..Default::default()
    };
    let request = PublishRequest {
        topic: topic("work"),
        messages: vec![message],
    };
    publisher
        .publish(request)
        .await
        .expect("publish")
        .into_inner()
        .message_ids
        .remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_message_returns_after_deadline() {
    let server = TestServer::start(Some(DELIVERY_CONFIG));
    let id = publish_one(&server, "slow work").await;
    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let first = pull(&mut subscriber, "work", 1).await;
    assert_eq!(first.len(), 1);
    assert!(
        pull(&mut subscriber, "work", 1).await.is_empty(),
        "leased for 10 s"
    );
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let second = pull(&mut subscriber, "work", 1).await;
    assert_eq!(second.len(), 1, "delivered again after the ack deadline");
    assert_eq!(second[0].message.as_ref().expect("message").message_id, id);
    assert_eq!(second[0].delivery_attempt, 2);
    assert_ne!(second[0].ack_id, first[0].ack_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn nacked_message_is_dead_lettered_after_max_attempts() {
    let server = TestServer::start(Some(DELIVERY_CONFIG));
    publish_one(&server, "poison").await;
    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let mut attempts = Vec::new();
    for _ in 0..8 {
        let received = pull(&mut subscriber, "work", 1).await;
        let Some(message) = received.first() else {
            break;
        };
        attempts.push(message.delivery_attempt);
        let nack = ModifyAckDeadlineRequest {
            subscription: subscription("work"),
            ack_ids: vec![message.ack_id.clone()],
            ack_deadline_seconds: 0,
        };
        subscriber.modify_ack_deadline(nack).await.expect("nack");
    }
    assert_eq!(
        attempts,
        vec![1, 2, 3, 4, 5],
        "five deliveries, never a sixth"
    );
    let dead = drain(&mut subscriber, "work-dead-letter").await;
    assert_eq!(dead.len(), 1);
    let copy = dead[0].message.as_ref().expect("message");
    assert_eq!(copy.data, b"poison");
    assert_eq!(copy.attributes["origin"], "test");
    assert_eq!(
        copy.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
}

#[test]
fn config_errors_are_reported_together() {
    let config = r#"
[[topics]]
name = "audit"

[[sinks]]
name = "broken-filter"
filter = 'severity >= "loud"'
destination = "audit"

[[sinks]]
name = "lost"
filter = "severity>=ERROR"
destination = "nowhere"
colour = "blue"
"#;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).expect("write config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("sluice runs");
    assert_eq!(output.status.code(), Some(1), "start-up fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"sink "broken-filter""#),
        "names the bad filter's sink:\n{stderr}"
    );
    assert!(
        stderr.contains("colour"),
        "names the unknown key:\n{stderr}"
    );
    assert!(
        stderr.contains(r#"sink "lost""#) && stderr.contains("nowhere"),
        "names the missing topic:\n{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the config is valid"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let mut server = TestServer::start(None);
    let (status, log) = server.terminate();
    assert!(status.success(), "exit status {status}; stderr:\n{log}");
    assert!(log.contains("sluice stopped"), "logs the stop:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_open_ingest_streams() {
    let mut server = TestServer::start(None);
    let mut ingest = LogIngestClient::new(channel(&server).await);
    let (batches, outbound) = tokio::sync::mpsc::channel::<IngestBatch>(4);
    let entry = fixture_entries()[0].1.clone();
    batches
        .send(IngestBatch {
            sequence: 1,
            entries: vec![entry.clone()],
        })
        .await
        .expect("queue the first batch");
    let mut acks = ingest
        .stream_entries(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect("stream opens")
        .into_inner();
    let first = acks
        .message()
        .await
        .expect("first ack")
        .expect("an ack, not the end");
    assert_eq!(first.accepted, 1);

    let started = std::time::Instant::now();
    server.signal("TERM");
    let ended = tokio::time::timeout(Duration::from_secs(8), acks.message()).await;
    let status = match ended {
        Ok(Err(status)) => status,
        other => panic!("the stream should end with an error status soon after SIGTERM: {other:?}"),
    };
    assert_eq!(
        status.code(),
        sluice_proto::tonic::Code::Unavailable,
        "{status:?}"
    );
    drop(batches);
    let (exit, log) = server.terminate_wait();
    assert!(exit.success(), "exit status {exit}; stderr:\n{log}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown waited {:?}, close to the 10 s grace period",
        started.elapsed()
    );
}
