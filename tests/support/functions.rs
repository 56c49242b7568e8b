//! A Python function served by the real functions-framework (the PyPI package that Cloud
//! Functions and Cloud Run run Python functions with), on 127.0.0.1, for push tests.
//!
//! [`FunctionHost::start`] runs `python -m functions_framework` from the virtual environment
//! of `scripts/test` with a source file of `tests/python/functions/`. The functions there
//! append one JSON line per call to the file named by `SLUICE_FUNCTION_OUTPUT`, which
//! [`FunctionHost::invocations`] reads. The host is stopped with SIGTERM by its process id
//! when it is dropped, and gunicorn's master then stops its worker.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::python;

/// How long functions-framework may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`FunctionHost::wait_for`] waits for calls. It bounds a hung test, and is never
/// a measure of speed.
const GIVE_UP: Duration = Duration::from_secs(120);

/// The signature type of a function, as `--signature-type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// A background function, `(data, context)`.
    Event,
    /// A CloudEvent function, `(cloud_event)`.
    CloudEvent,
}

impl Signature {
    fn flag(self) -> &'static str {
        match self {
            Signature::Event => "event",
            Signature::CloudEvent => "cloudevent",
        }
    }
}

/// A running functions-framework process.
pub struct FunctionHost {
    child: Child,
    /// The function's URL, such as `http://127.0.0.1:40123/`.
    pub url: String,
    output: PathBuf,
    logs: PathBuf,
    _dir: tempfile::TempDir,
}

impl FunctionHost {
    /// Serves `target` of `tests/python/functions/{source}` with `signature`.
    ///
    /// # Panics
    ///
    /// When the interpreter of `SLUICE_TEST_PYTHON` is missing, or when functions-framework
    /// exits or does not accept connections within a minute.
    pub fn start(source: &str, target: &str, signature: Signature) -> FunctionHost {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = dir.path().join("invocations.jsonl");
        let logs = dir.path().join("functions-framework.log");
        let log = File::create(&logs).expect("create the log file");
        let address = free_address();
        let source_path = python::script("functions").join(source);
        let child = Command::new(python::interpreter())
            .args(["-m", "functions_framework", "--target", target])
            .arg("--source")
            .arg(&source_path)
            .args(["--signature-type", signature.flag()])
            .args(["--host", "127.0.0.1", "--port"])
            .arg(address.port().to_string())
            .env("SLUICE_FUNCTION_OUTPUT", &output)
            // The name that tests/python/functions/record_cloudevent.py reads.
            .env("SLUICE_EVENTS_FILE", &output)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("functions-framework does not start: {err}; run scripts/test to install it")
            });
        let mut host = FunctionHost {
            child,
            url: format!("http://{address}/"),
            output,
            logs,
            _dir: dir,
        };
        host.wait_until_listening(address);
        host
    }

    fn wait_until_listening(&mut self, address: SocketAddr) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "functions-framework exited with {status} before it listened:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "functions-framework did not listen on {address} within {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            #[allow(
                clippy::disallowed_methods,
                reason = "a synchronous wait while the host starts, outside any async task"
            )]
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns what functions-framework wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.logs).unwrap_or_default()
    }

    /// Returns the calls recorded so far, one JSON value each, in order.
    pub fn invocations(&self) -> Vec<Value> {
        read_lines(&self.output)
    }

    /// Waits until the function has recorded `count` calls and returns them.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + GIVE_UP;
        loop {
            let invocations = self.invocations();
            if invocations.len() >= count {
                return invocations;
            }
            assert!(
                Instant::now() < deadline,
                "the function recorded {} calls, expected {count}; its log:\n{}",
                invocations.len(),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.signal("TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            #[allow(
                clippy::disallowed_methods,
                reason = "a synchronous wait in Drop, which cannot await"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback address whose port was free a moment ago. Another process could take
/// it before functions-framework binds it, which would fail the start with a clear log.
fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

fn read_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        // A line is complete once its newline is written; a partial last line waits.
        .take(text.matches('\n').count())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("recorded call is not JSON ({err}): {line}"))
        })
        .collect()
}
