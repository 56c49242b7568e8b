//! Recursive-descent parser for the Logging query language.
//!
//! The grammar is AIP-160's with Cloud Logging's additions (`=~`, `!~`, comments, value lists):
//!
//! ```text
//! expression  = sequence { "AND" sequence }
//! sequence    = factor { factor }                 (terms side by side are ANDed)
//! factor      = term { "OR" term }                (so OR binds tighter than AND)
//! term        = [ "NOT" | "-" ] simple
//! simple      = "(" expression ")" | restriction
//! restriction = comparable [ operator argument ]  (no operator: a global search term)
//! comparable  = call | segment { "." segment }
//! argument    = "*" | value | "(" value-expression ")"
//! ```

use super::ast::{
    Arg, Call, Comparable, Expr, FieldPath, Op, Query, Restriction, Rhs, Segment, Span, Value,
    ValueExpr,
};
use super::error::FilterError;
use super::lexer::{tokenize, Token, TokenKind};

/// How deeply parentheses and negations may nest. Deeper filters are rejected so that neither
/// the parser nor the evaluator can run out of stack.
pub const MAX_NESTING: usize = 64;

/// Parses filter text into a syntax tree without resolving any field.
///
/// # Errors
///
/// Returns a [`FilterError`] with the line and column of the first syntax error.
pub fn parse(text: &str) -> Result<Query, FilterError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
    };
    let expr = if parser.at_end() {
        None
    } else {
        Some(parser.expression(0)?)
    };
    let next = parser.peek();
    if next.kind != TokenKind::End {
        let message = if next.kind == TokenKind::RParen {
            "unbalanced ')'; remove it or add the matching '('"
        } else {
            "unexpected text after the end of the filter"
        };
        return Err(parser.error_at_token(parser.pos, message));
    }
    Ok(Query { expr })
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn at_end(&self) -> bool {
        self.peek().kind == TokenKind::End
    }

    fn error_at_token(&self, index: usize, message: impl Into<String>) -> FilterError {
        let token = &self.tokens[index.min(self.tokens.len() - 1)];
        FilterError::at(
            self.text,
            token.start,
            &self.text[token.start..token.end],
            message,
        )
    }

    fn describe(&self, index: usize) -> String {
        let token = &self.tokens[index.min(self.tokens.len() - 1)];
        match token.kind {
            TokenKind::End => "the end of the filter".to_owned(),
            _ => format!("'{}'", &self.text[token.start..token.end]),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), FilterError> {
        if depth > MAX_NESTING {
            return Err(self.error_at_token(
                self.pos,
                format!("the filter nests more than {MAX_NESTING} levels deep; simplify it"),
            ));
        }
        Ok(())
    }

    /// Whether the next token ends a sequence: `)`, `AND`, `OR` or the end of input.
    fn ends_sequence(&self) -> bool {
        let token = self.peek();
        matches!(token.kind, TokenKind::End | TokenKind::RParen)
            || token.is_keyword("AND")
            || token.is_keyword("OR")
    }

    fn expression(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut items = Vec::new();
        self.sequence(depth, &mut items)?;
        while self.peek().is_keyword("AND") {
            self.advance();
            self.expect_operand("AND")?;
            self.sequence(depth, &mut items)?;
        }
        Ok(collapse(items, Expr::And))
    }

    fn sequence(&mut self, depth: usize, items: &mut Vec<Expr>) -> Result<(), FilterError> {
        loop {
            let factor = self.factor(depth)?;
            match factor {
                Expr::And(inner) => items.extend(inner),
                other => items.push(other),
            }
            if self.ends_sequence() {
                return Ok(());
            }
        }
    }

    fn factor(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut items = vec![self.term(depth)?];
        while self.peek().is_keyword("OR") {
            self.advance();
            self.expect_operand("OR")?;
            match self.term(depth)? {
                Expr::Or(inner) => items.extend(inner),
                other => items.push(other),
            }
        }
        if items.len() == 1 {
            return Ok(items.pop().unwrap_or(Expr::And(Vec::new())));
        }
        // An operand that is itself an OR (from parentheses) is flattened, because OR is
        // associative; the first operand is checked here as the loop only saw the rest.
        let mut flat = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Expr::Or(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        Ok(Expr::Or(flat))
    }

    fn expect_operand(&self, keyword: &str) -> Result<(), FilterError> {
        let token = self.peek();
        if matches!(token.kind, TokenKind::End | TokenKind::RParen)
            || token.is_keyword("AND")
            || token.is_keyword("OR")
        {
            return Err(self.error_at_token(
                self.pos,
                format!(
                    "expected a condition after {keyword}, found {}",
                    self.describe(self.pos)
                ),
            ));
        }
        Ok(())
    }

    fn term(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let token = self.peek();
        if token.is_keyword("NOT") || token.kind == TokenKind::Minus {
            let keyword = if token.kind == TokenKind::Minus {
                "-"
            } else {
                "NOT"
            };
            self.advance();
            self.check_depth(depth + 1)?;
            self.expect_operand(keyword)?;
            let inner = self.term(depth + 1)?;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.simple(depth)
    }

    fn simple(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.peek().kind == TokenKind::LParen {
            let open = self.pos;
            self.advance();
            self.check_depth(depth + 1)?;
            if self.peek().kind == TokenKind::RParen {
                return Err(
                    self.error_at_token(self.pos, "empty parentheses; put a condition inside")
                );
            }
            let inner = self.expression(depth + 1)?;
            if self.peek().kind != TokenKind::RParen {
                return Err(self.error_at_token(
                    open,
                    format!(
                        "this '(' is never closed; found {} instead of ')'",
                        self.describe(self.pos)
                    ),
                ));
            }
            self.advance();
            return Ok(inner);
        }
        self.restriction(depth)
    }

    fn restriction(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let start = self.peek().start;
        let lhs = self.comparable(depth)?;
        let TokenKind::Op(op) = self.peek().kind else {
            return self.bare(lhs);
        };
        self.advance();
        let rhs = self.argument(op, depth)?;
        let end = self.tokens[self.pos.saturating_sub(1)].end;
        Ok(Expr::Restriction(Restriction {
            lhs,
            op,
            rhs,
            span: Span { start, end },
        }))
    }

    /// Turns a comparable without an operator into a global search term or a function
    /// condition.
    fn bare(&self, lhs: Comparable) -> Result<Expr, FilterError> {
        match lhs {
            Comparable::Call(call) => Ok(Expr::Call(call)),
            Comparable::Field(mut path) if path.segments.len() == 1 => {
                let segment = path.segments.remove(0);
                Ok(Expr::Global(Value {
                    text: segment.name,
                    quoted: segment.quoted,
                    span: path.span,
                }))
            }
            Comparable::Field(path) => Err(FilterError::at(
                self.text,
                path.span.start,
                &self.text[path.span.start..path.span.end],
                format!(
                    "{path} has no operator; compare it (for example {path}:*) or, to search \
                     for this text anywhere, quote it"
                ),
            )),
        }
    }

    fn comparable(&mut self, depth: usize) -> Result<Comparable, FilterError> {
        let first = self.peek().clone();
        match &first.kind {
            TokenKind::Word(word) if word == "AND" || word == "OR" => {
                Err(self.error_at_token(self.pos, format!("expected a condition before {word}")))
            }
            TokenKind::Word(name)
                if self.peek_at(1).kind == TokenKind::LParen && !self.peek_at(1).spaced =>
            {
                let name = name.clone();
                Ok(Comparable::Call(self.call(name, depth + 1)?))
            }
            TokenKind::Word(_) | TokenKind::Quoted(_) => Ok(Comparable::Field(self.path()?)),
            _ => Err(self.error_at_token(
                self.pos,
                format!(
                    "expected a comparison, a search term or '(', found {}",
                    self.describe(self.pos)
                ),
            )),
        }
    }

    fn path(&mut self) -> Result<FieldPath, FilterError> {
        let start = self.peek().start;
        let mut segments = vec![self.segment()?];
        while self.peek().kind == TokenKind::Dot {
            self.advance();
            segments.push(self.segment()?);
        }
        let end = self.tokens[self.pos - 1].end;
        Ok(FieldPath {
            segments,
            span: Span { start, end },
        })
    }

    fn segment(&mut self) -> Result<Segment, FilterError> {
        match self.peek().kind.clone() {
            TokenKind::Word(name) => {
                self.advance();
                Ok(Segment {
                    name,
                    quoted: false,
                })
            }
            TokenKind::Quoted(name) => {
                self.advance();
                Ok(Segment { name, quoted: true })
            }
            _ => Err(self.error_at_token(
                self.pos,
                format!(
                    "expected a field name after '.', found {}",
                    self.describe(self.pos)
                ),
            )),
        }
    }

    fn call(&mut self, name: String, depth: usize) -> Result<Call, FilterError> {
        self.check_depth(depth)?;
        let start = self.peek().start;
        self.advance();
        self.advance();
        let mut args = Vec::new();
        if self.peek().kind != TokenKind::RParen {
            loop {
                args.push(self.call_argument(depth)?);
                match self.peek().kind {
                    TokenKind::Comma => {
                        self.advance();
                    }
                    TokenKind::RParen => break,
                    _ => {
                        return Err(self.error_at_token(
                            self.pos,
                            format!(
                                "expected ',' or ')' in the arguments of {name}, found {}",
                                self.describe(self.pos)
                            ),
                        ))
                    }
                }
            }
        }
        let end = self.advance().end;
        Ok(Call {
            name,
            args,
            span: Span { start, end },
        })
    }

    fn call_argument(&mut self, depth: usize) -> Result<Arg, FilterError> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::Quoted(text) if self.peek_at(1).kind != TokenKind::Dot => {
                self.advance();
                let span = Span {
                    start: token.start,
                    end: token.end,
                };
                Ok(Arg::Value(Value {
                    text: text.clone(),
                    quoted: true,
                    span,
                }))
            }
            TokenKind::Word(name)
                if self.peek_at(1).kind == TokenKind::LParen && !self.peek_at(1).spaced =>
            {
                Ok(Arg::Call(self.call(name.clone(), depth + 1)?))
            }
            TokenKind::Word(_) | TokenKind::Quoted(_) => Ok(Arg::Path(self.path()?)),
            _ => Err(self.error_at_token(
                self.pos,
                format!(
                    "expected a function argument, found {}",
                    self.describe(self.pos)
                ),
            )),
        }
    }

    fn argument(&mut self, op: Op, depth: usize) -> Result<Rhs, FilterError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Star if op == Op::Has => {
                self.advance();
                Ok(Rhs::Any)
            }
            TokenKind::Star => Err(self.error_at_token(
                self.pos,
                format!(
                    "'*' only follows ':' (field:* tests presence), not '{}'",
                    op.as_str()
                ),
            )),
            TokenKind::LParen => {
                let open = self.pos;
                self.advance();
                self.check_depth(depth + 1)?;
                let list = self.value_expression(op, depth + 1)?;
                if self.peek().kind != TokenKind::RParen {
                    return Err(self.error_at_token(
                        open,
                        format!(
                            "this '(' is never closed; found {} instead of ')'",
                            self.describe(self.pos)
                        ),
                    ));
                }
                self.advance();
                Ok(Rhs::List(list))
            }
            _ => Ok(Rhs::Value(self.value(op, true)?)),
        }
    }

    /// Reads one value after `op`. Keywords are plain words directly after an operator
    /// (`severity = AND`) but operators inside a value list.
    fn value(&mut self, op: Op, keywords_are_words: bool) -> Result<Value, FilterError> {
        let token = self.peek().clone();
        let span = Span {
            start: token.start,
            end: token.end,
        };
        let value = match &token.kind {
            TokenKind::Quoted(text) => Value {
                text: text.clone(),
                quoted: true,
                span,
            },
            TokenKind::Word(text) if op.is_regex() => {
                return Err(self.error_at_token(
                    self.pos,
                    format!(
                        "a regular expression must be a double-quoted string, as in \"{text}\""
                    ),
                ));
            }
            TokenKind::Word(text)
                if keywords_are_words || !matches!(text.as_str(), "AND" | "OR" | "NOT") =>
            {
                Value {
                    text: text.clone(),
                    quoted: false,
                    span,
                }
            }
            TokenKind::Minus => {
                return Err(self.error_at_token(
                    self.pos,
                    "a value that starts with '-' must be double-quoted, as in \"-1\"",
                ));
            }
            _ => {
                return Err(self.error_at_token(
                    self.pos,
                    format!(
                        "expected a value after '{}', found {}",
                        op.as_str(),
                        self.describe(self.pos)
                    ),
                ));
            }
        };
        self.advance();
        let next = self.peek();
        let glued = !next.spaced
            && matches!(
                next.kind,
                TokenKind::Op(_) | TokenKind::Dot | TokenKind::Star | TokenKind::LParen
            );
        if glued && !value.quoted {
            let whole_end = self.text[token.start..]
                .find(char::is_whitespace)
                .map_or(self.text.len(), |i| token.start + i);
            let whole = &self.text[token.start..whole_end];
            return Err(self.error_at_token(
                self.pos,
                format!(
                    "a value containing '{}' must be double-quoted, as in \"{whole}\"",
                    &self.text[next.start..next.end]
                ),
            ));
        }
        Ok(value)
    }

    fn value_expression(&mut self, op: Op, depth: usize) -> Result<ValueExpr, FilterError> {
        let mut items = Vec::new();
        loop {
            let factor = self.value_factor(op, depth)?;
            match factor {
                ValueExpr::And(inner) => items.extend(inner),
                other => items.push(other),
            }
            if self.peek().is_keyword("AND") {
                self.advance();
                self.expect_operand("AND")?;
            } else if matches!(self.peek().kind, TokenKind::RParen | TokenKind::End) {
                return Ok(collapse(items, ValueExpr::And));
            }
        }
    }

    fn value_factor(&mut self, op: Op, depth: usize) -> Result<ValueExpr, FilterError> {
        let mut items = Vec::new();
        loop {
            match self.value_term(op, depth)? {
                ValueExpr::Or(inner) => items.extend(inner),
                other => items.push(other),
            }
            if !self.peek().is_keyword("OR") {
                return Ok(collapse(items, ValueExpr::Or));
            }
            self.advance();
            self.expect_operand("OR")?;
        }
    }

    fn value_term(&mut self, op: Op, depth: usize) -> Result<ValueExpr, FilterError> {
        let token = self.peek();
        if token.is_keyword("NOT") || token.kind == TokenKind::Minus {
            self.advance();
            self.check_depth(depth + 1)?;
            let inner = self.value_term(op, depth + 1)?;
            return Ok(ValueExpr::Not(Box::new(inner)));
        }
        if token.kind == TokenKind::LParen {
            let open = self.pos;
            self.advance();
            self.check_depth(depth + 1)?;
            let inner = self.value_expression(op, depth + 1)?;
            if self.peek().kind != TokenKind::RParen {
                return Err(self.error_at_token(open, "this '(' is never closed"));
            }
            self.advance();
            return Ok(inner);
        }
        Ok(ValueExpr::Value(self.value(op, false)?))
    }
}

fn collapse<T>(mut items: Vec<T>, wrap: fn(Vec<T>) -> T) -> T {
    if items.len() == 1 {
        if let Some(only) = items.pop() {
            return only;
        }
    }
    wrap(items)
}
