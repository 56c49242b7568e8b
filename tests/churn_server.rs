//! Storage hygiene through the server: messages published over gRPC in batches, pulled and
//! acknowledged, leave a bounded data directory whatever their size, and a backlog of large
//! messages does not fill the server's memory, before or after a restart.

mod support;

use std::path::Path;

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use support::{channel, TestServer};

const CONFIG: &str = r#"
[[topics]]
name = "churn"

[[subscriptions]]
name = "churn"
topic = "churn"
ack_deadline_secs = 600
"#;

const TOPIC: &str = "projects/local/topics/churn";
const SUBSCRIPTION: &str = "projects/local/subscriptions/churn";

/// The largest data directory allowed at any checkpoint: sled's files (about 10 MiB in
/// these runs) and up to two payload segments of 16 MiB.
const MAX_DATA_DIR_BYTES: u64 = 64 * 1024 * 1024;

/// The resident memory allowed with a backlog of 200 MiB of large messages. Measured:
/// about 40 MiB in a debug build.
const MAX_RSS_BYTES: u64 = 160 * 1024 * 1024;

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            // A segment file may be deleted between the listing and this call.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                folders.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Reads the resident set size of a process from `/proc/PID/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .expect("VmRSS line");
    kib * 1024
}

fn messages(count: usize, size: usize, first: usize) -> Vec<PubsubMessage> {
    (0..count)
        .map(|index| PubsubMessage {
            data: vec![(first + index) as u8; size],
            ..Default::default()
        })
        .collect()
}

/// Publishes `cycles` messages of `size` bytes, `batch` per request, pulls and
/// acknowledges each batch, and checks the data directory ten times on the way.
async fn churn(size: usize, batch: usize, cycles: usize) {
    let server = TestServer::start(Some(CONFIG));
    let mut publisher =
        PublisherClient::new(channel(&server).await).max_encoding_message_size(64 * 1024 * 1024);
    let mut subscriber =
        SubscriberClient::new(channel(&server).await).max_decoding_message_size(64 * 1024 * 1024);
    let checkpoint = (cycles / 10).max(batch);
    let mut largest = 0;
    let mut done = 0;
    while done < cycles {
        publisher
            .publish(PublishRequest {
                topic: TOPIC.to_owned(),
                messages: messages(batch, size, done),
            })
            .await
            .expect("publish");
        let mut received = 0;
        while received < batch {
            let response = subscriber
                .pull(PullRequest {
                    subscription: SUBSCRIPTION.to_owned(),
                    max_messages: batch as i32,
                    ..Default::default()
                })
                .await
                .expect("pull")
                .into_inner();
            let mut ack_ids = Vec::new();
            for received_message in response.received_messages {
                let data = received_message.message.expect("message").data;
                assert_eq!(data.len(), size, "a message keeps its size");
                ack_ids.push(received_message.ack_id);
            }
            received += ack_ids.len();
            subscriber
                .acknowledge(AcknowledgeRequest {
                    subscription: SUBSCRIPTION.to_owned(),
                    ack_ids,
                })
                .await
                .expect("acknowledge");
        }
        done += batch;
        if done % checkpoint < batch {
            let bytes = dir_size(&server.data_dir);
            largest = largest.max(bytes);
            assert!(
                bytes <= MAX_DATA_DIR_BYTES,
                "the data dir is {bytes} bytes after {done} messages of {size} bytes"
            );
        }
    }
    report(&format!(
        "largest data dir with {size}-byte messages over gRPC: {largest} bytes"
    ));
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_churn_10_kib_bounded() {
    churn(10 * 1024, 100, 10_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_churn_64_kib_bounded() {
    churn(64 * 1024, 20, 1_600).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_churn_1_mib_bounded() {
    churn(1024 * 1024, 4, 300).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backlog_of_large_messages_keeps_memory_bounded() {
    // `SLUICE_BACKLOG_MIB` sets the backlog for a longer measurement.
    let mib: usize = std::env::var("SLUICE_BACKLOG_MIB")
        .ok()
        .map_or(200, |n| n.parse().expect("SLUICE_BACKLOG_MIB is a number"));
    let mut first = TestServer::start(Some(CONFIG));
    let mut publisher =
        PublisherClient::new(channel(&first).await).max_encoding_message_size(64 * 1024 * 1024);
    for batch in 0..mib.div_ceil(4) {
        publisher
            .publish(PublishRequest {
                topic: TOPIC.to_owned(),
                messages: messages(4, 1024 * 1024, batch * 4),
            })
            .await
            .expect("publish");
    }
    let rss = rss_bytes(first.pid());
    report(&format!(
        "resident memory with {mib} MiB pending: {rss} bytes"
    ));
    assert!(
        rss <= MAX_RSS_BYTES,
        "{rss} bytes resident with {mib} MiB pending"
    );

    // After a restart, the backlog is read back from the store, and a pull for every
    // message at once reads only as much as one response carries.
    let (status, log) = first.terminate();
    assert!(status.success(), "the first server stops cleanly: {log}");
    // The first server's temporary directory lives as long as `first`.
    let config = first
        .data_dir
        .parent()
        .expect("temp dir")
        .join("sluice.toml");
    let server = TestServer::start_in(&first.data_dir, Some(&config));
    let mut subscriber =
        SubscriberClient::new(channel(&server).await).max_decoding_message_size(64 * 1024 * 1024);
    let response = subscriber
        .pull(PullRequest {
            subscription: SUBSCRIPTION.to_owned(),
            max_messages: 1000,
            ..Default::default()
        })
        .await
        .expect("pull")
        .into_inner();
    assert!(
        !response.received_messages.is_empty(),
        "the backlog survives a restart"
    );
    let rss = rss_bytes(server.pid());
    report(&format!(
        "resident memory after a pull of the restarted backlog: {rss} bytes"
    ));
    assert!(rss <= MAX_RSS_BYTES, "{rss} bytes resident after one pull");
    server.stop();
}

#[allow(
    clippy::print_stderr,
    reason = "the figures are printed for docs/benchmarks.md"
)]
fn report(text: &str) {
    eprintln!("{text}");
}
