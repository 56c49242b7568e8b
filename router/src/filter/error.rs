//! Errors of the filter languages, with the position of the problem in the filter text.

use std::fmt;

/// A place in filter text: 1-based line and column, counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: u32,
    /// Column number in characters (not bytes), starting at 1.
    pub column: u32,
}

impl Position {
    /// Computes the position of byte offset `offset` in `text`.
    ///
    /// Offsets past the end map to the position just after the last character.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A filter that cannot be parsed or compiled.
///
/// `message` states what was expected and how to fix it; `found` is the offending text as
/// written in the filter (empty at the end of input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at line {}, column {}: {message}", position.line, position.column)]
pub struct FilterError {
    /// Where the problem starts.
    pub position: Position,
    /// Byte offset of the problem in the filter text, for callers that slice the text.
    pub offset: usize,
    /// What was expected, and what to do about it.
    pub message: String,
    /// The offending text, as written.
    pub found: String,
}

impl FilterError {
    /// Creates an error at byte `offset` of `text`, quoting `found`.
    pub fn at(text: &str, offset: usize, found: &str, message: impl Into<String>) -> Self {
        FilterError {
            position: Position::of_offset(text, offset),
            offset,
            message: message.into(),
            found: found.to_owned(),
        }
    }

    /// Renders the error with the filter line it points into and a caret under the column,
    /// as the CLI prints it.
    pub fn render(&self, text: &str) -> String {
        let line_text = text
            .lines()
            .nth(self.position.line as usize - 1)
            .unwrap_or("");
        let pad = " ".repeat(self.position.column as usize - 1);
        let width = self.found.chars().count().max(1);
        format!("{self}\n  {line_text}\n  {pad}{}", "^".repeat(width))
    }
}
