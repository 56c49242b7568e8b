//! End-to-end tests of `sluice rules test` and `sluice rules check`, run on the built binary.

use std::io::Read as _;
use std::process::Stdio;

use assert_cmd::Command;
use serde_json::Value;

/// 37 LogEntry objects, one per line.
const ENTRIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/audit-logs/entries.jsonl"
);
const DEFAULT_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");

const GCS_FILTER: &str = r#"resource.type="gcs_bucket""#;
const ERROR_FILTER: &str = "severity>=ERROR";

fn sluice() -> Command {
    Command::cargo_bin("sluice").expect("the sluice binary should be built")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Run {
    let output = command.output().expect("sluice should start");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout should be UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr should be UTF-8"),
    }
}

fn rules_test(filter: &str, extra: &[&str]) -> Run {
    run(sluice()
        .args(["rules", "test", "--filter", filter])
        .args(extra))
}

fn fixture_text() -> String {
    std::fs::read_to_string(ENTRIES).expect("fixture entries.jsonl should be readable")
}

fn write_temp(name: &str, text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("temp file should be writable");
    let path = path.to_str().expect("temp path should be UTF-8").to_owned();
    (dir, path)
}

#[test]
fn matches_printed_unchanged_in_order() {
    let text = fixture_text();
    let lines: Vec<&str> = text.lines().collect();
    let result = rules_test(GCS_FILTER, &[ENTRIES]);
    assert_eq!(
        result.code,
        Some(0),
        "gcs filter exit status; stderr: {}",
        result.stderr
    );
    assert_eq!(result.stderr, "", "gcs filter stderr");
    let printed: Vec<&str> = result.stdout.lines().collect();
    assert_eq!(printed.len(), 4, "gcs filter matches 4 entries");

    let mut last_index = None;
    for line in &printed {
        let index = lines.iter().position(|candidate| candidate == line);
        assert!(
            index.is_some(),
            "printed line is a fixture line byte for byte: {line}"
        );
        assert!(index > last_index, "printed lines keep input order: {line}");
        last_index = index;
    }

    // Select the same lines through --explain --json, which numbers the entries.
    let explained = rules_test(GCS_FILTER, &["--explain", "--json", ENTRIES]);
    let expected: Vec<&str> = explained
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("explain line is JSON"))
        .filter(|record| record["matched"] == Value::Bool(true))
        .map(|record| lines[record["line"].as_u64().expect("line number") as usize - 1])
        .collect();
    assert_eq!(
        printed, expected,
        "output equals the lines that explain marks as matched"
    );
}

#[test]
fn count_prints_number_only() {
    let errors = rules_test(ERROR_FILTER, &["--count", ENTRIES]);
    assert_eq!(errors.stdout, "5\n", "severity>=ERROR count");
    assert_eq!(errors.code, Some(0), "count exit status with matches");

    let gcs = rules_test(GCS_FILTER, &["-c", ENTRIES]);
    assert_eq!(gcs.stdout, "4\n", "gcs count with -c");

    let none = rules_test(r#"resource.type="no_such_type""#, &["--count", ENTRIES]);
    assert_eq!(none.stdout, "0\n", "count without matches");
    assert_eq!(none.code, Some(1), "count exit status without matches");
}

#[test]
fn stdin_and_dash_read_standard_input() {
    let from_file = rules_test(ERROR_FILTER, &[ENTRIES]);
    let no_file = run(sluice()
        .args(["rules", "test", "--filter", ERROR_FILTER])
        .write_stdin(fixture_text()));
    let dash = run(sluice()
        .args(["rules", "test", "--filter", ERROR_FILTER, "-"])
        .write_stdin(fixture_text()));
    assert_eq!(no_file.code, Some(0), "stdin without FILE exit status");
    assert_eq!(
        no_file.stdout, from_file.stdout,
        "stdin without FILE output"
    );
    assert_eq!(dash.code, Some(0), "stdin with - exit status");
    assert_eq!(dash.stdout, from_file.stdout, "stdin with - output");
}

#[test]
fn json_array_input_prints_compact_lines() {
    let text = fixture_text();
    let array = format!("[\n  {}\n]\n", Vec::from_iter(text.lines()).join(",\n  "));
    let (_dir, path) = write_temp("entries.json", &array);
    let from_array = rules_test(GCS_FILTER, &[&path]);
    let from_lines = rules_test(GCS_FILTER, &[ENTRIES]);
    assert_eq!(
        from_array.code,
        Some(0),
        "array exit status: {}",
        from_array.stderr
    );
    assert_eq!(
        from_array.stdout, from_lines.stdout,
        "array output equals JSON Lines output"
    );

    let pretty = "[\n  {\n    \"severity\": \"ERROR\",\n    \"insertId\": \"a b\"\n  },\n  \
                  {\"severity\": \"INFO\"}\n]";
    let result = run(sluice()
        .args(["rules", "test", "--filter", ERROR_FILTER])
        .write_stdin(pretty));
    assert_eq!(result.code, Some(0), "pretty array exit status");
    assert_eq!(
        result.stdout, "{\"severity\":\"ERROR\",\"insertId\":\"a b\"}\n",
        "pretty element printed compact, keys in input order"
    );
}

#[test]
fn exit_status_no_match_is_1() {
    let result = rules_test(r#"resource.type="no_such_type""#, &[ENTRIES]);
    assert_eq!(result.code, Some(1), "no match exit status");
    assert_eq!(result.stdout, "", "no match prints nothing");
    assert_eq!(result.stderr, "", "no match is not an error");
}

#[test]
fn bad_filter_shows_caret_and_exits_2() {
    // The input file does not exist: a bad filter must fail before the input is opened.
    let result = rules_test("resource.type=", &["/nonexistent/entries.jsonl"]);
    assert_eq!(result.code, Some(2), "bad filter exit status");
    assert_eq!(result.stdout, "", "bad filter prints nothing on stdout");
    assert!(
        result
            .stderr
            .contains("invalid filter at line 1, column 15:"),
        "bad filter message has line and column: {}",
        result.stderr
    );
    assert!(
        result.stderr.contains("\n  resource.type=\n"),
        "bad filter message quotes the filter line: {}",
        result.stderr
    );
    assert!(
        result.stderr.contains(&format!("\n  {}^", " ".repeat(14))),
        "bad filter caret under column 15: {}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("nonexistent"),
        "bad filter stops before the input: {}",
        result.stderr
    );
}

#[test]
fn missing_input_file_exits_2() {
    let result = rules_test(ERROR_FILTER, &["/nonexistent/entries.jsonl"]);
    assert_eq!(result.code, Some(2), "missing file exit status");
    assert!(
        result
            .stderr
            .contains("failed to open input file /nonexistent/entries.jsonl"),
        "missing file message names the file: {}",
        result.stderr
    );
}

#[test]
fn malformed_line_reported_with_position() {
    let text = fixture_text();
    let lines: Vec<&str> = text.lines().collect();
    // Entries 13 and 14 of the fixture are gcs_bucket entries.
    let input = format!("{}\n{{\"severity\": \n[1, 2]\n{}\n", lines[12], lines[13]);
    let (_dir, path) = write_temp("mixed.jsonl", &input);
    let result = rules_test(GCS_FILTER, &[&path]);
    assert_eq!(
        result.code,
        Some(2),
        "malformed input exit status wins over matches"
    );
    assert_eq!(
        result.stdout,
        format!("{}\n{}\n", lines[12], lines[13]),
        "good matches still printed"
    );
    assert!(
        result.stderr.contains(&format!("{path}:2: invalid JSON: ")),
        "invalid JSON reported as FILE:LINE: {}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains(&format!("{path}:3: not a LogEntry: ")),
        "non-object reported as FILE:LINE: {}",
        result.stderr
    );
}

#[test]
fn explain_shows_each_clause_result() {
    let filter = format!("{GCS_FILTER} {ERROR_FILTER}");
    let result = rules_test(&filter, &["--explain", ENTRIES]);
    assert_eq!(
        result.code,
        Some(1),
        "explain exit status when nothing matches both"
    );
    let headers: Vec<&str> = result
        .stdout
        .lines()
        .filter(|line| line.starts_with("entry "))
        .collect();
    assert_eq!(headers.len(), 37, "one header per entry");
    assert_eq!(
        headers[3], "entry 4 (line 4, insertId asdf1234asdfg): NO MATCH",
        "header names entry, line and insertId"
    );
    assert!(
        result.stdout.contains("  false AND\n"),
        "explain shows the AND node: {}",
        result.stdout
    );
    assert!(
        result
            .stdout
            .contains("    true  resource.type=\"gcs_bucket\"\n"),
        "explain shows a true clause"
    );
    assert!(
        result.stdout.contains("    false severity>=ERROR\n"),
        "explain shows a false clause"
    );
    assert!(
        result.stdout.contains("looked at: \"NOTICE\""),
        "explain shows the compared value"
    );
}

#[test]
fn explain_match_count_agrees_with_count() {
    let explained = rules_test(ERROR_FILTER, &["--explain", ENTRIES]);
    let matches = explained
        .stdout
        .lines()
        .filter(|line| line.starts_with("entry ") && line.ends_with(": MATCH"))
        .count();
    assert_eq!(matches, 5, "explain marks 5 entries as MATCH");
    assert_eq!(explained.code, Some(0), "explain exit status with matches");
}

#[test]
fn explain_json_one_object_per_entry() {
    let result = rules_test(ERROR_FILTER, &["--explain", "--json", ENTRIES]);
    let records: Vec<Value> = result
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("explain --json line is JSON"))
        .collect();
    assert_eq!(records.len(), 37, "one record per entry");
    assert_eq!(records[0]["entry"], 1, "first record number");
    assert_eq!(
        records[0]["insertId"], "13ogcded7jh2",
        "first record insertId"
    );
    assert_eq!(records[0]["root"]["clause"], ERROR_FILTER, "clause text");
    assert!(
        records[0]["root"]["result"].is_boolean(),
        "clause result is a boolean"
    );
    let matched = records
        .iter()
        .filter(|record| record["matched"] == true)
        .count();
    assert_eq!(matched, 5, "explain --json matches");
}

#[test]
fn json_flag_requires_explain() {
    let result = rules_test(ERROR_FILTER, &["--json", ENTRIES]);
    assert_eq!(
        result.code,
        Some(2),
        "--json without --explain is a usage error"
    );
}

#[test]
fn warning_goes_to_stderr_only() {
    let result = rules_test(
        r#"resource.type="gcs_bucket" OR "nothing""#,
        &["-c", ENTRIES],
    );
    assert!(
        result
            .stderr
            .starts_with("warning: filter at line 1, column 31: "),
        "warning prefix and position: {}",
        result.stderr
    );
    assert_eq!(result.stdout, "4\n", "warning does not change output");
    assert_eq!(result.code, Some(0), "warning does not change exit status");
}

#[test]
fn filter_file_errors_name_the_file() {
    let (_dir, path) = write_temp("rule.lql", "severity>=ERROR\nAND resource.type=\n");
    let result = run(sluice().args(["rules", "test", "--filter-file", &path, ENTRIES]));
    assert_eq!(result.code, Some(2), "bad filter file exit status");
    assert!(
        result
            .stderr
            .starts_with(&format!("error: {path}: invalid filter at line 2, column ")),
        "message names the file and line 2: {}",
        result.stderr
    );
}

#[test]
fn closed_stdout_ends_quietly() {
    // About 3.4 MB of output, far more than a pipe buffer, so writes hit the closed pipe.
    let text = fixture_text().repeat(50);
    let (_dir, path) = write_temp("many.jsonl", &text);
    let binary = assert_cmd::cargo::cargo_bin("sluice");
    let mut child = std::process::Command::new(binary)
        .args(["rules", "test", "--filter", "", &path])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice should start");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut first = [0u8; 1024];
    stdout.read_exact(&mut first).expect("some output arrives");
    drop(stdout);

    let output = child.wait_with_output().expect("sluice should exit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "closed pipe must not panic: {stderr}"
    );
    assert_eq!(stderr, "", "closed pipe prints no error");
    assert_eq!(
        output.status.code(),
        Some(0),
        "closed pipe exit status after matches"
    );
}

#[test]
fn check_reports_every_problem() {
    let config = r#"
[[topics]]
name = "audit-storage"

[[sinks]]
name = "storage-audit"
filter = 'resource.type='
destination = "audit-storage"

[[sinks.exclusions]]
name = "noisy"
filter = 'protoPayload.methodName="a" AND'

[[sinks]]
name = "storage-audit"
destination = "audit-storage-copy"
"#;
    let (_dir, path) = write_temp("broken.toml", config);
    let result = run(sluice().args(["rules", "check", &path]));
    assert_eq!(result.code, Some(1), "invalid config exit status");
    assert_eq!(
        result.stdout, "",
        "invalid config prints no summary on stdout"
    );
    let expected = [
        format!("{path}: sink \"storage-audit\": invalid filter at line 1, column 15: "),
        format!(
            "{path}: sink \"storage-audit\": exclusion \"noisy\": invalid filter at line 1, \
             column 32: "
        ),
        format!("{path}: sink \"storage-audit\": duplicate name: sink #1"),
        format!(
            "{path}: sink \"storage-audit\": destination \"audit-storage-copy\" is not a \
             declared topic; add [[topics]] name = \"audit-storage-copy\""
        ),
        format!("{path}: 4 errors, configuration is invalid"),
    ];
    for line in &expected {
        assert!(
            result
                .stderr
                .lines()
                .any(|stderr_line| stderr_line.starts_with(line.as_str())),
            "stderr has a line starting with {line:?}: {}",
            result.stderr
        );
    }
    assert!(
        result.stderr.contains(&format!("\n  {}^", " ".repeat(14))),
        "sink filter error has a caret line: {}",
        result.stderr
    );
}

#[test]
fn check_reports_every_unknown_key() {
    let config = "[[topics]]\nname = \"audit-storage\"\nretention = \"7d\"\n\
                  [[sinks]]\nname = \"s\"\ndestinaton = \"audit-storage\"\n";
    let (_dir, path) = write_temp("typo.toml", config);
    let result = run(sluice().args(["rules", "check", &path]));
    assert_eq!(result.code, Some(1), "unknown key exit status");
    let expected = [
        format!(
            "{path}: topics[1]: unknown key \"retention\" at line 3, column 1: the keys of \
             this table are name"
        ),
        format!(
            "{path}: sinks[1]: unknown key \"destinaton\" at line 6, column 1: did you mean \
             \"destination\"?"
        ),
        format!("{path}: sink \"s\": destination is missing"),
        format!("{path}: 3 errors, configuration is invalid"),
    ];
    for line in &expected {
        assert!(
            result
                .stderr
                .lines()
                .any(|stderr_line| stderr_line.starts_with(line.as_str())),
            "stderr has a line starting with {line:?}: {}",
            result.stderr
        );
    }
}

#[test]
fn check_wrong_type_has_position() {
    let (_dir, path) = write_temp("type.toml", "[[sinks]]\nname = \"s\"\ndisabled = \"no\"\n");
    let result = run(sluice().args(["rules", "check", &path]));
    assert_eq!(result.code, Some(1), "wrong type exit status");
    assert!(
        result
            .stderr
            .contains(&format!("{path}: TOML parse error at line 3, column 12")),
        "wrong type names file, line and column: {}",
        result.stderr
    );
}

#[test]
fn check_default_config_valid() {
    let file = run(sluice().args(["rules", "check", DEFAULT_CONFIG]));
    assert_eq!(
        file.code,
        Some(0),
        "config/default.toml exit status: {}",
        file.stderr
    );
    assert_eq!(
        file.stdout,
        format!(
            "{DEFAULT_CONFIG}: 8 topics, 9 subscriptions, 2 sinks, 0 exclusions, 4 buckets: all \
             filters valid\n"
        ),
        "config/default.toml summary"
    );

    let embedded = run(sluice().args(["rules", "check", "--default"]));
    assert_eq!(
        embedded.code,
        Some(0),
        "--default exit status: {}",
        embedded.stderr
    );
    assert!(
        embedded.stdout.ends_with(
            ": 8 topics, 9 subscriptions, 2 sinks, 0 exclusions, 4 buckets: all filters \
                 valid\n"
        ),
        "--default summary: {}",
        embedded.stdout
    );
}

#[test]
fn check_summary_counts_disabled() {
    let config = r#"
[[topics]]
name = "audit-all"
[[subscriptions]]
name = "audit-all"
topic = "audit-all"
[[sinks]]
name = "a"
destination = "audit-all"
disabled = true
[[sinks.exclusions]]
name = "x"
filter = "severity=DEBUG"
[[sinks]]
name = "b"
filter = "severity>=ERROR"
destination = "audit-all"
[[sinks]]
name = "c"
destination = "audit-all"
"#;
    let (_dir, path) = write_temp("ok.toml", config);
    let result = run(sluice().args(["rules", "check", &path]));
    assert_eq!(
        result.code,
        Some(0),
        "valid config exit status: {}",
        result.stderr
    );
    assert_eq!(
        result.stdout,
        format!(
            "{path}: 1 topic, 1 subscription, 3 sinks (1 disabled), 1 exclusion: all filters \
             valid\n"
        ),
        "summary line"
    );
}

#[test]
fn check_without_config_is_usage_error() {
    let result = run(sluice().args(["rules", "check"]));
    assert_eq!(result.code, Some(2), "missing CONFIG exit status");
}

#[test]
fn bad_filter_with_stdin_exits_2() {
    let result = run(sluice()
        .args(["rules", "test", "--filter", "AND"])
        .write_stdin(fixture_text()));
    assert_eq!(
        result.code,
        Some(2),
        "bad filter with stdin input exit status"
    );
    assert_eq!(
        result.stdout, "",
        "bad filter with stdin input prints nothing"
    );
}
