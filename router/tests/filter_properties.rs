//! Property tests for the Logging query language.
//!
//! - Printing any tree the parser can produce and parsing the text gives the same tree.
//! - `NOT f` is the negation of `f` on every entry, De Morgan's laws hold, AND and OR are
//!   commutative, `explain` agrees with `matches`, and a `FilterSet` selects exactly the
//!   filters that match.
//! - No input makes parse, compile, `matches` or `explain` panic, nesting past
//!   `MAX_NESTING` is a clean error, and the length limit counts characters.
//!
//! Failing cases are reported shrunk by proptest. Bugs found here and by the fuzzer are kept,
//! reduced, in `filter_regressions.rs`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value as Json};
use sluice_router::filter::ast::{
    Arg, Call, Comparable, Expr, FieldPath, Op, Query, Restriction, Rhs, Segment, Span, Value,
    ValueExpr,
};
use sluice_router::filter::{parse, FilterError, FilterSet, LogFilter, Position};
use sluice_router::filter::{MAX_FILTER_CHARS, MAX_NESTING};

const KEYWORDS: [&str; 3] = ["AND", "OR", "NOT"];

fn is_keyword(word: &str) -> bool {
    KEYWORDS.contains(&word)
}

// ---------------------------------------------------------------------------------------------
// Trees the parser can produce
// ---------------------------------------------------------------------------------------------

/// Characters that stress the printer: every character that ends a bare word, escapes, quote
/// and backslash, control and Unicode white space, and non-ASCII letters.
const TRICKY_CHARS: &[char] = &[
    '\\', '"', '\n', '\t', '\r', '\0', '\u{1}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}',
    '\u{200b}', 'é', 'ß', 'İ', 'ǅ', '😀', '(', ')', '.', ':', '=', '~', '!', '<', '>', '*', ',',
    '-', '+', ' ', '/', '_', 'u', 'x', '0', '7',
];

fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        2 => proptest::char::range('0', '9'),
        4 => select(TRICKY_CHARS),
        1 => any::<char>(),
    ]
}

/// Any text, including the empty string.
fn any_text() -> impl Strategy<Value = String> {
    vec(text_char(), 0..10).prop_map(String::from_iter)
}

/// Words such as `0.25`, `10.1.2.3` and `1.`, where the lexer keeps a dot between digits.
fn numeric_word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}",
        "[0-9]{1,2}\\.[a-z]?",
        "[0-9]\\.\\.[0-9]",
    ]
}

/// Generates text for a bare word, which is never empty. Special characters, and a leading
/// `-` that would read as NOT, are written with a backslash.
fn bare_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(text_char(), 1..10).prop_map(String::from_iter),
        1 => numeric_word(),
        1 => "--?[a-z0-9]{0,3}",
    ]
}

fn bare_non_keyword() -> impl Strategy<Value = String> {
    bare_text().prop_filter("keywords are operators here", |text| !is_keyword(text))
}

fn value(text: String, quoted: bool) -> Value {
    Value {
        text,
        quoted,
        span: Span::default(),
    }
}

fn quoted_value() -> impl Strategy<Value = Value> {
    any_text().prop_map(|text| value(text, true))
}

/// Generates search terms: quoted text, or a bare word that is not a keyword.
fn global_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        quoted_value(),
        bare_non_keyword().prop_map(|text| value(text, false)),
    ]
}

/// Generates the value directly after an operator, where `AND`, `OR` and `NOT` are plain
/// words.
fn operand_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => global_value(),
        1 => select(KEYWORDS.to_vec()).prop_map(|word| value(word.to_owned(), false)),
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    (any_text(), any::<bool>()).prop_map(|(name, quoted)| Segment { name, quoted })
}

fn field_path(segments: std::ops::Range<usize>) -> impl Strategy<Value = FieldPath> {
    vec(segment(), segments).prop_map(|segments| FieldPath {
        segments,
        span: Span::default(),
    })
}

/// Generates identifiers such as `cast` or `log_id`, which are never keywords.
fn identifier() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_é-]{0,8}".prop_filter("keywords are operators", |name| !is_keyword(name))
}

/// Generates call names: identifiers, number-like words and any other bare word, which the
/// printer escapes.
fn call_name(allow_keywords: bool) -> BoxedStrategy<String> {
    let names = prop_oneof![
        4 => identifier(),
        1 => "[0-9]{1,2}(\\.[0-9])?",
        2 => bare_non_keyword(),
    ];
    if allow_keywords {
        prop_oneof![4 => names, 1 => select(KEYWORDS.to_vec()).prop_map(str::to_owned)].boxed()
    } else {
        names.boxed()
    }
}

/// Generates function calls nested at most `depth` calls deep. Only the outermost name must
/// avoid the keywords, because inside an argument list `NOT(x)` is a call.
fn call(depth: u32, outermost: bool) -> BoxedStrategy<Call> {
    // A lone path argument comes from one bare word, so it is never empty, and inside the
    // argument list a keyword is a plain word.
    let lone_word = prop_oneof![
        4 => bare_text(),
        1 => select(KEYWORDS.to_vec()).prop_map(str::to_owned),
    ];
    let path = prop_oneof![
        lone_word.prop_map(|name| FieldPath {
            segments: vec![Segment {
                name,
                quoted: false
            }],
            span: Span::default(),
        }),
        field_path(2..4),
    ]
    .prop_map(Arg::Path);
    let string = quoted_value().prop_map(Arg::Value);
    let arg = if depth == 0 {
        prop_oneof![path, string].boxed()
    } else {
        let nested = call(depth - 1, false).prop_map(Arg::Call);
        prop_oneof![2 => path, 2 => string, 1 => nested].boxed()
    };
    (call_name(!outermost), vec(arg, 0..4))
        .prop_map(|(name, args)| Call {
            name,
            args,
            span: Span::default(),
        })
        .boxed()
}

const OPS: [Op; 9] = [
    Op::Eq,
    Op::Ne,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::Has,
    Op::Regex,
    Op::NotRegex,
];

/// Splices operands of the same kind into their parent, as the parser does for
/// `a AND (b AND c)`.
fn flatten_and(items: Vec<Expr>) -> Expr {
    let mut flat = Vec::new();
    for item in items {
        match item {
            Expr::And(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    Expr::And(flat)
}

fn flatten_or(items: Vec<Expr>) -> Expr {
    let mut flat = Vec::new();
    for item in items {
        match item {
            Expr::Or(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    Expr::Or(flat)
}

fn flatten_value_and(items: Vec<ValueExpr>) -> ValueExpr {
    let mut flat = Vec::new();
    for item in items {
        match item {
            ValueExpr::And(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    ValueExpr::And(flat)
}

fn flatten_value_or(items: Vec<ValueExpr>) -> ValueExpr {
    let mut flat = Vec::new();
    for item in items {
        match item {
            ValueExpr::Or(inner) => flat.extend(inner),
            other => flat.push(other),
        }
    }
    ValueExpr::Or(flat)
}

/// Generates parenthesised value lists. Regular-expression operators take quoted values only,
/// and a bare value inside the list must not be a keyword.
fn value_list(regex: bool) -> impl Strategy<Value = ValueExpr> {
    let leaf = if regex {
        quoted_value().boxed()
    } else {
        global_value().boxed()
    };
    leaf.prop_map(ValueExpr::Value)
        .prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                inner
                    .clone()
                    .prop_map(|item| ValueExpr::Not(Box::new(item))),
                vec(inner.clone(), 2..4).prop_map(flatten_value_and),
                vec(inner, 2..4).prop_map(flatten_value_or),
            ]
        })
}

fn rhs(op: Op) -> BoxedStrategy<Rhs> {
    match op {
        Op::Regex | Op::NotRegex => prop_oneof![
            3 => quoted_value().prop_map(Rhs::Value),
            1 => value_list(true).prop_map(Rhs::List),
        ]
        .boxed(),
        Op::Has => prop_oneof![
            3 => operand_value().prop_map(Rhs::Value),
            1 => Just(Rhs::Any),
            1 => value_list(false).prop_map(Rhs::List),
        ]
        .boxed(),
        _ => prop_oneof![
            3 => operand_value().prop_map(Rhs::Value),
            1 => value_list(false).prop_map(Rhs::List),
        ]
        .boxed(),
    }
}

fn restriction() -> impl Strategy<Value = Restriction> {
    let lhs = prop_oneof![
        4 => field_path(1..4).prop_map(Comparable::Field),
        1 => call(1, true).prop_map(Comparable::Call),
    ];
    (lhs, select(OPS.to_vec()))
        .prop_flat_map(|(lhs, op)| (Just(lhs), Just(op), rhs(op)))
        .prop_map(|(lhs, op, rhs)| Restriction {
            lhs,
            op,
            rhs,
            span: Span::default(),
        })
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        4 => restriction().prop_map(Expr::Restriction),
        2 => global_value().prop_map(Expr::Global),
        1 => call(2, true).prop_map(Expr::Call),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|item| Expr::Not(Box::new(item))),
            vec(inner.clone(), 2..4).prop_map(flatten_and),
            vec(inner, 2..4).prop_map(flatten_or),
        ]
    })
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        1 => Just(Query { expr: None }),
        20 => expr().prop_map(|expr| Query { expr: Some(expr) }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn printed_tree_parses_back_equal(query in query()) {
        let printed = query.to_string();
        let reparsed = parse(&printed)
            .map_err(|err| TestCaseError::fail(format!("{printed:?} does not parse: {err}")))?;
        prop_assert_eq!(&reparsed, &query, "printed as {:?}", printed);

        // `{:#}` quotes every value, so the tree differs, but the text is a fixed point.
        let quoted = format!("{query:#}");
        let requoted = parse(&quoted)
            .map_err(|err| TestCaseError::fail(format!("{quoted:?} does not parse: {err}")))?;
        prop_assert_eq!(format!("{requoted:#}"), quoted);
    }
}

#[test]
fn empty_query_prints_empty() {
    let empty = Query { expr: None };
    assert_eq!(empty.to_string(), "");
    assert_eq!(parse("").expect("empty filter parses"), empty);
    assert_eq!(
        parse("  -- only a comment\n").expect("comment parses"),
        empty
    );
}

// ---------------------------------------------------------------------------------------------
// Evaluation: negation, De Morgan, commutativity, explain and FilterSet
// ---------------------------------------------------------------------------------------------

/// Field paths of the LogEntry schema, covering every field type, maps, payloads and a
/// message field (`resource`, on which only `:*` compiles).
const FIELDS: &[&str] = &[
    "severity",
    "timestamp",
    "receiveTimestamp",
    "logName",
    "log_name",
    "insertId",
    "trace",
    "traceSampled",
    "resource",
    "resource.type",
    "resource.labels.zone",
    "labels.env",
    "labels.n",
    "jsonPayload.a",
    "jsonPayload.a.b",
    "jsonPayload.n",
    "jsonPayload.\"x.y\"",
    "protoPayload.methodName",
    "protoPayload.request.Policy",
    "httpRequest.status",
    "httpRequest.latency",
    "httpRequest.cacheHit",
    "httpRequest.remoteIp",
    "operation.id",
    "operation.first",
    "sourceLocation.line",
    "textPayload",
];

/// Right-hand sides as written, each valid for some field types and not others.
const VALUES: &[&str] = &[
    "ERROR",
    "error",
    "\"Warning\"",
    "500",
    "0",
    "\"-1\"",
    "1.5",
    "0.25",
    "NaN",
    "\"-Infinity\"",
    "true",
    "FALSE",
    "NULL_VALUE",
    "\"NULL_VALUE\"",
    "2024-01-31",
    "\"2024-01-31T12:00:00Z\"",
    "\"1.5s\"",
    "\"250ms\"",
    "\"\"",
    "x",
    "prod",
    "\"PROD\"",
    "\"a b\"",
    "é",
    "\"SS\"",
    "\"ß\"",
    "10.1.2.3",
    "\"projects/p/logs/syslog\"",
    "(x OR prod)",
    "(NOT ERROR)",
    "(\"a\" AND \"b\")",
];

/// Patterns for `=~` and `!~`, quoted.
const PATTERNS: &[&str] = &[
    "\"^a\"",
    "\"a|b\"",
    "\"(?i)PROD\"",
    "\"\"",
    "\".*\"",
    "\"\\\\d+\"",
    "\"^$\"",
    "\"s\\\\b\"",
    "(\"^p\" OR \"x$\")",
];

/// Conditions that are not a comparison of one field: searches and functions.
const OTHER_CONDITIONS: &[&str] = &[
    "prod",
    "\"10.1\"",
    "\"\"",
    "log_id(\"syslog\")",
    "log_id(cloudaudit.googleapis.com/activity)",
    "source(projects/p)",
    "sample(insertId, 0.5)",
    "sample(jsonPayload.a, 1)",
    "ip_in_net(httpRequest.remoteIp, \"10.0.0.0/8\")",
    "ip_in_net(jsonPayload.a, \"::/0\")",
    "SEARCH(\"prod\")",
    "SEARCH(jsonPayload, \"`a b`\")",
    "cast(httpRequest.status, STRING) = \"404\"",
    "cast(jsonPayload.n, INT64) > 3",
    "cast(jsonPayload.a, FLOAT64) <= 1.5",
    "cast(timestamp, STRING, TIMEZONE(\"Asia/Tokyo\")) : \"+09:00\"",
    "regexp_extract(logName, \"logs/(.*)\") = \"syslog\"",
];

fn condition() -> impl Strategy<Value = String> {
    let comparison = (
        select(FIELDS),
        select(OPS.to_vec()),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(field, op, index)| {
            let rhs = match op {
                Op::Regex | Op::NotRegex => *index.get(PATTERNS),
                Op::Has if index.index(4) == 0 => "*",
                _ => *index.get(VALUES),
            };
            format!("{field}{}{rhs}", op.as_str())
        });
    prop_oneof![
        5 => comparison,
        1 => select(OTHER_CONDITIONS).prop_map(str::to_owned),
    ]
}

/// Generates filters from conditions joined with AND, OR, NOT, `-`, juxtaposition and
/// parentheses.
fn filter_text() -> impl Strategy<Value = String> {
    condition().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|f| format!("NOT ({f})")),
            inner.clone().prop_map(|f| format!("-({f})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) AND ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) OR ({b})")),
        ]
    })
}

/// Paths where generated entries put values, including wrong-type places for typed fields.
const ENTRY_PATHS: &[&[&str]] = &[
    &["severity"],
    &["timestamp"],
    &["receiveTimestamp"],
    &["logName"],
    &["LOGNAME"],
    &["insertId"],
    &["trace"],
    &["traceSampled"],
    &["resource"],
    &["resource", "type"],
    &["resource", "labels", "zone"],
    &["labels", "env"],
    &["labels", "n"],
    &["jsonPayload", "a"],
    &["jsonPayload", "a", "b"],
    &["jsonPayload", "n"],
    &["jsonPayload", "x.y"],
    &["protoPayload", "methodName"],
    &["protoPayload", "METHODNAME"],
    &["protoPayload", "request", "Policy"],
    &["httpRequest", "status"],
    &["httpRequest", "latency"],
    &["httpRequest", "cacheHit"],
    &["httpRequest", "remoteIp"],
    &["operation", "id"],
    &["operation", "first"],
    &["sourceLocation", "line"],
    &["textPayload"],
];

const STRINGS: &[&str] = &[
    "",
    "x",
    "X",
    "prod",
    "PROD",
    "error",
    "ERROR",
    "Warning",
    "500",
    "-1",
    "1.5",
    "0.25",
    "NaN",
    "true",
    "2024-01-31",
    "2024-01-31T12:00:00Z",
    "2024-01-31T21:00:00+09:00",
    "1.5s",
    "-2ms",
    "10.1.2.3",
    "::1",
    "a b",
    "a.b",
    "é",
    "ß",
    "ss",
    "İ",
    "projects/p/logs/syslog",
    "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
    "NULL_VALUE",
];

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        4 => select(STRINGS).prop_map(Json::from),
        1 => any::<String>().prop_map(Json::from),
        2 => select(vec![0_i64, 1, -1, 3, 200, 404, 500, i64::MAX, i64::MIN]).prop_map(Json::from),
        1 => any::<i64>().prop_map(Json::from),
        1 => select(vec![0.25_f64, 1.5, -0.0, 1e308, 3.0]).prop_map(Json::from),
        1 => Just(json!(u64::MAX)),
        1 => any::<bool>().prop_map(Json::from),
        1 => Just(Json::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    scalar().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Json::Array),
            (select(vec!["b", "B", "a", "Policy"]), inner)
                .prop_map(|(key, value)| json!({ key: value })),
        ]
    })
}

/// Inserts `value` at `path`, replacing any non-object met on the way.
fn insert_at(entry: &mut Map<String, Json>, path: &[&str], value: Json) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut map = entry;
    for key in parents {
        let slot = map
            .entry((*key).to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        map = slot
            .as_object_mut()
            .expect("the slot was just made an object");
    }
    map.insert((*last).to_owned(), value);
}

/// Generates LogEntry-shaped objects with values of random JSON types at known paths.
fn entry() -> impl Strategy<Value = Json> {
    vec((select(ENTRY_PATHS), json_value()), 0..8).prop_map(|pairs| {
        let mut entry = Map::new();
        for (path, value) in pairs {
            insert_at(&mut entry, path, value);
        }
        Json::Object(entry)
    })
}

/// Compiles `text`, which must compile because its parts did.
fn compile(text: &str) -> LogFilter {
    LogFilter::new(text).unwrap_or_else(|err| panic!("{text:?} does not compile: {err}"))
}

// Compiling filters and regular expressions dominates the time of these properties, so they
// run fewer cases than the parser properties, and fewer still when one case compiles many
// filters.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn not_negates_every_entry(f in filter_text(), entries in vec(entry(), 1..6)) {
        let Ok(filter) = LogFilter::new(&f) else {
            return Ok(());
        };
        let negated = compile(&format!("NOT ({f})"));
        let minus = compile(&format!("-({f})"));
        for entry in &entries {
            let matched = filter.matches(entry);
            prop_assert_ne!(negated.matches(entry), matched, "NOT ({}) on {}", f, entry);
            prop_assert_ne!(minus.matches(entry), matched, "-({}) on {}", f, entry);
        }
    }

    #[test]
    fn explain_agrees_with_matches(f in filter_text(), entries in vec(entry(), 1..6)) {
        let Ok(filter) = LogFilter::new(&f) else {
            return Ok(());
        };
        for entry in &entries {
            let explanation = filter.explain(entry);
            prop_assert_eq!(explanation.matched, filter.matches(entry), "{} on {}", f, entry);
            prop_assert_eq!(explanation.root.result, explanation.matched);
            prop_assert!(!explanation.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn de_morgan_and_commutativity(
        a in filter_text(),
        b in filter_text(),
        entries in vec(entry(), 1..6),
    ) {
        let (Ok(_), Ok(_)) = (LogFilter::new(&a), LogFilter::new(&b)) else {
            return Ok(());
        };
        let not_or = compile(&format!("NOT (({a}) OR ({b}))"));
        let and_not = compile(&format!("NOT ({a}) AND NOT ({b})"));
        let not_and = compile(&format!("NOT (({a}) AND ({b}))"));
        let or_not = compile(&format!("NOT ({a}) OR NOT ({b})"));
        let a_or_b = compile(&format!("({a}) OR ({b})"));
        let b_or_a = compile(&format!("({b}) OR ({a})"));
        let a_and_b = compile(&format!("({a}) AND ({b})"));
        let b_a = compile(&format!("({b}) ({a})"));
        for entry in &entries {
            prop_assert_eq!(not_or.matches(entry), and_not.matches(entry), "{} / {}", a, b);
            prop_assert_eq!(not_and.matches(entry), or_not.matches(entry), "{} / {}", a, b);
            prop_assert_eq!(a_or_b.matches(entry), b_or_a.matches(entry), "{} / {}", a, b);
            prop_assert_eq!(a_and_b.matches(entry), b_a.matches(entry), "{} / {}", a, b);
        }
    }

    #[test]
    fn reprinted_filter_matches_the_same(f in filter_text(), entries in vec(entry(), 1..6)) {
        let Ok(filter) = LogFilter::new(&f) else {
            return Ok(());
        };
        let tree = parse(&f).expect("a compiled filter parses");
        let reprinted = compile(&tree.to_string());
        for entry in &entries {
            prop_assert_eq!(reprinted.matches(entry), filter.matches(entry), "{} on {}", f, entry);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn filter_set_selects_the_matching_filters(
        texts in vec(filter_text(), 1..8),
        entries in vec(entry(), 1..6),
    ) {
        let filters: Vec<LogFilter> =
            texts.iter().filter_map(|text| LogFilter::new(text).ok()).collect();
        let set = FilterSet::new(filters.clone());
        for entry in &entries {
            let expected: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, filter)| filter.matches(entry))
                .map(|(i, _)| i)
                .collect();
            let texts: Vec<&str> = filters.iter().map(LogFilter::as_str).collect();
            prop_assert_eq!(set.matching(entry), expected, "{:?} on {}", texts, entry);
        }
    }
}

/// The generated filters compile often enough for the evaluation properties to mean
/// something.
#[test]
fn generated_filters_mostly_compile() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = filter_text();
    let total = 500;
    let mut compiled = 0;
    for _ in 0..total {
        let text = strategy
            .new_tree(&mut runner)
            .expect("strategy yields a value")
            .current();
        if LogFilter::new(&text).is_ok() {
            compiled += 1;
        }
    }
    assert!(
        compiled * 4 >= total,
        "only {compiled} of {total} filters compile"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: arbitrary input, nesting and length limits
// ---------------------------------------------------------------------------------------------

/// Returns entries with fields of every shape, for evaluating filters built from random text.
fn fixed_entries() -> Vec<Json> {
    vec![
        json!({}),
        json!({
            "logName": "projects/p/logs/syslog",
            "severity": "ERROR",
            "timestamp": "2024-01-31T12:00:00Z",
            "resource": {"type": "gcs_bucket", "labels": {"zone": "x"}},
            "labels": {"env": "prod"},
            "jsonPayload": {"a": [1, "b", null, {"b": true}], "n": "42"},
            "httpRequest": {"status": 404, "latency": "1.5s", "remoteIp": "10.1.2.3"},
            "textPayload": "Straße ǅ 😀",
        }),
        json!({"severity": 450, "timestamp": 7, "resource": [], "jsonPayload": "text"}),
    ]
}

/// Checks that nothing panics on `text` and that every error points into the text.
fn exercise(text: &str) {
    let entries = fixed_entries();
    match parse(text) {
        Ok(tree) => {
            let _ = tree.to_string();
            let _ = format!("{tree:#}");
        }
        Err(err) => {
            check_error(text, &err);
            assert!(
                text[err.offset..].starts_with(err.found.as_str()),
                "parse error of {text:?} quotes {:?}, not the text at its offset {}",
                err.found,
                err.offset
            );
        }
    }
    match LogFilter::new(text) {
        Ok(filter) => {
            for entry in &entries {
                let matched = filter.matches(entry);
                let explanation = filter.explain(entry);
                assert_eq!(
                    explanation.matched, matched,
                    "explain of {text:?} on {entry}"
                );
                let _ = explanation.to_string();
            }
        }
        Err(err) => check_error(text, &err),
    }
}

fn check_error(text: &str, err: &FilterError) {
    assert!(
        err.offset <= text.len() && text.is_char_boundary(err.offset),
        "error offset {} of {text:?} is not a character boundary",
        err.offset
    );
    assert_eq!(
        err.position,
        Position::of_offset(text, err.offset),
        "error position of {text:?}"
    );
    let _ = err.render(text);
    let _ = err.to_string();
}

/// Tokens of the language and near misses, for random filters that get past the lexer.
const TOKENS: &[&str] = &[
    "(",
    ")",
    "\"",
    "\\",
    ".",
    ":",
    "=",
    "~",
    "!",
    "<",
    ">",
    "*",
    "-",
    ",",
    "=~",
    "!~",
    "!=",
    "<=",
    ">=",
    "AND",
    "OR",
    "NOT",
    "--",
    "\n",
    "\t",
    " ",
    "a",
    "x1",
    "0",
    "0.25",
    "10.1.2.3",
    "severity",
    "jsonPayload",
    "labels",
    "resource",
    "type",
    "logName",
    "httpRequest",
    "status",
    "protoPayload",
    "ERROR",
    "NULL_VALUE",
    "\"s\"",
    "\"\\u00e9\"",
    "\"\\x4",
    "\\ ",
    "é",
    "😀",
    "\u{85}",
    "\u{a0}",
    "log_id",
    "sample",
    "cast",
    "regexp_extract",
    "SEARCH",
    "ip_in_net",
    "source",
    "TIMEZONE",
    "STRING",
    "\"10.0.0.0/8\"",
    "\"(a\"",
    "\"[\"",
];

fn token_soup() -> impl Strategy<Value = String> {
    vec((select(TOKENS), select(vec!["", "", " "])), 0..40).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(token, space)| format!("{token}{space}"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        exercise(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn mutated_valid_filter_never_panics(
        f in filter_text(),
        cut in any::<prop::sample::Index>(),
        insert in select(TOKENS),
    ) {
        let boundaries: Vec<usize> = (0..=f.len()).filter(|i| f.is_char_boundary(*i)).collect();
        let at = *cut.get(&boundaries);
        exercise(&f[..at]);
        exercise(&format!("{}{insert}{}", &f[..at], &f[at..]));
    }
}

fn nested_parentheses(depth: usize) -> String {
    format!("{}a{}", "(".repeat(depth), ")".repeat(depth))
}

fn not_chain(depth: usize) -> String {
    format!("{}a", "NOT ".repeat(depth))
}

fn minus_chain(depth: usize) -> String {
    format!("{}a", "- ".repeat(depth))
}

fn nested_value_list(depth: usize) -> String {
    format!(
        "jsonPayload.a=({}b{})",
        "(".repeat(depth - 1),
        ")".repeat(depth - 1)
    )
}

fn value_not_chain(depth: usize) -> String {
    format!("jsonPayload.a=({}b)", "NOT ".repeat(depth - 1))
}

fn alternating(depth: usize) -> String {
    let mut text = "a".to_owned();
    for level in 0..depth {
        text = if level % 2 == 0 {
            format!("NOT {text}")
        } else {
            format!("({text})")
        };
    }
    text
}

/// Builds a filter that nests `depth` levels deep.
type BuildNested = fn(usize) -> String;

#[test]
fn nesting_limit_boundary() {
    let shapes: [(&str, BuildNested); 6] = [
        ("parentheses", nested_parentheses),
        ("NOT chain", not_chain),
        ("- chain", minus_chain),
        ("value list parentheses", nested_value_list),
        ("value list NOT chain", value_not_chain),
        ("NOT and parentheses", alternating),
    ];
    for (shape, build) in shapes {
        let at_limit = build(MAX_NESTING);
        if let Err(err) = parse(&at_limit) {
            panic!("{shape} {MAX_NESTING} deep is rejected: {err}");
        }
        exercise(&at_limit);
        for depth in [MAX_NESTING + 1, MAX_NESTING * 10, 6_000] {
            let text = build(depth);
            let text = if text.chars().count() > MAX_FILTER_CHARS {
                build(depth / 2)
            } else {
                text
            };
            let err = parse(&text).expect_err("past the nesting limit");
            assert!(
                err.message.contains("levels deep"),
                "{shape} {depth} deep fails with {err}, not the nesting error"
            );
            exercise(&text);
        }
    }
}

#[test]
fn length_limit_counts_characters() {
    // Two-byte characters, so that a limit counted in bytes would reject the shorter text.
    let at_limit = "é".repeat(MAX_FILTER_CHARS);
    let tree = parse(&at_limit).expect("a filter of exactly the maximum length parses");
    assert!(matches!(tree.expr, Some(Expr::Global(_))));
    let filter = LogFilter::new(&at_limit).expect("compiles");
    assert!(filter.matches(&json!({ "textPayload": format!("x{at_limit}x") })));
    assert!(!filter.matches(&json!({"textPayload": "é"})));

    let over = "é".repeat(MAX_FILTER_CHARS + 1);
    let err = parse(&over).expect_err("one character over the limit");
    assert!(err.message.contains(&MAX_FILTER_CHARS.to_string()), "{err}");
    check_error(&over, &err);
    assert!(LogFilter::new(&over).is_err());
}

#[test]
fn length_limit_includes_comments_and_whitespace() {
    let condition = "severity>=ERROR\n-- ";
    let pad = MAX_FILTER_CHARS - condition.chars().count();
    let at_limit = format!("{condition}{}", "x".repeat(pad));
    assert_eq!(at_limit.chars().count(), MAX_FILTER_CHARS);
    LogFilter::new(&at_limit).expect("a filter of exactly the maximum length compiles");

    let over = format!("{at_limit}x");
    assert!(parse(&over).is_err(), "a comment counts toward the limit");
    let spaces = format!("a{}", " ".repeat(MAX_FILTER_CHARS));
    assert!(
        parse(&spaces).is_err(),
        "white space counts toward the limit"
    );
}
