//! Thumbnail size and JPEG decode-scale arithmetic.

/// Returns the largest size with the aspect ratio of `width`x`height` that fits in
/// `max_width`x`max_height`, or the source size if it already fits (never enlarges).
///
/// The side that limits the fit equals the box side exactly. The other side is rounded to
/// the nearest pixel and is at least 1. All arguments must be at least 1.
pub(crate) fn fit_within(width: u32, height: u32, max_width: u32, max_height: u32) -> (u32, u32) {
    if width <= max_width && height <= max_height {
        return (width, height);
    }
    let (width, height) = (u64::from(width), u64::from(height));
    let (max_width, max_height) = (u64::from(max_width), u64::from(max_height));
    // Compare width/height with max_width/max_height without division.
    if width * max_height >= height * max_width {
        let scaled_height = rounded_ratio(height * max_width, width).clamp(1, max_height);
        (narrow(max_width), narrow(scaled_height))
    } else {
        let scaled_width = rounded_ratio(width * max_height, height).clamp(1, max_width);
        (narrow(scaled_width), narrow(max_height))
    }
}

/// Returns the DCT scale denominator (1, 2, 4 or 8) for decoding a `width`x`height` JPEG whose
/// thumbnail is `target_width`x`target_height`: the largest one whose decoded size is still
/// at least twice the thumbnail size on both sides.
///
/// DCT scaling averages blocks of pixels like a box filter, which aliases fine detail, so the
/// factor of two is left for the Lanczos3 resize that follows.
pub(crate) fn jpeg_scale_denominator(
    width: u32,
    height: u32,
    target_width: u32,
    target_height: u32,
) -> u32 {
    const RESIZE_MARGIN: u32 = 2;
    [8, 4, 2]
        .into_iter()
        .find(|&denominator| {
            scaled_side(width, denominator) >= target_width.saturating_mul(RESIZE_MARGIN)
                && scaled_side(height, denominator) >= target_height.saturating_mul(RESIZE_MARGIN)
        })
        .unwrap_or(1)
}

/// Returns the size of one side of a JPEG decoded at 1/`denominator` scale, rounded up as
/// jpeg-decoder's `Decoder::scale` does.
pub(crate) fn scaled_side(side: u32, denominator: u32) -> u32 {
    side.div_ceil(denominator)
}

fn rounded_ratio(numerator: u64, denominator: u64) -> u64 {
    (2 * numerator + denominator) / (2 * denominator)
}

/// Converts back to u32. The values are bounded by u32 arguments, so this never saturates.
fn narrow(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_never_enlarges() {
        assert_eq!(fit_within(100, 50, 256, 256), (100, 50));
        assert_eq!(fit_within(256, 256, 256, 256), (256, 256));
        assert_eq!(fit_within(1, 1, 256, 256), (1, 1));
    }

    #[test]
    fn fit_keeps_aspect_ratio() {
        assert_eq!(fit_within(1800, 1200, 256, 256), (256, 171));
        assert_eq!(fit_within(1200, 1800, 256, 256), (171, 256));
        assert_eq!(fit_within(4608, 1976, 256, 256), (256, 110));
        assert_eq!(fit_within(512, 512, 256, 128), (128, 128));
        assert_eq!(fit_within(1000, 100, 300, 200), (300, 30));
    }

    #[test]
    fn fit_keeps_extreme_sides_at_one_pixel() {
        assert_eq!(fit_within(100_000, 1, 256, 256), (256, 1));
        assert_eq!(fit_within(1, 100_000, 256, 256), (1, 256));
        assert_eq!(fit_within(u32::MAX, u32::MAX, 256, 256), (256, 256));
    }

    #[test]
    fn scale_leaves_twice_target_size() {
        // 1800/4 = 450 < 2 * 256, 1800/2 = 900.
        assert_eq!(jpeg_scale_denominator(1800, 1200, 256, 171), 2);
        // 5640/8 = 705 >= 512 and 3172/8 = 397 >= 288.
        assert_eq!(jpeg_scale_denominator(5640, 3172, 256, 144), 8);
        assert_eq!(jpeg_scale_denominator(4608, 1976, 256, 110), 8);
        assert_eq!(jpeg_scale_denominator(2048, 1536, 256, 192), 4);
        assert_eq!(jpeg_scale_denominator(640, 480, 256, 192), 1);
        assert_eq!(jpeg_scale_denominator(100, 50, 100, 50), 1);
        // Both sides must reach the margin: 1/8 and 1/4 give a height of 13 and 25.
        assert_eq!(jpeg_scale_denominator(4000, 100, 256, 25), 2);
        assert_eq!(jpeg_scale_denominator(u32::MAX, u32::MAX, u32::MAX, 1), 1);
    }
}
