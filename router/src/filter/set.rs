//! Many filters over the same entry, sharing the work between them.
//!
//! A router keeps one filter per sink and evaluates every sink on every entry. Most sink
//! filters require one field to equal a literal (`resource.type="gcs_bucket"`,
//! `logName="…/activity"`) or to match a pattern. [`FilterSet`] picks one such required clause
//! per filter as its key, indexes the keys by field, and per entry reads each indexed field
//! once: a hash lookup finds the filters whose literal it equals, and one `RegexSet` pass
//! finds the filters whose pattern it matches. Filters that require a global search term
//! share one Aho-Corasick scan over the entry's strings. Only those candidates, plus the
//! filters without a key, are then evaluated in full.

use std::cell::RefCell;
use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use regex::RegexSet;
use serde_json::Value;

use super::ast::Op;
use super::compile::{Comparison, Node};
use super::eval::{any_value, default_value, for_each_string};
use super::fields::{Field, FieldKind, FieldType};
use super::functions::Operand;
use super::LogFilter;

/// A set of compiled filters evaluated together.
#[derive(Debug)]
pub struct FilterSet {
    filters: Vec<LogFilter>,
    equality: Vec<EqualityIndex>,
    patterns: Vec<PatternIndex>,
    /// Filters keyed by a required global search term, found in one walk over the entry.
    searches: Option<SearchIndex>,
    /// Filters with no indexable required clause, evaluated on every entry.
    unkeyed: Vec<usize>,
}

/// Filters keyed by a required `field = "literal"` clause, by the literal's folded text.
#[derive(Debug)]
struct EqualityIndex {
    field: Field,
    by_value: HashMap<Box<str>, Vec<usize>>,
}

/// Filters keyed by a required `field =~ "pattern"` clause.
#[derive(Debug)]
struct PatternIndex {
    field: Field,
    set: RegexSet,
    /// The filter that owns each pattern of `set`, by pattern index.
    owners: Vec<usize>,
}

/// Filters keyed by a required global search term (a bare word or phrase). One automaton
/// contains every term, so an entry's strings are scanned once for all of them.
#[derive(Debug)]
struct SearchIndex {
    /// Case-insensitive for ASCII; non-ASCII strings are folded before the scan.
    automaton: AhoCorasick,
    /// The filter that owns each term, by pattern index.
    owners: Vec<usize>,
}

/// The patterns of one field, collected before they are compiled into a `RegexSet`.
struct PatternSources {
    field: Field,
    sources: Vec<String>,
    owners: Vec<usize>,
}

/// The key chosen for one filter.
enum Key<'a> {
    /// Any of these comparisons (one for each value of a value list) must hold.
    Equal(&'a Field, Vec<&'a str>),
    Pattern(&'a Field, Vec<&'a str>),
    /// A global search term, folded.
    Search(&'a str),
}

thread_local! {
    /// Scratch space for folding field values before a hash lookup, reused across entries.
    static FOLD_BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

impl FilterSet {
    /// Builds the set and its indexes. Filters keep their positions: index `i` of a result
    /// refers to `filters[i]`.
    pub fn new(filters: Vec<LogFilter>) -> Self {
        let mut equality: Vec<EqualityIndex> = Vec::new();
        let mut patterns: Vec<PatternSources> = Vec::new();
        let mut unkeyed = Vec::new();
        let mut terms: Vec<(&str, usize)> = Vec::new();
        for (index, filter) in filters.iter().enumerate() {
            match choose_key(&filter.root) {
                Some(Key::Equal(field, values)) => {
                    let slot = match equality.iter().position(|e| same_field(&e.field, field)) {
                        Some(slot) => slot,
                        None => {
                            equality.push(EqualityIndex {
                                field: field.clone(),
                                by_value: HashMap::new(),
                            });
                            equality.len() - 1
                        }
                    };
                    for value in values {
                        let owners = equality[slot].by_value.entry(value.into()).or_default();
                        if owners.last() != Some(&index) {
                            owners.push(index);
                        }
                    }
                }
                Some(Key::Pattern(field, sources)) => {
                    let slot = match patterns.iter().position(|p| same_field(&p.field, field)) {
                        Some(slot) => slot,
                        None => {
                            patterns.push(PatternSources {
                                field: field.clone(),
                                sources: Vec::new(),
                                owners: Vec::new(),
                            });
                            patterns.len() - 1
                        }
                    };
                    for source in sources {
                        patterns[slot].sources.push(source.to_owned());
                        patterns[slot].owners.push(index);
                    }
                }
                Some(Key::Search(term)) => terms.push((term, index)),
                None => unkeyed.push(index),
            }
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(terms.iter().map(|(term, _)| *term));
        let searches = match automaton {
            Ok(automaton) if !terms.is_empty() => Some(SearchIndex {
                automaton,
                owners: terms.iter().map(|(_, i)| *i).collect(),
            }),
            Ok(_) => None,
            Err(_) => {
                unkeyed.extend(terms.iter().map(|(_, i)| *i));
                None
            }
        };
        let mut pattern_indexes = Vec::new();
        for PatternSources {
            field,
            sources,
            owners,
        } in patterns
        {
            match RegexSet::new(&sources) {
                Ok(set) => pattern_indexes.push(PatternIndex { field, set, owners }),
                // Each pattern compiled alone, but together they can pass the size limit;
                // those filters are then evaluated on every entry instead.
                Err(_) => unkeyed.extend(owners),
            }
        }
        unkeyed.sort_unstable();
        unkeyed.dedup();
        FilterSet {
            filters,
            equality,
            patterns: pattern_indexes,
            searches,
            unkeyed,
        }
    }

    /// The filters, in the order given to [`FilterSet::new`].
    pub fn filters(&self) -> &[LogFilter] {
        &self.filters
    }

    /// The number of filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether the set has no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Returns the positions of the filters that match `entry`, in increasing order.
    pub fn matching(&self, entry: &Value) -> Vec<usize> {
        let mut out = Vec::new();
        self.matching_into(entry, &mut out);
        out
    }

    /// Writes the positions of the filters that match `entry` into `out`, in increasing order,
    /// reusing its allocation.
    pub fn matching_into(&self, entry: &Value, out: &mut Vec<usize>) {
        out.clear();
        for index in &self.equality {
            index.candidates(entry, out);
        }
        for index in &self.patterns {
            index.candidates(entry, out);
        }
        if let Some(index) = &self.searches {
            index.candidates(entry, out);
        }
        out.extend_from_slice(&self.unkeyed);
        out.sort_unstable();
        out.dedup();
        out.retain(|&i| self.filters[i].matches(entry));
    }
}

/// Calls `visit` on each string at `field`, or on the default of an absent LogEntry field.
fn for_each_text(entry: &Value, field: &Field, visit: &mut impl FnMut(&str)) {
    let mut seen = false;
    any_value(
        entry,
        &field.keys,
        &mut |value| {
            match value {
                Value::String(text) => visit(text),
                // A string field holding a number compares as the number's text.
                Value::Number(_) | Value::Bool(_)
                    if field.kind == FieldKind::Defaulted(FieldType::String) =>
                {
                    visit(&value.to_string());
                }
                _ => {}
            }
            false
        },
        &mut seen,
    );
    if let (false, FieldKind::Defaulted(ty)) = (seen, field.kind) {
        if let Value::String(text) = default_value(ty) {
            visit(text);
        }
    }
}

impl EqualityIndex {
    fn candidates(&self, entry: &Value, out: &mut Vec<usize>) {
        FOLD_BUFFER.with_borrow_mut(|buffer| {
            for_each_text(entry, &self.field, &mut |text| {
                let key: &str = if text.is_ascii() {
                    buffer.clear();
                    buffer.extend(text.chars().map(|c| c.to_ascii_lowercase()));
                    buffer
                } else {
                    *buffer = super::values::fold(text).into_owned();
                    buffer
                };
                if let Some(owners) = self.by_value.get(key) {
                    out.extend_from_slice(owners);
                }
            });
        });
    }
}

impl PatternIndex {
    fn candidates(&self, entry: &Value, out: &mut Vec<usize>) {
        for_each_text(entry, &self.field, &mut |text| {
            out.extend(
                self.set
                    .matches(text)
                    .iter()
                    .map(|pattern| self.owners[pattern]),
            );
        });
    }
}

impl SearchIndex {
    fn candidates(&self, entry: &Value, out: &mut Vec<usize>) {
        let mut scan = |text: &str| {
            // Most strings hold no term at all: the plain search skips them with its
            // prefilter, and only a hit pays for the overlapping search that finds every term.
            if !self.automaton.is_match(text) {
                return;
            }
            for found in self.automaton.find_overlapping_iter(text) {
                out.push(self.owners[found.pattern().as_usize()]);
            }
        };
        for_each_string(entry, &mut |text| {
            if text.is_ascii() {
                scan(text);
            } else {
                scan(&super::values::fold(text));
            }
            false
        });
    }
}

fn same_field(a: &Field, b: &Field) -> bool {
    a.kind == b.kind
        && a.keys.len() == b.keys.len()
        && a.keys
            .iter()
            .zip(b.keys.iter())
            .all(|(x, y)| x.name == y.name && x.any_case == y.any_case)
}

/// Picks the clause every match of `root` must satisfy and that an index can look up:
/// an equality first, since it is the most selective, then a pattern.
fn choose_key(root: &Node) -> Option<Key<'_>> {
    let conjuncts: &[Node] = match root {
        Node::And(items) => items,
        other => std::slice::from_ref(other),
    };
    let equal = conjuncts.iter().find_map(equality_key);
    equal
        .or_else(|| conjuncts.iter().find_map(pattern_key))
        .or_else(|| conjuncts.iter().find_map(search_key))
}

/// An equality on one field, or an OR of equalities on the same field (a value list).
fn equality_key(node: &Node) -> Option<Key<'_>> {
    let mut field = None;
    let mut values = Vec::new();
    for comparison in alternatives(node)? {
        let Operand::Field(this) = &comparison.operand else {
            return None;
        };
        if comparison.op != Op::Eq || !text_only(this, comparison) {
            return None;
        }
        if field.is_some_and(|f| !same_field(f, this)) {
            return None;
        }
        field = Some(this);
        values.push(&*comparison.literal.folded);
    }
    Some(Key::Equal(field?, values))
}

fn pattern_key(node: &Node) -> Option<Key<'_>> {
    let mut field = None;
    let mut sources = Vec::new();
    for comparison in alternatives(node)? {
        let Operand::Field(this) = &comparison.operand else {
            return None;
        };
        let regex = comparison.literal.regex.as_ref()?;
        if comparison.op != Op::Regex || field.is_some_and(|f| !same_field(f, this)) {
            return None;
        }
        field = Some(this);
        sources.push(regex.as_str());
    }
    Some(Key::Pattern(field?, sources))
}

/// A global search term with some text; an empty term matches every entry, so it cannot
/// narrow anything.
fn search_key(node: &Node) -> Option<Key<'_>> {
    match node {
        Node::Search(literal) if !literal.folded.is_empty() => Some(Key::Search(&literal.folded)),
        _ => None,
    }
}

/// The comparisons of a node that is one comparison or an OR of comparisons.
fn alternatives(node: &Node) -> Option<Vec<&Comparison>> {
    match node {
        Node::Compare(comparison) => Some(vec![comparison]),
        Node::Or(items) => items
            .iter()
            .map(|item| match item {
                Node::Compare(comparison) => Some(&**comparison),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Whether an equality is true exactly when a string at the field folds to the literal's folded
/// text. Literals that could also match a number, a bool, a timestamp, a duration or null are
/// left out, because the evaluator compares those by value rather than by text.
fn text_only(field: &Field, comparison: &Comparison) -> bool {
    let literal = &comparison.literal;
    match field.kind {
        FieldKind::Defaulted(FieldType::String) => !literal.null,
        FieldKind::Dynamic => {
            !literal.null
                && literal.number.is_none()
                && !literal.decimal
                && literal.boolean.is_none()
                && literal.timestamp.is_none()
                && literal.duration.is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_to_the_matching_index() {
        let texts = [
            r#"resource.type="a" severity>=ERROR"#,
            r#"resource.type=("b" OR "c")"#,
            r#"logName=~"activity$""#,
            "severity>=ERROR",
            r#"jsonPayload.n = 7"#,
        ];
        let filters = texts
            .iter()
            .map(|t| LogFilter::new(t).expect("compiles"))
            .collect();
        let set = FilterSet::new(filters);
        assert_eq!(
            set.equality.len(),
            1,
            "one equality index, on resource.type"
        );
        assert_eq!(set.equality[0].by_value.len(), 3, "values a, b and c");
        assert_eq!(set.patterns.len(), 1, "one pattern index, on logName");
        assert_eq!(
            set.unkeyed,
            vec![3, 4],
            "severity and numeric comparisons have no key"
        );
    }
}
