//! Event conversion on the shared fixtures: Cloud Storage notification messages become the
//! storage events, and Pub/Sub messages the Pub/Sub events, that the Functions Framework
//! conformance suite expects a background function to receive.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use sluice_handlers::event::to_event;
use sluice_router::store::{NewMessage, StoredMessage};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");

fn read_fixture(relative_path: &str) -> String {
    let path = Path::new(FIXTURES).join(relative_path);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn read_json(relative_path: &str) -> Value {
    serde_json::from_str(&read_fixture(relative_path)).expect("fixture is JSON")
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, value)| {
                    let text = value.as_str().expect("attribute values are strings");
                    (key.clone(), text.to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Returns the Cloud Storage notification messages by fixture id, as delivered on `topic`.
fn notification_messages() -> BTreeMap<String, StoredMessage> {
    read_fixture("audit-logs/gcs-notifications/messages.jsonl")
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("fixture line is JSON");
            let message = &row["message"];
            let data = message["data"].as_str().unwrap_or("");
            let stored = StoredMessage {
                topic: "uploads".to_owned(),
                seq: message["messageId"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .expect("numeric messageId"),
                publish_time: SystemTime::UNIX_EPOCH,
                message: NewMessage {
                    data: BASE64.decode(data).expect("data is base64"),
                    attributes: string_map(&message["attributes"]),
                    ordering_key: String::new(),
                },
            };
            let id = row["id"].as_str().expect("fixture id").to_owned();
            (id, stored)
        })
        .collect()
}

fn data_json(data: &[u8]) -> Value {
    serde_json::from_slice(data).expect("event data is JSON")
}

#[test]
fn storage_notification_matches_conformance_event() {
    let messages = notification_messages();
    let expected = read_json("conformance/events/generate/data/storage-legacy-output.json");

    let (data, context) = to_event(&messages["gcs-finalize-new"]);

    assert_eq!(data_json(&data), expected["data"]);
    assert_eq!(context.event_type, expected["context"]["eventType"]);
    assert_eq!(context.resource, expected["context"]["resource"]);
    assert_eq!(context.event_id, "1001");
    assert_eq!(context.timestamp, "2020-04-23T07:38:57.230Z");
}

#[test]
fn notification_event_types() {
    let messages = notification_messages();
    let cases = [
        ("gcs-finalize-new", "google.storage.object.finalize"),
        ("gcs-finalize-overwrite", "google.storage.object.finalize"),
        ("gcs-delete-overwritten", "google.storage.object.delete"),
        (
            "gcs-metadata-update",
            "google.storage.object.metadataUpdate",
        ),
        ("gcs-finalize-no-payload", "google.storage.object.finalize"),
    ];
    assert_eq!(messages.len(), cases.len(), "every fixture has a case");

    for (id, expected) in cases {
        let (_, context) = to_event(&messages[id]);
        assert_eq!(context.event_type, expected, "{id}");
    }
}

#[test]
fn notification_without_payload_builds_object() {
    let messages = notification_messages();

    let (data, context) = to_event(&messages["gcs-finalize-no-payload"]);

    assert_eq!(
        data_json(&data),
        serde_json::json!({
            "bucket": "some-bucket",
            "name": "other/readme.txt",
            "generation": "1587627537231057",
        })
    );
    assert_eq!(
        context.resource["name"],
        "projects/_/buckets/some-bucket/objects/other/readme.txt"
    );
}

/// Publishes the message of a conformance Pub/Sub case on topic `gcf-test` and checks the
/// event against the case's expected output, with the project `local` in place of the
/// fixture's project.
fn check_pubsub_case(case: &str) {
    let expected = read_json(&format!(
        "conformance/events/generate/data/{case}-legacy-output.json"
    ));
    let expected_data = &expected["data"];
    let payload = expected_data["data"].as_str().expect("base64 data");
    let message = StoredMessage {
        topic: "gcf-test".to_owned(),
        seq: 7,
        publish_time: SystemTime::UNIX_EPOCH,
        message: NewMessage {
            data: BASE64.decode(payload).expect("data is base64"),
            attributes: string_map(&expected_data["attributes"]),
            ordering_key: String::new(),
        },
    };
    let mut expected_resource = expected["context"]["resource"].clone();
    expected_resource["name"] = Value::from("projects/local/topics/gcf-test");

    let (data, context) = to_event(&message);

    assert_eq!(&data_json(&data), expected_data, "{case} data");
    assert_eq!(
        context.event_type, expected["context"]["eventType"],
        "{case} eventType"
    );
    assert_eq!(context.resource, expected_resource, "{case} resource");
    assert_eq!(context.event_id, "7", "{case} eventId");
    assert_eq!(
        context.timestamp, "1970-01-01T00:00:00.000Z",
        "{case} timestamp"
    );
}

#[test]
fn pubsub_text_matches_conformance_event() {
    check_pubsub_case("pubsub_text");
}

#[test]
fn pubsub_binary_matches_conformance_event() {
    check_pubsub_case("pubsub_binary");
}
