//! The background event of Cloud Functions, which the `background` push format sends and
//! background functions (`(data, context)`) receive.
//!
//! A request body has one of two shapes:
//!
//! - nested: `{"context": {"eventId", "timestamp", "eventType", "resource"}, "data": ...}`,
//!   which [`LegacyEvent::to_json`] writes;
//! - flat: `{"eventId", "timestamp", "eventType", "resource", "data", ...}`, which Firebase
//!   and Firestore events use, with more top-level keys such as `domain`, `params` and `auth`.
//!
//! `resource` is a string, or an object `{"service", "name", "type"}`.

use serde_json::{Map, Value};

use super::EventError;
use crate::contract::EventContext;

/// The context fields, as both shapes name them.
const CONTEXT_FIELDS: [&str; 4] = ["eventId", "timestamp", "eventType", "resource"];

/// A background event: the `data` a function receives, and its context.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyEvent {
    /// The event id, time, type and resource.
    pub context: EventContext,
    /// The payload, such as a Cloud Storage object resource.
    pub data: Value,
    /// The top-level keys of a flat body other than the context fields and `data`. The
    /// conversion of a Realtime Database event reads its location from `domain`.
    pub extra: Map<String, Value>,
}

impl LegacyEvent {
    /// Returns an event of `context` and `data` without extra keys.
    pub fn new(context: EventContext, data: Value) -> Self {
        LegacyEvent {
            context,
            data,
            extra: Map::new(),
        }
    }

    /// Reads a request body of either shape. When a field is both in `context` and at the
    /// top level, the one in `context` wins. A body without `data` has `null` data.
    ///
    /// # Errors
    ///
    /// Fails when the body is not an object, when `context` is not an object, when
    /// `eventId`, `timestamp` or `eventType` is not a string, or when `resource` is neither
    /// a string nor an object.
    pub fn from_json(body: &Value) -> Result<Self, EventError> {
        let body = body.as_object().ok_or(EventError::NotAnObject)?;
        let nested = match body.get("context") {
            None => None,
            Some(Value::Object(context)) => Some(context),
            Some(other) => {
                return Err(EventError::invalid(
                    "context",
                    &other.to_string(),
                    "it must be an object",
                ))
            }
        };
        let field = |name: &str| {
            nested
                .and_then(|context| context.get(name))
                .or_else(|| body.get(name))
        };
        let text = |name: &'static str| match field(name) {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(EventError::MissingField {
                field: name,
                expected: "a string",
            }),
        };
        let resource = match field("resource") {
            Some(resource @ (Value::String(_) | Value::Object(_))) => resource.clone(),
            _ => {
                return Err(EventError::MissingField {
                    field: "resource",
                    expected: "a string or an object",
                })
            }
        };
        let context = EventContext {
            event_id: text("eventId")?,
            timestamp: text("timestamp")?,
            event_type: text("eventType")?,
            resource,
        };
        let extra = body
            .iter()
            .filter(|(key, _)| {
                !CONTEXT_FIELDS.contains(&key.as_str()) && *key != "context" && *key != "data"
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Ok(LegacyEvent {
            context,
            data: body.get("data").cloned().unwrap_or(Value::Null),
            extra,
        })
    }

    /// Writes the nested shape, `{"context": {...}, "data": ...}`, as Cloud Functions sends
    /// it. The extra keys of a flat body are left out.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert(
            "context".to_owned(),
            serde_json::to_value(&self.context)
                .expect("EventContext has string fields and a JSON value, which serialize"),
        );
        body.insert("data".to_owned(), self.data.clone());
        Value::Object(body)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_body_read() {
        let body = json!({
            "context": {
                "eventId": "1",
                "timestamp": "2020-09-29T11:32:00.123Z",
                "eventType": "google.pubsub.topic.publish",
                "resource": {"service": "pubsub.googleapis.com", "name": "projects/p/topics/t"},
            },
            "data": {"data": "AQID"},
        });
        let event = LegacyEvent::from_json(&body).expect("valid event");

        assert_eq!(event.context.event_id, "1");
        assert_eq!(event.context.event_type, "google.pubsub.topic.publish");
        assert_eq!(event.context.resource["name"], "projects/p/topics/t");
        assert_eq!(event.data, json!({"data": "AQID"}));
        assert!(event.extra.is_empty());
    }

    #[test]
    fn flat_body_keeps_extra_keys() {
        let body = json!({
            "eventId": "1",
            "timestamp": "2020-09-29T11:32:00.123Z",
            "eventType": "providers/google.firebase.database/eventTypes/ref.write",
            "resource": "projects/_/instances/db/refs/a",
            "domain": "firebaseio.com",
            "params": {"child": "a"},
            "data": null,
        });
        let event = LegacyEvent::from_json(&body).expect("valid event");

        assert_eq!(event.context.resource, "projects/_/instances/db/refs/a");
        assert_eq!(event.extra["domain"], "firebaseio.com");
        assert_eq!(event.extra.len(), 2, "domain and params: {:?}", event.extra);
    }

    #[test]
    fn context_field_wins_over_flat_field() {
        let body = json!({
            "context": {"eventId": "from-context"},
            "eventId": "from-top",
            "timestamp": "2020-09-29T11:32:00.123Z",
            "eventType": "google.storage.object.finalize",
            "resource": "projects/_/buckets/b/objects/o",
        });
        let event = LegacyEvent::from_json(&body).expect("valid event");

        assert_eq!(event.context.event_id, "from-context");
        assert_eq!(event.context.timestamp, "2020-09-29T11:32:00.123Z");
    }

    #[test]
    fn missing_event_type_rejected() {
        let body = json!({"eventId": "1", "timestamp": "t", "resource": "r"});

        assert_eq!(
            LegacyEvent::from_json(&body),
            Err(EventError::MissingField {
                field: "eventType",
                expected: "a string"
            })
        );
    }

    #[test]
    fn numeric_resource_rejected() {
        let body = json!({"eventId": "1", "timestamp": "t", "eventType": "e", "resource": 7});

        assert!(matches!(
            LegacyEvent::from_json(&body),
            Err(EventError::MissingField {
                field: "resource",
                ..
            })
        ));
    }

    #[test]
    fn to_json_writes_nested_shape() {
        let body = json!({
            "eventId": "1",
            "timestamp": "2020-09-29T11:32:00.123Z",
            "eventType": "providers/firebase.auth/eventTypes/user.create",
            "resource": "projects/my-project-id",
            "notSupported": {},
            "data": {"uid": "u"},
        });
        let event = LegacyEvent::from_json(&body).expect("valid event");

        assert_eq!(
            event.to_json(),
            json!({
                "context": {
                    "eventId": "1",
                    "timestamp": "2020-09-29T11:32:00.123Z",
                    "eventType": "providers/firebase.auth/eventTypes/user.create",
                    "resource": "projects/my-project-id",
                },
                "data": {"uid": "u"},
            })
        );
    }
}
