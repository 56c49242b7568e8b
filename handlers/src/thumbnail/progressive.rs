//! Removal of the progressive-JPEG scans that a reduced-size decode never reads.
//!
//! A progressive JPEG sends the DCT coefficients in several scans, each carrying a band of
//! coefficients in zigzag order (the spectral selection `Ss..=Se` of its SOS header, ITU-T
//! T.81 section B.2.3). jpeg-decoder's reduced-size IDCTs read only the top-left 1x1, 2x2 or
//! 4x4 coefficients of each block, so the scans whose band starts after those are decoded for
//! nothing. They usually hold most of the file, and their Huffman decoding is what makes
//! progressive JPEGs slow. Dropping them gives the same pixels at that scale.

/// Returns the highest zigzag index of the coefficients that jpeg-decoder 0.3 reads when it
/// decodes at 1/`denominator` size.
///
/// Its 1x1 IDCT reads coefficient 0, and its 2x2 IDCT the natural indices 0, 1, 8 and 9, of
/// which 4 is the highest zigzag index. Its 4x4 IDCT reads the top-left 4x4 block, which
/// ends at zigzag index 24.
pub(crate) fn last_coefficient_read(denominator: u32) -> u8 {
    match denominator {
        8 => 0,
        4 => 4,
        2 => 24,
        _ => 63,
    }
}

/// Copies a progressive JPEG without the scans whose spectral selection starts after
/// `last_coefficient`, keeping every other segment in order and ending with EOI.
///
/// Returns `None` when no scan can be dropped or the marker structure is not as expected.
/// The caller then decodes the original bytes, so that the decoder reports any error.
pub(crate) fn without_unread_scans(bytes: &[u8], last_coefficient: u8) -> Option<Vec<u8>> {
    const SOI: u8 = 0xD8;
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;

    if !bytes.starts_with(&[0xFF, SOI]) {
        return None;
    }
    let mut output = Vec::with_capacity(bytes.len() / 4);
    output.extend_from_slice(&[0xFF, SOI]);
    let mut position = 2;
    let mut dropped_any = false;

    while position < bytes.len() {
        if bytes[position] != 0xFF {
            return None;
        }
        // A marker may be preceded by any number of 0xFF fill bytes (T.81 B.1.1.2).
        while position < bytes.len() && bytes[position] == 0xFF {
            position += 1;
        }
        let Some(&marker) = bytes.get(position) else {
            break;
        };
        position += 1;
        match marker {
            EOI => break,
            // Markers without a length: RSTn, TEM. Outside a scan they are errors, which the
            // decoder reports, so they are copied unchanged.
            0xD0..=0xD7 | 0x01 => output.extend_from_slice(&[0xFF, marker]),
            SOI => return None,
            _ => {
                let length = usize::from(u16::from_be_bytes([
                    *bytes.get(position)?,
                    *bytes.get(position + 1)?,
                ]));
                let segment_end = position.checked_add(length)?;
                if length < 2 || segment_end > bytes.len() {
                    return None;
                }
                let mut copy_end = segment_end;
                if marker == SOS {
                    // Ns, then Ns pairs of (component, tables), then Ss.
                    let component_count = usize::from(*bytes.get(position + 2)?);
                    let spectral_start_index = position + 3 + 2 * component_count;
                    if spectral_start_index >= segment_end {
                        return None;
                    }
                    let spectral_start = bytes[spectral_start_index];
                    copy_end = entropy_coded_end(bytes, segment_end);
                    if spectral_start > last_coefficient {
                        dropped_any = true;
                        position = copy_end;
                        continue;
                    }
                }
                output.extend_from_slice(&[0xFF, marker]);
                output.extend_from_slice(&bytes[position..copy_end]);
                position = copy_end;
            }
        }
    }
    output.extend_from_slice(&[0xFF, EOI]);
    dropped_any.then_some(output)
}

/// Returns the position of the first marker after the entropy-coded data that starts at
/// `start`, or the end of `bytes`. Inside that data 0xFF is followed by 0x00 (a stuffed byte)
/// or by a restart marker 0xD0..=0xD7.
fn entropy_coded_end(bytes: &[u8], start: usize) -> usize {
    let data = &bytes[start..];
    for offset in memchr::memchr_iter(0xFF, data) {
        match data.get(offset + 1) {
            Some(0x00 | 0xD0..=0xD7) => {}
            Some(_) => return start + offset,
            None => break,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a progressive 4:2:0 JPEG with restart markers with jpeg-encoder.
    fn progressive_jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut pixels = Vec::new();
        for y in 0..u32::from(height) {
            for x in 0..u32::from(width) {
                let value = |period: u32| ((x * x + y * 3) % period * 255 / period) as u8;
                pixels.extend_from_slice(&[value(97), value(61), value(37)]);
            }
        }
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 90);
        encoder.set_progressive(true);
        encoder.set_restart_interval(3);
        encoder
            .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
            .expect("encodes");
        bytes
    }

    fn decode_at_scale(bytes: &[u8], denominator: u16, width: u16, height: u16) -> Vec<u8> {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        decoder
            .scale(width.div_ceil(denominator), height.div_ceil(denominator))
            .expect("valid header");
        decoder.decode().expect("decodes")
    }

    #[test]
    fn dropping_unread_scans_keeps_pixels_at_each_scale() {
        let (width, height) = (203, 141);
        let bytes = progressive_jpeg(width, height);
        for denominator in [8_u16, 4, 2] {
            let filtered =
                without_unread_scans(&bytes, last_coefficient_read(u32::from(denominator)))
                    .expect("drops scans");

            assert!(filtered.len() < bytes.len(), "1/{denominator}");
            assert_eq!(
                decode_at_scale(&filtered, denominator, width, height),
                decode_at_scale(&bytes, denominator, width, height),
                "pixels at 1/{denominator}"
            );
        }
    }

    #[test]
    fn nothing_to_drop_or_unexpected_structure_returns_none() {
        let bytes = progressive_jpeg(64, 48);

        assert_eq!(without_unread_scans(&bytes, 63), None);
        assert_eq!(without_unread_scans(b"\xFF\xD8\x00junk", 0), None);
        assert_eq!(without_unread_scans(b"\xFF\xD8\xFF\xDB\x00", 0), None);
        assert_eq!(without_unread_scans(b"not a jpeg", 0), None);
    }

    #[test]
    fn entropy_coded_end_skips_stuffed_bytes_and_restarts() {
        let bytes = [1, 0xFF, 0x00, 2, 0xFF, 0xD3, 3, 0xFF, 0xFF, 0xD9];

        assert_eq!(entropy_coded_end(&bytes, 0), 7);
        assert_eq!(entropy_coded_end(&bytes[..6], 0), 6);
    }
}
