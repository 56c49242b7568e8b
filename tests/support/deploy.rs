//! The scaffolding of the `sluice functions` tests: a real `sluice serve` on 127.0.0.1 with
//! a bucket, a topic and a log sink, the `sluice` command line against it, and waits on the
//! JSON lines that the functions of `tests/functions/` write.
//!
//! Every server shares one runtime cache under the target folder
//! (`SLUICE_FUNCTIONS_CACHE_DIR`), so only the first deploy of each runtime downloads
//! functions-framework.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestServer;

/// How long a test waits for something the server or a function should do. The first
/// deploy installs functions-framework, so this bounds a hung test and is never a measure
/// of speed.
pub const GIVE_UP: Duration = Duration::from_secs(300);

/// A bucket and a topic for the triggers, a log sink that collects the NOTICE entries of
/// every function in the subscription `fn-logs`, and a subscription whose name a function
/// named `logs` would generate.
pub const CONFIG: &str = "\
[[buckets]]
name = \"uploads\"

[[topics]]
name = \"offers\"

[[topics]]
name = \"fn-logs\"

[[subscriptions]]
name = \"fn-logs\"
topic = \"fn-logs\"

[[subscriptions]]
name = \"function-logs\"
topic = \"fn-logs\"

[[sinks]]
name = \"function-notices\"
filter = 'resource.type=\"cloud_function\" AND severity=NOTICE'
destination = \"fn-logs\"
";

pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("functions-cache")
}

pub fn function_source(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/functions")
        .join(name)
}

pub fn start_server(data_dir: &Path, config: &Path) -> TestServer {
    let cache = cache_dir();
    let cache = cache.to_str().expect("a UTF-8 path");
    TestServer::start_in_with_env(
        data_dir,
        Some(config),
        &[("SLUICE_FUNCTIONS_CACHE_DIR", cache)],
    )
}

/// A server on a fresh data directory, with the folder that contains it and the functions'
/// output files.
pub struct Setup {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn start() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("sluice.toml");
        std::fs::write(&config, CONFIG).expect("write config");
        let server = start_server(&dir.path().join("data"), &config);
        Setup { server, dir }
    }

    pub fn output(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.jsonl"))
    }

    pub fn restart(&mut self) {
        let (status, log) = self.server.terminate();
        assert!(status.success(), "sluice stopped with {status}: {log}");
        self.restart_stopped();
    }

    /// Starts the server again after a test stopped it.
    pub fn restart_stopped(&mut self) {
        let config = self.dir.path().join("sluice.toml");
        self.server = start_server(&self.dir.path().join("data"), &config);
    }

    pub fn sluice(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .args(["--server", &self.server.url])
            .output()
            .expect("sluice runs")
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn sluice_ok(&self, args: &[&str]) -> String {
        let output = self.sluice(args);
        assert!(
            output.status.success(),
            "sluice {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    pub fn list(&self) -> Vec<Value> {
        self.sluice_ok(&["functions", "list", "--json"])
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    pub fn function(&self, name: &str) -> Value {
        self.list()
            .into_iter()
            .find(|function| function["name"] == name)
            .unwrap_or_else(|| panic!("function {name} is not listed"))
    }
}

/// Stops the server with SIGTERM, so that it stops its function processes too.
impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.server.terminate();
    }
}

/// Returns the deploy arguments of a Python function of `tests/functions/python_recorder`.
pub fn python_deploy<'a>(name: &'a str, entry_point: &'a str, source: &'a str) -> Vec<&'a str> {
    vec![
        "functions",
        "deploy",
        name,
        "--runtime",
        "python311",
        "--source",
        source,
        "--entry-point",
        entry_point,
    ]
}

/// Returns the deploy arguments of the Node CloudEvent function of `tests/functions/node_audit`
/// on the audit-log events of service account creation.
pub fn node_audit_deploy<'a>(name: &'a str, source: &'a str) -> Vec<&'a str> {
    vec![
        "functions",
        "deploy",
        name,
        "--runtime",
        "nodejs20",
        "--source",
        source,
        "--entry-point",
        "onAudit",
        "--signature-type",
        "cloudevent",
        "--trigger-event-filters",
        "type=google.cloud.audit.log.v1.written,serviceName=iam.googleapis.com",
        "--trigger-event-filters",
        "methodName=google.iam.admin.v1.CreateServiceAccount",
    ]
}

/// Reads the JSON lines that a function wrote so far.
pub fn records(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits until `done` holds for the records of `path`, and returns them.
pub fn wait_for_records(path: &Path, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let found = records(path);
        if done(&found) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}; records so far: {found:#?}"
        );
        pause(Duration::from_millis(200));
    }
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + GIVE_UP;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        pause(Duration::from_millis(200));
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "the tests are synchronous and run outside any runtime"
)]
pub fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

pub fn env_arg(key: &str, value: &Path) -> String {
    format!("{key}={}", value.display())
}

pub fn texts(found: &[Value]) -> Vec<String> {
    found
        .iter()
        .filter_map(|record| record["text"].as_str().map(str::to_owned))
        .collect()
}
