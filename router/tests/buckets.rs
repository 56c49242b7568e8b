//! The bucket store: Cloud Storage semantics, notifications in Google's format, names that
//! try to escape the root folder, and persistence.

#[path = "nats/mod.rs"]
mod nats;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;
use sluice_router::buckets::{
    notification_message, notification_messages, BucketError, BucketNameRule, Buckets, EventType,
    NotificationConfig, ObjectEvent, ObjectNameRule, PayloadFormat,
};
use sluice_router::deliver::Broker;
use sluice_router::store::{SledStore, Store, SubscriptionSpec, TopicMessage};
use tempfile::TempDir;

/// The backends of the bucket store. The tests of semantics run against each, through
/// [`both_backends!`].
#[derive(Debug, Clone, Copy)]
enum Backend {
    Folder,
    JetStream,
    /// JetStream for the indexes, with the object bytes in a folder.
    JetStreamBytesInFolder,
}

/// A bucket store for one test, with what it needs.
struct OpenStore {
    buckets: Arc<Buckets>,
    dir: TempDir,
    /// The nats-server and the runtime of the JetStream backend. The runtime outlives the
    /// stores, whose requests run on it.
    jetstream: Option<(nats::NatsServer, tokio::runtime::Runtime)>,
    /// The folder of the object bytes, when JetStream keeps only the indexes.
    objects_folder: Option<PathBuf>,
}

impl Backend {
    fn open(self) -> OpenStore {
        let dir = tempfile::tempdir().expect("temp dir");
        match self {
            Backend::Folder => {
                let buckets = Buckets::open(dir.path().join("buckets")).expect("store opens");
                OpenStore {
                    buckets: Arc::new(buckets),
                    dir,
                    jetstream: None,
                    objects_folder: None,
                }
            }
            Backend::JetStream | Backend::JetStreamBytesInFolder => {
                let objects_folder = matches!(self, Backend::JetStreamBytesInFolder)
                    .then(|| dir.path().join("objects"));
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                let server = runtime.block_on(nats::NatsServer::start());
                let buckets = runtime.block_on(open_jetstream(
                    &server.url(),
                    dir.path(),
                    objects_folder.clone(),
                ));
                OpenStore {
                    buckets: Arc::new(buckets),
                    dir,
                    jetstream: Some((server, runtime)),
                    objects_folder,
                }
            }
        }
    }
}

async fn open_jetstream(url: &str, dir: &Path, objects_folder: Option<PathBuf>) -> Buckets {
    let client = async_nats::connect(url)
        .await
        .expect("connects to nats-server");
    let context = async_nats::jetstream::new(client);
    Buckets::open_jetstream(dir.join("buckets"), &context, 1, objects_folder)
        .await
        .expect("buckets open on JetStream")
}

impl OpenStore {
    /// Returns the root folder of the folder backend, `None` for JetStream.
    fn root(&self) -> Option<PathBuf> {
        (!self.buckets.is_shared()).then(|| self.dir.path().join("buckets"))
    }

    /// Returns a store that another node would use: the same one for the folder backend,
    /// and a store on a connection of its own for JetStream.
    fn another_node(&self) -> Arc<Buckets> {
        match &self.jetstream {
            None => Arc::clone(&self.buckets),
            Some((server, runtime)) => Arc::new(runtime.block_on(open_jetstream(
                &server.url(),
                self.dir.path(),
                self.objects_folder.clone(),
            ))),
        }
    }
}

impl Drop for OpenStore {
    fn drop(&mut self) {
        // The stores hold handles to the runtime; stop it without waiting for idle tasks.
        if let Some((_, runtime)) = self.jetstream.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs each named test function, which takes a [`Backend`], once per backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn folder() {
                    super::$name(super::Backend::Folder);
                }

                #[test]
                fn jetstream() {
                    super::$name(super::Backend::JetStream);
                }

                #[test]
                fn jetstream_bytes_in_folder() {
                    super::$name(super::Backend::JetStreamBytesInFolder);
                }
            }
        )*
    };
}

both_backends!(
    generations_and_metagenerations_increase,
    generation_is_a_microsecond_timestamp,
    checksums_of_known_bytes,
    object_resource_fields,
    overwrite_deletes_old_generation,
    versioned_overwrite_archives_old_generation,
    delete_by_generation_removes_live_version,
    delete_on_unversioned_bucket,
    patch_emits_metadata_update,
    notification_attributes_on_overwrite,
    notification_filters_by_prefix_and_event_type,
    notification_payload_none_and_custom_attributes,
    notifications_match_fixture_messages,
    bucket_names_follow_rules,
    list_with_prefix_and_delimiter,
    list_versions_includes_noncurrent,
    delete_bucket_requires_empty,
    notification_configs_are_validated,
    concurrent_writes_keep_generations_unique,
    config_if_new_is_added_once,
);

/// Opens a store in a fresh temporary folder, with its root at `<temp>/buckets`.
fn open_store() -> (TempDir, Buckets) {
    let dir = tempfile::tempdir().expect("temp dir");
    let buckets = Buckets::open(dir.path().join("buckets")).expect("store opens");
    (dir, buckets)
}

fn no_metadata() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn put(
    buckets: &Buckets,
    bucket: &str,
    name: &str,
    bytes: &[u8],
) -> sluice_router::buckets::ObjectChange {
    buckets
        .put(bucket, name, bytes, Some("text/plain"), no_metadata())
        .expect("put succeeds")
}

fn config(id: &str) -> NotificationConfig {
    NotificationConfig {
        id: id.to_owned(),
        topic: "uploads".to_owned(),
        event_types: Vec::new(),
        object_name_prefix: None,
        payload_format: PayloadFormat::JsonApiV1,
        custom_attributes: BTreeMap::new(),
    }
}

fn event_types(events: &[ObjectEvent]) -> Vec<EventType> {
    events.iter().map(|e| e.event_type).collect()
}

fn names(objects: &[sluice_router::buckets::ObjectResource]) -> Vec<(&str, i64)> {
    objects
        .iter()
        .map(|o| (o.name.as_str(), o.generation))
        .collect()
}

/// Lists every file and folder under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).expect("folder lists") {
            let path = entry.expect("entry reads").path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths
}

/// Asserts that every path under `temp` is the store's root or inside it, and that every file
/// in the root follows the documented layout: `<bucket>/index.json` or
/// `<bucket>/blobs/<generation>`.
fn assert_only_layout_files(temp: &Path, root: &Path) {
    for path in walk(temp) {
        assert!(
            path.starts_with(root),
            "{} is outside the store's root {}",
            path.display(),
            root.display()
        );
        if path.is_dir() {
            continue;
        }
        let relative: Vec<String> = path
            .strip_prefix(root)
            .expect("under the root")
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        let known = match relative.as_slice() {
            [_, index] => index == "index.json",
            [_, blobs, generation] => {
                blobs == "blobs" && generation.bytes().all(|b| b.is_ascii_digit())
            }
            _ => false,
        };
        assert!(known, "{} is not part of the layout", path.display());
    }
}

#[test]
fn buckets_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Buckets>();
}

fn generations_and_metagenerations_increase(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let mut previous = 0;
    for round in 0..5 {
        let change = put(&buckets, "bkt", "same", format!("v{round}").as_bytes());
        assert!(change.object.generation > previous, "generation increases");
        assert_eq!(change.object.metageneration, 1);
        previous = change.object.generation;
    }
    let other = put(&buckets, "bkt", "other", b"x");
    assert!(
        other.object.generation > previous,
        "generations increase across names"
    );

    let changes = BTreeMap::from([("k".to_owned(), Some("v".to_owned()))]);
    for expected in 2..5 {
        let patched = buckets
            .patch_metadata("bkt", "same", &changes, None)
            .expect("patch");
        assert_eq!(patched.object.metageneration, expected);
        assert_eq!(
            patched.object.generation, previous,
            "a patch keeps the generation"
        );
    }
}

fn generation_is_a_microsecond_timestamp(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros() as i64;
    let object = put(&buckets, "bkt", "a", b"x").object;
    assert!(object.generation >= before);
    assert!(
        object.generation < before + 60_000_000,
        "within a minute of now"
    );
}

fn checksums_of_known_bytes(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let hello = put(&buckets, "bkt", "hello.txt", b"hello").object;
    assert_eq!(hello.size, 5);
    assert_eq!(hello.md5_hash, "XUFAKrxLKna5cZ2REBfFkg==");
    assert_eq!(hello.crc32c, BASE64.encode(0x9a71_bb4c_u32.to_be_bytes()));
    assert_eq!(hello.crc32c, "mnG7TA==");

    let empty = put(&buckets, "bkt", "empty", b"").object;
    assert_eq!(empty.size, 0);
    assert_eq!(
        empty.md5_hash, "1B2M2Y8AsgTpgAmY7PhCfg==",
        "MD5 of no bytes"
    );
    assert_eq!(empty.crc32c, "AAAAAA==", "CRC32C of no bytes is 0");
    assert_eq!(buckets.read("bkt", "empty", None).expect("read"), b"");
}

fn object_resource_fields(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let metadata = BTreeMap::from([("owner".to_owned(), "ops".to_owned())]);
    let object = buckets
        .put("bkt", "dir/a b.txt", b"hello", None, metadata.clone())
        .expect("put")
        .object;
    assert_eq!(object.content_type, "application/octet-stream");
    assert_eq!(object.storage_class, "STANDARD");
    assert_eq!(object.metadata, metadata);
    assert_eq!(object.time_created, object.updated);
    assert_eq!(object.time_created, object.time_storage_class_updated);
    assert!(object.time_deleted.is_none());

    let json = object.to_json();
    assert_eq!(json["kind"], "storage#object");
    assert_eq!(json["id"], format!("bkt/dir/a b.txt/{}", object.generation));
    assert_eq!(
        json["selfLink"],
        "https://www.googleapis.com/storage/v1/b/bkt/o/dir%2Fa%20b.txt"
    );
    assert_eq!(
        json["mediaLink"],
        format!(
            "https://www.googleapis.com/download/storage/v1/b/bkt/o/dir%2Fa%20b.txt\
             ?generation={}&alt=media",
            object.generation
        )
    );
    assert_eq!(json["generation"], object.generation.to_string());
    assert_eq!(json["metageneration"], "1");
    assert_eq!(json["size"], "5");
    assert_eq!(json["metadata"]["owner"], "ops");
    let created = json["timeCreated"].as_str().expect("a string");
    assert_eq!(
        created.len(),
        "2020-04-23T07:38:57.230Z".len(),
        "milliseconds: {created}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok());
}

fn overwrite_deletes_old_generation(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let first = put(&buckets, "bkt", "obj", b"one").object;
    let second = put(&buckets, "bkt", "obj", b"two");

    assert_eq!(
        event_types(&second.events),
        [EventType::ObjectDelete, EventType::ObjectFinalize]
    );
    let delete = &second.events[0];
    assert_eq!(delete.object.generation, first.generation);
    assert_eq!(
        delete.overwritten_by_generation,
        Some(second.object.generation)
    );
    assert_eq!(delete.overwrote_generation, None);
    let finalize = &second.events[1];
    assert_eq!(finalize.object, second.object);
    assert_eq!(finalize.overwrote_generation, Some(first.generation));
    assert_eq!(finalize.overwritten_by_generation, None);

    let old = buckets.get("bkt", "obj", Some(first.generation));
    assert!(matches!(old, Err(BucketError::NotFound { .. })), "{old:?}");
    assert_eq!(buckets.read("bkt", "obj", None).expect("read"), b"two");
    let listing = buckets.list("bkt", "", None, true).expect("list");
    assert_eq!(names(&listing.objects), [("obj", second.object.generation)]);
}

fn versioned_overwrite_archives_old_generation(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", true).expect("bucket");
    let first = put(&buckets, "bkt", "obj", b"one").object;
    let second = put(&buckets, "bkt", "obj", b"two");

    assert_eq!(
        event_types(&second.events),
        [EventType::ObjectArchive, EventType::ObjectFinalize]
    );
    let archive = &second.events[0];
    assert_eq!(archive.object.generation, first.generation);
    assert_eq!(
        archive.overwritten_by_generation,
        Some(second.object.generation)
    );
    assert!(
        archive.object.time_deleted.is_some(),
        "the archived version is noncurrent"
    );
    assert_eq!(
        second.events[1].overwrote_generation,
        Some(first.generation)
    );

    let old = buckets
        .get("bkt", "obj", Some(first.generation))
        .expect("old generation kept");
    assert!(!old.is_live());
    assert!(old.to_json().get("timeDeleted").is_some());
    let old_bytes = buckets
        .read("bkt", "obj", Some(first.generation))
        .expect("old bytes");
    assert_eq!(old_bytes, b"one");
    assert_eq!(
        buckets.read("bkt", "obj", None).expect("live bytes"),
        b"two"
    );

    let live_only = buckets.list("bkt", "", None, false).expect("list");
    assert_eq!(
        names(&live_only.objects),
        [("obj", second.object.generation)]
    );
    let all = buckets.list("bkt", "", None, true).expect("list versions");
    assert_eq!(
        names(&all.objects),
        [("obj", first.generation), ("obj", second.object.generation)]
    );

    // Deleting the live version archives it, and deleting a noncurrent one removes it.
    let archived = buckets.delete("bkt", "obj", None).expect("delete live");
    assert_eq!(event_types(&archived.events), [EventType::ObjectArchive]);
    assert_eq!(archived.events[0].overwritten_by_generation, None);
    let live = buckets.get("bkt", "obj", None);
    assert!(matches!(
        live,
        Err(BucketError::NotFound {
            generation: None,
            ..
        })
    ));
    let deleted = buckets
        .delete("bkt", "obj", Some(first.generation))
        .expect("delete noncurrent");
    assert_eq!(event_types(&deleted.events), [EventType::ObjectDelete]);
    assert_eq!(deleted.object.generation, first.generation);
    let all = buckets.list("bkt", "", None, true).expect("list versions");
    assert_eq!(names(&all.objects), [("obj", second.object.generation)]);

    if let Some(folder) = &store.objects_folder {
        let files: Vec<String> = walk(folder)
            .into_iter()
            .filter(|path| path.is_file())
            .filter_map(|path| Some(path.file_name()?.to_str()?.to_owned()))
            .collect();
        assert_eq!(
            files,
            [second.object.generation.to_string()],
            "only the live version's bytes stay"
        );
    }
    if let Some(root) = store.root() {
        assert!(!root
            .join("bkt/blobs")
            .join(first.generation.to_string())
            .exists());
        assert!(root
            .join("bkt/blobs")
            .join(second.object.generation.to_string())
            .exists());
    }
}

fn delete_by_generation_removes_live_version(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", true).expect("bucket");
    let object = put(&buckets, "bkt", "obj", b"one").object;
    let change = buckets
        .delete("bkt", "obj", Some(object.generation))
        .expect("delete");
    assert_eq!(event_types(&change.events), [EventType::ObjectDelete]);
    let all = buckets.list("bkt", "", None, true).expect("list");
    assert!(all.objects.is_empty(), "nothing is kept: {all:?}");
}

fn delete_on_unversioned_bucket(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let object = put(&buckets, "bkt", "obj", b"one").object;
    let change = buckets.delete("bkt", "obj", None).expect("delete");
    assert_eq!(event_types(&change.events), [EventType::ObjectDelete]);
    assert_eq!(change.object.generation, object.generation);
    assert!(
        change.object.time_deleted.is_none(),
        "a deleted version is not archived"
    );
    let again = buckets.delete("bkt", "obj", None);
    assert!(
        matches!(again, Err(BucketError::NotFound { .. })),
        "{again:?}"
    );
    let read = buckets.read("bkt", "obj", Some(object.generation));
    assert!(
        matches!(read, Err(BucketError::NotFound { .. })),
        "{read:?}"
    );
}

fn patch_emits_metadata_update(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let metadata = BTreeMap::from([
        ("keep".to_owned(), "1".to_owned()),
        ("drop".to_owned(), "2".to_owned()),
    ]);
    let object = buckets
        .put("bkt", "obj", b"x", Some("text/plain"), metadata)
        .expect("put")
        .object;
    let changes = BTreeMap::from([
        ("drop".to_owned(), None),
        ("add".to_owned(), Some("3".to_owned())),
    ]);
    let change = buckets
        .patch_metadata("bkt", "obj", &changes, Some("application/json"))
        .expect("patch");

    assert_eq!(
        event_types(&change.events),
        [EventType::ObjectMetadataUpdate]
    );
    let patched = &change.events[0].object;
    assert_eq!(patched.metageneration, 2);
    assert_eq!(patched.generation, object.generation);
    assert_eq!(patched.content_type, "application/json");
    let expected = BTreeMap::from([
        ("add".to_owned(), "3".to_owned()),
        ("keep".to_owned(), "1".to_owned()),
    ]);
    assert_eq!(patched.metadata, expected);
    assert!(patched.updated >= object.updated);
    assert_eq!(patched.time_created, object.time_created);
    assert_eq!(&buckets.get("bkt", "obj", None).expect("get"), patched);
    assert_eq!(buckets.read("bkt", "obj", None).expect("read"), b"x");

    let message = notification_message(&config("1"), &change.events[0]).expect("a message");
    let data: Value = serde_json::from_slice(&message.message.data).expect("JSON data");
    assert_eq!(data["metageneration"], "2");
    assert_eq!(
        message.message.attributes["eventType"],
        "OBJECT_METADATA_UPDATE"
    );

    let missing = buckets.patch_metadata("bkt", "nope", &changes, None);
    assert!(
        matches!(missing, Err(BucketError::NotFound { .. })),
        "{missing:?}"
    );
}

fn notification_attributes_on_overwrite(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let first = put(&buckets, "bkt", "dir/obj", b"one").object;
    let second = put(&buckets, "bkt", "dir/obj", b"two");
    let messages = notification_messages(&[config("7")], &second.events);
    assert_eq!(messages.len(), 2);

    let delete = &messages[0].message.attributes;
    assert_eq!(delete["eventType"], "OBJECT_DELETE");
    assert_eq!(delete["objectGeneration"], first.generation.to_string());
    assert_eq!(
        delete["overwrittenByGeneration"],
        second.object.generation.to_string()
    );
    assert!(!delete.contains_key("overwroteGeneration"));

    let finalize = &messages[1].message.attributes;
    assert_eq!(finalize["eventType"], "OBJECT_FINALIZE");
    assert_eq!(
        finalize["notificationConfig"],
        "projects/_/buckets/bkt/notificationConfigs/7"
    );
    assert_eq!(finalize["payloadFormat"], "JSON_API_V1");
    assert_eq!(finalize["bucketId"], "bkt");
    assert_eq!(finalize["objectId"], "dir/obj");
    assert_eq!(
        finalize["objectGeneration"],
        second.object.generation.to_string()
    );
    assert_eq!(
        finalize["overwroteGeneration"],
        first.generation.to_string()
    );
    assert!(!finalize.contains_key("overwrittenByGeneration"));
    let event_time = &finalize["eventTime"];
    assert_eq!(
        event_time.len(),
        "2021-12-21T17:30:59.761138Z".len(),
        "{event_time}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(event_time).is_ok());
    assert_eq!(messages[1].topic, "uploads");
    assert_eq!(messages[1].message.ordering_key, "");

    let data: Value = serde_json::from_slice(&messages[1].message.data).expect("JSON data");
    assert_eq!(data, second.object.to_json());
}

fn notification_filters_by_prefix_and_event_type(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let mut events = put(&buckets, "bkt", "images/a.png", b"1").events;
    events.extend(put(&buckets, "bkt", "images/a.png", b"2").events);
    events.extend(put(&buckets, "bkt", "docs/b.txt", b"3").events);
    events.extend(
        buckets
            .delete("bkt", "docs/b.txt", None)
            .expect("delete")
            .events,
    );

    let mut images = config("1");
    images.object_name_prefix = Some("images/".to_owned());
    let selected: Vec<(String, String)> = notification_messages(&[images], &events)
        .iter()
        .map(|m| {
            let attributes = &m.message.attributes;
            (
                attributes["eventType"].clone(),
                attributes["objectId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        selected,
        [
            ("OBJECT_FINALIZE".to_owned(), "images/a.png".to_owned()),
            ("OBJECT_DELETE".to_owned(), "images/a.png".to_owned()),
            ("OBJECT_FINALIZE".to_owned(), "images/a.png".to_owned()),
        ]
    );

    let mut deletes = config("2");
    deletes.event_types = vec![EventType::ObjectDelete];
    let selected = notification_messages(&[deletes], &events);
    assert_eq!(selected.len(), 2);
    assert!(selected
        .iter()
        .all(|m| m.message.attributes["eventType"] == "OBJECT_DELETE"));

    let mut both = config("3");
    both.event_types = vec![EventType::ObjectFinalize];
    both.object_name_prefix = Some("docs/".to_owned());
    let selected = notification_messages(&[both], &events);
    assert_eq!(selected.len(), 1);
    assert_eq!(selected[0].message.attributes["objectId"], "docs/b.txt");

    let mut nothing = config("4");
    nothing.event_types = vec![EventType::ObjectArchive];
    assert!(notification_messages(&[nothing], &events).is_empty());
}

fn notification_payload_none_and_custom_attributes(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let change = put(&buckets, "bkt", "obj", b"x");
    let mut quiet = config("5");
    quiet.payload_format = PayloadFormat::None;
    quiet.custom_attributes = BTreeMap::from([
        ("team".to_owned(), "media".to_owned()),
        ("eventType".to_owned(), "spoofed".to_owned()),
    ]);
    let message = notification_message(&quiet, &change.events[0]).expect("a message");
    assert!(message.message.data.is_empty(), "NONE carries no data");
    let attributes = &message.message.attributes;
    assert_eq!(attributes["payloadFormat"], "NONE");
    assert_eq!(attributes["team"], "media");
    assert_eq!(
        attributes["eventType"], "OBJECT_FINALIZE",
        "a custom attribute does not replace a standard one"
    );
}

/// Decodes the fixture message's data, or returns `None` when the message has none.
fn fixture_data(message: &Value) -> Option<Value> {
    let encoded = message.get("data")?.as_str().expect("data is base64 text");
    let bytes = BASE64.decode(encoded).expect("data decodes");
    Some(serde_json::from_slice(&bytes).expect("data is JSON"))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn assert_same_shape(context: &str, expected: &Value, actual: &Value) {
    let expected = expected.as_object().expect("fixture data is an object");
    let actual = actual.as_object().expect("our data is an object");
    let expected_keys: BTreeSet<&String> = expected.keys().collect();
    let actual_keys: BTreeSet<&String> = actual.keys().collect();
    assert_eq!(actual_keys, expected_keys, "{context}: payload keys");
    for (key, value) in expected {
        assert_eq!(
            json_type(&actual[key]),
            json_type(value),
            "{context}: type of {key}"
        );
    }
    for key in ["generation", "metageneration", "size"] {
        let text = actual[key].as_str().expect("int64 as a string");
        assert!(text.parse::<i64>().is_ok(), "{context}: {key} is {text:?}");
    }
}

/// Publishes events for the fixture's object (`some-bucket`, `folder/Test.cs`, and
/// `other/readme.txt` without payload) and returns every message they make.
fn messages_for_fixture_scenario(buckets: &Buckets) -> Vec<TopicMessage> {
    buckets.create_bucket("some-bucket", false).expect("bucket");
    let configs = [config("1")];
    let mut none = config("1");
    none.payload_format = PayloadFormat::None;
    let bytes = vec![b'x'; 352];
    let mut events = put(buckets, "some-bucket", "folder/Test.cs", &bytes).events;
    events.extend(put(buckets, "some-bucket", "folder/Test.cs", &bytes).events);
    let changes = BTreeMap::new();
    let patch = buckets
        .patch_metadata("some-bucket", "folder/Test.cs", &changes, None)
        .expect("patch");
    events.extend(patch.events);
    let mut messages = notification_messages(&configs, &events);
    let other = put(buckets, "some-bucket", "other/readme.txt", b"readme").events;
    messages.extend(notification_messages(&[none], &other));
    messages
}

fn notifications_match_fixture_messages(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    let ours = messages_for_fixture_scenario(&buckets);
    let fixtures = support::read_jsonl("audit-logs/gcs-notifications/messages.jsonl");
    assert_eq!(fixtures.len(), 5, "the fixture's message count");
    let payload_path = support::fixtures().join("audit-logs/gcs-notifications/object-payload.json");
    let payload_text = std::fs::read_to_string(&payload_path).expect("object payload fixture");
    let object_payload: Value = serde_json::from_str(&payload_text).expect("payload is JSON");

    for fixture in &fixtures {
        let id = fixture["id"].as_str().expect("fixture id");
        let message = &fixture["message"];
        let attributes = message["attributes"].as_object().expect("attributes");
        let wanted = |key: &str| attributes.get(key).and_then(Value::as_str);
        // Our message of the same kind: event type, payload format, and which of the
        // overwrite attributes it carries.
        let twin = ours
            .iter()
            .find(|m| {
                let ours = &m.message.attributes;
                ours.get("eventType").map(String::as_str) == wanted("eventType")
                    && ours.get("payloadFormat").map(String::as_str) == wanted("payloadFormat")
                    && ours.contains_key("overwroteGeneration")
                        == attributes.contains_key("overwroteGeneration")
                    && ours.contains_key("overwrittenByGeneration")
                        == attributes.contains_key("overwrittenByGeneration")
            })
            .unwrap_or_else(|| panic!("{id}: no message of the same kind"));
        let ours = &twin.message.attributes;

        let expected_keys: BTreeSet<&str> = attributes.keys().map(String::as_str).collect();
        let actual_keys: BTreeSet<&str> = ours.keys().map(String::as_str).collect();
        assert_eq!(actual_keys, expected_keys, "{id}: attribute keys");
        for key in [
            "notificationConfig",
            "bucketId",
            "objectId",
            "eventType",
            "payloadFormat",
        ] {
            assert_eq!(Some(ours[key].as_str()), wanted(key), "{id}: {key}");
        }
        for key in [
            "objectGeneration",
            "overwroteGeneration",
            "overwrittenByGeneration",
        ] {
            if let Some(value) = ours.get(key) {
                assert!(value.parse::<i64>().is_ok(), "{id}: {key} is {value:?}");
            }
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(&ours["eventTime"]).is_ok(),
            "{id}: eventTime"
        );

        match fixture_data(message) {
            None => assert!(twin.message.data.is_empty(), "{id}: no data"),
            Some(expected) => {
                let actual: Value =
                    serde_json::from_slice(&twin.message.data).expect("our data is JSON");
                assert_same_shape(id, &expected, &actual);
                assert_same_shape("object-payload.json", &object_payload, &actual);
                assert_eq!(actual["kind"], "storage#object", "{id}");
                assert_eq!(actual["bucket"], expected["bucket"], "{id}");
                assert_eq!(actual["name"], expected["name"], "{id}");
                assert_eq!(actual["size"], expected["size"], "{id}");
                assert_eq!(actual["contentType"], expected["contentType"], "{id}");
                assert_eq!(
                    actual["generation"].as_str(),
                    Some(ours["objectGeneration"].as_str())
                );
                let expected_id = format!(
                    "some-bucket/folder/Test.cs/{}",
                    actual["generation"].as_str().expect("generation")
                );
                assert_eq!(actual["id"], expected_id.as_str(), "{id}");
            }
        }
    }
}

#[test]
fn escape_attempts_stay_inside_root() {
    let (dir, buckets) = open_store();
    let root = dir.path().join("buckets");
    buckets.create_bucket("bkt", false).expect("bucket");
    let long_accepted = "x".repeat(1024);
    let climbing = "../".repeat(341) + "x";
    let accepted = [
        "../../x",
        "/etc/passwd",
        "a/../../b",
        "..\\..\\x",
        "C:\\Windows\\x",
        "~/x",
        "../",
        "...",
        "a\0b",
        "\0",
        long_accepted.as_str(),
        climbing.as_str(),
        ".well-known/acme-challenge",
    ];
    for name in accepted {
        let bytes = format!("bytes of {name:?}").into_bytes();
        buckets
            .put("bkt", name, &bytes, None, no_metadata())
            .unwrap_or_else(|err| panic!("{name:?} is a valid name: {err}"));
        assert_eq!(
            buckets.read("bkt", name, None).expect("read"),
            bytes,
            "{name:?}"
        );
        assert_eq!(buckets.get("bkt", name, None).expect("get").name, name);
    }

    let long_rejected = "x".repeat(1025);
    let rejected = [
        ("", ObjectNameRule::Empty),
        (
            long_rejected.as_str(),
            ObjectNameRule::TooLong { bytes: 1025 },
        ),
        ("a\nb", ObjectNameRule::LineBreak),
        ("a\rb", ObjectNameRule::LineBreak),
        ("\n../../x", ObjectNameRule::LineBreak),
        (".", ObjectNameRule::DotName),
        ("..", ObjectNameRule::DotName),
        (
            ".well-known/acme-challenge/x",
            ObjectNameRule::AcmeChallenge,
        ),
    ];
    for (name, expected) in rejected {
        match buckets.put("bkt", name, b"x", None, no_metadata()) {
            Err(BucketError::InvalidName { rule, .. }) => assert_eq!(rule, expected, "{name:?}"),
            other => panic!("{name:?} must be rejected, got {other:?}"),
        }
    }
    let error = buckets
        .put("bkt", "a\nb", b"x", None, no_metadata())
        .expect_err("rejected")
        .to_string();
    assert!(
        error.contains("\"a\\nb\""),
        "the message names the value: {error}"
    );
    assert!(
        error.contains("line feed"),
        "the message names the rule: {error}"
    );

    assert_only_layout_files(dir.path(), &root);
    let listing = buckets.list("bkt", "", None, false).expect("list");
    assert_eq!(listing.objects.len(), accepted.len());
}

fn bucket_names_follow_rules(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    let cases = [
        ("..", BucketNameRule::Length { chars: 2 }),
        ("...", BucketNameRule::Boundary),
        ("../x", BucketNameRule::Character { found: '/' }),
        ("ab", BucketNameRule::Length { chars: 2 }),
        ("Bucket", BucketNameRule::Character { found: 'B' }),
        ("goog-x", BucketNameRule::GoogPrefix),
        ("10.0.0.1", BucketNameRule::IpAddress),
    ];
    for (name, expected) in cases {
        match buckets.create_bucket(name, false) {
            Err(BucketError::InvalidBucketName { rule, .. }) => {
                assert_eq!(rule, expected, "{name:?}");
            }
            other => panic!("{name:?} must be rejected, got {other:?}"),
        }
    }
    buckets
        .create_bucket("my-bucket.example", false)
        .expect("valid");
    let again = buckets.create_bucket("my-bucket.example", true);
    assert!(
        matches!(again, Err(BucketError::BucketExists { .. })),
        "{again:?}"
    );
    if let Some(root) = store.root() {
        assert_only_layout_files(store.dir.path(), &root);
    }
}

fn list_with_prefix_and_delimiter(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    for name in [
        "a.txt",
        "photos/2024/jan.jpg",
        "photos/2024/feb.jpg",
        "photos/2025/mar.jpg",
        "photos/cover.jpg",
        "photos/",
        "photosynthesis.txt",
        "z/",
    ] {
        put(&buckets, "bkt", name, name.as_bytes());
    }
    let object_names = |listing: &sluice_router::buckets::Listing| -> Vec<String> {
        listing.objects.iter().map(|o| o.name.clone()).collect()
    };

    let top = buckets.list("bkt", "", Some("/"), false).expect("list");
    assert_eq!(object_names(&top), ["a.txt", "photosynthesis.txt"]);
    assert_eq!(top.prefixes, ["photos/", "z/"]);

    let photos = buckets
        .list("bkt", "photos/", Some("/"), false)
        .expect("list");
    assert_eq!(object_names(&photos), ["photos/", "photos/cover.jpg"]);
    assert_eq!(photos.prefixes, ["photos/2024/", "photos/2025/"]);

    let flat = buckets.list("bkt", "photos", None, false).expect("list");
    assert_eq!(
        object_names(&flat),
        [
            "photos/",
            "photos/2024/feb.jpg",
            "photos/2024/jan.jpg",
            "photos/2025/mar.jpg",
            "photos/cover.jpg",
            "photosynthesis.txt",
        ]
    );
    assert!(flat.prefixes.is_empty());

    let multi = buckets
        .list("bkt", "photos", Some("/2"), false)
        .expect("list");
    assert_eq!(
        multi.prefixes,
        ["photos/2"],
        "a delimiter of several characters"
    );
    assert_eq!(
        object_names(&multi),
        ["photos/", "photos/cover.jpg", "photosynthesis.txt"]
    );

    let none = buckets
        .list("bkt", "nothing/", Some("/"), false)
        .expect("list");
    assert!(none.objects.is_empty());
    assert!(none.prefixes.is_empty());
}

fn list_versions_includes_noncurrent(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", true).expect("bucket");
    let a1 = put(&buckets, "bkt", "dir/a", b"1").object;
    let a2 = put(&buckets, "bkt", "dir/a", b"2").object;
    let bkt = put(&buckets, "bkt", "dir/b", b"1").object;
    buckets.delete("bkt", "dir/b", None).expect("archive b");
    let c1 = put(&buckets, "bkt", "top", b"1").object;
    buckets.delete("bkt", "top", None).expect("archive top");

    let live = buckets.list("bkt", "", None, false).expect("list");
    assert_eq!(names(&live.objects), [("dir/a", a2.generation)]);
    let all = buckets.list("bkt", "", None, true).expect("list versions");
    assert_eq!(
        names(&all.objects),
        [
            ("dir/a", a1.generation),
            ("dir/a", a2.generation),
            ("dir/b", bkt.generation),
            ("top", c1.generation),
        ]
    );
    let live_flags: Vec<bool> = all.objects.iter().map(|o| o.is_live()).collect();
    assert_eq!(live_flags, [false, true, false, false]);

    let grouped = buckets.list("bkt", "", Some("/"), false).expect("list");
    assert_eq!(grouped.prefixes, ["dir/"]);
    assert!(grouped.objects.is_empty(), "top has no live version");
    let grouped = buckets
        .list("bkt", "", Some("/"), true)
        .expect("list versions");
    assert_eq!(grouped.prefixes, ["dir/"]);
    assert_eq!(names(&grouped.objects), [("top", c1.generation)]);
}

#[test]
fn reopen_reads_everything_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("buckets");
    let (live, old, configs) = {
        let buckets = Buckets::open(&root).expect("store opens");
        buckets.create_bucket("bkt", true).expect("bucket");
        buckets.create_bucket("bk2", false).expect("bucket");
        let metadata = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let old = buckets
            .put("bkt", "obj", b"old", Some("text/plain"), metadata)
            .expect("put")
            .object;
        put(&buckets, "bkt", "obj", b"new");
        let changes = BTreeMap::from([("n".to_owned(), Some("2".to_owned()))]);
        let live = buckets
            .patch_metadata("bkt", "obj", &changes, None)
            .expect("patch")
            .object;
        put(&buckets, "bk2", "other", b"bk2 bytes");
        let mut prefix = config("");
        prefix.object_name_prefix = Some("in/".to_owned());
        buckets
            .insert_notification_config("bkt", prefix)
            .expect("config");
        buckets
            .insert_notification_config("bkt", config(""))
            .expect("config");
        let old = buckets
            .get("bkt", "obj", Some(old.generation))
            .expect("old");
        (
            live,
            old,
            buckets.notification_configs("bkt").expect("configs"),
        )
    };

    let buckets = Buckets::open(&root).expect("store reopens");
    let names: Vec<String> = buckets
        .list_buckets()
        .expect("buckets list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["bk2", "bkt"], "ordered by name");
    assert!(buckets.bucket("bkt").expect("bkt").versioning);
    assert!(!buckets.bucket("bk2").expect("bk2").versioning);
    assert_eq!(buckets.get("bkt", "obj", None).expect("live"), live);
    assert_eq!(
        buckets
            .get("bkt", "obj", Some(old.generation))
            .expect("old"),
        old
    );
    assert_eq!(buckets.read("bkt", "obj", None).expect("read"), b"new");
    assert_eq!(
        buckets
            .read("bkt", "obj", Some(old.generation))
            .expect("read"),
        b"old"
    );
    assert_eq!(
        buckets.read("bk2", "other", None).expect("read"),
        b"bk2 bytes"
    );
    assert_eq!(
        buckets.notification_configs("bkt").expect("configs"),
        configs
    );
    let ids: Vec<&str> = configs.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["1", "2"]);

    let newer = put(&buckets, "bkt", "obj", b"newest").object;
    assert!(
        newer.generation > live.generation,
        "generations keep increasing"
    );
    let third = buckets
        .insert_notification_config("bkt", config(""))
        .expect("config");
    assert_eq!(third.id, "3", "config ids keep increasing");
}

#[test]
fn open_removes_leftovers_of_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("buckets");
    let generation = {
        let buckets = Buckets::open(&root).expect("store opens");
        buckets.create_bucket("bkt", false).expect("bucket");
        put(&buckets, "bkt", "obj", b"kept").object.generation
    };
    // What a crash can leave: an unfinished upload, bytes renamed into place whose index
    // write never happened, a bucket half created and one half removed.
    let blobs = root.join("bkt/blobs");
    std::fs::write(blobs.join(".upload-1-0"), b"partial").expect("write");
    std::fs::write(blobs.join((generation + 1).to_string()), b"unlisted").expect("write");
    std::fs::create_dir_all(root.join(".creating-bk2/blobs")).expect("mkdir");
    std::fs::create_dir_all(root.join(".deleted-b3-1-0/blobs")).expect("mkdir");

    let buckets = Buckets::open(&root).expect("store reopens");
    assert_eq!(buckets.read("bkt", "obj", None).expect("read"), b"kept");
    assert!(!blobs.join(".upload-1-0").exists());
    assert!(!blobs.join((generation + 1).to_string()).exists());
    assert!(!root.join(".creating-bk2").exists());
    assert!(!root.join(".deleted-b3-1-0").exists());
    let names: Vec<String> = buckets
        .list_buckets()
        .expect("buckets list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["bkt"]);
    let newer = put(&buckets, "bkt", "obj", b"next").object;
    assert!(newer.generation > generation);
    assert_only_layout_files(dir.path(), &root);
}

#[test]
fn damaged_bytes_are_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("buckets");
    let buckets = Buckets::open(&root).expect("store opens");
    buckets.create_bucket("bkt", false).expect("bucket");
    let object = put(&buckets, "bkt", "obj", b"hello").object;
    let blob = root.join("bkt/blobs").join(object.generation.to_string());
    std::fs::write(&blob, b"jello").expect("damage the bytes");
    let read = buckets.read("bkt", "obj", None);
    assert!(matches!(read, Err(BucketError::Corrupt { .. })), "{read:?}");
    std::fs::remove_file(&blob).expect("remove the bytes");
    let read = buckets.read("bkt", "obj", None);
    assert!(matches!(read, Err(BucketError::Corrupt { .. })), "{read:?}");
}

#[test]
fn damaged_index_fails_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("buckets");
    {
        let buckets = Buckets::open(&root).expect("store opens");
        buckets.create_bucket("bkt", false).expect("bucket");
    }
    std::fs::write(root.join("bkt/index.json"), b"{not json").expect("damage the index");
    match Buckets::open(&root) {
        Err(BucketError::Corrupt { path, .. }) => assert!(path.ends_with("bkt/index.json")),
        other => panic!("a damaged index must fail the open, got {other:?}"),
    }
}

fn delete_bucket_requires_empty(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", true).expect("bucket");
    put(&buckets, "bkt", "obj", b"x");
    buckets.delete("bkt", "obj", None).expect("archive");

    let refused = buckets.delete_bucket("bkt");
    assert!(
        matches!(
            refused,
            Err(BucketError::BucketNotEmpty { versions: 1, .. })
        ),
        "a noncurrent version keeps the bucket: {refused:?}"
    );

    let listing = buckets.list("bkt", "", None, true).expect("list");
    for object in listing.objects {
        buckets
            .delete("bkt", &object.name, Some(object.generation))
            .expect("delete version");
    }

    buckets.delete_bucket("bkt").expect("delete bucket");
    assert!(matches!(
        buckets.bucket("bkt"),
        Err(BucketError::BucketNotFound { .. })
    ));
    let put_after = buckets.put("bkt", "obj", b"x", None, no_metadata());
    assert!(matches!(put_after, Err(BucketError::BucketNotFound { .. })));
    if let Some(root) = store.root() {
        assert!(walk(&root).is_empty(), "the folder is removed");
    }
    buckets
        .create_bucket("bkt", false)
        .expect("the name is free again");
}

fn notification_configs_are_validated(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let mut no_topic = config("");
    no_topic.topic.clear();
    let error = buckets.insert_notification_config("bkt", no_topic);
    assert!(
        matches!(error, Err(BucketError::InvalidNotification { .. })),
        "{error:?}"
    );
    let error = buckets.insert_notification_config("bkt", config("abc"));
    assert!(
        matches!(error, Err(BucketError::InvalidNotification { .. })),
        "{error:?}"
    );

    // Ten configs for all event types use up every type's limit of ten.
    for _ in 0..10 {
        buckets
            .insert_notification_config("bkt", config(""))
            .expect("config");
    }
    let mut deletes = config("");
    deletes.event_types = vec![EventType::ObjectDelete];
    let error = buckets
        .insert_notification_config("bkt", deletes)
        .expect_err("over the limit for OBJECT_DELETE");
    assert!(error.to_string().contains("OBJECT_DELETE"), "{error}");

    // Replacing a config by id does not count it twice.
    let mut replacement = config("4");
    replacement.topic = "other".to_owned();
    buckets
        .insert_notification_config("bkt", replacement)
        .expect("replace");
    let configs = buckets.notification_configs("bkt").expect("configs");
    assert_eq!(configs.len(), 10);
    assert_eq!(configs[3].topic, "other");

    buckets
        .delete_notification_config("bkt", "4")
        .expect("delete config");
    let missing = buckets.delete_notification_config("bkt", "4");
    assert!(matches!(
        missing,
        Err(BucketError::NotificationNotFound { .. })
    ));
    assert_eq!(
        buckets.notification_configs("bkt").expect("configs").len(),
        9
    );
}

fn config_if_new_is_added_once(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", false).expect("bucket");
    let same_topic = |a: &NotificationConfig, b: &NotificationConfig| a.topic == b.topic;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let node = store.another_node();
            std::thread::spawn(move || {
                node.insert_notification_config_if_new("bkt", config(""), same_topic)
                    .expect("insert")
            })
        })
        .collect();
    let added: Vec<NotificationConfig> = threads
        .into_iter()
        .filter_map(|t| t.join().expect("thread finishes"))
        .collect();
    assert_eq!(added.len(), 1, "one node adds the config: {added:?}");
    let stored = buckets.notification_configs("bkt").expect("configs");
    assert_eq!(stored, added);
}

#[test]
fn event_type_names_round_trip() {
    for event_type in EventType::ALL {
        assert_eq!(event_type.as_str().parse::<EventType>(), Ok(event_type));
    }
    assert!("object_finalize".parse::<EventType>().is_err());
    assert_eq!("NONE".parse::<PayloadFormat>(), Ok(PayloadFormat::None));
    assert_eq!(
        "JSON_API_V1".parse::<PayloadFormat>(),
        Ok(PayloadFormat::JsonApiV1)
    );
}

fn concurrent_writes_keep_generations_unique(backend: Backend) {
    let store = backend.open();
    let buckets = Arc::clone(&store.buckets);
    buckets.create_bucket("bkt", true).expect("bucket");
    // On JetStream, each thread writes through a connection of its own, as separate nodes
    // would.
    let nodes: Vec<Arc<Buckets>> = (0..4).map(|_| store.another_node()).collect();
    let threads: Vec<_> = nodes
        .into_iter()
        .enumerate()
        .map(|(thread, buckets)| {
            std::thread::spawn(move || {
                (0..10)
                    .map(|round| {
                        let bytes = format!("{thread}-{round}").into_bytes();
                        put(&buckets, "bkt", "shared", &bytes).object.generation
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();

    let mut generations: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread finishes"))
        .collect();
    generations.sort_unstable();
    generations.dedup();

    assert_eq!(generations.len(), 40, "every write has its own generation");
    let live = buckets.get("bkt", "shared", None).expect("live");
    assert_eq!(
        Some(&live.generation),
        generations.last(),
        "the newest write is live"
    );
    let all = buckets.list("bkt", "", None, true).expect("list versions");
    assert_eq!(all.objects.len(), 40);
}

#[tokio::test]
async fn notifications_publish_through_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("db")).expect("store"));
    let broker = Broker::open(store).expect("broker opens");
    broker.create_topic("uploads").await.expect("topic");
    broker
        .create_subscription(SubscriptionSpec::new("watcher", "uploads"))
        .await
        .expect("subscription");

    let buckets = Arc::new(Buckets::open(dir.path().join("buckets")).expect("buckets"));
    let change = tokio::task::spawn_blocking({
        let buckets = Arc::clone(&buckets);
        move || {
            buckets.create_bucket("bkt", false).expect("bucket");
            buckets
                .insert_notification_config("bkt", config(""))
                .expect("config");
            put(&buckets, "bkt", "obj", b"x")
        }
    })
    .await
    .expect("blocking task");
    let configs = buckets.notification_configs("bkt").expect("configs");
    broker
        .publish(notification_messages(&configs, &change.events))
        .await
        .expect("publish");

    let deliveries = broker
        .pull("watcher", 10, Duration::ZERO)
        .await
        .expect("pull");
    assert_eq!(deliveries.len(), 1);
    let message = &deliveries[0].message.message;
    assert_eq!(message.attributes["eventType"], "OBJECT_FINALIZE");
    assert_eq!(
        message.attributes["notificationConfig"],
        "projects/_/buckets/bkt/notificationConfigs/1"
    );
    let data: Value = serde_json::from_slice(&message.data).expect("JSON data");
    assert_eq!(data["name"], "obj");
}

/// Returns whether Cloud Storage rejects `name` by its documented rules, written out independently
/// of the store's own check.
fn gcs_rejects(name: &str) -> bool {
    name.is_empty()
        || name.len() > 1024
        || name.contains('\n')
        || name.contains('\r')
        || name == "."
        || name == ".."
        || name.starts_with(".well-known/acme-challenge/")
}

fn arbitrary_name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./\\\\a\0\n\r]{0,12}",
        "(\\.\\./|/|\\.|\\.\\.|a|\0){0,400}",
        Just(".well-known/acme-challenge/".to_owned()),
        "x{1020,1030}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_names_round_trip_or_are_rejected(
        name in arbitrary_name(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (dir, buckets) = open_store();
        let root = dir.path().join("buckets");
        buckets.create_bucket("bkt", false).expect("bucket");
        match buckets.put("bkt", &name, &bytes, None, no_metadata()) {
            Err(BucketError::InvalidName { .. }) => {
                prop_assert!(gcs_rejects(&name), "{:?} was rejected", name);
            }
            Err(other) => prop_assert!(false, "{:?} failed: {}", name, other),
            Ok(change) => {
                prop_assert!(!gcs_rejects(&name), "{:?} was accepted", name);
                prop_assert_eq!(&change.object.name, &name);
                prop_assert_eq!(buckets.read("bkt", &name, None).expect("read"), bytes);
                prop_assert_eq!(buckets.get("bkt", &name, None).expect("get"), change.object);
            }
        }
        assert_only_layout_files(dir.path(), &root);
    }
}
