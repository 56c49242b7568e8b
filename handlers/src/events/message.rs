//! The events that the `background` and `cloudevent` push formats build from a delivered
//! Pub/Sub message.
//!
//! The message decides the event:
//!
//! - A Cloud Storage notification (the attributes `eventType`, `bucketId` and `objectId`)
//!   becomes a storage event, `google.storage.object.finalize` and its siblings, or
//!   `google.cloud.storage.object.v1.finalized` and its siblings. Its id is the message id,
//!   its time the `eventTime` attribute, and its data the object resource.
//! - For the `cloudevent` format, a message whose data is a LogEntry with an audit-log
//!   payload (`protoPayload` of type `google.cloud.audit.AuditLog`), as a log sink exports
//!   it, becomes `google.cloud.audit.log.v1.written`. The background format has no audit
//!   event type, so there it is a Pub/Sub event.
//! - Any other message becomes a Pub/Sub event, `google.pubsub.topic.publish` or
//!   `google.cloud.pubsub.topic.v1.messagePublished`, whose id is the message id and whose
//!   time is the publish time.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sluice_router::deliver::{format_time, Delivery};
use sluice_router::store::StoredMessage;
use tracing::debug;

use super::cloudevent::CloudEvent;
use super::convert;
use super::legacy::LegacyEvent;
use crate::event::{to_event, TOPIC_PUBLISH};

/// The CloudEvent type of an audit-log entry.
pub const AUDIT_LOG_WRITTEN: &str = "google.cloud.audit.log.v1.written";

/// The CloudEvent type of a Pub/Sub message.
pub const MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// The `@type` of an audit-log payload.
const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

/// The `dataschema` of Eventarc's audit-log events.
const AUDIT_LOG_SCHEMA: &str =
    "https://googleapis.github.io/google-cloudevents/jsonschema/google/events/cloud/audit/v1/LogEntryData.json";

/// The `datacontenttype` of Eventarc's audit-log events.
const AUDIT_LOG_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The log name prefix of audit logs, as it appears, percent-encoded, after `/logs/`.
const AUDIT_LOG_PREFIX: &str = "cloudaudit.googleapis.com%2F";

/// The resource names a push request gives a delivery.
#[derive(Debug, Clone, Copy)]
pub struct MessageNames<'a> {
    /// The subscription, `projects/{project}/subscriptions/{name}`.
    pub subscription: &'a str,
    /// The message's topic, `projects/{project}/topics/{name}`.
    pub topic: &'a str,
}

/// Builds the JSON body of a wrapped Pub/Sub push, which is also the data of a Pub/Sub
/// CloudEvent: `{"message": {...}, "subscription": "...", "deliveryAttempt": n}`.
///
/// The message carries its id and publish time under both their camelCase and snake_case
/// names, as Pub/Sub writes them. `data` is present even when empty, so that endpoints that
/// decode it without a check do not fail on a message with attributes only. `attributes` and
/// `orderingKey` are left out when empty. `deliveryAttempt` is present only when the
/// subscription has a dead-letter policy, which is when the broker counts it.
pub fn pubsub_push_json(delivery: &Delivery, subscription: &str) -> Value {
    let stored = &delivery.message;
    let message_id = stored.id();
    let publish_time = format_time(stored.publish_time);

    let mut message = Map::new();
    if !stored.message.attributes.is_empty() {
        message.insert("attributes".to_owned(), attributes_json(stored));
    }
    message.insert(
        "data".to_owned(),
        Value::from(BASE64.encode(&stored.message.data)),
    );
    message.insert("messageId".to_owned(), Value::from(message_id.as_str()));
    message.insert("message_id".to_owned(), Value::from(message_id));
    if !stored.message.ordering_key.is_empty() {
        message.insert(
            "orderingKey".to_owned(),
            Value::from(stored.message.ordering_key.as_str()),
        );
    }
    message.insert("publishTime".to_owned(), Value::from(publish_time.as_str()));
    message.insert("publish_time".to_owned(), Value::from(publish_time));

    let mut body = Map::new();
    body.insert("message".to_owned(), Value::Object(message));
    body.insert("subscription".to_owned(), Value::from(subscription));
    if delivery.delivery_attempt > 0 {
        body.insert(
            "deliveryAttempt".to_owned(),
            Value::from(delivery.delivery_attempt),
        );
    }
    Value::Object(body)
}

/// Builds the background event of a message, as a background function receives it. A
/// Pub/Sub event's resource names `topic`, the message's topic.
pub fn background_event(message: &StoredMessage, topic: &str) -> LegacyEvent {
    let (data, mut context) = to_event(message);
    if context.event_type == TOPIC_PUBLISH {
        context.resource["name"] = Value::from(topic);
    }
    LegacyEvent::new(context, json_or_text(&data))
}

/// Builds the CloudEvent of a delivery, as Eventarc would deliver it.
pub fn cloudevent(delivery: &Delivery, names: MessageNames<'_>) -> CloudEvent {
    let message = &delivery.message;
    if let Some(event) = storage_cloudevent(message) {
        return event;
    }
    if let Some(entry) = audit_log_entry(&message.message.data) {
        return audit_cloudevent(message, entry, names.topic);
    }
    pubsub_cloudevent(delivery, names)
}

/// Converts the background event of a storage notification, and adds the `bucket`
/// extension. Returns `None` for other messages.
fn storage_cloudevent(message: &StoredMessage) -> Option<CloudEvent> {
    let bucket = message.message.attributes.get("bucketId")?;
    let event = background_event(message, "");
    if !event
        .context
        .event_type
        .starts_with("google.storage.object.")
    {
        return None;
    }
    match convert::to_cloudevent(&event) {
        Ok(mut cloudevent) => {
            cloudevent
                .extensions
                .insert("bucket".to_owned(), bucket.clone());
            Some(cloudevent)
        }
        Err(err) => {
            // The notification's attributes give a resource name that converts unless the
            // object name is empty, which Cloud Storage does not allow.
            debug!(message_id = %message.id(), error = %err, "storage event not converted");
            None
        }
    }
}

/// Returns the LogEntry in a message's data when its payload is an audit log.
fn audit_log_entry(data: &[u8]) -> Option<Map<String, Value>> {
    // Data that does not start with `{` cannot be a LogEntry, so it is skipped unparsed.
    if data.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let Ok(Value::Object(entry)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    let payload_type = entry.get("protoPayload")?.get("@type")?.as_str()?;
    (payload_type == AUDIT_LOG_TYPE).then_some(entry)
}

/// Builds the `google.cloud.audit.log.v1.written` event of an exported LogEntry, in the shape
/// of Eventarc's events:
///
/// - `id`: the log name, the insert id and the entry's timestamp in microseconds, joined;
///   the message id when one of them is missing;
/// - `source`: `//cloudaudit.googleapis.com/projects/P/logs/activity` (or `data_access`,
///   `system_event`, `policy`), from the log name;
/// - `subject`: `SERVICE/RESOURCE`, such as
///   `storage.googleapis.com/projects/_/buckets/b/objects/o`;
/// - `time`: the entry's `receiveTimestamp`, else its `timestamp`, else the publish time;
/// - extensions `servicename`, `methodname`, `resourcename` and `recordedtime` (the entry's
///   `timestamp`), each when the entry has it.
fn audit_cloudevent(message: &StoredMessage, entry: Map<String, Value>, topic: &str) -> CloudEvent {
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let payload = entry.get("protoPayload");
    let service = text(payload.and_then(|p| p.get("serviceName")));
    let method = text(payload.and_then(|p| p.get("methodName")));
    let resource = text(payload.and_then(|p| p.get("resourceName")));
    let log_name = text(entry.get("logName"));
    let timestamp = text(entry.get("timestamp"));

    let id = audit_event_id(
        log_name.as_deref(),
        text(entry.get("insertId")).as_deref(),
        timestamp.as_deref(),
    )
    .unwrap_or_else(|| message.id());
    let source = audit_source(log_name.as_deref(), topic);
    let mut event = CloudEvent::new(id, source, AUDIT_LOG_WRITTEN);
    event.subject = match (&service, &resource) {
        (Some(service), Some(resource)) => Some(format!("{service}/{resource}")),
        (Some(service), None) => Some(service.clone()),
        _ => None,
    };
    event.time = Some(
        text(entry.get("receiveTimestamp"))
            .or_else(|| timestamp.clone())
            .unwrap_or_else(|| format_time(message.publish_time)),
    );
    event.datacontenttype = Some(AUDIT_LOG_CONTENT_TYPE.to_owned());
    event.dataschema = Some(AUDIT_LOG_SCHEMA.to_owned());
    let extensions = [
        ("servicename", service),
        ("methodname", method),
        ("resourcename", resource),
        ("recordedtime", timestamp),
    ];
    for (name, value) in extensions {
        if let Some(value) = value {
            event.extensions.insert(name.to_owned(), value);
        }
    }
    event.data = Some(Value::Object(entry));
    event
}

/// Returns Eventarc's id of an audit-log event: the log name, the insert id and the
/// timestamp as microseconds since the epoch, joined without separators.
fn audit_event_id(
    log_name: Option<&str>,
    insert_id: Option<&str>,
    timestamp: Option<&str>,
) -> Option<String> {
    let instant = DateTime::parse_from_rfc3339(timestamp?).ok()?;
    let micros = instant.with_timezone(&Utc).timestamp_micros();
    Some(format!("{}{}{micros}", log_name?, insert_id?))
}

/// Returns the source of an audit-log event: `//cloudaudit.googleapis.com/{parent}/logs/{log}`
/// for a log name `{parent}/logs/cloudaudit.googleapis.com%2F{log}`. Without a log name the
/// parent is the project of `topic` and the source has no `/logs/` part.
fn audit_source(log_name: Option<&str>, topic: &str) -> String {
    const SERVICE: &str = "//cloudaudit.googleapis.com";
    if let Some((parent, log)) = log_name.and_then(|name| name.split_once("/logs/")) {
        let log = log.strip_prefix(AUDIT_LOG_PREFIX).unwrap_or(log);
        return format!("{SERVICE}/{parent}/logs/{log}");
    }
    let project = topic
        .split_once("/topics/")
        .map_or(topic, |(project, _)| project);
    format!("{SERVICE}/{project}")
}

/// Builds the Pub/Sub CloudEvent of a delivery, whose data is the wrapped push body.
fn pubsub_cloudevent(delivery: &Delivery, names: MessageNames<'_>) -> CloudEvent {
    let message = &delivery.message;
    let mut event = CloudEvent::new(
        message.id(),
        format!("//pubsub.googleapis.com/{}", names.topic),
        MESSAGE_PUBLISHED,
    );
    event.time = Some(format_time(message.publish_time));
    event.datacontenttype = Some("application/json".to_owned());
    event.data = Some(pubsub_push_json(delivery, names.subscription));
    event
}

fn attributes_json(message: &StoredMessage) -> Value {
    let attributes: Map<String, Value> = message
        .message
        .attributes
        .iter()
        .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
        .collect();
    Value::Object(attributes)
}

/// Parses event data as JSON, or keeps it as text when it is not JSON.
fn json_or_text(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|_| Value::from(String::from_utf8_lossy(data)))
}

#[cfg(test)]
mod tests;
