//! Pub/Sub's REST API end to end, over plain HTTP/1.1 with reqwest against a real
//! `sluice serve` on 127.0.0.1: each route, fields in lowerCamelCase and snake_case, base64
//! data, pagination, and Google's JSON error body with the HTTP status of each gRPC code.

mod support;

use std::collections::BTreeSet;

use base64::Engine as _;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    ReceivedMessage, StreamingPullRequest, StreamingPullResponse,
};
use sluice_proto::tonic::Streaming;
use support::TestServer;
use tokio_stream::wrappers::ReceiverStream;

/// Topics and subscriptions declared in the configuration, so that the data-plane tests do
/// not depend on the admin routes.
const CONFIG: &str = r#"
[[topics]]
name = "orders"

[[subscriptions]]
name = "orders-all"
topic = "orders"
ack_deadline_secs = 30

[[topics]]
name = "listed"

[[subscriptions]]
name = "listed-1"
topic = "listed"

[[subscriptions]]
name = "listed-2"
topic = "listed"

[[subscriptions]]
name = "listed-3"
topic = "listed"
"#;

/// A REST client for one server.
struct Rest {
    client: Client,
    base: String,
}

impl Rest {
    fn new(server: &TestServer) -> Rest {
        Rest {
            client: Client::builder()
                .no_proxy()
                .build()
                .expect("the HTTP client builds"),
            base: format!("{}/v1/", server.url()),
        }
    }

    /// Sends a request to `/v1/{path}` with an optional JSON body, and returns the status and
    /// the JSON response.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the request is sent");
        let status = response.status();
        let text = response.text().await.expect("the body is read");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("{method} {path} returned non-JSON {text:?}: {err}"));
        (status, json)
    }

    /// Sends a request that must succeed, and returns the JSON response.
    async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.send(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {json}");
        json
    }

    /// Sends a request that must fail, checks Google's error shape against `status` and
    /// `name`, and returns the message.
    async fn error(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        name: &str,
    ) -> String {
        let (actual, json) = self.send(method.clone(), path, body).await;
        assert_eq!(actual, status, "{method} {path}: {json}");
        assert_error_shape(&json, status, name);
        json["error"]["message"]
            .as_str()
            .expect("the message is a string")
            .to_owned()
    }
}

/// Checks `{"error": {"code": HTTP status, "message": text, "status": gRPC code name}}`.
fn assert_error_shape(json: &Value, status: StatusCode, name: &str) {
    let error = &json["error"];
    assert_eq!(error["code"], json!(status.as_u16()), "{json}");
    assert_eq!(error["status"], json!(name), "{json}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
}

fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Pulls without waiting and returns the received messages.
async fn pull_now(rest: &Rest, subscription: &str, max: i32) -> Vec<Value> {
    let body = json!({"returnImmediately": true, "maxMessages": max});
    let response = rest
        .ok(Method::POST, &format!("{subscription}:pull"), Some(body))
        .await;
    response["receivedMessages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Pulls until `count` messages have arrived, waiting on the server each time.
async fn pull_count(rest: &Rest, subscription: &str, count: usize) -> Vec<Value> {
    let mut received = Vec::new();
    for _ in 0..20 {
        let body = json!({"max_messages": "100"});
        let response = rest
            .ok(Method::POST, &format!("{subscription}:pull"), Some(body))
            .await;
        if let Some(messages) = response["receivedMessages"].as_array() {
            received.extend(messages.iter().cloned());
        }
        if received.len() >= count {
            return received;
        }
    }
    panic!("only {} of {count} messages arrived", received.len());
}

#[tokio::test]
async fn publish_pull_acknowledge() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let binary = [0_u8, 0xff, 0xfe, b'\n', 0x80];
    let published = rest
        .ok(
            Method::POST,
            "projects/local/topics/orders:publish",
            Some(json!({"messages": [
                {"data": base64(b"first"), "attributes": {"kind": "text"}},
                {"data": base64(&binary), "orderingKey": "k"},
                {"attributes": {"only": "attributes"}}
            ]})),
        )
        .await;
    let ids: Vec<&str> = published["messageIds"]
        .as_array()
        .expect("messageIds is an array")
        .iter()
        .map(|id| id.as_str().expect("message ids are strings"))
        .collect();
    assert_eq!(ids.len(), 3, "{published}");

    let received = pull_count(&rest, "projects/local/subscriptions/orders-all", 3).await;
    assert_eq!(received.len(), 3);
    let mut by_id = std::collections::HashMap::new();
    for item in &received {
        let message = &item["message"];
        assert!(
            item["ackId"].as_str().is_some_and(|a| !a.is_empty()),
            "{item}"
        );
        let publish_time = message["publishTime"].as_str().expect("publishTime is set");
        assert!(
            chrono::DateTime::parse_from_rfc3339(publish_time).is_ok(),
            "publishTime {publish_time} is RFC 3339"
        );
        by_id.insert(message["messageId"].as_str().expect("id").to_owned(), item);
    }
    assert_eq!(by_id[ids[0]]["message"]["data"], json!(base64(b"first")));
    assert_eq!(
        by_id[ids[0]]["message"]["attributes"],
        json!({"kind": "text"})
    );
    assert_eq!(by_id[ids[1]]["message"]["data"], json!(base64(&binary)));
    assert_eq!(by_id[ids[1]]["message"]["orderingKey"], json!("k"));
    assert!(
        by_id[ids[2]]["message"].get("data").is_none(),
        "empty data is left out: {}",
        by_id[ids[2]]
    );

    let ack_ids: Vec<&Value> = received.iter().map(|item| &item["ackId"]).collect();
    let acknowledged = rest
        .ok(
            Method::POST,
            "projects/local/subscriptions/orders-all:acknowledge",
            Some(json!({ "ackIds": ack_ids })),
        )
        .await;
    assert_eq!(acknowledged, json!({}), "Empty is written as {{}}");
    let after = pull_now(&rest, "projects/local/subscriptions/orders-all", 10).await;
    assert!(
        after.is_empty(),
        "acknowledged messages came back: {after:?}"
    );
}

#[tokio::test]
async fn nack_by_deadline_zero_redelivers() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let subscription = "projects/local/subscriptions/orders-all";
    rest.ok(
        Method::POST,
        "projects/local/topics/orders:publish",
        Some(json!({"messages": [{"data": base64(b"again")}]})),
    )
    .await;
    let first = pull_count(&rest, subscription, 1).await;
    let ack_id = first[0]["ackId"].clone();
    assert!(
        pull_now(&rest, subscription, 10).await.is_empty(),
        "the message is leased"
    );

    let extended = rest
        .ok(
            Method::POST,
            &format!("{subscription}:modifyAckDeadline"),
            Some(json!({"ack_ids": [ack_id.clone()], "ack_deadline_seconds": 60})),
        )
        .await;
    assert_eq!(extended, json!({}));
    rest.ok(
        Method::POST,
        &format!("{subscription}:modifyAckDeadline"),
        Some(json!({"ackIds": [ack_id], "ackDeadlineSeconds": 0})),
    )
    .await;
    let again = pull_count(&rest, subscription, 1).await;
    assert_eq!(again[0]["message"]["data"], json!(base64(b"again")));
    assert_eq!(
        again[0]["message"]["messageId"],
        first[0]["message"]["messageId"]
    );
}

#[tokio::test]
async fn configured_catalog_is_readable() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let topic = rest
        .ok(Method::GET, "projects/local/topics/orders", None)
        .await;
    assert_eq!(topic["name"], json!("projects/local/topics/orders"));

    let subscription = rest
        .ok(Method::GET, "projects/local/subscriptions/orders-all", None)
        .await;
    assert_eq!(
        subscription["name"],
        json!("projects/local/subscriptions/orders-all")
    );
    assert_eq!(subscription["topic"], json!("projects/local/topics/orders"));
    assert_eq!(subscription["ackDeadlineSeconds"], json!(30));

    let names = rest
        .ok(
            Method::GET,
            "projects/local/topics/listed/subscriptions",
            None,
        )
        .await;
    let names: BTreeSet<&str> = names["subscriptions"]
        .as_array()
        .expect("subscriptions is an array")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected = BTreeSet::from([
        "projects/local/subscriptions/listed-1",
        "projects/local/subscriptions/listed-2",
        "projects/local/subscriptions/listed-3",
    ]);
    assert_eq!(names, expected);
}

/// Follows `nextPageToken` through a list route with `page_query` naming the page size,
/// and returns every item's `field` with the number of pages.
async fn collect_pages(
    rest: &Rest,
    path: &str,
    page_query: &str,
    items: &str,
) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut token = String::new();
    for page in 1..=20 {
        let url = format!("{path}?{page_query}&pageToken={token}");
        let response = rest.ok(Method::GET, &url, None).await;
        let found = response[items].as_array().cloned().unwrap_or_default();
        assert!(
            found.len() <= 2,
            "page {page} of {path} has {} items",
            found.len()
        );
        all.extend(found);
        match response["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => return (all, page),
        }
    }
    panic!("{path} did not end within 20 pages");
}

#[tokio::test]
async fn lists_are_paginated() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);

    let (topics, pages) =
        collect_pages(&rest, "projects/local/topics", "pageSize=2", "topics").await;
    let names: BTreeSet<&str> = topics.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(topics.len(), names.len(), "no topic is listed twice");
    assert!(names.contains("projects/local/topics/orders"), "{names:?}");
    assert!(names.contains("projects/local/topics/listed"), "{names:?}");
    assert!(
        pages >= names.len().div_ceil(2),
        "{pages} pages for {names:?}"
    );

    let (subscriptions, pages) = collect_pages(
        &rest,
        "projects/local/subscriptions",
        "page_size=2",
        "subscriptions",
    )
    .await;
    let names: BTreeSet<&str> = subscriptions
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(pages, 2, "4 subscriptions at 2 per page");

    let (names, pages) = collect_pages(
        &rest,
        "projects/local/topics/listed/subscriptions",
        "pageSize=2",
        "subscriptions",
    )
    .await;
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(pages, 2, "3 subscriptions at 2 per page");
}

#[tokio::test]
async fn topic_lifecycle() {
    let server = TestServer::start(None);
    let rest = Rest::new(&server);
    let path = "projects/local/topics/created";

    let created = rest
        .ok(
            Method::PUT,
            path,
            Some(json!({"messageRetentionDuration": "3600s"})),
        )
        .await;
    assert_eq!(created["name"], json!("projects/local/topics/created"));
    assert_eq!(created["messageRetentionDuration"], json!("3600s"));
    let message = rest
        .error(
            Method::PUT,
            path,
            Some(json!({})),
            StatusCode::CONFLICT,
            "ALREADY_EXISTS",
        )
        .await;
    assert!(message.contains("created"), "{message}");

    let fetched = rest.ok(Method::GET, path, None).await;
    assert_eq!(fetched, created);

    let updated = rest
        .ok(
            Method::PATCH,
            path,
            Some(json!({
                "topic": {"message_retention_duration": "7200s"},
                "update_mask": "messageRetentionDuration"
            })),
        )
        .await;
    assert_eq!(updated["messageRetentionDuration"], json!("7200s"));

    let deleted = rest.ok(Method::DELETE, path, None).await;
    assert_eq!(deleted, json!({}));
    rest.error(Method::GET, path, None, StatusCode::NOT_FOUND, "NOT_FOUND")
        .await;
    rest.error(
        Method::DELETE,
        path,
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn subscription_lifecycle_in_both_spellings() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let camel = rest
        .ok(
            Method::PUT,
            "projects/local/subscriptions/camel",
            Some(json!({
                "topic": "projects/local/topics/orders",
                "ackDeadlineSeconds": 45,
                "retryPolicy": {"minimumBackoff": "5s", "maximumBackoff": "60s"},
                "deadLetterPolicy": {
                    "deadLetterTopic": "projects/local/topics/listed",
                    "maxDeliveryAttempts": 7
                },
                "enableMessageOrdering": true,
                "filter": "attributes.kind = \"text\""
            })),
        )
        .await;
    let snake = rest
        .ok(
            Method::PUT,
            "projects/local/subscriptions/snake",
            Some(json!({
                "topic": "projects/local/topics/orders",
                "ack_deadline_seconds": "45",
                "retry_policy": {"minimum_backoff": "5s", "maximum_backoff": "60s"},
                "dead_letter_policy": {
                    "dead_letter_topic": "projects/local/topics/listed",
                    "max_delivery_attempts": "7"
                },
                "enable_message_ordering": true,
                "filter": "attributes.kind = \"text\""
            })),
        )
        .await;
    for created in [&camel, &snake] {
        assert_eq!(
            created["topic"],
            json!("projects/local/topics/orders"),
            "{created}"
        );
        assert_eq!(created["ackDeadlineSeconds"], json!(45), "{created}");
        assert_eq!(
            created["retryPolicy"],
            json!({"minimumBackoff": "5s", "maximumBackoff": "60s"}),
            "{created}"
        );
        assert_eq!(
            created["deadLetterPolicy"],
            json!({"deadLetterTopic": "projects/local/topics/listed", "maxDeliveryAttempts": 7}),
            "{created}"
        );
        assert_eq!(created["enableMessageOrdering"], json!(true), "{created}");
        assert_eq!(
            created["filter"],
            json!("attributes.kind = \"text\""),
            "{created}"
        );
    }
    let fetched = rest
        .ok(Method::GET, "projects/local/subscriptions/snake", None)
        .await;
    assert_eq!(fetched, snake);

    let updated = rest
        .ok(
            Method::PATCH,
            "projects/local/subscriptions/camel",
            Some(json!({
                "subscription": {"ackDeadlineSeconds": 20},
                "updateMask": "ackDeadlineSeconds"
            })),
        )
        .await;
    assert_eq!(updated["ackDeadlineSeconds"], json!(20));

    let pushed = rest
        .ok(
            Method::POST,
            "projects/local/subscriptions/camel:modifyPushConfig",
            Some(json!({"pushConfig": {}})),
        )
        .await;
    assert_eq!(pushed, json!({}));

    rest.ok(Method::DELETE, "projects/local/subscriptions/camel", None)
        .await;
    rest.error(
        Method::GET,
        "projects/local/subscriptions/camel",
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    rest.error(
        Method::PUT,
        "projects/local/subscriptions/snake",
        Some(json!({"topic": "projects/local/topics/orders"})),
        StatusCode::CONFLICT,
        "ALREADY_EXISTS",
    )
    .await;
}

#[tokio::test]
async fn snapshots_and_seek() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let subscription = "projects/local/subscriptions/orders-all";
    rest.ok(
        Method::POST,
        "projects/local/topics/orders:publish",
        Some(json!({"messages": [{"data": base64(b"kept")}]})),
    )
    .await;

    let snapshot = rest
        .ok(
            Method::PUT,
            "projects/local/snapshots/before",
            Some(json!({ "subscription": subscription })),
        )
        .await;
    assert_eq!(snapshot["name"], json!("projects/local/snapshots/before"));
    assert_eq!(snapshot["topic"], json!("projects/local/topics/orders"));
    let fetched = rest
        .ok(Method::GET, "projects/local/snapshots/before", None)
        .await;
    assert_eq!(fetched["name"], snapshot["name"]);
    let listed = rest.ok(Method::GET, "projects/local/snapshots", None).await;
    assert_eq!(listed["snapshots"][0]["name"], snapshot["name"], "{listed}");
    let by_topic = rest
        .ok(Method::GET, "projects/local/topics/orders/snapshots", None)
        .await;
    assert_eq!(
        by_topic["snapshots"],
        json!(["projects/local/snapshots/before"])
    );

    let received = pull_count(&rest, subscription, 1).await;
    rest.ok(
        Method::POST,
        &format!("{subscription}:acknowledge"),
        Some(json!({"ackIds": [received[0]["ackId"].clone()]})),
    )
    .await;
    let seek = rest
        .ok(
            Method::POST,
            &format!("{subscription}:seek"),
            Some(json!({"snapshot": "projects/local/snapshots/before"})),
        )
        .await;
    assert_eq!(seek, json!({}));
    let again = pull_count(&rest, subscription, 1).await;
    assert_eq!(again[0]["message"]["data"], json!(base64(b"kept")));

    let seek = rest
        .ok(
            Method::POST,
            &format!("{subscription}:seek"),
            Some(json!({"time": "2999-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(seek, json!({}));

    rest.ok(Method::DELETE, "projects/local/snapshots/before", None)
        .await;
    rest.error(
        Method::GET,
        "projects/local/snapshots/before",
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn invalid_bodies_name_the_field() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let publish = "projects/local/topics/orders:publish";

    let message = rest
        .error(
            Method::POST,
            publish,
            Some(json!({"messages": [{"data": "aGk=", "colour": "red"}]})),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(message.contains("\"colour\""), "{message}");
    assert!(message.contains("'messages[0]'"), "{message}");

    let message = rest
        .error(
            Method::POST,
            publish,
            Some(json!({"messages": [{"data": "not base64!"}]})),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(message.contains("'messages[0].data'"), "{message}");

    let message = rest
        .error(
            Method::PUT,
            "projects/local/subscriptions/bad",
            Some(json!({"topic": "projects/local/topics/orders", "ackDeadlineSeconds": "soon"})),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(message.contains("'ackDeadlineSeconds'"), "{message}");

    let message = rest
        .error(
            Method::PUT,
            "projects/local/subscriptions/bad",
            Some(json!({"topic": "projects/local/topics/orders", "retryPolicy": {"minimumBackoff": "10"}})),
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(
        message.contains("'retryPolicy.minimumBackoff'"),
        "{message}"
    );

    let response = rest
        .client
        .post(format!("{}{publish}", rest.base))
        .header("content-type", "application/json")
        .body("{\"messages\": [")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let json: Value = response.json().await.expect("JSON error");
    assert_error_shape(&json, StatusCode::BAD_REQUEST, "INVALID_ARGUMENT");

    let message = rest
        .error(
            Method::GET,
            "projects/local/topics?pageSize=many",
            None,
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
        )
        .await;
    assert!(message.contains("pageSize"), "{message}");
}

#[tokio::test]
async fn service_errors_keep_their_codes() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);

    let message = rest
        .error(
            Method::POST,
            "projects/local/topics/missing:publish",
            Some(json!({"messages": [{"data": "aGk="}]})),
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    assert!(message.contains("missing"), "{message}");
    rest.error(
        Method::GET,
        "projects/local/subscriptions/missing",
        None,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    rest.error(
        Method::POST,
        "projects/local/topics/orders:publish",
        Some(json!({"messages": []})),
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    rest.error(
        Method::POST,
        "projects/local/subscriptions/orders-all:acknowledge",
        Some(json!({"ackIds": []})),
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    rest.error(
        Method::POST,
        "projects/local/subscriptions/orders-all:pull",
        Some(json!({"maxMessages": -1})),
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
    rest.error(
        Method::POST,
        "projects/local/topics/orders:getIamPolicy",
        None,
        StatusCode::NOT_IMPLEMENTED,
        "UNIMPLEMENTED",
    )
    .await;
}

#[tokio::test]
async fn unknown_routes_are_not_found() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    for (method, path) in [
        (Method::POST, "projects/local/topics/orders:launch"),
        (Method::GET, "projects/local/topics/orders:publish"),
        (Method::DELETE, "projects/local/topics"),
        (Method::POST, "projects/local/subscriptions/orders-all"),
        (Method::POST, "projects/local/snapshots/s:seek"),
    ] {
        let message = rest
            .error(
                method.clone(),
                path,
                None,
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
            )
            .await;
        assert!(message.contains(path), "{method} {path}: {message}");
    }
}

#[tokio::test]
async fn enum_encoding_and_alt_are_honoured() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    // Google's Rust clients send this parameter on every call; gcloud sends alt=json.
    let cases = [
        ("%24alt=json%3Benum-encoding%3Dint", json!(1)),
        ("alt=json&prettyPrint=false", json!("ACTIVE")),
        ("", json!("ACTIVE")),
    ];
    for (query, state) in cases {
        let path = format!("projects/local/subscriptions/orders-all?{query}");
        let subscription = rest.ok(Method::GET, &path, None).await;
        assert_eq!(subscription["state"], state, "{query}");
    }
    rest.error(
        Method::GET,
        "projects/local/topics/orders?alt=proto",
        None,
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
    )
    .await;
}

#[tokio::test]
async fn oversized_body_is_rejected_as_json() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let data = "A".repeat(17 * 1024 * 1024);
    let message = rest
        .error(
            Method::POST,
            "projects/local/topics/orders:publish",
            Some(json!({"messages": [{ "data": data }]})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "RESOURCE_EXHAUSTED",
        )
        .await;
    assert!(message.contains("limit"), "{message}");
}

#[tokio::test]
async fn large_message_round_trips() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    // 3 MiB of data is 4 MiB of base64, over axum's default body limit of 2 MB.
    let data: Vec<u8> = (0..3 * 1024 * 1024_u32).map(|i| (i % 251) as u8).collect();
    rest.ok(
        Method::POST,
        "projects/local/topics/orders:publish",
        Some(json!({"messages": [{ "data": base64(&data) }]})),
    )
    .await;
    let received = pull_count(&rest, "projects/local/subscriptions/orders-all", 1).await;
    assert_eq!(received[0]["message"]["data"], json!(base64(&data)));
}

/// Returns the next message of a StreamingPull stream, skipping empty responses.
async fn next_received(responses: &mut Streaming<StreamingPullResponse>) -> ReceivedMessage {
    let wait = std::time::Duration::from_secs(30);
    loop {
        let response = tokio::time::timeout(wait, responses.message())
            .await
            .expect("a message arrives on the stream in time")
            .expect("the stream stays open")
            .expect("the stream does not end");
        if let Some(received) = response.received_messages.into_iter().next() {
            return received;
        }
    }
}

#[tokio::test]
async fn rest_ack_frees_streaming_pull_slot() {
    let server = TestServer::start(Some(CONFIG));
    let rest = Rest::new(&server);
    let subscription = "projects/local/subscriptions/orders-all";
    rest.ok(
        Method::POST,
        "projects/local/topics/orders:publish",
        Some(json!({"messages": [{"data": base64(b"one")}, {"data": base64(b"two")}]})),
    )
    .await;

    // A stream that may hold one unacknowledged message, leased for 600 s.
    let (requests, outbound) = tokio::sync::mpsc::channel(4);
    let first_request = StreamingPullRequest {
        subscription: subscription.to_owned(),
        stream_ack_deadline_seconds: 600,
        max_outstanding_messages: 1,
        ..Default::default()
    };
    requests
        .send(first_request)
        .await
        .expect("the channel is open");
    let mut client = SubscriberClient::new(support::channel(&server).await);
    let mut responses = client
        .streaming_pull(ReceiverStream::new(outbound))
        .await
        .expect("the stream opens")
        .into_inner();
    let first = next_received(&mut responses).await;

    // The REST route shares the gRPC service's flow-control state, so this ack frees the
    // stream's one slot long before the 600 s lease would.
    rest.ok(
        Method::POST,
        &format!("{subscription}:acknowledge"),
        Some(json!({"ackIds": [first.ack_id.clone()]})),
    )
    .await;
    let second = next_received(&mut responses).await;
    let mut data = [&first, &second].map(|received| {
        received
            .message
            .as_ref()
            .map(|message| message.data.clone())
            .unwrap_or_default()
    });
    data.sort();
    assert_eq!(data, [b"one".to_vec(), b"two".to_vec()]);
    drop(requests);
}
