//! Inputs that the Logging filter parser or printer once got wrong, found by the property
//! tests, the fuzzer or review and reduced to the smallest case.

use std::process::Command;

use sluice_router::filter::{parse, MAX_FILTER_CHARS, MAX_NESTING};

/// Parses `text`, prints the tree and parses the printed text, which must give the same tree.
fn assert_round_trip(text: &str) {
    let tree = parse(text).unwrap_or_else(|err| panic!("{text:?} does not parse: {err}"));
    let printed = tree.to_string();
    let reparsed = parse(&printed)
        .unwrap_or_else(|err| panic!("{text:?} prints as {printed:?}, which fails: {err}"));
    assert_eq!(
        reparsed, tree,
        "{text:?} prints as {printed:?}, a different tree"
    );
}

/// `f(f(...(x)...))`, nested `depth` calls deep.
fn nested_calls(depth: usize) -> String {
    format!("{}x{}", "f(".repeat(depth), ")".repeat(depth))
}

#[test]
fn nested_calls_count_toward_nesting_limit() {
    // The parser recurses into call arguments as it does into parentheses, so calls count
    // toward MAX_NESTING too.
    let text = nested_calls(MAX_NESTING + 1);
    assert!(
        parse(&text).is_err(),
        "{} nested calls parse, past the limit of {MAX_NESTING}",
        MAX_NESTING + 1
    );
}

/// Environment variable that marks the child process of
/// [`deep_nested_calls_fit_in_thread_stack`].
const CHILD_ENV: &str = "SLUICE_NESTED_CALLS_CHILD";

#[test]
fn deep_nested_calls_fit_in_thread_stack() {
    // A stack overflow aborts the whole test binary, so the parse runs in a child process
    // that executes only `nested_calls_child`.
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args(["nested_calls_child", "--exact", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("child test process starts");
    assert!(
        output.status.success(),
        "parsing {} nested calls on a 2 MiB stack failed: {}\n{}",
        MAX_FILTER_CHARS / 3,
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Parses the deepest call nesting that fits in the length limit on a 2 MiB stack, which is
/// what Rust currently gives spawned threads and test threads by default. Does nothing unless
/// started by [`deep_nested_calls_fit_in_thread_stack`].
#[test]
fn nested_calls_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let text = nested_calls(MAX_FILTER_CHARS / 3);
    assert!(text.chars().count() <= MAX_FILTER_CHARS);
    let parsed = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || parse(&text).is_ok())
        .expect("thread starts")
        .join();
    assert!(parsed.is_ok(), "the parse thread panicked");
}

#[test]
fn numeric_call_argument_stays_a_path() {
    // `0.25` is an Arg::Path, and printed as "0.25" it would parse as an Arg::Value.
    assert_round_trip("sample(insertId, 0.25)");
}

#[test]
fn escaped_call_argument_stays_a_path() {
    assert_round_trip(r"f(a\ b)");
    assert_round_trip("f(AND)");
}

#[test]
fn call_name_with_escape_prints_back() {
    // Printed without the backslash, `a b()` is a search for `a` and a call of `b`.
    assert_round_trip(r"a\ b()");
    assert_round_trip(r"a\.b(x)");
}

#[test]
fn escaped_leading_minus_prints_back() {
    // A bare word may start with `\-`. Printed without the backslash, `-` means NOT.
    assert_round_trip(r"\-");
    assert_round_trip(r"\-x");
    assert_round_trip(r"x=\-1");
    assert_round_trip(r"jsonPayload.a=(\-b)");
    assert_round_trip(r"\-f()");
}

#[test]
fn escaped_double_minus_prints_back() {
    // `\--x` is a search for `--x`. Printed without the backslash, `--x` is a comment.
    assert_round_trip(r"\--x");
    assert_round_trip(r"a \--x");
}

#[test]
fn not_chain_at_half_limit_prints_back() {
    // Printed as `NOT (NOT a)`, each NOT would cost two levels of nesting instead of one.
    let depth = MAX_NESTING / 2 + 1;
    assert_round_trip(&format!("{}a", "NOT ".repeat(depth)));
}

#[test]
fn or_inside_and_at_half_limit_prints_back() {
    // `a b OR c` means `a AND (b OR c)`, and printing those parentheses would add a level.
    let mut text = "a".to_owned();
    for _ in 0..=MAX_NESTING / 2 {
        text = format!("a b OR ({text})");
    }
    assert_round_trip(&text);
}
