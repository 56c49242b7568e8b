//! The handler contract: panics in handlers and blocking work become retryable errors.

use async_trait::async_trait;
use sluice_handlers::contract::{
    caught_panics, invoke, run_blocking, EventContext, Handler, HandlerError,
};

fn context() -> EventContext {
    EventContext {
        event_id: "1234".to_owned(),
        timestamp: "2026-01-02T03:04:05.678Z".to_owned(),
        event_type: "google.storage.object.finalize".to_owned(),
        resource: serde_json::json!({
            "service": "storage.googleapis.com",
            "name": "projects/_/buckets/photos/objects/cat.jpg",
            "type": "storage#object",
        }),
    }
}

/// Returns the configured result, or panics when `panic_message` is set.
#[derive(Debug)]
struct TestHandler {
    panic_message: Option<&'static str>,
    permanent: bool,
}

#[async_trait]
impl Handler for TestHandler {
    fn name(&self) -> &str {
        "test-handler"
    }

    async fn handle(&self, data: &[u8], context: &EventContext) -> Result<(), HandlerError> {
        if let Some(message) = self.panic_message {
            panic!("{message}");
        }
        if self.permanent {
            return Err(HandlerError::Permanent(format!(
                "event {} has {} bytes of invalid data",
                context.event_id,
                data.len()
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn invoke_returns_handler_result() {
    let ok = TestHandler {
        panic_message: None,
        permanent: false,
    };
    let failing = TestHandler {
        panic_message: None,
        permanent: true,
    };

    assert!(invoke(&ok, b"{}", &context()).await.is_ok());
    assert!(matches!(
        invoke(&failing, b"{}", &context()).await,
        Err(HandlerError::Permanent(message)) if message.contains("event 1234")
    ));
}

#[tokio::test]
async fn invoke_turns_panic_into_retryable() {
    let handler = TestHandler {
        panic_message: Some("bucket client exploded"),
        permanent: false,
    };
    let panics_before = caught_panics();

    let result = invoke(&handler, b"{}", &context()).await;

    assert!(
        matches!(&result, Err(HandlerError::Retryable(message))
            if message.contains("test-handler") && message.contains("bucket client exploded")),
        "{result:?}"
    );
    assert!(caught_panics() > panics_before);
    // The process survived; the runtime still runs tasks.
    assert_eq!(tokio::spawn(async { 2 + 2 }).await.expect("task runs"), 4);
}

#[tokio::test]
async fn run_blocking_returns_value() {
    let value = run_blocking(|| (1..=10).sum::<u32>()).await;

    assert_eq!(value.expect("no panic"), 55);
}

#[tokio::test]
async fn run_blocking_catches_panic() {
    let panics_before = caught_panics();

    let result: Result<(), HandlerError> =
        run_blocking(|| panic!("decoder overflow at row {}", 7)).await;

    assert!(
        matches!(&result, Err(HandlerError::Retryable(message))
            if message.contains("decoder overflow at row 7")),
        "{result:?}"
    );
    assert!(caught_panics() > panics_before);
}

#[test]
fn handler_error_messages_say_whether_retried() {
    let retryable = HandlerError::Retryable("timeout".to_owned()).to_string();
    let permanent = HandlerError::Permanent("bad data".to_owned()).to_string();

    assert_eq!(retryable, "timeout (the event will be retried)");
    assert_eq!(permanent, "bad data (the event will not be retried)");
}
