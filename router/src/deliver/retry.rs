//! The retry schedule of a subscription's [`RetryPolicy`].
//!
//! The comments of `google.pubsub.v1.RetryPolicy`, as the crate
//! googleapis-tonic-google-pubsub-v1 0.46 ships them, give the bounds (`minimum_backoff` and
//! `maximum_backoff`, each 0 to 600 s) and state that the delay grows exponentially between
//! them, but give no formula. Sluice doubles the minimum with every further delivery, so the
//! backoff after delivery `n` is `minimum * 2^(n-1)`, at most `maximum`.

use std::time::Duration;

use crate::store::RetryPolicy;

impl RetryPolicy {
    /// Returns how long a message waits after its delivery `attempt` (1 for the first) ended
    /// with a nack or an expired lease: `minimum_backoff_secs * 2^(attempt - 1)`, at most
    /// `maximum_backoff_secs`. Attempt 0 counts as 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let minimum = Duration::from_secs(u64::from(self.minimum_backoff_secs));
        let maximum = Duration::from_secs(u64::from(self.maximum_backoff_secs));
        let doublings = attempt.saturating_sub(1);
        let factor = 2_u32.checked_pow(doublings).unwrap_or(u32::MAX);
        minimum.saturating_mul(factor).min(maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(minimum_backoff_secs: u32, maximum_backoff_secs: u32) -> RetryPolicy {
        RetryPolicy {
            minimum_backoff_secs,
            maximum_backoff_secs,
        }
    }

    #[test]
    fn backoff_doubles_per_attempt() {
        let policy = policy(10, 600);
        assert_eq!(policy.backoff(1), Duration::from_secs(10));
        assert_eq!(policy.backoff(2), Duration::from_secs(20));
        assert_eq!(policy.backoff(3), Duration::from_secs(40));
        assert_eq!(policy.backoff(6), Duration::from_secs(320));
    }

    #[test]
    fn backoff_stops_at_maximum() {
        let policy = policy(10, 600);
        assert_eq!(policy.backoff(7), Duration::from_secs(600));
        assert_eq!(policy.backoff(40), Duration::from_secs(600));
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn backoff_of_attempt_zero_is_minimum() {
        assert_eq!(policy(10, 600).backoff(0), Duration::from_secs(10));
    }

    #[test]
    fn zero_minimum_never_waits() {
        assert_eq!(policy(0, 600).backoff(5), Duration::ZERO);
    }

    #[test]
    fn default_policy_is_pubsubs() {
        assert_eq!(RetryPolicy::default(), policy(10, 600));
    }
}
