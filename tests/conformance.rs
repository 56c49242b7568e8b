//! The event cases of Google's Functions Framework conformance suite (functions-framework-
//! conformance, `events/generate/data`), run against sluice's event formats and conversions.
//!
//! Each case has a legacy input and output, a CloudEvent input and output, and for one case a
//! `legacy-output-converted` that replaces the legacy output after a CloudEvent -> legacy
//! conversion. The suite checks four paths, and so do these tests:
//!
//! - legacy input -> legacy output: the body read in either shape and written as
//!   `{"context", "data"}`;
//! - CloudEvent input -> CloudEvent input: the event sent in HTTP binary mode and read back;
//! - legacy input -> CloudEvent output;
//! - CloudEvent input, in binary mode -> legacy output.
//!
//! The comparison follows the suite's validators:
//!
//! - legacy event: the context's `eventId` (or `event_id`), `eventType` (or `event_type`)
//!   and `resource` and the data are equal, and the timestamps are the same instant. Other
//!   context keys are ignored.
//! - CloudEvent: `id`, `source`, `subject`, `type`, `datacontenttype` and the data are equal,
//!   and the times are the same instant. Extensions, `specversion` and `dataschema` are not
//!   compared.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use sluice_handlers::events::{convert, CloudEvent, LegacyEvent};

/// The number of cases in the fixtures, so that a missing file fails instead of shrinking
/// the suite.
const CASE_COUNT: usize = 17;

/// One conformance case, by the name its files share.
struct Case {
    name: String,
}

impl Case {
    fn read(&self, kind: &str) -> Option<Value> {
        let path = data_dir().join(format!("{}-{kind}.json", self.name));
        let text = std::fs::read_to_string(&path).ok()?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{} is not JSON: {err}", path.display())),
        )
    }

    fn file(&self, kind: &str) -> Value {
        self.read(kind)
            .unwrap_or_else(|| panic!("case {} has no {kind} file", self.name))
    }

    /// Returns the legacy event expected after a CloudEvent -> legacy conversion.
    fn converted_legacy_output(&self) -> Value {
        self.read("legacy-output-converted")
            .unwrap_or_else(|| self.file("legacy-output"))
    }
}

fn data_dir() -> PathBuf {
    support::fixtures().join("conformance/events/generate/data")
}

/// Returns every case, by the names of the `*-legacy-input.json` files.
fn cases() -> Vec<Case> {
    let entries = std::fs::read_dir(data_dir()).unwrap_or_else(|err| {
        panic!(
            "the conformance fixtures are missing at {}: {err}",
            data_dir().display()
        )
    });
    let names: BTreeSet<String> = entries
        .map(|entry| entry.expect("readable directory entry").file_name())
        .filter_map(|name| {
            name.to_str()?
                .strip_suffix("-legacy-input.json")
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(names.len(), CASE_COUNT, "cases: {names:?}");
    names.into_iter().map(|name| Case { name }).collect()
}

/// Runs `check` on every case and fails with the list of the cases that failed, so that one
/// failure does not hide the others.
fn check_every_case(check: impl Fn(&Case) -> Result<(), String>) {
    let failures: Vec<String> = cases()
        .iter()
        .filter_map(|case| {
            check(case)
                .err()
                .map(|problem| format!("{}: {problem}", case.name))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn instant(text: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|err| format!("time {text:?} is not RFC 3339: {err}"))
}

/// Compares two timestamps as instants.
fn same_instant(
    field: &str,
    actual: Option<&Value>,
    expected: Option<&Value>,
) -> Result<(), String> {
    let (Some(Value::String(actual)), Some(Value::String(expected))) = (actual, expected) else {
        return Err(format!("{field}: {actual:?}, expected {expected:?}"));
    };
    if instant(actual)? == instant(expected)? {
        Ok(())
    } else {
        Err(format!(
            "{field}: {actual}, expected the instant {expected}"
        ))
    }
}

fn equal(field: &str, actual: Option<&Value>, expected: Option<&Value>) -> Result<(), String> {
    if actual == expected {
        Ok(())
    } else {
        Err(format!("{field}: {actual:?}, expected {expected:?}"))
    }
}

/// Compares a legacy event with the expected one, by the suite's rules.
fn compare_legacy(actual: &Value, expected: &Value) -> Result<(), String> {
    let context = |event: &Value| event.get("context").cloned().unwrap_or(Value::Null);
    let (actual_context, expected_context) = (context(actual), context(expected));
    // The suite accepts the snake_case names that Python's context object uses.
    let field = |context: &Value, camel: &str, snake: &str| {
        context.get(camel).or_else(|| context.get(snake)).cloned()
    };
    for (camel, snake) in [("eventId", "event_id"), ("eventType", "event_type")] {
        equal(
            camel,
            field(&actual_context, camel, snake).as_ref(),
            field(&expected_context, camel, snake).as_ref(),
        )?;
    }
    equal(
        "resource",
        actual_context.get("resource"),
        expected_context.get("resource"),
    )?;
    same_instant(
        "timestamp",
        actual_context.get("timestamp"),
        expected_context.get("timestamp"),
    )?;
    equal("data", actual.get("data"), expected.get("data"))
}

/// Compares a CloudEvent with the expected one (in JSON form), by the suite's rules.
fn compare_cloudevent(actual: &CloudEvent, expected: &Value) -> Result<(), String> {
    let actual = actual.to_json();
    for attribute in ["id", "source", "subject", "type", "datacontenttype", "data"] {
        equal(attribute, actual.get(attribute), expected.get(attribute))?;
    }
    same_instant("time", actual.get("time"), expected.get("time"))
}

/// Sends a CloudEvent through HTTP binary mode and reads it back, as a function host would
/// receive it.
fn through_binary_mode(event: &CloudEvent) -> Result<CloudEvent, String> {
    let request = event.to_binary();
    assert!(
        request
            .headers
            .iter()
            .all(|(name, _)| name != "ce-datacontenttype"),
        "binary mode carries datacontenttype as the content type only"
    );
    let headers = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()));
    CloudEvent::from_binary(headers, &request.body).map_err(|err| err.to_string())
}

#[test]
fn legacy_input_gives_legacy_output() {
    check_every_case(|case| {
        let event =
            LegacyEvent::from_json(&case.file("legacy-input")).map_err(|e| e.to_string())?;
        compare_legacy(&event.to_json(), &case.file("legacy-output"))
    });
}

#[test]
fn cloudevent_input_gives_cloudevent_input() {
    check_every_case(|case| {
        let input = case.file("cloudevent-input");
        let event = CloudEvent::from_json(&input).map_err(|e| e.to_string())?;
        compare_cloudevent(&through_binary_mode(&event)?, &input)
    });
}

#[test]
fn legacy_converts_to_cloudevent() {
    check_every_case(|case| {
        let event =
            LegacyEvent::from_json(&case.file("legacy-input")).map_err(|e| e.to_string())?;
        let converted = convert::to_cloudevent(&event).map_err(|e| e.to_string())?;
        compare_cloudevent(&converted, &case.file("cloudevent-output"))
    });
}

#[test]
fn cloudevent_converts_to_legacy() {
    check_every_case(|case| {
        let input =
            CloudEvent::from_json(&case.file("cloudevent-input")).map_err(|e| e.to_string())?;
        let received = through_binary_mode(&input)?;
        let converted = convert::to_legacy(&received).map_err(|e| e.to_string())?;
        compare_legacy(&converted.to_json(), &case.converted_legacy_output())
    });
}

#[test]
fn converted_cloudevent_survives_binary_mode() {
    check_every_case(|case| {
        let event =
            LegacyEvent::from_json(&case.file("legacy-input")).map_err(|e| e.to_string())?;
        let converted = convert::to_cloudevent(&event).map_err(|e| e.to_string())?;
        compare_cloudevent(
            &through_binary_mode(&converted)?,
            &case.file("cloudevent-output"),
        )
    });
}

#[test]
fn comparison_rejects_changed_events() {
    let case = Case {
        name: "storage".to_owned(),
    };
    let expected = case.file("legacy-output");
    let mut other_time = expected.clone();
    other_time["context"]["timestamp"] = Value::from("2020-09-29T11:32:00.124Z");
    let mut other_data = expected.clone();
    other_data["data"]["size"] = Value::from("353");
    let mut same_instant = expected.clone();
    same_instant["context"]["timestamp"] = Value::from("2020-09-29T13:32:00.123+02:00");

    assert!(compare_legacy(&other_time, &expected).is_err(), "timestamp");
    assert!(compare_legacy(&other_data, &expected).is_err(), "data");
    assert_eq!(compare_legacy(&same_instant, &expected), Ok(()), "instant");

    let input = case.file("cloudevent-input");
    let mut event = CloudEvent::from_json(&input).expect("valid event");
    event.subject = Some("objects/other".to_owned());
    assert!(compare_cloudevent(&event, &input).is_err(), "subject");
}
