"""Publishes one message with google-cloud-pubsub's OpenTelemetry tracing on.

The client writes the trace context of its "create" span into the message attribute
googclient_traceparent. The script prints that span's trace id and span id (lowercase hex)
on one line, for the Rust test to find sluice's continuation of the trace.

Usage: pubsub_tracing.py TOPIC, with PUBSUB_EMULATOR_HOST set to the server.
"""

import sys

from google.cloud import pubsub_v1
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main() -> None:
    topic = sys.argv[1]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    options = pubsub_v1.types.PublisherOptions(enable_open_telemetry_tracing=True)
    publisher = pubsub_v1.PublisherClient(publisher_options=options)
    publisher.publish(topic, b"traced order").result(timeout=30)

    short_name = topic.split("/")[-1]
    create = [span for span in exporter.get_finished_spans() if span.name == f"{short_name} create"]
    if len(create) != 1:
        names = [span.name for span in exporter.get_finished_spans()]
        sys.exit(f"expected one '{short_name} create' span, found: {names}")
    context = create[0].get_span_context()
    print(f"{context.trace_id:032x} {context.span_id:016x}")


if __name__ == "__main__":
    main()
