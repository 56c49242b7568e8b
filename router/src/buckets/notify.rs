//! Notification configs and the Pub/Sub messages they make of object events.
//!
//! [`notification_message`] is pure: it turns one [`ObjectEvent`] into the message one
//! [`NotificationConfig`] publishes, with the attributes Cloud Storage sends, or `None` when
//! the config's event type or object name prefix filters the event out.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::object::{format_micros, ObjectResource};
use crate::store::{NewMessage, TopicMessage};

/// The kinds of object change that Cloud Storage notifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A new generation was written.
    ObjectFinalize,
    /// The metadata of the live generation changed.
    ObjectMetadataUpdate,
    /// A generation was removed for good.
    ObjectDelete,
    /// The live generation became noncurrent in a versioned bucket.
    ObjectArchive,
}

impl EventType {
    /// Every event type, in the order Cloud Storage's docs list them.
    pub const ALL: [EventType; 4] = [
        Self::ObjectFinalize,
        Self::ObjectMetadataUpdate,
        Self::ObjectDelete,
        Self::ObjectArchive,
    ];

    /// Returns the name in the `eventType` attribute, such as `OBJECT_FINALIZE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ObjectFinalize => "OBJECT_FINALIZE",
            Self::ObjectMetadataUpdate => "OBJECT_METADATA_UPDATE",
            Self::ObjectDelete => "OBJECT_DELETE",
            Self::ObjectArchive => "OBJECT_ARCHIVE",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|event_type| event_type.as_str() == name)
            .ok_or_else(|| UnknownName {
                kind: "event type",
                name: name.to_owned(),
                expected: "OBJECT_FINALIZE, OBJECT_METADATA_UPDATE, OBJECT_DELETE or \
                           OBJECT_ARCHIVE",
            })
    }
}

/// The content of a notification message's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PayloadFormat {
    /// The object resource as JSON, as the JSON API v1 returns it.
    #[default]
    JsonApiV1,
    /// No data, only attributes.
    None,
}

impl PayloadFormat {
    /// Returns the name in the `payloadFormat` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonApiV1 => "JSON_API_V1",
            Self::None => "NONE",
        }
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadFormat {
    type Err = UnknownName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::JsonApiV1, Self::None]
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| UnknownName {
                kind: "payload format",
                name: name.to_owned(),
                expected: "JSON_API_V1 or NONE",
            })
    }
}

/// A name that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}; use {expected}")]
pub struct UnknownName {
    kind: &'static str,
    name: String,
    expected: &'static str,
}

/// A bucket's rule for publishing object events to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationConfig {
    /// The config's id, a decimal integer unique in the bucket.
    pub id: String,
    /// The broker topic that receives the messages.
    pub topic: String,
    /// The event types to publish, or all of them when empty.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    /// Publish only events of objects whose name starts with this prefix.
    #[serde(default)]
    pub object_name_prefix: Option<String>,
    /// The content of the messages' data.
    pub payload_format: PayloadFormat,
    /// Attributes added to every message.
    #[serde(default)]
    pub custom_attributes: BTreeMap<String, String>,
}

impl NotificationConfig {
    /// Returns the resource name in the `notificationConfig` attribute:
    /// `projects/_/buckets/{bucket}/notificationConfigs/{id}`.
    pub fn resource_name(&self, bucket: &str) -> String {
        format!(
            "projects/_/buckets/{bucket}/notificationConfigs/{}",
            self.id
        )
    }

    /// Returns whether the config publishes events of this type.
    pub fn includes(&self, event_type: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event_type)
    }

    /// Returns whether the config publishes this event, by its type and its object's name.
    pub fn matches(&self, event: &ObjectEvent) -> bool {
        let prefix = self.object_name_prefix.as_deref().unwrap_or("");
        self.includes(event.event_type) && event.object.name.starts_with(prefix)
    }
}

/// One change to one object generation, as a notification reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// What happened.
    pub event_type: EventType,
    /// When it happened.
    pub event_time: SystemTime,
    /// The generation it happened to, as it is after the change.
    pub object: ObjectResource,
    /// On a finalize, the live generation it replaced.
    pub overwrote_generation: Option<i64>,
    /// On the delete or archive of a replaced generation, the generation that replaced it.
    pub overwritten_by_generation: Option<i64>,
}

/// Builds the message that `config` publishes for `event`, or `None` when the config's
/// event types or object name prefix exclude the event.
///
/// The attributes are Cloud Storage's: `notificationConfig`, `eventType`, `payloadFormat`,
/// `bucketId`, `objectId`, `objectGeneration`, `eventTime`, and `overwroteGeneration` or
/// `overwrittenByGeneration` when the event has them. The config's custom attributes are
/// added, but a custom attribute with one of those names does not replace the standard
/// value. The data is the object resource as JSON for [`PayloadFormat::JsonApiV1`] and empty
/// for [`PayloadFormat::None`].
pub fn notification_message(
    config: &NotificationConfig,
    event: &ObjectEvent,
) -> Option<TopicMessage> {
    if !config.matches(event) {
        return None;
    }

    let object = &event.object;
    let mut attributes = config.custom_attributes.clone();
    let mut set = |key: &str, value: String| {
        attributes.insert(key.to_owned(), value);
    };
    set("notificationConfig", config.resource_name(&object.bucket));
    set("eventType", event.event_type.as_str().to_owned());
    set("payloadFormat", config.payload_format.as_str().to_owned());
    set("bucketId", object.bucket.clone());
    set("objectId", object.name.clone());
    set("objectGeneration", object.generation.to_string());
    set("eventTime", format_micros(event.event_time));
    if let Some(generation) = event.overwrote_generation {
        set("overwroteGeneration", generation.to_string());
    }
    if let Some(generation) = event.overwritten_by_generation {
        set("overwrittenByGeneration", generation.to_string());
    }

    let data = match config.payload_format {
        PayloadFormat::JsonApiV1 => object.to_json().to_string().into_bytes(),
        PayloadFormat::None => Vec::new(),
    };
    Some(TopicMessage {
        topic: config.topic.clone(),
        message: NewMessage {
            data,
            attributes,
            ordering_key: String::new(),
        },
    })
}

/// Builds the messages of every config for every event, event by event in order.
pub fn notification_messages(
    configs: &[NotificationConfig],
    events: &[ObjectEvent],
) -> Vec<TopicMessage> {
    events
        .iter()
        .flat_map(|event| {
            configs
                .iter()
                .filter_map(move |config| notification_message(config, event))
        })
        .collect()
}

/// The maximum number of notification configs on one bucket, as in Cloud Storage.
pub const MAX_CONFIGS_PER_BUCKET: usize = 100;

/// The maximum number of a bucket's configs that include one event type, as in Cloud
/// Storage.
pub const MAX_CONFIGS_PER_EVENT_TYPE: usize = 10;

/// Checks that `config` may join `others` (a bucket's other configs) and returns why not.
pub(crate) fn check_config(
    config: &NotificationConfig,
    others: &[NotificationConfig],
) -> Result<(), String> {
    if config.topic.is_empty() {
        return Err("the topic is empty; name the topic that receives the messages".to_owned());
    }
    if !config.id.bytes().all(|b| b.is_ascii_digit()) || config.id.parse::<u64>().is_err() {
        return Err(format!(
            "id {:?} is not a decimal integer of at most 20 digits; leave it empty to have one \
             assigned",
            config.id
        ));
    }
    if others.len() >= MAX_CONFIGS_PER_BUCKET {
        return Err(format!(
            "the bucket already has {MAX_CONFIGS_PER_BUCKET} notification configs, the \
             maximum; delete one first"
        ));
    }
    for event_type in EventType::ALL {
        let count = others.iter().filter(|c| c.includes(event_type)).count();
        if config.includes(event_type) && count >= MAX_CONFIGS_PER_EVENT_TYPE {
            return Err(format!(
                "the bucket already has {MAX_CONFIGS_PER_EVENT_TYPE} notification configs for \
                 {event_type}, the maximum; delete one or list fewer event types"
            ));
        }
    }
    Ok(())
}
