//! Dominant colours: median cut for the first centroids, then k-means (Lloyd's algorithm) to
//! refine them.
//!
//! Both steps are deterministic, so the same image always gets the same colours in the same
//! order. The input is the small upright copy of the image that the renderer makes, at most
//! 256x256 pixels, so a pass over every pixel is cheap.

use image::RgbaImage;
use serde::Serialize;

/// Maximum rounds of k-means after median cut. The centroids of median cut are already close,
/// so a few rounds settle them, and the loop stops early when no pixel changes cluster.
const KMEANS_ROUNDS: usize = 8;

/// Pixels with a lower alpha are left out, because they are mostly background that does not
/// show.
const MIN_ALPHA: u8 = 128;

/// An RGB colour with 0 to 255 per channel, with the field names of `google.type.Color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Color {
    /// Red channel.
    pub red: u8,
    /// Green channel.
    pub green: u8,
    /// Blue channel.
    pub blue: u8,
}

/// One dominant colour, shaped like Cloud Vision's `ColorInfo`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColorInfo {
    /// The mean colour of the cluster.
    pub color: Color,
    /// The cluster's share of the pixels, weighted so that a pixel at the centre of the image
    /// counts twice as much as one in a corner. The scores of one image add up to 1.
    pub score: f32,
    /// The cluster's plain share of the pixels, from 0 to 1.
    pub pixel_fraction: f32,
}

/// One pixel of the sample with the weight of its position.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rgb: [f32; 3],
    weight: f32,
}

/// Finds up to `max_colors` dominant colours of `image`, ordered by descending score.
///
/// Returns fewer colours when the image has fewer distinct ones, and none when every pixel
/// is transparent or `max_colors` is 0.
pub(crate) fn dominant_colors(image: &RgbaImage, max_colors: usize) -> Vec<ColorInfo> {
    let samples = samples(image);
    if samples.is_empty() || max_colors == 0 {
        return Vec::new();
    }
    let mut centroids: Vec<[f32; 3]> = median_cut(&samples, max_colors);
    let mut assignment = vec![usize::MAX; samples.len()];
    for _ in 0..KMEANS_ROUNDS {
        let changed = assign(&samples, &centroids, &mut assignment);
        centroids = means(&samples, &assignment, &centroids);
        if !changed {
            break;
        }
    }
    assign(&samples, &centroids, &mut assignment);
    summarize(&samples, &assignment, &centroids)
}

/// Collects the opaque pixels with their centre weight: 1 at the centre, falling with the
/// squared distance to 0.5 in the corners.
fn samples(image: &RgbaImage) -> Vec<Sample> {
    let (width, height) = image.dimensions();
    let half_width = (width as f32 / 2.0).max(0.5);
    let half_height = (height as f32 / 2.0).max(0.5);
    image
        .enumerate_pixels()
        .filter(|(_, _, pixel)| pixel[3] >= MIN_ALPHA)
        .map(|(x, y, pixel)| {
            let dx = (x as f32 + 0.5 - half_width) / half_width;
            let dy = (y as f32 + 0.5 - half_height) / half_height;
            // dx² + dy² is 2 in a corner, so the weight is 0.5 there.
            let weight = 1.0 - 0.25 * (dx * dx + dy * dy);
            Sample {
                rgb: [pixel[0].into(), pixel[1].into(), pixel[2].into()],
                weight,
            }
        })
        .collect()
}

/// Splits the colour space into up to `count` boxes, each time cutting the box whose pixel
/// count times longest side is largest at the median of that side, and returns the mean
/// colour of each box.
fn median_cut(samples: &[Sample], count: usize) -> Vec<[f32; 3]> {
    let mut boxes: Vec<Vec<[f32; 3]>> = vec![samples.iter().map(|sample| sample.rgb).collect()];
    while boxes.len() < count {
        let widest = boxes
            .iter()
            .enumerate()
            .map(|(index, colors)| {
                let (channel, range) = longest_side(colors);
                (index, channel, range * colors.len() as f32)
            })
            .filter(|&(_, _, priority)| priority > 0.0)
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((index, channel, _)) = widest else {
            break;
        };
        let mut colors = boxes.swap_remove(index);
        colors.sort_by(|a, b| a[channel].total_cmp(&b[channel]));
        let upper = split_at_median(&mut colors, channel);
        boxes.push(colors);
        boxes.push(upper);
    }
    boxes.iter().map(|colors| mean(colors)).collect()
}

/// Returns the channel with the largest range in `colors` and that range.
fn longest_side(colors: &[[f32; 3]]) -> (usize, f32) {
    (0..3)
        .map(|channel| {
            let (low, high) = colors.iter().fold((f32::MAX, f32::MIN), |(low, high), c| {
                (low.min(c[channel]), high.max(c[channel]))
            });
            (channel, high - low)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// Splits colors sorted by `channel` in two non-empty halves and returns the upper one. Equal
/// values stay on one side where possible, so that a box of two colours splits between them.
fn split_at_median(colors: &mut Vec<[f32; 3]>, channel: usize) -> Vec<[f32; 3]> {
    let middle = colors.len() / 2;
    let value = colors[middle][channel];
    let first_equal = colors.partition_point(|c| c[channel] < value);
    let cut = if first_equal > 0 {
        first_equal
    } else {
        colors.partition_point(|c| c[channel] <= value)
    };
    colors.split_off(cut.clamp(1, colors.len() - 1))
}

fn mean(colors: &[[f32; 3]]) -> [f32; 3] {
    let mut sum = [0.0_f64; 3];
    for color in colors {
        add(&mut sum, color);
    }
    let count = colors.len().max(1) as f64;
    sum.map(|total| (total / count) as f32)
}

fn add(sum: &mut [f64; 3], color: &[f32; 3]) {
    for (total, &value) in sum.iter_mut().zip(color) {
        *total += f64::from(value);
    }
}

/// Assigns each sample to its nearest centroid and returns whether any assignment changed.
fn assign(samples: &[Sample], centroids: &[[f32; 3]], assignment: &mut [usize]) -> bool {
    let mut changed = false;
    for (sample, assigned) in samples.iter().zip(assignment.iter_mut()) {
        let nearest = nearest(sample.rgb, centroids);
        if *assigned != nearest {
            *assigned = nearest;
            changed = true;
        }
    }
    changed
}

fn nearest(rgb: [f32; 3], centroids: &[[f32; 3]]) -> usize {
    let distance = |centroid: &[f32; 3]| -> f32 {
        (0..3)
            .map(|channel| (rgb[channel] - centroid[channel]).powi(2))
            .sum()
    };
    centroids
        .iter()
        .enumerate()
        .min_by(|a, b| distance(a.1).total_cmp(&distance(b.1)))
        .map_or(0, |(index, _)| index)
}

/// Moves each centroid to the mean of its samples. A centroid without samples stays, and
/// `summarize` leaves it out.
fn means(samples: &[Sample], assignment: &[usize], centroids: &[[f32; 3]]) -> Vec<[f32; 3]> {
    let mut sums = vec![([0.0_f64; 3], 0_u64); centroids.len()];
    for (sample, &cluster) in samples.iter().zip(assignment) {
        let (sum, count) = &mut sums[cluster];
        add(sum, &sample.rgb);
        *count += 1;
    }
    sums.iter()
        .zip(centroids)
        .map(|((sum, count), centroid)| {
            if *count == 0 {
                *centroid
            } else {
                sum.map(|total| (total / *count as f64) as f32)
            }
        })
        .collect()
}

fn summarize(samples: &[Sample], assignment: &[usize], centroids: &[[f32; 3]]) -> Vec<ColorInfo> {
    let mut counts = vec![0_u64; centroids.len()];
    let mut weights = vec![0.0_f64; centroids.len()];
    for (sample, &cluster) in samples.iter().zip(assignment) {
        counts[cluster] += 1;
        weights[cluster] += f64::from(sample.weight);
    }
    let total_count = samples.len() as f64;
    let total_weight: f64 = weights.iter().sum();
    let mut colors: Vec<ColorInfo> = centroids
        .iter()
        .zip(counts.iter().zip(&weights))
        .filter(|(_, (&count, _))| count > 0)
        .map(|(centroid, (&count, &weight))| ColorInfo {
            color: to_color(*centroid),
            score: (weight / total_weight) as f32,
            pixel_fraction: (count as f64 / total_count) as f32,
        })
        .collect();
    colors.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.pixel_fraction.total_cmp(&a.pixel_fraction))
    });
    colors
}

fn to_color(rgb: [f32; 3]) -> Color {
    // The means of 0..=255 values stay in that range, so the casts only round.
    let channel = |value: f32| value.round().clamp(0.0, 255.0) as u8;
    Color {
        red: channel(rgb[0]),
        green: channel(rgb[1]),
        blue: channel(rgb[2]),
    }
}

#[cfg(test)]
mod tests {
    use image::Rgba;

    use super::*;

    fn color(red: u8, green: u8, blue: u8) -> Color {
        Color { red, green, blue }
    }

    #[test]
    fn two_halves_give_two_colors() {
        let image = RgbaImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgba([200, 10, 10, 255])
            } else {
                Rgba([10, 10, 200, 255])
            }
        });
        let colors = dominant_colors(&image, 10);

        assert_eq!(colors.len(), 2);
        let found: Vec<Color> = colors.iter().map(|info| info.color).collect();
        assert!(found.contains(&color(200, 10, 10)), "{found:?}");
        assert!(found.contains(&color(10, 10, 200)), "{found:?}");
        for info in &colors {
            assert!((info.pixel_fraction - 0.5).abs() < 1e-6, "{info:?}");
            assert!((info.score - 0.5).abs() < 1e-6, "{info:?}");
        }
    }

    #[test]
    fn centre_colour_outscores_larger_border() {
        // A 60x60 image: a red square of 30x30 in the middle (25% of the pixels) on grey.
        let image = RgbaImage::from_fn(60, 60, |x, y| {
            if (15..45).contains(&x) && (15..45).contains(&y) {
                Rgba([220, 0, 0, 255])
            } else {
                Rgba([128, 128, 128, 255])
            }
        });
        let colors = dominant_colors(&image, 2);

        assert_eq!(colors.len(), 2);
        let red = colors
            .iter()
            .find(|info| info.color == color(220, 0, 0))
            .expect("red cluster");
        assert!((red.pixel_fraction - 0.25).abs() < 1e-6, "{red:?}");
        assert!(red.score > red.pixel_fraction, "{red:?}");
    }

    #[test]
    fn scores_and_fractions_sum_to_one() {
        let image = RgbaImage::from_fn(64, 48, |x, y| {
            Rgba([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8, 255])
        });
        let colors = dominant_colors(&image, 10);

        assert_eq!(colors.len(), 10);
        let score: f32 = colors.iter().map(|info| info.score).sum();
        let fraction: f32 = colors.iter().map(|info| info.pixel_fraction).sum();
        assert!((score - 1.0).abs() < 1e-4, "{score}");
        assert!((fraction - 1.0).abs() < 1e-4, "{fraction}");
        assert!(colors.windows(2).all(|pair| pair[0].score >= pair[1].score));
    }

    #[test]
    fn single_colour_and_transparent_images() {
        let flat = RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 255]));
        let clear = RgbaImage::from_pixel(8, 8, Rgba([1, 2, 3, 0]));

        let colors = dominant_colors(&flat, 10);
        assert_eq!(colors.len(), 1);
        assert_eq!(colors[0].color, color(1, 2, 3));
        assert!(dominant_colors(&clear, 10).is_empty());
        assert!(dominant_colors(&flat, 0).is_empty());
    }

    #[test]
    fn same_image_gives_same_colours() {
        let image = RgbaImage::from_fn(50, 50, |x, y| {
            Rgba([(x * 5) as u8, (y * 5) as u8, ((x * y) % 256) as u8, 255])
        });

        assert_eq!(dominant_colors(&image, 6), dominant_colors(&image, 6));
    }
}
