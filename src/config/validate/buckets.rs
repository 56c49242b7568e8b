//! Validation of the `[[buckets]]` tables and their notification configs.

use std::collections::{HashMap, HashSet};

use sluice_router::buckets::{
    validate_bucket_name, EventType, NotificationConfig, PayloadFormat, MAX_CONFIGS_PER_BUCKET,
    MAX_CONFIGS_PER_EVENT_TYPE,
};

use super::{check_declared, component_label, duplicate_message, record_name, Report};
use crate::config::{BucketConfig, BucketNotificationConfig, BucketSpec};

/// The attributes that every notification message carries. A custom attribute with one of
/// these names would never be sent, because the standard value replaces it.
const STANDARD_ATTRIBUTES: [&str; 9] = [
    "notificationConfig",
    "eventType",
    "payloadFormat",
    "bucketId",
    "objectId",
    "objectGeneration",
    "eventTime",
    "overwroteGeneration",
    "overwrittenByGeneration",
];

/// Checks every bucket and returns the valid ones, in file order.
pub(super) fn validate_buckets(
    buckets: &[BucketConfig],
    declared_topics: &HashSet<&str>,
    report: &mut Report,
) -> Vec<BucketSpec> {
    let mut first_use = HashMap::new();
    let mut specs = Vec::with_capacity(buckets.len());
    for (index, bucket) in buckets.iter().enumerate() {
        let label = component_label("bucket", &bucket.name, index);
        if let Some(first) = record_name(&mut first_use, &bucket.name, index) {
            report.error(&label, duplicate_message("bucket", first));
        }
        if let Some(spec) = validate_bucket(bucket, &label, declared_topics, report) {
            specs.push(spec);
        }
    }
    specs
}

fn validate_bucket(
    bucket: &BucketConfig,
    label: &str,
    declared_topics: &HashSet<&str>,
    report: &mut Report,
) -> Option<BucketSpec> {
    let errors_before = report.errors.len();
    if bucket.name.is_empty() {
        report.error(
            label,
            "name is missing: every bucket needs a name that follows Cloud Storage's rules, \
             such as \"uploads\"",
        );
    } else if let Err(rule) = validate_bucket_name(&bucket.name) {
        report.error(label, format!("invalid name {:?}: {rule}", bucket.name));
    }

    let mut notifications: Vec<NotificationConfig> = Vec::new();
    for (index, notification) in bucket.notifications.iter().enumerate() {
        let notification_label = format!("{label}: notification #{}", index + 1);
        let Some(config) =
            validate_notification(notification, &notification_label, declared_topics, report)
        else {
            continue;
        };
        if let Some(first) = notifications.iter().position(|other| *other == config) {
            report.error(
                &notification_label,
                format!(
                    "repeats notification #{} of this bucket, so every message would be \
                     published twice: remove one of them",
                    first + 1
                ),
            );
        }
        notifications.push(config);
    }
    check_notification_limits(&bucket.notifications, label, report);

    (report.errors.len() == errors_before).then(|| BucketSpec {
        name: bucket.name.clone(),
        versioning: bucket.versioning,
        notifications,
    })
}

/// Checks one `[[buckets.notifications]]` table and converts it to a config with an empty
/// id, so that the bucket store assigns one.
fn validate_notification(
    notification: &BucketNotificationConfig,
    label: &str,
    declared_topics: &HashSet<&str>,
    report: &mut Report,
) -> Option<NotificationConfig> {
    let errors_before = report.errors.len();
    if notification.topic.trim().is_empty() {
        report.error(
            label,
            "topic is missing: set it to the declared topic that receives the bucket's \
             object changes",
        );
    } else {
        check_declared(declared_topics, "topic", &notification.topic, label, report);
    }
    let event_types = validate_event_types(notification.event_types.as_deref(), label, report);
    let payload_format = match notification.payload_format.parse::<PayloadFormat>() {
        Ok(format) => Some(format),
        Err(err) => {
            report.error(label, format!("payload_format: {err}"));
            None
        }
    };
    for key in notification.custom_attributes.keys() {
        if key.is_empty() {
            report.error(
                label,
                "custom_attributes has an empty key: give every attribute a name",
            );
        } else if STANDARD_ATTRIBUTES.contains(&key.as_str()) {
            report.error(
                label,
                format!(
                    "custom_attributes key {key:?} is a standard attribute of notification \
                     messages, whose value would replace yours: rename it"
                ),
            );
        }
    }

    if report.errors.len() > errors_before {
        return None;
    }
    Some(NotificationConfig {
        id: String::new(),
        topic: notification.topic.clone(),
        event_types: event_types?,
        object_name_prefix: Some(notification.object_name_prefix.clone())
            .filter(|prefix| !prefix.is_empty()),
        payload_format: payload_format?,
        custom_attributes: notification.custom_attributes.clone(),
    })
}

/// Parses the event type names. Absent names mean every type, which the config stores as an
/// empty list.
fn validate_event_types(
    names: Option<&[String]>,
    label: &str,
    report: &mut Report,
) -> Option<Vec<EventType>> {
    let Some(names) = names else {
        return Some(Vec::new());
    };
    if names.is_empty() {
        report.error(
            label,
            "event_types is empty: list the event types to publish, or remove the key to \
             publish every type",
        );
        return None;
    }
    let mut event_types = Vec::with_capacity(names.len());
    let mut valid = true;
    for name in names {
        match name.parse::<EventType>() {
            Ok(event_type) if event_types.contains(&event_type) => {
                report.error(label, format!("event_types lists {name} twice: remove one"));
                valid = false;
            }
            Ok(event_type) => event_types.push(event_type),
            Err(err) => {
                report.error(label, format!("event_types: {err}"));
                valid = false;
            }
        }
    }
    valid.then_some(event_types)
}

/// Records an error when the bucket has more notification configs than Cloud Storage
/// allows, in all or for one event type.
fn check_notification_limits(
    notifications: &[BucketNotificationConfig],
    label: &str,
    report: &mut Report,
) {
    if notifications.len() > MAX_CONFIGS_PER_BUCKET {
        report.error(
            label,
            format!(
                "{} notification configs, but a bucket can have at most \
                 {MAX_CONFIGS_PER_BUCKET}: remove some",
                notifications.len()
            ),
        );
    }
    for event_type in EventType::ALL {
        let count = notifications
            .iter()
            .filter(|notification| includes(notification, event_type))
            .count();
        if count > MAX_CONFIGS_PER_EVENT_TYPE {
            report.error(
                label,
                format!(
                    "{count} notification configs publish {event_type}, but a bucket can have \
                     at most {MAX_CONFIGS_PER_EVENT_TYPE} for one event type: remove some or \
                     list fewer event_types"
                ),
            );
        }
    }
}

/// Returns whether a notification table publishes `event_type`. It reads the names as
/// written, so it works for a table with invalid names too.
pub(super) fn includes(notification: &BucketNotificationConfig, event_type: EventType) -> bool {
    match &notification.event_types {
        None => true,
        Some(names) => names.iter().any(|name| name == event_type.as_str()),
    }
}
