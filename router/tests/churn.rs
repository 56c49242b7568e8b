//! Publish/ack churn keeps the data directory bounded, because acknowledged messages are
//! removed from the store.
//!
//! `SLUICE_CHURN_CYCLES` sets the number of 10 KiB messages: 10,000 by default, so that the
//! test stays short in a debug build, and 100,000 (about 1 GiB written) for the full run.
//! `cargo run --release -p sluice-router --example store_churn` prints the same measurement
//! as it goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::Broker;
use sluice_router::store::{NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage};

/// Bytes of each message.
const MESSAGE_BYTES: usize = 10 * 1024;

/// Messages per publish and per pull.
const BATCH: usize = 100;

/// The largest data directory allowed at any checkpoint. The measured maximum over 100,000
/// messages was 10.6 MiB; the bound leaves room for sled's segment cleaning to run late on a
/// loaded machine.
const MAX_DATA_DIR_BYTES: u64 = 64 * 1024 * 1024;

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)
            .expect("readable data dir")
            .flatten()
        {
            let meta = entry.metadata().expect("readable entry");
            if meta.is_dir() {
                folders.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_data_dir_bounded() {
    let cycles: usize = std::env::var("SLUICE_CHURN_CYCLES")
        .ok()
        .map_or(10_000, |n| {
            n.parse().expect("SLUICE_CHURN_CYCLES is a number")
        });
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store opens"));
    let broker = Broker::open(store).expect("broker opens");
    broker.create_topic("churn").await.expect("topic");
    broker
        .create_subscription(SubscriptionSpec {
            ack_deadline_secs: 600,
            ..SubscriptionSpec::new("churn", "churn")
        })
        .await
        .expect("subscription");

    let checkpoint = (cycles / 10).max(BATCH);
    let mut largest = 0;
    let mut done = 0;
    while done < cycles {
        let messages = (0..BATCH)
            .map(|_| TopicMessage {
                topic: "churn".to_owned(),
                message: NewMessage {
                    data: vec![b'x'; MESSAGE_BYTES],
                    attributes: BTreeMap::new(),
                    ordering_key: String::new(),
                },
            })
            .collect();
        broker.publish(messages).await.expect("publish");
        let deliveries = broker
            .pull("churn", BATCH, Duration::from_secs(10))
            .await
            .expect("pull");
        assert_eq!(deliveries.len(), BATCH, "each batch is delivered whole");
        let ack_ids: Vec<String> = deliveries.into_iter().map(|d| d.ack_id).collect();
        broker.ack("churn", &ack_ids).await.expect("ack");
        done += BATCH;

        if done % checkpoint == 0 {
            broker.store().flush().await.expect("flush");
            let size = dir_size(dir.path());
            largest = largest.max(size);
            assert!(
                size <= MAX_DATA_DIR_BYTES,
                "the data dir is {size} bytes after {done} messages of {MESSAGE_BYTES} bytes"
            );
        }
    }

    assert_eq!(broker.stats()[0].backlog, 0, "everything was acknowledged");
    assert!(largest > 0, "the data dir was measured");
}
