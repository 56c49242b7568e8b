//! The checks behind the fuzz targets in `fuzz/`, one function per target.
//!
//! Each function takes one input of arbitrary bytes and panics when a property fails. The
//! fuzz targets call them under libFuzzer, and `tests/fuzz_corpus.rs` replays the committed
//! corpora and every crash found so far through them on the stable toolchain, so that a
//! crash stays fixed. They live in the library, not in the fuzz crate, so that both callers
//! run the same code.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::filter::ast::Query;
use crate::filter::pubsub::{SubscriptionFilter, MAX_FILTER_BYTES};
use crate::filter::{parse, LogFilter, MAX_FILTER_CHARS};
use crate::route::{Exclusion, LogRouter, Sink};

/// Entries that reach every kind of field: typed LogEntry fields present and absent, values of
/// the wrong JSON type, arrays, nested payloads, non-ASCII text and extreme numbers and dates.
static ENTRIES: LazyLock<Vec<Value>> = LazyLock::new(|| {
    let texts = [
        r#"{
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
            "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "b", "project_id": "p"}},
            "timestamp": "2024-01-31T12:00:00.123456789Z",
            "receiveTimestamp": "2024-01-31",
            "severity": "ERROR",
            "insertId": "abc-1",
            "labels": {"env": "prod", "n": "42", "empty": ""},
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "methodName": "storage.buckets.update",
                "authenticationInfo": {"principalEmail": "a@example.com"},
                "request": {
                    "Policy": {"bindings": [{"role": "roles/owner", "members": ["allUsers"]}]}
                },
                "status": {"code": 7}
            },
            "httpRequest": {
                "status": 404, "latency": "1.5s", "remoteIp": "10.1.2.3", "cacheHit": true
            },
            "operation": {"id": "op", "first": true},
            "trace": "projects/p/traces/1",
            "traceSampled": true,
            "sourceLocation": {"line": "17"}
        }"#,
        r#"{
            "logName": "organizations/1/logs/syslog",
            "severity": 450,
            "textPayload": "Straße ＡＢＣ ǅ İ 10.0.0.1 NaN -Infinity",
            "timestamp": "9999-12-31T23:59:59-23:59",
            "httpRequest": {"status": "500", "latency": "-2ms", "requestSize": 1e308},
            "jsonPayload": {
                "a": [1, -1.5, "2", null, true, {"b": "x"}, [[{"b": 3}]]],
                "n": 18446744073709551615,
                "m": -9223372036854775808,
                "f": 0.1,
                "t": "2024-01-31T12:00:00+09:00",
                "d": "1h30m",
                "s": "",
                "NULL": null,
                "obj": {"": "", "a.b": "dotted", "AND": "kw"}
            },
            "labels": ["not", "a", "map"]
        }"#,
        r#"{
            "severity": null,
            "resource": "not an object",
            "timestamp": 0,
            "httpRequest": [{"status": 200}, {"status": 503}],
            "jsonPayload": "text where an object is expected",
            "protoPayload": {"METHODNAME": "Case.Differs", "metadata": {"Key": "v"}}
        }"#,
        "{}",
    ];
    texts
        .iter()
        .map(|text| serde_json::from_str(text).expect("fixed entry is valid JSON"))
        .collect()
});

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

/// Fuzz target `lql_filter`: parses, compiles, evaluates and explains arbitrary text as a
/// Logging query.
///
/// # Panics
///
/// When `parse` and [`LogFilter::new`] disagree, when a printed tree does not parse or parses
/// to a different tree, or when `explain` disagrees with `matches`.
pub fn lql_filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text);
    let compiled = LogFilter::new(text);
    let Ok(tree) = parsed else {
        assert!(
            compiled.is_err(),
            "LogFilter::new accepted text that parse rejects"
        );
        return;
    };
    check_reprint(&tree);
    if let Ok(filter) = compiled {
        for entry in ENTRIES.iter() {
            let matched = filter.matches(entry);
            let explanation = filter.explain(entry);
            assert_eq!(
                explanation.matched, matched,
                "explain disagrees with matches"
            );
            let _ = explanation.to_string();
        }
    }
}

/// Prints the tree and checks that the text parses back to an equal tree, and that the
/// all-quoted form `{:#}` parses.
fn check_reprint(tree: &Query) {
    let printed = tree.to_string();
    if printed.chars().count() > MAX_FILTER_CHARS {
        // The printer adds spaces and `AND`, so the reprint of a filter near the length limit
        // can pass it.
        return;
    }
    let reparsed = match parse(&printed) {
        Ok(reparsed) => reparsed,
        Err(err) => panic!("printed form {printed:?} does not parse: {err}"),
    };
    assert_eq!(
        reparsed, *tree,
        "printed form {printed:?} parses to a different tree"
    );
    let quoted = format!("{tree:#}");
    if quoted.chars().count() <= MAX_FILTER_CHARS {
        if let Err(err) = parse(&quoted) {
            panic!("quoted form {quoted:?} does not parse: {err}");
        }
    }
}

/// Fuzz target `pubsub_filter`: parses arbitrary text as a Pub/Sub subscription filter,
/// evaluates it on fixed attribute maps and parses its canonical form again.
///
/// # Panics
///
/// When a canonical form within the length limit does not parse, or parses to a different
/// tree or to a filter with different results.
pub fn pubsub_filter(data: &[u8]) {
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
}

/// Sink filters over the fields that log sinks select on in practice.
const SINK_FILTERS: [&str; 8] = [
    r#"protoPayload.methodName="storage.objects.create""#,
    r#"logName:"cloudaudit.googleapis.com" AND severity>=WARNING"#,
    r#"resource.type="gcs_bucket" AND resource.labels.bucket_name:"upload""#,
    "httpRequest.status>=500 OR httpRequest.latency>\"1s\"",
    r#"jsonPayload.user.id=42 OR labels.env="prod""#,
    r#"timestamp>="2024-01-01T00:00:00Z" AND NOT textPayload:"debug""#,
    r#"protoPayload.authenticationInfo.principalEmail=~"@example\.com$""#,
    "severity=DEFAULT OR insertId:*",
];

/// Sinks that take the filters of [`SINK_FILTERS`]; the fourth excludes entries of 404s.
static ROUTER: LazyLock<(LogRouter, Vec<LogFilter>)> = LazyLock::new(|| {
    let filters: Vec<LogFilter> = SINK_FILTERS
        .iter()
        .map(|text| LogFilter::new(text).expect("fixed sink filter compiles"))
        .collect();
    let exclusion = LogFilter::new("httpRequest.status=404").expect("fixed exclusion compiles");
    let sinks = filters
        .iter()
        .enumerate()
        .map(|(i, filter)| Sink {
            name: format!("sink-{i}"),
            filter: filter.clone(),
            exclusions: if i == 3 {
                vec![Exclusion {
                    name: "not-found".to_owned(),
                    filter: exclusion.clone(),
                    disabled: false,
                }]
            } else {
                Vec::new()
            },
            destination: format!("topic-{i}"),
            disabled: false,
        })
        .collect();
    (LogRouter::new(sinks, Some("unmatched".to_owned())), filters)
});

/// Fuzz target `log_entry_json`: routes arbitrary text as one JSON LogEntry through eight
/// sinks.
///
/// # Panics
///
/// When the batch does not count the entry exactly once, when an entry that is not JSON is
/// accepted, or when the sinks evaluated together take a different set than each sink's own
/// filter and exclusions.
pub fn log_entry_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (router, filters) = &*ROUTER;
    let batch = router.route_batch(&[text]);
    let counted = batch.accepted as usize + batch.errors.len();
    assert_eq!(counted, 1, "one entry counted {counted} times");

    let Ok(entry) = serde_json::from_str::<Value>(text) else {
        assert_eq!(batch.accepted, 0, "an entry that is not JSON was accepted");
        return;
    };
    if batch.accepted == 0 {
        return;
    }

    let together = router.route(&entry);
    let alone: Vec<usize> = filters
        .iter()
        .enumerate()
        .filter(|(i, filter)| {
            filter.matches(&entry)
                && !router.sinks()[*i]
                    .exclusions
                    .iter()
                    .any(|exclusion| exclusion.filter.matches(&entry))
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        together, alone,
        "the sinks evaluated together disagree with each filter alone"
    );

    let matched: u32 = batch.sink_matches.values().sum();
    assert_eq!(
        matched as usize,
        together.len(),
        "the batch's sink matches disagree with route"
    );
}
