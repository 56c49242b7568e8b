//! `SEARCH("query")`: token matching in the spirit of BigQuery's text analyzer.
//!
//! Google does not publish the Logging tokenizer, so sluice uses a simple, documented rule:
//! text splits into tokens at every character that is not a letter or a digit, and tokens
//! compare case-insensitively. Every token of the query must occur somewhere in the searched
//! text, in any order. A phrase in backticks must occur as consecutive tokens of one string.

use super::values::fold;

/// A compiled SEARCH query: terms that must all be found.
#[derive(Debug, Clone)]
pub(crate) struct SearchQuery {
    /// Each term is a sequence of folded tokens: one for a word, several for a phrase.
    terms: Vec<Vec<Box<str>>>,
}

fn tokens(text: &str) -> impl Iterator<Item = &str> + Clone {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|token| !token.is_empty())
}

impl SearchQuery {
    /// Parses the query text.
    ///
    /// # Errors
    ///
    /// Returns a message for an unbalanced backtick or a query with no tokens.
    pub(crate) fn parse(query: &str) -> Result<Self, String> {
        if query.matches('`').count() % 2 == 1 {
            return Err(
                "unbalanced backtick in the SEARCH query; phrases are written `like this`"
                    .to_owned(),
            );
        }
        let mut terms = Vec::new();
        for (i, part) in query.split('`').enumerate() {
            let folded: Vec<Box<str>> = tokens(part).map(|token| fold(token).into()).collect();
            if i % 2 == 1 {
                if !folded.is_empty() {
                    terms.push(folded);
                }
            } else {
                terms.extend(folded.into_iter().map(|token| vec![token]));
            }
        }
        if terms.is_empty() {
            return Err(format!(
                "the SEARCH query {query:?} has no letters or digits to search for"
            ));
        }
        Ok(SearchQuery { terms })
    }

    /// Whether every term occurs in the strings that `scan` visits. `scan` calls its visitor on
    /// each string and stops when the visitor returns true.
    pub(crate) fn matches(&self, scan: impl Fn(&mut dyn FnMut(&str) -> bool) -> bool) -> bool {
        self.terms
            .iter()
            .all(|term| scan(&mut |text| contains_term(text, term)))
    }
}

fn token_eq(token: &str, folded: &str) -> bool {
    if token.is_ascii() {
        token.eq_ignore_ascii_case(folded)
    } else {
        *fold(token) == *folded
    }
}

fn contains_term(text: &str, term: &[Box<str>]) -> bool {
    let mut rest = tokens(text);
    loop {
        let window = rest.clone();
        if window
            .zip(term.iter())
            .filter(|(token, want)| token_eq(token, want))
            .count()
            == term.len()
        {
            return true;
        }
        if rest.next().is_none() {
            return false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(query: &str, text: &str) -> bool {
        SearchQuery::parse(query)
            .expect("valid query")
            .matches(|visit| visit(text))
    }

    #[test]
    fn words_match_whole_tokens_only() {
        assert!(search("hello kitty", "Hello, Kitty!"));
        assert!(!search("Hello Kit", "Hello Kitty"));
    }

    #[test]
    fn words_match_in_any_order() {
        assert!(search("world hello", "hello big world"));
    }

    #[test]
    fn phrase_needs_consecutive_tokens() {
        assert!(search("`hello world`", "say hello-world now"));
        assert!(!search("`hello world`", "hello big world"));
    }

    #[test]
    fn unbalanced_backtick_is_an_error() {
        assert!(SearchQuery::parse("`hello").is_err());
        assert!(SearchQuery::parse("--").is_err());
    }
}
