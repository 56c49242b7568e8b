//! The `[[buckets]]` tables: buckets that the server creates at start-up, and the
//! notification configs that publish their object changes to topics.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_router::buckets::NotificationConfig;

/// Payload format of a `[[buckets.notifications]]` table that does not set one.
const DEFAULT_PAYLOAD_FORMAT: &str = "JSON_API_V1";

/// One `[[buckets]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BucketConfig {
    /// Unique bucket name, following Cloud Storage's rules. Required, but defaulted here so
    /// that validation can report a missing name together with every other problem.
    #[serde(default = "default_bucket_name")]
    pub(crate) name: String,
    /// Whether replaced and deleted generations stay as noncurrent versions.
    #[serde(default = "default_versioning")]
    pub(crate) versioning: bool,
    /// Notification configs, in file order.
    #[serde(default = "default_notifications")]
    pub(crate) notifications: Vec<BucketNotificationConfig>,
}

/// One `[[buckets.notifications]]` table.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BucketNotificationConfig {
    /// Declared topic that receives the messages. Required, defaulted like the bucket name.
    #[serde(default = "default_topic")]
    pub(crate) topic: String,
    /// Cloud Storage event type names, such as `OBJECT_FINALIZE`. Absent means every type.
    /// An empty list is an error, so that it cannot be mistaken for "no events".
    #[serde(default = "default_event_types")]
    pub(crate) event_types: Option<Vec<String>>,
    /// Only objects whose names start with this prefix are notified.
    #[serde(default = "default_object_name_prefix")]
    pub(crate) object_name_prefix: String,
    /// `JSON_API_V1` (the object resource as the message data) or `NONE` (attributes only).
    #[serde(default = "default_payload_format")]
    pub(crate) payload_format: String,
    /// Attributes added to every message.
    #[serde(default = "default_custom_attributes")]
    pub(crate) custom_attributes: BTreeMap<String, String>,
}

fn default_bucket_name() -> String {
    String::new()
}

fn default_versioning() -> bool {
    false
}

fn default_notifications() -> Vec<BucketNotificationConfig> {
    Vec::new()
}

fn default_topic() -> String {
    String::new()
}

fn default_event_types() -> Option<Vec<String>> {
    None
}

fn default_object_name_prefix() -> String {
    String::new()
}

fn default_payload_format() -> String {
    DEFAULT_PAYLOAD_FORMAT.to_owned()
}

fn default_custom_attributes() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// A validated bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketSpec {
    /// The bucket's name.
    pub(crate) name: String,
    /// Whether the bucket keeps noncurrent versions.
    pub(crate) versioning: bool,
    /// Notification configs in file order, each with an empty id so that the bucket store
    /// assigns one.
    pub(crate) notifications: Vec<NotificationConfig>,
}
