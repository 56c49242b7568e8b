//! Recursive-descent parser for the Pub/Sub filter dialect.
//!
//! Grammar, with `NOT` binding tightest and no precedence between `AND` and `OR`:
//!
//! ```text
//! filter     = [ expression ] END
//! expression = term { "AND" term } | term { "OR" term }
//! term       = [ "NOT" | "-" ] primary
//! primary    = "(" expression ")"
//!            | "attributes" ":" key
//!            | "attributes" "." key ( "=" | "!=" ) STRING
//!            | "hasPrefix" "(" "attributes" "." key "," STRING ")"
//! key        = WORD | STRING
//! ```
//!
//! White space follows the AIP-160 filtering grammar: `AND` and `OR` need white space on
//! both sides and `NOT` after it, while none may stand after `-`, around the `.` of
//! `attributes.KEY`, or between `hasPrefix` and `(`. Elsewhere ASCII white space between
//! tokens is optional.

use super::expr::Expr;
use super::lexer::{Lexer, Token, TokenKind};
use super::messages;
use super::MAX_NESTING;
use crate::filter::error::FilterError;

/// Parses `text`, returning `None` for a filter that is empty or only white space.
///
/// The caller checks the length limit first.
pub(crate) fn parse(text: &str) -> Result<Option<Expr>, FilterError> {
    let mut parser = Parser {
        text,
        lexer: Lexer::new(text),
        peeked: None,
        depth: 0,
    };
    if parser.peek()?.kind == TokenKind::End {
        return Ok(None);
    }
    let expression = parser.expression()?;
    let token = parser.next()?;
    match token.kind {
        TokenKind::End => Ok(Some(expression)),
        TokenKind::RightParen => {
            Err(parser.error(&token, "unmatched ); remove it or add the ( that it closes"))
        }
        _ => Err(messages::unexpected_after_condition(text, &token, false)),
    }
}

/// Whether a chain of conditions is joined by `AND` or by `OR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Junction {
    And,
    Or,
}

#[derive(Debug)]
struct Parser<'a> {
    text: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Token>,
    /// Open parentheses and negations around the current position, bounded by [`MAX_NESTING`]
    /// so that recursion depth stays small.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Token, FilterError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self
            .peeked
            .as_ref()
            .expect("the token was stored just above"))
    }

    fn next(&mut self) -> Result<Token, FilterError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn error(&self, token: &Token, message: impl Into<String>) -> FilterError {
        messages::token_error(self.text, token, message)
    }

    fn describe(&self, token: &Token) -> String {
        messages::describe(self.text, token)
    }

    fn enter(&mut self, token: &Token) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(
                token,
                format!(
                    "parentheses and negations are nested more than {MAX_NESTING} levels deep; \
                     simplify the filter"
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn expression(&mut self) -> Result<Expr, FilterError> {
        let mut operands = vec![self.term()?];
        let mut junction = None;
        while let Some(next) = self.junction_ahead()? {
            let operator = self.next()?;
            let before = self.text[..operator.start].bytes().next_back();
            let after = self.text[operator.end..].bytes().next();
            if !before.is_some_and(|b| b.is_ascii_whitespace())
                || !after.is_none_or(|b| b.is_ascii_whitespace())
            {
                let word = operator.text(self.text);
                let message = format!("put a space on each side of {word}");
                return Err(self.error(&operator, message));
            }
            match junction {
                None => junction = Some(next),
                Some(current) if current != next => {
                    return Err(self.error(
                        &operator,
                        "AND and OR cannot be mixed without parentheses; add parentheses to \
                         show which applies first, as in (a AND b) OR c",
                    ))
                }
                Some(_) => {}
            }
            operands.push(self.term()?);
        }
        Ok(match junction {
            None => operands.pop().expect("operands starts with one term"),
            Some(Junction::And) => Expr::And(operands),
            Some(Junction::Or) => Expr::Or(operands),
        })
    }

    /// Returns the junction that the next token spells, without consuming it.
    fn junction_ahead(&mut self) -> Result<Option<Junction>, FilterError> {
        let text = self.text;
        let token = self.peek()?;
        if token.kind != TokenKind::Word {
            return Ok(None);
        }
        let word = token.text(text);
        let junction = match word {
            "AND" => Junction::And,
            "OR" => Junction::Or,
            _ if word.eq_ignore_ascii_case("AND") || word.eq_ignore_ascii_case("OR") => {
                let upper = word.to_ascii_uppercase();
                let token = token.clone();
                return Err(self.error(
                    &token,
                    format!("operators must be upper case; write {upper} in place of {word}"),
                ));
            }
            _ => return Ok(None),
        };
        Ok(Some(junction))
    }

    fn term(&mut self) -> Result<Expr, FilterError> {
        let text = self.text;
        let token = self.peek()?.clone();
        let is_negation =
            |token: &Token| token.kind == TokenKind::Minus || token.is_word(text, "NOT");
        if is_negation(&token) {
            self.next()?;
            let following = self.peek()?.clone();
            if is_negation(&following) {
                return Err(self.error(
                    &following,
                    "a negation cannot directly follow NOT or -; remove both, or write \
                     NOT (NOT x) if a double negation is intended",
                ));
            }
            let adjacent = following.start == token.end;
            if following.kind != TokenKind::End {
                if token.kind == TokenKind::Minus && !adjacent {
                    return Err(self.error(
                        &token,
                        "remove the space after -, or write NOT followed by a space",
                    ));
                }
                if token.kind == TokenKind::Word && adjacent {
                    return Err(self.error(&token, "put a space after NOT, as in NOT (x)"));
                }
            }
            self.enter(&token)?;
            let operand = self.primary()?;
            self.leave();
            return Ok(Expr::Not(Box::new(operand)));
        }
        if token.kind == TokenKind::Word && token.text(text).eq_ignore_ascii_case("NOT") {
            let word = token.text(text);
            return Err(self.error(
                &token,
                format!("operators must be upper case; write NOT in place of {word}"),
            ));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let token = self.next()?;
        match &token.kind {
            TokenKind::LeftParen => {
                self.enter(&token)?;
                let expression = self.expression()?;
                let close = self.next()?;
                if close.kind != TokenKind::RightParen {
                    return Err(messages::unclosed_parenthesis(self.text, &token, &close));
                }
                self.leave();
                Ok(expression)
            }
            TokenKind::Word if token.is_word(self.text, "attributes") => {
                self.attribute_condition(&token)
            }
            TokenKind::Word if token.is_word(self.text, "hasPrefix") => self.has_prefix(&token),
            TokenKind::Word => {
                let followed_by_paren =
                    matches!(self.peek(), Ok(next) if next.kind == TokenKind::LeftParen);
                Err(messages::unknown_word(self.text, &token, followed_by_paren))
            }
            TokenKind::Str(_) => Err(self.error(
                &token,
                "a string literal cannot stand alone or come first; compare an attribute \
                 with it, as in attributes.KEY = \"value\"",
            )),
            TokenKind::Unsupported => Err(messages::unsupported_operator(self.text, &token)),
            _ => {
                let found = self.describe(&token);
                Err(self.error(
                    &token,
                    format!(
                        "expected a condition such as attributes:KEY, attributes.KEY = \"value\" \
                         or hasPrefix(attributes.KEY, \"prefix\"), found {found}"
                    ),
                ))
            }
        }
    }

    /// Parses what follows `attributes`: `:KEY`, or `.KEY` with `=` or `!=` and a value.
    fn attribute_condition(&mut self, attributes: &Token) -> Result<Expr, FilterError> {
        let separator = self.next()?;
        match separator.kind {
            TokenKind::Colon => Ok(Expr::HasKey {
                key: self.key(&separator)?,
            }),
            TokenKind::Dot => {
                let key = self.dotted_key(attributes, &separator)?;
                let operator = self.next()?;
                let equals = match operator.kind {
                    TokenKind::Equals => true,
                    TokenKind::NotEquals => false,
                    _ => return Err(messages::expected_comparison(self.text, &operator)),
                };
                let place = format!("after {}", self.describe(&operator));
                let value = self.value(&place)?;
                Ok(if equals {
                    Expr::Equals { key, value }
                } else {
                    Expr::NotEquals { key, value }
                })
            }
            _ => {
                let found = self.describe(&separator);
                Err(self.error(
                    &separator,
                    format!(
                        "expected . or : after attributes, found {found}; write \
                         attributes.KEY = \"value\" or attributes:KEY"
                    ),
                ))
            }
        }
    }

    /// Parses the key of `attributes.KEY`, with no space on either side of the dot.
    fn dotted_key(&mut self, attributes: &Token, dot: &Token) -> Result<String, FilterError> {
        if dot.start != attributes.end {
            return Err(self.error(dot, "remove the space before the . in attributes.KEY"));
        }
        let key_token = self.peek()?.clone();
        if key_token.start != dot.end && key_token.kind != TokenKind::End {
            return Err(self.error(&key_token, "remove the space after the . in attributes.KEY"));
        }
        self.key(dot)
    }

    /// Parses a key, bare or quoted, after `separator` (`.` or `:`).
    fn key(&mut self, separator: &Token) -> Result<String, FilterError> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Word => Ok(token.text(self.text).to_owned()),
            TokenKind::Str(key) => Ok(key),
            _ => {
                let separator = self.describe(separator);
                let found = self.describe(&token);
                let hint = if token.kind == TokenKind::Minus {
                    "; put a key that starts with - in double quotes, as in attributes:\"-key\""
                } else {
                    ""
                };
                Err(self.error(
                    &token,
                    format!("expected an attribute key after {separator}, found {found}{hint}"),
                ))
            }
        }
    }

    /// Parses a string literal value. `place` describes where the value is expected, such
    /// as "after `=`", for error messages.
    fn value(&mut self, place: &str) -> Result<String, FilterError> {
        let token = self.next()?;
        match token.kind {
            TokenKind::Str(value) => Ok(value),
            TokenKind::Word if token.is_word(self.text, "attributes") => Err(self.error(
                &token,
                format!(
                    "expected a string literal {place}; comparing an attribute with another \
                     attribute is not supported"
                ),
            )),
            TokenKind::Word => {
                let word = token.text(self.text);
                Err(self.error(
                    &token,
                    format!(
                        "expected a string literal {place}, found `{word}`; values must be in \
                         double quotes, as in \"{word}\""
                    ),
                ))
            }
            _ => {
                let found = self.describe(&token);
                Err(self.error(
                    &token,
                    format!("expected a string literal {place}, found {found}"),
                ))
            }
        }
    }

    /// Parses `(attributes.KEY, "PREFIX")` after the word `hasPrefix`.
    fn has_prefix(&mut self, name: &Token) -> Result<Expr, FilterError> {
        const USAGE: &str = "write hasPrefix(attributes.KEY, \"prefix\")";
        let open = self.next()?;
        if open.kind == TokenKind::LeftParen && open.start != name.end {
            return Err(self.error(&open, "remove the space between hasPrefix and ("));
        }
        if open.kind != TokenKind::LeftParen {
            let found = self.describe(&open);
            return Err(self.error(
                &open,
                format!("expected ( after hasPrefix, found {found}; {USAGE}"),
            ));
        }

        let attributes = self.next()?;
        if !attributes.is_word(self.text, "attributes") {
            let found = self.describe(&attributes);
            let message = format!(
                "the first argument of hasPrefix must be attributes.KEY, found {found}; {USAGE}"
            );
            return Err(self.error(&attributes, message));
        }

        let dot = self.next()?;
        if dot.kind != TokenKind::Dot {
            let found = self.describe(&dot);
            let message = format!(
                "expected . after attributes in the first argument of hasPrefix, found {found}; \
                 {USAGE}"
            );
            return Err(self.error(&dot, message));
        }

        let key = self.dotted_key(&attributes, &dot)?;
        let comma = self.next()?;
        if comma.kind != TokenKind::Comma {
            let found = self.describe(&comma);
            let message = format!("expected , and a prefix after the key, found {found}; {USAGE}");
            return Err(self.error(&comma, message));
        }

        let prefix = self.value("as the prefix of hasPrefix")?;
        let close = self.next()?;
        if close.kind != TokenKind::RightParen {
            let found = self.describe(&close);
            let message = format!(
                "expected ) after the prefix, found {found}; hasPrefix takes exactly two arguments"
            );
            return Err(self.error(&close, message));
        }

        Ok(Expr::HasPrefix { key, prefix })
    }
}
