//! Publish/ack churn keeps the data directory bounded, because acknowledged messages are
//! removed from the store and the payload segments they lived in are deleted.
//!
//! `SLUICE_CHURN_CYCLES` sets the number of 10 KiB messages: 10,000 by default, so that the
//! test stays short in a debug build, and 100,000 (about 1 GiB written) for the full run.
//! The 64 KiB and 1 MiB runs write 100 MiB and 300 MiB. `cargo run --release -p
//! sluice-router --example store_churn` prints the same measurement as it goes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice_router::deliver::Broker;
use sluice_router::store::{NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage};

/// The largest data directory allowed at any checkpoint. Over 100,000 messages of 10 KiB the
/// measured maximum was 17.6 MiB: sled's own files and the segment being written, of up to
/// 16 MiB. The bound leaves room for a second segment that is not yet deleted.
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
async fn churn_10_kib_bounded() {
    let cycles: usize = std::env::var("SLUICE_CHURN_CYCLES")
        .ok()
        .map_or(10_000, |n| {
            n.parse().expect("SLUICE_CHURN_CYCLES is a number")
        });
    churn(10 * 1024, 100, cycles).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_64_kib_bounded() {
    churn(64 * 1024, 50, 1_600).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_1_mib_bounded() {
    churn(1024 * 1024, 8, 304).await;
}

/// Publishes `cycles` messages of `size` bytes, `batch` at a time, pulls and acknowledges
/// each batch, and checks the size of the data directory ten times on the way.
async fn churn(size: usize, batch: usize, cycles: usize) {
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

    let checkpoint = (cycles / 10).max(batch);
    let mut largest = 0;
    let mut done = 0;
    while done < cycles {
        let messages = (0..batch)
            .map(|index| TopicMessage {
                topic: "churn".to_owned(),
                message: NewMessage {
                    data: vec![(done + index) as u8; size],
                    attributes: BTreeMap::new(),
                    ordering_key: String::new(),
                },
            })
            .collect();
        broker.publish(messages).await.expect("publish");
        let deliveries = broker
            .pull("churn", batch, Duration::from_secs(10))
            .await
            .expect("pull");
        assert_eq!(deliveries.len(), batch, "each batch is delivered whole");
        for (index, delivery) in deliveries.iter().enumerate() {
            let data = &delivery.message.message.data;
            assert_eq!(
                data.len(),
                size,
                "message {index} of the batch keeps its size"
            );
            assert!(
                data.iter().all(|byte| *byte == (done + index) as u8),
                "message {index} of the batch keeps its bytes"
            );
        }
        let ack_ids: Vec<String> = deliveries.into_iter().map(|d| d.ack_id).collect();
        broker.ack("churn", &ack_ids).await.expect("ack");
        done += batch;

        if done % checkpoint < batch {
            broker.store().flush().await.expect("flush");
            let bytes = dir_size(dir.path());
            largest = largest.max(bytes);
            assert!(
                bytes <= MAX_DATA_DIR_BYTES,
                "the data dir is {bytes} bytes after {done} messages of {size} bytes"
            );
        }
    }

    assert_eq!(broker.stats()[0].backlog, 0, "everything was acknowledged");
    assert!(largest > 0, "the data dir was measured");
    report(&format!(
        "largest data dir with {size}-byte messages: {largest} bytes"
    ));
}

#[allow(
    clippy::print_stderr,
    reason = "the figures are printed for docs/benchmarks.md"
)]
fn report(text: &str) {
    eprintln!("{text}");
}
