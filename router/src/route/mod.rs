//! The log router: Cloud Logging sinks over incoming LogEntries.
//!
//! Each [`Sink`] has an inclusion filter, exclusion filters and a destination topic. Every
//! enabled sink looks at every entry on its own (fan-out, not first match): an entry goes to
//! each sink whose inclusion filter matches and none of whose enabled exclusions match. An
//! entry no sink takes is counted as unmatched and dropped, or sent to the catch-all topic
//! when one is configured.
//!
//! [`LogRouter::route_batch`] parses each entry once and evaluates all inclusion filters
//! together through a [`FilterSet`], which shares the work between sinks.

pub mod path_pattern;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::filter::{FilterSet, LogFilter};
use crate::store::{NewMessage, TopicMessage};

/// The attribute Cloud Logging sets on messages it exports to Pub/Sub: the entry's
/// timestamp.
pub const TIMESTAMP_ATTRIBUTE: &str = "logging.googleapis.com/timestamp";

/// Largest entry the router accepts: an exported entry becomes one Pub/Sub message, and
/// Pub/Sub messages are at most 10 MiB.
pub const MAX_ENTRY_BYTES: usize = 10 * 1024 * 1024;

/// A log sink.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The sink's name, unique in a configuration.
    pub name: String,
    /// Entries the sink takes.
    pub filter: LogFilter,
    /// Entries the sink leaves out even when its filter matches.
    pub exclusions: Vec<Exclusion>,
    /// The topic that receives the sink's entries.
    pub destination: String,
    /// A disabled sink takes no entries.
    pub disabled: bool,
}

/// A named exclusion filter of a sink.
#[derive(Debug, Clone)]
pub struct Exclusion {
    /// The exclusion's name, unique within its sink.
    pub name: String,
    /// Entries this exclusion removes.
    pub filter: LogFilter,
    /// A disabled exclusion removes nothing.
    pub disabled: bool,
}

/// The outcome of routing one batch of raw entries.
#[derive(Debug, Default)]
pub struct RoutedBatch {
    /// One message per (entry, sink) match, ready to publish.
    pub messages: Vec<TopicMessage>,
    /// The index in the batch of the entry that each message of `messages` came from.
    pub message_entries: Vec<u32>,
    /// Entries parsed and routed.
    pub accepted: u32,
    /// Accepted entries that no sink took.
    pub unmatched: u32,
    /// Entries that were not valid LogEntry JSON, as (index in the batch, reason).
    pub errors: Vec<(u32, String)>,
    /// Matches per sink name.
    pub sink_matches: BTreeMap<String, u32>,
}

/// Sinks evaluated together.
#[derive(Debug)]
pub struct LogRouter {
    /// The enabled sinks, in configuration order; position `i` matches filter `i` of `set`.
    sinks: Vec<Sink>,
    set: FilterSet,
    catch_all: Option<String>,
}

impl LogRouter {
    /// Builds a router over the enabled sinks among `sinks`.
    pub fn new(sinks: Vec<Sink>, catch_all: Option<String>) -> Self {
        let sinks: Vec<Sink> = sinks.into_iter().filter(|sink| !sink.disabled).collect();
        let set = FilterSet::new(sinks.iter().map(|sink| sink.filter.clone()).collect());
        LogRouter {
            sinks,
            set,
            catch_all,
        }
    }

    /// The enabled sinks.
    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    /// The topics the router may publish to: sink destinations and the catch-all topic.
    pub fn destinations(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.sinks.iter().map(|s| s.destination.as_str()).collect();
        topics.extend(self.catch_all.as_deref());
        topics.sort_unstable();
        topics.dedup();
        topics
    }

    /// Returns the positions of the sinks that take `entry`, in configuration order.
    pub fn route(&self, entry: &Value) -> Vec<usize> {
        let mut matched = Vec::new();
        self.route_into(entry, &mut matched);
        matched
    }

    fn route_into(&self, entry: &Value, matched: &mut Vec<usize>) {
        self.set.matching_into(entry, matched);
        matched.retain(|&i| {
            !self.sinks[i]
                .exclusions
                .iter()
                .any(|exclusion| !exclusion.disabled && exclusion.filter.matches(entry))
        });
    }

    /// Parses and routes a batch of entries, each one JSON LogEntry.
    pub fn route_batch<S: AsRef<str>>(&self, entries: &[S]) -> RoutedBatch {
        let mut batch = RoutedBatch::default();
        let mut matched = Vec::new();
        for (index, raw) in entries.iter().enumerate() {
            let raw = raw.as_ref();
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if raw.len() > MAX_ENTRY_BYTES {
                batch.errors.push((
                    index,
                    format!(
                        "the entry is {} bytes, over the {MAX_ENTRY_BYTES}-byte limit of a \
                         Pub/Sub message; shorten its payload",
                        raw.len()
                    ),
                ));
                continue;
            }
            let entry: Value = match serde_json::from_str(raw) {
                Ok(entry @ Value::Object(_)) => entry,
                Ok(other) => {
                    batch.errors.push((
                        index,
                        format!("expected a JSON object, found {}", json_kind(&other)),
                    ));
                    continue;
                }
                Err(err) => {
                    batch.errors.push((index, format!("invalid JSON: {err}")));
                    continue;
                }
            };
            batch.accepted += 1;
            self.route_into(&entry, &mut matched);
            if matched.is_empty() {
                batch.unmatched += 1;
                if let Some(topic) = &self.catch_all {
                    batch.messages.push(export(topic, raw, &entry));
                    batch.message_entries.push(index);
                }
                continue;
            }
            for &sink in &matched {
                let sink = &self.sinks[sink];
                *batch.sink_matches.entry(sink.name.clone()).or_default() += 1;
                batch.messages.push(export(&sink.destination, raw, &entry));
                batch.message_entries.push(index);
            }
        }
        batch
    }
}

/// The Pub/Sub message a sink exports: the entry's JSON as data, with its timestamp as an
/// attribute, as Cloud Logging does.
fn export(topic: &str, raw: &str, entry: &Value) -> TopicMessage {
    let mut attributes = BTreeMap::new();
    if let Some(timestamp) = entry.get("timestamp").and_then(Value::as_str) {
        attributes.insert(TIMESTAMP_ATTRIBUTE.to_owned(), timestamp.to_owned());
    }
    let message = NewMessage {
        data: raw.trim().as_bytes().to_vec(),
        attributes,
        ordering_key: String::new(),
    };
    TopicMessage {
        topic: topic.to_owned(),
        message,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(name: &str, filter: &str, destination: &str) -> Sink {
        Sink {
            name: name.to_owned(),
            filter: LogFilter::new(filter).expect("test filter compiles"),
            exclusions: Vec::new(),
            destination: destination.to_owned(),
            disabled: false,
        }
    }

    #[test]
    fn every_matching_sink_gets_the_entry() {
        let router = LogRouter::new(
            vec![
                sink("all-errors", "severity>=ERROR", "errors"),
                sink("gcs", r#"resource.type="gcs_bucket""#, "gcs"),
            ],
            None,
        );
        let batch =
            router.route_batch(&[r#"{"severity":"ERROR","resource":{"type":"gcs_bucket"}}"#]);
        assert_eq!(batch.messages.len(), 2, "fan-out, not first match");
        assert_eq!(batch.sink_matches["all-errors"], 1);
        assert_eq!(batch.sink_matches["gcs"], 1);
    }

    #[test]
    fn exclusions_and_disabled_sinks() {
        let mut noisy = sink("gcs", r#"resource.type="gcs_bucket""#, "gcs");
        noisy.exclusions.push(Exclusion {
            name: "lists".to_owned(),
            filter: LogFilter::new(r#"protoPayload.methodName="storage.objects.list""#)
                .expect("compiles"),
            disabled: false,
        });
        let mut off = sink("off", "", "everything");
        off.disabled = true;
        let router = LogRouter::new(vec![noisy, off], None);
        let listed = r#"{"resource":{"type":"gcs_bucket"},"protoPayload":{"methodName":"storage.objects.list"}}"#;
        let batch = router.route_batch(&[listed]);
        assert!(
            batch.messages.is_empty(),
            "excluded, and the disabled sink takes nothing"
        );
        assert_eq!(batch.unmatched, 1);
    }

    #[test]
    fn unmatched_go_to_catch_all() {
        let router = LogRouter::new(
            vec![sink("e", "severity>=ERROR", "errors")],
            Some("rest".to_owned()),
        );
        let batch =
            router.route_batch(&[r#"{"severity":"INFO","timestamp":"2024-01-01T00:00:00Z"}"#]);
        assert_eq!(batch.messages.len(), 1);
        assert_eq!(batch.messages[0].topic, "rest");
        assert_eq!(
            batch.messages[0].message.attributes[TIMESTAMP_ATTRIBUTE],
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn bad_entries_are_reported_by_index() {
        let router = LogRouter::new(vec![sink("e", "", "all")], None);
        let batch = router.route_batch(&["{}", "not json", "[1]"]);
        assert_eq!(batch.accepted, 1);
        assert_eq!(batch.errors.len(), 2);
        assert_eq!(batch.errors[0].0, 1);
        assert!(
            batch.errors[1].1.contains("an array"),
            "{}",
            batch.errors[1].1
        );
    }
}
