//! gcloud against a real `sluice serve`: `gcloud pubsub` topics and subscriptions create,
//! publish and pull, with the API endpoint override pointing at the server.
//!
//! gcloud speaks Pub/Sub's REST (JSON) API, not gRPC, so this test goes through sluice's REST
//! routes (`src/server/pubsub_rest/`) to the same admin calls that gRPC clients reach.
//!
//! gcloud runs with a configuration directory of its own, credentials disabled, and update
//! checks, usage reporting and the GCE metadata probe turned off, so that it sends requests
//! to the local server only. The test needs `gcloud` on the PATH (the `google-cloud-cli`
//! Debian package), and fails, naming the package, without it.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;
use support::TestServer;

/// Runs `gcloud` with `args` against `server`, with its configuration in `config_dir`.
fn gcloud(server: &TestServer, config_dir: &Path, args: &[&str]) -> Output {
    Command::new("gcloud")
        .args(args)
        .args(["--project", "local", "--quiet"])
        .env("CLOUDSDK_CONFIG", config_dir)
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB",
            format!("{}/", server.url()),
        )
        .env("CLOUDSDK_AUTH_DISABLE_CREDENTIALS", "true")
        .env("CLOUDSDK_CORE_PROJECT", "local")
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .env("CLOUDSDK_CORE_CHECK_GCE_METADATA", "false")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "failed to run gcloud: {err}; install the google-cloud-cli Debian package, \
                 which puts gcloud on the PATH"
            )
        })
}

/// Runs `gcloud` and returns its stdout, panicking with its output unless it succeeded.
fn gcloud_ok(server: &TestServer, config_dir: &Path, args: &[&str]) -> String {
    let output = gcloud(server, config_dir, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "gcloud {} failed with {}\n--- stdout\n{stdout}\n--- stderr\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn gcloud_creates_publishes_and_pulls() {
    let server = TestServer::start(None);
    let config_dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir.path();

    gcloud_ok(
        &server,
        config,
        &["pubsub", "topics", "create", "gcloud-topic"],
    );
    gcloud_ok(
        &server,
        config,
        &[
            "pubsub",
            "subscriptions",
            "create",
            "gcloud-sub",
            "--topic",
            "gcloud-topic",
            "--ack-deadline",
            "30",
        ],
    );
    let described = gcloud_ok(
        &server,
        config,
        &[
            "pubsub",
            "subscriptions",
            "describe",
            "gcloud-sub",
            "--format=json",
        ],
    );
    let described: Value = serde_json::from_str(&described).expect("JSON from describe");
    assert_eq!(
        described["topic"], "projects/local/topics/gcloud-topic",
        "{described}"
    );
    assert_eq!(described["ackDeadlineSeconds"], 30, "{described}");

    let published = gcloud_ok(
        &server,
        config,
        &[
            "pubsub",
            "topics",
            "publish",
            "gcloud-topic",
            "--message",
            "hello from gcloud",
            "--attribute",
            "origin=gcloud",
            "--format=json",
        ],
    );
    let published: Value = serde_json::from_str(&published).expect("JSON from publish");
    let message_id = published["messageIds"][0].as_str().expect("a message id");

    let pulled = gcloud_ok(
        &server,
        config,
        &[
            "pubsub",
            "subscriptions",
            "pull",
            "gcloud-sub",
            "--auto-ack",
            "--limit",
            "10",
            "--format=json",
        ],
    );
    let pulled: Value = serde_json::from_str(&pulled).expect("JSON from pull");
    let messages = pulled.as_array().expect("a list of received messages");
    assert_eq!(messages.len(), 1, "{pulled}");
    let message = &messages[0]["message"];
    assert_eq!(message["messageId"], message_id, "{pulled}");
    assert_eq!(message["attributes"]["origin"], "gcloud", "{pulled}");
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().expect("base64 data"))
        .expect("valid base64");
    assert_eq!(data, b"hello from gcloud");

    let again = gcloud_ok(
        &server,
        config,
        &[
            "pubsub",
            "subscriptions",
            "pull",
            "gcloud-sub",
            "--limit",
            "10",
            "--format=json",
        ],
    );
    let again: Value = serde_json::from_str(&again).expect("JSON from the second pull");
    assert_eq!(
        again,
        Value::Array(Vec::new()),
        "--auto-ack acknowledged it"
    );

    let duplicate = gcloud(
        &server,
        config,
        &["pubsub", "topics", "create", "gcloud-topic"],
    );
    assert!(!duplicate.status.success(), "a second create fails");
    let stderr = String::from_utf8_lossy(&duplicate.stderr);
    assert!(stderr.contains("Topic already exists"), "{stderr}");
}
