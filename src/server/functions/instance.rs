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

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::logs::{LogSender, Stream};
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
}

impl Instance {
    /// Starts the process and its supervisor.
    pub(crate) fn start(spec: ProcessSpec, logs: LogSender) -> Instance {
        let (state_tx, state) = watch::channel(InstanceState::Starting);
        let (stop, stop_rx) = watch::channel(false);
        let restarts = Arc::new(AtomicU64::new(0));
        let supervisor = Supervisor {
            spec,
            logs,
            state: state_tx,
            stop: stop_rx,
            restarts: restarts.clone(),
        };
        let task = tokio::spawn(supervisor.run());
        Instance {
            state,
            stop,
            task,
            restarts,
        }
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
        let mut child = match self.spawn(port) {
            Ok(child) => child,
            Err(err) => {
                warn!(%function, error = %err, "failed to start the function process");
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
                warn!(%function, pid, status = ?status.ok(), "function process exited before it was ready");
                kill_group(pid, Signal::SIGKILL);
                return RunEnd::Exited;
            }
            () = stop_requested(&mut self.stop) => {
                terminate(&function, pid, &mut child).await;
                return RunEnd::Stop;
            }
        };
        if !became_ready {
            warn!(%function, pid, timeout_secs = START_TIMEOUT.as_secs(), "function process did not listen on its port in time; killing it");
            kill_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            return RunEnd::Exited;
        }
        info!(%function, pid, %endpoint, "function ready");
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

    fn spawn(&self, port: u16) -> std::io::Result<Child> {
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
            forward_lines(stdout, Stream::Stdout, &self.spec.function, &self.logs);
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(stderr, Stream::Stderr, &self.spec.function, &self.logs);
        }
        Ok(child)
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

/// Sends each line of `output` to the log shipper until the stream closes.
///
/// NOTE: a line is read whole before the shipper cuts it to `logs::MAX_LINE_BYTES`, so a
/// function that writes gigabytes without a newline makes sluice buffer them.
fn forward_lines(
    output: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    function: &str,
    logs: &LogSender,
) {
    let function = function.to_owned();
    let logs = logs.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            logs.send(&function, stream, line);
        }
    });
}
