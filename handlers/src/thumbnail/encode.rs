//! Encoding of the thumbnail: JPEG for opaque images, PNG when there is an alpha channel.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ImageEncoder as _};

use super::ThumbnailError;

/// Encodes an 8-bit image and returns the bytes with their MIME type.
///
/// An image with an alpha channel is written as PNG, which keeps the transparency. An opaque
/// one is written as baseline JPEG at `jpeg_quality` (1 to 100). No metadata is written, so the
/// thumbnail carries no EXIF orientation that a viewer could apply a second time.
pub(crate) fn encode(
    image: &DynamicImage,
    jpeg_quality: u8,
) -> Result<(Vec<u8>, &'static str), ThumbnailError> {
    let mut bytes = Vec::new();
    let (width, height, color) = (image.width(), image.height(), image.color().into());
    // write_image keeps gray images gray, where JpegEncoder::encode_image on a DynamicImage
    // would write three components.
    let (result, content_type) = if image.color().has_alpha() {
        let encoder = PngEncoder::new_with_quality(
            &mut bytes,
            CompressionType::Default,
            FilterType::Adaptive,
        );
        let result = encoder.write_image(image.as_bytes(), width, height, color);
        (result, "image/png")
    } else {
        let encoder = JpegEncoder::new_with_quality(&mut bytes, jpeg_quality);
        let result = encoder.write_image(image.as_bytes(), width, height, color);
        (result, "image/jpeg")
    };
    // The encoders fail only on pixel types they cannot write, which to_8bit rules out, and
    // on JPEGs wider or taller than 65535 pixels.
    result.map_err(|error| ThumbnailError::Corrupt {
        reason: format!(
            "encoding the {}x{} thumbnail as {content_type} failed: {error}",
            image.width(),
            image.height()
        ),
    })?;
    Ok((bytes, content_type))
}
