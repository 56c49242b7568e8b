//! Checks of the settings that CreateTopic, CreateSubscription, UpdateTopic,
//! UpdateSubscription and ModifyPushConfig take, with the service's ranges and defaults,
//! and their conversion to the store's types.
//!
//! Where Google's emulator (0.8.20) words an error, the message starts with its wording;
//! the rest explains what to send instead.

use std::ops::RangeInclusive;

use sluice_proto::google::protobuf::Duration as ProtoDuration;
use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_router::filter::pubsub::SubscriptionFilter;
use sluice_router::store::{
    DeadLetterPolicy, PushConfig, PushFormat, RetryPolicy, DEFAULT_RETENTION_SECS,
    MAX_RETENTION_SECS, MIN_RETENTION_SECS,
};
use tonic::Status;

use super::names;

/// Valid ack deadlines of a subscription, in seconds.
const ACK_DEADLINE_SECS: RangeInclusive<i32> = 10..=600;
/// The ack deadline of a subscription that sets 0, in seconds.
const DEFAULT_ACK_DEADLINE_SECS: u32 = 10;
/// Valid dead-letter delivery attempt limits.
const MAX_DELIVERY_ATTEMPTS: RangeInclusive<i32> = 5..=100;
/// The limit of a dead-letter policy that sets 0.
const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;
/// The upper bound of both backoffs of a retry policy.
const MAXIMUM_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);
/// The minimum backoff of a retry policy that sets none.
const DEFAULT_MINIMUM_BACKOFF: std::time::Duration = std::time::Duration::from_secs(10);
/// The maximum backoff of a retry policy that sets none.
const DEFAULT_MAXIMUM_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);

/// Returns a subscription's ack deadline: 0 gives the default of 10 s, anything else must
/// be 10 to 600 s.
pub(super) fn ack_deadline(seconds: i32) -> Result<u32, Status> {
    if seconds == 0 {
        return Ok(DEFAULT_ACK_DEADLINE_SECS);
    }
    match u32::try_from(seconds) {
        Ok(valid) if ACK_DEADLINE_SECS.contains(&seconds) => Ok(valid),
        _ => Err(Status::invalid_argument(format!(
            "ack_deadline_seconds out of bounds: you passed {seconds}, but the value must be \
             between {} and {} seconds, or 0 for the default of {DEFAULT_ACK_DEADLINE_SECS}",
            ACK_DEADLINE_SECS.start(),
            ACK_DEADLINE_SECS.end()
        ))),
    }
}

/// Returns a subscription's message retention in seconds, 7 days when unset.
pub(super) fn subscription_retention(duration: Option<&ProtoDuration>) -> Result<u64, Status> {
    duration.map_or(Ok(DEFAULT_RETENTION_SECS), retention)
}

/// Returns a topic's message retention in seconds, `None` when unset.
pub(super) fn topic_retention(duration: Option<&ProtoDuration>) -> Result<Option<u64>, Status> {
    duration.map(retention).transpose()
}

/// Checks a message retention against the service's range of 10 minutes to 31 days.
/// Fractions of a second are dropped.
fn retention(duration: &ProtoDuration) -> Result<u64, Status> {
    u64::try_from(duration.seconds)
        .ok()
        .filter(|seconds| (MIN_RETENTION_SECS..=MAX_RETENTION_SECS).contains(seconds))
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "message_retention_duration out of bounds: you passed {}, but the value must \
                 be between {MIN_RETENTION_SECS}s (10 minutes) and {MAX_RETENTION_SECS}s \
                 (31 days)",
                display(duration)
            ))
        })
}

/// Returns a dead-letter policy with its topic's store name, or `None` for none.
/// `topic_exists` returns whether a topic of that store name exists.
///
/// # Errors
///
/// NOT_FOUND when the dead-letter topic is not an existing topic, as Google's emulator
/// returns for a missing or malformed name; INVALID_ARGUMENT when it is the subscription's
/// own topic, which would loop dead-lettered messages back; OUT_OF_RANGE, as the emulator
/// returns it, for `max_delivery_attempts` outside 5 to 100.
pub(super) fn dead_letter(
    policy: Option<&pubsub::DeadLetterPolicy>,
    subscription_topic: &str,
    topic_exists: impl Fn(&str) -> bool,
) -> Result<Option<DeadLetterPolicy>, Status> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    let topic = names::topic(&policy.dead_letter_topic)
        .ok()
        .filter(|topic| topic_exists(topic))
        .ok_or_else(|| {
            Status::not_found(format!(
                "Dead letter topic not found: {:?}; create the topic first, or name an \
                 existing one as projects/{}/topics/NAME",
                policy.dead_letter_topic,
                names::PROJECT
            ))
        })?;
    if topic == subscription_topic {
        return Err(Status::invalid_argument(format!(
            "dead_letter_policy.dead_letter_topic {} is the topic the subscription receives \
             from, so dead-lettered messages would loop back into the subscription; use a \
             separate topic",
            policy.dead_letter_topic
        )));
    }
    let attempts = policy.max_delivery_attempts;
    let max_delivery_attempts = if attempts == 0 {
        DEFAULT_MAX_DELIVERY_ATTEMPTS
    } else if attempts < *MAX_DELIVERY_ATTEMPTS.start() {
        return Err(Status::out_of_range(format!(
            "The value for max_delivery_attempts is too small. You passed {attempts} in the \
             request, but the minimum value is {}.",
            MAX_DELIVERY_ATTEMPTS.start()
        )));
    } else if attempts > *MAX_DELIVERY_ATTEMPTS.end() {
        return Err(Status::out_of_range(format!(
            "The value for max_delivery_attempts is too large. You passed {attempts} in the \
             request, but the maximum value is {}.",
            MAX_DELIVERY_ATTEMPTS.end()
        )));
    } else {
        attempts.unsigned_abs()
    };
    Ok(Some(DeadLetterPolicy {
        topic,
        max_delivery_attempts,
    }))
}

/// Returns a retry policy, with the defaults of 10 s and 600 s for unset backoffs, or
/// `None` for none. Fractions of a second are kept.
pub(super) fn retry_policy(
    policy: Option<&pubsub::RetryPolicy>,
) -> Result<Option<RetryPolicy>, Status> {
    let Some(policy) = policy else {
        return Ok(None);
    };
    let minimum_backoff = backoff(
        policy.minimum_backoff.as_ref(),
        "minimum_backoff",
        DEFAULT_MINIMUM_BACKOFF,
    )?;
    let maximum_backoff = backoff(
        policy.maximum_backoff.as_ref(),
        "maximum_backoff",
        DEFAULT_MAXIMUM_BACKOFF,
    )?;
    if maximum_backoff < minimum_backoff {
        return Err(Status::invalid_argument(format!(
            "The value for maximum_backoff is too small. You passed {} in the request, but \
             the minimum value is {}.",
            display_std(maximum_backoff),
            display_std(minimum_backoff)
        )));
    }
    Ok(Some(RetryPolicy {
        minimum_backoff,
        maximum_backoff,
    }))
}

/// Checks one backoff of a retry policy: 0 to 600 s, fractions of a second included.
fn backoff(
    duration: Option<&ProtoDuration>,
    field: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, Status> {
    let Some(duration) = duration else {
        return Ok(default);
    };
    let valid = u64::try_from(duration.seconds)
        .ok()
        .zip(u32::try_from(duration.nanos).ok())
        .filter(|&(_, nanos)| nanos < NANOS_PER_SECOND)
        .map(|(seconds, nanos)| std::time::Duration::new(seconds, nanos))
        .filter(|backoff| *backoff <= MAXIMUM_BACKOFF);
    valid.ok_or_else(|| {
        Status::invalid_argument(format!(
            "The value for {field} is out of bounds. You passed {} in the request, but the \
             value must be between 0s and {}.",
            display(duration),
            display_std(MAXIMUM_BACKOFF)
        ))
    })
}

/// Nanoseconds in a second; a `google.protobuf.Duration`'s `nanos` stay below it.
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// Checks a subscription filter: at most 256 bytes in Pub/Sub's filter dialect.
pub(super) fn filter(text: &str) -> Result<String, Status> {
    SubscriptionFilter::parse(text)
        .map(|_| text.to_owned())
        .map_err(|err| {
            // A filter may be far over its limit, so the error quotes only its start.
            let quoted: String = text.chars().take(FILTER_QUOTE_CHARS).collect();
            let cut = if quoted.len() < text.len() { "…" } else { "" };
            Status::invalid_argument(format!("{err}: {quoted:?}{cut}"))
        })
}

/// Characters of an invalid filter quoted in its error.
const FILTER_QUOTE_CHARS: usize = 300;

/// Returns a push endpoint, or `None` for a pull subscription: a config without an
/// endpoint, as Pub/Sub reads it.
///
/// # Errors
///
/// INVALID_ARGUMENT for an endpoint that is not an absolute http or https URL, and for
/// OIDC authentication, which only the configuration file sets.
pub(super) fn push_config(
    config: Option<&pubsub::PushConfig>,
) -> Result<Option<PushConfig>, Status> {
    let Some(config) = config.filter(|config| !config.push_endpoint.is_empty()) else {
        return Ok(None);
    };
    let endpoint = &config.push_endpoint;
    let valid = reqwest::Url::parse(endpoint).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
    });
    if !valid {
        return Err(Status::invalid_argument(format!(
            "Unsupported push_endpoint {endpoint:?}: use an absolute http:// or https:// URL"
        )));
    }
    if config.authentication_method.is_some() {
        // NOTE: the store's push config has no place for the token settings, so signed push
        // is configured only in the configuration file.
        return Err(Status::invalid_argument(
            "push_config.oidc_token is not supported through the API: remove it, and sign \
             this subscription's push requests with a [subscriptions.push.oidc_token] table in \
             the configuration file instead",
        ));
    }
    let format = match config.wrapper {
        None | Some(pubsub::push_config::Wrapper::PubsubWrapper(_)) => PushFormat::Wrapped,
        Some(pubsub::push_config::Wrapper::NoWrapper(no_wrapper)) => PushFormat::Unwrapped {
            write_metadata: no_wrapper.write_metadata,
        },
    };
    Ok(Some(PushConfig {
        endpoint: endpoint.clone(),
        attributes: config
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        format,
        // The API has no maximum event age; only the configuration file sets one.
        max_event_age_secs: None,
    }))
}

/// Rejects the topic settings that sluice cannot honour. The message storage policy and
/// tags, which concern Google's infrastructure, are accepted and not stored.
pub(super) fn check_topic_fields(topic: &pubsub::Topic) -> Result<(), Status> {
    let unsupported = if !topic.labels.is_empty() {
        "labels"
    } else if !topic.kms_key_name.is_empty() {
        "kms_key_name"
    } else if topic.schema_settings.is_some() {
        "schema_settings"
    } else if topic.ingestion_data_source_settings.is_some() {
        "ingestion_data_source_settings"
    } else if !topic.message_transforms.is_empty() {
        "message_transforms"
    } else {
        return Ok(());
    };
    Err(unsupported_field(unsupported, "Topic"))
}

/// Rejects the subscription settings that sluice cannot honour. The expiration policy and
/// tags are accepted and not stored: sluice never deletes an inactive subscription.
pub(super) fn check_subscription_fields(subscription: &pubsub::Subscription) -> Result<(), Status> {
    let unsupported = if !subscription.labels.is_empty() {
        "labels"
    } else if subscription.enable_exactly_once_delivery {
        "enable_exactly_once_delivery"
    } else if subscription.bigquery_config.is_some() {
        "bigquery_config"
    } else if subscription.cloud_storage_config.is_some() {
        "cloud_storage_config"
    } else if subscription.bigtable_config.is_some() {
        "bigtable_config"
    } else if !subscription.message_transforms.is_empty() {
        "message_transforms"
    } else if subscription.detached {
        "detached"
    } else {
        return Ok(());
    };
    Err(unsupported_field(unsupported, "Subscription"))
}

/// INVALID_ARGUMENT for a field of `resource` that sluice does not support.
pub(super) fn unsupported_field(field: &str, resource: &str) -> Status {
    Status::invalid_argument(format!(
        "the {field} field of a {resource} is not supported by sluice; leave it unset"
    ))
}

/// Writes a duration as the service does in messages: seconds with an `s`, and a fraction
/// when there is one.
/// Writes a duration as `display` does.
fn display_std(duration: std::time::Duration) -> String {
    display(&ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(i32::MAX),
    })
}

fn display(duration: &ProtoDuration) -> String {
    match u32::try_from(duration.nanos) {
        Ok(0) => format!("{}s", duration.seconds),
        Ok(nanos) if nanos < NANOS_PER_SECOND => {
            let fraction = format!("{nanos:09}");
            format!("{}.{}s", duration.seconds, fraction.trim_end_matches('0'))
        }
        // Out of a Duration's range, or negative: shown as sent.
        _ => format!("{}s with nanos {}", duration.seconds, duration.nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(seconds: i64) -> ProtoDuration {
        ProtoDuration { seconds, nanos: 0 }
    }

    #[test]
    fn ack_deadline_range() {
        assert_eq!(ack_deadline(0).ok(), Some(10), "0 is the default");
        assert_eq!(ack_deadline(10).ok(), Some(10));
        assert_eq!(ack_deadline(600).ok(), Some(600));
        for invalid in [-1, 5, 9, 601] {
            let status = ack_deadline(invalid).expect_err("out of range");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{invalid}");
        }
    }

    #[test]
    fn retention_range() {
        assert_eq!(subscription_retention(None).ok(), Some(7 * 24 * 3600));
        assert_eq!(topic_retention(None).ok(), Some(None));
        assert_eq!(subscription_retention(Some(&seconds(600))).ok(), Some(600));
        let status = topic_retention(Some(&seconds(599))).expect_err("too short");
        assert!(
            status
                .message()
                .starts_with("message_retention_duration out of bounds"),
            "{}",
            status.message()
        );
        assert!(subscription_retention(Some(&seconds(31 * 24 * 3600 + 1))).is_err());
    }

    #[test]
    fn dead_letter_attempts() {
        let policy = |attempts| pubsub::DeadLetterPolicy {
            dead_letter_topic: "projects/local/topics/dlq".to_owned(),
            max_delivery_attempts: attempts,
        };
        let exists = |_: &str| true;
        let default = dead_letter(Some(&policy(0)), "orders", exists).expect("0 is valid");
        assert_eq!(default.map(|p| p.max_delivery_attempts), Some(5));
        let small = dead_letter(Some(&policy(3)), "orders", exists).expect_err("3");
        assert_eq!(small.code(), tonic::Code::OutOfRange);
        assert_eq!(
            small.message(),
            "The value for max_delivery_attempts is too small. You passed 3 in the request, \
             but the minimum value is 5."
        );
        let large = dead_letter(Some(&policy(101)), "orders", exists).expect_err("101");
        assert_eq!(large.code(), tonic::Code::OutOfRange);
        let missing = dead_letter(Some(&policy(5)), "orders", |_| false).expect_err("missing");
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let looped = dead_letter(Some(&policy(5)), "dlq", exists).expect_err("own topic");
        assert_eq!(looped.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn retry_policy_bounds() {
        let policy = |minimum: Option<i64>, maximum: Option<i64>| pubsub::RetryPolicy {
            minimum_backoff: minimum.map(seconds),
            maximum_backoff: maximum.map(seconds),
        };
        let defaults = retry_policy(Some(&policy(None, None))).expect("defaults");
        assert_eq!(defaults, Some(RetryPolicy::from_secs(10, 600)));
        let status = retry_policy(Some(&policy(Some(700), None))).expect_err("700 s");
        assert_eq!(
            status.message(),
            "The value for minimum_backoff is out of bounds. You passed 700s in the request, \
             but the value must be between 0s and 600s."
        );
        assert!(retry_policy(Some(&policy(Some(-1), None))).is_err());
        let status = retry_policy(Some(&policy(Some(100), Some(50)))).expect_err("min > max");
        assert_eq!(
            status.message(),
            "The value for maximum_backoff is too small. You passed 50s in the request, but \
             the minimum value is 100s."
        );
    }

    #[test]
    fn retry_policy_keeps_fractions() {
        let fraction = |seconds: i64, nanos: i32| ProtoDuration { seconds, nanos };
        let policy = pubsub::RetryPolicy {
            minimum_backoff: Some(fraction(0, 500_000_000)),
            maximum_backoff: Some(fraction(1, 250_000_000)),
        };
        assert_eq!(
            retry_policy(Some(&policy)).expect("fractions are valid"),
            Some(RetryPolicy {
                minimum_backoff: std::time::Duration::from_millis(500),
                maximum_backoff: std::time::Duration::from_millis(1250),
            })
        );
        for (invalid, shown) in [
            (fraction(600, 1), "600.000000001s"),
            (fraction(0, -5), "0s with nanos -5"),
            (fraction(0, 1_000_000_000), "0s with nanos 1000000000"),
        ] {
            let policy = pubsub::RetryPolicy {
                minimum_backoff: Some(invalid),
                maximum_backoff: None,
            };
            let status = retry_policy(Some(&policy)).expect_err("out of range");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains(shown), "{}", status.message());
        }
        let inverted = pubsub::RetryPolicy {
            minimum_backoff: Some(fraction(0, 750_000_000)),
            maximum_backoff: Some(fraction(0, 500_000_000)),
        };
        assert_eq!(
            retry_policy(Some(&inverted))
                .expect_err("min > max")
                .message(),
            "The value for maximum_backoff is too small. You passed 0.5s in the request, but \
             the minimum value is 0.75s."
        );
    }

    #[test]
    fn filter_errors_have_position() {
        assert_eq!(filter("").ok().as_deref(), Some(""));
        let status = filter("attributes.a = ").expect_err("incomplete");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("line 1, column"),
            "{}",
            status.message()
        );
        let long = format!("attributes.a = \"{}\"", "x".repeat(300));
        assert!(filter(&long).is_err(), "over 256 bytes");
    }

    #[test]
    fn push_endpoints_checked() {
        let config = |endpoint: &str| pubsub::PushConfig {
            push_endpoint: endpoint.to_owned(),
            ..Default::default()
        };
        assert_eq!(push_config(None).ok(), Some(None));
        assert_eq!(
            push_config(Some(&config(""))).ok(),
            Some(None),
            "no endpoint"
        );
        let push = push_config(Some(&config("http://127.0.0.1:9000/push")))
            .expect("http URL")
            .expect("a push config");
        assert_eq!(push.format, PushFormat::Wrapped);
        for invalid in ["ftp://host/x", "not a url", "/relative"] {
            assert!(push_config(Some(&config(invalid))).is_err(), "{invalid}");
        }
    }
}
