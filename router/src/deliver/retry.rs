//! The retry schedule of a subscription's [`RetryPolicy`], and the push backoff beneath it.
//!
//! The comments of `google.pubsub.v1.RetryPolicy`, as the crate
//! googleapis-tonic-google-pubsub-v1 0.46 ships them, give the bounds (`minimum_backoff` and
//! `maximum_backoff`, each 0 to 600 s) and state that the delay grows exponentially between
//! them, but give no formula. Sluice doubles the minimum with every further delivery, so the
//! backoff after delivery `n` is `minimum * 2^(n-1)`, at most `maximum`.
//!
//! A policy with a minimum of 0 never grows. A pull client that nacks gets the message back
//! at once, as it asked. A push subscription has no client to pace it: the server itself
//! would send the message to a failing endpoint as fast as the endpoint responds. Pub/Sub's
//! push documentation describes a push backoff of 100 ms to 60 s for endpoints that keep
//! failing; sluice applies it per message as a floor under the policy's backoff, so a push
//! retry waits at least `100 ms * 2^(n-1)`. The floor stops growing at 60 s or at the
//! policy's maximum, whichever is lower, but never below 100 ms, so the maximum that a
//! subscription sets still holds.
//!
//! A push delay, and that of a consumer that runs in the server (see
//! `Broker::nack_from_server`), is also spread by up to a quarter either way, by a fixed
//! amount per message and attempt, within the policy's bounds. Messages that failed together, such as the
//! calls in flight when a function's process crashed, then come back at different times,
//! rather than in step with the message that crashed it at every attempt.

use std::time::Duration;

use crate::store::{RetryPolicy, SubscriptionSpec};

/// The push backoff after a push subscription's first failed delivery.
pub(crate) const PUSH_BACKOFF_MINIMUM: Duration = Duration::from_millis(100);
/// The maximum push backoff.
pub(crate) const PUSH_BACKOFF_MAXIMUM: Duration = Duration::from_secs(60);

/// Returns `minimum * 2^(attempt - 1)`, at most `maximum`. Attempt 0 counts as 1.
fn exponential(minimum: Duration, maximum: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let factor = 2_u32.checked_pow(doublings).unwrap_or(u32::MAX);
    minimum.saturating_mul(factor).min(maximum)
}

/// Returns a number in [0, 1) that depends only on `seq` and `attempt` (SplitMix64's mixing
/// function), so that a message's delay is the same wherever it is computed.
fn unit_interval(seq: u64, attempt: u32) -> f64 {
    let mut x = seq ^ (u64::from(attempt) << 40) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // The top 53 bits fill an f64's mantissa exactly.
    (x >> 11) as f64 / (1_u64 << 53) as f64
}

impl RetryPolicy {
    /// Returns how long a message waits after its delivery `attempt` (1 for the first) ended
    /// with a nack or an expired lease: `minimum_backoff * 2^(attempt - 1)`, at most
    /// `maximum_backoff`. Attempt 0 counts as 1.
    pub fn backoff(&self, attempt: u32) -> Duration {
        exponential(self.minimum_backoff, self.maximum_backoff, attempt)
    }
}

impl SubscriptionSpec {
    /// Returns how long message `seq` waits after its delivery `attempt` ended with a nack or
    /// an expired lease, or `None` when it is ready again at once, which is the case without
    /// a retry policy. A push subscription waits at least the push backoff, spread per
    /// message (see the module's comment).
    pub fn redelivery_delay(&self, attempt: u32, seq: u64) -> Option<Duration> {
        let policy = self.retry_policy?;
        if self.push.is_none() {
            return Some(policy.backoff(attempt));
        }
        Some(server_delay(policy, attempt, seq))
    }

    /// Returns the delay of [`redelivery_delay`](Self::redelivery_delay) for a consumer that
    /// runs in the server, such as a deployed function or a built-in handler: the push
    /// backoff and its spread apply whether or not the subscription has a push config.
    pub fn server_redelivery_delay(&self, attempt: u32, seq: u64) -> Option<Duration> {
        Some(server_delay(self.retry_policy?, attempt, seq))
    }
}

/// Returns the policy's backoff after `attempt`, at least the push backoff, spread for
/// message `seq` (see the module's comment).
fn server_delay(policy: RetryPolicy, attempt: u32, seq: u64) -> Duration {
    let backoff = policy.backoff(attempt);
    let ceiling = PUSH_BACKOFF_MAXIMUM.min(policy.maximum_backoff.max(PUSH_BACKOFF_MINIMUM));
    let delay = backoff.max(exponential(PUSH_BACKOFF_MINIMUM, ceiling, attempt));
    // The spread stays between the first delay and the larger of the two maximums.
    let lowest = policy
        .minimum_backoff
        .max(PUSH_BACKOFF_MINIMUM.min(ceiling));
    let highest = policy.maximum_backoff.max(ceiling);
    let spread = delay.mul_f64(0.75 + 0.5 * unit_interval(seq, attempt));
    spread.clamp(lowest.min(delay), highest.max(delay))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::{PushConfig, PushFormat};

    fn policy(minimum_backoff_secs: u64, maximum_backoff_secs: u64) -> RetryPolicy {
        RetryPolicy::from_secs(minimum_backoff_secs, maximum_backoff_secs)
    }

    fn spec(retry_policy: Option<RetryPolicy>, push: bool) -> SubscriptionSpec {
        SubscriptionSpec {
            retry_policy,
            push: push.then(|| PushConfig {
                endpoint: "http://127.0.0.1:9/push".to_owned(),
                attributes: BTreeMap::new(),
                format: PushFormat::Wrapped,
                max_event_age_secs: None,
            }),
            ..SubscriptionSpec::new("orders", "offers")
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
    fn fractions_of_a_second_are_kept() {
        let policy = RetryPolicy {
            minimum_backoff: Duration::from_millis(500),
            maximum_backoff: Duration::from_millis(1500),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(500));
        assert_eq!(policy.backoff(2), Duration::from_millis(1000));
        assert_eq!(policy.backoff(3), Duration::from_millis(1500));
    }

    #[test]
    fn default_policy_is_pubsubs() {
        assert_eq!(RetryPolicy::default(), policy(10, 600));
    }

    #[test]
    fn pull_subscription_follows_policy_alone() {
        assert_eq!(spec(None, false).redelivery_delay(3, 7), None);
        assert_eq!(
            spec(Some(policy(0, 600)), false).redelivery_delay(3, 7),
            Some(Duration::ZERO)
        );
    }

    /// Asserts that every message's delay after `attempt` lies within a quarter of
    /// `nominal` either way and within `[lowest, highest]`.
    fn assert_spread(
        spec: &SubscriptionSpec,
        attempt: u32,
        nominal: Duration,
        lowest: Duration,
        highest: Duration,
    ) {
        for seq in 0..200 {
            let delay = spec.redelivery_delay(attempt, seq).expect("a policy");
            let low = nominal.mul_f64(0.75).max(lowest);
            let high = nominal.mul_f64(1.25).min(highest);
            assert!(
                delay >= low && delay <= high,
                "attempt {attempt}, message {seq}: {delay:?} outside {low:?}..={high:?}"
            );
        }
    }

    #[test]
    fn push_subscription_backs_off_from_zero_minimum() {
        let push = spec(Some(policy(0, 600)), true);
        let (lowest, highest) = (PUSH_BACKOFF_MINIMUM, Duration::from_secs(600));
        for (attempt, nominal_ms) in [(1, 100), (2, 200), (5, 1600), (40, 60_000)] {
            let nominal = Duration::from_millis(nominal_ms);
            assert_spread(&push, attempt, nominal, lowest, highest);
        }
        // A zero maximum keeps every delay at the floor's start.
        let zero = spec(Some(policy(0, 0)), true);
        for attempt in [1, 9] {
            assert_eq!(
                zero.redelivery_delay(attempt, 3),
                Some(PUSH_BACKOFF_MINIMUM)
            );
        }
    }

    #[test]
    fn push_floor_stops_at_policy_maximum() {
        let push = spec(
            Some(RetryPolicy {
                minimum_backoff: Duration::from_millis(500),
                maximum_backoff: Duration::from_secs(2),
            }),
            true,
        );
        let (lowest, highest) = (Duration::from_millis(500), Duration::from_secs(2));
        for (attempt, nominal_ms) in [(1, 500), (2, 1000), (3, 2000), (10, 2000)] {
            let nominal = Duration::from_millis(nominal_ms);
            assert_spread(&push, attempt, nominal, lowest, highest);
        }
    }

    #[test]
    fn push_subscription_keeps_longer_policy_backoff() {
        let push = spec(Some(policy(10, 600)), true);
        let (lowest, highest) = (Duration::from_secs(10), Duration::from_secs(600));
        assert_spread(&push, 1, Duration::from_secs(10), lowest, highest);
        assert_spread(&push, 10, Duration::from_secs(600), lowest, highest);
        assert_eq!(spec(None, true).redelivery_delay(1, 3), None);
    }

    #[test]
    fn server_delays_spread_without_push_config() {
        let pull = spec(Some(policy(1, 600)), false);
        assert_spread_by(
            |seq| pull.server_redelivery_delay(3, seq),
            Duration::from_secs(4),
        );
        assert_eq!(pull.redelivery_delay(3, 5), Some(Duration::from_secs(4)));
        assert_eq!(spec(None, false).server_redelivery_delay(3, 5), None);
    }

    /// Asserts that the delays of 20 messages differ and lie within a quarter of `nominal`.
    fn assert_spread_by(delay: impl Fn(u64) -> Option<Duration>, nominal: Duration) {
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|seq| delay(seq).expect("a policy")).collect();
        assert!(delays.len() >= 10, "{delays:?}");
        assert!(
            delays
                .iter()
                .all(|d| *d >= nominal.mul_f64(0.75) && *d <= nominal.mul_f64(1.25)),
            "{delays:?}"
        );
    }

    #[test]
    fn push_delays_differ_between_messages() {
        let push = spec(Some(policy(1, 600)), true);
        let delays: std::collections::BTreeSet<Duration> = (0..20)
            .map(|seq| push.redelivery_delay(3, seq).expect("a policy"))
            .collect();
        assert!(delays.len() >= 10, "{delays:?}");
        // The same message and attempt always get the same delay.
        assert_eq!(push.redelivery_delay(3, 11), push.redelivery_delay(3, 11));
        // A fixed delay has no room to spread.
        let fixed = spec(Some(policy(2, 2)), true);
        assert!((0..20).all(|seq| fixed.redelivery_delay(4, seq) == Some(Duration::from_secs(2))));
    }

    #[test]
    fn stored_policy_keeps_old_form_and_fractions() {
        let old: RetryPolicy =
            serde_json::from_str(r#"{"minimum_backoff_secs":5,"maximum_backoff_secs":60}"#)
                .expect("old record loads");
        assert_eq!(old, policy(5, 60));
        assert_eq!(
            serde_json::to_string(&old).expect("serializes"),
            r#"{"minimum_backoff_secs":5,"maximum_backoff_secs":60}"#
        );
        let fractional = RetryPolicy {
            minimum_backoff: Duration::from_millis(500),
            maximum_backoff: Duration::from_secs(2),
        };
        let text = serde_json::to_string(&fractional).expect("serializes");
        assert_eq!(
            text,
            r#"{"minimum_backoff_secs":0,"minimum_backoff_nanos":500000000,"maximum_backoff_secs":2}"#
        );
        assert_eq!(
            serde_json::from_str::<RetryPolicy>(&text).expect("loads"),
            fractional
        );
    }
}
