//! A right-hand-side value prepared once at compile time in every form a comparison may need,
//! so that evaluating an entry converts only the field's side.

use aho_corasick::AhoCorasick;
use regex::Regex;

use super::values::{
    fold, parse_decimal, parse_duration, parse_integer, parse_number, parse_severity,
    parse_timestamp,
};

/// A literal value of a comparison or a global search term.
#[derive(Debug, Clone)]
pub(crate) struct Literal {
    /// The value as written, unescaped.
    pub(crate) text: Box<str>,
    /// The value folded for case-insensitive comparison.
    pub(crate) folded: Box<str>,
    /// The bare word `NULL_VALUE`, which matches JSON null.
    pub(crate) null: bool,
    /// The value as a number, including `NaN` and `Infinity`.
    pub(crate) number: Option<f64>,
    /// The value as an integer, for exact comparison of int64 values.
    pub(crate) integer: Option<i64>,
    /// Whether the value is written as a decimal number; only then does a string field holding
    /// a decimal compare numerically.
    pub(crate) decimal: bool,
    pub(crate) boolean: Option<bool>,
    /// Nanoseconds since the Unix epoch.
    pub(crate) timestamp: Option<i128>,
    /// Nanoseconds.
    pub(crate) duration: Option<i128>,
    pub(crate) severity: Option<i32>,
    /// The compiled pattern of `=~` and `!~`.
    pub(crate) regex: Option<Regex>,
    /// An ASCII-case-insensitive substring searcher for `:`, present when the folded value is
    /// ASCII, so that ASCII fields are searched without folding them first.
    pub(crate) finder: Option<AhoCorasick>,
}

impl Literal {
    /// Prepares `text`. `bare` is true for an unquoted word, which matters only for
    /// `NULL_VALUE`.
    pub(crate) fn new(text: &str, bare: bool) -> Self {
        let folded = fold(text).into_owned();
        let finder = if folded.is_ascii() && !folded.is_empty() {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build([folded.as_str()])
                .ok()
        } else {
            None
        };
        let boolean = if text.eq_ignore_ascii_case("true") {
            Some(true)
        } else if text.eq_ignore_ascii_case("false") {
            Some(false)
        } else {
            None
        };
        Literal {
            null: bare && text == "NULL_VALUE",
            number: parse_number(text),
            integer: parse_integer(text),
            decimal: parse_decimal(text).is_some(),
            boolean,
            timestamp: parse_timestamp(text),
            duration: parse_duration(text),
            severity: parse_severity(text),
            regex: None,
            finder,
            text: text.into(),
            folded: folded.into(),
        }
    }

    /// Whether `haystack` contains this value, ignoring case.
    pub(crate) fn is_substring_of(&self, haystack: &str) -> bool {
        if self.folded.is_empty() {
            return true;
        }
        match &self.finder {
            Some(finder) if haystack.is_ascii() => finder.is_match(haystack),
            _ => fold(haystack).contains(&*self.folded),
        }
    }

    /// Compares `field` with this value, ignoring case.
    pub(crate) fn cmp_text(&self, field: &str) -> std::cmp::Ordering {
        if field.is_ascii() && self.folded.is_ascii() {
            let field = field.bytes().map(|b| b.to_ascii_lowercase());
            return field.cmp(self.folded.bytes());
        }
        (*fold(field)).cmp(&*self.folded)
    }

    /// Whether `field` equals this value, ignoring case.
    pub(crate) fn eq_text(&self, field: &str) -> bool {
        if field.is_ascii() && self.folded.is_ascii() {
            return field.eq_ignore_ascii_case(&self.folded);
        }
        *fold(field) == *self.folded
    }
}
