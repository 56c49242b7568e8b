//! Behaviour of the Logging query language beyond the shared fixture cases: functions, types,
//! absent fields, limits, errors and explanations.

use serde_json::{json, Value};
use sluice_router::filter::{LogFilter, MAX_FILTER_CHARS};

fn matches(filter: &str, entry: &Value) -> bool {
    LogFilter::new(filter)
        .unwrap_or_else(|err| panic!("{filter:?}: {err}"))
        .matches(entry)
}

fn error(filter: &str) -> sluice_router::filter::FilterError {
    match LogFilter::new(filter) {
        Ok(_) => panic!("{filter:?} compiled, expected an error"),
        Err(err) => err,
    }
}

fn audit_entry() -> Value {
    json!({
        "logName": "projects/my-project/logs/cloudaudit.googleapis.com%2Factivity",
        "resource": {"type": "gce_instance", "labels": {"project_id": "my-project", "zone": "us-east1-b"}},
        "timestamp": "2024-03-01T12:30:00.123456789Z",
        "severity": "WARNING",
        "insertId": "abc123",
        "labels": {"compute.googleapis.com/root_trigger_id": "t-1", "env": "prod"},
        "httpRequest": {"status": 503, "latency": "1.250s", "remoteIp": "10.1.2.3", "cacheHit": true},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "v1.compute.instances.insert",
            "requestMetadata": {"callerIp": "2001:db8::7"},
            "request": {"Name": "vm-1", "count": "42"},
            "authorizationInfo": [
                {"permission": "compute.instances.create", "granted": true},
                {"permission": "compute.disks.create"}
            ]
        },
        "jsonPayload": {"shoeSizes": [8.5, 9, 6], "nothing": null, "flag": false,
                        "message": "Hello, Kitty! request took 42 ms", "when": "2024-03-01"}
    })
}

#[test]
fn or_binds_tighter_than_and() {
    let entry = json!({"severity": "ERROR", "resource": {"type": "x"}});
    // Read as severity=ERROR AND (resource.type="y" OR insertId="z"): false.
    assert!(!matches(
        r#"severity=ERROR AND resource.type="y" OR insertId="z""#,
        &entry
    ));
    assert!(matches(
        r#"(severity=ERROR AND resource.type="y") OR severity>=ERROR"#,
        &entry
    ));
}

#[test]
fn lowercase_keywords_are_search_terms() {
    let entry = json!({"textPayload": "cats and dogs"});
    assert!(matches("cats and dogs", &entry));
    assert!(!matches("cats or birds", &entry));
}

#[test]
fn comments_run_to_end_of_line() {
    let entry = json!({"severity": "ERROR"});
    assert!(matches(
        "severity=ERROR -- resource.type=\"none\"\n-- more\n",
        &entry
    ));
    assert!(
        matches("-- only a comment", &entry),
        "a filter of comments matches everything"
    );
}

#[test]
fn filter_length_limit_is_20000_characters() {
    let padding = " ".repeat(MAX_FILTER_CHARS - "severity=ERROR".len());
    assert!(
        LogFilter::new(&format!("severity=ERROR{padding}")).is_ok(),
        "exactly at the limit"
    );
    let err = error(&format!("severity=ERROR{padding} "));
    assert!(
        err.message.contains("20000"),
        "message names the limit: {}",
        err.message
    );
}

#[test]
fn quoted_segments_reach_keys_with_dots() {
    let entry = audit_entry();
    assert!(matches(
        r#"labels."compute.googleapis.com/root_trigger_id"="t-1""#,
        &entry
    ));
    assert!(!matches(
        r#"labels.compute.googleapis.com/root_trigger_id:*"#,
        &entry
    ));
}

#[test]
fn arrays_match_any_element() {
    let entry = audit_entry();
    assert!(matches("jsonPayload.shoeSizes < 7", &entry));
    assert!(matches(
        r#"protoPayload.authorizationInfo.permission="compute.disks.create""#,
        &entry
    ));
    assert!(!matches("jsonPayload.shoeSizes > 10", &entry));
}

#[test]
fn absent_payload_fields_fail_every_comparison() {
    let entry = audit_entry();
    assert!(!matches(r#"jsonPayload.missing = "x""#, &entry));
    assert!(!matches(r#"jsonPayload.missing != "x""#, &entry));
    assert!(matches(r#"NOT jsonPayload.missing = "x""#, &entry));
    assert!(
        !matches(r#"resource.labels.missing != "x""#, &entry),
        "resource.labels is a map"
    );
}

#[test]
fn absent_logentry_fields_take_defaults() {
    let entry = json!({"jsonPayload": {}});
    assert!(matches("severity=DEFAULT", &entry));
    assert!(matches(r#"trace != "x""#, &entry));
    assert!(matches(r#"httpRequest.remoteIp = """#, &entry));
    assert!(matches("httpRequest.status = 0", &entry));
    assert!(
        !matches("trace:*", &entry),
        "presence needs the field to be written"
    );
    assert!(matches("jsonPayload:*", &entry));
}

#[test]
fn severity_compares_by_number() {
    let entry = audit_entry();
    assert!(matches("severity > notice", &entry));
    assert!(matches(r#"severity >= "Warning""#, &entry));
    assert!(matches("severity = 400", &entry));
    assert!(!matches("severity >= ERROR", &entry));
}

#[test]
fn timestamps_compare_as_instants() {
    let entry = audit_entry();
    assert!(matches(
        r#"timestamp >= "2024-03-01T07:30:00-05:00""#,
        &entry
    ));
    assert!(matches(
        r#"timestamp > "2024-03-01T12:30:00.123456788Z""#,
        &entry
    ));
    assert!(matches(r#"timestamp < "2024-03-02""#, &entry));
    assert!(
        matches(r#"jsonPayload.when = "2024-03-01T00:00:00Z""#, &entry),
        "payload strings that parse as timestamps"
    );
}

#[test]
fn durations_compare_by_length() {
    let entry = audit_entry();
    assert!(matches(r#"httpRequest.latency > "1s""#, &entry));
    assert!(matches(r#"httpRequest.latency < "1251ms""#, &entry));
    assert!(!matches(r#"httpRequest.latency >= "2s""#, &entry));
}

#[test]
fn numbers_bools_and_null() {
    let entry = audit_entry();
    assert!(matches("httpRequest.status >= 500", &entry));
    assert!(
        matches(r#"protoPayload.request.count > 9"#, &entry),
        "int64 as a JSON string compares numerically"
    );
    assert!(matches("jsonPayload.flag = FALSE", &entry));
    assert!(matches("httpRequest.cacheHit = true", &entry));
    assert!(matches("jsonPayload.nothing = NULL_VALUE", &entry));
    assert!(
        !matches(r#"jsonPayload.nothing = "NULL_VALUE""#, &entry),
        "a quoted NULL_VALUE is text"
    );
    assert!(matches("jsonPayload.flag != NULL_VALUE", &entry));
}

#[test]
fn strings_fold_case_and_regexes_do_not() {
    let entry = audit_entry();
    assert!(matches(
        r#"protoPayload.methodName = "V1.COMPUTE.INSTANCES.INSERT""#,
        &entry
    ));
    assert!(matches(r#"protoPayload.methodName : "Instances""#, &entry));
    assert!(!matches(
        r#"protoPayload.methodName =~ "Instances""#,
        &entry
    ));
    assert!(
        matches(r#"protoPayload.methodName =~ "instances\.insert$""#, &entry),
        "unknown escapes reach the regex"
    );
    assert!(
        matches(
            r#"protoPayload.methodName =~ "instances\\.insert$""#,
            &entry
        ),
        "doubled backslashes work too"
    );
    assert!(matches(r#"protoPayload.methodName !~ "^v2""#, &entry));
}

#[test]
fn proto_keys_any_case_struct_keys_exact() {
    let entry = audit_entry();
    assert!(matches(
        r#"protoPayload.METHODNAME = "v1.compute.instances.insert""#,
        &entry
    ));
    assert!(matches(r#"protoPayload.request.Name = "vm-1""#, &entry));
    assert!(
        !matches(r#"protoPayload.request.name = "vm-1""#, &entry),
        "request is a Struct"
    );
    assert!(
        !matches(r#"jsonPayload.Message:*"#, &entry),
        "jsonPayload keys are exact"
    );
}

#[test]
fn value_lists_apply_field_and_operator() {
    let entry = audit_entry();
    assert!(matches(
        r#"resource.type = ("gcs_bucket" OR "gce_instance")"#,
        &entry
    ));
    assert!(matches(
        r#"jsonPayload.message : ("hello" AND "kitty")"#,
        &entry
    ));
    assert!(matches(r#"jsonPayload.message : (hello kitty)"#, &entry));
    assert!(!matches(
        r#"jsonPayload.message : ("hello" AND "puppy")"#,
        &entry
    ));
    assert!(matches(
        r#"jsonPayload.message : ("hello" AND NOT "puppy")"#,
        &entry
    ));
}

#[test]
fn global_restrictions_search_string_values() {
    let entry = audit_entry();
    assert!(matches("kitty", &entry));
    assert!(matches(r#""compute.instances.create""#, &entry));
    assert!(!matches("root_trigger_id", &entry), "keys are not searched");
}

#[test]
fn map_has_key() {
    let entry = audit_entry();
    assert!(matches("labels:env", &entry));
    assert!(!matches("labels:team", &entry));
}

#[test]
fn log_id_and_source() {
    let entry = audit_entry();
    assert!(matches(
        r#"log_id("cloudaudit.googleapis.com/activity")"#,
        &entry
    ));
    assert!(!matches(
        r#"log_id("cloudaudit.googleapis.com/data_access")"#,
        &entry
    ));
    assert!(matches("source(projects/my-project)", &entry));
    assert!(
        !matches("source(projects/my)", &entry),
        "source is the exact container"
    );
    assert!(!matches("source(folders/123)", &entry));
}

#[test]
fn ip_in_net_v4_v6_and_missing() {
    let entry = audit_entry();
    assert!(matches(
        r#"ip_in_net(httpRequest.remoteIp, "10.0.0.0/8")"#,
        &entry
    ));
    assert!(matches(
        r#"ip_in_net(protoPayload.requestMetadata.callerIp, "2001:db8::/32")"#,
        &entry
    ));
    assert!(!matches(
        r#"ip_in_net(jsonPayload.missing, "10.0.0.0/8")"#,
        &entry
    ));
    let err = error(r#"ip_in_net(httpRequest.remoteIp, "10.0.0.0/33")"#);
    assert!(err.message.contains("not an IP address"), "{}", err.message);
}

#[test]
fn sample_is_deterministic_and_proportional() {
    let filter = LogFilter::new("sample(insertId, 0.25)").expect("compiles");
    let selected = (0..4000)
        .filter(|i| filter.matches(&json!({"insertId": format!("id-{i}")})))
        .count();
    assert!(
        (800..1200).contains(&selected),
        "about a quarter selected, got {selected}"
    );
    let entry = json!({"insertId": "id-7"});
    assert_eq!(
        filter.matches(&entry),
        filter.matches(&entry),
        "same entry, same answer"
    );
    assert!(LogFilter::new("sample(insertId, 1)")
        .expect("compiles")
        .matches(&entry));
    assert!(
        !matches("sample(jsonPayload.missing, 1)", &entry),
        "missing payload fields are never sampled"
    );
    assert!(
        LogFilter::new("sample(insertId, 0)").is_err(),
        "zero is out of range"
    );
    assert!(
        LogFilter::new("sample(insertId, 1.5)").is_err(),
        "above one is out of range"
    );
}

#[test]
fn cast_and_regexp_extract() {
    let entry = audit_entry();
    assert!(matches(
        r#"cast(timestamp, STRING, TIMEZONE("America/New_York")) =~ "^2024-03-01T07:30""#,
        &entry
    ));
    assert!(matches(
        r#"cast(httpRequest.status, STRING) = "503""#,
        &entry
    ));
    assert!(matches(
        r#"cast(protoPayload.request.count, INT64) = 42"#,
        &entry
    ));
    assert!(matches(
        r#"regexp_extract(jsonPayload.message, "took (\d+) ms") = "42""#,
        &entry
    ));
    assert!(matches(
        r#"cast(regexp_extract(jsonPayload.message, "took (\d+) ms"), INT64) < 50"#,
        &entry
    ));
    assert!(!matches(
        r#"cast(regexp_extract(jsonPayload.message, "took (\d+) ms"), INT64) > 100"#,
        &entry
    ));
    let err = error(r#"regexp_extract(jsonPayload.message, "(a)(b)") = "x""#);
    assert!(
        err.message.contains("exactly one capture group"),
        "{}",
        err.message
    );
    let err = error(r#"cast(timestamp, STRING, TIMEZONE("Mars/Olympus")) = "x""#);
    assert!(err.message.contains("unknown time zone"), "{}", err.message);
}

#[test]
fn search_matches_tokens() {
    let entry = audit_entry();
    assert!(matches(r#"SEARCH("hello kitty")"#, &entry));
    assert!(!matches(r#"SEARCH("Hello Kit")"#, &entry));
    assert!(matches(
        r#"SEARCH(jsonPayload.message, "`request took`")"#,
        &entry
    ));
    assert!(!matches(
        r#"SEARCH(jsonPayload.message, "`took request`")"#,
        &entry
    ));
}

#[test]
fn errors_give_line_column_and_text() {
    let err = error("severity=ERROR\n  insertId = abc:def");
    assert_eq!((err.position.line, err.position.column), (2, 17));
    assert_eq!(err.found, ":");
    assert!(
        err.message.contains("\"abc:def\""),
        "suggests quoting: {}",
        err.message
    );

    let err = error(r#"resource.type="x" AND thud="y""#);
    assert_eq!((err.position.line, err.position.column), (1, 23));
    assert_eq!(err.found, "thud");

    let err = error(r#"operation.thud="y""#);
    assert_eq!(err.position.column, 11, "points at the unknown segment");

    let err = error(r#"severity = "hello""#);
    assert!(err.message.contains("severity"), "{}", err.message);

    let err = error(r#"jsonPayload.x =~ "(""#);
    assert!(
        err.message.contains("regular expression"),
        "{}",
        err.message
    );

    let err = error("(severity=ERROR");
    assert_eq!(err.position.column, 1, "points at the unclosed parenthesis");

    let err = error("severity=ERROR AND");
    assert!(err.message.contains("after AND"), "{}", err.message);

    let err = error("httpRequest.status =~ \"5..\"");
    assert!(
        err.message.contains("cast("),
        "suggests cast: {}",
        err.message
    );

    let rendered =
        error("severity=ERROR OR insertId = a:b").render("severity=ERROR OR insertId = a:b");
    let caret_line = format!("\n  {}^", " ".repeat(30));
    assert!(
        rendered.ends_with(&caret_line),
        "caret under column 31:\n{rendered}"
    );
}

#[test]
fn unknown_functions_are_rejected() {
    let err = error(r#"hasSuffix(logName, "x")"#);
    assert!(err.message.contains("unknown function"), "{}", err.message);
    assert_eq!(err.position.column, 1);
}

#[test]
fn or_with_bare_value_warns() {
    let filter = LogFilter::new(r#"insertId = "ABC-1" OR "ABC-2""#).expect("valid");
    assert_eq!(
        filter.warnings().len(),
        1,
        "one warning for the bare second value"
    );
    assert!(LogFilter::new(r#"insertId = ("ABC-1" OR "ABC-2")"#)
        .expect("valid")
        .warnings()
        .is_empty());
}

#[test]
fn explain_shows_clauses_and_values() {
    let filter = LogFilter::new(
        r#"resource.type="gce_instance" AND (severity>=ERROR OR jsonPayload.gone="x")"#,
    )
    .expect("valid");
    let explanation = filter.explain(&audit_entry());
    assert!(!explanation.matched);
    let text = explanation.to_string();
    assert!(text.starts_with("NO MATCH"), "{text}");
    assert!(
        text.contains("true  resource.type=\"gce_instance\""),
        "{text}"
    );
    assert!(text.contains("looked at: \"gce_instance\""), "{text}");
    assert!(text.contains("false severity>=ERROR"), "{text}");
    assert!(text.contains("looked at: \"WARNING\""), "{text}");
    assert!(text.contains("jsonPayload.gone is missing"), "{text}");
    let json = serde_json::to_value(&explanation).expect("serializes");
    assert_eq!(json["root"]["children"][1]["clause"], "OR");
}

#[test]
fn error_at_end_points_at_last_line() {
    let err = error("severity=ERROR AND\n\n");
    assert_eq!((err.position.line, err.position.column), (1, 19), "{err}");
}

#[test]
fn likely_mistakes_warn() {
    let single = LogFilter::new("resource.type='gcs_bucket'").expect("valid");
    assert_eq!(single.warnings().len(), 1, "single quotes warn");
    assert!(
        single.warnings()[0].message.contains("double quotes"),
        "{:?}",
        single.warnings()
    );
    let lower = LogFilter::new("severity=ERROR or severity=INFO").expect("valid");
    assert_eq!(lower.warnings().len(), 1, "lower-case or warns");
    assert!(
        lower.warnings()[0].message.contains("upper case"),
        "{:?}",
        lower.warnings()
    );
    assert!(
        LogFilter::new(r#""or" severity=ERROR"#)
            .expect("valid")
            .warnings()
            .is_empty(),
        "a quoted word is a deliberate search"
    );
}
