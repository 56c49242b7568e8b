//! Delivery of a function's events: the [`DeliveryHandler`] that a runner feeds the
//! function's subscription to, and the single synthetic call of `sluice functions call`.
//!
//! Each delivery waits until the function process is ready, then goes out as a push request
//! in the function's event format ([`PushHandler`]). The result follows Cloud Functions'
//! retry setting:
//!
//! - with retry on, a failed call is retried with the subscription's backoff, and an event
//!   older than the maximum event age is dead-lettered instead of called again;
//! - with retry off, a failed call is logged and the event acknowledged, so it is dropped
//!   after one attempt.
//!
//! A delivery that finds no ready process within [`READY_WAIT`] is returned for
//! redelivery whatever the setting, because the function never saw it.
//!
//! Each failed, timed-out or dead-lettered event adds an ERROR entry to the function's log,
//! worded like Cloud Functions' "Function execution took N ms, finished with status:
//! 'error'", with the event id and what happens to the event next.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sluice_handlers::contract::HandlerError;
use sluice_handlers::events::message::{self, MessageNames};
use sluice_handlers::push::{cloudevent_request, EndpointLimits, PushHandler, PushStats};
use sluice_handlers::runner::DeliveryHandler;
use sluice_router::deliver::Delivery;
use sluice_router::store::{PushConfig, PushFormat, SubscriptionSpec};
use tokio::sync::watch;
use tracing::warn;

use super::instance::{wait_ready, InstanceState};
use super::logs::LogSender;
use super::spec::SignatureType;
use crate::server::names;

/// How long a delivery waits for a starting or restarting function process.
pub(crate) const READY_WAIT: Duration = Duration::from_secs(60);

/// Outcomes of a function's calls since the server started.
#[derive(Debug, Default)]
pub(crate) struct CallCounters {
    /// Calls that the function acknowledged.
    pub(crate) succeeded: AtomicU64,
    /// Calls that failed: an error status, a crash or a timeout.
    pub(crate) failed: AtomicU64,
    /// Failed events acknowledged without a retry, because retry is off.
    pub(crate) dropped: AtomicU64,
    /// Events dead-lettered because they outlived the maximum event age.
    pub(crate) expired: AtomicU64,
}

/// The settings of a [`FunctionHandler`].
#[derive(Debug, Clone)]
pub(crate) struct DeliverySettings {
    pub(crate) function: String,
    pub(crate) signature: SignatureType,
    pub(crate) retry: bool,
    pub(crate) max_event_age: Duration,
    /// The limit of one call.
    pub(crate) timeout: Duration,
    /// Calls in flight at once.
    pub(crate) concurrency: usize,
}

/// Sends a function's events to its process.
#[derive(Debug)]
pub(crate) struct FunctionHandler {
    settings: DeliverySettings,
    state: watch::Receiver<InstanceState>,
    client: reqwest::Client,
    limits: EndpointLimits,
    stats: Arc<PushStats>,
    counters: Arc<CallCounters>,
    /// The function's log, which gets an entry for each failed call.
    logs: LogSender,
    /// The push handler for the current endpoint, replaced when a restart moves the process
    /// to another port.
    push: Mutex<Option<(String, Arc<PushHandler>)>>,
}

impl FunctionHandler {
    /// Returns a handler that sends to the process whose state `state` reports.
    pub(crate) fn new(
        settings: DeliverySettings,
        state: watch::Receiver<InstanceState>,
        client: reqwest::Client,
        counters: Arc<CallCounters>,
        logs: LogSender,
    ) -> Self {
        let limits = EndpointLimits::new(settings.concurrency);
        FunctionHandler {
            settings,
            state,
            client,
            limits,
            stats: Arc::default(),
            counters,
            logs,
            push: Mutex::new(None),
        }
    }

    fn push_handler(&self, endpoint: &str) -> Arc<PushHandler> {
        let mut current = self.push.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((known, handler)) = current.as_ref() {
            if known == endpoint {
                return handler.clone();
            }
        }
        let subscription = subscription_name(&self.settings.function);
        let handler = Arc::new(PushHandler::new(
            self.client.clone(),
            subscription.clone(),
            names::subscription_resource(&subscription),
            names::topic_resource,
            push_config(endpoint, self.settings.signature),
            self.limits.clone(),
            self.stats.clone(),
        ));
        *current = Some((endpoint.to_owned(), handler.clone()));
        handler
    }

    /// Counts a failed call, writes it to the function's log, and returns the delivery's
    /// result: a retry with retry on, or an acknowledgement that drops the event.
    fn failed(
        &self,
        delivery: &Delivery,
        spec: Option<&SubscriptionSpec>,
        outcome: CallOutcome,
        took: Duration,
        reason: String,
    ) -> Result<(), HandlerError> {
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        // A retry that would come after the maximum event age would be dead-lettered without
        // a call, so the event is dead-lettered now rather than a backoff later.
        let delay = spec
            .and_then(|spec| {
                spec.server_redelivery_delay(delivery.attempts(), delivery.message.seq)
            })
            .unwrap_or_default();
        let expires_first = self.settings.retry
            && event_age(delivery).saturating_add(delay) > self.settings.max_event_age;
        let next = if expires_first {
            format!(
                "the event is dead-lettered because its next retry, in {} s, would come after \
                 the maximum event age of {} s",
                delay.as_secs_f64(),
                self.settings.max_event_age.as_secs()
            )
        } else if self.settings.retry {
            "the event will be retried".to_owned()
        } else {
            "the event is dropped because retry is off".to_owned()
        };
        self.logs.report(
            &self.settings.function,
            "ERROR",
            format!(
                "Function execution took {} ms, finished with status: '{}'. Event {}: {reason}; \
                 {next}",
                took.as_millis(),
                outcome.as_str(),
                delivery.message.id()
            ),
        );
        if expires_first {
            self.counters.expired.fetch_add(1, Ordering::Relaxed);
            return Err(HandlerError::Permanent(format!(
                "{reason}; the next retry would come after the maximum event age"
            )));
        }
        if self.settings.retry {
            return Err(HandlerError::Retryable(reason));
        }
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        warn!(
            function = %self.settings.function,
            event_id = %delivery.message.id(),
            error = %reason,
            "function failed; event dropped because retry is off"
        );
        Err(HandlerError::Dropped(reason))
    }
}

#[tonic::async_trait]
impl DeliveryHandler for FunctionHandler {
    fn name(&self) -> &str {
        &self.settings.function
    }

    async fn handle_delivery(
        &self,
        delivery: &Delivery,
        spec: Option<&SubscriptionSpec>,
    ) -> Result<(), HandlerError> {
        let Some(endpoint) = wait_ready(self.state.clone(), READY_WAIT).await else {
            return Err(HandlerError::Retryable(format!(
                "function {} is not ready",
                self.settings.function
            )));
        };
        if self.settings.retry {
            let age = event_age(delivery);
            if age > self.settings.max_event_age {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                let reason = format!(
                    "the event is {} s old, past the maximum event age of {} s",
                    age.as_secs(),
                    self.settings.max_event_age.as_secs()
                );
                self.logs.report(
                    &self.settings.function,
                    "ERROR",
                    format!(
                        "Event {} dead-lettered without a call: {reason}",
                        delivery.message.id()
                    ),
                );
                return Err(HandlerError::Permanent(reason));
            }
        }
        let push = self.push_handler(&endpoint);
        let started = Instant::now();
        let call =
            tokio::time::timeout(self.settings.timeout, push.handle_delivery(delivery, spec));
        match call.await {
            Ok(Ok(())) => {
                self.counters.succeeded.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(
                HandlerError::Retryable(reason)
                | HandlerError::Permanent(reason)
                | HandlerError::Dropped(reason),
            )) => self.failed(
                delivery,
                spec,
                CallOutcome::Error,
                started.elapsed(),
                reason,
            ),
            Err(_) => {
                let reason = timeout_reason(self.settings.timeout);
                self.failed(
                    delivery,
                    spec,
                    CallOutcome::Timeout,
                    started.elapsed(),
                    reason,
                )
            }
        }
    }
}

/// The end of a failed call, as Cloud Functions names it in its execution log entries.
#[derive(Debug, Clone, Copy)]
enum CallOutcome {
    /// The function returned an error status, crashed or closed the connection.
    Error,
    /// The function did not respond within its timeout.
    Timeout,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Error => "error",
            CallOutcome::Timeout => "timeout",
        }
    }
}

/// Returns how long ago the event's message was published.
fn event_age(delivery: &Delivery) -> Duration {
    SystemTime::now()
        .duration_since(delivery.message.publish_time)
        .unwrap_or_default()
}

/// Returns the reason of a call that ran past the function's `timeout`.
fn timeout_reason(timeout: Duration) -> String {
    format!(
        "the function did not finish within its timeout of {} s",
        timeout.as_secs()
    )
}

/// The subscription of a function.
pub(crate) fn subscription_name(function: &str) -> String {
    format!("{}{function}", super::spec::GENERATED_PREFIX)
}

/// Returns the push config that sends events to `endpoint` in the signature's format.
pub(crate) fn push_config(endpoint: &str, signature: SignatureType) -> PushConfig {
    PushConfig {
        endpoint: endpoint.to_owned(),
        attributes: BTreeMap::new(),
        format: match signature {
            SignatureType::Event => PushFormat::Background,
            SignatureType::CloudEvent => PushFormat::CloudEvent,
        },
        max_event_age_secs: None,
    }
}

/// The result of one synthetic call.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CallResult {
    /// The event id of the synthetic event.
    pub(crate) event_id: String,
    /// The HTTP status of the function's response; 0 when no response arrived.
    pub(crate) status: u16,
    /// Whether the status acknowledges the event, as a delivery would count it.
    pub(crate) ok: bool,
    /// The response body, or the error that ended the call.
    pub(crate) result: String,
    /// How long the call took, in milliseconds.
    pub(crate) duration_ms: u64,
}

/// Sends `delivery` to `endpoint` once, in the signature's format, and returns what the
/// function responded.
pub(crate) async fn call_once(
    client: &reqwest::Client,
    endpoint: &str,
    signature: SignatureType,
    delivery: &Delivery,
    timeout: Duration,
) -> CallResult {
    let topic = names::topic_resource(&delivery.message.topic);
    let request = client.post(endpoint).timeout(timeout);
    let request = match signature {
        SignatureType::Event => {
            let event = message::background_event(&delivery.message, &topic);
            request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(event.to_json().to_string())
        }
        SignatureType::CloudEvent => {
            let subscription = names::subscription_resource(&delivery.message.topic);
            let names = MessageNames {
                subscription: &subscription,
                topic: &topic,
            };
            let (headers, body) = cloudevent_request(&message::cloudevent(delivery, names));
            request.headers(headers).body(body)
        }
    };
    let started = Instant::now();
    let (status, result) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            (status, body)
        }
        Err(err) if err.is_timeout() => (0, timeout_reason(timeout)),
        Err(err) => (0, format!("the call failed: {err}")),
    };
    CallResult {
        event_id: delivery.message.id(),
        status,
        ok: sluice_handlers::push::ACK_STATUS_CODES.contains(&status),
        result,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}
