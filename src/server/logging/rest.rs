//! Parsing of the REST body of `entries.write` into protobuf messages.
//!
//! The body is proto3 JSON, so the parser accepts what the proto3 JSON mapping allows. A field
//! may appear under its lowerCamelCase name or its proto name, and the Python client sends
//! `dry_run`. `null` leaves a field unset. Integers may be numbers or strings, and enums names
//! or numbers. Timestamps are RFC 3339 with any UTC offset, and Durations look like `"1.5s"`.
//! Like Cloud Logging, the parser rejects unknown field names and values of the wrong type.
//!
//! Each entry becomes a [`LogEntry`], so that both front doors write the same JSON form
//! through [`super::convert`]. A jsonPayload becomes a `google.protobuf.Struct` as at Google,
//! where its numbers are stored as doubles.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::DateTime;
use serde_json::{Map, Value};
use sluice_proto::google::api::MonitoredResource;
use sluice_proto::google::logging::r#type::{HttpRequest, LogSeverity};
use sluice_proto::google::logging::v2::{
    log_entry, LogEntry, LogEntryOperation, LogEntrySourceLocation, LogSplit,
};
use sluice_proto::google::protobuf::{self as wkt, value, Duration, ListValue, Struct, Timestamp};

use super::convert::{format_duration, format_timestamp};
use super::{EntryInput, WriteRequest};

/// A field error, phrased as Cloud Logging's REST API phrases one.
type ParseResult<T> = Result<T, String>;

/// Parses the body of `POST /v2/entries:write`.
///
/// # Errors
///
/// Returns a message naming the first invalid field, such as
/// `Invalid JSON payload received. Unknown name "foo" at 'entries[0]': Cannot find field.`
pub(super) fn parse_write_request(body: &[u8]) -> ParseResult<WriteRequest> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|err| format!("Invalid JSON payload received. {err}."))?;
    let object = object(&body, "")?;
    let mut request = WriteRequest::default();
    for (name, value) in object {
        if value.is_null() {
            continue;
        }
        let path = child_path("", name);
        match json_name(name).as_ref() {
            "logName" => request.log_name = string(value, &path)?,
            "resource" => request.resource = Some(monitored_resource(value, &path)?),
            "labels" => request.labels = string_map(value, &path)?,
            "entries" => {
                let entries = array(value, &path)?;
                request.entries = entries
                    .iter()
                    .enumerate()
                    .map(|(index, entry)| parse_entry(entry, &format!("entries[{index}]")))
                    .collect::<ParseResult<_>>()?;
            }
            "partialSuccess" => request.partial_success = boolean(value, &path)?,
            "dryRun" => request.dry_run = boolean(value, &path)?,
            _ => return Err(unknown_field(name, "")),
        }
    }
    Ok(request)
}

fn parse_entry(value: &Value, path: &str) -> ParseResult<EntryInput> {
    let mut entry = LogEntry::default();
    let mut proto_payload = None;
    let mut payload_field: Option<&str> = None;
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        let json_name = json_name(name);
        if matches!(
            json_name.as_ref(),
            "textPayload" | "jsonPayload" | "protoPayload"
        ) {
            if let Some(first) = payload_field {
                return Err(format!(
                    "Invalid JSON payload received. {path} sets both {first} and {name}, but an \
                     entry has one payload; keep one of them."
                ));
            }
            payload_field = Some(name);
        }
        match json_name.as_ref() {
            "logName" => entry.log_name = string(value, &field)?,
            "resource" => entry.resource = Some(monitored_resource(value, &field)?),
            "timestamp" => entry.timestamp = Some(timestamp(value, &field)?),
            "receiveTimestamp" => entry.receive_timestamp = Some(timestamp(value, &field)?),
            "severity" => entry.severity = severity(value, &field)?,
            "insertId" => entry.insert_id = string(value, &field)?,
            "httpRequest" => entry.http_request = Some(http_request(value, &field)?),
            "labels" => entry.labels = string_map(value, &field)?,
            "operation" => entry.operation = Some(operation(value, &field)?),
            "trace" => entry.trace = string(value, &field)?,
            "spanId" => entry.span_id = string(value, &field)?,
            "traceSampled" => entry.trace_sampled = boolean(value, &field)?,
            "sourceLocation" => entry.source_location = Some(source_location(value, &field)?),
            "split" => entry.split = Some(split(value, &field)?),
            "textPayload" => {
                entry.payload = Some(log_entry::Payload::TextPayload(string(value, &field)?));
            }
            "jsonPayload" => {
                let payload = json_to_struct(object(value, &field)?);
                entry.payload = Some(log_entry::Payload::JsonPayload(payload));
            }
            "protoPayload" => proto_payload = Some(any(value, &field)?),
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(EntryInput {
        entry,
        proto_payload,
    })
}

fn monitored_resource(value: &Value, path: &str) -> ParseResult<MonitoredResource> {
    let mut resource = MonitoredResource::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match json_name(name).as_ref() {
            "type" => resource.r#type = string(value, &field)?,
            "labels" => resource.labels = string_map(value, &field)?,
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(resource)
}

fn http_request(value: &Value, path: &str) -> ParseResult<HttpRequest> {
    let mut request = HttpRequest::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match json_name(name).as_ref() {
            "requestMethod" => request.request_method = string(value, &field)?,
            "requestUrl" => request.request_url = string(value, &field)?,
            "requestSize" => request.request_size = int64(value, &field)?,
            "status" => request.status = int32(value, &field)?,
            "responseSize" => request.response_size = int64(value, &field)?,
            "userAgent" => request.user_agent = string(value, &field)?,
            "remoteIp" => request.remote_ip = string(value, &field)?,
            "serverIp" => request.server_ip = string(value, &field)?,
            "referer" => request.referer = string(value, &field)?,
            "latency" => request.latency = Some(duration(value, &field)?),
            "cacheLookup" => request.cache_lookup = boolean(value, &field)?,
            "cacheHit" => request.cache_hit = boolean(value, &field)?,
            "cacheValidatedWithOriginServer" => {
                request.cache_validated_with_origin_server = boolean(value, &field)?;
            }
            "cacheFillBytes" => request.cache_fill_bytes = int64(value, &field)?,
            "protocol" => request.protocol = string(value, &field)?,
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(request)
}

fn operation(value: &Value, path: &str) -> ParseResult<LogEntryOperation> {
    let mut operation = LogEntryOperation::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match json_name(name).as_ref() {
            "id" => operation.id = string(value, &field)?,
            "producer" => operation.producer = string(value, &field)?,
            "first" => operation.first = boolean(value, &field)?,
            "last" => operation.last = boolean(value, &field)?,
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(operation)
}

fn source_location(value: &Value, path: &str) -> ParseResult<LogEntrySourceLocation> {
    let mut location = LogEntrySourceLocation::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match json_name(name).as_ref() {
            "file" => location.file = string(value, &field)?,
            "line" => location.line = int64(value, &field)?,
            "function" => location.function = string(value, &field)?,
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(location)
}

fn split(value: &Value, path: &str) -> ParseResult<LogSplit> {
    let mut split = LogSplit::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match json_name(name).as_ref() {
            "uid" => split.uid = string(value, &field)?,
            "index" => split.index = int32(value, &field)?,
            "totalSplits" => split.total_splits = int32(value, &field)?,
            _ => return Err(unknown_field(name, path)),
        }
    }
    Ok(split)
}

/// Checks a protoPayload, a `google.protobuf.Any` in JSON form, and returns it unchanged.
fn any(value: &Value, path: &str) -> ParseResult<Map<String, Value>> {
    let payload = object(value, path)?;
    match payload.get("@type") {
        Some(Value::String(type_url)) if !type_url.is_empty() => Ok(payload.clone()),
        _ => Err(format!(
            "Invalid value at '{path}': the payload has no \"@type\". Name its message type, \
             such as \"@type\": \"type.googleapis.com/google.cloud.audit.AuditLog\"."
        )),
    }
}

/// Returns the field name that a JSON key stands for: proto names in snake_case are turned
/// into lowerCamelCase, as proto3 JSON derives the JSON name from the proto name.
fn json_name(name: &str) -> Cow<'_, str> {
    if !name.contains('_') {
        return Cow::Borrowed(name);
    }
    let mut camel = String::with_capacity(name.len());
    let mut upper_next = false;
    for c in name.chars() {
        if c == '_' {
            upper_next = true;
        } else if upper_next {
            camel.push(c.to_ascii_uppercase());
            upper_next = false;
        } else {
            camel.push(c);
        }
    }
    Cow::Owned(camel)
}

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn unknown_field(name: &str, path: &str) -> String {
    if path.is_empty() {
        format!("Invalid JSON payload received. Unknown name {name:?}: Cannot find field.")
    } else {
        format!(
            "Invalid JSON payload received. Unknown name {name:?} at '{path}': Cannot find field."
        )
    }
}

fn invalid_value(path: &str, expected: &str, value: &Value) -> String {
    format!("Invalid value at '{path}': expected {expected}, found {value}.")
}

fn object<'a>(value: &'a Value, path: &str) -> ParseResult<&'a Map<String, Value>> {
    match value {
        Value::Object(object) => Ok(object),
        other if path.is_empty() => Err(format!(
            "Invalid JSON payload received. The body must be a JSON object, found {other}."
        )),
        other => Err(invalid_value(path, "an object", other)),
    }
}

fn array<'a>(value: &'a Value, path: &str) -> ParseResult<&'a Vec<Value>> {
    value
        .as_array()
        .ok_or_else(|| invalid_value(path, "an array", value))
}

fn string(value: &Value, path: &str) -> ParseResult<String> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid_value(path, "a string", value))
}

fn boolean(value: &Value, path: &str) -> ParseResult<bool> {
    value
        .as_bool()
        .ok_or_else(|| invalid_value(path, "true or false", value))
}

fn string_map(value: &Value, path: &str) -> ParseResult<HashMap<String, String>> {
    object(value, path)?
        .iter()
        .map(|(key, value)| Ok((key.clone(), string(value, &child_path(path, key))?)))
        .collect()
}

/// Parses an int64: a JSON number or a string holding an integer, as proto3 JSON allows.
fn int64(value: &Value, path: &str) -> ParseResult<i64> {
    let parsed = match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 9.2e18)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| invalid_value(path, "a 64-bit integer", value))
}

fn int32(value: &Value, path: &str) -> ParseResult<i32> {
    int64(value, path)
        .ok()
        .and_then(|number| i32::try_from(number).ok())
        .ok_or_else(|| invalid_value(path, "a 32-bit integer", value))
}

/// Parses a LogSeverity: its name, such as "ERROR", or its number, such as 500.
fn severity(value: &Value, path: &str) -> ParseResult<i32> {
    let parsed = match value {
        Value::String(name) => LogSeverity::from_str_name(name).map(|severity| severity as i32),
        Value::Number(_) => int32(value, path).ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid_value(
            path,
            "a LogSeverity name (DEFAULT, DEBUG, INFO, NOTICE, WARNING, ERROR, CRITICAL, ALERT, \
             EMERGENCY) or number",
            value,
        )
    })
}

/// Parses an RFC 3339 timestamp such as `2024-05-01T12:00:00.25+02:00`.
fn timestamp(value: &Value, path: &str) -> ParseResult<Timestamp> {
    let expected = "an RFC 3339 timestamp such as \"2024-05-01T12:00:00Z\"";
    let text = value
        .as_str()
        .ok_or_else(|| invalid_value(path, expected, value))?;
    let time =
        DateTime::parse_from_rfc3339(text).map_err(|_| invalid_value(path, expected, value))?;
    let timestamp = Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    };
    // This rejects leap seconds, which chrono reads as nanos past 999,999,999, and years
    // that proto3 JSON cannot write.
    format_timestamp(&timestamp)
        .map_err(|reason| format!("Invalid value at '{path}': {reason}."))?;
    Ok(timestamp)
}

/// Parses a Duration such as `"1.5s"` or `"-0.000001s"`.
fn duration(value: &Value, path: &str) -> ParseResult<Duration> {
    let expected = "a duration in seconds such as \"1.5s\"";
    let invalid = || invalid_value(path, expected, value);
    let text = value.as_str().ok_or_else(invalid)?;

    let number = text.strip_suffix('s').ok_or_else(invalid)?;
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_only = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || fraction.len() > 9 {
        return Err(invalid());
    }
    if number.ends_with('.') {
        return Err(invalid());
    }

    let seconds: i64 = whole.parse().map_err(|_| invalid())?;
    let nanos: i32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| invalid())?
    };

    let duration = if negative {
        Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        Duration { seconds, nanos }
    };
    format_duration(&duration).map_err(|reason| format!("Invalid value at '{path}': {reason}."))?;
    Ok(duration)
}

/// Converts a JSON object to a `google.protobuf.Struct`.
fn json_to_struct(object: &Map<String, Value>) -> Struct {
    Struct {
        fields: object
            .iter()
            .map(|(name, value)| (name.clone(), json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> wkt::Value {
    let kind = match value {
        Value::Null => value::Kind::NullValue(wkt::NullValue::NullValue as i32),
        Value::Bool(flag) => value::Kind::BoolValue(*flag),
        // Every JSON number has an f64 form; very large integers lose precision as at Google.
        Value::Number(number) => value::Kind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        Value::String(text) => value::Kind::StringValue(text.clone()),
        Value::Array(values) => value::Kind::ListValue(ListValue {
            values: values.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => value::Kind::StructValue(json_to_struct(object)),
    };
    wkt::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::convert::entry_to_json;
    use super::*;

    fn parse(body: &Value) -> ParseResult<WriteRequest> {
        parse_write_request(body.to_string().as_bytes())
    }

    fn parse_error(body: &Value) -> String {
        match parse(body) {
            Ok(request) => panic!("{body} was accepted as {request:?}"),
            Err(message) => message,
        }
    }

    /// Parses one entry and returns its JSON form after the round trip through LogEntry.
    fn round_trip(entry: Value) -> Value {
        let request = parse(&json!({ "entries": [entry] })).expect("the body parses");
        let input = request.entries.into_iter().next().expect("one entry");
        let mut json = entry_to_json(&input.entry).expect("the entry converts");
        if let Some(payload) = input.proto_payload {
            json.insert("protoPayload".to_owned(), Value::Object(payload));
        }
        Value::Object(json)
    }

    #[test]
    fn request_fields_in_both_spellings() {
        let body = json!({
            "logName": "projects/demo/logs/app",
            "resource": {"type": "global", "labels": {"project_id": "demo"}},
            "labels": {"team": "storage"},
            "partialSuccess": true,
            "dry_run": true,
            "entries": [{"textPayload": "a"}, {"textPayload": "b"}]
        });
        let request = parse(&body).expect("parses");
        assert_eq!(request.log_name, "projects/demo/logs/app");
        let resource = request.resource.expect("resource is set");
        assert_eq!(resource.r#type, "global");
        assert_eq!(resource.labels["project_id"], "demo");
        assert_eq!(request.labels["team"], "storage");
        assert!(request.partial_success);
        assert!(request.dry_run);
        assert_eq!(request.entries.len(), 2);

        let snake =
            json!({"log_name": "projects/demo/logs/x", "partial_success": true, "dryRun": true});
        let request = parse(&snake).expect("parses");
        assert_eq!(request.log_name, "projects/demo/logs/x");
        assert!(request.partial_success);
        assert!(request.dry_run);
    }

    #[test]
    fn python_client_body() {
        // The body that google-cloud-logging's HTTP transport sends for logger.log_text.
        let body = json!({
            "entries": [{
                "logName": "projects/demo/logs/python",
                "resource": {"type": "global", "labels": {}},
                "textPayload": "hello",
                "severity": "INFO",
                "timestamp": "2024-05-01T12:00:00.123456Z",
                "sourceLocation": {"file": "app.py", "line": 12, "function": "main"}
            }],
            "partialSuccess": false,
            "dry_run": false
        });
        let request = parse(&body).expect("parses");
        assert!(!request.partial_success);
        assert!(!request.dry_run);
        let entry = &request.entries[0].entry;
        assert_eq!(entry.severity, LogSeverity::Info as i32);
        assert_eq!(entry.source_location.as_ref().map(|l| l.line), Some(12));
        assert_eq!(
            entry.timestamp,
            Some(Timestamp {
                seconds: 1_714_564_800,
                nanos: 123_456_000
            })
        );
    }

    #[test]
    fn entry_round_trip_is_canonical() {
        let entry = json!({
            "log_name": "projects/demo/logs/app",
            "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "photos"}},
            "timestamp": "2024-05-01T14:00:00.5+02:00",
            "receiveTimestamp": "2024-05-01T12:00:01Z",
            "severity": 500,
            "insertId": "abc",
            "httpRequest": {
                "requestMethod": "POST",
                "requestSize": 10,
                "status": "503",
                "response_size": "20",
                "latency": "0.25s",
                "cacheHit": false,
                "cacheFillBytes": 3e2
            },
            "labels": {"env": "prod"},
            "operation": {"id": "op", "first": true},
            "trace": "projects/demo/traces/t",
            "spanId": "s",
            "trace_sampled": true,
            "sourceLocation": {"file": "f.rs", "line": "7"},
            "split": {"uid": "u", "index": "1", "totalSplits": 2},
            "jsonPayload": {"count": 5, "ratio": 0.5, "nested": {"list": [1, "two", null]}}
        });
        let expected = json!({
            "logName": "projects/demo/logs/app",
            "resource": {"type": "gcs_bucket", "labels": {"bucket_name": "photos"}},
            "timestamp": "2024-05-01T12:00:00.500Z",
            "receiveTimestamp": "2024-05-01T12:00:01Z",
            "severity": "ERROR",
            "insertId": "abc",
            "httpRequest": {
                "requestMethod": "POST",
                "requestSize": "10",
                "status": 503,
                "responseSize": "20",
                "latency": "0.250s",
                "cacheFillBytes": "300"
            },
            "labels": {"env": "prod"},
            "operation": {"id": "op", "first": true},
            "trace": "projects/demo/traces/t",
            "spanId": "s",
            "traceSampled": true,
            "sourceLocation": {"file": "f.rs", "line": "7"},
            "split": {"uid": "u", "index": 1, "totalSplits": 2},
            "jsonPayload": {"count": 5, "ratio": 0.5, "nested": {"list": [1, "two", null]}}
        });
        assert_eq!(round_trip(entry), expected);
    }

    #[test]
    fn null_fields_are_unset() {
        let entry =
            json!({"logName": null, "severity": null, "httpRequest": null, "textPayload": "x"});
        assert_eq!(round_trip(entry), json!({"textPayload": "x"}));
    }

    #[test]
    fn proto_payload_is_kept_as_sent() {
        let payload = json!({
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "methodName": "storage.objects.delete",
            "authenticationInfo": {"principalEmail": "alice@example.com"}
        });
        let round = round_trip(json!({"protoPayload": payload.clone()}));
        assert_eq!(round, json!({ "protoPayload": payload }));
    }

    #[test]
    fn proto_payload_needs_a_type() {
        let message = parse_error(&json!({"entries": [{"protoPayload": {"methodName": "x"}}]}));
        assert!(message.contains("'entries[0].protoPayload'"), "{message}");
        assert!(message.contains("@type"), "{message}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let message = parse_error(&json!({"entries": [{"textPayload": "x", "colour": "red"}]}));
        assert_eq!(
            message,
            "Invalid JSON payload received. Unknown name \"colour\" at 'entries[0]': Cannot find field."
        );
        let message = parse_error(&json!({"entries": [], "flush": true}));
        assert_eq!(
            message,
            "Invalid JSON payload received. Unknown name \"flush\": Cannot find field."
        );
        let message = parse_error(&json!({"entries": [{"httpRequest": {"verb": "GET"}}]}));
        assert!(message.contains("at 'entries[0].httpRequest'"), "{message}");
    }

    #[test]
    fn wrong_types_are_rejected() {
        let cases = [
            (json!({"entries": {}}), "'entries'"),
            (json!({"entries": [{"logName": 5}]}), "'entries[0].logName'"),
            (
                json!({"entries": [{"severity": "LOUD"}]}),
                "'entries[0].severity'",
            ),
            (
                json!({"entries": [{"severity": true}]}),
                "'entries[0].severity'",
            ),
            (
                json!({"entries": [{"timestamp": "yesterday"}]}),
                "'entries[0].timestamp'",
            ),
            (
                json!({"entries": [{"timestamp": 1714564800}]}),
                "'entries[0].timestamp'",
            ),
            (
                json!({"entries": [{"labels": {"a": 1}}]}),
                "'entries[0].labels.a'",
            ),
            (
                json!({"entries": [{"jsonPayload": "text"}]}),
                "'entries[0].jsonPayload'",
            ),
            (
                json!({"entries": [{"traceSampled": "yes"}]}),
                "'entries[0].traceSampled'",
            ),
            (
                json!({"entries": [{"sourceLocation": {"line": "7.5"}}]}),
                "'entries[0].sourceLocation.line'",
            ),
            (
                json!({"entries": [{"split": {"index": 4_294_967_296_i64}}]}),
                "'entries[0].split.index'",
            ),
            (
                json!({"entries": [{"httpRequest": {"latency": "5"}}]}),
                "'entries[0].httpRequest.latency'",
            ),
            (json!({"partialSuccess": "true"}), "'partialSuccess'"),
        ];
        for (body, path) in cases {
            let message = parse_error(&body);
            assert!(message.contains(path), "{body}: {message}");
        }
        let message = parse_error(&json!([1, 2]));
        assert!(message.contains("must be a JSON object"), "{message}");
        let message = parse_write_request(b"{not json").expect_err("invalid JSON");
        assert!(
            message.starts_with("Invalid JSON payload received."),
            "{message}"
        );
    }

    #[test]
    fn two_payloads_are_rejected() {
        let message = parse_error(&json!({"entries": [{"textPayload": "a", "jsonPayload": {}}]}));
        assert!(message.contains("entries[0] sets both"), "{message}");
    }

    #[test]
    fn timestamp_forms() {
        let cases = [
            ("2024-05-01T12:00:00Z", 1_714_564_800, 0),
            ("2024-05-01T12:00:00.000000001Z", 1_714_564_800, 1),
            ("2024-05-01T13:30:00+01:30", 1_714_564_800, 0),
            ("2024-05-01t12:00:00z", 1_714_564_800, 0),
            ("0001-01-01T00:00:00Z", -62_135_596_800, 0),
        ];
        for (text, seconds, nanos) in cases {
            let parsed = timestamp(&json!(text), "t").expect(text);
            assert_eq!(parsed, Timestamp { seconds, nanos }, "{text}");
        }
        for text in ["2024-05-01", "2024-05-01T12:00:00", "2016-12-31T23:59:60Z"] {
            assert!(timestamp(&json!(text), "t").is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn duration_forms() {
        let cases = [
            ("1.5s", 1, 500_000_000),
            ("0s", 0, 0),
            ("-0.000001s", 0, -1_000),
            ("-2.5s", -2, -500_000_000),
            ("10.123456789s", 10, 123_456_789),
        ];
        for (text, seconds, nanos) in cases {
            let parsed = duration(&json!(text), "d").expect(text);
            assert_eq!(parsed, Duration { seconds, nanos }, "{text}");
        }
        for text in [
            "1.5",
            "s",
            ".5s",
            "1.s",
            "1.0000000001s",
            "+1s",
            "1e3s",
            "315576000001s",
        ] {
            assert!(duration(&json!(text), "d").is_err(), "{text} was accepted");
        }
    }

    #[test]
    fn integer_forms() {
        assert_eq!(int64(&json!(42), "n"), Ok(42));
        assert_eq!(int64(&json!("-42"), "n"), Ok(-42));
        assert_eq!(int64(&json!(4.0), "n"), Ok(4));
        assert_eq!(int64(&json!("9223372036854775807"), "n"), Ok(i64::MAX));
        assert!(int64(&json!(4.5), "n").is_err());
        assert!(int64(&json!("four"), "n").is_err());
        assert!(int64(&json!(true), "n").is_err());
        assert_eq!(int32(&json!("7"), "n"), Ok(7));
        assert!(int32(&json!(2_147_483_648_i64), "n").is_err());
    }

    #[test]
    fn json_names() {
        assert_eq!(json_name("logName"), "logName");
        assert_eq!(json_name("log_name"), "logName");
        assert_eq!(
            json_name("cache_validated_with_origin_server"),
            "cacheValidatedWithOriginServer"
        );
        assert_eq!(json_name("dry_run"), "dryRun");
    }
}
