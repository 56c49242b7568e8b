//! Metrics, recorded with OpenTelemetry instruments and served as Prometheus text at
//! `GET /metrics`.
//!
//! [`Metrics`] owns an OpenTelemetry meter provider whose reader is opentelemetry-prometheus's
//! exporter, bound to a `prometheus` registry that `/metrics` encodes. The server installs
//! that provider as the global one, so that the instruments of sluice-router (store commits,
//! publishes) and sluice-handlers (handler durations, delivery latency) land in the same
//! scrape. Counters the service adapters increment live in [`Metrics`]. Per-subscription
//! figures are observed from the broker at scrape time, so that the broker keeps its own
//! counters and nothing is counted twice.
//!
//! Prometheus names come from the instrument names: dots become underscores, the unit adds
//! a suffix (`s` gives `_seconds`, `By` gives `_bytes`) and counters end in `_total`.

mod observers;

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::metrics::{Counter, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder as _, TextEncoder};
use sluice_handlers::push::PushStats;
use sluice_handlers::runner::RunnerStats;
use sluice_router::deliver::Broker;

/// The content type of the `/metrics` response: Prometheus text format 0.0.4.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The service's instruments, and the registry that encodes them.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    meter: Meter,
    /// LogEntries received, rejected ones included.
    entries_in: Counter<u64>,
    /// LogEntries rejected as invalid JSON or not an object.
    entries_rejected: Counter<u64>,
    /// Accepted LogEntries that no sink took.
    unmatched: Counter<u64>,
    /// LogEntries each sink took.
    sink_matches: Counter<u64>,
    /// The counters of the built-in handlers' runners, observed at scrape time.
    handler_runs: observers::HandlerRuns,
    /// The push outcomes of each push subscription, observed at scrape time.
    push_stats: observers::PushStatsBySubscription,
}

impl Metrics {
    /// Creates the instruments, including those observed from `broker` at scrape time.
    #[cfg(test)]
    pub(crate) fn new(broker: Arc<Broker>) -> Self {
        let metrics = Metrics::unattached();
        metrics.observe_broker(broker);
        metrics
    }

    /// Creates the instruments that need no broker. [`Metrics::observe_broker`] adds the
    /// per-subscription ones once the broker is open.
    pub(crate) fn unattached() -> Self {
        let registry = prometheus::Registry::new();
        // Building the exporter registers its collector, which fails only on a conflict with
        // another collector of the registry, and this registry is new.
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .scope_info_enabled(false)
            .build()
            .expect("a new registry accepts the exporter's collector");
        let provider = SdkMeterProvider::builder().with_reader(exporter).build();
        let meter = provider.meter("sluice");
        let counter = |name: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_description(description)
                .build()
        };
        let metrics = Metrics {
            entries_in: counter("sluice_entries_in", "LogEntries received"),
            entries_rejected: counter("sluice_entries_rejected", "LogEntries rejected as invalid"),
            unmatched: counter("sluice_unmatched", "Accepted LogEntries that no sink took"),
            sink_matches: counter("sluice_sink_matches", "LogEntries taken, per sink"),
            handler_runs: observers::HandlerRuns::default(),
            push_stats: observers::PushStatsBySubscription::default(),
            registry,
            provider,
            meter,
        };
        // The entry counters appear in the first scrape, before any entry arrives, so that
        // rate() and absent() alerts work from the start.
        metrics.count_entries(0, 0, 0);
        observers::observe_handlers(&metrics.meter, metrics.handler_runs.clone());
        observers::observe_pushes(&metrics.meter, metrics.push_stats.clone());
        observers::observe_process(&metrics.meter);
        metrics
    }

    /// Adds the per-subscription figures read from `broker` at scrape time.
    pub(crate) fn observe_broker(&self, broker: Arc<Broker>) {
        observers::observe_broker(&self.meter, broker);
    }

    /// Makes this provider the global one, which the instruments of sluice-router and
    /// sluice-handlers record to. Only the server process calls it, once.
    pub(crate) fn install_global(&self) {
        opentelemetry::global::set_meter_provider(self.provider.clone());
    }

    /// Counts one routed batch: entries received, rejected and unmatched.
    pub(crate) fn count_entries(&self, received: u64, rejected: u64, unmatched: u64) {
        self.entries_in.add(received, &[]);
        self.entries_rejected.add(rejected, &[]);
        self.unmatched.add(unmatched, &[]);
    }

    /// Counts the entries one sink took.
    pub(crate) fn count_sink_matches(&self, sink: &str, count: u64) {
        self.sink_matches
            .add(count, &[KeyValue::new("sink", sink.to_owned())]);
    }

    /// Returns the push counters of a subscription, which the scrape reports from now on.
    pub(crate) fn push_stats(&self, subscription: &str) -> Arc<PushStats> {
        lock(&self.push_stats)
            .entry(subscription.to_owned())
            .or_default()
            .clone()
    }

    /// Adds the counters of a started handler runner to the scrape.
    pub(crate) fn add_handler(&self, subscription: &str, handler: &str, stats: Arc<RunnerStats>) {
        lock(&self.handler_runs).push((subscription.to_owned(), handler.to_owned(), stats));
    }

    /// Encodes every metric in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut text = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(error = %err, "encoding the metrics failed");
        }
        String::from_utf8(text).unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
