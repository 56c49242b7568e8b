//! Encodes a batch of finished spans as the protobuf body of an OTLP
//! `ExportTraceServiceRequest`, in one pass over the spans and without building the
//! message structs first.
//!
//! opentelemetry-otlp converts each span into opentelemetry-proto's structs, copying every
//! name, key and string value into a new `String`, and prost then computes the length of
//! each nested message again for every level above it. Under callgrind that cost about
//! 10,000 instructions per span of a routed entry, more than the rest of the entry's trace.
//! Here each field is written straight into one buffer. A nested message's length is written
//! in front of it once its body is known: one byte is reserved, which fits any body under
//! 128 bytes, and the body is moved only for longer ones.
//!
//! The fields and the values of the enums follow opentelemetry-proto 0.33
//! (`opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`), and each span
//! is encoded as its `From<SpanData>` conversion builds it, which the tests check by decoding
//! the output with that crate's types.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

/// Wire type of varints.
const VARINT: u8 = 0;
/// Wire type of 8-byte little-endian values.
const FIXED64: u8 = 1;
/// Wire type of length-delimited values: strings, bytes and nested messages.
const LEN: u8 = 2;
/// Wire type of 4-byte little-endian values.
const FIXED32: u8 = 5;

/// `SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: the next bit is meaningful.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`: the parent or linked span is remote.
const FLAG_IS_REMOTE: u32 = 0x200;

/// The resource that every exported span shares, encoded once.
#[derive(Debug, Clone, Default)]
pub(super) struct EncodedResource {
    /// The body of the `Resource` message.
    attributes: Vec<u8>,
    /// The resource's schema URL, empty when it has none.
    schema_url: String,
}

impl EncodedResource {
    pub(super) fn new(resource: &Resource) -> EncodedResource {
        let mut writer = Writer::default();
        for (key, value) in resource.iter() {
            writer.message(1, |writer| key_value(writer, key.as_str(), value));
        }
        EncodedResource {
            attributes: writer.buf,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// Returns the body of an `ExportTraceServiceRequest` that carries `spans` under `resource`,
/// grouped by instrumentation scope in the order each scope first appears.
pub(super) fn export_request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    // The spans of a process come from one or two scopes, so a linear search is the cheapest.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    let mut scope_of = Vec::with_capacity(spans.len());
    for span in spans {
        let scope = &span.instrumentation_scope;
        let index = match scopes.iter().position(|known| *known == scope) {
            Some(index) => index,
            None => {
                scopes.push(scope);
                scopes.len() - 1
            }
        };
        scope_of.push(index);
    }
    let mut writer = Writer {
        // About 150 bytes per span of a routed entry, and the buffer grows if that is short.
        buf: Vec::with_capacity(256 + spans.len() * 160),
    };
    if spans.is_empty() {
        return writer.buf;
    }
    // ExportTraceServiceRequest.resource_spans
    writer.message(1, |writer| {
        // ResourceSpans.resource
        writer.message(1, |writer| writer.raw(&resource.attributes));
        for (index, scope) in scopes.iter().enumerate() {
            // ResourceSpans.scope_spans
            writer.message(2, |writer| {
                writer.message(1, |writer| instrumentation_scope(writer, scope));
                for (span, _) in spans.iter().zip(&scope_of).filter(|(_, of)| **of == index) {
                    writer.message(2, |writer| encode_span(writer, span));
                }
                writer.string(3, scope.schema_url().unwrap_or_default());
            });
        }
        writer.string(3, &resource.schema_url);
    });
    writer.buf
}

fn instrumentation_scope(writer: &mut Writer, scope: &InstrumentationScope) {
    writer.string(1, scope.name());
    writer.string(2, scope.version().unwrap_or_default());
    attributes(writer, 3, scope.attributes());
}

fn encode_span(writer: &mut Writer, span: &SpanData) {
    let context = &span.span_context;
    writer.bytes(1, &context.trace_id().to_bytes());
    writer.bytes(2, &context.span_id().to_bytes());
    trace_state(writer, 3, context);
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        writer.bytes(4, &span.parent_span_id.to_bytes());
    }
    writer.string(5, &span.name);
    writer.uint(6, span_kind(&span.span_kind));
    writer.fixed64(7, unix_nanos(span.start_time));
    writer.fixed64(8, unix_nanos(span.end_time));
    attributes(writer, 9, &span.attributes);
    writer.uint(10, u64::from(span.dropped_attributes_count));

    for event in span.events.iter() {
        writer.message(11, |writer| {
            writer.fixed64(1, unix_nanos(event.timestamp));
            writer.string(2, &event.name);
            attributes(writer, 3, &event.attributes);
            writer.uint(4, u64::from(event.dropped_attributes_count));
        });
    }
    writer.uint(12, u64::from(span.events.dropped_count));

    for link in span.links.iter() {
        writer.message(13, |writer| {
            let linked = &link.span_context;
            writer.bytes(1, &linked.trace_id().to_bytes());
            writer.bytes(2, &linked.span_id().to_bytes());
            trace_state(writer, 3, linked);
            attributes(writer, 4, &link.attributes);
            writer.uint(5, u64::from(link.dropped_attributes_count));
            writer.fixed32(6, flags(linked, linked.is_remote()));
        });
    }
    writer.uint(14, u64::from(span.links.dropped_count));

    // The conversion always sets a status, so an unset one is an empty message.
    writer.message(15, |writer| match &span.status {
        Status::Unset => {}
        Status::Ok => writer.uint(3, 1),
        Status::Error { description } => {
            writer.string(2, description);
            writer.uint(3, 2);
        }
    });
    writer.fixed32(16, flags(context, span.parent_span_is_remote));
}

/// Returns the `flags` field of a span or link: the W3C trace flags, with the bit that marks
/// whether the parent (or the linked span) is remote.
fn flags(context: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(context.trace_flags().to_u8()) | FLAG_HAS_IS_REMOTE;
    if remote {
        flags |= FLAG_IS_REMOTE;
    }
    flags
}

fn trace_state(writer: &mut Writer, field: u32, context: &SpanContext) {
    let header = context.trace_state().header();
    writer.string(field, &header);
}

/// Returns the value of `Span.SpanKind` for `kind`.
fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Returns nanoseconds since the Unix epoch, and 0 for a time before it, as the SDK's
/// conversion does.
fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

fn attributes<'a>(
    writer: &mut Writer,
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for attribute in attributes {
        writer.message(field, |writer| {
            key_value(writer, attribute.key.as_str(), &attribute.value);
        });
    }
}

/// Writes the body of a `KeyValue`.
fn key_value(writer: &mut Writer, key: &str, value: &Value) {
    writer.string(1, key);
    writer.message(2, |writer| any_value(writer, value));
}

/// Writes the body of an `AnyValue`. Its value is a `oneof`, so a zero or empty value is
/// still written, as prost does.
fn any_value(writer: &mut Writer, value: &Value) {
    match value {
        Value::Bool(value) => writer.varint_field(2, u64::from(*value)),
        Value::I64(value) => writer.int64_field(3, *value),
        Value::F64(value) => writer.double_field(4, *value),
        Value::String(value) => writer.string_field(1, value.as_str()),
        Value::Array(array) => writer.message(5, |writer| array_values(writer, array)),
        // A kind of value added to the API after 0.33 is sent as its text.
        other => writer.string_field(1, &other.as_str()),
    }
}

/// Writes the body of an `ArrayValue`.
fn array_values(writer: &mut Writer, array: &Array) {
    match array {
        Array::Bool(values) => {
            for value in values {
                writer.message(1, |writer| writer.varint_field(2, u64::from(*value)));
            }
        }
        Array::I64(values) => {
            for value in values {
                writer.message(1, |writer| writer.int64_field(3, *value));
            }
        }
        Array::F64(values) => {
            for value in values {
                writer.message(1, |writer| writer.double_field(4, *value));
            }
        }
        Array::String(values) => {
            for value in values {
                writer.message(1, |writer| writer.string_field(1, value.as_str()));
            }
        }
        other => {
            let text = other.to_string();
            writer.message(1, |writer| writer.string_field(1, &text));
        }
    }
}

/// Appends protobuf fields to a buffer. The plain field methods leave out a field that has
/// its default value, as proto3 does. The `_field` ones always write it, for `oneof` members.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            // Truncation keeps the low seven bits, which is the point.
            #[allow(clippy::cast_possible_truncation)]
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire_type)));
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.string_field_bytes(field, bytes);
        }
    }

    fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    fn string_field(&mut self, field: u32, value: &str) {
        self.string_field_bytes(field, value.as_bytes());
    }

    fn string_field_bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn uint(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.varint_field(field, value);
        }
    }

    fn varint_field(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    /// Writes an `int64`, whose negative values take ten bytes, as in two's complement.
    fn int64_field(&mut self, field: u32, value: i64) {
        #[allow(clippy::cast_sign_loss)]
        self.varint_field(field, value as u64);
    }

    fn double_field(&mut self, field: u32, value: f64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&value.to_bits().to_le_bytes());
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        if value != 0 {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        if value != 0 {
            self.key(field, FIXED32);
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// Writes a nested message whose body `body` writes, with its length in front.
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Writer)) {
        self.key(field, LEN);
        let length_at = self.buf.len();
        self.buf.push(0);
        let start = self.buf.len();
        body(self);
        let length = self.buf.len() - start;
        if let Ok(short) = u8::try_from(length) {
            if short < 0x80 {
                self.buf[length_at] = short;
                return;
            }
        }
        // The length takes more than the reserved byte: its first byte goes there and the
        // rest in front of the body, which moves once.
        let mut prefix = Writer {
            buf: Vec::with_capacity(10),
        };
        prefix.varint(length as u64);
        self.buf[length_at] = prefix.buf[0];
        self.buf
            .splice(start..start, prefix.buf[1..].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use opentelemetry::trace::{Event, Link, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::StringValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;

    use super::*;

    fn context(trace: u128, span: u64, state: &str, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            state.parse::<TraceState>().expect("valid trace state"),
        )
    }

    fn every_value() -> Vec<KeyValue> {
        vec![
            KeyValue::new("string", "value"),
            KeyValue::new("empty", ""),
            // Longer than 127 bytes, so its length takes two bytes, and the messages around it
            // move.
            KeyValue::new("long", "x".repeat(300)),
            KeyValue::new("long.longer", "y".repeat(2_000)),
            KeyValue::new("bool", false),
            KeyValue::new("int", 0_i64),
            KeyValue::new("negative", -42_i64),
            KeyValue::new("double", 0.0_f64),
            KeyValue::new("pi", std::f64::consts::PI),
            KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
            KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, i64::MAX]))),
            KeyValue::new("doubles", Value::Array(Array::F64(vec![0.5, -2.0]))),
            KeyValue::new(
                "strings",
                Value::Array(Array::String(vec![StringValue::from("a"), "".into()])),
            ),
            KeyValue::new("no.values", Value::Array(Array::I64(Vec::new()))),
        ]
    }

    fn span(name: &'static str, scope: &InstrumentationScope) -> SpanData {
        let start = UNIX_EPOCH + Duration::from_nanos(1_733_400_000_123_456_789);
        SpanData {
            span_context: context(
                0x0af7651916cd43dd8448eb211c80319c,
                0xb7ad6b7169203331,
                "",
                false,
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed(name),
            start_time: start,
            end_time: start + Duration::from_micros(250),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope.clone(),
        }
    }

    /// Spans that use every field, from two scopes, interleaved.
    fn spans() -> Vec<SpanData> {
        let sluice = InstrumentationScope::builder("sluice").build();
        let other = InstrumentationScope::builder("other")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.26.0")
            .with_attributes([KeyValue::new("scope.key", 7_i64)])
            .build();
        let mut entry = span("ingest entry", &sluice);
        entry.attributes = vec![KeyValue::new("log.entry.index", 12_i64)];
        entry.links.links = vec![Link::with_context(context(1, 2, "", false))];

        let mut full = span("publish projects/p/topics/t", &other);
        full.span_context = context(u128::MAX, u64::MAX, "vendor=value,other=x", true);
        full.parent_span_id = SpanId::from(0x00f067aa0ba902b7);
        full.parent_span_is_remote = true;
        full.span_kind = SpanKind::Producer;
        full.attributes = every_value();
        full.dropped_attributes_count = 3;
        full.events.events = vec![
            Event::new(
                "retry",
                UNIX_EPOCH + Duration::from_secs(5),
                every_value(),
                1,
            ),
            Event::new("bare", UNIX_EPOCH + Duration::from_secs(6), Vec::new(), 0),
        ];
        full.events.dropped_count = 2;
        full.links.links = vec![
            Link::new(
                context(5, 6, "k=v", true),
                vec![KeyValue::new("link", true)],
                4,
            ),
            Link::with_context(context(7, 8, "", false)),
        ];
        full.links.dropped_count = 9;
        full.status = Status::error("the handler failed");

        let mut ok = span("handle thumbnail", &sluice);
        ok.span_kind = SpanKind::Consumer;
        ok.status = Status::Ok;
        let mut before_epoch = span("server", &other);
        before_epoch.span_kind = SpanKind::Server;
        before_epoch.start_time = UNIX_EPOCH - Duration::from_secs(1);
        let mut client = span("client", &sluice);
        client.span_kind = SpanKind::Client;
        vec![entry, full, ok, before_epoch, client]
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_service_name("sluice")
            .with_attributes([
                KeyValue::new("host.name", "node-1"),
                KeyValue::new("process.pid", 4242_i64),
            ])
            .with_schema_url(
                [KeyValue::new("deployment.environment", "test")],
                "https://opentelemetry.io/schemas/1.26.0",
            )
            .build()
    }

    /// Sorts what may come in another order: the scopes, which the SDK's conversion groups
    /// in a hash map.
    fn normalized(mut request: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
        for resource_spans in &mut request {
            resource_spans.scope_spans.sort_by(|a, b| {
                a.scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .cmp(&b.scope.as_ref().map(|s| s.name.clone()))
            });
            if let Some(resource) = &mut resource_spans.resource {
                resource.attributes.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        request
    }

    #[test]
    fn request_decodes_as_the_sdk_conversion_builds_it() {
        let resource = resource();
        let encoded = export_request(&EncodedResource::new(&resource), &spans());
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice())
            .expect("the body decodes as an ExportTraceServiceRequest");
        let expected = group_spans_by_resource_and_scope(
            spans(),
            &ResourceAttributesWithSchema::from(&resource),
        );
        assert_eq!(normalized(decoded.resource_spans), normalized(expected));
    }

    #[test]
    fn scopes_keep_the_order_of_their_spans() {
        let encoded = export_request(&EncodedResource::new(&resource()), &spans());
        let decoded = ExportTraceServiceRequest::decode(encoded.as_slice()).expect("decodes");
        let scope_spans = &decoded.resource_spans[0].scope_spans;
        let names: Vec<Vec<&str>> = scope_spans
            .iter()
            .map(|scope| scope.spans.iter().map(|span| span.name.as_str()).collect())
            .collect();
        assert_eq!(
            names,
            [
                vec!["ingest entry", "handle thumbnail", "client"],
                vec!["publish projects/p/topics/t", "server"],
            ]
        );
    }

    #[test]
    fn body_is_as_long_as_prost_encodes_it() {
        // A length of the wrong size would shift every field after it, so equal sizes show
        // that each length prefix is minimal, as prost writes it.
        let resource = resource();
        let encoded = export_request(&EncodedResource::new(&resource), &spans());
        let expected = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans(),
                &ResourceAttributesWithSchema::from(&resource),
            ),
        };
        assert_eq!(encoded.len(), expected.encoded_len());
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        assert!(export_request(&EncodedResource::default(), &[]).is_empty());
    }

    #[test]
    fn lengths_of_every_size_decode() {
        let scope = InstrumentationScope::builder("sluice").build();
        for length in [0, 1, 100, 127, 128, 129, 16_383, 16_384, 2_097_152] {
            let mut one = span("sized", &scope);
            one.attributes = vec![KeyValue::new("value", "z".repeat(length))];
            let encoded = export_request(&EncodedResource::default(), &[one]);
            let decoded = ExportTraceServiceRequest::decode(encoded.as_slice())
                .unwrap_or_else(|err| panic!("length {length}: {err}"));
            let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
            let value = span.attributes[0]
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref());
            let Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(text)) =
                value
            else {
                panic!("length {length}: no string value in {span:?}");
            };
            assert_eq!(text.len(), length);
        }
    }
}
