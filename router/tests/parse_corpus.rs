//! Every filter of the parse corpus parses or fails as recorded, and where the corpus gives a
//! fully parenthesised form, both texts give the same tree.

mod support;

use sluice_router::filter::ast::Expr;
use sluice_router::filter::parse;

/// Cases where sluice deliberately differs from the corpus, with the reason.
const DEVIATIONS: &[(&str, &str)] = &[(
    "\"missing operator\"",
    "Cloud Logging accepts a lone quoted phrase as a global search; the corpus records \
     ops-agent, which rejects it",
)];

#[test]
fn parse_corpus_outcomes() {
    let mut failures = Vec::new();
    for case in support::read_jsonl("audit-logs/parse-corpus.jsonl") {
        let filter = case["filter"].as_str().expect("filter is a string");
        let mut expect_parse = case["expect"] == "parse";
        if DEVIATIONS.iter().any(|(text, _)| *text == filter) {
            expect_parse = !expect_parse;
        }
        match (parse(filter), expect_parse) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(tree), false) => {
                failures.push(format!("{filter:?} parsed as {tree}, expected an error"))
            }
            (Err(err), true) => failures.push(format!("{filter:?} failed: {err}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_corpus_canonical_bracketing() {
    let mut checked = 0;
    for case in support::read_jsonl("audit-logs/parse-corpus.jsonl") {
        let Some(canonical) = case["canonical"].as_str() else {
            continue;
        };
        if canonical.contains("...") {
            continue; // abbreviated in the corpus; covered by cis_owner_change_bracketing
        }
        let filter = case["filter"].as_str().expect("filter is a string");
        let canonical = canonical.replace("GLOBAL ", "");
        let parsed = parse(filter).expect("corpus filter parses");
        let expected = parse(&canonical).expect("canonical form parses");
        assert_eq!(
            format!("{parsed:#}"),
            format!("{expected:#}"),
            "bracketing of {filter:?}"
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} canonical forms were checked");
}

#[test]
fn cis_owner_change_bracketing() {
    let filter = "(protoPayload.serviceName=\"cloudresourcemanager.googleapis.com\") AND \
        (ProjectOwnership OR projectOwnerInvitee) OR (x.action=\"REMOVE\" AND x.role=\"roles/owner\") \
        OR (x.action=\"ADD\" AND x.role=\"roles/owner\")";
    let expected = "protoPayload.serviceName=\"cloudresourcemanager.googleapis.com\" AND \
        (ProjectOwnership OR projectOwnerInvitee OR (x.action=\"REMOVE\" AND x.role=\"roles/owner\") \
        OR (x.action=\"ADD\" AND x.role=\"roles/owner\"))";
    let parsed = parse(filter).expect("filter parses");
    let expected = parse(expected).expect("the bracketed form parses");
    assert_eq!(
        parsed, expected,
        "OR binds tighter, so the service clause applies to all"
    );
    let Some(Expr::And(operands)) = &parsed.expr else {
        panic!("the top level is an AND: {parsed}")
    };
    assert_eq!(operands.len(), 2, "service clause AND one OR group");
    assert!(matches!(&operands[1], Expr::Or(alternatives) if alternatives.len() == 4));
}
