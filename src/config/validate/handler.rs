//! Validation of the `[subscriptions.handler]` tables.
//!
//! Each kind takes its own keys, and a key of another kind is an error. The thumbnail and
//! annotate kinds write into a destination bucket and share its checks here. The offers
//! kind, which writes state objects and publishes to a topic, is checked in `offers.rs`.

mod offers;

use std::collections::{HashMap, HashSet};

use sluice_router::buckets::{EventType, MAX_OBJECT_NAME_BYTES};

use super::buckets::includes;
use super::{check_range, component_label, Report};
use crate::config::handler::{
    ANNOTATION_COLORS, DEFAULT_ANNOTATION_COLORS, DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS,
    DEFAULT_THUMBNAIL_SIDE_PIXELS, HANDLER_CONCURRENCY, HANDLER_KINDS, JPEG_QUALITY,
    THUMBNAIL_SIDE_PIXELS,
};
use crate::config::{
    BucketConfig, HandlerConfig, HandlerSpec, SubscriptionConfig, SubscriptionHandler,
};

/// The keys that each kind takes besides `kind`.
const THUMBNAIL_KEYS: &[&str] = &[
    "destination_bucket",
    "name_prefix",
    "max_width",
    "max_height",
    "max_pixels",
    "jpeg_quality",
    "concurrency",
];
const ANNOTATE_KEYS: &[&str] = &[
    "destination_bucket",
    "name_prefix",
    "max_pixels",
    "max_colors",
    "concurrency",
];
const OFFERS_KEYS: &[&str] = &["state_bucket", "accepted_topic", "concurrency"];

/// The declared buckets and topics that handler tables may name.
struct Declared<'a> {
    buckets: &'a [BucketConfig],
    topics: &'a HashSet<&'a str>,
}

/// Checks the handler tables of all subscriptions, and returns the valid handlers in file
/// order.
pub(super) fn validate_handlers(
    subscriptions: &[SubscriptionConfig],
    buckets: &[BucketConfig],
    topics: &HashSet<&str>,
    report: &mut Report,
) -> Vec<SubscriptionHandler> {
    let declared = Declared { buckets, topics };
    let mut handlers = Vec::new();
    // The subscription that first names each state bucket, since two offers handlers must
    // not share one.
    let mut state_buckets: HashMap<&str, &str> = HashMap::new();
    for (index, subscription) in subscriptions.iter().enumerate() {
        let Some(handler) = &subscription.handler else {
            continue;
        };
        let label = component_label("subscription", &subscription.name, index);
        if let Some(bucket) = handler
            .state_bucket
            .as_deref()
            .filter(|_| handler.kind == "offers")
        {
            offers::check_state_bucket_unshared(
                bucket,
                &subscription.name,
                &mut state_buckets,
                &label,
                report,
            );
        }
        if let Some(handler) = validate_handler(subscription, handler, &label, &declared, report) {
            handlers.push(SubscriptionHandler {
                subscription: subscription.name.clone(),
                handler,
            });
        }
    }
    handlers
}

/// Checks the handler of a subscription, and records a warning when the subscription has no
/// dead-letter topic for the messages the handler cannot process.
fn validate_handler(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    declared: &Declared<'_>,
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
        "thumbnail" => {
            check_keys(handler, THUMBNAIL_KEYS, label, report);
            validate_thumbnail(subscription, handler, label, declared.buckets, report)
        }
        "annotate" => {
            check_keys(handler, ANNOTATE_KEYS, label, report);
            validate_annotate(subscription, handler, label, declared.buckets, report)
        }
        "offers" => {
            check_keys(handler, OFFERS_KEYS, label, report);
            offers::validate_offers(subscription, handler, label, declared, report)
        }
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

/// Records an error for each key that the table sets but its kind does not take.
fn check_keys(handler: &HandlerConfig, allowed: &[&str], label: &str, report: &mut Report) {
    let kind = &handler.kind;
    for key in handler.set_keys() {
        if !allowed.contains(&key) {
            report.error(
                label,
                format!(
                    "handler.{key} does not apply to kind {kind:?}, whose keys are {}: remove \
                     it",
                    allowed.join(", ")
                ),
            );
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
    let output = Output::Thumbnails;
    check_destination(subscription, handler, output, label, buckets, report);
    let name_prefix = handler.name_prefix.clone().unwrap_or_default();
    check_name_prefix(&name_prefix, output, label, report);

    let max_width = check_range(
        handler.max_width.unwrap_or(DEFAULT_THUMBNAIL_SIDE_PIXELS),
        &THUMBNAIL_SIDE_PIXELS,
        "handler.max_width",
        " pixels",
        label,
        report,
    );
    let max_height = check_range(
        handler.max_height.unwrap_or(DEFAULT_THUMBNAIL_SIDE_PIXELS),
        &THUMBNAIL_SIDE_PIXELS,
        "handler.max_height",
        " pixels",
        label,
        report,
    );
    let max_pixels = check_max_pixels(handler, label, report);
    let jpeg_quality = check_range(
        handler.jpeg_quality.unwrap_or(DEFAULT_JPEG_QUALITY),
        &JPEG_QUALITY,
        "handler.jpeg_quality",
        "",
        label,
        report,
    );
    let concurrency = check_concurrency(handler, label, report);

    Some(HandlerSpec::Thumbnail {
        destination_bucket: handler.destination_bucket.clone()?,
        name_prefix,
        max_width: max_width?,
        max_height: max_height?,
        max_pixels: max_pixels?,
        jpeg_quality: u8::try_from(jpeg_quality?).ok()?,
        concurrency: concurrency?,
    })
}

fn validate_annotate(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) -> Option<HandlerSpec> {
    let output = Output::Annotations;
    check_destination(subscription, handler, output, label, buckets, report);
    let name_prefix = handler.name_prefix.clone().unwrap_or_default();
    check_name_prefix(&name_prefix, output, label, report);
    let max_pixels = check_max_pixels(handler, label, report);
    let max_colors = check_range(
        handler.max_colors.unwrap_or(DEFAULT_ANNOTATION_COLORS),
        &ANNOTATION_COLORS,
        "handler.max_colors",
        " colours",
        label,
        report,
    );
    let concurrency = check_concurrency(handler, label, report);

    Some(HandlerSpec::Annotate {
        destination_bucket: handler.destination_bucket.clone()?,
        name_prefix,
        max_pixels: max_pixels?,
        max_colors: usize::try_from(max_colors?).ok()?,
        concurrency: concurrency?,
    })
}

/// The kind of objects that a handler writes into its destination bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Thumbnails,
    Annotations,
}

impl Output {
    /// Returns the plural noun for the objects, as messages use it.
    fn plural(self) -> &'static str {
        match self {
            Self::Thumbnails => "thumbnails",
            Self::Annotations => "annotations",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Self::Thumbnails => "thumbnail",
            Self::Annotations => "annotation",
        }
    }
}

/// Records an error when `destination_bucket` is missing or undeclared, or when an output
/// object could land among the objects the handler reads.
fn check_destination(
    subscription: &SubscriptionConfig,
    handler: &HandlerConfig,
    output: Output,
    label: &str,
    buckets: &[BucketConfig],
    report: &mut Report,
) {
    let destination = handler.destination_bucket.as_deref().unwrap_or_default();
    let declared: HashSet<&str> = buckets.iter().map(|bucket| bucket.name.as_str()).collect();
    if destination.trim().is_empty() {
        report.error(
            label,
            format!(
                "handler.destination_bucket is missing: set it to the declared bucket that \
                 receives the {}",
                output.plural()
            ),
        );
    } else if !declared.contains(destination) {
        report.error(
            label,
            format!(
                "handler.destination_bucket {destination:?} is not a declared bucket; add \
                 [[buckets]] name = {destination:?}"
            ),
        );
    } else if handler
        .name_prefix
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        && notifies_finalize(buckets, destination, &subscription.topic)
    {
        report.error(
            label,
            loop_message(destination, &subscription.topic, output),
        );
    }
}

/// Returns whether `bucket` publishes OBJECT_FINALIZE to `topic`.
fn notifies_finalize(buckets: &[BucketConfig], bucket: &str, topic: &str) -> bool {
    buckets
        .iter()
        .filter(|declared| declared.name == bucket)
        .flat_map(|declared| &declared.notifications)
        .any(|notification| {
            notification.topic == topic && includes(notification, EventType::ObjectFinalize)
        })
}

/// Explains why an empty `name_prefix` is an error when the destination bucket feeds the
/// subscription.
///
/// A thumbnail's name is `name_prefix` followed by the source's name. The handlers skip
/// objects that carry their own metadata, so their output never triggers them again. But an
/// object uploaded to the destination bucket would get a thumbnail under its own name, which
/// replaces it. An annotation adds `.json` to the name, so it replaces no source, but the
/// handler rejects every event of a bucket that is both its source and its destination
/// without a prefix.
fn loop_message(destination: &str, topic: &str, output: Output) -> String {
    let consequence = match output {
        Output::Thumbnails => format!(
            "the thumbnail of an object in {destination:?} would be written over that object"
        ),
        Output::Annotations => format!(
            "annotations would be written among the objects of {destination:?} that they \
             describe, and the handler rejects such events"
        ),
    };
    format!(
        "handler.destination_bucket {destination:?} publishes OBJECT_FINALIZE to this \
         subscription's topic {topic:?} and handler.name_prefix is empty, so {consequence}: \
         set handler.name_prefix (for example \"{}/\"), or write {} to a bucket that does \
         not notify {topic:?}",
        output.plural(),
        output.plural()
    )
}

/// Records an error when `name_prefix` would make output names that Cloud Storage's naming
/// rules reject.
fn check_name_prefix(prefix: &str, output: Output, label: &str, report: &mut Report) {
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
                "handler.name_prefix is {} bytes long, so no {} name would fit in \
                 {MAX_OBJECT_NAME_BYTES} bytes: shorten it",
                prefix.len(),
                output.singular()
            ),
        );
    }
}

fn check_max_pixels(handler: &HandlerConfig, label: &str, report: &mut Report) -> Option<u64> {
    let max_pixels = handler.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS);
    match u64::try_from(max_pixels) {
        Ok(pixels) if pixels > 0 => Some(pixels),
        _ => {
            report.error(
                label,
                format!("handler.max_pixels is {max_pixels}, but it must be at least 1"),
            );
            None
        }
    }
}

fn check_concurrency(handler: &HandlerConfig, label: &str, report: &mut Report) -> Option<usize> {
    let concurrency = check_range(
        handler.concurrency.unwrap_or(0),
        &HANDLER_CONCURRENCY,
        "handler.concurrency",
        " (0 means one per CPU)",
        label,
        report,
    );
    usize::try_from(concurrency?).ok()
}
