//! The JSON forms of the well-known types that google.pubsub.v1 uses: Duration, Timestamp,
//! FieldMask and Struct.

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;
use sluice_proto::google::protobuf::{self as pb, value::Kind as ValueKind};

use super::json::{invalid_value, object, Encoding, Kind, ParseResult};

/// Largest magnitude of a Duration's seconds: about 10,000 years, as duration.proto allows.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
const NANOS_PER_SECOND: i32 = 1_000_000_000;
/// Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of timestamp.proto.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A `google.protobuf.Duration` field, such as `"600s"` or `"0.5s"`.
#[derive(Debug)]
pub(super) struct Duration;

impl Kind for Duration {
    type Target = Option<pb::Duration>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<pb::Duration>> {
        parse_duration(value, path).map(Some)
    }

    fn is_default(target: &Option<pb::Duration>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<pb::Duration>, _: Encoding) -> Value {
        target.as_ref().map_or(Value::Null, |duration| {
            Value::String(format_duration(duration))
        })
    }
}

/// A `google.protobuf.Timestamp` field in RFC 3339, such as `"2024-05-01T12:00:00.5Z"`.
#[derive(Debug)]
pub(super) struct Timestamp;

impl Kind for Timestamp {
    type Target = Option<pb::Timestamp>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<pb::Timestamp>> {
        TimestampValue::parse(value, path).map(Some)
    }

    fn is_default(target: &Option<pb::Timestamp>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<pb::Timestamp>, encoding: Encoding) -> Value {
        target.as_ref().map_or(Value::Null, |timestamp| {
            TimestampValue::write(timestamp, encoding)
        })
    }
}

/// A Timestamp held without an `Option`, as the member `time` of SeekRequest's oneof.
#[derive(Debug)]
pub(super) struct TimestampValue;

impl Kind for TimestampValue {
    type Target = pb::Timestamp;

    fn parse(value: &Value, path: &str) -> ParseResult<pb::Timestamp> {
        let expected = "an RFC 3339 timestamp such as \"2024-05-01T12:00:00Z\"";
        let invalid = || invalid_value(path, expected, value);
        let time = value
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .ok_or_else(invalid)?;
        let timestamp = pb::Timestamp {
            seconds: time.timestamp(),
            nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
        };
        // This rejects leap seconds, which chrono reads as nanos past 999,999,999, and
        // years outside 1 to 9999.
        if format_timestamp(&timestamp).is_none() {
            return Err(invalid());
        }
        Ok(timestamp)
    }

    fn is_default(_: &pb::Timestamp) -> bool {
        false
    }

    fn write(target: &pb::Timestamp, _: Encoding) -> Value {
        // A timestamp outside timestamp.proto's range has no JSON form; none of sluice's
        // timestamps is, and null keeps the response readable if one ever were.
        format_timestamp(target).map_or(Value::Null, Value::String)
    }
}

/// A `google.protobuf.FieldMask` field: comma-separated paths in lowerCamelCase, such as
/// `"ackDeadlineSeconds,retryPolicy.minimumBackoff"`. Paths in the proto's snake_case are
/// accepted too. The prost message stores them in snake_case.
#[derive(Debug)]
pub(super) struct FieldMask;

impl Kind for FieldMask {
    type Target = Option<pb::FieldMask>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<pb::FieldMask>> {
        let text = value
            .as_str()
            .ok_or_else(|| invalid_value(path, "comma-separated field paths", value))?;
        let paths = text
            .split(',')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(snake_case)
            .collect();
        Ok(Some(pb::FieldMask { paths }))
    }

    fn is_default(target: &Option<pb::FieldMask>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<pb::FieldMask>, _: Encoding) -> Value {
        target.as_ref().map_or(Value::Null, |mask| {
            let paths: Vec<String> = mask
                .paths
                .iter()
                .map(|path| lower_camel_case(path))
                .collect();
            Value::String(paths.join(","))
        })
    }
}

/// A `google.protobuf.Struct` field, which is any JSON object.
#[derive(Debug)]
pub(super) struct Struct;

impl Kind for Struct {
    type Target = Option<pb::Struct>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<pb::Struct>> {
        let object = object(value, path)?;
        Ok(Some(json_to_struct(object)))
    }

    fn is_default(target: &Option<pb::Struct>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<pb::Struct>, _: Encoding) -> Value {
        target.as_ref().map_or(Value::Null, struct_to_json)
    }
}

/// Parses a Duration such as `"1.5s"` or `"-0.000001s"`.
fn parse_duration(value: &Value, path: &str) -> ParseResult<pb::Duration> {
    let expected = "a duration in seconds such as \"600s\" or \"1.5s\"";
    let invalid = || invalid_value(path, expected, value);
    let number = value
        .as_str()
        .and_then(|text| text.strip_suffix('s'))
        .ok_or_else(invalid)?;

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
    if seconds > MAX_DURATION_SECONDS {
        return Err(invalid());
    }
    let nanos: i32 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().map_err(|_| invalid())?
    };

    Ok(if negative {
        pb::Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        pb::Duration { seconds, nanos }
    })
}

/// Formats a Duration as proto3 JSON does: 0, 3, 6 or 9 fractional digits and an `s`.
fn format_duration(duration: &pb::Duration) -> String {
    let sign = if duration.seconds < 0 || duration.nanos < 0 {
        "-"
    } else {
        ""
    };
    let seconds = duration.seconds.unsigned_abs();
    let nanos = duration
        .nanos
        .unsigned_abs()
        .min(NANOS_PER_SECOND as u32 - 1);
    let fraction = if nanos == 0 {
        String::new()
    } else if nanos.is_multiple_of(1_000_000) {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    };
    format!("{sign}{seconds}{fraction}s")
}

/// Formats a Timestamp in RFC 3339 with a `Z`; `None` outside years 1 to 9999.
fn format_timestamp(timestamp: &pb::Timestamp) -> Option<String> {
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&timestamp.seconds) {
        return None;
    }
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|nanos| *nanos < NANOS_PER_SECOND.unsigned_abs())?;
    let time = DateTime::from_timestamp(timestamp.seconds, nanos)?;
    // AutoSi writes the fraction in groups of 3 digits, as proto3 JSON does.
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Turns a lowerCamelCase path into the proto's snake_case, segment by segment.
fn snake_case(path: &str) -> String {
    let mut snake = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

/// Turns a snake_case name into lowerCamelCase, as protoc derives JSON names.
pub(super) fn lower_camel_case(name: &str) -> String {
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
    camel
}

fn json_to_struct(object: &serde_json::Map<String, Value>) -> pb::Struct {
    pb::Struct {
        fields: object
            .iter()
            .map(|(name, value)| (name.clone(), json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> pb::Value {
    let kind = match value {
        Value::Null => ValueKind::NullValue(pb::NullValue::NullValue as i32),
        Value::Bool(flag) => ValueKind::BoolValue(*flag),
        // Struct stores every number as a double, so integers past 2^53 lose precision.
        Value::Number(number) => ValueKind::NumberValue(number.as_f64().unwrap_or(f64::NAN)),
        Value::String(text) => ValueKind::StringValue(text.clone()),
        Value::Array(values) => ValueKind::ListValue(pb::ListValue {
            values: values.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => ValueKind::StructValue(json_to_struct(object)),
    };
    pb::Value { kind: Some(kind) }
}

fn struct_to_json(fields: &pb::Struct) -> Value {
    Value::Object(
        fields
            .fields
            .iter()
            .map(|(name, value)| (name.clone(), value_to_json(value)))
            .collect(),
    )
}

fn value_to_json(value: &pb::Value) -> Value {
    match &value.kind {
        None | Some(ValueKind::NullValue(_)) => Value::Null,
        Some(ValueKind::BoolValue(flag)) => Value::Bool(*flag),
        Some(ValueKind::NumberValue(number)) => {
            serde_json::Number::from_f64(*number).map_or(Value::Null, Value::Number)
        }
        Some(ValueKind::StringValue(text)) => Value::String(text.clone()),
        Some(ValueKind::ListValue(list)) => {
            Value::Array(list.values.iter().map(value_to_json).collect())
        }
        Some(ValueKind::StructValue(fields)) => struct_to_json(fields),
    }
}
