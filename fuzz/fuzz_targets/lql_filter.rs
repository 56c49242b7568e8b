//! Fuzzes the Logging query language: parsing, compiling, evaluating and explaining arbitrary
//! text, and printing every tree that parses and parsing the printed form again.
//!
//! A crash is a panic, a stack overflow, a printed tree that does not parse or that parses to
//! a different tree, or `explain` disagreeing with `matches`.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use sluice_router::filter::ast::Query;
use sluice_router::filter::{parse, LogFilter, MAX_FILTER_CHARS};

/// Entries that reach every kind of field: typed LogEntry fields present and absent, values of
/// the wrong JSON type, arrays, nested payloads, non-ASCII text and extreme numbers and dates.
static ENTRIES: LazyLock<Vec<Json>> = LazyLock::new(|| {
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

fuzz_target!(|data: &[u8]| {
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
});

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
