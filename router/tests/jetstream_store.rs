//! The JetStream store's behaviour when its servers are missing, stopped, misconfigured or
//! smaller than its data: the errors it returns, and that a failed publish is never stored
//! later. Each test starts its own nats-server on a free loopback port.

#[path = "nats/mod.rs"]
mod nats;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use sluice_router::buckets::{BucketError, Buckets};
use sluice_router::store::jetstream::{JetStreamOptions, JetStreamStore};
use sluice_router::store::{NewMessage, Store, StoreError, SubscriptionSpec, TopicMessage};

use nats::NatsServer;

/// How long the client may take to notice a stopped server, or to reconnect to a
/// restarted one.
const STATE_CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

fn options(url: &str) -> JetStreamOptions {
    JetStreamOptions::new(vec![url.to_owned()])
}

async fn connect(url: &str) -> JetStreamStore {
    JetStreamStore::connect(&options(url))
        .await
        .expect("JetStream store connects")
}

fn message(data: &str) -> Vec<TopicMessage> {
    vec![TopicMessage {
        topic: "t".to_owned(),
        message: NewMessage {
            data: data.as_bytes().to_vec(),
            attributes: BTreeMap::new(),
            ordering_key: String::new(),
        },
    }]
}

/// Waits until the store's health check gives `healthy`, and fails the test after
/// [`STATE_CHANGE_TIMEOUT`].
async fn wait_for_health(store: &JetStreamStore, healthy: bool) {
    let give_up = tokio::time::Instant::now() + STATE_CHANGE_TIMEOUT;
    while store.check_health().is_ok() != healthy {
        assert!(
            tokio::time::Instant::now() < give_up,
            "the health check did not become {} within {STATE_CHANGE_TIMEOUT:?}",
            if healthy { "ok" } else { "an error" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_connection() {
    let mut server = NatsServer::start().await;
    let store = connect(&server.url()).await;
    assert!(store.check_health().is_ok(), "healthy after connecting");

    server.kill();
    wait_for_health(&store, false).await;
    let error = store.check_health().expect_err("unhealthy").to_string();
    assert!(error.contains(&server.url()), "{error}");
    assert!(error.contains("lost"), "{error}");

    server.restart().await;
    wait_for_health(&store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_publish_is_never_stored() {
    let mut server = NatsServer::start().await;
    let store = connect(&server.url()).await;
    store.create_topic("t").await.expect("topic");

    server.kill();
    wait_for_health(&store, false).await;
    let failed = store.publish(message("lost"), SystemTime::now()).await;
    assert!(
        matches!(failed, Err(StoreError::Unreachable { .. })),
        "{failed:?}"
    );

    server.restart().await;
    wait_for_health(&store, true).await;
    let published = store
        .publish(message("after"), SystemTime::now())
        .await
        .expect("publish after the reconnect");

    assert_eq!(
        published[0].seq, 1,
        "the failed publish took no sequence number"
    );
    let first = store
        .read_message("t", 1)
        .await
        .expect("read")
        .expect("message 1 exists");
    assert_eq!(first.message.data, b"after");
    let second = store.read_message("t", 2).await.expect("read");
    assert!(second.is_none(), "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_port_times_out_naming_url() {
    // A listener that accepts connections and never writes, as a port of another service.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("nats://{}", listener.local_addr().expect("address"));
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = JetStreamOptions {
        connect_timeout: Duration::from_secs(1),
        ..options(&url)
    };

    let result = tokio::time::timeout(Duration::from_secs(15), JetStreamStore::connect(&options))
        .await
        .expect("connect returns within 15 s");

    accepting.abort();
    let error = result.expect_err("no NATS server there").to_string();
    assert!(error.contains(&url), "{error}");
    assert!(error.contains("timed out"), "{error}");
}

#[tokio::test]
async fn missing_credentials_file_names_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.creds");
    let options = JetStreamOptions {
        credentials_file: Some(path.clone()),
        ..options("nats://127.0.0.1:4222")
    };

    let error = JetStreamStore::connect(&options)
        .await
        .expect_err("the file is missing");

    assert!(
        matches!(error, StoreError::CredentialsFile { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("credentials_file"), "{text}");
    assert!(!text.contains("nats-server runs there"), "{text}");
}

#[tokio::test]
async fn bad_url_scheme_names_url() {
    let url = "http://127.0.0.1:4222";

    let error = JetStreamStore::connect(&options(url))
        .await
        .expect_err("http is no NATS scheme");

    assert!(matches!(error, StoreError::InvalidUrl { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(url), "{text}");
    assert!(text.contains("nats://"), "{text}");
    assert!(!text.contains("nats-server runs there"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_error_names_stream_and_setting() {
    let server = NatsServer::start().await;
    let options = JetStreamOptions {
        replicas: 3,
        ..options(&server.url())
    };

    let error = JetStreamStore::connect(&options)
        .await
        .expect_err("a standalone server keeps one replica");

    let text = error.to_string();
    assert!(text.contains("KV_sluice_catalog"), "{text}");
    assert!(text.contains("[store] replicas = 3"), "{text}");
    assert!(text.contains("at least N servers"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_subscription_keeps_shared_settings() {
    let server = NatsServer::start().await;
    let first = connect(&server.url()).await;
    first.create_topic("t").await.expect("topic");
    let created = SubscriptionSpec {
        ack_deadline_secs: 10,
        ..SubscriptionSpec::new("s", "t")
    };
    first
        .create_subscription(first.declared_subscription(created))
        .await
        .expect("subscription");
    let second = connect(&server.url()).await;
    let declared = SubscriptionSpec {
        ack_deadline_secs: 20,
        ..SubscriptionSpec::new("s", "t")
    };

    let spec = second.declared_subscription(declared);
    second
        .create_subscription(spec.clone())
        .await
        .expect("the declaration succeeds");

    assert_eq!(spec.ack_deadline_secs, 10, "the stored value stays");
    second.reload_catalog().await.expect("reload");
    let stored = second.subscription("s").expect("stored");
    assert_eq!(stored.spec.ack_deadline_secs, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_subscription_still_rejects_other_topic() {
    let server = NatsServer::start().await;
    let store = connect(&server.url()).await;
    store.create_topic("t").await.expect("topic");
    store.create_topic("u").await.expect("topic");
    store
        .create_subscription(SubscriptionSpec::new("s", "t"))
        .await
        .expect("subscription");

    let spec = store.declared_subscription(SubscriptionSpec::new("s", "u"));
    let result = store.create_subscription(spec).await;

    assert!(
        matches!(result, Err(StoreError::SubscriptionConflict { .. })),
        "{result:?}"
    );
}

#[test]
fn bucket_index_over_max_payload_is_full() {
    const MAX_PAYLOAD: usize = 8 * 1024;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(NatsServer::start_with_config(&format!(
        "max_payload: {MAX_PAYLOAD}\n"
    )));
    let dir = tempfile::tempdir().expect("temp dir");
    let buckets = runtime.block_on(async {
        let client = async_nats::connect(server.url())
            .await
            .expect("connects to nats-server");
        let context = async_nats::jetstream::new(client);
        Buckets::open_jetstream(dir.path().join("buckets"), &context, 1, None)
            .await
            .expect("buckets open on JetStream")
    });
    buckets.create_bucket("bkt", false).expect("bucket");

    // Each object adds a few hundred bytes to the index, so the loop ends well before its
    // bound.
    let mut full = None;
    for n in 0..MAX_PAYLOAD {
        let name = format!("object-{n}");
        match buckets.put("bkt", &name, b"x", None, BTreeMap::new()) {
            Ok(_) => {}
            Err(err) => {
                full = Some((n, err));
                break;
            }
        }
    }

    let (stored, error) = full.expect("the index filled up");
    assert!(stored > 0, "the first objects fit");
    assert!(matches!(error, BucketError::IndexFull { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("max_payload"), "{text}");
    assert!(text.contains("\"bkt\""), "{text}");
    let listing = buckets
        .list("bkt", "", None, false)
        .expect("the connection still serves requests");
    assert_eq!(
        listing.objects.len(),
        stored,
        "the rejected object is not listed"
    );
    drop(buckets);
    runtime.shutdown_background();
}

#[test]
fn sweep_removes_only_unlisted_bytes() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(NatsServer::start());
    let dir = tempfile::tempdir().expect("temp dir");
    let (buckets, objects) = runtime.block_on(async {
        let client = async_nats::connect(server.url())
            .await
            .expect("connects to nats-server");
        let context = async_nats::jetstream::new(client);
        let buckets = Buckets::open_jetstream(dir.path().join("buckets"), &context, 1, None)
            .await
            .expect("buckets open on JetStream");
        let objects = context
            .get_object_store("sluice_objects")
            .await
            .expect("the object store exists");
        (buckets, objects)
    });
    buckets.create_bucket("bkt", false).expect("bucket");
    buckets
        .put("bkt", "kept", b"kept bytes", None, BTreeMap::new())
        .expect("put");
    // Bytes under the name a write would give them, as a node that stopped before the
    // index write leaves them.
    let unlisted = "626b74/1";
    runtime.block_on(async {
        objects
            .put(unlisted, &mut &b"unlisted bytes"[..])
            .await
            .expect("put the unlisted bytes");
    });

    let young = buckets
        .sweep_unlisted_bytes(Duration::from_secs(3600))
        .expect("sweep");
    assert_eq!(young, 0, "bytes younger than the age stay");
    let removed = buckets.sweep_unlisted_bytes(Duration::ZERO).expect("sweep");

    assert_eq!(removed, 1);
    let gone = runtime.block_on(objects.get(unlisted));
    assert!(gone.is_err(), "the unlisted bytes are removed");
    let bytes = buckets
        .read("bkt", "kept", None)
        .expect("the listed object stays");
    assert_eq!(bytes, b"kept bytes");
    drop(buckets);
    runtime.shutdown_background();
}

/// Nacks with a retry backoff, alternating between two nodes, must count every attempt, so
/// that the message is dead-lettered after its last one. The loop repeats the cycle for
/// several messages, because a wrong count showed up in some runs only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_backoff_counts_every_attempt() {
    use std::sync::Arc;

    use sluice_router::deliver::Broker;
    use sluice_router::store::{DeadLetterPolicy, RetryPolicy};

    const ROUNDS: usize = 4;
    const MAX_ATTEMPTS: u32 = 5;
    let server = NatsServer::start().await;
    let first = Arc::new(Broker::open_shared(Arc::new(connect(&server.url()).await)));
    first.create_topic("t").await.expect("topic");
    first.create_topic("dead").await.expect("topic");
    let spec = SubscriptionSpec {
        dead_letter: Some(DeadLetterPolicy {
            topic: "dead".to_owned(),
            max_delivery_attempts: MAX_ATTEMPTS,
        }),
        retry_policy: Some(RetryPolicy::from_secs(1, 1)),
        ..SubscriptionSpec::new("s", "t")
    };
    first.create_subscription(spec).await.expect("subscription");
    first
        .create_subscription(SubscriptionSpec::new("dead-s", "dead"))
        .await
        .expect("subscription");
    // The second node opens after the subscriptions exist, so its catalog has them.
    let second = Arc::new(Broker::open_shared(Arc::new(connect(&server.url()).await)));
    let nodes = [first, second];
    let maintenance: Vec<_> = nodes
        .iter()
        .map(|node| tokio::spawn(node.clone().run_maintenance(std::future::pending())))
        .collect();

    let mut attempts_seen = Vec::new();
    for round in 0..ROUNDS {
        nodes[0]
            .publish(message(&format!("m{round}")))
            .await
            .expect("publish");
        for attempt in 1..=MAX_ATTEMPTS {
            // Short pulls, repeated, as a polling client makes them, so that pull requests
            // expire while the backoff ends.
            let puller = &nodes[attempt as usize % 2];
            let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
            let delivery = loop {
                let delivery = puller
                    .pull("s", 1, Duration::from_millis(300))
                    .await
                    .expect("pull");
                if !delivery.is_empty() {
                    break delivery;
                }
                assert!(
                    tokio::time::Instant::now() < give_up,
                    "round {round}, attempt {attempt}: no delivery within 10 s"
                );
            };
            assert_eq!(delivery.len(), 1, "round {round}, attempt {attempt}");
            attempts_seen.push((round, attempt, delivery[0].delivery_attempt));
            let nacker = &nodes[(attempt as usize + 1) % 2];
            nacker
                .modify_ack_deadline("s", &[delivery[0].ack_id.clone()], 0)
                .await
                .expect("nack");
        }
        let after = nodes[0]
            .pull("s", 1, Duration::from_secs(3))
            .await
            .expect("pull");
        assert!(
            after.is_empty(),
            "round {round}: delivered after the last attempt"
        );
    }

    let wrong: Vec<_> = attempts_seen
        .iter()
        .filter(|(_, expected, seen)| expected != seen)
        .collect();
    assert!(wrong.is_empty(), "(round, expected, seen): {wrong:?}");
    let dead = nodes[0]
        .pull("dead-s", ROUNDS, Duration::from_secs(5))
        .await
        .expect("pull");
    assert_eq!(dead.len(), ROUNDS);
    for task in maintenance {
        task.abort();
    }
}

#[test]
fn object_larger_than_max_payload_round_trips() {
    const MAX_PAYLOAD: usize = 16 * 1024;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(NatsServer::start_with_config(&format!(
        "max_payload: {MAX_PAYLOAD}\n"
    )));
    let dir = tempfile::tempdir().expect("temp dir");
    let buckets = runtime.block_on(async {
        let client = async_nats::connect(server.url())
            .await
            .expect("connects to nats-server");
        let context = async_nats::jetstream::new(client);
        Buckets::open_jetstream(dir.path().join("buckets"), &context, 1, None)
            .await
            .expect("buckets open on JetStream")
    });
    buckets.create_bucket("bkt", false).expect("bucket");

    // Over the server's max_payload, so the bytes must go in smaller chunks.
    let bytes: Vec<u8> = (0..50_000_u32).map(|n| (n % 251) as u8).collect();
    buckets
        .put("bkt", "large", &bytes, None, BTreeMap::new())
        .expect("an object over max_payload is stored");
    let read = buckets.read("bkt", "large", None).expect("read back");
    assert_eq!(read.len(), bytes.len());
    assert!(read == bytes, "the bytes come back unchanged");
    drop(buckets);
    runtime.shutdown_background();
}

#[test]
fn bucket_calls_fail_fast_while_disconnected() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = runtime.block_on(NatsServer::start());
    let dir = tempfile::tempdir().expect("temp dir");
    let buckets = runtime.block_on(async {
        let client = async_nats::connect(server.url())
            .await
            .expect("connects to nats-server");
        let context = async_nats::jetstream::new(client);
        Buckets::open_jetstream(dir.path().join("buckets"), &context, 1, None)
            .await
            .expect("buckets open on JetStream")
    });
    buckets.create_bucket("bkt", false).expect("bucket");

    server.kill();
    let give_up = std::time::Instant::now() + STATE_CHANGE_TIMEOUT;
    let error = loop {
        match buckets.list("bkt", "", None, false) {
            Err(err @ BucketError::Unavailable { .. }) => break err,
            other => {
                assert!(
                    std::time::Instant::now() < give_up,
                    "no Unavailable error within {STATE_CHANGE_TIMEOUT:?}: {other:?}"
                );
                // The sleep future needs the runtime when it is made, not only when polled.
                runtime.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
            }
        }
    };
    assert!(error.to_string().contains("nats-server"), "{error}");
    drop(buckets);
    runtime.shutdown_background();
}
