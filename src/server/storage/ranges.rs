//! Byte ranges: the `Content-Range` of a resumable upload's requests, and the `Range` of a
//! download.

/// The `Content-Range` of a request to a resumable upload session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChunkRange {
    /// `bytes */*`: requests the number of bytes the session has, and sends none.
    Query,
    /// `bytes */TOTAL`: sends no bytes and ends the upload at `total` bytes.
    Finish { total: u64 },
    /// `bytes FIRST-LAST/TOTAL` or `bytes FIRST-LAST/*`: bytes `first` to `last` inclusive,
    /// with the object's size when the client knows it.
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
}

/// Parses the `Content-Range` of a resumable upload request, or returns the message of the
/// 400 response.
pub(super) fn parse_content_range(value: &str) -> Result<ChunkRange, String> {
    let invalid = |reason: &str| {
        format!(
            "invalid Content-Range {value:?}: {reason}; send \"bytes FIRST-LAST/TOTAL\", \
             \"bytes FIRST-LAST/*\" while the size is unknown, \"bytes */TOTAL\" to finish, or \
             \"bytes */*\" to query the offset"
        )
    };
    let rest = value
        .trim()
        .strip_prefix("bytes ")
        .ok_or_else(|| invalid("the unit must be bytes"))?;
    let (range, total) = rest
        .split_once('/')
        .ok_or_else(|| invalid("the total is missing"))?;
    let total = match total.trim() {
        "*" => None,
        digits => Some(parse_number(digits).ok_or_else(|| invalid("the total is not a number"))?),
    };
    match (range.trim(), total) {
        ("*", None) => Ok(ChunkRange::Query),
        ("*", Some(total)) => Ok(ChunkRange::Finish { total }),
        (range, total) => {
            let (first, last) = range
                .split_once('-')
                .and_then(|(first, last)| Some((parse_number(first)?, parse_number(last)?)))
                .ok_or_else(|| invalid("the range is not FIRST-LAST"))?;
            if last < first {
                return Err(invalid("the last byte is before the first"));
            }
            if total.is_some_and(|total| last >= total) {
                return Err(invalid("the last byte is not below the total"));
            }
            Ok(ChunkRange::Bytes { first, last, total })
        }
    }
}

/// Parses a decimal number of digits only, without a sign or spaces.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The bytes of an object that a download's `Range` header selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Selection {
    /// Every byte: no Range, or one that RFC 9110 lets the server ignore (another unit,
    /// several ranges, invalid syntax).
    All,
    /// Bytes `first` to `last` inclusive, both within the object.
    Part { first: u64, last: u64 },
    /// A valid range that selects no byte of the object.
    Unsatisfiable,
}

/// Resolves a `Range` header value (`bytes=FIRST-LAST`, `bytes=FIRST-` or `bytes=-SUFFIX`)
/// against an object of `size` bytes, as RFC 9110 section 14 describes for one range.
pub(super) fn select_range(value: &str, size: u64) -> Selection {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Selection::All;
    };
    if spec.contains(',') {
        return Selection::All;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Selection::All;
    };
    let (first, last) = match (first.trim(), last.trim()) {
        ("", suffix) => match parse_number(suffix) {
            Some(0) => return Selection::Unsatisfiable,
            Some(suffix) => (size.saturating_sub(suffix), None),
            None => return Selection::All,
        },
        (first, "") => match parse_number(first) {
            Some(first) => (first, None),
            None => return Selection::All,
        },
        (first, last) => match (parse_number(first), parse_number(last)) {
            (Some(first), Some(last)) if first <= last => (first, Some(last)),
            _ => return Selection::All,
        },
    };
    if first >= size {
        return Selection::Unsatisfiable;
    }
    let last = last.map_or(size - 1, |last| last.min(size - 1));
    Selection::Part { first, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        let cases = [
            ("bytes */*", ChunkRange::Query),
            ("bytes */10", ChunkRange::Finish { total: 10 }),
            (
                "bytes 0-262143/*",
                ChunkRange::Bytes {
                    first: 0,
                    last: 262_143,
                    total: None,
                },
            ),
            (
                "bytes 5-9/10",
                ChunkRange::Bytes {
                    first: 5,
                    last: 9,
                    total: Some(10),
                },
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_content_range(value), Ok(expected), "{value}");
        }
    }

    #[test]
    fn content_range_rejects_bad_values() {
        let cases = [
            ("items 0-1/2", "the unit must be bytes"),
            ("bytes 0-1", "the total is missing"),
            ("bytes 0-1/x", "the total is not a number"),
            ("bytes 0-/5", "the range is not FIRST-LAST"),
            ("bytes -1-2/5", "the range is not FIRST-LAST"),
            ("bytes 3-2/5", "the last byte is before the first"),
            ("bytes 0-5/5", "the last byte is not below the total"),
            ("bytes +1-2/5", "the range is not FIRST-LAST"),
        ];
        for (value, reason) in cases {
            let err = parse_content_range(value).expect_err(value);
            assert!(err.contains(reason), "{value}: {err}");
        }
    }

    #[test]
    fn range_selects_bytes() {
        let cases = [
            ("bytes=0-3", Selection::Part { first: 0, last: 3 }),
            ("bytes=5-", Selection::Part { first: 5, last: 9 }),
            ("bytes=-4", Selection::Part { first: 6, last: 9 }),
            ("bytes=-40", Selection::Part { first: 0, last: 9 }),
            ("bytes=8-100", Selection::Part { first: 8, last: 9 }),
            ("bytes=10-", Selection::Unsatisfiable),
            ("bytes=-0", Selection::Unsatisfiable),
            ("bytes=0-1,3-4", Selection::All),
            ("bytes=4-2", Selection::All),
            ("items=0-1", Selection::All),
        ];
        for (value, expected) in cases {
            assert_eq!(select_range(value, 10), expected, "{value}");
        }
    }

    #[test]
    fn range_of_empty_object_is_unsatisfiable() {
        assert_eq!(select_range("bytes=0-", 0), Selection::Unsatisfiable);
        assert_eq!(select_range("bytes=-5", 0), Selection::Unsatisfiable);
    }
}
