//! Rate limiting for log lines on hot error paths, such as a failure repeated for every
//! message of a subscription whose endpoint is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines allowed per window.
const LINES_PER_WINDOW: u32 = 5;
/// Length of one window.
const WINDOW: Duration = Duration::from_secs(10);

/// A limiter of [`LINES_PER_WINDOW`] log lines per [`WINDOW`]. It counts the lines it holds
/// back, so that the next allowed line can report how many were suppressed.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// Returns `Some(suppressed)` when the caller may log a line now, with the number of
    /// lines held back since the last allowed one, and `None` when it should stay quiet.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut window = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = window
            .started
            .is_none_or(|started| now.duration_since(started) >= WINDOW);
        if expired {
            window.started = Some(now);
            window.lines = 0;
        }
        if window.lines >= LINES_PER_WINDOW {
            window.suppressed += 1;
            return None;
        }
        window.lines += 1;
        Some(std::mem::take(&mut window.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_allows_burst_then_counts() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW {
            assert_eq!(limiter.allow_at(start), Some(0));
        }
        assert_eq!(limiter.allow_at(start), None);
        assert_eq!(limiter.allow_at(start + Duration::from_secs(1)), None);
    }

    #[test]
    fn limiter_reports_suppressed_in_next_window() {
        let limiter = LogLimiter::default();
        let start = Instant::now();
        for _ in 0..LINES_PER_WINDOW + 3 {
            let _ = limiter.allow_at(start);
        }
        assert_eq!(limiter.allow_at(start + WINDOW), Some(3));
        assert_eq!(limiter.allow_at(start + WINDOW), Some(0));
    }
}
