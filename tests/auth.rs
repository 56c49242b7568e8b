//! Authentication and authorization end to end: a real `sluice serve` with `[auth]` on, called
//! over gRPC and REST with no token, a wrong token, a token of an identity without the
//! permission, and the right token, for publish, pull, upload, object read and an admin
//! call. The denied calls come back as audit entries through a log sink.

mod support;

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest, Subscription, Topic,
};
use sluice_proto::tonic::metadata::MetadataValue;
use sluice_proto::tonic::{Code, Request};
use support::{channel, TestServer};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdefghijklmnop";
const PUBLISHER_TOKEN: &str = "publisher-token-0123456789abcdefghijklm";
const WORKER_TOKEN: &str = "worker-token-0123456789abcdefghijklmnopq";
const WRONG_TOKEN: &str = "wrong-token-0123456789abcdefghijklmnopqr";
const SUBSCRIPTION_ADMIN_TOKEN: &str = "subscription-admin-token-0123456789abcdef";

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn config() -> String {
    format!(
        r#"
[[topics]]
name = "orders"

[[topics]]
name = "audit"

[[topics]]
name = "orders-dead"

[[subscriptions]]
name = "orders-sub"
topic = "orders"

[[subscriptions]]
name = "audit-sub"
topic = "audit"

[[sinks]]
name = "audit"
filter = 'protoPayload.serviceName="sluice"'
destination = "audit"

[[buckets]]
name = "uploads"

[auth]
enabled = true

[[auth.identities]]
name = "admin@example.com"
token_sha256 = "{admin}"
[[auth.identities.grants]]
actions = ["admin", "subscribe"]
resources = ["**"]

[[auth.identities]]
name = "publisher"
token_sha256 = "{publisher}"
[[auth.identities.grants]]
actions = ["publish"]
resources = ["topics/orders", "topics/*/*"]

[[auth.identities]]
name = "worker"
token_sha256 = "{worker}"
[[auth.identities.grants]]
actions = ["subscribe"]
resources = ["subscriptions/orders-*"]
[[auth.identities.grants]]
actions = ["upload", "read_objects"]
resources = ["buckets/uploads"]

[[auth.identities]]
name = "subscription-admin"
token_sha256 = "{subscription_admin}"
[[auth.identities.grants]]
actions = ["admin"]
resources = ["subscriptions/**", "snapshots/**"]
[[auth.identities.grants]]
actions = ["subscribe"]
resources = ["topics/orders", "subscriptions/copy-*"]
[[auth.identities.grants]]
actions = ["publish"]
resources = ["topics/orders-dead"]
"#,
        admin = sha256_hex(ADMIN_TOKEN),
        publisher = sha256_hex(PUBLISHER_TOKEN),
        worker = sha256_hex(WORKER_TOKEN),
        subscription_admin = sha256_hex(SUBSCRIPTION_ADMIN_TOKEN),
    )
}

/// The outcome of one gRPC call: its code and message.
type GrpcOutcome = (Code, String);

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = MetadataValue::try_from(format!("Bearer {token}")).expect("ASCII token");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn outcome<T>(
    result: Result<sluice_proto::tonic::Response<T>, sluice_proto::tonic::Status>,
) -> GrpcOutcome {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    }
}

async fn grpc_publish(server: &TestServer, token: Option<&str>) -> GrpcOutcome {
    let mut client = PublisherClient::new(channel(server).await);
    let request = PublishRequest {
        topic: "projects/local/topics/orders".to_owned(),
        messages: vec![PubsubMessage {
            data: b"order 1".to_vec(),
            ..PubsubMessage::default()
        }],
    };
    outcome(client.publish(with_token(request, token)).await)
}

async fn grpc_pull(server: &TestServer, token: Option<&str>) -> GrpcOutcome {
    let mut client = SubscriberClient::new(channel(server).await);
    let request = PullRequest {
        subscription: "projects/local/subscriptions/orders-sub".to_owned(),
        max_messages: 1,
        ..PullRequest::default()
    };
    outcome(client.pull(with_token(request, token)).await)
}

async fn grpc_create_topic(server: &TestServer, token: Option<&str>, name: &str) -> GrpcOutcome {
    let mut client = PublisherClient::new(channel(server).await);
    let topic = Topic {
        name: format!("projects/local/topics/{name}"),
        ..Topic::default()
    };
    outcome(client.create_topic(with_token(topic, token)).await)
}

async fn grpc_create_subscription(
    server: &TestServer,
    token: Option<&str>,
    name: &str,
    topic: &str,
) -> GrpcOutcome {
    let mut client = SubscriberClient::new(channel(server).await);
    let subscription = Subscription {
        name: format!("projects/local/subscriptions/{name}"),
        topic: format!("projects/local/topics/{topic}"),
        ..Subscription::default()
    };
    outcome(
        client
            .create_subscription(with_token(subscription, token))
            .await,
    )
}

/// The outcome of one REST call: status, `WWW-Authenticate` header and body.
#[derive(Debug)]
struct HttpOutcome {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn send(request: reqwest::RequestBuilder, token: Option<&str>) -> HttpOutcome {
    let request = match token {
        Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
        None => request,
    };
    let response = request.send().await.expect("the request completes");
    let status = response.status();
    let challenge = response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|value| value.to_str().expect("ASCII header").to_owned());
    let body = response.text().await.expect("a body");
    HttpOutcome {
        status,
        challenge,
        body,
    }
}

async fn rest_publish(server: &TestServer, token: Option<&str>) -> HttpOutcome {
    let url = format!("{}/v1/projects/local/topics/orders:publish", server.url);
    let body = serde_json::json!({"messages": [{"data": "b3JkZXI="}]});
    send(reqwest::Client::new().post(url).json(&body), token).await
}

async fn rest_pull(server: &TestServer, token: Option<&str>) -> HttpOutcome {
    let url = format!(
        "{}/v1/projects/local/subscriptions/orders-sub:pull",
        server.url
    );
    let body = serde_json::json!({"maxMessages": 1, "returnImmediately": true});
    send(reqwest::Client::new().post(url).json(&body), token).await
}

async fn rest_create_topic(server: &TestServer, token: Option<&str>, name: &str) -> HttpOutcome {
    let url = format!("{}/v1/projects/local/topics/{name}", server.url);
    send(
        reqwest::Client::new().put(url).json(&serde_json::json!({})),
        token,
    )
    .await
}

async fn rest_create_subscription(
    server: &TestServer,
    token: Option<&str>,
    name: &str,
    topic: &str,
) -> HttpOutcome {
    let url = format!("{}/v1/projects/local/subscriptions/{name}", server.url);
    let body = serde_json::json!({ "topic": format!("projects/local/topics/{topic}") });
    send(reqwest::Client::new().put(url).json(&body), token).await
}

async fn rest_upload(server: &TestServer, token: Option<&str>) -> HttpOutcome {
    let url = format!(
        "{}/upload/storage/v1/b/uploads/o?uploadType=media&name=report.txt",
        server.url
    );
    send(
        reqwest::Client::new().post(url).body("quarterly report"),
        token,
    )
    .await
}

async fn rest_read_object(server: &TestServer, token: Option<&str>) -> HttpOutcome {
    let url = format!("{}/storage/v1/b/uploads/o/report.txt?alt=media", server.url);
    send(reqwest::Client::new().get(url), token).await
}

fn assert_grpc_denials(call: &str, outcomes: [GrpcOutcome; 3], action: &str, resource: &str) {
    let [none, wrong, forbidden] = outcomes;
    assert_eq!(
        none.0,
        Code::Unauthenticated,
        "{call} without a token: {none:?}"
    );
    assert!(
        none.1.contains("no credentials"),
        "{call} without a token: {none:?}"
    );
    assert_eq!(
        wrong.0,
        Code::Unauthenticated,
        "{call} with a wrong token: {wrong:?}"
    );
    assert!(
        wrong.1.contains("not valid"),
        "{call} with a wrong token: {wrong:?}"
    );
    assert!(
        !wrong.1.contains(WRONG_TOKEN),
        "{call}: the message shows the token"
    );
    assert_eq!(
        forbidden.0,
        Code::PermissionDenied,
        "{call} forbidden: {forbidden:?}"
    );
    assert!(
        forbidden
            .1
            .contains(&format!("may not {action} on {resource}")),
        "{call} forbidden names the action and resource: {forbidden:?}"
    );
}

fn assert_http_denials(call: &str, outcomes: [HttpOutcome; 3], action: &str, resource: &str) {
    let [none, wrong, forbidden] = outcomes;
    assert_eq!(
        none.status,
        StatusCode::UNAUTHORIZED,
        "{call} without a token: {none:?}"
    );
    assert_eq!(
        none.challenge.as_deref(),
        Some("Bearer realm=\"sluice\""),
        "{call} without a token"
    );
    assert!(none.body.contains("UNAUTHENTICATED"), "{call}: {none:?}");
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "{call} wrong token: {wrong:?}"
    );
    assert!(
        wrong
            .challenge
            .as_deref()
            .is_some_and(|challenge| challenge.contains("invalid_token")),
        "{call} wrong token: {wrong:?}"
    );
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{call} forbidden: {forbidden:?}"
    );
    assert!(
        forbidden.body.contains("PERMISSION_DENIED"),
        "{call}: {forbidden:?}"
    );
    assert!(
        forbidden
            .body
            .contains(&format!("may not {action} on {resource}")),
        "{call} forbidden names the action and resource: {forbidden:?}"
    );
}

#[tokio::test]
async fn grpc_calls_need_the_right_token() {
    let server = TestServer::start(Some(&config()));

    let publish = [
        grpc_publish(&server, None).await,
        grpc_publish(&server, Some(WRONG_TOKEN)).await,
        grpc_publish(&server, Some(WORKER_TOKEN)).await,
    ];
    assert_grpc_denials("Publish", publish, "publish", "topics/orders");
    assert_eq!(
        grpc_publish(&server, Some(PUBLISHER_TOKEN)).await.0,
        Code::Ok
    );

    let pull = [
        grpc_pull(&server, None).await,
        grpc_pull(&server, Some(WRONG_TOKEN)).await,
        grpc_pull(&server, Some(PUBLISHER_TOKEN)).await,
    ];
    assert_grpc_denials("Pull", pull, "subscribe", "subscriptions/orders-sub");
    assert_eq!(grpc_pull(&server, Some(WORKER_TOKEN)).await.0, Code::Ok);

    let create = [
        grpc_create_topic(&server, None, "new-grpc").await,
        grpc_create_topic(&server, Some(WRONG_TOKEN), "new-grpc").await,
        grpc_create_topic(&server, Some(PUBLISHER_TOKEN), "new-grpc").await,
    ];
    assert_grpc_denials("CreateTopic", create, "admin", "topics/new-grpc");
    let created = grpc_create_topic(&server, Some(ADMIN_TOKEN), "new-grpc").await;
    assert_eq!(created.0, Code::Ok, "{created:?}");
}

#[tokio::test]
async fn rest_calls_need_the_right_token() {
    let server = TestServer::start(Some(&config()));

    let publish = [
        rest_publish(&server, None).await,
        rest_publish(&server, Some(WRONG_TOKEN)).await,
        rest_publish(&server, Some(WORKER_TOKEN)).await,
    ];
    assert_http_denials("publish", publish, "publish", "topics/orders");
    let published = rest_publish(&server, Some(PUBLISHER_TOKEN)).await;
    assert_eq!(published.status, StatusCode::OK, "{published:?}");

    let pull = [
        rest_pull(&server, None).await,
        rest_pull(&server, Some(WRONG_TOKEN)).await,
        rest_pull(&server, Some(PUBLISHER_TOKEN)).await,
    ];
    assert_http_denials("pull", pull, "subscribe", "subscriptions/orders-sub");
    let pulled = rest_pull(&server, Some(WORKER_TOKEN)).await;
    assert_eq!(pulled.status, StatusCode::OK, "{pulled:?}");

    let create = [
        rest_create_topic(&server, None, "new-rest").await,
        rest_create_topic(&server, Some(WRONG_TOKEN), "new-rest").await,
        rest_create_topic(&server, Some(WORKER_TOKEN), "new-rest").await,
    ];
    assert_http_denials("create topic", create, "admin", "topics/new-rest");
    let created = rest_create_topic(&server, Some(ADMIN_TOKEN), "new-rest").await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");

    let upload = [
        rest_upload(&server, None).await,
        rest_upload(&server, Some(WRONG_TOKEN)).await,
        rest_upload(&server, Some(PUBLISHER_TOKEN)).await,
    ];
    assert_http_denials("upload", upload, "upload", "buckets/uploads");
    let uploaded = rest_upload(&server, Some(WORKER_TOKEN)).await;
    assert_eq!(uploaded.status, StatusCode::OK, "{uploaded:?}");

    let read = [
        rest_read_object(&server, None).await,
        rest_read_object(&server, Some(WRONG_TOKEN)).await,
        rest_read_object(&server, Some(PUBLISHER_TOKEN)).await,
    ];
    assert_http_denials("object read", read, "read_objects", "buckets/uploads");
    let object = rest_read_object(&server, Some(WORKER_TOKEN)).await;
    assert_eq!(object.status, StatusCode::OK, "{object:?}");
    assert_eq!(object.body, "quarterly report");
}

#[tokio::test]
async fn creating_subscription_needs_subscribe_on_topic() {
    let server = TestServer::start(Some(&config()));
    let token = Some(SUBSCRIPTION_ADMIN_TOKEN);

    let (code, message) = grpc_create_subscription(&server, token, "peek-grpc", "audit").await;
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("subscribe"), "{message}");
    assert!(message.contains("topics/audit"), "{message}");
    let attached = grpc_create_subscription(&server, token, "copy-grpc", "orders").await;
    assert_eq!(attached.0, Code::Ok, "{attached:?}");

    let denied = rest_create_subscription(&server, token, "peek-rest", "audit").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    assert!(denied.body.contains("subscribe"), "{denied:?}");
    assert!(denied.body.contains("topics/audit"), "{denied:?}");
    let attached = rest_create_subscription(&server, token, "copy-rest", "orders").await;
    assert_eq!(attached.status, StatusCode::OK, "{attached:?}");
    let body: Value = serde_json::from_str(&attached.body).expect("a JSON subscription");
    assert_eq!(body["topic"], "projects/local/topics/orders");
}

#[tokio::test]
async fn dead_letter_topic_needs_publish() {
    let server = TestServer::start(Some(&config()));
    let token = Some(SUBSCRIPTION_ADMIN_TOKEN);
    let url = format!("{}/v1/projects/local/subscriptions/copy-dl", server.url);
    let with_dead_letter = |topic: &str| {
        serde_json::json!({
            "topic": "projects/local/topics/orders",
            "deadLetterPolicy": {
                "deadLetterTopic": format!("projects/local/topics/{topic}"),
                "maxDeliveryAttempts": 5,
            },
        })
    };

    let denied = send(
        reqwest::Client::new()
            .put(&url)
            .json(&with_dead_letter("audit")),
        token,
    )
    .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    assert!(denied.body.contains("publish"), "{denied:?}");
    assert!(denied.body.contains("topics/audit"), "{denied:?}");

    let created = send(
        reqwest::Client::new()
            .put(&url)
            .json(&with_dead_letter("orders-dead")),
        token,
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");

    let update = serde_json::json!({
        "subscription": with_dead_letter("audit"),
        "updateMask": "deadLetterPolicy",
    });
    let denied = send(reqwest::Client::new().patch(&url).json(&update), token).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    assert!(denied.body.contains("topics/audit"), "{denied:?}");
}

#[tokio::test]
async fn snapshot_needs_subscribe_on_source() {
    let server = TestServer::start(Some(&config()));
    let token = Some(SUBSCRIPTION_ADMIN_TOKEN);
    let attached = rest_create_subscription(&server, token, "copy-snap", "orders").await;
    assert_eq!(attached.status, StatusCode::OK, "{attached:?}");
    let snapshot = |name: &str, subscription: &str| {
        let url = format!("{}/v1/projects/local/snapshots/{name}", server.url);
        let body = serde_json::json!({
            "subscription": format!("projects/local/subscriptions/{subscription}"),
        });
        send(reqwest::Client::new().put(url).json(&body), token)
    };

    let denied = snapshot("peek", "audit-sub").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    assert!(denied.body.contains("subscribe"), "{denied:?}");
    assert!(
        denied.body.contains("subscriptions/audit-sub"),
        "{denied:?}"
    );

    let created = snapshot("mine", "copy-snap").await;
    assert_eq!(created.status, StatusCode::OK, "{created:?}");
}

#[tokio::test]
async fn encoded_project_cannot_dodge_grants() {
    let server = TestServer::start(Some(&config()));
    // The publisher may publish to topics/orders and to other projects' topics, and
    // `loc%61l` decodes to `local`, the configured project.
    let url = format!("{}/v1/projects/loc%61l/topics/audit:publish", server.url);
    let body = serde_json::json!({"messages": [{"data": "b3JkZXI="}]});
    let outcome = send(
        reqwest::Client::new().post(url).json(&body),
        Some(PUBLISHER_TOKEN),
    )
    .await;
    assert_eq!(outcome.status, StatusCode::FORBIDDEN, "{outcome:?}");
    assert!(outcome.body.contains("topics/audit"), "{outcome:?}");
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let server = TestServer::start(Some(&config()));
    let url = format!("{}/v1/projects/local/topics/orders:publish", server.url);
    let body = serde_json::json!({"messages": [{"data": "b3JkZXI="}]});
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = reqwest::Client::new()
            .post(&url)
            .header(AUTHORIZATION, format!("{scheme} {PUBLISHER_TOKEN}"))
            .json(&body)
            .send()
            .await
            .expect("the request completes");
        assert_eq!(response.status(), StatusCode::OK, "scheme {scheme:?}");
    }
}

#[tokio::test]
async fn health_and_metrics_stay_open() {
    let server = TestServer::start(Some(&config()));
    for path in ["/healthz", "/metrics"] {
        let outcome = send(
            reqwest::Client::new().get(format!("{}{path}", server.url)),
            None,
        )
        .await;
        assert_eq!(outcome.status, StatusCode::OK, "{path}: {outcome:?}");
    }
}

/// Pulls from `audit-sub` as the admin until an entry matches, or the time is up.
async fn wait_for_audit_entry(server: &TestServer, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut client = SubscriberClient::new(channel(server).await);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let request = PullRequest {
            subscription: "projects/local/subscriptions/audit-sub".to_owned(),
            max_messages: 100,
            ..PullRequest::default()
        };
        let response = client
            .pull(with_token(request, Some(ADMIN_TOKEN)))
            .await
            .expect("the admin pulls the audit subscription")
            .into_inner();
        for received in response.received_messages {
            let data = received.message.expect("a message").data;
            let entry: Value = serde_json::from_slice(&data).expect("a JSON LogEntry");
            if matches(&entry) {
                return entry;
            }
            seen.push(entry);
        }
    }
    panic!("no matching audit entry within 10 s; entries seen: {seen:#?}");
}

#[tokio::test]
async fn denied_calls_become_audit_entries() {
    let server = TestServer::start(Some(&config()));
    let denied = grpc_publish(&server, Some(WORKER_TOKEN)).await;
    assert_eq!(denied.0, Code::PermissionDenied);

    let entry = wait_for_audit_entry(&server, |entry| {
        entry["protoPayload"]["methodName"] == "google.pubsub.v1.Publisher.Publish"
    })
    .await;
    let payload = &entry["protoPayload"];
    assert_eq!(
        payload["@type"],
        "type.googleapis.com/google.cloud.audit.AuditLog"
    );
    assert_eq!(payload["serviceName"], "sluice");
    assert_eq!(payload["resourceName"], "topics/orders");
    assert_eq!(payload["authenticationInfo"]["principalSubject"], "worker");
    assert_eq!(payload["status"]["code"], 7, "PERMISSION_DENIED");
    assert_eq!(
        entry["logName"],
        "projects/local/logs/cloudaudit.googleapis.com%2Fdata_access"
    );

    let unauthenticated = rest_upload(&server, Some(WRONG_TOKEN)).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let entry = wait_for_audit_entry(&server, |entry| {
        entry["protoPayload"]["status"]["code"] == 16
    })
    .await;
    assert_eq!(entry["protoPayload"]["resourceName"], "buckets/uploads");
    assert_eq!(
        entry["protoPayload"]["authorizationInfo"][0]["granted"],
        false
    );
    assert!(
        !entry.to_string().contains(WRONG_TOKEN),
        "the entry shows the token"
    );

    let unauthenticated = grpc_publish(&server, None).await;
    assert_eq!(unauthenticated.0, Code::Unauthenticated);
    let entry = wait_for_audit_entry(&server, |entry| {
        entry["protoPayload"]["status"]["code"] == 16
            && entry["protoPayload"]["methodName"] == "google.pubsub.v1.Publisher.Publish"
    })
    .await;
    let payload = &entry["protoPayload"];
    assert_eq!(payload["resourceName"], "topics/orders");
    assert_eq!(payload["authorizationInfo"][0]["granted"], false);
    assert_eq!(payload["authenticationInfo"], serde_json::json!({}));
}

/// Pulls and acknowledges `audit-sub` until it stays empty for a second, and returns the
/// entries.
async fn drain_audit_entries(server: &TestServer) -> Vec<Value> {
    let mut client = SubscriberClient::new(channel(server).await);
    let mut entries = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(1) {
        let request = PullRequest {
            subscription: "projects/local/subscriptions/audit-sub".to_owned(),
            max_messages: 1000,
            ..PullRequest::default()
        };
        let pulled = tokio::time::timeout(
            Duration::from_millis(500),
            client.pull(with_token(request, Some(ADMIN_TOKEN))),
        )
        .await;
        let Ok(response) = pulled else {
            continue;
        };
        let received = response
            .expect("the admin pulls the audit subscription")
            .into_inner()
            .received_messages;
        if received.is_empty() {
            continue;
        }
        quiet_since = Instant::now();
        let mut ack_ids = Vec::new();
        for message in received {
            let data = message.message.expect("a message").data;
            entries.push(serde_json::from_slice(&data).expect("a JSON LogEntry"));
            ack_ids.push(message.ack_id);
        }
        let acknowledge = AcknowledgeRequest {
            subscription: "projects/local/subscriptions/audit-sub".to_owned(),
            ack_ids,
        };
        client
            .acknowledge(with_token(acknowledge, Some(ADMIN_TOKEN)))
            .await
            .expect("the admin acknowledges");
    }
    entries
}

#[tokio::test]
async fn unauthenticated_flood_is_audited_at_a_bounded_rate() {
    let server = TestServer::start(Some(&config()));
    let calls = 400;
    // One client for every call: a new client per call spends most of its time loading the
    // system's root certificates.
    let client = reqwest::Client::new();
    let url = format!("{}/storage/v1/b/uploads/o/report.txt?alt=media", server.url);
    let started = Instant::now();
    for _ in 0..calls {
        let status = client
            .get(&url)
            .send()
            .await
            .expect("the request completes")
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let elapsed = started.elapsed().as_secs_f64();

    let audited = drain_audit_entries(&server)
        .await
        .into_iter()
        .filter(|entry| {
            entry["protoPayload"]["status"]["code"] == 16
                && entry["protoPayload"]["resourceName"] == "buckets/uploads"
        })
        .count();
    // A burst of 100, then 10 a second while the calls went on.
    let allowed = 100 + (elapsed * 10.0).ceil() as usize + 1;
    assert!(audited >= 100, "only {audited} of {calls} calls audited");
    assert!(
        audited <= allowed.min(calls - 1),
        "{audited} of {calls} calls audited in {elapsed:.1} s; the rate allows {allowed}"
    );
}

#[tokio::test]
async fn admin_calls_go_to_the_activity_log() {
    let server = TestServer::start(Some(&config()));
    let created = grpc_create_topic(&server, Some(ADMIN_TOKEN), "audited").await;
    assert_eq!(created.0, Code::Ok, "{created:?}");

    let entry = wait_for_audit_entry(&server, |entry| {
        entry["protoPayload"]["methodName"] == "google.pubsub.v1.Publisher.CreateTopic"
    })
    .await;
    assert_eq!(
        entry["logName"],
        "projects/local/logs/cloudaudit.googleapis.com%2Factivity"
    );
    let payload = &entry["protoPayload"];
    assert_eq!(payload["resourceName"], "topics/audited");
    assert_eq!(
        payload["authenticationInfo"]["principalEmail"],
        "admin@example.com"
    );
    assert_eq!(
        payload["status"],
        serde_json::json!({}),
        "OK is the empty status"
    );
}
