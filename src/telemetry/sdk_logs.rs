//! A rate limit on the OpenTelemetry SDK's own log lines. A collector that is down fails every
//! export, one every `OTEL_BSP_SCHEDULE_DELAY` (5 s by default), and each failure logs a line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Metadata;

/// SDK lines allowed per window.
const LINES_PER_WINDOW: u32 = 5;
/// Length of one window.
const WINDOW: Duration = Duration::from_secs(60);

/// A counter of the SDK's log lines in the current window.
#[derive(Debug, Default)]
pub(super) struct SdkLogLimit {
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    lines: u32,
}

impl SdkLogLimit {
    /// Returns whether the event or span described by `metadata` may be logged. Only the
    /// events of the `opentelemetry*` crates count against the limit.
    pub(super) fn allows(&self, metadata: &Metadata<'_>) -> bool {
        if !metadata.is_event() || !metadata.target().starts_with("opentelemetry") {
            return true;
        }
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window
            .started
            .is_none_or(|started| now.duration_since(started) >= WINDOW)
        {
            window.started = Some(now);
            window.lines = 0;
        }
        window.lines += 1;
        window.lines <= LINES_PER_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_resets_after_window() {
        let limit = SdkLogLimit::default();
        let start = Instant::now();
        for line in 0..LINES_PER_WINDOW {
            assert!(limit.allow_at(start), "line {line} is within the limit");
        }
        assert!(!limit.allow_at(start + Duration::from_secs(1)));
        assert!(limit.allow_at(start + WINDOW));
    }
}
