//! Differential tests: each scenario runs with Google's Python client against Google's
//! Pub/Sub emulator and against the real `sluice serve`, both started empty on 127.0.0.1.
//! The test compares the two recordings step by step and fails on every difference that
//! docs/compatibility.md does not list as intended.
//!
//! The scenario scripts are `tests/python/differential_*.py`. Each step records the request
//! and the response or gRPC status. Before the comparison, values that legitimately differ
//! are checked for their shape and replaced by placeholders: message ids, ack ids and
//! timestamps. Error messages are shown in the report but not compared, only status codes.
//!
//! The intended differences in [`INTENDED`] are asserted on each side instead of skipped:
//! the emulator must still show its documented behaviour and sluice the service's.
//!
//! The emulator comes from the Debian package `google-cloud-cli-pubsub-emulator` and the
//! client from `scripts/test`, which exports `SLUICE_TEST_PYTHON`. Without either, the test
//! fails with a message that names the fix.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::emulator::Emulator;
use support::{python, TestServer};

/// A configuration without topics or subscriptions, so that sluice starts as empty as the
/// emulator.
const EMPTY_CONFIG: &str = "";
/// The start of the push endpoints that the push scenario serves.
const LOCAL_ENDPOINT: &str = "http://127.0.0.1:";

/// One recorded call: the request as sent and its result.
#[derive(Debug, Clone)]
struct Step {
    request: Value,
    /// `{"ok": RESPONSE}` or `{"error": CODE, "message": TEXT}`.
    result: Value,
}

/// A scenario run against one server, by step name, and the order the steps ran in.
#[derive(Debug)]
struct Recording {
    steps: BTreeMap<String, Step>,
    order: Vec<String>,
}

/// A difference the project chose: the emulator behaves one way, and sluice another, either
/// as the service does or by a choice that docs/compatibility.md states. `check` returns
/// what does not match the documented behaviour of either side.
struct Intended {
    step: &'static str,
    /// The documented difference, for the failure message.
    reason: &'static str,
    check: fn(emulator: &Value, sluice: &Value) -> Vec<String>,
}

/// The intended differences, each documented in docs/compatibility.md.
const INTENDED: &[Intended] = &[
    Intended {
        step: "subscription.create_ack_deadline_5",
        reason: ACK_DEADLINE_RANGE,
        check: check_ack_deadline_5,
    },
    Intended {
        step: "subscription.update_ack_deadline_5",
        reason: ACK_DEADLINE_RANGE,
        check: check_ack_deadline_5,
    },
    Intended {
        step: "topic.create_with_labels",
        reason: LABELS,
        check: check_labels,
    },
    Intended {
        step: "subscription.create_with_labels",
        reason: LABELS,
        check: check_labels,
    },
    Intended {
        step: "subscription.create_retention_31_days",
        reason: "subscription retention: the emulator accepts at most 7 days, the service and \
                 sluice 31 days",
        check: |emulator, sluice| {
            let mut problems = expect_error(emulator, "emulator", "INVALID_ARGUMENT");
            problems.extend(expect_ok_field(
                sluice,
                "sluice",
                "message_retention_duration",
                &json!("2678400s"),
            ));
            problems
        },
    },
    Intended {
        step: "modack.deadline_700",
        reason: "ack deadline range: the emulator accepts any deadline change of 0 s or more, \
              the service and sluice at most 600 s",
        check: |emulator, sluice| {
            let mut problems = expect_ok(emulator, "emulator");
            problems.extend(expect_error(sluice, "sluice", "INVALID_ARGUMENT"));
            problems
        },
    },
    Intended {
        step: "subscription.create_bad_filter",
        reason: "filters: the emulator stores a filter without parsing it, sluice rejects one \
              that does not parse",
        check: |emulator, sluice| {
            let mut problems =
                expect_ok_field(emulator, "emulator", "filter", &json!("attributes.kind ="));
            problems.extend(expect_error(sluice, "sluice", "INVALID_ARGUMENT"));
            problems
        },
    },
    Intended {
        step: "subscription.topic_message_retention",
        reason: "output-only subscription fields: the emulator leaves \
                 topic_message_retention_duration unset, the service and sluice return the \
                 topic's message retention",
        check: |emulator, sluice| {
            let mut problems = expect_value(emulator, "emulator", &json!({"ok": null}));
            problems.extend(expect_value(sluice, "sluice", &json!({"ok": "3600s"})));
            problems
        },
    },
    Intended {
        step: "push.outcomes",
        reason: "push acknowledgement codes: the service and sluice take 102, 200, 201, 202 \
                 and 204 as an acknowledgement, the emulator 102, 200, 201, 203 and 204",
        check: |emulator, sluice| {
            let mut problems = expect_value(
                emulator,
                "emulator",
                &json!({"ok": {
                    "200": "acknowledged",
                    "202": "redelivered",
                    "203": "acknowledged",
                    "500": "redelivered",
                }}),
            );
            problems.extend(expect_value(
                sluice,
                "sluice",
                &json!({"ok": {
                    "200": "acknowledged",
                    "202": "acknowledged",
                    "203": "redelivered",
                    "500": "redelivered",
                }}),
            ));
            problems
        },
    },
    Intended {
        step: "filter.delivered",
        reason: "filters: the emulator delivers every message, sluice only those that match",
        check: |emulator, sluice| {
            let mut problems = expect_value(
                emulator,
                "emulator",
                &json!({"ok": ["dropped", "kept", "no-attributes"]}),
            );
            problems.extend(expect_value(sluice, "sluice", &json!({"ok": ["kept"]})));
            problems
        },
    },
];

const ACK_DEADLINE_RANGE: &str =
    "ack deadline range: the emulator accepts 0 to 600 s, the service and sluice 10 to 600 s";

const LABELS: &str = "labels: the emulator stores them, sluice rejects them";

/// Checks a resource created with labels: the emulator returns them and sluice rejects them.
fn check_labels(emulator: &Value, sluice: &Value) -> Vec<String> {
    let mut problems = expect_ok_field(emulator, "emulator", "labels", &json!({"team": "diff"}));
    problems.extend(expect_error(sluice, "sluice", "INVALID_ARGUMENT"));
    problems
}

/// Checks a subscription with `ack_deadline_seconds` 5: the emulator accepts it and sluice
/// rejects it.
fn check_ack_deadline_5(emulator: &Value, sluice: &Value) -> Vec<String> {
    let mut problems = expect_ok_field(emulator, "emulator", "ack_deadline_seconds", &json!(5));
    problems.extend(expect_error(sluice, "sluice", "INVALID_ARGUMENT"));
    problems
}

#[test]
fn scenario_matches_emulator() {
    assert_same_as_emulator("differential_scenario.py");
}

#[test]
fn push_matches_emulator() {
    assert_same_as_emulator("differential_push.py");
}

/// Runs `script` against a fresh emulator and a fresh sluice at the same time, and fails
/// with every unintended difference between the two recordings.
fn assert_same_as_emulator(script: &str) {
    let emulator = Emulator::start();
    let server = TestServer::start(Some(EMPTY_CONFIG));
    let sluice_host = host_port(server.url());
    let (expected, actual) = std::thread::scope(|scope| {
        let expected = scope.spawn(|| record(script, &emulator.host_port, "emulator"));
        let actual = scope.spawn(|| record(script, sluice_host, "sluice"));
        (
            expected.join().expect("the emulator run"),
            actual.join().expect("the sluice run"),
        )
    });
    let differences = compare(&expected, &actual);
    assert!(
        differences.is_empty(),
        "{} unintended differences between Google's Pub/Sub emulator {} and sluice \
         (error messages are shown but only codes are compared; the recordings are in {}):\
         \n\n{}",
        differences.len(),
        emulator.version,
        recordings_dir().display(),
        differences.join("\n")
    );
}

/// Returns `127.0.0.1:PORT` of `http://127.0.0.1:PORT`, the form of `PUBSUB_EMULATOR_HOST`.
fn host_port(url: &str) -> &str {
    url.strip_prefix("http://")
        .unwrap_or_else(|| panic!("the server URL {url:?} does not start with http://"))
}

/// Returns the folder that keeps the last recordings, for reading after a failure.
fn recordings_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential")
}

/// Runs `script` against the server at `host`, keeps its recording in [`recordings_dir`]
/// under the name of the script and `side`, and returns the recording.
fn record(script: &str, host: &str, side: &str) -> Recording {
    // The scripts import differential_record.py, and bytecode caches would litter the
    // source tree.
    let env = [
        ("PUBSUB_EMULATOR_HOST", host),
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ];
    let output = python::run(script, &[], &env);
    python::assert_success(script, &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let recording: Value = serde_json::from_str(line)
        .unwrap_or_else(|_| panic!("no JSON recording at the end of {script}'s output:\n{stdout}"));
    let file = recordings_dir().join(format!("{}-{side}.json", script.trim_end_matches(".py")));
    let pretty = serde_json::to_string_pretty(&recording).expect("a JSON value serialises");
    std::fs::create_dir_all(recordings_dir())
        .and_then(|()| std::fs::write(&file, pretty))
        .unwrap_or_else(|err| panic!("failed to write {}: {err}", file.display()));
    let mut steps = BTreeMap::new();
    let mut order = Vec::new();
    for step in recording["steps"].as_array().expect("a list of steps") {
        let name = step["name"].as_str().expect("a step name").to_owned();
        order.push(name.clone());
        steps.insert(
            name,
            Step {
                request: step["request"].clone(),
                result: step["result"].clone(),
            },
        );
    }
    Recording { steps, order }
}

/// Compares two recordings and returns one report per difference.
fn compare(emulator: &Recording, sluice: &Recording) -> Vec<String> {
    let mut differences = scenario_problems(emulator);
    let mut seen = BTreeSet::new();
    let names = emulator.order.iter().chain(&sluice.order);
    for name in names.filter(|name| seen.insert(name.as_str())) {
        let emulator_step = emulator.steps.get(name);
        let sluice_step = sluice.steps.get(name);
        let (Some(expected), Some(actual)) = (emulator_step, sluice_step) else {
            let problem = "step recorded on one side only".to_owned();
            differences.push(report(name, emulator_step, sluice_step, &[problem]));
            continue;
        };
        let problems = match INTENDED.iter().find(|intended| intended.step == name) {
            Some(intended) => (intended.check)(&expected.result, &actual.result)
                .into_iter()
                .map(|problem| format!("{problem} (intended difference: {})", intended.reason))
                .collect(),
            None => compare_results(&expected.result, &actual.result),
        };
        if !problems.is_empty() {
            differences.push(report(name, emulator_step, sluice_step, &problems));
        }
    }
    differences
}

/// Returns what is wrong with the scenario itself, judged by the emulator's recording: the
/// scenario is written so that every part runs to its end there, and every intended
/// difference of the parts it ran must have been recorded.
fn scenario_problems(emulator: &Recording) -> Vec<String> {
    let mut problems: Vec<String> = emulator
        .order
        .iter()
        .filter(|name| name.ends_with(".aborted"))
        .map(|name| {
            format!(
                "scenario error: {name} on the emulator: {}\n",
                emulator.steps[name].result
            )
        })
        .collect();
    let sections: BTreeSet<&str> = emulator.order.iter().map(|name| section(name)).collect();
    for intended in INTENDED {
        if sections.contains(section(intended.step)) && !emulator.steps.contains_key(intended.step)
        {
            problems.push(format!(
                "scenario error: {} was not recorded\n",
                intended.step
            ));
        }
    }
    problems
}

/// Returns the part of the scenario a step belongs to: `push` of `push.outcomes`.
fn section(step: &str) -> &str {
    step.split_once('.').map_or(step, |(section, _)| section)
}

/// Formats one difference: the step, the request and both results as they were returned.
/// Requests differ between the sides only in ack ids and ports, and both are shown then.
fn report(
    name: &str,
    emulator: Option<&Step>,
    sluice: Option<&Step>,
    problems: &[String],
) -> String {
    let field_text = |step: Option<&Step>, field: fn(&Step) -> &Value| {
        step.map_or_else(
            || "(not recorded)".to_owned(),
            |step| field(step).to_string(),
        )
    };
    let emulator_request = field_text(emulator, |step| &step.request);
    let sluice_request = field_text(sluice, |step| &step.request);
    let mut text = format!("step {name}\n");
    if emulator_request == sluice_request || sluice.is_none() {
        let _ = writeln!(text, "  request:          {emulator_request}");
    } else if emulator.is_none() {
        let _ = writeln!(text, "  request:          {sluice_request}");
    } else {
        let _ = writeln!(text, "  request emulator: {emulator_request}");
        let _ = writeln!(text, "  request sluice:   {sluice_request}");
    }
    let _ = writeln!(
        text,
        "  emulator:         {}",
        field_text(emulator, |step| &step.result)
    );
    let _ = writeln!(
        text,
        "  sluice:           {}",
        field_text(sluice, |step| &step.result)
    );
    for problem in problems {
        let _ = writeln!(text, "  - {problem}");
    }
    text
}

/// Compares two results that should be equal after normalisation, and returns each problem.
fn compare_results(emulator: &Value, sluice: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let emulator = strip_output_only(emulator, Side::Emulator, &mut problems);
    let sluice = strip_output_only(sluice, Side::Sluice, &mut problems);
    diff_paths(
        "",
        &normalise(&emulator),
        &normalise(&sluice),
        &mut problems,
    );
    problems
}

/// The server a result came from.
#[derive(Debug, Clone, Copy)]
enum Side {
    Emulator,
    Sluice,
}

/// Returns a copy of a result without the subscription fields that the emulator leaves
/// unset and sluice fills in, after checking them on each side. On the emulator `state` and
/// `expiration_policy` must be absent. On sluice `state` must be `ACTIVE` and
/// `expiration_policy` must have no ttl. The scenario compares
/// `topic_message_retention_duration` in a step of its own.
fn strip_output_only(result: &Value, side: Side, problems: &mut Vec<String>) -> Value {
    match result {
        Value::Object(fields) => {
            let is_subscription = fields.contains_key("ack_deadline_seconds");
            if is_subscription {
                check_state(fields.get("state"), side, problems);
                check_expiration_policy(fields.get("expiration_policy"), side, problems);
            }
            fields
                .iter()
                .filter(|(key, _)| {
                    !(is_subscription
                        && matches!(
                            key.as_str(),
                            "state" | "expiration_policy" | "topic_message_retention_duration"
                        ))
                })
                .map(|(key, value)| (key.clone(), strip_output_only(value, side, problems)))
                .collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|item| strip_output_only(item, side, problems))
            .collect(),
        other => other.clone(),
    }
}

fn check_state(state: Option<&Value>, side: Side, problems: &mut Vec<String>) {
    let state = state.and_then(Value::as_str);
    match (side, state) {
        (Side::Emulator, None) | (Side::Sluice, Some("ACTIVE")) => {}
        (Side::Emulator, Some(state)) => problems.push(format!(
            "emulator: state is {state:?}; version 0.8.20 left it unset (intended difference: \
             output-only subscription fields)"
        )),
        (Side::Sluice, state) => problems.push(format!(
            "sluice: state is {state:?}, expected \"ACTIVE\" as the service returns \
             (intended difference: output-only subscription fields)"
        )),
    }
}

fn check_expiration_policy(policy: Option<&Value>, side: Side, problems: &mut Vec<String>) {
    match (side, policy) {
        (Side::Emulator, None) => {}
        (Side::Sluice, Some(policy)) if policy == &json!({}) => {}
        (Side::Emulator, Some(policy)) => problems.push(format!(
            "emulator: expiration_policy is {policy}; version 0.8.20 left it unset \
             (intended difference: subscriptions never expire in sluice)"
        )),
        (Side::Sluice, policy) => problems.push(format!(
            "sluice: expiration_policy is {policy:?}, expected {{}}, a policy without a ttl \
             (intended difference: subscriptions never expire in sluice)"
        )),
    }
}

/// Returns a copy of a result with the values that legitimately differ replaced by
/// placeholders, after checking their shape, and without the error message.
fn normalise(result: &Value) -> Value {
    match result {
        Value::Object(fields) => fields
            .iter()
            .filter(|(key, _)| !(key.as_str() == "message" && fields.contains_key("error")))
            .map(|(key, value)| (key.clone(), normalise_field(key, value)))
            .collect(),
        Value::Array(items) => items.iter().map(normalise).collect(),
        other => other.clone(),
    }
}

fn normalise_field(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("message_id" | "messageId", Value::String(id)) => {
            placeholder("message_id", id, is_decimal(id))
        }
        ("message_ids", Value::Array(ids)) => ids
            .iter()
            .map(|id| match id {
                Value::String(id) => placeholder("message_id", id, is_decimal(id)),
                other => other.clone(),
            })
            .collect(),
        ("ack_id", Value::String(id)) => placeholder("ack_id", id, !id.is_empty()),
        // The endpoints of the push scenario listen on a port of their own in each run.
        ("push_endpoint", Value::String(url)) => match url.strip_prefix(LOCAL_ENDPOINT) {
            Some(rest) => {
                let path = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                Value::String(format!("{LOCAL_ENDPOINT}<port>{path}"))
            }
            None => value.clone(),
        },
        (
            "publish_time"
            | "publishTime"
            | "expire_time"
            | "CloudPubSubDeadLetterSourceTopicPublishTime",
            Value::String(time),
        ) => placeholder(
            "timestamp",
            time,
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
        ),
        _ => normalise(value),
    }
}

/// Returns `<kind>` for a well-formed value and the value itself, marked, otherwise.
fn placeholder(kind: &str, value: &str, well_formed: bool) -> Value {
    if well_formed {
        Value::String(format!("<{kind}>"))
    } else {
        Value::String(format!("<malformed {kind}: {value}>"))
    }
}

/// Pub/Sub message ids are decimal strings, on the service and on the emulator.
fn is_decimal(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit())
}

fn diff_paths(path: &str, emulator: &Value, sluice: &Value, problems: &mut Vec<String>) {
    match (emulator, sluice) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
            for key in keys {
                let child = format!("{path}/{key}");
                match (left.get(key), right.get(key)) {
                    (Some(l), Some(r)) => diff_paths(&child, l, r, problems),
                    (Some(l), None) => {
                        problems.push(format!("{child}: emulator {l}, sluice absent"))
                    }
                    (None, Some(r)) => {
                        problems.push(format!("{child}: emulator absent, sluice {r}"))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(left), Value::Array(right)) if left.len() == right.len() => {
            for (index, (l, r)) in left.iter().zip(right).enumerate() {
                diff_paths(&format!("{path}/{index}"), l, r, problems);
            }
        }
        _ if emulator != sluice => {
            let path = if path.is_empty() { "/" } else { path };
            problems.push(format!("{path}: emulator {emulator}, sluice {sluice}"));
        }
        _ => {}
    }
}

fn expect_ok(result: &Value, side: &str) -> Vec<String> {
    if result.get("ok").is_some() {
        Vec::new()
    } else {
        vec![format!("{side}: expected success, got {result}")]
    }
}

fn expect_ok_field(result: &Value, side: &str, field: &str, expected: &Value) -> Vec<String> {
    match result.get("ok").and_then(|ok| ok.get(field)) {
        Some(value) if value == expected => Vec::new(),
        _ => vec![format!(
            "{side}: expected success with {field} = {expected}, got {result}"
        )],
    }
}

fn expect_error(result: &Value, side: &str, code: &str) -> Vec<String> {
    if result.get("error").and_then(Value::as_str) == Some(code) {
        Vec::new()
    } else {
        vec![format!("{side}: expected {code}, got {result}")]
    }
}

fn expect_value(result: &Value, side: &str, expected: &Value) -> Vec<String> {
    if result == expected {
        Vec::new()
    } else {
        vec![format!("{side}: expected {expected}, got {result}")]
    }
}
