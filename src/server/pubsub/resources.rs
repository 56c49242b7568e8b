//! The google.pubsub.v1 resources that the admin calls return, built from the store's
//! records.

use std::time::{Duration, UNIX_EPOCH};

use sluice_proto::google::protobuf::Duration as ProtoDuration;
use sluice_proto::google::pubsub::v1 as pubsub;
use sluice_router::store::{PushConfig, PushFormat, SnapshotRecord, SubscriptionSpec, TopicRecord};

use super::{names, timestamp};

/// Returns a topic as Pub/Sub describes it.
pub(super) fn topic_of(record: &TopicRecord) -> pubsub::Topic {
    pubsub::Topic {
        name: names::topic_resource(&record.name),
        message_retention_duration: record.settings.message_retention_secs.map(duration),
        ..Default::default()
    }
}

/// Returns a subscription as Pub/Sub describes it. `topic_retention_secs` is the message
/// retention of the subscription's topic, if it has one.
pub(super) fn subscription_of(
    spec: &SubscriptionSpec,
    topic_retention_secs: Option<u64>,
) -> pubsub::Subscription {
    pubsub::Subscription {
        name: names::subscription_resource(&spec.name),
        topic: names::topic_resource(&spec.topic),
        // The service returns an empty push config for a pull subscription.
        push_config: Some(push_config_of(spec.push.as_ref())),
        ack_deadline_seconds: i32::try_from(spec.ack_deadline_secs).unwrap_or(i32::MAX),
        retain_acked_messages: spec.retain_acked_messages,
        message_retention_duration: Some(duration(spec.message_retention_secs)),
        enable_message_ordering: spec.enable_message_ordering,
        // An expiration policy without a ttl means that the subscription never expires,
        // which is what sluice does.
        expiration_policy: Some(pubsub::ExpirationPolicy { ttl: None }),
        filter: spec.filter.clone(),
        dead_letter_policy: spec
            .dead_letter
            .as_ref()
            .map(|policy| pubsub::DeadLetterPolicy {
                dead_letter_topic: names::topic_resource(&policy.topic),
                max_delivery_attempts: i32::try_from(policy.max_delivery_attempts)
                    .unwrap_or(i32::MAX),
            }),
        retry_policy: spec.retry_policy.map(|policy| pubsub::RetryPolicy {
            minimum_backoff: Some(exact_duration(policy.minimum_backoff)),
            maximum_backoff: Some(exact_duration(policy.maximum_backoff)),
        }),
        topic_message_retention_duration: topic_retention_secs.map(duration),
        state: pubsub::subscription::State::Active as i32,
        ..Default::default()
    }
}

/// Returns a push endpoint as Pub/Sub's `PushConfig`; the empty config for none.
///
/// The wrapped format is written without a `wrapper`, which means the same, because the
/// store does not record whether the request set `pubsub_wrapper` and Google's emulator
/// returns no wrapper for a config that set none.
pub(super) fn push_config_of(push: Option<&PushConfig>) -> pubsub::PushConfig {
    let Some(push) = push else {
        return pubsub::PushConfig::default();
    };
    // The background and CloudEvent formats are sluice's own, and the API shows them as the
    // default Pub/Sub wrapper, which has no field to name them.
    let wrapper = match push.format {
        PushFormat::Wrapped | PushFormat::Background | PushFormat::CloudEvent => None,
        PushFormat::Unwrapped { write_metadata } => Some(pubsub::push_config::Wrapper::NoWrapper(
            pubsub::push_config::NoWrapper { write_metadata },
        )),
    };
    pubsub::PushConfig {
        push_endpoint: push.endpoint.clone(),
        attributes: push
            .attributes
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
        authentication_method: None,
        wrapper,
    }
}

/// Returns a snapshot as Pub/Sub describes it.
pub(super) fn snapshot_of(record: &SnapshotRecord) -> pubsub::Snapshot {
    pubsub::Snapshot {
        name: names::snapshot_resource(&record.name),
        topic: names::topic_resource(&record.topic),
        expire_time: Some(timestamp(
            UNIX_EPOCH + Duration::from_secs(record.expire_secs),
        )),
        labels: Default::default(),
    }
}

/// Returns whole seconds as a protobuf duration.
pub(super) fn duration(seconds: u64) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Returns a duration with its fraction of a second.
fn exact_duration(duration: std::time::Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // Below 10^9, so it fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(i32::MAX),
    }
}
