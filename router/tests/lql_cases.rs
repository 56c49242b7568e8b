//! The Logging filter cases of the shared fixtures, run against every fixture entry.

mod support;

use std::collections::BTreeSet;

use serde_json::Value;
use sluice_router::filter::LogFilter;

/// The fixture entries with their stable ids, in file order.
fn entries() -> Vec<(String, Value)> {
    let entries = support::read_jsonl("audit-logs/entries.jsonl");
    let manifest = support::read_jsonl("audit-logs/manifest.jsonl");
    assert_eq!(
        entries.len(),
        manifest.len(),
        "entries.jsonl and manifest.jsonl differ in length"
    );
    manifest
        .iter()
        .map(|row| row["id"].as_str().expect("manifest id").to_owned())
        .zip(entries)
        .collect()
}

fn matching_ids(filter: &LogFilter, entries: &[(String, Value)]) -> BTreeSet<String> {
    entries
        .iter()
        .filter(|(_, entry)| filter.matches(entry))
        .map(|(id, _)| id.clone())
        .collect()
}

#[test]
fn lql_cases_match_expected_sets() {
    let entries = entries();
    let mut failures = Vec::new();
    let cases = support::read_jsonl("audit-logs/lql-cases.jsonl");
    for case in &cases {
        let id = case["id"].as_str().expect("case id");
        let text = case["filter"].as_str().expect("case filter");
        let filter = match LogFilter::new(text) {
            Ok(filter) => filter,
            Err(err) => {
                failures.push(format!("{id}: {text:?} does not compile: {err}"));
                continue;
            }
        };
        let expected: BTreeSet<String> = case["expect"]
            .as_array()
            .expect("expect is a list")
            .iter()
            .map(|id| id.as_str().expect("expected id").to_owned())
            .collect();
        let actual = matching_ids(&filter, &entries);
        if actual != expected {
            let missing: Vec<_> = expected.difference(&actual).collect();
            let extra: Vec<_> = actual.difference(&expected).collect();
            failures.push(format!(
                "{id}: {text:?}\n  missing {missing:?}\n  unexpected {extra:?}"
            ));
        }
    }
    assert_eq!(cases.len(), 64, "the case file changed size");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn decision_cases_reject_their_alternatives() {
    // Each "decision" case records what the other reading would give; sluice's answer must
    // differ from it, or the test above could pass without the decision being made.
    let entries = entries();
    for case in support::read_jsonl("audit-logs/lql-cases.jsonl") {
        let Some(alternatives) = case["alternatives"].as_object() else {
            continue;
        };
        let filter = LogFilter::new(case["filter"].as_str().expect("filter")).expect("compiles");
        let actual = matching_ids(&filter, &entries);
        for (reading, ids) in alternatives {
            let other: BTreeSet<String> = ids
                .as_array()
                .expect("list")
                .iter()
                .map(|id| id.as_str().expect("id").to_owned())
                .collect();
            assert_ne!(
                actual, other,
                "{}: sluice follows the {reading} reading",
                case["id"]
            );
        }
    }
}

#[test]
fn panther_rules_give_expected_results() {
    let entries = entries();
    let mut checked = 0;
    for row in support::read_jsonl("audit-logs/panther-rule-outcomes.jsonl") {
        let Some(text) = row["lql"].as_str() else {
            continue;
        };
        let id = row["id"].as_str().expect("row id");
        let (_, entry) = entries
            .iter()
            .find(|(entry_id, _)| entry_id == id)
            .expect("entry exists");
        let filter = LogFilter::new(text).unwrap_or_else(|err| panic!("{id}: {err}"));
        let expected = row["expected"].as_bool().expect("expected is a bool");
        assert_eq!(
            filter.matches(entry),
            expected,
            "{id}: {text}\n{}",
            filter.explain(entry)
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} Panther rules were checked");
}
