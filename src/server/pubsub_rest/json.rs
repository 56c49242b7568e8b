//! The proto3 JSON mapping of the google.pubsub.v1 messages, written by hand because the
//! prost types come from the googleapis-tonic crate, which derives no serde impls.
//!
//! Each message implements [`JsonMessage`] through the [`json_message!`] macro, which lists
//! its fields with their JSON names and a [`Kind`] per field. A kind parses one JSON value
//! into the prost field and writes it back, so the mapping of a field type lives in one
//! place:
//!
//! - a field may be sent under its lowerCamelCase JSON name or its proto name, and `null`
//!   leaves it unset;
//! - int32 fields take numbers or strings, and int64 fields are written as strings;
//! - bytes are base64 in the standard or the URL-safe alphabet, padded or not, and are
//!   written in the standard alphabet with padding;
//! - Durations look like `"600s"`, Timestamps are RFC 3339, FieldMasks are comma-separated
//!   lowerCamelCase paths;
//! - enums take names or numbers and are written as names, or as numbers when the request
//!   asked for `$alt=json;enum-encoding=int`;
//! - unknown fields and values of the wrong type are rejected with a message that names
//!   the field, phrased as Google's REST front end phrases it.

use std::collections::HashMap;
use std::marker::PhantomData;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

/// A field error, phrased as Google's REST front end phrases one.
pub(super) type ParseResult<T> = Result<T, String>;

/// Options of the JSON that responses are written in.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Encoding {
    /// Write enums as numbers, as `$alt=json;enum-encoding=int` requests. Google's Rust
    /// clients send that parameter on every REST call.
    pub(super) enums_as_numbers: bool,
}

/// A protobuf message with a proto3 JSON form. [`json_message!`] implements it.
pub(super) trait JsonMessage: Default {
    /// The proto name and the JSON name of each field, for the tests of the mapping.
    #[cfg(test)]
    const FIELDS: &'static [(&'static str, &'static str)];

    /// Sets the field that the JSON key `name` names from `value`; `None` when no field
    /// has that name.
    fn merge_field(&mut self, name: &str, value: &Value, path: &str) -> Option<ParseResult<()>>;

    /// Adds the fields that are set to `object`.
    fn write_fields(&self, object: &mut Map<String, Value>, encoding: Encoding);
}

/// Parses a message from a JSON object; `path` names it in errors, empty for the body.
pub(super) fn parse_message<M: JsonMessage>(value: &Value, path: &str) -> ParseResult<M> {
    let mut message = M::default();
    for (name, value) in object(value, path)? {
        if value.is_null() {
            continue;
        }
        let field = child_path(path, name);
        match message.merge_field(name, value, &field) {
            Some(result) => result?,
            None => return Err(unknown_field(name, path)),
        }
    }
    Ok(message)
}

/// Writes a message as a JSON object.
pub(super) fn write_message<M: JsonMessage>(message: &M, encoding: Encoding) -> Value {
    let mut object = Map::new();
    message.write_fields(&mut object, encoding);
    Value::Object(object)
}

/// Implements [`JsonMessage`] for a prost message: `field "jsonName": Kind,` per field, then
/// one `oneof` block per oneof with a line `member "jsonName" => Variant: Kind,` per member.
/// Every variant must be listed, or the generated `match` does not compile.
macro_rules! json_message {
    (
        $message:ty {
            $($field:ident $json:literal : $kind:ty,)*
        }
        $(oneof $oneof:ident {
            $($member:ident $member_json:literal => $variant:path : $member_kind:ty,)+
        })*
    ) => {
        // Some fields, such as PullRequest.return_immediately, are deprecated but still
        // part of the wire format.
        #[allow(deprecated)]
        impl $crate::server::pubsub_rest::json::JsonMessage for $message {
            #[cfg(test)]
            const FIELDS: &'static [(&'static str, &'static str)] = &[
                $((stringify!($field), $json),)*
                $($((stringify!($member), $member_json),)+)*
            ];

            fn merge_field(
                &mut self,
                name: &str,
                value: &serde_json::Value,
                path: &str,
            ) -> Option<$crate::server::pubsub_rest::json::ParseResult<()>> {
                // Unused in messages without fields, such as SeekResponse.
                #[allow(unused_imports)]
                use $crate::server::pubsub_rest::json::Kind;
                $(
                    if name == $json || name == stringify!($field) {
                        return Some(<$kind>::parse(value, path).map(|parsed| self.$field = parsed));
                    }
                )*
                $($(
                    if name == $member_json || name == stringify!($member) {
                        if self.$oneof.is_some() {
                            return Some(Err($crate::server::pubsub_rest::json::oneof_conflict(
                                path,
                                stringify!($oneof),
                            )));
                        }
                        return Some(
                            <$member_kind>::parse(value, path)
                                .map(|parsed| self.$oneof = Some($variant(parsed))),
                        );
                    }
                )+)*
                let _ = (name, value, path);
                None
            }

            fn write_fields(
                &self,
                object: &mut serde_json::Map<String, serde_json::Value>,
                encoding: $crate::server::pubsub_rest::json::Encoding,
            ) {
                // Unused in messages without fields, such as SeekResponse.
                #[allow(unused_imports)]
                use $crate::server::pubsub_rest::json::Kind;
                $(
                    if !<$kind>::is_default(&self.$field) {
                        object.insert($json.to_owned(), <$kind>::write(&self.$field, encoding));
                    }
                )*
                $(
                    match &self.$oneof {
                        $(Some($variant(member)) => {
                            object.insert(
                                $member_json.to_owned(),
                                <$member_kind>::write(member, encoding),
                            );
                        })+
                        None => {}
                    }
                )*
                let _ = (object, encoding);
            }
        }
    };
}
pub(super) use json_message;

/// The JSON form of one protobuf field type.
pub(super) trait Kind {
    /// The type of the prost field.
    type Target;

    /// Parses a JSON value that is not `null`; `path` names the field in errors.
    fn parse(value: &Value, path: &str) -> ParseResult<Self::Target>;

    /// Returns whether the field has its default value, which proto3 JSON leaves out.
    fn is_default(target: &Self::Target) -> bool;

    /// Writes the field.
    fn write(target: &Self::Target, encoding: Encoding) -> Value;
}

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
        $(impl $crate::server::pubsub_rest::json::ProtoEnum for $enum {
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

pub(super) fn object<'a>(value: &'a Value, path: &str) -> ParseResult<&'a Map<String, Value>> {
    match value {
        Value::Object(object) => Ok(object),
        other if path.is_empty() => Err(format!(
            "Invalid JSON payload received. The body must be a JSON object, found {other}."
        )),
        other => Err(invalid_value(path, "an object", other)),
    }
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

pub(super) fn invalid_value(path: &str, expected: &str, value: &Value) -> String {
    format!("Invalid value at '{path}': expected {expected}, found {value}.")
}

/// Returns the error for a second member of one oneof, at `path`.
pub(super) fn oneof_conflict(path: &str, oneof: &str) -> String {
    format!(
        "Invalid JSON payload received. '{path}' is a second member of the oneof {oneof:?}, \
         which takes one; send only one of its fields."
    )
}
