//! The EXIF summary of an annotation: camera make and model, capture time and orientation.
//!
//! kamadak-exif finds the EXIF block in JPEG, TIFF, PNG, WebP and HEIF files. A damaged block
//! gives whatever fields could be read before the damage, and a field with an invalid value is
//! left out rather than failing the annotation.

use std::io::Cursor;

use exif::{DateTime, Exif, In, Reader, Tag, Value};
use serde::Serialize;

/// The EXIF fields of an annotation. Fields that the image does not have are left out of the
/// JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExifSummary {
    /// Manufacturer of the camera (tag Make), for example `Canon`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    /// Model of the camera (tag Model), for example `Canon EOS 40D`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// When the photo was taken, in RFC 3339 form: from DateTimeOriginal, or DateTime when the
    /// original is missing or not a valid time, with the fraction of SubSecTimeOriginal and the offset of
    /// OffsetTimeOriginal when the image has them. Without an offset the time is the camera's
    /// local time and has no zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<String>,
    /// The Orientation tag, 1 to 8: how to turn the stored pixels to show them upright.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
}

impl ExifSummary {
    /// Reads the summary from the EXIF block of an image file. Returns `None` when the file
    /// has no EXIF block or none of the four fields.
    pub(crate) fn read(bytes: &[u8]) -> Option<Self> {
        let exif = read_exif(bytes)?;
        let summary = Self {
            make: ascii(&exif, Tag::Make),
            model: ascii(&exif, Tag::Model),
            capture_time: capture_time(&exif),
            orientation: orientation(&exif),
        };
        (summary != Self::default()).then_some(summary)
    }
}

/// Parses the EXIF block, keeping the fields read before any error in it.
fn read_exif(bytes: &[u8]) -> Option<Exif> {
    let mut reader = Reader::new();
    reader.continue_on_error(true);
    match reader.read_from_container(&mut Cursor::new(bytes)) {
        Ok(exif) => Some(exif),
        Err(err) => err.distill_partial_result(|_| {}).ok(),
    }
}

/// Returns the first string of an ASCII field of the main image, without the padding that
/// cameras leave: trailing NULs and spaces. An empty value counts as missing.
fn ascii(exif: &Exif, tag: Tag) -> Option<String> {
    let field = exif.get_field(tag, In::PRIMARY)?;
    let Value::Ascii(strings) = &field.value else {
        return None;
    };
    let text = String::from_utf8_lossy(strings.first()?);
    let text = text.trim_end_matches(['\0', ' ']).trim_start();
    (!text.is_empty()).then(|| text.to_owned())
}

fn orientation(exif: &Exif) -> Option<u16> {
    let value = exif
        .get_field(Tag::Orientation, In::PRIMARY)?
        .value
        .get_uint(0)?;
    u16::try_from(value)
        .ok()
        .filter(|value| (1..=8).contains(value))
}

/// Builds the capture time from DateTimeOriginal, or from DateTime when DateTimeOriginal is
/// missing or not a valid time, with the fraction and offset of the tags that belong to it.
fn capture_time(exif: &Exif) -> Option<String> {
    [
        (
            Tag::DateTimeOriginal,
            Tag::SubSecTimeOriginal,
            Tag::OffsetTimeOriginal,
        ),
        (Tag::DateTime, Tag::SubSecTime, Tag::OffsetTime),
    ]
    .into_iter()
    .find_map(|(tag, subsec, offset)| {
        let mut time = raw_ascii(exif, tag).and_then(|text| DateTime::from_ascii(text).ok())?;
        // A fraction or offset that does not parse is left out; the time itself stays.
        if let Some(text) = raw_ascii(exif, subsec) {
            if time.parse_subsec(text).is_err() {
                time.nanosecond = None;
            }
        }
        if let Some(text) = raw_ascii(exif, offset) {
            if time.parse_offset(text).is_err() {
                time.offset = None;
            }
        }
        format_time(&time)
    })
}

fn raw_ascii(exif: &Exif, tag: Tag) -> Option<&[u8]> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Ascii(strings) => strings.first().map(Vec::as_slice),
        _ => None,
    }
}

/// Formats a time as RFC 3339, or returns `None` when a part is out of range, as in the
/// `0000:00:00 00:00:00` that some cameras write for an unset clock.
fn format_time(time: &DateTime) -> Option<String> {
    // The date must exist in the calendar (no 30 February); a second of 60 is a leap second,
    // which RFC 3339 allows.
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::from(time.year),
        u32::from(time.month),
        u32::from(time.day),
    );
    let valid = (1..=9999).contains(&time.year)
        && date.is_some()
        && time.hour <= 23
        && time.minute <= 59
        && time.second <= 60;
    if !valid {
        return None;
    }
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        time.year, time.month, time.day, time.hour, time.minute, time.second
    );
    if let Some(nanosecond) = time.nanosecond.filter(|&nanosecond| nanosecond > 0) {
        let fraction = format!("{nanosecond:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    // RFC 3339 offsets stay within 23:59 either way; a larger one is left out.
    if let Some(offset) = time.offset.filter(|offset| offset.unsigned_abs() < 24 * 60) {
        let sign = if offset < 0 { '-' } else { '+' };
        let minutes = offset.unsigned_abs();
        text.push_str(&format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &[u8]) -> DateTime {
        DateTime::from_ascii(text).expect("valid EXIF time")
    }

    #[test]
    fn time_without_offset_has_no_zone() {
        let formatted = format_time(&time(b"2008:05:30 15:56:01"));

        assert_eq!(formatted.as_deref(), Some("2008-05-30T15:56:01"));
    }

    #[test]
    fn time_with_fraction_and_offset() {
        let mut parsed = time(b"2021:12:24 18:30:05");
        parsed.parse_subsec(b"120").expect("fraction");
        parsed.parse_offset(b"-03:30").expect("offset");

        assert_eq!(
            format_time(&parsed).as_deref(),
            Some("2021-12-24T18:30:05.12-03:30")
        );
    }

    #[test]
    fn impossible_date_is_left_out() {
        assert_eq!(format_time(&time(b"2021:02:30 10:00:00")), None);
    }

    #[test]
    fn offset_beyond_a_day_is_left_out() {
        let mut parsed = time(b"2021:02:28 10:00:60");
        parsed.parse_offset(b"+99:99").expect("offset parses");

        assert_eq!(format_time(&parsed).as_deref(), Some("2021-02-28T10:00:60"));
    }

    #[test]
    fn unset_original_falls_back_to_datetime() {
        // DateTimeOriginal is 0000:00:00 00:00:00 and DateTime 2020:01:02 03:04:05.
        let bytes = include_bytes!("../../tests/data/exif-unset-original.jpg");
        let summary = ExifSummary::read(bytes).expect("the file has EXIF");

        assert_eq!(summary.capture_time.as_deref(), Some("2020-01-02T03:04:05"));
    }

    #[test]
    fn photo_dated_30_february_has_no_capture_time() {
        // DateTimeOriginal is 2021:02:30 10:00:60 with offset +99:99, and no other tag the
        // summary keeps, so there is no summary at all.
        let bytes = include_bytes!("../../tests/data/exif-feb30.jpg");
        let capture_time = ExifSummary::read(bytes).and_then(|summary| summary.capture_time);

        assert_eq!(capture_time, None);
    }

    #[test]
    fn unset_camera_clock_is_left_out() {
        assert_eq!(format_time(&time(b"0000:00:00 00:00:00")), None);
    }

    #[test]
    fn file_without_exif_has_no_summary() {
        assert_eq!(ExifSummary::read(b"not an image"), None);
        assert_eq!(ExifSummary::read(b""), None);
    }
}
