//! Detection of the image format from the first bytes of the data.

use image::ImageFormat;

use super::ThumbnailError;

/// An image format that the renderer decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
    Tiff,
}

impl SourceFormat {
    /// Returns the format's common name, as reported in `Thumbnail::source_format`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
            Self::Bmp => "BMP",
            Self::Tiff => "TIFF",
        }
    }

    /// Returns the image crate's identifier of the format.
    pub(crate) fn image_format(self) -> ImageFormat {
        match self {
            Self::Jpeg => ImageFormat::Jpeg,
            Self::Png => ImageFormat::Png,
            Self::Gif => ImageFormat::Gif,
            Self::WebP => ImageFormat::WebP,
            Self::Bmp => ImageFormat::Bmp,
            Self::Tiff => ImageFormat::Tiff,
        }
    }
}

/// Detects the format from the signature at the start of `bytes`. A file name is never used.
///
/// Returns `Unsupported` for image formats that the renderer does not decode, including HEIF,
/// AVIF and JPEG XL, which `image::guess_format` does not recognise, and `NotAnImage` when no
/// signature matches.
pub(crate) fn detect(bytes: &[u8]) -> Result<SourceFormat, ThumbnailError> {
    if bytes.is_empty() {
        return Err(ThumbnailError::Empty);
    }
    if let Some(name) = unsupported_signature(bytes) {
        return Err(ThumbnailError::Unsupported {
            format: name.to_owned(),
        });
    }
    let format = image::guess_format(bytes).map_err(|_| ThumbnailError::NotAnImage)?;
    match format {
        ImageFormat::Jpeg => Ok(SourceFormat::Jpeg),
        ImageFormat::Png => Ok(SourceFormat::Png),
        ImageFormat::Gif => Ok(SourceFormat::Gif),
        ImageFormat::WebP => Ok(SourceFormat::WebP),
        ImageFormat::Bmp => Ok(SourceFormat::Bmp),
        ImageFormat::Tiff => Ok(SourceFormat::Tiff),
        other => Err(ThumbnailError::Unsupported {
            format: unsupported_format_name(other),
        }),
    }
}

/// Recognises image formats that `image::guess_format` does not know.
fn unsupported_signature(bytes: &[u8]) -> Option<&'static str> {
    // ISO base media files (HEIF, AVIF, MP4) start with a box of type `ftyp`, whose first 4
    // bytes after the type are the major brand.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return match &bytes[8..12] {
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                Some("HEIF")
            }
            b"avif" | b"avis" => Some("AVIF"),
            _ => None,
        };
    }
    // JPEG XL: a bare codestream starts with FF 0A, the container with a 12-byte `JXL ` box.
    if bytes.starts_with(&[0xFF, 0x0A])
        || bytes.starts_with(b"\x00\x00\x00\x0CJXL \x0D\x0A\x87\x0A")
    {
        return Some("JPEG XL");
    }
    None
}

/// Returns a readable name for a format that `image::guess_format` recognises but the renderer
/// does not decode.
fn unsupported_format_name(format: ImageFormat) -> String {
    let name = match format {
        ImageFormat::Avif => "AVIF",
        ImageFormat::Ico => "ICO",
        ImageFormat::Pnm => "PNM",
        ImageFormat::Tga => "TGA",
        ImageFormat::Dds => "DDS",
        ImageFormat::Hdr => "Radiance HDR",
        ImageFormat::OpenExr => "OpenEXR",
        ImageFormat::Farbfeld => "farbfeld",
        ImageFormat::Qoi => "QOI",
        other => return format!("{other:?}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_by_signature() {
        assert_eq!(detect(b"\xFF\xD8\xFF\xE0rest"), Ok(SourceFormat::Jpeg));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\nrest"), Ok(SourceFormat::Png));
        assert_eq!(detect(b"GIF89a rest"), Ok(SourceFormat::Gif));
        assert_eq!(detect(b"RIFF\0\0\0\0WEBPVP8 "), Ok(SourceFormat::WebP));
        assert_eq!(detect(b"BM rest of a bitmap"), Ok(SourceFormat::Bmp));
        assert_eq!(detect(b"II*\0rest"), Ok(SourceFormat::Tiff));
        assert_eq!(detect(b"MM\0*rest"), Ok(SourceFormat::Tiff));
    }

    #[test]
    fn detect_unsupported_and_not_images() {
        let heif = detect(b"\0\0\0\x18ftypheic\0\0\0\0");
        let avif = detect(b"\0\0\0\x1cftypavif\0\0\0\0");
        let jxl = detect(b"\xFF\x0A rest");
        let ico = detect(b"\0\0\x01\0\x01\0 rest of an icon");

        assert_eq!(detect(b""), Err(ThumbnailError::Empty));
        assert_eq!(detect(b"<html>"), Err(ThumbnailError::NotAnImage));
        assert_eq!(
            detect(b"\0\0\0\x18ftypisom"),
            Err(ThumbnailError::NotAnImage)
        );
        assert!(matches!(heif, Err(ThumbnailError::Unsupported { format }) if format == "HEIF"));
        assert!(matches!(avif, Err(ThumbnailError::Unsupported { format }) if format == "AVIF"));
        assert!(matches!(jxl, Err(ThumbnailError::Unsupported { format }) if format == "JPEG XL"));
        assert!(matches!(ico, Err(ThumbnailError::Unsupported { format }) if format == "ICO"));
    }
}
