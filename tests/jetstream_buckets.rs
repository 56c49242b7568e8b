//! Buckets shared by two `sluice serve` processes on one JetStream server. An object
//! written through one node is read and listed through the other, and notified once. A
//! thumbnail that one node's handler made is not made again by the other. Concurrent
//! writes of one object through both nodes keep every generation.

#[path = "../router/tests/nats/mod.rs"]
mod nats;
mod support;

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage, PullRequest};
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use support::{channel, TestServer};

/// How long the handler and the deliveries may take. Far above what they need, so that
/// only a stuck node fails a test.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Returns the configuration of every node, with `objects` as the `[store] objects` setting.
fn config(url: &str, objects: &str) -> String {
    format!(
        r#"
[store]
kind = "jetstream"
urls = ["{url}"]
objects = "{objects}"

[[buckets]]
name = "uploads"

[[buckets.notifications]]
topic = "uploads-events"
event_types = ["OBJECT_FINALIZE"]

[[buckets]]
name = "thumbnails"

[[buckets]]
name = "shared"
versioning = true

[[topics]]
name = "uploads-events"

[[subscriptions]]
name = "watcher"
topic = "uploads-events"

[[subscriptions]]
name = "thumbnailer"
topic = "uploads-events"

[subscriptions.handler]
kind = "thumbnail"
destination_bucket = "thumbnails"
"#
    )
}

/// A nats-server and the configuration file of the nodes on it.
struct Cluster {
    _nats: nats::NatsServer,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the server, with the object bytes in its object store.
    async fn start() -> Cluster {
        Cluster::start_with_objects(|_| "jetstream".to_owned()).await
    }

    /// Starts the server, with `objects` giving the `[store] objects` setting for the
    /// cluster's temporary folder.
    async fn start_with_objects(objects: impl FnOnce(&Path) -> String) -> Cluster {
        let nats = nats::NatsServer::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let objects = objects(dir.path());
        std::fs::write(
            dir.path().join("sluice.toml"),
            config(&nats.url(), &objects),
        )
        .expect("config");
        Cluster { _nats: nats, dir }
    }

    /// Starts a node with a data directory of its own. Nodes start one after the other, so
    /// the second finds the buckets and notification configs that the first created.
    async fn node(&self, name: &str) -> TestServer {
        let data_dir = self.dir.path().join(name);
        let config = self.dir.path().join("sluice.toml");
        tokio::task::spawn_blocking(move || TestServer::start_in(&data_dir, Some(&config)))
            .await
            .expect("the node starts")
    }
}

async fn upload(
    http: &reqwest::Client,
    node: &TestServer,
    bucket: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Value {
    let response = http
        .post(format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            node.url(),
            support::encode_segment(name)
        ))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("upload request");
    let status = response.status();
    let body: Value = response.json().await.expect("upload body");
    assert_eq!(status, 200, "upload failed: {body}");
    body
}

async fn get_json(http: &reqwest::Client, url: String) -> Value {
    let response = http.get(&url).send().await.expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON body");
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

async fn list(
    http: &reqwest::Client,
    node: &TestServer,
    bucket: &str,
    versions: bool,
) -> Vec<Value> {
    let body = get_json(
        http,
        format!("{}/storage/v1/b/{bucket}/o?versions={versions}", node.url()),
    )
    .await;
    body["items"].as_array().cloned().unwrap_or_default()
}

async fn pull(node: &TestServer, subscription: &str) -> Vec<PubsubMessage> {
    let mut client = SubscriberClient::new(channel(node).await);
    let received = client
        .pull(PullRequest {
            subscription: format!("projects/local/subscriptions/{subscription}"),
            max_messages: 100,
            ..PullRequest::default()
        })
        .await
        .expect("pull")
        .into_inner()
        .received_messages;
    received.into_iter().filter_map(|r| r.message).collect()
}

/// Waits until the `thumbnailer` subscription has nothing left to deliver or in flight.
async fn wait_until_settled(node: &TestServer) {
    let mut admin = AdminClient::new(channel(node).await);
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let subscriptions = admin
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .expect("list subscriptions")
            .into_inner()
            .subscriptions;
        let thumbnailer = subscriptions
            .iter()
            .find(|s| s.name == "thumbnailer")
            .expect("the thumbnailer subscription");
        if thumbnailer.backlog == 0 && thumbnailer.outstanding == 0 {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "the thumbnailer still has {} messages after {SETTLE_TIMEOUT:?}",
            thumbnailer.backlog
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `bucket` lists an object called `name` on `node`, and returns it.
async fn wait_for_object(
    http: &reqwest::Client,
    node: &TestServer,
    bucket: &str,
    name: &str,
) -> Value {
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        if let Some(object) = list(http, node, bucket, false)
            .await
            .into_iter()
            .find(|o| o["name"] == name)
        {
            return object;
        }
        assert!(
            Instant::now() < give_up,
            "{bucket}/{name} did not appear within {SETTLE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
    });
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("PNG encodes");
    bytes.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_served_by_other_node() {
    let cluster = Cluster::start().await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let http = reqwest::Client::new();

    let written = upload(
        &http,
        &a,
        "uploads",
        "notes/hello.txt",
        b"hello from a".to_vec(),
    )
    .await;
    let generation = written["generation"]
        .as_str()
        .expect("generation")
        .to_owned();

    let name = support::encode_segment("notes/hello.txt");
    let read = get_json(&http, format!("{}/storage/v1/b/uploads/o/{name}", b.url())).await;
    assert_eq!(read["generation"], generation.as_str());
    assert_eq!(read["md5Hash"], written["md5Hash"]);
    let bytes = http
        .get(format!(
            "{}/storage/v1/b/uploads/o/{name}?alt=media",
            b.url()
        ))
        .send()
        .await
        .expect("media request")
        .bytes()
        .await
        .expect("media body");
    assert_eq!(&bytes[..], b"hello from a");
    let listed = list(&http, &b, "uploads", false).await;
    let names: Vec<&str> = listed.iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["notes/hello.txt"]);

    // Both nodes read the same notification configs, and the write published through
    // node A only: the watcher receives one message, whichever node it pulls from.
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    let mut messages = Vec::new();
    while messages.is_empty() {
        messages.extend(pull(&b, "watcher").await);
        assert!(Instant::now() < give_up, "no notification arrived");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    messages.extend(pull(&a, "watcher").await);
    messages.extend(pull(&b, "watcher").await);
    assert_eq!(messages.len(), 1, "one notification: {messages:?}");
    let attributes = &messages[0].attributes;
    assert_eq!(attributes["eventType"], "OBJECT_FINALIZE");
    assert_eq!(attributes["objectId"], "notes/hello.txt");
    assert_eq!(attributes["objectGeneration"], generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnail_not_remade_by_other_node() {
    let cluster = Cluster::start().await;
    let mut a = cluster.node("a").await;
    let http = reqwest::Client::new();

    upload(&http, &a, "uploads", "photo.png", png(640, 480)).await;
    let thumbnail = wait_for_object(&http, &a, "thumbnails", "photo.png").await;
    wait_until_settled(&a).await;
    let event = {
        let messages = pull(&a, "watcher").await;
        assert_eq!(messages.len(), 1, "one notification: {messages:?}");
        messages.into_iter().next().expect("one message")
    };
    // Node A stops, so that node B is the only consumer of the thumbnailer.
    a.terminate();

    let b = cluster.node("b").await;
    let seen = wait_for_object(&http, &b, "thumbnails", "photo.png").await;
    assert_eq!(seen["generation"], thumbnail["generation"]);
    assert_eq!(
        seen["metadata"]["sourceGeneration"],
        thumbnail["metadata"]["sourceGeneration"]
    );

    // The same event again, as a redelivery would bring it: node B finds the thumbnail of
    // that source generation and writes nothing.
    let mut publisher = PublisherClient::new(channel(&b).await);
    publisher
        .publish(PublishRequest {
            topic: "projects/local/topics/uploads-events".to_owned(),
            messages: vec![PubsubMessage {
                data: event.data,
                attributes: event.attributes,
                ..PubsubMessage::default()
            }],
        })
        .await
        .expect("publish");
    wait_until_settled(&b).await;
    let versions = list(&http, &b, "thumbnails", true).await;
    let generations: Vec<&Value> = versions.iter().map(|o| &o["generation"]).collect();
    assert_eq!(
        generations,
        [&thumbnail["generation"]],
        "the thumbnail is not remade"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_keep_every_generation() {
    const WRITES_PER_NODE: usize = 15;
    let cluster = Cluster::start().await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let http = reqwest::Client::new();

    let mut tasks = Vec::new();
    for (index, node) in [&a, &b].into_iter().enumerate() {
        for round in 0..WRITES_PER_NODE {
            let http = http.clone();
            let url = node.url().to_owned();
            tasks.push(tokio::spawn(async move {
                let response = http
                    .post(format!(
                        "{url}/upload/storage/v1/b/shared/o?uploadType=media&name=same"
                    ))
                    .body(format!("node {index} write {round}"))
                    .send()
                    .await
                    .expect("upload request");
                assert_eq!(response.status(), 200);
                let body: Value = response.json().await.expect("upload body");
                body["generation"].as_str().expect("generation").to_owned()
            }));
        }
    }
    let mut generations = BTreeSet::new();
    for task in tasks {
        generations.insert(task.await.expect("upload task"));
    }
    assert_eq!(
        generations.len(),
        2 * WRITES_PER_NODE,
        "every write has its own generation"
    );

    for node in [&a, &b] {
        let versions = list(&http, node, "shared", true).await;
        let listed: BTreeSet<String> = versions
            .iter()
            .filter_map(|o| o["generation"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(listed, generations, "every write is a version");
        let live: Vec<&Value> = versions
            .iter()
            .filter(|o| o.get("timeDeleted").is_none())
            .collect();
        assert_eq!(live.len(), 1, "one live version");
        let newest = generations
            .iter()
            .max_by_key(|g| g.parse::<i64>().expect("numeric generation"))
            .expect("generations");
        assert_eq!(live[0]["generation"], newest.as_str(), "the newest is live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_bytes_in_shared_folder() {
    let cluster =
        Cluster::start_with_objects(|dir| dir.join("objects").display().to_string()).await;
    let a = cluster.node("a").await;
    let b = cluster.node("b").await;
    let http = reqwest::Client::new();

    let written = upload(
        &http,
        &a,
        "shared",
        "doc.txt",
        b"bytes in a folder".to_vec(),
    )
    .await;
    let bytes = http
        .get(format!(
            "{}/storage/v1/b/shared/o/doc.txt?alt=media",
            b.url()
        ))
        .send()
        .await
        .expect("media request")
        .bytes()
        .await
        .expect("media body");
    assert_eq!(&bytes[..], b"bytes in a folder");

    let generation = written["generation"].as_str().expect("generation");
    let bucket_folder = cluster.dir.path().join("objects").join(hex("shared"));
    let stored = std::fs::read(bucket_folder.join(generation)).expect("the version's file");
    assert_eq!(stored, b"bytes in a folder");
}

fn hex(text: &str) -> String {
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}
