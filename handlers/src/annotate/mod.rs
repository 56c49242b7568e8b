//! The annotate function: a local stand-in for Cloud Vision's image properties, and
//! [`AnnotateHandler`], which writes an annotation of each image finalized in a bucket.
//!
//! [`annotate`] takes image bytes and returns an [`ImageAnnotation`]: the size and format of
//! the image, a summary of its EXIF block, its dominant colours and a perceptual hash. The
//! colours have the shape of Cloud Vision's `imagePropertiesAnnotation` and the JSON uses
//! Vision's field names where the two overlap. The rest is sluice's own.
//!
//! The pixels come from the thumbnail renderer, which detects the format, rejects images over
//! the pixel limit before decoding them, decodes JPEGs at a reduced size and applies the EXIF
//! orientation. Colours and hash are computed on that upright copy of at most
//! [`ANALYSIS_SIDE_PIXELS`] a side. `annotate` does no I/O and is CPU-bound, so async code
//! should call it through [`run_blocking`](crate::contract::run_blocking).

mod colors;
mod exif_summary;
pub mod handler;

use image::RgbaImage;
use image_hasher::{BitOrder, HashAlg, HasherConfig};
use serde::Serialize;

pub use self::colors::{Color, ColorInfo};
pub use self::exif_summary::ExifSummary;
pub use self::handler::{AnnotateConfig, AnnotateHandler};
pub use crate::source::{SOURCE_BUCKET_KEY, SOURCE_GENERATION_KEY, SOURCE_OBJECT_KEY};
use crate::thumbnail::{render, ThumbnailError, ThumbnailOptions};

/// Largest side, in pixels, of the copy that colours and hash are computed on. The copy has at
/// most 16,384 pixels, which keeps each k-means round short, and the hash shrinks it to 16x16
/// anyway.
pub const ANALYSIS_SIDE_PIXELS: u32 = 128;

/// JPEG quality of the analysis copy. At 100 the encoder's rounding moves a channel by a few
/// levels at most, which leaves dominant colours and hash unchanged.
const ANALYSIS_JPEG_QUALITY: u8 = 100;

/// Name of the hash in [`PerceptualHash::algorithm`].
const HASH_ALGORITHM: &str = "pHash";

/// Settings of [`annotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotateOptions {
    /// Maximum width × height of the source, checked on the header before decoding, to reject
    /// decompression bombs.
    pub max_pixels: u64,
    /// Maximum number of dominant colours, as Vision's `maxResults`.
    pub max_colors: usize,
}

impl Default for AnnotateOptions {
    /// Returns a 100-megapixel limit and 10 colours, Vision's default number of results.
    fn default() -> Self {
        Self {
            max_pixels: 100_000_000,
            max_colors: 10,
        }
    }
}

/// The annotation of one image. [`handler::AnnotateHandler`] adds the source object to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageAnnotation {
    /// Size and format.
    pub image: ImageInfo,
    /// The EXIF summary, left out when the image has no EXIF block or none of its fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exif: Option<ExifSummary>,
    /// Dominant colours, with Vision's field names.
    pub image_properties_annotation: ImageProperties,
    /// A hash that changes little when the image changes little.
    pub perceptual_hash: PerceptualHash,
}

/// Size and format of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Format detected from the bytes: `JPEG`, `PNG`, `GIF`, `WebP`, `BMP` or `TIFF`.
    pub format: &'static str,
    /// MIME type of the format.
    pub mime_type: &'static str,
    /// Width in pixels as displayed, that is after the EXIF orientation is applied.
    pub width: u32,
    /// Height in pixels as displayed.
    pub height: u32,
}

/// Vision's `ImageProperties`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageProperties {
    /// The dominant colours.
    pub dominant_colors: DominantColors,
}

/// Vision's `DominantColorsAnnotation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DominantColors {
    /// Up to [`AnnotateOptions::max_colors`] colours, by descending score.
    pub colors: Vec<ColorInfo>,
}

/// A 64-bit perceptual hash, which differs in few bits between images that look alike.
///
/// It is the "pHash" of Neal Krawetz as the image_hasher crate computes it. The image is
/// shrunk to 16x16 pixels in grey and transformed with the discrete cosine transform. Each
/// coefficient of the lowest 8x8 frequencies then gives one bit, set when the coefficient is
/// above their mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PerceptualHash {
    /// Name of the method, `pHash`.
    pub algorithm: &'static str,
    /// The 64 bits as 16 hexadecimal digits, the first coefficient in the highest bit.
    pub value: String,
}

/// Reason why an image got no annotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnotateError {
    /// An object that is not an image, is empty, or is in a format the renderer does not
    /// decode. The caller acknowledges the event and logs the reason.
    #[error("{reason}")]
    Skipped {
        /// Description of the object.
        reason: String,
    },
    /// An image too large or too damaged to decode, which a retry cannot change. The caller
    /// dead-letters the event.
    #[error("{reason}")]
    Invalid {
        /// The renderer's description of the problem.
        reason: String,
    },
}

impl From<ThumbnailError> for AnnotateError {
    fn from(err: ThumbnailError) -> Self {
        match err {
            ThumbnailError::Unsupported { format } => Self::Skipped {
                reason: format!("{format} is not among the formats the annotator decodes"),
            },
            err if err.is_skip() => Self::Skipped {
                reason: err.to_string(),
            },
            err => Self::Invalid {
                reason: err.to_string(),
            },
        }
    }
}

/// Annotates the image in `bytes`.
///
/// # Errors
///
/// [`AnnotateError::Skipped`] for objects that are not images or are in formats the renderer
/// does not decode, [`AnnotateError::Invalid`] for images over `max_pixels` and damaged ones.
pub fn annotate(bytes: &[u8], options: &AnnotateOptions) -> Result<ImageAnnotation, AnnotateError> {
    let render_options = ThumbnailOptions {
        max_width: ANALYSIS_SIDE_PIXELS,
        max_height: ANALYSIS_SIDE_PIXELS,
        max_pixels: options.max_pixels,
        jpeg_quality: ANALYSIS_JPEG_QUALITY,
    };
    let copy = render(bytes, &render_options)?;
    let pixels = image::load_from_memory(&copy.bytes)
        .map_err(|err| AnnotateError::Invalid {
            reason: format!("the analysis copy could not be decoded: {err}"),
        })?
        .to_rgba8();

    Ok(ImageAnnotation {
        image: ImageInfo {
            format: copy.source_format,
            mime_type: mime_type(copy.source_format),
            width: copy.source_width,
            height: copy.source_height,
        },
        exif: ExifSummary::read(bytes),
        image_properties_annotation: ImageProperties {
            dominant_colors: DominantColors {
                colors: colors::dominant_colors(&pixels, options.max_colors),
            },
        },
        perceptual_hash: perceptual_hash(&pixels),
    })
}

fn perceptual_hash(pixels: &RgbaImage) -> PerceptualHash {
    let hasher = HasherConfig::new()
        .hash_size(8, 8)
        .hash_alg(HashAlg::Mean)
        .preproc_dct()
        .bit_order(BitOrder::MsbFirst)
        .to_hasher();
    let hash = hasher.hash_image(pixels);
    let value = hash
        .as_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    PerceptualHash {
        algorithm: HASH_ALGORITHM,
        value,
    }
}

/// Returns the MIME type of a format name of the renderer.
fn mime_type(format: &str) -> &'static str {
    match format {
        "JPEG" => "image/jpeg",
        "PNG" => "image/png",
        "GIF" => "image/gif",
        "WebP" => "image/webp",
        "BMP" => "image/bmp",
        "TIFF" => "image/tiff",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_format_is_skipped() {
        let error = AnnotateError::from(ThumbnailError::Unsupported {
            format: "HEIF".to_owned(),
        });

        assert_eq!(
            error,
            AnnotateError::Skipped {
                reason: "HEIF is not among the formats the annotator decodes".to_owned()
            }
        );
    }

    #[test]
    fn corrupt_image_is_invalid() {
        let error = AnnotateError::from(ThumbnailError::Corrupt {
            reason: "truncated".to_owned(),
        });

        assert!(matches!(error, AnnotateError::Invalid { .. }), "{error:?}");
    }

    #[test]
    fn flat_image_hash_is_sixteen_hex_digits() {
        let hash = perceptual_hash(&RgbaImage::from_pixel(32, 32, image::Rgba([9, 9, 9, 255])));

        assert_eq!(hash.algorithm, "pHash");
        assert_eq!(hash.value.len(), 16);
        assert!(hash.value.bytes().all(|byte| byte.is_ascii_hexdigit()));
    }
}
