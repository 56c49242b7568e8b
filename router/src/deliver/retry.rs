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
//! would send the message to a failing endpoint as fast as the endpoint answers. Pub/Sub's
//! push documentation describes a push backoff of 100 ms to 60 s for endpoints that keep
//! failing; sluice applies it per message as a floor under the policy's backoff, so a push
//! retry waits at least `100 ms * 2^(n-1)`. The floor stops growing at 60 s or at the
//! policy's maximum, whichever is lower, but never below 100 ms, so the maximum that a
//! subscription sets still holds.

use std::time::Duration;

use crate::store::{RetryPolicy, SubscriptionSpec};

/// The push backoff after a push subscription's first failed delivery.
pub(crate) const PUSH_BACKOFF_MINIMUM: Duration = Duration::from_millis(100);
/// The longest push backoff.
pub(crate) const PUSH_BACKOFF_MAXIMUM: Duration = Duration::from_secs(60);

/// Returns `minimum * 2^(attempt - 1)`, at most `maximum`. Attempt 0 counts as 1.
fn exponential(minimum: Duration, maximum: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1);
    let factor = 2_u32.checked_pow(doublings).unwrap_or(u32::MAX);
    minimum.saturating_mul(factor).min(maximum)
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
    /// Returns how long a message waits after its delivery `attempt` ended with a nack or an
    /// expired lease, or `None` when it is ready again at once, which is the case without a
    /// retry policy. A push subscription waits at least the push backoff (see the module's
    /// comment).
    pub fn redelivery_delay(&self, attempt: u32) -> Option<Duration> {
        let policy = self.retry_policy?;
        let backoff = policy.backoff(attempt);
        if self.push.is_some() {
            let ceiling =
                PUSH_BACKOFF_MAXIMUM.min(policy.maximum_backoff.max(PUSH_BACKOFF_MINIMUM));
            let floor = exponential(PUSH_BACKOFF_MINIMUM, ceiling, attempt);
            Some(backoff.max(floor))
        } else {
            Some(backoff)
        }
    }
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
        assert_eq!(spec(None, false).redelivery_delay(3), None);
        assert_eq!(
            spec(Some(policy(0, 600)), false).redelivery_delay(3),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn push_subscription_backs_off_from_zero_minimum() {
        let push = spec(Some(policy(0, 600)), true);
        assert_eq!(push.redelivery_delay(1), Some(Duration::from_millis(100)));
        assert_eq!(push.redelivery_delay(2), Some(Duration::from_millis(200)));
        assert_eq!(push.redelivery_delay(5), Some(Duration::from_millis(1600)));
        assert_eq!(push.redelivery_delay(40), Some(PUSH_BACKOFF_MAXIMUM));
        // A zero maximum keeps the floor at its start.
        let zero = spec(Some(policy(0, 0)), true);
        assert_eq!(zero.redelivery_delay(1), Some(PUSH_BACKOFF_MINIMUM));
        assert_eq!(zero.redelivery_delay(9), Some(PUSH_BACKOFF_MINIMUM));
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
        let delays: Vec<_> = (1..=10)
            .map(|attempt| push.redelivery_delay(attempt).expect("a policy"))
            .collect();
        assert_eq!(delays[..3], [500, 1000, 2000].map(Duration::from_millis));
        assert!(
            delays[3..]
                .iter()
                .all(|delay| *delay == Duration::from_secs(2)),
            "{delays:?}"
        );
    }

    #[test]
    fn push_subscription_keeps_longer_policy_backoff() {
        let push = spec(Some(policy(10, 600)), true);
        assert_eq!(push.redelivery_delay(1), Some(Duration::from_secs(10)));
        assert_eq!(push.redelivery_delay(10), Some(Duration::from_secs(600)));
        assert_eq!(spec(None, true).redelivery_delay(1), None);
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
