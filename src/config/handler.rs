//! The `[subscriptions.handler]` table: a built-in handler that consumes a subscription's
//! messages inside the server.

use std::ops::RangeInclusive;

use serde::Deserialize;

/// The handler kinds this build supports, as `kind` names them.
pub(crate) const HANDLER_KINDS: [&str; 1] = ["thumbnail"];

/// Valid thumbnail widths and heights, in pixels. 65535 is the largest side a JPEG can have.
pub(crate) const THUMBNAIL_SIDE_PIXELS: RangeInclusive<u32> = 1..=65535;

/// Valid JPEG qualities of thumbnails.
pub(crate) const JPEG_QUALITY: RangeInclusive<u32> = 1..=100;

/// Valid worker counts of a handler; 0 means one worker per CPU. Each worker can hold one
/// decoded source image, so the upper bound keeps a typo from exhausting memory.
pub(crate) const HANDLER_CONCURRENCY: RangeInclusive<u32> = 0..=1024;

/// Width and height of the box that thumbnails fit in when the table does not set them.
const DEFAULT_THUMBNAIL_SIDE_PIXELS: i64 = 256;

/// Largest source image, in pixels, when the table does not set `max_pixels`.
const DEFAULT_MAX_PIXELS: i64 = 100_000_000;

/// JPEG quality when the table does not set one.
const DEFAULT_JPEG_QUALITY: i64 = 85;

/// One `[subscriptions.handler]` table. The numbers are `i64` so that validation, not
/// parsing, reports a negative value with the other problems.
#[derive(Debug, Deserialize)]
pub(crate) struct HandlerConfig {
    /// One of [`HANDLER_KINDS`]. Required, defaulted so that validation reports it missing.
    #[serde(default = "default_kind")]
    pub(crate) kind: String,
    /// Declared bucket that receives the thumbnails. Required, defaulted like `kind`.
    #[serde(default = "default_destination_bucket")]
    pub(crate) destination_bucket: String,
    /// Prefix of every thumbnail's object name, before the source object's name.
    #[serde(default = "default_name_prefix")]
    pub(crate) name_prefix: String,
    /// Maximum thumbnail width in pixels.
    #[serde(default = "default_thumbnail_side")]
    pub(crate) max_width: i64,
    /// Maximum thumbnail height in pixels.
    #[serde(default = "default_thumbnail_side")]
    pub(crate) max_height: i64,
    /// Largest source image, as width × height, that the handler decodes.
    #[serde(default = "default_max_pixels")]
    pub(crate) max_pixels: i64,
    /// Quality of the JPEG thumbnails, 1 to 100.
    #[serde(default = "default_jpeg_quality")]
    pub(crate) jpeg_quality: i64,
    /// Messages handled at once; 0 means one per CPU.
    #[serde(default = "default_concurrency")]
    pub(crate) concurrency: i64,
}

fn default_kind() -> String {
    String::new()
}

fn default_destination_bucket() -> String {
    String::new()
}

fn default_name_prefix() -> String {
    String::new()
}

fn default_thumbnail_side() -> i64 {
    DEFAULT_THUMBNAIL_SIDE_PIXELS
}

fn default_max_pixels() -> i64 {
    DEFAULT_MAX_PIXELS
}

fn default_jpeg_quality() -> i64 {
    DEFAULT_JPEG_QUALITY
}

fn default_concurrency() -> i64 {
    0
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
}

/// A subscription whose messages a built-in handler consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionHandler {
    /// The subscription's name.
    pub(crate) subscription: String,
    /// The handler's kind and settings.
    pub(crate) handler: HandlerSpec,
}
