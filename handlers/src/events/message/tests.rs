use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;
use sluice_router::store::NewMessage;

use super::*;

const SUBSCRIPTION: &str = "projects/local/subscriptions/fn";
const TOPIC: &str = "projects/local/topics/uploads";

fn names() -> MessageNames<'static> {
    MessageNames {
        subscription: SUBSCRIPTION,
        topic: TOPIC,
    }
}

/// 2020-04-23T07:38:57.230Z
fn publish_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_587_627_537_230)
}

fn delivery(data: &[u8], attributes: &[(&str, &str)]) -> Delivery {
    Delivery {
        ack_id: "42-1".to_owned(),
        message: StoredMessage {
            topic: "uploads".to_owned(),
            seq: 42,
            publish_time: publish_time(),
            message: NewMessage {
                data: data.to_vec(),
                attributes: attributes
                    .iter()
                    .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
                ordering_key: String::new(),
            },
        },
        delivery_attempt: 0,
    }
}

fn notification(event_type: &str) -> Delivery {
    delivery(
        br#"{"bucket":"photos","name":"2024/cat.jpg","generation":"1700000000000001","kind":"storage#object"}"#,
        &[
            ("eventType", event_type),
            ("bucketId", "photos"),
            ("objectId", "2024/cat.jpg"),
            ("objectGeneration", "1700000000000001"),
            ("eventTime", "2024-01-02T03:04:05.123456Z"),
            ("payloadFormat", "JSON_API_V1"),
        ],
    )
}

/// Returns an exported audit entry whose insert id, log and timestamps are those of a
/// published Eventarc event, so that the expected id, source and time are Eventarc's.
fn audit_entry() -> Value {
    json!({
        "insertId": "-8vmrbve7pol2",
        "logName": "projects/example-project/logs/cloudaudit.googleapis.com%2Fdata_access",
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "storage.objects.create",
            "resourceName": "projects/_/buckets/example-bucket/objects/random.txt",
            "serviceName": "storage.googleapis.com",
        },
        "receiveTimestamp": "2022-10-19T15:05:54.839604461Z",
        "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "example-bucket"}},
        "severity": "INFO",
        "timestamp": "2022-10-19T15:05:54.138732321Z",
    })
}

#[test]
fn storage_notification_becomes_storage_cloudevent() {
    let event = cloudevent(&notification("OBJECT_FINALIZE"), names());

    assert_eq!(event.id, "42");
    assert_eq!(event.event_type, "google.cloud.storage.object.v1.finalized");
    assert_eq!(
        event.source,
        "//storage.googleapis.com/projects/_/buckets/photos"
    );
    assert_eq!(event.subject.as_deref(), Some("objects/2024/cat.jpg"));
    assert_eq!(event.time.as_deref(), Some("2024-01-02T03:04:05.123456Z"));
    assert_eq!(event.extensions["bucket"], "photos");
    assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
    assert_eq!(event.data.expect("data")["generation"], "1700000000000001");
}

#[test]
fn storage_event_types_map_to_cloudevent_types() {
    let cases = [
        (
            "OBJECT_FINALIZE",
            "google.cloud.storage.object.v1.finalized",
        ),
        ("OBJECT_DELETE", "google.cloud.storage.object.v1.deleted"),
        ("OBJECT_ARCHIVE", "google.cloud.storage.object.v1.archived"),
        (
            "OBJECT_METADATA_UPDATE",
            "google.cloud.storage.object.v1.metadataUpdated",
        ),
    ];
    for (attribute, expected) in cases {
        let event = cloudevent(&notification(attribute), names());
        assert_eq!(event.event_type, expected, "eventType {attribute}");
    }
}

#[test]
fn storage_notification_becomes_background_event() {
    let event = background_event(&notification("OBJECT_DELETE").message, TOPIC);

    assert_eq!(
        event.to_json(),
        json!({
            "context": {
                "eventId": "42",
                "timestamp": "2024-01-02T03:04:05.123456Z",
                "eventType": "google.storage.object.delete",
                "resource": {
                    "service": "storage.googleapis.com",
                    "name": "projects/_/buckets/photos/objects/2024/cat.jpg",
                    "type": "storage#object",
                },
            },
            "data": {
                "bucket": "photos",
                "name": "2024/cat.jpg",
                "generation": "1700000000000001",
                "kind": "storage#object",
            },
        })
    );
}

#[test]
fn pubsub_background_event_names_topic() {
    let event = background_event(
        &delivery(b"hello", &[("k", "v")]).message,
        "projects/other/topics/uploads",
    );

    assert_eq!(event.context.event_type, "google.pubsub.topic.publish");
    assert_eq!(
        event.context.resource["name"],
        "projects/other/topics/uploads"
    );
    assert_eq!(
        event.data,
        json!({
            "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            "data": "aGVsbG8=",
            "attributes": {"k": "v"},
        })
    );
}

#[test]
fn pubsub_message_becomes_message_published() {
    let mut delivery = delivery(b"hello", &[("k", "v")]);
    delivery.delivery_attempt = 2;
    let event = cloudevent(&delivery, names());

    assert_eq!(event.id, "42");
    assert_eq!(event.event_type, MESSAGE_PUBLISHED);
    assert_eq!(
        event.source,
        "//pubsub.googleapis.com/projects/local/topics/uploads"
    );
    assert_eq!(event.subject, None);
    assert_eq!(event.time.as_deref(), Some("2020-04-23T07:38:57.230Z"));
    assert_eq!(
        event.data,
        Some(json!({
            "message": {
                "attributes": {"k": "v"},
                "data": "aGVsbG8=",
                "messageId": "42",
                "message_id": "42",
                "publishTime": "2020-04-23T07:38:57.230Z",
                "publish_time": "2020-04-23T07:38:57.230Z",
            },
            "subscription": SUBSCRIPTION,
            "deliveryAttempt": 2,
        }))
    );
}

#[test]
fn audit_entry_becomes_audit_cloudevent() {
    let entry = audit_entry();
    let event = cloudevent(&delivery(entry.to_string().as_bytes(), &[]), names());

    assert_eq!(event.event_type, AUDIT_LOG_WRITTEN);
    assert_eq!(
        event.id,
        "projects/example-project/logs/cloudaudit.googleapis.com%2Fdata_access\
         -8vmrbve7pol21666191954138732"
    );
    assert_eq!(
        event.source,
        "//cloudaudit.googleapis.com/projects/example-project/logs/data_access"
    );
    assert_eq!(
        event.subject.as_deref(),
        Some("storage.googleapis.com/projects/_/buckets/example-bucket/objects/random.txt")
    );
    assert_eq!(
        event.time.as_deref(),
        Some("2022-10-19T15:05:54.839604461Z")
    );
    assert_eq!(
        event.datacontenttype.as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(event.extensions["servicename"], "storage.googleapis.com");
    assert_eq!(event.extensions["methodname"], "storage.objects.create");
    assert_eq!(
        event.extensions["resourcename"],
        "projects/_/buckets/example-bucket/objects/random.txt"
    );
    assert_eq!(
        event.extensions["recordedtime"],
        "2022-10-19T15:05:54.138732321Z"
    );
    assert_eq!(event.data, Some(entry));
}

#[test]
fn audit_entry_without_log_name_uses_message_id() {
    let mut entry = audit_entry();
    entry.as_object_mut().expect("object").remove("logName");
    let event = cloudevent(&delivery(entry.to_string().as_bytes(), &[]), names());

    assert_eq!(event.id, "42");
    assert_eq!(event.source, "//cloudaudit.googleapis.com/projects/local");
}

#[test]
fn audit_background_event_is_pubsub_event() {
    let event = background_event(
        &delivery(audit_entry().to_string().as_bytes(), &[]).message,
        TOPIC,
    );

    assert_eq!(event.context.event_type, "google.pubsub.topic.publish");
}

#[test]
fn log_entry_without_audit_payload_is_pubsub_event() {
    let entry = json!({"logName": "projects/p/logs/app", "jsonPayload": {"message": "hi"}});
    let event = cloudevent(&delivery(entry.to_string().as_bytes(), &[]), names());

    assert_eq!(event.event_type, MESSAGE_PUBLISHED);
}

#[test]
fn notification_with_unknown_event_type_is_pubsub_event() {
    let event = cloudevent(&notification("OBJECT_RESTORE"), names());

    assert_eq!(event.event_type, MESSAGE_PUBLISHED);
}
