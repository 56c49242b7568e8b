//! Filter languages.

pub mod error;
pub mod pubsub;

pub use error::{FilterError, Position};
pub mod ast;
pub(crate) mod lexer;
pub mod parser;
pub use parser::parse;
pub use lexer::MAX_FILTER_CHARS;
