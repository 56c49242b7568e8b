//! The background-function contract: what a handler receives and how its result is read.
//!
//! It follows Cloud Functions background functions. A handler gets the event payload as bytes
//! (for a Cloud Storage trigger, the object resource as JSON) and an [`EventContext`]. It
//! returns `Ok(())` to acknowledge the event, [`HandlerError::Retryable`] to have it delivered
//! again, or [`HandlerError::Permanent`] to have it dead-lettered.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};

/// Metadata of the event that triggered a handler, with the fields and JSON names of the
/// `context` argument that Cloud Functions passes to background functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventContext {
    /// Unique id of the event. A redelivery of the same event keeps its id, so handlers can use
    /// it to detect duplicates.
    pub event_id: String,
    /// Time the event was created, in RFC 3339 format.
    pub timestamp: String,
    /// Event type, for example `google.storage.object.finalize`.
    pub event_type: String,
    /// Resource that emitted the event, for example
    /// `{"service": "storage.googleapis.com", "name": "projects/_/buckets/b/objects/o", "type": "storage#object"}`.
    pub resource: serde_json::Value,
}

/// Failure of a handler, which decides whether the event is delivered again.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A transient failure (a timeout, an unavailable backend, a panic). The event is delivered
    /// again.
    #[error("{0} (the event will be retried)")]
    Retryable(String),
    /// A failure that a retry cannot fix (invalid or unsupported input). The event is not
    /// delivered again and goes to the dead-letter topic if one is configured.
    #[error("{0} (the event will not be retried)")]
    Permanent(String),
    /// A failure after which the event is acknowledged and dropped, not dead-lettered, as
    /// Cloud Functions does with a function that has retry off. It counts as a failed run in
    /// spans and metrics.
    #[error("{0} (the event is dropped)")]
    Dropped(String),
}

/// A background function.
#[async_trait]
pub trait Handler: Send + Sync + std::fmt::Debug {
    /// Name of the function, used in logs and metrics.
    fn name(&self) -> &str;

    /// Processes one event. `data` is the event payload, for Cloud Storage triggers the object
    /// resource as JSON.
    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError>;
}

/// Number of panics caught by [`invoke`] and [`run_blocking`] since the process started.
static CAUGHT_PANICS: AtomicU64 = AtomicU64::new(0);

/// Returns the number of handler panics that [`invoke`] and [`run_blocking`] have caught since
/// the process started, for a metrics exporter.
pub fn caught_panics() -> u64 {
    CAUGHT_PANICS.load(Ordering::Relaxed)
}

/// Runs a handler, turning a panic into [`HandlerError::Retryable`] instead of unwinding into
/// the caller.
///
/// Each caught panic increments [`caught_panics`] and is logged at error level with the
/// handler name and the event id. The panic message also goes through the process's panic
/// hook, which prints it to stderr by default. A process built with `panic = "abort"` cannot
/// catch panics and aborts as usual.
pub async fn invoke(
    handler: &dyn Handler,
    data: &[u8],
    context: &EventContext,
) -> Result<(), HandlerError> {
    // AssertUnwindSafe: after a panic the future is dropped and nothing it borrowed is read
    // again by this function, so no broken invariant can be observed here.
    match AssertUnwindSafe(handler.handle(data, context))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(payload) => {
            CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
            let message = panic_message(payload.as_ref());
            tracing::error!(
                handler = handler.name(),
                event_id = %context.event_id,
                event_type = %context.event_type,
                panic = %message,
                "handler panicked; the event will be retried"
            );
            Err(HandlerError::Retryable(format!(
                "handler {} panicked: {message}",
                handler.name()
            )))
        }
    }
}

/// Runs CPU-heavy work on Tokio's blocking thread pool so that it does not stall the async
/// worker threads.
///
/// A panic in `f` is caught, counted in [`caught_panics`] and returned as
/// [`HandlerError::Retryable`]. Must be called from within a Tokio runtime.
pub async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HandlerError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => Ok(value),
        Err(error) if error.is_panic() => {
            CAUGHT_PANICS.fetch_add(1, Ordering::Relaxed);
            let message = panic_message(error.into_panic().as_ref());
            tracing::error!(panic = %message, "blocking task panicked");
            Err(HandlerError::Retryable(format!(
                "blocking task panicked: {message}"
            )))
        }
        // The only other JoinError is cancellation, which happens when the runtime shuts down.
        Err(error) => Err(HandlerError::Retryable(format!(
            "blocking task did not finish: {error}"
        ))),
    }
}

/// Extracts the message of a panic payload, which is a `&str` or a `String` for `panic!` with
/// a literal or a format string.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic payload is not a string".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_of_str_and_string() {
        let literal: Box<dyn Any + Send> = Box::new("literal");
        let formatted: Box<dyn Any + Send> = Box::new(String::from("formatted 1"));
        let other: Box<dyn Any + Send> = Box::new(7_u32);

        assert_eq!(panic_message(literal.as_ref()), "literal");
        assert_eq!(panic_message(formatted.as_ref()), "formatted 1");
        assert_eq!(
            panic_message(other.as_ref()),
            "panic payload is not a string"
        );
    }

    #[test]
    fn context_uses_cloud_functions_field_names() {
        let json = serde_json::json!({
            "eventId": "1",
            "timestamp": "2026-01-02T03:04:05Z",
            "eventType": "google.storage.object.finalize",
            "resource": {"service": "storage.googleapis.com"},
        });
        let context: EventContext = serde_json::from_value(json.clone()).expect("valid context");

        assert_eq!(context.event_id, "1");
        assert_eq!(context.event_type, "google.storage.object.finalize");
        assert_eq!(serde_json::to_value(&context).expect("serializable"), json);
    }
}
