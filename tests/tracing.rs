//! Trace export end to end. Each test starts an OTLP trace collector on 127.0.0.1:0, a tonic
//! server implementing the collector's TraceService from opentelemetry-proto. It points the
//! server at it with `OTEL_EXPORTER_OTLP_ENDPOINT` and checks the spans that arrive and the
//! parent links between them.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{json, Value};
use support::certs::TestCa;
use support::TestServer;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a test waits for spans or thumbnails before it fails.
const GIVE_UP: Duration = Duration::from_secs(60);

/// The trace and parent span ids of the `traceparent` header the tests send.
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// An in-process OTLP collector that keeps every span it receives, and the headers of each
/// request. It accepts gzip-compressed requests.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    headers: Arc<Mutex<Vec<tonic::metadata::MetadataMap>>>,
    /// Number of requests still to reject with UNAVAILABLE before any is accepted.
    unavailable: Arc<AtomicU32>,
    /// Whether each response is a partial success that rejects 3 spans.
    partial: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.headers
            .lock()
            .expect("not poisoned")
            .push(request.metadata().clone());
        let reject = self
            .unavailable
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if reject {
            return Err(tonic::Status::unavailable("the collector is starting"));
        }
        let mut spans = self.spans.lock().expect("not poisoned");
        for resource_spans in request.into_inner().resource_spans {
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans);
            }
        }
        let partial_success =
            self.partial
                .load(Ordering::SeqCst)
                .then(|| ExportTracePartialSuccess {
                    rejected_spans: 3,
                    error_message: "spans older than the retention".to_owned(),
                });
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

impl Collector {
    /// Starts the collector and returns it with its endpoint URL.
    async fn start() -> (Collector, String) {
        Collector::start_with(None).await
    }

    /// Starts the collector over TLS with `tls`, and returns it with its https:// URL.
    async fn start_with(tls: Option<ServerTlsConfig>) -> (Collector, String) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{}", listener.local_addr().expect("address"));
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls)
                .expect("the collector's TLS settings");
        }
        tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .expect("the collector serves");
        });
        (collector, endpoint)
    }

    /// Returns the spans received so far in the trace `trace_id` (lowercase hex).
    fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|span| hex(&span.trace_id) == trace_id)
            .cloned()
            .collect()
    }

    /// Waits until the trace `trace_id` has spans for which `done` holds, and returns them.
    async fn wait_for(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let give_up = Instant::now() + GIVE_UP;
        loop {
            let spans = self.trace(trace_id);
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < give_up,
                "the trace did not complete within {GIVE_UP:?}; spans so far:\n{}",
                describe(&spans)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Returns the string value of a span attribute.
fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|pair| pair.key == key)
        .and_then(|pair| pair.value.as_ref()?.value.as_ref())
        .map(|value| match value {
            AnyValue::StringValue(text) => text.clone(),
            AnyValue::IntValue(number) => number.to_string(),
            other => format!("{other:?}"),
        })
}

/// Returns the value of an integer attribute of `span`, `None` when it is missing or of
/// another type.
fn int_attribute(span: &Span, key: &str) -> Option<i64> {
    let pair = span.attributes.iter().find(|pair| pair.key == key)?;
    match pair.value.as_ref()?.value.as_ref()? {
        AnyValue::IntValue(number) => Some(*number),
        _ => None,
    }
}

/// Lists spans one per line, for failure messages.
fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|span| {
            format!(
                "  {} span={} parent={} kind={}",
                span.name,
                hex(&span.span_id),
                hex(&span.parent_span_id),
                span.kind
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn find<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn only<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found = find(spans, name);
    assert_eq!(
        found.len(),
        1,
        "expected one span named {name:?}:\n{}",
        describe(spans)
    );
    found[0]
}

/// Returns the environment that points the server at the collector, with an export every
/// 100 ms.
fn otel_env(endpoint: &str) -> Vec<(&str, &str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

fn client_traceparent() -> String {
    format!("00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01")
}

async fn object_names(http: &reqwest::Client, server: &TestServer, bucket: &str) -> Vec<String> {
    let listing: Value = http
        .get(format!("{}/storage/v1/b/{bucket}/o", server.url()))
        .send()
        .await
        .expect("list request")
        .json()
        .await
        .expect("list body");
    listing["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_trace_spans_every_hop() {
    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(None, &otel_env(&endpoint));
    let http = reqwest::Client::new();
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/demo/photos/landscape.jpg"
    ))
    .expect("demo photo");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(photo).file_name("traced.jpg"),
    );

    let response = http
        .post(format!("{}/upload/uploads", server.url()))
        .header("traceparent", client_traceparent())
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    assert_eq!(response.status(), 200, "upload status");

    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            spans.iter().any(|span| span.name == "process thumbnail")
                && spans.iter().any(|span| span.name == "receive thumbnailer")
        })
        .await;
    let request = only(&spans, "POST /upload/{bucket}");
    let publish = only(&spans, "publish uploads-events");
    let receive = only(&spans, "receive thumbnailer");
    let handler = only(&spans, "process thumbnail");

    assert_eq!(
        hex(&request.parent_span_id),
        CLIENT_SPAN_ID,
        "request parent"
    );
    assert_eq!(request.kind, SpanKind::Server as i32, "request kind");
    assert_eq!(publish.parent_span_id, request.span_id, "publish parent");
    assert_eq!(publish.kind, SpanKind::Producer as i32, "publish kind");
    assert_eq!(receive.parent_span_id, publish.span_id, "delivery parent");
    assert_eq!(receive.kind, SpanKind::Consumer as i32, "delivery kind");
    assert_eq!(handler.parent_span_id, receive.span_id, "handler parent");
    assert_eq!(
        attribute(publish, "messaging.system").as_deref(),
        Some("gcp_pubsub"),
        "publish messaging.system"
    );
    assert_eq!(
        attribute(receive, "messaging.destination.subscription.name").as_deref(),
        Some("thumbnailer"),
        "delivery subscription"
    );
    let give_up = Instant::now() + GIVE_UP;
    while !object_names(&http, &server, "thumbnails")
        .await
        .iter()
        .any(|name| name.contains("traced"))
    {
        assert!(Instant::now() < give_up, "no thumbnail of traced.jpg");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The push endpoint of the redelivery test: it responds with 500 to the first request and 204
/// to the others, and keeps the `traceparent` header of each.
#[derive(Debug, Clone, Default)]
struct Endpoint {
    traceparents: Arc<Mutex<Vec<Option<String>>>>,
}

async fn push_endpoint(
    axum::extract::State(endpoint): axum::extract::State<Endpoint>,
    headers: HeaderMap,
) -> StatusCode {
    let traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut received = endpoint.traceparents.lock().expect("not poisoned");
    received.push(traceparent);
    if received.len() == 1 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts the push endpoint on 127.0.0.1:0 and returns it with a config whose subscription
/// `orders-push` pushes to it, without backoff between attempts.
async fn start_push_endpoint() -> (Endpoint, String) {
    let endpoint = Endpoint::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let push_url = format!("http://{}/push", listener.local_addr().expect("address"));
    let app = axum::Router::new()
        .route("/push", axum::routing::post(push_endpoint))
        .with_state(endpoint.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("endpoint serves") });
    let config = format!(
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"orders-push\"\ntopic = \"orders\"\n\
         [subscriptions.push]\nendpoint = \"{push_url}\"\n\
         [subscriptions.retry_policy]\nminimum_backoff_secs = 0\nmaximum_backoff_secs = 0\n"
    );
    (endpoint, config)
}

/// Publishes one message to `orders` over REST with the client's `traceparent` header.
async fn publish_traced_order(server: &TestServer) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .header("traceparent", client_traceparent())
        .json(&json!({"messages": [{"data": "b3JkZXIgMQ=="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_continues_the_trace() {
    let (collector, otlp_endpoint) = Collector::start().await;
    let (endpoint, config) = start_push_endpoint().await;
    // Spans are exported whatever level RUST_LOG sets for the logs.
    let mut env = otel_env(&otlp_endpoint);
    env.push(("RUST_LOG", "warn"));
    let server = TestServer::start_with_env(Some(&config), &env);

    publish_traced_order(&server).await;

    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            find(spans, "process push").len() >= 2 && find(spans, "receive orders-push").len() >= 2
        })
        .await;
    let publish = only(&spans, "publish orders");
    let receives = find(&spans, "receive orders-push");
    let pushes = find(&spans, "process push");
    assert_eq!(
        receives.len(),
        2,
        "delivery attempts:\n{}",
        describe(&spans)
    );
    for receive in &receives {
        assert_eq!(
            receive.parent_span_id, publish.span_id,
            "every attempt's parent"
        );
    }
    let attempts: BTreeMap<String, String> = receives
        .iter()
        .map(|span| {
            (
                attribute(span, "attempt").unwrap_or_default(),
                hex(&span.span_id),
            )
        })
        .collect();
    assert_eq!(
        attempts.keys().cloned().collect::<Vec<_>>(),
        ["1", "2"],
        "attempt numbers"
    );

    // Each push request carried the trace, with its push span as the parent.
    let headers = endpoint.traceparents.lock().expect("not poisoned").clone();
    assert_eq!(headers.len(), 2, "push requests");
    let push_ids: Vec<String> = pushes.iter().map(|span| hex(&span.span_id)).collect();
    for header in headers {
        let header = header.expect("the push request has a traceparent header");
        let fields: Vec<&str> = header.split('-').collect();
        assert_eq!(fields.len(), 4, "traceparent {header:?}");
        assert_eq!(fields[1], CLIENT_TRACE_ID, "traceparent trace id");
        assert!(
            push_ids.iter().any(|id| id == fields[2]),
            "traceparent {header:?} names a push span: {push_ids:?}"
        );
    }
}

/// Accepts TCP connections on 127.0.0.1:0 and never responds on them, like a collector that
/// hangs. Returns its endpoint URL.
async fn unresponsive_collector() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    endpoint
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_collector_does_not_stop_routing() {
    const MESSAGES: usize = 200;
    let endpoint = unresponsive_collector().await;
    let config = "[[topics]]\nname = \"orders\"\n\
                  [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n";
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
    ];
    let server = TestServer::start_with_env(Some(config), &env);
    let http = reqwest::Client::new();

    // One request per message, so that each adds spans to the exporter's full queue.
    for index in 0..MESSAGES {
        let response = http
            .post(format!(
                "{}/v1/projects/local/topics/orders:publish",
                server.url()
            ))
            .json(&json!({"messages": [{"attributes": {"index": index.to_string()}}]}))
            .send()
            .await
            .expect("publish request");
        assert_eq!(response.status(), 200, "publish {index} status");
    }

    let mut received = 0;
    let give_up = Instant::now() + GIVE_UP;
    while received < MESSAGES {
        assert!(
            Instant::now() < give_up,
            "pulled {received} of {MESSAGES} messages"
        );
        let pulled: Value = http
            .post(format!(
                "{}/v1/projects/local/subscriptions/orders-pull:pull",
                server.url()
            ))
            .json(&json!({"maxMessages": 100}))
            .send()
            .await
            .expect("pull request")
            .json()
            .await
            .expect("pull body");
        let ack_ids: Vec<Value> = pulled["receivedMessages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|message| message["ackId"].clone())
            .collect();
        received += ack_ids.len();
        if !ack_ids.is_empty() {
            let response = http
                .post(format!(
                    "{}/v1/projects/local/subscriptions/orders-pull:acknowledge",
                    server.url()
                ))
                .json(&json!({"ackIds": ack_ids}))
                .send()
                .await
                .expect("acknowledge request");
            assert_eq!(response.status(), 200, "acknowledge status");
        }
    }
    assert_eq!(received, MESSAGES, "messages pulled");
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[test]
fn google_client_context_continues() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (collector, endpoint) = runtime.block_on(Collector::start());
    let config = "[[topics]]\nname = \"orders\"\n\
                  [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n";
    let server = TestServer::start_with_env(Some(config), &otel_env(&endpoint));
    let host = server.url().trim_start_matches("http://").to_owned();

    let output = support::python::run(
        "pubsub_tracing.py",
        &["projects/local/topics/orders"],
        &[("PUBSUB_EMULATOR_HOST", &host)],
    );
    support::python::assert_success("pubsub_tracing.py", &output);
    let printed = String::from_utf8_lossy(&output.stdout);
    let mut ids = printed.split_whitespace();
    let trace_id = ids.next().expect("the script prints a trace id").to_owned();
    let create_span_id = ids.next().expect("the script prints a span id").to_owned();

    let spans = runtime.block_on(collector.wait_for(&trace_id, |spans| {
        spans.iter().any(|span| span.name == "publish orders")
    }));
    let publish = only(&spans, "publish orders");
    assert_eq!(
        hex(&publish.parent_span_id),
        create_span_id,
        "the publish span continues the client's create span"
    );
}

/// Pulls from `subscription` over REST until one message arrives, and returns its ack id.
async fn pull_one(http: &reqwest::Client, server: &TestServer, subscription: &str) -> Value {
    let url = format!(
        "{}/v1/projects/local/subscriptions/{subscription}:pull",
        server.url()
    );
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let pulled: Value = http
            .post(&url)
            .json(&json!({"maxMessages": 1}))
            .send()
            .await
            .expect("pull request")
            .json()
            .await
            .expect("pull body");
        if let Some(message) = pulled["receivedMessages"].get(0) {
            return message["ackId"].clone();
        }
        assert!(
            Instant::now() < give_up,
            "no message arrived on {subscription}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_redelivery_continues_the_trace() {
    let (collector, endpoint) = Collector::start().await;
    let config = "[[topics]]\nname = \"orders\"\n\
                  [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n";
    let server = TestServer::start_with_env(Some(config), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .header("traceparent", client_traceparent())
        .json(&json!({"messages": [{"data": "b3JkZXIgMQ=="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");

    // The first delivery is nacked, so the message is delivered again at once.
    let ack_id = pull_one(&http, &server, "orders-pull").await;
    let response = http
        .post(format!(
            "{}/v1/projects/local/subscriptions/orders-pull:modifyAckDeadline",
            server.url()
        ))
        .json(&json!({"ackIds": [ack_id], "ackDeadlineSeconds": 0}))
        .send()
        .await
        .expect("nack request");
    assert_eq!(response.status(), 200, "nack status");
    pull_one(&http, &server, "orders-pull").await;

    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            find(spans, "receive orders-pull").len() >= 2
        })
        .await;
    let publish = only(&spans, "publish orders");
    let receives = find(&spans, "receive orders-pull");
    assert_eq!(receives.len(), 2, "pull deliveries:\n{}", describe(&spans));
    for receive in &receives {
        assert_eq!(
            receive.parent_span_id, publish.span_id,
            "every pull's parent"
        );
        assert_eq!(receive.kind, SpanKind::Consumer as i32, "pull span kind");
    }
    let mut attempts: Vec<String> = receives
        .iter()
        .map(|span| attribute(span, "attempt").unwrap_or_default())
        .collect();
    attempts.sort();
    assert_eq!(attempts, ["1", "2"], "attempt numbers");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_traceparent_is_replaced() {
    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    let zero_trace = format!("00-{}-{CLIENT_SPAN_ID}-01", "0".repeat(32));
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [
            {"data": "YQ==", "attributes": {"order": "garbage", "traceparent": "not-a-traceparent"}},
            {"data": "Yg==", "attributes": {
                "order": "google",
                "traceparent": zero_trace,
                "googclient_traceparent": client_traceparent(),
            }},
        ]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");

    let messages = pull_messages(&http, &server, "orders-pull", 2).await;
    let by_order = |order: &str| {
        messages
            .iter()
            .find(|message| message["attributes"]["order"] == order)
            .unwrap_or_else(|| panic!("no message {order} in {messages:?}"))
    };
    // The garbage value gave way to the publish span's context.
    let garbage = &by_order("garbage")["attributes"];
    let replaced = garbage["traceparent"].as_str().expect("a traceparent");
    assert_ne!(replaced, "not-a-traceparent");
    let trace_id = carried_trace_id(garbage).expect("a trace id");
    let spans = collector
        .wait_for(&trace_id, |spans| {
            !find(spans, "publish orders").is_empty()
                && !find(spans, "receive orders-pull").is_empty()
        })
        .await;
    let publish = only(&spans, "publish orders");
    let receive = only(&spans, "receive orders-pull");
    assert_eq!(
        receive.parent_span_id,
        publish.span_id,
        "the delivery continues the publish span's trace:\n{}",
        describe(&spans)
    );
    // Counts are integer attributes, as the semantic conventions type them.
    assert_eq!(
        int_attribute(publish, "messaging.batch.message_count"),
        Some(2)
    );
    assert_eq!(int_attribute(receive, "attempt"), Some(1));

    // The Google client's valid context is read when the W3C one is all zeros.
    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            !find(spans, "receive orders-pull").is_empty()
        })
        .await;
    assert_eq!(
        hex(&only(&spans, "receive orders-pull").parent_span_id),
        CLIENT_SPAN_ID,
        "the delivery's parent is the client's span:\n{}",
        describe(&spans)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn traceparent_attribute_parents_publish_and_delivery() {
    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    // The context travels in the message only; the request has no traceparent header.
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [
            {"data": "YQ==", "attributes": {"traceparent": client_traceparent()}},
        ]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
    let messages = pull_messages(&http, &server, "orders-pull", 1).await;

    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            !find(spans, "receive orders-pull").is_empty()
        })
        .await;
    let publish = only(&spans, "publish orders");
    assert_eq!(
        hex(&publish.parent_span_id),
        CLIENT_SPAN_ID,
        "the publisher's span"
    );
    let receive = only(&spans, "receive orders-pull");
    assert_eq!(
        receive.parent_span_id,
        publish.span_id,
        "the delivery is a child of the publish span, not its sibling:\n{}",
        describe(&spans)
    );
    let carried = messages[0]["attributes"]["traceparent"]
        .as_str()
        .expect("a traceparent");
    assert!(
        carried.contains(&hex(&publish.span_id)),
        "the message carries the publish span: {carried}"
    );

    // The request's span is in a trace of its own, linked from the publish span.
    let all = collector
        .wait_all(|spans| {
            spans
                .iter()
                .any(|span| span.name.starts_with("POST") && span.name.ends_with(":publish"))
        })
        .await;
    let request = all
        .iter()
        .find(|span| span.name.starts_with("POST") && span.name.ends_with(":publish"))
        .expect("the request span");
    assert!(
        publish
            .links
            .iter()
            .any(|link| link.span_id == request.span_id && link.trace_id == request.trace_id),
        "the publish span links to the request:\n{}",
        describe(&all)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letter_move_joins_the_trace() {
    let (collector, endpoint) = Collector::start().await;
    let config = "[[topics]]\nname = \"orders\"\n[[topics]]\nname = \"orders-dead\"\n\
                  [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n\
                  [subscriptions.dead_letter]\ntopic = \"orders-dead\"\n\
                  max_delivery_attempts = 5\n";
    let server = TestServer::start_with_env(Some(config), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    publish_traced_order(&server).await;

    // Five nacked deliveries use up the attempts; the fifth nack moves the message.
    let nack_url = format!(
        "{}/v1/projects/local/subscriptions/orders-pull:modifyAckDeadline",
        server.url()
    );
    for _ in 0..5 {
        let ack_id = pull_one(&http, &server, "orders-pull").await;
        let response = http
            .post(&nack_url)
            .json(&json!({"ackIds": [ack_id], "ackDeadlineSeconds": 0}))
            .send()
            .await
            .expect("nack request");
        assert_eq!(response.status(), 200, "nack status");
    }

    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            !find(spans, "dead letter orders-pull").is_empty()
        })
        .await;
    let publish = only(&spans, "publish orders");
    let moved = only(&spans, "dead letter orders-pull");
    assert_eq!(
        moved.parent_span_id,
        publish.span_id,
        "the move continues the message's trace:\n{}",
        describe(&spans)
    );
    assert_eq!(
        attribute(moved, "messaging.destination.name").as_deref(),
        Some("orders-dead")
    );
    assert_eq!(int_attribute(moved, "attempt"), Some(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_trace_ids() {
    let (collector, otlp_endpoint) = Collector::start().await;
    let (endpoint, config) = start_push_endpoint().await;
    let mut env = otel_env(&otlp_endpoint);
    env.push(("SLUICE_LOG_FORMAT", "json"));
    let mut server = TestServer::start_with_env(Some(&config), &env);

    publish_traced_order(&server).await;
    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            find(spans, "process push").len() >= 2
        })
        .await;
    let push_ids: Vec<String> = find(&spans, "process push")
        .iter()
        .map(|span| hex(&span.span_id))
        .collect();
    assert_eq!(
        endpoint.traceparents.lock().expect("not poisoned").len(),
        2,
        "push requests"
    );
    let (status, stderr) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");

    // The first push got 500, which the push handler logs inside the push span.
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("{line:?} is not JSON: {err}"))
        })
        .collect();
    let failed = lines
        .iter()
        .find(|line| line["fields"]["message"] == "push failed")
        .unwrap_or_else(|| panic!("no push failure logged:\n{stderr}"));
    assert_eq!(failed["level"], "WARN", "level");
    assert_eq!(failed["trace_id"], CLIENT_TRACE_ID, "trace id");
    let span_id = failed["span_id"].as_str().expect("span_id is a string");
    assert!(
        push_ids.iter().any(|id| id == span_id),
        "span id {span_id} is a push span: {push_ids:?}"
    );
    assert_eq!(failed["span"]["name"], "handler", "innermost span");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_continues_the_trace() {
    let (collector, endpoint) = Collector::start().await;
    let temp = tempfile::tempdir().expect("temp dir");
    let data_dir = temp.path().join("data");
    let config = temp.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[[topics]]\nname = \"orders\"\n\
         [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n",
    )
    .expect("write config");
    let env = otel_env(&endpoint);

    // The first process stores the message with its trace context and stops.
    let first = TestServer::start_in_with_env(&data_dir, Some(&config), &env);
    publish_traced_order(&first).await;
    let status = first.stop();
    assert!(
        status.success(),
        "the first server exits cleanly: {status:?}"
    );

    // The second process, on the same store, delivers it in the same trace.
    let second = TestServer::start_in_with_env(&data_dir, Some(&config), &env);
    pull_one(&reqwest::Client::new(), &second, "orders-pull").await;
    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            !find(spans, "receive orders-pull").is_empty()
        })
        .await;
    let publish = only(&spans, "publish orders");
    let receive = only(&spans, "receive orders-pull");
    assert_eq!(
        receive.parent_span_id, publish.span_id,
        "the delivery after the restart continues from the publish"
    );
}

/// Returns the trace id of a `traceparent` value, or of the Google client's
/// `googclient_traceparent` when the message carries only that one.
fn carried_trace_id(attributes: &Value) -> Option<String> {
    let traceparent = attributes["traceparent"]
        .as_str()
        .or_else(|| attributes["googclient_traceparent"].as_str())?;
    traceparent.split('-').nth(1).map(str::to_owned)
}

/// Pulls `count` messages from `subscription` over REST and returns them.
async fn pull_messages(
    http: &reqwest::Client,
    server: &TestServer,
    subscription: &str,
    count: usize,
) -> Vec<Value> {
    let url = format!(
        "{}/v1/projects/local/subscriptions/{subscription}:pull",
        server.url()
    );
    let give_up = Instant::now() + GIVE_UP;
    let mut messages = Vec::new();
    while messages.len() < count {
        assert!(Instant::now() < give_up, "pulled {messages:?}");
        let pulled: Value = http
            .post(&url)
            .json(&json!({"maxMessages": 100}))
            .send()
            .await
            .expect("pull request")
            .json()
            .await
            .expect("pull body");
        for received in pulled["receivedMessages"].as_array().into_iter().flatten() {
            messages.push(received["message"].clone());
        }
    }
    messages
}

impl Collector {
    /// Returns every span received so far.
    fn all(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }

    /// Waits until the spans received so far satisfy `done`, and returns them.
    async fn wait_all(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let give_up = Instant::now() + GIVE_UP;
        loop {
            let spans = self.all();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < give_up,
                "the spans did not arrive within {GIVE_UP:?}:\n{}",
                describe(&spans)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const ORDERS_CONFIG: &str = "[[topics]]\nname = \"orders\"\n\
                             [[subscriptions]]\nname = \"orders-pull\"\ntopic = \"orders\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn streamed_entries_get_own_traces() {
    use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
    use sluice_proto::sluice::v1::IngestBatch;

    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(None, &otel_env(&endpoint));
    let http = reqwest::Client::new();
    // The first entry goes to audit-storage, and the second to audit-storage and audit-errors.
    let entries = vec![
        json!({"logName": "projects/local/logs/a", "resource": {"type": "gcs_bucket"},
               "severity": "INFO", "textPayload": "one"})
        .to_string(),
        json!({"logName": "projects/local/logs/a", "resource": {"type": "gcs_bucket"},
               "severity": "ERROR", "textPayload": "two"})
        .to_string(),
    ];
    let mut ingest = LogIngestClient::new(support::channel(&server).await);
    let batch = IngestBatch {
        sequence: 0,
        entries,
    };
    let mut acks = ingest
        .stream_entries(futures::stream::iter(vec![batch]))
        .await
        .expect("stream opens")
        .into_inner();
    while acks.message().await.expect("ack arrives").is_some() {}

    let messages = pull_messages(&http, &server, "audit-storage", 2).await;
    let trace_ids: Vec<String> = messages
        .iter()
        .map(|message| carried_trace_id(&message["attributes"]).expect("trace context"))
        .collect();
    assert_ne!(trace_ids[0], trace_ids[1], "each entry has its own trace");

    let spans = collector
        .wait_all(|spans| {
            find(spans, "ingest entry").len() == 2 && !find(spans, "publish").is_empty()
        })
        .await;
    for entry in find(&spans, "ingest entry") {
        assert!(entry.parent_span_id.is_empty(), "an entry span is a root");
        assert_eq!(entry.links.len(), 1, "an entry span links to its batch");
        assert!(
            trace_ids.contains(&hex(&entry.trace_id)),
            "a message carries the trace of entry span {}",
            hex(&entry.span_id)
        );
    }
    let publish = only(&spans, "publish");
    assert_eq!(
        publish.links.len(),
        2,
        "the publish span links to both entries"
    );
    assert_eq!(
        attribute(publish, "messaging.destination.name"),
        None,
        "a publish to two topics names none"
    );
    let ingest_span = only(&spans, "ingest");
    assert!(
        !trace_ids.contains(&hex(&ingest_span.trace_id)),
        "the batch is not in an entry's trace"
    );
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_of_one_entry_continues_its_trace() {
    use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
    use sluice_proto::sluice::v1::IngestBatch;

    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(None, &otel_env(&endpoint));
    let http = reqwest::Client::new();
    // One entry that goes to audit-storage alone.
    let entries = vec![json!({"logName": "projects/local/logs/a",
           "resource": {"type": "gcs_bucket"}, "severity": "INFO", "textPayload": "one"})
    .to_string()];
    let mut ingest = LogIngestClient::new(support::channel(&server).await);
    let mut acks = ingest
        .stream_entries(futures::stream::iter(vec![IngestBatch {
            sequence: 0,
            entries,
        }]))
        .await
        .expect("stream opens")
        .into_inner();
    while acks.message().await.expect("ack arrives").is_some() {}
    let messages = pull_messages(&http, &server, "audit-storage", 1).await;
    let trace_id = carried_trace_id(&messages[0]["attributes"]).expect("trace context");

    let spans = collector
        .wait_all(|spans| {
            !find(spans, "ingest entry").is_empty()
                && spans.iter().any(|span| span.name.starts_with("publish"))
        })
        .await;
    let entry = only(&spans, "ingest entry");
    let publish = spans
        .iter()
        .find(|span| span.name.starts_with("publish"))
        .expect("a publish span");
    assert_eq!(
        hex(&publish.trace_id),
        trace_id,
        "the publish joins the entry's trace"
    );
    assert_eq!(
        publish.parent_span_id, entry.span_id,
        "the entry's span is the parent"
    );
    let ingest_span = only(&spans, "ingest");
    assert!(
        publish
            .links
            .iter()
            .any(|link| link.span_id == ingest_span.span_id),
        "the publish span links to the batch's ingest span: {}",
        describe(&spans)
    );
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sampled_out_entries_carry_flag_zero() {
    use sluice_proto::sluice::v1::log_ingest_client::LogIngestClient;
    use sluice_proto::sluice::v1::IngestBatch;

    let (collector, endpoint) = Collector::start().await;
    let mut env = otel_env(&endpoint);
    env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0"));
    let server = TestServer::start_with_env(None, &env);
    let http = reqwest::Client::new();
    let entries = (0..2)
        .map(|index| {
            json!({"logName": "projects/local/logs/a", "resource": {"type": "gcs_bucket"},
                   "severity": "INFO", "textPayload": format!("entry {index}")})
            .to_string()
        })
        .collect();
    let mut ingest = LogIngestClient::new(support::channel(&server).await);
    let batch = IngestBatch {
        sequence: 0,
        entries,
    };
    let mut acks = ingest
        .stream_entries(futures::stream::iter(vec![batch]))
        .await
        .expect("stream opens")
        .into_inner();
    while acks.message().await.expect("ack arrives").is_some() {}

    let messages = pull_messages(&http, &server, "audit-storage", 2).await;
    let mut trace_ids = Vec::new();
    for message in &messages {
        let traceparent = message["attributes"]["traceparent"]
            .as_str()
            .expect("a sampled-out entry still carries a traceparent");
        assert!(
            traceparent.ends_with("-00"),
            "the traceparent {traceparent} has the sampled flag 0"
        );
        trace_ids.push(carried_trace_id(&message["attributes"]).expect("trace id"));
    }
    assert_ne!(trace_ids[0], trace_ids[1], "each entry has its own trace");

    // A request whose caller sampled its trace is exported, which shows that export works.
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/audit-errors:publish",
            server.url()
        ))
        .header("traceparent", client_traceparent())
        .json(&json!({"messages": [{"data": "b3JkZXIgMQ=="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
    collector
        .wait_for(CLIENT_TRACE_ID, |spans| !spans.is_empty())
        .await;
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");

    // The server exports every queued span before it exits.
    let spans = collector.all();
    assert!(
        find(&spans, "ingest entry").is_empty(),
        "no entry span is exported:\n{}",
        describe(&spans)
    );
    for trace_id in &trace_ids {
        assert!(
            collector.trace(trace_id).is_empty(),
            "no span of the sampled-out trace {trace_id} is exported"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_of_two_traces_keeps_both() {
    let (collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    let first = "11111111111111111111111111111111";
    let second = "22222222222222222222222222222222";
    let message = |trace_id: &str| {
        json!({"data": "b3JkZXI=", "attributes": {
            "googclient_traceparent": format!("00-{trace_id}-00f067aa0ba902b7-01")}})
    };
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [message(first), message(second)]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");

    let messages = pull_messages(&http, &server, "orders-pull", 2).await;
    let mut carried: Vec<String> = messages
        .iter()
        .map(|message| carried_trace_id(&message["attributes"]).expect("trace context"))
        .collect();
    carried.sort();
    assert_eq!(carried, [first, second], "each message keeps its own trace");

    let spans = collector
        .wait_all(|spans| !find(spans, "publish orders").is_empty())
        .await;
    let publish = only(&spans, "publish orders");
    let mut linked: Vec<String> = publish
        .links
        .iter()
        .map(|link| hex(&link.trace_id))
        .collect();
    linked.sort();
    assert_eq!(
        linked,
        [first, second],
        "the publish span links to both traces"
    );
    let request_names: Vec<&str> = spans
        .iter()
        .filter(|span| span.kind == SpanKind::Server as i32)
        .map(|span| span.name.as_str())
        .collect();
    assert!(
        request_names.contains(&"POST /v1/projects/{project}/topics/{topic}:publish"),
        "the request span names the custom verb: {request_names:?}"
    );
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn traceparent_stays_within_attribute_limit() {
    let (_collector, endpoint) = Collector::start().await;
    let server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    let http = reqwest::Client::new();
    let attributes = |count: usize| -> serde_json::Map<String, Value> {
        (0..count)
            .map(|index| (format!("key{index}"), json!(count.to_string())))
            .collect()
    };
    let response = http
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [
            {"attributes": attributes(100)},
            {"attributes": attributes(99)},
        ]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");

    let messages = pull_messages(&http, &server, "orders-pull", 2).await;
    for message in &messages {
        let delivered = message["attributes"].as_object().expect("attributes");
        let published: usize = delivered["key0"]
            .as_str()
            .expect("key0")
            .parse()
            .expect("count");
        assert_eq!(
            delivered.len(),
            100,
            "a message published with {published} attributes is delivered with 100"
        );
        assert_eq!(
            delivered.contains_key("traceparent"),
            published == 99,
            "traceparent only where it fits, published with {published}"
        );
    }
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

/// Publishes one message to `orders` in the trace of [`client_traceparent`].
async fn publish_one_order(server: &TestServer) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .header("traceparent", client_traceparent())
        .json(&json!({"messages": [{"data": "b3JkZXI="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
}

#[tokio::test(flavor = "multi_thread")]
async fn export_sends_headers_compressed() {
    let (collector, endpoint) = Collector::start().await;
    let mut env = otel_env(&endpoint);
    env.extend([
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "X-Tenant=acme%20corp, authorization = Bearer abc,,bad header=1",
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
    ]);
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    publish_one_order(&server).await;
    collector
        .wait_for(CLIENT_TRACE_ID, |spans| !spans.is_empty())
        .await;

    let headers = collector.headers.lock().expect("not poisoned")[0].clone();
    let value = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    assert_eq!(
        value("x-tenant"),
        Some("acme corp"),
        "percent-decoded: {headers:?}"
    );
    assert_eq!(
        value("authorization"),
        Some("Bearer abc"),
        "trimmed: {headers:?}"
    );
    assert_eq!(
        value("grpc-encoding"),
        Some("gzip"),
        "compressed: {headers:?}"
    );
    assert!(
        value("user-agent")
            .is_some_and(|agent| agent.starts_with("OTel-OTLP-Exporter-Rust sluice/")),
        "the exporter names itself: {headers:?}"
    );

    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        log.contains("OTEL_EXPORTER_OTLP_HEADERS sets the header \"bad header\""),
        "the pair that is no header is reported with its variable:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_collector_gets_the_spans_on_retry() {
    let (collector, endpoint) = Collector::start().await;
    collector.unavailable.store(2, Ordering::SeqCst);
    let server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    publish_one_order(&server).await;
    // Without a retry, the refused batch and its publish span would be lost.
    collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            spans.iter().any(|span| span.name.starts_with("publish"))
        })
        .await;
    assert!(
        collector.headers.lock().expect("not poisoned").len() >= 3,
        "two refused requests and an accepted one"
    );
    let status = server.stop();
    assert!(status.success(), "the server exits cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_success_is_logged() {
    let (collector, endpoint) = Collector::start().await;
    collector.partial.store(true, Ordering::SeqCst);
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &otel_env(&endpoint));
    publish_one_order(&server).await;
    collector
        .wait_for(CLIENT_TRACE_ID, |spans| !spans.is_empty())
        .await;
    // The response is logged after it arrives, so the log is read once the spans are in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        log.contains(&format!(
            "the OTLP collector at {endpoint} rejected 3 of the spans"
        )),
        "the partial success is logged with the collector and the count:\n{log}"
    );
    assert!(
        log.contains("spans older than the retention"),
        "the partial success is logged with the collector's reason:\n{log}"
    );
}

/// Returns an endpoint on 127.0.0.1 where nothing listens.
async fn closed_endpoint(scheme: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("{scheme}{address}")
}

#[tokio::test(flavor = "multi_thread")]
async fn export_failure_is_logged() {
    let endpoint = closed_endpoint("http://").await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [{"data": "b3JkZXI="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
    // The exporter retries a failed export with a backoff before it reports it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    let running_log = log.split("shutting down").next().unwrap_or_default();
    let reported = running_log.lines().any(|line| {
        (line.contains("WARN") || line.contains("ERROR"))
            && line.contains("opentelemetry")
            && line.to_lowercase().contains("export")
    });
    assert!(
        reported,
        "the failed export is logged while serving:\n{log}"
    );
    assert!(
        log.contains(&format!("exporting spans to {endpoint} failed")),
        "the failure names the endpoint:\n{log}"
    );
    assert!(
        log.contains("check that the collector runs"),
        "the failure says what to check:\n{log}"
    );
    assert!(
        !log.contains("Global meter provider is set"),
        "the SDK's start-up INFO line is filtered out:\n{log}"
    );
}

#[test]
fn endpoint_without_scheme_names_fix() {
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4417")];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        log.contains("\\\"127.0.0.1:4417\\\" has no scheme")
            || log.contains("\"127.0.0.1:4417\" has no scheme"),
        "the error names the value:\n{log}"
    );
    assert!(
        log.contains("http://127.0.0.1:4417"),
        "the error gives the fix:\n{log}"
    );
    assert!(!log.contains("TLS feature"), "no advice to rebuild:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_endpoint_starts_exporter() {
    let endpoint = closed_endpoint("https://").await;
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        !log.contains("failed to start"),
        "an https:// endpoint gets a TLS exporter:\n{log}"
    );
}

#[test]
fn unknown_sampler_is_reported() {
    let env = [
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_TRACES_SAMPLER", "bogus"),
    ];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        log.contains("OTEL_TRACES_SAMPLER"),
        "names the variable:\n{log}"
    );
    assert!(log.contains("bogus"), "names the value:\n{log}");
    assert!(
        log.contains("parentbased_traceidratio"),
        "lists the accepted values:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_timeout_is_reported_as_such() {
    let endpoint = unresponsive_collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    for _ in 0..3 {
        publish_one_order(&server).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    let running_log = log.split("shutting down").next().unwrap_or_default();
    let failures: Vec<&str> = running_log
        .lines()
        .filter(|line| line.contains("ExportError"))
        .collect();
    assert!(!failures.is_empty(), "the timeouts are logged:\n{log}");
    for line in failures {
        assert!(
            line.contains(&format!(
                "exporting spans to {endpoint} timed out after 500ms"
            )),
            "each names the endpoint and the timeout: {line}"
        );
        assert!(
            line.contains("OTEL_EXPORTER_OTLP_TIMEOUT"),
            "and the variable: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_waits_export_timeout() {
    // The SDK's own shutdown limit is 5 s. An export timeout above it shows which one holds:
    // a hung collector makes the last export run into whichever limit sluice applies.
    let endpoint = unresponsive_collector().await;
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "7000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut server = TestServer::start_with_env(Some(ORDERS_CONFIG), &env);
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/projects/local/topics/orders:publish",
            server.url()
        ))
        .json(&json!({"messages": [{"data": "b3JkZXI="}]}))
        .send()
        .await
        .expect("publish request");
    assert_eq!(response.status(), 200, "publish status");
    let (status, log) = server.terminate();
    assert!(status.success(), "the server exits cleanly: {status:?}");
    assert!(
        !log.contains("Timeout(5s)"),
        "the flush is bounded by the export timeout, not the SDK's 5 s:\n{log}"
    );
    assert!(
        log.contains("did not take the last spans within the export timeout"),
        "the lost spans are reported in words:\n{log}"
    );
    assert!(log.contains("timeout=7s"), "with the timeout:\n{log}");
    assert!(
        !log.contains("was cancelled"),
        "no task ids of the runtime:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_over_mtls_with_certificate_variables() {
    // The collector's TLS needs a process-wide provider; an error means one is installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = TestCa::new("sluice test collector CA");
    let collector_leaf = ca.server();
    let client_leaf = ca.client(None, "sluice exporter");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &collector_leaf.cert_pem,
            &collector_leaf.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(ca.pem()));
    let (collector, otlp_endpoint) = Collector::start_with(Some(tls)).await;
    let files = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| files.path().join(name).to_str().expect("UTF-8").to_owned();
    std::fs::write(path("ca.pem"), ca.pem()).expect("write the CA");
    std::fs::write(path("client.pem"), &client_leaf.cert_pem).expect("write the certificate");
    std::fs::write(path("client.key"), &client_leaf.key_pem).expect("write the key");
    let (ca_file, cert_file, key_file) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let mut env = otel_env(&otlp_endpoint);
    env.extend([
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", cert_file.as_str()),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", key_file.as_str()),
    ]);
    let (_endpoint, config) = start_push_endpoint().await;
    let server = TestServer::start_with_env(Some(&config), &env);

    // The exporter reaches the collector only when it trusts the test CA and presents the
    // client certificate, so the publish span arrives only then.
    publish_traced_order(&server).await;
    let spans = collector
        .wait_for(CLIENT_TRACE_ID, |spans| {
            !find(spans, "publish orders").is_empty()
        })
        .await;
    assert_eq!(
        find(&spans, "publish orders").len(),
        1,
        "{}",
        describe(&spans)
    );
}
