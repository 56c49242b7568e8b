//! Tokens of the Logging query language.
//!
//! Keywords are not recognised here: `AND`, `OR` and `NOT` arrive as [`TokenKind::Word`] and
//! the parser decides from context, because `severity = AND` compares with the word "AND".

use super::ast::{is_special, Op};
use super::error::FilterError;

/// The longest filter Cloud Logging accepts, in characters, comments included.
pub const MAX_FILTER_CHARS: usize = 20_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    LParen,
    RParen,
    Comma,
    Dot,
    Star,
    Minus,
    Op(Op),
    /// A bare word, with backslash escapes of special characters removed.
    Word(String),
    /// A double-quoted string, with escapes processed.
    Quoted(String),
    End,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Whether whitespace or a comment separates this token from the previous one.
    pub(crate) spaced: bool,
}

impl Token {
    pub(crate) fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.kind, TokenKind::Word(word) if word == keyword)
    }
}

/// Splits `text` into tokens, ending with [`TokenKind::End`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    if let Some((offset, _)) = text.char_indices().nth(MAX_FILTER_CHARS) {
        let chars = text.chars().count();
        return Err(FilterError::at(
            text,
            offset,
            "",
            format!(
                "the filter is {chars} characters long, over the limit of {MAX_FILTER_CHARS}; \
                 split it into several sinks or shorten it"
            ),
        ));
    }
    let mut lexer = Lexer {
        text,
        pos: 0,
        tokens: Vec::new(),
    };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.text[self.pos..].chars().nth(1)
    }

    fn error(&self, start: usize, end: usize, message: impl Into<String>) -> FilterError {
        FilterError::at(self.text, start, &self.text[start..end], message)
    }

    fn run(&mut self) -> Result<(), FilterError> {
        loop {
            let spaced = self.skip_space_and_comments();
            let start = self.pos;
            let Some(c) = self.peek() else {
                // The end of input is placed just after the last visible character, so that
                // an error there points at the line the filter ends on, not at a blank line.
                let visible_end = self.text.trim_end().len();
                self.tokens.push(Token {
                    kind: TokenKind::End,
                    start: visible_end,
                    end: visible_end,
                    spaced,
                });
                return Ok(());
            };
            let kind = match c {
                '(' => self.single(TokenKind::LParen),
                ')' => self.single(TokenKind::RParen),
                ',' => self.single(TokenKind::Comma),
                '.' => self.single(TokenKind::Dot),
                '*' => self.single(TokenKind::Star),
                '-' => self.single(TokenKind::Minus),
                '"' => TokenKind::Quoted(self.quoted()?),
                '=' | '!' | '<' | '>' | ':' | '~' => TokenKind::Op(self.operator()?),
                _ => TokenKind::Word(self.word()?),
            };
            self.push(kind, start, spaced);
        }
    }

    fn push(&mut self, kind: TokenKind, start: usize, spaced: bool) {
        let spaced = spaced || self.tokens.is_empty();
        self.tokens.push(Token {
            kind,
            start,
            end: self.pos,
            spaced,
        });
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.pos += 1;
        kind
    }

    /// Skips whitespace and `--` comments; returns whether anything was skipped.
    fn skip_space_and_comments(&mut self) -> bool {
        let before = self.pos;
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.pos += c.len_utf8(),
                Some('-') if self.peek_second() == Some('-') => {
                    self.pos = self.text[self.pos..]
                        .find('\n')
                        .map_or(self.text.len(), |i| self.pos + i);
                }
                _ => return self.pos != before,
            }
        }
    }

    fn operator(&mut self) -> Result<Op, FilterError> {
        let start = self.pos;
        let rest = &self.text[self.pos..];
        let (op, len) = if rest.starts_with("=~") {
            (Op::Regex, 2)
        } else if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with("!~") {
            (Op::NotRegex, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with(':') {
            (Op::Has, 1)
        } else {
            return Err(self.error(
                start,
                start + 1,
                "unknown operator; use one of = != < <= > >= : =~ !~, \
                 or quote the value if the character is part of it",
            ));
        };
        self.pos += len;
        Ok(op)
    }

    /// Reads a bare word. A backslash makes the next special character part of the word;
    /// escape sequences such as `\u0050` are only allowed inside quotes.
    fn word(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        let numeric = self.peek().is_some_and(|c| c.is_ascii_digit());
        let mut word = String::new();
        while let Some(c) = self.peek() {
            if c == '\\' {
                let escape_start = self.pos;
                self.pos += 1;
                match self.peek() {
                    Some(next) if next.is_alphanumeric() => {
                        return Err(self.error(
                            escape_start,
                            self.pos + next.len_utf8(),
                            "escape sequences are only allowed inside double quotes; \
                             quote the value",
                        ));
                    }
                    Some(next) => {
                        word.push(next);
                        self.pos += next.len_utf8();
                    }
                    None => {
                        return Err(self.error(
                            escape_start,
                            self.pos,
                            "the filter ends with a lone backslash; remove it or quote the value",
                        ));
                    }
                }
                continue;
            }
            let dot_in_number =
                c == '.' && numeric && self.peek_second().is_some_and(|d| d.is_ascii_digit());
            if is_special(c) && !dot_in_number {
                break;
            }
            word.push(c);
            self.pos += c.len_utf8();
        }
        if word.is_empty() {
            return Err(self.error(start, self.pos, "expected a word"));
        }
        Ok(word)
    }

    fn quoted(&mut self) -> Result<String, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(
                    start,
                    self.pos,
                    "unterminated string; add the closing double quote",
                ));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(value),
                '\\' => self.escape(&mut value)?,
                c => value.push(c),
            }
        }
    }

    /// Processes the escape after a backslash inside quotes. Escapes the language does not
    /// define (`\d`, `\.`, `\b`) are kept with their backslash, so that a regular expression
    /// can be written with single or doubled backslashes.
    fn escape(&mut self, value: &mut String) -> Result<(), FilterError> {
        let start = self.pos - 1;
        let Some(c) = self.peek() else {
            return Err(self.error(
                start,
                self.pos,
                "unterminated string; add the closing double quote",
            ));
        };
        let simple = match c {
            '"' => Some('"'),
            '\\' => Some('\\'),
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            _ => None,
        };
        if let Some(ch) = simple {
            value.push(ch);
            self.pos += 1;
            return Ok(());
        }
        let rest = &self.text[self.pos..];
        let (digits, radix, skip) = match c {
            'u' => (4, 16, 1),
            'x' => (2, 16, 1),
            '0'..='7' => (3, 8, 0),
            _ => (0, 0, 0),
        };
        if digits > 0 {
            let body = rest
                .get(skip..skip + digits)
                .filter(|body| body.chars().all(|d| d.is_digit(radix)));
            if let Some(body) = body {
                let code = u32::from_str_radix(body, radix).map_err(|_| {
                    self.error(start, self.pos + skip + digits, "invalid escape sequence")
                })?;
                let ch = char::from_u32(code).ok_or_else(|| {
                    self.error(
                        start,
                        self.pos + skip + digits,
                        format!("escape \\{c}{body} is not a valid character"),
                    )
                })?;
                value.push(ch);
                self.pos += skip + digits;
                return Ok(());
            }
            if c == 'u' || c == 'x' {
                let end = (self.pos + 1 + digits).min(self.text.len());
                let end = (start..=end)
                    .rev()
                    .find(|i| self.text.is_char_boundary(*i))
                    .unwrap_or(start);
                return Err(self.error(
                    start,
                    end,
                    format!("incomplete escape \\{c}; it takes exactly {digits} hex digits"),
                ));
            }
        }
        value.push('\\');
        Ok(())
    }
}
