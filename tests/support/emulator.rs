//! Google's Pub/Sub emulator for differential tests: started on 127.0.0.1 with a free port
//! and a temporary working directory, stopped by its process id when dropped.
//!
//! The emulator comes with the Debian package `google-cloud-cli-pubsub-emulator`. Its
//! launcher ends in `exec java`, so the process started here is the JVM itself. It keeps its
//! state in memory and is started directly, not through `gcloud beta emulators pubsub
//! start`, which may try to update components over the network.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The variable that names another emulator folder, one with `bin/` and `lib/`.
const EMULATOR_DIR_VAR: &str = "SLUICE_PUBSUB_EMULATOR_DIR";
/// Where the Debian package installs the emulator.
const DEFAULT_EMULATOR_DIR: &str = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator";
/// How long the emulator may take to accept connections. Version 0.8.20 needed about 1.5 s
/// on a 2-core machine, and the margin covers a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The line the emulator logs once it listens, followed by the port.
const READY_LINE: &str = "Server started, listening on ";

/// A running emulator.
pub struct Emulator {
    child: Child,
    /// `127.0.0.1:PORT`, the form `PUBSUB_EMULATOR_HOST` takes.
    pub host_port: String,
    /// The emulator's version, from its jar's file name (`0.8.20`).
    pub version: String,
    /// The emulator's working directory and Java temporary directory.
    _work_dir: tempfile::TempDir,
    /// Everything the emulator printed, for failure messages.
    log: Arc<Mutex<String>>,
}

impl Emulator {
    /// Starts the emulator and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When the emulator is not installed, or does not start within [`START_TIMEOUT`]. A
    /// missing emulator fails the test instead of skipping it, so that the comparison cannot
    /// pass unnoticed.
    pub fn start() -> Emulator {
        let dir = emulator_dir();
        let launcher = dir.join("bin/cloud-pubsub-emulator");
        assert!(
            launcher.is_file(),
            "the Pub/Sub emulator is not installed at {}: install the Debian package \
             google-cloud-cli-pubsub-emulator, or set {EMULATOR_DIR_VAR} to its folder",
            dir.display()
        );
        let version = jar_version(&dir);

        let port = free_port();
        let work_dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&launcher)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .current_dir(work_dir.path())
            .env(
                "JAVA_OPTS",
                format!("-Djava.io.tmpdir={}", work_dir.path().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("failed to start {}: {err}", launcher.display()));

        let log = Arc::new(Mutex::new(String::new()));
        let (ready, started) = mpsc::channel();
        collect_lines(
            child.stdout.take().expect("piped stdout"),
            &log,
            ready.clone(),
        );
        collect_lines(child.stderr.take().expect("piped stderr"), &log, ready);

        let mut emulator = Emulator {
            child,
            host_port: format!("127.0.0.1:{port}"),
            version,
            _work_dir: work_dir,
            log,
        };
        emulator.wait_until_ready(port, &started);
        emulator
    }

    /// Waits for the ready line and for the port to accept a connection.
    fn wait_until_ready(&mut self, port: u16, started: &mpsc::Receiver<u16>) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match started.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(ready_port) if ready_port == port => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => self.fail("exited before it listened"),
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("exited with {status} before it listened"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not listen within {START_TIMEOUT:?}"));
            }
        }
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if TcpStream::connect_timeout(&address, Duration::from_secs(5)).is_err() {
            self.fail(&format!(
                "logged that it listens but refused a connection on {port}"
            ));
        }
    }

    fn fail(&mut self, problem: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!(
            "the Pub/Sub emulator {problem}; its output:\n{}",
            self.log()
        )
    }

    /// Returns what the emulator printed so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // The emulator keeps nothing on disk, so SIGKILL loses nothing.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn emulator_dir() -> PathBuf {
    match std::env::var_os(EMULATOR_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(DEFAULT_EMULATOR_DIR),
    }
}

/// Returns the version in the name of `lib/cloud-pubsub-emulator-VERSION-all.jar`.
fn jar_version(dir: &Path) -> String {
    let entries = std::fs::read_dir(dir.join("lib"))
        .unwrap_or_else(|err| panic!("cannot list {}/lib: {err}", dir.display()));
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_prefix("cloud-pubsub-emulator-")?
                .strip_suffix("-all.jar")
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Returns a port that was free a moment ago. The emulator takes a port number, not port
/// 0, so another process could take the port in between, and then the start fails with the
/// emulator's output.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("a bound address").port()
}

/// Appends each line of `output` to `log`, and sends the port of the ready line.
fn collect_lines(
    output: impl Read + Send + 'static,
    log: &Arc<Mutex<String>>,
    ready: mpsc::Sender<u16>,
) {
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if let Some(port) = line
                .split_once(READY_LINE)
                .and_then(|(_, port)| port.trim().parse().ok())
            {
                let _ = ready.send(port);
            }
            if let Ok(mut log) = log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}
