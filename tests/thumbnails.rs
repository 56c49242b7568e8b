//! The thumbnail function end to end on the default configuration: every fixture file is
//! uploaded through `POST /upload/uploads`, and the test checks what the `thumbnailer`
//! subscription wrote into `thumbnails` and what it dead-lettered.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder as _, ImageReader};
use serde_json::Value;
use sluice_proto::google::pubsub::v1::subscriber_client::SubscriberClient;
use sluice_proto::google::pubsub::v1::{PullRequest, ReceivedMessage};
use sluice_proto::sluice::v1::admin_client::AdminClient;
use sluice_proto::sluice::v1::ListSubscriptionsRequest;
use support::{channel, TestServer};

/// Maximum wait for the handler to work through the uploads. It is far above what the
/// handler needs, so that only a stuck handler fails the test.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);

/// The box of the default configuration.
const BOX: f64 = 256.0;

fn images_dir() -> PathBuf {
    support::fixtures().join("images")
}

/// Returns every file under `dir` as (name relative to `dir` with `/`, path), sorted.
fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("readable fixture folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir");
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                files.push((name, path));
            }
        }
    }
    files.sort();
    files
}

/// What the handler must do with one fixture file.
#[derive(Debug, PartialEq)]
enum Expected {
    /// A thumbnail of this upright source size.
    Thumbnail(u32, u32),
    /// Dead-lettered with a reason.
    DeadLetter,
    /// Acknowledged without output.
    Skip,
}

/// Decides the expected outcome independently of the renderer: the image crate reads the
/// header and the EXIF orientation, and the few files it cannot judge are listed by name.
fn expected_outcome(name: &str, path: &Path) -> Expected {
    // The entropy-coded data of corrupted.jpg is damaged; its header is intact.
    if name == "invalid/corrupted.jpg" {
        return Expected::DeadLetter;
    }
    // HEIF is not among the formats the thumbnailer decodes.
    if name.ends_with(".heic") || name.ends_with(".HEIC") {
        return Expected::Skip;
    }
    let Ok(reader) = ImageReader::open(path).and_then(ImageReader::with_guessed_format) else {
        return Expected::Skip;
    };
    if reader.format().is_none() {
        return Expected::Skip;
    }
    let mut decoder = reader.into_decoder().expect("decodable header");
    let (width, height) = decoder.dimensions();
    match decoder.orientation().unwrap_or(Orientation::NoTransforms) {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => Expected::Thumbnail(height, width),
        _ => Expected::Thumbnail(width, height),
    }
}

fn multipart_form(files: &[(String, PathBuf)]) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new();
    for (name, path) in files {
        let bytes = std::fs::read(path).expect("readable fixture");
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.clone());
        form = form.text("name", name.clone()).part("file", part);
    }
    form
}

async fn upload(http: &reqwest::Client, server: &TestServer, files: &[(String, PathBuf)]) {
    let response = http
        .post(format!("{}/upload/uploads", server.url()))
        .multipart(multipart_form(files))
        .send()
        .await
        .expect("upload request");
    let status = response.status();
    let body = response.text().await.expect("upload body");
    assert_eq!(status, 200, "upload failed: {body}");
}

async fn list_objects(http: &reqwest::Client, server: &TestServer, bucket: &str) -> Vec<Value> {
    let response: Value = http
        .get(format!("{}/storage/v1/b/{bucket}/o", server.url()))
        .send()
        .await
        .expect("list request")
        .json()
        .await
        .expect("list body");
    response["items"].as_array().cloned().unwrap_or_default()
}

async fn media(http: &reqwest::Client, server: &TestServer, bucket: &str, name: &str) -> Vec<u8> {
    let encoded = support::encode_segment(name);
    let response = http
        .get(format!(
            "{}/storage/v1/b/{bucket}/o/{encoded}?alt=media",
            server.url()
        ))
        .send()
        .await
        .expect("media request");
    assert_eq!(response.status(), 200, "media of {bucket}/{name}");
    response.bytes().await.expect("media body").to_vec()
}

/// Waits until the `thumbnailer` subscription has nothing left to deliver or in flight.
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
        let thumbnailer = subscriptions
            .iter()
            .find(|s| s.name == "thumbnailer")
            .expect("the default configuration has a thumbnailer subscription");
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

async fn pull_all(server: &TestServer, subscription: &str) -> Vec<ReceivedMessage> {
    let mut client = SubscriberClient::new(channel(server).await);
    let mut received = Vec::new();
    loop {
        let batch = client
            .pull(PullRequest {
                subscription: format!("projects/local/subscriptions/{subscription}"),
                max_messages: 100,
                ..PullRequest::default()
            })
            .await
            .expect("pull")
            .into_inner()
            .received_messages;
        if batch.is_empty() {
            return received;
        }
        received.extend(batch);
    }
}

fn mean_absolute_difference(left: &DynamicImage, right: &DynamicImage) -> f64 {
    let (left, right) = (left.to_rgb8(), right.to_rgb8());
    assert_eq!(left.dimensions(), right.dimensions(), "sizes differ");
    let total: u64 = left
        .as_raw()
        .iter()
        .zip(right.as_raw())
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    total as f64 / left.as_raw().len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_upload_gets_its_outcome() {
    let server = TestServer::start(None);
    let http = reqwest::Client::new();
    let files = files_under(&images_dir());
    assert!(files.len() > 60, "only {} fixture files", files.len());

    for chunk in files.chunks(8) {
        upload(&http, &server, chunk).await;
    }
    wait_until_settled(&server).await;

    let thumbnails: BTreeMap<String, Value> = list_objects(&http, &server, "thumbnails")
        .await
        .into_iter()
        .map(|object| (object["name"].as_str().expect("name").to_owned(), object))
        .collect();
    let dead_letters = pull_all(&server, "thumbnailer-dead-letter").await;
    let dead_lettered: BTreeMap<String, String> = dead_letters
        .iter()
        .map(|received| {
            let message = received.message.as_ref().expect("message");
            let object = message.attributes["objectId"].clone();
            let reason = message
                .attributes
                .get("sluiceDeadLetterReason")
                .cloned()
                .unwrap_or_default();
            (object, reason)
        })
        .collect();
    assert_eq!(
        dead_letters.len(),
        dead_lettered.len(),
        "each file is dead-lettered at most once"
    );

    for (name, path) in &files {
        match expected_outcome(name, path) {
            Expected::Thumbnail(width, height) => {
                let object = thumbnails.get(name).unwrap_or_else(|| {
                    panic!("{name}: no thumbnail (dead letter: {dead_lettered:?})")
                });
                let metadata = &object["metadata"];
                assert_eq!(metadata["sourceBucket"], "uploads", "{name}");
                assert_eq!(metadata["sourceObject"], name.as_str(), "{name}");
                assert!(
                    metadata["sourceGeneration"].as_str().is_some(),
                    "{name}: sourceGeneration"
                );

                let bytes = media(&http, &server, "thumbnails", name).await;
                let format = image::guess_format(&bytes).expect("thumbnail format");
                let content_type = object["contentType"].as_str().expect("content type");
                assert_eq!(
                    content_type,
                    format.to_mime_type(),
                    "{name}: content type must match the bytes"
                );
                let thumbnail = image::load_from_memory(&bytes).expect("thumbnail decodes");
                let scale = (BOX / f64::from(width))
                    .min(BOX / f64::from(height))
                    .min(1.0);
                let expected_width = f64::from(width) * scale;
                let expected_height = f64::from(height) * scale;
                assert!(
                    (f64::from(thumbnail.width()) - expected_width).abs() <= 1.0
                        && (f64::from(thumbnail.height()) - expected_height).abs() <= 1.0,
                    "{name}: thumbnail {}x{} for a {width}x{height} source",
                    thumbnail.width(),
                    thumbnail.height()
                );
                assert!(
                    !dead_lettered.contains_key(name),
                    "{name}: dead-lettered too"
                );
            }
            Expected::DeadLetter => {
                let reason = dead_lettered
                    .get(name)
                    .unwrap_or_else(|| panic!("{name}: not dead-lettered"));
                assert!(
                    reason.contains("decoded"),
                    "{name}: reason {reason:?} does not say why"
                );
                assert!(!thumbnails.contains_key(name), "{name}: has a thumbnail");
            }
            Expected::Skip => {
                assert!(!thumbnails.contains_key(name), "{name}: has a thumbnail");
                assert!(
                    !dead_lettered.contains_key(name),
                    "{name}: dead-lettered instead of skipped"
                );
            }
        }
    }
    assert_eq!(
        thumbnails.len(),
        files
            .iter()
            .filter(|(name, path)| matches!(expected_outcome(name, path), Expected::Thumbnail(..)))
            .count(),
        "exactly one thumbnail per decodable image"
    );

    // All eighteen orientation files show the same upright picture.
    for series in ["Landscape", "Portrait"] {
        let reference_name = format!("orientation/{series}_1.jpg");
        let reference =
            image::load_from_memory(&media(&http, &server, "thumbnails", &reference_name).await)
                .expect("reference decodes");
        for value in 0..=8 {
            let name = format!("orientation/{series}_{value}.jpg");
            let thumbnail =
                image::load_from_memory(&media(&http, &server, "thumbnails", &name).await)
                    .expect("thumbnail decodes");
            let difference = mean_absolute_difference(&thumbnail, &reference);
            assert!(
                difference < 8.0,
                "{name}: mean absolute difference {difference:.2} from {reference_name}"
            );
        }
    }

    // The server is healthy and the next upload still works.
    let health = http
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .expect("health request");
    assert_eq!(health.status(), 200);
    let landscape = images_dir().join("orientation/Landscape_1.jpg");
    upload(
        &http,
        &server,
        &[("after/landscape.jpg".to_owned(), landscape)],
    )
    .await;
    wait_until_settled(&server).await;
    let after = list_objects(&http, &server, "thumbnails").await;
    assert!(
        after
            .iter()
            .any(|object| object["name"] == "after/landscape.jpg"),
        "the upload after the fixtures got no thumbnail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_gets_one_new_thumbnail() {
    let server = TestServer::start(None);
    let http = reqwest::Client::new();
    let first = images_dir().join("orientation/Landscape_1.jpg");
    let second = images_dir().join("orientation/Portrait_1.jpg");

    upload(&http, &server, &[("photo.jpg".to_owned(), first)]).await;
    wait_until_settled(&server).await;
    let before = list_objects(&http, &server, "thumbnails").await;
    assert_eq!(before.len(), 1);
    let first_generation = before[0]["metadata"]["sourceGeneration"].clone();

    upload(&http, &server, &[("photo.jpg".to_owned(), second)]).await;
    wait_until_settled(&server).await;
    let after = list_objects(&http, &server, "thumbnails").await;

    assert_eq!(
        after.len(),
        1,
        "the DELETE of the old generation removed nothing"
    );
    assert_ne!(
        after[0]["metadata"]["sourceGeneration"], first_generation,
        "the thumbnail follows the new generation"
    );
    let thumbnail =
        image::load_from_memory(&media(&http, &server, "thumbnails", "photo.jpg").await)
            .expect("decodes");
    assert_eq!(
        (thumbnail.width(), thumbnail.height()),
        (171, 256),
        "the thumbnail is of the portrait that replaced the landscape"
    );
    assert_ne!(
        after[0]["generation"], before[0]["generation"],
        "one new thumbnail generation was written"
    );

    // Two finalize events succeeded; the DELETE of the first generation counts too, because
    // the handler acknowledges it without work. The runner counts an event after its ack, so
    // the counter may trail the backlog for a moment.
    let succeeded =
        "sluice_handler_succeeded_total{handler=\"thumbnail\",subscription=\"thumbnailer\"} 3";
    let rejected =
        "sluice_handler_rejected_total{handler=\"thumbnail\",subscription=\"thumbnailer\"} 0";
    let give_up = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let metrics = http
            .get(format!("{}/metrics", server.url()))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body");
        if metrics.contains(succeeded) || Instant::now() >= give_up {
            assert!(metrics.contains(succeeded), "{metrics}");
            assert!(metrics.contains(rejected), "{metrics}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_finalize_writes_nothing() {
    use sluice_proto::google::pubsub::v1::publisher_client::PublisherClient;
    use sluice_proto::google::pubsub::v1::{PublishRequest, PubsubMessage};

    let server = TestServer::start(None);
    let http = reqwest::Client::new();
    let photo = images_dir().join("orientation/Landscape_1.jpg");
    upload(&http, &server, &[("photo.jpg".to_owned(), photo)]).await;
    wait_until_settled(&server).await;
    let before = list_objects(&http, &server, "thumbnails").await;
    assert_eq!(before.len(), 1);

    // The same finalize event again, as a redelivery would bring it.
    let source: Value = http
        .get(format!("{}/storage/v1/b/uploads/o/photo.jpg", server.url()))
        .send()
        .await
        .expect("metadata request")
        .json()
        .await
        .expect("metadata body");
    let generation = source["generation"]
        .as_str()
        .expect("generation")
        .to_owned();
    let attributes = [
        ("eventType", "OBJECT_FINALIZE"),
        ("payloadFormat", "JSON_API_V1"),
        ("bucketId", "uploads"),
        ("objectId", "photo.jpg"),
        ("objectGeneration", generation.as_str()),
        ("eventTime", "2026-01-01T00:00:00.000000Z"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut publisher = PublisherClient::new(channel(&server).await);
    publisher
        .publish(PublishRequest {
            topic: "projects/local/topics/uploads-events".to_owned(),
            messages: vec![PubsubMessage {
                data: source.to_string().into_bytes(),
                attributes,
                ..PubsubMessage::default()
            }],
        })
        .await
        .expect("publish");
    wait_until_settled(&server).await;

    let after = list_objects(&http, &server, "thumbnails").await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0]["generation"], before[0]["generation"],
        "the redelivered event wrote a new thumbnail generation"
    );
}
