//! One supervised function process.
//!
//! [`Instance::start`] runs functions-framework on a free loopback port in a process group
//! of its own, and reports it ready once it accepts TCP connections. When the process exits, the
//! supervisor kills what is left of its group, waits a backoff that doubles from
//! [`MIN_RESTART_BACKOFF`] to [`MAX_RESTART_BACKOFF`], and starts it again, on the same port
//! when that is still free. [`Instance::stop`] sends SIGTERM to the group and SIGKILL after
//! [`STOP_GRACE`]. Every signal goes to the process group of a child this module started,
//! by its id.
//!
//! A sluice killed with SIGKILL cannot signal its function processes, so each one also
//! exits when its stdin, a pipe from sluice, closes.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::logs::{self, LogSender, Stream};
use super::runtime::Launch;

/// The first delay before a crashed process is started again.
pub(crate) const MIN_RESTART_BACKOFF: Duration = Duration::from_millis(500);

/// The maximum delay before a crashed process is started again.
pub(crate) const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

/// A process that ran this long before it exited starts again after
/// [`MIN_RESTART_BACKOFF`], because its crash is not part of a crash loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// How long a process may take to accept connections after it started. Importing a large
/// dependency tree can take tens of seconds on a busy machine.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// The interval between readiness requests.
const READY_POLL: Duration = Duration::from_millis(100);

/// The state of a function process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstanceState {
    /// Starting, or waiting to start again after an exit.
    Starting,
    /// Serving HTTP at `endpoint`.
    Ready {
        /// The URL that events are sent to, such as `http://127.0.0.1:40123/`.
        endpoint: String,
    },
    /// Stopped for good.
    Stopped,
}

impl InstanceState {
    /// Returns the state's name as `sluice functions list` shows it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            InstanceState::Starting => "STARTING",
            InstanceState::Ready { .. } => "ACTIVE",
            InstanceState::Stopped => "STOPPED",
        }
    }
}

/// The settings of a function process.
#[derive(Debug, Clone)]
pub(crate) struct ProcessSpec {
    /// The function's name, for logs and `K_SERVICE`.
    pub(crate) function: String,
    /// The deployed version, for `K_REVISION`.
    pub(crate) version: u64,
    pub(crate) launch: Launch,
    /// The user's environment variables.
    pub(crate) env: BTreeMap<String, String>,
}

/// A supervised function process.
#[derive(Debug)]
pub(crate) struct Instance {
    state: watch::Receiver<InstanceState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Process exits that led to a restart.
    restarts: Arc<AtomicU64>,
    /// The end of the last run that stopped before the process was ready.
    failure: Failure,
}

/// The reason a run ended before the process was ready, and the last lines it wrote to
/// stderr.
#[derive(Debug, Clone, Default)]
struct Failure {
    reason: Arc<Mutex<Option<String>>>,
    stderr_tail: StderrTail,
}

/// The last lines that are not blank of a process's stderr, each cut to its first
/// characters.
type StderrTail = Arc<Mutex<VecDeque<String>>>;

/// The lines a [`StderrTail`] keeps: enough for the stack trace that Node prints between
/// the error and its closing message.
const TAIL_LINES: usize = 50;

/// Returns the line of `tail` that best explains a failed start: the last one that names an
/// error or exception, as Python's and Node's error lines do, or else the last line. Node
/// ends with "Could not load the function, shutting down.", which explains nothing.
fn error_line(tail: &VecDeque<String>) -> Option<&String> {
    tail.iter()
        .rev()
        .find(|line| {
            line.contains("Error") || line.contains("Exception") || line.contains("is not defined")
        })
        .or_else(|| tail.back())
}

impl Failure {
    fn set_reason(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    fn describe(&self) -> String {
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| {
                format!(
                    "it did not accept connections on its port within {} s",
                    START_TIMEOUT.as_secs()
                )
            });
        let tail = self
            .stderr_tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match error_line(&tail) {
            Some(line) => format!("{reason}; its last error output: {line}"),
            None => reason,
        }
    }
}

impl Instance {
    /// Starts the process and its supervisor.
    pub(crate) fn start(spec: ProcessSpec, logs: LogSender) -> Instance {
        let (state_tx, state) = watch::channel(InstanceState::Starting);
        let (stop, stop_rx) = watch::channel(false);
        let restarts = Arc::new(AtomicU64::new(0));
        let failure = Failure::default();
        let supervisor = Supervisor {
            spec,
            logs,
            state: state_tx,
            stop: stop_rx,
            restarts: restarts.clone(),
            failure: failure.clone(),
        };
        let task = tokio::spawn(supervisor.run());
        Instance {
            state,
            stop,
            task,
            restarts,
            failure,
        }
    }

    /// Says why the process is not ready: how its last run ended, with the last line it wrote
    /// to stderr.
    pub(crate) fn failure(&self) -> String {
        self.failure.describe()
    }

    /// Returns a receiver of the process state.
    pub(crate) fn state(&self) -> watch::Receiver<InstanceState> {
        self.state.clone()
    }

    /// Returns the number of restarts after an exit.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Waits up to `limit` for the process to accept connections, and returns its endpoint.
    /// Returns `None` when it was not ready in time or has stopped.
    pub(crate) async fn wait_ready(&self, limit: Duration) -> Option<String> {
        wait_ready(self.state.clone(), limit).await
    }

    /// Waits up to `limit` for the first start to accept connections, and returns its
    /// endpoint. Returns `None` as soon as the process has exited once, so that a function that
    /// fails at import fails its deploy at once.
    pub(crate) async fn wait_first_ready(&self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(endpoint) = self.wait_ready(READY_POLL * 2).await {
                return Some(endpoint);
            }
            if self.restarts() > 0 || Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Stops the process: SIGTERM to its group, then SIGKILL after [`STOP_GRACE`].
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.task.await {
            warn!(error = %err, "function supervisor ended abnormally");
        }
    }
}

/// Waits up to `limit` for `state` to become ready and returns the endpoint.
pub(crate) async fn wait_ready(
    mut state: watch::Receiver<InstanceState>,
    limit: Duration,
) -> Option<String> {
    let waited = tokio::time::timeout(
        limit,
        state.wait_for(|state| !matches!(state, InstanceState::Starting)),
    )
    .await;
    match waited {
        Ok(Ok(state)) => match &*state {
            InstanceState::Ready { endpoint } => Some(endpoint.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The supervisor task's state.
struct Supervisor {
    spec: ProcessSpec,
    logs: LogSender,
    state: watch::Sender<InstanceState>,
    stop: watch::Receiver<bool>,
    restarts: Arc<AtomicU64>,
    failure: Failure,
}

/// The end of one run of the process.
enum RunEnd {
    /// The process exited or never became ready; start it again.
    Exited,
    /// A stop was requested.
    Stop,
}

impl Supervisor {
    async fn run(mut self) {
        let function = self.spec.function.clone();
        let mut backoff = MIN_RESTART_BACKOFF;
        let mut port = None;
        loop {
            let chosen = match free_port(port) {
                Ok(chosen) => chosen,
                Err(err) => {
                    warn!(%function, error = %err, "no free loopback port for the function");
                    if self.pause(backoff).await {
                        break;
                    }
                    continue;
                }
            };
            port = Some(chosen);
            let started = Instant::now();
            match self.run_once(chosen).await {
                RunEnd::Stop => break,
                RunEnd::Exited => {}
            }
            self.state.send_replace(InstanceState::Starting);
            self.restarts.fetch_add(1, Ordering::Relaxed);
            if started.elapsed() >= HEALTHY_RUN {
                backoff = MIN_RESTART_BACKOFF;
            }
            info!(%function, backoff_ms = backoff.as_millis() as u64, "restarting function process");
            if self.pause(backoff).await {
                break;
            }
            backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
        }
        self.state.send_replace(InstanceState::Stopped);
    }

    /// Sleeps for `delay`; returns true when a stop was requested meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => false,
            () = stop_requested(&mut self.stop) => true,
        }
    }

    /// Runs the process once, until it exits or a stop is requested.
    async fn run_once(&mut self, port: u16) -> RunEnd {
        let function = self.spec.function.clone();
        let (mut child, stderr) = match self.spawn(port) {
            Ok(spawned) => spawned,
            Err(err) => {
                warn!(%function, error = %err, "failed to start the function process");
                self.failure.set_reason(format!(
                    "its process could not be started: {}: {err}",
                    self.spec.launch.program.display()
                ));
                return RunEnd::Exited;
            }
        };
        // Held until this run ends: `Child::wait` would close a stdin it still owns, and the
        // function exits when its stdin closes.
        let _stdin = child.stdin.take();
        let Some(pid) = child.id() else {
            return RunEnd::Exited;
        };
        info!(%function, version = self.spec.version, pid, port, "function process started");
        let endpoint = format!("http://127.0.0.1:{port}/");

        let became_ready = tokio::select! {
            ready = poll_ready(port) => ready,
            status = child.wait() => {
                let status = status.map_or_else(|err| err.to_string(), |status| status.to_string());
                warn!(%function, pid, %status, "function process exited before it was ready");
                kill_group(pid, Signal::SIGKILL);
                // The output up to the exit explains it, so it is read to the end first.
                if let Some(stderr) = stderr {
                    let _ = tokio::time::timeout(Duration::from_secs(2), stderr).await;
                }
                self.failure.set_reason(format!("its process exited before it accepted connections, with {status}"));
                return RunEnd::Exited;
            }
            () = stop_requested(&mut self.stop) => {
                terminate(&function, pid, &mut child).await;
                return RunEnd::Stop;
            }
        };
        if !became_ready {
            warn!(%function, pid, timeout_secs = START_TIMEOUT.as_secs(), "function process did not listen on its port in time; killing it");
            self.failure.set_reason(format!(
                "its process did not accept connections on its port within {} s",
                START_TIMEOUT.as_secs()
            ));
            kill_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            return RunEnd::Exited;
        }
        info!(%function, pid, %endpoint, "function ready");
        *self
            .failure
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.state.send_replace(InstanceState::Ready { endpoint });

        tokio::select! {
            status = child.wait() => {
                warn!(%function, pid, status = ?status.ok(), "function process exited");
                // Leftovers of the group, such as a gunicorn worker, go too.
                kill_group(pid, Signal::SIGKILL);
                RunEnd::Exited
            }
            () = stop_requested(&mut self.stop) => {
                terminate(&function, pid, &mut child).await;
                RunEnd::Stop
            }
        }
    }

    /// Starts the process, and returns it with the task that forwards its stderr.
    fn spawn(&self, port: u16) -> std::io::Result<(Child, Option<JoinHandle<()>>)> {
        let launch = &self.spec.launch;
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .args(launch.port_args(port))
            .current_dir(&launch.dir)
            .envs(&self.spec.env)
            .env("PORT", port.to_string())
            .env("K_SERVICE", &self.spec.function)
            .env("K_REVISION", self.spec.version.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // The function exits when this pipe closes, which happens when sluice exits,
            // however it ends (see the launch commands in `runtime`).
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that a stop reaches the workers it forks.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn()?;
        if let Some(stdout) = child.stdout.take() {
            forward_lines(
                stdout,
                Stream::Stdout,
                &self.spec.function,
                &self.logs,
                None,
            );
        }
        let stderr = child.stderr.take().map(|stderr| {
            let last = self.failure.stderr_tail.clone();
            forward_lines(
                stderr,
                Stream::Stderr,
                &self.spec.function,
                &self.logs,
                Some(last),
            )
        });
        Ok((child, stderr))
    }
}

/// Completes once a stop is requested, or the instance is gone.
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // The guard that `wait_for` returns is not `Send`, so it is dropped here.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Sends SIGTERM to the group, waits up to [`STOP_GRACE`] for the process, then SIGKILLs the
/// group.
async fn terminate(function: &str, pid: u32, child: &mut Child) {
    kill_group(pid, Signal::SIGTERM);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => info!(function, pid, "function process stopped"),
        Err(_) => {
            warn!(
                function,
                pid,
                grace_secs = STOP_GRACE.as_secs(),
                "function process ignored SIGTERM; killing it"
            );
        }
    }
    kill_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Sends `signal` to the process group that the child `pid` leads. A group that is gone
/// already is no error.
fn kill_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if let Err(err) = killpg(Pid::from_raw(raw), signal) {
        if err != nix::errno::Errno::ESRCH {
            warn!(pid, ?signal, error = %err, "failed to signal the function process");
        }
    }
}

/// Returns `preferred` when it is still free on 127.0.0.1, or else a port the system picks.
fn free_port(preferred: Option<u16>) -> std::io::Result<u16> {
    if let Some(port) = preferred {
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Connects to `port` on 127.0.0.1 until a connection succeeds, for up to [`START_TIMEOUT`].
///
/// A TCP connection is the readiness signal because no HTTP request is quiet in every
/// signature type. functions-framework for Node (5.0.5) runs its event middlewares on any
/// request, so a GET without a body makes a CloudEvent function log a TypeError. Both
/// frameworks import the function's source before they listen, so an accepted connection
/// shows that the import succeeded.
async fn poll_ready(port: u16) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            drop(stream);
            return true;
        }
        tokio::time::sleep(READY_POLL).await;
    }
    false
}

/// Sends each line of `output` to the log shipper until the stream closes, and keeps the
/// last lines that are not blank in `tail`. A line is read into at most
/// [`logs::MAX_LINE_BYTES`], so a function that writes without newlines cannot fill
/// sluice's memory, and bytes that are not UTF-8 become U+FFFD.
fn forward_lines(
    output: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    function: &str,
    logs: &LogSender,
    tail: Option<StderrTail>,
) -> JoinHandle<()> {
    /// The maximum length of a line kept for an error message, in characters.
    const TAIL_LINE_CHARS: usize = 300;
    let function = function.to_owned();
    let logs = logs.clone();
    tokio::spawn(async move {
        let mut output = BufReader::new(output);
        while let Ok(Some((line, cut))) = next_line_bounded(&mut output, logs::MAX_LINE_BYTES).await
        {
            if let Some(tail) = &tail {
                let trimmed = line.trim();
                if !trimmed.is_empty() {
                    let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(trimmed.chars().take(TAIL_LINE_CHARS).collect());
                }
            }
            logs.send_cut(&function, stream, line, cut);
        }
    })
}

/// Reads one line from `reader` without its `\n` or `\r\n`, keeping at most `limit` bytes.
/// The rest of a longer line is read and discarded. Returns the text with the number of
/// bytes discarded, or `None` at the end of the stream.
async fn next_line_bounded(
    reader: &mut (impl AsyncBufRead + Unpin),
    limit: usize,
) -> std::io::Result<Option<(String, usize)>> {
    let mut line = Vec::new();
    let mut cut = 0;
    let mut read_any = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            break;
        }
        read_any = true;
        let newline = buffer.iter().position(|&byte| byte == b'\n');
        let length = newline.unwrap_or(buffer.len());
        let kept = length.min(limit - line.len());
        line.extend_from_slice(&buffer[..kept]);
        cut += length - kept;
        reader.consume(length + usize::from(newline.is_some()));
        if newline.is_some() {
            break;
        }
    }
    if !read_any {
        return Ok(None);
    }
    if cut == 0 {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        return Ok(Some((String::from_utf8_lossy(&line).into_owned(), 0)));
    }
    // A character split by the limit goes with the rest of the line.
    if let Err(err) = std::str::from_utf8(&line) {
        if err.error_len().is_none() {
            cut += line.len() - err.valid_up_to();
            line.truncate(err.valid_up_to());
        }
    }
    Ok(Some((String::from_utf8_lossy(&line).into_owned(), cut)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(bytes: &[u8], limit: usize) -> Vec<(String, usize)> {
        let mut reader = BufReader::with_capacity(4, bytes);
        let mut lines = Vec::new();
        while let Some(line) = next_line_bounded(&mut reader, limit).await.expect("read") {
            lines.push(line);
        }
        lines
    }

    fn tail(lines: &[&str]) -> VecDeque<String> {
        lines.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn error_line_skips_node_closing_message() {
        let node = tail(&[
            "Provided module can't be loaded.",
            "Detailed stack trace: /srv/index.js:1",
            "SyntaxError: Unexpected end of input",
            "at wrapSafe (node:internal/modules/cjs/loader:1378:20)",
            "Could not load the function, shutting down.",
        ]);
        assert_eq!(
            error_line(&node).map(String::as_str),
            Some("SyntaxError: Unexpected end of input")
        );
        let missing = tail(&[
            "Function 'nope' is not defined in the provided module.",
            "Did you specify the correct target function to execute?",
            "Could not load the function, shutting down.",
        ]);
        assert_eq!(
            error_line(&missing).map(String::as_str),
            Some("Function 'nope' is not defined in the provided module.")
        );
    }

    #[test]
    fn error_line_falls_back_to_last() {
        let plain = tail(&["starting", "listening failed: port taken"]);
        assert_eq!(
            error_line(&plain).map(String::as_str),
            Some("listening failed: port taken")
        );
        assert_eq!(error_line(&VecDeque::new()), None);
    }

    #[tokio::test]
    async fn bounded_lines_split_like_lines() {
        let lines = lines_of(b"first\r\nsecond\n\nlast", 64).await;
        let texts: Vec<&str> = lines.iter().map(|(text, _)| text.as_str()).collect();
        assert_eq!(texts, ["first", "second", "", "last"]);
    }

    #[tokio::test]
    async fn long_line_is_cut_and_counted() {
        let lines = lines_of(b"abcdefghij\nnext\n", 4).await;
        assert_eq!(lines, [("abcd".to_owned(), 6), ("next".to_owned(), 0)]);
    }

    #[tokio::test]
    async fn cut_never_splits_a_character() {
        // "é" is two bytes, and the limit of 2 falls between them.
        let lines = lines_of("aéb\n".as_bytes(), 2).await;
        assert_eq!(lines, [("a".to_owned(), 3)]);
    }

    #[tokio::test]
    async fn invalid_utf8_does_not_end_the_stream() {
        let lines = lines_of(b"bad \xff byte\nafter\n", 64).await;
        assert_eq!(
            lines,
            [("bad \u{fffd} byte".to_owned(), 0), ("after".to_owned(), 0)]
        );
    }
}
