//! Streaming reader of LogEntry JSON: JSON Lines, or one JSON array of entries as
//! `gcloud logging read --format=json` prints.
//!
//! The format is chosen by the first character that is not JSON whitespace: `[` starts an
//! array, anything else is read as JSON Lines. Both read one entry at a time, so memory use
//! depends on the largest entry, not on the input size.

use std::fmt;
use std::io::{self, BufRead, Read};

use serde::de::{self, DeserializeSeed as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// Position of an entry in the input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Location {
    /// 1-based position among the entries, not counting blank lines.
    pub(crate) number: u64,
    /// 1-based line number: the entry's line in JSON Lines, the line of the syntax error in a
    /// JSON array, and `None` for the elements of an array.
    pub(crate) line: Option<u64>,
}

/// One entry of the input.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) location: Location,
    /// The entry as written for JSON Lines (the line without its `\n`), or its compact
    /// form for an array element, with keys in their original order.
    pub(crate) text: &'a [u8],
    /// The parsed entry, always a JSON object.
    pub(crate) value: Value,
}

/// One non-blank line or array element, as [`read_entries`] passes it on.
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Entry(Entry<'a>),
    /// Input that is not a LogEntry: invalid JSON, or JSON other than an object.
    Invalid {
        location: Location,
        message: String,
    },
}

/// Error that stopped [`read_entries`] before the end of the input.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Reading the input failed.
    Input(io::Error),
    /// The callback failed, usually while writing output.
    Output(io::Error),
}

/// Reads every entry of `reader` in input order and calls `visit` on each.
///
/// Invalid lines of JSON Lines are passed on as [`Item::Invalid`] and reading goes on. A
/// syntax error in a JSON array ends the input after it is passed on, because the rest of the
/// array cannot be located reliably.
///
/// # Errors
///
/// Stops at the first read error, or at the first error that `visit` returns.
pub(crate) fn read_entries<R: BufRead>(
    mut reader: R,
    visit: &mut dyn FnMut(Item<'_>) -> io::Result<()>,
) -> Result<(), ReadError> {
    let start = skip_blank_lines(&mut reader).map_err(ReadError::Input)?;
    let reader = io::Cursor::new(start.indent).chain(reader);
    match start.first_byte {
        None => Ok(()),
        Some(b'[') => read_array(reader, visit),
        Some(_) => read_lines(reader, start.blank_lines + 1, visit),
    }
}

/// The input up to its first non-blank line.
struct Start {
    first_byte: Option<u8>,
    /// Whitespace consumed from the start of the first non-blank line, to be read again.
    indent: Vec<u8>,
    blank_lines: u64,
}

/// Consumes whole blank lines and returns the first byte after them without consuming it.
fn skip_blank_lines<R: BufRead>(reader: &mut R) -> io::Result<Start> {
    let mut start = Start {
        first_byte: None,
        indent: Vec::new(),
        blank_lines: 0,
    };
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            return Ok(start);
        }
        let blank_len = buffer
            .iter()
            .position(|&byte| !is_json_whitespace(byte))
            .unwrap_or(buffer.len());
        start.first_byte = buffer.get(blank_len).copied();
        for &byte in &buffer[..blank_len] {
            if byte == b'\n' {
                start.blank_lines += 1;
                start.indent.clear();
            } else {
                start.indent.push(byte);
            }
        }
        reader.consume(blank_len);
        if start.first_byte.is_some() {
            return Ok(start);
        }
    }
}

fn read_lines<R: BufRead>(
    mut reader: R,
    first_line: u64,
    visit: &mut dyn FnMut(Item<'_>) -> io::Result<()>,
) -> Result<(), ReadError> {
    let mut buffer = Vec::new();
    let mut line = first_line - 1;
    let mut number = 0;
    loop {
        buffer.clear();
        if reader
            .read_until(b'\n', &mut buffer)
            .map_err(ReadError::Input)?
            == 0
        {
            return Ok(());
        }
        line += 1;
        let text = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        if text.iter().all(|&byte| is_json_whitespace(byte)) {
            continue;
        }
        number += 1;
        let location = Location {
            number,
            line: Some(line),
        };
        let item = match serde_json::from_slice::<Value>(text) {
            Ok(value) => to_item(location, text, value),
            Err(err) => Item::Invalid {
                location,
                message: describe_json_error(&err),
            },
        };
        visit(item).map_err(ReadError::Output)?;
    }
}

fn read_array<R: Read>(
    reader: R,
    visit: &mut dyn FnMut(Item<'_>) -> io::Result<()>,
) -> Result<(), ReadError> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let mut elements = ArrayElements {
        visit: &mut *visit,
        count: 0,
        output_error: None,
    };
    let result = (&mut elements)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    let ArrayElements {
        count,
        output_error,
        ..
    } = elements;
    if let Some(err) = output_error {
        return Err(ReadError::Output(err));
    }
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.is_io() => Err(ReadError::Input(err.into())),
        Err(err) => {
            let location = Location {
                number: count + 1,
                line: Some(err.line() as u64),
            };
            let message = describe_json_error(&err);
            visit(Item::Invalid { location, message }).map_err(ReadError::Output)
        }
    }
}

/// Serde visitor that passes each element of a JSON array on as soon as it is parsed.
struct ArrayElements<'v> {
    visit: &'v mut dyn FnMut(Item<'_>) -> io::Result<()>,
    count: u64,
    /// The callback's error, kept here because serde only carries its own error type.
    output_error: Option<io::Error>,
}

impl<'de> de::DeserializeSeed<'de> for &mut ArrayElements<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for &mut ArrayElements<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON array of LogEntry objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut compact = Vec::new();
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            self.count += 1;
            let location = Location {
                number: self.count,
                line: None,
            };
            compact.clear();
            compact_json(raw.get(), &mut compact);
            let item = match serde_json::from_str::<Value>(raw.get()) {
                Ok(value) => to_item(location, &compact, value),
                Err(err) => Item::Invalid {
                    location,
                    message: describe_json_error(&err),
                },
            };
            if let Err(err) = (self.visit)(item) {
                self.output_error = Some(err);
                return Err(de::Error::custom("output failed"));
            }
        }
        Ok(())
    }
}

fn to_item<'a>(location: Location, text: &'a [u8], value: Value) -> Item<'a> {
    if value.is_object() {
        return Item::Entry(Entry {
            location,
            text,
            value,
        });
    }
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Item::Invalid {
        location,
        message: format!("not a LogEntry: expected a JSON object, found {kind}"),
    }
}

/// Formats a serde_json error as `invalid JSON: MESSAGE at column N`. The line number is
/// left out because it counts from the start of the parsed text, not of the input.
fn describe_json_error(err: &serde_json::Error) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match full.strip_suffix(&suffix) {
        Some(message) => format!("invalid JSON: {message} at column {}", err.column()),
        None => format!("invalid JSON: {full}"),
    }
}

/// Appends `json`, which must be valid JSON, to `out` without the whitespace between tokens.
fn compact_json(json: &str, out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json.as_bytes() {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !is_json_whitespace(byte) {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
}

/// Whitespace as JSON defines it (RFC 8259): space, tab, line feed and carriage return.
fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

#[cfg(test)]
mod tests;
