//! The [`Kind`]s of scalar, enum, message, repeated and map fields. The well-known types
//! are in [`super::wkt`].

use std::collections::HashMap;
use std::marker::PhantomData;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::Value;

use super::json::{
    child_path, invalid_value, object, parse_message, write_message, Encoding, JsonMessage, Kind,
    ParseResult,
};

/// A `string` field.
#[derive(Debug)]
pub(super) struct Str;

impl Kind for Str {
    type Target = String;

    fn parse(value: &Value, path: &str) -> ParseResult<String> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_value(path, "a string", value))
    }

    fn is_default(target: &String) -> bool {
        target.is_empty()
    }

    fn write(target: &String, _: Encoding) -> Value {
        Value::String(target.clone())
    }
}

/// An `optional string` field, which has presence: an empty string is written.
#[derive(Debug)]
pub(super) struct OptionalStr;

impl Kind for OptionalStr {
    type Target = Option<String>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<String>> {
        Str::parse(value, path).map(Some)
    }

    fn is_default(target: &Option<String>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<String>, _: Encoding) -> Value {
        target.clone().map_or(Value::Null, Value::String)
    }
}

/// A `bool` field.
#[derive(Debug)]
pub(super) struct Bool;

impl Kind for Bool {
    type Target = bool;

    fn parse(value: &Value, path: &str) -> ParseResult<bool> {
        value
            .as_bool()
            .ok_or_else(|| invalid_value(path, "true or false", value))
    }

    fn is_default(target: &bool) -> bool {
        !*target
    }

    fn write(target: &bool, _: Encoding) -> Value {
        Value::Bool(*target)
    }
}

/// An `int32` field: a JSON number or a string holding an integer.
#[derive(Debug)]
pub(super) struct Int32;

impl Kind for Int32 {
    type Target = i32;

    fn parse(value: &Value, path: &str) -> ParseResult<i32> {
        integer(value)
            .and_then(|number| i32::try_from(number).ok())
            .ok_or_else(|| invalid_value(path, "a 32-bit integer", value))
    }

    fn is_default(target: &i32) -> bool {
        *target == 0
    }

    fn write(target: &i32, _: Encoding) -> Value {
        Value::from(*target)
    }
}

/// An `int64` field. It is written as a string, because JSON numbers lose precision past
/// 2^53 in many parsers.
#[derive(Debug)]
pub(super) struct Int64;

impl Kind for Int64 {
    type Target = i64;

    fn parse(value: &Value, path: &str) -> ParseResult<i64> {
        integer(value).ok_or_else(|| invalid_value(path, "a 64-bit integer", value))
    }

    fn is_default(target: &i64) -> bool {
        *target == 0
    }

    fn write(target: &i64, _: Encoding) -> Value {
        Value::String(target.to_string())
    }
}

/// Reads an integer from a JSON number without a fraction or from a string.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64().or_else(|| {
            number
                .as_f64()
                .filter(|float| float.fract() == 0.0 && float.abs() < 9.2e18)
                .map(|float| float as i64)
        }),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A `bytes` field in base64.
#[derive(Debug)]
pub(super) struct Bytes;

/// Decoders that accept base64 with or without padding, as proto3 JSON parsers do.
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Kind for Bytes {
    type Target = Vec<u8>;

    fn parse(value: &Value, path: &str) -> ParseResult<Vec<u8>> {
        let expected = "base64-encoded bytes";
        let text = value
            .as_str()
            .ok_or_else(|| invalid_value(path, expected, value))?;
        let engine = if text.contains(['-', '_']) {
            &BASE64_URL_SAFE
        } else {
            &BASE64_STANDARD
        };
        engine
            .decode(text)
            .map_err(|err| format!("Invalid value at '{path}': {expected} expected, {err}."))
    }

    fn is_default(target: &Vec<u8>) -> bool {
        target.is_empty()
    }

    fn write(target: &Vec<u8>, _: Encoding) -> Value {
        Value::String(base64::engine::general_purpose::STANDARD.encode(target))
    }
}

/// A prost enum, for [`Enum`].
pub(super) trait ProtoEnum {
    /// Returns the number of the value named `name`, such as `ACTIVE`.
    fn number_of(name: &str) -> Option<i32>;
    /// Returns the name of the value numbered `number`, if the enum has one.
    fn name_of(number: i32) -> Option<&'static str>;
}

/// Implements [`ProtoEnum`] for prost enums.
macro_rules! proto_enum {
    ($($enum:ty),+ $(,)?) => {
        $(impl $crate::server::pubsub_rest::kinds::ProtoEnum for $enum {
            fn number_of(name: &str) -> Option<i32> {
                Self::from_str_name(name).map(|value| value as i32)
            }

            fn name_of(number: i32) -> Option<&'static str> {
                Self::try_from(number).ok().map(|value| value.as_str_name())
            }
        })+
    };
}
pub(super) use proto_enum;

/// An enum field of type `E`, stored as its number as in prost.
#[derive(Debug)]
pub(super) struct Enum<E>(PhantomData<E>);

impl<E: ProtoEnum> Kind for Enum<E> {
    type Target = i32;

    fn parse(value: &Value, path: &str) -> ParseResult<i32> {
        let expected = "an enum value name or number";
        match value {
            Value::String(name) => {
                E::number_of(name).ok_or_else(|| invalid_value(path, expected, value))
            }
            // Numbers that the enum does not name are kept, as proto3 enums are open.
            Value::Number(_) => Int32::parse(value, path),
            _ => Err(invalid_value(path, expected, value)),
        }
    }

    fn is_default(target: &i32) -> bool {
        *target == 0
    }

    fn write(target: &i32, encoding: Encoding) -> Value {
        match E::name_of(*target) {
            Some(name) if !encoding.enums_as_numbers => Value::String(name.to_owned()),
            _ => Value::from(*target),
        }
    }
}

/// A singular message field, which has presence: an empty message is written as `{}`.
#[derive(Debug)]
pub(super) struct Message<M>(PhantomData<M>);

impl<M: JsonMessage> Kind for Message<M> {
    type Target = Option<M>;

    fn parse(value: &Value, path: &str) -> ParseResult<Option<M>> {
        parse_message(value, path).map(Some)
    }

    fn is_default(target: &Option<M>) -> bool {
        target.is_none()
    }

    fn write(target: &Option<M>, encoding: Encoding) -> Value {
        target
            .as_ref()
            .map_or(Value::Null, |message| write_message(message, encoding))
    }
}

/// A message held without an `Option`, as a member of a oneof or an element of a repeated
/// field.
#[derive(Debug)]
pub(super) struct Inner<M>(PhantomData<M>);

impl<M: JsonMessage> Kind for Inner<M> {
    type Target = M;

    fn parse(value: &Value, path: &str) -> ParseResult<M> {
        parse_message(value, path)
    }

    fn is_default(_: &M) -> bool {
        false
    }

    fn write(target: &M, encoding: Encoding) -> Value {
        write_message(target, encoding)
    }
}

/// A repeated field of elements of kind `K`.
#[derive(Debug)]
pub(super) struct Repeated<K>(PhantomData<K>);

impl<K: Kind> Kind for Repeated<K> {
    type Target = Vec<K::Target>;

    fn parse(value: &Value, path: &str) -> ParseResult<Vec<K::Target>> {
        value
            .as_array()
            .ok_or_else(|| invalid_value(path, "an array", value))?
            .iter()
            .enumerate()
            .map(|(index, element)| K::parse(element, &format!("{path}[{index}]")))
            .collect()
    }

    fn is_default(target: &Vec<K::Target>) -> bool {
        target.is_empty()
    }

    fn write(target: &Vec<K::Target>, encoding: Encoding) -> Value {
        Value::Array(
            target
                .iter()
                .map(|element| K::write(element, encoding))
                .collect(),
        )
    }
}

/// A `map<string, string>` field.
#[derive(Debug)]
pub(super) struct StrMap;

impl Kind for StrMap {
    type Target = HashMap<String, String>;

    fn parse(value: &Value, path: &str) -> ParseResult<HashMap<String, String>> {
        object(value, path)?
            .iter()
            .map(|(key, value)| Ok((key.clone(), Str::parse(value, &child_path(path, key))?)))
            .collect()
    }

    fn is_default(target: &HashMap<String, String>) -> bool {
        target.is_empty()
    }

    fn write(target: &HashMap<String, String>, _: Encoding) -> Value {
        Value::Object(
            target
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect(),
        )
    }
}
