//! The settings of a deployed function, as `sluice functions deploy` sends them and as the
//! deployment record stores them, with their validation.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sluice_router::buckets::EventType;
use sluice_router::route::path_pattern::PathPattern;

use crate::config::triggers::{audit_sink_filter, TriggerEventType};
use crate::config::MAX_NAME_CHARS;

/// The prefix of the subscription, and of the topic and sink a trigger creates, of every
/// function: `function-NAME`.
pub(crate) const GENERATED_PREFIX: &str = "function-";

/// Google's default timeout of a function, in seconds.
pub(crate) const DEFAULT_TIMEOUT_SECS: u32 = 60;

/// Google's maximum timeout of an event-driven function (1st gen), in seconds.
pub(crate) const MAX_TIMEOUT_SECS: u32 = 540;

/// How long a failed event is retried with `--retry` before it is dead-lettered: 7 days,
/// the retry window that Google documents for event-driven functions.
pub(crate) const DEFAULT_MAX_EVENT_AGE_SECS: u64 = 7 * 24 * 3600;

/// Deliveries in flight to one function when `--max-instances` is not set.
pub(crate) const DEFAULT_MAX_INSTANCES: u32 = 16;

/// Environment variables that `--set-env-vars` may not set, because a value would be
/// ignored. sluice sets `PORT`, `K_SERVICE`, `K_REVISION` and the two `PYTHON` variables for
/// the function process (see `instance`). functions-framework prefers the command line that
/// sluice builds to `FUNCTION_TARGET` and `FUNCTION_SIGNATURE_TYPE`, and `K_CONFIGURATION`
/// is reserved for the platform.
pub(crate) const RESERVED_ENV_VARS: [&str; 8] = [
    "PORT",
    "K_SERVICE",
    "K_REVISION",
    "K_CONFIGURATION",
    "FUNCTION_TARGET",
    "FUNCTION_SIGNATURE_TYPE",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
];

/// The `--trigger-event` names of Pub/Sub messages, which a topic trigger accepts: the
/// legacy name, the older provider path, and the CloudEvent type.
const PUBSUB_EVENT_TYPES: [&str; 3] = [
    "google.pubsub.topic.publish",
    "providers/cloud.pubsub/eventTypes/topic.publish",
    "google.cloud.pubsub.topic.v1.messagePublished",
];

/// Everything `sluice functions deploy` sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DeploySpec {
    /// The function's name, unique on the server.
    pub(crate) name: String,
    /// The folder with the function's source, on the server's file system.
    pub(crate) source: PathBuf,
    /// `python` or `nodejs`, optionally with a version as gcloud names it (`python312`).
    pub(crate) runtime: String,
    /// The function that functions-framework calls.
    pub(crate) entry_point: String,
    /// The event source.
    pub(crate) trigger: Trigger,
    /// The function's signature, which also selects the event format.
    #[serde(default)]
    pub(crate) signature_type: SignatureType,
    /// Whether a failed event is retried until it is older than `max_event_age_secs`.
    #[serde(default)]
    pub(crate) retry: bool,
    /// Deliveries in flight to the function at once; `None` takes
    /// [`DEFAULT_MAX_INSTANCES`].
    #[serde(default)]
    pub(crate) max_instances: Option<u32>,
    /// How long one call may run, in seconds, 1 to [`MAX_TIMEOUT_SECS`].
    #[serde(default = "default_timeout_secs")]
    pub(crate) timeout_secs: u32,
    /// How long a failing event is retried with `retry`, in seconds.
    #[serde(default = "default_max_event_age_secs")]
    pub(crate) max_event_age_secs: u64,
    /// Environment variables of the function's process.
    #[serde(default)]
    pub(crate) env: BTreeMap<String, String>,
}

fn default_timeout_secs() -> u32 {
    DEFAULT_TIMEOUT_SECS
}

/// The maximum of `--max-instances`, in concurrent calls: each is a connection and a
/// task inside sluice, all against one process.
const MAX_INSTANCES_LIMIT: u32 = 1000;

/// The longest `--max-event-age`: 31 days, the longest message retention of Pub/Sub.
const MAX_EVENT_AGE_LIMIT_SECS: u64 = 31 * 24 * 3600;

fn default_max_event_age_secs() -> u64 {
    DEFAULT_MAX_EVENT_AGE_SECS
}

/// The event source of a function: exactly one of gcloud's trigger options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind",
    deny_unknown_fields
)]
pub(crate) enum Trigger {
    /// `--trigger-bucket B` with `--trigger-event`.
    Bucket {
        /// The bucket whose object changes trigger the function.
        bucket: String,
        /// The Cloud Storage notification event type, such as `OBJECT_FINALIZE`.
        event_type: EventType,
    },
    /// `--trigger-topic T`.
    Topic {
        /// The topic, created when missing, as gcloud does.
        topic: String,
        /// The `--trigger-event` given with the topic, which must name Pub/Sub messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_type: Option<String>,
    },
    /// `--trigger-event-filters` with `type=google.cloud.audit.log.v1.written`.
    AuditLog {
        /// Exact matches on `serviceName`, `methodName` and `resourceName`.
        filters: BTreeMap<String, String>,
        /// A path pattern on `resourceName`.
        #[serde(default)]
        resource_name_pattern: Option<String>,
    },
}

/// The function signatures of functions-framework.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SignatureType {
    /// A background function, `(data, context)`, fed legacy background events.
    #[default]
    Event,
    /// A CloudEvent function, fed CloudEvents in binary mode.
    CloudEvent,
}

impl SignatureType {
    /// Returns the value of functions-framework's `--signature-type`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SignatureType::Event => "event",
            SignatureType::CloudEvent => "cloudevent",
        }
    }
}

/// The language runtimes that sluice prepares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Language {
    /// `python3` with a virtual environment.
    Python,
    /// `node` with `npm install`.
    Nodejs,
}

/// Returns the language of a runtime name: `python`, `nodejs`, or either with the version
/// digits gcloud uses, such as `python312`. Python 2 runtimes (`python2`, `python27`) are
/// rejected, because functions-framework 3.x needs Python 3.
///
/// # Errors
///
/// Returns a message naming the accepted runtimes.
pub(crate) fn parse_runtime(runtime: &str) -> Result<Language, String> {
    const ACCEPTED: &str = "use python (or python312 and the like), which runs on the server's \
                            python3, or nodejs (or nodejs20 and the like), which runs on the \
                            server's node";
    let digits_only = |rest: &str| rest.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = runtime.strip_prefix("python") {
        if digits_only(rest) {
            if rest.is_empty() || rest.starts_with('3') {
                return Ok(Language::Python);
            }
            return Err(format!(
                "unsupported runtime {runtime:?}: functions-framework needs Python 3; {ACCEPTED}"
            ));
        }
    }
    if let Some(rest) = runtime.strip_prefix("nodejs") {
        if digits_only(rest) {
            return Ok(Language::Nodejs);
        }
    }
    Err(format!("unknown runtime {runtime:?}: {ACCEPTED}"))
}

/// Returns the background event type of a Cloud Storage notification event type.
pub(crate) fn legacy_storage_event(event_type: EventType) -> &'static str {
    match event_type {
        EventType::ObjectFinalize => "google.storage.object.finalize",
        EventType::ObjectDelete => "google.storage.object.delete",
        EventType::ObjectArchive => "google.storage.object.archive",
        EventType::ObjectMetadataUpdate => "google.storage.object.metadataUpdate",
    }
}

impl DeploySpec {
    /// Checks every setting and returns every problem at once.
    ///
    /// # Errors
    ///
    /// Returns one message per problem, each naming the option at fault.
    pub(crate) fn validate(&self) -> Result<Language, Vec<String>> {
        let mut problems = Vec::new();
        check_name(&self.name, &mut problems);
        let language = parse_runtime(&self.runtime).map_err(|err| problems.push(err));
        if !self.source.is_absolute() {
            problems.push(format!(
                "--source {} is not an absolute path; the server resolves it, so give the \
                 full path",
                self.source.display()
            ));
        } else if !self.source.is_dir() {
            problems.push(format!(
                "--source {} is not a folder on the server",
                self.source.display()
            ));
        }
        if self.entry_point.is_empty() {
            problems.push("--entry-point is empty: name the function to call".to_owned());
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&self.timeout_secs) {
            problems.push(format!(
                "--timeout {} is out of range: use 1 to {MAX_TIMEOUT_SECS} seconds",
                self.timeout_secs
            ));
        }
        if let Some(max) = self.max_instances {
            if !(1..=MAX_INSTANCES_LIMIT).contains(&max) {
                problems.push(format!(
                    "--max-instances {max} is out of range: use 1 to {MAX_INSTANCES_LIMIT} calls \
                     at once"
                ));
            }
        }
        if !(1..=MAX_EVENT_AGE_LIMIT_SECS).contains(&self.max_event_age_secs) {
            problems.push(format!(
                "--max-event-age {} is out of range: use 1 to {MAX_EVENT_AGE_LIMIT_SECS} seconds \
                 (31 days, the longest that Pub/Sub keeps a message)",
                self.max_event_age_secs
            ));
        }
        for key in self.env.keys() {
            let valid = !key.is_empty()
                && !key.starts_with(|c: char| c.is_ascii_digit())
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                problems.push(format!(
                    "--set-env-vars: invalid variable name {key:?}; use letters, digits and \
                     '_', not starting with a digit"
                ));
            } else if RESERVED_ENV_VARS.contains(&key.as_str()) {
                problems.push(format!(
                    "--set-env-vars: {key} is reserved, because sluice or functions-framework \
                     sets it; remove it (the reserved names are {})",
                    RESERVED_ENV_VARS.join(", ")
                ));
            }
        }
        if let Err(err) = self.trigger.check() {
            problems.push(err);
        }
        match language {
            Ok(language) if problems.is_empty() => Ok(language),
            _ => Err(problems),
        }
    }

    /// The number of deliveries in flight to the function at once.
    pub(crate) fn concurrency(&self) -> usize {
        self.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES) as usize
    }
}

fn check_name(name: &str, problems: &mut Vec<String>) {
    let max_chars = MAX_NAME_CHARS - GENERATED_PREFIX.len() - "-dead-letter".len();
    let valid = !name.is_empty()
        && name.chars().count() <= max_chars
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        problems.push(format!(
            "invalid function name {name:?}: use 1 to {max_chars} characters from A-Z, a-z, \
             0-9, '-' and '_', starting with a letter"
        ));
    }
}

impl Trigger {
    /// Checks the trigger's own settings; whether the bucket exists is checked at deploy.
    fn check(&self) -> Result<(), String> {
        match self {
            Trigger::Bucket { bucket, .. } if bucket.is_empty() => {
                Err("--trigger-bucket is empty: name the bucket".to_owned())
            }
            Trigger::Topic { topic, .. } if topic.is_empty() => {
                Err("--trigger-topic is empty: name the topic".to_owned())
            }
            Trigger::Topic { topic, .. } if !crate::server::names::is_valid_name(topic) => {
                Err(format!(
                    "invalid --trigger-topic {topic:?}: give the topic's short name, 3 to 255 \
                     characters from A-Z, a-z, 0-9 and '-', '_', '.', '~', '+', '%', starting \
                     with a letter but not with \"goog\""
                ))
            }
            Trigger::Topic {
                event_type: Some(event_type),
                ..
            } if !PUBSUB_EVENT_TYPES.contains(&event_type.as_str()) => Err(format!(
                "--trigger-event {event_type} does not apply to --trigger-topic, which calls \
                 the function with {} events: remove --trigger-event, or use --trigger-bucket \
                 for storage events",
                PUBSUB_EVENT_TYPES[0]
            )),
            Trigger::AuditLog { .. } => self.audit_filter().map(|_| ()),
            _ => Ok(()),
        }
    }

    /// Returns the log sink filter of an audit-log trigger, built as `[[triggers]]` build
    /// theirs, or `None` for other triggers.
    ///
    /// # Errors
    ///
    /// Returns a message for a missing or unknown filter attribute or a bad path pattern.
    pub(crate) fn audit_filter(&self) -> Result<Option<String>, String> {
        let Trigger::AuditLog {
            filters,
            resource_name_pattern,
        } = self
        else {
            return Ok(None);
        };
        let event_type = TriggerEventType::AuditLogWritten;
        let allowed = event_type.filter_attributes();
        for (attribute, value) in filters {
            if !allowed.contains(&attribute.as_str()) {
                return Err(format!(
                    "--trigger-event-filters: unknown attribute {attribute:?} for {event_type}, \
                     whose attributes are type, {}",
                    allowed.join(", ")
                ));
            }
            if value.is_empty() {
                return Err(format!(
                    "--trigger-event-filters: {attribute} is empty; set the exact value"
                ));
            }
        }
        for attribute in event_type.required_attributes() {
            if !filters.contains_key(*attribute) {
                return Err(format!(
                    "--trigger-event-filters: {attribute} is missing, but {event_type} \
                     triggers need it"
                ));
            }
        }
        let pattern = match resource_name_pattern {
            Some(text) if filters.contains_key("resourceName") => {
                return Err(format!(
                    "both --trigger-event-filters resourceName and the path pattern {text:?} \
                     are set: keep one"
                ));
            }
            Some(text) => Some(
                PathPattern::parse(text)
                    .map_err(|err| format!("--trigger-event-filters-path-pattern: {err}"))?,
            ),
            None => None,
        };
        Ok(Some(audit_sink_filter(filters, pattern.as_ref())))
    }

    /// Describes the trigger as `sluice functions list` shows it.
    pub(crate) fn describe(&self) -> String {
        match self {
            Trigger::Bucket { bucket, event_type } => {
                format!("bucket {bucket} ({})", legacy_storage_event(*event_type))
            }
            Trigger::Topic { topic, .. } => format!("topic {topic}"),
            Trigger::AuditLog { filters, .. } => {
                let method = filters.get("methodName").map_or("", String::as_str);
                format!("audit log {method}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sluice_router::filter::LogFilter;

    use super::*;

    fn audit(filters: &[(&str, &str)], pattern: Option<&str>) -> Trigger {
        Trigger::AuditLog {
            filters: filters
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            resource_name_pattern: pattern.map(str::to_owned),
        }
    }

    #[test]
    fn runtime_names_follow_gcloud() {
        assert_eq!(parse_runtime("python312"), Ok(Language::Python));
        assert_eq!(parse_runtime("python"), Ok(Language::Python));
        assert_eq!(parse_runtime("nodejs20"), Ok(Language::Nodejs));
        assert!(parse_runtime("go122").is_err());
        assert!(parse_runtime("python3.12").is_err());
    }

    #[test]
    fn python2_runtimes_are_rejected() {
        for runtime in ["python2", "python27"] {
            let err = parse_runtime(runtime).expect_err("Python 2 cannot run the framework");
            assert!(err.contains("unsupported runtime"), "{err}");
            assert!(
                err.contains("python312"),
                "the message lists the accepted runtimes: {err}"
            );
        }
        assert_eq!(parse_runtime("python3"), Ok(Language::Python));
        assert_eq!(parse_runtime("python37"), Ok(Language::Python));
    }

    fn valid_spec() -> DeploySpec {
        DeploySpec {
            name: "offers".to_owned(),
            source: std::env::temp_dir(),
            runtime: "python312".to_owned(),
            entry_point: "on_message".to_owned(),
            trigger: Trigger::Topic {
                topic: "offers".to_owned(),
                event_type: None,
            },
            signature_type: SignatureType::Event,
            retry: false,
            max_instances: None,
            timeout_secs: 60,
            max_event_age_secs: 60,
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn reserved_env_vars_are_rejected() {
        assert!(valid_spec().validate().is_ok());
        for key in RESERVED_ENV_VARS {
            let mut spec = valid_spec();
            spec.env.insert(key.to_owned(), "1".to_owned());
            let problems = spec.validate().expect_err("a reserved name");
            assert_eq!(problems.len(), 1, "{problems:#?}");
            assert!(
                problems[0].contains(&format!("{key} is reserved")),
                "{}",
                problems[0]
            );
        }
    }

    #[test]
    fn topic_trigger_rejects_storage_event() {
        let mut spec = valid_spec();
        spec.trigger = Trigger::Topic {
            topic: "offers".to_owned(),
            event_type: Some("google.cloud.storage.object.v1.deleted".to_owned()),
        };
        let problems = spec.validate().expect_err("a storage event on a topic");
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("does not apply to --trigger-topic"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("remove --trigger-event"),
            "{}",
            problems[0]
        );

        spec.trigger = Trigger::Topic {
            topic: "offers".to_owned(),
            event_type: Some("google.pubsub.topic.publish".to_owned()),
        };
        assert!(
            spec.validate().is_ok(),
            "the Pub/Sub event type fits a topic"
        );
    }

    #[test]
    fn audit_filter_selects_by_method() {
        let trigger = audit(
            &[
                ("serviceName", "storage.googleapis.com"),
                ("methodName", "storage.objects.create"),
            ],
            Some("projects/_/buckets/uploads/objects/*.jpg"),
        );
        let text = trigger
            .audit_filter()
            .expect("valid")
            .expect("an audit trigger has a filter");
        let filter = LogFilter::new(&text).expect("the filter compiles");
        let entry = |method: &str, resource: &str| {
            json!({
                "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
                "protoPayload": {
                    "serviceName": "storage.googleapis.com",
                    "methodName": method,
                    "resourceName": resource,
                }
            })
        };
        assert!(filter.matches(&entry(
            "storage.objects.create",
            "projects/_/buckets/uploads/objects/a.jpg"
        )));
        assert!(!filter.matches(&entry(
            "storage.objects.delete",
            "projects/_/buckets/uploads/objects/a.jpg"
        )));
        assert!(!filter.matches(&entry(
            "storage.objects.create",
            "projects/_/buckets/uploads/objects/a.png"
        )));
    }

    #[test]
    fn audit_filter_needs_method() {
        let trigger = audit(&[("serviceName", "storage.googleapis.com")], None);
        let err = trigger.audit_filter().expect_err("methodName is required");
        assert!(err.contains("methodName is missing"), "{err}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let spec = DeploySpec {
            name: "9bad".to_owned(),
            source: PathBuf::from("relative"),
            runtime: "ruby".to_owned(),
            entry_point: String::new(),
            trigger: Trigger::Topic {
                topic: String::new(),
                event_type: None,
            },
            signature_type: SignatureType::Event,
            retry: false,
            max_instances: Some(0),
            timeout_secs: 0,
            max_event_age_secs: 1,
            env: BTreeMap::from([("1X".to_owned(), "v".to_owned())]),
        };
        let problems = spec.validate().expect_err("invalid");
        assert_eq!(problems.len(), 8, "{problems:#?}");
    }

    #[test]
    fn validate_bounds_instances_and_event_age() {
        let mut spec = valid_spec();
        spec.max_instances = Some(4_000_000_000);
        spec.max_event_age_secs = u64::MAX;
        let problems = spec.validate().expect_err("out of range");
        assert!(
            problems[0].contains("--max-instances 4000000000 is out of range: use 1 to 1000"),
            "{problems:#?}"
        );
        assert!(
            problems[1].contains("use 1 to 2678400 seconds"),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 2, "{problems:#?}");
    }
}
