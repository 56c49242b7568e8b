//! The proto3 JSON mapping of the google.pubsub.v1 messages, written by hand because the
//! prost types come from the googleapis-tonic crate, which derives no serde impls.
//!
//! Each message implements [`JsonMessage`] through the [`json_message!`] macro, which lists
//! its fields with their JSON names and a [`Kind`] per field. A kind, defined in
//! [`super::kinds`] or [`super::wkt`], parses one JSON value into the prost field and writes
//! it back, so the mapping of a field type lives in one place:
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

pub(super) fn object<'a>(value: &'a Value, path: &str) -> ParseResult<&'a Map<String, Value>> {
    match value {
        Value::Object(object) => Ok(object),
        other if path.is_empty() => Err(format!(
            "Invalid JSON payload received. The body must be a JSON object, found {other}."
        )),
        other => Err(invalid_value(path, "an object", other)),
    }
}

pub(super) fn child_path(path: &str, name: &str) -> String {
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
