//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Counters the service adapters increment live in [`Metrics`]. Per-subscription figures are
//! read from the broker at scrape time by [`BrokerCollector`], so that the broker keeps its
//! own counters and nothing is counted twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use sluice_handlers::push::PushStats;
use sluice_handlers::runner::RunnerStats;
use sluice_router::deliver::{Broker, SubscriptionStats};

/// A per-subscription figure: metric name, help text and how to read it from the stats.
type StatMetric = (&'static str, &'static str, fn(&SubscriptionStats) -> u64);

/// Label set naming one sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SinkLabel {
    pub(crate) sink: String,
}

/// Label set naming one topic.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TopicLabel {
    pub(crate) topic: String,
}

/// Label set naming one subscription.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabel {
    subscription: String,
}

/// The service's counters and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    /// LogEntries received, rejected ones included.
    pub(crate) entries_in: Counter,
    /// LogEntries rejected as invalid JSON or not an object.
    pub(crate) entries_rejected: Counter,
    /// Accepted LogEntries that no sink took.
    pub(crate) unmatched: Counter,
    /// LogEntries each sink took.
    pub(crate) sink_matches: Family<SinkLabel, Counter>,
    /// Messages published, per topic.
    pub(crate) publishes: Family<TopicLabel, Counter>,
    /// The counters of the built-in handlers' runners, read at scrape time.
    handler_runs: HandlerRuns,
    /// The push outcomes of each push subscription, read at scrape time.
    push_stats: PushStatsBySubscription,
}

/// The runners of the built-in handlers: subscription, handler name and counters.
type HandlerRuns = Arc<Mutex<Vec<(String, String, Arc<RunnerStats>)>>>;

/// Push counters by subscription. They are kept when a subscription's push runner stops, so
/// that a restarted runner counts on from where the last one ended.
type PushStatsBySubscription = Arc<Mutex<BTreeMap<String, Arc<PushStats>>>>;

impl Metrics {
    /// Registers every metric, including the per-subscription figures read from `broker`.
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let entries_in = Counter::default();
        let entries_rejected = Counter::default();
        let unmatched = Counter::default();
        let sink_matches = Family::<SinkLabel, Counter>::default();
        let publishes = Family::<TopicLabel, Counter>::default();
        registry.register("entries_in", "LogEntries received", entries_in.clone());
        registry.register(
            "entries_rejected",
            "LogEntries rejected as invalid",
            entries_rejected.clone(),
        );
        registry.register(
            "unmatched",
            "Accepted LogEntries that no sink took",
            unmatched.clone(),
        );
        registry.register(
            "sink_matches",
            "LogEntries taken, per sink",
            sink_matches.clone(),
        );
        registry.register(
            "publishes",
            "Messages published, per topic",
            publishes.clone(),
        );
        registry.register_collector(Box::new(BrokerCollector { broker }));
        let handler_runs = HandlerRuns::default();
        registry.register_collector(Box::new(HandlerCollector {
            runs: handler_runs.clone(),
        }));
        let push_stats = PushStatsBySubscription::default();
        registry.register_collector(Box::new(PushCollector {
            stats: push_stats.clone(),
        }));
        Metrics {
            registry,
            entries_in,
            entries_rejected,
            unmatched,
            sink_matches,
            publishes,
            handler_runs,
            push_stats,
        }
    }

    /// Returns the push counters of a subscription, which the scrape reports from now on.
    pub(crate) fn push_stats(&self, subscription: &str) -> Arc<PushStats> {
        self.push_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(subscription.to_owned())
            .or_default()
            .clone()
    }

    /// Adds the counters of a started handler runner to the scrape.
    pub(crate) fn add_handler(&self, subscription: &str, handler: &str, stats: Arc<RunnerStats>) {
        self.handler_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((subscription.to_owned(), handler.to_owned(), stats));
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Reads delivery figures from the broker on each scrape.
#[derive(Debug)]
struct BrokerCollector {
    broker: Arc<Broker>,
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = self.broker.stats();
        let counters: [StatMetric; 7] = [
            (
                "deliveries",
                "Messages handed to consumers, redeliveries included",
                |s| s.delivered,
            ),
            ("acks", "Messages acknowledged", |s| s.acked),
            ("nacks", "Deliveries ended by a nack", |s| s.nacked),
            (
                "dead_letters",
                "Messages moved to a dead-letter topic",
                |s| s.dead_lettered,
            ),
            (
                "filtered_out",
                "Messages the subscription's filter rejected, acknowledged when published",
                |s| s.filtered_out,
            ),
            (
                "expired",
                "Unacknowledged messages removed for outliving the message retention",
                |s| s.retention_expired,
            ),
            (
                "unreadable",
                "Pending messages removed because the store could not read them back",
                |s| s.unreadable,
            ),
        ];
        for (name, help, read) in counters {
            let metric = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for stat in &stats {
                let label = SubscriptionLabel {
                    subscription: stat.spec.name.clone(),
                };
                ConstCounter::new(read(stat)).encode(family.encode_family(&label)?)?;
            }
        }
        let gauges: [StatMetric; 2] = [
            (
                "backlog_messages",
                "Messages not yet acknowledged, leased ones included",
                |s| s.backlog,
            ),
            (
                "outstanding_messages",
                "Messages leased to consumers",
                |s| s.outstanding,
            ),
        ];
        for (name, help, read) in gauges {
            let metric = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for stat in &stats {
                let label = SubscriptionLabel {
                    subscription: stat.spec.name.clone(),
                };
                let value = i64::try_from(read(stat)).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

/// A handler runner figure: metric name, help text and how to read it from the counters.
type RunnerMetric = (&'static str, &'static str, fn(&RunnerStats) -> u64);

/// Label set naming a built-in handler and the subscription it consumes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    subscription: String,
    handler: String,
}

/// Reads the built-in handlers' counters on each scrape.
#[derive(Debug)]
struct HandlerCollector {
    runs: HandlerRuns,
}

impl Collector for HandlerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering;

        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        let counters: [RunnerMetric; 4] = [
            (
                "handler_succeeded",
                "Events a built-in handler processed and acknowledged",
                |s| s.succeeded.load(Ordering::Relaxed),
            ),
            (
                "handler_retried",
                "Events a built-in handler failed with a retryable error",
                |s| s.retried.load(Ordering::Relaxed),
            ),
            (
                "handler_rejected",
                "Events a built-in handler rejected for good, dead-lettered or dropped",
                |s| s.rejected.load(Ordering::Relaxed),
            ),
            (
                "handler_broker_errors",
                "Failed broker calls of a handler runner",
                |s| s.broker_errors.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let metric = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for (subscription, handler, stats) in runs.iter() {
                let label = HandlerLabel {
                    subscription: subscription.clone(),
                    handler: handler.clone(),
                };
                ConstCounter::new(read(stats)).encode(family.encode_family(&label)?)?;
            }
        }
        let panics = ConstCounter::new(sluice_handlers::contract::caught_panics());
        let descriptor = encoder.encode_descriptor(
            "handler_panics",
            "Handler panics caught and turned into retryable errors",
            None,
            panics.metric_type(),
        )?;
        panics.encode(descriptor)
    }
}

/// Reads the push subscriptions' counters on each scrape.
#[derive(Debug)]
struct PushCollector {
    stats: PushStatsBySubscription,
}

impl Collector for PushCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering;

        type PushMetric = (&'static str, &'static str, fn(&PushStats) -> u64);

        let stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        let counters: [PushMetric; 3] = [
            (
                "push_succeeded",
                "Push requests whose response status acknowledged the message",
                |s| s.succeeded.load(Ordering::Relaxed),
            ),
            (
                "push_failed",
                "Push requests that failed: another status, a connection error or a timeout",
                |s| s.failed.load(Ordering::Relaxed),
            ),
            (
                "push_dropped_stale",
                "Messages acknowledged without a push because they were older than \
                 max_event_age_secs",
                |s| s.dropped_stale.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, read) in counters {
            let metric = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            for (subscription, counters) in stats.iter() {
                let label = SubscriptionLabel {
                    subscription: subscription.clone(),
                };
                ConstCounter::new(read(counters)).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}
