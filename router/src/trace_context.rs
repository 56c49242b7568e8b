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
//! falls back to the prefixed one when the plain one is missing or not a valid context.
//!
//! A `traceparent` attribute that is not a valid context, such as one in uppercase
//! hexadecimal, with an all-zero id or of version ff, is replaced at publish when the publish
//! span has a context to give. Its `tracestate` goes with it, because the W3C recommendation
//! discards both. Without that, every delivery of the message would start a trace of its
//! own. Later versions with more fields are valid, as the recommendation requires.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracer;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::store::TopicMessage;

/// The message attribute and HTTP header that carry the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The message attribute and HTTP header that carry vendor-specific W3C trace state.
pub const TRACESTATE: &str = "tracestate";

/// The prefix Google's Pub/Sub clients put before the W3C names in message attributes.
pub const GOOGLE_CLIENT_PREFIX: &str = "googclient_";

/// [`TRACEPARENT`] with [`GOOGLE_CLIENT_PREFIX`].
const GOOGLE_TRACEPARENT: &str = "googclient_traceparent";

/// [`TRACESTATE`] with [`GOOGLE_CLIENT_PREFIX`].
const GOOGLE_TRACESTATE: &str = "googclient_tracestate";

/// Most attributes on one message, as Pub/Sub's quotas page gives it. Injection adds no
/// attribute past it, so that a consumer can publish a delivered message to Pub/Sub again.
pub const MAX_ATTRIBUTES: usize = 100;

/// The name of the root span of each routed log entry.
pub const ENTRY_SPAN_NAME: &str = "ingest entry";

/// The attribute of an entry span that gives the entry's position in its ingest batch.
const ENTRY_INDEX: &str = "log.entry.index";

/// The maximum number of links on a publish span: the default of the OpenTelemetry SDK's span limits
/// (`OTEL_SPAN_LINK_COUNT_LIMIT`), past which it drops links anyway.
const MAX_PUBLISH_LINKS: usize = 128;

/// The tracer of the exported spans, which [`activate`] installs. Its presence means that
/// the process exports traces.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Records that the process exports traces through `tracer`, so that spans recorded only for
/// the trace, such as one per routed entry or per message pulled, are created from now on.
/// Only the first call installs its tracer.
pub fn activate(tracer: SdkTracer) {
    let _ = TRACER.set(tracer);
}

/// Returns whether the process exports traces.
pub fn is_active() -> bool {
    TRACER.get().is_some()
}

/// Reads trace context from message attributes: under the W3C names, each falling back to
/// its `googclient_` name when missing, or under the `googclient_` names alone.
struct AttributeExtractor<'a> {
    attributes: &'a BTreeMap<String, String>,
    google_only: bool,
}

impl Extractor for AttributeExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let google = || self.attributes.get(google_name(key).as_ref());
        if self.google_only {
            google().map(String::as_str)
        } else {
            self.attributes.get(key).or_else(google).map(String::as_str)
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.attributes.keys().map(String::as_str).collect()
    }
}

/// Returns the attribute name under which Google's clients write `key`, without an
/// allocation for the two W3C names, which every extraction requests.
fn google_name(key: &str) -> std::borrow::Cow<'static, str> {
    match key {
        TRACEPARENT => std::borrow::Cow::Borrowed(GOOGLE_TRACEPARENT),
        TRACESTATE => std::borrow::Cow::Borrowed(GOOGLE_TRACESTATE),
        other => std::borrow::Cow::Owned(format!("{GOOGLE_CLIENT_PREFIX}{other}")),
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
        insert_within_limit(self.0, key, value);
    }
}

/// Inserts `key` unless it is already there or the attributes are at [`MAX_ATTRIBUTES`].
// NOTE: a message published with 100 attributes therefore carries no trace context, and its
// deliveries start new traces.
fn insert_within_limit(attributes: &mut BTreeMap<String, String>, key: &str, value: String) {
    if attributes.contains_key(key) || attributes.len() >= MAX_ATTRIBUTES {
        return;
    }
    attributes.insert(key.to_owned(), value);
}

/// Returns the context carried in `attributes`, which is invalid when there is none. When
/// both names are set and the W3C one is not a valid context, the `googclient_` one is read.
fn extract(attributes: &BTreeMap<String, String>) -> opentelemetry::Context {
    // `extract` would return the current context when the value is no context, and a
    // publish runs inside the span of its request, so extraction starts from an empty one.
    let empty = opentelemetry::Context::new();
    let read = |google_only| {
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract_with_context(
                &empty,
                &AttributeExtractor {
                    attributes,
                    google_only,
                },
            )
        })
    };
    let context = read(false);
    let both = attributes.contains_key(TRACEPARENT) && attributes.contains_key(GOOGLE_TRACEPARENT);
    if both && !context.span().span_context().is_valid() {
        return read(true);
    }
    context
}

/// Returns the span context carried in `attributes`, which is invalid when there is none.
///
/// The routed messages of an ingest batch each carry a version-00 `traceparent` and no
/// `tracestate`, and a publish reads them all, so that form is parsed here without the
/// propagator's allocations. Any other form goes through [`extract`].
fn carried_span_context(attributes: &BTreeMap<String, String>) -> SpanContext {
    let plain = !attributes.contains_key(TRACESTATE) && !attributes.contains_key(GOOGLE_TRACESTATE);
    if plain {
        if let Some(context) = attributes
            .get(TRACEPARENT)
            .and_then(|value| parse_plain_traceparent(value))
        {
            return context;
        }
    }
    extract(attributes).span().span_context().clone()
}

/// Parses a `traceparent` of version 00 with nonzero ids in lowercase hexadecimal, as the
/// W3C recommendation writes it, into a remote span context. Returns `None` for any other
/// value, valid or not, which the propagator then judges.
fn parse_plain_traceparent(value: &str) -> Option<SpanContext> {
    let bytes = value.as_bytes();
    if bytes.len() != TRACEPARENT_LEN
        || !value.starts_with("00-")
        || bytes[35] != b'-'
        || bytes[52] != b'-'
    {
        return None;
    }
    // Every routed message is read this way, so the digits are decoded by hand rather than
    // with `from_str_radix`, which also accepts uppercase.
    let trace = parse_lower_hex(&bytes[3..35])?;
    let span = u64::try_from(parse_lower_hex(&bytes[36..52])?).ok()?;
    let flags = u8::try_from(parse_lower_hex(&bytes[53..55])?).ok()?;
    if trace == 0 || span == 0 {
        return None;
    }
    Some(SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ))
}

/// Returns whether the attributes carry a valid trace context, under the W3C or the Google
/// name.
pub fn has_context(attributes: &BTreeMap<String, String>) -> bool {
    carried_span_context(attributes).is_valid()
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
    let parent = extract(attributes);
    if parent.span().span_context().is_valid() {
        // An error means the span is disabled or already started, and then has no parent to
        // change.
        let _ = span.set_parent(parent);
    }
}

/// Returns the `traceparent` value for an outgoing request made inside `span`: the span's
/// own context when tracing is on, otherwise the valid context the message carries, so that
/// a trace started upstream continues past a node that does not export traces.
pub fn outgoing_traceparent(
    span: &tracing::Span,
    attributes: &BTreeMap<String, String>,
) -> Option<String> {
    let mut carrier = BTreeMap::new();
    inject(span, &mut carrier);
    // Without tracing no propagator is installed, so the carried value is read directly.
    carrier.remove(TRACEPARENT).or_else(|| {
        [TRACEPARENT, GOOGLE_TRACEPARENT]
            .into_iter()
            .filter_map(|key| attributes.get(key))
            .find(|value| parse_plain_traceparent(value).is_some())
            .cloned()
    })
}

/// Writes the context of `span` into each message that carries no valid context or a context
/// of the same trace, replacing what it carried. So deliveries are children of the publish
/// span whether the publisher sent its context in a header or in the message. A message
/// that carries the context of another trace, from a publisher that batched messages of
/// several traces, keeps it. The context is formatted once for the whole batch.
pub(crate) fn inject_into(span: &tracing::Span, messages: &mut [TopicMessage]) {
    let mut carrier = BTreeMap::new();
    inject(span, &mut carrier);
    if carrier.is_empty() {
        return;
    }
    let trace_id = span.context().span().span_context().trace_id();
    for message in messages {
        let attributes = &mut message.message.attributes;
        let carried = carried_span_context(attributes);
        if carried.is_valid() && carried.trace_id() != trace_id {
            continue;
        }
        // The publish span descends from a context of the same trace, and a value that is
        // no context carries nothing worth keeping.
        attributes.remove(TRACEPARENT);
        attributes.remove(TRACESTATE);
        // BTreeMap order puts `traceparent` before `tracestate`, so the parent is kept first
        // when only one attribute fits under the limit.
        for (key, value) in &carrier {
            insert_within_limit(attributes, key, value.clone());
        }
    }
}

/// Returns the span of one publish call. The span is named after the topic when every
/// message goes to the same one, and is just `publish` otherwise. When every message carries
/// the same context from its publisher, that context is the parent, and the span links to the
/// caller's span. Otherwise the parent is the caller's span, and the span links to each
/// distinct context the messages carry.
pub(crate) fn publish_span(messages: &[TopicMessage]) -> tracing::Span {
    let span = publish_span_named(messages);
    if !is_active() {
        return span;
    }
    link_carried_contexts(&span, messages);
    span
}

/// Returns a publish span without parent or links of its own: named after the topic when
/// every message goes to the same one, and `publish` otherwise.
fn publish_span_named(messages: &[TopicMessage]) -> tracing::Span {
    let topic = messages.first().map_or("", |m| m.topic.as_str());
    let one_topic = messages.iter().all(|m| m.topic == topic);
    let name = if one_topic {
        format!("publish {topic}")
    } else {
        "publish".to_owned()
    };
    let span = tracing::info_span!(
        "publish",
        otel.name = %name,
        otel.kind = "producer",
        messaging.system = "gcp_pubsub",
        messaging.operation.type = "send",
        messaging.destination.name = tracing::field::Empty,
        // The bridge to OpenTelemetry writes unsigned integers as strings, so the count is
        // recorded as an i64.
        messaging.batch.message_count = messages.len() as i64,
    );
    if one_topic {
        span.record("messaging.destination.name", topic);
    }
    span
}

/// Gives the publish `span` the parent or the links of the contexts `messages` carry, as
/// [`publish_span`] describes.
fn link_carried_contexts(span: &tracing::Span, messages: &[TopicMessage]) {
    // A batch of 1000 routed entries carries hundreds of contexts, too many for a linear
    // search of the ones already found. Reading stops at the link limit.
    let mut carried = Vec::new();
    let mut seen = HashSet::new();
    for message in messages {
        let span_context = carried_span_context(&message.message.attributes);
        if span_context.is_valid() && seen.insert((span_context.trace_id(), span_context.span_id()))
        {
            carried.push(span_context);
            if carried.len() == MAX_PUBLISH_LINKS {
                break;
            }
        }
    }
    let all_carry_one = carried.len() == 1
        && messages
            .iter()
            .all(|message| has_context(&message.message.attributes));
    if all_carry_one {
        // The span leaves the caller's span, such as the RPC's, for the publisher's context,
        // and keeps a link to it.
        let caller = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        set_parent(span, &messages[0].message.attributes);
        if caller.is_valid() && caller != carried[0] {
            span.add_link(caller);
        }
    } else {
        for span_context in carried {
            span.add_link(span_context);
        }
    }
}

/// Returns the span of moving a message of `subscription` to its dead-letter topic, a child
/// of the context the message carries. The copy keeps that context, so its consumers
/// continue the same trace.
pub(crate) fn dead_letter_span(
    subscription: &str,
    dead_letter_topic: &str,
    original: &crate::store::StoredMessage,
    attempts: u32,
) -> tracing::Span {
    let span = tracing::info_span!(
        "dead letter",
        otel.name = %format_args!("dead letter {subscription}"),
        otel.kind = "producer",
        messaging.system = "gcp_pubsub",
        messaging.operation.type = "send",
        messaging.destination.subscription.name = %subscription,
        messaging.destination.name = %dead_letter_topic,
        messaging.message.id = %original.id(),
        attempt = i64::from(attempts),
    );
    set_parent(&span, &original.message.attributes);
    span
}

/// Starts one trace per log entry of a routed batch: a root span `ingest entry` for each
/// entry that produced messages, linked to `batch`, whose context goes into those messages.
/// `message_entries` gives the entry of each message. Without it, every entry of a long
/// ingest stream would join one trace. Returns the contexts written, for
/// [`entries_publish_span`], which then need not read them back from the messages.
///
/// The spans are made with the OpenTelemetry tracer that [`activate`] installed, not through
/// `tracing`, where each span would pass through every layer of the subscriber and carry the
/// bridge's code-location and thread attributes. The entries of a batch are routed together,
/// so their spans share one start and end time, read once. An entry that the sampler drops
/// costs its ids and the sampling decision, and its messages still carry a `traceparent`,
/// with the sampled flag 0, so that the hops downstream drop it too.
pub fn start_entry_traces(
    batch: &tracing::Span,
    messages: &mut [TopicMessage],
    message_entries: &[u32],
) -> EntryContexts {
    let mut written = EntryContexts::default();
    let Some(tracer) = TRACER.get() else {
        return written;
    };
    if messages.is_empty() {
        return written;
    }
    let batch_context = batch.context().span().span_context().clone();
    let root = opentelemetry::Context::new();
    let now = std::time::SystemTime::now();
    let mut index = 0;
    while index < messages.len() {
        let entry = message_entries.get(index).copied();
        let mut end = index + 1;
        while end < messages.len() && message_entries.get(end).copied() == entry {
            end += 1;
        }
        let span_context = start_entry_span(tracer, &batch_context, entry, &root, now);
        let traceparent = format_traceparent(&span_context);
        let tracestate = span_context.trace_state().header();
        // Most entries produce one message, which takes the formatted value itself.
        let (last, others) = messages[index..end]
            .split_last_mut()
            .expect("the range contains at least its first message");
        for message in others {
            let attributes = &mut message.message.attributes;
            insert_within_limit(attributes, TRACEPARENT, traceparent.clone());
            if !tracestate.is_empty() {
                insert_within_limit(attributes, TRACESTATE, tracestate.clone());
            }
        }
        let attributes = &mut last.message.attributes;
        insert_within_limit(attributes, TRACEPARENT, traceparent);
        if !tracestate.is_empty() {
            insert_within_limit(attributes, TRACESTATE, tracestate);
        }
        if written.0.len() < MAX_PUBLISH_LINKS {
            written.0.push(span_context);
        }
        index = end;
    }
    written
}

/// The contexts that [`start_entry_traces`] wrote into the messages of a batch, up to the
/// link limit of a publish span.
#[derive(Debug, Default)]
pub struct EntryContexts(Vec<SpanContext>);

impl EntryContexts {
    /// Returns whether no entry trace was started, as when tracing is off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Returns the span of publishing the messages of a routed batch, each of which carries the
/// context of its entry's trace. It is the span that [`publish_span`] makes for such
/// messages, without reading the contexts back, and the messages keep them. For one entry,
/// it is a child of the entry's span and links to the caller's span. For several, it is a
/// child of the caller's span and links to each entry's span.
pub(crate) fn entries_publish_span(
    messages: &[TopicMessage],
    contexts: EntryContexts,
) -> tracing::Span {
    let span = publish_span_named(messages);
    if let [entry] = contexts.0.as_slice() {
        let caller = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        // As a context read from a message would be, the parent is remote.
        let parent = SpanContext::new(
            entry.trace_id(),
            entry.span_id(),
            entry.trace_flags(),
            true,
            entry.trace_state().clone(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        if caller.is_valid() {
            span.add_link(caller);
        }
        return span;
    }
    for span_context in contexts.0 {
        span.add_link(span_context);
    }
    span
}

/// Starts and ends the root span of one entry at `time`, and returns its context.
fn start_entry_span(
    tracer: &SdkTracer,
    batch_context: &SpanContext,
    entry: Option<u32>,
    root: &opentelemetry::Context,
    time: std::time::SystemTime,
) -> SpanContext {
    let mut builder = tracer.span_builder(ENTRY_SPAN_NAME).with_start_time(time);
    // The sampler may read the links, so they are given before the decision.
    if batch_context.is_valid() {
        builder = builder.with_links(vec![Link::with_context(batch_context.clone())]);
    }
    let mut span = builder.start_with_context(tracer, root);
    if span.is_recording() {
        if let Some(entry) = entry {
            span.set_attribute(KeyValue::new(ENTRY_INDEX, i64::from(entry)));
        }
    }
    let span_context = span.span_context().clone();
    span.end_with_timestamp(time);
    span_context
}

/// Formats a `traceparent` value as the W3C Trace Context recommendation (version 00) defines
/// it: version, trace id, parent span id and flags, in lowercase hexadecimal.
///
/// The digits are written by hand: a routed batch formats one value per entry, and `format!`
/// with the ids' hexadecimal formatting cost about ten times as much.
fn format_traceparent(span_context: &SpanContext) -> String {
    let mut value = String::with_capacity(TRACEPARENT_LEN);
    value.push_str("00-");
    push_hex(&mut value, &span_context.trace_id().to_bytes());
    value.push('-');
    push_hex(&mut value, &span_context.span_id().to_bytes());
    value.push('-');
    push_hex(
        &mut value,
        &[(span_context.trace_flags() & TraceFlags::SAMPLED).to_u8()],
    );
    value
}

/// The length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// Appends `bytes` to `out` in lowercase hexadecimal.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Returns the value of a lowercase hexadecimal number, `None` for any other character.
fn parse_lower_hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0_u128, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u128::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span_context(flags: TraceFlags) -> SpanContext {
        SpanContext::new(
            opentelemetry::trace::TraceId::from_hex("0af7651916cd43dd8448eb211c80319c")
                .expect("valid trace id"),
            opentelemetry::trace::SpanId::from_hex("b7ad6b7169203331").expect("valid span id"),
            flags,
            false,
            opentelemetry::trace::TraceState::default(),
        )
    }

    #[test]
    fn traceparent_of_sampled_span() {
        assert_eq!(
            format_traceparent(&span_context(TraceFlags::SAMPLED)),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn formatted_traceparent_parses_back() {
        for (trace, span) in [
            (1_u128, 1_u64),
            (u128::MAX, u64::MAX),
            (0x0af7651916cd43dd8448eb211c80319c, 0x00f067aa0ba902b7),
        ] {
            for flags in [TraceFlags::SAMPLED, TraceFlags::NOT_SAMPLED] {
                let context = SpanContext::new(
                    TraceId::from(trace),
                    SpanId::from(span),
                    flags,
                    true,
                    TraceState::default(),
                );
                let value = format_traceparent(&context);
                assert_eq!(value.len(), TRACEPARENT_LEN, "{value}");
                assert_eq!(parse_plain_traceparent(&value), Some(context), "{value}");
            }
        }
    }

    #[test]
    fn traceparent_of_unsampled_span() {
        assert_eq!(
            format_traceparent(&span_context(TraceFlags::NOT_SAMPLED)),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        );
    }

    fn propagator_reading(value: &str) -> SpanContext {
        use opentelemetry::propagation::TextMapPropagator as _;
        let attributes = BTreeMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
        opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&AttributeExtractor {
                attributes: &attributes,
                google_only: false,
            })
            .span()
            .span_context()
            .clone()
    }

    #[test]
    fn plain_traceparent_reads_as_propagator() {
        for value in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
            "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01",
        ] {
            let parsed = parse_plain_traceparent(value).expect("a plain traceparent");
            assert_eq!(parsed, propagator_reading(value), "{value}");
        }
    }

    #[test]
    fn other_traceparents_go_to_propagator() {
        for value in [
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
            "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
            "",
        ] {
            assert_eq!(parse_plain_traceparent(value), None, "{value}");
        }
    }

    #[test]
    fn google_names_carry_prefix() {
        for key in [TRACEPARENT, TRACESTATE, "baggage"] {
            assert_eq!(google_name(key), format!("{GOOGLE_CLIENT_PREFIX}{key}"));
        }
    }

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

    #[test]
    fn injector_stops_at_attribute_limit() {
        let mut attributes: BTreeMap<String, String> = (0..MAX_ATTRIBUTES)
            .map(|index| (format!("key{index}"), "value".to_owned()))
            .collect();
        let mut injector = AttributeInjector(&mut attributes);
        injector.set(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        );
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert!(!attributes.contains_key(TRACEPARENT));
    }

    #[test]
    fn injector_fills_last_free_slot() {
        let mut attributes: BTreeMap<String, String> = (0..MAX_ATTRIBUTES - 1)
            .map(|index| (format!("key{index}"), "value".to_owned()))
            .collect();
        let mut injector = AttributeInjector(&mut attributes);
        injector.set(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        );
        assert_eq!(attributes.len(), MAX_ATTRIBUTES);
        assert!(attributes.contains_key(TRACEPARENT));
    }

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const OTHER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn carried(pairs: &[(&str, &str)]) -> SpanContext {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let attributes = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        carried_span_context(&attributes)
    }

    #[test]
    fn malformed_traceparent_falls_back_to_google_name() {
        let expected = parse_plain_traceparent(VALID).expect("valid");
        for malformed in [
            "garbage",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
        ] {
            let context = carried(&[(TRACEPARENT, malformed), (GOOGLE_TRACEPARENT, VALID)]);
            assert_eq!(context, expected, "{malformed}");
            // With a `tracestate`, the propagator path reads the same.
            let context = carried(&[
                (TRACEPARENT, malformed),
                (TRACESTATE, "vendor=1"),
                (GOOGLE_TRACEPARENT, VALID),
            ]);
            assert_eq!(context.trace_id(), expected.trace_id(), "{malformed}");
        }
    }

    #[test]
    fn valid_traceparent_wins_over_google_name() {
        let context = carried(&[(TRACEPARENT, VALID), (GOOGLE_TRACEPARENT, OTHER)]);
        assert_eq!(context, parse_plain_traceparent(VALID).expect("valid"));
    }

    #[test]
    fn outgoing_traceparent_without_tracing_forwards_valid_value() {
        let attributes = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        let none = tracing::Span::none();
        let google = attributes(&[(GOOGLE_TRACEPARENT, VALID)]);
        assert_eq!(outgoing_traceparent(&none, &google).as_deref(), Some(VALID));
        let both = attributes(&[(TRACEPARENT, "garbage"), (GOOGLE_TRACEPARENT, VALID)]);
        assert_eq!(outgoing_traceparent(&none, &both).as_deref(), Some(VALID));
        let plain = attributes(&[(TRACEPARENT, OTHER), (GOOGLE_TRACEPARENT, VALID)]);
        assert_eq!(outgoing_traceparent(&none, &plain).as_deref(), Some(OTHER));
    }

    #[test]
    fn malformed_traceparent_alone_is_no_context() {
        assert!(!carried(&[(TRACEPARENT, "garbage")]).is_valid());
        let attributes = BTreeMap::from([(TRACEPARENT.to_owned(), "garbage".to_owned())]);
        assert!(!has_context(&attributes));
        assert_eq!(
            outgoing_traceparent(&tracing::Span::none(), &attributes),
            None
        );
    }
}
