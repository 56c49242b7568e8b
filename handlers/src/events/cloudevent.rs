//! CloudEvents 1.0: the event, its JSON form and its HTTP binary mode.
//!
//! In binary mode each attribute travels in a header of its name prefixed with `ce-`, except
//! `datacontenttype`, which is the `Content-Type`, and the data is the body. This is how
//! Eventarc delivers events, and the only mode in which the Functions Frameworks convert a
//! CloudEvent for a background function.
//!
//! Header values: printable ASCII, spaces included, is sent as is, and every other character
//! is percent-encoded as UTF-8 (`é` becomes `%C3%A9`), as is a space at either end, which
//! HTTP would strip. CloudEvents 1.0.2 also requires `%`, `"` and every space to be encoded.
//! sluice sends `%` as is, because the Go, Java and Python SDKs do not decode header values
//! and Eventarc's audit-log event ids carry the `%2F` of their log name unencoded.
//! [`CloudEvent::from_binary`] likewise takes header values as they come.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, CONTROLS};
use serde_json::{Map, Value};

use super::EventError;

/// The CloudEvents version of every event sluice writes.
pub const SPEC_VERSION: &str = "1.0";

/// The prefix of the attribute headers in binary mode.
const HEADER_PREFIX: &str = "ce-";

/// The attributes that CloudEvents 1.0 defines; every other attribute is an extension.
const CORE_ATTRIBUTES: [&str; 9] = [
    "id",
    "source",
    "specversion",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
];

/// A CloudEvent with JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Unique per source; a redelivery keeps it.
    pub id: String,
    /// The context the event happened in, such as
    /// `//storage.googleapis.com/projects/_/buckets/photos`.
    pub source: String,
    /// The CloudEvents version, `1.0`.
    pub specversion: String,
    /// The `type` attribute, such as `google.cloud.storage.object.v1.finalized`.
    pub event_type: String,
    /// The subject within the source, such as `objects/cat.jpg`.
    pub subject: Option<String>,
    /// When the event happened, in RFC 3339 format.
    pub time: Option<String>,
    /// The media type of the data, such as `application/json`.
    pub datacontenttype: Option<String>,
    /// The URI of the data's schema.
    pub dataschema: Option<String>,
    /// Extension attributes by name, such as `bucket` or `methodname`.
    pub extensions: BTreeMap<String, String>,
    /// The data: a JSON value, or a string for data of another media type.
    pub data: Option<Value>,
}

/// A CloudEvent as an HTTP request in binary mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRequest {
    /// Lower-case header names with their values, `content-type` included when the event
    /// has a `datacontenttype`.
    pub headers: Vec<(String, String)>,
    /// The data.
    pub body: Vec<u8>,
}

impl CloudEvent {
    /// Returns an event with the required attributes and nothing else.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        event_type: impl Into<String>,
    ) -> Self {
        CloudEvent {
            id: id.into(),
            source: source.into(),
            specversion: SPEC_VERSION.to_owned(),
            event_type: event_type.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    /// Reads the JSON form of an event (the structured mode's body). Extension values that
    /// are numbers or booleans are kept as their JSON text.
    ///
    /// # Errors
    ///
    /// Fails when a required attribute is missing, an attribute is not a string, an
    /// extension name is not lower-case letters and digits, or the event carries
    /// `data_base64`, which this type does not hold.
    pub fn from_json(json: &Value) -> Result<Self, EventError> {
        let object = json.as_object().ok_or(EventError::NotAnObject)?;
        let required = |name: &'static str| match object.get(name) {
            Some(Value::String(text)) => Ok(text.clone()),
            _ => Err(EventError::MissingField {
                field: name,
                expected: "a string",
            }),
        };
        let optional = |name: &'static str| match object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(EventError::invalid(
                name,
                &other.to_string(),
                "it must be a string",
            )),
        };

        if let Some(encoded) = object.get("data_base64") {
            return Err(EventError::invalid(
                "data_base64",
                &encoded.to_string(),
                "binary data is not supported: send JSON data in `data`",
            ));
        }

        let mut event = CloudEvent::new(required("id")?, required("source")?, required("type")?);
        event.specversion = required("specversion")?;
        event.subject = optional("subject")?;
        event.time = optional("time")?;
        event.datacontenttype = optional("datacontenttype")?;
        event.dataschema = optional("dataschema")?;
        event.data = object.get("data").cloned();

        for (name, value) in object {
            if CORE_ATTRIBUTES.contains(&name.as_str()) {
                continue;
            }
            check_extension_name(name)?;
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                other => {
                    return Err(EventError::invalid(
                        "extension",
                        &other.to_string(),
                        format!("extension {name} must be a string, a number or a boolean"),
                    ))
                }
            };
            event.extensions.insert(name.clone(), value);
        }
        Ok(event)
    }

    /// Writes the JSON form of the event, with the extensions as top-level strings.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        for (name, value) in self.attributes() {
            object.insert(name.to_owned(), Value::from(value));
        }
        if let Some(data) = &self.data {
            object.insert("data".to_owned(), data.clone());
        }
        Value::Object(object)
    }

    /// Writes the event as a binary-mode request: one `ce-*` header per attribute, the
    /// `datacontenttype` as the `content-type`, and the data as the body.
    ///
    /// JSON data (a JSON media type, or none) is serialized. A string with another media
    /// type is sent as its UTF-8 bytes. An event without data has an empty body.
    pub fn to_binary(&self) -> BinaryRequest {
        let mut headers = Vec::new();
        if let Some(content_type) = &self.datacontenttype {
            headers.push(("content-type".to_owned(), header_value(content_type)));
        }
        for (name, value) in self.attributes() {
            if name != "datacontenttype" {
                headers.push((format!("{HEADER_PREFIX}{name}"), header_value(value)));
            }
        }
        let body = match &self.data {
            None => Vec::new(),
            Some(Value::String(text)) if !is_json(self.datacontenttype.as_deref()) => {
                text.as_bytes().to_vec()
            }
            Some(data) => data.to_string().into_bytes(),
        };
        BinaryRequest { headers, body }
    }

    /// Reads a binary-mode request: its headers (names in any case) and its body. Header
    /// values are taken as they are, without percent-decoding.
    ///
    /// # Errors
    ///
    /// Fails when `ce-id`, `ce-source`, `ce-type` or `ce-specversion` is missing, when a
    /// JSON body does not parse, or when a body of another media type is not UTF-8.
    pub fn from_binary<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &[u8],
    ) -> Result<Self, EventError> {
        let mut attributes = BTreeMap::new();
        let mut content_type = None;
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if name == "content-type" {
                content_type = Some(value.to_owned());
            } else if let Some(attribute) = name.strip_prefix(HEADER_PREFIX) {
                attributes.insert(attribute.to_owned(), value.to_owned());
            }
        }

        let mut take = |name: &'static str| attributes.remove(name);
        let required = |value: Option<String>, field: &'static str| {
            value.ok_or(EventError::MissingField {
                field,
                expected: "a header",
            })
        };

        let mut event = CloudEvent::new(
            required(take("id"), "ce-id")?,
            required(take("source"), "ce-source")?,
            required(take("type"), "ce-type")?,
        );
        event.specversion = required(take("specversion"), "ce-specversion")?;
        event.subject = take("subject");
        event.time = take("time");
        event.dataschema = take("dataschema");
        event.data = binary_data(content_type.as_deref(), body)?;
        event.datacontenttype = content_type;
        event.extensions = attributes;
        Ok(event)
    }

    /// Returns every attribute that has a value, core attributes first, as name and value.
    fn attributes(&self) -> Vec<(&str, &str)> {
        let mut attributes = vec![
            ("id", self.id.as_str()),
            ("source", self.source.as_str()),
            ("specversion", self.specversion.as_str()),
            ("type", self.event_type.as_str()),
        ];
        let optional = [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                attributes.push((name, value.as_str()));
            }
        }
        for (name, value) in &self.extensions {
            attributes.push((name.as_str(), value.as_str()));
        }
        attributes
    }
}

/// Checks that an extension name is what CloudEvents 1.0 allows: lower-case ASCII letters
/// and digits.
fn check_extension_name(name: &str) -> Result<(), EventError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(EventError::invalid(
            "attribute name",
            name,
            "CloudEvents attribute names are lower-case letters and digits only",
        ))
    }
}

/// Returns whether a media type is JSON. No media type counts as JSON, since CloudEvents
/// then reads the data as JSON.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media_type == "application/json" || media_type == "text/json" || media_type.ends_with("+json")
}

/// Reads the body of a binary-mode request as the event's data.
fn binary_data(content_type: Option<&str>, body: &[u8]) -> Result<Option<Value>, EventError> {
    if body.is_empty() {
        return Ok(None);
    }
    if is_json(content_type) {
        return serde_json::from_slice(body).map(Some).map_err(|err| {
            EventError::invalid(
                "data",
                &String::from_utf8_lossy(body),
                format!("the body is not JSON: {err}"),
            )
        });
    }
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Some(Value::from(text))),
        Err(_) => Err(EventError::invalid(
            "data",
            &String::from_utf8_lossy(body),
            "a body of a non-JSON media type must be UTF-8 text",
        )),
    }
}

/// Encodes an attribute value for a header: controls and non-ASCII characters are
/// percent-encoded as UTF-8, and so is a space at either end.
fn header_value(value: &str) -> String {
    let encoded = utf8_percent_encode(value, CONTROLS).to_string();
    let leading = encoded.len() - encoded.trim_start_matches(' ').len();
    let trailing = encoded.len() - encoded.trim_end_matches(' ').len();
    if leading == 0 && trailing == 0 {
        return encoded;
    }
    if leading == encoded.len() {
        return "%20".repeat(leading);
    }
    format!(
        "{}{}{}",
        "%20".repeat(leading),
        &encoded[leading..encoded.len() - trailing],
        "%20".repeat(trailing)
    )
}

#[cfg(test)]
mod tests;
