//! Conversion to 8-bit pixels and Lanczos3 resizing with fast_image_resize.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use super::ThumbnailError;

/// Converts any pixel type to its 8-bit counterpart: gray stays gray, and the alpha channel is
/// kept when there is one. 16-bit and floating-point channels are converted to 0..=255.
pub(crate) fn to_8bit(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image,
        other => {
            let color = other.color();
            match (color.has_color(), color.has_alpha()) {
                (false, false) => DynamicImage::ImageLuma8(other.to_luma8()),
                (false, true) => DynamicImage::ImageLumaA8(other.to_luma_alpha8()),
                (true, false) => DynamicImage::ImageRgb8(other.to_rgb8()),
                (true, true) => DynamicImage::ImageRgba8(other.to_rgba8()),
            }
        }
    }
}

/// Resizes an 8-bit image to `width`x`height` with a Lanczos3 convolution.
///
/// Images with an alpha channel are premultiplied during the resize, so transparent pixels do
/// not bleed their colour into the edges.
pub(crate) fn resize(
    image: DynamicImage,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ThumbnailError> {
    if image.width() == width && image.height() == height {
        return Ok(image);
    }
    let mut resized = DynamicImage::new(width, height, image.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&image, &mut resized, &options)
        .map_err(|error| ThumbnailError::Corrupt {
            reason: format!(
                "resizing {}x{} {:?} pixels failed: {error}",
                image.width(),
                image.height(),
                image.color()
            ),
        })?;
    Ok(resized)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ColorType, ImageBuffer, Rgba};

    #[test]
    fn to_8bit_keeps_alpha_and_gray() {
        let rgba16 = DynamicImage::new(2, 2, ColorType::Rgba16);
        let la16 = DynamicImage::new(2, 2, ColorType::La16);
        let rgb32f = DynamicImage::new(2, 2, ColorType::Rgb32F);

        assert_eq!(to_8bit(rgba16).color(), ColorType::Rgba8);
        assert_eq!(to_8bit(la16).color(), ColorType::La8);
        assert_eq!(to_8bit(rgb32f).color(), ColorType::Rgb8);
    }

    #[test]
    fn resize_does_not_bleed_transparent_colour() {
        // Left half opaque white, right half fully transparent red.
        let source = ImageBuffer::from_fn(64, 64, |x, _| {
            if x < 32 {
                Rgba([255_u8, 255, 255, 255])
            } else {
                Rgba([255, 0, 0, 0])
            }
        });
        let resized = resize(DynamicImage::ImageRgba8(source), 8, 8).expect("resizes");
        let edge = resized.to_rgba8().get_pixel(3, 4).0;

        assert_eq!((resized.width(), resized.height()), (8, 8));
        assert!(
            edge[1] >= 250,
            "green of the opaque edge pixel is {}",
            edge[1]
        );
    }
}
