//! End-to-end tests of the client commands `ingest`, `publish`, `pull`, `topics list` and
//! `subscriptions list`, run on the built binary against a real `sluice serve` on 127.0.0.1.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::TestServer;

/// 37 LogEntry objects, one per line. The default configuration routes 4 of them to the
/// sink `storage-audit` (resource.type="gcs_bucket") and 5 to `errors` (severity>=ERROR).
const ENTRIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/audit-logs/entries.jsonl"
);

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn sluice(args: &[&str]) -> Run {
    sluice_with_stdin(args, None)
}

fn sluice_with_stdin(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_SERVER")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluice should start");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes())
            .expect("stdin should accept the input");
    }
    let output = child.wait_with_output().expect("sluice should finish");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("stdout should be UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr should be UTF-8"),
    }
}

/// Returns the number after `label` on the summary line that starts with it.
fn summary_count(stdout: &str, label: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in the summary:\n{stdout}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no count on summary line {line:?}"))
}

/// Returns the matches of `sink` from the indented `matches per sink:` lines.
fn sink_matches(stdout: &str, sink: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let mut fields = line.strip_prefix("  ")?.split_whitespace();
        if fields.next()? != sink {
            return None;
        }
        fields.next()?.parse().ok()
    })
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(ENTRIES)
        .expect("fixture entries.jsonl should be readable")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Returns `subscriptions list --json` as a map from name to record.
fn subscriptions(server: &TestServer) -> serde_json::Map<String, Value> {
    let run = sluice(&["subscriptions", "list", "--json", "--server", server.url()]);
    assert_eq!(
        run.code,
        Some(0),
        "subscriptions list; stderr: {}",
        run.stderr
    );
    run.stdout
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("each line is JSON");
            let name = record["name"]
                .as_str()
                .expect("name is a string")
                .to_owned();
            (name, record)
        })
        .collect()
}

fn backlog(server: &TestServer, subscription: &str) -> u64 {
    subscriptions(server)[subscription]["backlog"]
        .as_u64()
        .expect("backlog is a number")
}

#[test]
fn ingest_fixture_reports_sink_matches() {
    let server = TestServer::start(None);
    let run = sluice(&["ingest", ENTRIES, "--server", server.url()]);
    assert_eq!(
        run.code,
        Some(0),
        "ingest exit status; stderr: {}",
        run.stderr
    );
    assert_eq!(run.stderr, "", "a clean ingest prints nothing on stderr");
    assert_eq!(summary_count(&run.stdout, "entries sent:"), 37);
    assert_eq!(summary_count(&run.stdout, "accepted:"), 37);
    assert_eq!(summary_count(&run.stdout, "rejected:"), 0);
    assert_eq!(summary_count(&run.stdout, "invalid lines:"), 0);
    assert_eq!(sink_matches(&run.stdout, "storage-audit"), Some(4));
    assert_eq!(sink_matches(&run.stdout, "errors"), Some(5));
    assert!(
        run.stdout.contains("entries/s"),
        "summary has a rate:\n{}",
        run.stdout
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn ingest_skips_bad_lines() {
    let server = TestServer::start(None);
    let mut lines = fixture_lines();
    lines.insert(2, "{not json".to_owned());
    lines.insert(5, String::new());
    lines.insert(6, "[1, 2]".to_owned());
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bad.jsonl");
    std::fs::write(&path, lines.join("\n")).expect("write input");
    let path = path.to_str().expect("UTF-8 path");

    let run = sluice(&[
        "ingest",
        path,
        "--batch-size",
        "4",
        "--server",
        server.url(),
    ]);
    assert_eq!(run.code, Some(1), "invalid lines fail the run");
    assert!(
        run.stderr
            .contains(&format!("{path}:3: invalid JSON: key must be a string")),
        "line 3 reported; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{path}:7: not a LogEntry: expected a JSON object")),
        "line 7 reported; stderr: {}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 2, "stderr: {}", run.stderr);
    assert_eq!(summary_count(&run.stdout, "entries sent:"), 37);
    assert_eq!(summary_count(&run.stdout, "accepted:"), 37);
    assert_eq!(summary_count(&run.stdout, "invalid lines:"), 2);
    assert_eq!(sink_matches(&run.stdout, "storage-audit"), Some(4));
    assert_eq!(sink_matches(&run.stdout, "errors"), Some(5));
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn ingest_strict_stops_before_batch() {
    let server = TestServer::start(None);
    let mut lines = fixture_lines();
    lines.insert(2, "{not json".to_owned());
    let input = lines.join("\n");

    let run = sluice_with_stdin(
        &[
            "ingest",
            "-",
            "--strict",
            "--batch-size",
            "2",
            "--server",
            server.url(),
        ],
        Some(&input),
    );
    assert_eq!(run.code, Some(1), "--strict fails the run");
    assert!(
        run.stderr.contains("<stdin>:3: invalid JSON"),
        "stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("--strict"), "stderr: {}", run.stderr);
    assert_eq!(
        summary_count(&run.stdout, "accepted:"),
        2,
        "only the batch before line 3 is sent"
    );
    for (sink, subscription) in [
        ("storage-audit", "audit-storage"),
        ("errors", "audit-errors"),
    ] {
        assert_eq!(
            sink_matches(&run.stdout, sink).unwrap_or(0),
            backlog(&server, subscription),
            "{subscription} holds only what the sent batch matched"
        );
    }
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn ingest_stdin_with_small_batches() {
    let server = TestServer::start(None);
    let input = std::fs::read_to_string(ENTRIES).expect("fixture readable");
    let run = sluice_with_stdin(
        &["ingest", "-", "--batch-size", "1", "--server", server.url()],
        Some(&input),
    );
    assert_eq!(run.code, Some(0), "stderr: {}", run.stderr);
    assert!(
        run.stdout.contains("37 in 37 batches"),
        "one batch per entry:\n{}",
        run.stdout
    );
    assert_eq!(summary_count(&run.stdout, "accepted:"), 37);
    assert_eq!(backlog(&server, "audit-storage"), 4);
    assert_eq!(backlog(&server, "audit-errors"), 5);
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn publish_then_pull_with_ack() {
    let server = TestServer::start(None);
    let published = sluice(&[
        "publish",
        "audit-errors",
        "--message",
        r#"{"severity":"ERROR","n":1}"#,
        "--attribute",
        "origin=test",
        "--attribute",
        "query=a=b",
        "--server",
        server.url(),
    ]);
    assert_eq!(published.code, Some(0), "stderr: {}", published.stderr);
    let message_id = published.stdout.trim();
    assert!(!message_id.is_empty(), "publish prints a message id");
    assert_eq!(published.stdout.lines().count(), 1);

    let pulled = sluice(&[
        "pull",
        "audit-errors",
        "--ack",
        "--max",
        "10",
        "--server",
        server.url(),
    ]);
    assert_eq!(pulled.code, Some(0), "stderr: {}", pulled.stderr);
    let lines: Vec<&str> = pulled.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one message pulled: {}", pulled.stdout);
    let message: Value = serde_json::from_str(lines[0]).expect("the output line is JSON");
    assert_eq!(message["messageId"], json!(message_id));
    assert_eq!(message["data"], json!({"severity": "ERROR", "n": 1}));
    assert_eq!(
        message["attributes"],
        json!({"origin": "test", "query": "a=b"})
    );
    assert!(
        message["ackId"].as_str().is_some_and(|id| !id.is_empty()),
        "ackId: {message}"
    );
    let publish_time = message["publishTime"].as_str().unwrap_or_default();
    assert!(
        publish_time.ends_with('Z') && publish_time.contains('T'),
        "publishTime is RFC 3339 UTC: {publish_time:?}"
    );
    assert!(message.get("dataText").is_none(), "{message}");

    let again = sluice(&["pull", "audit-errors", "--server", server.url()]);
    assert_eq!(again.code, Some(0), "stderr: {}", again.stderr);
    assert_eq!(again.stdout, "", "the acknowledged message is gone");
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn pull_prints_text_data() {
    let server = TestServer::start(None);
    let published = sluice(&[
        "publish",
        "projects/local/topics/audit-storage",
        "--message",
        "plain text",
        "--ordering-key",
        "key-1",
        "--server",
        server.url(),
    ]);
    assert_eq!(published.code, Some(0), "stderr: {}", published.stderr);

    let pulled = sluice(&[
        "pull",
        "projects/local/subscriptions/audit-storage",
        "--server",
        server.url(),
    ]);
    assert_eq!(pulled.code, Some(0), "stderr: {}", pulled.stderr);
    let message: Value = serde_json::from_str(pulled.stdout.trim()).expect("JSON line");
    assert_eq!(message["dataText"], json!("plain text"));
    assert_eq!(message["orderingKey"], json!("key-1"));
    assert_eq!(message["attributes"], json!({}));
    assert!(message.get("data").is_none(), "{message}");
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn publish_unknown_topic_fails() {
    let server = TestServer::start(None);
    let run = sluice(&[
        "publish",
        "no-such-topic",
        "--message",
        "x",
        "--server",
        server.url(),
    ]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("Publish failed: NOT_FOUND")
            && run.stderr.contains("projects/local/topics/no-such-topic"),
        "stderr: {}",
        run.stderr
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn catalog_backlog_follows_ingest_and_ack() {
    let server = TestServer::start(None);
    let before = subscriptions(&server);
    assert_eq!(before.len(), 9, "default subscriptions: {before:?}");
    assert_eq!(before["audit-storage"]["backlog"], json!(0));
    assert_eq!(before["audit-errors"]["backlog"], json!(0));

    let ingest = sluice(&["ingest", ENTRIES, "--server", server.url()]);
    assert_eq!(ingest.code, Some(0), "stderr: {}", ingest.stderr);
    let after_ingest = subscriptions(&server);
    assert_eq!(after_ingest["audit-storage"]["backlog"], json!(4));
    assert_eq!(after_ingest["audit-errors"]["backlog"], json!(5));
    assert_eq!(after_ingest["audit-errors"]["topic"], json!("audit-errors"));
    assert_eq!(after_ingest["audit-errors"]["deadLetterTopic"], json!(null));

    let topics = sluice(&["topics", "list", "--server", server.url()]);
    assert_eq!(topics.code, Some(0), "stderr: {}", topics.stderr);
    let table: Vec<Vec<&str>> = topics
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(table[0], ["NAME", "RETAINED", "SUBSCRIPTIONS"]);
    assert!(
        table.contains(&vec!["audit-storage", "4", "audit-storage"]),
        "{}",
        topics.stdout
    );
    assert!(
        table.contains(&vec!["audit-errors", "5", "audit-errors"]),
        "{}",
        topics.stdout
    );

    let pulled = sluice(&[
        "pull",
        "audit-storage",
        "--max",
        "10",
        "--ack",
        "--server",
        server.url(),
    ]);
    assert_eq!(pulled.code, Some(0), "stderr: {}", pulled.stderr);
    assert_eq!(pulled.stdout.lines().count(), 4, "{}", pulled.stdout);
    let after_ack = subscriptions(&server);
    assert_eq!(after_ack["audit-storage"]["backlog"], json!(0));
    assert_eq!(after_ack["audit-storage"]["outstanding"], json!(0));
    assert_eq!(after_ack["audit-errors"]["backlog"], json!(5));

    let pulled_without_ack = sluice(&["pull", "audit-errors", "--server", server.url()]);
    assert_eq!(pulled_without_ack.code, Some(0));
    let table = sluice(&[
        "subscriptions",
        "list",
        "--topic",
        "audit-errors",
        "--server",
        server.url(),
    ]);
    assert_eq!(table.code, Some(0), "stderr: {}", table.stderr);
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "header and one row: {}", table.stdout);
    assert_eq!(rows[1][..4], ["audit-errors", "audit-errors", "5", "1"]);
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn unreachable_server_fails_clearly() {
    // Bind a port and release it, so nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    drop(listener);

    let commands: [&[&str]; 5] = [
        &["ingest", ENTRIES],
        &["publish", "audit-errors", "--message", "x"],
        &["pull", "audit-errors"],
        &["topics", "list"],
        &["subscriptions", "list"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--server", url.as_str()]);
        let run = sluice(&args);
        assert_eq!(run.code, Some(1), "{command:?} exit status");
        assert!(
            run.stderr.contains(&format!("failed to connect to {url}")),
            "{command:?} names the URL; stderr: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("sluice serve"),
            "{command:?} suggests starting a server; stderr: {}",
            run.stderr
        );
        assert_eq!(run.stdout, "", "{command:?} prints nothing on stdout");
    }
}

#[test]
fn server_taken_from_environment() {
    let server = TestServer::start(None);
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["topics", "list", "--json"])
        .env("SLUICE_SERVER", server.url())
        .output()
        .expect("sluice runs");
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let names: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line")["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            json!("annotator-dead-letter"),
            json!("audit-errors"),
            json!("audit-storage"),
            json!("offers"),
            json!("offers-accepted"),
            json!("offers-dead-letter"),
            json!("thumbnailer-dead-letter"),
            json!("uploads-events")
        ]
    );
    assert!(server.stop().success(), "server exits cleanly");
}

#[test]
fn invalid_arguments_exit_2() {
    let cases: [&[&str]; 5] = [
        &["publish", "t", "--message", "x", "--attribute", "novalue"],
        &["publish", "t", "--message", "x", "-a", "k=1", "-a", "k=2"],
        &["pull", "s", "--max", "0"],
        &["ingest", "-", "--batch-size", "0"],
        &["topics", "list", "--server", "https://127.0.0.1:1"],
    ];
    for args in cases {
        let run = sluice(args);
        assert_eq!(run.code, Some(2), "{args:?}; stderr: {}", run.stderr);
        assert!(run.stderr.starts_with("error:"), "{args:?}: {}", run.stderr);
    }
}
