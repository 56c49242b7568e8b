//! The annotate function end to end on the default configuration: photos uploaded through
//! `POST /upload/uploads` get JSON annotations in the bucket `annotations`, damaged ones are
//! dead-lettered and other files are skipped.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::PullRequest;
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use support::{channel, TestServer};

/// Maximum wait for the handler to work through the uploads. It is far above what the
/// handler needs, so that only a stuck handler fails the test.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Reads a file of the repository, such as a bundled demo photo.
fn photo(relative_path: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative_path);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Reads a file of the shared image fixtures.
fn fixture(relative_path: &str) -> Vec<u8> {
    let path = support::fixtures().join("images").join(relative_path);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

async fn upload(http: &reqwest::Client, server: &TestServer, files: Vec<(&str, Vec<u8>)>) {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        form = form.text("name", name.to_owned()).part("file", part);
    }
    let response = http
        .post(format!("{}/upload/uploads", server.url()))
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    let status = response.status();
    let body = response.text().await.expect("upload body");
    assert_eq!(status, 200, "upload failed: {body}");
}

/// Waits until the `annotator` subscription has nothing left to deliver or in flight.
async fn wait_until_settled(server: &TestServer) {
    let mut admin = AdminClient::new(channel(server).await);
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let subscriptions = admin
            .list_subscriptions(ListSubscriptionsRequest::default())
            .await
            .expect("list subscriptions")
            .into_inner()
            .subscriptions;
        let annotator = subscriptions
            .iter()
            .find(|s| s.name == "annotator")
            .expect("the default configuration has an annotator subscription");
        if annotator.backlog == 0 && annotator.outstanding == 0 {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "the annotator still has {} messages after {SETTLE_TIMEOUT:?}",
            annotator.backlog
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn object_names(http: &reqwest::Client, server: &TestServer, bucket: &str) -> Vec<String> {
    let listing: Value = http
        .get(format!("{}/storage/v1/b/{bucket}/o", server.url()))
        .send()
        .await
        .expect("list request")
        .json()
        .await
        .expect("list body");
    let items = listing["items"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .map(|item| item["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn annotation(http: &reqwest::Client, server: &TestServer, name: &str) -> Value {
    let response = http
        .get(format!(
            "{}/storage/v1/b/annotations/o/{}?alt=media",
            server.url(),
            support::encode_segment(name)
        ))
        .send()
        .await
        .expect("media request");
    assert_eq!(response.status(), 200, "annotation {name}");
    response.json().await.expect("annotation is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_get_annotations() {
    let server = TestServer::start(None);
    let http = reqwest::Client::new();
    let rotated = photo("demo/photos/landscape-exif-rotated.jpg");
    let truncated = rotated[..rotated.len() / 2].to_vec();
    upload(
        &http,
        &server,
        vec![
            ("trip/rotated.jpg", rotated),
            ("trip/canon.jpg", fixture("camera/Canon_40D.jpg")),
            ("trip/truncated.jpg", truncated),
            ("trip/notes.txt", b"not an image".to_vec()),
        ],
    )
    .await;
    wait_until_settled(&server).await;

    let names = object_names(&http, &server, "annotations").await;
    assert_eq!(names, ["trip/canon.jpg.json", "trip/rotated.jpg.json"]);

    let rotated = annotation(&http, &server, "trip/rotated.jpg.json").await;
    assert_eq!(rotated["source"]["bucket"], "uploads");
    assert_eq!(rotated["source"]["name"], "trip/rotated.jpg");
    assert_eq!(rotated["image"]["format"], "JPEG");
    assert_eq!(rotated["image"]["width"], 1800);
    assert_eq!(rotated["image"]["height"], 1200);
    assert_eq!(rotated["exif"]["orientation"], 6);
    let colors = rotated["imagePropertiesAnnotation"]["dominantColors"]["colors"]
        .as_array()
        .expect("colors");
    assert_eq!(colors.len(), 10);
    assert!(colors[0]["pixelFraction"].as_f64().is_some());

    let canon = annotation(&http, &server, "trip/canon.jpg.json").await;
    assert_eq!(canon["image"]["width"], 100);
    assert_eq!(canon["image"]["height"], 68);
    assert_eq!(canon["exif"]["make"], "Canon");
    assert_eq!(canon["exif"]["model"], "Canon EOS 40D");
    assert_eq!(canon["exif"]["orientation"], 1);
    assert_eq!(canon["exif"]["captureTime"], "2008-05-30T15:56:01");
    assert_eq!(
        canon["perceptualHash"]["value"].as_str().map(str::len),
        Some(16)
    );

    let mut subscriber = SubscriberClient::new(channel(&server).await);
    let dead_letters = subscriber
        .pull(PullRequest {
            subscription: "projects/local/subscriptions/annotator-dead-letter".to_owned(),
            max_messages: 10,
            ..PullRequest::default()
        })
        .await
        .expect("pull dead letters")
        .into_inner()
        .received_messages;
    assert_eq!(dead_letters.len(), 1);
    let attributes = &dead_letters[0]
        .message
        .as_ref()
        .expect("message")
        .attributes;
    assert_eq!(attributes["objectId"], "trip/truncated.jpg");
    let reason = &attributes["sluiceDeadLetterReason"];
    assert!(reason.starts_with("cannot annotate"), "{reason}");
    assert!(server.stop().success(), "server exits cleanly");
}
