//! Buckets whose changes publish their notifications: the object store as the server and the
//! handlers use it.
//!
//! [`Storage`] runs each [`Buckets`] operation on Tokio's blocking pool, since it hashes and
//! fsyncs, and publishes the messages of the bucket's notification configs for every event the
//! change caused through the [`Broker`].
//!
//! NOTE: the change is durable before its notifications are published. A crash between the
//! two keeps the change and loses its notifications. So does a publish that fails, such as
//! one to a topic that was never created. That failure is logged and returned as
//! [`StorageError::Notify`], so that callers can report it.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::warn;

use crate::buckets::{
    notification_messages, BucketError, BucketInfo, Buckets, Listing, ObjectChange, ObjectResource,
};
use crate::deliver::Broker;
use crate::store::StoreError;

/// Errors of [`Storage`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bucket operation failed; nothing changed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The change was made, but its notifications could not be published.
    #[error("the change was stored, but publishing its notifications failed: {source}")]
    Notify {
        /// The change that was made.
        change: Box<ObjectChange>,
        /// The error of the publish.
        source: StoreError,
    },
    /// The blocking task did not finish, because the runtime is shutting down.
    #[error("the storage task did not finish: {0}")]
    Interrupted(String),
}

/// Buckets plus the broker that carries their notifications. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    buckets: Arc<Buckets>,
    broker: Arc<Broker>,
}

impl Storage {
    /// Joins a bucket store and the broker its notifications go to.
    pub fn new(buckets: Arc<Buckets>, broker: Arc<Broker>) -> Self {
        Self { buckets, broker }
    }

    /// Returns the bucket store, for operations that cause no events.
    pub fn buckets(&self) -> &Arc<Buckets> {
        &self.buckets
    }

    /// Writes a new generation of an object and publishes its events. See [`Buckets::put`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when the write fails, [`StorageError::Notify`] when it
    /// succeeded but its notifications were not published.
    pub async fn put(
        &self,
        bucket: &str,
        name: &str,
        bytes: Vec<u8>,
        content_type: Option<String>,
        metadata: BTreeMap<String, String>,
    ) -> Result<ObjectResource, StorageError> {
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.change(move |buckets| {
            buckets.put(&bucket, &name, &bytes, content_type.as_deref(), metadata)
        })
        .await
    }

    /// Deletes the live version, or one generation, and publishes the event. See
    /// [`Buckets::delete`].
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn delete(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectResource, StorageError> {
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.change(move |buckets| buckets.delete(&bucket, &name, generation))
            .await
    }

    /// Patches the live version's custom metadata and content type and publishes the event.
    /// See [`Buckets::patch_metadata`].
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn patch_metadata(
        &self,
        bucket: &str,
        name: &str,
        changes: BTreeMap<String, Option<String>>,
        content_type: Option<String>,
    ) -> Result<ObjectResource, StorageError> {
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.change(move |buckets| {
            buckets.patch_metadata(&bucket, &name, &changes, content_type.as_deref())
        })
        .await
    }

    /// Returns the live version of an object, or one generation. See [`Buckets::get`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when there is no such bucket or version.
    pub async fn get(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<ObjectResource, StorageError> {
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.blocking(move |buckets| buckets.get(&bucket, &name, generation))
            .await
    }

    /// Reads an object's metadata and bytes, of the live version or one generation. See
    /// [`Buckets::read`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when there is no such version or its bytes are damaged.
    pub async fn read(
        &self,
        bucket: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Result<(ObjectResource, Vec<u8>), StorageError> {
        let (bucket, name) = (bucket.to_owned(), name.to_owned());
        self.blocking(move |buckets| {
            let object = buckets.get(&bucket, &name, generation)?;
            let bytes = buckets.read(&bucket, &name, Some(object.generation))?;
            Ok((object, bytes))
        })
        .await
    }

    /// Lists a bucket's objects. See [`Buckets::list`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when the bucket does not exist.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        versions: bool,
    ) -> Result<Listing, StorageError> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let delimiter = delimiter.map(str::to_owned);
        self.blocking(move |buckets| buckets.list(&bucket, &prefix, delimiter.as_deref(), versions))
            .await
    }

    /// Returns a bucket's settings. See [`Buckets::bucket`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when the bucket does not exist.
    pub async fn bucket(&self, bucket: &str) -> Result<BucketInfo, StorageError> {
        let bucket = bucket.to_owned();
        self.blocking(move |buckets| buckets.bucket(&bucket)).await
    }

    /// Returns the settings of every bucket, ordered by name. See [`Buckets::list_buckets`].
    ///
    /// # Errors
    ///
    /// [`StorageError::Bucket`] when the buckets cannot be listed.
    pub async fn list_buckets(&self) -> Result<Vec<BucketInfo>, StorageError> {
        self.blocking(|buckets| buckets.list_buckets()).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Buckets) -> Result<T, BucketError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let buckets = self.buckets.clone();
        tokio::task::spawn_blocking(move || operation(&buckets))
            .await
            .map_err(|err| StorageError::Interrupted(err.to_string()))?
            .map_err(StorageError::from)
    }

    async fn change(
        &self,
        operation: impl FnOnce(&Buckets) -> Result<ObjectChange, BucketError> + Send + 'static,
    ) -> Result<ObjectResource, StorageError> {
        // The configs are read after the change, so a config added in between applies to it.
        let (change, configs) = self
            .blocking(move |buckets| {
                let change = operation(buckets)?;
                let configs = buckets.notification_configs(&change.object.bucket)?;
                Ok((change, configs))
            })
            .await?;
        let messages = notification_messages(&configs, &change.events);
        if messages.is_empty() {
            return Ok(change.object);
        }
        match self.broker.publish(messages).await {
            Ok(_) => Ok(change.object),
            Err(source) => {
                warn!(
                    bucket = %change.object.bucket,
                    object = ?change.object.name,
                    generation = change.object.generation,
                    error = %source,
                    "object changed but its notifications were not published"
                );
                Err(StorageError::Notify {
                    change: Box::new(change),
                    source,
                })
            }
        }
    }
}
