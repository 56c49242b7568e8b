//! The LogEntry schema: which field paths exist, their types, and which absent fields take a
//! default value rather than counting as missing.

use super::ast::FieldPath;
use super::error::FilterError;

/// The type of a LogEntry field that the schema defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    String,
    Timestamp,
    Severity,
    Duration,
    Integer,
    Bool,
}

impl FieldType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Timestamp => "timestamp",
            FieldType::Severity => "severity",
            FieldType::Duration => "duration",
            FieldType::Integer => "integer",
            FieldType::Bool => "bool",
        }
    }
}

/// How a resolved field behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldKind {
    /// A typed LogEntry field: when absent it compares as its type's default value.
    Defaulted(FieldType),
    /// A LogEntry message such as `resource` or `httpRequest`: only `:*` applies to it.
    Message,
    /// A field inside a payload, `labels` or `resource.labels`: its type comes from the JSON
    /// value, and when absent every comparison on it is false.
    Dynamic,
}

/// One key of a resolved path.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) name: Box<str>,
    /// Whether the key also matches JSON keys that differ only in ASCII case. True for fields
    /// of typed protos (LogEntry, AuditLog), false under maps and Structs.
    pub(crate) any_case: bool,
}

/// A field path checked against the schema.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) keys: Box<[Key]>,
    pub(crate) kind: FieldKind,
    /// The path as the user wrote it, for messages and explain output.
    pub(crate) display: Box<str>,
}

enum Schema {
    Leaf(FieldType),
    Message(&'static [(&'static str, Schema)]),
    /// A map or Struct: any key below, exact case.
    Map,
    /// A typed payload whose own field names match in any case (protoPayload).
    Proto,
    /// A scalar payload with no fields below (textPayload).
    Text,
}

use FieldType::{Bool, Duration, Integer, Severity, String as Str, Timestamp};

const RESOURCE: &[(&str, Schema)] = &[("type", Schema::Leaf(Str)), ("labels", Schema::Map)];
const HTTP_REQUEST: &[(&str, Schema)] = &[
    ("requestMethod", Schema::Leaf(Str)),
    ("requestUrl", Schema::Leaf(Str)),
    ("requestSize", Schema::Leaf(Integer)),
    ("status", Schema::Leaf(Integer)),
    ("responseSize", Schema::Leaf(Integer)),
    ("userAgent", Schema::Leaf(Str)),
    ("remoteIp", Schema::Leaf(Str)),
    ("serverIp", Schema::Leaf(Str)),
    ("referer", Schema::Leaf(Str)),
    ("latency", Schema::Leaf(Duration)),
    ("cacheLookup", Schema::Leaf(Bool)),
    ("cacheHit", Schema::Leaf(Bool)),
    ("cacheValidatedWithOriginServer", Schema::Leaf(Bool)),
    ("cacheFillBytes", Schema::Leaf(Integer)),
    ("protocol", Schema::Leaf(Str)),
];
const OPERATION: &[(&str, Schema)] = &[
    ("id", Schema::Leaf(Str)),
    ("producer", Schema::Leaf(Str)),
    ("first", Schema::Leaf(Bool)),
    ("last", Schema::Leaf(Bool)),
];
const SOURCE_LOCATION: &[(&str, Schema)] = &[
    ("file", Schema::Leaf(Str)),
    ("line", Schema::Leaf(Integer)),
    ("function", Schema::Leaf(Str)),
];
const SPLIT: &[(&str, Schema)] = &[
    ("uid", Schema::Leaf(Str)),
    ("index", Schema::Leaf(Integer)),
    ("totalSplits", Schema::Leaf(Integer)),
];

/// The fields of google.logging.v2.LogEntry, by their JSON names.
const LOG_ENTRY: &[(&str, Schema)] = &[
    ("logName", Schema::Leaf(Str)),
    ("resource", Schema::Message(RESOURCE)),
    ("protoPayload", Schema::Proto),
    ("textPayload", Schema::Text),
    ("jsonPayload", Schema::Map),
    ("timestamp", Schema::Leaf(Timestamp)),
    ("receiveTimestamp", Schema::Leaf(Timestamp)),
    ("severity", Schema::Leaf(Severity)),
    ("insertId", Schema::Leaf(Str)),
    ("httpRequest", Schema::Message(HTTP_REQUEST)),
    ("labels", Schema::Map),
    ("metadata", Schema::Map),
    ("operation", Schema::Message(OPERATION)),
    ("trace", Schema::Leaf(Str)),
    ("spanId", Schema::Leaf(Str)),
    ("traceSampled", Schema::Leaf(Bool)),
    ("sourceLocation", Schema::Message(SOURCE_LOCATION)),
    ("split", Schema::Message(SPLIT)),
    ("errorGroups", Schema::Map),
    ("apphub", Schema::Map),
    ("apphubDestination", Schema::Map),
    ("apphubSource", Schema::Map),
];

/// AuditLog fields that hold a Struct or an Any. Below them, keys are user data and match in
/// exact case only.
const PROTO_STRUCT_FIELDS: &[&str] = &["request", "response", "metadata", "serviceData", "details"];

/// Compares a schema name with a written one: any case, and `log_name` for `logName`, because
/// LogEntry is a proto whose fields the query language matches by either spelling.
fn schema_name_matches(schema: &str, written: &str) -> bool {
    let mut written = written.bytes().filter(|b| *b != b'_');
    let mut schema = schema.bytes();
    loop {
        match (schema.next(), written.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// Resolves a field path against the LogEntry schema.
///
/// # Errors
///
/// Returns an error for a path that names no LogEntry field (`thud`, `operation.thud`) or that
/// continues below a scalar (`logName.x`, `textPayload.x`), pointing at the bad segment.
pub(crate) fn resolve(path: &FieldPath, text: &str) -> Result<Field, FilterError> {
    let display: Box<str> = path.to_string().into();
    let error = |index: usize, message: String| {
        let offset = segment_offset(path, text, index);
        FilterError::at(text, offset, &path.segments[index].name, message)
    };
    let mut keys = Vec::with_capacity(path.segments.len());
    let mut table = LOG_ENTRY;
    let mut parent = "LogEntry".to_owned();
    for (index, segment) in path.segments.iter().enumerate() {
        let Some((name, schema)) = table
            .iter()
            .find(|(name, _)| schema_name_matches(name, &segment.name))
        else {
            let known: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
            return Err(error(
                index,
                format!(
                    "unknown field {:?} in {parent}; expected one of: {}",
                    segment.name,
                    known.join(", ")
                ),
            ));
        };
        keys.push(Key {
            name: (*name).into(),
            any_case: true,
        });
        let rest = &path.segments[index + 1..];
        let kind = match schema {
            Schema::Message(fields) => {
                if rest.is_empty() {
                    FieldKind::Message
                } else {
                    table = fields;
                    parent = format!("{parent}.{name}");
                    continue;
                }
            }
            Schema::Leaf(_) | Schema::Text if !rest.is_empty() => {
                return Err(error(
                    index + 1,
                    format!(
                        "{name} is a {} field and has no field {:?}",
                        ty_or_text(schema),
                        rest[0].name
                    ),
                ));
            }
            Schema::Leaf(ty) => FieldKind::Defaulted(*ty),
            Schema::Text => FieldKind::Dynamic,
            Schema::Map => {
                keys.extend(rest.iter().map(|s| Key {
                    name: s.name.as_str().into(),
                    any_case: false,
                }));
                FieldKind::Dynamic
            }
            Schema::Proto => {
                let mut typed = true;
                for segment in rest {
                    keys.push(Key {
                        name: segment.name.as_str().into(),
                        any_case: typed,
                    });
                    if PROTO_STRUCT_FIELDS
                        .iter()
                        .any(|f| f.eq_ignore_ascii_case(&segment.name))
                    {
                        typed = false;
                    }
                }
                FieldKind::Dynamic
            }
        };
        return Ok(Field {
            keys: keys.into(),
            kind,
            display,
        });
    }
    // Only reached when the path ends inside a message table, which the loop handles.
    Ok(Field {
        keys: keys.into(),
        kind: FieldKind::Message,
        display,
    })
}

fn ty_or_text(schema: &Schema) -> &'static str {
    match schema {
        Schema::Leaf(ty) => ty.name(),
        _ => "text",
    }
}

/// Finds the byte offset of segment `index` of `path` in the filter text.
fn segment_offset(path: &FieldPath, text: &str, index: usize) -> usize {
    let written = &text[path.span.start..path.span.end.min(text.len())];
    let mut offset = path.span.start;
    let mut rest = written;
    for segment in &path.segments[..index] {
        let skip = rest
            .find(segment.name.as_str())
            .map_or(0, |i| i + segment.name.len());
        let after = &rest[skip..];
        let dot = after.find('.').map_or(after.len(), |i| i + 1);
        offset += skip + dot;
        rest = &after[dot..];
    }
    offset
}
