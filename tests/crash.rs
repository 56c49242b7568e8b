//! Crash safety of `sluice serve`: no acknowledged publish is lost to SIGKILL.
//!
//! Publisher and consumer tasks run against the real binary while the test kills it with
//! SIGKILL at random moments and restarts it on the same data directory. Publishers record the
//! message id and data of every message whose Publish call returned OK. Consumers pull and
//! acknowledge about three messages in four. After the last kill the test restarts the server
//! once more, pulls everything that is left and checks that:
//!
//! - no message id was returned for two different publishes;
//! - every acknowledged publish was delivered at least once, with its message id and data;
//! - a message id always arrives with the same data;
//! - every acknowledged publish that no consumer tried to acknowledge is still pending at the
//!   end.
//!
//! Delivery is at least once, so duplicates are counted, not rejected. That includes messages
//! whose Acknowledge call returned OK: the store writes acknowledgements to disk within about
//! 200 ms, so a kill right after an ack can bring the message back once.
//!
//! `SLUICE_CRASH_CYCLES` sets the number of kills (default 5) and `SLUICE_CRASH_SEED` the seed
//! of the kill times, batch sizes, payloads and ack choices (default 0x5eedc0ff). The seed
//! fixes the schedule but not the thread interleaving, so a failure may need several runs to
//! reproduce. `scripts/crash-harness` runs the test with many cycles and prints its figures.

mod support;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{
    AcknowledgeRequest, PublishRequest, PubsubMessage, PullRequest, ReceivedMessage,
};
use sluice_proto::tonic::transport::{Channel, Endpoint};
use support::TestServer;
use tokio::sync::watch;

/// Kills per run when `SLUICE_CRASH_CYCLES` is not set; few enough for CI.
const DEFAULT_CYCLES: u64 = 5;
/// The schedule's seed when `SLUICE_CRASH_SEED` is not set.
const DEFAULT_SEED: u64 = 0x5eed_c0ff;
/// Concurrent publisher tasks, each with its own connection.
const PUBLISHERS: u64 = 6;
/// Concurrent consumer tasks, each with its own connection.
const CONSUMERS: u64 = 2;
/// Upper bound of the time between a server's start and its kill; each kill time is drawn
/// uniformly from 0 up to this many milliseconds.
const MAX_RUN_MILLIS: u64 = 1500;
/// Maximum messages in one publish request; each request carries 1 to this many.
const MAX_BATCH: u64 = 5;
/// Maximum bytes of random filler after a payload's readable prefix.
const MAX_FILLER_BYTES: u64 = 200;
/// One message in this many gets a large filler instead, of up to [`MAX_LARGE_FILLER_BYTES`],
/// so that payloads stored in segment files outside sled are covered too.
const LARGE_EVERY: u64 = 8;
/// Maximum bytes of a large filler; it is at least 2 KiB, above the store's inline limit.
const MAX_LARGE_FILLER_BYTES: u64 = 64 * 1024;
/// Messages per pull, the server's maximum.
const PULL_MAX_MESSAGES: i32 = 100;
/// Limit on one RPC, far above its normal duration, so that a stuck call fails the
/// operation instead of hanging the test.
const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Time a client waits after a failed RPC before it tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Limit on the clients' exit after the run stops.
const CLIENT_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound of the final drain's pulls, so that a server that never runs empty fails
/// the test instead of hanging it.
const MAX_DRAIN_PULLS: usize = 100_000;
/// Message ids quoted in a failure message.
const SAMPLE_IDS: usize = 20;

const TOPIC: &str = "projects/local/topics/crash-test";
const SUBSCRIPTION: &str = "projects/local/subscriptions/crash-test";

/// One topic with one subscription. The ack deadline outlasts every server run, so leases
/// end only by a crash or an ack.
const CONFIG: &str = r#"
[[topics]]
name = "crash-test"

[[subscriptions]]
name = "crash-test"
topic = "crash-test"
ack_deadline_secs = 60
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_publishes_survive_kill_9() {
    let cycles = env_number("SLUICE_CRASH_CYCLES", DEFAULT_CYCLES);
    let seed = env_number("SLUICE_CRASH_SEED", DEFAULT_SEED);
    report(&format!("crash test: {cycles} cycles, seed {seed:#x}"));
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("crash.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let data_dir = dir.path().join("data");

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (phase, watcher) = watch::channel(Phase::Down);
    let mut clients = Vec::new();
    for index in 0..PUBLISHERS {
        let task = run_publisher(index, seed, watcher.clone(), ledger.clone());
        clients.push(tokio::spawn(task));
    }
    for index in 0..CONSUMERS {
        let task = run_consumer(index, seed, watcher.clone(), ledger.clone());
        clients.push(tokio::spawn(task));
    }

    let mut schedule = Rng::new(seed);
    for cycle in 1..=cycles {
        let server = start_server(&data_dir, &config).await;
        phase.send_replace(Phase::Up(server.url.clone()));
        let run = Duration::from_millis(schedule.below(MAX_RUN_MILLIS));
        tokio::time::sleep(run).await;
        // The kill comes before the phase change, so that it lands on requests in flight.
        kill(server).await;
        phase.send_replace(Phase::Down);
        let acknowledged = lock(&ledger).acknowledged;
        report(&format!(
            "cycle {cycle}/{cycles}: killed after {} ms, {acknowledged} publishes acknowledged",
            run.as_millis()
        ));
    }
    phase.send_replace(Phase::Stop);
    for client in clients {
        tokio::time::timeout(CLIENT_STOP_TIMEOUT, client)
            .await
            .expect("client task stops after the run")
            .expect("client task does not panic");
    }

    let server = start_server(&data_dir, &config).await;
    drain(&server.url, &ledger).await;
    let (status, log) = terminate(server).await;
    let ledger = lock(&ledger);
    let figures = ledger.figures();
    report(&format!(
        "crash test done in {:.1} s: {cycles} cycles, seed {seed:#x}\n{figures}",
        started.elapsed().as_secs_f64()
    ));

    assert!(
        ledger.acknowledged > 0,
        "seed {seed:#x}: no publish was acknowledged, so the run proves nothing"
    );
    let lost = ledger.lost();
    assert!(
        lost.is_empty(),
        "seed {seed:#x}: DURABILITY: {} of {} acknowledged publishes were never delivered, \
         such as message ids {:?}",
        lost.len(),
        ledger.acknowledged,
        sample(&lost)
    );
    let altered = ledger.altered();
    assert!(
        altered.is_empty(),
        "seed {seed:#x}: DURABILITY: {} acknowledged publishes were delivered only with other \
         data under their message id, such as message ids {:?}",
        altered.len(),
        sample(&altered)
    );
    let reused = ledger.reused_ids();
    assert!(
        reused.is_empty(),
        "seed {seed:#x}: message ids returned for two different publishes: {:?}",
        sample(&reused)
    );
    let inconsistent = ledger.inconsistent();
    assert!(
        inconsistent.is_empty(),
        "seed {seed:#x}: message ids delivered with different data at different times: {:?}",
        sample(&inconsistent)
    );
    let vanished = ledger.vanished();
    assert!(
        vanished.is_empty(),
        "seed {seed:#x}: DURABILITY: {} acknowledged publishes that no consumer acknowledged \
         were gone by the final drain, such as message ids {:?}",
        vanished.len(),
        sample(&vanished)
    );
    assert_eq!(
        ledger.miscounted_responses, 0,
        "seed {seed:#x}: publish responses whose id count differs from the request's"
    );
    assert!(
        status.success(),
        "the server did not stop cleanly after the drain: {status}; stderr:\n{log}"
    );
}

/// The state of the server, as the client tasks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Killed, or not started yet.
    Down,
    /// Serving at this base URL.
    Up(String),
    /// The run is over and the clients exit.
    Stop,
}

/// Waits until the server is up and returns its URL, or `None` once the run stops.
async fn wait_for_server(watcher: &mut watch::Receiver<Phase>) -> Option<String> {
    loop {
        match watcher.borrow_and_update().clone() {
            Phase::Up(url) => return Some(url),
            Phase::Stop => return None,
            Phase::Down => {}
        }
        if watcher.changed().await.is_err() {
            return None;
        }
    }
}

/// Waits [`RETRY_PAUSE`] after a failed RPC, or less if the phase changes meanwhile.
async fn pause_after_failure(watcher: &mut watch::Receiver<Phase>) {
    let _ = tokio::time::timeout(RETRY_PAUSE, watcher.changed()).await;
}

/// Creates a channel that connects on first use, so that creating it never fails while the
/// server is down.
fn lazy_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("the server prints a valid URL")
        .connect_timeout(RPC_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .connect_lazy()
}

/// Publishes batches until the run stops, recording every message of each OK response.
/// Failed publishes are expected while the server is down and are only counted.
async fn run_publisher(
    index: u64,
    seed: u64,
    mut watcher: watch::Receiver<Phase>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = Rng::for_task(seed, index);
    let mut connection: Option<(String, PublisherClient<Channel>)> = None;
    let mut sequence = 0u64;
    while let Some(url) = wait_for_server(&mut watcher).await {
        // A restarted server listens on a new port, so a new URL needs a new channel.
        let client = match &mut connection {
            Some((current, client)) if *current == url => client,
            _ => {
                let client = PublisherClient::new(lazy_channel(&url));
                &mut connection.insert((url, client)).1
            }
        };
        let count = 1 + rng.below(MAX_BATCH);
        let batch: Vec<Vec<u8>> = (0..count)
            .map(|_| {
                sequence += 1;
                payload(index, sequence, &mut rng)
            })
            .collect();
        let messages = batch
            .iter()
            .map(|data| PubsubMessage {
                data: data.clone(),
                ..Default::default()
            })
            .collect();
        let request = PublishRequest {
            topic: TOPIC.to_owned(),
            messages,
        };
        match tokio::time::timeout(RPC_TIMEOUT, client.publish(request)).await {
            Ok(Ok(response)) => {
                lock(&ledger).record_published(batch, response.into_inner().message_ids);
            }
            Ok(Err(_)) | Err(_) => {
                lock(&ledger).publish_failures += 1;
                pause_after_failure(&mut watcher).await;
            }
        }
    }
}

/// Builds message data: a readable prefix that names the message, then 0 to
/// [`MAX_FILLER_BYTES`] random bytes, so that data that is not UTF-8 is covered too, or for
/// one message in [`LARGE_EVERY`], 2 KiB to [`MAX_LARGE_FILLER_BYTES`].
fn payload(publisher: u64, sequence: u64, rng: &mut Rng) -> Vec<u8> {
    let mut data = format!("publisher {publisher} message {sequence} ").into_bytes();
    let filler = if rng.below(LARGE_EVERY) == 0 {
        2048 + rng.below(MAX_LARGE_FILLER_BYTES - 2048 + 1)
    } else {
        rng.below(MAX_FILLER_BYTES + 1)
    };
    data.extend((0..filler).map(|_| rng.next_u64().to_le_bytes()[0]));
    data
}

/// Pulls until the run stops and acknowledges about three messages in four. The rest stay
/// leased until the next kill, after which the server delivers them again.
async fn run_consumer(
    index: u64,
    seed: u64,
    mut watcher: watch::Receiver<Phase>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = Rng::for_task(seed, PUBLISHERS + index);
    let mut connection: Option<(String, SubscriberClient<Channel>)> = None;
    while let Some(url) = wait_for_server(&mut watcher).await {
        let client = match &mut connection {
            Some((current, client)) if *current == url => client,
            _ => {
                let client = SubscriberClient::new(lazy_channel(&url));
                &mut connection.insert((url, client)).1
            }
        };
        let received = match pull(client).await {
            Ok(received) => received,
            Err(()) => {
                lock(&ledger).pull_failures += 1;
                pause_after_failure(&mut watcher).await;
                continue;
            }
        };
        let mut ack_ids = Vec::new();
        let mut ack_message_ids = Vec::new();
        {
            let mut ledger = lock(&ledger);
            for received in received {
                let message = received.message.unwrap_or_default();
                ledger.record_delivery(&message.message_id, &message.data, false);
                if rng.below(4) != 0 {
                    ledger.ack_sent.insert(message.message_id.clone());
                    ack_ids.push(received.ack_id);
                    ack_message_ids.push(message.message_id);
                }
            }
        }
        if ack_ids.is_empty() {
            continue;
        }
        if acknowledge(client, ack_ids).await.is_ok() {
            lock(&ledger).acked.extend(ack_message_ids);
        } else {
            lock(&ledger).ack_failures += 1;
            pause_after_failure(&mut watcher).await;
        }
    }
}

/// Pulls up to [`PULL_MAX_MESSAGES`]; the server waits about 2 s for a message before it
/// returns an empty list. Fails on an error status or after [`RPC_TIMEOUT`].
async fn pull(client: &mut SubscriberClient<Channel>) -> Result<Vec<ReceivedMessage>, ()> {
    let request = PullRequest {
        subscription: SUBSCRIPTION.to_owned(),
        max_messages: PULL_MAX_MESSAGES,
        ..Default::default()
    };
    match tokio::time::timeout(RPC_TIMEOUT, client.pull(request)).await {
        Ok(Ok(response)) => Ok(response.into_inner().received_messages),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

/// Acknowledges deliveries by ack id. Fails on an error status or after [`RPC_TIMEOUT`].
async fn acknowledge(
    client: &mut SubscriberClient<Channel>,
    ack_ids: Vec<String>,
) -> Result<(), ()> {
    let request = AcknowledgeRequest {
        subscription: SUBSCRIPTION.to_owned(),
        ack_ids,
    };
    match tokio::time::timeout(RPC_TIMEOUT, client.acknowledge(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

/// Pulls and acknowledges until a pull returns nothing, recording every delivery as part of
/// the final drain. Panics on any failed RPC, because the server is not killed here.
async fn drain(url: &str, ledger: &Mutex<Ledger>) {
    let mut client = SubscriberClient::new(lazy_channel(url));
    for _ in 0..MAX_DRAIN_PULLS {
        let received = pull(&mut client)
            .await
            .expect("a pull in the final drain succeeds");
        if received.is_empty() {
            return;
        }
        let mut ack_ids = Vec::with_capacity(received.len());
        {
            let mut ledger = lock(ledger);
            for received in received {
                let message = received.message.unwrap_or_default();
                ledger.record_delivery(&message.message_id, &message.data, true);
                ack_ids.push(received.ack_id);
            }
        }
        acknowledge(&mut client, ack_ids)
            .await
            .expect("an ack in the final drain succeeds");
    }
    panic!("the subscription was not empty after {MAX_DRAIN_PULLS} pulls");
}

/// Starts `sluice serve` on `data_dir`; the blocking start runs off the async runtime.
async fn start_server(data_dir: &Path, config: &Path) -> TestServer {
    let (data_dir, config): (PathBuf, PathBuf) = (data_dir.to_owned(), config.to_owned());
    tokio::task::spawn_blocking(move || TestServer::start_in(&data_dir, Some(&config)))
        .await
        .expect("the server starts")
}

/// Kills the server with SIGKILL and waits for the process to end.
async fn kill(mut server: TestServer) {
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .expect("the server is killed");
}

/// Stops the server with SIGTERM and returns its exit status and stderr.
async fn terminate(mut server: TestServer) -> (std::process::ExitStatus, String) {
    tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("the server stops")
}

/// Everything the clients observed, checked after the final drain. Message data is kept as
/// a [`fingerprint`] to save memory.
#[derive(Debug, Default)]
struct Ledger {
    /// The data fingerprints of the messages whose Publish call returned OK, by message id.
    /// An id has several only when the server returned it for several publishes.
    published: HashMap<String, Vec<u64>>,
    /// Messages in OK publish responses.
    acknowledged: u64,
    /// OK publish responses with a different number of ids than the request had messages.
    miscounted_responses: u64,
    /// Publish calls that failed or timed out.
    publish_failures: u64,
    /// Pull calls that failed or timed out.
    pull_failures: u64,
    /// Acknowledge calls that failed or timed out.
    ack_failures: u64,
    /// Deliveries by message id.
    delivered: HashMap<String, Delivered>,
    /// Message ids that a consumer sent in an Acknowledge call, whatever its result.
    ack_sent: HashSet<String>,
    /// Message ids whose Acknowledge call returned OK.
    acked: HashSet<String>,
    /// Deliveries of messages whose Acknowledge call had already returned OK.
    redelivered_after_ack: u64,
    /// Message ids received in the final drain.
    drained: HashSet<String>,
}

/// The deliveries of one message id.
#[derive(Debug, Default)]
struct Delivered {
    /// The distinct data fingerprints delivered under this id, normally one.
    fingerprints: Vec<u64>,
    /// Deliveries so far.
    count: u64,
}

impl Ledger {
    fn record_published(&mut self, batch: Vec<Vec<u8>>, message_ids: Vec<String>) {
        if message_ids.len() != batch.len() {
            self.miscounted_responses += 1;
        }
        for (id, data) in message_ids.into_iter().zip(batch) {
            self.published
                .entry(id)
                .or_default()
                .push(fingerprint(&data));
            self.acknowledged += 1;
        }
    }

    fn record_delivery(&mut self, id: &str, data: &[u8], final_drain: bool) {
        if self.acked.contains(id) {
            self.redelivered_after_ack += 1;
        }
        if final_drain {
            self.drained.insert(id.to_owned());
        }
        let delivered = self.delivered.entry(id.to_owned()).or_default();
        delivered.count += 1;
        let fingerprint = fingerprint(data);
        if !delivered.fingerprints.contains(&fingerprint) {
            delivered.fingerprints.push(fingerprint);
        }
    }

    /// Returns the ids of acknowledged publishes that were never delivered.
    fn lost(&self) -> Vec<String> {
        let lost = self
            .published
            .iter()
            .filter(|(id, _)| !self.delivered.contains_key(*id));
        sorted(lost.flat_map(|(id, fingerprints)| fingerprints.iter().map(move |_| id)))
    }

    /// Returns the ids of acknowledged publishes whose id was delivered, but never with their
    /// data. A publish whose id the server gave to a later publish ends up here.
    fn altered(&self) -> Vec<String> {
        let mut altered = Vec::new();
        for (id, fingerprints) in &self.published {
            let Some(delivered) = self.delivered.get(id) else {
                continue;
            };
            for fingerprint in fingerprints {
                if !delivered.fingerprints.contains(fingerprint) {
                    altered.push(id);
                }
            }
        }
        sorted(altered.into_iter())
    }

    /// Returns the message ids that OK responses returned for more than one publish.
    fn reused_ids(&self) -> Vec<String> {
        let reused = self.published.iter().filter(|(_, f)| f.len() > 1);
        sorted(reused.map(|(id, _)| id))
    }

    /// Returns the message ids delivered with different data at different times.
    fn inconsistent(&self) -> Vec<String> {
        let ids = self
            .delivered
            .iter()
            .filter(|(_, d)| d.fingerprints.len() > 1);
        sorted(ids.map(|(id, _)| id))
    }

    /// Returns the ids of acknowledged publishes that no consumer tried to acknowledge and
    /// that the final drain did not receive.
    fn vanished(&self) -> Vec<String> {
        let ids = self
            .published
            .keys()
            .filter(|id| !self.ack_sent.contains(*id) && !self.drained.contains(*id));
        sorted(ids)
    }

    fn figures(&self) -> Figures {
        let mut figures = Figures {
            acknowledged: self.acknowledged,
            lost: self.lost().len(),
            altered: self.altered().len(),
            publish_failures: self.publish_failures,
            pull_failures: self.pull_failures,
            ack_failures: self.ack_failures,
            consumer_acks: self.acked.len(),
            redelivered_after_ack: self.redelivered_after_ack,
            ..Figures::default()
        };
        for (id, delivered) in &self.delivered {
            figures.deliveries += delivered.count;
            if self.published.contains_key(id) {
                figures.duplicates += delivered.count - 1;
            } else {
                figures.unconfirmed_delivered += 1;
            }
        }
        figures
    }
}

/// The counts the test reports.
#[derive(Debug, Default)]
struct Figures {
    acknowledged: u64,
    lost: usize,
    altered: usize,
    deliveries: u64,
    duplicates: u64,
    unconfirmed_delivered: u64,
    consumer_acks: usize,
    redelivered_after_ack: u64,
    publish_failures: u64,
    pull_failures: u64,
    ack_failures: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  publishes acknowledged:           {}",
            self.acknowledged
        )?;
        writeln!(f, "  acknowledged publishes lost:      {}", self.lost)?;
        writeln!(f, "  delivered only with other data:   {}", self.altered)?;
        writeln!(f, "  deliveries:                       {}", self.deliveries)?;
        writeln!(f, "  duplicate deliveries:             {}", self.duplicates)?;
        writeln!(
            f,
            "  unconfirmed publishes delivered:  {}",
            self.unconfirmed_delivered
        )?;
        writeln!(
            f,
            "  messages acknowledged by clients: {}",
            self.consumer_acks
        )?;
        writeln!(
            f,
            "  redelivered after an OK ack:      {}",
            self.redelivered_after_ack
        )?;
        write!(
            f,
            "  failed calls (publish/pull/ack):  {}/{}/{}",
            self.publish_failures, self.pull_failures, self.ack_failures
        )
    }
}

/// Hashes message data to 64 bits. `DefaultHasher::new` uses fixed keys, so equal data
/// always gets the same fingerprint within a run.
fn fingerprint(data: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    data.hash(&mut hasher);
    hasher.finish()
}

/// Returns the ids in numeric order, then textual order for ids that are not numbers.
fn sorted<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.cloned().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

fn sample(ids: &[String]) -> &[String] {
    &ids[..ids.len().min(SAMPLE_IDS)]
}

/// Locks the ledger, even when a panic poisoned the lock. A client that panicked while holding
/// it fails the test through its join handle anyway.
fn lock(ledger: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    ledger
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a number from the environment, in decimal or with a `0x` prefix in hex.
fn env_number(name: &str, default: u64) -> u64 {
    let Ok(text) = std::env::var(name) else {
        return default;
    };
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("{name} is {text:?}; use a decimal or 0x-prefixed number"))
}

#[allow(
    clippy::print_stderr,
    reason = "the harness prints its progress and figures"
)]
fn report(text: &str) {
    eprintln!("{text}");
}

/// The xorshift64* generator: small and reproducible, which is all the schedule needs.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift never leaves the state 0, so the low bit is set.
        Rng((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A generator of its own for each client task, derived from the run's seed.
    fn for_task(seed: u64, task: u64) -> Rng {
        Rng::new(seed.wrapping_add((task + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Returns a number from 0 up to, not including, `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}
