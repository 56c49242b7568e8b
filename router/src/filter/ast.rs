//! The syntax tree of a Logging query, as parsed and before any field is resolved.
//!
//! The tree keeps what the user wrote (quoting, value lists, function calls) so that it prints
//! back as an equivalent filter and so that `explain` can show each clause as written. Meaning
//! is given to it by [`compile`](super::compile).

use std::fmt;

/// A byte range in the filter text.
///
/// Two spans always compare equal, so that trees parsed from different texts (an original and
/// its reprint) compare by structure alone.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset just past the last byte.
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// A parsed filter. `None` is the empty filter, which matches every entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The top-level expression, if the filter has one.
    pub expr: Option<Expr>,
}

/// A boolean expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// All of the operands, from `AND` or from terms written side by side.
    And(Vec<Expr>),
    /// Any of the operands.
    Or(Vec<Expr>),
    /// The negation, from `NOT` or a leading `-`.
    Not(Box<Expr>),
    /// A comparison such as `severity>=ERROR` or `labels.env:*`.
    Restriction(Restriction),
    /// A bare word or quoted phrase searched for in every field of the entry.
    Global(Value),
    /// A function used as a condition, such as `log_id("syslog")`.
    Call(Call),
}

/// A comparison between a field (or function result) and a right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub struct Restriction {
    /// What is compared.
    pub lhs: Comparable,
    /// The operator.
    pub op: Op,
    /// What it is compared with.
    pub rhs: Rhs,
    /// The whole comparison in the filter text.
    pub span: Span,
}

/// The left-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Comparable {
    /// A field path such as `protoPayload.methodName`.
    Field(FieldPath),
    /// A function whose result is compared, such as `cast(timestamp, STRING)`.
    Call(Call),
}

/// A dotted field path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPath {
    /// The segments, unescaped.
    pub segments: Vec<Segment>,
    /// The path in the filter text.
    pub span: Span,
}

/// One segment of a field path.
///
/// Quoting a segment changes nothing about which field it names, so segments compare by name.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The segment name with escapes and quotes removed.
    pub name: String,
    /// Whether the segment was written in double quotes.
    pub quoted: bool,
}

impl PartialEq for Segment {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `:`, the "has" operator.
    Has,
    /// `=~`, a regular expression match.
    Regex,
    /// `!~`, a regular expression non-match.
    NotRegex,
}

impl Op {
    /// The operator as written in a filter.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Has => ":",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }

    /// Whether the operator takes a regular expression.
    pub fn is_regex(self) -> bool {
        matches!(self, Op::Regex | Op::NotRegex)
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Rhs {
    /// A single value.
    Value(Value),
    /// `*` after `:`, the presence test.
    Any,
    /// A parenthesised expression of values; the field and operator apply to each value.
    List(ValueExpr),
}

/// A boolean expression whose leaves are values, from a parenthesised right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueExpr {
    /// All of the operands.
    And(Vec<ValueExpr>),
    /// Any of the operands.
    Or(Vec<ValueExpr>),
    /// The negation.
    Not(Box<ValueExpr>),
    /// One value.
    Value(Value),
}

/// A literal value: a bare word or a double-quoted string.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The text with quotes removed and escapes processed.
    pub text: String,
    /// Whether the value was written in double quotes.
    pub quoted: bool,
    /// The value in the filter text.
    pub span: Span,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function name as written.
    pub name: String,
    /// The arguments.
    pub args: Vec<Arg>,
    /// The call in the filter text.
    pub span: Span,
}

/// A function argument. Whether a path names a field or is a plain word (`STRING`,
/// `projects/p`, `0.25`) depends on the function, so compilation decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A dotted path or a single word.
    Path(FieldPath),
    /// A double-quoted string.
    Value(Value),
    /// A nested call, such as `TIMEZONE("UTC")`.
    Call(Call),
}

impl FieldPath {
    /// The path as a user writes it: segments joined with dots, quoted where needed.
    pub fn display(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Query {
    /// Prints the filter fully parenthesised. `{:#}` also quotes every value, which gives one
    /// canonical text for filters that differ only in quoting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expr {
            Some(expr) => expr.fmt(f),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parentheses are written only where precedence needs them (an AND inside an OR or
        // a NOT), so that a printed filter nests no deeper than the one it came from.
        match self {
            Expr::And(items) => {
                write_joined(f, items, " AND ", |item| matches!(item, Expr::And(_)))
            }
            Expr::Or(items) => write_joined(f, items, " OR ", Expr::is_group),
            Expr::Not(inner) => write_negated(f, inner.as_ref(), inner.is_group()),
            Expr::Restriction(restriction) => restriction.fmt(f),
            Expr::Global(value) => value.fmt(f),
            Expr::Call(call) => call.fmt(f),
        }
    }
}

impl Expr {
    fn is_group(&self) -> bool {
        matches!(self, Expr::And(_) | Expr::Or(_))
    }
}

impl fmt::Display for ValueExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueExpr::And(items) => {
                write_joined(f, items, " AND ", |item| matches!(item, ValueExpr::And(_)))
            }
            ValueExpr::Or(items) => write_joined(f, items, " OR ", ValueExpr::is_group),
            ValueExpr::Not(inner) => write_negated(f, inner.as_ref(), inner.is_group()),
            ValueExpr::Value(value) => value.fmt(f),
        }
    }
}

impl ValueExpr {
    fn is_group(&self) -> bool {
        matches!(self, ValueExpr::And(_) | ValueExpr::Or(_))
    }
}

fn write_joined<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    separator: &str,
    is_compound: fn(&T) -> bool,
) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        if is_compound(item) {
            f.write_str("(")?;
            item.fmt(f)?;
            f.write_str(")")?;
        } else {
            item.fmt(f)?;
        }
    }
    Ok(())
}

fn write_negated<T: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    inner: &T,
    compound: bool,
) -> fmt::Result {
    if compound {
        f.write_str("NOT (")?;
        inner.fmt(f)?;
        f.write_str(")")
    } else {
        f.write_str("NOT ")?;
        inner.fmt(f)
    }
}

impl fmt::Display for Restriction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lhs.fmt(f)?;
        f.write_str(self.op.as_str())?;
        match &self.rhs {
            Rhs::Value(value) => value.fmt(f),
            Rhs::Any => f.write_str("*"),
            Rhs::List(list) => {
                f.write_str("(")?;
                list.fmt(f)?;
                f.write_str(")")
            }
        }
    }
}

impl fmt::Display for Comparable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Comparable::Field(path) => path.fmt(f),
            Comparable::Call(call) => call.fmt(f),
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_path(f, &self.segments, false)
    }
}

/// Writes path segments, bare where the lexer reads them back as the same words. In a call
/// argument a lone bare word stays a path, so keywords may be bare there.
fn write_path(f: &mut fmt::Formatter<'_>, segments: &[Segment], in_call: bool) -> fmt::Result {
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            f.write_str(".")?;
        }
        let name = segment.name.as_str();
        let keyword_first = i == 0 && !in_call && matches!(name, "AND" | "OR" | "NOT");
        // A number-like word swallows a following `.digits`, so it must be last to be bare.
        let numeric_inside =
            name.starts_with(|c: char| c.is_ascii_digit()) && i + 1 < segments.len();
        if name.is_empty() || keyword_first || numeric_inside {
            write_quoted(f, name)?;
        } else {
            write_bare(f, name)?;
        }
    }
    Ok(())
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted || f.alternate() {
            write_quoted(f, &self.text)
        } else {
            write_bare(f, &self.text)
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_bare(f, &self.name)?;
        f.write_str("(")?;
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match arg {
                Arg::Path(path) => write_path(f, &path.segments, true)?,
                Arg::Value(value) => write_quoted(f, &value.text)?,
                Arg::Call(call) => call.fmt(f)?,
            }
        }
        f.write_str(")")
    }
}

/// Characters that end a bare word. A bare value containing one is written with a backslash.
pub(crate) fn is_special(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '~' | '=' | '(' | ')' | ':' | '>' | '<' | ',' | '.' | '*')
        || matches!(c, '"' | '!' | '\\')
}

fn write_bare(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    // The lexer keeps a dot inside a bare word only between digits of a number-like word
    // (`0.25`, `10.1.2.3`); every other special character is written with a backslash.
    let numeric = text.starts_with(|c: char| c.is_ascii_digit());
    let mut chars = text.chars().peekable();
    let mut first = true;
    while let Some(c) = chars.next() {
        let dot_in_number =
            c == '.' && numeric && chars.peek().is_some_and(|next| next.is_ascii_digit());
        // A leading `-` would read as NOT (or, doubled, as a comment).
        let leading_minus = first && c == '-';
        first = false;
        if (is_special(c) && !dot_in_number) || leading_minus {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{:04X}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}
