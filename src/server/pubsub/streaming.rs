//! Subscriber.StreamingPull: one task per stream that reads the client's requests, leases
//! messages from the broker within the stream's flow-control limits and sends them.
//!
//! The first request opens the stream: it must name the subscription and set
//! `stream_ack_deadline_seconds` to 10..600, and the call fails with INVALID_ARGUMENT or
//! NOT_FOUND before any response when it does not. Later requests may carry acks, deadline
//! changes and a new stream deadline. A later request that sets the subscription, the
//! flow-control limits or `protocol_version` ends the stream with INVALID_ARGUMENT, as
//! `google/pubsub/v1/pubsub.proto` documents for those fields.
//!
//! Delivery: the task leases at most [`MAX_PULL_MESSAGES`] messages at a time, and only
//! while the stream has fewer than `max_outstanding_messages` unsettled messages and fewer
//! than `max_outstanding_bytes` unsettled bytes (see [`super::outstanding`]). Each lease
//! gets the stream's ack deadline. Responses are split so that each stays within
//! [`MAX_RESPONSE_BYTES`], the default receive limit of gRPC clients. A single message
//! larger than that is sent alone.
//!
//! Ending: the stream never ends with OK, which clients read as the end of the
//! subscription. Server shutdown ends it with UNAVAILABLE, so that clients reconnect. When
//! the client goes away, the messages it was sent keep their leases until their deadline,
//! because clients acknowledge them after reconnecting. Messages that were leased but never
//! handed to the transport are returned at once, without counting a delivery attempt.

mod requests;
mod responses;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use sluice_proto::google::pubsub::v1::streaming_pull_response::SubscriptionProperties;
use sluice_proto::google::pubsub::v1::{
    ReceivedMessage, StreamingPullRequest, StreamingPullResponse,
};
use sluice_proto::prost::Message as _;
use sluice_router::deliver::{BrokerError, Delivery};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn, Instrument as _};

use super::outstanding::StreamLeases;
use super::{names, received, record_receive, status, PubsubService};
use requests::{limit, reject_first_request_fields, stream_ack_deadline};
use responses::{split_responses, MAX_RESPONSE_BYTES};

/// Maximum messages leased in one step, as for a unary Pull.
const MAX_PULL_MESSAGES: usize = 100;
/// Bytes that one leasing step stays under, except for a single larger message.
const PULL_BYTES_BUDGET: usize = MAX_RESPONSE_BYTES;
/// Maximum unsettled messages per stream, whatever `max_outstanding_messages` requests. It
/// bounds the bookkeeping of a stream that sets no limit. The figure is sluice's choice,
/// because Google publishes none.
const MAX_STREAM_OUTSTANDING_MESSAGES: usize = 10_000;
/// How long one leasing step waits for a message before the task looks again.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// Maximum silence on a stream with `protocol_version` 1 or later before the server sends an
/// empty response: the clients' own keepalive period (30 s in the Python, Go and Rust clients).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// Responses queued ahead of the transport. With one, a client that disconnects leaves at
/// most one queued response, whose messages then wait out their deadline.
const RESPONSES_IN_FLIGHT: usize = 1;
/// How long the task tries to queue the status that ends a stream behind unsent responses.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);
/// The status message of streams that server shutdown ends.
const SHUTTING_DOWN: &str =
    "the server is shutting down; open the stream again on a running server";
/// The response stream of StreamingPull.
pub(super) type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<StreamingPullResponse, Status>> + Send + 'static>>;

type Pull = Pin<Box<dyn Future<Output = Result<Vec<Delivery>, BrokerError>> + Send>>;

/// Validates the first request, then starts the task that serves the stream.
///
/// # Errors
///
/// INVALID_ARGUMENT for an invalid first request, NOT_FOUND for an unknown subscription.
pub(super) async fn open(
    service: &PubsubService,
    request: Request<Streaming<StreamingPullRequest>>,
) -> Result<Response<ResponseStream>, Status> {
    let peer = request.remote_addr();
    let mut requests = request.into_inner();

    let mut shutdown = service.shutdown.clone();
    let first = tokio::select! {
        first = requests.message() => first?,
        () = wait_for_shutdown(&mut shutdown) => return Err(Status::unavailable(SHUTTING_DOWN)),
    };
    let first = first.ok_or_else(|| {
        Status::invalid_argument(
            "the stream ended before its first request; send subscription and \
             stream_ack_deadline_seconds first",
        )
    })?;
    let stream = PullStream::from_first_request(service, &first)?;
    if let Err(status) = service
        .apply_stream_acks(&stream.subscription, &first)
        .await
    {
        service.streams.close(&stream.subscription, &stream.leases);
        return Err(status);
    }

    let (responses, outbound) = mpsc::channel(RESPONSES_IN_FLIGHT);
    let span = tracing::debug_span!(
        "streaming_pull",
        subscription = %stream.subscription,
        client_id = %first.client_id,
        peer = ?peer,
    );
    tokio::spawn(stream.run(requests, responses, shutdown).instrument(span));

    // Should the task end without a status, for example by panicking, the stream still ends
    // with UNAVAILABLE rather than OK. Tonic stops reading after the first error, so this
    // item is never sent behind the task's own status.
    let closed = futures::stream::once(async {
        Err(Status::unavailable(
            "the StreamingPull stream closed; open a new one",
        ))
    });
    Ok(Response::new(Box::pin(
        ReceiverStream::new(outbound).chain(closed),
    )))
}

/// The state of one stream, owned by its task.
struct PullStream {
    service: PubsubService,
    subscription: String,
    /// The subscription's ack deadline, which the broker gives each new lease.
    subscription_deadline_secs: u32,
    /// The stream's ack deadline, which replaces it.
    ack_deadline_secs: u32,
    /// `max_outstanding_messages`, at most [`MAX_STREAM_OUTSTANDING_MESSAGES`].
    max_messages: usize,
    /// `None` when the client set no byte limit.
    max_bytes: Option<usize>,
    /// Whether the client declared `protocol_version` 1 or later and so accepts heartbeats.
    heartbeats: bool,
    properties: SubscriptionProperties,
    leases: std::sync::Arc<StreamLeases>,
    /// Responses leased from the broker and not yet handed to the transport.
    outbox: VecDeque<StreamingPullResponse>,
    last_sent: Instant,
    /// Whether a keepalive request is waiting for its heartbeat.
    pong_due: bool,
}

impl PullStream {
    fn from_first_request(
        service: &PubsubService,
        first: &StreamingPullRequest,
    ) -> Result<Self, Status> {
        if first.subscription.is_empty() {
            return Err(Status::invalid_argument(format!(
                "the first request of a stream must set subscription, such as \
                 projects/{}/subscriptions/NAME",
                names::PROJECT
            )));
        }
        let subscription = names::subscription(&first.subscription)?.to_owned();
        let ack_deadline_secs =
            stream_ack_deadline(first.stream_ack_deadline_seconds).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "stream_ack_deadline_seconds is {}; the first request must set it to 10 to \
                     600 seconds",
                    first.stream_ack_deadline_seconds
                ))
            })?;
        let spec = service
            .broker
            .subscription_spec(&subscription)
            .map_err(|err| status::from_broker(&err))?;
        if let Some(push) = &spec.push {
            return Err(Status::failed_precondition(format!(
                "subscription {subscription:?} pushes its messages to {:?}; StreamingPull \
                 serves pull subscriptions only, so remove its push endpoint first",
                push.endpoint
            )));
        }
        let leases = service.streams.open(&subscription, &first.client_id);
        Ok(PullStream {
            service: service.clone(),
            subscription,
            subscription_deadline_secs: spec.ack_deadline_secs,
            ack_deadline_secs,
            max_messages: limit(first.max_outstanding_messages)
                .map_or(MAX_STREAM_OUTSTANDING_MESSAGES, |max| {
                    max.min(MAX_STREAM_OUTSTANDING_MESSAGES)
                }),
            max_bytes: limit(first.max_outstanding_bytes),
            heartbeats: first.protocol_version >= 1,
            properties: SubscriptionProperties {
                exactly_once_delivery_enabled: false,
                message_ordering_enabled: spec.enable_message_ordering,
            },
            leases,
            outbox: VecDeque::new(),
            last_sent: Instant::now(),
            pong_due: false,
        })
    }

    async fn run(
        mut self,
        mut requests: Streaming<StreamingPullRequest>,
        responses: mpsc::Sender<Result<StreamingPullResponse, Status>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        debug!("stream opened");
        let mut pull = None;
        let ended = self
            .serve(&mut requests, &responses, &mut shutdown, &mut pull)
            .await;
        // The set is closed before the client can see the end of the stream, so that a
        // reconnecting client's new stream finds it closed and takes it over.
        let unsent = self.take_unsent();
        self.service.streams.close(&self.subscription, &self.leases);
        match ended {
            Ok(()) => debug!("stream closed by the client"),
            Err(status) => {
                debug!(grpc.status = ?status.code(), error = status.message(), "stream ended");
                let _ = tokio::time::timeout(FINAL_STATUS_WAIT, responses.send(Err(status))).await;
            }
        }
        // Dropping both halves lets the transport finish the call before the release below,
        // which may wait for a leasing step.
        drop(responses);
        drop(requests);
        self.release(unsent, pull).await;
    }

    /// Serves the stream until the client goes away (`Ok`) or the stream must end with a
    /// status (`Err`).
    async fn serve(
        &mut self,
        requests: &mut Streaming<StreamingPullRequest>,
        responses: &mpsc::Sender<Result<StreamingPullResponse, Status>>,
        shutdown: &mut watch::Receiver<bool>,
        pull: &mut Option<Pull>,
    ) -> Result<(), Status> {
        let mut reading = true;
        loop {
            let now = Instant::now();
            self.leases.expire(now);
            self.queue_heartbeat(now);
            if pull.is_none() && self.outbox.is_empty() {
                *pull = self.start_pull();
            }
            let next_expiry = self.leases.next_deadline();
            let heartbeat_at = (self.heartbeats && self.outbox.is_empty())
                .then_some(self.last_sent + HEARTBEAT_INTERVAL);
            tokio::select! {
                biased;
                () = wait_for_shutdown(shutdown) => return Err(Status::unavailable(SHUTTING_DOWN)),
                permit = responses.reserve(), if !self.outbox.is_empty() => {
                    let Ok(permit) = permit else { return Ok(()) };
                    if let Some(response) = self.outbox.pop_front() {
                        permit.send(Ok(response));
                    }
                    self.last_sent = Instant::now();
                    self.pong_due = false;
                }
                request = requests.message(), if reading => match request {
                    Ok(Some(request)) => self.handle_request(request).await?,
                    // A half-closed stream still receives messages.
                    Ok(None) => reading = false,
                    Err(status) => {
                        debug!(error = %status, "reading the stream failed");
                        return Ok(());
                    }
                },
                leased = poll_pull(pull) => {
                    *pull = None;
                    let deliveries = leased.map_err(|err| {
                        warn!(error = %err, "leasing messages failed");
                        status::from_broker(&err)
                    })?;
                    self.accept(deliveries).await?;
                }
                () = self.leases.settled() => {}
                () = sleep_until(next_expiry) => {}
                () = sleep_until(heartbeat_at) => {}
                () = responses.closed() => return Ok(()),
            }
        }
    }

    /// Applies a request after the first one.
    async fn handle_request(&mut self, request: StreamingPullRequest) -> Result<(), Status> {
        reject_first_request_fields(&request)?;
        if request.stream_ack_deadline_seconds != 0 {
            self.ack_deadline_secs = stream_ack_deadline(request.stream_ack_deadline_seconds)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "stream_ack_deadline_seconds is {}; use 10 to 600 seconds, or 0 to keep \
                         the stream's deadline",
                        request.stream_ack_deadline_seconds
                    ))
                })?;
        }
        let is_keepalive = request.ack_ids.is_empty() && request.modify_deadline_ack_ids.is_empty();
        self.service
            .apply_stream_acks(&self.subscription, &request)
            .await?;
        if is_keepalive && self.heartbeats {
            self.pong_due = true;
        }
        Ok(())
    }

    /// Queues an empty response for a stream that accepts heartbeats, when a keepalive
    /// request waits for one or the stream has been silent for [`HEARTBEAT_INTERVAL`]. A
    /// queued response with messages also serves as the reply to a keepalive.
    fn queue_heartbeat(&mut self, now: Instant) {
        if !self.heartbeats || !self.outbox.is_empty() {
            return;
        }
        if self.pong_due || now >= self.last_sent + HEARTBEAT_INTERVAL {
            self.outbox.push_back(self.response(Vec::new()));
        }
    }

    /// Starts leasing as many messages as the flow-control limits leave room for, or returns
    /// `None` when they leave none.
    fn start_pull(&self) -> Option<Pull> {
        let (max, max_bytes) = self.pull_size()?;
        let broker = self.service.broker.clone();
        let subscription = self.subscription.clone();
        Some(Box::pin(async move {
            broker
                .pull_within(&subscription, max, max_bytes, PULL_WAIT)
                .await
        }))
    }

    /// Returns how many messages, and how many bytes of them, the flow-control limits leave
    /// room for in the next leasing step.
    fn pull_size(&self) -> Option<(usize, usize)> {
        let (messages, bytes) = self.leases.usage();
        let message_room = self.max_messages.checked_sub(messages).filter(|n| *n > 0)?;
        let byte_room = match self.max_bytes {
            Some(max) => max.checked_sub(bytes).filter(|n| *n > 0)?,
            None => usize::MAX,
        };
        // The broker counts data, attributes and ordering key; the stream's usage counts the
        // encoded message, a few bytes more each, so a step may overshoot by that much.
        Some((
            message_room.min(MAX_PULL_MESSAGES),
            byte_room.min(PULL_BYTES_BUDGET),
        ))
    }

    /// Records leased messages against the stream's limits, queues them in responses and
    /// gives them the stream's ack deadline.
    async fn accept(&mut self, deliveries: Vec<Delivery>) -> Result<(), Status> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(u64::from(self.ack_deadline_secs));
        record_receive(&self.subscription, &deliveries);
        let messages: Vec<ReceivedMessage> = deliveries.into_iter().map(received).collect();
        let ack_ids: Vec<String> = messages.iter().map(|m| m.ack_id.clone()).collect();
        for message in &messages {
            self.leases
                .add(message.ack_id.clone(), message.encoded_len(), deadline);
        }
        let batch = split_responses(messages, self.properties);
        self.outbox.extend(batch);
        if self.ack_deadline_secs != self.subscription_deadline_secs {
            self.service
                .broker
                .modify_ack_deadline(&self.subscription, &ack_ids, self.ack_deadline_secs)
                .await
                .map_err(|err| status::from_broker(&err))?;
        }
        Ok(())
    }

    fn response(&self, received_messages: Vec<ReceivedMessage>) -> StreamingPullResponse {
        StreamingPullResponse {
            received_messages,
            subscription_properties: Some(self.properties),
            ..Default::default()
        }
    }

    /// Takes the messages of the responses not yet handed to the transport out of the
    /// stream's flow-control set and returns their ack IDs.
    fn take_unsent(&mut self) -> Vec<String> {
        let unsent: Vec<String> = self
            .outbox
            .drain(..)
            .flat_map(|response| response.received_messages)
            .map(|message| message.ack_id)
            .collect();
        self.leases.forget(&unsent);
        unsent
    }

    /// Returns the messages that were leased but never handed to the transport, `unsent`
    /// and those of the leasing step still running, without counting a delivery attempt.
    async fn release(self, mut unsent: Vec<String>, pull: Option<Pull>) {
        if let Some(pull) = pull {
            match pull.await {
                Ok(deliveries) => unsent.extend(deliveries.into_iter().map(|d| d.ack_id)),
                Err(err) => debug!(error = %err, "the last leasing step failed"),
            }
        }
        if !unsent.is_empty() {
            let released = self
                .service
                .broker
                .return_unsent(&self.subscription, &unsent)
                .await;
            if let Err(err) = released {
                warn!(count = unsent.len(), error = %err, "releasing unsent messages failed");
            }
        }
        debug!(released = unsent.len(), "stream closed");
    }
}

/// Completes with the leasing step's result, or never when no step is running.
async fn poll_pull(pull: &mut Option<Pull>) -> Result<Vec<Delivery>, BrokerError> {
    match pull.as_mut() {
        Some(pull) => pull.await,
        None => std::future::pending().await,
    }
}

/// Completes when the server starts shutting down, or when its shutdown signal is gone.
async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Completes at `at`, or never for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sluice_router::deliver::Broker;
    use sluice_router::store::{PushConfig, SledStore, Store, SubscriptionSpec};

    use super::*;

    #[tokio::test]
    async fn push_subscription_is_failed_precondition() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).expect("store opens"));
        let broker = Arc::new(Broker::open(store).expect("broker opens"));
        broker.create_topic("events").await.expect("topic created");
        let mut spec = SubscriptionSpec::new("pushed", "events");
        spec.push = Some(PushConfig {
            endpoint: "http://127.0.0.1:9/push".to_owned(),
            attributes: Default::default(),
            format: Default::default(),
            max_event_age_secs: None,
        });
        broker
            .create_subscription(spec)
            .await
            .expect("subscription created");
        let (_stop, shutdown) = watch::channel(false);
        let service = PubsubService::new(broker, shutdown);
        let first = StreamingPullRequest {
            subscription: "projects/local/subscriptions/pushed".to_owned(),
            stream_ack_deadline_seconds: 60,
            ..Default::default()
        };
        let status = PullStream::from_first_request(&service, &first)
            .err()
            .expect("a push subscription is rejected");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
        assert!(status.message().contains("127.0.0.1:9/push"), "{status}");
    }
}
