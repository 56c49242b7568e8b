//! The `[[triggers]]` tables: Eventarc-style triggers, each an event type with attribute
//! filters and a destination.
//!
//! Validation expands each trigger into what carries its events: a notification config on
//! the bucket of a storage trigger, a log sink for an audit-log trigger, a topic for both,
//! and one subscription that a handler or push endpoint consumes. Every generated resource
//! is named `trigger-NAME`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sluice_router::buckets::EventType;
use sluice_router::route::path_pattern::{exact_regex, PathPattern};

use super::{DeadLetterConfig, HandlerConfig, PushEndpointConfig, RetryPolicyConfig};

/// The prefix of the topic, subscription and sink that a trigger creates.
pub(crate) const GENERATED_PREFIX: &str = "trigger-";

/// The push format of a trigger whose push table sets none, because Eventarc delivers
/// CloudEvents in binary mode.
pub(crate) const DEFAULT_TRIGGER_PUSH_FORMAT: &str = "cloudevent";

/// Part of the log name of every audit log, such as
/// `projects/p/logs/cloudaudit.googleapis.com%2Factivity`.
const AUDIT_LOG_NAME_PART: &str = "/logs/cloudaudit.googleapis.com%2F";

/// The LogEntry fields that the audit-log filter attributes match.
const AUDIT_FIELDS: [(&str, &str); 3] = [
    ("serviceName", "protoPayload.serviceName"),
    ("methodName", "protoPayload.methodName"),
    ("resourceName", "protoPayload.resourceName"),
];

/// One `[[triggers]]` table.
#[derive(Debug, Deserialize)]
pub(crate) struct TriggerConfig {
    /// Unique trigger name. Required, but defaulted here so that validation can report a
    /// missing name together with every other problem.
    #[serde(default = "default_name")]
    pub(crate) name: String,
    /// One of the names of [`TriggerEventType`], such as
    /// `google.cloud.storage.object.v1.finalized`. Required, defaulted like `name`.
    #[serde(default = "default_event_type")]
    pub(crate) event_type: String,
    /// Exact matches on event attributes, such as `bucket = "uploads"`.
    #[serde(default = "default_filters")]
    pub(crate) filters: BTreeMap<String, String>,
    /// A path pattern on the resource name of audit-log entries.
    #[serde(default = "default_resource_name")]
    pub(crate) resource_name: Option<String>,
    /// A built-in handler that consumes the trigger's events.
    #[serde(default = "default_handler")]
    pub(crate) handler: Option<HandlerConfig>,
    /// An endpoint that the server POSTs the trigger's events to.
    #[serde(default = "default_push")]
    pub(crate) push: Option<PushEndpointConfig>,
    /// The dead-letter settings of the generated subscription.
    #[serde(default = "default_dead_letter")]
    pub(crate) dead_letter: Option<DeadLetterConfig>,
    /// The redelivery backoff of the generated subscription.
    #[serde(default = "default_retry_policy")]
    pub(crate) retry_policy: Option<RetryPolicyConfig>,
}

fn default_name() -> String {
    String::new()
}

fn default_event_type() -> String {
    String::new()
}

fn default_filters() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn default_resource_name() -> Option<String> {
    None
}

fn default_handler() -> Option<HandlerConfig> {
    None
}

fn default_push() -> Option<PushEndpointConfig> {
    None
}

fn default_dead_letter() -> Option<DeadLetterConfig> {
    None
}

fn default_retry_policy() -> Option<RetryPolicyConfig> {
    None
}

/// The event types that triggers take, with Eventarc's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TriggerEventType {
    /// A new object generation was written.
    StorageFinalized,
    /// An object generation was deleted.
    StorageDeleted,
    /// The live generation became noncurrent in a versioned bucket.
    StorageArchived,
    /// An object's metadata changed.
    StorageMetadataUpdated,
    /// A message was published to a topic.
    PubsubMessagePublished,
    /// An audit-log entry was written.
    AuditLogWritten,
}

impl TriggerEventType {
    /// Every type, in the order that messages list them.
    pub(crate) const ALL: [TriggerEventType; 6] = [
        Self::StorageFinalized,
        Self::StorageDeleted,
        Self::StorageArchived,
        Self::StorageMetadataUpdated,
        Self::PubsubMessagePublished,
        Self::AuditLogWritten,
    ];

    /// Returns Eventarc's name of the type, the CloudEvents `type` attribute.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::StorageFinalized => "google.cloud.storage.object.v1.finalized",
            Self::StorageDeleted => "google.cloud.storage.object.v1.deleted",
            Self::StorageArchived => "google.cloud.storage.object.v1.archived",
            Self::StorageMetadataUpdated => "google.cloud.storage.object.v1.metadataUpdated",
            Self::PubsubMessagePublished => "google.cloud.pubsub.topic.v1.messagePublished",
            Self::AuditLogWritten => "google.cloud.audit.log.v1.written",
        }
    }

    /// Returns the type named `name`, matched exactly.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Returns the Cloud Storage notification event type of a storage type.
    pub(crate) fn storage_event(self) -> Option<EventType> {
        match self {
            Self::StorageFinalized => Some(EventType::ObjectFinalize),
            Self::StorageDeleted => Some(EventType::ObjectDelete),
            Self::StorageArchived => Some(EventType::ObjectArchive),
            Self::StorageMetadataUpdated => Some(EventType::ObjectMetadataUpdate),
            Self::PubsubMessagePublished | Self::AuditLogWritten => None,
        }
    }

    /// Returns the filter attributes that the type takes: Eventarc's for storage and audit
    /// logs, and `topic` for Pub/Sub, which Eventarc sets as the trigger's transport topic.
    pub(crate) fn filter_attributes(self) -> &'static [&'static str] {
        match self {
            Self::PubsubMessagePublished => &["topic"],
            Self::AuditLogWritten => &["serviceName", "methodName", "resourceName"],
            _ => &["bucket"],
        }
    }

    /// Returns the filter attributes that a trigger of the type must set.
    pub(crate) fn required_attributes(self) -> &'static [&'static str] {
        match self {
            Self::PubsubMessagePublished => &["topic"],
            Self::AuditLogWritten => &["serviceName", "methodName"],
            _ => &["bucket"],
        }
    }
}

impl fmt::Display for TriggerEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated trigger and the resources it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TriggerSpec {
    /// The trigger's name.
    pub(crate) name: String,
    /// Eventarc's name of the event type.
    pub(crate) event_type: String,
    /// The exact attribute matches.
    pub(crate) filters: BTreeMap<String, String>,
    /// The path pattern on the resource name of an audit-log trigger.
    pub(crate) resource_name_pattern: Option<String>,
    /// The destination of the events.
    pub(crate) destination: TriggerDestination,
    /// The notification config that a storage trigger added to its bucket.
    pub(crate) notification: Option<TriggerNotification>,
    /// The log sink of an audit-log trigger.
    pub(crate) sink: Option<TriggerSink>,
    /// The topic that the subscription receives from: the generated one, or the filtered
    /// topic of a Pub/Sub trigger.
    pub(crate) topic: String,
    /// Whether the trigger created `topic`.
    pub(crate) topic_created: bool,
    /// The generated subscription.
    pub(crate) subscription: String,
}

/// The notification config of a storage trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TriggerNotification {
    /// The declared bucket that publishes the events.
    pub(crate) bucket: String,
    /// The Cloud Storage event type that the config publishes, such as `OBJECT_FINALIZE`.
    pub(crate) event_type: String,
}

/// The log sink of an audit-log trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TriggerSink {
    /// The sink's name.
    pub(crate) name: String,
    /// The sink's filter in the Logging query language, which `sluice rules test --filter`
    /// takes.
    pub(crate) filter: String,
}

/// The destination of a trigger's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub(crate) enum TriggerDestination {
    /// A built-in handler of the named kind.
    Handler {
        /// The handler's kind, such as `thumbnail`.
        handler: String,
    },
    /// An HTTP endpoint.
    Push {
        /// The URL that receives each event.
        endpoint: String,
        /// The push format, such as `cloudevent`.
        format: String,
    },
}

impl fmt::Display for TriggerDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handler { handler } => write!(f, "handler {handler}"),
            Self::Push { endpoint, format } => write!(f, "push to {endpoint} as {format}"),
        }
    }
}

/// Builds the sink filter of an audit-log trigger. Every term is a case-sensitive regex,
/// because Eventarc matches attributes exactly, and the Logging language's `=` ignores case.
pub(crate) fn audit_sink_filter(
    filters: &BTreeMap<String, String>,
    pattern: Option<&PathPattern>,
) -> String {
    let mut terms = vec![format!("logName:{}", quote(AUDIT_LOG_NAME_PART))];
    for (attribute, field) in AUDIT_FIELDS {
        if let Some(value) = filters.get(attribute) {
            terms.push(format!("{field}=~{}", quote(&exact_regex(value))));
        }
    }
    if let Some(pattern) = pattern {
        terms.push(format!(
            "protoPayload.resourceName=~{}",
            quote(&pattern.to_regex())
        ));
    }
    terms.join(" AND ")
}

/// Writes `text` as a quoted string of the Logging query language.
///
/// A backslash stays single when the character after it forms no escape of the language,
/// as in the `\.` of a regex, because the language then keeps the backslash. Every other
/// backslash is doubled and every `"` escaped, so that the string reads back as `text`.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            push_quoted(&mut quoted, c);
            continue;
        }
        let next = chars.next();
        let forms_escape = next.is_none_or(|next| {
            matches!(next, '"' | '\\' | 'n' | 't' | 'r' | 'u' | 'x' | '0'..='7')
        });
        quoted.push_str(if forms_escape { "\\\\" } else { "\\" });
        if let Some(next) = next {
            push_quoted(&mut quoted, next);
        }
    }
    quoted.push('"');
    quoted
}

/// Appends one character of a quoted string, escaping `"` and `\`.
fn push_quoted(quoted: &mut String, c: char) {
    match c {
        '"' => quoted.push_str("\\\""),
        '\\' => quoted.push_str("\\\\"),
        c => quoted.push(c),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_router::filter::LogFilter;

    use super::*;

    #[test]
    fn quoted_regex_matches_exact_text() {
        for text in [
            "storage.objects.create",
            r#"a"b"#,
            r"back\slash",
            r"ends\",
            r"\n\t\r",
            r"\u0041\x41\101",
            r"\\double",
        ] {
            let filter_text = format!("jsonPayload.field=~{}", quote(&exact_regex(text)));
            let filter = LogFilter::new(&filter_text)
                .unwrap_or_else(|err| panic!("{filter_text} should compile: {err:?}"));
            assert!(
                filter.matches(&json!({ "jsonPayload": { "field": text } })),
                "{filter_text} should match {text:?}"
            );
            assert!(
                !filter.matches(&json!({ "jsonPayload": { "field": format!("{text}x") } })),
                "{filter_text} should not match a longer text"
            );
        }
    }

    #[test]
    fn quote_keeps_regex_escapes_single() {
        assert_eq!(quote(r"^a\.b$"), r#""^a\.b$""#);
        assert_eq!(quote(r"a\\b"), r#""a\\\\b""#);
        assert_eq!(quote(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote(r"\"), r#""\\""#);
    }
}
