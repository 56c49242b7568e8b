//! The `[limits]` table end to end: a real `sluice serve` with small limits rejects each
//! request over a size limit with the code and a message that names the limit, caps the
//! open streams of one client, and rejects publishes over the rate with
//! RESOURCE_EXHAUSTED and a retry hint (RetryInfo over gRPC, Retry-After over HTTP).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage, StreamingPullRequest};
use sluice_proto::tonic::{Code, Status};
use support::{channel, TestServer};
use tonic_types::StatusExt as _;

const SIZE_LIMITS: &str = r#"
[[topics]]
name = "orders"

[[buckets]]
name = "uploads"

[limits]
max_request_bytes = 4096
max_message_bytes = 2048
max_attributes = 2
max_attribute_key_bytes = 8
max_attribute_value_bytes = 16
max_upload_bytes = 1000
"#;

const RATE_LIMITS: &str = r#"
[[topics]]
name = "orders"

[[subscriptions]]
name = "orders-sub"
topic = "orders"

[limits]
max_streams_per_client = 1
publish_messages_per_sec = 1
publish_burst_messages = 3
"#;

fn message(data_bytes: usize, attributes: &[(&str, &str)]) -> PubsubMessage {
    PubsubMessage {
        data: vec![b'x'; data_bytes],
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<HashMap<_, _>>(),
        ..PubsubMessage::default()
    }
}

async fn grpc_publish(server: &TestServer, messages: Vec<PubsubMessage>) -> Result<(), Status> {
    PublisherClient::new(channel(server).await)
        .publish(PublishRequest {
            topic: "projects/local/topics/orders".to_owned(),
            messages,
        })
        .await
        .map(|_| ())
}

fn assert_status(result: Result<(), Status>, code: Code, needle: &str, case: &str) {
    let status = result.expect_err(case);
    assert_eq!(status.code(), code, "{case}: {status:?}");
    assert!(
        status.message().contains(needle),
        "{case}: the message names {needle}: {status:?}"
    );
}

#[tokio::test]
async fn grpc_size_limits_have_clear_errors() {
    let server = TestServer::start(Some(SIZE_LIMITS));

    let ok = grpc_publish(&server, vec![message(2000, &[("k", "v")])]).await;
    assert!(ok.is_ok(), "a message within every limit: {ok:?}");

    let cases: [(&str, PubsubMessage, Code, &str); 5] = [
        (
            "message over max_message_bytes",
            message(3000, &[]),
            Code::InvalidArgument,
            "max_message_bytes",
        ),
        (
            "request over max_request_bytes",
            message(5000, &[]),
            Code::InvalidArgument,
            "max_request_bytes",
        ),
        (
            "too many attributes",
            message(1, &[("a", "1"), ("b", "2"), ("c", "3")]),
            Code::InvalidArgument,
            "max_attributes",
        ),
        (
            "attribute key too long",
            message(1, &[("ninechars", "1")]),
            Code::InvalidArgument,
            "max_attribute_key_bytes",
        ),
        (
            "attribute value too long",
            message(1, &[("k", "seventeen bytes!!")]),
            Code::InvalidArgument,
            "max_attribute_value_bytes",
        ),
    ];
    for (case, message, code, needle) in cases {
        let result = grpc_publish(&server, vec![message]).await;
        assert_status(result, code, needle, case);
    }
}

async fn post(url: String, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the request completes");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

#[tokio::test]
async fn http_size_limits_have_clear_errors() {
    let server = TestServer::start(Some(SIZE_LIMITS));

    let publish_url = format!("{}/v1/projects/local/topics/orders:publish", server.url);
    let large_data = base64_of(3000);
    let (status, body) = post(
        publish_url.clone(),
        format!(r#"{{"messages": [{{"data": "{large_data}"}}]}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("max_message_bytes"), "{body}");

    // The REST body limit leaves room for base64 of a whole message, so it is far above
    // max_request_bytes here.
    let huge = format!(r#"{{"messages": [{{"data": "{}"}}]}}"#, "A".repeat(3 << 20));
    let (status, body) = post(publish_url, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("RESOURCE_EXHAUSTED"), "{body}");

    let entries = format!(
        r#"{{"entries": [{{"textPayload": "{}"}}]}}"#,
        "x".repeat(5000)
    );
    let (status, body) = post(format!("{}/v2/entries:write", server.url), entries).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("max_request_bytes"), "{body}");

    let upload_url = format!(
        "{}/upload/storage/v1/b/uploads/o?uploadType=media&name=big.bin",
        server.url
    );
    let (status, body) = post(upload_url, vec![0_u8; 1001]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("max_upload_bytes"), "{body}");
}

fn base64_of(bytes: usize) -> String {
    // Three bytes of 'x' are "eHh4" in base64.
    "eHh4".repeat(bytes / 3)
}

#[tokio::test]
async fn streams_per_client_are_capped() {
    let server = TestServer::start(Some(RATE_LIMITS));
    let first_request = || StreamingPullRequest {
        subscription: "projects/local/subscriptions/orders-sub".to_owned(),
        stream_ack_deadline_seconds: 60,
        ..StreamingPullRequest::default()
    };
    let mut client = SubscriberClient::new(channel(&server).await);

    let (first_sender, first_requests) = tokio::sync::mpsc::channel(1);
    first_sender.send(first_request()).await.expect("send");
    let first = client
        .streaming_pull(tokio_stream::wrappers::ReceiverStream::new(first_requests))
        .await
        .expect("the first stream opens");

    let second = client
        .streaming_pull(tokio_stream::iter([first_request()]))
        .await;
    let status = second.expect_err("a second stream of the same client");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_streams_per_client"),
        "{status:?}"
    );

    drop(first);
    drop(first_sender);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (sender, requests) = tokio::sync::mpsc::channel(1);
        sender.send(first_request()).await.expect("send");
        let again = client
            .streaming_pull(tokio_stream::wrappers::ReceiverStream::new(requests))
            .await;
        match again {
            Ok(_) => break,
            Err(status) if std::time::Instant::now() > deadline => {
                panic!("no stream opens after the first closed: {status:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn publish_rate_answers_with_a_retry_hint() {
    let server = TestServer::start(Some(RATE_LIMITS));
    let burst: Vec<PubsubMessage> = (0..3).map(|_| message(10, &[])).collect();
    grpc_publish(&server, burst)
        .await
        .expect("the burst goes through");

    let status = grpc_publish(&server, vec![message(10, &[])])
        .await
        .expect_err("a publish over the rate");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("publish rate"), "{status:?}");
    let retry = status.get_details_retry_info().expect("a RetryInfo detail");
    let delay = retry.retry_delay.expect("a retry delay");
    assert!(delay > Duration::ZERO, "{delay:?}");
    assert!(
        delay <= Duration::from_secs(1),
        "one message refills in 1 s: {delay:?}"
    );

    let url = format!("{}/v1/projects/local/topics/orders:publish", server.url);
    let response = reqwest::Client::new()
        .post(url)
        .json(&serde_json::json!({"messages": [{"data": "eA=="}]}))
        .send()
        .await
        .expect("the request completes");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .expect("a Retry-After header")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(retry_after, "1");
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(
        body["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
}

#[tokio::test]
async fn rest_publish_with_repeated_messages_key_is_counted() {
    let server = TestServer::start(Some(RATE_LIMITS));
    let url = format!("{}/v1/projects/local/topics/orders:publish", server.url);
    // Four messages under a repeated `messages` key: the handler publishes the last list, so
    // the limiter must count it, and four is over the burst of three.
    let body = r#"{"messages": [], "messages": [{"data": "eA=="}, {"data": "eA=="},
        {"data": "eA=="}, {"data": "eA=="}]}"#;

    let response = reqwest::Client::new()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("the request completes");

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.text().await.expect("a body");
    assert!(body.contains("publish_burst_messages"), "{body}");
}

#[tokio::test]
async fn publish_over_burst_is_invalid() {
    let server = TestServer::start(Some(RATE_LIMITS));
    let over_burst: Vec<PubsubMessage> = (0..4).map(|_| message(10, &[])).collect();
    let status = grpc_publish(&server, over_burst)
        .await
        .expect_err("a request larger than the burst");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("split it into requests of at most 3"),
        "{status:?}"
    );
}
