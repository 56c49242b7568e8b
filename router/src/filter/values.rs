//! Conversions of filter values and field values: numbers, timestamps, durations, severities
//! and the case folding used by string comparisons.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate};
use unicode_normalization::UnicodeNormalization;

/// LogSeverity names and numbers, from google.logging.type.LogSeverity.
pub const SEVERITIES: [(&str, i32); 9] = [
    ("DEFAULT", 0),
    ("DEBUG", 100),
    ("INFO", 200),
    ("NOTICE", 300),
    ("WARNING", 400),
    ("ERROR", 500),
    ("CRITICAL", 600),
    ("ALERT", 700),
    ("EMERGENCY", 800),
];

/// Parses a severity given by name in any case, or by number.
pub fn parse_severity(text: &str) -> Option<i32> {
    let name = SEVERITIES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text));
    match name {
        Some((_, number)) => Some(*number),
        None => text.trim().parse().ok(),
    }
}

/// Folds text for case-insensitive comparison: NFKC normalisation and Unicode default case
/// folding, close to Unicode's NFKC_Casefold. ASCII text takes a copy-free fast path only when
/// it is already lower case.
pub fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(text.to_ascii_lowercase());
        }
        return Cow::Borrowed(text);
    }
    let normalized: String = text.nfkc().collect();
    let folded = caseless::default_case_fold_str(&normalized);
    Cow::Owned(folded.nfkc().collect())
}

/// Parses a decimal number: an optional sign, digits with an optional fraction, and an
/// optional exponent. Words such as `nan` are not decimals, so that a string field holding
/// "nan" still compares as text.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let starts_numeric = unsigned.starts_with(|c: char| c.is_ascii_digit())
        || (unsigned.starts_with('.') && unsigned[1..].starts_with(|c: char| c.is_ascii_digit()));
    if !starts_numeric {
        return None;
    }
    text.parse().ok()
}

/// Parses a number as the Logging query language accepts it for numeric fields: a decimal, or
/// `NaN`, `Infinity` and `-Infinity` in any case.
pub fn parse_number(text: &str) -> Option<f64> {
    if let Some(number) = parse_decimal(text) {
        return Some(number);
    }
    if text.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if text.eq_ignore_ascii_case("infinity") || text.eq_ignore_ascii_case("+infinity") {
        Some(f64::INFINITY)
    } else if text.eq_ignore_ascii_case("-infinity") {
        Some(f64::NEG_INFINITY)
    } else {
        None
    }
}

/// Parses an integer written in decimal, as int64 values are in JSON strings.
pub fn parse_integer(text: &str) -> Option<i64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses an RFC 3339 timestamp (`Z` or a numeric offset, any fraction of a second) or an
/// ISO 8601 date, which means midnight UTC. Returns nanoseconds since the Unix epoch.
pub fn parse_timestamp(text: &str) -> Option<i128> {
    if text.len() == 10 {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
        let midnight = date.and_hms_opt(0, 0, 0)?.and_utc();
        return Some(i128::from(midnight.timestamp()) * 1_000_000_000);
    }
    if !text.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let instant = DateTime::parse_from_rfc3339(text).ok()?;
    Some(
        i128::from(instant.timestamp()) * 1_000_000_000
            + i128::from(instant.timestamp_subsec_nanos()),
    )
}

/// Parses a duration: a signed decimal followed by a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), or several such parts (`1h30m`). Returns nanoseconds.
pub fn parse_duration(text: &str) -> Option<i128> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > 1e30 {
        return None;
    }
    // Rounding to whole nanoseconds is exact for every duration a proto Duration can hold.
    #[allow(clippy::cast_possible_truncation)]
    let nanos = total.round() as i128;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_date_means_midnight_utc() {
        assert_eq!(
            parse_timestamp("2024-01-01"),
            parse_timestamp("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn timestamp_offset_is_same_instant() {
        assert_eq!(
            parse_timestamp("2024-01-01T09:00:00+09:00"),
            parse_timestamp("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn timestamp_keeps_nanoseconds() {
        let a = parse_timestamp("2024-01-01T00:00:00.000000001Z").expect("valid");
        let b = parse_timestamp("2024-01-01T00:00:00Z").expect("valid");
        assert_eq!(a - b, 1);
    }

    #[test]
    fn duration_units_compare_by_length() {
        assert!(parse_duration("1s") > parse_duration("999ms"));
        assert_eq!(parse_duration("3.2s"), Some(3_200_000_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("-2ms"), Some(-2_000_000));
        assert_eq!(parse_duration("12"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn severity_names_any_case_and_numbers() {
        assert_eq!(parse_severity("error"), Some(500));
        assert_eq!(parse_severity("Warning"), Some(400));
        assert_eq!(parse_severity("450"), Some(450));
        assert_eq!(parse_severity("hello"), None);
    }

    #[test]
    fn fold_is_nfkc_casefold() {
        assert_eq!(fold("GCS_Bucket"), "gcs_bucket");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("ＡＢＣ"), "abc");
    }

    #[test]
    fn decimals_exclude_words() {
        assert_eq!(parse_decimal("nan"), None);
        assert_eq!(parse_decimal("-1.5e3"), Some(-1500.0));
        assert_eq!(parse_number("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_integer("1450180608"), Some(1_450_180_608));
        assert_eq!(parse_integer("14.5"), None);
    }
}
