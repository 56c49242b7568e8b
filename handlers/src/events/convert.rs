//! Conversions between background events and CloudEvents, as the Functions Frameworks do
//! them when an event of one format reaches a function of the other signature.
//!
//! Legacy to CloudEvent ([`to_cloudevent`]): the event type maps through
//! [`LEGACY_TO_CLOUDEVENT`]. The service is `resource.service`, or else follows from the
//! event type's prefix. The resource name splits into the source and the subject per
//! service:
//!
//! | service | resource name | source path | subject |
//! |---|---|---|---|
//! | storage | `projects/_/buckets/B/objects/O` | `projects/_/buckets/B` | `objects/O` |
//! | firestore | `projects/P/databases/(default)/documents/D` | `projects/P/databases/(default)` | `documents/D` |
//! | firebasedatabase | `projects/_/instances/I/refs/R` | `projects/_/locations/L/instances/I` | `refs/R` |
//! | firebase (analytics) | `projects/P/events/E` | `projects/P` | `events/E` |
//! | firebaseauth | `projects/P` | `projects/P` | `users/{data.uid}` |
//! | pubsub | `projects/P/topics/T` | `projects/P/topics/T` | none |
//!
//! Pub/Sub data becomes `{"message": data}`, with `messageId` and `publishTime` added from the
//! context when absent. Firebase Auth metadata renames `createdAt` and `lastSignedInAt` to
//! `createTime` and `lastSignInTime`. A Realtime Database event's location is `us-central1`
//! for the domain `firebaseio.com`, and otherwise the domain's first label.
//!
//! CloudEvent to legacy ([`to_legacy`]) reverses this. The source `//SERVICE/NAME` gives the
//! resource, per service:
//!
//! - Pub/Sub: `{service, name, type}`. The data is taken out of `message`, without
//!   `messageId` and `publishTime`.
//! - storage: `{service, name: NAME/SUBJECT, type: data.kind}`.
//! - Firebase Auth: `NAME`.
//! - Realtime Database: `NAME/SUBJECT` without the location.
//! - any other service: `NAME/SUBJECT`.
//!
//! Where the Functions Frameworks differ, this module takes these choices:
//!
//! - A storage resource's project segment may have any length. The Python and Node
//!   frameworks match one character only, which is always `_` in practice.
//! - A `#generation` suffix is dropped from the subject of the old
//!   `providers/cloud.storage/eventTypes/object.change` events only, whose resource names
//!   carry one. The frameworks keep it, and the conformance mapping drops it for every
//!   storage event, but an object name may itself contain `#`.
//! - The analytics source is `//firebase.googleapis.com/projects/P`, as in all three
//!   frameworks, without the app id that the conformance mapping adds.
//! - `providers/firebase.remoteConfig/remoteconfig.update` has no conversion, as in the
//!   frameworks.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Map, Value};

use super::cloudevent::CloudEvent;
use super::legacy::LegacyEvent;
use super::EventError;
use crate::contract::EventContext;

mod types;

pub use types::{cloudevent_type, legacy_type, LEGACY_TO_CLOUDEVENT};

/// The service of a legacy event whose resource names none, by event type prefix.
const SERVICE_BY_PREFIX: [(&str, &str); 8] = [
    ("providers/cloud.firestore/", FIRESTORE),
    ("providers/google.firebase.analytics/", FIREBASE),
    ("providers/firebase.auth/", FIREBASE_AUTH),
    ("providers/google.firebase.database/", FIREBASE_DATABASE),
    ("providers/cloud.pubsub/", PUBSUB),
    ("providers/cloud.storage/", STORAGE),
    ("google.pubsub", PUBSUB),
    ("google.storage", STORAGE),
];

const FIREBASE: &str = "firebase.googleapis.com";
const FIREBASE_AUTH: &str = "firebaseauth.googleapis.com";
const FIREBASE_DATABASE: &str = "firebasedatabase.googleapis.com";
const FIRESTORE: &str = "firestore.googleapis.com";
const PUBSUB: &str = "pubsub.googleapis.com";
const STORAGE: &str = "storage.googleapis.com";

/// The `type` of a Pub/Sub event's resource and of its legacy data.
pub const PUBSUB_MESSAGE_TYPE: &str = "type.googleapis.com/google.pubsub.v1.PubsubMessage";

/// The legacy storage type whose resource names end in `#generation`.
const OBJECT_CHANGE: &str = "providers/cloud.storage/eventTypes/object.change";

/// The Realtime Database location of the domain `firebaseio.com`.
const DEFAULT_DATABASE_LOCATION: &str = "us-central1";

/// Firebase Auth metadata keys, legacy first.
const AUTH_METADATA_KEYS: [(&str, &str); 2] = [
    ("createdAt", "createTime"),
    ("lastSignedInAt", "lastSignInTime"),
];

/// Splits a resource name into the source path and the subject, per service. Each pattern
/// has two groups. `(?s)` lets `.` match a line break, which object names may contain.
static RESOURCE_PATTERNS: LazyLock<[(&str, Regex); 4]> = LazyLock::new(|| {
    let pattern = |text: &str| Regex::new(text).expect("the resource patterns are valid");
    [
        (
            STORAGE,
            pattern(r"(?s)^(projects/[^/]+/buckets/[^/]+)/(objects/.+)$"),
        ),
        (
            FIRESTORE,
            pattern(r"(?s)^(projects/[^/]+/databases/\(default\))/(documents/.+)$"),
        ),
        (
            FIREBASE_DATABASE,
            pattern(r"(?s)^projects/_/(instances/[^/]+)/(refs/.+)$"),
        ),
        (FIREBASE, pattern(r"^(projects/[^/]+)/(events/[^/]+)$")),
    ]
});

/// Converts a background event into the CloudEvent a CloudEvent function receives.
///
/// # Errors
///
/// Fails when the event type has no CloudEvent equivalent, when the resource name does not
/// have its service's form, when a Pub/Sub event's data is not an object, or when a
/// Realtime Database event has no `domain`.
pub fn to_cloudevent(event: &LegacyEvent) -> Result<CloudEvent, EventError> {
    let context = &event.context;
    let ce_type = cloudevent_type(&context.event_type)
        .ok_or_else(|| EventError::UnknownType(context.event_type.clone()))?;
    let (service, resource) = legacy_service_and_resource(context)?;
    let (mut source_path, mut subject) = split_resource(service, &resource)?;
    let mut data = event.data.clone();

    match service {
        PUBSUB => data = pubsub_message_data(data, context)?,
        FIREBASE_AUTH => {
            rename_auth_metadata(&mut data, false);
            if let Some(uid) = data.get("uid").and_then(Value::as_str) {
                subject = Some(format!("users/{uid}"));
            }
        }
        FIREBASE_DATABASE => {
            let location = database_location(event)?;
            source_path = format!("projects/_/locations/{location}/{source_path}");
        }
        STORAGE if context.event_type == OBJECT_CHANGE => {
            subject = subject.map(|subject| strip_generation(&subject).to_owned());
        }
        _ => {}
    }

    let mut cloudevent = CloudEvent::new(
        context.event_id.clone(),
        format!("//{service}/{source_path}"),
        ce_type,
    );
    cloudevent.subject = subject;
    cloudevent.time = Some(context.timestamp.clone());
    cloudevent.datacontenttype = Some("application/json".to_owned());
    cloudevent.data = Some(data);
    Ok(cloudevent)
}

/// Converts a CloudEvent into the `(data, context)` a background function receives.
///
/// # Errors
///
/// Fails when the type has no legacy equivalent, when the source is not of the form
/// `//SERVICE/NAME`, or when the event has no `time`.
pub fn to_legacy(event: &CloudEvent) -> Result<LegacyEvent, EventError> {
    let event_type = legacy_type(&event.event_type)
        .ok_or_else(|| EventError::UnknownType(event.event_type.clone()))?;
    let (service, name) = split_source(&event.source)?;
    let timestamp = event.time.clone().ok_or(EventError::MissingField {
        field: "time",
        expected: "a string",
    })?;
    let mut data = event.data.clone().unwrap_or(Value::Null);
    let name_and_subject = match &event.subject {
        Some(subject) => format!("{name}/{subject}"),
        None => name.to_owned(),
    };

    let resource = match service {
        PUBSUB => {
            data = lift_pubsub_message(data);
            json!({"service": service, "name": name, "type": PUBSUB_MESSAGE_TYPE})
        }
        FIREBASE_AUTH => {
            rename_auth_metadata(&mut data, true);
            Value::from(name)
        }
        STORAGE => {
            let kind = data
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("storage#object");
            json!({"name": name_and_subject, "service": service, "type": kind})
        }
        FIREBASE_DATABASE => Value::from(without_location(&name_and_subject)),
        _ => Value::from(name_and_subject),
    };

    let context = EventContext {
        event_id: event.id.clone(),
        timestamp,
        event_type: event_type.to_owned(),
        resource,
    };
    Ok(LegacyEvent::new(context, data))
}

/// Returns the CloudEvent service and the resource name of a legacy event.
fn legacy_service_and_resource(
    context: &EventContext,
) -> Result<(&'static str, String), EventError> {
    let (named_service, resource) =
        match &context.resource {
            Value::String(name) => (None, name.clone()),
            Value::Object(resource) => {
                let name = resource.get("name").and_then(Value::as_str).ok_or(
                    EventError::MissingField {
                        field: "resource.name",
                        expected: "a string",
                    },
                )?;
                let service = resource
                    .get("service")
                    .and_then(Value::as_str)
                    .filter(|service| !service.is_empty());
                (service, name.to_owned())
            }
            other => {
                return Err(EventError::invalid(
                    "resource",
                    &other.to_string(),
                    "it must be a string or an object",
                ))
            }
        };
    let service = match named_service {
        Some(service) => known_service(service).ok_or_else(|| {
            EventError::invalid(
                "resource.service",
                service,
                "no CloudEvent conversion is known for this service",
            )
        })?,
        None => SERVICE_BY_PREFIX
            .iter()
            .find(|(prefix, _)| context.event_type.starts_with(prefix))
            .map(|(_, service)| *service)
            .ok_or_else(|| EventError::UnknownType(context.event_type.clone()))?,
    };
    Ok((service, resource))
}

/// Returns the `'static` name of a service this module converts.
fn known_service(service: &str) -> Option<&'static str> {
    [
        FIREBASE,
        FIREBASE_AUTH,
        FIREBASE_DATABASE,
        FIRESTORE,
        PUBSUB,
        STORAGE,
    ]
    .into_iter()
    .find(|known| *known == service)
}

/// Splits a resource name into the source path and the subject, for the services whose
/// resource names carry a subject.
fn split_resource(service: &str, resource: &str) -> Result<(String, Option<String>), EventError> {
    let Some((_, pattern)) = RESOURCE_PATTERNS.iter().find(|(name, _)| *name == service) else {
        return Ok((resource.to_owned(), None));
    };
    let captures = pattern.captures(resource).ok_or_else(|| {
        EventError::invalid(
            "resource",
            resource,
            format!(
                "{service} resource names have the form {}",
                pattern.as_str()
            ),
        )
    })?;
    Ok((captures[1].to_owned(), Some(captures[2].to_owned())))
}

/// Wraps legacy Pub/Sub data in `message`, with the event id and time as the message id and
/// publish time unless the data has them.
fn pubsub_message_data(data: Value, context: &EventContext) -> Result<Value, EventError> {
    let mut message = match data {
        Value::Object(message) => message,
        Value::Null => Map::new(),
        other => {
            return Err(EventError::invalid(
                "data",
                &other.to_string(),
                "Pub/Sub event data must be a PubsubMessage object",
            ))
        }
    };
    message
        .entry("messageId")
        .or_insert_with(|| Value::from(context.event_id.as_str()));
    message
        .entry("publishTime")
        .or_insert_with(|| Value::from(context.timestamp.as_str()));
    Ok(json!({ "message": message }))
}

/// Takes the message out of CloudEvent Pub/Sub data, without the id and publish time that
/// the context carries.
fn lift_pubsub_message(data: Value) -> Value {
    let mut data = match data {
        Value::Object(mut object) if object.contains_key("message") => object
            .remove("message")
            .expect("the key is present, as just checked"),
        other => other,
    };
    if let Value::Object(message) = &mut data {
        message.remove("messageId");
        message.remove("publishTime");
    }
    data
}

/// Renames the Firebase Auth metadata keys to the CloudEvent names, or back with `reverse`.
fn rename_auth_metadata(data: &mut Value, reverse: bool) {
    let Some(metadata) = data.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for (legacy, cloudevent) in AUTH_METADATA_KEYS {
        let (from, to) = if reverse {
            (cloudevent, legacy)
        } else {
            (legacy, cloudevent)
        };
        if let Some(value) = metadata.remove(from) {
            metadata.insert(to.to_owned(), value);
        }
    }
}

/// Returns the location of a Realtime Database event from its `domain`.
fn database_location(event: &LegacyEvent) -> Result<&str, EventError> {
    let domain =
        event
            .extra
            .get("domain")
            .and_then(Value::as_str)
            .ok_or(EventError::MissingField {
                field: "domain",
                expected: "a string (a Realtime Database event's host)",
            })?;
    if domain == "firebaseio.com" {
        return Ok(DEFAULT_DATABASE_LOCATION);
    }
    match domain.split('.').next() {
        Some(location) if !location.is_empty() => Ok(location),
        _ => Err(EventError::invalid(
            "domain",
            domain,
            "expected firebaseio.com or LOCATION.firebasedatabase.app",
        )),
    }
}

/// Drops a `#generation` suffix from a storage subject.
fn strip_generation(subject: &str) -> &str {
    match subject.rsplit_once('#') {
        Some((object, generation))
            if !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()) =>
        {
            object
        }
        _ => subject,
    }
}

/// Splits a CloudEvent source `//SERVICE/NAME` into the service and the name.
fn split_source(source: &str) -> Result<(&str, &str), EventError> {
    let split = source
        .strip_prefix("//")
        .and_then(|rest| rest.split_once('/'))
        .filter(|(service, name)| !service.is_empty() && !name.is_empty());
    split.ok_or_else(|| EventError::invalid("source", source, "expected the form //SERVICE/NAME"))
}

/// Removes the `/locations/LOCATION` segment pair of a Realtime Database resource name.
fn without_location(name: &str) -> String {
    static LOCATION: LazyLock<Regex> =
        LazyLock::new(|| Regex::new("/locations/[^/]+").expect("the pattern is valid"));
    LOCATION.replace(name, "").into_owned()
}

#[cfg(test)]
mod tests;
