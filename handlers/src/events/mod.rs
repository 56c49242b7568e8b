//! Event formats of Cloud Functions and Eventarc, and the conversions between them.
//!
//! - [`legacy`]: the background event of Cloud Functions, `{"context": {...}, "data": ...}`,
//!   read from either of its two JSON shapes.
//! - [`cloudevent`]: a CloudEvent, in its JSON form and in HTTP binary mode (`ce-*` headers
//!   and the data as the body).
//! - [`convert`]: legacy to CloudEvent and back, with the type, source and subject mapping of
//!   the Functions Frameworks.
//! - [`message`]: both formats built from a delivered Pub/Sub message, which the push
//!   formats `background` and `cloudevent` send. A Cloud Storage notification becomes a
//!   storage event, a LogEntry with an audit-log payload becomes an audit-log CloudEvent,
//!   and any other message becomes a Pub/Sub event.
//!
//! Everything here is pure: functions over `serde_json` values, without I/O.

pub mod cloudevent;
pub mod convert;
pub mod legacy;
pub mod message;

pub use cloudevent::CloudEvent;
pub use legacy::LegacyEvent;

/// An event that is malformed, or that has no equivalent in the other format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event is not a JSON object.
    #[error("the event is not a JSON object")]
    NotAnObject,
    /// A required field is absent, or is not of the JSON type it must have.
    #[error("the event's {field} is missing or is not {expected}")]
    MissingField {
        /// The field's name, such as `eventId` or `ce-source`.
        field: &'static str,
        /// The JSON type the field must have, such as "a string".
        expected: &'static str,
    },
    /// A field has a value that the format or the conversion does not accept.
    #[error("the event's {field} {value:?} is invalid: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// The value as received.
        value: String,
        /// The reason the value is invalid.
        reason: String,
    },
    /// The event type has no equivalent in the format the event is converted to.
    #[error("event type {0:?} has no equivalent in the other format")]
    UnknownType(String),
}

impl EventError {
    fn invalid(field: &'static str, value: &str, reason: impl Into<String>) -> Self {
        EventError::InvalidField {
            field,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}
