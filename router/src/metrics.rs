//! The router's OpenTelemetry instruments: messages published per topic, the time and size
//! of each store commit, and the delivery latency that the runner and client pulls share.
//!
//! They record to the global meter provider as it is when they are first used. The binary
//! installs its provider before it opens the store; without one, they record nothing.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::KeyValue;

use crate::store::TopicMessage;

/// Bucket bounds of the commit duration histogram, in seconds: one fdatasync on an SSD takes
/// about 0.2 ms, and a commit that takes seconds points at a failing disk.
const COMMIT_SECONDS_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Bucket bounds of the commit size histogram, in writes; one commit takes at most
/// 10,000 writes.
const COMMIT_WRITES_BUCKETS: [f64; 10] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0, 1000.0, 10_000.0,
];

/// Bucket bounds of the delivery latency histogram, in seconds, from a fast in-process
/// handler (about a millisecond) to the maximum ack deadline of 600 s.
const LATENCY_SECONDS_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];

struct Instruments {
    sent_messages: Counter<u64>,
    commit_duration: Histogram<f64>,
    commit_writes: Histogram<u64>,
    delivery_latency: Histogram<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("sluice");
        Instruments {
            // OpenTelemetry's messaging semantic conventions name this metric.
            sent_messages: meter
                .u64_counter("messaging.client.sent.messages")
                .with_unit("{message}")
                .with_description("Messages published, per topic")
                .build(),
            commit_duration: meter
                .f64_histogram("sluice.store.commit.duration")
                .with_unit("s")
                .with_description("Time to write and flush one group of store writes")
                .with_boundaries(COMMIT_SECONDS_BUCKETS.to_vec())
                .build(),
            commit_writes: meter
                .u64_histogram("sluice.store.commit.writes")
                .with_unit("{write}")
                .with_description("Writes (publishes, acks and others) in one store commit")
                .with_boundaries(COMMIT_WRITES_BUCKETS.to_vec())
                .build(),
            delivery_latency: meter
                .f64_histogram("sluice.delivery.latency")
                .with_unit("s")
                .with_description(
                    "Time from a message's publish to each delivery of it: pushed to a \
                     handler or endpoint (mode push) or returned to a pull (mode pull)",
                )
                .with_boundaries(LATENCY_SECONDS_BUCKETS.to_vec())
                .build(),
        }
    })
}

/// Returns the number of messages per topic in one publish call, for [`count_sent`].
pub(crate) fn messages_per_topic(messages: &[TopicMessage]) -> Vec<(String, u64)> {
    let mut per_topic: Vec<(String, u64)> = Vec::new();
    for message in messages {
        match per_topic
            .iter_mut()
            .find(|(topic, _)| *topic == message.topic)
        {
            Some((_, count)) => *count += 1,
            None => per_topic.push((message.topic.clone(), 1)),
        }
    }
    per_topic
}

/// Counts the messages of a successful publish call, per topic.
pub(crate) fn count_sent(per_topic: Vec<(String, u64)>) {
    let sent_messages = &instruments().sent_messages;
    for (topic, count) in per_topic {
        let attributes = [
            KeyValue::new("messaging.system", "gcp_pubsub"),
            KeyValue::new("messaging.destination.name", topic),
        ];
        sent_messages.add(count, &attributes);
    }
}

/// Records one commit of `store` (`sled` or `jetstream`): how long it took and how many
/// writes it carried.
pub(crate) fn record_commit(store: &'static str, duration: Duration, writes: usize) {
    let instruments = instruments();
    let attributes = [KeyValue::new("store", store)];
    instruments
        .commit_duration
        .record(duration.as_secs_f64(), &attributes);
    instruments
        .commit_writes
        .record(u64::try_from(writes).unwrap_or(u64::MAX), &attributes);
}

/// The way a message reached its consumer, which is the `mode` label of the delivery latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Sluice sent it to a handler or push endpoint.
    Push,
    /// A client pulled it.
    Pull,
}

/// Records the time from `publish_time` to now, for a delivery on `subscription`.
pub fn record_delivery(subscription: &str, mode: DeliveryMode, publish_time: SystemTime) {
    let latency = SystemTime::now()
        .duration_since(publish_time)
        .unwrap_or_default();
    let mode = match mode {
        DeliveryMode::Push => "push",
        DeliveryMode::Pull => "pull",
    };
    let attributes = [
        KeyValue::new("subscription", subscription.to_owned()),
        KeyValue::new("mode", mode),
    ];
    instruments()
        .delivery_latency
        .record(latency.as_secs_f64(), &attributes);
}
