//! Validation of the `[subscriptions.handler]` tables.

use std::collections::HashSet;

use sluice_router::buckets::EventType;

use super::buckets::includes;
use super::{check_range, Report};
use crate::config::handler::{
    HANDLER_CONCURRENCY, HANDLER_KINDS, JPEG_QUALITY, THUMBNAIL_SIDE_PIXELS,
};
use crate::config::{BucketConfig, HandlerConfig, HandlerSpec, SubscriptionConfig};

/// Checks the handler of a subscription, and records a warning when the subscription has no
/// dead-letter topic for the messages the handler cannot process.
pub(super) fn validate_handler(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) -> Option<HandlerSpec> {
    if subscription.dead_letter.is_none() {
        report.warning(
            label,
            "the subscription has a handler but no [subscriptions.dead_letter] table, so a \
             message that the handler rejects for good, such as an object that is not an \
             image, is delivered again until it is acknowledged: add a dead-letter topic",
        );
    }
    match handler.kind.as_str() {
        "thumbnail" => validate_thumbnail(subscription, handler, label, buckets, report),
        "" => {
            report.error(
                label,
                format!(
                    "handler.kind is missing: set it to one of the known kinds: {}",
                    HANDLER_KINDS.join(", ")
                ),
            );
            None
        }
        kind => {
            report.error(
                label,
                format!(
                    "unknown handler.kind {kind:?}: the known kinds are {}",
                    HANDLER_KINDS.join(", ")
                ),
            );
            None
        }
    }
}

fn validate_thumbnail(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) -> Option<HandlerSpec> {
    let declared: HashSet<&str> = buckets.iter().map(|bucket| bucket.name.as_str()).collect();
    let destination = handler.destination_bucket.as_str();
    if destination.trim().is_empty() {
        report.error(
            label,
            "handler.destination_bucket is missing: set it to the declared bucket that \
             receives the thumbnails",
        );
    } else if !declared.contains(destination) {
        report.error(
            label,
            format!(
                "handler.destination_bucket {destination:?} is not a declared bucket; add \
                 [[buckets]] name = {destination:?}"
            ),
        );
    } else {
        check_thumbnail_loop(subscription, handler, label, buckets, report);
    }

    let max_width = check_range(
        handler.max_width,
        &THUMBNAIL_SIDE_PIXELS,
        "handler.max_width",
        " pixels",
        label,
        report,
    );
    let max_height = check_range(
        handler.max_height,
        &THUMBNAIL_SIDE_PIXELS,
        "handler.max_height",
        " pixels",
        label,
        report,
    );
    let max_pixels = match u64::try_from(handler.max_pixels) {
        Ok(pixels) if pixels > 0 => Some(pixels),
        _ => {
            report.error(
                label,
                format!(
                    "handler.max_pixels is {}, but it must be at least 1",
                    handler.max_pixels
                ),
            );
            None
        }
    };
    let jpeg_quality = check_range(
        handler.jpeg_quality,
        &JPEG_QUALITY,
        "handler.jpeg_quality",
        "",
        label,
        report,
    );
    let concurrency = check_range(
        handler.concurrency,
        &HANDLER_CONCURRENCY,
        "handler.concurrency",
        " (0 means one per CPU)",
        label,
        report,
    );

    Some(HandlerSpec::Thumbnail {
        destination_bucket: handler.destination_bucket.clone(),
        name_prefix: handler.name_prefix.clone(),
        max_width: max_width?,
        max_height: max_height?,
        max_pixels: max_pixels?,
        jpeg_quality: u8::try_from(jpeg_quality?).ok()?,
        concurrency: usize::try_from(concurrency?).ok()?,
    })
}

/// Records an error when the thumbnails written to the destination bucket would come back
/// to the handler as new sources without end.
///
/// A thumbnail's name is `name_prefix` followed by the source's name. When the destination
/// bucket publishes OBJECT_FINALIZE to the subscription's topic for names that start with a
/// prefix that `name_prefix` starts with, every thumbnail reaches the handler again. With an
/// empty `name_prefix`, each thumbnail even overwrites its source object.
fn check_thumbnail_loop(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) {
    let destination = &handler.destination_bucket;
    let looping = buckets
        .iter()
        .filter(|bucket| bucket.name == *destination)
        .flat_map(|bucket| &bucket.notifications)
        .find(|notification| {
            notification.topic == subscription.topic
                && includes(notification, EventType::ObjectFinalize)
                && handler
                    .name_prefix
                    .starts_with(notification.object_name_prefix.as_str())
        });
    let Some(notification) = looping else {
        return;
    };
    let topic = &subscription.topic;
    let message = if handler.name_prefix.is_empty() {
        format!(
            "handler.destination_bucket {destination:?} publishes OBJECT_FINALIZE to this \
             subscription's topic {topic:?} and handler.name_prefix is empty, so every \
             thumbnail would overwrite its source object and be thumbnailed again without end: \
             write thumbnails to another bucket"
        )
    } else {
        let prefix = &handler.name_prefix;
        format!(
            "handler.destination_bucket {destination:?} publishes OBJECT_FINALIZE to this \
             subscription's topic {topic:?} for names starting with {:?}, and every thumbnail \
             name starts with handler.name_prefix {prefix:?}, so each thumbnail would be \
             thumbnailed again, giving \"{prefix}{prefix}...\" names without end: write \
             thumbnails to another bucket, or give that notification an object_name_prefix \
             that thumbnail names do not start with",
            notification.object_name_prefix
        )
    };
    report.error(label, message);
}
