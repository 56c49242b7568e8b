//! Unary Pull responses stay within the 4 MiB that default gRPC clients accept, however
//! many large messages are ready; a message larger than that comes alone.

mod support;

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage, PullRequest};
use sluice_proto::prost::Message as _;
use support::{channel, TestServer};

const CONFIG: &str = r#"
[[topics]]
name = "big"

[[subscriptions]]
name = "big"
topic = "big"
"#;

const DEFAULT_CLIENT_LIMIT: usize = 4 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn pull_response_fits_default_client_limit() {
    let server = TestServer::start(Some(CONFIG));
    let mut publisher = PublisherClient::new(channel(&server).await);
    for _ in 0..6 {
        publisher
            .publish(PublishRequest {
                topic: "projects/local/topics/big".to_owned(),
                messages: vec![PubsubMessage {
                    data: vec![b'x'; 1_000_000],
                    ..Default::default()
                }],
            })
            .await
            .expect("publish");
    }

    let mut subscriber =
        SubscriberClient::new(channel(&server).await).max_decoding_message_size(64 * 1024 * 1024);
    let mut received = 0;
    for _ in 0..6 {
        let response = subscriber
            .pull(PullRequest {
                subscription: "projects/local/subscriptions/big".to_owned(),
                max_messages: 10,
                ..Default::default()
            })
            .await
            .expect("pull")
            .into_inner();
        assert!(
            response.encoded_len() <= DEFAULT_CLIENT_LIMIT,
            "a response of {} bytes",
            response.encoded_len()
        );
        received += response.received_messages.len();
        if received == 6 {
            break;
        }
    }
    assert_eq!(received, 6, "every message arrives over several pulls");
}
