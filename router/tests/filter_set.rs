//! A FilterSet gives the same answers as evaluating each of its filters alone.

mod support;

use serde_json::{json, Value};
use sluice_router::filter::{FilterSet, LogFilter};

fn fixture_filters() -> Vec<String> {
    let mut texts: Vec<String> = support::read_jsonl("audit-logs/lql-cases.jsonl")
        .iter()
        .map(|case| case["filter"].as_str().expect("filter").to_owned())
        .collect();
    texts.extend(
        support::read_jsonl("audit-logs/panther-rule-outcomes.jsonl")
            .iter()
            .filter_map(|row| row["lql"].as_str().map(str::to_owned)),
    );
    texts
}

fn naive(filters: &[LogFilter], entry: &Value) -> Vec<usize> {
    (0..filters.len())
        .filter(|&i| filters[i].matches(entry))
        .collect()
}

#[test]
fn set_agrees_with_each_filter_on_fixtures() {
    let texts = fixture_filters();
    let filters: Vec<LogFilter> = texts
        .iter()
        .map(|text| LogFilter::new(text).expect("fixture filter compiles"))
        .collect();
    let set = FilterSet::new(filters.clone());
    assert_eq!(set.len(), filters.len(), "the set keeps every filter");
    for entry in support::read_jsonl("audit-logs/entries.jsonl") {
        assert_eq!(
            set.matching(&entry),
            naive(&filters, &entry),
            "entry {}",
            entry["insertId"]
        );
    }
}

#[test]
fn set_handles_case_lists_defaults_and_patterns() {
    let texts = [
        r#"resource.type = "GCS_Bucket""#,
        r#"resource.type = ("gce_instance" OR "gcs_bucket") severity>=ERROR"#,
        r#"logName = """#,
        r#"insertId = "123""#,
        r#"jsonPayload.kind = "Straße""#,
        r#"jsonPayload.kind = "7""#,
        r#"jsonPayload.kind = "true""#,
        r#"protoPayload.methodName =~ "^storage\.""#,
        r#"protoPayload.methodName =~ ("Create" OR "Delete")"#,
        r#"severity =~ "^DEF""#,
        r#"labels.env = prod"#,
        r#"NOT resource.type = "gcs_bucket""#,
        "",
    ];
    let filters: Vec<LogFilter> = texts
        .iter()
        .map(|text| LogFilter::new(text).expect("test filter compiles"))
        .collect();
    let set = FilterSet::new(filters.clone());
    let entries = [
        json!({"resource": {"type": "gcs_bucket"}, "severity": "ERROR", "insertId": 123}),
        json!({"resource": {"type": "GCE_INSTANCE"}, "severity": "CRITICAL", "logName": "x"}),
        json!({"jsonPayload": {"kind": "STRASSE"}, "labels": {"env": "PROD"}}),
        json!({"jsonPayload": {"kind": 7}}),
        json!({"jsonPayload": {"kind": "7.0"}}),
        json!({"jsonPayload": {"kind": true}}),
        json!({"jsonPayload": {"kind": ["a", "TRUE"]}}),
        json!({"protoPayload": {"methodName": "storage.objects.create"}}),
        json!({"protoPayload": {"MethodName": "v1.CreateRole"}}),
        json!({"protoPayload": {"methodName": ["x.Delete", 4]}}),
        json!({}),
    ];
    for entry in &entries {
        assert_eq!(set.matching(entry), naive(&filters, entry), "entry {entry}");
    }
}

#[test]
fn set_handles_global_search_terms() {
    let texts = [
        r#""permission denied""#,
        "unicorn severity>=ERROR",
        r#""Straße""#,
        r#"NOT "quiet""#,
        r#""""#,
    ];
    let filters: Vec<LogFilter> = texts
        .iter()
        .map(|text| LogFilter::new(text).expect("test filter compiles"))
        .collect();
    let set = FilterSet::new(filters.clone());
    let entries = [
        json!({"textPayload": "PERMISSION DENIED for user"}),
        json!({"jsonPayload": {"tags": ["a", "Unicorns"]}, "severity": "ERROR"}),
        json!({"jsonPayload": {"tags": ["unicorn"]}, "severity": "INFO"}),
        json!({"jsonPayload": {"city": "STRASSE 5"}}),
        json!({"textPayload": "quiet"}),
        json!({}),
    ];
    for entry in &entries {
        assert_eq!(set.matching(entry), naive(&filters, entry), "entry {entry}");
    }
}
