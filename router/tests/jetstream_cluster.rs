//! A JetStream cluster of three nats-server processes on loopback, with three replicas of
//! every stream, loses the server that leads the topic's stream while messages are being
//! published. Every publish that JetStream acknowledged must still be delivered.

mod nats;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::Broker;
use sluice_router::store::jetstream::{JetStreamOptions, JetStreamStore};
use sluice_router::store::{NewMessage, SubscriptionSpec, TopicMessage};

const MESSAGES: usize = 3_000;
const BATCH: usize = 100;
/// How long the cluster may take to elect leaders, at start and after the kill.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keeps_acked_publishes_after_server_loss() {
    let mut cluster = nats::NatsCluster::start(3).await;
    let mut options = JetStreamOptions::new(cluster.urls());
    options.replicas = 3;
    let store = Arc::new(retry("connect", || JetStreamStore::connect(&options)).await);
    let broker = Broker::open_shared(store.clone());
    retry("create the topic", || broker.create_topic("t")).await;
    retry("create the subscription", || {
        broker.create_subscription(SubscriptionSpec::new("s", "t"))
    })
    .await;

    let leader = stream_leader(&store).await;
    let victim = cluster
        .servers
        .iter()
        .position(|server| server.name == leader)
        .unwrap_or_else(|| panic!("leader {leader:?} is not one of the cluster's servers"));

    let mut acknowledged = HashSet::new();
    let mut failed = 0;
    for (index, start) in (0..MESSAGES).step_by(BATCH).enumerate() {
        if index == MESSAGES / BATCH / 2 {
            cluster.servers[victim].kill();
        }
        let batch: Vec<String> = (start..start + BATCH).map(|n| format!("m{n}")).collect();
        let messages: Vec<TopicMessage> = batch
            .iter()
            .map(|data| TopicMessage {
                topic: "t".to_owned(),
                message: NewMessage {
                    data: data.clone().into_bytes(),
                    ..NewMessage::default()
                },
            })
            .collect();
        // Publishes fail while the client reconnects and the stream elects a new leader;
        // like any publisher, this one retries them. Only an acknowledged one counts.
        let give_up = tokio::time::Instant::now() + ELECTION_TIMEOUT;
        loop {
            match broker.publish(messages.clone()).await {
                Ok(_) => {
                    acknowledged.extend(batch);
                    break;
                }
                Err(err) => {
                    failed += 1;
                    assert!(
                        tokio::time::Instant::now() < give_up,
                        "publishing failed for {ELECTION_TIMEOUT:?}: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
    assert_eq!(acknowledged.len(), MESSAGES);

    let mut delivered = HashSet::new();
    let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
    while !acknowledged.is_subset(&delivered) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} acknowledged publishes missing ({failed} publish calls failed)",
            acknowledged.difference(&delivered).count()
        );
        let Ok(deliveries) = broker.pull("s", 1_000, Duration::from_secs(1)).await else {
            continue;
        };
        let ack_ids: Vec<String> = deliveries.iter().map(|d| d.ack_id.clone()).collect();
        for delivery in deliveries {
            delivered.insert(String::from_utf8_lossy(&delivery.message.message.data).into_owned());
        }
        if !ack_ids.is_empty() {
            broker.ack("s", &ack_ids).await.expect("ack");
        }
    }
}

/// Returns the name of the server that leads the topic's stream.
async fn stream_leader(store: &JetStreamStore) -> String {
    let mut stream = store.topic_stream("t").await.expect("topic stream");
    let info = stream.info().await.expect("stream info");
    let cluster = info
        .cluster
        .clone()
        .expect("a replicated stream has cluster info");
    assert_eq!(
        cluster.replicas.len(),
        2,
        "a stream with 3 replicas has 2 followers"
    );
    cluster.leader.expect("the stream has a leader")
}

/// Retries `operation` until it succeeds or [`ELECTION_TIMEOUT`] passes, because the
/// cluster serves JetStream requests only once it has elected a meta leader.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut operation: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
    loop {
        match operation().await {
            Ok(value) => return value,
            Err(err) if tokio::time::Instant::now() < deadline => {
                let _ = err;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!("failed to {what} within {ELECTION_TIMEOUT:?}: {err}"),
        }
    }
}
