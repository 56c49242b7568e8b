//! Three `sluice serve` processes on one JetStream server share a subscription. Publishers
//! spread 100,000 messages over the nodes and one consumer per node pulls. One node, whose
//! consumer never acknowledges, is killed with SIGKILL halfway through. Every publish that a
//! node acknowledged must be delivered at least once, the dead node's unacknowledged leases
//! included, which JetStream hands to the other nodes after the ack deadline.
//!
//! `SLUICE_NODES_MESSAGES` sets the number of messages (default 100,000).

#[path = "../router/tests/nats/mod.rs"]
mod nats;
mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest,
};
use sluice_proto::tonic::transport::{Channel, Endpoint};
use support::TestServer;

const DEFAULT_MESSAGES: usize = 100_000;
const BATCH: usize = 500;
const PULL_MAX_MESSAGES: i32 = 1_000;
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the consumers may take to receive every acknowledged publish after the last
/// one: the 10 s ack deadline of the dead node's leases, plus the backlog.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
const TOPIC: &str = "projects/local/topics/nodes";
const SUBSCRIPTION: &str = "projects/local/subscriptions/nodes";

fn config(url: &str) -> String {
    format!(
        r#"
[store]
kind = "jetstream"
urls = ["{url}"]

[[topics]]
name = "nodes"

[[subscriptions]]
name = "nodes"
topic = "nodes"
ack_deadline_secs = 10
"#
    )
}

/// The data of every acknowledged publish and of every delivery the test saw.
#[derive(Default)]
struct Ledger {
    published: HashSet<String>,
    delivered: HashSet<String>,
    deliveries: u64,
    failed_publishes: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_deliver_every_acked_publish_after_kill() {
    let messages = std::env::var("SLUICE_NODES_MESSAGES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_MESSAGES);
    let nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(&nats.url())).expect("write config");
    let mut nodes = Vec::new();
    for index in 0..3 {
        let data_dir = dir.path().join(format!("node-{index}"));
        nodes.push(Some(start_node(&data_dir, &config_path).await));
    }
    let urls: Vec<String> = nodes
        .iter()
        .map(|node| node.as_ref().expect("started").url().to_owned())
        .collect();

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The consumer of the node that will be killed never acknowledges, so the messages it
    // pulled are leased to a dead node until their ack deadline ends.
    let victim = 1;
    let consumers: Vec<_> = urls
        .iter()
        .enumerate()
        .map(|(index, url)| {
            let acknowledges = index != victim;
            tokio::spawn(consume(
                url.clone(),
                acknowledges,
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let mut killed = false;
    for (batch_index, start) in (0..messages).step_by(BATCH).enumerate() {
        if !killed && start >= messages / 2 {
            let mut node = nodes[victim].take().expect("victim runs");
            tokio::task::spawn_blocking(move || node.kill9())
                .await
                .expect("the node is killed");
            killed = true;
        }
        let url = &urls[batch_index % urls.len()];
        let batch: Vec<String> = (start..(start + BATCH).min(messages))
            .map(|n| format!("message-{n}"))
            .collect();
        publish(url, batch, &ledger).await;
    }

    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let missing = {
            let ledger = ledger.lock().expect("ledger");
            ledger.published.difference(&ledger.delivered).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} acknowledged publishes not delivered within {DRAIN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let held = consumers_held(consumers).await;
    let ledger = ledger.lock().expect("ledger");
    report(&format!(
        "{} publishes acknowledged, {} failed (the killed node's), {} deliveries of {} messages, \
         {held} held unacknowledged by the killed node",
        ledger.published.len(),
        ledger.failed_publishes,
        ledger.deliveries,
        ledger.delivered.len()
    ));
    assert!(
        held > 0,
        "the killed node held no leases, so none had to move"
    );
    assert!(
        ledger.published.len() >= messages / 2,
        "only {} publishes were acknowledged",
        ledger.published.len()
    );
}

#[allow(clippy::print_stderr, reason = "the test reports its figures")]
fn report(text: &str) {
    eprintln!("{text}");
}

async fn start_node(data_dir: &Path, config: &Path) -> TestServer {
    let (data_dir, config): (PathBuf, PathBuf) = (data_dir.to_owned(), config.to_owned());
    tokio::task::spawn_blocking(move || TestServer::start_in(&data_dir, Some(&config)))
        .await
        .expect("the node starts")
}

fn channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("the node prints a valid URL")
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy()
}

/// Publishes one batch to the node at `url`, recording the data if the node acknowledged it.
async fn publish(url: &str, batch: Vec<String>, ledger: &Mutex<Ledger>) {
    let mut client = PublisherClient::new(channel(url));
    let request = PublishRequest {
        topic: TOPIC.to_owned(),
        messages: batch
            .iter()
            .map(|data| PubsubMessage {
                data: data.clone().into_bytes(),
                ..Default::default()
            })
            .collect(),
    };
    let acknowledged = client.publish(request).await.is_ok();
    let mut ledger = ledger.lock().expect("ledger");
    if acknowledged {
        ledger.published.extend(batch);
    } else {
        ledger.failed_publishes += batch.len() as u64;
    }
}

/// Waits for the consumers and returns how many deliveries they left unacknowledged.
async fn consumers_held(consumers: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    let mut held = 0;
    for consumer in consumers {
        held += consumer.await.expect("consumer task");
    }
    held
}

/// Pulls on one node until `stop`, acknowledging each delivery if `acknowledges`. Returns
/// how many deliveries it left unacknowledged.
async fn consume(
    url: String,
    acknowledges: bool,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut held = 0;
    let mut client = SubscriberClient::new(channel(&url));
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let request = PullRequest {
            subscription: SUBSCRIPTION.to_owned(),
            max_messages: PULL_MAX_MESSAGES,
            ..Default::default()
        };
        let Ok(response) = client.pull(request).await else {
            // The killed node refuses connections from now on.
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let received = response.into_inner().received_messages;
        let mut ack_ids = Vec::with_capacity(received.len());
        {
            let mut ledger = ledger.lock().expect("ledger");
            for message in received {
                let data = message.message.map(|m| m.data).unwrap_or_default();
                ledger
                    .delivered
                    .insert(String::from_utf8_lossy(&data).into_owned());
                ledger.deliveries += 1;
                ack_ids.push(message.ack_id);
            }
        }
        if !acknowledges {
            held += ack_ids.len() as u64;
            continue;
        }
        if !ack_ids.is_empty() {
            let request = AcknowledgeRequest {
                subscription: SUBSCRIPTION.to_owned(),
                ack_ids,
            };
            let _ = client.acknowledge(request).await;
        }
    }
    held
}

#[test]
fn unreachable_jetstream_fails_start_naming_url() {
    let url = format!("nats://127.0.0.1:{}", nats::free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(&url)).expect("write config");

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config_path)
        .output()
        .expect("sluice serve runs");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(
        stderr.contains("failed to connect to JetStream"),
        "{stderr}"
    );
}

/// Push subscriptions work over JetStream too: two nodes push the messages of one
/// subscription to an endpoint, and every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscription_delivers_from_nodes() {
    const PUSHED: usize = 40;
    let received = Arc::new(Mutex::new(HashSet::new()));
    let endpoint = start_push_endpoint(received.clone()).await;
    let nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    let config_text = format!(
        "{}\n[[subscriptions]]\nname = \"pushed\"\ntopic = \"nodes\"\n\
         [subscriptions.push]\nendpoint = \"{endpoint}/push\"\n",
        config(&nats.url())
    );
    std::fs::write(&config_path, config_text).expect("write config");
    let mut nodes = Vec::new();
    for index in 0..2 {
        let data_dir = dir.path().join(format!("node-{index}"));
        nodes.push(start_node(&data_dir, &config_path).await);
    }

    let ledger = Mutex::new(Ledger::default());
    for (index, start) in (0..PUSHED).step_by(10).enumerate() {
        let batch: Vec<String> = (start..start + 10).map(|n| format!("pushed-{n}")).collect();
        publish(nodes[index % nodes.len()].url(), batch, &ledger).await;
    }
    assert_eq!(
        ledger.lock().expect("ledger").published.len(),
        PUSHED,
        "every publish is acknowledged"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let count = received.lock().expect("received").len();
        if count == PUSHED {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} of {PUSHED} messages pushed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts an HTTP endpoint on 127.0.0.1 that records the data of every pushed message and
/// responds 204. Returns its base URL.
async fn start_push_endpoint(received: Arc<Mutex<HashSet<String>>>) -> String {
    use base64::Engine as _;

    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                let json: serde_json::Value =
                    serde_json::from_slice(&body).expect("push body is JSON");
                let data = json["message"]["data"].as_str().unwrap_or_default();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .expect("data is base64");
                received
                    .lock()
                    .expect("received")
                    .insert(String::from_utf8_lossy(&data).into_owned());
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the push endpoint");
    let address = listener.local_addr().expect("endpoint address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{address}")
}

/// How long a sluice process or its health check may take to follow a change of the
/// nats-server: noticing a stop, reconnecting, or failing a start-up.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `/healthz` and returns the status code and body; `None` when the request fails.
async fn health(node: &TestServer) -> Option<(u16, String)> {
    let response = reqwest::get(format!("{}/healthz", node.url())).await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Waits until `/healthz` responds with `status`, and returns the body.
async fn wait_for_health(node: &TestServer, status: u16) -> String {
    let give_up = tokio::time::Instant::now() + FOLLOW_TIMEOUT;
    loop {
        let last = health(node).await;
        if let Some((code, body)) = &last {
            if *code == status {
                return body.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "/healthz did not respond {status} within {FOLLOW_TIMEOUT:?}; last: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a sluice command to its end, or kills it by its pid after `limit`. Returns the
/// exit status, stderr and run time; the status is `None` when the command was killed.
fn run_within(
    command: &mut std::process::Command,
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String, Duration) {
    use std::io::Read as _;

    let started = std::time::Instant::now();
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sluice runs");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for sluice") {
            break Some(status);
        }
        if started.elapsed() > limit {
            // Child::kill sends SIGKILL to this child's own pid.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "a synchronous wait on a blocking thread"
        )]
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stderr, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_store_connection() {
    let mut nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(&nats.url())).expect("write config");
    let node = start_node(&dir.path().join("node"), &config_path).await;
    let body = wait_for_health(&node, 200).await;
    assert_eq!(body, "ok\n");

    nats.kill();
    let body = wait_for_health(&node, 503).await;
    assert!(body.contains("store unreachable"), "{body}");
    assert!(body.contains(&nats.url()), "{body}");

    nats.restart().await;
    let body = wait_for_health(&node, 200).await;
    assert_eq!(body, "ok\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pull_fails_while_store_down() {
    let mut nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(&nats.url())).expect("write config");
    let node = start_node(&dir.path().join("node"), &config_path).await;
    nats.kill();
    wait_for_health(&node, 503).await;

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(["pull", "nodes", "--server", node.url()]);
    let (status, stderr, elapsed) =
        tokio::task::spawn_blocking(move || run_within(&mut command, FOLLOW_TIMEOUT * 2))
            .await
            .expect("the pull runs");

    let status = status.unwrap_or_else(|| panic!("sluice pull still ran after {elapsed:?}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?}: {stderr}"
    );
    assert!(
        stderr.contains("failed to connect to JetStream"),
        "{stderr}"
    );
    assert!(stderr.contains(&nats.url()), "{stderr}");
}

#[test]
fn silent_port_fails_start_naming_url() {
    // A port that accepts connections and never writes, as another service's would.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("nats://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming().map_while(Result::ok) {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(&config_path, config(&url)).expect("write config");

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config_path);
    let (status, stderr, elapsed) = run_within(&mut command, FOLLOW_TIMEOUT);

    let status = status.unwrap_or_else(|| panic!("sluice serve still ran after {elapsed:?}"));
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
}

#[test]
fn rules_check_rejects_bad_store_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.creds").display().to_string();
    let cases = [
        (
            format!(
                "[store]\nkind = \"jetstream\"\nurls = [\"nats://127.0.0.1:4222\"]\n\
                 credentials_file = {missing:?}\n"
            ),
            missing.clone(),
        ),
        (
            "[store]\nkind = \"jetstream\"\nurls = [\"http://127.0.0.1:4222\"]\n".to_owned(),
            "\"http://127.0.0.1:4222\"".to_owned(),
        ),
    ];
    for (text, named) in cases {
        let config_path = dir.path().join("sluice.toml");
        std::fs::write(&config_path, &text).expect("write config");

        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["rules", "check"])
            .arg(&config_path)
            .output()
            .expect("sluice rules check runs");

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: {stderr}");
        assert!(stderr.contains(&named), "{text}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keeps_shared_ack_deadline() {
    use sluice_proto::google::pubsub::v1::GetSubscriptionRequest;

    let nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first_config = dir.path().join("first.toml");
    std::fs::write(&first_config, config(&nats.url())).expect("write config");
    let second_config = dir.path().join("second.toml");
    let changed = config(&nats.url()).replace("ack_deadline_secs = 10", "ack_deadline_secs = 20");
    std::fs::write(&second_config, changed).expect("write config");
    let _first = start_node(&dir.path().join("first"), &first_config).await;

    let mut second = start_node(&dir.path().join("second"), &second_config).await;
    let mut client = SubscriberClient::new(channel(second.url()));
    let subscription = client
        .get_subscription(GetSubscriptionRequest {
            subscription: SUBSCRIPTION.to_owned(),
        })
        .await
        .expect("the subscription exists")
        .into_inner();

    assert_eq!(subscription.ack_deadline_seconds, 10);
    let (_, log) = tokio::task::spawn_blocking(move || second.terminate())
        .await
        .expect("the node stops");
    assert!(log.contains("ack_deadline_secs"), "{log}");
    assert!(log.contains("UpdateSubscription"), "{log}");
}
