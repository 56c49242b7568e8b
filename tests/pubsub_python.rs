//! Google's Python client, google-cloud-pubsub, against a real `sluice serve` through
//! `PUBSUB_EMULATOR_HOST`, as against Google's emulator: it creates topics and subscriptions
//! with the admin API, publishes with batching and ordering keys, and receives with the
//! streaming-pull subscriber, acking, nacking and dead-lettering (tests/python/pubsub_client.py).
//!
//! The client comes from `scripts/test`, which exports `SLUICE_TEST_PYTHON`. Without it the
//! test fails with a message that names the fix.

mod support;

use serde_json::Value;
use support::{python, TestServer};

#[test]
fn python_client_manages_and_delivers() {
    let server = TestServer::start(None);
    let host = server
        .url()
        .strip_prefix("http://")
        .expect("the server URL is http://HOST:PORT");
    let output = python::run("pubsub_client.py", &[], &[("PUBSUB_EMULATOR_HOST", host)]);
    python::assert_success("pubsub_client.py", &output);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let scenario = |name: &str| {
        reports
            .iter()
            .find(|report| report["scenario"] == name)
            .unwrap_or_else(|| panic!("no report of scenario {name:?} in:\n{stdout}"))
    };
    assert_eq!(scenario("batched")["received"], 50, "{stdout}");
    assert_eq!(
        scenario("dead_letter")["attempts"]
            .as_array()
            .map(|a| a.len()),
        Some(5),
        "five deliveries before the dead letter: {stdout}"
    );
    assert_eq!(scenario("ordering")["per_key"], 20, "{stdout}");
    assert_eq!(scenario("filter")["received"], 4, "{stdout}");
    assert!(
        scenario("nack")["deliveries"].as_u64() >= Some(2),
        "{stdout}"
    );
    assert!(
        scenario("admin")["topics_listed"].as_u64() >= Some(1),
        "{stdout}"
    );
    let summary = reports.last().expect("a summary line");
    assert_eq!(summary["summary"], "ok", "{stdout}");
}
