//! Edge cases of `sluice functions`, end to end against the real `sluice serve` on
//! 127.0.0.1 and the real functions-framework. The tests cover the readiness check of a
//! Node CloudEvent function and call timeouts. They cover the log entries of failed events
//! and of dropped output lines, the cap of `logs read --limit`, and the deploy options that
//! the server rejects, and a server started with a relative data directory.
//!
//! The functions are in `tests/functions/python_edges` and `tests/functions/node_audit`.
//! `support::deploy` contains the server set-up and the waits.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::deploy::{
    cache_dir, env_arg, function_source, node_audit_deploy, pause, python_deploy, records, texts,
    wait_for_records, wait_until, Setup, CONFIG,
};
use support::TestServer;

/// Deploys an entry point of `tests/functions/python_edges` on the topic `offers`, with
/// `extra` options.
fn deploy_edges(setup: &Setup, name: &str, entry_point: &str, extra: &[&str]) {
    let source = function_source("python_edges");
    let source = source.to_str().expect("a UTF-8 path");
    let mut args = python_deploy(name, entry_point, source);
    args.extend(["--trigger-topic", "offers"]);
    args.extend(extra);
    setup.sluice_ok(&args);
}

/// Returns every stored log entry of a function, oldest first.
fn log_entries(setup: &Setup, name: &str) -> Vec<Value> {
    setup
        .sluice_ok(&[
            "functions",
            "logs",
            "read",
            name,
            "--json",
            "--limit",
            "10000",
        ])
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Waits for an entry of `name` with `severity` whose text contains `needle`, and returns
/// it.
fn wait_for_entry(setup: &Setup, name: &str, severity: &str, needle: &str) -> Value {
    let mut found = None;
    wait_until(&format!("a {severity} entry with {needle:?}"), || {
        found = log_entries(setup, name).into_iter().find(|entry| {
            entry["severity"] == severity
                && entry["textPayload"]
                    .as_str()
                    .is_some_and(|text| text.contains(needle))
        });
        found.is_some()
    });
    found.expect("the wait found it")
}

#[test]
fn node_cloudevent_start_logs_no_error() {
    let setup = Setup::start();
    let source = function_source("node_audit");
    setup.sluice_ok(&node_audit_deploy(
        "quiet-fn",
        source.to_str().expect("a UTF-8 path"),
    ));
    // functions-framework prints its banner once it listens, so the start's output has
    // reached the log once the banner has.
    wait_until("the framework's banner", || {
        log_entries(&setup, "quiet-fn").iter().any(|entry| {
            entry["textPayload"]
                .as_str()
                .is_some_and(|text| text.contains("Serving function"))
        })
    });
    pause(Duration::from_secs(2));

    let errors: Vec<Value> = log_entries(&setup, "quiet-fn")
        .into_iter()
        .filter(|entry| entry["severity"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "the start logged errors: {errors:#?}");
}

#[test]
fn timeout_is_named_in_call_and_log() {
    let setup = Setup::start();
    deploy_edges(&setup, "sleepy", "sleep_past_timeout", &["--timeout", "1s"]);

    let output = setup.sluice(&["functions", "call", "sleepy"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a timed-out call fails: {stdout}");
    assert!(
        stdout.contains("the function did not finish within its timeout of 1 s"),
        "{stdout}"
    );
    assert!(!stdout.contains("error sending request"), "{stdout}");
    assert!(stdout.contains("status: no response"), "{stdout}");

    setup.sluice_ok(&["publish", "offers", "--message", "slow"]);
    let entry = wait_for_entry(&setup, "sleepy", "ERROR", "finished with status: 'timeout'");
    let text = entry["textPayload"].as_str().expect("a text entry");
    assert!(text.starts_with("Function execution took "), "{text}");
    assert!(text.contains("timeout of 1 s"), "{text}");
    assert!(
        text.contains("the event is dropped because retry is off"),
        "{text}"
    );
    assert_eq!(entry["resource"]["labels"]["function_name"], "sleepy");
}

#[test]
fn failed_event_adds_error_entry() {
    let setup = Setup::start();
    deploy_edges(&setup, "failing", "always_fail", &[]);
    setup.sluice_ok(&["publish", "offers", "--message", "doomed"]);

    let entry = wait_for_entry(&setup, "failing", "ERROR", "finished with status: 'error'");
    let text = entry["textPayload"].as_str().expect("a text entry");
    assert!(text.starts_with("Function execution took "), "{text}");
    assert!(text.contains("Event "), "the entry names the event: {text}");
    assert!(
        text.contains("the event is dropped because retry is off"),
        "{text}"
    );
    wait_until("the dropped count", || {
        setup.function("failing")["dropped"] == 1
    });
}

#[test]
fn dropped_lines_leave_warning() {
    const PRINTED: u64 = 200_000;
    let setup = Setup::start();
    deploy_edges(&setup, "flooding", "flood", &[]);
    setup.sluice_ok(&["functions", "call", "flooding"]);

    // The log files hold every entry, where `logs read` returns the newest 10,000 only. The
    // kept lines take a few MiB, below the 16 MiB at which the file rotates.
    let logs = setup.dir.path().join("data/functions/logs");
    let mut kept_lines = 0;
    let mut counts = Vec::new();
    wait_until("every printed line kept or counted as dropped", || {
        let mut entries = records(&logs.join("flooding.jsonl.1"));
        entries.extend(records(&logs.join("flooding.jsonl")));
        kept_lines = entries
            .iter()
            .filter(|entry| {
                entry["textPayload"]
                    .as_str()
                    .is_some_and(|text| text.starts_with("flood line "))
            })
            .count() as u64;
        counts = entries
            .iter()
            .filter(|entry| entry["severity"] == "WARNING")
            .filter_map(|entry| entry["textPayload"].as_str())
            .filter(|text| text.contains("lines of output dropped"))
            .map(|text| {
                text.split_whitespace()
                    .next()
                    .and_then(|word| word.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("the entry starts with the count: {text}"))
            })
            .collect();
        kept_lines + counts.iter().sum::<u64>() >= PRINTED
    });
    assert!(
        !counts.is_empty(),
        "a WARNING entry reports the dropped lines"
    );
    assert_eq!(
        kept_lines + counts.iter().sum::<u64>(),
        PRINTED,
        "{counts:?}"
    );
    assert!(kept_lines > 0, "some lines were kept");

    let notice = wait_for_entry(&setup, "flooding", "WARNING", "lines of output dropped");
    let text = notice["textPayload"].as_str().expect("a text entry");
    assert!(text.contains("log queue of 10000 lines"), "{text}");
}

#[test]
fn logs_limit_out_of_range_is_rejected() {
    let setup = Setup::start();
    for limit in ["0", "10001"] {
        let output = setup.sluice(&["functions", "logs", "read", "any", "--limit", limit]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
        assert!(
            stderr.contains(&format!("limit {limit} is out of range")),
            "{stderr}"
        );
        assert!(stderr.contains("use --limit 1 to 10000"), "{stderr}");
    }
}

#[test]
fn deploy_rejects_ignored_or_invalid_options() {
    let setup = Setup::start();
    let source = function_source("python_edges");
    let source = source.to_str().expect("a UTF-8 path");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--runtime", "python312", "--trigger-topic", "bad topic!"],
            "invalid --trigger-topic \"bad topic!\"",
        ),
        (
            &["--runtime", "python2", "--trigger-topic", "offers"],
            "unsupported runtime \"python2\"",
        ),
        (
            &[
                "--runtime",
                "python312",
                "--trigger-topic",
                "offers",
                "--set-env-vars",
                "PORT=1",
            ],
            "PORT is reserved",
        ),
        (
            &[
                "--runtime",
                "python312",
                "--trigger-topic",
                "offers",
                "--trigger-event",
                "google.cloud.storage.object.v1.deleted",
            ],
            "does not apply to --trigger-topic",
        ),
    ];
    for (options, expected) in cases {
        let mut args = vec![
            "functions",
            "deploy",
            "ignored",
            "--source",
            source,
            "--entry-point",
            "always_fail",
        ];
        args.extend(options);
        let output = setup.sluice(&args);
        assert!(!output.status.success(), "{options:?} is rejected");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("INVALID_ARGUMENT"), "{options:?}: {stderr}");
        assert!(stderr.contains(expected), "{options:?}: {stderr}");
    }
    assert!(setup.list().is_empty(), "nothing deployed");
}

#[test]
fn deploy_rejects_link_out_of_source() {
    let setup = Setup::start();
    let source = setup.dir.path().join("linked");
    std::fs::create_dir_all(&source).expect("mkdir");
    std::fs::write(source.join("main.py"), "def f(data, context):\n    pass\n").expect("write");
    let secret = setup.dir.path().join("secret.txt");
    std::fs::write(&secret, "secret").expect("write");
    std::os::unix::fs::symlink(&secret, source.join("passwd.txt")).expect("link");

    let mut args = python_deploy("linked", "f", source.to_str().expect("a UTF-8 path"));
    args.extend(["--trigger-topic", "offers"]);
    let output = setup.sluice(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    assert!(
        stderr.contains("the symbolic link passwd.txt points to"),
        "{stderr}"
    );
    assert!(stderr.contains("outside the source folder"), "{stderr}");
    assert!(setup.list().is_empty(), "nothing deployed");
}

#[test]
fn relative_data_dir_deploys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let cache = cache_dir();
    let cache = cache.to_str().expect("a UTF-8 path");
    // `--data-dir data`, resolved against the server's working directory.
    let server = TestServer::start_from(
        dir.path(),
        Path::new("data"),
        Some(&config),
        &[("SLUICE_FUNCTIONS_CACHE_DIR", cache)],
    );
    let setup = Setup { server, dir };
    let source = function_source("python_recorder");
    let output = setup.output("relative");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("relative", "on_message", source.to_str().expect("UTF-8"));
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    setup.sluice_ok(&args);
    setup.sluice_ok(&["publish", "offers", "--message", "here"]);
    let found = wait_for_records(&output, "the event", |found| !found.is_empty());
    assert_eq!(texts(&found), ["here"]);
}

#[test]
fn delete_keeps_topic_another_function_reads() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let mut args = python_deploy("maker", "on_upload", source);
    args.extend(["--trigger-bucket", "uploads"]);
    setup.sluice_ok(&args);
    // The topic that the bucket trigger generated is another function's trigger.
    let output = setup.output("reader");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("reader", "on_message", source);
    args.extend(["--trigger-topic", "function-maker", "--set-env-vars", &env]);
    setup.sluice_ok(&args);

    setup.sluice_ok(&["functions", "delete", "maker"]);
    setup.sluice_ok(&["publish", "function-maker", "--message", "still read"]);
    let found = wait_for_records(&output, "the event", |found| !found.is_empty());
    assert_eq!(texts(&found), ["still read"]);
}
