//! Push delivery: a [`DeliveryHandler`] that POSTs each message of a push subscription to its
//! endpoint, in the format the subscription's push config names:
//!
//! - [`PushFormat::Wrapped`]: Pub/Sub's JSON body, `{"message": {...}, "subscription": ...}`;
//! - [`PushFormat::Unwrapped`]: the message data as the body, with optional metadata headers;
//! - [`PushFormat::Background`]: the legacy background event of Cloud Functions as JSON,
//!   `{"context": {...}, "data": ...}`, from [`message::background_event`];
//! - [`PushFormat::CloudEvent`]: a CloudEvent in binary mode, `ce-*` headers and the data as
//!   the body, from [`message::cloudevent`].
//!
//! [`PushHandler`] runs under a runner ([`crate::runner::spawn_for_deliveries`]), which pulls
//! the subscription, extends leases and settles each delivery by the handler's result. The
//! handler reads the endpoint, the request format and the ack deadline from the
//! subscription's settings at each delivery, so a change of the push config or of the ack
//! deadline applies from the next message on.
//!
//! - A response with a status in [`ACK_STATUS_CODES`] acknowledges the message.
//! - Any other status, a connection error, and a request that runs past the ack deadline
//!   are [`HandlerError::Retryable`]: the runner nacks the delivery with the backoff, or
//!   dead-letters it after the dead-letter policy's last attempt. A failure is never
//!   acknowledged, whatever the format.
//! - A message published longer ago than the push config's `max_event_age_secs` is
//!   acknowledged without a request, counted in [`PushStats::dropped_stale`] and logged with
//!   its id and age.
//!
//! [`EndpointLimits`] bounds the requests in flight to one endpoint URL, across every
//! subscription that pushes to it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use sluice_router::deliver::{format_time, Delivery};
use sluice_router::store::{PushConfig, PushFormat, SubscriptionSpec};
use sluice_router::trace_context;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::contract::HandlerError;
use crate::events::message::{self, MessageNames};
use crate::events::CloudEvent;
use crate::log_limit::LogLimiter;
use crate::runner::DeliveryHandler;

/// The HTTP statuses that acknowledge a pushed message, as Pub/Sub documents them. Google's
/// emulator (0.8.20) acknowledges 203 instead of 202.
pub const ACK_STATUS_CODES: [u16; 5] = [102, 200, 201, 202, 204];

/// Requests in flight to one endpoint URL when the server does not set another bound. It
/// keeps a slow endpoint from collecting one open request per pending message. The number is
/// a choice, not Pub/Sub's: Pub/Sub adapts its rate to the endpoint's responses instead.
pub const DEFAULT_MAX_REQUESTS_PER_ENDPOINT: usize = 16;

/// The `User-Agent` of push requests, which is the one Pub/Sub sends, so that endpoints that
/// recognise Pub/Sub by it accept sluice too.
pub const USER_AGENT: &str = "CloudPubSub-Google";

/// The metadata headers of an unwrapped push with `write_metadata`.
const MESSAGE_ID_HEADER: &str = "x-goog-pubsub-message-id";
const SUBSCRIPTION_HEADER: &str = "x-goog-pubsub-subscription-name";
const PUBLISH_TIME_HEADER: &str = "x-goog-pubsub-publish-time";
/// The ordering key header that Pub/Sub documents: metadata goes to `x-goog-pubsub-<KEY>`.
const ORDERING_KEY_HEADER: &str = "x-goog-pubsub-ordering-key";
/// The ordering key header that Google's emulator (0.8.20) writes instead.
const EMULATOR_ORDERING_KEY_HEADER: &str = "x-goog-ordering-key";

/// Returns whether a response status acknowledges the pushed message.
///
/// The HTTP client waits past interim (1xx) responses for the final one, so 102 Processing
/// acknowledges only when an endpoint sends it as its final status.
pub fn is_ack(status: StatusCode) -> bool {
    ACK_STATUS_CODES.contains(&status.as_u16())
}

/// Builds the JSON body of a wrapped push, which
/// [`message::pubsub_push_json`] describes.
pub fn wrapped_body(delivery: &Delivery, subscription_resource: &str) -> Vec<u8> {
    message::pubsub_push_json(delivery, subscription_resource)
        .to_string()
        .into_bytes()
}

/// Builds the headers and body of a CloudEvent push in binary mode. A header whose name or
/// value is not valid in HTTP is left out and logged at debug level. The events of
/// [`message::cloudevent`] have none: their attribute names are lower-case letters and
/// digits, and [`CloudEvent::to_binary`] percent-encodes what a header value cannot carry.
pub fn cloudevent_request(event: &CloudEvent) -> (HeaderMap, Vec<u8>) {
    let request = event.to_binary();
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => {
                debug!(header = %name, "CloudEvent attribute is not a valid HTTP header; left out")
            }
        }
    }
    (headers, request.body)
}

/// Builds the headers of an unwrapped push, whose body is the message data as published.
///
/// The content type is `application/octet-stream`. With `write_metadata`, each attribute
/// becomes a header of its own name, which can replace that content type, and the message id,
/// subscription, publish time and ordering key go into `x-goog-pubsub-*` headers. The
/// ordering key is written under both the documented name and the emulator's
/// `x-goog-ordering-key`. The metadata headers are written after the attributes, so an
/// attribute cannot replace them. An attribute whose key or value is not a valid header is
/// left out and logged at debug level.
pub fn unwrapped_headers(
    delivery: &Delivery,
    subscription_resource: &str,
    write_metadata: bool,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if !write_metadata {
        return headers;
    }

    let stored = &delivery.message;
    for (key, value) in &stored.message.attributes {
        match (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => debug!(attribute = %key, "attribute is not a valid HTTP header; left out"),
        }
    }
    let mut metadata = vec![
        (MESSAGE_ID_HEADER, stored.id()),
        (SUBSCRIPTION_HEADER, subscription_resource.to_owned()),
        (PUBLISH_TIME_HEADER, format_time(stored.publish_time)),
    ];
    if !stored.message.ordering_key.is_empty() {
        metadata.push((ORDERING_KEY_HEADER, stored.message.ordering_key.clone()));
        metadata.push((
            EMULATOR_ORDERING_KEY_HEADER,
            stored.message.ordering_key.clone(),
        ));
    }
    for (name, value) in metadata {
        match HeaderValue::from_str(&value) {
            Ok(value) => {
                headers.insert(HeaderName::from_static(name), value);
            }
            Err(_) => debug!(
                header = name,
                "metadata is not a valid HTTP header value; left out"
            ),
        }
    }
    headers
}

/// The bound on requests in flight per endpoint URL, shared by every push handler of a
/// server so that two subscriptions pushing to one URL share one bound.
#[derive(Debug, Clone)]
pub struct EndpointLimits {
    max_requests: usize,
    /// One semaphore per endpoint URL, created at the first request to it.
    semaphores: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl EndpointLimits {
    /// Returns limits that allow `max_requests` requests in flight per endpoint, at least 1.
    pub fn new(max_requests: usize) -> Self {
        EndpointLimits {
            max_requests: max_requests.max(1),
            semaphores: Arc::default(),
        }
    }

    /// Returns the number of requests in flight allowed per endpoint.
    pub fn max_requests(&self) -> usize {
        self.max_requests
    }

    /// Waits until a request to `endpoint` may start. The request may run while the returned
    /// permit lives.
    pub async fn acquire(&self, endpoint: &str) -> OwnedSemaphorePermit {
        let semaphore = self
            .semaphores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(endpoint.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_requests)))
            .clone();
        semaphore
            .acquire_owned()
            .await
            .expect("acquiring fails only on a closed semaphore, and nothing closes these")
    }

    /// Forgets the endpoints outside `in_use` that have no request in flight, so that the map
    /// does not keep every URL a subscription ever pushed to.
    pub fn retain(&self, in_use: &HashSet<&str>) {
        self.semaphores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|endpoint, semaphore| {
                in_use.contains(endpoint.as_str()) || Arc::strong_count(semaphore) > 1
            });
    }
}

/// Push outcomes of one subscription since the process started.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Requests whose response status acknowledged the message.
    pub succeeded: AtomicU64,
    /// Requests that failed: another status, a connection error or a timeout.
    pub failed: AtomicU64,
    /// Messages acknowledged without a request because they were older than the push
    /// config's `max_event_age_secs`.
    pub dropped_stale: AtomicU64,
}

/// A source of the bearer token that authenticates push requests to their endpoint, such as
/// the OIDC-style token of Pub/Sub's authenticated push.
pub trait PushAuthorization: Send + Sync + std::fmt::Debug {
    /// Returns the token for a request to `endpoint`, or `None` to send the request without
    /// an `Authorization` header.
    fn bearer_token(&self, endpoint: &str) -> Option<String>;
}

/// Pushes the messages of one subscription to its endpoint.
#[derive(Debug)]
pub struct PushHandler {
    client: reqwest::Client,
    subscription: String,
    /// The subscription's full name, `projects/{project}/subscriptions/{subscription}`, as the
    /// requests carry it.
    subscription_resource: String,
    /// Returns the full name of a topic from its store name, for the resource and source of
    /// Pub/Sub events.
    topic_resource: fn(&str) -> String,
    /// The push config the handler was started with. It is used when the subscription's
    /// current settings no longer have one, which happens between the removal of the config
    /// and the stop of the runner.
    started_with: PushConfig,
    limits: EndpointLimits,
    stats: Arc<PushStats>,
    /// Limits the warnings about failed pushes, which an endpoint that is down causes for
    /// every message.
    failure_log: LogLimiter,
    /// Signs the `Authorization` header of each request; `None` sends none.
    authorization: Option<Arc<dyn PushAuthorization>>,
}

impl PushHandler {
    /// Returns a handler for `subscription`, whose full resource name is
    /// `subscription_resource` and whose push config is `config` now. `topic_resource` turns
    /// the store name of a message's topic into its full name. `client` should not follow
    /// redirects, so that a 3xx response is a failure as in Pub/Sub.
    pub fn new(
        client: reqwest::Client,
        subscription: String,
        subscription_resource: String,
        topic_resource: fn(&str) -> String,
        config: PushConfig,
        limits: EndpointLimits,
        stats: Arc<PushStats>,
    ) -> Self {
        PushHandler {
            client,
            subscription,
            subscription_resource,
            topic_resource,
            started_with: config,
            limits,
            stats,
            failure_log: LogLimiter::default(),
            authorization: None,
        }
    }

    /// Sends `Authorization: Bearer` with the token of `authorization` on every request.
    #[must_use]
    pub fn with_authorization(mut self, authorization: Arc<dyn PushAuthorization>) -> Self {
        self.authorization = Some(authorization);
        self
    }

    /// Sends one POST request and returns its status, or the error that ended it.
    async fn post(
        &self,
        delivery: &Delivery,
        config: &PushConfig,
        timeout: Duration,
    ) -> Result<StatusCode, reqwest::Error> {
        let request = self.client.post(&config.endpoint).timeout(timeout);
        let request = match config.format {
            PushFormat::Wrapped => request
                .header(CONTENT_TYPE, "application/json")
                .body(wrapped_body(delivery, &self.subscription_resource)),
            PushFormat::Unwrapped { write_metadata } => request
                .headers(unwrapped_headers(
                    delivery,
                    &self.subscription_resource,
                    write_metadata,
                ))
                .body(delivery.message.message.data.clone()),
            PushFormat::Background => {
                let topic = (self.topic_resource)(&delivery.message.topic);
                let event = message::background_event(&delivery.message, &topic);
                request
                    .header(CONTENT_TYPE, "application/json")
                    .body(event.to_json().to_string())
            }
            PushFormat::CloudEvent => {
                let topic = (self.topic_resource)(&delivery.message.topic);
                let names = MessageNames {
                    subscription: &self.subscription_resource,
                    topic: &topic,
                };
                let (headers, body) = cloudevent_request(&message::cloudevent(delivery, names));
                request.headers(headers).body(body)
            }
        };
        // The endpoint continues the message's trace from the push span.
        let attributes = &delivery.message.message.attributes;
        let request =
            match trace_context::outgoing_traceparent(&tracing::Span::current(), attributes) {
                Some(traceparent) => request.header(trace_context::TRACEPARENT, traceparent),
                None => request,
            };
        let token = self
            .authorization
            .as_ref()
            .and_then(|authorization| authorization.bearer_token(&config.endpoint));
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let _permit = self.limits.acquire(&config.endpoint).await;
        let response = request.send().await?;
        Ok(response.status())
    }

    fn failed(&self, delivery: &Delivery, endpoint: &str, reason: String) -> HandlerError {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        if let Some(suppressed) = self.failure_log.allow() {
            warn!(
                subscription = %self.subscription,
                message_id = %delivery.message.id(),
                endpoint,
                attempt = delivery.attempts(),
                error = %reason,
                suppressed,
                "push failed"
            );
        }
        HandlerError::Retryable(format!("push to {endpoint} failed: {reason}"))
    }

    /// Returns whether the message is older than the config's maximum event age, and then
    /// counts and logs it as dropped.
    fn drop_if_stale(&self, delivery: &Delivery, config: &PushConfig) -> bool {
        let Some(max_age_secs) = config.max_event_age_secs else {
            return false;
        };
        // A publish time ahead of this clock counts as age 0.
        let age = SystemTime::now()
            .duration_since(delivery.message.publish_time)
            .unwrap_or_default();
        if age <= Duration::from_secs(max_age_secs) {
            return false;
        }
        self.stats.dropped_stale.fetch_add(1, Ordering::Relaxed);
        warn!(
            subscription = %self.subscription,
            message_id = %delivery.message.id(),
            age_secs = age.as_secs(),
            max_event_age_secs = max_age_secs,
            attempt = delivery.attempts(),
            "stale event dropped without a push"
        );
        true
    }
}

#[async_trait]
impl DeliveryHandler for PushHandler {
    fn name(&self) -> &str {
        "push"
    }

    async fn handle_delivery(
        &self,
        delivery: &Delivery,
        spec: Option<&SubscriptionSpec>,
    ) -> Result<(), HandlerError> {
        let Some(spec) = spec else {
            // The runner could not read the subscription, so it cannot settle the delivery
            // either. The subscription may be gone, and then its message must not be pushed.
            return Err(HandlerError::Retryable(
                "the subscription's settings could not be read".to_owned(),
            ));
        };
        let config = spec.push.as_ref().unwrap_or(&self.started_with);
        if self.drop_if_stale(delivery, config) {
            return Ok(());
        }
        let timeout = Duration::from_secs(u64::from(spec.ack_deadline_secs.max(1)));

        match self.post(delivery, config, timeout).await {
            Ok(status) if is_ack(status) => {
                self.stats.succeeded.fetch_add(1, Ordering::Relaxed);
                debug!(endpoint = %config.endpoint, status = status.as_u16(), "message pushed");
                Ok(())
            }
            Ok(status) => Err(self.failed(delivery, &config.endpoint, format!("HTTP {status}"))),
            Err(err) if err.is_timeout() => {
                let reason = format!(
                    "no response within the ack deadline of {} s",
                    timeout.as_secs()
                );
                Err(self.failed(delivery, &config.endpoint, reason))
            }
            Err(err) => {
                let reason = error_chain(&err);
                Err(self.failed(delivery, &config.endpoint, reason))
            }
        }
    }
}

/// Formats an error with its sources, which for reqwest hold the cause, such as "connection
/// refused".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use serde_json::Value;
    use sluice_router::store::{NewMessage, StoredMessage};

    use super::*;

    const SUBSCRIPTION: &str = "projects/local/subscriptions/orders-push";

    /// 2021-02-26T19:13:55.749Z
    fn publish_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_614_366_835_749)
    }

    fn delivery(data: &[u8], attributes: &[(&str, &str)], ordering_key: &str) -> Delivery {
        let attributes: BTreeMap<String, String> = attributes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        Delivery {
            ack_id: "42-1".to_owned(),
            message: StoredMessage {
                topic: "orders".to_owned(),
                seq: 42,
                publish_time: publish_time(),
                message: NewMessage {
                    data: data.to_vec(),
                    attributes,
                    ordering_key: ordering_key.to_owned(),
                },
            },
            delivery_attempt: 0,
        }
    }

    fn body_json(delivery: &Delivery) -> Value {
        serde_json::from_slice(&wrapped_body(delivery, SUBSCRIPTION)).expect("the body is JSON")
    }

    #[test]
    fn wrapped_body_has_pubsub_shape() {
        let delivery = delivery(b"Hello Cloud Pub/Sub!", &[("key", "value")], "customer-7");

        assert_eq!(
            body_json(&delivery),
            serde_json::json!({
                "message": {
                    "attributes": {"key": "value"},
                    "data": "SGVsbG8gQ2xvdWQgUHViL1N1YiE=",
                    "messageId": "42",
                    "message_id": "42",
                    "orderingKey": "customer-7",
                    "publishTime": "2021-02-26T19:13:55.749Z",
                    "publish_time": "2021-02-26T19:13:55.749Z",
                },
                "subscription": SUBSCRIPTION,
            })
        );
    }

    #[test]
    fn wrapped_body_leaves_out_empty_fields() {
        let body = body_json(&delivery(b"", &[], ""));
        let message = body["message"].as_object().expect("message is an object");

        assert_eq!(message["data"], "", "data stays, empty");
        assert!(!message.contains_key("attributes"), "no attributes");
        assert!(!message.contains_key("orderingKey"), "no ordering key");
        assert!(
            !body
                .as_object()
                .expect("object")
                .contains_key("deliveryAttempt"),
            "no dead-letter policy, no attempt"
        );
    }

    #[test]
    fn wrapped_body_has_attempt_with_dead_letter_policy() {
        let mut delivery = delivery(b"x", &[], "");
        delivery.delivery_attempt = 5;

        assert_eq!(body_json(&delivery)["deliveryAttempt"], 5);
    }

    #[test]
    fn wrapped_body_encodes_binary_data() {
        let body = body_json(&delivery(&[0, 255, 128, 10], &[], ""));

        assert_eq!(body["message"]["data"], "AP+ACg==");
    }

    #[test]
    fn unwrapped_headers_without_metadata() {
        let delivery = delivery(b"x", &[("key", "value")], "customer-7");
        let headers = unwrapped_headers(&delivery, SUBSCRIPTION, false);

        assert_eq!(headers.len(), 1, "only the content type: {headers:?}");
        assert_eq!(headers[CONTENT_TYPE], "application/octet-stream");
    }

    #[test]
    fn unwrapped_headers_with_metadata() {
        let delivery = delivery(b"x", &[("key", "value")], "customer-7");
        let headers = unwrapped_headers(&delivery, SUBSCRIPTION, true);

        assert_eq!(headers["x-goog-pubsub-message-id"], "42");
        assert_eq!(headers["x-goog-pubsub-subscription-name"], SUBSCRIPTION);
        assert_eq!(
            headers["x-goog-pubsub-publish-time"],
            "2021-02-26T19:13:55.749Z"
        );
        assert_eq!(headers["x-goog-pubsub-ordering-key"], "customer-7");
        assert_eq!(headers["x-goog-ordering-key"], "customer-7");
        assert_eq!(headers["key"], "value");
    }

    #[test]
    fn attributes_cannot_replace_metadata_headers() {
        let delivery = delivery(
            b"x",
            &[
                ("x-goog-pubsub-message-id", "forged"),
                ("Content-Type", "application/json"),
                ("not a header", "value"),
                ("newline", "a\nb"),
            ],
            "",
        );
        let headers = unwrapped_headers(&delivery, SUBSCRIPTION, true);

        assert_eq!(headers["x-goog-pubsub-message-id"], "42");
        assert_eq!(
            headers[CONTENT_TYPE], "application/json",
            "an attribute sets the content type"
        );
        assert!(!headers.contains_key("newline"), "invalid value left out");
        assert!(
            !headers.contains_key("x-goog-pubsub-ordering-key"),
            "no ordering key"
        );
    }

    #[test]
    fn cloudevent_request_uses_binary_mode() {
        let delivery = delivery(b"x", &[("key", "value")], "");
        let names = MessageNames {
            subscription: SUBSCRIPTION,
            topic: "projects/local/topics/orders",
        };
        let (headers, body) = cloudevent_request(&message::cloudevent(&delivery, names));

        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers["ce-id"], "42");
        assert_eq!(headers["ce-specversion"], "1.0");
        assert_eq!(
            headers["ce-type"],
            "google.cloud.pubsub.topic.v1.messagePublished"
        );
        assert_eq!(
            headers["ce-source"],
            "//pubsub.googleapis.com/projects/local/topics/orders"
        );
        assert_eq!(headers["ce-time"], "2021-02-26T19:13:55.749Z");
        let body: Value = serde_json::from_slice(&body).expect("the body is JSON");
        assert_eq!(body, body_json(&delivery), "the data is the wrapped body");
    }

    #[test]
    fn ack_statuses_are_pubsubs() {
        for code in [102, 200, 201, 202, 204] {
            let status = StatusCode::from_u16(code).expect("valid status");
            assert!(is_ack(status), "{code} acknowledges");
        }
        for code in [100, 203, 206, 301, 304, 400, 404, 429, 500, 503] {
            let status = StatusCode::from_u16(code).expect("valid status");
            assert!(!is_ack(status), "{code} does not acknowledge");
        }
    }

    #[tokio::test]
    async fn endpoint_limits_are_per_url() {
        let limits = EndpointLimits::new(1);
        let first = limits.acquire("http://127.0.0.1:1/a").await;

        let other = limits.acquire("http://127.0.0.1:1/b");
        tokio::pin!(other);
        assert!(
            futures::poll!(other.as_mut()).is_ready(),
            "another URL has its own bound"
        );
        let same = limits.acquire("http://127.0.0.1:1/a");
        tokio::pin!(same);
        assert!(
            futures::poll!(same.as_mut()).is_pending(),
            "the same URL waits for the bound"
        );
        drop(first);
        assert!(
            futures::poll!(same.as_mut()).is_ready(),
            "a released permit lets the next request start"
        );
    }

    #[tokio::test]
    async fn endpoint_limits_forget_idle_urls() {
        let limits = EndpointLimits::new(2);
        let busy = limits.acquire("http://busy").await;
        drop(limits.acquire("http://idle").await);
        drop(limits.acquire("http://kept").await);

        limits.retain(&HashSet::from(["http://kept"]));

        let known: HashSet<String> = limits
            .semaphores
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            known,
            HashSet::from(["http://busy".to_owned(), "http://kept".to_owned()])
        );
        drop(busy);
    }
}
