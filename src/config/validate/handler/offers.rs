//! Validation of `kind = "offers"` handler tables.

use std::collections::HashMap;

use super::{check_concurrency, notifies_finalize, Declared, Report};
use crate::config::{HandlerConfig, HandlerSpec, SubscriptionConfig};

/// Checks an offers handler: a declared state bucket that does not feed the subscription, and
/// a declared accepted topic other than the subscription's own.
pub(super) fn validate_offers(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    declared: &Declared<'_>,
    report: &mut Report,
) -> Option<HandlerSpec> {
    let state_bucket = check_state_bucket(subscription, handler, label, declared, report);
    let accepted_topic = check_accepted_topic(subscription, handler, label, declared, report);
    let concurrency = check_concurrency(handler, label, report);
    Some(HandlerSpec::Offers {
        state_bucket: state_bucket?,
        accepted_topic: accepted_topic?,
        concurrency: concurrency?,
    })
}

fn check_state_bucket(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    declared: &Declared<'_>,
    report: &mut Report,
) -> Option<String> {
    let bucket = handler.state_bucket.as_deref().unwrap_or_default();
    if bucket.trim().is_empty() {
        report.error(
            label,
            "handler.state_bucket is missing: set it to the declared bucket that keeps the \
             best offer of each product",
        );
        return None;
    }
    if !declared
        .buckets
        .iter()
        .any(|declared| declared.name == bucket)
    {
        report.error(
            label,
            format!(
                "handler.state_bucket {bucket:?} is not a declared bucket; add [[buckets]] \
                 name = {bucket:?}"
            ),
        );
        return None;
    }
    let topic = &subscription.topic;
    if notifies_finalize(declared.buckets, bucket, topic) {
        report.error(
            label,
            format!(
                "handler.state_bucket {bucket:?} publishes OBJECT_FINALIZE to this \
                 subscription's topic {topic:?}, so every state write would come back to the \
                 handler and be dead-lettered: use a bucket that does not notify {topic:?}"
            ),
        );
        return None;
    }
    Some(bucket.to_owned())
}

fn check_accepted_topic(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    declared: &Declared<'_>,
    report: &mut Report,
) -> Option<String> {
    let topic = handler.accepted_topic.as_deref().unwrap_or_default();
    if topic.trim().is_empty() {
        report.error(
            label,
            "handler.accepted_topic is missing: set it to the declared topic that receives \
             the accepted offers",
        );
        return None;
    }
    if !declared.topics.contains(topic) {
        report.error(
            label,
            format!(
                "handler.accepted_topic {topic:?} is not a declared topic; add [[topics]] \
                 name = {topic:?}"
            ),
        );
        return None;
    }
    if topic == subscription.topic {
        report.error(
            label,
            format!(
                "handler.accepted_topic {topic:?} is the subscription's own topic, so each \
                 accepted offer would come back to the handler: publish accepted offers to \
                 another topic"
            ),
        );
        return None;
    }
    Some(topic.to_owned())
}

/// Records an error when an earlier offers handler already keeps its state in `bucket`.
/// Each handler locks its own products only, so two handlers on one bucket could overwrite
/// each other's state.
pub(super) fn check_state_bucket_unshared<'a>(
    bucket: &'a str,
    subscription: &'a str,
    first_users: &mut HashMap<&'a str, &'a str>,
    label: &str,
    report: &mut Report,
) {
    match first_users.get(bucket) {
        Some(first) => report.error(
            label,
            format!(
                "handler.state_bucket {bucket:?} is already the state bucket of subscription \
                 {first:?}, and two offers handlers must not share one: give each its own \
                 bucket"
            ),
        ),
        None => {
            first_users.insert(bucket, subscription);
        }
    }
}
