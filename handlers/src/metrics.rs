//! The runner's OpenTelemetry instruments: handler durations, and the delivery latency that
//! it records through the router's histogram.
//!
//! They record to the global meter provider as it is when they are first used; without one,
//! they record nothing.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::Histogram;
use opentelemetry::KeyValue;
use sluice_router::metrics::DeliveryMode;

/// Bucket bounds in seconds, from a fast in-process handler (about a millisecond) to the
/// maximum ack deadline of 600 s.
const SECONDS_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];

struct Instruments {
    process_duration: Histogram<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("sluice");
        Instruments {
            // OpenTelemetry's messaging semantic conventions name this metric.
            process_duration: meter
                .f64_histogram("messaging.process.duration")
                .with_unit("s")
                .with_description("Duration of one handler run, per subscription and handler")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
        }
    })
}

/// Records the time from `publish_time` to now, for a delivery on `subscription` that the
/// runner pushes to its handler.
pub(crate) fn record_delivery(subscription: &str, publish_time: SystemTime) {
    sluice_router::metrics::record_delivery(subscription, DeliveryMode::Push, publish_time);
}

/// Records one handler run. `error_type` is `None` for a success, or the kind of failure.
pub(crate) fn record_run(
    subscription: &str,
    handler: &str,
    duration: Duration,
    error_type: Option<&'static str>,
) {
    let mut attributes = vec![
        KeyValue::new("messaging.system", "gcp_pubsub"),
        KeyValue::new(
            "messaging.destination.subscription.name",
            subscription.to_owned(),
        ),
        KeyValue::new("handler", handler.to_owned()),
    ];
    if let Some(kind) = error_type {
        attributes.push(KeyValue::new("error.type", kind));
    }
    instruments()
        .process_duration
        .record(duration.as_secs_f64(), &attributes);
}
