//! Instruments observed at scrape time: the broker's per-subscription counters and gauges,
//! the handler runners' and push subscriptions' counters, and the process's memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;
use sluice_handlers::push::PushStats;
use sluice_handlers::runner::RunnerStats;
use sluice_router::deliver::{Broker, SubscriptionStats};
use sluice_router::store::Store;

use super::lock;

/// The runners of the built-in handlers: subscription, handler name and counters.
pub(super) type HandlerRuns = Arc<Mutex<Vec<(String, String, Arc<RunnerStats>)>>>;

/// Push counters by subscription. They are kept when a subscription's push runner stops, so
/// that a restarted runner counts on from where the last one ended.
pub(super) type PushStatsBySubscription = Arc<Mutex<BTreeMap<String, Arc<PushStats>>>>;

/// A per-subscription figure: instrument name, description and how to read it.
type StatMetric = (&'static str, &'static str, fn(&SubscriptionStats) -> u64);

fn subscription_label(name: &str) -> [KeyValue; 1] {
    [KeyValue::new("subscription", name.to_owned())]
}

/// Returns the labels of a broker figure: the subscription, and `dead_letter="true"` when the
/// subscription reads a topic that some subscription's dead-letter policy writes to. Alerts
/// use it to treat a dead-letter queue, which may wait for a person on purpose, apart.
fn broker_labels(stat: &SubscriptionStats, dead_letter_topics: &BTreeSet<&str>) -> [KeyValue; 2] {
    let dead_letter = dead_letter_topics.contains(stat.spec.topic.as_str());
    [
        KeyValue::new("subscription", stat.spec.name.clone()),
        KeyValue::new("dead_letter", if dead_letter { "true" } else { "false" }),
    ]
}

/// Returns the topics that dead-letter policies write to.
fn dead_letter_topics(stats: &[SubscriptionStats]) -> BTreeSet<&str> {
    stats
        .iter()
        .filter_map(|stat| stat.spec.dead_letter.as_ref())
        .map(|policy| policy.topic.as_str())
        .collect()
}

/// Observes the broker's counters and gauges per subscription.
pub(super) fn observe_broker(meter: &Meter, broker: Arc<Broker>) {
    let counters: [StatMetric; 7] = [
        (
            "sluice_deliveries",
            "Messages handed to consumers, redeliveries included",
            |s| s.delivered,
        ),
        ("sluice_acks", "Messages acknowledged", |s| s.acked),
        ("sluice_nacks", "Deliveries ended by a nack", |s| s.nacked),
        (
            "sluice_dead_letters",
            "Messages moved to a dead-letter topic",
            |s| s.dead_lettered,
        ),
        (
            "sluice_filtered_out",
            "Messages the subscription's filter rejected, acknowledged when published",
            |s| s.filtered_out,
        ),
        (
            "sluice_expired",
            "Unacknowledged messages removed for outliving the message retention",
            |s| s.retention_expired,
        ),
        (
            "sluice_unreadable",
            "Pending messages removed because the store could not read them back",
            |s| s.unreadable,
        ),
    ];
    for (name, description, read) in counters {
        let broker = broker.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                let stats = broker.stats();
                let dead_letter_topics = dead_letter_topics(&stats);
                for stat in &stats {
                    observer.observe(read(stat), &broker_labels(stat, &dead_letter_topics));
                }
            })
            .build();
    }
    let gauges: [StatMetric; 2] = [
        (
            "sluice_backlog_messages",
            "Messages not yet acknowledged, leased ones included",
            |s| s.backlog,
        ),
        (
            "sluice_outstanding_messages",
            "Messages leased to consumers",
            |s| s.outstanding,
        ),
    ];
    for (name, description, read) in gauges {
        let broker = broker.clone();
        meter
            .u64_observable_gauge(name)
            .with_description(description)
            .with_callback(move |observer| {
                let stats = broker.stats();
                let dead_letter_topics = dead_letter_topics(&stats);
                for stat in &stats {
                    observer.observe(read(stat), &broker_labels(stat, &dead_letter_topics));
                }
            })
            .build();
    }
    meter
        .f64_observable_gauge("sluice_oldest_unacked_message_age")
        .with_unit("s")
        .with_description(
            "Age of the oldest message not yet acknowledged, from its publish time; 0 when \
             the subscription has none",
        )
        .with_callback(move |observer| {
            let store = broker.store();
            let stats = broker.stats();
            let dead_letter_topics = dead_letter_topics(&stats);
            for stat in &stats {
                let age = oldest_unacked_age(store.as_ref(), stat).unwrap_or(0.0);
                observer.observe(age, &broker_labels(stat, &dead_letter_topics));
            }
        })
        .build();
}

/// Returns the age in seconds of the subscription's first pending message, which is its
/// oldest because sequence numbers follow publish order. `None` when nothing is pending or
/// the store cannot read it.
fn oldest_unacked_age(store: &dyn Store, stat: &SubscriptionStats) -> Option<f64> {
    if stat.backlog == 0 {
        return None;
    }
    let first = store.pending_from(&stat.spec.name, 0, 1).ok()?;
    let entry = first.first()?;
    let message = store.read(&stat.spec.topic, entry.seq).ok()??;
    let age = SystemTime::now()
        .duration_since(message.publish_time)
        .unwrap_or_default();
    Some(age.as_secs_f64())
}

/// A handler runner figure: instrument name, description and how to read it.
type RunnerMetric = (&'static str, &'static str, fn(&RunnerStats) -> u64);

/// Observes the built-in handlers' outcome counters per subscription and handler.
pub(super) fn observe_handlers(meter: &Meter, runs: HandlerRuns) {
    let counters: [RunnerMetric; 4] = [
        (
            "sluice_handler_succeeded",
            "Events a built-in handler processed and acknowledged",
            |s| s.succeeded.load(Ordering::Relaxed),
        ),
        (
            "sluice_handler_retried",
            "Events a built-in handler failed with a retryable error",
            |s| s.retried.load(Ordering::Relaxed),
        ),
        (
            "sluice_handler_rejected",
            "Events a built-in handler rejected for good, dead-lettered or dropped",
            |s| s.rejected.load(Ordering::Relaxed),
        ),
        (
            "sluice_handler_broker_errors",
            "Failed broker calls of a handler runner",
            |s| s.broker_errors.load(Ordering::Relaxed),
        ),
    ];
    for (name, description, read) in counters {
        let runs = runs.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                for (subscription, handler, stats) in lock(&runs).iter() {
                    let labels = [
                        KeyValue::new("subscription", subscription.clone()),
                        KeyValue::new("handler", handler.clone()),
                    ];
                    observer.observe(read(stats), &labels);
                }
            })
            .build();
    }
    meter
        .u64_observable_counter("sluice_handler_panics")
        .with_description("Handler panics caught and turned into retryable errors")
        .with_callback(|observer| {
            observer.observe(sluice_handlers::contract::caught_panics(), &[]);
        })
        .build();
}

/// Observes the push subscriptions' outcome counters.
pub(super) fn observe_pushes(meter: &Meter, stats: PushStatsBySubscription) {
    type PushMetric = (&'static str, &'static str, fn(&PushStats) -> u64);

    let counters: [PushMetric; 3] = [
        (
            "sluice_push_succeeded",
            "Push requests whose response status acknowledged the message",
            |s| s.succeeded.load(Ordering::Relaxed),
        ),
        (
            "sluice_push_failed",
            "Push requests that failed: another status, a connection error or a timeout",
            |s| s.failed.load(Ordering::Relaxed),
        ),
        (
            "sluice_push_dropped_stale",
            "Messages acknowledged without a push because they were older than \
             max_event_age_secs",
            |s| s.dropped_stale.load(Ordering::Relaxed),
        ),
    ];
    for (name, description, read) in counters {
        let stats = stats.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| {
                for (subscription, counters) in lock(&stats).iter() {
                    observer.observe(read(counters), &subscription_label(subscription));
                }
            })
            .build();
    }
}

/// Observes the resident memory of the process, as OpenTelemetry's `process.memory.usage`.
pub(super) fn observe_process(meter: &Meter) {
    meter
        .u64_observable_gauge("process.memory.usage")
        .with_unit("By")
        .with_description("Resident memory of the sluice process")
        .with_callback(|observer| {
            if let Some(bytes) = resident_bytes() {
                observer.observe(bytes, &[]);
            }
        })
        .build();
}

/// Returns the resident set size from `/proc/self/status`, on Linux; `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kibibytes: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kibibytes * 1024)
}
