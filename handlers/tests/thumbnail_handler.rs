//! The thumbnail handler behind the runner, over real buckets whose notifications go through a
//! real broker: thumbnails and their metadata, redelivery, overwrites, a destination that is
//! the source bucket, dead letters, skips and deleted generations.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sluice_handlers::runner::{self, RunnerHandle, RunnerOptions};
use sluice_handlers::thumbnail::{render, ThumbnailConfig, ThumbnailHandler, ThumbnailOptions};
use sluice_router::buckets::{Buckets, NotificationConfig, ObjectResource, PayloadFormat};
use sluice_router::deliver::{Broker, Delivery};
use sluice_router::storage::Storage;
use sluice_router::store::{
    DeadLetterPolicy, NewMessage, SledStore, Store, SubscriptionSpec, TopicMessage,
};
use tokio::sync::oneshot;

const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/images");

/// Maximum wait for the runner to settle. It is far above what any test needs, so that only a
/// stuck handler fails a test.
const TIMEOUT: Duration = Duration::from_secs(120);

const TOPIC: &str = "uploads";
const SUBSCRIPTION: &str = "thumbnailer";
const DEAD_LETTER_TOPIC: &str = "thumbnailer-dead";
const DEAD_LETTER_SUBSCRIPTION: &str = "thumbnailer-dead-letters";
/// A second subscription on the notification topic that keeps every notification, so that a
/// test can publish one again.
const TAP_SUBSCRIPTION: &str = "tap";

/// 2048x1536 with orientation 1.
const CAMERA_JPEG: &str = "camera/Reconyx_HC500_Hyperfire.jpg";
/// 1800x1200 stored with EXIF orientation 6, so 1200x1800 upright.
const PORTRAIT_JPEG: &str = "orientation/Portrait_6.jpg";

fn read_image(relative_path: &str) -> Vec<u8> {
    let path = Path::new(IMAGES).join(relative_path);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The buckets, topics and subscriptions of one test.
struct Setup {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    storage: Storage,
    source_bucket: String,
    config: ThumbnailConfig,
}

/// The settings of a [`Setup`].
struct Layout<'a> {
    source_bucket: &'a str,
    destination_bucket: &'a str,
    name_prefix: &'a str,
    source_versioning: bool,
    destination_versioning: bool,
    payload_format: PayloadFormat,
}

impl Default for Layout<'_> {
    fn default() -> Self {
        Self {
            source_bucket: "photos",
            destination_bucket: "thumbs",
            name_prefix: "",
            source_versioning: false,
            destination_versioning: true,
            payload_format: PayloadFormat::JsonApiV1,
        }
    }
}

impl Setup {
    async fn new(layout: Layout<'_>) -> Self {
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
            .create_bucket(layout.source_bucket, layout.source_versioning)
            .expect("source bucket");
        if layout.destination_bucket != layout.source_bucket {
            buckets
                .create_bucket(layout.destination_bucket, layout.destination_versioning)
                .expect("destination bucket");
        }
        let notification = NotificationConfig {
            id: String::new(),
            topic: TOPIC.to_owned(),
            event_types: Vec::new(),
            object_name_prefix: None,
            payload_format: layout.payload_format,
            custom_attributes: BTreeMap::new(),
        };
        buckets
            .insert_notification_config(layout.source_bucket, notification)
            .expect("notification config");

        let config = ThumbnailConfig {
            name_prefix: layout.name_prefix.to_owned(),
            ..ThumbnailConfig::new(layout.destination_bucket)
        };
        Self {
            _dir: dir,
            storage: Storage::new(Arc::new(buckets), broker.clone()),
            broker,
            source_bucket: layout.source_bucket.to_owned(),
            config,
        }
    }

    /// Starts the thumbnail handler behind a runner. It stops when the test ends and the
    /// returned sender is dropped.
    fn start(&self) -> (RunnerHandle, oneshot::Sender<()>) {
        let handler = ThumbnailHandler::new(self.storage.clone(), self.config.clone());
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

    async fn upload(&self, name: &str, bytes: Vec<u8>, content_type: &str) -> ObjectResource {
        self.storage
            .put(
                &self.source_bucket,
                name,
                bytes,
                Some(content_type.to_owned()),
                BTreeMap::new(),
            )
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

    /// Returns every version in a bucket, noncurrent ones included.
    async fn versions(&self, bucket: &str) -> Vec<ObjectResource> {
        self.storage
            .list(bucket, "", None, true)
            .await
            .expect("list")
            .objects
    }

    async fn dead_letters(&self) -> Vec<Delivery> {
        self.broker
            .pull(DEAD_LETTER_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull dead letters")
    }

    /// Returns the finalize notification of one generation, as the tap subscription kept it.
    async fn finalize_notification(&self, generation: i64) -> NewMessage {
        let generation = generation.to_string();
        self.broker
            .pull(TAP_SUBSCRIPTION, 100, Duration::ZERO)
            .await
            .expect("pull tap")
            .into_iter()
            .map(|delivery| delivery.message.message)
            .find(|message| {
                message.attributes["eventType"] == "OBJECT_FINALIZE"
                    && message.attributes["objectGeneration"] == generation
            })
            .expect("finalize notification of the generation")
    }

    async fn publish_again(&self, message: NewMessage) {
        let message = TopicMessage {
            topic: TOPIC.to_owned(),
            message,
        };
        self.broker.publish(vec![message]).await.expect("publish");
    }
}

/// Decodes a stored thumbnail and returns its size.
async fn thumbnail_size(setup: &Setup, thumbnail: &ObjectResource) -> (u32, u32) {
    let (_, bytes) = setup
        .storage
        .read(
            &thumbnail.bucket,
            &thumbnail.name,
            Some(thumbnail.generation),
        )
        .await
        .expect("read thumbnail");
    let image = image::load_from_memory(&bytes).expect("thumbnail decodes");
    (image.width(), image.height())
}

/// Returns the size of the thumbnail that the renderer makes of a fixture.
fn rendered_size(relative_path: &str) -> (u32, u32) {
    let thumbnail =
        render(&read_image(relative_path), &ThumbnailOptions::default()).expect("renders");
    (thumbnail.width, thumbnail.height)
}

fn live(versions: &[ObjectResource]) -> Vec<&ObjectResource> {
    versions
        .iter()
        .filter(|version| version.is_live())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_jpeg_gets_one_thumbnail() {
    let setup = Setup::new(Layout::default()).await;
    let (runner, _stop) = setup.start();

    let source = setup
        .upload("trail/camera.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    let thumbnails = setup.versions("thumbs").await;
    assert_eq!(thumbnails.len(), 1);
    let thumbnail = &thumbnails[0];
    assert_eq!(thumbnail.name, "trail/camera.jpg");
    assert_eq!(thumbnail.content_type, "image/jpeg");
    assert_eq!(thumbnail.metadata["sourceBucket"], "photos");
    assert_eq!(thumbnail.metadata["sourceObject"], "trail/camera.jpg");
    assert_eq!(
        thumbnail.metadata["sourceGeneration"],
        source.generation.to_string()
    );
    assert_eq!(thumbnail_size(&setup, thumbnail).await, (256, 192));
    wait_for_count(&runner.stats().succeeded, 1).await;
    assert!(setup.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_without_payload_gets_thumbnail() {
    let layout = Layout {
        payload_format: PayloadFormat::None,
        ..Layout::default()
    };
    let setup = Setup::new(layout).await;
    let (_runner, _stop) = setup.start();

    let source = setup
        .upload("portrait.jpg", read_image(PORTRAIT_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    let thumbnails = setup.versions("thumbs").await;
    assert_eq!(thumbnails.len(), 1);
    assert_eq!(
        thumbnails[0].metadata["sourceGeneration"],
        source.generation.to_string()
    );
    assert_eq!(
        thumbnail_size(&setup, &thumbnails[0]).await,
        rendered_size(PORTRAIT_JPEG)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_finalize_writes_nothing() {
    let setup = Setup::new(Layout::default()).await;
    let (runner, _stop) = setup.start();
    let source = setup
        .upload("camera.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;
    let before = setup.versions("thumbs").await;
    assert_eq!(before.len(), 1);

    let notification = setup.finalize_notification(source.generation).await;
    setup.publish_again(notification).await;
    setup.settle().await;

    let after = setup.versions("thumbs").await;
    assert_eq!(after, before, "no new thumbnail generation");
    wait_for_count(&runner.stats().succeeded, 2).await;
    assert!(setup.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_makes_one_new_thumbnail() {
    let setup = Setup::new(Layout::default()).await;
    let (runner, _stop) = setup.start();
    setup
        .upload("photo.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    // The overwrite publishes a DELETE of the old generation and a FINALIZE of the new one.
    let second = setup
        .upload("photo.jpg", read_image(PORTRAIT_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    let versions = setup.versions("thumbs").await;
    assert_eq!(versions.len(), 2, "one thumbnail per source generation");
    let live = live(&versions);
    assert_eq!(live.len(), 1, "the DELETE event removed nothing");
    assert_eq!(
        live[0].metadata["sourceGeneration"],
        second.generation.to_string()
    );
    assert_eq!(
        thumbnail_size(&setup, live[0]).await,
        rendered_size(PORTRAIT_JPEG)
    );
    wait_for_count(&runner.stats().succeeded, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_finalize_writes_nothing() {
    let layout = Layout {
        source_versioning: true,
        ..Layout::default()
    };
    let setup = Setup::new(layout).await;
    let (_runner, _stop) = setup.start();
    let first = setup
        .upload("photo.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    let second = setup
        .upload("photo.jpg", read_image(PORTRAIT_JPEG), "image/jpeg")
        .await;
    setup.settle().await;
    let before = setup.versions("thumbs").await;

    // The first generation is still readable in the versioned source bucket, but the
    // destination already has the thumbnail of a later generation.
    let notification = setup.finalize_notification(first.generation).await;
    setup.publish_again(notification).await;
    setup.settle().await;

    let after = setup.versions("thumbs").await;
    assert_eq!(after, before, "no new thumbnail generation");
    let live = live(&after);
    assert_eq!(live.len(), 1);
    assert_eq!(
        live[0].metadata["sourceGeneration"],
        second.generation.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bucket_with_prefix_settles() {
    let layout = Layout {
        source_bucket: "album",
        destination_bucket: "album",
        name_prefix: "thumbs/",
        ..Layout::default()
    };
    let setup = Setup::new(layout).await;
    let (runner, _stop) = setup.start();

    setup
        .upload("photo.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    let objects = setup.versions("album").await;
    let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["photo.jpg", "thumbs/photo.jpg"]);
    // The upload's event wrote the thumbnail, and the thumbnail's own event wrote nothing.
    wait_for_count(&runner.stats().succeeded, 2).await;
    assert!(setup.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_bucket_without_prefix_is_rejected() {
    let layout = Layout {
        source_bucket: "album",
        destination_bucket: "album",
        ..Layout::default()
    };
    let setup = Setup::new(layout).await;
    let (_runner, _stop) = setup.start();

    setup
        .upload("photo.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    assert_eq!(setup.versions("album").await.len(), 1, "no thumbnail");
    let dead = setup.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].message.message.attributes["sluiceDeadLetterReason"];
    assert!(reason.contains("overwrite its own source"), "{reason}");
    assert!(reason.contains("name_prefix"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_jpeg_is_dead_lettered() {
    let setup = Setup::new(Layout::default()).await;
    let (runner, _stop) = setup.start();

    setup
        .upload(
            "corrupted.jpg",
            read_image("invalid/corrupted.jpg"),
            "image/jpeg",
        )
        .await;
    setup.settle().await;

    assert!(setup.versions("thumbs").await.is_empty());
    let dead = setup.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let attributes = &dead[0].message.message.attributes;
    assert_eq!(attributes["objectId"], "corrupted.jpg");
    let reason = &attributes["sluiceDeadLetterReason"];
    assert!(reason.contains("gs://photos/corrupted.jpg#"), "{reason}");
    assert!(reason.contains("could not be decoded"), "{reason}");
    wait_for_count(&runner.stats().rejected, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_file_is_skipped() {
    let setup = Setup::new(Layout::default()).await;
    let (runner, _stop) = setup.start();

    setup
        .upload("notes.txt", b"not an image\n".to_vec(), "text/plain")
        .await;
    setup.settle().await;

    assert!(setup.versions("thumbs").await.is_empty());
    assert!(setup.dead_letters().await.is_empty());
    wait_for_count(&runner.stats().succeeded, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_generation_is_skipped() {
    let setup = Setup::new(Layout::default()).await;
    setup
        .upload("gone.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup
        .storage
        .delete("photos", "gone.jpg", None)
        .await
        .expect("delete");

    // The runner starts after the delete, so the FINALIZE names a generation that is gone.
    let (runner, _stop) = setup.start();
    setup.settle().await;

    assert!(setup.versions("thumbs").await.is_empty());
    assert!(setup.dead_letters().await.is_empty());
    wait_for_count(&runner.stats().succeeded, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_destination_is_dead_lettered() {
    let setup = Setup::new(Layout::default()).await;
    let config = ThumbnailConfig::new("no-such-bucket");
    let handler = ThumbnailHandler::new(setup.storage.clone(), config);
    let (_stop, stopped) = oneshot::channel::<()>();
    let _runner = runner::spawn(
        setup.broker.clone(),
        SUBSCRIPTION.to_owned(),
        Arc::new(handler),
        RunnerOptions::default(),
        stopped,
    );

    setup
        .upload("photo.jpg", read_image(CAMERA_JPEG), "image/jpeg")
        .await;
    setup.settle().await;

    let dead = setup.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].message.message.attributes["sluiceDeadLetterReason"];
    assert!(reason.contains("\"no-such-bucket\" not found"), "{reason}");
}

/// Waits until a runner counter reaches `expected`, and fails if it does not in time. The
/// runner counts an event after the broker call that ends it, so the counter can trail the
/// backlog that `settle` watches.
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
