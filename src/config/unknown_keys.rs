//! Error messages for the keys that the schema does not know.
//!
//! [`super::parse`] wraps the TOML deserializer in `serde_ignored`, which reports the path of
//! every key that serde skipped, where `deny_unknown_fields` would stop at the first one.
//! This module turns each path into a [`Diagnostic`] that names the table, gives the key's
//! line and column, and suggests the closest known key.

use serde::de::{self, Deserialize, Visitor};
use sluice_router::filter::Position;
use toml::de::{DeTable, DeValue};

use super::{AuthConfig, GrantConfig, IdentityConfig, LimitsConfig, OidcTokenConfig, TlsConfig};
use super::{
    BucketConfig, BucketNotificationConfig, ConfigFile, DeadLetterConfig, Diagnostic,
    ExclusionConfig, HandlerConfig, PushEndpointConfig, RetryPolicyConfig, SinkConfig, StoreConfig,
    SubscriptionConfig, TopicConfig, TriggerConfig,
};

/// Maximum edit distance between an unknown key and the known key suggested in its place.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// One step of a key path: a table key or a 0-based array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// Converts a path that `serde_ignored` reports into segments, root first. `Option` and
/// newtype wrappers add no segment because they have no counterpart in the TOML text.
pub(super) fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut reversed = Vec::new();
    let mut current = path;
    loop {
        match current {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                reversed.push(Segment::Index(*index));
                current = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                reversed.push(Segment::Key(key.clone()));
                current = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => current = parent,
        }
    }
    reversed.reverse();
    reversed
}

/// Builds one error per unknown key path. `text` is the parsed configuration, which is
/// parsed again here, only when there is an unknown key, to find each key's position.
pub(super) fn diagnose(text: &str, paths: &[Vec<Segment>]) -> Vec<Diagnostic> {
    if paths.is_empty() {
        return Vec::new();
    }
    let document = DeTable::parse(text).ok();
    paths
        .iter()
        .map(|path| diagnose_path(text, document.as_ref().map(|doc| doc.get_ref()), path))
        .collect()
}

fn diagnose_path(text: &str, document: Option<&DeTable<'_>>, path: &[Segment]) -> Diagnostic {
    let Some((Segment::Key(key), table_path)) = path.split_last() else {
        // Every table of the schema is a struct, so serde only skips keys. An array element
        // is skipped only by a tuple, which the schema does not have.
        return Diagnostic {
            component: table_label(path),
            message: "unexpected value".to_owned(),
        };
    };

    let mut message = format!("unknown key {key:?}");
    if let Some(offset) = document.and_then(|document| key_offset(document, table_path, key)) {
        let position = Position::of_offset(text, offset);
        message.push_str(&format!(
            " at line {}, column {}",
            position.line, position.column
        ));
    }
    let known = known_keys(table_path);
    if let Some(suggestion) = closest_key(key, known) {
        message.push_str(&format!(": did you mean {suggestion:?}?"));
    } else if !known.is_empty() {
        message.push_str(&format!(
            ": the keys of this table are {}",
            known.join(", ")
        ));
    }
    Diagnostic {
        component: table_label(table_path),
        message,
    }
}

/// Formats a table path as dotted keys with 1-based array indices, such as
/// `sinks[2].exclusions[1]`. The root table is `top level`.
fn table_label(path: &[Segment]) -> String {
    if path.is_empty() {
        return "top level".to_owned();
    }
    let mut label = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !label.is_empty() {
                    label.push('.');
                }
                label.push_str(key);
            }
            Segment::Index(index) => label.push_str(&format!("[{}]", index + 1)),
        }
    }
    label
}

/// Finds the byte offset of `key` in the table at `table_path` of `document`.
fn key_offset(document: &DeTable<'_>, table_path: &[Segment], key: &str) -> Option<usize> {
    let mut table = document;
    let mut segments = table_path.iter().peekable();
    while let Some(segment) = segments.next() {
        let Segment::Key(name) = segment else {
            return None;
        };
        let mut value = table.get(name.as_str())?.get_ref();
        while let Some(Segment::Index(index)) = segments.peek() {
            value = value.get(*index)?.get_ref();
            segments.next();
        }
        let DeValue::Table(inner) = value else {
            return None;
        };
        table = inner;
    }
    let (name, _) = table.get_key_value(key)?;
    Some(name.span().start)
}

/// Returns the keys that the table at `table_path` accepts, or none for a table outside
/// the schema.
fn known_keys(table_path: &[Segment]) -> &'static [&'static str] {
    let keys: Vec<&str> = table_path
        .iter()
        .filter_map(|segment| match segment {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [] => field_names::<ConfigFile>(),
        ["topics"] => field_names::<TopicConfig>(),
        ["subscriptions"] => field_names::<SubscriptionConfig>(),
        ["subscriptions", "dead_letter"] => field_names::<DeadLetterConfig>(),
        ["subscriptions", "retry_policy"] => field_names::<RetryPolicyConfig>(),
        ["subscriptions", "handler"] => field_names::<HandlerConfig>(),
        ["subscriptions", "push"] => field_names::<PushEndpointConfig>(),
        ["subscriptions", "push", "oidc_token"] => field_names::<OidcTokenConfig>(),
        ["triggers", "push", "oidc_token"] => field_names::<OidcTokenConfig>(),
        ["sinks"] => field_names::<SinkConfig>(),
        ["sinks", "exclusions"] => field_names::<ExclusionConfig>(),
        ["buckets"] => field_names::<BucketConfig>(),
        ["buckets", "notifications"] => field_names::<BucketNotificationConfig>(),
        ["store"] => field_names::<StoreConfig>(),
        ["tls"] => field_names::<TlsConfig>(),
        ["auth"] => field_names::<AuthConfig>(),
        ["auth", "identities"] => field_names::<IdentityConfig>(),
        ["auth", "identities", "grants"] => field_names::<GrantConfig>(),
        ["limits"] => field_names::<LimitsConfig>(),
        ["triggers"] => field_names::<TriggerConfig>(),
        ["triggers", "handler"] => field_names::<HandlerConfig>(),
        ["triggers", "push"] => field_names::<PushEndpointConfig>(),
        ["triggers", "dead_letter"] => field_names::<DeadLetterConfig>(),
        ["triggers", "retry_policy"] => field_names::<RetryPolicyConfig>(),
        _ => &[],
    }
}

/// Returns the known key closest to `key` by edit distance, if one is within
/// [`MAX_SUGGESTION_DISTANCE`]. Ties go to the key that comes first in `known`.
fn closest_key(key: &str, known: &[&'static str]) -> Option<&'static str> {
    known
        .iter()
        .map(|&candidate| (edit_distance(key, candidate), candidate))
        .filter(|&(distance, _)| distance <= MAX_SUGGESTION_DISTANCE)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Computes the Levenshtein distance between `a` and `b`, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // At the start of iteration i, previous[j] is the distance between the first i characters
    // of `a` and the first j characters of `b`.
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, a_char) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, &b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Returns the field names that the derived `Deserialize` of `T` accepts.
///
/// Derived implementations pass their field names to `Deserializer::deserialize_struct`, so
/// a deserializer that records them keeps the suggestions in step with the structs.
fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut probe = FieldNameProbe { fields: &[] };
    // The probe always fails once it has the names, so the error carries no information.
    let _ = T::deserialize(&mut probe);
    probe.fields
}

/// A deserializer that records the field names of the struct it is asked for.
#[derive(Debug)]
struct FieldNameProbe {
    fields: &'static [&'static str],
}

impl<'de> de::Deserializer<'de> for &mut FieldNameProbe {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("the field name probe only reads structs"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.fields = fields;
        Err(de::Error::custom("the field name probe returns no value"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", ""), 0, "empty strings");
        assert_eq!(edit_distance("name", ""), 4, "all deletions");
        assert_eq!(
            edit_distance("destinaton", "destination"),
            1,
            "one insertion"
        );
        assert_eq!(
            edit_distance("fitler", "filter"),
            2,
            "transposition is two edits"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3, "classic example");
        assert_eq!(
            edit_distance("café", "cafe"),
            1,
            "counts characters, not bytes"
        );
    }

    #[test]
    fn field_names_match_structs() {
        assert_eq!(
            field_names::<ConfigFile>(),
            [
                "project",
                "catch_all_topic",
                "topics",
                "subscriptions",
                "sinks",
                "buckets",
                "triggers",
                "store",
                "tls",
                "auth",
                "limits"
            ],
            "top-level keys, without the skipped unknown_keys field"
        );
        assert_eq!(
            field_names::<TriggerConfig>(),
            [
                "name",
                "event_type",
                "filters",
                "resource_name",
                "handler",
                "push",
                "dead_letter",
                "retry_policy"
            ],
            "trigger keys"
        );
        assert_eq!(
            field_names::<SubscriptionConfig>(),
            [
                "name",
                "topic",
                "ack_deadline_secs",
                "dead_letter",
                "retry_policy",
                "enable_message_ordering",
                "filter",
                "message_retention_secs",
                "retain_acked_messages",
                "handler",
                "push"
            ],
            "subscription keys"
        );
        assert_eq!(
            field_names::<PushEndpointConfig>(),
            [
                "endpoint",
                "attributes",
                "format",
                "write_metadata",
                "max_event_age_secs",
                "oidc_token"
            ],
            "push keys"
        );
        assert_eq!(
            field_names::<RetryPolicyConfig>(),
            ["minimum_backoff_secs", "maximum_backoff_secs"],
            "retry policy keys"
        );
        assert_eq!(
            field_names::<DeadLetterConfig>(),
            ["topic", "max_delivery_attempts"],
            "dead-letter keys"
        );
    }

    #[test]
    fn closest_key_within_two_edits() {
        let known = field_names::<SinkConfig>();
        assert_eq!(
            closest_key("destinaton", known),
            Some("destination"),
            "one edit"
        );
        assert_eq!(closest_key("fitler", known), Some("filter"), "two edits");
        assert_eq!(closest_key("target", known), None, "no key close enough");
    }

    #[test]
    fn table_label_is_one_based() {
        let path = [
            Segment::Key("sinks".to_owned()),
            Segment::Index(1),
            Segment::Key("exclusions".to_owned()),
            Segment::Index(0),
        ];
        assert_eq!(table_label(&path), "sinks[2].exclusions[1]", "nested path");
        assert_eq!(table_label(&[]), "top level", "root table");
    }
}
