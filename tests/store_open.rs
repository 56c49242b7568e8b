//! Start-up with a data directory the store cannot open: sluice exits at once with an error
//! that names the directory and the way out, rather than serving or crash-looping.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::TestServer;

/// Runs `sluice serve` on `data_dir` and returns its output; it must exit by itself.
fn serve_once(data_dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice starts");
    for _ in 0..200 {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "a plain test without an async runtime"
        )]
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("output");
    panic!(
        "sluice kept running on a data directory it cannot open; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn unreadable_store_exits_with_recovery_step() {
    let mut server = TestServer::start(None);
    let data_dir = server.data_dir.clone();
    server.terminate();
    // Replace sled's log file with a directory, which no open can read as a log.
    std::fs::remove_file(data_dir.join("db")).expect("remove the log");
    std::fs::create_dir(data_dir.join("db")).expect("put a directory in its place");

    let output = serve_once(&data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(&data_dir.display().to_string()),
        "names the directory: {stderr}"
    );
    assert!(stderr.contains("move"), "says how to recover: {stderr}");
    assert!(
        stderr.contains("not yet acknowledged"),
        "warns that the old directory holds messages: {stderr}"
    );
}

#[test]
fn second_server_on_same_dir_exits() {
    let server = TestServer::start(None);
    let output = serve_once(&server.data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("another sluice on the same --data-dir"),
        "names the likely cause: {stderr}"
    );
    assert!(
        stderr.contains(&server.data_dir.display().to_string()),
        "names the directory: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_store_is_refused() {
    let mut server = TestServer::start(None);
    let mut publisher = sluice_proto::google::pubsub::v1::publisher_client::PublisherClient::new(
        support::channel(&server).await,
    );
    publisher
        .publish(sluice_proto::google::pubsub::v1::PublishRequest {
            topic: "projects/local/topics/audit-errors".to_owned(),
            messages: vec![sluice_proto::google::pubsub::v1::PubsubMessage {
                data: b"kept".to_vec(),
                ..Default::default()
            }],
        })
        .await
        .expect("publish");
    let data_dir = server.data_dir.clone();
    server.terminate();
    // An emptied log opens in sled as a new store; the manifest shows that messages are gone.
    std::fs::write(data_dir.join("db"), b"").expect("truncate the log");

    let output = serve_once(&data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("has lost data"),
        "names the problem: {stderr}"
    );
    assert!(
        stderr.contains("sluice-manifest.json"),
        "says how to start anyway: {stderr}"
    );
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let temp = tempfile::tempdir().expect("temp dir");
    let file = temp.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let output = serve_once(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
}
