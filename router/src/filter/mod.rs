//! Filter languages: Google's Logging query language for log sinks, and the Pub/Sub
//! subscription filter dialect in [`pubsub`].
//!
//! A Logging filter goes through three stages. [`parse`] turns text into an [`ast::Query`]
//! without looking at field names. [`LogFilter::new`] parses and then compiles: fields are
//! resolved against the LogEntry schema, values converted to the field's type, and regular
//! expressions built, so that every mistake that does not depend on an entry is reported when
//! the filter loads. [`LogFilter::matches`] then evaluates the compiled tree on one entry in
//! its JSON form, and [`LogFilter::explain`] does the same while recording why.
//!
//! ```
//! use sluice_router::filter::LogFilter;
//!
//! let filter = LogFilter::new(r#"resource.type="gcs_bucket" severity>=ERROR"#).unwrap();
//! let entry = serde_json::json!({"resource": {"type": "gcs_bucket"}, "severity": "ERROR"});
//! assert!(filter.matches(&entry));
//! ```
//!
//! [`FilterSet`] evaluates many filters over the same entry and shares the work between them.

pub mod ast;
mod compile;
pub mod error;
mod eval;
mod explain;
mod fields;
mod functions;
pub(crate) mod lexer;
mod literal;
pub mod parser;
pub mod pubsub;
mod search;
mod set;

pub mod values;

use serde_json::Value;

pub use compile::Warning;
pub use error::{FilterError, Position};
pub use explain::Explanation;
pub use lexer::MAX_FILTER_CHARS;
pub use parser::{parse, MAX_NESTING};
pub use set::FilterSet;

/// A compiled Logging query-language filter.
#[derive(Debug, Clone)]
pub struct LogFilter {
    text: Box<str>,
    root: compile::Node,
    warnings: Vec<Warning>,
}

impl LogFilter {
    /// Parses and compiles a filter.
    ///
    /// # Errors
    ///
    /// Returns a [`FilterError`] with the line and column of the first problem: a syntax
    /// error, an unknown LogEntry field, a value that cannot convert to its field's type, an
    /// invalid regular expression or a misused function.
    pub fn new(text: &str) -> Result<Self, FilterError> {
        let query = parse(text)?;
        let (root, warnings) = compile::compile(&query, text)?;
        Ok(LogFilter {
            text: text.into(),
            root,
            warnings,
        })
    }

    /// Whether `entry`, a LogEntry in its JSON form, matches the filter.
    pub fn matches(&self, entry: &Value) -> bool {
        eval::eval(&self.root, entry)
    }

    /// Evaluates the filter on `entry` and records each clause's result and the values it
    /// looked at.
    pub fn explain(&self, entry: &Value) -> Explanation {
        explain::explain(&self.root, &self.text, entry)
    }

    /// The filter text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Remarks about parts of the filter that are valid but probably not what was meant.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
}
