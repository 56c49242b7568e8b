//! The thumbnail renderer on real camera JPEGs, EXIF orientations, broken files, generated
//! images and arbitrary bytes.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::{
    DynamicImage, ImageBuffer, ImageDecoder as _, ImageFormat, ImageReader, Luma, Rgb, Rgba,
};
use proptest::prelude::*;
use sluice_handlers::thumbnail::{render, Thumbnail, ThumbnailError, ThumbnailOptions};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/images");

fn fixture_path(relative_path: &str) -> PathBuf {
    Path::new(FIXTURES).join(relative_path)
}

fn read_fixture(relative_path: &str) -> Vec<u8> {
    let path = fixture_path(relative_path);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Returns the files of a fixture folder, sorted by name.
fn fixture_files(folder: &str) -> Vec<PathBuf> {
    let directory = fixture_path(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", directory.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "jpg"))
        .collect();
    files.sort();
    files
}

fn render_default(bytes: &[u8]) -> Result<Thumbnail, ThumbnailError> {
    render(bytes, &ThumbnailOptions::default())
}

/// Decodes a rendered thumbnail and checks that it matches its declared type and size.
fn decode_thumbnail(thumbnail: &Thumbnail) -> DynamicImage {
    let expected_format = match thumbnail.content_type {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        other => panic!("unexpected content type {other}"),
    };
    let format = image::guess_format(&thumbnail.bytes).expect("thumbnail has a known signature");
    assert_eq!(
        format, expected_format,
        "content_type does not match the bytes"
    );
    let image = image::load_from_memory(&thumbnail.bytes).expect("thumbnail decodes");
    assert_eq!(image.width(), thumbnail.width, "declared width");
    assert_eq!(image.height(), thumbnail.height, "declared height");
    image
}

/// Reads the upright size of an image with the image crate, independently of the renderer.
fn upright_size_with_image_crate(path: &Path) -> (u32, u32) {
    let mut decoder = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .expect("readable fixture")
        .into_decoder()
        .expect("decodable header");
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

/// Mean absolute difference per channel, from 0 to 255.
fn mean_absolute_difference(left: &DynamicImage, right: &DynamicImage) -> f64 {
    let (left, right) = (left.to_rgb8(), right.to_rgb8());
    let total: u64 = left
        .as_raw()
        .iter()
        .zip(right.as_raw())
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    total as f64 / left.as_raw().len() as f64
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).expect("encodes");
    bytes.into_inner()
}

/// Returns a colour gradient, enough structure for decoders and the resizer to work on.
fn gradient_rgb(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    }))
}

#[test]
fn camera_jpegs_fit_box_with_source_aspect() {
    let files = fixture_files("camera");
    assert!(
        files.len() >= 30,
        "only {} camera fixtures found",
        files.len()
    );

    for path in files {
        let name = path.display();
        let bytes = std::fs::read(&path).expect("readable fixture");
        let thumbnail = render_default(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let (upright_width, upright_height) = upright_size_with_image_crate(&path);
        let scale = (256.0 / f64::from(upright_width))
            .min(256.0 / f64::from(upright_height))
            .min(1.0);
        let expected_width = f64::from(upright_width) * scale;
        let expected_height = f64::from(upright_height) * scale;

        assert_eq!(thumbnail.source_format, "JPEG", "{name}");
        assert_eq!(thumbnail.content_type, "image/jpeg", "{name}");
        assert_eq!(
            (thumbnail.source_width, thumbnail.source_height),
            (upright_width, upright_height),
            "{name}: source size"
        );
        assert!(thumbnail.width <= 256, "{name}: width {}", thumbnail.width);
        assert!(
            thumbnail.height <= 256,
            "{name}: height {}",
            thumbnail.height
        );
        assert!(
            (f64::from(thumbnail.width) - expected_width).abs() <= 1.0,
            "{name}: width {} for expected {expected_width:.1}",
            thumbnail.width
        );
        assert!(
            (f64::from(thumbnail.height) - expected_height).abs() <= 1.0,
            "{name}: height {} for expected {expected_height:.1}",
            thumbnail.height
        );
        decode_thumbnail(&thumbnail);
    }
}

#[test]
fn orientation_fixtures_match_upright_thumbnail() {
    for series in ["Landscape", "Portrait"] {
        let reference = render_default(&read_fixture(&format!("orientation/{series}_1.jpg")))
            .expect("reference renders");
        let reference_image = decode_thumbnail(&reference);
        let expected_size = if series == "Landscape" {
            (256, 171)
        } else {
            (171, 256)
        };
        assert_eq!(
            (reference.width, reference.height),
            expected_size,
            "{series}_1"
        );

        for value in 0..=8 {
            let name = format!("{series}_{value}");
            let thumbnail = render_default(&read_fixture(&format!("orientation/{name}.jpg")))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            let image = decode_thumbnail(&thumbnail);
            assert_eq!(
                (thumbnail.width, thumbnail.height),
                expected_size,
                "{name}: thumbnail size"
            );
            let difference = mean_absolute_difference(&image, &reference_image);
            assert!(
                difference < 8.0,
                "{name}: mean absolute difference {difference:.2} from {series}_1"
            );
        }
    }
}

#[test]
fn orientation_check_detects_wrong_turn() {
    // Guards the tolerance above: a thumbnail turned upside down must be far off.
    let reference = decode_thumbnail(
        &render_default(&read_fixture("orientation/Landscape_1.jpg")).expect("renders"),
    );
    let turned = reference.rotate180();

    assert!(mean_absolute_difference(&turned, &reference) > 20.0);
}

#[test]
fn invalid_exif_blocks_still_render() {
    for name in [
        "image00971.jpg",
        "image01088.jpg",
        "image01137.jpg",
        "image01551.jpg",
        "image01713.jpg",
        "image01980.jpg",
        "image02206.jpg",
    ] {
        let thumbnail = render_default(&read_fixture(&format!("invalid/{name}")))
            .unwrap_or_else(|error| panic!("{name}: {error}"));

        assert_eq!(thumbnail.content_type, "image/jpeg", "{name}");
        decode_thumbnail(&thumbnail);
    }
}

#[test]
fn corrupted_jpeg_is_corrupt() {
    // corrupted.jpg has damaged restart markers in its entropy-coded data. libjpeg recovers a
    // mostly intact picture, jpeg-decoder rejects it, and so does vipsthumbnail.
    let result = render_default(&read_fixture("invalid/corrupted.jpg"));

    assert!(
        matches!(&result, Err(ThumbnailError::Corrupt { reason }) if reason.contains("RST")),
        "{result:?}"
    );
}

#[test]
fn heif_is_unsupported() {
    let result = render_default(&read_fixture("other/samplefilehub.heif"));

    assert_eq!(
        result,
        Err(ThumbnailError::Unsupported {
            format: "HEIF".to_owned()
        })
    );
    assert!(result.expect_err("unsupported").is_skip());
}

#[test]
fn tiff_renders() {
    let thumbnail = render_default(&read_fixture("other/Arbitro.tiff")).expect("TIFF renders");

    assert_eq!(thumbnail.source_format, "TIFF");
    assert_eq!((thumbnail.width, thumbnail.height), (174, 38));
    decode_thumbnail(&thumbnail);
}

#[test]
fn small_sources_are_not_enlarged() {
    let source = gradient_rgb(100, 50);
    for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp] {
        let thumbnail = render_default(&encode(&source, format)).expect("renders");

        assert_eq!((thumbnail.width, thumbnail.height), (100, 50), "{format:?}");
        assert_eq!(thumbnail.content_type, "image/jpeg", "{format:?}");
        decode_thumbnail(&thumbnail);
    }
}

#[test]
fn custom_box_is_respected() {
    let options = ThumbnailOptions {
        max_width: 40,
        max_height: 40,
        ..ThumbnailOptions::default()
    };
    let thumbnail = render(&read_fixture("orientation/Portrait_6.jpg"), &options).expect("renders");

    assert_eq!((thumbnail.width, thumbnail.height), (27, 40));
    assert_eq!(
        (thumbnail.source_width, thumbnail.source_height),
        (1200, 1800)
    );
}

#[test]
fn png_with_alpha_stays_png_with_alpha() {
    // Opaque red on the left, fully transparent on the right.
    let source = DynamicImage::ImageRgba8(ImageBuffer::from_fn(400, 200, |x, _| {
        if x < 200 {
            Rgba([255_u8, 0, 0, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    }));
    let thumbnail = render_default(&encode(&source, ImageFormat::Png)).expect("renders");
    let image = decode_thumbnail(&thumbnail).to_rgba8();

    assert_eq!(thumbnail.content_type, "image/png");
    assert_eq!((thumbnail.width, thumbnail.height), (256, 128));
    assert_eq!(image.get_pixel(10, 64).0, [255, 0, 0, 255]);
    assert_eq!(image.get_pixel(250, 64).0[3], 0);
}

#[test]
fn sixteen_bit_png_renders_as_eight_bit() {
    let rgb16 = DynamicImage::ImageRgb16(ImageBuffer::from_fn(300, 100, |x, y| {
        Rgb([(x * 200) as u16, (y * 600) as u16, 40_000])
    }));
    let rgba16 = DynamicImage::ImageRgba16(rgb16.to_rgba16());
    let gray16 = DynamicImage::ImageLuma16(ImageBuffer::from_fn(300, 100, |x, _| {
        Luma([(x * 200) as u16])
    }));

    let opaque = render_default(&encode(&rgb16, ImageFormat::Png)).expect("RGB16 renders");
    let alpha = render_default(&encode(&rgba16, ImageFormat::Png)).expect("RGBA16 renders");
    let gray = render_default(&encode(&gray16, ImageFormat::Png)).expect("L16 renders");

    assert_eq!(opaque.content_type, "image/jpeg");
    assert_eq!((opaque.width, opaque.height), (256, 85));
    assert_eq!(alpha.content_type, "image/png");
    assert_eq!(decode_thumbnail(&alpha).color(), image::ColorType::Rgba8);
    assert_eq!(gray.content_type, "image/jpeg");
    assert_eq!(decode_thumbnail(&gray).color(), image::ColorType::L8);
}

#[test]
fn gif_and_webp_render() {
    let source = gradient_rgb(64, 48);
    let gif = render_default(&encode(&source, ImageFormat::Gif)).expect("GIF renders");
    let webp = render_default(&encode(&source, ImageFormat::WebP)).expect("WebP renders");

    assert_eq!(gif.source_format, "GIF");
    // The GIF decoder always returns RGBA, because GIF frames may have a transparent colour.
    assert_eq!(gif.content_type, "image/png");
    assert_eq!(webp.source_format, "WebP");
    assert_eq!(webp.content_type, "image/jpeg");
    assert_eq!((webp.width, webp.height), (64, 48));
}

/// Encodes pixels with jpeg-encoder at quality 95.
fn encode_jpeg(
    pixels: &[u8],
    width: u16,
    height: u16,
    color_type: jpeg_encoder::ColorType,
    configure: impl FnOnce(&mut jpeg_encoder::Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 95);
    configure(&mut encoder);
    encoder
        .encode(pixels, width, height, color_type)
        .expect("encodes JPEG");
    bytes
}

/// Returns the mean colour of a thumbnail region, rounded.
fn mean_rgb(image: &DynamicImage, x: u32, y: u32, width: u32, height: u32) -> [u8; 3] {
    let rgb = image.to_rgb8();
    let mut sums = [0_u64; 3];
    for py in y..y + height {
        for px in x..x + width {
            for (sum, &value) in sums.iter_mut().zip(&rgb.get_pixel(px, py).0) {
                *sum += u64::from(value);
            }
        }
    }
    let count = u64::from(width * height);
    sums.map(|sum| u8::try_from((sum + count / 2) / count).expect("mean of u8 values"))
}

fn assert_close(actual: [u8; 3], expected: [u8; 3], label: &str) {
    let close = actual
        .iter()
        .zip(&expected)
        .all(|(&a, &e)| a.abs_diff(e) <= 12);
    assert!(close, "{label}: {actual:?} is not close to {expected:?}");
}

#[test]
fn cmyk_and_ycck_jpegs_convert_to_rgb() {
    // Four 256x256 quadrants: no ink, full cyan, full magenta plus yellow, full black.
    let inks: [[u8; 4]; 4] = [
        [0, 0, 0, 0],
        [255, 0, 0, 0],
        [0, 255, 255, 0],
        [0, 0, 0, 255],
    ];
    let mut cmyk = Vec::new();
    for y in 0..512_u32 {
        for x in 0..512_u32 {
            let quadrant = usize::from(y >= 256) * 2 + usize::from(x >= 256);
            cmyk.extend_from_slice(&inks[quadrant]);
        }
    }
    for color_type in [
        jpeg_encoder::ColorType::Cmyk,
        jpeg_encoder::ColorType::CmykAsYcck,
    ] {
        let bytes = encode_jpeg(&cmyk, 512, 512, color_type, |_| {});
        let thumbnail = render_default(&bytes).expect("CMYK JPEG renders");
        let image = decode_thumbnail(&thumbnail);
        let label = format!("{color_type:?}");

        assert_eq!((thumbnail.width, thumbnail.height), (256, 256), "{label}");
        assert_close(mean_rgb(&image, 16, 16, 96, 96), [255, 255, 255], &label);
        assert_close(mean_rgb(&image, 144, 16, 96, 96), [0, 255, 255], &label);
        assert_close(mean_rgb(&image, 16, 144, 96, 96), [255, 0, 0], &label);
        assert_close(mean_rgb(&image, 144, 144, 96, 96), [0, 0, 0], &label);
    }
}

#[test]
fn progressive_and_restart_jpegs_match_baseline() {
    let source = gradient_rgb(1024, 768);
    let pixels = source.to_rgb8().into_raw();
    let rgb = jpeg_encoder::ColorType::Rgb;
    let baseline = encode_jpeg(&pixels, 1024, 768, rgb, |_| {});
    let progressive = encode_jpeg(&pixels, 1024, 768, rgb, |encoder| {
        encoder.set_progressive(true);
    });
    let restarts = encode_jpeg(&pixels, 1024, 768, rgb, |encoder| {
        encoder.set_restart_interval(4);
    });

    let reference = decode_thumbnail(&render_default(&baseline).expect("baseline renders"));
    for (label, bytes) in [("progressive", progressive), ("restart markers", restarts)] {
        let thumbnail = render_default(&bytes).unwrap_or_else(|error| panic!("{label}: {error}"));
        let image = decode_thumbnail(&thumbnail);

        assert_eq!((thumbnail.width, thumbnail.height), (256, 192), "{label}");
        let difference = mean_absolute_difference(&image, &reference);
        assert!(
            difference < 2.0,
            "{label}: mean absolute difference {difference:.2}"
        );
    }
}

#[test]
fn scaled_jpeg_decode_matches_full_decode() {
    // A 2048x1536 JPEG is decoded at 1/8 size for a 256x192 thumbnail. Compare with a
    // thumbnail resized by the image crate from a full-size decode. The waves have periods of
    // 80 and 120 source pixels, 10 and 15 thumbnail pixels, so blur or shift would show.
    let source = DynamicImage::ImageRgb8(ImageBuffer::from_fn(2048, 1536, |x, y| {
        let wave = |position: u32, period: f64| {
            (128.0 + 100.0 * (f64::from(position) * std::f64::consts::TAU / period).sin()) as u8
        };
        Rgb([wave(x, 80.0), wave(y, 120.0), wave(x + y, 200.0)])
    }));
    let bytes = encode(&source, ImageFormat::Jpeg);
    let thumbnail = decode_thumbnail(&render_default(&bytes).expect("renders"));
    let full = image::load_from_memory(&bytes).expect("decodes");
    let reference = full.resize_exact(256, 192, image::imageops::FilterType::Lanczos3);

    let difference = mean_absolute_difference(&thumbnail, &reference);
    assert!(difference < 3.0, "mean absolute difference {difference:.2}");
}

#[test]
fn gray_jpeg_stays_gray() {
    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(640, 480, |x, y| {
        Luma([((x + y) / 5) as u8])
    }));
    let thumbnail = render_default(&encode(&gray, ImageFormat::Jpeg)).expect("renders");

    assert_eq!(thumbnail.content_type, "image/jpeg");
    assert_eq!((thumbnail.width, thumbnail.height), (256, 192));
    assert_eq!(decode_thumbnail(&thumbnail).color(), image::ColorType::L8);
}

/// CRC-32 as PNG chunks use it (ISO 3309, polynomial 0xEDB88320, reflected).
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFF_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Builds a PNG with a valid signature and an IHDR chunk claiming `width`x`height` RGB
/// pixels, followed by a tiny IDAT and an IEND chunk.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        bytes.extend_from_slice(&u32::try_from(data.len()).expect("short").to_be_bytes());
        bytes.extend_from_slice(&typed);
        bytes.extend_from_slice(&png_crc(&typed).to_be_bytes());
    };
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    bytes
}

#[test]
fn png_crc_matches_known_value() {
    // The CRC of the IEND chunk type, present in every PNG file.
    assert_eq!(png_crc(b"IEND"), 0xAE42_6082);
}

#[test]
fn png_bomb_is_rejected_from_header() {
    let started = Instant::now();
    let result = render_default(&png_header_only(100_000, 100_000));

    assert_eq!(
        result,
        Err(ThumbnailError::TooLarge {
            width: 100_000,
            height: 100_000,
            limit: 100_000_000
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn jpeg_bomb_is_rejected_from_header() {
    // SOI, then a baseline frame header (SOF0) for 65000x65000 pixels with 3 components.
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x11, 0x08];
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&65_000_u16.to_be_bytes());
    bytes.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    let started = Instant::now();
    let result = render_default(&bytes);

    assert_eq!(
        result,
        Err(ThumbnailError::TooLarge {
            width: 65_000,
            height: 65_000,
            limit: 100_000_000
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn max_pixels_applies_to_real_jpeg() {
    let options = ThumbnailOptions {
        max_pixels: 1800 * 1200 - 1,
        ..ThumbnailOptions::default()
    };
    let result = render(&read_fixture("orientation/Landscape_1.jpg"), &options);

    assert!(
        matches!(
            result,
            Err(ThumbnailError::TooLarge {
                width: 1800,
                height: 1200,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn empty_input_is_empty() {
    assert_eq!(render_default(&[]), Err(ThumbnailError::Empty));
}

#[test]
fn random_bytes_are_not_an_image() {
    // A fixed xorshift sequence, so the test is reproducible.
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    let text = b"name,size\nphoto.jpg,1234\n";

    assert_eq!(render_default(&bytes), Err(ThumbnailError::NotAnImage));
    assert_eq!(render_default(text), Err(ThumbnailError::NotAnImage));
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let bytes = read_fixture("orientation/Landscape_1.jpg");
    for length in [4, 600, bytes.len() / 2, bytes.len() - 100] {
        let result = render_default(&bytes[..length]);

        assert!(
            matches!(result, Err(ThumbnailError::Corrupt { .. })),
            "first {length} bytes: {result:?}"
        );
    }
}

#[test]
fn truncated_png_is_corrupt() {
    let bytes = encode(&gradient_rgb(64, 48), ImageFormat::Png);
    let result = render_default(&bytes[..bytes.len() / 2]);

    assert!(
        matches!(result, Err(ThumbnailError::Corrupt { .. })),
        "{result:?}"
    );
}

/// Signatures of the decoded formats, so that arbitrary tails reach the decoders.
const SIGNATURES: [&[u8]; 8] = [
    b"\xFF\xD8\xFF",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"RIFF\0\0\0\0WEBPVP8 ",
    b"BM",
    b"II*\0",
    b"MM\0*",
    b"",
];

/// Options with a small pixel limit, so that garbage headers cannot make a debug build
/// allocate and fill hundreds of megabytes.
fn fuzz_options() -> ThumbnailOptions {
    ThumbnailOptions {
        max_pixels: 1_000_000,
        ..ThumbnailOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        signature in prop::sample::select(SIGNATURES.to_vec()),
        tail in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = signature.to_vec();
        bytes.extend_from_slice(&tail);
        let result = render(&bytes, &fuzz_options());
        if let Ok(thumbnail) = result {
            prop_assert!(thumbnail.width <= 256 && thumbnail.height <= 256);
        }
    }

    #[test]
    fn mutated_camera_jpeg_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        keep in 0.5_f64..=1.0,
    ) {
        let mut bytes = read_fixture("camera/Canon_40D.jpg");
        for (index, value) in edits {
            let position = index.index(bytes.len());
            bytes[position] = value;
        }
        bytes.truncate((bytes.len() as f64 * keep) as usize);
        let result = render(&bytes, &fuzz_options());
        if let Ok(thumbnail) = result {
            prop_assert!(thumbnail.width <= 256 && thumbnail.height <= 256);
        }
    }

    #[test]
    fn mutated_png_never_panics(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = encode(&gradient_rgb(64, 48), ImageFormat::Png);
        for (index, value) in edits {
            let position = index.index(bytes.len());
            bytes[position] = value;
        }
        let result = render(&bytes, &fuzz_options());
        if let Ok(thumbnail) = result {
            prop_assert!(thumbnail.width <= 256 && thumbnail.height <= 256);
        }
    }
}
