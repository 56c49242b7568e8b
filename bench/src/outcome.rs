//! The outcome of one run, printed as one JSON line, and the latency histogram.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The measurements of one run.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    /// `publish`, `deliver` or `latency`.
    pub(crate) scenario: &'static str,
    pub(crate) system: String,
    pub(crate) publishers: usize,
    pub(crate) batch: usize,
    pub(crate) size: usize,
    pub(crate) messages: u64,
    pub(crate) seconds: f64,
    pub(crate) messages_per_second: f64,
    /// Sinks the server routes through, for ingest runs (as the caller states it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sinks: Option<usize>,
    /// Latency percentiles in microseconds, for latency runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_us: Option<Percentiles>,
}

impl Outcome {
    /// Builds the outcome of `messages` handled in `elapsed`.
    pub(crate) fn throughput(
        scenario: &'static str,
        system: &str,
        (publishers, batch, size): (usize, usize, usize),
        messages: u64,
        elapsed: Duration,
    ) -> Outcome {
        let seconds = elapsed.as_secs_f64();
        Outcome {
            scenario,
            system: system.to_owned(),
            publishers,
            batch,
            size,
            messages,
            seconds,
            messages_per_second: if seconds > 0.0 {
                messages as f64 / seconds
            } else {
                0.0
            },
            sinks: None,
            latency_us: None,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    pub(crate) samples: u64,
}

/// Latencies from 1 µs to 60 s with three significant digits.
pub(crate) fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

pub(crate) fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: histogram.value_at_quantile(0.50),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        samples: histogram.len(),
    }
}

/// Message data of `size` bytes that starts with `stamp`, the send time in nanoseconds
/// since the run's start, so that the receiver can compute the latency.
pub(crate) fn stamped(size: usize, stamp: u64) -> Vec<u8> {
    let mut data = vec![b'x'; size.max(8)];
    data[..8].copy_from_slice(&stamp.to_le_bytes());
    data
}

/// Reads the stamp that [`stamped`] wrote; `None` for data too short to hold one.
pub(crate) fn stamp_of(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Waits up to 5 s for the histogram to count `sent` samples, the messages still in flight
/// when the last publish returned.
pub(crate) async fn wait_for_samples(histogram: &Mutex<Histogram<u64>>, sent: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let received = histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if received >= sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds the outcome of a latency run, or fails it when fewer than `sent` messages arrived.
pub(crate) fn latency_outcome(
    histogram: &Mutex<Histogram<u64>>,
    sent: u64,
    system: &str,
    shape: (usize, usize, usize),
    measured: Duration,
) -> anyhow::Result<Outcome> {
    let histogram = histogram.lock().unwrap_or_else(PoisonError::into_inner);
    if histogram.len() < sent {
        anyhow::bail!(
            "{} of {sent} measured messages arrived within 5 s of the last publish",
            histogram.len()
        );
    }
    let mut outcome = Outcome::throughput("latency", system, shape, histogram.len(), measured);
    outcome.latency_us = Some(percentiles(&histogram));
    Ok(outcome)
}
