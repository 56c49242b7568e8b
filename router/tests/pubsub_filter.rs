//! Tests of the Pub/Sub subscription filter dialect: fixture cases from Google's documentation
//! and from two other implementations, error positions, canonical text, and properties.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;

use proptest::prelude::*;
use serde::Deserialize;
use sluice_router::filter::pubsub::{
    Attributes, Expr, FilterError, SubscriptionFilter, MAX_FILTER_BYTES, MAX_NESTING,
};

const PUBSUB_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/audit-logs/pubsub-filter-cases.json"
);
const GCS_CASES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/audit-logs/gcs-notifications/pubsub-filter-cases.jsonl"
);
const GCS_MESSAGES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/audit-logs/gcs-notifications/messages.jsonl"
);

/// `pubsub-filter-cases.json`: attribute maps and expectations from the Pub/Sub fake in
/// google-cloud-go (pstest), unit cases from mmmbbb, and examples from Google's docs.
#[derive(Debug, Deserialize)]
struct PubsubCases {
    pstest_messages: BTreeMap<String, HashMap<String, String>>,
    pstest_cases: Vec<PstestCase>,
    mmmbbb_cases: Vec<SingleMessageCase>,
    doc_valid: Vec<String>,
    doc_invalid: Vec<InvalidCase>,
    max_filter_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct PstestCase {
    filter: String,
    want: Vec<u32>,
}

#[derive(Debug, Deserialize)]
struct SingleMessageCase {
    filter: String,
    attributes: HashMap<String, String>,
    want: bool,
}

#[derive(Debug, Deserialize)]
struct InvalidCase {
    filter: String,
    why: String,
}

#[derive(Debug, Deserialize)]
struct GcsCase {
    filter: String,
    expect: BTreeSet<String>,
}

#[derive(Debug, Deserialize)]
struct GcsMessageLine {
    id: String,
    message: GcsMessage,
}

#[derive(Debug, Deserialize)]
struct GcsMessage {
    attributes: BTreeMap<String, String>,
}

fn load_pubsub_cases() -> PubsubCases {
    let text = fs::read_to_string(PUBSUB_CASES)
        .unwrap_or_else(|error| panic!("cannot read {PUBSUB_CASES}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("invalid {PUBSUB_CASES}: {error}"))
}

fn load_json_lines<T: for<'de> Deserialize<'de>>(path: &str) -> Vec<T> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("invalid line {} of {path}: {error}", index + 1))
        })
        .collect()
}

fn parse_ok(filter: &str) -> SubscriptionFilter {
    SubscriptionFilter::parse(filter)
        .unwrap_or_else(|error| panic!("filter {filter:?} should parse: {error}"))
}

fn parse_err(filter: &str) -> FilterError {
    match SubscriptionFilter::parse(filter) {
        Ok(parsed) => panic!("filter {filter:?} should fail but parsed as {parsed}"),
        Err(error) => error,
    }
}

fn attributes(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn pstest_cases_match_expected_messages() {
    let cases = load_pubsub_cases();
    assert_eq!(cases.pstest_messages.len(), 12, "pstest message table size");
    for case in &cases.pstest_cases {
        let filter = parse_ok(&case.filter);
        let mut matched: Vec<u32> = cases
            .pstest_messages
            .iter()
            .filter(|(_, attributes)| filter.matches(*attributes))
            .map(|(id, _)| id.parse().expect("pstest message ids are integers"))
            .collect();
        matched.sort_unstable();
        let mut want = case.want.clone();
        want.sort_unstable();
        assert_eq!(matched, want, "pstest case {:?}", case.filter);
    }
}

#[test]
fn mmmbbb_cases_match_expected_results() {
    let cases = load_pubsub_cases();
    for case in &cases.mmmbbb_cases {
        let filter = parse_ok(&case.filter);
        assert_eq!(
            filter.matches(&case.attributes),
            case.want,
            "mmmbbb case {:?} on {:?}",
            case.filter,
            case.attributes
        );
    }
}

#[test]
fn doc_valid_filters_parse() {
    let cases = load_pubsub_cases();
    for filter in &cases.doc_valid {
        parse_ok(filter);
    }
}

#[test]
fn doc_invalid_filters_are_rejected() {
    let cases = load_pubsub_cases();
    for case in &cases.doc_invalid {
        let error = parse_err(&case.filter);
        assert!(
            !error.message.is_empty(),
            "empty message for {:?} ({})",
            case.filter,
            case.why
        );
        assert!(
            case.filter[error.offset..].starts_with(&error.found),
            "found {:?} is not the text at offset {} of {:?}",
            error.found,
            error.offset,
            case.filter
        );
    }
}

/// Builds `attributes.k = "aaa…"` with exactly `bytes` bytes.
fn filter_of_length(bytes: usize) -> String {
    let frame = "attributes.k = \"\"".len();
    format!("attributes.k = \"{}\"", "a".repeat(bytes - frame))
}

#[test]
fn length_limit_counts_bytes() {
    let cases = load_pubsub_cases();
    assert_eq!(
        cases.max_filter_bytes, MAX_FILTER_BYTES,
        "fixture and crate limits differ"
    );

    parse_ok(&filter_of_length(MAX_FILTER_BYTES));

    let error = parse_err(&filter_of_length(MAX_FILTER_BYTES + 1));
    assert!(
        error.message.contains("257 bytes"),
        "message names the length: {}",
        error.message
    );
    assert!(
        error.message.contains("256 bytes"),
        "message names the limit: {}",
        error.message
    );
    assert_eq!(
        error.offset, MAX_FILTER_BYTES,
        "error points at the first byte past the limit"
    );
    assert_eq!(error.found, "\"", "found is the text past the limit");

    // Each み is 3 bytes: 79 of them make 255 bytes, 80 make 258, and byte 256 falls inside
    // the 80th, so the error must start at that character's first byte.
    let multibyte = |count: usize| format!("attributes.kk = \"{}\"", "み".repeat(count));
    let fits = multibyte(79);
    assert_eq!(fits.len(), 255, "length of the fitting multibyte filter");
    parse_ok(&fits);
    let too_long = multibyte(80);
    assert!(
        too_long.chars().count() < MAX_FILTER_BYTES,
        "test needs fewer chars than bytes"
    );
    let error = parse_err(&too_long);
    assert!(
        error.message.contains("258 bytes"),
        "message names the length: {}",
        error.message
    );
    assert_eq!(
        error.offset, 254,
        "error starts at the character that crosses the limit"
    );
    assert_eq!(
        error.found, "み\"",
        "found is the text from that character on"
    );
}

#[test]
fn gcs_notification_cases_match_expected_ids() {
    let cases: Vec<GcsCase> = load_json_lines(GCS_CASES);
    let messages: Vec<GcsMessageLine> = load_json_lines(GCS_MESSAGES);
    assert_eq!(cases.len(), 8, "GCS case count");
    assert_eq!(messages.len(), 5, "GCS message count");
    for case in &cases {
        let filter = parse_ok(&case.filter);
        let matched: BTreeSet<String> = messages
            .iter()
            .filter(|line| filter.matches(&line.message.attributes))
            .map(|line| line.id.clone())
            .collect();
        assert_eq!(matched, case.expect, "GCS case {:?}", case.filter);
    }
}

/// One rejected filter: where the error points, what it quotes, and part of its message.
struct ErrorCase {
    filter: &'static str,
    line: u32,
    column: u32,
    found: &'static str,
    message: &'static str,
}

const ERROR_CASES: &[ErrorCase] = &[
    ErrorCase {
        filter: r#""com" = attributes.name"#,
        line: 1,
        column: 1,
        found: r#""com""#,
        message: "cannot stand alone or come first",
    },
    ErrorCase {
        filter: "attributes.name = attributes.website",
        line: 1,
        column: 19,
        found: "attributes",
        message: "comparing an attribute with another attribute is not supported",
    },
    ErrorCase {
        filter: r"attributes:\u307F\u3093\u306A",
        line: 1,
        column: 12,
        found: r"\u307F",
        message: "only inside string literals",
    },
    ErrorCase {
        filter: "attributes:a AND attributes:b OR attributes:c",
        line: 1,
        column: 31,
        found: "OR",
        message: "AND and OR cannot be mixed without parentheses; add parentheses",
    },
    ErrorCase {
        filter: r#"attributes.name = "com" AND ("net" OR "org")"#,
        line: 1,
        column: 30,
        found: r#""net""#,
        message: "cannot stand alone",
    },
    ErrorCase {
        filter: r#"hasSuffix(attributes.name, "om")"#,
        line: 1,
        column: 1,
        found: "hasSuffix",
        message: "unknown function hasSuffix; hasPrefix is the only supported function",
    },
    ErrorCase {
        filter: r#"attributes.name =~ "c.*""#,
        line: 1,
        column: 17,
        found: "=~",
        message: "regular expressions are not supported",
    },
    ErrorCase {
        filter: r#"attributes.name < "c""#,
        line: 1,
        column: 17,
        found: "<",
        message: "the operator < is not supported",
    },
    ErrorCase {
        filter: "attributes:a and attributes:b",
        line: 1,
        column: 14,
        found: "and",
        message: "write AND in place of and",
    },
    ErrorCase {
        filter: "not attributes:a",
        line: 1,
        column: 1,
        found: "not",
        message: "write NOT in place of not",
    },
    ErrorCase {
        filter: "attributes:a AND\n  attributes.b = c",
        line: 2,
        column: 18,
        found: "c",
        message: "values must be in double quotes",
    },
    ErrorCase {
        filter: r#"attributes.b = "abc"#,
        line: 1,
        column: 16,
        found: r#""abc"#,
        message: "string literal is not closed",
    },
    ErrorCase {
        filter: "(attributes:a",
        line: 1,
        column: 14,
        found: "",
        message: "missing ) to close the ( at line 1, column 1",
    },
    ErrorCase {
        filter: r#"attributes:"みんな" OR attributes.x = y"#,
        line: 1,
        column: 36,
        found: "y",
        message: "expected a string literal after `=`",
    },
    ErrorCase {
        filter: r#"attributes.x = "\q""#,
        line: 1,
        column: 17,
        found: r"\q",
        message: "unknown escape sequence",
    },
    ErrorCase {
        filter: r#"attributes.x = "\xE3""#,
        line: 1,
        column: 17,
        found: r"\xE3",
        message: "use \\u00E3",
    },
    ErrorCase {
        filter: r#"attributes.x = "\u12""#,
        line: 1,
        column: 17,
        found: r"\u12",
        message: "needs exactly 4 hex digits",
    },
    ErrorCase {
        filter: r#"attributes.x = "\uD800""#,
        line: 1,
        column: 17,
        found: r"\uD800",
        message: "not a Unicode scalar value",
    },
    ErrorCase {
        filter: r#"attributes . name = "x""#,
        line: 1,
        column: 12,
        found: ".",
        message: "remove the space before the .",
    },
    ErrorCase {
        filter: r#"attributes.a.b = "x""#,
        line: 1,
        column: 13,
        found: ".",
        message: "nested keys are not supported",
    },
    ErrorCase {
        filter: r#"attributes:a = "x""#,
        line: 1,
        column: 14,
        found: "=",
        message: "attributes:KEY only tests that a key exists",
    },
    ErrorCase {
        filter: "NOT NOT attributes:a",
        line: 1,
        column: 5,
        found: "NOT",
        message: "a negation cannot directly follow NOT or -",
    },
    ErrorCase {
        filter: "attributes:a)",
        line: 1,
        column: 13,
        found: ")",
        message: "unmatched )",
    },
    ErrorCase {
        filter: "hasPrefix(attributes.a)",
        line: 1,
        column: 23,
        found: ")",
        message: "expected , and a prefix after the key",
    },
    ErrorCase {
        filter: "attributes.a = 'x'",
        line: 1,
        column: 16,
        found: "'",
        message: "put string literals in double quotes",
    },
    ErrorCase {
        filter: "attributes:a && attributes:b",
        line: 1,
        column: 14,
        found: "&",
        message: "write AND",
    },
    ErrorCase {
        filter: r#"attributes.name = "com" AND"#,
        line: 1,
        column: 28,
        found: "",
        message: "found the end of the filter",
    },
    ErrorCase {
        filter: "attributes:a attributes:b",
        line: 1,
        column: 14,
        found: "attributes",
        message: "join conditions with AND or OR",
    },
    ErrorCase {
        filter: r#"data.x = "y""#,
        line: 1,
        column: 1,
        found: "data",
        message: "filters can only test message attributes",
    },
    ErrorCase {
        filter: "attributes.a = \"line\nbreak\"",
        line: 1,
        column: 21,
        found: "\n",
        message: "must be written as an escape sequence",
    },
    ErrorCase {
        filter: "attributes:-key",
        line: 1,
        column: 12,
        found: "-",
        message: "put a key that starts with - in double quotes",
    },
    ErrorCase {
        filter: "NOT(attributes:a)",
        line: 1,
        column: 1,
        found: "NOT",
        message: "put a space after NOT",
    },
    ErrorCase {
        filter: "- attributes:a",
        line: 1,
        column: 1,
        found: "-",
        message: "remove the space after -",
    },
    ErrorCase {
        filter: "attributes:a AND(attributes:b)",
        line: 1,
        column: 14,
        found: "AND",
        message: "put a space on each side of AND",
    },
    ErrorCase {
        filter: "(attributes:a)OR attributes:b",
        line: 1,
        column: 15,
        found: "OR",
        message: "put a space on each side of OR",
    },
    ErrorCase {
        filter: r#"hasPrefix (attributes.a, "b")"#,
        line: 1,
        column: 11,
        found: "(",
        message: "remove the space between hasPrefix and (",
    },
    ErrorCase {
        filter: "NOT not attributes:a",
        line: 1,
        column: 5,
        found: "not",
        message: "write NOT in place of not",
    },
];

#[test]
fn errors_point_at_offending_token() {
    for case in ERROR_CASES {
        let error = parse_err(case.filter);
        let position = (error.position.line, error.position.column);
        assert_eq!(
            position,
            (case.line, case.column),
            "position for {:?}",
            case.filter
        );
        assert_eq!(error.found, case.found, "found text for {:?}", case.filter);
        assert!(
            error.message.contains(case.message),
            "message for {:?} should contain {:?} but is {:?}",
            case.filter,
            case.message,
            error.message
        );
    }
}

#[test]
fn error_render_underlines_found_text() {
    let filter = "attributes:a AND attributes:b OR attributes:c";
    let error = parse_err(filter);
    let rendered = error.render(filter);
    let expected = format!(
        "invalid filter at line 1, column 31: {}\n  {filter}\n  {}^^",
        error.message,
        " ".repeat(30)
    );
    assert_eq!(rendered, expected, "rendered error for {filter:?}");
}

#[test]
fn nesting_limit_is_enforced() {
    let nested = |depth: usize| format!("{}attributes:a{}", "(".repeat(depth), ")".repeat(depth));
    let deepest = nested(MAX_NESTING);
    assert!(
        deepest.len() <= MAX_FILTER_BYTES,
        "test filter must fit the length limit"
    );
    assert_eq!(
        parse_ok(&deepest).to_string(),
        "attributes:a",
        "{MAX_NESTING} nested parentheses"
    );
    let error = parse_err(&nested(MAX_NESTING + 1));
    assert_eq!(
        error.position.column as usize,
        MAX_NESTING + 1,
        "points at the deepest ("
    );
    assert!(
        error.message.contains("nested more than 100 levels"),
        "message: {}",
        error.message
    );
}

#[test]
fn canonical_form_examples() {
    let cases = [
        ("attributes:name", "attributes:name"),
        ("-attributes:\"lang\"", "NOT attributes:lang"),
        ("attributes.name=\"com\"", "attributes.name = \"com\""),
        ("attributes.name!=\"com\"", "attributes.name != \"com\""),
        (
            "attributes:a AND attributes:b AND attributes:c",
            "(attributes:a AND attributes:b AND attributes:c)",
        ),
        (
            "(NOT attributes:name) OR attributes.name = \"co\"",
            "(NOT attributes:name OR attributes.name = \"co\")",
        ),
        (
            "NOT ( attributes:a OR attributes:b )",
            "NOT (attributes:a OR attributes:b)",
        ),
        (
            "(attributes:a AND attributes:b) AND attributes:c",
            "((attributes:a AND attributes:b) AND attributes:c)",
        ),
        (
            r#"attributes:"\u307F\u3093\u306A""#,
            r#"attributes:"みんな""#,
        ),
        (
            r#"attributes."iana.org/language_tag" = "en""#,
            r#"attributes."iana.org/language_tag" = "en""#,
        ),
        (
            r#"hasPrefix( attributes.name ,"co" )"#,
            r#"hasPrefix(attributes.name, "co")"#,
        ),
        ("((attributes:a))", "attributes:a"),
        (
            r#"attributes.k = "tab\there \"q\" \\""#,
            r#"attributes.k = "tab\there \"q\" \\""#,
        ),
        (
            r#"attributes.k = "\a\x41\101\U0001F600""#,
            "attributes.k = \"\\x07AA\u{1F600}\"",
        ),
        ("-(-attributes:a)", "NOT (NOT attributes:a)"),
        ("attributes:AND", "attributes:AND"),
        ("attributes : name", "attributes:name"),
        (
            "attributes:a\n\tAND\r\nattributes:b",
            "(attributes:a AND attributes:b)",
        ),
        ("attributes:\"\"", "attributes:\"\""),
        (" \t\n", ""),
        ("", ""),
    ];
    for (input, canonical) in cases {
        let filter = parse_ok(input);
        assert_eq!(filter.to_string(), canonical, "canonical form of {input:?}");
        assert_eq!(filter.as_str(), input, "as_str of {input:?}");
        let reparsed = parse_ok(canonical);
        assert_eq!(
            reparsed.expression(),
            filter.expression(),
            "tree of {canonical:?}"
        );
    }
}

#[test]
fn escape_sequences_decode() {
    let cases = [
        (r#""\"""#, "\""),
        (r#""\\""#, "\\"),
        (r#""\'\`\?""#, "'`?"),
        (r#""\a\b\f\n\r\t\v""#, "\u{7}\u{8}\u{c}\n\r\t\u{b}"),
        (r#""\x48\X49""#, "HI"),
        (r#""\110\111""#, "HI"),
        (r#""\u307F""#, "み"),
        (r#""\U0001F600""#, "\u{1F600}"),
        (r#""\u0000""#, "\0"),
        (r#""み""#, "み"),
    ];
    for (literal, value) in cases {
        let filter = parse_ok(&format!("attributes.k = {literal}"));
        let expected = Expr::Equals {
            key: "k".to_owned(),
            value: value.to_owned(),
        };
        assert_eq!(
            filter.expression(),
            Some(&expected),
            "decoding of {literal}"
        );
    }
}

#[test]
fn invalid_escapes_are_rejected() {
    let cases = [
        r"\q",
        r"\x4",
        r"\x80",
        r"\200",
        r"\8",
        r"\1",
        r"\u00",
        r"\UFFFFFFFF",
        r"\uDFFF",
    ];
    for escape in cases {
        let filter = format!("attributes.k = \"{escape}\"");
        let error = parse_err(&filter);
        assert_eq!(
            error.offset,
            "attributes.k = \"".len(),
            "offset for {escape}"
        );
        assert!(
            escape.starts_with(&error.found) || error.found.starts_with(escape),
            "found {:?} for escape {escape}",
            error.found
        );
    }
}

#[test]
fn empty_filter_matches_everything() {
    for text in ["", "   ", "\n\t"] {
        let filter = parse_ok(text);
        assert!(filter.expression().is_none(), "{text:?} has no expression");
        assert!(
            filter.matches(&attributes(&[])),
            "{text:?} on no attributes"
        );
        assert!(
            filter.matches(&attributes(&[("a", "b")])),
            "{text:?} on one attribute"
        );
    }
}

#[test]
fn missing_key_semantics() {
    let empty = attributes(&[]);
    let cases = [
        ("attributes.name != \"com\"", true),
        ("attributes.name = \"com\"", false),
        ("attributes:name", false),
        ("hasPrefix(attributes.name, \"\")", false),
        ("NOT hasPrefix(attributes.name, \"co\")", true),
        ("NOT attributes.name = \"com\"", true),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse_ok(text).matches(&empty),
            want,
            "{text} on a message without name"
        );
    }
}

#[test]
fn matching_is_exact_and_case_sensitive() {
    let message = attributes(&[("Name", "Com"), ("name", "com ")]);
    let cases = [
        ("attributes.Name = \"Com\"", true),
        ("attributes.Name = \"com\"", false),
        ("attributes.NAME = \"Com\"", false),
        ("attributes.name = \"com\"", false),
        ("hasPrefix(attributes.name, \"com\")", true),
        ("hasPrefix(attributes.name, \"Com\")", false),
        ("attributes:nAme", false),
    ];
    for (text, want) in cases {
        assert_eq!(parse_ok(text).matches(&message), want, "{text}");
    }
}

#[test]
fn every_map_type_implements_attributes() {
    let filter = parse_ok("attributes.k = \"v\"");
    let owned_hash = attributes(&[("k", "v")]);
    let owned_tree: BTreeMap<String, String> = owned_hash.clone().into_iter().collect();
    let borrowed_hash: HashMap<&str, &str> = HashMap::from([("k", "v")]);
    let borrowed_tree: BTreeMap<&str, &str> = BTreeMap::from([("k", "v")]);
    assert!(filter.matches(&owned_hash), "HashMap<String, String>");
    assert!(filter.matches(&owned_tree), "BTreeMap<String, String>");
    assert!(filter.matches(&borrowed_hash), "HashMap<&str, &str>");
    assert!(filter.matches(&borrowed_tree), "BTreeMap<&str, &str>");
    let dynamic: &dyn Attributes = &owned_hash;
    assert!(filter.matches(dynamic), "dyn Attributes");
}

#[test]
fn from_str_matches_parse() {
    let text = "attributes:a OR attributes:b";
    let parsed: SubscriptionFilter = text.parse().expect("valid filter");
    assert_eq!(
        parsed.expression(),
        parse_ok(text).expression(),
        "FromStr of {text}"
    );
}

// Property tests.

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "name", "k-1", "_x", "9"]),
        1 => prop::sample::select(vec![
            "AND", "NOT", "x.y", "iana.org/language_tag", "みんな", "", "-lead", "two words",
            "q\"uote", "back\\slash", "\u{1}",
        ]),
    ]
    .prop_map(str::to_owned)
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["", "a", "ab", "b", "com", "co"]).prop_map(str::to_owned),
        1 => "[ab\"\\\\\t\n\u{7}\u{85}é😀]{0,3}",
    ]
}

fn expr_strategy() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        key_strategy().prop_map(|key| Expr::HasKey { key }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::Equals { key, value }),
        (key_strategy(), value_strategy()).prop_map(|(key, value)| Expr::NotEquals { key, value }),
        (key_strategy(), value_strategy())
            .prop_map(|(key, prefix)| Expr::HasPrefix { key, prefix }),
    ];
    leaf.prop_recursive(5, 12, 3, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|operand| Expr::Not(Box::new(operand))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn attributes_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key_strategy(), value_strategy(), 0..6)
}

/// Evaluates `expression` as Google's documentation describes, written independently of
/// the crate's evaluator.
fn reference_matches(expression: &Expr, attributes: &BTreeMap<String, String>) -> bool {
    match expression {
        Expr::HasKey { key } => attributes.contains_key(key),
        Expr::Equals { key, value } => attributes.get(key) == Some(value),
        Expr::NotEquals { key, value } => !reference_matches(
            &Expr::Equals {
                key: key.clone(),
                value: value.clone(),
            },
            attributes,
        ),
        Expr::HasPrefix { key, prefix } => match attributes.get(key) {
            Some(actual) => actual.as_bytes().get(..prefix.len()) == Some(prefix.as_bytes()),
            None => false,
        },
        Expr::Not(operand) => !reference_matches(operand, attributes),
        Expr::And(operands) => {
            operands
                .iter()
                .filter(|operand| !reference_matches(operand, attributes))
                .count()
                == 0
        }
        Expr::Or(operands) => {
            operands
                .iter()
                .filter(|operand| reference_matches(operand, attributes))
                .count()
                > 0
        }
    }
}

/// Pieces of filter text, valid and invalid, that random concatenations draw from.
const FRAGMENTS: &[&str] = &[
    "attributes",
    ".",
    ":",
    "hasPrefix",
    "(",
    ")",
    ",",
    " ",
    "AND",
    "OR",
    "NOT",
    "-",
    "\"v\"",
    "\"",
    "\\",
    "\\x4",
    "\\u30",
    "\\",
    "=",
    "!=",
    "=~",
    "<",
    "k",
    "and",
    "み",
    "\n",
    "\t",
    "'",
    "\u{0}",
    "\u{a0}",
];

fn assert_error_is_consistent(text: &str, error: &FilterError) {
    assert!(
        error.offset <= text.len(),
        "offset {} past end of {text:?}",
        error.offset
    );
    assert!(
        text.is_char_boundary(error.offset),
        "offset {} splits {text:?}",
        error.offset
    );
    assert!(
        text[error.offset..].starts_with(&error.found),
        "found {:?} is not at offset {} of {text:?}",
        error.found,
        error.offset
    );
    assert!(!error.message.is_empty(), "empty message for {text:?}");
    let _ = error.render(text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn display_then_parse_gives_same_tree(expression in expr_strategy()) {
        let text = expression.to_string();
        prop_assume!(text.len() <= MAX_FILTER_BYTES);
        let filter = SubscriptionFilter::parse(&text)
            .map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        prop_assert_eq!(filter.expression(), Some(&expression), "tree of {:?}", text);
        prop_assert_eq!(filter.to_string(), text, "canonical form is stable");
    }

    #[test]
    fn not_negates_filter(
        expression in expr_strategy(),
        message in attributes_strategy(),
    ) {
        let text = expression.to_string();
        let negated_text = format!("NOT ({text})");
        let minus_text = format!("-({text})");
        prop_assume!(negated_text.len() <= MAX_FILTER_BYTES);
        let filter = SubscriptionFilter::parse(&text)
            .map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        let negated = SubscriptionFilter::parse(&negated_text)
            .map_err(|error| TestCaseError::fail(format!("{negated_text:?}: {error}")))?;
        let minus = SubscriptionFilter::parse(&minus_text)
            .map_err(|error| TestCaseError::fail(format!("{minus_text:?}: {error}")))?;
        let matched = filter.matches(&message);
        prop_assert_eq!(negated.matches(&message), !matched, "{} on {:?}", negated_text, message);
        prop_assert_eq!(minus.matches(&message), !matched, "{} on {:?}", minus_text, message);
    }

    #[test]
    fn evaluation_agrees_with_reference(
        expression in expr_strategy(),
        message in attributes_strategy(),
    ) {
        let text = expression.to_string();
        prop_assume!(text.len() <= MAX_FILTER_BYTES);
        let filter = SubscriptionFilter::parse(&text)
            .map_err(|error| TestCaseError::fail(format!("{text:?}: {error}")))?;
        let want = reference_matches(&expression, &message);
        prop_assert_eq!(filter.matches(&message), want, "{} on {:?}", text, message);
    }

    #[test]
    fn arbitrary_text_never_panics(
        text in prop_oneof![
            any::<String>(),
            "\\PC{0,300}",
            prop::collection::vec(prop::sample::select(FRAGMENTS), 0..60)
                .prop_map(|pieces| pieces.concat()),
        ],
        message in attributes_strategy(),
    ) {
        match SubscriptionFilter::parse(&text) {
            Ok(filter) => {
                let _ = filter.matches(&message);
                let canonical = filter.to_string();
                if canonical.len() <= MAX_FILTER_BYTES {
                    let reparsed = SubscriptionFilter::parse(&canonical)
                        .map_err(|error| TestCaseError::fail(format!("{canonical:?}: {error}")))?;
                    prop_assert_eq!(reparsed.expression(), filter.expression(), "{:?}", text);
                }
            }
            Err(error) => assert_error_is_consistent(&text, &error),
        }
    }
}
