//! Subscriber.StreamingPull end to end: the real `sluice serve` on 127.0.0.1, driven by the
//! tonic client of google.pubsub.v1, as the Python and Rust Pub/Sub clients drive it.

mod support;

use std::time::{Duration, Instant};

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, ReceivedMessage, StreamingPullRequest,
    StreamingPullResponse,
};
use sluice_proto::prost::Message as _;
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use sluice_proto::tonic::{Code, Status, Streaming};
use support::{channel, python, TestServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CONFIG: &str = r#"
[[topics]]
name = "events"

[[subscriptions]]
name = "workers"
topic = "events"
ack_deadline_secs = 60
"#;

/// gRPC's default receive limit, which the Python client in emulator mode and the Rust
/// client keep.
const DEFAULT_CLIENT_LIMIT: usize = 4 * 1024 * 1024;
/// The largest message Pub/Sub accepts, as sluice counts it: data, attributes and ordering
/// key.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// How long a test waits for a message that should arrive.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long a test watches for a message that should not arrive.
const QUIET: Duration = Duration::from_secs(1);

const SUBSCRIPTION: &str = "projects/local/subscriptions/workers";

/// Publishes `sys.argv[1]` messages with Google's Python client, then receives and acks them
/// with `SubscriberClient.subscribe`, which uses StreamingPull and unary acks.
const PYTHON_SUBSCRIBER: &str = r#"
import sys, threading, time
from google.cloud import pubsub_v1

count = int(sys.argv[1])
publisher = pubsub_v1.PublisherClient()
topic = publisher.topic_path("local", "events")
for future in [publisher.publish(topic, b"data", index=str(i)) for i in range(count)]:
    future.result(timeout=30)

subscriber = pubsub_v1.SubscriberClient()
seen = set()
lock = threading.Lock()
done = threading.Event()

def callback(message):
    with lock:
        seen.add(message.attributes["index"])
        if len(seen) == count:
            done.set()
    message.ack()

streaming = subscriber.subscribe(
    subscriber.subscription_path("local", "workers"), callback=callback
)
received_all = done.wait(60)
# The client sends acks in batches every 100 ms or so; let the last batch go out.
time.sleep(2)
streaming.cancel()
subscriber.close()
print(f"received {len(seen)} of {count}")
sys.exit(0 if received_all else 1)
"#;

/// A StreamingPull call: the sender of its requests and the stream of its responses.
struct PullStream {
    requests: mpsc::Sender<StreamingPullRequest>,
    responses: Streaming<StreamingPullResponse>,
}

impl PullStream {
    async fn send(&self, request: StreamingPullRequest) {
        self.requests
            .send(request)
            .await
            .expect("the request stream is open");
    }

    /// Returns the next response or the status that ended the stream, or `None` when
    /// nothing arrives within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Result<StreamingPullResponse, Status>> {
        let next = tokio::time::timeout(limit, self.responses.message()).await;
        match next {
            Err(_) => None,
            Ok(Ok(Some(response))) => Some(Ok(response)),
            Ok(Ok(None)) => panic!("the stream ended with status OK"),
            Ok(Err(status)) => Some(Err(status)),
        }
    }

    /// Returns the status that ends the stream, skipping heartbeats.
    async fn end_status(&mut self) -> Status {
        loop {
            match self.next(ARRIVAL).await {
                None => panic!("the stream did not end within {ARRIVAL:?}"),
                Some(Err(status)) => return status,
                Some(Ok(response)) => assert!(
                    response.received_messages.is_empty(),
                    "a message arrived instead of the end of the stream"
                ),
            }
        }
    }

    /// Collects `count` messages, failing when they take longer than [`ARRIVAL`].
    async fn receive(&mut self, count: usize) -> Vec<ReceivedMessage> {
        self.receive_within(count, ARRIVAL).await
    }

    /// Collects `count` messages, failing when they take longer than `limit`.
    async fn receive_within(&mut self, count: usize, limit: Duration) -> Vec<ReceivedMessage> {
        let give_up = Instant::now() + limit;
        let mut received = Vec::new();
        while received.len() < count {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => panic!(
                    "{} of {count} messages arrived within {limit:?}",
                    received.len()
                ),
                Some(Err(status)) => panic!("the stream failed: {status}"),
                Some(Ok(response)) => received.extend(response.received_messages),
            }
        }
        assert_eq!(received.len(), count, "more messages arrived than expected");
        received
    }

    /// Fails when a message arrives within `limit`; heartbeats are allowed.
    async fn expect_no_message(&mut self, limit: Duration) {
        let give_up = Instant::now() + limit;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return,
                Some(Err(status)) => panic!("the stream failed: {status}"),
                Some(Ok(response)) => assert!(
                    response.received_messages.is_empty(),
                    "{} messages arrived beyond the flow-control limit",
                    response.received_messages.len()
                ),
            }
        }
    }

    async fn ack(&self, received: &[ReceivedMessage]) {
        self.send(StreamingPullRequest {
            ack_ids: received.iter().map(|m| m.ack_id.clone()).collect(),
            ..Default::default()
        })
        .await;
    }
}

fn first_request() -> StreamingPullRequest {
    StreamingPullRequest {
        subscription: SUBSCRIPTION.to_owned(),
        stream_ack_deadline_seconds: 60,
        ..Default::default()
    }
}

async fn subscriber(
    server: &TestServer,
) -> SubscriberClient<sluice_proto::tonic::transport::Channel> {
    SubscriberClient::new(channel(server).await)
}

/// Opens a stream with `first` as its first request and a client that accepts responses of
/// up to `receive_limit` bytes.
async fn open_with_limit(
    server: &TestServer,
    first: StreamingPullRequest,
    receive_limit: usize,
) -> Result<PullStream, Status> {
    let (requests, outbound) = mpsc::channel(16);
    requests.send(first).await.expect("the channel is open");
    let mut client = subscriber(server)
        .await
        .max_decoding_message_size(receive_limit);
    let responses = client
        .streaming_pull(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    Ok(PullStream {
        requests,
        responses,
    })
}

async fn open(server: &TestServer, first: StreamingPullRequest) -> Result<PullStream, Status> {
    open_with_limit(server, first, DEFAULT_CLIENT_LIMIT).await
}

/// Publishes `count` messages of `size` bytes each, in one request.
async fn publish(server: &TestServer, count: usize, size: usize) {
    let messages = (0..count)
        .map(|index| PubsubMessage {
            data: vec![b'a' + (index % 26) as u8; size],
            ..Default::default()
        })
        .collect();
    let mut publisher = PublisherClient::new(channel(server).await);
    publisher
        .publish(PublishRequest {
            topic: "projects/local/topics/events".to_owned(),
            messages,
        })
        .await
        .expect("publish succeeds");
}

/// Returns the backlog and the leased messages of the subscription.
async fn backlog(server: &TestServer) -> (u64, u64) {
    let mut admin = AdminClient::new(channel(server).await);
    let subscriptions = admin
        .list_subscriptions(ListSubscriptionsRequest::default())
        .await
        .expect("list subscriptions succeeds")
        .into_inner()
        .subscriptions;
    let workers = subscriptions
        .into_iter()
        .find(|s| s.name == "workers")
        .expect("the subscription is listed");
    (workers.backlog, workers.outstanding)
}

/// Waits until the backlog reaches `expected`, which acks reach shortly after they are sent.
async fn wait_for_backlog(server: &TestServer, expected: u64) {
    let give_up = Instant::now() + ARRIVAL;
    loop {
        let (backlog, _) = backlog(server).await;
        if backlog == expected {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "the backlog is {backlog}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expect_rejected(result: Result<PullStream, Status>) -> Status {
    match result {
        Ok(_) => panic!("the stream opened"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_request_needs_subscription() {
    let server = TestServer::start(Some(CONFIG));
    let first = StreamingPullRequest {
        stream_ack_deadline_seconds: 60,
        ..Default::default()
    };
    let status = expect_rejected(open(&server, first).await);
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(status.message().contains("subscription"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_ack_deadline_out_of_range() {
    let server = TestServer::start(Some(CONFIG));
    for seconds in [0, 9, 601, -10] {
        let first = StreamingPullRequest {
            stream_ack_deadline_seconds: seconds,
            ..first_request()
        };
        let status = expect_rejected(open(&server, first).await);
        assert_eq!(status.code(), Code::InvalidArgument, "{seconds}: {status}");
        assert!(
            status.message().contains(&format!("is {seconds};")),
            "the message names the value: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_subscription_not_found() {
    let server = TestServer::start(Some(CONFIG));
    let first = StreamingPullRequest {
        subscription: "projects/local/subscriptions/nobody".to_owned(),
        ..first_request()
    };
    let status = expect_rejected(open(&server, first).await);
    assert_eq!(status.code(), Code::NotFound, "{status}");
    assert!(status.message().contains("nobody"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn later_request_fields_end_stream() {
    let server = TestServer::start(Some(CONFIG));
    let later_requests = [
        (
            "subscription",
            StreamingPullRequest {
                subscription: SUBSCRIPTION.to_owned(),
                ..Default::default()
            },
        ),
        (
            "max_outstanding_messages",
            StreamingPullRequest {
                max_outstanding_messages: 5,
                ..Default::default()
            },
        ),
        (
            "protocol_version",
            StreamingPullRequest {
                protocol_version: 1,
                ..Default::default()
            },
        ),
        (
            "stream_ack_deadline_seconds",
            StreamingPullRequest {
                stream_ack_deadline_seconds: 5,
                ..Default::default()
            },
        ),
        (
            "same size",
            StreamingPullRequest {
                modify_deadline_ack_ids: vec!["1-1".to_owned(), "2-1".to_owned()],
                modify_deadline_seconds: vec![10],
                ..Default::default()
            },
        ),
        (
            "modify_deadline_seconds is -1",
            StreamingPullRequest {
                modify_deadline_ack_ids: vec!["1-1".to_owned()],
                modify_deadline_seconds: vec![-1],
                ..Default::default()
            },
        ),
        (
            "invalid ack id",
            StreamingPullRequest {
                ack_ids: vec!["not-an-ack-id".to_owned()],
                ..Default::default()
            },
        ),
    ];
    for (expected, later) in later_requests {
        let mut stream = open(&server, first_request())
            .await
            .expect("the stream opens");
        stream.send(later).await;
        let status = stream.end_status().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{expected}: {status}");
        assert!(status.message().contains(expected), "{expected}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn receive_and_ack_on_stream() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 3, 10).await;
    let mut stream = open(&server, first_request())
        .await
        .expect("the stream opens");
    let received = stream.receive(3).await;
    assert_eq!(backlog(&server).await, (3, 3), "all three are leased");
    stream.ack(&received).await;
    wait_for_backlog(&server, 0).await;
    stream.expect_no_message(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_ack_frees_stream_slot() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 2, 10).await;
    let first = StreamingPullRequest {
        max_outstanding_messages: 1,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    let received = stream.receive(1).await;
    stream.expect_no_message(QUIET).await;
    subscriber(&server)
        .await
        .acknowledge(AcknowledgeRequest {
            subscription: SUBSCRIPTION.to_owned(),
            ack_ids: vec![received[0].ack_id.clone()],
        })
        .await
        .expect("acknowledge succeeds");
    let second = stream.receive(1).await;
    assert_ne!(
        second[0].message.as_ref().map(|m| &m.message_id),
        received[0].message.as_ref().map(|m| &m.message_id),
        "the next message, not the acknowledged one, arrives"
    );
    wait_for_backlog(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nack_on_stream_redelivers() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 1, 10).await;
    let mut stream = open(&server, first_request())
        .await
        .expect("the stream opens");
    let first = stream.receive(1).await.remove(0);
    stream
        .send(StreamingPullRequest {
            modify_deadline_ack_ids: vec![first.ack_id.clone()],
            modify_deadline_seconds: vec![0],
            ..Default::default()
        })
        .await;
    let again = stream.receive(1).await.remove(0);
    assert_eq!(
        again.message.as_ref().map(|m| &m.message_id),
        first.message.as_ref().map(|m| &m.message_id)
    );
    assert_ne!(again.ack_id, first.ack_id, "a redelivery has a new ack id");
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_control_caps_messages() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 10, 10).await;
    let first = StreamingPullRequest {
        max_outstanding_messages: 2,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    let received = stream.receive(2).await;
    stream.expect_no_message(QUIET).await;
    stream.ack(&received[..1]).await;
    stream.receive(1).await;
    stream.expect_no_message(QUIET).await;
    assert_eq!(backlog(&server).await, (9, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn flow_control_caps_bytes() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 10, 1000).await;
    let first = StreamingPullRequest {
        max_outstanding_bytes: 2500,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    // Sending stops once 2500 bytes or more are outstanding: after the third message.
    let received = stream.receive(3).await;
    stream.expect_no_message(QUIET).await;
    stream.ack(&received).await;
    stream.receive(3).await;
    stream.expect_no_message(QUIET).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keepalive_gets_heartbeat_in_protocol_1() {
    let server = TestServer::start(Some(CONFIG));
    let first = StreamingPullRequest {
        protocol_version: 1,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    stream.send(StreamingPullRequest::default()).await;
    let heartbeat = stream
        .next(Duration::from_secs(2))
        .await
        .expect("a heartbeat arrives within 2 s")
        .expect("the stream is open");
    assert!(heartbeat.received_messages.is_empty());

    let mut legacy = open(&server, first_request())
        .await
        .expect("the stream opens");
    legacy.send(StreamingPullRequest::default()).await;
    assert!(
        legacy.next(Duration::from_secs(2)).await.is_none(),
        "protocol 0 gets no heartbeats"
    );
}

/// Takes 30 s: the heartbeat interval.
#[tokio::test(flavor = "multi_thread")]
async fn silent_stream_gets_heartbeat() {
    let server = TestServer::start(Some(CONFIG));
    let first = StreamingPullRequest {
        protocol_version: 1,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    let opened = Instant::now();
    let heartbeat = stream
        .next(Duration::from_secs(40))
        .await
        .expect("a heartbeat arrives within 40 s")
        .expect("the stream is open");
    assert!(heartbeat.received_messages.is_empty());
    assert!(
        opened.elapsed() >= Duration::from_secs(25),
        "the heartbeat came after {:?}, before the interval",
        opened.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_stream_unavailable() {
    let mut server = TestServer::start(Some(CONFIG));
    let mut stream = open(&server, first_request())
        .await
        .expect("the stream opens");
    server.signal("TERM");
    let status = stream.end_status().await;
    assert_eq!(status.code(), Code::Unavailable, "{status}");
    let (exit, log) = server.terminate_wait();
    assert!(exit.success(), "sluice exited with {exit}; stderr:\n{log}");
}

/// A stream that goes away keeps its messages leased until the stream's ack deadline, since
/// clients acknowledge what they received after reconnecting.
#[tokio::test(flavor = "multi_thread")]
async fn dropped_stream_keeps_leases_until_deadline() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 1, 10).await;
    let first = StreamingPullRequest {
        stream_ack_deadline_seconds: 10,
        ..first_request()
    };
    let mut stream = open(&server, first).await.expect("the stream opens");
    let received = stream.receive(1).await.remove(0);
    let dropped_at = Instant::now();
    drop(stream);

    let mut other = open(&server, first_request())
        .await
        .expect("the stream opens");
    let again = other
        .receive_within(1, Duration::from_secs(20))
        .await
        .remove(0);
    let waited = dropped_at.elapsed();
    assert_eq!(
        again.message.as_ref().map(|m| &m.message_id),
        received.message.as_ref().map(|m| &m.message_id)
    );
    assert!(
        waited >= Duration::from_secs(8),
        "redelivered after {waited:?}, before the 10 s stream deadline"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_keeps_flow_control() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 3, 10).await;
    let first = StreamingPullRequest {
        max_outstanding_messages: 1,
        client_id: "client-a".to_owned(),
        ..first_request()
    };
    let mut stream = open(&server, first.clone())
        .await
        .expect("the stream opens");
    let unacked = stream.receive(1).await;
    drop(stream);
    // The server notices the cancelled stream within milliseconds. A stream that reconnects
    // before that may receive one message beyond its limit.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut reconnected = open(&server, first).await.expect("the stream opens");
    reconnected.expect_no_message(QUIET).await;
    let mut other_client = open(
        &server,
        StreamingPullRequest {
            max_outstanding_messages: 1,
            client_id: "client-b".to_owned(),
            ..first_request()
        },
    )
    .await
    .expect("the stream opens");
    other_client.receive(1).await;

    reconnected.ack(&unacked).await;
    reconnected.receive(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_megabyte_message_round_trip() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 1, MAX_MESSAGE_BYTES).await;
    let mut stream = open_with_limit(&server, first_request(), 16 * 1024 * 1024)
        .await
        .expect("the stream opens");
    let received = stream.receive(1).await.remove(0);
    let data = received.message.map(|m| m.data).unwrap_or_default();
    assert_eq!(data.len(), MAX_MESSAGE_BYTES);
    assert!(data.iter().all(|byte| *byte == b'a'));
}

#[tokio::test(flavor = "multi_thread")]
async fn message_over_ten_megabytes_rejected() {
    let server = TestServer::start(Some(CONFIG));
    let mut publisher = PublisherClient::new(channel(&server).await);
    let status = publisher
        .publish(PublishRequest {
            topic: "projects/local/topics/events".to_owned(),
            messages: vec![PubsubMessage {
                data: vec![b'a'; MAX_MESSAGE_BYTES + 1],
                ..Default::default()
            }],
        })
        .await
        .expect_err("the message is too large");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_stay_under_four_mebibytes() {
    let server = TestServer::start(Some(CONFIG));
    publish(&server, 10, 1_000_000).await;
    let mut stream = open(&server, first_request())
        .await
        .expect("the stream opens");
    let mut received = 0;
    let mut responses = 0;
    while received < 10 {
        let response = stream
            .next(ARRIVAL)
            .await
            .expect("messages keep arriving")
            .expect("the client can read every response");
        assert!(response.encoded_len() <= DEFAULT_CLIENT_LIMIT);
        received += response.received_messages.len();
        responses += 1;
    }
    assert_eq!(received, 10);
    assert!(
        responses >= 3,
        "10 MB need at least 3 responses, got {responses}"
    );
}

/// Needs `SLUICE_TEST_PYTHON`, which `scripts/test` sets to a Python with Google's clients.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_receives_and_acks() {
    let server = TestServer::start(Some(CONFIG));
    let host = server.url().trim_start_matches("http://").to_owned();
    let interpreter = python::interpreter();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(interpreter)
            .args(["-c", PYTHON_SUBSCRIBER, "200"])
            .env("PUBSUB_EMULATOR_HOST", host)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("the Python interpreter runs")
    })
    .await
    .expect("the subscriber task completes");
    python::assert_success("the Python subscriber", &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("received 200 of 200"), "{stdout}");
    wait_for_backlog(&server, 0).await;
}
