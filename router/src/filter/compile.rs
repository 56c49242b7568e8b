//! Compilation of a parsed query into an evaluation tree: fields resolved against the
//! LogEntry schema, values converted to the field's type, regular expressions built, and
//! value lists expanded into one comparison per value.
//!
//! Everything that can be decided without an entry is decided here, so that a filter that
//! cannot be valid fails when it is loaded rather than silently matching nothing.

use super::ast::{
    Comparable, Expr, FieldPath, Op, Query, Restriction, Rhs, Span, Value, ValueExpr,
};
use super::error::FilterError;
use super::fields::{resolve, Field, FieldKind, FieldType};
use super::functions::{compile_operand_call, compile_predicate, Operand, Predicate};
use super::literal::Literal;

/// A node of the evaluation tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// The empty filter.
    All,
    And(Box<[Node]>),
    Or(Box<[Node]>),
    Not(Box<Node>),
    Compare(Box<Comparison>),
    /// `field:*`.
    Present(Box<Field>),
    /// A global restriction: the value as a substring of any string in the entry.
    Search(Box<Literal>),
    /// A function used as a condition.
    Call(Box<Predicate>, Box<str>),
}

/// One comparison of a field or function result with one value.
#[derive(Debug, Clone)]
pub(crate) struct Comparison {
    pub(crate) operand: Operand,
    pub(crate) op: Op,
    pub(crate) literal: Literal,
    /// The comparison as a user would write it, for explain output.
    pub(crate) label: Box<str>,
}

/// A non-fatal remark about a filter that parses but probably does not mean what its author
/// intended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Byte offset of the remark in the filter text.
    pub offset: usize,
    /// What looks wrong and how to write it instead.
    pub message: String,
}

pub(crate) struct Compiler<'a> {
    pub(crate) text: &'a str,
    pub(crate) warnings: Vec<Warning>,
}

/// Compiles a parsed query. `text` is the filter it was parsed from, for error positions.
pub(crate) fn compile(query: &Query, text: &str) -> Result<(Node, Vec<Warning>), FilterError> {
    let mut compiler = Compiler {
        text,
        warnings: Vec::new(),
    };
    let node = match &query.expr {
        Some(expr) => compiler.expr(expr)?,
        None => Node::All,
    };
    Ok((node, compiler.warnings))
}

impl Compiler<'_> {
    pub(crate) fn error(&self, span: Span, message: impl Into<String>) -> FilterError {
        let end = span.end.min(self.text.len()).max(span.start);
        let found = self.text.get(span.start..end).unwrap_or("");
        FilterError::at(self.text, span.start, found, message)
    }

    fn expr(&mut self, expr: &Expr) -> Result<Node, FilterError> {
        Ok(match expr {
            Expr::And(items) => Node::And(self.all(items)?),
            Expr::Or(items) => {
                self.lint_or(items);
                Node::Or(self.all(items)?)
            }
            Expr::Not(inner) => Node::Not(Box::new(self.expr(inner)?)),
            Expr::Restriction(restriction) => self.restriction(restriction)?,
            Expr::Global(value) => {
                self.lint_search_term(value);
                Node::Search(Box::new(Literal::new(&value.text, !value.quoted)))
            }
            Expr::Call(call) => {
                let predicate = compile_predicate(self, call)?;
                Node::Call(Box::new(predicate), call.to_string().into())
            }
        })
    }

    fn all(&mut self, items: &[Expr]) -> Result<Box<[Node]>, FilterError> {
        items.iter().map(|item| self.expr(item)).collect()
    }

    /// Warns about `field = "a" OR "b"`, where "b" searches every field instead of `field`.
    fn lint_or(&mut self, items: &[Expr]) {
        let has_comparison = items
            .iter()
            .any(|item| matches!(item, Expr::Restriction(_)));
        for item in items {
            if let (true, Expr::Global(value)) = (has_comparison, item) {
                self.warnings.push(Warning {
                    offset: value.span.start,
                    message: format!(
                        "{value} is a search across all fields, not a second value of the \
                         comparison before OR; to compare one field with several values, write \
                         field = (\"a\" OR \"b\")"
                    ),
                });
            }
        }
    }

    /// Warns about search terms that are almost certainly a mistyped keyword.
    fn lint_search_term(&mut self, value: &Value) {
        let keyword = value.text.to_ascii_uppercase();
        if !value.quoted && matches!(keyword.as_str(), "AND" | "OR" | "NOT") {
            self.warnings.push(Warning {
                offset: value.span.start,
                message: format!(
                    "{} is a search for the word {:?}, because AND, OR and NOT are keywords \
                     only in upper case; write {keyword} to combine conditions",
                    value.text, value.text
                ),
            });
        }
    }

    /// Warns about a bare value in single quotes, which the language reads literally.
    fn lint_single_quotes(&mut self, value: &Value) {
        if !value.quoted
            && value.text.len() >= 2
            && value.text.starts_with('\'')
            && value.text.ends_with('\'')
        {
            self.warnings.push(Warning {
                offset: value.span.start,
                message: format!(
                    "{} includes its single quotes, which are part of the value here; strings \
                     are quoted with double quotes, as in \"{}\"",
                    value.text,
                    &value.text[1..value.text.len() - 1]
                ),
            });
        }
    }

    fn restriction(&mut self, restriction: &Restriction) -> Result<Node, FilterError> {
        if let Rhs::Value(value) = &restriction.rhs {
            self.lint_single_quotes(value);
        }
        let operand = match &restriction.lhs {
            Comparable::Field(path) => Operand::Field(self.field(path)?),
            Comparable::Call(call) => compile_operand_call(self, call)?,
        };
        match &restriction.rhs {
            Rhs::Any => match operand {
                Operand::Field(field) => Ok(Node::Present(Box::new(field))),
                _ => Err(self.error(
                    restriction.span,
                    "':*' tests whether a field is present; it does not apply to a function",
                )),
            },
            Rhs::Value(value) => self.comparison(&operand, restriction, value),
            Rhs::List(list) => self.value_list(&operand, restriction, list),
        }
    }

    pub(crate) fn field(&self, path: &FieldPath) -> Result<Field, FilterError> {
        resolve(path, self.text)
    }

    fn value_list(
        &mut self,
        operand: &Operand,
        restriction: &Restriction,
        list: &ValueExpr,
    ) -> Result<Node, FilterError> {
        Ok(match list {
            ValueExpr::And(items) => Node::And(
                items
                    .iter()
                    .map(|item| self.value_list(operand, restriction, item))
                    .collect::<Result<_, _>>()?,
            ),
            ValueExpr::Or(items) => Node::Or(
                items
                    .iter()
                    .map(|item| self.value_list(operand, restriction, item))
                    .collect::<Result<_, _>>()?,
            ),
            ValueExpr::Not(inner) => {
                Node::Not(Box::new(self.value_list(operand, restriction, inner)?))
            }
            ValueExpr::Value(value) => self.comparison(operand, restriction, value)?,
        })
    }

    fn comparison(
        &mut self,
        operand: &Operand,
        restriction: &Restriction,
        value: &Value,
    ) -> Result<Node, FilterError> {
        let op = restriction.op;
        let mut literal = Literal::new(&value.text, !value.quoted);
        if op.is_regex() {
            let regex = regex::Regex::new(&value.text).map_err(|err| {
                self.error(
                    value.span,
                    format!(
                        "invalid regular expression: {}",
                        first_line(&err.to_string())
                    ),
                )
            })?;
            literal.regex = Some(regex);
        }
        self.check_types(operand, op, &literal, value.span)?;
        let label = format!("{}{}{value}", restriction.lhs, op.as_str()).into();
        Ok(Node::Compare(Box::new(Comparison {
            operand: operand.clone(),
            op,
            literal,
            label,
        })))
    }

    /// Rejects comparisons whose value can never convert to the field's known type.
    fn check_types(
        &self,
        operand: &Operand,
        op: Op,
        literal: &Literal,
        span: Span,
    ) -> Result<(), FilterError> {
        let (field_name, ty) = match operand {
            Operand::Field(field) => match field.kind {
                FieldKind::Message => {
                    return Err(self.error(
                        span,
                        format!(
                            "{} is a message, not a value; compare one of its fields, or test \
                             presence with {}:*",
                            field.display, field.display
                        ),
                    ))
                }
                FieldKind::Dynamic => return Ok(()),
                FieldKind::Defaulted(ty) => (field.display.to_string(), ty),
            },
            other => match other.result_type() {
                Some(ty) => (other.describe(), ty),
                None => return Ok(()),
            },
        };
        if literal.null {
            return Ok(());
        }
        if op.is_regex() {
            if matches!(ty, FieldType::Integer | FieldType::Bool) {
                return Err(self.error(
                    span,
                    format!(
                        "{} applies to strings, but {field_name} is {} {}; use \
                         cast({field_name}, STRING) {} \"...\"",
                        op.as_str(),
                        article(ty.name()),
                        ty.name(),
                        op.as_str()
                    ),
                ));
            }
            return Ok(());
        }
        let text_substring =
            op == Op::Has && matches!(ty, FieldType::Timestamp | FieldType::Duration);
        let converts = match ty {
            FieldType::String => true,
            _ if text_substring => true,
            FieldType::Timestamp => literal.timestamp.is_some(),
            FieldType::Severity => literal.severity.is_some(),
            FieldType::Duration => literal.duration.is_some(),
            FieldType::Integer => literal.number.is_some(),
            FieldType::Bool => literal.boolean.is_some(),
        };
        if converts {
            return Ok(());
        }
        let hint = match ty {
            FieldType::Timestamp => "an RFC 3339 timestamp such as \"2024-01-31T12:00:00Z\" or a date such as \"2024-01-31\"",
            FieldType::Severity => "a severity name (DEFAULT, DEBUG, INFO, NOTICE, WARNING, ERROR, CRITICAL, ALERT, EMERGENCY) or a number",
            FieldType::Duration => "a duration such as \"1.5s\" or \"250ms\"",
            FieldType::Integer => "a number",
            FieldType::Bool => "true or false",
            FieldType::String => "a string",
        };
        Err(self.error(
            span,
            format!(
                "{field_name} is {} {} field and {:?} is not a valid value for it; use {hint}",
                article(ty.name()),
                ty.name(),
                &*literal.text
            ),
        ))
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_owned()
}
