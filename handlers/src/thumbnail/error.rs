//! Errors of the thumbnail renderer.

/// Reason why no thumbnail was rendered.
///
/// [`is_skip`](Self::is_skip) sorts the variants for the caller. Skips (`NotAnImage`, `Empty`,
/// `Unsupported`) are objects that need no thumbnail: the caller acknowledges the event and
/// logs the reason. The others (`TooLarge`, `Corrupt`) are images that cannot be rendered and
/// will not render on a retry either: the caller dead-letters the event with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThumbnailError {
    /// The bytes start with no known image signature.
    #[error(
        "the object is not an image: its first bytes match no image signature \
         (supported formats: JPEG, PNG, GIF, WebP, BMP, TIFF)"
    )]
    NotAnImage,
    /// The object has no bytes.
    #[error("the object is empty (0 bytes); upload the image again")]
    Empty,
    /// An image format, or a feature of one, that the renderer does not decode.
    #[error(
        "{format} is not supported; convert the image to JPEG, PNG, GIF, WebP, BMP or TIFF \
         to get a thumbnail"
    )]
    Unsupported {
        /// Name of the format, with the unsupported feature where the decoder names one.
        format: String,
    },
    /// The header gives more pixels than `ThumbnailOptions::max_pixels`.
    #[error(
        "the image is {width}x{height} pixels, more than the limit of {limit} pixels; \
         raise max_pixels if images this large are expected"
    )]
    TooLarge {
        /// Width from the image header.
        width: u32,
        /// Height from the image header.
        height: u32,
        /// `ThumbnailOptions::max_pixels` at the time of the check.
        limit: u64,
    },
    /// The data is damaged or truncated, or a decoder failed on it, for example by needing
    /// more memory than `ThumbnailOptions::max_pixels` allows.
    #[error("the image could not be decoded: {reason}; re-encode it or upload it again")]
    Corrupt {
        /// The decoder's description of the failure.
        reason: String,
    },
}

impl ThumbnailError {
    /// Returns whether the object should be skipped (acknowledged and logged) rather than
    /// dead-lettered: true for `NotAnImage`, `Empty` and `Unsupported`.
    pub fn is_skip(&self) -> bool {
        match self {
            Self::NotAnImage | Self::Empty | Self::Unsupported { .. } => true,
            Self::TooLarge { .. } | Self::Corrupt { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_and_permanent_kinds() {
        let unsupported = ThumbnailError::Unsupported {
            format: "HEIF".to_owned(),
        };
        let too_large = ThumbnailError::TooLarge {
            width: 1,
            height: 2,
            limit: 1,
        };
        let corrupt = ThumbnailError::Corrupt {
            reason: "x".to_owned(),
        };

        assert!(ThumbnailError::NotAnImage.is_skip());
        assert!(ThumbnailError::Empty.is_skip());
        assert!(unsupported.is_skip());
        assert!(!too_large.is_skip());
        assert!(!corrupt.is_skip());
    }

    #[test]
    fn too_large_message_names_values_and_fix() {
        let error = ThumbnailError::TooLarge {
            width: 100_000,
            height: 100_000,
            limit: 100_000_000,
        };
        let message = error.to_string();

        assert!(message.contains("100000x100000"), "{message}");
        assert!(message.contains("100000000 pixels"), "{message}");
        assert!(message.contains("raise max_pixels"), "{message}");
    }
}
