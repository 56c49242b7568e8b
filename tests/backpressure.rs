//! Backpressure of the real server: with less free disk than the reserve, publishes get
//! RESOURCE_EXHAUSTED naming the data directory, while pulling and acknowledging go on and
//! nothing already acknowledged is lost.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use sluice_proto::tonic::Code;
use support::{channel, TestServer};

const CONFIG: &str = r#"
[[topics]]
name = "work"

[[subscriptions]]
name = "work"
topic = "work"
"#;

/// A reserve larger than any disk: a petabyte, in MiB.
const HUGE_RESERVE_MIB: &str = "1000000000";

fn request(text: &str) -> PublishRequest {
    PublishRequest {
        topic: "projects/local/topics/work".to_owned(),
        messages: vec![PubsubMessage {
            data: text.as_bytes().to_vec(),
            attributes: HashMap::new(),
            ..Default::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_reserve_rejects_publishes_keeps_acks() {
    let mut server = TestServer::start(Some(CONFIG));
    let mut publisher = PublisherClient::new(channel(&server).await);
    for text in ["one", "two"] {
        publisher.publish(request(text)).await.expect("publish");
    }
    server.terminate();
    let data_dir = server.data_dir.clone();
    let config = data_dir.with_file_name("sluice.toml");

    let mut server = TestServer::start_in_with_args(
        &data_dir,
        Some(&config),
        &["--disk-reserve-mib", HUGE_RESERVE_MIB],
    );
    let mut publisher = PublisherClient::new(channel(&server).await);
    let status = publisher
        .publish(request("three"))
        .await
        .expect_err("the disk has less free space than the reserve");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(&data_dir.display().to_string()),
        "the error names the data directory: {}",
        status.message()
    );
    assert!(
        status.message().contains("free disk space"),
        "the error says what to do: {}",
        status.message()
    );

    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let pulled = subscriber
        .pull(PullRequest {
            subscription: "projects/local/subscriptions/work".to_owned(),
            max_messages: 10,
            ..Default::default()
        })
        .await
        .expect("pull works with a full disk")
        .into_inner()
        .received_messages;
    let data: Vec<&[u8]> = pulled
        .iter()
        .map(|received| received.message.as_ref().expect("message").data.as_slice())
        .collect();
    assert_eq!(data, [b"one".as_slice(), b"two".as_slice()]);
    subscriber
        .acknowledge(AcknowledgeRequest {
            subscription: "projects/local/subscriptions/work".to_owned(),
            ack_ids: vec![pulled[0].ack_id.clone()],
        })
        .await
        .expect("acknowledging works with a full disk");
    let response = reqwest::get(format!("{}/healthz", server.url))
        .await
        .expect("healthz");
    assert!(response.status().is_success(), "the server stays up");
    server.terminate();

    let server = TestServer::start_in(&data_dir, Some(&config));
    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let pulled = subscriber
            .pull(PullRequest {
                subscription: "projects/local/subscriptions/work".to_owned(),
                max_messages: 10,
                ..Default::default()
            })
            .await
            .expect("pull")
            .into_inner()
            .received_messages;
        remaining.extend(
            pulled
                .into_iter()
                .map(|received| received.message.expect("message").data),
        );
        if !remaining.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        remaining,
        [b"two".to_vec()],
        "the unacknowledged message is still there after the restart"
    );
}
