//! Evaluation of a compiled filter against one LogEntry in JSON form.
//!
//! The walk borrows from the entry and the compiled tree and allocates nothing for ASCII
//! strings; non-ASCII text is case-folded into a temporary string.

use std::cmp::Ordering;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::ast::Op;
use super::compile::{Comparison, Node};
use super::fields::{FieldKind, FieldType, Key};
use super::functions::Operand;
use super::literal::Literal;
use super::values::{
    parse_decimal, parse_duration, parse_integer, parse_severity, parse_timestamp,
};

/// Evaluates `node` on `entry`, short-circuiting AND and OR.
pub(crate) fn eval(node: &Node, entry: &Value) -> bool {
    match node {
        Node::All => true,
        Node::And(items) => items.iter().all(|item| eval(item, entry)),
        Node::Or(items) => items.iter().any(|item| eval(item, entry)),
        Node::Not(inner) => !eval(inner, entry),
        Node::Compare(comparison) => compare(comparison, entry),
        Node::Present(field) => {
            let mut seen = false;
            any_value(entry, &field.keys, &mut |_| true, &mut seen)
        }
        Node::Search(literal) => for_each_string(entry, &mut |text| literal.is_substring_of(text)),
        Node::Call(predicate, _) => predicate.eval(entry),
    }
}

/// Evaluates one comparison, applying the default of an absent LogEntry field.
pub(crate) fn compare(comparison: &Comparison, entry: &Value) -> bool {
    let Comparison {
        operand,
        op,
        literal,
        ..
    } = comparison;
    match operand {
        Operand::Field(field) => {
            let ty = match field.kind {
                FieldKind::Defaulted(ty) => Some(ty),
                _ => None,
            };
            let mut seen = false;
            let mut test = |value: &Value| compare_value(value, ty, *op, literal);
            if any_value(entry, &field.keys, &mut test, &mut seen) {
                return true;
            }
            match (seen, ty) {
                (false, Some(ty)) => compare_value(default_value(ty), Some(ty), *op, literal),
                _ => false,
            }
        }
        Operand::Cast(_) | Operand::Extract(_) => {
            let ty = operand.result_type();
            operand.any(entry, &mut |value| compare_value(value, ty, *op, literal))
        }
    }
}

/// The value an absent LogEntry field of type `ty` compares as.
pub(crate) fn default_value(ty: FieldType) -> &'static Value {
    static DEFAULTS: LazyLock<[Value; 6]> = LazyLock::new(|| {
        [
            Value::String(String::new()),
            Value::String("1970-01-01T00:00:00Z".to_owned()),
            Value::String("DEFAULT".to_owned()),
            Value::String("0s".to_owned()),
            Value::from(0),
            Value::Bool(false),
        ]
    });
    let index = match ty {
        FieldType::String => 0,
        FieldType::Timestamp => 1,
        FieldType::Severity => 2,
        FieldType::Duration => 3,
        FieldType::Integer => 4,
        FieldType::Bool => 5,
    };
    &DEFAULTS[index]
}

/// Calls `test` on every value at `keys` below `value`, descending into arrays at any level,
/// until `test` returns true. Sets `seen` when at least one value exists at the path.
pub(crate) fn any_value<'a>(
    value: &'a Value,
    keys: &[Key],
    test: &mut impl FnMut(&'a Value) -> bool,
    seen: &mut bool,
) -> bool {
    if let Value::Array(items) = value {
        return items.iter().any(|item| any_value(item, keys, test, seen));
    }
    let Some((key, rest)) = keys.split_first() else {
        *seen = true;
        return test(value);
    };
    match value {
        Value::Object(map) => match lookup(map, key) {
            Some(child) => any_value(child, rest, test, seen),
            None => false,
        },
        _ => false,
    }
}

fn lookup<'a>(map: &'a Map<String, Value>, key: &Key) -> Option<&'a Value> {
    if let Some(value) = map.get(&*key.name) {
        return Some(value);
    }
    if key.any_case {
        return map
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&key.name))
            .map(|(_, v)| v);
    }
    None
}

/// Calls `visit` on every string value below `value` (keys are not visited) until it returns
/// true.
pub(crate) fn for_each_string(value: &Value, visit: &mut dyn FnMut(&str) -> bool) -> bool {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().any(|item| for_each_string(item, visit)),
        Value::Object(map) => map.values().any(|item| for_each_string(item, visit)),
        _ => false,
    }
}

/// Whether an ordering satisfies a comparison operator; `None` (NaN) satisfies only `!=`.
fn holds(op: Op, ordering: Option<Ordering>) -> bool {
    match (op, ordering) {
        (Op::Ne, None) => true,
        (_, None) => false,
        (Op::Eq | Op::Has, Some(ordering)) => ordering == Ordering::Equal,
        (Op::Ne, Some(ordering)) => ordering != Ordering::Equal,
        (Op::Lt, Some(ordering)) => ordering == Ordering::Less,
        (Op::Le, Some(ordering)) => ordering != Ordering::Greater,
        (Op::Gt, Some(ordering)) => ordering == Ordering::Greater,
        (Op::Ge, Some(ordering)) => ordering != Ordering::Less,
        (Op::Regex | Op::NotRegex, Some(_)) => false,
    }
}

/// Compares one scalar field value with a literal. `ty` is the field's type when the schema
/// fixes it; otherwise the JSON value's own type decides.
pub(crate) fn compare_value(
    value: &Value,
    ty: Option<FieldType>,
    op: Op,
    literal: &Literal,
) -> bool {
    if op.is_regex() {
        let Value::String(text) = value else {
            return false;
        };
        let Some(regex) = &literal.regex else {
            return false;
        };
        return regex.is_match(text) == (op == Op::Regex);
    }
    if literal.null {
        let is_null = value.is_null();
        return match op {
            Op::Eq | Op::Has => is_null,
            Op::Ne => !is_null,
            _ => false,
        };
    }
    match ty {
        Some(ty) => compare_typed(value, ty, op, literal),
        None => compare_dynamic(value, op, literal),
    }
}

fn compare_typed(value: &Value, ty: FieldType, op: Op, literal: &Literal) -> bool {
    let text = value.as_str();
    match ty {
        FieldType::String => match value {
            Value::String(text) => compare_text(text, op, literal),
            Value::Number(_) | Value::Bool(_) => compare_text(&value.to_string(), op, literal),
            _ => false,
        },
        FieldType::Timestamp | FieldType::Duration if op == Op::Has => {
            text.is_some_and(|text| literal.is_substring_of(text))
        }
        FieldType::Timestamp => {
            let field = text.and_then(parse_timestamp);
            field
                .zip(literal.timestamp)
                .is_some_and(|(a, b)| holds(op, Some(a.cmp(&b))))
        }
        FieldType::Duration => {
            let field = text.and_then(parse_duration);
            field
                .zip(literal.duration)
                .is_some_and(|(a, b)| holds(op, Some(a.cmp(&b))))
        }
        FieldType::Severity => {
            let field = match value {
                Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                Value::String(text) => parse_severity(text),
                _ => None,
            };
            field
                .zip(literal.severity)
                .is_some_and(|(a, b)| holds(op, Some(a.cmp(&b))))
        }
        FieldType::Integer => match value {
            Value::Number(_) => compare_number(value, op, literal),
            Value::String(text) => compare_numeric_text(text, op, literal).unwrap_or(false),
            _ => false,
        },
        FieldType::Bool => {
            let field = match value {
                Value::Bool(b) => Some(*b),
                Value::String(text) => text.to_ascii_lowercase().parse().ok(),
                _ => None,
            };
            field
                .zip(literal.boolean)
                .is_some_and(|(a, b)| holds(op, Some(a.cmp(&b))))
        }
    }
}

fn compare_dynamic(value: &Value, op: Op, literal: &Literal) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(field) => literal
            .boolean
            .is_some_and(|b| holds(op, Some(field.cmp(&b)))),
        Value::Number(_) => compare_number(value, op, literal),
        Value::String(text) => {
            if op == Op::Has {
                return literal.is_substring_of(text);
            }
            if literal.decimal {
                if let Some(result) = compare_numeric_text(text, op, literal) {
                    return result;
                }
            }
            if let Some(instant) = literal.timestamp {
                if let Some(field) = parse_timestamp(text) {
                    return holds(op, Some(field.cmp(&instant)));
                }
            }
            if let Some(length) = literal.duration {
                if let Some(field) = parse_duration(text) {
                    return holds(op, Some(field.cmp(&length)));
                }
            }
            compare_text(text, op, literal)
        }
        // `labels:env` reads as "the map has the key env".
        Value::Object(map) => op == Op::Has && map.contains_key(&*literal.text),
        Value::Array(_) => false,
    }
}

/// Compares text case-insensitively (`:` is a substring test).
pub(crate) fn compare_text(text: &str, op: Op, literal: &Literal) -> bool {
    match op {
        Op::Has => literal.is_substring_of(text),
        Op::Eq => literal.eq_text(text),
        Op::Ne => !literal.eq_text(text),
        Op::Regex | Op::NotRegex => literal
            .regex
            .as_ref()
            .is_some_and(|regex| regex.is_match(text) == (op == Op::Regex)),
        _ => holds(op, Some(literal.cmp_text(text))),
    }
}

fn compare_number(value: &Value, op: Op, literal: &Literal) -> bool {
    let Value::Number(number) = value else {
        return false;
    };
    if let (Some(field), Some(wanted)) = (number.as_i64(), literal.integer) {
        return holds(op, Some(field.cmp(&wanted)));
    }
    match (number.as_f64(), literal.number) {
        (Some(field), Some(wanted)) => holds(op, field.partial_cmp(&wanted)),
        _ => false,
    }
}

/// Compares a string holding a decimal (an int64 in proto JSON, say) numerically; `None` when
/// the string is not a decimal.
fn compare_numeric_text(text: &str, op: Op, literal: &Literal) -> Option<bool> {
    if let (Some(field), Some(wanted)) = (parse_integer(text), literal.integer) {
        return Some(holds(op, Some(field.cmp(&wanted))));
    }
    let field = parse_decimal(text)?;
    let wanted = literal.number?;
    Some(holds(op, field.partial_cmp(&wanted)))
}
