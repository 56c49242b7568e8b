//! W3C trace context carried in message attributes, so that one trace follows an event from
//! its publish through the store to each delivery, across redeliveries and nodes.
//!
//! The context is read and written with the globally installed OpenTelemetry propagator.
//! Until the binary installs one (it does when trace export is configured), injection writes
//! nothing and extraction finds nothing, so these functions cost little when tracing is off.
//!
//! Google's Pub/Sub client libraries write the same context under attribute names with the
//! prefix `googclient_` (google-cloud-pubsub 2.44 for Python writes `googclient_traceparent`
//! in `open_telemetry/context_propagation.py`). Extraction reads the plain name first and
//! falls back to the prefixed one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::store::TopicMessage;

/// The message attribute and HTTP header that carry the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The prefix Google's Pub/Sub clients put before the W3C names in message attributes.
pub const GOOGLE_CLIENT_PREFIX: &str = "googclient_";

/// Whether spans are exported, which [`activate`] records.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Records that the process exports traces, so that spans recorded only for the trace, such
/// as one per message pulled, are created from now on.
pub fn activate() {
    ACTIVE.store(true, Ordering::Relaxed);
}

/// Returns whether the process exports traces.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Reads trace context from message attributes, the `googclient_` names included.
struct AttributeExtractor<'a>(&'a BTreeMap<String, String>);

impl Extractor for AttributeExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .or_else(|| self.0.get(&format!("{GOOGLE_CLIENT_PREFIX}{key}")))
            .map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Writes trace context into message attributes, keeping any value already there.
struct AttributeInjector<'a>(&'a mut BTreeMap<String, String>);

impl Injector for AttributeInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The W3C propagator writes `tracestate` even when it is empty; an empty attribute
        // carries nothing and would count against the 100-attribute limit.
        if value.is_empty() {
            return;
        }
        self.0.entry(key.to_owned()).or_insert(value);
    }
}

/// Returns whether the attributes carry trace context, under the W3C or the Google name.
pub fn has_context(attributes: &BTreeMap<String, String>) -> bool {
    AttributeExtractor(attributes).get(TRACEPARENT).is_some()
}

/// Writes the context of `span` into `attributes` unless they already carry a `traceparent`.
pub fn inject(span: &tracing::Span, attributes: &mut BTreeMap<String, String>) {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut AttributeInjector(attributes));
    });
}

/// Makes the context carried in `attributes`, if any, the parent of `span`.
pub fn set_parent(span: &tracing::Span, attributes: &BTreeMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&AttributeExtractor(attributes))
    });
    if parent.span().span_context().is_valid() {
        // An error means the span is disabled or already started, and then has no parent to
        // change.
        let _ = span.set_parent(parent);
    }
}

/// Returns the `traceparent` value for an outgoing request made inside `span`: the span's
/// own context when tracing is on, otherwise the context the message carries, so that a
/// trace started upstream continues past a node that does not export traces.
pub fn outgoing_traceparent(
    span: &tracing::Span,
    attributes: &BTreeMap<String, String>,
) -> Option<String> {
    let mut carrier = BTreeMap::new();
    inject(span, &mut carrier);
    carrier.remove(TRACEPARENT).or_else(|| {
        AttributeExtractor(attributes)
            .get(TRACEPARENT)
            .map(str::to_owned)
    })
}

/// Writes the context of `span` into each message that carries no `traceparent` yet. The
/// context is formatted once for the whole batch.
pub(crate) fn inject_into(span: &tracing::Span, messages: &mut [TopicMessage]) {
    let mut carrier = BTreeMap::new();
    inject(span, &mut carrier);
    if carrier.is_empty() {
        return;
    }
    for message in messages {
        let attributes = &mut message.message.attributes;
        if attributes.contains_key(TRACEPARENT) {
            continue;
        }
        for (key, value) in &carrier {
            attributes
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
    }
}

/// Returns the span of one publish call. Its parent is the context that the first message
/// carries from its publisher, if any, and otherwise the caller's span.
pub(crate) fn publish_span(messages: &[TopicMessage]) -> tracing::Span {
    let topic = messages.first().map_or("", |m| m.topic.as_str());
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("publish {topic}"),
        otel.kind = "producer",
        messaging.system = "gcp_pubsub",
        messaging.operation.type = "send",
        messaging.destination.name = topic,
        messaging.batch.message_count = messages.len(),
    );
    if let Some(first) = messages.first() {
        set_parent(&span, &first.message.attributes);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injector_skips_empty_values() {
        let mut attributes = BTreeMap::new();
        let mut injector = AttributeInjector(&mut attributes);
        injector.set("tracestate", String::new());
        injector.set(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        );
        assert!(!attributes.contains_key("tracestate"));
        assert!(attributes.contains_key(TRACEPARENT));
    }
}
