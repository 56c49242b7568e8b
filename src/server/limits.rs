//! The `[limits]` of the running server, and the middleware that enforces the limits that
//! no single service can: the size of a gRPC request's first message, open streams per
//! client and the publish rate per identity.
//!
//! The size limits of messages and attributes are checked where Pub/Sub checks them, in
//! the publish path; the request body limits of the HTTP routes in their body-limit layers.
//! All of them read [`get`], which [`set`] fills once per process at start-up.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use prost::Message as _;
use serde_json::json;
use sluice_proto::google::pubsub::v1 as pubsub;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use super::auth::{routes, Action, Principal};
use super::status;
use super::tls::ConnectionInfo;
use crate::config::LimitsSpec;

static LIMITS: OnceLock<LimitsSpec> = OnceLock::new();
static DEFAULT_LIMITS: LazyLock<LimitsSpec> = LazyLock::new(LimitsSpec::default);

/// gRPC methods whose calls stay open as streams.
const STREAMING_METHODS: [&str; 2] = [
    "/google.pubsub.v1.Subscriber/StreamingPull",
    "/sluice.v1.LogIngest/StreamEntries",
];

/// Sets the limits for this process.
///
/// # Errors
///
/// Fails when the process already runs with other limits.
pub(crate) fn set(limits: LimitsSpec) -> Result<(), String> {
    let current = LIMITS.get_or_init(|| limits);
    if *current == limits {
        Ok(())
    } else {
        Err(
            "this process already serves with other [limits]; run one server per \
             configuration"
                .to_owned(),
        )
    }
}

/// Returns the limits of this process: the configured ones, or the defaults.
pub(crate) fn get() -> &'static LimitsSpec {
    LIMITS.get().unwrap_or(&DEFAULT_LIMITS)
}

/// Returns the largest REST body of Pub/Sub's API: `max_request_bytes`, or more when a
/// message of `max_message_bytes` needs it, because base64 makes data 4/3 as long and the
/// attributes and JSON around it need room.
pub(crate) fn max_pubsub_rest_body_bytes() -> usize {
    let limits = get();
    limits
        .max_request_bytes
        .max(limits.max_message_bytes / 3 * 4 + 2 * 1024 * 1024)
}

/// The state of the limits middleware.
#[derive(Debug)]
pub(crate) struct Enforcer {
    /// Open streaming calls per client key.
    streams: Arc<Mutex<HashMap<String, usize>>>,
    /// Publish rate per identity, or per address without authentication; `None` when
    /// `publish_messages_per_sec` is 0. Idle keys are evicted every [`EVICT_EVERY`] checks.
    publish_rate: Option<DefaultKeyedRateLimiter<String>>,
    rate_checks: AtomicU64,
}

/// Publish rate checks between two evictions of idle keys from the rate limiter.
const EVICT_EVERY: u64 = 4096;

impl Enforcer {
    /// Builds the state from [`get`].
    pub(crate) fn new() -> Enforcer {
        let limits = get();
        let publish_rate = NonZeroU32::new(limits.publish_messages_per_sec).map(|rate| {
            let burst = NonZeroU32::new(limits.publish_burst_messages).unwrap_or(rate);
            DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Enforcer {
            streams: Arc::default(),
            publish_rate,
            rate_checks: AtomicU64::new(0),
        }
    }
}

/// Enforces the limits of the module docs on one request. It runs after authentication, so
/// that it can key limits by identity.
pub(crate) async fn enforce(
    State(enforcer): State<Arc<Enforcer>>,
    request: Request,
    next: Next,
) -> Response {
    let grpc = is_grpc(&request);
    let client = client_key(&request);
    let path = request.uri().path().to_owned();
    let streaming = grpc && STREAMING_METHODS.contains(&path.as_str());
    // A streaming client may wait for the response headers before it sends its first
    // message, as `sluice ingest` does, so only unary calls wait here for the first message.
    let request = if grpc && !streaming {
        match check_first_message(request).await {
            Ok(request) => request,
            Err(status) => return status.into_http::<Body>().into_response(),
        }
    } else {
        request
    };
    let (request, publish_count) = match publish_count(&request, grpc, &path) {
        Some(_) if enforcer.publish_rate.is_none() => (request, None),
        Some(kind) => match count_messages(request, kind).await {
            Ok((request, count)) => (request, Some(count)),
            Err(response) => return response,
        },
        None => (request, None),
    };
    if let (Some(limiter), Some(count)) = (&enforcer.publish_rate, publish_count) {
        if enforcer.rate_checks.fetch_add(1, Ordering::Relaxed) % EVICT_EVERY == EVICT_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Err(wait) = check_rate(limiter, &client, count) {
            return rate_limited(&client, count, wait, grpc);
        }
    }
    if streaming {
        let Some(guard) = StreamGuard::acquire(&enforcer.streams, &client) else {
            let message = format!(
                "client {client} has {max} streams open, the limit of max_streams_per_client; \
                 close a stream before opening another",
                max = get().max_streams_per_client
            );
            return Status::resource_exhausted(message)
                .into_http::<Body>()
                .into_response();
        };
        let response = next.run(request).await;
        return response.map(|body| {
            Body::new(GuardedBody {
                body,
                _guard: guard,
            })
        });
    }
    next.run(request).await
}

/// Returns the identity of an authenticated request, or else the peer's IP address.
fn client_key(request: &Request) -> String {
    if let Some(Principal(name)) = request.extensions().get::<Principal>() {
        return format!("identity {name:?}");
    }
    request
        .extensions()
        .get::<ConnectInfo<ConnectionInfo>>()
        .map_or_else(
            || "(unknown)".to_owned(),
            |info| format!("address {}", info.0.remote.ip()),
        )
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// Rejects a unary gRPC request whose message is over `max_request_bytes`, with
/// INVALID_ARGUMENT, as Pub/Sub rejects a request over its 10 MB limit. Google's clients
/// retry RESOURCE_EXHAUSTED, which would resend the same request until their deadline.
///
/// NOTE: the messages of streaming calls are checked by tonic's decoder, which returns
/// OUT_OF_RANGE instead.
async fn check_first_message(request: Request) -> Result<Request, Status> {
    let limit = get().max_request_bytes;
    let (parts, body) = request.into_parts();
    match super::auth::check_first_message_length(body, limit).await {
        Ok(body) => Ok(Request::from_parts(parts, body)),
        Err(err) => Err(super::auth::first_message_status(&err)),
    }
}

/// The encoding of a publish request.
#[derive(Debug, Clone, Copy)]
enum PublishKind {
    Grpc,
    Rest,
}

fn publish_count(request: &Request, grpc: bool, path: &str) -> Option<PublishKind> {
    if grpc {
        let rule = routes::grpc_rule(path)?;
        (rule.action == Action::Publish && path.starts_with("/google.pubsub.v1."))
            .then_some(PublishKind::Grpc)
    } else {
        let route = request.extensions().get::<MatchedPath>()?;
        let rule = routes::http_rule(request.method().as_str(), route.as_str(), path)?;
        (rule.action == Action::Publish && path.starts_with("/v1/")).then_some(PublishKind::Rest)
    }
}

/// Returns the number of messages of a publish request, and the request to pass on.
async fn count_messages(request: Request, kind: PublishKind) -> Result<(Request, u32), Response> {
    let (parts, body) = request.into_parts();
    match kind {
        PublishKind::Grpc => {
            let (message, body) = super::auth::read_first_message(body, get().max_request_bytes)
                .await
                .map_err(|err| {
                    super::auth::first_message_status(&err)
                        .into_http::<Body>()
                        .into_response()
                })?;
            let count = message
                .as_deref()
                .and_then(|bytes| pubsub::PublishRequest::decode(bytes).ok())
                .map_or(0, |request| request.messages.len());
            Ok((Request::from_parts(parts, body), saturating_u32(count)))
        }
        PublishKind::Rest => {
            let limit = max_pubsub_rest_body_bytes();
            let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
                status::payload_too_large(&format!(
                    "the request body is over the limit of {limit} bytes; publish fewer or \
                     smaller messages per request"
                ))
            })?;
            // Counted on the same JSON value that the REST handler publishes from, so that a
            // body the two would read differently, such as one with `messages` twice (the
            // last wins), cannot pass uncounted.
            let count = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|value| {
                    value
                        .get("messages")
                        .and_then(|m| m.as_array())
                        .map(Vec::len)
                })
                .unwrap_or(0);
            let body = Body::from(bytes);
            Ok((Request::from_parts(parts, body), saturating_u32(count)))
        }
    }
}

fn saturating_u32(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Takes `count` messages from the client's budget, or returns how long to wait.
fn check_rate(
    limiter: &DefaultKeyedRateLimiter<String>,
    client: &str,
    count: u32,
) -> Result<(), Duration> {
    let Some(count) = NonZeroU32::new(count) else {
        return Ok(());
    };
    let key = client.to_owned();
    match limiter.check_key_n(&key, count) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => Err(not_until.wait_time_from(DefaultClock::default().now())),
        // More messages than the burst: no wait makes the request fit, so the hint is the
        // time to refill the whole burst, and the message asks to split the request.
        Err(_) => Err(Duration::from_secs_f64(
            f64::from(get().publish_burst_messages)
                / f64::from(get().publish_messages_per_sec.max(1)),
        )),
    }
}

fn rate_limited(client: &str, count: u32, wait: Duration, grpc: bool) -> Response {
    let limits = get();
    if count > limits.publish_burst_messages {
        // No wait lets such a request pass, and Google's clients retry RESOURCE_EXHAUSTED
        // until their deadline, so the request is invalid rather than early.
        let message = format!(
            "this request has {count} messages, more than the publish burst of {} that \
             {client} may send at once (publish_burst_messages); split it into requests of \
             at most {} messages",
            limits.publish_burst_messages, limits.publish_burst_messages
        );
        if grpc {
            return Status::invalid_argument(message)
                .into_http::<Body>()
                .into_response();
        }
        return status::rest_error(Code::InvalidArgument, &message, None);
    }
    let message = format!(
        "{client} is over its publish rate of {} messages per second (burst {}); this \
         request has {count} messages; retry after {:.3} s",
        limits.publish_messages_per_sec,
        limits.publish_burst_messages,
        wait.as_secs_f64(),
    );
    if grpc {
        let details = ErrorDetails::with_retry_info(Some(wait));
        return Status::with_error_details(Code::ResourceExhausted, message, details)
            .into_http::<Body>()
            .into_response();
    }
    let detail = json!({
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": format!("{:.3}s", wait.as_secs_f64()),
    });
    let mut response = status::rest_error(Code::ResourceExhausted, &message, Some(detail));
    // Retry-After takes whole seconds, so the wait is rounded up.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

/// One open stream of a client, counted until the response body is dropped.
#[derive(Debug)]
struct StreamGuard {
    streams: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
}

impl StreamGuard {
    fn acquire(streams: &Arc<Mutex<HashMap<String, usize>>>, client: &str) -> Option<StreamGuard> {
        let mut open = streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(client.to_owned()).or_insert(0);
        if *count >= get().max_streams_per_client {
            return None;
        }
        *count += 1;
        Some(StreamGuard {
            streams: streams.clone(),
            client: client.to_owned(),
        })
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// A response body that keeps a [`StreamGuard`] until the stream ends.
struct GuardedBody {
    body: Body,
    _guard: StreamGuard,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
