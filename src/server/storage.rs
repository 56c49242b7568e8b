//! Buckets in `sluice serve`: the set-up of the configured buckets and their HTTP routes.
//!
//! [`open`] opens the bucket store at `<data dir>/buckets`, creates the configured buckets
//! and adds the configured notification configs that a bucket does not have yet. Every
//! object change of the routes goes through [`Storage`], so that it publishes the bucket's
//! notifications.
//!
//! The routes, which return errors as Google's JSON error body with Cloud Storage's
//! `errors` list (`errors.rs`):
//!
//! - `POST /upload/{bucket}`: a multipart/form-data upload of one or more files
//!   (`upload.rs`);
//! - a subset of Cloud Storage's JSON API under Google's paths, enough for Google's client
//!   libraries with `STORAGE_EMULATOR_HOST` (docs/storage-api.md lists it):
//!   - objects (`json_api.rs`): `GET /storage/v1/b/{bucket}/o` lists objects, `GET`,
//!     `PATCH` and `DELETE` on `/storage/v1/b/{bucket}/o/{object}` read, patch and delete
//!     one, and `GET /download/storage/v1/b/{bucket}/o/{object}` downloads its bytes;
//!   - uploads (`json_upload.rs`): `POST /upload/storage/v1/b/{bucket}/o` with
//!     `uploadType` media, multipart or resumable, and `PUT` and `DELETE` on a resumable
//!     session's URL (`resumable.rs`, with the sessions in `sessions.rs`);
//!   - buckets (`buckets_api.rs`): `GET /storage/v1/b/{bucket}`, and `GET` and `POST` on
//!     `/storage/v1/b`.

mod body;
mod buckets_api;
mod errors;
mod json_api;
mod json_upload;
mod links;
pub(super) mod multipart_related;
pub(super) mod new_object;
mod patch;
mod ranges;
mod resumable;
mod sessions;
mod upload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::DefaultBodyLimit;
use axum::middleware::map_response;
use axum::routing::{get, post};
use axum::Router;
use sluice_router::buckets::{BucketError, Buckets, EventType, NotificationConfig};
use sluice_router::deliver::Broker;
use sluice_router::storage::Storage;
use sluice_router::store::jetstream::JetStreamStore;
use tracing::info;

use crate::config::BucketSpec;
use sessions::{SessionLimits, Sessions};

/// Upload limit when neither `--max-upload-bytes` nor `[limits] max_upload_bytes` sets one:
/// 32 MiB.
pub(crate) const DEFAULT_MAX_UPLOAD_BYTES: u64 = 32 * 1024 * 1024;

/// Opens the buckets under `<data_dir>/buckets` and brings them in line with the
/// configuration: missing buckets are created, versioning is set as configured, and each
/// configured notification config that the bucket does not store with the same settings is
/// added. A config that an earlier configuration file added and the current one no longer
/// declares, or declares with other settings, is deleted, so that editing a notification
/// replaces it instead of adding a second one. Configs that were added by other means stay.
/// The ids of the configs the file added are kept in [`MANAGED_CONFIGS_FILE`].
///
/// # Errors
///
/// Fails when the bucket store cannot be opened or a bucket or config cannot be written.
pub(crate) async fn open(
    data_dir: &Path,
    backend: BucketBackend,
    buckets: Vec<BucketSpec>,
    broker: Arc<Broker>,
) -> anyhow::Result<Storage> {
    let root = data_dir.join("buckets");
    let shared = match backend {
        BucketBackend::Folder => None,
        BucketBackend::JetStream {
            store,
            replicas,
            objects_folder,
        } => Some(
            Buckets::open_jetstream(&root, store.context(), replicas, objects_folder)
                .await
                .context("failed to open the buckets on JetStream")?,
        ),
    };
    // Opening scans every bucket's index, and each change fsyncs, so run it off the runtime.
    let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Buckets> {
        let store = match shared {
            Some(store) => {
                // The file of managed config ids stays on this node.
                std::fs::create_dir_all(&root)
                    .with_context(|| format!("failed to create {}", root.display()))?;
                store
            }
            None => Buckets::open(&root)
                .with_context(|| format!("failed to open the buckets in {}", root.display()))?,
        };
        let managed_path = root.join(MANAGED_CONFIGS_FILE);
        let mut managed = read_managed(&managed_path)?;
        remove_stale_configs(&store, &buckets, &mut managed)?;
        write_managed(&managed_path, &managed)?;
        for bucket in &buckets {
            apply_bucket(&store, bucket, &mut managed)?;
        }
        write_managed(&managed_path, &managed)?;
        Ok(store)
    })
    .await
    .context("the bucket set-up task did not finish")??;
    Ok(Storage::new(Arc::new(store), broker))
}

/// The location of the buckets: the data directory, or the JetStream servers that
/// `[store]` names, shared with every node that uses them.
#[derive(Debug)]
pub(crate) enum BucketBackend {
    /// `<data dir>/buckets`.
    Folder,
    /// JetStream's key-value and object stores.
    JetStream {
        /// The store, whose JetStream connection the buckets share.
        store: Box<JetStreamStore>,
        /// Copies of the key-value bucket and the object store.
        replicas: usize,
        /// A folder that every node mounts, for the object bytes in place of the object
        /// store.
        objects_folder: Option<std::path::PathBuf>,
    },
}

/// The file under `<data dir>/buckets` that lists, per bucket, the ids of the notification
/// configs that the configuration file added.
pub(crate) const MANAGED_CONFIGS_FILE: &str = "config-notifications.json";

/// Bucket name to the ids of its notification configs that the configuration file added.
type ManagedConfigs = BTreeMap<String, BTreeSet<String>>;

fn read_managed(path: &Path) -> anyhow::Result<ManagedConfigs> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a valid list of notification config ids; delete it to stop sluice \
                 from removing configs that an earlier configuration declared",
                path.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(ManagedConfigs::new()),
        Err(err) => Err(err).with_context(|| format!("failed to read {}", path.display())),
    }
}

fn write_managed(path: &Path, managed: &ManagedConfigs) -> anyhow::Result<()> {
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(managed).context("failed to encode the config ids")?;
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Deletes the notification configs that the configuration file added earlier and no longer
/// declares with the same settings.
fn remove_stale_configs(
    store: &Buckets,
    buckets: &[BucketSpec],
    managed: &mut ManagedConfigs,
) -> anyhow::Result<()> {
    for (bucket, ids) in managed.iter_mut() {
        let declared: &[NotificationConfig] = buckets
            .iter()
            .find(|spec| &spec.name == bucket)
            .map_or(&[], |spec| spec.notifications.as_slice());
        let stored = match store.notification_configs(bucket) {
            Ok(stored) => stored,
            // A bucket deleted by other means takes its configs with it.
            Err(BucketError::BucketNotFound { .. }) => {
                ids.clear();
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        for config in stored.iter().filter(|config| ids.contains(&config.id)) {
            if declared.iter().any(|wanted| same_settings(config, wanted)) {
                continue;
            }
            store
                .delete_notification_config(bucket, &config.id)
                .with_context(|| {
                    format!(
                        "failed to delete notification config {} of bucket {bucket:?}",
                        config.id
                    )
                })?;
            info!(bucket = %bucket, id = %config.id, topic = %config.topic, "notification config removed: the configuration no longer declares it");
        }
        let remaining = store.notification_configs(bucket)?;
        ids.retain(|id| remaining.iter().any(|config| &config.id == id));
    }
    managed.retain(|_, ids| !ids.is_empty());
    Ok(())
}

/// Creates one configured bucket if needed and adds its missing notification configs.
fn apply_bucket(
    store: &Buckets,
    spec: &BucketSpec,
    managed: &mut ManagedConfigs,
) -> anyhow::Result<()> {
    let name = &spec.name;
    match store.bucket(name) {
        Ok(info) if info.versioning != spec.versioning => {
            store
                .set_versioning(name, spec.versioning)
                .with_context(|| format!("failed to set the versioning of bucket {name:?}"))?;
            info!(bucket = %name, versioning = spec.versioning, "bucket versioning changed");
        }
        Ok(_) => {}
        Err(BucketError::BucketNotFound { .. }) => match store.create_bucket(name, spec.versioning)
        {
            Ok(_) => info!(bucket = %name, versioning = spec.versioning, "bucket created"),
            // Another node that shares the buckets created it first.
            Err(BucketError::BucketExists { .. }) => {}
            Err(err) => {
                return Err(err).with_context(|| format!("failed to create bucket {name:?}"))
            }
        },
        Err(err) => return Err(err.into()),
    }

    for config in &spec.notifications {
        // The check and the insert are one change, so that nodes sharing the buckets add
        // the config once.
        let added = store
            .insert_notification_config_if_new(name, config.clone(), same_settings)
            .with_context(|| {
                format!(
                    "failed to add the notification config for topic {:?} to bucket {name:?}",
                    config.topic
                )
            })?;
        if let Some(added) = added {
            info!(bucket = %name, id = %added.id, topic = %added.topic, "notification config added");
            managed.entry(name.clone()).or_default().insert(added.id);
        }
    }
    Ok(())
}

/// Returns whether two notification configs publish the same messages, whatever their ids.
/// No event types and all four are the same, and so are no prefix and an empty one.
fn same_settings(a: &NotificationConfig, b: &NotificationConfig) -> bool {
    let event_types = |config: &NotificationConfig| -> Vec<EventType> {
        EventType::ALL
            .into_iter()
            .filter(|event_type| config.includes(*event_type))
            .collect()
    };
    let prefix =
        |config: &NotificationConfig| config.object_name_prefix.clone().unwrap_or_default();
    a.topic == b.topic
        && event_types(a) == event_types(b)
        && prefix(a) == prefix(b)
        && a.payload_format == b.payload_format
        && a.custom_attributes == b.custom_attributes
}

/// The state that the bucket routes share.
#[derive(Debug, Clone)]
struct StorageState {
    storage: Storage,
    /// The largest request body of `POST /upload/{bucket}`, and the largest object of the
    /// JSON API uploads, in bytes.
    max_upload_bytes: u64,
    /// The open resumable uploads.
    sessions: Arc<Sessions>,
}

/// The folder under the data directory that contains the bytes of resumable uploads in
/// progress.
const SPOOL_DIR: &str = "resumable-uploads";

/// Returns the upload routes and the JSON API routes.
pub(crate) fn routes(storage: Storage, max_upload_bytes: u64) -> Router {
    // The bucket store's root is `<data dir>/buckets`, as `open` makes it.
    let data_dir = storage
        .buckets()
        .root()
        .parent()
        .unwrap_or(storage.buckets().root())
        .to_owned();
    let sessions = Sessions::new(
        data_dir.join(SPOOL_DIR),
        SessionLimits::for_upload_limit(max_upload_bytes),
    );
    let state = StorageState {
        storage,
        max_upload_bytes,
        sessions: Arc::new(sessions),
    };
    // The upload routes count their bodies themselves, so that they can return 413 with the
    // limit.
    let upload = Router::new()
        .route("/upload/{bucket}", post(upload::upload))
        .route(
            "/upload/storage/v1/b/{bucket}/o",
            post(json_upload::insert_object)
                .put(resumable::put_chunk)
                .delete(resumable::cancel),
        )
        .layer(DefaultBodyLimit::disable());
    let json_api = Router::new()
        .route(
            "/storage/v1/b",
            get(buckets_api::list_buckets).post(buckets_api::insert_bucket),
        )
        .route("/storage/v1/b/{bucket}", get(buckets_api::get_bucket))
        .route("/storage/v1/b/{bucket}/o", get(json_api::list_objects))
        .route(
            "/storage/v1/b/{bucket}/o/{*object}",
            get(json_api::get_object)
                .patch(json_api::patch_object)
                .delete(json_api::delete_object),
        )
        .route(
            "/download/storage/v1/b/{bucket}/o/{*object}",
            get(json_api::download_object),
        );
    upload
        .merge(json_api)
        .layer(map_response(errors::add_error_list))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_router::buckets::PayloadFormat;

    use super::*;

    fn config(event_types: Vec<EventType>, prefix: Option<&str>) -> NotificationConfig {
        NotificationConfig {
            id: String::new(),
            topic: "events".to_owned(),
            event_types,
            object_name_prefix: prefix.map(str::to_owned),
            payload_format: PayloadFormat::JsonApiV1,
            custom_attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn same_settings_ignores_id_and_spelling() {
        let mut stored = config(EventType::ALL.to_vec(), Some(""));
        stored.id = "7".to_owned();
        assert!(same_settings(&stored, &config(Vec::new(), None)));
    }

    #[test]
    fn same_settings_compares_each_setting() {
        let base = config(Vec::new(), None);
        let mut other_topic = base.clone();
        other_topic.topic = "other".to_owned();
        let mut other_format = base.clone();
        other_format.payload_format = PayloadFormat::None;
        let mut other_attributes = base.clone();
        other_attributes
            .custom_attributes
            .insert("k".to_owned(), "v".to_owned());
        let different = [
            other_topic,
            other_format,
            other_attributes,
            config(vec![EventType::ObjectFinalize], None),
            config(Vec::new(), Some("a/")),
        ];
        for config in different {
            assert!(!same_settings(&base, &config), "{config:?}");
        }
    }
}
