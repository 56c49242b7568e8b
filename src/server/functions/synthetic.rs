//! The synthetic event of `sluice functions call`: a message like the ones the function's
//! trigger publishes, with the event id, timestamp and resource filled in around the
//! caller's data.
//!
//! - A topic trigger: a JSON object with a `data` (base64) or `attributes` member is a
//!   PubsubMessage, as gcloud takes it. Any other JSON is the message data as text.
//! - A bucket trigger: the JSON object is the object resource, and the missing fields
//!   (`bucket`, `name`, `generation` and the rest) are filled in.
//! - An audit-log trigger: the JSON object is the LogEntry, and the missing fields
//!   (`logName`, `protoPayload` with the trigger's serviceName and methodName) are filled in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sluice_router::deliver::{format_time, Delivery};
use sluice_router::store::{NewMessage, StoredMessage};

use super::spec::Trigger;
use crate::server::names;

/// The object name of a synthetic storage event whose data names none.
const DEFAULT_OBJECT: &str = "sluice-call-object";

/// The number part of the last synthetic event id: microseconds since the Unix epoch, or one
/// more than the last when calls come faster. So ids do not repeat within the process, nor
/// after a restart while the clock does not go back. Otherwise a function that deduplicates
/// on the event id would skip the first call after each start.
static LAST_CALL: AtomicU64 = AtomicU64::new(0);

/// Returns the number of the next synthetic event: `micros`, or one more than the last.
fn next_call_number(micros: u64) -> u64 {
    // Below 2^61, so that `(1 << 62) + number` cannot overflow.
    let micros = micros.min((1 << 61) - 1);
    let previous = LAST_CALL
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(micros.max(last + 1))
        })
        .unwrap_or_default();
    micros.max(previous + 1)
}

/// Builds the delivery of a synthetic event on `topic` for `trigger` from `data`.
///
/// # Errors
///
/// Returns a message when the data does not fit the trigger, such as a bucket event whose
/// data is not a JSON object.
pub(crate) fn delivery(trigger: &Trigger, topic: &str, data: &Value) -> Result<Delivery, String> {
    let now = SystemTime::now();
    let micros = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    // Synthetic ids sit far above the ids of published messages, so they do not collide.
    let seq = (1 << 62) + next_call_number(u64::try_from(micros).unwrap_or(u64::MAX >> 2));
    let message = match trigger {
        Trigger::Topic { .. } => pubsub_message(data)?,
        Trigger::Bucket { bucket, event_type } => {
            let object = object_resource(bucket, data, micros, now)?;
            let name = object["name"].as_str().unwrap_or(DEFAULT_OBJECT).to_owned();
            let generation = object["generation"].as_str().unwrap_or("1").to_owned();
            let attributes = BTreeMap::from([
                ("eventType".to_owned(), event_type.as_str().to_owned()),
                ("bucketId".to_owned(), bucket.clone()),
                ("objectId".to_owned(), name),
                ("objectGeneration".to_owned(), generation),
                ("eventTime".to_owned(), format_time(now)),
                ("payloadFormat".to_owned(), "JSON_API_V1".to_owned()),
                (
                    "notificationConfig".to_owned(),
                    format!("projects/_/buckets/{bucket}/notificationConfigs/0"),
                ),
            ]);
            NewMessage {
                data: object.to_string().into_bytes(),
                attributes,
                ordering_key: String::new(),
            }
        }
        Trigger::AuditLog { filters, .. } => {
            let entry = audit_entry(filters, data, seq, now)?;
            NewMessage {
                data: entry.to_string().into_bytes(),
                attributes: BTreeMap::from([(
                    sluice_router::route::TIMESTAMP_ATTRIBUTE.to_owned(),
                    format_time(now),
                )]),
                ordering_key: String::new(),
            }
        }
    };
    Ok(Delivery {
        ack_id: "sluice-call".to_owned(),
        message: StoredMessage {
            topic: topic.to_owned(),
            seq,
            publish_time: now,
            message,
        },
        delivery_attempt: 1,
    })
}

fn pubsub_message(data: &Value) -> Result<NewMessage, String> {
    let Value::Object(fields) = data else {
        return Ok(NewMessage {
            data: data.to_string().into_bytes(),
            ..NewMessage::default()
        });
    };
    if !fields.contains_key("data") && !fields.contains_key("attributes") {
        return Ok(NewMessage {
            data: data.to_string().into_bytes(),
            ..NewMessage::default()
        });
    }
    let bytes =
        match fields.get("data") {
            Some(Value::String(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|err| format!("--data: \"data\" is not valid base64: {err}"))?,
            Some(_) => return Err("--data: \"data\" must be a base64 string".to_owned()),
            None => Vec::new(),
        };
    let mut attributes = BTreeMap::new();
    if let Some(given) = fields.get("attributes") {
        let Value::Object(given) = given else {
            return Err("--data: \"attributes\" must be an object of strings".to_owned());
        };
        for (key, value) in given {
            let Value::String(value) = value else {
                return Err(format!("--data: attribute {key:?} must be a string"));
            };
            attributes.insert(key.clone(), value.clone());
        }
    }
    Ok(NewMessage {
        data: bytes,
        attributes,
        ordering_key: String::new(),
    })
}

fn object_resource(
    bucket: &str,
    data: &Value,
    micros: u128,
    now: SystemTime,
) -> Result<Value, String> {
    let mut object = as_object(data, "an object resource")?;
    let time = format_time(now);
    let defaults = [
        ("kind", json!("storage#object")),
        ("bucket", json!(bucket)),
        ("name", json!(DEFAULT_OBJECT)),
        ("generation", json!(micros.to_string())),
        ("metageneration", json!("1")),
        ("contentType", json!("application/octet-stream")),
        ("size", json!("0")),
        ("timeCreated", json!(time)),
        ("updated", json!(time)),
        ("storageClass", json!("STANDARD")),
    ];
    for (key, value) in defaults {
        object.entry(key).or_insert(value);
    }
    let id = format!(
        "{bucket}/{}/{}",
        object["name"].as_str().unwrap_or(DEFAULT_OBJECT),
        object["generation"].as_str().unwrap_or("1")
    );
    object.entry("id").or_insert(json!(id));
    Ok(Value::Object(object))
}

fn audit_entry(
    filters: &BTreeMap<String, String>,
    data: &Value,
    seq: u64,
    now: SystemTime,
) -> Result<Value, String> {
    let mut entry = as_object(data, "a LogEntry")?;
    let project = names::config_project();
    let time = format_time(now);
    let defaults = [
        (
            "logName",
            json!(format!(
                "projects/{project}/logs/cloudaudit.googleapis.com%2Factivity"
            )),
        ),
        ("insertId", json!(format!("call-{seq}"))),
        ("timestamp", json!(time)),
        ("receiveTimestamp", json!(time)),
        ("severity", json!("NOTICE")),
        (
            "resource",
            json!({"type": "audited_resource", "labels": {"project_id": project}}),
        ),
    ];
    for (key, value) in defaults {
        entry.entry(key).or_insert(value);
    }
    let payload = entry
        .entry("protoPayload")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(payload) = payload else {
        return Err("--data: \"protoPayload\" must be an object".to_owned());
    };
    payload
        .entry("@type")
        .or_insert(json!("type.googleapis.com/google.cloud.audit.AuditLog"));
    for key in ["serviceName", "methodName", "resourceName"] {
        if let Some(value) = filters.get(key) {
            payload.entry(key).or_insert(json!(value));
        }
    }
    Ok(Value::Object(entry))
}

fn as_object(data: &Value, what: &str) -> Result<Map<String, Value>, String> {
    match data {
        Value::Object(fields) => Ok(fields.clone()),
        Value::Null => Ok(Map::new()),
        _ => Err(format!("--data must be a JSON object: {what}")),
    }
}

#[cfg(test)]
mod tests {
    use sluice_router::buckets::EventType;

    use super::*;

    #[test]
    fn call_numbers_follow_the_clock_and_never_repeat() {
        let now = 1_800_000_000_000_000;
        let first = next_call_number(now);
        assert!(first >= now, "{first}");
        // A second call in the same microsecond, or with the clock set back, still grows.
        let second = next_call_number(now);
        assert!(second > first, "{second} after {first}");
        let third = next_call_number(now - 5_000_000);
        assert!(third > second, "{third} after {second}");
    }

    #[test]
    fn bucket_event_fills_object() {
        let trigger = Trigger::Bucket {
            bucket: "uploads".to_owned(),
            event_type: EventType::ObjectFinalize,
        };
        let delivery =
            delivery(&trigger, "function-f", &json!({"name": "cat.jpg"})).expect("valid");
        let attributes = &delivery.message.message.attributes;
        assert_eq!(attributes["eventType"], "OBJECT_FINALIZE");
        assert_eq!(attributes["objectId"], "cat.jpg");
        let object: Value = serde_json::from_slice(&delivery.message.message.data).expect("json");
        assert_eq!(object["bucket"], "uploads");
        assert_eq!(object["name"], "cat.jpg");
        assert!(object["generation"].is_string());
    }

    #[test]
    fn topic_event_takes_pubsub_message() {
        let trigger = Trigger::Topic {
            topic: "offers".to_owned(),
            event_type: None,
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode("hi");
        let message = json!({"data": encoded, "attributes": {"k": "v"}});
        let delivery = delivery(&trigger, "offers", &message).expect("valid");
        assert_eq!(delivery.message.message.data, b"hi");
        assert_eq!(delivery.message.message.attributes["k"], "v");
        let plain = super::delivery(&trigger, "offers", &json!({"sku": 1})).expect("valid");
        assert_eq!(plain.message.message.data, br#"{"sku":1}"#);
    }

    #[test]
    fn audit_event_names_method() {
        let trigger = Trigger::AuditLog {
            filters: BTreeMap::from([
                (
                    "serviceName".to_owned(),
                    "storage.googleapis.com".to_owned(),
                ),
                ("methodName".to_owned(), "storage.objects.create".to_owned()),
            ]),
            resource_name_pattern: None,
        };
        let delivery = delivery(&trigger, "function-f", &Value::Null).expect("valid");
        let entry: Value = serde_json::from_slice(&delivery.message.message.data).expect("json");
        assert_eq!(
            entry["protoPayload"]["methodName"],
            "storage.objects.create"
        );
        assert!(entry["logName"]
            .as_str()
            .expect("a string")
            .contains("cloudaudit.googleapis.com"));
    }
}
