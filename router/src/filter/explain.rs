//! Explanations: why an entry did or did not match, clause by clause, with the values each
//! clause looked at.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::compile::{Comparison, Node};
use super::eval::{any_value, compare, eval, for_each_string};
use super::fields::{Field, FieldKind};

/// How many field values one clause lists before it stops.
const MAX_VALUES: usize = 8;
/// How many characters of one value are shown.
const MAX_VALUE_CHARS: usize = 120;

/// The result of evaluating a filter on one entry, with the clause tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Whether the entry matches the whole filter.
    pub matched: bool,
    /// The clause tree. Every clause is evaluated, even where AND or OR would stop early.
    pub root: ExplainNode,
}

/// One clause of a filter and its result on an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExplainNode {
    /// `AND`, `OR`, `NOT`, or the clause as written, such as `severity>=ERROR`.
    pub clause: String,
    /// The clause's result.
    pub result: bool,
    /// The values the clause looked at, as JSON, or a note saying the field is absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The operands of AND, OR and NOT.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ExplainNode>,
}

pub(crate) fn explain(root: &Node, text: &str, entry: &Value) -> Explanation {
    let root = match root {
        Node::All => ExplainNode {
            clause: if text.trim().is_empty() {
                "(empty filter)".to_owned()
            } else {
                "(only comments)".to_owned()
            },
            result: true,
            values: Vec::new(),
            children: Vec::new(),
        },
        node => explain_node(node, entry),
    };
    Explanation {
        matched: root.result,
        root,
    }
}

fn explain_node(node: &Node, entry: &Value) -> ExplainNode {
    let group = |clause: &str, children: Vec<ExplainNode>, result: bool| ExplainNode {
        clause: clause.to_owned(),
        result,
        values: Vec::new(),
        children,
    };
    match node {
        Node::All => group("(empty filter)", Vec::new(), true),
        Node::And(items) => {
            let children: Vec<_> = items.iter().map(|item| explain_node(item, entry)).collect();
            let result = children.iter().all(|child| child.result);
            group("AND", children, result)
        }
        Node::Or(items) => {
            let children: Vec<_> = items.iter().map(|item| explain_node(item, entry)).collect();
            let result = children.iter().any(|child| child.result);
            group("OR", children, result)
        }
        Node::Not(inner) => {
            let child = explain_node(inner, entry);
            let result = !child.result;
            group("NOT", vec![child], result)
        }
        Node::Compare(comparison) => ExplainNode {
            clause: comparison.label.to_string(),
            result: compare(comparison, entry),
            values: comparison_values(comparison, entry),
            children: Vec::new(),
        },
        Node::Present(field) => ExplainNode {
            clause: format!("{}:*", field.display),
            result: eval(node, entry),
            values: field_values(field, entry),
            children: Vec::new(),
        },
        Node::Search(literal) => {
            let mut found = None;
            for_each_string(entry, &mut |text| {
                let hit = literal.is_substring_of(text);
                if hit {
                    found = Some(render(&Value::String(text.to_owned())));
                }
                hit
            });
            let result = found.is_some();
            let values = vec![found.map_or_else(
                || "no string field contains it".to_owned(),
                |text| format!("found in {text}"),
            )];
            ExplainNode {
                clause: format!("{:?}", &*literal.text),
                result,
                values,
                children: Vec::new(),
            }
        }
        Node::Call(predicate, label) => ExplainNode {
            clause: label.to_string(),
            result: predicate.eval(entry),
            values: Vec::new(),
            children: Vec::new(),
        },
    }
}

fn comparison_values(comparison: &Comparison, entry: &Value) -> Vec<String> {
    field_values(comparison.operand.field(), entry)
}

fn field_values(field: &Field, entry: &Value) -> Vec<String> {
    let mut values = Vec::new();
    let mut seen = false;
    let mut count = 0usize;
    any_value(
        entry,
        &field.keys,
        &mut |value| {
            count += 1;
            if values.len() < MAX_VALUES {
                values.push(render(value));
            }
            false
        },
        &mut seen,
    );
    if count > MAX_VALUES {
        values.push(format!("... and {} more", count - MAX_VALUES));
    }
    if !seen {
        values.push(match field.kind {
            FieldKind::Defaulted(ty) => format!(
                "{} is absent, so it compares as its default {}",
                field.display,
                render(super::eval::default_value(ty))
            ),
            _ => format!(
                "{} is missing, so every comparison on it is false",
                field.display
            ),
        });
    }
    values
}

fn render(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut}...")
}

impl fmt::Display for Explanation {
    /// Prints the tree, one clause per line, indented under its parent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", if self.matched { "MATCH" } else { "NO MATCH" })?;
        write_node(f, &self.root, 1)
    }
}

fn write_node(f: &mut fmt::Formatter<'_>, node: &ExplainNode, depth: usize) -> fmt::Result {
    let indent = "  ".repeat(depth);
    let mark = if node.result { "true " } else { "false" };
    writeln!(f, "{indent}{mark} {}", node.clause)?;
    for value in &node.values {
        writeln!(f, "{indent}        looked at: {value}")?;
    }
    for child in &node.children {
        write_node(f, child, depth + 1)?;
    }
    Ok(())
}
