//! The JSON log line: tracing-subscriber's JSON layout plus the OpenTelemetry trace and span
//! ids of the current span, so that a log collector can join log lines to traces.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Writes one JSON object per event: `timestamp`, `level`, `target`, `fields`, the innermost
/// `span` and the list of `spans` with their fields, and `trace_id` and `span_id` (lowercase
/// hex, as in W3C `traceparent`) when the current span is recorded by OpenTelemetry.
#[derive(Debug)]
pub(super) struct JsonWithTraceIds;

impl<S> FormatEvent<S, JsonFields> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        let mut fields = FieldMap::default();
        event.record(&mut fields);
        line.insert("fields".into(), Value::Object(fields.0));

        if let Some(scope) = context.event_scope() {
            let spans: Vec<Value> = scope.from_root().map(|span| span_entry(&span)).collect();
            if let Some(innermost) = spans.last() {
                line.insert("span".into(), innermost.clone());
            }
            line.insert("spans".into(), Value::Array(spans));
        }

        let otel_context = tracing::Span::current().context();
        let otel_span = otel_context.span();
        let ids = otel_span.span_context();
        if ids.is_valid() {
            line.insert("trace_id".into(), ids.trace_id().to_string().into());
            line.insert("span_id".into(), ids.span_id().to_string().into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Returns a span's name and fields as one JSON object.
fn span_entry<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Value
where
    S: for<'a> LookupSpan<'a>,
{
    let mut entry = Map::new();
    entry.insert("name".into(), span.name().into());
    let extensions = span.extensions();
    if let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>() {
        if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(formatted) {
            entry.extend(fields);
        }
    }
    Value::Object(entry)
}

/// The fields of one event as JSON values.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}
