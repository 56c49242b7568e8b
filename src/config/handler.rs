//! The `[subscriptions.handler]` table: a built-in handler that consumes a subscription's
//! messages inside the server.

use std::ops::RangeInclusive;

use serde::Deserialize;

/// The handler kinds this build supports, as `kind` names them.
pub(crate) const HANDLER_KINDS: [&str; 3] = ["thumbnail", "annotate", "offers"];

/// Valid thumbnail widths and heights, in pixels. 65535 is the largest side a JPEG can have.
pub(crate) const THUMBNAIL_SIDE_PIXELS: RangeInclusive<u32> = 1..=65535;

/// Valid JPEG qualities of thumbnails.
pub(crate) const JPEG_QUALITY: RangeInclusive<u32> = 1..=100;

/// Valid numbers of dominant colours in an annotation. Cloud Vision returns 10 by default.
pub(crate) const ANNOTATION_COLORS: RangeInclusive<u32> = 1..=64;

/// Valid worker counts of a handler; 0 means one worker per CPU. Each worker can hold one
/// decoded source image, so the upper bound keeps a typo from exhausting memory.
pub(crate) const HANDLER_CONCURRENCY: RangeInclusive<u32> = 0..=1024;

/// Width and height of the box that thumbnails fit in when the table does not set them.
pub(crate) const DEFAULT_THUMBNAIL_SIDE_PIXELS: i64 = 256;

/// Largest source image, in pixels, when the table does not set `max_pixels`.
pub(crate) const DEFAULT_MAX_PIXELS: i64 = 100_000_000;

/// JPEG quality when the table does not set one.
pub(crate) const DEFAULT_JPEG_QUALITY: i64 = 85;

/// Number of dominant colours in an annotation when the table does not set `max_colors`.
pub(crate) const DEFAULT_ANNOTATION_COLORS: i64 = 10;

/// One `[subscriptions.handler]` table. Every key but `kind` is optional here, so that
/// validation can tell a key that is set for a kind that does not take it. The numbers are
/// `i64` so that validation, not parsing, reports a negative value with the other problems.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HandlerConfig {
    /// One of [`HANDLER_KINDS`]. Required, defaulted so that validation reports it missing.
    #[serde(default = "default_kind")]
    pub(crate) kind: String,
    /// Declared bucket that receives the thumbnails or annotations.
    #[serde(default)]
    pub(crate) destination_bucket: Option<String>,
    /// Prefix of every output object's name, before the source object's name.
    #[serde(default)]
    pub(crate) name_prefix: Option<String>,
    /// Maximum thumbnail width in pixels.
    #[serde(default)]
    pub(crate) max_width: Option<i64>,
    /// Maximum thumbnail height in pixels.
    #[serde(default)]
    pub(crate) max_height: Option<i64>,
    /// Largest source image, as width × height, that the handler decodes.
    #[serde(default)]
    pub(crate) max_pixels: Option<i64>,
    /// Quality of the JPEG thumbnails, 1 to 100.
    #[serde(default)]
    pub(crate) jpeg_quality: Option<i64>,
    /// Maximum number of dominant colours in an annotation.
    #[serde(default)]
    pub(crate) max_colors: Option<i64>,
    /// Declared bucket that keeps the offers handler's state.
    #[serde(default)]
    pub(crate) state_bucket: Option<String>,
    /// Declared topic that accepted offers are published to.
    #[serde(default)]
    pub(crate) accepted_topic: Option<String>,
    /// Messages handled at once; 0 means one per CPU.
    #[serde(default)]
    pub(crate) concurrency: Option<i64>,
}

impl HandlerConfig {
    /// Returns the names of the optional keys that the table sets.
    pub(crate) fn set_keys(&self) -> Vec<&'static str> {
        let keys = [
            ("destination_bucket", self.destination_bucket.is_some()),
            ("name_prefix", self.name_prefix.is_some()),
            ("max_width", self.max_width.is_some()),
            ("max_height", self.max_height.is_some()),
            ("max_pixels", self.max_pixels.is_some()),
            ("jpeg_quality", self.jpeg_quality.is_some()),
            ("max_colors", self.max_colors.is_some()),
            ("state_bucket", self.state_bucket.is_some()),
            ("accepted_topic", self.accepted_topic.is_some()),
            ("concurrency", self.concurrency.is_some()),
        ];
        keys.into_iter()
            .filter(|(_, set)| *set)
            .map(|(key, _)| key)
            .collect()
    }
}

fn default_kind() -> String {
    String::new()
}

/// A validated handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandlerSpec {
    /// Renders a JPEG thumbnail of each finalized image object into another bucket.
    Thumbnail {
        /// The bucket that receives the thumbnails.
        destination_bucket: String,
        /// Prefix of every thumbnail's object name, before the source object's name.
        name_prefix: String,
        /// Maximum thumbnail width in pixels.
        max_width: u32,
        /// Maximum thumbnail height in pixels.
        max_height: u32,
        /// Largest source image, as width × height, that the handler decodes.
        max_pixels: u64,
        /// JPEG quality, 1 to 100.
        jpeg_quality: u8,
        /// Messages handled at once; 0 means one per CPU.
        concurrency: usize,
    },
    /// Writes a JSON annotation of each finalized image object into another bucket.
    Annotate {
        /// The bucket that receives the annotations.
        destination_bucket: String,
        /// Prefix of every annotation's object name, before the source object's name.
        name_prefix: String,
        /// Largest source image, as width × height, that the handler decodes.
        max_pixels: u64,
        /// Maximum number of dominant colours.
        max_colors: usize,
        /// Messages handled at once; 0 means one per CPU.
        concurrency: usize,
    },
    /// Validates the seller offers of the subscription and keeps the best one per product.
    Offers {
        /// The bucket of the product state objects.
        state_bucket: String,
        /// The topic that accepted offers are published to.
        accepted_topic: String,
        /// Messages handled at once; 0 means one per CPU.
        concurrency: usize,
    },
}

/// A subscription whose messages a built-in handler consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionHandler {
    /// The subscription's name.
    pub(crate) subscription: String,
    /// The handler's kind and settings.
    pub(crate) handler: HandlerSpec,
}
