//! A real `sluice serve` process for integration tests: started on 127.0.0.1 with port 0 and
//! a temporary data directory, stopped with SIGTERM (or SIGKILL) by its process id.
#![allow(dead_code, unreachable_pub)]

pub mod certs;
pub mod deploy;
pub mod emulator;
pub mod functions;
pub mod python;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The shared fixtures folder, beside the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
}

/// Connects a gRPC channel to `server`.
pub async fn channel(server: &TestServer) -> sluice_proto::tonic::transport::Channel {
    sluice_proto::tonic::transport::Channel::from_shared(server.url.clone())
        .expect("the server URL is valid")
        .connect()
        .await
        .expect("gRPC connects")
}

/// Percent-encodes every byte outside RFC 3986's unreserved set, so that `text` is one URL
/// path segment.
pub fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A running server.
pub struct TestServer {
    child: Child,
    /// The server's base URL, such as `http://127.0.0.1:40123`.
    pub url: String,
    /// The data directory; owned here when the server made it.
    pub data_dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    stderr: mpsc::Receiver<String>,
}

impl TestServer {
    /// Starts a server on the built-in configuration, or on `config` (TOML text).
    pub fn start(config: Option<&str>) -> TestServer {
        TestServer::start_with_args(config, &[])
    }

    /// Starts a server like [`TestServer::start`], with `args` added to `sluice serve`.
    pub fn start_with_args(config: Option<&str>, args: &[&str]) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let config_path = config.map(|text| {
            let path = temp.path().join("sluice.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut server = TestServer::start_in_with_args(&data_dir, config_path.as_deref(), args);
        server.temp = Some(temp);
        server
    }

    /// Starts a server like [`TestServer::start`], with the environment variables `env` set
    /// for the server process.
    pub fn start_with_env(config: Option<&str>, env: &[(&str, &str)]) -> TestServer {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let config_path = config.map(|text| {
            let path = temp.path().join("sluice.toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut server = TestServer::spawn(None, &data_dir, config_path.as_deref(), &[], env);
        server.temp = Some(temp);
        server
    }

    /// Starts a server like [`TestServer::start_in`], with the environment variables `env`
    /// set for the server process.
    pub fn start_in_with_env(
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> TestServer {
        TestServer::spawn(None, data_dir, config, &[], env)
    }

    /// Starts a server like [`TestServer::start_in_with_env`] in the working directory `cwd`,
    /// against which a relative `data_dir` resolves.
    pub fn start_from(
        cwd: &Path,
        data_dir: &Path,
        config: Option<&Path>,
        env: &[(&str, &str)],
    ) -> TestServer {
        TestServer::spawn(Some(cwd), data_dir, config, &[], env)
    }

    /// Starts a server on an existing data directory, as after a crash.
    pub fn start_in(data_dir: &Path, config: Option<&Path>) -> TestServer {
        TestServer::start_in_with_args(data_dir, config, &[])
    }

    /// Starts a server like [`TestServer::start_in`], with `args` added to `sluice serve`.
    pub fn start_in_with_args(data_dir: &Path, config: Option<&Path>, args: &[&str]) -> TestServer {
        TestServer::spawn(None, data_dir, config, args, &[])
    }

    fn spawn(
        cwd: Option<&Path>,
        data_dir: &Path,
        config: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let (errors, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = errors.send(text);
        });
        let line = received.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
            let _ = child.kill();
            let log = stderr_lines
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_default();
            panic!("sluice serve printed no address within {START_TIMEOUT:?}; stderr:\n{log}")
        });
        let url = line
            .strip_prefix("sluice listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from sluice serve: {line:?}"))
            .to_owned();
        TestServer {
            child,
            url,
            data_dir: data_dir.to_owned(),
            temp: None,
            stderr: stderr_lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`) to the server process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Stops the server with SIGTERM and returns its exit status and stderr.
    pub fn terminate(&mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.terminate_wait()
    }

    /// Waits for a server that was already sent SIGTERM, and returns its exit status and
    /// stderr; sends SIGKILL if it does not exit in time.
    pub fn terminate_wait(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for sluice") {
                let log = self
                    .stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                return (status, log);
            }
            if Instant::now() > deadline {
                self.signal("KILL");
                panic!("sluice serve did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            #[allow(
                clippy::disallowed_methods,
                reason = "a synchronous wait outside any runtime"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Accessors for tests that treat the server as an address to point a client at.
impl TestServer {
    /// Returns the server's base URL, for a client's `--server`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server with SIGTERM, or SIGKILL after 15 s, and returns its exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate().0
    }
}
