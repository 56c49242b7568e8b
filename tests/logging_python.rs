//! Google's Python client, google-cloud-logging, writes audit-log entries to a real
//! `sluice serve`, over JSON and over gRPC; a sink routes the deletes to a topic, and the
//! Python Pub/Sub client pulls them with their AuditLog payloads as JSON.
//!
//! The clients come from `scripts/test`, which exports `SLUICE_TEST_PYTHON`.

mod support;

use serde_json::Value;
use support::{python, TestServer};

const CONFIG: &str = r#"
[[topics]]
name = "audit-deletes"

[[subscriptions]]
name = "audit-deletes"
topic = "audit-deletes"

[[sinks]]
name = "deletes"
destination = "audit-deletes"
filter = '''
resource.type="gcs_bucket"
protoPayload.serviceName="storage.googleapis.com"
protoPayload.methodName="storage.objects.delete"
protoPayload.authenticationInfo.principalEmail:"@example.com"
'''
"#;

#[test]
fn python_logging_entries_reach_pubsub() {
    let server = TestServer::start(Some(CONFIG));
    let endpoint = server
        .url()
        .strip_prefix("http://")
        .expect("an http URL")
        .to_owned();
    let output = python::run(
        "logging_client.py",
        &[&endpoint],
        &[("PUBSUB_EMULATOR_HOST", &endpoint)],
    );
    python::assert_success("logging_client.py", &output);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary at the end of the output:\n{stdout}"));
    let messages = summary["messages"].as_array().expect("a list of messages");
    let mut resources: Vec<&str> = messages
        .iter()
        .map(|entry| {
            entry["protoPayload"]["resourceName"]
                .as_str()
                .unwrap_or("?")
        })
        .collect();
    resources.sort_unstable();
    assert_eq!(
        resources,
        [
            "projects/_/buckets/photos/objects/grpc-batch.jpg",
            "projects/_/buckets/photos/objects/grpc.jpg",
            "projects/_/buckets/photos/objects/http-batch.jpg",
            "projects/_/buckets/photos/objects/http.jpg",
        ],
        "only the deletes, from both transports: {summary}"
    );
    for entry in messages {
        let payload = &entry["protoPayload"];
        assert_eq!(
            payload["@type"], "type.googleapis.com/google.cloud.audit.AuditLog",
            "{entry}"
        );
        assert_eq!(payload["methodName"], "storage.objects.delete", "{entry}");
        assert_eq!(
            payload["authenticationInfo"]["principalEmail"], "ops@example.com",
            "{entry}"
        );
        assert_eq!(
            entry["logName"], "projects/local/logs/cloudaudit.googleapis.com%2Factivity",
            "{entry}"
        );
        assert_eq!(entry["resource"]["type"], "gcs_bucket", "{entry}");
        assert!(entry["labels"]["transport"].is_string(), "{entry}");
    }
}
