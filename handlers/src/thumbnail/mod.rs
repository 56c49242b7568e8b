//! The thumbnail function: the renderer, and [`ThumbnailHandler`], which runs it on the
//! objects finalized in a bucket.
//!
//! The renderer takes image bytes and returns an upright thumbnail that fits a box.
//! [`render`] detects the format from the bytes and rejects images whose header gives more
//! than [`ThumbnailOptions::max_pixels`] pixels before decoding them. It decodes JPEGs at 1/2,
//! 1/4 or 1/8 size when the thumbnail is that much smaller, resizes with Lanczos3 and applies
//! the EXIF orientation. The output is JPEG, or PNG when the source has an alpha channel.
//! `render` does no I/O and is CPU-bound, so async code should call it through
//! [`run_blocking`](crate::contract::run_blocking).

mod decode;
mod encode;
mod error;
mod format;
mod geometry;
pub mod handler;
mod progressive;
mod resize;

use std::fmt;
use std::panic::{self, AssertUnwindSafe};

use image::metadata::Orientation;

pub use self::error::ThumbnailError;
use self::format::SourceFormat;
pub use self::handler::{ThumbnailConfig, ThumbnailHandler};

/// Settings of [`render`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailOptions {
    /// Maximum thumbnail width in pixels. 0 counts as 1. The JPEG encoder cannot write more
    /// than 65535 pixels a side, so a render that would exceed that fails with `Corrupt`.
    pub max_width: u32,
    /// Maximum thumbnail height in pixels. 0 counts as 1, and the 65535 JPEG limit applies.
    pub max_height: u32,
    /// Maximum width × height of the source, checked on the header before decoding, to reject
    /// decompression bombs. Decoders may also allocate at most 16 bytes per allowed pixel
    /// (at least 64 MiB).
    pub max_pixels: u64,
    /// JPEG quality from 1 to 100. Values outside are clamped.
    pub jpeg_quality: u8,
}

impl Default for ThumbnailOptions {
    /// Returns a 256x256 box, a 100-megapixel limit and JPEG quality 85.
    fn default() -> Self {
        Self {
            max_width: 256,
            max_height: 256,
            max_pixels: 100_000_000,
            jpeg_quality: 85,
        }
    }
}

impl ThumbnailOptions {
    /// Returns a copy with zero sizes raised to 1 and the quality clamped to 1..=100.
    fn normalized(&self) -> Self {
        Self {
            max_width: self.max_width.max(1),
            max_height: self.max_height.max(1),
            max_pixels: self.max_pixels,
            jpeg_quality: self.jpeg_quality.clamp(1, 100),
        }
    }
}

/// A rendered thumbnail.
#[derive(Clone, PartialEq, Eq)]
pub struct Thumbnail {
    /// The encoded thumbnail.
    pub bytes: Vec<u8>,
    /// MIME type of `bytes`: `image/jpeg`, or `image/png` for sources with an alpha channel.
    pub content_type: &'static str,
    /// Thumbnail width in pixels.
    pub width: u32,
    /// Thumbnail height in pixels.
    pub height: u32,
    /// Format detected from the source bytes: `JPEG`, `PNG`, `GIF`, `WebP`, `BMP` or `TIFF`.
    pub source_format: &'static str,
    /// Source width in pixels as displayed, that is after the EXIF orientation is applied.
    pub source_width: u32,
    /// Source height in pixels as displayed, that is after the EXIF orientation is applied.
    pub source_height: u32,
}

impl fmt::Debug for Thumbnail {
    /// Shows the length of `bytes` instead of the bytes.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Thumbnail")
            .field("bytes", &format_args!("[{} bytes]", self.bytes.len()))
            .field("content_type", &self.content_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("source_format", &self.source_format)
            .field("source_width", &self.source_width)
            .field("source_height", &self.source_height)
            .finish()
    }
}

/// Renders a thumbnail of the image in `bytes`.
///
/// The thumbnail is the largest size with the source's aspect ratio that fits in
/// `max_width`x`max_height`, and never larger than the source. It is upright: the EXIF
/// orientation (all eight values) is applied, and an unreadable EXIF block counts as
/// orientation 1.
///
/// # Errors
///
/// [`ThumbnailError::Empty`], [`ThumbnailError::NotAnImage`] and
/// [`ThumbnailError::Unsupported`] (HEIF, AVIF, JPEG XL, ICO, ...) for objects to skip;
/// [`ThumbnailError::TooLarge`] when the header gives more than `max_pixels` pixels, and
/// [`ThumbnailError::Corrupt`] when decoding fails. A panic inside a decoder is caught and
/// returned as `Corrupt`, unless the process is built with `panic = "abort"`.
pub fn render(bytes: &[u8], options: &ThumbnailOptions) -> Result<Thumbnail, ThumbnailError> {
    let format = format::detect(bytes)?;
    let options = options.normalized();
    // AssertUnwindSafe: after a panic nothing that the closure touched is used again.
    match panic::catch_unwind(AssertUnwindSafe(|| {
        render_detected(bytes, format, &options)
    })) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|message| (*message).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(ThumbnailError::Corrupt {
                reason: format!("the {} decoder panicked: {message}", format.name()),
            })
        }
    }
}

fn render_detected(
    bytes: &[u8],
    format: SourceFormat,
    options: &ThumbnailOptions,
) -> Result<Thumbnail, ThumbnailError> {
    let decoded = decode::decode(bytes, format, options)?;
    let (width, height) =
        stored_thumbnail_size(decoded.width, decoded.height, decoded.orientation, options);

    let pixels = resize::to_8bit(decoded.image);
    // Resizing before rotating gives the same pixels and moves fewer of them.
    let mut thumbnail = resize::resize(pixels, width, height)?;
    thumbnail.apply_orientation(decoded.orientation);
    let (encoded, content_type) = encode::encode(&thumbnail, options.jpeg_quality)?;

    let (source_width, source_height) =
        upright_size(decoded.width, decoded.height, decoded.orientation);
    Ok(Thumbnail {
        bytes: encoded,
        content_type,
        width: thumbnail.width(),
        height: thumbnail.height(),
        source_format: format.name(),
        source_width,
        source_height,
    })
}

/// Returns whether the orientation turns the image by 90 or 270 degrees.
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Returns the size of a `width`x`height` image (as stored) once `orientation` is applied.
fn upright_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Returns the thumbnail size before the orientation is applied, that is in the stored
/// orientation of the source, so that the upright thumbnail fits the box.
fn stored_thumbnail_size(
    width: u32,
    height: u32,
    orientation: Orientation,
    options: &ThumbnailOptions,
) -> (u32, u32) {
    let (upright_width, upright_height) = upright_size(width, height, orientation);
    let (thumbnail_width, thumbnail_height) = geometry::fit_within(
        upright_width,
        upright_height,
        options.max_width,
        options.max_height,
    );
    upright_size(thumbnail_width, thumbnail_height, orientation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_size_swaps_for_quarter_turns() {
        let options = ThumbnailOptions {
            max_width: 200,
            max_height: 100,
            ..ThumbnailOptions::default()
        };
        // Stored 1200x1800, upright 1800x1200, upright thumbnail 150x100.
        let rotated = stored_thumbnail_size(1200, 1800, Orientation::Rotate90, &options);
        let flipped = stored_thumbnail_size(1200, 1800, Orientation::FlipHorizontal, &options);

        assert_eq!(rotated, (100, 150));
        assert_eq!(flipped, (67, 100));
    }

    #[test]
    fn options_normalize_zero_sizes_and_quality() {
        let options = ThumbnailOptions {
            max_width: 0,
            max_height: 0,
            max_pixels: 5,
            jpeg_quality: 0,
        }
        .normalized();

        assert_eq!(options.max_width, 1);
        assert_eq!(options.max_height, 1);
        assert_eq!(options.max_pixels, 5);
        assert_eq!(options.jpeg_quality, 1);
    }
}
