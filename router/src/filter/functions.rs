//! The functions of the Logging query language: `log_id`, `source`, `sample`, `ip_in_net` and
//! `SEARCH` as conditions, `cast` and `regexp_extract` as the left-hand side of a comparison.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

use super::ast::{Arg, Call, Span};
use super::compile::Compiler;
use super::error::FilterError;
use super::eval::{any_value, default_value, for_each_string};
use super::fields::{Field, FieldKind, FieldType};
use super::search::SearchQuery;
use super::values::{parse_decimal, parse_duration, parse_timestamp};

/// The left-hand side of a comparison.
#[derive(Debug, Clone)]
pub(crate) enum Operand {
    Field(Field),
    Cast(Box<Cast>),
    Extract(Box<Extract>),
}

/// `cast(FIELD, TYPE[, TIMEZONE("zone")])`.
#[derive(Debug, Clone)]
pub(crate) struct Cast {
    pub(crate) source: Operand,
    pub(crate) to: CastType,
    pub(crate) zone: Option<Tz>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastType {
    String,
    Int64,
    Float64,
    Bool,
    Timestamp,
    Duration,
}

/// `regexp_extract(FIELD, "pattern with one group")`.
#[derive(Debug, Clone)]
pub(crate) struct Extract {
    pub(crate) source: Operand,
    pub(crate) regex: Regex,
}

/// A function used as a condition.
#[derive(Debug, Clone)]
pub(crate) enum Predicate {
    /// The LOG_ID part of `logName`, URL-decoded, equal to this text in any case.
    LogId(Box<str>),
    /// `logName` starts with this prefix (`projects/p/logs/`), in any case.
    Source(Box<str>),
    /// The hash of the field's text (FNV-1a, then MurmurHash3's finaliser) is below the
    /// threshold.
    Sample {
        field: Field,
        threshold: u64,
    },
    IpInNet {
        field: Field,
        net: IpNet,
    },
    Search {
        field: Option<Field>,
        query: SearchQuery,
    },
}

impl Operand {
    /// The type the operand's values have, when it is fixed.
    pub(crate) fn result_type(&self) -> Option<FieldType> {
        match self {
            Operand::Field(field) => match field.kind {
                FieldKind::Defaulted(ty) => Some(ty),
                _ => None,
            },
            Operand::Cast(cast) => match cast.to {
                CastType::String => Some(FieldType::String),
                CastType::Int64 => Some(FieldType::Integer),
                CastType::Float64 => None,
                CastType::Bool => Some(FieldType::Bool),
                CastType::Timestamp => Some(FieldType::Timestamp),
                CastType::Duration => Some(FieldType::Duration),
            },
            Operand::Extract(_) => Some(FieldType::String),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Operand::Field(field) => field.display.to_string(),
            Operand::Cast(cast) => format!("cast({}, ...)", cast.source.describe()),
            Operand::Extract(extract) => {
                format!("regexp_extract({}, ...)", extract.source.describe())
            }
        }
    }

    /// The field the operand reads, below any function calls.
    pub(crate) fn field(&self) -> &Field {
        match self {
            Operand::Field(field) => field,
            Operand::Cast(cast) => cast.source.field(),
            Operand::Extract(extract) => extract.source.field(),
        }
    }

    /// Calls `test` on each value of the operand in `entry` until it returns true. Function
    /// results are computed per field value; a value a function cannot convert is skipped.
    pub(crate) fn any(&self, entry: &Value, test: &mut dyn FnMut(&Value) -> bool) -> bool {
        match self {
            Operand::Field(field) => {
                let mut seen = false;
                any_value(entry, &field.keys, &mut |value| test(value), &mut seen)
            }
            Operand::Cast(cast) => cast.source.any(entry, &mut |value| {
                cast.convert(value)
                    .is_some_and(|converted| test(&converted))
            }),
            Operand::Extract(extract) => extract.source.any(entry, &mut |value| {
                let Value::String(text) = value else {
                    return false;
                };
                match extract.regex.captures(text).and_then(|c| c.get(1)) {
                    Some(group) => test(&Value::String(group.as_str().to_owned())),
                    None => false,
                }
            }),
        }
    }
}

fn arity(
    compiler: &Compiler<'_>,
    call: &Call,
    min: usize,
    max: usize,
    usage: &str,
) -> Result<(), FilterError> {
    if (min..=max).contains(&call.args.len()) {
        return Ok(());
    }
    Err(compiler.error(
        call.span,
        format!(
            "{} takes {usage}, but {} arguments were given",
            call.name,
            call.args.len()
        ),
    ))
}

fn arg_span(arg: &Arg) -> Span {
    match arg {
        Arg::Path(path) => path.span,
        Arg::Value(value) => value.span,
        Arg::Call(call) => call.span,
    }
}

/// The text of an argument that is a value: a quoted string, or a word or path as written.
fn arg_text<'t>(compiler: &Compiler<'t>, arg: &Arg) -> Option<String> {
    match arg {
        Arg::Value(value) => Some(value.text.clone()),
        Arg::Path(path) if path.segments.len() == 1 => Some(path.segments[0].name.clone()),
        Arg::Path(path) => compiler
            .text
            .get(path.span.start..path.span.end)
            .map(str::to_owned),
        Arg::Call(_) => None,
    }
}

fn arg_field(compiler: &Compiler<'_>, call: &Call, arg: &Arg) -> Result<Field, FilterError> {
    match arg {
        Arg::Path(path) => compiler.field(path),
        other => Err(compiler.error(
            arg_span(other),
            format!(
                "the first argument of {} must be a field path, such as jsonPayload.ip",
                call.name
            ),
        )),
    }
}

/// The first argument of `cast` or `regexp_extract`: a field or another such call.
fn arg_source(compiler: &Compiler<'_>, call: &Call, arg: &Arg) -> Result<Operand, FilterError> {
    match arg {
        Arg::Call(inner) => compile_operand_call(compiler, inner),
        other => Ok(Operand::Field(arg_field(compiler, call, other)?)),
    }
}

/// Compiles a function used on its own as a condition.
pub(crate) fn compile_predicate(
    compiler: &Compiler<'_>,
    call: &Call,
) -> Result<Predicate, FilterError> {
    let name = call.name.to_ascii_lowercase();
    match name.as_str() {
        "log_id" => {
            arity(compiler, call, 1, 1, "one argument, the LOG_ID")?;
            let id = arg_text(compiler, &call.args[0]).ok_or_else(|| {
                compiler.error(arg_span(&call.args[0]), "log_id takes a log id string")
            })?;
            Ok(Predicate::LogId(id.into()))
        }
        "source" => {
            arity(
                compiler,
                call,
                1,
                1,
                "one argument, such as projects/my-project",
            )?;
            let resource = arg_text(compiler, &call.args[0]).unwrap_or_default();
            let valid_kind = [
                "projects/",
                "folders/",
                "organizations/",
                "billingAccounts/",
            ]
            .iter()
            .any(|kind| resource.starts_with(kind) && resource.len() > kind.len());
            if !valid_kind || resource.matches('/').count() != 1 {
                return Err(compiler.error(
                    arg_span(&call.args[0]),
                    format!(
                        "source() takes one resource: projects/ID, folders/ID, organizations/ID \
                         or billingAccounts/ID, not {resource:?}"
                    ),
                ));
            }
            Ok(Predicate::Source(format!("{resource}/logs/").into()))
        }
        "sample" => compile_sample(compiler, call),
        "ip_in_net" => {
            arity(
                compiler,
                call,
                2,
                2,
                "a field and a network, such as ip_in_net(jsonPayload.ip, \"10.0.0.0/8\")",
            )?;
            let field = arg_field(compiler, call, &call.args[0])?;
            let text = arg_text(compiler, &call.args[1]).unwrap_or_default();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    compiler.error(
                        arg_span(&call.args[1]),
                        format!("{text:?} is not an IP address or CIDR range; use a form such as \"10.0.0.0/8\" or \"2001:db8::/32\""),
                    )
                })?;
            Ok(Predicate::IpInNet { field, net })
        }
        "search" => {
            arity(
                compiler,
                call,
                1,
                2,
                "a query string, optionally after a field: SEARCH(textPayload, \"words\")",
            )?;
            let (field, query_arg) = match call.args.as_slice() {
                [query] => (None, query),
                [field, query] => (Some(arg_field(compiler, call, field)?), query),
                _ => unreachable!("arity checked above"),
            };
            let Arg::Value(query) = query_arg else {
                return Err(compiler.error(
                    arg_span(query_arg),
                    "the query of SEARCH must be a double-quoted string",
                ));
            };
            let query = SearchQuery::parse(&query.text)
                .map_err(|message| compiler.error(query.span, message))?;
            Ok(Predicate::Search { field, query })
        }
        "cast" | "regexp_extract" => Err(compiler.error(
            call.span,
            format!(
                "{} returns a value, not a condition; compare its result, as in {}(...) = \"x\"",
                call.name, call.name
            ),
        )),
        _ => Err(unknown_function(compiler, call)),
    }
}

fn unknown_function(compiler: &Compiler<'_>, call: &Call) -> FilterError {
    compiler.error(
        call.span,
        format!(
            "unknown function {}; the functions are log_id, source, sample, ip_in_net, SEARCH, \
             cast and regexp_extract",
            call.name
        ),
    )
}

fn compile_sample(compiler: &Compiler<'_>, call: &Call) -> Result<Predicate, FilterError> {
    arity(
        compiler,
        call,
        2,
        2,
        "a field and a fraction, such as sample(insertId, 0.25)",
    )?;
    let field = arg_field(compiler, call, &call.args[0])?;
    let text = arg_text(compiler, &call.args[1]).unwrap_or_default();
    let fraction = parse_decimal(&text)
        .filter(|f| *f > 0.0 && *f <= 1.0)
        .ok_or_else(|| {
            compiler.error(
                arg_span(&call.args[1]),
                format!(
                    "the fraction of sample() must be a number above 0 and at most 1, not {text:?}"
                ),
            )
        })?;
    // The fraction maps onto the hash range; 1 selects every entry.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let threshold = if fraction >= 1.0 {
        u64::MAX
    } else {
        (fraction * 18_446_744_073_709_551_616.0) as u64
    };
    Ok(Predicate::Sample { field, threshold })
}

/// Compiles `cast(...)` or `regexp_extract(...)` on the left-hand side of a comparison.
pub(crate) fn compile_operand_call(
    compiler: &Compiler<'_>,
    call: &Call,
) -> Result<Operand, FilterError> {
    let name = call.name.to_ascii_lowercase();
    match name.as_str() {
        "cast" => {
            arity(
                compiler,
                call,
                2,
                3,
                "a field, a type and optionally TIMEZONE(\"zone\")",
            )?;
            let source = arg_source(compiler, call, &call.args[0])?;
            let type_name = arg_text(compiler, &call.args[1]).unwrap_or_default();
            let to = match type_name.to_ascii_uppercase().as_str() {
                "STRING" => CastType::String,
                "INT64" => CastType::Int64,
                "FLOAT64" => CastType::Float64,
                "BOOL" => CastType::Bool,
                "TIMESTAMP" => CastType::Timestamp,
                "DURATION" => CastType::Duration,
                _ => {
                    return Err(compiler.error(
                        arg_span(&call.args[1]),
                        format!("cannot cast to {type_name:?}; use STRING, INT64, FLOAT64, BOOL, TIMESTAMP or DURATION"),
                    ))
                }
            };
            let zone = match call.args.get(2) {
                None => None,
                Some(arg) => Some(compile_zone(compiler, arg)?),
            };
            Ok(Operand::Cast(Box::new(Cast { source, to, zone })))
        }
        "regexp_extract" => {
            arity(
                compiler,
                call,
                2,
                2,
                "a field and a pattern with one capture group",
            )?;
            let source = arg_source(compiler, call, &call.args[0])?;
            let Arg::Value(pattern) = &call.args[1] else {
                return Err(compiler.error(
                    arg_span(&call.args[1]),
                    "the pattern of regexp_extract must be a double-quoted string",
                ));
            };
            let regex = Regex::new(&pattern.text).map_err(|err| {
                compiler.error(pattern.span, format!("invalid regular expression: {err}"))
            })?;
            if regex.captures_len() != 2 {
                return Err(compiler.error(
                    pattern.span,
                    format!(
                        "regexp_extract needs a pattern with exactly one capture group, and this one has {}",
                        regex.captures_len() - 1
                    ),
                ));
            }
            Ok(Operand::Extract(Box::new(Extract { source, regex })))
        }
        "log_id" | "source" | "sample" | "ip_in_net" | "search" => Err(compiler.error(
            call.span,
            format!(
                "{} is a condition on its own; remove the comparison after it",
                call.name
            ),
        )),
        _ => Err(unknown_function(compiler, call)),
    }
}

fn compile_zone(compiler: &Compiler<'_>, arg: &Arg) -> Result<Tz, FilterError> {
    let invalid = || {
        compiler.error(
            arg_span(arg),
            "the third argument of cast must be TIMEZONE(\"Area/City\")",
        )
    };
    let Arg::Call(call) = arg else {
        return Err(invalid());
    };
    if !call.name.eq_ignore_ascii_case("timezone") || call.args.len() != 1 {
        return Err(invalid());
    }
    let zone = arg_text(compiler, &call.args[0]).unwrap_or_default();
    zone.parse::<Tz>().map_err(|_| {
        compiler.error(
            arg_span(&call.args[0]),
            format!("unknown time zone {zone:?}; use an IANA name such as \"America/New_York\""),
        )
    })
}

impl Predicate {
    pub(crate) fn eval(&self, entry: &Value) -> bool {
        match self {
            Predicate::LogId(id) => log_name(entry).is_some_and(|name| log_id_matches(name, id)),
            Predicate::Source(prefix) => log_name(entry).is_some_and(|name| {
                name.len() > prefix.len()
                    && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }),
            Predicate::Sample { field, threshold } => sample_hash(entry, field)
                .is_some_and(|hash| hash < *threshold || *threshold == u64::MAX),
            Predicate::IpInNet { field, net } => {
                let mut seen = false;
                any_value(
                    entry,
                    &field.keys,
                    &mut |value| match value {
                        Value::String(text) => text
                            .trim()
                            .parse::<IpAddr>()
                            .is_ok_and(|ip| net.contains(&ip)),
                        _ => false,
                    },
                    &mut seen,
                )
            }
            Predicate::Search { field, query } => match field {
                None => query.matches(|visit| for_each_string(entry, visit)),
                Some(field) => query.matches(|visit| {
                    let mut seen = false;
                    any_value(
                        entry,
                        &field.keys,
                        &mut |value| for_each_string(value, visit),
                        &mut seen,
                    )
                }),
            },
        }
    }
}

fn log_name(entry: &Value) -> Option<&str> {
    entry.get("logName").and_then(Value::as_str)
}

/// Whether the LOG_ID of `log_name` (after `/logs/`, URL-decoded) equals `id` in any case.
fn log_id_matches(log_name: &str, id: &str) -> bool {
    let Some(start) = log_name.find("/logs/") else {
        return false;
    };
    let encoded = &log_name[start + "/logs/".len()..];
    let mut decoded = percent_encoding::percent_decode_str(encoded);
    let mut expected = id.bytes();
    loop {
        match (decoded.next(), expected.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// Hashes the text of the first value at `field`. A missing payload field gives `None`, so it
/// is never selected; a defaulted LogEntry field is hashed as its default.
fn sample_hash(entry: &Value, field: &Field) -> Option<u64> {
    let mut first: Option<&Value> = None;
    let mut seen = false;
    let mut take_first = |value| {
        first = Some(value);
        true
    };
    any_value(entry, &field.keys, &mut take_first, &mut seen);
    let value = match (first, field.kind) {
        (Some(value), _) => value,
        (None, FieldKind::Defaulted(ty)) => default_value(ty),
        (None, _) => return None,
    };
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    match value {
        Value::String(text) => hasher.write_bytes(text.as_bytes()),
        other => {
            // Writing into the hasher cannot fail.
            let _ = write!(hasher, "{other}");
        }
    }
    Some(mix(hasher.0))
}

/// MurmurHash3's 64-bit finaliser. FNV-1a alone leaves the high bits of short, similar keys
/// (`id-1`, `id-2`) poorly mixed, and `sample()` selects on the high bits.
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// 64-bit FNV-1a, chosen for `sample()` because it is stable across versions and platforms.
struct Fnv1a(u64);

impl Fnv1a {
    fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl Cast {
    /// Converts one field value; `None` when it does not convert, so the comparison is false.
    pub(crate) fn convert(&self, value: &Value) -> Option<Value> {
        let text = match value {
            Value::String(text) => Some(text.as_str()),
            _ => None,
        };
        match self.to {
            CastType::String => Some(Value::String(self.to_text(value))),
            CastType::Int64 => match value {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().map(|f| f.trunc() as i64))
                    .map(Value::from),
                Value::Bool(b) => Some(Value::from(i64::from(*b))),
                _ => text
                    .and_then(|t| t.trim().parse::<i64>().ok())
                    .map(Value::from),
            },
            CastType::Float64 => match value {
                Value::Number(_) => Some(value.clone()),
                _ => text
                    .and_then(parse_decimal)
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
            },
            CastType::Bool => match value {
                Value::Bool(_) => Some(value.clone()),
                Value::Number(n) => n.as_f64().map(|f| Value::Bool(f != 0.0)),
                _ => text
                    .and_then(|t| t.to_ascii_lowercase().parse::<bool>().ok())
                    .map(Value::Bool),
            },
            CastType::Timestamp => text
                .filter(|t| parse_timestamp(t).is_some())
                .map(|t| Value::String(t.to_owned())),
            CastType::Duration => text
                .filter(|t| parse_duration(t).is_some())
                .map(|t| Value::String(t.to_owned())),
        }
    }

    fn to_text(&self, value: &Value) -> String {
        match value {
            Value::String(text) => match (self.zone, self.source.field().kind) {
                (Some(zone), FieldKind::Defaulted(FieldType::Timestamp)) => {
                    in_zone(text, zone).unwrap_or_else(|| text.clone())
                }
                _ => text.clone(),
            },
            other => other.to_string(),
        }
    }
}

/// Rewrites an RFC 3339 timestamp in `zone`, keeping its fraction of a second.
fn in_zone(text: &str, zone: Tz) -> Option<String> {
    let instant: DateTime<Utc> = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    Some(
        instant
            .with_timezone(&zone)
            .to_rfc3339_opts(SecondsFormat::AutoSi, false),
    )
}
