//! nats-server processes with JetStream for the tests: one server, or a cluster of several,
//! on free loopback ports with their stores in temporary directories. Each process is
//! killed by its pid when its handle is dropped.
//!
//! The tests of both crates include this file; `scripts/test` installs nats-server from
//! Debian's packages when it is missing.
#![allow(dead_code, unreachable_pub)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// How long a server may take to accept connections after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One nats-server process with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    /// The client port.
    pub port: u16,
    /// The cluster port, when the server is part of a cluster.
    pub cluster_port: Option<u16>,
    /// The server name, which JetStream reports as a stream's leader.
    pub name: String,
    store_dir: tempfile::TempDir,
    routes: Vec<u16>,
    /// A configuration file that the server reads, for settings with no command-line flag.
    config_file: Option<std::path::PathBuf>,
}

impl NatsServer {
    /// Starts a standalone server and waits until it accepts connections.
    pub async fn start() -> NatsServer {
        NatsServer::start_with_config("").await
    }

    /// Starts a standalone server that also reads `config`, in nats-server's configuration
    /// format, such as `max_payload: 4096`. The command-line flags for the port, name and
    /// store directory take precedence over it.
    pub async fn start_with_config(config: &str) -> NatsServer {
        let store_dir = tempfile::tempdir().expect("temp dir for the JetStream store");
        let config_file = (!config.is_empty()).then(|| {
            let path = store_dir.path().join("nats-server.conf");
            std::fs::write(&path, config).expect("write the nats-server configuration");
            path
        });
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            cluster_port: None,
            name: "sluice-test".to_owned(),
            store_dir,
            routes: Vec::new(),
            config_file,
        };
        server.spawn().await;
        server
    }

    /// Returns the client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the process at once, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL to this child's own pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same ports and store, after [`NatsServer::kill`].
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let mut command = Command::new("nats-server");
        if let Some(config_file) = &self.config_file {
            command.arg("-c").arg(config_file);
        }
        command
            .arg("-js")
            .args(["-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string()])
            .args(["-n", &self.name])
            .arg("-sd")
            .arg(self.store_dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(cluster_port) = self.cluster_port {
            let routes: Vec<String> = self
                .routes
                .iter()
                .map(|port| format!("nats://127.0.0.1:{port}"))
                .collect();
            command
                .args(["--cluster_name", "sluice-test"])
                .args(["--cluster", &format!("nats://127.0.0.1:{cluster_port}")])
                .args(["--routes", &routes.join(",")]);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "failed to start nats-server: {err}. Install it (Debian: apt-get install \
                 nats-server), or run scripts/test, which installs it"
            )
        });
        self.child = Some(child);
        wait_for_port(self.port).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Several nats-server processes in one JetStream cluster on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    /// The servers, in start order.
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` servers that route to each other, and waits until each accepts
    /// connections. JetStream elects its meta leader shortly after.
    pub async fn start(size: usize) -> NatsCluster {
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let mut servers = Vec::with_capacity(size);
        for (i, &cluster_port) in cluster_ports.iter().enumerate() {
            servers.push(NatsServer {
                child: None,
                port: free_port(),
                cluster_port: Some(cluster_port),
                name: format!("sluice-test-{i}"),
                store_dir: tempfile::tempdir().expect("temp dir for the JetStream store"),
                routes: cluster_ports.clone(),
                config_file: None,
            });
        }
        for server in &mut servers {
            server.spawn().await;
        }
        NatsCluster { servers }
    }

    /// Returns the client URL of every server.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }
}

/// Returns a port that was free a moment ago. Another process may take it before the
/// server binds it, which then fails the test visibly.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

async fn wait_for_port(port: u16) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let give_up = Instant::now() + START_TIMEOUT;
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            Instant::now() < give_up,
            "nats-server did not accept connections on {address} within {START_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
