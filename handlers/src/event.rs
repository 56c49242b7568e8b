//! Conversion of a delivered Pub/Sub message into the `(data, context)` pair of a background
//! function, in the legacy background-event format of Cloud Functions.
//!
//! A Cloud Storage notification becomes a storage event: `data` is the object resource as
//! JSON and the event type is one of `google.storage.object.*`. Every other message becomes a
//! `google.pubsub.topic.publish` event whose `data` wraps the message as a `PubsubMessage`.

use std::str::FromStr as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sluice_router::buckets::EventType;
use sluice_router::deliver::format_time;
use sluice_router::store::StoredMessage;

use crate::contract::EventContext;

/// Event type of a storage event for a newly written object generation.
pub const OBJECT_FINALIZE: &str = "google.storage.object.finalize";
/// Event type of a storage event for a generation removed for good.
pub const OBJECT_DELETE: &str = "google.storage.object.delete";
/// Event type of a storage event for a live generation that became noncurrent.
pub const OBJECT_ARCHIVE: &str = "google.storage.object.archive";
/// Event type of a storage event for a metadata change of the live generation.
pub const OBJECT_METADATA_UPDATE: &str = "google.storage.object.metadataUpdate";
/// Event type of a Pub/Sub event.
pub const TOPIC_PUBLISH: &str = "google.pubsub.topic.publish";

/// The project in the resource names of Pub/Sub events. A sluice server serves one project.
pub const PROJECT: &str = "local";

const PUBSUB_MESSAGE_TYPE: &str = "type.googleapis.com/google.pubsub.v1.PubsubMessage";

/// Converts a delivered message into the payload and context that a background function
/// receives.
///
/// A message is a storage notification when it has the `eventType`, `bucketId` and `objectId`
/// attributes and `eventType` is one of `OBJECT_FINALIZE`, `OBJECT_DELETE`, `OBJECT_ARCHIVE`
/// and `OBJECT_METADATA_UPDATE`. Its data is the object resource JSON, or, for a notification
/// with payload format `NONE` (empty data), a minimal object with `bucket`, `name` and
/// `generation` built from the attributes. Its timestamp is the `eventTime` attribute.
///
/// Every other message becomes a Pub/Sub event on `projects/local/topics/{topic}`, with its
/// publish time as the timestamp. In both cases the event id is the message id, so a
/// redelivery has the same id as the first delivery.
pub fn to_event(message: &StoredMessage) -> (Vec<u8>, EventContext) {
    match storage_event(message) {
        Some(event) => event,
        None => pubsub_event(message),
    }
}

/// Returns the background-event type of a storage notification's `eventType`.
pub fn storage_event_type(event_type: EventType) -> &'static str {
    match event_type {
        EventType::ObjectFinalize => OBJECT_FINALIZE,
        EventType::ObjectDelete => OBJECT_DELETE,
        EventType::ObjectArchive => OBJECT_ARCHIVE,
        EventType::ObjectMetadataUpdate => OBJECT_METADATA_UPDATE,
    }
}

fn storage_event(message: &StoredMessage) -> Option<(Vec<u8>, EventContext)> {
    let attributes = &message.message.attributes;
    let event_type = EventType::from_str(attributes.get("eventType")?).ok()?;
    let bucket = attributes.get("bucketId")?;
    let name = attributes.get("objectId")?;

    let data = if message.message.data.is_empty() {
        minimal_object(bucket, name, attributes.get("objectGeneration"))
    } else {
        message.message.data.clone()
    };
    let timestamp = attributes
        .get("eventTime")
        .cloned()
        .unwrap_or_else(|| format_time(message.publish_time));
    let context = EventContext {
        event_id: message.id(),
        timestamp,
        event_type: storage_event_type(event_type).to_owned(),
        resource: json!({
            "service": "storage.googleapis.com",
            "name": format!("projects/_/buckets/{bucket}/objects/{name}"),
            "type": "storage#object",
        }),
    };
    Some((data, context))
}

/// Builds the object JSON of a notification without payload. The generation stays a string,
/// as the JSON API writes int64 values.
fn minimal_object(bucket: &str, name: &str, generation: Option<&String>) -> Vec<u8> {
    let mut object = Map::new();
    object.insert("bucket".to_owned(), Value::from(bucket));
    object.insert("name".to_owned(), Value::from(name));
    if let Some(generation) = generation {
        object.insert("generation".to_owned(), Value::from(generation.as_str()));
    }
    Value::Object(object).to_string().into_bytes()
}

fn pubsub_event(message: &StoredMessage) -> (Vec<u8>, EventContext) {
    let mut pubsub_message = Map::new();
    pubsub_message.insert("@type".to_owned(), Value::from(PUBSUB_MESSAGE_TYPE));
    // `data` is present even when empty, so that functions that decode `data["data"]`
    // without a check do not fail on messages that carry only attributes.
    pubsub_message.insert(
        "data".to_owned(),
        Value::from(BASE64.encode(&message.message.data)),
    );
    // Cloud Functions leaves `attributes` out of messages that have none.
    if !message.message.attributes.is_empty() {
        let attributes: Map<String, Value> = message
            .message
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
            .collect();
        pubsub_message.insert("attributes".to_owned(), Value::Object(attributes));
    }

    let context = EventContext {
        event_id: message.id(),
        timestamp: format_time(message.publish_time),
        event_type: TOPIC_PUBLISH.to_owned(),
        resource: json!({
            "service": "pubsub.googleapis.com",
            "name": format!("projects/{PROJECT}/topics/{}", message.topic),
            "type": PUBSUB_MESSAGE_TYPE,
        }),
    };
    (
        Value::Object(pubsub_message).to_string().into_bytes(),
        context,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use sluice_router::store::NewMessage;

    use super::*;

    /// 2020-04-23T07:38:57.230Z
    fn publish_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_587_627_537_230)
    }

    fn message(data: &[u8], attributes: &[(&str, &str)]) -> StoredMessage {
        StoredMessage {
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
        }
    }

    fn notification(event_type: &str, data: &[u8]) -> StoredMessage {
        message(
            data,
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

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("event data is JSON")
    }

    #[test]
    fn storage_notification_keeps_object_json() {
        let object =
            br#"{"bucket":"photos","name":"2024/cat.jpg","generation":"1700000000000001"}"#;
        let (data, context) = to_event(&notification("OBJECT_FINALIZE", object));

        assert_eq!(data, object.to_vec());
        assert_eq!(context.event_id, "42");
        assert_eq!(context.timestamp, "2024-01-02T03:04:05.123456Z");
        assert_eq!(context.event_type, "google.storage.object.finalize");
        assert_eq!(
            context.resource,
            json!({
                "service": "storage.googleapis.com",
                "name": "projects/_/buckets/photos/objects/2024/cat.jpg",
                "type": "storage#object",
            })
        );
    }

    #[test]
    fn storage_event_types_map_to_legacy_names() {
        let cases = [
            ("OBJECT_FINALIZE", "google.storage.object.finalize"),
            ("OBJECT_DELETE", "google.storage.object.delete"),
            ("OBJECT_ARCHIVE", "google.storage.object.archive"),
            (
                "OBJECT_METADATA_UPDATE",
                "google.storage.object.metadataUpdate",
            ),
        ];
        for (attribute, expected) in cases {
            let (_, context) = to_event(&notification(attribute, b"{}"));
            assert_eq!(context.event_type, expected, "eventType {attribute}");
        }
    }

    #[test]
    fn notification_without_payload_gets_minimal_object() {
        let (data, _) = to_event(&notification("OBJECT_DELETE", b""));

        assert_eq!(
            json(&data),
            json!({"bucket": "photos", "name": "2024/cat.jpg", "generation": "1700000000000001"})
        );
    }

    #[test]
    fn storage_event_without_event_time_uses_publish_time() {
        let mut stored = notification("OBJECT_FINALIZE", b"{}");
        stored.message.attributes.remove("eventTime");
        let (_, context) = to_event(&stored);

        assert_eq!(context.timestamp, "2020-04-23T07:38:57.230Z");
    }

    #[test]
    fn unknown_storage_event_type_is_pubsub_event() {
        let (_, context) = to_event(&notification("OBJECT_RESTORE", b"{}"));

        assert_eq!(context.event_type, "google.pubsub.topic.publish");
    }

    #[test]
    fn message_without_object_id_is_pubsub_event() {
        let mut stored = notification("OBJECT_FINALIZE", b"{}");
        stored.message.attributes.remove("objectId");
        let (_, context) = to_event(&stored);

        assert_eq!(context.event_type, "google.pubsub.topic.publish");
    }

    #[test]
    fn pubsub_event_wraps_message() {
        let (data, context) = to_event(&message(b"test message 3", &[("attr1", "attr1-value")]));

        assert_eq!(
            json(&data),
            json!({
                "@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
                "data": "dGVzdCBtZXNzYWdlIDM=",
                "attributes": {"attr1": "attr1-value"},
            })
        );
        assert_eq!(context.event_id, "42");
        assert_eq!(context.timestamp, "2020-04-23T07:38:57.230Z");
        assert_eq!(context.event_type, "google.pubsub.topic.publish");
        assert_eq!(
            context.resource,
            json!({
                "service": "pubsub.googleapis.com",
                "name": "projects/local/topics/uploads",
                "type": "type.googleapis.com/google.pubsub.v1.PubsubMessage",
            })
        );
    }

    #[test]
    fn pubsub_event_without_attributes_omits_them() {
        let (data, _) = to_event(&message(&[1, 2, 3, 4], &[]));

        assert_eq!(
            json(&data),
            json!({"@type": "type.googleapis.com/google.pubsub.v1.PubsubMessage", "data": "AQIDBA=="})
        );
    }

    #[test]
    fn pubsub_event_without_data_has_empty_data() {
        let (data, _) = to_event(&message(b"", &[("k", "v")]));

        assert_eq!(json(&data)["data"], "");
    }
}
