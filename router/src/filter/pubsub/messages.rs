//! Error messages of the parser that need more than one line to build.

use super::lexer::{Token, TokenKind};
use crate::filter::error::{FilterError, Position};

pub(super) fn token_error(text: &str, token: &Token, message: impl Into<String>) -> FilterError {
    FilterError::at(text, token.start, token.text(text), message)
}

/// Describes a token for an error message: its text in backquotes, or the end of input.
pub(super) fn describe(text: &str, token: &Token) -> String {
    match token.kind {
        TokenKind::End => "the end of the filter".to_owned(),
        _ => format!("`{}`", token.text(text)),
    }
}

pub(super) fn unclosed_parenthesis(text: &str, open: &Token, found: &Token) -> FilterError {
    if found.kind == TokenKind::End {
        let position = Position::of_offset(text, open.start);
        let message = format!(
            "missing ) to close the ( at line {}, column {}",
            position.line, position.column
        );
        return token_error(text, found, message);
    }
    unexpected_after_condition(text, found, true)
}

/// Builds the error for a token that follows a complete condition but cannot continue it.
pub(super) fn unexpected_after_condition(text: &str, token: &Token, in_group: bool) -> FilterError {
    let found = describe(text, token);
    let expected = if in_group {
        "AND, OR or )"
    } else {
        "AND, OR or the end of the filter"
    };
    let message = match token.kind {
        TokenKind::Equals | TokenKind::NotEquals => format!(
            "expected {expected} after a complete condition, found {found}; \
             attributes:KEY only tests that a key exists, so to compare a value write \
             attributes.KEY = \"value\""
        ),
        TokenKind::Unsupported => return unsupported_operator(text, token),
        TokenKind::Word if token.is_word(text, "NOT") => format!(
            "expected {expected} after a complete condition, found {found}; to negate the \
             next condition, write a AND NOT b"
        ),
        TokenKind::Dot => format!(
            "expected {expected} after a complete condition, found {found}; put a key \
             that contains dots in double quotes, as in attributes:\"a.b\""
        ),
        _ => format!(
            "expected {expected} after a complete condition, found {found}; join \
             conditions with AND or OR"
        ),
    };
    token_error(text, token, message)
}

pub(super) fn unsupported_operator(text: &str, token: &Token) -> FilterError {
    let operator = token.text(text);
    let message = match operator {
        "=~" | "!~" | "~" => format!(
            "regular expressions are not supported ({operator}); use = for an exact match \
             or hasPrefix(attributes.KEY, \"prefix\")"
        ),
        "==" => "use = to compare, not ==".to_owned(),
        "!" => "use NOT or - to negate a condition, or != to compare".to_owned(),
        _ => format!("the operator {operator} is not supported; only =, != and : are"),
    };
    token_error(text, token, message)
}

/// Builds the error for a word that cannot start a condition. `followed_by_paren` is true
/// when `(` comes next, as in a function call.
pub(super) fn unknown_word(text: &str, token: &Token, followed_by_paren: bool) -> FilterError {
    let word = token.text(text);
    let message = if followed_by_paren && word.eq_ignore_ascii_case("hasPrefix") {
        format!("function names are case-sensitive; write hasPrefix in place of {word}")
    } else if followed_by_paren {
        format!("unknown function {word}; hasPrefix is the only supported function")
    } else if word.eq_ignore_ascii_case("attributes") {
        format!("write attributes in lower case in place of {word}")
    } else if word == "AND" || word == "OR" {
        format!("expected a condition before {word}")
    } else if ["AND", "OR", "NOT"]
        .iter()
        .any(|keyword| word.eq_ignore_ascii_case(keyword))
    {
        let upper = word.to_ascii_uppercase();
        format!("operators must be upper case; write {upper} in place of {word}")
    } else {
        format!(
            "unknown name `{word}`; filters can only test message attributes, with \
             attributes:KEY, attributes.KEY = \"value\" or hasPrefix(attributes.KEY, \"prefix\")"
        )
    };
    token_error(text, token, message)
}

pub(super) fn expected_comparison(text: &str, token: &Token) -> FilterError {
    let found = describe(text, token);
    let message = match token.kind {
        TokenKind::Unsupported => return unsupported_operator(text, token),
        TokenKind::Dot => format!(
            "nested keys are not supported, found {found}; put a key that contains dots in \
             double quotes, as in attributes.\"a.b\""
        ),
        TokenKind::Colon => format!(
            "expected = or != after attributes.KEY, found {found}; the : operator only \
             tests that a key exists, as in attributes:KEY"
        ),
        _ => format!(
            "expected = or != after attributes.KEY, found {found}; to test that the key \
             exists, write attributes:KEY"
        ),
    };
    token_error(text, token, message)
}
