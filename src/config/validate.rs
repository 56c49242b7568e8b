//! [`ConfigFile::validate`]: the checks that turn the file as written into a [`Config`].
//!
//! The checks of buckets are in `validate/buckets.rs`, those of handlers in
//! `validate/handler.rs`, those of push endpoints in `validate/push.rs` and those of
//! triggers in `validate/triggers.rs`. The tables that triggers generate are checked with
//! the declared ones.

mod buckets;
mod handler;
mod push;
mod triggers;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::RangeInclusive;

use sluice_router::filter::pubsub::SubscriptionFilter;
use sluice_router::filter::{self, LogFilter};
use sluice_router::route::{Exclusion, Sink};
use sluice_router::store::{DeadLetterPolicy, RetryPolicy, SubscriptionSpec, TopicSettings};

use super::{
    render_warning, Config, ConfigFile, DeadLetterConfig, Diagnostic, ExclusionConfig,
    RetryPolicyConfig, SinkConfig, SubscriptionConfig, ValidationErrors, ACK_DEADLINE_SECS,
    BACKOFF_SECS, MAX_DELIVERY_ATTEMPTS, MAX_NAME_CHARS, RESOURCE_NAME_CHARS, RETENTION_SECS,
};

impl ConfigFile {
    /// Checks every setting and compiles every filter, disabled sinks and exclusions
    /// included.
    ///
    /// # Errors
    ///
    /// Returns every problem found when there is any, each naming its topic, subscription,
    /// sink, exclusion or bucket. The unknown keys that [`super::parse`] recorded come first.
    pub(crate) fn validate(&self) -> Result<Config, ValidationErrors> {
        let mut report = Report::default();
        report.errors.extend(self.unknown_keys.iter().cloned());
        check_project(&self.project, &mut report);

        let mut expansion = triggers::expand(self, &mut report);
        let merged = expansion.merge(self);

        let declared: HashSet<&str> = merged
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .filter(|name| !name.is_empty())
            .collect();

        if let Some(topic) = &self.catch_all_topic {
            if topic.trim().is_empty() {
                report.error(
                    "catch_all_topic",
                    "topic name is empty: name the topic for unmatched entries, or remove the \
                     key",
                );
            } else {
                check_declared(&declared, "topic", topic, "catch_all_topic", &mut report);
            }
        }

        let mut first_use = HashMap::new();
        let mut topic_settings = HashMap::new();
        for (index, topic) in merged.topics.iter().enumerate() {
            let label = component_label("topic", &topic.name, index);
            if let Some(first) = record_name(&mut first_use, &topic.name, index) {
                report.error(&label, duplicate_message("topic", first));
            }
            check_resource_name(&topic.name, "topic", &label, &mut report);
            let message_retention_secs = topic.message_retention_secs.and_then(|secs| {
                check_range(
                    secs,
                    &RETENTION_SECS,
                    "message_retention_secs",
                    " seconds",
                    &label,
                    &mut report,
                )
            });
            topic_settings.insert(
                topic.name.clone(),
                TopicSettings {
                    message_retention_secs,
                },
            );
        }

        let mut first_use = HashMap::new();
        let mut subscriptions = Vec::with_capacity(merged.subscriptions.len());
        for (index, subscription) in merged.subscriptions.iter().enumerate() {
            let label = component_label("subscription", &subscription.name, index);
            if let Some(first) = record_name(&mut first_use, &subscription.name, index) {
                report.error(&label, duplicate_message("subscription", first));
            }
            if let Some(spec) = validate_subscription(subscription, &label, &declared, &mut report)
            {
                subscriptions.push(spec);
            }
        }

        let mut first_use = HashMap::new();
        let mut sinks = Vec::with_capacity(merged.sinks.len());
        for (index, sink) in merged.sinks.iter().enumerate() {
            let label = component_label("sink", &sink.name, index);
            if let Some(first) = record_name(&mut first_use, &sink.name, index) {
                report.error(&label, duplicate_message("sink", first));
            }
            if let Some(sink) = validate_sink(sink, &label, &declared, &mut report) {
                sinks.push(sink);
            }
        }

        let buckets = buckets::validate_buckets(&merged.buckets, &declared, &mut report);

        let handlers = handler::validate_handlers(
            &merged.subscriptions,
            &merged.buckets,
            &declared,
            &mut report,
        );
        expansion.relabel(&mut report);

        let store = self.store.validate().unwrap_or_else(|errors| {
            for message in errors {
                report.error("store", message);
            }
            super::StoreSpec::Sled
        });

        let push_tokens = push::validate_push_tokens(&merged.subscriptions, &mut report);
        let security =
            super::security::validate(self.tls.as_ref(), self.auth.as_ref(), &self.limits)
                .unwrap_or_else(|errors| {
                    for (component, message) in errors {
                        report.error(&component, message);
                    }
                    super::SecuritySpec::default()
                });

        if report.errors.is_empty() {
            Ok(Config {
                project: self.project.clone(),
                topics: merged
                    .topics
                    .iter()
                    .map(|topic| topic.name.clone())
                    .collect(),
                topic_settings,
                subscriptions,
                sinks,
                catch_all_topic: self.catch_all_topic.clone(),
                buckets,
                handlers,
                triggers: expansion.triggers,
                store,
                security,
                push_tokens,
                warnings: report.warnings,
            })
        } else {
            Err(ValidationErrors {
                errors: report.errors,
                warnings: report.warnings,
            })
        }
    }
}

/// Problems collected during validation.
#[derive(Debug, Default)]
struct Report {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report {
    fn error(&mut self, component: &str, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            component: component.to_owned(),
            message: message.into(),
        });
    }

    fn warning(&mut self, component: &str, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            component: component.to_owned(),
            message: message.into(),
        });
    }

    /// Compiles `text`, recording its error or warnings under `component`.
    fn compile(&mut self, component: &str, text: &str) -> Option<LogFilter> {
        // A multi-line TOML string keeps the line break before its closing quotes. Without
        // it, an error at the end of the filter points at its last line, not an empty one.
        let text = text.trim_end_matches(['\n', '\r']);
        match LogFilter::new(text) {
            Ok(filter) => {
                for warning in filter.warnings() {
                    self.warnings.push(Diagnostic {
                        component: component.to_owned(),
                        message: render_warning(warning, text),
                    });
                }
                Some(filter)
            }
            Err(err) => {
                self.error(component, err.render(text));
                None
            }
        }
    }
}

/// Names a component by its name, or by its 1-based position when it has none.
fn component_label(kind: &str, name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("{kind} #{}", index + 1)
    } else {
        format!("{kind} {name:?}")
    }
}

/// Records that the component at 0-based `index` uses `name`, and returns the index of the
/// first component with that name when `name` repeats one. Empty names are not recorded.
fn record_name<'a>(
    first_use: &mut HashMap<&'a str, usize>,
    name: &'a str,
    index: usize,
) -> Option<usize> {
    if name.is_empty() {
        return None;
    }
    match first_use.entry(name) {
        Entry::Occupied(first) => Some(*first.get()),
        Entry::Vacant(slot) => {
            slot.insert(index);
            None
        }
    }
}

fn duplicate_message(kind: &str, first: usize) -> String {
    format!(
        "duplicate name: {kind} #{} has the same name, and {kind} names must be unique",
        first + 1
    )
}

/// Records an error unless `topic` names a declared topic. `key` is the setting that names
/// it, such as `destination`.
fn check_declared(
    declared: &HashSet<&str>,
    key: &str,
    topic: &str,
    label: &str,
    report: &mut Report,
) {
    if !declared.contains(topic) {
        report.error(
            label,
            format!("{key} {topic:?} is not a declared topic; add [[topics]] name = {topic:?}"),
        );
    }
}

/// Converts `value` to `T` when it lies in `range`, and records an error naming `key`,
/// the value and the range otherwise. `unit` follows the range in the message.
fn check_range<T>(
    value: i64,
    range: &RangeInclusive<T>,
    key: &str,
    unit: &str,
    label: &str,
    report: &mut Report,
) -> Option<T>
where
    T: TryFrom<i64> + PartialOrd + fmt::Display,
{
    match T::try_from(value) {
        Ok(value) if range.contains(&value) => Some(value),
        _ => {
            report.error(
                label,
                format!(
                    "{key} is {value}, outside the valid range of {} to {}{unit}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// Records an error unless `project` can be the project segment of a resource name.
///
/// Google's emulator accepts any project id, so this only rejects what cannot stand in
/// `projects/{project}/topics/NAME`: an empty id, a `/`, white space or control characters.
fn check_project(project: &str, report: &mut Report) {
    let problem = if project.is_empty() {
        "it is empty".to_owned()
    } else if let Some(c) = project
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        format!("it contains {c:?}")
    } else {
        return;
    };
    report.error(
        "project",
        format!(
            "invalid project id {project:?}: {problem}; clients name resources \
             projects/PROJECT/topics/NAME, so use an id such as \"local\" or \"my-project\""
        ),
    );
}

/// Records an error unless `name` follows the Pub/Sub rules for topic and subscription
/// names. The message names the rule that failed.
fn check_resource_name(name: &str, kind: &str, label: &str, report: &mut Report) {
    let rule = format!(
        "{kind} names follow the Pub/Sub rules: {} to {} characters from A-Z, a-z, 0-9 and \
         '-', '_', '.', '~', '+', '%', starting with a letter but not with \"goog\"",
        RESOURCE_NAME_CHARS.start(),
        RESOURCE_NAME_CHARS.end()
    );
    if name.is_empty() {
        report.error(
            label,
            format!("name is missing: every {kind} needs a name, and {rule}"),
        );
        return;
    }

    let length = name.chars().count();
    let invalid_char = name
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && !matches!(c, '-' | '_' | '.' | '~' | '+' | '%'));
    let problem = if !RESOURCE_NAME_CHARS.contains(&length) {
        format!("it has {length} characters")
    } else if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        "it does not start with a letter".to_owned()
    } else if let Some(c) = invalid_char {
        format!("it contains {c:?}")
    } else if name.starts_with("goog") {
        "it starts with \"goog\"".to_owned()
    } else {
        return;
    };
    report.error(
        label,
        format!("invalid name {name:?}: {problem}, but {rule}"),
    );
}

fn validate_subscription(
    subscription: &SubscriptionConfig,
    label: &str,
    declared: &HashSet<&str>,
    report: &mut Report,
) -> Option<SubscriptionSpec> {
    check_resource_name(&subscription.name, "subscription", label, report);
    if subscription.topic.trim().is_empty() {
        report.error(
            label,
            "topic is missing: set it to the declared topic that the subscription receives from",
        );
    } else {
        check_declared(declared, "topic", &subscription.topic, label, report);
    }
    let ack_deadline_secs = check_range(
        subscription.ack_deadline_secs,
        &ACK_DEADLINE_SECS,
        "ack_deadline_secs",
        " seconds",
        label,
        report,
    );
    let dead_letter = match &subscription.dead_letter {
        Some(dead_letter) => {
            validate_dead_letter(dead_letter, &subscription.topic, label, declared, report)
        }
        None => None,
    };
    let retry_policy = match &subscription.retry_policy {
        Some(retry_policy) => validate_retry_policy(retry_policy, label, report),
        None => None,
    };
    let filter = check_subscription_filter(&subscription.filter, label, report);
    let message_retention_secs = check_range(
        subscription.message_retention_secs,
        &RETENTION_SECS,
        "message_retention_secs",
        " seconds",
        label,
        report,
    );
    let push = match &subscription.push {
        Some(push) => push::validate_push(subscription, push, label, report),
        None => None,
    };

    Some(SubscriptionSpec {
        name: subscription.name.clone(),
        topic: subscription.topic.clone(),
        ack_deadline_secs: ack_deadline_secs?,
        dead_letter: match subscription.dead_letter {
            Some(_) => Some(dead_letter?),
            None => None,
        },
        retry_policy: match subscription.retry_policy {
            Some(_) => Some(retry_policy?),
            None => None,
        },
        enable_message_ordering: subscription.enable_message_ordering,
        filter: filter?,
        message_retention_secs: message_retention_secs?,
        retain_acked_messages: subscription.retain_acked_messages,
        push: match subscription.push {
            Some(_) => Some(push?),
            None => None,
        },
    })
}

/// Checks the backoff bounds of a retry policy.
fn validate_retry_policy(
    retry_policy: &RetryPolicyConfig,
    label: &str,
    report: &mut Report,
) -> Option<RetryPolicy> {
    let minimum_backoff_secs = check_range(
        retry_policy.minimum_backoff_secs,
        &BACKOFF_SECS,
        "retry_policy.minimum_backoff_secs",
        " seconds",
        label,
        report,
    );
    let maximum_backoff_secs = check_range(
        retry_policy.maximum_backoff_secs,
        &BACKOFF_SECS,
        "retry_policy.maximum_backoff_secs",
        " seconds",
        label,
        report,
    );
    let (minimum_backoff_secs, maximum_backoff_secs) =
        (minimum_backoff_secs?, maximum_backoff_secs?);
    if minimum_backoff_secs > maximum_backoff_secs {
        report.error(
            label,
            format!(
                "retry_policy.minimum_backoff_secs is {minimum_backoff_secs}, above \
                 retry_policy.maximum_backoff_secs of {maximum_backoff_secs}: lower the minimum \
                 or raise the maximum"
            ),
        );
        return None;
    }
    Some(RetryPolicy::from_secs(
        u64::from(minimum_backoff_secs),
        u64::from(maximum_backoff_secs),
    ))
}

/// Parses a subscription filter, recording its error with the line, column and a caret.
/// Returns the text when it parses, without the line break that a multi-line TOML string
/// keeps before its closing quotes.
fn check_subscription_filter(text: &str, label: &str, report: &mut Report) -> Option<String> {
    let text = text.trim_end_matches(['\n', '\r']);
    match SubscriptionFilter::parse(text) {
        Ok(_) => Some(text.to_owned()),
        Err(err) => {
            report.error(label, err.render(text));
            None
        }
    }
}

/// Checks the dead-letter settings of the subscription that receives from
/// `subscription_topic`.
fn validate_dead_letter(
    dead_letter: &DeadLetterConfig,
    subscription_topic: &str,
    label: &str,
    declared: &HashSet<&str>,
    report: &mut Report,
) -> Option<DeadLetterPolicy> {
    if dead_letter.topic.trim().is_empty() {
        report.error(
            label,
            "dead_letter.topic is missing: set it to the declared topic that receives messages \
             after max_delivery_attempts failed deliveries",
        );
    } else if dead_letter.topic == subscription_topic {
        report.error(
            label,
            format!(
                "dead_letter.topic {:?} is the topic the subscription receives from, so \
                 dead-lettered messages would loop back into the subscription: use a separate \
                 topic",
                dead_letter.topic
            ),
        );
    } else {
        check_declared(
            declared,
            "dead_letter.topic",
            &dead_letter.topic,
            label,
            report,
        );
    }
    let max_delivery_attempts = check_range(
        dead_letter.max_delivery_attempts,
        &MAX_DELIVERY_ATTEMPTS,
        "dead_letter.max_delivery_attempts",
        "",
        label,
        report,
    )?;
    Some(DeadLetterPolicy {
        topic: dead_letter.topic.clone(),
        max_delivery_attempts,
    })
}

fn validate_sink(
    sink: &SinkConfig,
    label: &str,
    declared: &HashSet<&str>,
    report: &mut Report,
) -> Option<Sink> {
    check_name(&sink.name, "sink", label, report);
    if sink.destination.trim().is_empty() {
        report.error(
            label,
            "destination is missing: set it to the name of the topic that receives matching \
             entries",
        );
    } else {
        check_declared(declared, "destination", &sink.destination, label, report);
    }
    let filter = report.compile(label, &sink.filter);

    let mut first_use = HashMap::new();
    let mut exclusions = Vec::with_capacity(sink.exclusions.len());
    for (index, exclusion) in sink.exclusions.iter().enumerate() {
        let exclusion_label = format!(
            "{label}: {}",
            component_label("exclusion", &exclusion.name, index)
        );
        if let Some(first) = record_name(&mut first_use, &exclusion.name, index) {
            report.error(
                &exclusion_label,
                format!(
                    "duplicate name: exclusion #{} of this sink has the same name, and names \
                     must be unique within a sink",
                    first + 1
                ),
            );
        }
        if let Some(exclusion) = validate_exclusion(exclusion, &exclusion_label, report) {
            exclusions.push(exclusion);
        }
    }

    Some(Sink {
        name: sink.name.clone(),
        filter: filter?,
        exclusions,
        destination: sink.destination.clone(),
        disabled: sink.disabled,
    })
}

fn validate_exclusion(
    exclusion: &ExclusionConfig,
    label: &str,
    report: &mut Report,
) -> Option<Exclusion> {
    check_name(&exclusion.name, "exclusion", label, report);
    // An empty filter, or one of only comments, matches every entry.
    if filter::parse(&exclusion.filter).is_ok_and(|query| query.expr.is_none()) {
        report.error(
            label,
            "filter is empty, so the exclusion would exclude every entry that the sink matches: \
             write a filter for the entries to drop, or remove the exclusion",
        );
        return None;
    }
    Some(Exclusion {
        name: exclusion.name.clone(),
        filter: report.compile(label, &exclusion.filter)?,
        disabled: exclusion.disabled,
    })
}

/// Records an error unless `name` is 1 to [`MAX_NAME_CHARS`] characters of `[A-Za-z0-9_.-]`.
fn check_name(name: &str, kind: &str, label: &str, report: &mut Report) {
    let rule = format!("use 1 to {MAX_NAME_CHARS} characters from A-Z, a-z, 0-9, '_', '.' and '-'");
    if name.is_empty() {
        report.error(
            label,
            format!("name is missing: every {kind} needs a name, {rule}"),
        );
        return;
    }
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_chars || name.chars().count() > MAX_NAME_CHARS {
        report.error(label, format!("invalid name {name:?}: {rule}"));
    }
}
