//! Push subscriptions end to end: the real `sluice serve` on 127.0.0.1 POSTs the messages of
//! `[subscriptions.push]` subscriptions to a mock endpoint that each test starts on
//! 127.0.0.1:0, and the tests read what the endpoint received, `/metrics` and the
//! dead-letter topics.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use support::{channel, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a test waits for something the server should do. It bounds a hung test, and is
/// never a measure of speed.
const GIVE_UP: Duration = Duration::from_secs(120);

/// How long the mock's slow route waits before it responds: far beyond any ack deadline.
const SLOW_RESPONSE: Duration = Duration::from_secs(300);

/// The bound on requests in flight per endpoint that the server applies by default.
const MAX_REQUESTS_PER_ENDPOINT: usize = 16;

/// One request that the mock endpoint received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "the body of the request to {} is not JSON ({err}): {:?}",
                self.path, self.body
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("header value is text"))
    }
}

/// The state of the mock endpoint.
#[derive(Debug, Default)]
struct MockState {
    received: Mutex<Vec<Received>>,
    arrived: Notify,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Opens once as many requests of the gated route are in flight as the server allows.
    gate: Notify,
    gate_open: std::sync::atomic::AtomicBool,
}

/// An HTTP endpoint on 127.0.0.1 whose response depends on the path:
///
/// - `/status/{code}/...` responds with `code`;
/// - `/fail-first/{n}/...` responds with 500 to the first `n` requests on that path, then
///   with 204;
/// - `/slow/...` responds with 204 after [`SLOW_RESPONSE`];
/// - `/gated/...` holds each request until [`MAX_REQUESTS_PER_ENDPOINT`] are in flight at
///   once, or 5 s have passed, then responds with 204.
struct Mock {
    url: String,
    state: Arc<MockState>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    async fn start() -> Mock {
        Mock::start_on(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the mock"),
        )
        .await
    }

    async fn start_on(listener: TcpListener) -> Mock {
        let url = format!("http://{}", listener.local_addr().expect("mock address"));
        let state = Arc::new(MockState::default());
        let app = axum::Router::new()
            .fallback(respond)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the mock serves");
        });
        Mock { url, state, task }
    }

    /// Returns the requests received so far on `path`.
    fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|request| request.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received `count` requests and returns them.
    async fn wait_for(&self, path: &str, count: usize) -> Vec<Received> {
        let give_up = Instant::now() + GIVE_UP;
        loop {
            let arrived = self.state.arrived.notified();
            let received = self.received(path);
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(give_up, arrived).await.is_err() {
                panic!(
                    "{path} received {} requests, expected {count}",
                    received.len()
                );
            }
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    let count = {
        let mut received = state.received.lock().expect("not poisoned");
        received.push(Received {
            at: Instant::now(),
            path: path.clone(),
            headers,
            body,
        });
        received
            .iter()
            .filter(|request| request.path == path)
            .count()
    };
    state.arrived.notify_waiters();

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["status", code, ..] => {
            StatusCode::from_u16(code.parse().expect("numeric status")).expect("valid status")
        }
        ["fail-first", failures, ..] => {
            if count <= failures.parse().expect("numeric count") {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NO_CONTENT
            }
        }
        ["slow", ..] => {
            tokio::time::sleep(SLOW_RESPONSE).await;
            StatusCode::NO_CONTENT
        }
        ["gated", ..] => gated(&state).await,
        _ => StatusCode::NOT_FOUND,
    }
}

/// Holds a request until the gate opens, counting the requests in flight meanwhile.
async fn gated(state: &MockState) -> StatusCode {
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
    if in_flight >= MAX_REQUESTS_PER_ENDPOINT {
        state.gate_open.store(true, Ordering::SeqCst);
        state.gate.notify_waiters();
    }
    let opened = state.gate.notified();
    if !state.gate_open.load(Ordering::SeqCst) {
        let _ = tokio::time::timeout(Duration::from_secs(5), opened).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

fn message(data: &[u8], attributes: &[(&str, &str)], ordering_key: &str) -> PubsubMessage {
    PubsubMessage {
        data: data.to_vec(),
        attributes: attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
        ordering_key: ordering_key.to_owned(),
        ..Default::default()
    }
}

/// Publishes `messages` to `topic` and returns their ids.
async fn publish(server: &TestServer, topic: &str, messages: Vec<PubsubMessage>) -> Vec<String> {
    PublisherClient::new(channel(server).await)
        .publish(PublishRequest {
            topic: format!("projects/local/topics/{topic}"),
            messages,
        })
        .await
        .expect("publish succeeds")
        .into_inner()
        .message_ids
}

/// Returns the value of a per-subscription counter or gauge on `/metrics`, 0 when absent.
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

/// Waits until a metric of `subscription` reaches `expected`.
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

/// Pulls and acknowledges the messages of the `dead-letters` subscription until `count` have
/// arrived.
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

/// Asserts that `text` is an RFC 3339 UTC time with milliseconds, as Pub/Sub writes publish
/// times: `2021-02-26T19:13:55.749Z`.
fn assert_publish_time_format(text: &str) {
    let bytes = text.as_bytes();
    let digits_at = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
    assert_eq!(bytes.len(), 24, "{text:?} has 24 characters");
    for index in digits_at {
        assert!(bytes[index].is_ascii_digit(), "{text:?}: digit at {index}");
    }
    for (index, separator) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ] {
        assert_eq!(bytes[index], separator, "{text:?}: separator at {index}");
    }
    assert_eq!(bytes[23], b'Z', "{text:?} is in UTC");
}

/// Returns a config with the topics `orders` and `orders-dead`, the pull subscription
/// `dead-letters` on `orders-dead`, and `subscriptions` (TOML text) after them.
fn config(subscriptions: &str) -> String {
    format!(
        "[[topics]]\nname = \"orders\"\n\
         [[topics]]\nname = \"orders-dead\"\n\
         [[subscriptions]]\nname = \"dead-letters\"\ntopic = \"orders-dead\"\n\
         {subscriptions}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn wrapped_push_has_pubsub_body() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"orders-push\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/status/204/wrapped\"\n",
        mock.url
    ))));

    let ids = publish(
        &server,
        "orders",
        vec![message(
            b"Hello \x00\xff",
            &[("origin", "web"), ("region", "eu")],
            "customer-7",
        )],
    )
    .await;
    let request = mock.wait_for("/status/204/wrapped", 1).await.remove(0);

    let body = request.json();
    let publish_time = body["message"]["publishTime"]
        .as_str()
        .expect("publishTime is a string")
        .to_owned();
    assert_publish_time_format(&publish_time);
    assert_eq!(
        body,
        serde_json::json!({
            "message": {
                "attributes": {"origin": "web", "region": "eu"},
                "data": "SGVsbG8gAP8=",
                "messageId": ids[0],
                "message_id": ids[0],
                "orderingKey": "customer-7",
                "publishTime": publish_time,
                "publish_time": publish_time,
            },
            "subscription": "projects/local/subscriptions/orders-push",
        }),
        "no deliveryAttempt without a dead-letter policy"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some("CloudPubSub-Google"));

    wait_for_metric(&server, "sluice_acks_total", "orders-push", 1).await;
    wait_for_metric(&server, "sluice_backlog_messages", "orders-push", 0).await;
    assert_eq!(
        metric(&server, "sluice_push_succeeded_total", "orders-push").await,
        1
    );
    assert_eq!(
        metric(&server, "sluice_push_failed_total", "orders-push").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unwrapped_push_sends_raw_data() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"with-metadata\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/status/200/with-metadata\"\n\
         format = \"unwrapped\"\nwrite_metadata = true\n\
         [[subscriptions]]\nname = \"data-only\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/status/200/data-only\"\n\
         format = \"unwrapped\"\n",
        url = mock.url
    ))));

    let data = b"{\"status\": \"Hello there\"}\n\x00\xff";
    let ids = publish(
        &server,
        "orders",
        vec![message(data, &[("origin", "web")], "customer-7")],
    )
    .await;
    let with_metadata = mock
        .wait_for("/status/200/with-metadata", 1)
        .await
        .remove(0);
    let data_only = mock.wait_for("/status/200/data-only", 1).await.remove(0);

    assert_eq!(with_metadata.body.as_ref(), data, "the body is the data");
    assert_eq!(
        with_metadata.header("x-goog-pubsub-message-id"),
        Some(ids[0].as_str())
    );
    assert_eq!(
        with_metadata.header("x-goog-pubsub-subscription-name"),
        Some("projects/local/subscriptions/with-metadata")
    );
    assert_publish_time_format(
        with_metadata
            .header("x-goog-pubsub-publish-time")
            .expect("publish time header"),
    );
    assert_eq!(
        with_metadata.header("x-goog-pubsub-ordering-key"),
        Some("customer-7")
    );
    assert_eq!(
        with_metadata.header("x-goog-ordering-key"),
        Some("customer-7"),
        "the emulator's name for the ordering key header"
    );
    assert_eq!(with_metadata.header("origin"), Some("web"), "attribute");
    assert_eq!(
        with_metadata.header("content-type"),
        Some("application/octet-stream")
    );

    assert_eq!(data_only.body.as_ref(), data, "the body is the data");
    let goog_headers: Vec<&str> = data_only
        .headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| name.starts_with("x-goog"))
        .collect();
    assert!(goog_headers.is_empty(), "no metadata: {goog_headers:?}");
    assert_eq!(data_only.header("origin"), None, "no attribute headers");

    wait_for_metric(&server, "sluice_acks_total", "with-metadata", 1).await;
    wait_for_metric(&server, "sluice_acks_total", "data-only", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ack_statuses_acknowledge() {
    let mock = Mock::start().await;
    let codes = [200, 201, 202, 204];
    let subscriptions: String = codes
        .iter()
        .map(|code| {
            format!(
                "[[subscriptions]]\nname = \"status-{code}\"\ntopic = \"orders\"\n\
                 [subscriptions.push]\nendpoint = \"{}/status/{code}/ack\"\n",
                mock.url
            )
        })
        .collect();
    let server = TestServer::start(Some(&config(&subscriptions)));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;

    for code in codes {
        let subscription = format!("status-{code}");
        wait_for_metric(&server, "sluice_acks_total", &subscription, 1).await;
        wait_for_metric(&server, "sluice_backlog_messages", &subscription, 0).await;
        assert_eq!(
            metric(&server, "sluice_nacks_total", &subscription).await,
            0,
            "{code} is not a nack"
        );
        assert_eq!(
            mock.received(&format!("/status/{code}/ack")).len(),
            1,
            "{code}: one request"
        );
    }
}

/// Serves one connection on `listener` with `response` (raw HTTP/1.1 text) after reading a
/// whole request, and returns the request's head.
async fn answer_raw(listener: TcpListener, response: &'static [u8]) -> String {
    let (mut socket, _) = listener.accept().await.expect("accept");
    let mut request = Vec::new();
    let mut buffer = [0_u8; 4096];
    let head_end = loop {
        let read = socket.read(&mut buffer).await.expect("read the request");
        assert!(read > 0, "the request ended early");
        request.extend_from_slice(&buffer[..read]);
        if let Some(end) = request.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().expect("numeric length"))
        })
        .unwrap_or(0);
    while request.len() < head_end + length {
        let read = socket.read(&mut buffer).await.expect("read the body");
        assert!(read > 0, "the body ended early");
        request.extend_from_slice(&buffer[..read]);
    }
    socket
        .write_all(response)
        .await
        .expect("write the response");
    socket.shutdown().await.expect("close the connection");
    head
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_102_then_final_status_decides() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"processing\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/processing\"\n"
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    let head = answer_raw(
        listener,
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    )
    .await;

    assert!(head.starts_with("POST /processing HTTP/1.1\r\n"), "{head}");
    wait_for_metric(&server, "sluice_acks_total", "processing", 1).await;
    wait_for_metric(&server, "sluice_backlog_messages", "processing", 0).await;
}

/// Waits for the 5 requests on `path` of a subscription with `max_delivery_attempts = 5`
/// and checks that they carry the attempts 1 to 5.
async fn assert_five_attempts(mock: &Mock, path: &str) {
    let requests = mock.wait_for(path, 5).await;
    let attempts: Vec<Value> = requests
        .iter()
        .map(|request| request.json()["deliveryAttempt"].clone())
        .collect();

    assert_eq!(attempts, [1, 2, 3, 4, 5], "{path}: attempts");
}

/// Checks that `dead` contains one copy of "order 1" per path, with the path in its reason.
fn assert_dead_letters(dead: &[PubsubMessage], paths: &[&str]) {
    assert_eq!(dead.len(), paths.len(), "one dead letter per subscription");
    for path in paths {
        let copy = dead
            .iter()
            .find(|message| message.attributes["sluiceDeadLetterReason"].contains(path))
            .unwrap_or_else(|| panic!("no dead letter names {path}: {dead:#?}"));
        assert_eq!(copy.data, b"order 1", "{path}: dead-lettered data");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_pushes_are_dead_lettered() {
    let mock = Mock::start().await;
    let subscriptions: String = [500, 404]
        .iter()
        .map(|code| {
            format!(
                "[[subscriptions]]\nname = \"fails-{code}\"\ntopic = \"orders\"\n\
                 [subscriptions.push]\nendpoint = \"{}/status/{code}/fails\"\n\
                 [subscriptions.dead_letter]\ntopic = \"orders-dead\"\nmax_delivery_attempts = 5\n\
                 [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 0\n",
                mock.url
            )
        })
        .collect();
    let server = TestServer::start(Some(&config(&subscriptions)));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;

    assert_five_attempts(&mock, "/status/500/fails").await;
    assert_five_attempts(&mock, "/status/404/fails").await;
    let dead = pull_dead_letters(&server, 2).await;
    assert_dead_letters(&dead, &["/status/500/fails", "/status/404/fails"]);
    for code in [500, 404] {
        let path = format!("/status/{code}/fails");
        assert_eq!(mock.received(&path).len(), 5, "{path}: no sixth attempt");
        let subscription = format!("fails-{code}");
        wait_for_metric(&server, "sluice_dead_letters_total", &subscription, 1).await;
        wait_for_metric(&server, "sluice_backlog_messages", &subscription, 0).await;
        assert_eq!(
            metric(&server, "sluice_push_failed_total", &subscription).await,
            5
        );
        assert_eq!(
            metric(&server, "sluice_push_succeeded_total", &subscription).await,
            0
        );
        assert_eq!(
            metric(&server, "sluice_acks_total", &subscription).await,
            0,
            "a failure is never acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timed_out_pushes_are_dead_lettered() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"slow\"\ntopic = \"orders\"\nack_deadline_secs = 10\n\
         [subscriptions.push]\nendpoint = \"{}/slow/push\"\n\
         [subscriptions.dead_letter]\ntopic = \"orders-dead\"\nmax_delivery_attempts = 5\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 0\n",
        mock.url
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;

    assert_five_attempts(&mock, "/slow/push").await;
    let dead = pull_dead_letters(&server, 1).await;
    assert_dead_letters(&dead, &["/slow/push"]);
    // The server starts each timeout when it sends, and the mock reads the time once the
    // request has arrived, which can take a little longer for one request than for the next.
    let measurement_error = Duration::from_millis(100);
    let requests = mock.received("/slow/push");
    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap + measurement_error >= Duration::from_secs(10),
            "an attempt ends at the ack deadline of 10 s, not before: gap {gap:?}"
        );
    }
    assert_eq!(metric(&server, "sluice_push_failed_total", "slow").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_policy_spaces_attempts() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"backoff\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/fail-first/2/backoff\"\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 2\nmaximum_backoff_secs = 2\n",
        mock.url
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    let requests = mock.wait_for("/fail-first/2/backoff", 3).await;

    for pair in requests.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_secs(2),
            "the retry policy's minimum backoff of 2 s separates attempts: gap {gap:?}"
        );
    }
    wait_for_metric(&server, "sluice_acks_total", "backoff", 1).await;
    assert_eq!(
        metric(&server, "sluice_push_failed_total", "backoff").await,
        2
    );
    assert_eq!(
        metric(&server, "sluice_push_succeeded_total", "backoff").await,
        1
    );
}

/// Asserts that each gap between consecutive requests is at least the one before it in
/// `minimums`.
fn assert_gaps_at_least(requests: &[Received], minimums: &[Duration]) {
    for (pair, minimum) in requests.windows(2).zip(minimums) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= *minimum, "gap {gap:?} is below {minimum:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn zero_minimum_backoff_still_backs_off() {
    // A minimum of 0 never grows, so without the push backoff the server resent the message
    // as fast as the endpoint responded: about 600 requests a second.
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"eager\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/status/500/eager\"\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 600\n",
        mock.url
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    let requests = mock.wait_for("/status/500/eager", 5).await;

    // The push backoff: 100 ms after the first attempt, doubling, spread by up to a quarter.
    let floor = [100, 150, 300, 600].map(Duration::from_millis);
    assert_gaps_at_least(&requests, &floor);
}

#[tokio::test(flavor = "multi_thread")]
async fn fractional_backoff_from_the_api_is_kept() {
    use sluice_proto::google::protobuf::Duration as ProtoDuration;
    use sluice_proto::google::pubsub::v1::{PushConfig, RetryPolicy, Subscription};

    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config("")));
    let backoff = ProtoDuration {
        seconds: 0,
        nanos: 300_000_000,
    };
    let created = SubscriberClient::new(channel(&server).await)
        .create_subscription(Subscription {
            name: "projects/local/subscriptions/fraction".to_owned(),
            topic: "projects/local/topics/orders".to_owned(),
            push_config: Some(PushConfig {
                push_endpoint: format!("{}/status/500/fraction", mock.url),
                ..Default::default()
            }),
            retry_policy: Some(RetryPolicy {
                minimum_backoff: Some(backoff),
                maximum_backoff: Some(backoff),
            }),
            ..Default::default()
        })
        .await
        .expect("a backoff of 0.3 s is valid")
        .into_inner();
    assert_eq!(
        created.retry_policy,
        Some(RetryPolicy {
            minimum_backoff: Some(backoff),
            maximum_backoff: Some(backoff),
        }),
        "the fraction is kept, not cut to 0 s"
    );

    // The supervisor starts the push runner within a second of the subscription's creation.
    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    let requests = mock.wait_for("/status/500/fraction", 3).await;

    // 300 ms from the policy, above the push backoff's 100 and 200 ms.
    assert_gaps_at_least(&requests, &[Duration::from_millis(300); 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_bounded_per_endpoint() {
    let mock = Mock::start().await;
    // Both subscriptions push to one URL, so they share one bound.
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"first\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/gated/shared\"\n\
         [[subscriptions]]\nname = \"second\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/gated/shared\"\n",
        url = mock.url
    ))));

    let messages = (0..20)
        .map(|i| message(format!("order {i}").as_bytes(), &[], ""))
        .collect();
    publish(&server, "orders", messages).await;
    mock.wait_for("/gated/shared", 40).await;

    assert_eq!(
        mock.state.max_in_flight.load(Ordering::SeqCst),
        MAX_REQUESTS_PER_ENDPOINT,
        "the bound is reached and never exceeded"
    );
    wait_for_metric(&server, "sluice_acks_total", "first", 20).await;
    wait_for_metric(&server, "sluice_acks_total", "second", 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_retried() {
    // Take a free port and close it, so that the first pushes find nothing listening.
    let address = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("address")
    };
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"down\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"http://{address}/status/204/down\"\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 1\nmaximum_backoff_secs = 1\n"
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    let give_up = Instant::now() + GIVE_UP;
    while metric(&server, "sluice_push_failed_total", "down").await < 2 {
        assert!(Instant::now() < give_up, "no failed push was counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&server, "sluice_acks_total", "down").await, 0);

    let mock = Mock::start_on(
        TcpListener::bind(address)
            .await
            .expect("bind the port again"),
    )
    .await;
    let request = mock.wait_for("/status/204/down", 1).await.remove(0);

    assert_eq!(request.json()["message"]["data"], "b3JkZXIgMQ==");
    wait_for_metric(&server, "sluice_acks_total", "down", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_metrics_count_per_subscription() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"counted\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/fail-first/1/counted\"\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 0\n",
        mock.url
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    mock.wait_for("/fail-first/1/counted", 2).await;

    wait_for_metric(&server, "sluice_push_succeeded_total", "counted", 1).await;
    assert_eq!(
        metric(&server, "sluice_push_failed_total", "counted").await,
        1
    );
    wait_for_metric(&server, "sluice_acks_total", "counted", 1).await;
    assert_eq!(
        metric(&server, "sluice_nacks_total", "counted").await,
        1,
        "the failure is nacked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_push_runners() {
    let mock = Mock::start().await;
    let mut server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"pushed\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/status/204/pushed\"\n\
         [[subscriptions]]\nname = \"stuck\"\ntopic = \"orders\"\nack_deadline_secs = 600\n\
         [subscriptions.push]\nendpoint = \"{url}/slow/stuck\"\n",
        url = mock.url
    ))));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;
    mock.wait_for("/status/204/pushed", 1).await;
    mock.wait_for("/slow/stuck", 1).await;
    wait_for_metric(&server, "sluice_acks_total", "pushed", 1).await;
    let (status, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminate runs");

    assert!(status.success(), "sluice exits 0 after SIGTERM:\n{log}");
    assert!(
        log.contains("push runner still busy at shutdown"),
        "the request in flight outlives the grace period:\n{log}"
    );
    assert!(log.contains("sluice stopped"), "{log}");
}

/// Returns the headers of a request whose names start with `ce-`, as name and value.
fn cloudevent_headers(request: &Received) -> std::collections::BTreeMap<String, String> {
    request
        .headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("ce-"))
        .map(|(name, value)| {
            let value = value.to_str().expect("header value is text");
            (name.as_str().to_owned(), value.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn background_push_sends_legacy_event() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"fn-push\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/status/204/background\"\n\
         format = \"background\"\n",
        mock.url
    ))));

    let ids = publish(
        &server,
        "orders",
        vec![message(b"Hello \x00\xff", &[("origin", "web")], "")],
    )
    .await;
    let request = mock.wait_for("/status/204/background", 1).await.remove(0);

    let body = request.json();
    let timestamp = body["context"]["timestamp"]
        .as_str()
        .expect("timestamp is a string")
        .to_owned();
    assert_publish_time_format(&timestamp);
    assert_eq!(
        body,
        serde_json::json!({
            "context": {
                "eventId": ids[0],
                "timestamp": timestamp,
                "eventType": "google.pubsub.topic.publish",
                "resource": {
                    "service": "pubsub.googleapis.com",
                    "name": "projects/local/topics/orders",
                    "type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                },
            },
            "data": {
                "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                "data": "SGVsbG8gAP8=",
                "attributes": {"origin": "web"},
            },
        })
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        cloudevent_headers(&request).is_empty(),
        "a background event has no ce-* headers"
    );
    wait_for_metric(&server, "sluice_acks_total", "fn-push", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudevent_push_uses_binary_mode() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"fn-push\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{}/status/200/cloudevent\"\n\
         format = \"cloudevent\"\n",
        mock.url
    ))));

    let ids = publish(
        &server,
        "orders",
        vec![message(b"order 1", &[("origin", "web")], "customer-7")],
    )
    .await;
    let request = mock.wait_for("/status/200/cloudevent", 1).await.remove(0);

    let headers = cloudevent_headers(&request);
    let time = headers["ce-time"].clone();
    assert_publish_time_format(&time);
    assert_eq!(
        headers,
        std::collections::BTreeMap::from(
            [
                ("ce-id", ids[0].as_str()),
                (
                    "ce-source",
                    "//pubsub.googleapis.com/projects/local/topics/orders"
                ),
                ("ce-specversion", "1.0"),
                ("ce-time", time.as_str()),
                ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
        ),
        "no subject and no extensions for a Pub/Sub event"
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({
            "message": {
                "attributes": {"origin": "web"},
                "data": "b3JkZXIgMQ==",
                "messageId": ids[0],
                "message_id": ids[0],
                "orderingKey": "customer-7",
                "publishTime": time,
                "publish_time": time,
            },
            "subscription": "projects/local/subscriptions/fn-push",
        }),
        "the data is the wrapped push body"
    );
    wait_for_metric(&server, "sluice_acks_total", "fn-push", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_entries_push_as_audit_cloudevents() {
    let mock = Mock::start().await;
    let server = TestServer::start(Some(&format!(
        "[[topics]]\nname = \"bucket-changes\"\n\
         [[sinks]]\nname = \"bucket-changes\"\n\
         filter = 'protoPayload.methodName=\"storage.buckets.create\"'\n\
         destination = \"bucket-changes\"\n\
         [[subscriptions]]\nname = \"audit-fn\"\ntopic = \"bucket-changes\"\n\
         [subscriptions.push]\nendpoint = \"{}/status/204/audit\"\nformat = \"cloudevent\"\n",
        mock.url
    )));

    let entry = serde_json::json!({
        "logName": "projects/demo/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "photos", "project_id": "demo"}},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "serviceName": "storage.googleapis.com",
            "methodName": "storage.buckets.create",
            "resourceName": "projects/_/buckets/photos",
            "authenticationInfo": {"principalEmail": "dev@example.com"},
        },
        "timestamp": "2024-05-01T12:00:00.123456Z",
        "insertId": "audit-1",
        "severity": "NOTICE",
    });
    let response = reqwest::Client::new()
        .post(format!("{}/v2/entries:write", server.url))
        .json(&serde_json::json!({"entries": [entry]}))
        .send()
        .await
        .expect("the write completes");
    assert!(
        response.status().is_success(),
        "write: {}",
        response.status()
    );
    let request = mock.wait_for("/status/204/audit", 1).await.remove(0);

    let headers = cloudevent_headers(&request);
    let data = request.json();
    assert_eq!(headers["ce-type"], "google.cloud.audit.log.v1.written");
    assert_eq!(
        headers["ce-source"],
        "//cloudaudit.googleapis.com/projects/demo/logs/activity"
    );
    assert_eq!(
        headers["ce-subject"],
        "storage.googleapis.com/projects/_/buckets/photos"
    );
    assert_eq!(headers["ce-servicename"], "storage.googleapis.com");
    assert_eq!(headers["ce-methodname"], "storage.buckets.create");
    assert_eq!(headers["ce-resourcename"], "projects/_/buckets/photos");
    assert_eq!(
        headers["ce-dataschema"],
        "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/audit/v1/LogEntryData.json"
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // The id joins the log name, the insert id and the entry's time in microseconds.
    let timestamp = data["timestamp"]
        .as_str()
        .expect("the entry has a timestamp");
    let micros = chrono::DateTime::parse_from_rfc3339(timestamp)
        .expect("RFC 3339 timestamp")
        .timestamp_micros();
    assert_eq!(micros, 1_714_564_800_123_456, "the entry keeps its time");
    assert_eq!(
        headers["ce-id"],
        format!("projects/demo/logs/cloudaudit.googleapis.com%2Factivityaudit-1{micros}")
    );
    assert_eq!(headers["ce-recordedtime"], timestamp);
    assert_eq!(
        Some(headers["ce-time"].as_str()),
        data["receiveTimestamp"].as_str(),
        "the time is when Logging received the entry"
    );
    assert_eq!(data["protoPayload"]["methodName"], "storage.buckets.create");
    assert_eq!(
        data["protoPayload"]["authenticationInfo"]["principalEmail"],
        "dev@example.com"
    );
    wait_for_metric(&server, "sluice_acks_total", "audit-fn", 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_event_pushes_are_dead_lettered() {
    let mock = Mock::start().await;
    let subscriptions: String = ["background", "cloudevent"]
        .iter()
        .map(|format| {
            format!(
                "[[subscriptions]]\nname = \"fails-{format}\"\ntopic = \"orders\"\n\
                 [subscriptions.push]\nendpoint = \"{}/status/503/{format}\"\n\
                 format = \"{format}\"\n\
                 [subscriptions.dead_letter]\ntopic = \"orders-dead\"\nmax_delivery_attempts = 5\n\
                 [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 0\n",
                mock.url
            )
        })
        .collect();
    let server = TestServer::start(Some(&config(&subscriptions)));

    publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;

    mock.wait_for("/status/503/background", 5).await;
    mock.wait_for("/status/503/cloudevent", 5).await;
    let dead = pull_dead_letters(&server, 2).await;
    assert_dead_letters(&dead, &["/status/503/background", "/status/503/cloudevent"]);
    for format in ["background", "cloudevent"] {
        let subscription = format!("fails-{format}");
        let path = format!("/status/503/{format}");
        assert_eq!(mock.received(&path).len(), 5, "{path}: no sixth attempt");
        wait_for_metric(&server, "sluice_dead_letters_total", &subscription, 1).await;
        assert_eq!(
            metric(&server, "sluice_push_failed_total", &subscription).await,
            5
        );
        assert_eq!(
            metric(&server, "sluice_acks_total", &subscription).await,
            0,
            "a failure is never acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_events_acked_without_push() {
    let mock = Mock::start().await;
    // The first attempt fails while the message is fresh. The retry comes 2 s later, when the
    // message is older than the maximum age of the subscription "stale".
    let mut server = TestServer::start(Some(&config(&format!(
        "[[subscriptions]]\nname = \"stale\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/fail-first/1/stale\"\n\
         format = \"cloudevent\"\nmax_event_age_secs = 1\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 2\nmaximum_backoff_secs = 2\n\
         [[subscriptions]]\nname = \"fresh\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{url}/fail-first/1/fresh\"\n\
         format = \"cloudevent\"\nmax_event_age_secs = 60\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 2\nmaximum_backoff_secs = 2\n",
        url = mock.url
    ))));

    let ids = publish(&server, "orders", vec![message(b"order 1", &[], "")]).await;

    wait_for_metric(&server, "sluice_push_dropped_stale_total", "stale", 1).await;
    wait_for_metric(&server, "sluice_acks_total", "stale", 1).await;
    assert_eq!(
        mock.received("/fail-first/1/stale").len(),
        1,
        "the stale retry sends no request"
    );
    assert_eq!(
        metric(&server, "sluice_push_failed_total", "stale").await,
        1
    );
    assert_eq!(
        metric(&server, "sluice_push_succeeded_total", "stale").await,
        0
    );

    mock.wait_for("/fail-first/1/fresh", 2).await;
    wait_for_metric(&server, "sluice_push_succeeded_total", "fresh", 1).await;
    assert_eq!(
        metric(&server, "sluice_push_dropped_stale_total", "fresh").await,
        0,
        "a message younger than the maximum age is pushed"
    );

    let (status, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminate runs");
    assert!(status.success(), "sluice exits 0 after SIGTERM:\n{log}");
    let dropped = log
        .lines()
        .find(|line| line.contains("stale event dropped"))
        .unwrap_or_else(|| panic!("no log line for the dropped event:\n{log}"));
    assert!(
        dropped.contains(&format!("message_id={}", ids[0])),
        "the log names the message: {dropped}"
    );
    let age: u64 = dropped
        .split_once(" age_secs=")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("the log gives the age: {dropped}"));
    assert!(age >= 2, "the retry came after the 2 s backoff: {dropped}");
}
