//! The JetStream store: topics, subscriptions and messages on NATS JetStream, so that
//! several sluice nodes share them.
//!
//! Each topic is a stream with one subject, file storage and the configured replicas. Each
//! subscription is a durable pull consumer with explicit acknowledgements on its topic's
//! stream, and the catalog of both is in the key-value bucket `sluice_catalog`. A message's
//! data, attributes, ordering key and publish time are encoded together as the stream
//! message's payload, and its stream sequence number is its message id.
//!
//! Leases, attempts, retries and dead letters are the consumers' own state on the servers,
//! and the broker's shared delivery path (`crate::deliver`) drives them. The methods of the
//! [`Store`] trait that read or change a local pending set therefore return
//! [`StoreError::Unsupported`]. `docs/jetstream.md` describes the mapping.

mod catalog;
mod streams;

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use async_trait::async_trait;
use tracing::{debug, info, warn};

use super::{
    CommitListener, NewMessage, PendingEntry, Published, SeekTarget, SnapshotRecord, Store,
    StoreError, StoredMessage, SubscriptionRecord, SubscriptionSpec, SweepReport, TopicMessage,
    TopicRecord, TopicSettings,
};
pub(crate) use catalog::create_kv_stream;
use catalog::Catalog;
pub use streams::{decode_message, encode_message, AckSubject};

/// How to reach the JetStream servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// Server URLs, such as `nats://127.0.0.1:4222`. The client connects to one and learns
    /// the rest of the cluster from it.
    pub urls: Vec<String>,
    /// A NATS credentials file (a user JWT and its NKey seed), if the servers require one.
    pub credentials_file: Option<PathBuf>,
    /// Copies of each stream and of the catalog, 1 to 5; more than 1 needs a JetStream
    /// cluster with at least that many servers.
    pub replicas: usize,
    /// How long the first connection may take before start-up fails.
    pub connect_timeout: Duration,
}

impl JetStreamOptions {
    /// Returns options for the given URLs with one replica and no credentials.
    pub fn new(urls: Vec<String>) -> Self {
        JetStreamOptions {
            urls,
            credentials_file: None,
            replicas: 1,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Topics, subscriptions and messages on JetStream.
#[derive(Debug, Clone)]
pub struct JetStreamStore {
    client: async_nats::Client,
    context: jetstream::Context,
    catalog: Catalog,
    replicas: usize,
    /// The configured server URLs, comma-separated, for errors.
    urls: String,
}

impl JetStreamStore {
    /// Connects to the servers and opens the catalog, creating it on first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::CredentialsFile`] and [`StoreError::InvalidUrl`] for settings that the
    /// client cannot use. [`StoreError::Unreachable`] naming the URLs when no server
    /// completes the NATS handshake within the connect timeout, or JetStream is not enabled
    /// on them. [`StoreError::StreamNotCreated`] when the servers reject the catalog's
    /// stream, and [`StoreError::JetStream`] when the catalog cannot be opened otherwise.
    pub async fn connect(options: &JetStreamOptions) -> Result<Self, StoreError> {
        let urls = options.urls.join(",");
        let unreachable = |error: String| StoreError::Unreachable {
            urls: urls.clone(),
            error,
        };
        let connect_options = match &options.credentials_file {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|err| StoreError::CredentialsFile {
                    path: path.clone(),
                    error: err.to_string(),
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        let addresses = options
            .urls
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .map_err(|err| StoreError::InvalidUrl {
                        url: url.clone(),
                        error: err.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The client's connection timeout bounds the TCP connect, but not the wait for the
        // server's INFO line, so a port that accepts connections and never speaks NATS would
        // hold start-up forever without this outer timeout.
        let connecting = connect_options
            .connection_timeout(options.connect_timeout)
            .name("sluice")
            .event_callback({
                let urls = urls.clone();
                move |event| log_connection_event(urls.clone(), event)
            })
            .connect(addresses);
        let client = tokio::time::timeout(options.connect_timeout, connecting)
            .await
            .map_err(|_| {
                unreachable(format!(
                    "timed out after {} s waiting for the server's NATS handshake",
                    options.connect_timeout.as_secs_f64()
                ))
            })?
            .map_err(|err| unreachable(err.to_string()))?;
        let context = jetstream::new(client.clone());
        // Only a server with JetStream enabled responds to the account information request. Its
        // body is checked by hand because the client's type of it needs fields that
        // nats-server 2.9 does not send.
        let reply = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .map_err(|err| unreachable(format!("JetStream is not enabled on the server: {err}")))?;
        let body: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        if let Some(error) = body.get("error") {
            return Err(unreachable(format!(
                "JetStream is not available on the server: {error}"
            )));
        }
        let catalog = Catalog::open(&context, options).await?;
        info!(urls = %urls, replicas = options.replicas, "connected to JetStream");
        Ok(JetStreamStore {
            client,
            context,
            catalog,
            replicas: options.replicas,
            urls,
        })
    }

    /// Checks that the client is connected to a server now.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unreachable`] naming the URLs while the connection is lost and the
    /// client is reconnecting.
    pub fn check_connected(&self) -> Result<(), StoreError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(StoreError::Unreachable {
                urls: self.urls.clone(),
                error: format!(
                    "the connection is {}, and the client keeps reconnecting",
                    match state {
                        async_nats::connection::State::Pending => "not yet established",
                        _ => "lost",
                    }
                ),
            }),
        }
    }

    /// Returns the JetStream context, for the broker's consumers.
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// Returns the NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Returns the subscription's record as this node last saw it.
    pub fn subscription(&self, name: &str) -> Option<SubscriptionRecord> {
        self.catalog.cache().subscription(name)
    }

    /// Opens the durable consumer of a subscription.
    ///
    /// # Errors
    ///
    /// [`StoreError::JetStream`] when the stream or consumer does not exist.
    pub async fn consumer(
        &self,
        record: &SubscriptionRecord,
    ) -> Result<jetstream::consumer::PullConsumer, StoreError> {
        let (stream, consumer) = self.consumer_names(record);
        self.context
            .get_stream(stream)
            .await
            .map_err(|err| failed("open the topic's stream", err))?
            .get_consumer(&consumer)
            .await
            .map_err(|err| failed("open the subscription's consumer", err))
    }

    /// Returns the names of a subscription's stream and consumer.
    pub fn consumer_names(&self, record: &SubscriptionRecord) -> (String, String) {
        (
            streams::stream_name(record.topic_id),
            streams::consumer_name(record.id),
        )
    }

    /// Reads the statistics of a subscription's consumer.
    ///
    /// # Errors
    ///
    /// [`StoreError::JetStream`] when the consumer cannot be read.
    pub async fn consumer_info(
        &self,
        record: &SubscriptionRecord,
    ) -> Result<jetstream::consumer::Info, StoreError> {
        streams::consumer_info(&self.context, record).await
    }

    /// Rereads the whole catalog from the servers.
    ///
    /// # Errors
    ///
    /// [`StoreError::JetStream`] when the bucket cannot be read.
    pub async fn reload_catalog(&self) -> Result<(), StoreError> {
        self.catalog.reload().await
    }

    /// Returns the stream that contains a topic's messages.
    pub async fn topic_stream(&self, topic: &str) -> Result<jetstream::stream::Stream, StoreError> {
        let record = self
            .catalog
            .cache()
            .topic(topic)
            .ok_or_else(|| StoreError::TopicNotFound(topic.to_owned()))?;
        self.context
            .get_stream(streams::stream_name(record.id))
            .await
            .map_err(|err| failed("open the topic's stream", err))
    }

    /// Reads one message of a topic by its sequence number; `None` when it no longer
    /// exists.
    ///
    /// # Errors
    ///
    /// [`StoreError::TopicNotFound`] for an unknown topic, [`StoreError::Corrupt`] for a
    /// payload that does not decode.
    pub async fn read_message(
        &self,
        topic: &str,
        seq: u64,
    ) -> Result<Option<StoredMessage>, StoreError> {
        let stream = self.topic_stream(topic).await?;
        match stream.get_raw_message(seq).await {
            Ok(raw) => decode_message(topic, seq, &raw.payload).map(Some),
            Err(err)
                if matches!(
                    err.kind(),
                    jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) =>
            {
                Ok(None)
            }
            Err(err) => Err(failed("read a message", err)),
        }
    }

    fn blocking<T>(
        &self,
        operation: &'static str,
        work: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        // The trait's synchronous methods need a server round trip here. That is only
        // possible from a multi-threaded runtime, where the thread can block.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(work))
            }
            _ => Err(StoreError::Unsupported { operation }),
        }
    }
}

/// Logs the changes of the connection's state, which the client reports once each.
async fn log_connection_event(urls: String, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => info!(urls = %urls, "connected to NATS"),
        async_nats::Event::Disconnected => {
            warn!(urls = %urls, "connection to NATS lost, so requests fail until the client reconnects");
        }
        // The client reports these for each message a full subscription drops, so they
        // are too many for a warning each.
        async_nats::Event::SlowConsumer(_) => debug!(urls = %urls, "NATS subscription full"),
        other => warn!(urls = %urls, event = %other, "NATS connection event"),
    }
}

/// Wraps the error of a failed stream creation as [`StoreError::StreamNotCreated`], with a
/// hint when the servers rejected the replica count.
pub(crate) fn stream_not_created(
    stream: &str,
    replicas: usize,
    error: impl std::fmt::Display,
) -> StoreError {
    let error = error.to_string();
    // nats-server 2.9.10 rejects replicas above 1 on a standalone server with "replicas > 1
    // not supported in non-clustered mode" (tested). More replicas than cluster servers are
    // expected to fail with "insufficient resources", which no test checks.
    let about_replicas = error.contains("replicas") || error.contains("insufficient resources");
    StoreError::StreamNotCreated {
        stream: stream.to_owned(),
        replicas,
        error,
        hint: if about_replicas {
            ". A stream with N replicas needs a JetStream cluster of at least N servers: \
             lower [store] replicas, or add servers to the cluster"
        } else {
            ""
        },
    }
}

/// Wraps a client error as [`StoreError::JetStream`].
pub(crate) fn failed(operation: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::JetStream {
        operation,
        error: error.to_string(),
    }
}

#[async_trait]
impl Store for JetStreamStore {
    fn set_commit_listener(&self, _listener: Arc<dyn CommitListener>) {
        // Other nodes publish too, so a local listener would miss their messages; the
        // broker pulls from the consumers instead.
    }

    async fn create_topic(&self, name: &str) -> Result<TopicRecord, StoreError> {
        if let Some(record) = self.catalog.cache().topic(name) {
            return Ok(record);
        }
        let id = self.catalog.next_id().await?;
        let record = self
            .catalog
            .create_topic(TopicRecord {
                id,
                name: name.to_owned(),
                settings: TopicSettings::default(),
            })
            .await?;
        streams::ensure_stream(&self.context, &record, self.replicas).await?;
        Ok(record)
    }

    async fn create_subscription(
        &self,
        spec: SubscriptionSpec,
    ) -> Result<SubscriptionRecord, StoreError> {
        crate::filter::pubsub::SubscriptionFilter::parse(&spec.filter).map_err(|error| {
            StoreError::InvalidFilter {
                name: spec.name.clone(),
                error,
            }
        })?;
        let topic = self
            .catalog
            .cache()
            .topic(&spec.topic)
            .ok_or_else(|| StoreError::TopicNotFound(spec.topic.clone()))?;
        if self.catalog.cache().subscription(&spec.name).is_none() {
            let record = SubscriptionRecord {
                id: self.catalog.next_id().await?,
                topic_id: topic.id,
                spec: spec.clone(),
                first_seq: 0,
            };
            // Only one node's record wins when several create the subscription at once;
            // the others update the winner's record below.
            if self.catalog.create_subscription(&record).await? {
                streams::ensure_consumer(&self.context, &record).await?;
                return Ok(record);
            }
        }
        let existing = self
            .catalog
            .cache()
            .subscription(&spec.name)
            .ok_or_else(|| StoreError::SubscriptionNotFound(spec.name.clone()))?;
        check_fixed_settings(&existing.spec, &spec)?;
        let record = SubscriptionRecord { spec, ..existing };
        streams::ensure_consumer(&self.context, &record).await?;
        self.catalog.put_subscription(&record).await?;
        Ok(record)
    }

    fn declared_subscription(&self, spec: SubscriptionSpec) -> SubscriptionSpec {
        let Some(stored) = self.catalog.cache().subscription(&spec.name) else {
            return spec;
        };
        let changed = stored.spec.changed_settings(&spec);
        for (setting, stored_value, declared_value) in &changed {
            warn!(
                subscription = %spec.name,
                setting,
                stored = %stored_value,
                configured = %declared_value,
                "the configuration differs from the shared subscription, which keeps its \
                 stored setting. Change it with UpdateSubscription"
            );
        }
        // The topic, filter and ordering stay as declared, so that a conflict there still
        // fails the start.
        SubscriptionSpec {
            name: spec.name,
            topic: spec.topic,
            filter: spec.filter,
            enable_message_ordering: spec.enable_message_ordering,
            ..stored.spec
        }
    }

    fn check_health(&self) -> Result<(), StoreError> {
        self.check_connected()
    }

    fn topics(&self) -> Vec<TopicRecord> {
        self.catalog.cache().topics()
    }

    fn subscriptions(&self) -> Vec<SubscriptionRecord> {
        self.catalog.cache().subscriptions()
    }

    async fn publish(
        &self,
        messages: Vec<TopicMessage>,
        now: SystemTime,
    ) -> Result<Vec<Published>, StoreError> {
        let started = std::time::Instant::now();
        let mut pending_acks = Vec::with_capacity(messages.len());
        for message in &messages {
            let topic = self
                .catalog
                .cache()
                .topic(&message.topic)
                .ok_or_else(|| StoreError::TopicNotFound(message.topic.clone()))?;
            let payload = encode_message(&message.message, now)?;
            // A publish over max_payload makes the server close the connection, which every
            // request of this node shares, so it is refused here.
            let limit = self.client.server_info().max_payload;
            if payload.len() > limit {
                return Err(StoreError::TooLarge {
                    size: payload.len(),
                    limit,
                });
            }
            // While the connection is lost, the client would buffer the publish and send it
            // after reconnecting, so a publish that failed here with a timeout could still be
            // stored later. Rejecting it up front keeps a failed publish from being stored.
            // NOTE: a connection lost between this check and the write leaves that window
            // open for the messages in flight, as docs/jetstream.md describes.
            self.check_connected()?;
            let ack = self
                .context
                .publish(streams::subject(topic.id), payload)
                .await
                .map_err(|err| failed("publish", err))?;
            pending_acks.push(ack);
        }
        // Each receipt is JetStream's acknowledgement that the message is stored on the
        // stream's replicas.
        let receipts =
            futures::future::join_all(pending_acks.into_iter().map(IntoFuture::into_future)).await;
        // A publish is JetStream's commit: it ends when every replica has stored the batch.
        crate::metrics::record_commit("jetstream", started.elapsed(), receipts.len());
        receipts
            .into_iter()
            .map(|receipt| {
                let receipt = receipt.map_err(|err| failed("publish", err))?;
                Ok(Published {
                    seq: receipt.sequence,
                    publish_time: now,
                })
            })
            .collect()
    }

    fn pending(&self, _subscription: &str) -> Result<Vec<PendingEntry>, StoreError> {
        Err(StoreError::Unsupported {
            operation: "listing a pending set",
        })
    }

    fn pending_from(
        &self,
        _subscription: &str,
        _from: u64,
        _limit: usize,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        Err(StoreError::Unsupported {
            operation: "listing a pending set",
        })
    }

    fn pending_count(&self, subscription: &str) -> Result<u64, StoreError> {
        self.blocking("counting a pending set", async {
            let record = self
                .subscription(subscription)
                .ok_or_else(|| StoreError::SubscriptionNotFound(subscription.to_owned()))?;
            let info = streams::consumer_info(&self.context, &record).await?;
            Ok(info.num_pending + info.num_ack_pending as u64)
        })
    }

    fn read(&self, topic: &str, seq: u64) -> Result<Option<StoredMessage>, StoreError> {
        self.blocking("reading a message", self.read_message(topic, seq))
    }

    async fn set_attempts(
        &self,
        _subscription: &str,
        _counts: Vec<(u64, u32)>,
    ) -> Result<(), StoreError> {
        Err(StoreError::Unsupported {
            operation: "setting delivery attempts",
        })
    }

    async fn ack(&self, _subscription: &str, _seqs: Vec<u64>) -> Result<(), StoreError> {
        Err(StoreError::Unsupported {
            operation: "acknowledging by sequence number",
        })
    }

    async fn dead_letter(
        &self,
        _subscription: &str,
        _seq: u64,
        topic: &str,
        message: NewMessage,
        now: SystemTime,
    ) -> Result<Published, StoreError> {
        // The caller ends the original delivery on its consumer after this returns. The two
        // steps are not atomic, so a crash between them can dead-letter a message twice.
        let receipts = self
            .publish(
                vec![TopicMessage {
                    topic: topic.to_owned(),
                    message,
                }],
                now,
            )
            .await?;
        receipts
            .into_iter()
            .next()
            .ok_or_else(|| failed("dead-letter", "no receipt"))
    }

    async fn delete_subscription(&self, name: &str) -> Result<(), StoreError> {
        let record = self
            .subscription(name)
            .ok_or_else(|| StoreError::SubscriptionNotFound(name.to_owned()))?;
        streams::delete_consumer(&self.context, &record).await?;
        self.catalog.delete_subscription(name).await
    }

    async fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        let record = self
            .catalog
            .cache()
            .topic(name)
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))?;
        streams::delete_stream(&self.context, record.id).await?;
        let detached: Vec<SubscriptionRecord> = self
            .catalog
            .cache()
            .subscriptions()
            .into_iter()
            .filter(|subscription| subscription.topic_id == record.id)
            .collect();
        for mut subscription in detached {
            subscription.spec.topic = super::DELETED_TOPIC.to_owned();
            self.catalog.put_subscription(&subscription).await?;
        }
        self.catalog.delete_topic(name).await
    }

    async fn update_topic(
        &self,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicRecord, StoreError> {
        let mut record = self
            .catalog
            .cache()
            .topic(name)
            .ok_or_else(|| StoreError::TopicNotFound(name.to_owned()))?;
        record.settings = settings;
        streams::ensure_stream(&self.context, &record, self.replicas).await?;
        self.catalog.put_topic(&record).await?;
        Ok(record)
    }

    async fn create_snapshot(
        &self,
        _name: &str,
        _subscription: &str,
        _now: SystemTime,
    ) -> Result<SnapshotRecord, StoreError> {
        Err(StoreError::Unsupported {
            operation: "snapshots",
        })
    }

    fn snapshots(&self) -> Vec<SnapshotRecord> {
        Vec::new()
    }

    async fn delete_snapshot(&self, name: &str) -> Result<(), StoreError> {
        Err(StoreError::SnapshotNotFound(name.to_owned()))
    }

    async fn seek(
        &self,
        subscription: &str,
        target: SeekTarget,
        _now: SystemTime,
    ) -> Result<Vec<PendingEntry>, StoreError> {
        let record = self
            .subscription(subscription)
            .ok_or_else(|| StoreError::SubscriptionNotFound(subscription.to_owned()))?;
        match target {
            SeekTarget::Time(time) => {
                streams::restart_consumer_at(&self.context, &record, time).await?;
                Ok(Vec::new())
            }
            SeekTarget::Snapshot(name) => Err(StoreError::SnapshotNotFound(name)),
        }
    }

    async fn sweep(&self, _now: SystemTime) -> Result<SweepReport, StoreError> {
        // Each stream's maximum age removes old messages on the servers.
        Ok(SweepReport::default())
    }

    fn retained_messages(&self, topic: &str) -> Result<u64, StoreError> {
        self.blocking("counting a topic's messages", async {
            let mut stream = self.topic_stream(topic).await?;
            let info = stream
                .info()
                .await
                .map_err(|err| failed("read the topic's stream", err))?;
            Ok(info.state.messages)
        })
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // A publish returns after JetStream stored it; only acks may still be buffered.
        self.client
            .flush()
            .await
            .map_err(|err| failed("flush the connection", err))
    }
}

/// Rejects a change of the settings that are fixed when a subscription is created.
fn check_fixed_settings(
    existing: &SubscriptionSpec,
    spec: &SubscriptionSpec,
) -> Result<(), StoreError> {
    let conflict = |setting, existing: String| StoreError::SubscriptionConflict {
        name: spec.name.clone(),
        setting,
        existing,
    };
    if existing.topic != spec.topic {
        return Err(conflict("topic", format!("{:?}", existing.topic)));
    }
    if existing.filter != spec.filter {
        return Err(conflict("filter", format!("{:?}", existing.filter)));
    }
    if existing.enable_message_ordering != spec.enable_message_ordering {
        return Err(conflict(
            "enable_message_ordering",
            existing.enable_message_ordering.to_string(),
        ));
    }
    Ok(())
}
