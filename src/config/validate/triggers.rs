//! Validation of the `[[triggers]]` tables, and their expansion into the topics,
//! subscriptions, sinks and bucket notifications that carry their events.
//!
//! [`expand`] checks what is particular to triggers: names, event types, filters, path
//! patterns, the choice of destination and the names it generates. Each valid trigger then
//! becomes file-level tables, which [`Expansion::merge`] adds to the declared ones, so that
//! the checks of subscriptions, handlers, push endpoints and buckets cover them too.
//! [`Expansion::relabel`] finally moves the problems found in generated tables to the
//! trigger that made them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use sluice_router::route::path_pattern::PathPattern;

use super::{component_label, duplicate_message, record_name, Report};
use crate::config::triggers::{
    audit_sink_filter, TriggerDestination, TriggerEventType, TriggerNotification, TriggerSink,
    TriggerSpec, DEFAULT_TRIGGER_PUSH_FORMAT, GENERATED_PREFIX,
};
use crate::config::{
    default_ack_deadline_secs, default_message_retention_secs, BucketConfig,
    BucketNotificationConfig, ConfigFile, SinkConfig, SubscriptionConfig, TopicConfig,
    TriggerConfig, MAX_NAME_CHARS,
};

/// The tables that the triggers generate, and the triggers as [`crate::config::Config`]
/// lists them.
#[derive(Debug, Default)]
pub(super) struct Expansion {
    topics: Vec<TopicConfig>,
    subscriptions: Vec<SubscriptionConfig>,
    sinks: Vec<SinkConfig>,
    notifications: Vec<GeneratedNotification>,
    /// The valid triggers, in file order.
    pub(super) triggers: Vec<TriggerSpec>,
    /// The component label of each generated table, with the label of its trigger.
    labels: HashMap<String, String>,
}

/// A notification config that a storage trigger adds to a declared bucket.
#[derive(Debug)]
struct GeneratedNotification {
    bucket: String,
    notification: BucketNotificationConfig,
    trigger_label: String,
}

/// The declared tables with the generated ones after them.
#[derive(Debug)]
pub(super) struct Merged<'a> {
    pub(super) topics: Cow<'a, [TopicConfig]>,
    pub(super) subscriptions: Cow<'a, [SubscriptionConfig]>,
    pub(super) sinks: Cow<'a, [SinkConfig]>,
    pub(super) buckets: Cow<'a, [BucketConfig]>,
}

impl Expansion {
    /// Adds the generated tables to the declared ones of `file`, and records the labels
    /// under which bucket validation will report the generated notifications.
    pub(super) fn merge<'a>(&mut self, file: &'a ConfigFile) -> Merged<'a> {
        let mut buckets = Cow::Borrowed(file.buckets.as_slice());
        for generated in &self.notifications {
            // The first generated notification copies the declared buckets.
            let Some((index, bucket)) = buckets
                .to_mut()
                .iter_mut()
                .enumerate()
                .find(|(_, bucket)| bucket.name == generated.bucket)
            else {
                continue;
            };
            bucket.notifications.push(generated.notification.clone());
            let label = format!(
                "{}: notification #{}",
                component_label("bucket", &bucket.name, index),
                bucket.notifications.len()
            );
            self.labels.insert(label, generated.trigger_label.clone());
        }
        Merged {
            topics: extend(&file.topics, &self.topics),
            subscriptions: extend(&file.subscriptions, &self.subscriptions),
            sinks: extend(&file.sinks, &self.sinks),
            buckets,
        }
    }

    /// Reports the problems of generated tables under their trigger's label, with the
    /// table names that a trigger uses.
    pub(super) fn relabel(&self, report: &mut Report) {
        for diagnostic in report.errors.iter_mut().chain(&mut report.warnings) {
            if let Some(trigger_label) = self.labels.get(&diagnostic.component) {
                diagnostic.component = trigger_label.clone();
                diagnostic.message = diagnostic.message.replace("[subscriptions.", "[triggers.");
            }
        }
    }
}

/// Returns `declared` followed by `generated`, borrowing when nothing is generated.
fn extend<'a, T: Clone>(declared: &'a [T], generated: &[T]) -> Cow<'a, [T]> {
    if generated.is_empty() {
        Cow::Borrowed(declared)
    } else {
        Cow::Owned(declared.iter().chain(generated).cloned().collect())
    }
}

/// Checks every trigger and expands the valid ones. A trigger with a problem of its own
/// generates nothing, so that its problems are not repeated by the generated tables.
pub(super) fn expand(file: &ConfigFile, report: &mut Report) -> Expansion {
    let mut expansion = Expansion::default();
    let mut first_use = HashMap::new();
    for (index, trigger) in file.triggers.iter().enumerate() {
        let label = component_label("trigger", &trigger.name, index);
        let errors_before = report.errors.len();
        if let Some(first) = record_name(&mut first_use, &trigger.name, index) {
            report.error(&label, duplicate_message("trigger", first));
        }
        check_trigger_name(&trigger.name, &label, report);
        let event_type = check_event_type(&trigger.event_type, &label, report);
        let pattern = match event_type {
            Some(event_type) => check_criteria(file, trigger, event_type, &label, report),
            None => None,
        };
        check_destination(trigger, event_type, &label, report);
        if let Some(event_type) = event_type {
            check_generated_names(file, &trigger.name, event_type, &label, report);
        }
        if report.errors.len() > errors_before {
            continue;
        }
        if let Some(event_type) = event_type {
            expansion.add(trigger, event_type, pattern.as_ref(), &label);
        }
    }
    expansion
}

impl Expansion {
    /// Generates the tables of a trigger that passed every check of [`expand`], so the
    /// filters that its event type requires are present.
    fn add(
        &mut self,
        trigger: &TriggerConfig,
        event_type: TriggerEventType,
        pattern: Option<&PathPattern>,
        label: &str,
    ) {
        let generated = format!("{GENERATED_PREFIX}{}", trigger.name);
        let mut notification = None;
        let mut sink = None;
        let topic = match event_type.storage_event() {
            Some(storage_event) => {
                let bucket = trigger.filters["bucket"].clone();
                self.notifications.push(GeneratedNotification {
                    bucket: bucket.clone(),
                    notification: BucketNotificationConfig {
                        topic: generated.clone(),
                        event_types: Some(vec![storage_event.as_str().to_owned()]),
                        object_name_prefix: String::new(),
                        payload_format: "JSON_API_V1".to_owned(),
                        custom_attributes: BTreeMap::new(),
                    },
                    trigger_label: label.to_owned(),
                });
                notification = Some(TriggerNotification {
                    bucket,
                    event_type: storage_event.as_str().to_owned(),
                });
                generated.clone()
            }
            None if event_type == TriggerEventType::PubsubMessagePublished => {
                trigger.filters["topic"].clone()
            }
            None => {
                let filter = audit_sink_filter(&trigger.filters, pattern);
                self.sinks.push(SinkConfig {
                    name: generated.clone(),
                    filter: filter.clone(),
                    destination: generated.clone(),
                    disabled: false,
                    exclusions: Vec::new(),
                });
                self.labels
                    .insert(component_label("sink", &generated, 0), label.to_owned());
                sink = Some(TriggerSink {
                    name: generated.clone(),
                    filter,
                });
                generated.clone()
            }
        };
        let topic_created = topic == generated;
        if topic_created {
            self.topics.push(TopicConfig {
                name: generated.clone(),
                message_retention_secs: None,
            });
            self.labels
                .insert(component_label("topic", &generated, 0), label.to_owned());
        }

        let mut push = trigger.push.clone();
        if let Some(push) = &mut push {
            push.format
                .get_or_insert_with(|| DEFAULT_TRIGGER_PUSH_FORMAT.to_owned());
        }
        let destination = match (&trigger.handler, &push) {
            (Some(handler), _) => TriggerDestination::Handler {
                handler: handler.kind.clone(),
            },
            (None, Some(push)) => TriggerDestination::Push {
                endpoint: push.endpoint.clone(),
                format: push.format.clone().unwrap_or_default(),
            },
            (None, None) => unreachable!("check_destination rejects a trigger without one"),
        };
        self.subscriptions.push(SubscriptionConfig {
            name: generated.clone(),
            topic: topic.clone(),
            ack_deadline_secs: default_ack_deadline_secs(),
            dead_letter: trigger.dead_letter.clone(),
            retry_policy: trigger.retry_policy.clone(),
            enable_message_ordering: false,
            filter: String::new(),
            message_retention_secs: default_message_retention_secs(),
            retain_acked_messages: false,
            handler: trigger.handler.clone(),
            push,
        });
        self.labels.insert(
            component_label("subscription", &generated, 0),
            label.to_owned(),
        );

        self.triggers.push(TriggerSpec {
            name: trigger.name.clone(),
            event_type: event_type.as_str().to_owned(),
            filters: trigger.filters.clone(),
            resource_name_pattern: pattern.map(|pattern| pattern.as_str().to_owned()),
            destination,
            notification,
            sink,
            topic,
            topic_created,
            subscription: generated,
        });
    }
}

/// Records an error unless `name` can follow [`GENERATED_PREFIX`] in a topic, subscription
/// and sink name.
fn check_trigger_name(name: &str, label: &str, report: &mut Report) {
    let max_chars = MAX_NAME_CHARS - GENERATED_PREFIX.len();
    let rule = format!(
        "use 1 to {max_chars} characters from A-Z, a-z, 0-9, '_', '.' and '-', so that \
         \"{GENERATED_PREFIX}NAME\" is a valid topic, subscription and sink name"
    );
    if name.is_empty() {
        report.error(
            label,
            format!("name is missing: every trigger needs a name; {rule}"),
        );
        return;
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_chars || name.chars().count() > max_chars {
        report.error(label, format!("invalid name {name:?}: {rule}"));
    }
}

/// Returns the event type named `name`, or records an error listing the known ones.
fn check_event_type(name: &str, label: &str, report: &mut Report) -> Option<TriggerEventType> {
    if let Some(event_type) = TriggerEventType::from_name(name) {
        return Some(event_type);
    }
    let known: Vec<&str> = TriggerEventType::ALL
        .iter()
        .map(|kind| kind.as_str())
        .collect();
    let problem = if name.is_empty() {
        "event_type is missing".to_owned()
    } else {
        format!("unknown event_type {name:?}")
    };
    report.error(
        label,
        format!(
            "{problem}: set it to one of {}, as Eventarc names them",
            known.join(", ")
        ),
    );
    None
}

/// Checks the filters and the path pattern against the event type, and returns the parsed
/// pattern.
fn check_criteria(
    file: &ConfigFile,
    trigger: &TriggerConfig,
    event_type: TriggerEventType,
    label: &str,
    report: &mut Report,
) -> Option<PathPattern> {
    let allowed = event_type.filter_attributes();
    for (attribute, value) in &trigger.filters {
        if attribute == "type" {
            report.error(
                label,
                "filters.type is not a filter here: the event type is the trigger's \
                 event_type key",
            );
        } else if !allowed.contains(&attribute.as_str()) {
            report.error(
                label,
                format!(
                    "unknown filter attribute {attribute:?} for event type {event_type}, whose \
                     attributes are {}: remove it or fix its name, which is case-sensitive",
                    allowed.join(", ")
                ),
            );
        } else if value.is_empty() {
            report.error(
                label,
                format!("filters.{attribute} is empty: set the exact value to match, or remove it"),
            );
        }
    }
    for attribute in event_type.required_attributes() {
        if !trigger.filters.contains_key(*attribute) {
            report.error(
                label,
                format!(
                    "filters.{attribute} is missing, but triggers of {event_type} need it: add \
                     it to the filters table"
                ),
            );
        }
    }
    check_declared_source(file, trigger, event_type, label, report);
    check_resource_name(trigger, event_type, label, report)
}

/// Records an error unless the bucket or topic that the filters name is declared.
fn check_declared_source(
    file: &ConfigFile,
    trigger: &TriggerConfig,
    event_type: TriggerEventType,
    label: &str,
    report: &mut Report,
) {
    if event_type.storage_event().is_some() {
        let Some(bucket) = trigger
            .filters
            .get("bucket")
            .filter(|name| !name.is_empty())
        else {
            return;
        };
        if !file.buckets.iter().any(|declared| declared.name == *bucket) {
            report.error(
                label,
                format!(
                    "filters.bucket {bucket:?} is not a declared bucket; add [[buckets]] \
                     name = {bucket:?}"
                ),
            );
        }
    } else if event_type == TriggerEventType::PubsubMessagePublished {
        let Some(topic) = trigger.filters.get("topic").filter(|name| !name.is_empty()) else {
            return;
        };
        if !file.topics.iter().any(|declared| declared.name == *topic) {
            report.error(
                label,
                format!(
                    "filters.topic {topic:?} is not a declared topic; add [[topics]] \
                     name = {topic:?}"
                ),
            );
        }
    }
}

/// Parses the `resource_name` path pattern, which audit-log triggers alone take.
fn check_resource_name(
    trigger: &TriggerConfig,
    event_type: TriggerEventType,
    label: &str,
    report: &mut Report,
) -> Option<PathPattern> {
    let text = trigger.resource_name.as_deref()?;
    if event_type != TriggerEventType::AuditLogWritten {
        report.error(
            label,
            format!(
                "resource_name applies to {} triggers only, as in Eventarc, which rejects a \
                 path pattern on other event types: remove it",
                TriggerEventType::AuditLogWritten
            ),
        );
        return None;
    }
    if trigger.filters.contains_key("resourceName") {
        report.error(
            label,
            "both filters.resourceName and resource_name are set: keep filters.resourceName \
             for an exact match or resource_name for a path pattern",
        );
        return None;
    }
    match PathPattern::parse(text) {
        Ok(pattern) => Some(pattern),
        Err(err) => {
            report.error(label, format!("resource_name: {err}"));
            None
        }
    }
}

/// Records an error unless the trigger has exactly one destination, and a handler kind
/// that reads the trigger's events.
fn check_destination(
    trigger: &TriggerConfig,
    event_type: Option<TriggerEventType>,
    label: &str,
    report: &mut Report,
) {
    let handler = match (&trigger.handler, &trigger.push) {
        (None, None) => {
            report.error(
                label,
                "the trigger has no destination: add handler = { kind = ... } for a built-in \
                 handler, or push = { endpoint = \"http://...\" } for an HTTP endpoint",
            );
            return;
        }
        (Some(_), Some(_)) => {
            report.error(
                label,
                "the trigger has both a handler and a push table, but one destination takes \
                 its events: remove one of them, or declare a second trigger",
            );
            return;
        }
        (Some(handler), None) => handler,
        (None, Some(_)) => return,
    };
    let Some(event_type) = event_type else {
        return;
    };
    let needed = match handler.kind.as_str() {
        "thumbnail" | "annotate" => TriggerEventType::StorageFinalized,
        "offers" => TriggerEventType::PubsubMessagePublished,
        _ => return,
    };
    if event_type != needed {
        report.error(
            label,
            format!(
                "handler kind {:?} does not read {event_type} events: set event_type = \
                 {:?}, or push the events to an endpoint",
                handler.kind,
                needed.as_str()
            ),
        );
    }
}

/// Records an error for each generated name that a declared topic, subscription or sink
/// already has.
fn check_generated_names(
    file: &ConfigFile,
    name: &str,
    event_type: TriggerEventType,
    label: &str,
    report: &mut Report,
) {
    let generated = format!("{GENERATED_PREFIX}{name}");
    let declared = [
        (
            "topic",
            event_type != TriggerEventType::PubsubMessagePublished,
            file.topics
                .iter()
                .map(|topic| topic.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "subscription",
            true,
            file.subscriptions
                .iter()
                .map(|sub| sub.name.as_str())
                .collect(),
        ),
        (
            "sink",
            event_type == TriggerEventType::AuditLogWritten,
            file.sinks.iter().map(|sink| sink.name.as_str()).collect(),
        ),
    ];
    for (kind, created, names) in declared {
        if !created {
            continue;
        }
        if let Some(index) = names.iter().position(|declared| *declared == generated) {
            report.error(
                label,
                format!(
                    "the trigger creates {kind} {generated:?}, but {kind} #{} declares that \
                     name too: rename the trigger or the {kind}",
                    index + 1
                ),
            );
        }
    }
}
