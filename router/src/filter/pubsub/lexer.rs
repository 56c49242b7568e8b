//! Tokenizer for the Pub/Sub filter dialect, including the decoding of string literals.
//!
//! The lexer works on demand: the parser pulls one token at a time, so the first error
//! reported is the leftmost one whether it is a lexical or a grammar error.

use crate::filter::error::FilterError;

/// One token and its byte span in the filter text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: TokenKind,
    /// Byte offset of the first byte of the token.
    pub(crate) start: usize,
    /// Byte offset just past the token.
    pub(crate) end: usize,
}

/// The kinds of token in the dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// ASCII letters, digits, `_` and `-`, not starting with `-`: keywords, function names,
    /// unquoted keys, and misspellings of all of these.
    Word,
    /// A double-quoted string literal, with its escape sequences decoded.
    Str(String),
    LeftParen,
    RightParen,
    Comma,
    Dot,
    Colon,
    Equals,
    NotEquals,
    Minus,
    /// An operator that the dialect lacks (`<`, `<=`, `>`, `>=`, `==`, `=~`, `!~`, `!`, `~`).
    /// The lexer accepts it so that the parser can name it in its error message.
    Unsupported,
    End,
}

impl Token {
    /// Returns the token as written in `text`.
    pub(crate) fn text<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }

    /// Checks whether the token is the word `word`, compared case-sensitively.
    pub(crate) fn is_word(&self, text: &str, word: &str) -> bool {
        self.kind == TokenKind::Word && self.text(text) == word
    }
}

/// A cursor over the filter text that yields tokens.
#[derive(Debug)]
pub(crate) struct Lexer<'a> {
    text: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer { text, position: 0 }
    }

    /// Reads the next token, skipping ASCII white space before it.
    ///
    /// On error the cursor does not move, so calling again reports the same error.
    pub(crate) fn next_token(&mut self) -> Result<Token, FilterError> {
        let text = self.text;
        let start = skip_whitespace(text, self.position);
        let rest = &text[start..];
        let Some(first) = rest.chars().next() else {
            self.position = start;
            return Ok(Token {
                kind: TokenKind::End,
                start,
                end: start,
            });
        };
        let second = rest.as_bytes().get(1).copied();
        let (kind, length) = match first {
            '(' => (TokenKind::LeftParen, 1),
            ')' => (TokenKind::RightParen, 1),
            ',' => (TokenKind::Comma, 1),
            '.' => (TokenKind::Dot, 1),
            ':' => (TokenKind::Colon, 1),
            '-' => (TokenKind::Minus, 1),
            '=' => match second {
                Some(b'=' | b'~') => (TokenKind::Unsupported, 2),
                _ => (TokenKind::Equals, 1),
            },
            '!' => match second {
                Some(b'=') => (TokenKind::NotEquals, 2),
                Some(b'~') => (TokenKind::Unsupported, 2),
                _ => (TokenKind::Unsupported, 1),
            },
            '<' | '>' => match second {
                Some(b'=') => (TokenKind::Unsupported, 2),
                _ => (TokenKind::Unsupported, 1),
            },
            '~' => (TokenKind::Unsupported, 1),
            '"' => {
                let (value, end) = read_string_literal(text, start)?;
                self.position = end;
                return Ok(Token {
                    kind: TokenKind::Str(value),
                    start,
                    end,
                });
            }
            c if is_word_start(c) => (TokenKind::Word, word_length(rest)),
            c => return Err(unexpected_character(text, start, c)),
        };
        self.position = start + length;
        Ok(Token {
            kind,
            start,
            end: start + length,
        })
    }
}

fn skip_whitespace(text: &str, from: usize) -> usize {
    let skipped = text.as_bytes()[from..]
        .iter()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    from + skipped
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_word_continuation(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// Counts the bytes of the word at the start of `rest`, whose first byte is a word start.
fn word_length(rest: &str) -> usize {
    rest.bytes()
        .take_while(|&b| is_word_continuation(b))
        .count()
}

/// Checks whether `key` can be written without quotes after `attributes.` or `attributes:`.
pub(crate) fn is_bare_key(key: &str) -> bool {
    key.chars().next().is_some_and(is_word_start) && word_length(key) == key.len()
}

fn unexpected_character(text: &str, offset: usize, c: char) -> FilterError {
    let found = &text[offset..offset + c.len_utf8()];
    let message = match c {
        '\\' => {
            let escape_end = offset + 1 + word_length(&text[offset + 1..]);
            let escape = &text[offset..escape_end];
            // Suggest quoting the whole run of escapes and word characters, such as
            // \u307F\u3093\u306A, not only the first escape.
            let run_length = text[offset..]
                .find(|c: char| c.is_ascii_whitespace() || "()=!<>:,\"".contains(c))
                .unwrap_or(text.len() - offset);
            let run = &text[offset..offset + run_length];
            return FilterError::at(
                text,
                offset,
                escape,
                format!(
                    "escape sequences are allowed only inside string literals; \
                     put the key or value in double quotes, as in \"{run}\""
                ),
            );
        }
        '\'' => "single quotes are not supported; put string literals in double quotes".to_owned(),
        '&' => "unexpected character '&'; write AND to require both conditions".to_owned(),
        '|' => "unexpected character '|'; write OR to accept either condition".to_owned(),
        c if c.is_whitespace() => format!(
            "unexpected white space character U+{:04X}; separate tokens with ASCII spaces",
            u32::from(c)
        ),
        c if c.is_alphanumeric() => format!(
            "unexpected character {c:?} outside a string literal; a key that contains \
             characters other than ASCII letters, digits, - and _ must be in double quotes, \
             as in attributes:\"{c}\""
        ),
        c => format!(
            "unexpected character {c:?}; expected attributes, hasPrefix, AND, OR, NOT, -, \
             parentheses or a string literal"
        ),
    };
    FilterError::at(text, offset, found, message)
}

/// Decodes the string literal whose opening quote is at byte `start`.
///
/// Returns the decoded value and the offset just past the closing quote.
fn read_string_literal(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let mut value = String::new();
    let mut position = start + 1;
    loop {
        let Some(c) = text[position..].chars().next() else {
            return Err(unterminated_literal(text, start));
        };
        match c {
            '"' => return Ok((value, position + 1)),
            '\\' => {
                let (decoded, next) = decode_escape(text, start, position)?;
                value.push(decoded);
                position = next;
            }
            c if c.is_control() => {
                let found = &text[position..position + c.len_utf8()];
                return Err(FilterError::at(
                    text,
                    position,
                    found,
                    format!(
                        "control character {c:?} inside a string literal must be written as an \
                         escape sequence such as \\n, \\t or \\u{:04X}; if the literal should have \
                         ended before it, add the closing \"",
                        u32::from(c)
                    ),
                ));
            }
            c => {
                value.push(c);
                position += c.len_utf8();
            }
        }
    }
}

fn unterminated_literal(text: &str, start: usize) -> FilterError {
    FilterError::at(
        text,
        start,
        &text[start..],
        "string literal is not closed; add the closing \"",
    )
}

/// Decodes the escape sequence whose backslash is at byte `backslash` inside the literal that
/// opens at `literal_start`. Returns the character and the offset just past the sequence.
fn decode_escape(
    text: &str,
    literal_start: usize,
    backslash: usize,
) -> Result<(char, usize), FilterError> {
    let letter_at = backslash + 1;
    let Some(letter) = text[letter_at..].chars().next() else {
        return Err(unterminated_literal(text, literal_start));
    };
    let simple = match letter {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' | '"' | '\'' | '`' | '?' => Some(letter),
        _ => None,
    };
    if let Some(c) = simple {
        return Ok((c, letter_at + 1));
    }
    match letter {
        'x' | 'X' => decode_numeric_escape(text, backslash, letter_at + 1, 2, 16),
        'u' => decode_numeric_escape(text, backslash, letter_at + 1, 4, 16),
        'U' => decode_numeric_escape(text, backslash, letter_at + 1, 8, 16),
        '0'..='7' => decode_numeric_escape(text, backslash, letter_at, 3, 8),
        _ => {
            let found = &text[backslash..letter_at + letter.len_utf8()];
            Err(FilterError::at(
                text,
                backslash,
                found,
                format!(
                    "unknown escape sequence {found}; the valid escapes are \\\\, \\\", \\', \\`, \
                     \\?, \\a, \\b, \\f, \\n, \\r, \\t, \\v, \\xHH, \\uHHHH, \\UHHHHHHHH and \
                     three octal digits \\NNN; write \\\\ for a literal backslash"
                ),
            ))
        }
    }
}

/// Decodes `count` digits in `radix` starting at `digits_at`, for the escape at `backslash`.
///
/// Hex (`\xHH`) and octal (`\NNN`) escapes are limited to ASCII. Above 0x7F, languages
/// disagree: Go and C read `\xE3` as a byte, Python 3 and JavaScript as the code point
/// U+00E3. Google's documentation does not say which the dialect follows, so such escapes
/// are rejected.
fn decode_numeric_escape(
    text: &str,
    backslash: usize,
    digits_at: usize,
    count: usize,
    radix: u32,
) -> Result<(char, usize), FilterError> {
    let available = text.as_bytes()[digits_at..]
        .iter()
        .take(count)
        .take_while(|b| char::from(**b).is_digit(radix))
        .count();
    let end = digits_at + available;
    let found = &text[backslash..end];
    let is_octal = radix == 8;
    if available < count {
        let shape = if is_octal {
            "three octal digits, as in \\101"
        } else {
            "hex digits"
        };
        let message = if is_octal {
            format!("escape sequence {found} is incomplete; an octal escape needs {shape}")
        } else {
            format!("escape sequence {found} is incomplete; it needs exactly {count} {shape}")
        };
        return Err(FilterError::at(text, backslash, found, message));
    }
    let code = u32::from_str_radix(&text[digits_at..end], radix)
        .expect("the digits were checked against the radix and are at most 8 long");
    let byte_sized = is_octal || count == 2;
    if byte_sized && code > 0x7F {
        return Err(FilterError::at(
            text,
            backslash,
            found,
            format!(
                "escape sequence {found} is above 0x7F, where languages disagree on whether \
                 it is a UTF-8 byte or a code point; write the character itself or use \
                 \\u{code:04X}"
            ),
        ));
    }
    match char::from_u32(code) {
        Some(c) => Ok((c, end)),
        None => Err(FilterError::at(
            text,
            backslash,
            found,
            format!(
                "escape sequence {found} is not a Unicode scalar value; surrogates \
                 (D800 to DFFF) and values above 10FFFF are invalid"
            ),
        )),
    }
}
