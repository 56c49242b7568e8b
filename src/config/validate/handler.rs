//! Validation of the `[subscriptions.handler]` tables.

use std::collections::HashSet;

use sluice_router::buckets::{EventType, MAX_OBJECT_NAME_BYTES};

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
             message that the handler rejects for good, such as the event of a damaged \
             image, is acknowledged and dropped with an error log line: add a dead-letter \
             topic to keep such messages",
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

    check_name_prefix(handler, label, report);

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

/// Records an error when a thumbnail could be written over the object it was made from.
///
/// A thumbnail's name is `name_prefix` followed by the source's name. The handler skips
/// objects that carry its own metadata, so thumbnails never trigger it again. But when the
/// destination bucket publishes OBJECT_FINALIZE to the subscription's topic and
/// `name_prefix` is empty, an object uploaded to the destination bucket would get a
/// thumbnail under its own name, which replaces it.
fn check_thumbnail_loop(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) {
    if !handler.name_prefix.is_empty() {
        return;
    }
    let destination = &handler.destination_bucket;
    let notifies_topic = buckets
        .iter()
        .filter(|bucket| bucket.name == *destination)
        .flat_map(|bucket| &bucket.notifications)
        .any(|notification| {
            notification.topic == subscription.topic
                && includes(notification, EventType::ObjectFinalize)
        });
    if notifies_topic {
        let topic = &subscription.topic;
        report.error(
            label,
            format!(
                "handler.destination_bucket {destination:?} publishes OBJECT_FINALIZE to this \
                 subscription's topic {topic:?} and handler.name_prefix is empty, so the \
                 thumbnail of an object in {destination:?} would be written over that object: \
                 set handler.name_prefix (for example \"thumbnails/\"), or write thumbnails \
                 to a bucket that does not notify {topic:?}"
            ),
        );
    }
}

/// Records an error when `name_prefix` would make thumbnail names that Cloud Storage's
/// naming rules reject.
fn check_name_prefix(handler: &HandlerConfig, label: &str, report: &mut Report) {
    let prefix = &handler.name_prefix;
    if prefix.contains(['\r', '\n']) {
        report.error(
            label,
            format!(
                "handler.name_prefix {prefix:?} contains a line break, which object names \
                 may not contain: remove it"
            ),
        );
    } else if prefix.len() >= MAX_OBJECT_NAME_BYTES {
        report.error(
            label,
            format!(
                "handler.name_prefix is {} bytes long, so no thumbnail name would fit in \
                 {MAX_OBJECT_NAME_BYTES} bytes: shorten it",
                prefix.len()
            ),
        );
    }
}
