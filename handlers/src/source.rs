//! The object resource of a storage event, as far as the thumbnail and annotate handlers read
//! it, and the custom metadata that links an output object to its source.
//!
//! Both handlers write the same three keys, so either one skips the other's output, and a
//! handler skips an event when the output already names the source at that generation or a
//! later one: these keys are the handlers' idempotency records.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

/// Custom metadata key of an output object that names the source bucket.
pub const SOURCE_BUCKET_KEY: &str = "sourceBucket";
/// Custom metadata key of an output object that names the source object.
pub const SOURCE_OBJECT_KEY: &str = "sourceObject";
/// Custom metadata key of an output object that gives the source generation in decimal.
pub const SOURCE_GENERATION_KEY: &str = "sourceGeneration";

/// The fields of the event's object resource that the handler uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct SourceObject {
    pub(crate) bucket: String,
    pub(crate) name: String,
    #[serde(deserialize_with = "int64")]
    pub(crate) generation: i64,
    #[serde(default)]
    pub(crate) metadata: BTreeMap<String, String>,
}

impl SourceObject {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }

    /// Returns the custom metadata that links an output object to this source.
    pub(crate) fn link_metadata(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (SOURCE_BUCKET_KEY.to_owned(), self.bucket.clone()),
            (SOURCE_OBJECT_KEY.to_owned(), self.name.clone()),
            (
                SOURCE_GENERATION_KEY.to_owned(),
                self.generation.to_string(),
            ),
        ])
    }
}

impl fmt::Display for SourceObject {
    /// Writes `gs://bucket/name#generation`, as gsutil names one generation.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}#{}", self.bucket, self.name, self.generation)
    }
}

/// Reads an int64 written as a decimal string, as the JSON API does, or as a JSON number,
/// which some Cloud Storage emulators write.
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Int64::deserialize(deserializer)? {
        Int64::Number(value) => Ok(value),
        Int64::Text(text) => text
            .parse()
            .map_err(|err| serde::de::Error::custom(format!("invalid int64 {text:?}: {err}"))),
    }
}

/// Returns whether an object's custom metadata marks it as the output of a built-in handler.
pub(crate) fn is_handler_output(metadata: &BTreeMap<String, String>) -> bool {
    [SOURCE_BUCKET_KEY, SOURCE_OBJECT_KEY, SOURCE_GENERATION_KEY]
        .iter()
        .all(|key| metadata.contains_key(*key))
}

/// Returns whether an output object's metadata names this source object at its generation or
/// a later one.
pub(crate) fn covers(metadata: &BTreeMap<String, String>, source: &SourceObject) -> bool {
    let generation = metadata
        .get(SOURCE_GENERATION_KEY)
        .and_then(|text| text.parse::<i64>().ok());
    metadata.get(SOURCE_BUCKET_KEY) == Some(&source.bucket)
        && metadata.get(SOURCE_OBJECT_KEY) == Some(&source.name)
        && generation.is_some_and(|generation| generation >= source.generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(generation: i64) -> SourceObject {
        SourceObject {
            bucket: "photos".to_owned(),
            name: "cat.jpg".to_owned(),
            generation,
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn parse_generation_as_string_or_number() {
        let text = br#"{"bucket":"b","name":"n","generation":"1700000000000001"}"#;
        let number = br#"{"bucket":"b","name":"n","generation":1700000000000001}"#;

        assert_eq!(
            SourceObject::parse(text).expect("valid").generation,
            1_700_000_000_000_001
        );
        assert_eq!(
            SourceObject::parse(number).expect("valid").generation,
            1_700_000_000_000_001
        );
    }

    #[test]
    fn link_metadata_marks_output_and_covers_source() {
        let metadata = source(5).link_metadata();

        assert!(is_handler_output(&metadata));
        assert!(covers(&metadata, &source(4)));
        assert!(covers(&metadata, &source(5)));
        assert!(!covers(&metadata, &source(6)));
    }

    #[test]
    fn covers_only_the_same_object() {
        let mut other = source(5);
        other.name = "dog.jpg".to_owned();

        assert!(!covers(&other.link_metadata(), &source(5)));
    }

    #[test]
    fn parse_reads_metadata() {
        let data = br#"{"bucket":"b","name":"n","generation":"1","metadata":{"k":"v"},"size":"3"}"#;
        let object = SourceObject::parse(data).expect("valid");

        assert_eq!(object.metadata.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn parse_rejects_bad_generation() {
        let data = br#"{"bucket":"b","name":"n","generation":"12x"}"#;
        let err = SourceObject::parse(data).expect_err("invalid generation");

        assert!(err.to_string().contains("\"12x\""), "{err}");
    }

    #[test]
    fn parse_rejects_missing_name() {
        assert!(SourceObject::parse(br#"{"bucket":"b","generation":"1"}"#).is_err());
    }

    #[test]
    fn output_needs_all_three_keys() {
        let mut metadata = source(5).link_metadata();
        assert!(is_handler_output(&metadata));

        metadata.remove(SOURCE_GENERATION_KEY);
        assert!(!is_handler_output(&metadata));
    }

    #[test]
    fn covers_neither_another_bucket_nor_a_bad_generation() {
        let mut other_bucket = source(5).link_metadata();
        other_bucket.insert(SOURCE_BUCKET_KEY.to_owned(), "albums".to_owned());
        let mut bad_generation = source(5).link_metadata();
        bad_generation.insert(SOURCE_GENERATION_KEY.to_owned(), "five".to_owned());

        assert!(!covers(&other_bucket, &source(5)));
        assert!(!covers(&bad_generation, &source(5)));
    }

    #[test]
    fn source_displays_as_gsutil_url() {
        assert_eq!(source(7).to_string(), "gs://photos/cat.jpg#7");
    }
}
