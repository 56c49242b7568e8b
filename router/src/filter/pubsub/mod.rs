//! Pub/Sub subscription filters: the attribute filter dialect of Google Cloud Pub/Sub.
//!
//! A subscription with a filter receives only the messages whose attributes match it. The
//! dialect tests only the attributes (a string-to-string map), never the message data:
//!
//! - `attributes:KEY` matches when the key is present, with any value;
//! - `attributes.KEY = "VALUE"` and `attributes.KEY != "VALUE"` compare values exactly;
//!   `!=` also matches messages without the key;
//! - `hasPrefix(attributes.KEY, "PREFIX")` matches values that start with the prefix;
//! - `NOT` or `-` negates, `AND` and `OR` combine, and parentheses group. `NOT` binds
//!   tightest, and `AND` and `OR` cannot be mixed without parentheses.
//!
//! [`SubscriptionFilter::parse`] checks the text and builds an [`Expr`] tree, and
//! [`SubscriptionFilter::matches`] evaluates it against anything that implements
//! [`Attributes`]. The full rules, and the choices made where Google's documentation is
//! silent, are in `docs/subscription-filter.md`.
//!
//! ```
//! use std::collections::HashMap;
//! use sluice_router::filter::pubsub::SubscriptionFilter;
//!
//! let filter = SubscriptionFilter::parse(
//!     r#"attributes.eventType = "OBJECT_FINALIZE" AND NOT attributes:overwroteGeneration"#,
//! )?;
//! let mut attributes = HashMap::new();
//! attributes.insert("eventType".to_owned(), "OBJECT_FINALIZE".to_owned());
//! assert!(filter.matches(&attributes));
//!
//! attributes.insert("overwroteGeneration".to_owned(), "1587627000000000".to_owned());
//! assert!(!filter.matches(&attributes));
//! # Ok::<(), sluice_router::filter::FilterError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

mod expr;
mod lexer;
mod messages;
mod parser;

pub use crate::filter::error::{FilterError, Position};
pub use expr::Expr;

/// Maximum length of a filter in bytes (not characters), as Pub/Sub enforces it.
pub const MAX_FILTER_BYTES: usize = 256;

/// Maximum number of parentheses and negations that may enclose one another.
///
/// The limit bounds the parser's recursion. Within 256 bytes only deliberately nested
/// filters reach it.
// NOTE: Google documents no nesting limit, so Pub/Sub may accept a filter that this rejects.
pub const MAX_NESTING: usize = 100;

/// A parsed Pub/Sub subscription filter, ready to evaluate against message attributes.
///
/// An empty filter, or one of only white space, matches every message.
#[derive(Debug, Clone)]
pub struct SubscriptionFilter {
    /// The filter text as given to [`SubscriptionFilter::parse`].
    text: String,
    /// The parsed tree, or `None` for an empty filter.
    expression: Option<Expr>,
}

impl SubscriptionFilter {
    /// Parses a filter written in the Pub/Sub filter dialect.
    ///
    /// # Errors
    ///
    /// Returns a [`FilterError`] at the first problem, with the position and text of the
    /// offending token. The problem can be a filter longer than [`MAX_FILTER_BYTES`] or a
    /// lexical error, such as an unclosed or badly escaped string literal, an escape outside
    /// quotes, or an unexpected character. It can also be a grammar error, such as an unknown
    /// function, a value on the left of `=`, or `AND` and `OR` mixed without parentheses.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        check_length(text)?;
        let expression = parser::parse(text)?;
        Ok(SubscriptionFilter {
            text: text.to_owned(),
            expression,
        })
    }

    /// Checks whether a message with these attributes passes the filter.
    ///
    /// Evaluation allocates nothing unless the [`Attributes`] implementation does.
    pub fn matches<A: Attributes + ?Sized>(&self, attributes: &A) -> bool {
        match &self.expression {
            Some(expression) => expression.matches(attributes),
            None => true,
        }
    }

    /// Returns the filter text exactly as it was parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns the parsed tree, or `None` when the filter is empty and matches everything.
    pub fn expression(&self) -> Option<&Expr> {
        self.expression.as_ref()
    }
}

/// Writes the canonical form of the filter (see the [`Expr`] `Display` implementation), or
/// nothing for an empty filter.
impl fmt::Display for SubscriptionFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.expression {
            Some(expression) => write!(f, "{expression}"),
            None => Ok(()),
        }
    }
}

impl FromStr for SubscriptionFilter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Self, FilterError> {
        SubscriptionFilter::parse(text)
    }
}

/// Rejects text longer than [`MAX_FILTER_BYTES`], pointing at the character that crosses
/// the limit.
fn check_length(text: &str) -> Result<(), FilterError> {
    if text.len() <= MAX_FILTER_BYTES {
        return Ok(());
    }
    let mut offset = MAX_FILTER_BYTES;
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    Err(FilterError::at(
        text,
        offset,
        &text[offset..],
        format!(
            "filter is {} bytes long, but the maximum is {MAX_FILTER_BYTES} bytes; shorten it",
            text.len()
        ),
    ))
}

/// The attributes of one message, looked up by exact, case-sensitive key.
pub trait Attributes {
    /// Returns the value of attribute `key`, or `None` when the message does not have it.
    fn attribute(&self, key: &str) -> Option<&str>;
}

impl<S: BuildHasher> Attributes for HashMap<String, String, S> {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Attributes for BTreeMap<String, String> {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Attributes for HashMap<&str, &str, S> {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.get(key).copied()
    }
}

impl Attributes for BTreeMap<&str, &str> {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.get(key).copied()
    }
}
