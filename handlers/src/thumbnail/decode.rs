//! Decoding with the pixel limit checked on the header before any pixel buffer is allocated.
//!
//! JPEGs go through jpeg-decoder, which can run the IDCT at 1/2, 1/4 or 1/8 size. Every other
//! format goes through the image crate.

use std::io::{self, Cursor};

use image::metadata::Orientation;
use image::{
    DynamicImage, GrayImage, ImageBuffer, ImageDecoder as _, ImageError, ImageReader, Limits, Luma,
    RgbImage,
};

use super::format::SourceFormat;
use super::geometry::{jpeg_scale_denominator, scaled_side};
use super::progressive;
use super::{stored_thumbnail_size, ThumbnailError, ThumbnailOptions};

/// Bytes per pixel of the widest pixel type a decoder can return (RGBA with f32 channels).
const MAX_BYTES_PER_PIXEL: u64 = 16;

/// Lower bound of the image crate's allocation limit, so that a small `max_pixels` still
/// leaves room for the decoders' fixed-size buffers (zlib windows, palettes, row buffers).
const MIN_ALLOC_BYTES: u64 = 64 * 1024 * 1024;

/// A decoded source image.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The pixels in the orientation stored in the file. A JPEG may be decoded at a reduced
    /// size, and every other format is at full size.
    pub(crate) image: DynamicImage,
    /// The EXIF orientation, `NoTransforms` when the tag is missing, invalid or unreadable.
    pub(crate) orientation: Orientation,
    /// Width from the header, before the orientation is applied.
    pub(crate) width: u32,
    /// Height from the header, before the orientation is applied.
    pub(crate) height: u32,
}

/// Decodes `bytes`, which `format::detect` identified as `format`.
pub(crate) fn decode(
    bytes: &[u8],
    format: SourceFormat,
    options: &ThumbnailOptions,
) -> Result<Decoded, ThumbnailError> {
    match format {
        SourceFormat::Jpeg => decode_jpeg(bytes, options),
        _ => decode_with_image_crate(bytes, format, options),
    }
}

/// Returns `TooLarge` when the header dimensions exceed `options.max_pixels`.
fn check_pixels(width: u32, height: u32, options: &ThumbnailOptions) -> Result<(), ThumbnailError> {
    if u64::from(width) * u64::from(height) > options.max_pixels {
        return Err(ThumbnailError::TooLarge {
            width,
            height,
            limit: options.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(ThumbnailError::Corrupt {
            reason: format!("the header gives a size of {width}x{height} pixels"),
        });
    }
    Ok(())
}

/// Returns the maximum number of bytes a decoder may allocate for an image within
/// `options.max_pixels`.
fn max_alloc_bytes(options: &ThumbnailOptions) -> u64 {
    options
        .max_pixels
        .saturating_mul(MAX_BYTES_PER_PIXEL)
        .max(MIN_ALLOC_BYTES)
}

fn decode_jpeg(bytes: &[u8], options: &ThumbnailOptions) -> Result<Decoded, ThumbnailError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| ThumbnailError::Corrupt {
        reason: "the JPEG has no frame header".to_owned(),
    })?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_pixels(width, height, options)?;

    // EXIF puts its APP1 segment before the frame header, so read_info has parsed it. A tag
    // that is missing, invalid, unreadable or placed after the frame header counts as 1.
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);

    let (target_width, target_height) = stored_thumbnail_size(width, height, orientation, options);
    let denominator = jpeg_scale_denominator(width, height, target_width, target_height);
    let scale = JpegScale {
        denominator,
        target_width,
        target_height,
    };

    let filtered = if info.coding_process == jpeg_decoder::CodingProcess::DctProgressive {
        progressive::without_unread_scans(bytes, progressive::last_coefficient_read(denominator))
    } else {
        None
    };
    // If the shortened stream fails, decode the original, whose error is the one to report.
    let image = match filtered.map(|filtered| decode_jpeg_pixels(&filtered, &scale, options)) {
        Some(Ok(image)) => image,
        _ => decode_jpeg_pixels(bytes, &scale, options)?,
    };
    Ok(Decoded {
        image,
        orientation,
        width,
        height,
    })
}

/// The reduced size at which to decode a JPEG.
#[derive(Debug)]
struct JpegScale {
    /// 1, 2, 4 or 8, from `jpeg_scale_denominator`.
    denominator: u32,
    /// Thumbnail width in the stored orientation, the minimum decoded width.
    target_width: u32,
    /// Thumbnail height in the stored orientation, the minimum decoded height.
    target_height: u32,
}

/// Decodes a JPEG at the reduced size given by `scale`, or at full size when jpeg-decoder's
/// choice of scale would leave a side below the thumbnail.
fn decode_jpeg_pixels(
    bytes: &[u8],
    scale: &JpegScale,
    options: &ThumbnailOptions,
) -> Result<DynamicImage, ThumbnailError> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| ThumbnailError::Corrupt {
        reason: "the JPEG has no frame header".to_owned(),
    })?;
    if scale.denominator > 1 {
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        let (scaled_width, scaled_height) = decoder
            .scale(
                to_u16(scaled_side(width, scale.denominator)),
                to_u16(scaled_side(height, scale.denominator)),
            )
            .map_err(jpeg_error)?;
        // jpeg-decoder picks the first scale at which either side reaches the request. Go
        // back to full size if that left one side below the thumbnail, which would enlarge.
        if u32::from(scaled_width) < scale.target_width
            || u32::from(scaled_height) < scale.target_height
        {
            decoder.scale(info.width, info.height).map_err(jpeg_error)?;
        }
    }
    decoder.set_max_decoding_buffer_size(
        usize::try_from(max_alloc_bytes(options)).unwrap_or(usize::MAX),
    );

    let pixels = decoder.decode().map_err(jpeg_error)?;
    let decoded_info = decoder.info().ok_or_else(|| ThumbnailError::Corrupt {
        reason: "the JPEG has no frame header".to_owned(),
    })?;
    jpeg_pixels_to_image(
        pixels,
        u32::from(decoded_info.width),
        u32::from(decoded_info.height),
        decoded_info.pixel_format,
    )
}

/// Wraps jpeg-decoder's output buffer in an image of the matching pixel type.
fn jpeg_pixels_to_image(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    pixel_format: jpeg_decoder::PixelFormat,
) -> Result<DynamicImage, ThumbnailError> {
    let image = match pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        jpeg_decoder::PixelFormat::RGB24 => {
            RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L16 => {
            // jpeg-decoder returns 16-bit samples in native byte order.
            let samples = pixels
                .chunks_exact(2)
                .map(|pair| u16::from_ne_bytes([pair[0], pair[1]]))
                .collect();
            ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(width, height, samples)
                .map(DynamicImage::ImageLuma16)
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            RgbImage::from_raw(width, height, cmyk_to_rgb(&pixels)).map(DynamicImage::ImageRgb8)
        }
    };
    image.ok_or_else(|| ThumbnailError::Corrupt {
        reason: format!("the JPEG decoder returned too few bytes for {width}x{height} pixels"),
    })
}

/// Converts CMYK (0 is no ink, as jpeg-decoder returns it after undoing Adobe's inversion) to
/// RGB with the naive formula R = (255 - C) * (255 - K) / 255.
///
/// NOTE: an embedded ICC profile is ignored, so colours of print-oriented CMYK files are
/// approximate.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for pixel in cmyk.chunks_exact(4) {
        let white = 255 - u16::from(pixel[3]);
        for &ink in &pixel[..3] {
            let value = (255 - u16::from(ink)) * white / 255;
            rgb.push(u8::try_from(value).unwrap_or(u8::MAX));
        }
    }
    rgb
}

fn to_u16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

fn jpeg_error(error: jpeg_decoder::Error) -> ThumbnailError {
    match error {
        jpeg_decoder::Error::Unsupported(feature) => ThumbnailError::Unsupported {
            format: format!("JPEG with {feature:?}"),
        },
        jpeg_decoder::Error::Io(error) => io_error(&error),
        jpeg_decoder::Error::Format(reason) => ThumbnailError::Corrupt {
            reason: format!("invalid JPEG: {reason}"),
        },
        other => ThumbnailError::Corrupt {
            reason: format!("JPEG decoding failed: {other}"),
        },
    }
}

fn io_error(error: &io::Error) -> ThumbnailError {
    let reason = if error.kind() == io::ErrorKind::UnexpectedEof {
        "the data ends before the image is complete, so the file is probably truncated".to_owned()
    } else {
        format!("reading the image failed: {error}")
    };
    ThumbnailError::Corrupt { reason }
}

fn decode_with_image_crate(
    bytes: &[u8],
    format: SourceFormat,
    options: &ThumbnailOptions,
) -> Result<Decoded, ThumbnailError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    // The header is read without limits so that an oversized image is reported as TooLarge
    // with its dimensions, by check_pixels below, rather than as a generic limit error.
    reader.no_limits();
    let mut decoder = reader
        .into_decoder()
        .map_err(|error| image_error(error, format, options))?;
    let (width, height) = decoder.dimensions();
    check_pixels(width, height, options)?;

    // Second line of defence: the image crate's allocation limit, in case a decoder needs
    // more memory than the header implies (GIF frames larger than the canvas, for example).
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc_bytes(options));
    decoder
        .set_limits(limits)
        .map_err(|error| image_error(error, format, options))?;

    // A broken metadata block must not fail the render, so errors count as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image =
        DynamicImage::from_decoder(decoder).map_err(|error| image_error(error, format, options))?;
    Ok(Decoded {
        image,
        orientation,
        width,
        height,
    })
}

fn image_error(
    error: ImageError,
    format: SourceFormat,
    options: &ThumbnailOptions,
) -> ThumbnailError {
    match error {
        ImageError::Unsupported(error) => ThumbnailError::Unsupported {
            format: format!("this {} image ({error})", format.name()),
        },
        ImageError::IoError(error) => io_error(&error),
        ImageError::Limits(error) => ThumbnailError::Corrupt {
            reason: format!(
                "the {} decoder needed more than the {} bytes that max_pixels allows ({error})",
                format.name(),
                max_alloc_bytes(options)
            ),
        },
        other => ThumbnailError::Corrupt {
            reason: format!("invalid {}: {other}", format.name()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_to_rgb_extremes() {
        let rgb = cmyk_to_rgb(&[0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0]);

        assert_eq!(rgb, vec![255, 255, 255, 0, 0, 0, 0, 255, 255]);
    }

    #[test]
    fn pixel_limit_checks_product() {
        let options = ThumbnailOptions {
            max_pixels: 100,
            ..ThumbnailOptions::default()
        };

        assert!(check_pixels(10, 10, &options).is_ok());
        assert_eq!(
            check_pixels(101, 1, &options),
            Err(ThumbnailError::TooLarge {
                width: 101,
                height: 1,
                limit: 100
            })
        );
        assert!(matches!(
            check_pixels(0, 5, &options),
            Err(ThumbnailError::Corrupt { .. })
        ));
    }
}
