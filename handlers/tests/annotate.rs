//! The annotate function on real camera JPEGs and the EXIF orientation set, and the annotate
//! handler behind the runner over real buckets and a real broker: the annotation object, its
//! metadata, redelivery, skips and dead letters.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use image::metadata::Orientation;
use image::{ImageDecoder as _, ImageReader};
use serde_json::Value;
use sluice_handlers::annotate::{
    annotate, AnnotateConfig, AnnotateError, AnnotateHandler, AnnotateOptions, ImageAnnotation,
};
use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_router::buckets::{Buckets, NotificationConfig, ObjectResource, PayloadFormat};
use sluice_router::deliver::{Broker, Delivery, DEAD_LETTER_REASON_ATTRIBUTE};
use sluice_router::storage::Storage;
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage,
};
use tokio::sync::oneshot;

const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/images");

/// Maximum wait for the runner to settle. It is far above what any test needs, so that only a
/// stuck handler fails a test.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A Canon EOS 40D photo, 100x68, orientation 1, taken 2008-05-30 15:56:01.
const CANON_JPEG: &str = "camera/Canon_40D.jpg";
/// 1800x1200 upright, stored sideways (1200x1800) with EXIF orientation 6.
const ROTATED_JPEG: &str = "orientation/Landscape_6.jpg";

fn read_image(relative_path: &str) -> Vec<u8> {
    let path = Path::new(IMAGES).join(relative_path);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn annotate_fixture(relative_path: &str) -> ImageAnnotation {
    annotate(&read_image(relative_path), &AnnotateOptions::default())
        .unwrap_or_else(|error| panic!("{relative_path} is annotated: {error}"))
}

/// Reads the upright size and the orientation of a fixture with the image crate, independently
/// of the annotator.
fn upright_size(relative_path: &str) -> ((u32, u32), Orientation) {
    let path = Path::new(IMAGES).join(relative_path);
    let mut decoder = ImageReader::open(&path)
        .and_then(ImageReader::with_guessed_format)
        .expect("readable fixture")
        .into_decoder()
        .expect("decodable header");
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let size = match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    };
    (size, orientation)
}

/// Returns the number of bits in which two hex hashes differ.
fn hamming_distance(left: &str, right: &str) -> u32 {
    let left = u64::from_str_radix(left, 16).expect("hex hash");
    let right = u64::from_str_radix(right, 16).expect("hex hash");
    (left ^ right).count_ones()
}

#[test]
fn canon_photo_has_camera_model_and_capture_time() {
    let annotation = annotate_fixture(CANON_JPEG);

    assert_eq!(annotation.image.format, "JPEG");
    assert_eq!(annotation.image.mime_type, "image/jpeg");
    assert_eq!((annotation.image.width, annotation.image.height), (100, 68));
    let exif = annotation.exif.expect("EXIF summary");
    assert_eq!(exif.make.as_deref(), Some("Canon"));
    assert_eq!(exif.model.as_deref(), Some("Canon EOS 40D"));
    assert_eq!(exif.capture_time.as_deref(), Some("2008-05-30T15:56:01"));
    assert_eq!(exif.orientation, Some(1));
}

#[test]
fn rotated_photo_has_upright_size_and_orientation() {
    let annotation = annotate_fixture(ROTATED_JPEG);

    assert_eq!(
        (annotation.image.width, annotation.image.height),
        (1800, 1200)
    );
    assert_eq!(annotation.exif.expect("EXIF summary").orientation, Some(6));
}

#[test]
fn capture_time_keeps_the_offset_tag() {
    let annotation = annotate_fixture("camera/HMD_Nokia_8.3_5G.jpg");
    let exif = annotation.exif.expect("EXIF summary");

    assert_eq!(exif.make.as_deref(), Some("HMD Global"));
    assert_eq!(exif.model.as_deref(), Some("Nokia 8.3 5G"));
    assert_eq!(
        exif.capture_time.as_deref(),
        Some("2022-08-14T14:12:31+03:00")
    );
    assert_eq!(
        (annotation.image.width, annotation.image.height),
        (4608, 1976)
    );
}

#[test]
fn every_orientation_gives_the_same_upright_picture() {
    for shape in ["Landscape", "Portrait"] {
        let upright = annotate_fixture(&format!("orientation/{shape}_1.jpg"));
        for tag in 1..=8_u16 {
            let name = format!("orientation/{shape}_{tag}.jpg");
            let annotation = annotate_fixture(&name);

            assert_eq!(
                (annotation.image.width, annotation.image.height),
                (upright.image.width, upright.image.height),
                "{name}"
            );
            let orientation = annotation.exif.and_then(|exif| exif.orientation);
            assert_eq!(orientation, Some(tag), "{name}");
            let distance = hamming_distance(
                &annotation.perceptual_hash.value,
                &upright.perceptual_hash.value,
            );
            assert!(distance <= 6, "{name}: hash differs in {distance} bits");
        }
    }
}

#[test]
fn different_photos_have_distant_hashes() {
    let landscape = annotate_fixture("orientation/Landscape_1.jpg");
    let portrait = annotate_fixture("orientation/Portrait_1.jpg");
    let camera = annotate_fixture("camera/Reconyx_HC500_Hyperfire.jpg");

    let distances = [
        hamming_distance(
            &landscape.perceptual_hash.value,
            &portrait.perceptual_hash.value,
        ),
        hamming_distance(
            &landscape.perceptual_hash.value,
            &camera.perceptual_hash.value,
        ),
    ];
    for distance in distances {
        assert!(distance > 10, "unrelated photos differ in {distance} bits");
    }
}

#[test]
fn camera_photos_match_their_headers() {
    let folder = Path::new(IMAGES).join("camera");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("camera folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".jpg"))
        .collect();
    names.sort();
    assert!(names.len() > 30, "{names:?}");
    for name in names {
        let relative_path = format!("camera/{name}");
        let annotation = annotate_fixture(&relative_path);
        let ((width, height), _) = upright_size(&relative_path);

        assert_eq!(
            (annotation.image.width, annotation.image.height),
            (width, height),
            "{name}"
        );
        let colors = &annotation
            .image_properties_annotation
            .dominant_colors
            .colors;
        assert!(!colors.is_empty(), "{name}");
        assert!(colors.len() <= 10, "{name}");
        let fraction: f32 = colors.iter().map(|info| info.pixel_fraction).sum();
        assert!((fraction - 1.0).abs() < 1e-3, "{name}: {fraction}");
        assert_eq!(annotation.perceptual_hash.value.len(), 16, "{name}");
    }
}

#[test]
fn annotation_json_uses_vision_field_names() {
    let annotation = annotate_fixture(CANON_JPEG);
    let json = serde_json::to_value(&annotation).expect("serializable");

    let colors = &json["imagePropertiesAnnotation"]["dominantColors"]["colors"];
    let first = &colors[0];
    assert!(first["color"]["red"].is_u64(), "{first}");
    assert!(first["color"]["green"].is_u64(), "{first}");
    assert!(first["color"]["blue"].is_u64(), "{first}");
    assert!(first["score"].is_f64(), "{first}");
    assert!(first["pixelFraction"].is_f64(), "{first}");
    assert_eq!(json["exif"]["model"], "Canon EOS 40D");
    assert_eq!(json["image"]["width"], 100);
    assert_eq!(json["perceptualHash"]["algorithm"], "pHash");
}

#[test]
fn max_colors_limits_the_colours() {
    let options = AnnotateOptions {
        max_colors: 3,
        ..AnnotateOptions::default()
    };
    let annotation = annotate(&read_image(CANON_JPEG), &options).expect("annotated");

    assert_eq!(
        annotation
            .image_properties_annotation
            .dominant_colors
            .colors
            .len(),
        3
    );
}

#[test]
fn exif_without_summary_tags_left_out() {
    // This camera's EXIF block has no make, model, time or orientation tag. It has a maker
    // note, which the summary does not read.
    let annotation = annotate_fixture("camera/Reconyx_HC500_Hyperfire.jpg");

    assert_eq!(annotation.exif, None);
}

#[test]
fn undecodable_files_skipped_or_invalid() {
    let options = AnnotateOptions::default();
    let heif = annotate(&read_image("other/samplefilehub.heif"), &options);
    let text = annotate(b"just some text", &options);
    let corrupt = annotate(&read_image("invalid/corrupted.jpg"), &options);
    let too_large = annotate(
        &read_image(CANON_JPEG),
        &AnnotateOptions {
            max_pixels: 100,
            ..options.clone()
        },
    );

    assert!(
        matches!(&heif, Err(AnnotateError::Skipped { reason }) if reason.contains("HEIF")),
        "{heif:?}"
    );
    assert!(
        matches!(text, Err(AnnotateError::Skipped { .. })),
        "{text:?}"
    );
    assert!(
        matches!(corrupt, Err(AnnotateError::Invalid { .. })),
        "{corrupt:?}"
    );
    assert!(
        matches!(too_large, Err(AnnotateError::Invalid { .. })),
        "{too_large:?}"
    );
}

const TOPIC: &str = "uploads";
const SUBSCRIPTION: &str = "annotator";
const DEAD_LETTER_TOPIC: &str = "annotator-dead";
const DEAD_LETTER_SUBSCRIPTION: &str = "annotator-dead-letters";
/// A second subscription on the notification topic that keeps every notification, so that a
/// test can publish one again.
const TAP_SUBSCRIPTION: &str = "tap";
const SOURCE_BUCKET: &str = "photos";
const DESTINATION_BUCKET: &str = "annotations";

/// The buckets, topics and subscriptions of one handler test.
struct Setup {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    storage: Storage,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&dir.path().join("store")).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        for topic in [TOPIC, DEAD_LETTER_TOPIC] {
            broker.create_topic(topic).await.expect("topic");
        }
        let policy = DeadLetterPolicy {
            topic: DEAD_LETTER_TOPIC.to_owned(),
            max_delivery_attempts: 5,
        };
        let subscriptions = [
            (SUBSCRIPTION, TOPIC, Some(policy)),
            (TAP_SUBSCRIPTION, TOPIC, None),
            (DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC, None),
        ];
        for (name, topic, dead_letter) in subscriptions {
            let spec = SubscriptionSpec {
                dead_letter,
                ..SubscriptionSpec::new(name, topic)
            };
            broker
                .create_subscription(spec)
                .await
                .expect("subscription");
        }
        tokio::spawn(broker.clone().run_maintenance(std::future::pending()));

        let buckets = Buckets::open(dir.path().join("buckets")).expect("buckets open");
        buckets
            .create_bucket(SOURCE_BUCKET, false)
            .expect("source bucket");
        buckets
            .create_bucket(DESTINATION_BUCKET, true)
            .expect("destination bucket");
        let notification = NotificationConfig {
            id: String::new(),
            topic: TOPIC.to_owned(),
            event_types: Vec::new(),
            object_name_prefix: None,
            payload_format: PayloadFormat::JsonApiV1,
            custom_attributes: BTreeMap::new(),
        };
        buckets
            .insert_notification_config(SOURCE_BUCKET, notification)
            .expect("notification config");
        Self {
            _dir: dir,
            storage: Storage::new(Arc::new(buckets), broker.clone()),
            broker,
        }
    }

    /// Starts the annotate handler behind a runner. It stops when the returned sender is
    /// dropped.
    fn start(&self) -> (RunnerHandle, oneshot::Sender<()>) {
        let handler = AnnotateHandler::new(
            self.storage.clone(),
            AnnotateConfig::new(DESTINATION_BUCKET),
        );
        let options = RunnerOptions {
            concurrency: 2,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            ..RunnerOptions::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = runner::spawn(
            self.broker.clone(),
            SUBSCRIPTION.to_owned(),
            Arc::new(handler),
            options,
            stopped,
        );
        (handle, stop)
    }

    async fn upload(&self, name: &str, bytes: Vec<u8>) -> ObjectResource {
        self.upload_with_metadata(name, bytes, BTreeMap::new())
            .await
    }

    async fn upload_with_metadata(
        &self,
        name: &str,
        bytes: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> ObjectResource {
        self.storage
            .put(SOURCE_BUCKET, name, bytes, None, metadata)
            .await
            .expect("upload")
    }

    /// Waits until the runner's subscription has no message left, handled or leased.
    async fn settle(&self) {
        let give_up = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let backlog = self
                .broker
                .stats()
                .into_iter()
                .find(|stats| stats.spec.name == SUBSCRIPTION)
                .expect("subscription stats")
                .backlog;
            if backlog == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < give_up,
                "timed out with {backlog} messages left"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Returns every version in the destination bucket, noncurrent ones included.
    async fn annotations(&self) -> Vec<ObjectResource> {
        self.storage
            .list(DESTINATION_BUCKET, "", None, true)
            .await
            .expect("list")
            .objects
    }

    async fn annotation_json(&self, object: &ObjectResource) -> Value {
        let (_, bytes) = self
            .storage
            .read(&object.bucket, &object.name, Some(object.generation))
            .await
            .expect("read annotation");
        serde_json::from_slice(&bytes).expect("annotation is JSON")
    }

    async fn dead_letters(&self) -> Vec<Delivery> {
        self.broker
            .pull(DEAD_LETTER_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull dead letters")
    }

    /// Publishes every notification that the tap subscription kept again.
    async fn publish_notifications_again(&self) -> usize {
        let messages: Vec<NewMessage> = self
            .broker
            .pull(TAP_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull tap")
            .into_iter()
            .map(|delivery| delivery.message.message)
            .collect();
        let count = messages.len();
        let messages = messages
            .into_iter()
            .map(|message| TopicMessage {
                topic: TOPIC.to_owned(),
                message,
            })
            .collect();
        self.broker.publish(messages).await.expect("publish");
        count
    }
}

async fn wait_for_count(counter: &std::sync::atomic::AtomicU64, expected: u64) {
    let give_up = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let count = counter.load(Ordering::Relaxed);
        if count == expected || tokio::time::Instant::now() >= give_up {
            assert_eq!(count, expected);
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_writes_annotation_of_known_photo() {
    let setup = Setup::new().await;
    let (runner, _stop) = setup.start();

    let source = setup
        .upload("trips/canon.jpg", read_image(CANON_JPEG))
        .await;
    setup.settle().await;

    let annotations = setup.annotations().await;
    assert_eq!(annotations.len(), 1);
    let object = &annotations[0];
    assert_eq!(object.name, "trips/canon.jpg.json");
    assert_eq!(object.content_type, "application/json");
    assert_eq!(object.metadata["sourceBucket"], SOURCE_BUCKET);
    assert_eq!(object.metadata["sourceObject"], "trips/canon.jpg");
    assert_eq!(
        object.metadata["sourceGeneration"],
        source.generation.to_string()
    );
    let json = setup.annotation_json(object).await;
    assert_eq!(json["source"]["bucket"], SOURCE_BUCKET);
    assert_eq!(json["source"]["name"], "trips/canon.jpg");
    assert_eq!(json["source"]["generation"], source.generation.to_string());
    assert_eq!(json["image"]["width"], 100);
    assert_eq!(json["image"]["height"], 68);
    assert_eq!(json["exif"]["orientation"], 1);
    assert_eq!(json["exif"]["model"], "Canon EOS 40D");
    wait_for_count(&runner.stats().succeeded, 1).await;
    assert!(setup.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_event_writes_nothing_new() {
    let setup = Setup::new().await;
    let (runner, _stop) = setup.start();
    setup.upload("rotated.jpg", read_image(ROTATED_JPEG)).await;
    setup.settle().await;

    let again = setup.publish_notifications_again().await;
    setup.settle().await;

    assert_eq!(again, 1);
    wait_for_count(&runner.stats().succeeded, 2).await;
    let annotations = setup.annotations().await;
    assert_eq!(annotations.len(), 1, "{annotations:?}");
    let json = setup.annotation_json(&annotations[0]).await;
    assert_eq!(json["image"]["width"], 1800);
    assert_eq!(json["image"]["height"], 1200);
    assert_eq!(json["exif"]["orientation"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_image_is_dead_lettered_and_others_skipped() {
    let setup = Setup::new().await;
    let (runner, _stop) = setup.start();
    let marked = BTreeMap::from([
        ("sourceBucket".to_owned(), "elsewhere".to_owned()),
        ("sourceObject".to_owned(), "x.jpg".to_owned()),
        ("sourceGeneration".to_owned(), "1".to_owned()),
    ]);

    setup
        .upload("broken.jpg", read_image("invalid/corrupted.jpg"))
        .await;
    setup.upload("notes.txt", b"not an image".to_vec()).await;
    setup
        .upload_with_metadata("thumbnail.jpg", read_image(CANON_JPEG), marked)
        .await;
    setup.settle().await;

    assert!(setup.annotations().await.is_empty());
    let dead_letters = setup.dead_letters().await;
    assert_eq!(dead_letters.len(), 1);
    let attributes = &dead_letters[0].message.message.attributes;
    assert_eq!(attributes["objectId"], "broken.jpg");
    let reason = &attributes[DEAD_LETTER_REASON_ATTRIBUTE];
    assert!(
        reason.starts_with("cannot annotate gs://photos/broken.jpg#"),
        "{reason}"
    );
    assert_eq!(attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "1");
    wait_for_count(&runner.stats().succeeded, 2).await;
    wait_for_count(&runner.stats().retried, 0).await;
}
