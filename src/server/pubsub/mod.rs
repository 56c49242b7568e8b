//! google.pubsub.v1 Publisher and Subscriber over the broker.
//!
//! This file covers publishing, pulling (unary and [`streaming`]), acknowledging and deadline
//! changes. The admin calls are in [`topics`], [`subscriptions`] and [`snapshots`] (with
//! Seek), which check their requests with [`settings`], return the resources that
//! [`resources`] builds and paginate lists with [`pages`]. Resource names map to the store's
//! names as [`names`](super::names) describes.
//!
//! Topics and subscriptions come from the configuration at start and from these calls. A
//! configured one that a call deletes or changes is created again, with the configured
//! settings, at the next start.

/// Bytes of message data, attributes and ordering keys that one unary Pull response stays
/// under: the default receive limit of gRPC clients, less room for the response's framing.
const MAX_PULL_RESPONSE_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

mod outstanding;
mod pages;
mod resources;
mod settings;
mod snapshots;
mod streaming;
mod subscriptions;
mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_proto::google::protobuf::{Empty, FieldMask, Timestamp};
use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_proto::google::pubsub::v1::publisher_server::Publisher;
use sluice_proto::google::pubsub::v1::subscriber_server::Subscriber;
use sluice_router::deliver::{Broker, Delivery};
use sluice_router::store::{NewMessage, SubscriptionSpec, TopicMessage, TopicRecord};
use sluice_router::trace_context;
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use super::{names, status};
use outstanding::StreamRegistry;

/// Most messages in one publish request, as the service allows.
const MAX_PUBLISH_MESSAGES: usize = 1000;
// The message, attribute and request size limits are `[limits]` settings, read through
// `limits::get()`. A publish request's data, summed over its messages, has the same limit
// as one message, as in Pub/Sub.
/// How long a pull with nothing to deliver waits for a message before it returns empty.
const PULL_WAIT: Duration = Duration::from_secs(2);
/// Most messages one pull returns, as the emulator caps it; this also keeps responses small.
const MAX_PULL_MESSAGES: usize = 100;

/// Maximum ack deadline a deadline change may set, in seconds.
const MAX_ACK_DEADLINE_SECS: u32 = 600;

/// The Pub/Sub services, sharing the broker.
#[derive(Debug, Clone)]
pub(crate) struct PubsubService {
    broker: Arc<Broker>,
    /// The flow-control sets of the StreamingPull streams, which unary acks and deadline
    /// changes update as well.
    streams: Arc<StreamRegistry>,
    /// Becomes true when the server shuts down; open StreamingPull streams then end with
    /// UNAVAILABLE, so that the graceful shutdown does not wait for their clients.
    shutdown: watch::Receiver<bool>,
    /// Held by the admin calls that check the catalog and then change it, so that two
    /// CreateTopic calls for the same name cannot both succeed.
    catalog: Arc<Mutex<()>>,
}

fn timestamp(time: SystemTime) -> Timestamp {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
    }
}

/// Records the handover of each message to a pull or streaming-pull client as a consumer
/// span in the message's trace, so that a trace shows every delivery attempt to a pull
/// client too. It records nothing while traces are not exported.
fn record_receive(subscription: &str, deliveries: &[Delivery]) {
    if !trace_context::is_active() {
        return;
    }
    for delivery in deliveries {
        let span = tracing::info_span!(
            "receive",
            otel.name = %format_args!("receive {subscription}"),
            otel.kind = "consumer",
            messaging.system = "gcp_pubsub",
            messaging.operation.type = "receive",
            messaging.destination.subscription.name = %subscription,
            messaging.message.id = %delivery.message.id(),
            attempt = i64::from(delivery.attempts()),
        );
        trace_context::set_parent(&span, &delivery.message.message.attributes);
    }
}

fn received(delivery: Delivery) -> pubsub::ReceivedMessage {
    let stored = delivery.message;
    let message = pubsub::PubsubMessage {
        message_id: stored.id(),
        publish_time: Some(timestamp(stored.publish_time)),
        data: stored.message.data,
        attributes: stored.message.attributes.into_iter().collect(),
        ordering_key: stored.message.ordering_key,
    };
    pubsub::ReceivedMessage {
        ack_id: delivery.ack_id,
        message: Some(message),
        delivery_attempt: i32::try_from(delivery.delivery_attempt).unwrap_or(i32::MAX),
    }
}

/// Checks one published message as the service does and converts it.
fn new_message(index: usize, message: pubsub::PubsubMessage) -> Result<NewMessage, Status> {
    if message.data.is_empty() && message.attributes.is_empty() {
        return Err(Status::invalid_argument(format!(
            "message {index} has neither data nor attributes; every message needs at least one"
        )));
    }
    let size = message.data.len()
        + message.ordering_key.len()
        + message
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let limits = super::limits::get();
    if message.attributes.len() > limits.max_attributes {
        return Err(Status::invalid_argument(format!(
            "message {index} has {} attributes, over the limit of {} (max_attributes)",
            message.attributes.len(),
            limits.max_attributes
        )));
    }
    for (key, value) in &message.attributes {
        if key.is_empty() || key.len() > limits.max_attribute_key_bytes {
            return Err(Status::invalid_argument(format!(
                "message {index}: attribute key {key:?} must be 1 to {} bytes \
                 (max_attribute_key_bytes)",
                limits.max_attribute_key_bytes
            )));
        }
        // Google's client libraries write their trace context under `googclient_` names when
        // their OpenTelemetry tracing is on (google-cloud-pubsub 2.44 for Python does), so
        // those keys are allowed.
        let client_key = key.starts_with(sluice_router::trace_context::GOOGLE_CLIENT_PREFIX);
        if key.starts_with("goog") && !client_key {
            return Err(Status::invalid_argument(format!(
                "message {index}: attribute key {key:?} starts with \"goog\", which Pub/Sub reserves"
            )));
        }
        if value.len() > limits.max_attribute_value_bytes {
            return Err(Status::invalid_argument(format!(
                "message {index}: the value of attribute {key:?} is {} bytes, over the limit \
                 of {} (max_attribute_value_bytes)",
                value.len(),
                limits.max_attribute_value_bytes
            )));
        }
    }
    if size > limits.max_message_bytes {
        return Err(Status::invalid_argument(format!(
            "message {index} is {size} bytes, over the limit of {} (max_message_bytes); send \
             large payloads by reference",
            limits.max_message_bytes
        )));
    }
    Ok(NewMessage {
        data: message.data,
        attributes: message.attributes.into_iter().collect::<BTreeMap<_, _>>(),
        ordering_key: message.ordering_key,
    })
}

impl PubsubService {
    /// Builds the services over `broker`; `shutdown` ends their StreamingPull streams.
    pub(crate) fn new(broker: Arc<Broker>, shutdown: watch::Receiver<bool>) -> Self {
        PubsubService {
            broker,
            streams: Arc::default(),
            shutdown,
            catalog: Arc::default(),
        }
    }

    /// Acknowledges deliveries and frees their flow-control slots on StreamingPull streams.
    async fn acknowledge_ids(&self, subscription: &str, ack_ids: &[String]) -> Result<(), Status> {
        self.broker
            .ack(subscription, ack_ids)
            .await
            .map_err(|err| status::from_broker(&err))?;
        self.streams.settle(subscription, ack_ids);
        Ok(())
    }

    /// Moves the deadline of deliveries to `seconds` from now, 0 being a nack, and records
    /// the change for the flow control of StreamingPull streams.
    async fn modify_deadlines(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: u32,
    ) -> Result<(), Status> {
        self.broker
            .modify_ack_deadline(subscription, ack_ids, seconds)
            .await
            .map_err(|err| status::from_broker(&err))?;
        if seconds == 0 {
            self.streams.settle(subscription, ack_ids);
        } else {
            let deadline = Instant::now() + Duration::from_secs(u64::from(seconds));
            self.streams.extend(subscription, ack_ids, deadline);
        }
        Ok(())
    }

    fn check_topic(&self, name: &str) -> Result<(), Status> {
        if self.broker.store().topics().iter().any(|t| t.name == name) {
            Ok(())
        } else {
            Err(status::topic_not_found(name))
        }
    }

    fn find_topic(&self, name: &str) -> Option<TopicRecord> {
        self.broker
            .store()
            .topics()
            .into_iter()
            .find(|topic| topic.name == name)
    }

    /// Returns the message retention of a topic, `None` when it has none or does not exist.
    fn topic_retention(&self, name: &str) -> Option<u64> {
        self.find_topic(name)
            .and_then(|topic| topic.settings.message_retention_secs)
    }

    /// Returns the settings of a subscription as deliveries use them now.
    fn live_spec(&self, name: &str) -> Result<SubscriptionSpec, Status> {
        self.broker
            .subscription_spec(name)
            .map_err(|err| status::from_broker(&err))
    }
}

/// Returns the paths of an update request's mask, which must name at least one field.
/// `request` names the request type in the error, as Pub/Sub does.
fn update_paths(mask: Option<&FieldMask>, request: &str) -> Result<Vec<String>, Status> {
    match mask {
        Some(mask) if !mask.paths.is_empty() => Ok(mask.paths.clone()),
        _ => Err(Status::invalid_argument(format!(
            "The update_mask in the {request} must be set, and must contain a non-empty paths \
             list."
        ))),
    }
}

#[tonic::async_trait]
impl Publisher for PubsubService {
    async fn create_topic(
        &self,
        request: Request<pubsub::Topic>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        topics::create(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn update_topic(
        &self,
        request: Request<pubsub::UpdateTopicRequest>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        topics::update(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn publish(
        &self,
        request: Request<pubsub::PublishRequest>,
    ) -> Result<Response<pubsub::PublishResponse>, Status> {
        let request = request.into_inner();
        let topic = names::topic(&request.topic)?.to_owned();
        if request.messages.is_empty() {
            return Err(Status::invalid_argument(
                "the publish request has no messages",
            ));
        }
        if request.messages.len() > MAX_PUBLISH_MESSAGES {
            return Err(Status::invalid_argument(format!(
                "the publish request has {} messages, over the limit of {MAX_PUBLISH_MESSAGES}; split it",
                request.messages.len()
            )));
        }
        let request_bytes: usize = request.messages.iter().map(|m| m.data.len()).sum();
        let max_data_bytes = super::limits::get().max_message_bytes;
        if request_bytes > max_data_bytes {
            return Err(Status::invalid_argument(format!(
                "the publish request carries {request_bytes} bytes of data, over the limit of \
                 {max_data_bytes} (max_message_bytes, which caps the data of a whole \
                 request too); split it into smaller requests"
            )));
        }
        self.check_topic(&topic)?;
        let messages = request
            .messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                Ok(TopicMessage {
                    topic: topic.clone(),
                    message: new_message(index, message)?,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let receipts = self
            .broker
            .publish(messages)
            .await
            .map_err(|err| status::from_store(&err))?;
        let message_ids = receipts.iter().map(|r| r.seq.to_string()).collect();
        Ok(Response::new(pubsub::PublishResponse { message_ids }))
    }

    async fn get_topic(
        &self,
        request: Request<pubsub::GetTopicRequest>,
    ) -> Result<Response<pubsub::Topic>, Status> {
        topics::get(self, request.get_ref()).map(Response::new)
    }

    async fn list_topics(
        &self,
        request: Request<pubsub::ListTopicsRequest>,
    ) -> Result<Response<pubsub::ListTopicsResponse>, Status> {
        topics::list(self, request.get_ref()).map(Response::new)
    }

    async fn list_topic_subscriptions(
        &self,
        request: Request<pubsub::ListTopicSubscriptionsRequest>,
    ) -> Result<Response<pubsub::ListTopicSubscriptionsResponse>, Status> {
        topics::list_subscriptions(self, request.get_ref()).map(Response::new)
    }

    async fn list_topic_snapshots(
        &self,
        request: Request<pubsub::ListTopicSnapshotsRequest>,
    ) -> Result<Response<pubsub::ListTopicSnapshotsResponse>, Status> {
        topics::list_snapshots(self, request.get_ref()).map(Response::new)
    }

    async fn delete_topic(
        &self,
        request: Request<pubsub::DeleteTopicRequest>,
    ) -> Result<Response<Empty>, Status> {
        topics::delete(self, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn detach_subscription(
        &self,
        request: Request<pubsub::DetachSubscriptionRequest>,
    ) -> Result<Response<pubsub::DetachSubscriptionResponse>, Status> {
        subscriptions::detach(self, request.get_ref()).map(Response::new)
    }
}

/// Returns a deadline change in seconds, checked to be within 0..600; `field` names the
/// request field in the error.
fn ack_deadline_seconds(value: i32, field: &str) -> Result<u32, Status> {
    u32::try_from(value)
        .ok()
        .filter(|seconds| *seconds <= MAX_ACK_DEADLINE_SECS)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "{field} is {value}; use 0 to {MAX_ACK_DEADLINE_SECS}"
            ))
        })
}

#[tonic::async_trait]
impl Subscriber for PubsubService {
    async fn create_subscription(
        &self,
        request: Request<pubsub::Subscription>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        subscriptions::create(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_subscription(
        &self,
        request: Request<pubsub::GetSubscriptionRequest>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        subscriptions::get(self, request.get_ref()).map(Response::new)
    }

    async fn update_subscription(
        &self,
        request: Request<pubsub::UpdateSubscriptionRequest>,
    ) -> Result<Response<pubsub::Subscription>, Status> {
        subscriptions::update(self, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_subscriptions(
        &self,
        request: Request<pubsub::ListSubscriptionsRequest>,
    ) -> Result<Response<pubsub::ListSubscriptionsResponse>, Status> {
        subscriptions::list(self, request.get_ref()).map(Response::new)
    }

    async fn delete_subscription(
        &self,
        request: Request<pubsub::DeleteSubscriptionRequest>,
    ) -> Result<Response<Empty>, Status> {
        subscriptions::delete(self, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn modify_ack_deadline(
        &self,
        request: Request<pubsub::ModifyAckDeadlineRequest>,
    ) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let name = names::subscription(&request.subscription)?;
        if request.ack_ids.is_empty() {
            return Err(Status::invalid_argument("No ack ids specified"));
        }
        let seconds = ack_deadline_seconds(request.ack_deadline_seconds, "ack_deadline_seconds")?;
        self.modify_deadlines(&name, &request.ack_ids, seconds)
            .await?;
        Ok(Response::new(()))
    }

    async fn acknowledge(
        &self,
        request: Request<pubsub::AcknowledgeRequest>,
    ) -> Result<Response<Empty>, Status> {
        let request = request.into_inner();
        let name = names::subscription(&request.subscription)?;
        if request.ack_ids.is_empty() {
            return Err(Status::invalid_argument("No ack ids specified"));
        }
        self.acknowledge_ids(&name, &request.ack_ids).await?;
        Ok(Response::new(()))
    }

    async fn pull(
        &self,
        request: Request<pubsub::PullRequest>,
    ) -> Result<Response<pubsub::PullResponse>, Status> {
        let request = request.into_inner();
        let name = names::subscription(&request.subscription)?;
        let max = usize::try_from(request.max_messages)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "max_messages is {}; use a positive number",
                    request.max_messages
                ))
            })?;
        #[allow(
            deprecated,
            reason = "clients still send return_immediately, and it is honoured"
        )]
        let wait = if request.return_immediately {
            Duration::ZERO
        } else {
            PULL_WAIT
        };
        // Default gRPC clients read at most 4 MiB per response, so a response holds more than
        // one message only while it stays under that; a larger message comes alone.
        let deliveries = self
            .broker
            .pull_within(
                &name,
                max.min(MAX_PULL_MESSAGES),
                MAX_PULL_RESPONSE_BYTES,
                wait,
            )
            .await
            .map_err(|err| status::from_broker(&err))?;
        record_receive(&name, &deliveries);
        let received_messages = deliveries.into_iter().map(received).collect();
        Ok(Response::new(pubsub::PullResponse { received_messages }))
    }

    type StreamingPullStream = streaming::ResponseStream;

    async fn streaming_pull(
        &self,
        request: Request<Streaming<pubsub::StreamingPullRequest>>,
    ) -> Result<Response<Self::StreamingPullStream>, Status> {
        streaming::open(self, request).await
    }

    async fn modify_push_config(
        &self,
        request: Request<pubsub::ModifyPushConfigRequest>,
    ) -> Result<Response<Empty>, Status> {
        subscriptions::modify_push_config(self, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn get_snapshot(
        &self,
        request: Request<pubsub::GetSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        snapshots::get(self, request.get_ref()).map(Response::new)
    }

    async fn list_snapshots(
        &self,
        request: Request<pubsub::ListSnapshotsRequest>,
    ) -> Result<Response<pubsub::ListSnapshotsResponse>, Status> {
        snapshots::list(self, request.get_ref()).map(Response::new)
    }

    async fn create_snapshot(
        &self,
        request: Request<pubsub::CreateSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        snapshots::create(self, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn update_snapshot(
        &self,
        request: Request<pubsub::UpdateSnapshotRequest>,
    ) -> Result<Response<pubsub::Snapshot>, Status> {
        snapshots::update(self, request.get_ref()).map(Response::new)
    }

    async fn delete_snapshot(
        &self,
        request: Request<pubsub::DeleteSnapshotRequest>,
    ) -> Result<Response<Empty>, Status> {
        snapshots::delete(self, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn seek(
        &self,
        request: Request<pubsub::SeekRequest>,
    ) -> Result<Response<pubsub::SeekResponse>, Status> {
        snapshots::seek(self, request.get_ref())
            .await
            .map(Response::new)
    }
}
