//! Cloud Logging's write API end to end: entries written to a real `sluice serve` over gRPC
//! (`LoggingServiceV2/WriteLogEntries`) and REST (`POST /v2/entries:write`) are routed by the
//! configured sinks and pulled back from their Pub/Sub subscriptions as JSON LogEntries.

mod support;

use std::collections::HashMap;

use googleapis_tonic_google_cloud_audit::google::cloud::audit::{AuditLog, AuthenticationInfo};
use serde_json::{json, Value};
use sluice_proto::google::api::MonitoredResource;
use sluice_proto::google::logging::r#type::{HttpRequest, LogSeverity};
use sluice_proto::google::logging::v2::logging_service_v2_client::LoggingServiceV2Client;
use sluice_proto::google::logging::v2::{
    log_entry, LogEntry, LogEntrySourceLocation, WriteLogEntriesPartialErrors,
    WriteLogEntriesRequest,
};
use sluice_proto::google::protobuf::{value, Any, Duration, Struct, Timestamp};
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{AcknowledgeRequest, PullRequest};
use sluice_proto::google::rpc;
use sluice_proto::prost::Message as _;
use sluice_proto::tonic::transport::Channel;
use sluice_proto::tonic::{Code, Status};
use support::{channel, TestServer};

/// The subscriptions of the built-in configuration: `storage-audit` routes
/// `resource.type="gcs_bucket"` here ...
const STORAGE_SUBSCRIPTION: &str = "projects/local/subscriptions/audit-storage";
/// ... and `errors` routes `severity>=ERROR` here.
const ERRORS_SUBSCRIPTION: &str = "projects/local/subscriptions/audit-errors";
const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
const PARTIAL_ERRORS_TYPE: &str =
    "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors";
/// The attribute that carries the entry's timestamp on exported messages.
const TIMESTAMP_ATTRIBUTE: &str = "logging.googleapis.com/timestamp";

/// A configuration whose sinks filter on protoPayload and httpRequest fields.
const PAYLOAD_FILTER_CONFIG: &str = r#"
[[topics]]
name = "deletes"

[[subscriptions]]
name = "deletes"
topic = "deletes"

[[sinks]]
name = "bucket-deletes"
filter = 'protoPayload.methodName="storage.objects.delete" AND protoPayload.authenticationInfo.principalEmail:"@example.com" AND protoPayload.numResponseItems>2 AND httpRequest.status=403'
destination = "deletes"
"#;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("the HTTP client builds")
}

/// A pulled message: the entry (its data, parsed) and its attributes.
struct Pulled {
    entry: Value,
    attributes: HashMap<String, String>,
}

/// Pulls and acknowledges every message available on `subscription` right now.
async fn pull_all(channel: &Channel, subscription: &str) -> Vec<Pulled> {
    let mut client = SubscriberClient::new(channel.clone());
    #[allow(deprecated, reason = "return_immediately keeps empty pulls short")]
    let request = PullRequest {
        subscription: subscription.to_owned(),
        max_messages: 100,
        return_immediately: true,
    };
    let received = client
        .pull(request)
        .await
        .expect("pull succeeds")
        .into_inner()
        .received_messages;
    let ack_ids: Vec<String> = received.iter().map(|m| m.ack_id.clone()).collect();
    if !ack_ids.is_empty() {
        client
            .acknowledge(AcknowledgeRequest {
                subscription: subscription.to_owned(),
                ack_ids,
            })
            .await
            .expect("acknowledge succeeds");
    }
    received
        .into_iter()
        .map(|received| {
            let message = received
                .message
                .expect("a received message has its message");
            let entry = serde_json::from_slice(&message.data).expect("message data is JSON");
            Pulled {
                entry,
                attributes: message.attributes,
            }
        })
        .collect()
}

fn resource(kind: &str, labels: &[(&str, &str)]) -> MonitoredResource {
    MonitoredResource {
        r#type: kind.to_owned(),
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    }
}

fn audit_payload() -> Any {
    let log = AuditLog {
        service_name: "storage.googleapis.com".to_owned(),
        method_name: "storage.objects.delete".to_owned(),
        resource_name: "projects/_/buckets/photos/objects/cat.jpg".to_owned(),
        num_response_items: 3,
        authentication_info: Some(AuthenticationInfo {
            principal_email: "alice@example.com".to_owned(),
            ..AuthenticationInfo::default()
        }),
        ..AuditLog::default()
    };
    Any {
        type_url: AUDIT_LOG_TYPE.to_owned(),
        value: log.encode_to_vec(),
    }
}

/// Builds a Cloud Storage audit entry with every field the tests read.
fn storage_audit_entry() -> LogEntry {
    LogEntry {
        log_name: "projects/demo/logs/cloudaudit.googleapis.com%2Fdata_access".to_owned(),
        resource: Some(resource("gcs_bucket", &[("bucket_name", "photos")])),
        timestamp: Some(Timestamp {
            seconds: 1_714_564_800,
            nanos: 250_000_000,
        }),
        severity: LogSeverity::Notice as i32,
        insert_id: "audit-1".to_owned(),
        http_request: Some(HttpRequest {
            request_method: "DELETE".to_owned(),
            status: 403,
            response_size: 1234,
            latency: Some(Duration {
                seconds: 1,
                nanos: 500_000_000,
            }),
            ..HttpRequest::default()
        }),
        labels: [("env".to_owned(), "prod".to_owned())].into(),
        source_location: Some(LogEntrySourceLocation {
            file: "storage.rs".to_owned(),
            line: 42,
            function: "delete".to_owned(),
        }),
        payload: Some(log_entry::Payload::ProtoPayload(audit_payload())),
        ..LogEntry::default()
    }
}

fn json_payload_entry(severity: LogSeverity) -> LogEntry {
    let nested = Struct {
        fields: [(
            "attempt".to_owned(),
            sluice_proto::google::protobuf::Value {
                kind: Some(value::Kind::NumberValue(2.0)),
            },
        )]
        .into(),
    };
    let payload = Struct {
        fields: [
            (
                "message".to_owned(),
                sluice_proto::google::protobuf::Value {
                    kind: Some(value::Kind::StringValue("disk full".to_owned())),
                },
            ),
            (
                "retry".to_owned(),
                sluice_proto::google::protobuf::Value {
                    kind: Some(value::Kind::StructValue(nested)),
                },
            ),
        ]
        .into(),
    };
    LogEntry {
        severity: severity as i32,
        payload: Some(log_entry::Payload::JsonPayload(payload)),
        ..LogEntry::default()
    }
}

fn write_request(entries: Vec<LogEntry>) -> WriteLogEntriesRequest {
    WriteLogEntriesRequest {
        log_name: "projects/demo/logs/app".to_owned(),
        resource: Some(resource("global", &[("project_id", "demo")])),
        labels: [
            ("env".to_owned(), "request".to_owned()),
            ("team".to_owned(), "storage".to_owned()),
        ]
        .into(),
        entries,
        ..WriteLogEntriesRequest::default()
    }
}

fn partial_errors(status: &Status) -> WriteLogEntriesPartialErrors {
    let details = rpc::Status::decode(status.details()).expect("details are a google.rpc.Status");
    assert_eq!(details.details.len(), 1, "one detail: {details:?}");
    assert_eq!(details.details[0].type_url, PARTIAL_ERRORS_TYPE);
    WriteLogEntriesPartialErrors::decode(details.details[0].value.as_slice())
        .expect("the detail decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_entries_are_routed_as_json() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let mut client = LoggingServiceV2Client::new(channel.clone());
    let request = write_request(vec![
        storage_audit_entry(),
        json_payload_entry(LogSeverity::Error),
        json_payload_entry(LogSeverity::Debug),
    ]);
    client
        .write_log_entries(request)
        .await
        .expect("the write succeeds");

    let storage = pull_all(&channel, STORAGE_SUBSCRIPTION).await;
    assert_eq!(storage.len(), 1, "only the gcs_bucket entry matches");
    let entry = &storage[0].entry;
    assert_eq!(
        entry["logName"],
        "projects/demo/logs/cloudaudit.googleapis.com%2Fdata_access"
    );
    assert_eq!(
        entry["resource"],
        json!({"type": "gcs_bucket", "labels": {"bucket_name": "photos"}})
    );
    assert_eq!(entry["timestamp"], "2024-05-01T12:00:00.250Z");
    assert_eq!(entry["severity"], "NOTICE");
    assert_eq!(entry["insertId"], "audit-1");
    assert_eq!(
        entry["httpRequest"],
        json!({"requestMethod": "DELETE", "status": 403, "responseSize": "1234", "latency": "1.500s"})
    );
    assert_eq!(
        entry["labels"],
        json!({"env": "prod", "team": "storage"}),
        "request labels merge in, the entry's own win"
    );
    assert_eq!(
        entry["sourceLocation"],
        json!({"file": "storage.rs", "line": "42", "function": "delete"})
    );
    assert_eq!(
        entry["protoPayload"],
        json!({
            "@type": AUDIT_LOG_TYPE,
            "serviceName": "storage.googleapis.com",
            "methodName": "storage.objects.delete",
            "resourceName": "projects/_/buckets/photos/objects/cat.jpg",
            "numResponseItems": "3",
            "authenticationInfo": {"principalEmail": "alice@example.com"}
        })
    );
    assert!(entry["receiveTimestamp"].is_string(), "{entry}");
    assert_eq!(
        storage[0]
            .attributes
            .get(TIMESTAMP_ATTRIBUTE)
            .map(String::as_str),
        Some("2024-05-01T12:00:00.250Z")
    );

    let errors = pull_all(&channel, ERRORS_SUBSCRIPTION).await;
    assert_eq!(
        errors.len(),
        1,
        "only the ERROR entry matches severity>=ERROR"
    );
    let entry = &errors[0].entry;
    assert_eq!(
        entry["logName"], "projects/demo/logs/app",
        "the request's logName"
    );
    assert_eq!(
        entry["resource"],
        json!({"type": "global", "labels": {"project_id": "demo"}}),
        "the request's resource"
    );
    assert_eq!(entry["severity"], "ERROR");
    assert_eq!(
        entry["jsonPayload"],
        json!({"message": "disk full", "retry": {"attempt": 2}})
    );
    assert_eq!(
        entry["labels"],
        json!({"env": "request", "team": "storage"})
    );
    assert!(
        entry["insertId"].as_str().is_some_and(|id| !id.is_empty()),
        "a generated insertId: {entry}"
    );
    assert_eq!(
        entry["timestamp"], entry["receiveTimestamp"],
        "an entry without timestamp gets the receive time"
    );

    drop(client);
    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_audit_payload_matches_payload_filters() {
    let mut server = TestServer::start(Some(PAYLOAD_FILTER_CONFIG));
    let channel = channel(&server).await;
    let mut client = LoggingServiceV2Client::new(channel.clone());
    let mut other_principal = storage_audit_entry();
    let log = AuditLog {
        method_name: "storage.objects.delete".to_owned(),
        num_response_items: 3,
        authentication_info: Some(AuthenticationInfo {
            principal_email: "mallory@elsewhere.org".to_owned(),
            ..AuthenticationInfo::default()
        }),
        ..AuditLog::default()
    };
    other_principal.payload = Some(log_entry::Payload::ProtoPayload(Any {
        type_url: AUDIT_LOG_TYPE.to_owned(),
        value: log.encode_to_vec(),
    }));
    other_principal.insert_id = "audit-2".to_owned();
    client
        .write_log_entries(write_request(vec![storage_audit_entry(), other_principal]))
        .await
        .expect("the write succeeds");

    let deletes = pull_all(&channel, "projects/local/subscriptions/deletes").await;
    assert_eq!(deletes.len(), 1, "only alice's delete matches");
    assert_eq!(deletes[0].entry["insertId"], "audit-1");

    drop(client);
    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_invalid_entry_rejects_the_request() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let mut client = LoggingServiceV2Client::new(channel.clone());
    let mut request = write_request(vec![
        storage_audit_entry(),
        json_payload_entry(LogSeverity::Error),
    ]);
    request.log_name = String::new();
    let status = client
        .write_log_entries(request)
        .await
        .expect_err("entry 1 has no logName");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("entries[1]: logName is missing"),
        "{}",
        status.message()
    );
    assert!(
        status.details().is_empty(),
        "no per-entry details without partialSuccess"
    );
    assert!(pull_all(&channel, STORAGE_SUBSCRIPTION).await.is_empty());
    assert!(pull_all(&channel, ERRORS_SUBSCRIPTION).await.is_empty());

    let mut request = write_request(vec![storage_audit_entry()]);
    request.entries[0].log_name = "syslog".to_owned();
    let status = client
        .write_log_entries(request)
        .await
        .expect_err("a bare LOG_ID is not a log name");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("\"syslog\""),
        "{}",
        status.message()
    );

    let mut request = write_request(vec![storage_audit_entry()]);
    request.log_name = "logs/app".to_owned();
    let status = client
        .write_log_entries(request)
        .await
        .expect_err("the request's logName is invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("The request's logName \"logs/app\" is invalid"),
        "{}",
        status.message()
    );
    assert!(pull_all(&channel, STORAGE_SUBSCRIPTION).await.is_empty());

    drop(client);
    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_partial_success_writes_valid_entries() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let mut client = LoggingServiceV2Client::new(channel.clone());
    let mut request = write_request(vec![
        json_payload_entry(LogSeverity::Critical),
        storage_audit_entry(),
        json_payload_entry(LogSeverity::Error),
    ]);
    request.resource = None;
    request.partial_success = true;
    let status = client
        .write_log_entries(request)
        .await
        .expect_err("entries 0 and 2 have no resource");
    assert_eq!(status.code(), Code::InvalidArgument);
    let errors = partial_errors(&status);
    let mut failed: Vec<i32> = errors.log_entry_errors.keys().copied().collect();
    failed.sort_unstable();
    assert_eq!(failed, [0, 2]);
    let error = &errors.log_entry_errors[&0];
    assert_eq!(error.code, Code::InvalidArgument as i32);
    assert!(
        error.message.starts_with("resource is missing"),
        "{}",
        error.message
    );

    let storage = pull_all(&channel, STORAGE_SUBSCRIPTION).await;
    assert_eq!(storage.len(), 1, "the valid entry is written");
    assert_eq!(storage[0].entry["insertId"], "audit-1");
    assert!(pull_all(&channel, ERRORS_SUBSCRIPTION).await.is_empty());

    drop(client);
    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_dry_run_ingests_nothing() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let mut client = LoggingServiceV2Client::new(channel.clone());
    let mut request = write_request(vec![
        storage_audit_entry(),
        json_payload_entry(LogSeverity::Alert),
    ]);
    request.dry_run = true;
    client
        .write_log_entries(request)
        .await
        .expect("a valid dry run succeeds");
    assert!(pull_all(&channel, STORAGE_SUBSCRIPTION).await.is_empty());
    assert!(pull_all(&channel, ERRORS_SUBSCRIPTION).await.is_empty());

    let mut request = write_request(vec![storage_audit_entry()]);
    request.dry_run = true;
    request.entries[0].resource = Some(resource("", &[]));
    let status = client
        .write_log_entries(request)
        .await
        .expect_err("a dry run still checks entries");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("resource.type is missing"),
        "{}",
        status.message()
    );

    drop(client);
    stop(&mut server, channel);
}

/// Closes the client's connection, then stops the server with SIGTERM and checks that it
/// exits cleanly. An open connection would hold the server for its whole grace period, so
/// the tests run on a multi-threaded runtime, where the connection's task can end while this
/// thread blocks.
fn stop(server: &mut TestServer, channel: Channel) {
    drop(channel);
    let (status, log) = server.terminate();
    assert!(status.success(), "sluice exited with {status}: {log}");
}

/// Posts `body` to `/v2/entries:write` and returns the HTTP status and the JSON response.
async fn post_entries(server: &TestServer, query: &str, body: &Value) -> (u16, Value) {
    let response = http_client()
        .post(format!("{}/v2/entries:write{query}", server.url))
        .json(body)
        .send()
        .await
        .expect("the POST succeeds");
    let status = response.status().as_u16();
    let body = response.json().await.expect("the response is JSON");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_entries_are_routed_as_json() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    // The shape of the body that google-cloud-logging's HTTP transport sends.
    let body = json!({
        "entries": [
            {
                "logName": "projects/demo/logs/python",
                "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "photos"}},
                "jsonPayload": {"message": "uploaded", "bytes": 1024},
                "severity": "INFO",
                "timestamp": "2024-05-01T14:00:00.5+02:00",
                "insertId": "rest-1",
                "httpRequest": {"requestMethod": "PUT", "status": 200, "latency": "0.25s"},
                "sourceLocation": {"file": "app.py", "line": 12, "function": "main"}
            },
            {
                "textPayload": "quota exceeded",
                "severity": 500
            },
            {
                "logName": "projects/demo/logs/python",
                "resource": {"type": "gce_instance"},
                "protoPayload": {
                    "@type": AUDIT_LOG_TYPE,
                    "methodName": "v1.compute.instances.delete"
                },
                "severity": "CRITICAL",
                "insertId": "rest-3"
            }
        ],
        "logName": "projects/demo/logs/default",
        "resource": {"type": "global"},
        "labels": {"source": "rest"},
        "partialSuccess": false,
        "dry_run": false
    });
    let (status, response) = post_entries(&server, "?$alt=json;enum-encoding=int", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response, json!({}));

    let storage = pull_all(&channel, STORAGE_SUBSCRIPTION).await;
    assert_eq!(storage.len(), 1);
    let entry = &storage[0].entry;
    assert_eq!(entry["logName"], "projects/demo/logs/python");
    assert_eq!(
        entry["timestamp"], "2024-05-01T12:00:00.500Z",
        "converted to UTC"
    );
    assert_eq!(entry["severity"], "INFO");
    assert_eq!(entry["insertId"], "rest-1");
    assert_eq!(
        entry["jsonPayload"],
        json!({"message": "uploaded", "bytes": 1024})
    );
    assert_eq!(
        entry["httpRequest"],
        json!({"requestMethod": "PUT", "status": 200, "latency": "0.250s"})
    );
    assert_eq!(
        entry["sourceLocation"],
        json!({"file": "app.py", "line": "12", "function": "main"}),
        "int64 fields are JSON strings"
    );
    assert_eq!(entry["labels"], json!({"source": "rest"}));
    assert!(entry["receiveTimestamp"].is_string(), "{entry}");

    let mut errors: Vec<Value> = pull_all(&channel, ERRORS_SUBSCRIPTION)
        .await
        .into_iter()
        .map(|pulled| pulled.entry)
        .collect();
    errors.sort_by_key(|entry| entry["severity"].as_str().map(str::to_owned));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0]["severity"], "CRITICAL");
    assert_eq!(
        errors[0]["protoPayload"],
        json!({"@type": AUDIT_LOG_TYPE, "methodName": "v1.compute.instances.delete"})
    );
    assert_eq!(
        errors[1]["severity"], "ERROR",
        "severity 500 is written by name"
    );
    assert_eq!(errors[1]["logName"], "projects/demo/logs/default");
    assert_eq!(errors[1]["resource"], json!({"type": "global"}));
    assert_eq!(errors[1]["textPayload"], "quota exceeded");

    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_errors_use_google_error_json() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;

    let body = json!({
        "entries": [
            {"logName": "projects/demo/logs/app", "resource": {"type": "gcs_bucket"}, "textPayload": "ok"},
            {"logName": "projects/demo/logs/app", "textPayload": "no resource"}
        ]
    });
    let (status, response) = post_entries(&server, "", &body).await;
    assert_eq!(status, 400);
    assert_eq!(response["error"]["code"], 400);
    assert_eq!(response["error"]["status"], "INVALID_ARGUMENT");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("entries[1]: resource is missing"),
        "{message}"
    );
    assert!(response["error"].get("details").is_none(), "{response}");
    assert!(pull_all(&channel, STORAGE_SUBSCRIPTION).await.is_empty());

    let unknown = json!({"entries": [{"textPayload": "x", "payload": "y"}]});
    let (status, response) = post_entries(&server, "", &unknown).await;
    assert_eq!(status, 400);
    assert_eq!(
        response,
        json!({"error": {
            "code": 400,
            "message": "Invalid JSON payload received. Unknown name \"payload\" at 'entries[0]': Cannot find field.",
            "status": "INVALID_ARGUMENT"
        }})
    );

    let mut partial = body.clone();
    partial["partialSuccess"] = json!(true);
    let (status, response) = post_entries(&server, "", &partial).await;
    assert_eq!(status, 400);
    assert_eq!(response["error"]["status"], "INVALID_ARGUMENT");
    let details = &response["error"]["details"];
    assert_eq!(details[0]["@type"], PARTIAL_ERRORS_TYPE);
    let entry_errors = details[0]["logEntryErrors"]
        .as_object()
        .expect("logEntryErrors is an object");
    assert_eq!(entry_errors.keys().collect::<Vec<_>>(), ["1"]);
    assert_eq!(entry_errors["1"]["code"], 3);
    let storage = pull_all(&channel, STORAGE_SUBSCRIPTION).await;
    assert_eq!(storage.len(), 1, "the valid entry is written");
    assert_eq!(storage[0].entry["textPayload"], "ok");

    let response = http_client()
        .post(format!("{}/v2/entries:write", server.url))
        .body("{\"entries\": [")
        .send()
        .await
        .expect("the POST succeeds");
    assert_eq!(response.status().as_u16(), 400);
    let response: Value = response.json().await.expect("the response is JSON");
    assert_eq!(response["error"]["status"], "INVALID_ARGUMENT");

    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_dry_run_ingests_nothing() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let body = json!({
        "entries": [{
            "logName": "projects/demo/logs/app",
            "resource": {"type": "gcs_bucket"},
            "severity": "EMERGENCY",
            "textPayload": "not stored"
        }],
        "partialSuccess": true,
        "dry_run": true
    });
    let (status, response) = post_entries(&server, "", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response, json!({}));
    assert!(pull_all(&channel, STORAGE_SUBSCRIPTION).await.is_empty());
    assert!(pull_all(&channel, ERRORS_SUBSCRIPTION).await.is_empty());

    stop(&mut server, channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_default_size_limits_are_accepted() {
    let mut server = TestServer::start(None);
    let channel = channel(&server).await;
    let mut client =
        LoggingServiceV2Client::new(channel.clone()).max_encoding_message_size(usize::MAX);
    // 20 entries of 256 KiB: 5 MiB, over tonic's default limit of 4 MiB per message.
    let text = "x".repeat(256 * 1024);
    let entries = (0..20)
        .map(|_| LogEntry {
            payload: Some(log_entry::Payload::TextPayload(text.clone())),
            ..LogEntry::default()
        })
        .collect();
    client
        .write_log_entries(write_request(entries))
        .await
        .expect("a 5 MiB gRPC write succeeds");

    // 12 entries of 256 KiB: 3 MiB, over axum's default body limit of 2 MiB.
    let entries: Vec<Value> = (0..12).map(|_| json!({"textPayload": text})).collect();
    let body = json!({
        "entries": entries,
        "logName": "projects/demo/logs/app",
        "resource": {"type": "global"}
    });
    let (status, response) = post_entries(&server, "", &body).await;
    assert_eq!(status, 200, "{response}");

    drop(client);
    stop(&mut server, channel);
}

#[tokio::test]
async fn forged_sluice_audit_entry_rejected() {
    let server = TestServer::start(None);
    let forged = json!({
        "entries": [{
            "logName": "projects/local/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "audited_resource"},
            "protoPayload": {
                "@type": AUDIT_LOG_TYPE,
                "serviceName": "sluice",
                "methodName": "google.pubsub.v1.Publisher.DeleteTopic"
            }
        }]
    });
    let (status, response) = post_entries(&server, "", &forged).await;
    assert_eq!(status, 400, "{response}");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("only sluice writes"), "{response}");

    // An audit entry of one of Google's services is what sinks forward, so it passes.
    let google = json!({
        "entries": [{
            "logName": "projects/local/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "gcs_bucket"},
            "protoPayload": {
                "@type": AUDIT_LOG_TYPE,
                "serviceName": "storage.googleapis.com",
                "methodName": "storage.objects.delete"
            }
        }]
    });
    let (status, response) = post_entries(&server, "", &google).await;
    assert_eq!(status, 200, "{response}");
}
