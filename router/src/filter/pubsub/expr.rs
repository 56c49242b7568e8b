//! The syntax tree of a subscription filter, its canonical text and its evaluation.

use std::fmt::{self, Write as _};

use super::lexer::is_bare_key;
use super::Attributes;

/// A parsed subscription filter expression.
///
/// Keys and values hold the decoded text, after escape sequences are processed. The parser
/// keeps the grouping that the filter text spells out: `(a AND b) AND c` becomes an `And`
/// inside an `And`, while `a AND b AND c` becomes one `And` of three operands. Parentheses
/// around a single condition leave no trace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `attributes:KEY`: the message has the attribute `key`, with any value.
    HasKey {
        /// Attribute key, compared exactly.
        key: String,
    },
    /// `attributes.KEY = "VALUE"`: the attribute is present and equal to `value`.
    Equals {
        /// Attribute key, compared exactly.
        key: String,
        /// Expected value, compared exactly.
        value: String,
    },
    /// `attributes.KEY != "VALUE"`: the attribute is missing or differs from `value`.
    NotEquals {
        /// Attribute key, compared exactly.
        key: String,
        /// Value that the attribute must not have.
        value: String,
    },
    /// `hasPrefix(attributes.KEY, "PREFIX")`: the attribute is present and starts with `prefix`.
    HasPrefix {
        /// Attribute key, compared exactly.
        key: String,
        /// Required prefix of the value, compared exactly, byte for byte.
        prefix: String,
    },
    /// `NOT x` or `-x`: true when the operand is false, including when its key is missing.
    Not(Box<Expr>),
    /// `a AND b AND …`. The parser always builds at least two operands. An empty `And` is
    /// true, but its text `()` does not parse.
    And(Vec<Expr>),
    /// `a OR b OR …`. The parser always builds at least two operands. An empty `Or` is
    /// false, but its text `()` does not parse.
    Or(Vec<Expr>),
}

impl Expr {
    /// Evaluates the expression against the attributes of one message.
    ///
    /// Evaluation only looks keys up and compares borrowed strings, so it allocates nothing
    /// unless the [`Attributes`] implementation does.
    pub fn matches<A: Attributes + ?Sized>(&self, attributes: &A) -> bool {
        match self {
            Expr::HasKey { key } => attributes.attribute(key).is_some(),
            Expr::Equals { key, value } => attributes.attribute(key) == Some(value.as_str()),
            Expr::NotEquals { key, value } => attributes.attribute(key) != Some(value.as_str()),
            Expr::HasPrefix { key, prefix } => attributes
                .attribute(key)
                .is_some_and(|actual| actual.starts_with(prefix.as_str())),
            Expr::Not(operand) => !operand.matches(attributes),
            Expr::And(operands) => operands.iter().all(|operand| operand.matches(attributes)),
            Expr::Or(operands) => operands.iter().any(|operand| operand.matches(attributes)),
        }
    }
}

/// Writes the canonical form: every `AND` and `OR` group in parentheses, `NOT` for negation,
/// one space around binary operators, and keys quoted only when they must be.
///
/// Parsing the canonical form gives back an equal tree, provided it fits in the 256-byte
/// limit. The canonical form can be longer than the text it was parsed from, because it adds
/// parentheses, spaces and escapes.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::HasKey { key } => {
                f.write_str("attributes:")?;
                write_key(f, key)
            }
            Expr::Equals { key, value } => write_comparison(f, key, " = ", value),
            Expr::NotEquals { key, value } => write_comparison(f, key, " != ", value),
            Expr::HasPrefix { key, prefix } => {
                f.write_str("hasPrefix(attributes.")?;
                write_key(f, key)?;
                f.write_str(", ")?;
                write_string_literal(f, prefix)?;
                f.write_char(')')
            }
            // `NOT NOT x` does not parse, so a nested negation gets parentheses.
            Expr::Not(operand) => match **operand {
                Expr::Not(_) => write!(f, "NOT ({operand})"),
                _ => write!(f, "NOT {operand}"),
            },
            Expr::And(operands) => write_group(f, operands, " AND "),
            Expr::Or(operands) => write_group(f, operands, " OR "),
        }
    }
}

fn write_comparison(
    f: &mut fmt::Formatter<'_>,
    key: &str,
    operator: &str,
    value: &str,
) -> fmt::Result {
    f.write_str("attributes.")?;
    write_key(f, key)?;
    f.write_str(operator)?;
    write_string_literal(f, value)
}

fn write_group(f: &mut fmt::Formatter<'_>, operands: &[Expr], operator: &str) -> fmt::Result {
    f.write_char('(')?;
    for (index, operand) in operands.iter().enumerate() {
        if index > 0 {
            f.write_str(operator)?;
        }
        write!(f, "{operand}")?;
    }
    f.write_char(')')
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if is_bare_key(key) {
        f.write_str(key)
    } else {
        write_string_literal(f, key)
    }
}

/// Writes `value` in double quotes, escaping quotes, backslashes and control characters.
fn write_string_literal(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in value.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_ascii_control() => write!(f, "\\x{:02X}", u32::from(c))?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
