//! Payloads larger than 1 KiB live in segment files beside sled: they survive a reopen, a
//! segment that nothing refers to is deleted, and a missing one is reported by name.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice_router::store::{
    NewMessage, SledStore, Store, StoreError, SubscriptionSpec, TopicMessage,
};

fn message(size: usize, fill: u8) -> TopicMessage {
    TopicMessage {
        topic: "t".to_owned(),
        message: NewMessage {
            data: vec![fill; size],
            attributes: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            ordering_key: "key".to_owned(),
        },
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("payloads"))
        .expect("payload dir")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// Opens the store again once the committer thread of the dropped one lets go of sled's
/// lock.
async fn reopen(dir: &Path) -> SledStore {
    for _ in 0..200 {
        if let Ok(store) = SledStore::open(dir) {
            return store;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    SledStore::open(dir).expect("store reopens")
}

async fn store_with_subscription(dir: &Path) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).expect("store opens"));
    store.create_topic("t").await.expect("topic");
    store
        .create_subscription(SubscriptionSpec::new("s", "t"))
        .await
        .expect("subscription");
    store
}

#[tokio::test]
async fn large_payloads_survive_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = store_with_subscription(dir.path()).await;
        store
            .publish(
                vec![message(100, 1), message(5000, 2), message(3 << 20, 3)],
                std::time::SystemTime::now(),
            )
            .await
            .expect("publish");
        store.flush().await.expect("flush");
    }
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "the two large payloads share a segment"
    );

    let store = reopen(dir.path()).await;
    for (seq, size, fill) in [(1, 100, 1), (2, 5000, 2), (3, 3 << 20, 3)] {
        let stored = store.read("t", seq).expect("read").expect("message exists");
        assert_eq!(
            stored.message.data.len(),
            size,
            "message {seq} keeps its size"
        );
        assert!(
            stored.message.data.iter().all(|b| *b == fill),
            "message {seq} keeps its bytes"
        );
        assert_eq!(stored.message.ordering_key, "key");
        assert_eq!(
            stored.message.attributes.get("k").map(String::as_str),
            Some("v")
        );
    }
}

#[tokio::test]
async fn acknowledged_segment_is_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_subscription(dir.path()).await;
    // 20 MiB in 2 MiB messages fill one 16 MiB segment and start another.
    let batch = (0..10).map(|i| message(2 << 20, i)).collect();
    store
        .publish(batch, std::time::SystemTime::now())
        .await
        .expect("publish");
    assert_eq!(segments(dir.path()).len(), 2);

    store.ack("s", (1..=10).collect()).await.expect("ack");
    store.flush().await.expect("flush");
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "the full segment is deleted; the one being written stays"
    );
    drop(store);
    let _reopened = reopen(dir.path()).await;
    assert!(
        segments(dir.path()).is_empty(),
        "at open, a segment that no message refers to is deleted"
    );
}

#[tokio::test]
async fn orphaned_segment_is_deleted_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_subscription(dir.path()).await;
    store
        .publish(vec![message(4096, 7)], std::time::SystemTime::now())
        .await
        .expect("publish");
    store.flush().await.expect("flush");
    drop(store);
    // What a crash between writing a payload and committing its batch leaves behind.
    let orphan = dir.path().join("payloads").join("00000000000000ff.seg");
    std::fs::write(&orphan, vec![0u8; 4096]).expect("write orphan");

    let store = reopen(dir.path()).await;
    assert!(!orphan.exists(), "the orphaned segment is deleted");
    let stored = store.read("t", 1).expect("read").expect("message exists");
    assert_eq!(
        stored.message.data,
        vec![7; 4096],
        "the live payload is kept"
    );
}

#[tokio::test]
async fn missing_segment_is_reported_by_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_subscription(dir.path()).await;
    store
        .publish(vec![message(4096, 7)], std::time::SystemTime::now())
        .await
        .expect("publish");
    store.flush().await.expect("flush");
    drop(store);
    let store = reopen(dir.path()).await;
    for segment in segments(dir.path()) {
        std::fs::write(&segment, b"truncated").expect("damage segment");
    }

    let err = store
        .read("t", 1)
        .expect_err("a damaged payload is an error");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains("payloads/"),
        "the error names the file: {err}"
    );
}

#[tokio::test]
async fn unreadable_message_does_not_block_subscription() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = store_with_subscription(dir.path()).await;
        store
            .publish(
                vec![message(10, 1), message(5000, 2), message(10, 3)],
                std::time::SystemTime::now(),
            )
            .await
            .expect("publish");
        store.flush().await.expect("flush");
    }
    for segment in segments(dir.path()) {
        std::fs::remove_file(segment).expect("delete segment");
    }

    let store: Arc<dyn Store> = Arc::new(reopen(dir.path()).await);
    let broker = sluice_router::deliver::Broker::open(store).expect("broker opens");
    let mut delivered = Vec::new();
    for _ in 0..3 {
        let deliveries = broker
            .pull("s", 1, std::time::Duration::ZERO)
            .await
            .expect("a pull is not failed by the unreadable message");
        for delivery in &deliveries {
            delivered.push(delivery.message.message.data[0]);
        }
        let ack_ids: Vec<String> = deliveries.into_iter().map(|d| d.ack_id).collect();
        broker.ack("s", &ack_ids).await.expect("ack");
    }
    assert_eq!(delivered, vec![1, 3], "the readable messages are delivered");
    let stats = &broker.stats()[0];
    assert_eq!(stats.unreadable, 1, "the unreadable message is counted");
    assert_eq!(stats.backlog, 0, "and removed from the pending set");
}
