//! Fuzzes the Pub/Sub subscription filter dialect: parsing and evaluating arbitrary text, and
//! printing every filter that parses and parsing its canonical form again.
//!
//! A crash is a panic, a stack overflow, or a canonical form within the length limit that
//! does not parse or parses to a different tree or to a filter with a different result.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice_router::filter::pubsub::{SubscriptionFilter, MAX_FILTER_BYTES};

/// Attribute maps with common keys, an empty key and value, non-ASCII text, quotes and
/// backslashes, plus the empty map.
static ATTRIBUTES: LazyLock<Vec<HashMap<String, String>>> = LazyLock::new(|| {
    let maps: [&[(&str, &str)]; 4] = [
        &[
            ("eventType", "OBJECT_FINALIZE"),
            ("bucketId", "my-bucket"),
            ("objectId", "logs/2024/01/31.json"),
            ("overwroteGeneration", "1587627000000000"),
        ],
        &[
            ("", ""),
            ("a", "a"),
            ("A", "ä"),
            ("key with space", "\"quoted\" \\ back\\slash"),
            ("é", "\u{0}\t\n"),
            ("x-y_z", "x-y_z"),
            ("AND", "OR"),
        ],
        &[("eventType", "OBJECT_DELETE"), ("a", "")],
        &[],
    ];
    maps.iter()
        .map(|pairs| {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(filter) = SubscriptionFilter::parse(text) else {
        return;
    };
    let results: Vec<bool> = ATTRIBUTES.iter().map(|map| filter.matches(map)).collect();
    let canonical = filter.to_string();
    if canonical.len() > MAX_FILTER_BYTES {
        // The canonical form adds parentheses, spaces and escapes, so it can pass the limit.
        return;
    }
    let reparsed = match SubscriptionFilter::parse(&canonical) {
        Ok(reparsed) => reparsed,
        Err(err) => panic!("canonical form {canonical:?} of {text:?} does not parse: {err}"),
    };
    assert_eq!(
        reparsed.expression(),
        filter.expression(),
        "canonical form {canonical:?} of {text:?} parses to a different tree"
    );
    let again: Vec<bool> = ATTRIBUTES.iter().map(|map| reparsed.matches(map)).collect();
    assert_eq!(
        again, results,
        "canonical form {canonical:?} matches differently"
    );
});
