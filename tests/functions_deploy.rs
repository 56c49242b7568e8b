//! `sluice functions` end to end: the real `sluice serve` on 127.0.0.1 deploys the functions
//! of `tests/functions/` from source, with the real functions-framework from PyPI and npm,
//! and the tests drive them with the `sluice` command line.
//!
//! The functions append one JSON line per call to the file that their `OUTPUT_FILE`
//! variable names. `support::deploy` contains the server set-up and the waits.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::deploy::{
    env_arg, function_source, node_audit_deploy, pause, python_deploy, records, texts,
    wait_for_records, wait_until, Setup,
};

#[test]
fn bucket_function_runs_once_per_upload() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("uploads");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("thumbs", "on_upload", source);
    args.extend(["--trigger-bucket", "uploads", "--set-env-vars", &env]);
    let deployed = setup.sluice_ok(&args);
    assert!(
        deployed.contains("deployed function thumbs version 1"),
        "{deployed}"
    );

    let photo = support::fixtures().join("images/camera/Canon_40D.jpg");
    let photo = photo.to_str().expect("a UTF-8 path");
    setup.sluice_ok(&[
        "upload",
        photo,
        "--bucket",
        "uploads",
        "--name",
        "photos/canon.jpg",
    ]);

    let found = wait_for_records(&output, "the upload event", |found| !found.is_empty());
    let record = &found[0];
    assert_eq!(record["data"]["bucket"], "uploads");
    assert_eq!(record["data"]["name"], "photos/canon.jpg");
    assert_eq!(record["data"]["size"], "7928", "int64 fields are strings");
    assert_eq!(
        record["context"]["event_type"],
        "google.storage.object.finalize"
    );
    assert_eq!(
        record["context"]["resource"]["name"],
        "projects/_/buckets/uploads/objects/photos/canon.jpg"
    );
    assert!(record["context"]["event_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));

    // A second look after more deliveries could have arrived: the function ran once.
    pause(Duration::from_secs(3));
    assert_eq!(records(&output).len(), 1, "one call per upload");

    wait_until("the log line", || {
        let logs = setup.sluice_ok(&["functions", "logs", "read", "thumbs", "--limit", "50"]);
        logs.contains("processed gs://uploads/photos/canon.jpg")
    });
    let logs = setup.sluice_ok(&["functions", "logs", "read", "thumbs", "--json"]);
    let entry: Value = logs
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON line"))
        .find(|entry| entry["textPayload"] == "processed gs://uploads/photos/canon.jpg")
        .expect("the function's line is an entry");
    assert_eq!(entry["resource"]["type"], "cloud_function");
    assert_eq!(entry["resource"]["labels"]["function_name"], "thumbs");
    assert_eq!(entry["severity"], "INFO");

    let listed = setup.function("thumbs");
    assert_eq!(listed["state"], "ACTIVE");
    assert_eq!(listed["version"], 1);
    assert_eq!(listed["succeeded"], 1);
}

#[test]
fn call_sends_synthetic_event() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("calls");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("caller", "on_upload", source);
    args.extend(["--trigger-bucket", "uploads", "--set-env-vars", &env]);
    setup.sluice_ok(&args);

    let printed = setup.sluice_ok(&[
        "functions",
        "call",
        "caller",
        "--data",
        r#"{"name": "called.jpg"}"#,
    ]);
    assert!(printed.contains("status: 200"), "{printed}");
    let found = records(&output);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["data"]["bucket"], "uploads");
    assert_eq!(found[0]["data"]["name"], "called.jpg");
    assert_eq!(
        found[0]["context"]["event_type"],
        "google.storage.object.finalize"
    );
}

#[test]
fn topic_function_receives_offer() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("offers");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("offers-fn", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    setup.sluice_ok(&args);

    let offer = r#"{"sku": "A-1", "price": "9.99", "currency": "EUR"}"#;
    setup.sluice_ok(&["publish", "offers", "--message", offer]);
    let found = wait_for_records(&output, "the offer", |found| !found.is_empty());
    assert_eq!(found[0]["text"], offer);
    assert_eq!(
        found[0]["context"]["event_type"],
        "google.pubsub.topic.publish"
    );
    assert_eq!(
        found[0]["context"]["resource"]["name"],
        "projects/local/topics/offers"
    );

    wait_until("the structured log line", || {
        let logs = setup.sluice_ok(&["functions", "logs", "read", "offers-fn", "--json"]);
        logs.lines().any(|line| {
            let entry: Value = serde_json::from_str(line).expect("a JSON line");
            entry["severity"] == "NOTICE"
                && entry["jsonPayload"]["message"] == format!("received {offer}")
        })
    });

    // The entry went through the log router, so the configured sink took it.
    let mut pulled = String::new();
    wait_until("the sink's message", || {
        pulled.push_str(&setup.sluice_ok(&["pull", "fn-logs", "--ack"]));
        pulled.contains("received")
    });
    assert!(pulled.contains("offers-fn"), "{pulled}");
    assert!(pulled.contains("cloud_function"), "{pulled}");
}

#[test]
fn node_cloudevent_function_receives_audit_log() {
    let mut setup = Setup::start();
    let source = function_source("node_audit");
    let output = setup.output("audit");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = node_audit_deploy("audit-fn", source.to_str().expect("a UTF-8 path"));
    args.extend(["--set-env-vars", &env]);
    setup.sluice_ok(&args);

    let entries = support::fixtures().join("audit-logs/entries.jsonl");
    setup.sluice_ok(&["ingest", entries.to_str().expect("a UTF-8 path")]);
    let found = wait_for_records(&output, "four audit events", |found| {
        let ids: BTreeSet<&str> = found.iter().filter_map(|r| r["id"].as_str()).collect();
        ids.len() >= 4
    });
    for record in &found {
        assert_eq!(record["type"], "google.cloud.audit.log.v1.written");
        assert_eq!(
            record["methodName"],
            "google.iam.admin.v1.CreateServiceAccount"
        );
        assert_eq!(record["serviceName"], "iam.googleapis.com");
    }
    pause(Duration::from_secs(3));
    let ids: BTreeSet<String> = records(&output)
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 4, "only the four CreateServiceAccount entries");

    // The function's output is an entry of the log router too.
    wait_until("the node log line", || {
        let logs = setup.sluice_ok(&["functions", "logs", "read", "audit-fn"]);
        logs.contains("audit event google.iam.admin.v1.CreateServiceAccount")
    });

    // After a restart the trigger's sink is back before the function is, so entries routed
    // meanwhile wait in its subscription.
    setup.restart();
    let routed = setup.sluice_ok(&["ingest", entries.to_str().expect("a UTF-8 path")]);
    let sink_line = |line: &str| line.split_whitespace().eq(["function-audit-fn", "4"]);
    assert!(routed.lines().any(sink_line), "{routed}");
    let delivered = records(&output).len();
    wait_for_records(&output, "the events after the restart", |found| {
        found.len() >= delivered + 4
    });
}

/// Deploys `crash_once` on the topic `offers` with or without `--retry`.
fn deploy_crashing(setup: &Setup, name: &str, retry: bool) -> (PathBuf, PathBuf) {
    let source = function_source("python_recorder");
    let output = setup.output(name);
    let markers = setup.dir.path().join(format!("{name}-markers"));
    std::fs::create_dir_all(&markers).expect("mkdir");
    let env = format!(
        "{},{}",
        env_arg("OUTPUT_FILE", &output),
        env_arg("MARKER_DIR", &markers)
    );
    let mut args = python_deploy(name, "crash_once", source.to_str().expect("a UTF-8 path"));
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    if retry {
        args.push("--retry");
    }
    setup.sluice_ok(&args);
    (output, markers)
}

fn marker_count(markers: &Path) -> usize {
    std::fs::read_dir(markers).map_or(0, |entries| entries.count())
}

#[test]
fn crash_with_retry_is_retried() {
    let setup = Setup::start();
    let (output, markers) = deploy_crashing(&setup, "retrying", true);
    setup.sluice_ok(&["publish", "offers", "--message", "crash"]);
    let found = wait_for_records(&output, "the retried event", |found| !found.is_empty());
    assert_eq!(texts(&found), ["crash"]);
    assert_eq!(marker_count(&markers), 1, "the first attempt crashed");
    let listed = setup.function("retrying");
    assert!(listed["restarts"].as_u64() >= Some(1), "{listed}");
    assert!(listed["failed"].as_u64() >= Some(1), "{listed}");
    assert_eq!(listed["dropped"], 0);
}

#[test]
fn crash_without_retry_drops_event() {
    let setup = Setup::start();
    let (output, markers) = deploy_crashing(&setup, "dropping", false);
    setup.sluice_ok(&["publish", "offers", "--message", "crash"]);
    wait_until("the crash", || marker_count(&markers) == 1);
    wait_until("the restart", || {
        let listed = setup.function("dropping");
        listed["restarts"].as_u64() >= Some(1) && listed["state"] == "ACTIVE"
    });
    setup.sluice_ok(&["publish", "offers", "--message", "after"]);
    let found = wait_for_records(&output, "the next event", |found| !found.is_empty());
    pause(Duration::from_secs(3));
    let found = if found.len() == 1 {
        records(&output)
    } else {
        found
    };
    assert_eq!(texts(&found), ["after"], "the crashed event is not retried");
    let listed = setup.function("dropping");
    assert_eq!(listed["dropped"], 1, "{listed}");
    assert_eq!(listed["backlog"], 0, "{listed}");

    // The dropped call counts as a failed run, so the handler-failure alert counts it too.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let metrics = runtime.block_on(async {
        reqwest::get(format!("{}/metrics", setup.server.url))
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    });
    let failed_runs = metrics.lines().find(|line| {
        line.starts_with("messaging_process_duration_seconds_count{")
            && line.contains("handler=\"dropping\"")
            && line.contains("error_type=\"dropped\"")
    });
    assert!(
        failed_runs.is_some_and(|line| line.ends_with(" 1")),
        "{metrics}"
    );
}

#[test]
fn max_instances_bounds_concurrent_calls() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let output = setup.output("slow");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("slow", "slow_record", source.to_str().expect("UTF-8"));
    args.extend([
        "--trigger-topic",
        "offers",
        "--max-instances",
        "1",
        "--set-env-vars",
        &env,
    ]);
    setup.sluice_ok(&args);
    for i in 0..4 {
        setup.sluice_ok(&["publish", "offers", "--message", &format!("slow-{i}")]);
    }

    let found = wait_for_records(&output, "four slow calls", |found| found.len() >= 4);
    let mut spans: Vec<(f64, f64)> = found
        .iter()
        .map(|record| {
            let started = record["started"].as_f64().expect("a start time");
            let ended = record["ended"].as_f64().expect("an end time");
            (started, ended)
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "calls overlap with --max-instances 1: {spans:?}"
        );
    }
    assert_eq!(setup.function("slow")["maxInstances"], 1);
}

#[test]
fn retry_ends_in_dead_letter() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let mut args = python_deploy("failing", "always_fail", source.to_str().expect("UTF-8"));
    args.extend([
        "--trigger-topic",
        "offers",
        "--retry",
        "--max-event-age",
        "5",
    ]);
    setup.sluice_ok(&args);
    setup.sluice_ok(&["publish", "offers", "--message", "doomed"]);

    let mut pulled = String::new();
    wait_until("the dead-lettered event", || {
        pulled = setup.sluice_ok(&["pull", "function-failing-dead-letter", "--ack"]);
        !pulled.trim().is_empty()
    });
    assert!(pulled.contains("doomed"), "{pulled}");
    let listed = setup.function("failing");
    assert!(listed["failed"].as_u64() >= Some(2), "retried: {listed}");
    assert_eq!(listed["backlog"], 0, "{listed}");
    // Calls at about 0, 1 and 3 s fail. The retry after the third would come at 7 s, past
    // the maximum age of 5 s, so the event is dead-lettered at once instead of at 7 s.
    wait_until(
        "the exception and the early dead letter in the logs",
        || {
            let logs = setup.sluice_ok(&["functions", "logs", "read", "failing", "--limit", "100"]);
            logs.contains("cannot handle event") && logs.contains("would come after the maximum")
        },
    );
}

#[test]
fn redeploy_under_stream_loses_nothing() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("stream");
    let deploy = |version: &str| {
        let env = format!("{},VERSION={version}", env_arg("OUTPUT_FILE", &output));
        let mut args = python_deploy("streamer", "on_message", source);
        args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
        setup.sluice_ok(&args)
    };
    deploy("1");

    const EVENTS: usize = 40;
    let url = setup.server.url.clone();
    let publisher = std::thread::spawn(move || {
        for i in 0..EVENTS {
            let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
                .args(["publish", "offers", "--message", &format!("event-{i}")])
                .args(["--server", &url])
                .output()
                .expect("sluice publish runs");
            assert!(output.status.success(), "publish {i} failed: {output:?}");
            pause(Duration::from_millis(100));
        }
    });
    wait_for_records(&output, "the first events", |found| found.len() >= 5);
    let redeployed = deploy("2");
    assert!(redeployed.contains("version 2"), "{redeployed}");
    publisher.join().expect("the publisher finishes");

    let found = wait_for_records(&output, "every event", |found| {
        let unique: BTreeSet<String> = texts(found).into_iter().collect();
        unique.len() >= EVENTS
    });
    let unique: BTreeSet<String> = texts(&found).into_iter().collect();
    let expected: BTreeSet<String> = (0..EVENTS).map(|i| format!("event-{i}")).collect();
    assert_eq!(unique, expected, "no event lost");
    let versions: BTreeSet<&str> = found
        .iter()
        .filter_map(|record| record["version"].as_str())
        .collect();
    assert!(
        versions.contains("2"),
        "the new version took over: {versions:?}"
    );
    let last = found.last().expect("records");
    assert_eq!(last["version"], "2", "the old version stopped");
    let listed = setup.function("streamer");
    assert_eq!(listed["version"], 2);
    assert_eq!(listed["backlog"], 0);
}

#[test]
fn functions_survive_server_restart() {
    let mut setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("restart");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("keeper", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    setup.sluice_ok(&args);
    setup.sluice_ok(&["publish", "offers", "--message", "before"]);
    wait_for_records(&output, "the first event", |found| found.len() == 1);

    setup.restart();
    // Published while the function comes back: it waits in the subscription.
    setup.sluice_ok(&["publish", "offers", "--message", "after"]);
    wait_until("the function to come back", || {
        setup
            .list()
            .iter()
            .any(|function| function["name"] == "keeper" && function["state"] == "ACTIVE")
    });
    let found = wait_for_records(&output, "the event after the restart", |found| {
        texts(found).contains(&"after".to_owned())
    });
    assert_eq!(texts(&found), ["before", "after"]);
    assert_eq!(setup.function("keeper")["version"], 1);

    setup.sluice_ok(&["functions", "delete", "keeper"]);
    assert!(setup.list().is_empty(), "deleted");
    let subscriptions = setup.sluice_ok(&["subscriptions", "list", "--json"]);
    assert!(
        !subscriptions.contains("function-keeper"),
        "the subscription is gone: {subscriptions}"
    );
}

#[test]
fn deploy_rejects_bad_settings() {
    let setup = Setup::start();
    let source = function_source("python_recorder");
    let output = setup.sluice(&[
        "functions",
        "deploy",
        "bad",
        "--runtime",
        "ruby33",
        "--source",
        source.to_str().expect("a UTF-8 path"),
        "--entry-point",
        "f",
        "--trigger-bucket",
        "missing-bucket",
        "--timeout",
        "900s",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown runtime \"ruby33\""), "{stderr}");
    assert!(stderr.contains("--timeout 900 is out of range"), "{stderr}");

    let source = function_source("python_recorder");
    let mut args = python_deploy("nobucket", "on_upload", source.to_str().expect("UTF-8"));
    args.extend(["--trigger-bucket", "missing-bucket"]);
    let output = setup.sluice(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"missing-bucket\" does not exist"),
        "{stderr}"
    );

    // CONFIG declares the subscription that a function named "logs" would generate.
    let mut args = python_deploy("logs", "on_message", source.to_str().expect("UTF-8"));
    args.extend(["--trigger-topic", "offers"]);
    let output = setup.sluice(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("subscription \"function-logs\" exists already"),
        "{stderr}"
    );
    assert!(setup.list().is_empty(), "nothing deployed");
}

/// Returns the state that `functions list` gives `name`, or `None` when it is not listed.
fn state_of(setup: &Setup, name: &str) -> Option<String> {
    setup
        .list()
        .into_iter()
        .find(|function| function["name"] == name)
        .map(|function| function["state"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn restore_does_not_wait_for_a_stuck_function() {
    let mut setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let flag = setup.dir.path().join("hang.flag");
    let hang = env_arg("HANG_WHILE_EXISTS", &flag);
    let mut args = python_deploy("stuck", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &hang]);
    setup.sluice_ok(&args);
    let output = setup.output("keeper");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("keeper", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    setup.sluice_ok(&args);

    std::fs::write(&flag, "").expect("write the flag");
    setup.restart();
    // Both are listed from the start, before either process responds.
    let names: BTreeSet<String> = setup
        .list()
        .iter()
        .map(|function| function["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["keeper".to_owned(), "stuck".to_owned()])
    );
    setup.sluice_ok(&["publish", "offers", "--message", "after"]);
    let found = wait_for_records(&output, "keeper's event after the restart", |found| {
        !found.is_empty()
    });
    assert_eq!(texts(&found), ["after"]);
    assert_eq!(state_of(&setup, "stuck").as_deref(), Some("STARTING"));

    // The stuck version is replaced while it still hangs, then deleted.
    let unflagged = env_arg("HANG_WHILE_EXISTS", &setup.dir.path().join("absent.flag"));
    let mut args = python_deploy("stuck", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &unflagged]);
    setup.sluice_ok(&args);
    let stuck = setup.function("stuck");
    assert_eq!(
        (stuck["state"].as_str(), stuck["version"].as_u64()),
        (Some("ACTIVE"), Some(2))
    );
    std::fs::remove_file(&flag).expect("remove the flag");
    setup.sluice_ok(&["functions", "delete", "stuck"]);
    assert_eq!(state_of(&setup, "stuck"), None);
}

#[test]
fn unrestorable_function_listed_as_failed() {
    let mut setup = Setup::start();
    let source = function_source("python_recorder");
    let source = source.to_str().expect("a UTF-8 path");
    let output = setup.output("fragile");
    let env = env_arg("OUTPUT_FILE", &output);
    let mut args = python_deploy("fragile", "on_message", source);
    args.extend(["--trigger-topic", "offers", "--set-env-vars", &env]);
    setup.sluice_ok(&args);
    let (status, log) = setup.server.terminate();
    assert!(status.success(), "sluice stopped with {status}: {log}");
    let copy = setup.dir.path().join("data/functions/sources/fragile");
    std::fs::remove_dir_all(&copy).expect("remove the source copy");
    setup.restart_stopped();

    wait_until("the function to fail", || {
        state_of(&setup, "fragile").as_deref() == Some("FAILED")
    });
    let call = setup.sluice(&["functions", "call", "fragile", "--data", "{}"]);
    assert!(!call.status.success());
    let stderr = String::from_utf8_lossy(&call.stderr);
    assert!(stderr.contains("could not be started"), "{stderr}");
    assert!(stderr.contains("deploy it again"), "{stderr}");
    // The log entry is shipped in the background, so it may trail the state.
    wait_until("the reason in the function's log", || {
        let logs = setup.sluice_ok(&["functions", "logs", "read", "fragile"]);
        logs.contains("source copy")
    });

    // A deploy of the same name brings it back, and its events wait in its subscription.
    setup.sluice_ok(&["publish", "offers", "--message", "kept"]);
    setup.sluice_ok(&args);
    let found = wait_for_records(&output, "the kept event", |found| !found.is_empty());
    assert_eq!(texts(&found), ["kept"]);
    assert_eq!(setup.function("fragile")["version"], 2);
}

#[test]
fn failed_first_deploy_keeps_only_log() {
    let setup = Setup::start();
    let source = setup.dir.path().join("syntax");
    std::fs::create_dir(&source).expect("create the source");
    // The same requirements as python_recorder, so the runtime cache serves it.
    std::fs::copy(
        function_source("python_recorder").join("requirements.txt"),
        source.join("requirements.txt"),
    )
    .expect("copy requirements.txt");
    std::fs::write(source.join("main.py"), "def f(data, context)\n    pass\n").expect("write");
    let mut args = python_deploy("syntax", "f", source.to_str().expect("a UTF-8 path"));
    args.extend(["--trigger-topic", "offers"]);
    let deploy = setup.sluice(&args);
    assert!(!deploy.status.success());
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    assert!(
        stderr.contains("exited before it accepted connections, with exit status"),
        "{stderr}"
    );
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    let data = setup.dir.path().join("data/functions");
    assert!(
        !data.join("sources/syntax").exists(),
        "the source copy is removed"
    );
    assert!(setup.list().is_empty(), "nothing deployed");

    setup.sluice_ok(&["functions", "logs", "read", "syntax"]);
    setup.sluice_ok(&["functions", "delete", "syntax"]);
    let logs = setup.sluice(&["functions", "logs", "read", "syntax"]);
    assert!(!logs.status.success(), "the log is gone");
}
