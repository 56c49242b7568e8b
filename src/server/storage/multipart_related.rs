//! The `multipart/related` bodies of Cloud Storage's multipart uploads (RFC 2387): a JSON
//! part with the object's metadata, then a part with its bytes.
//!
//! The body is parsed in memory, because it is at most the upload limit and both parts are
//! needed before anything is stored.

/// One part of a `multipart/related` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The part's Content-Type header, if it has one.
    pub(crate) content_type: Option<String>,
    pub(crate) body: &'a [u8],
}

/// Returns the boundary of a `multipart/related` Content-Type, or the message of the 400
/// response.
pub(crate) fn boundary(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("multipart/related") {
        return Err(format!(
            "a multipart upload must be multipart/related, not {media_type:?}: send the \
             metadata as a JSON part and then the object's bytes"
        ));
    }
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("boundary") {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|quoted| quoted.strip_suffix('"'))
                .unwrap_or(value);
            // RFC 2046 section 5.1.1: 1 to 70 characters.
            if value.is_empty() || value.len() > 70 {
                return Err(format!(
                    "invalid multipart boundary {value:?}: it must have 1 to 70 characters"
                ));
            }
            return Ok(value.to_owned());
        }
    }
    Err("the multipart/related Content-Type has no boundary parameter".to_owned())
}

/// Splits a `multipart/related` body into its parts, or returns the message of the 400
/// response.
pub(crate) fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let delimiter = format!("--{boundary}");
    let inner_delimiter = format!("\r\n--{boundary}");
    // The preamble before the first delimiter is ignored, as RFC 2046 section 5.1.1 requires.
    let mut position = if body.starts_with(delimiter.as_bytes()) {
        delimiter.len()
    } else {
        find(body, inner_delimiter.as_bytes(), 0).ok_or_else(|| {
            format!("the multipart body does not contain its boundary {boundary:?}")
        })? + inner_delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        if body[position..].starts_with(b"--") {
            return Ok(parts);
        }
        position = skip_padding(body, position)?;
        let end = find(body, inner_delimiter.as_bytes(), position).ok_or_else(|| {
            "the multipart body ends without its closing boundary: end it with \
             \"\\r\\n--BOUNDARY--\""
                .to_owned()
        })?;
        parts.push(parse_part(&body[position..end], parts.len() + 1)?);
        position = end + inner_delimiter.len();
    }
}

/// Skips the transport padding and the line break after a delimiter.
fn skip_padding(body: &[u8], mut position: usize) -> Result<usize, String> {
    while matches!(body.get(position), Some(b' ' | b'\t')) {
        position += 1;
    }
    if body[position..].starts_with(b"\r\n") {
        Ok(position + 2)
    } else {
        Err("a multipart boundary is not followed by a line break (CRLF)".to_owned())
    }
}

/// Parses the headers and the body of part `number` (from 1).
fn parse_part(part: &[u8], number: usize) -> Result<Part<'_>, String> {
    let (headers, body) = if let Some(body) = part.strip_prefix(b"\r\n") {
        (&part[..0], body)
    } else {
        let end = find(part, b"\r\n\r\n", 0).ok_or_else(|| {
            format!("multipart part {number} has no blank line between its headers and its body")
        })?;
        (&part[..end], &part[end + 4..])
    };
    let headers = std::str::from_utf8(headers)
        .map_err(|_| format!("the headers of multipart part {number} are not UTF-8"))?;
    let mut content_type = None;
    for line in headers.split("\r\n").filter(|line| !line.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("invalid header line {line:?} in multipart part {number}"))?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("content-transfer-encoding")
            && !["binary", "8bit", "7bit"]
                .iter()
                .any(|identity| value.eq_ignore_ascii_case(identity))
        {
            return Err(format!(
                "multipart part {number} has Content-Transfer-Encoding {value:?}, which sluice \
                 does not decode: send the bytes as they are (binary)"
            ));
        }
    }
    Ok(Part { content_type, body })
}

/// Returns the first position at or after `from` where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut start = from;
    while start + needle.len() <= haystack.len() {
        let offset = haystack[start..].iter().position(|&byte| byte == first)?;
        let candidate = start + offset;
        if haystack[candidate..].starts_with(needle) {
            return Some(candidate);
        }
        start = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as google-cloud-storage 3.17's `construct_multipart_request` writes it: no line
    /// break after the closing delimiter.
    const CLIENT_BODY: &[u8] = b"--==b==\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n\
        {\"name\": \"a\"}\r\n--==b==\r\ncontent-type: image/jpeg\r\n\r\n\xff\xd8\r\n--x\r\n--==b==--";

    #[test]
    fn parses_client_body() {
        let parts = parse(CLIENT_BODY, "==b==").expect("a valid body");
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].content_type.as_deref(),
            Some("application/json; charset=UTF-8")
        );
        assert_eq!(parts[0].body, b"{\"name\": \"a\"}");
        assert_eq!(parts[1].content_type.as_deref(), Some("image/jpeg"));
        assert_eq!(parts[1].body, b"\xff\xd8\r\n--x");
    }

    #[test]
    fn skips_preamble_and_headerless_parts() {
        let body = b"preamble\r\n--b\r\n\r\nfirst\r\n--b \r\nX-Other: 1\r\n\r\n\r\n--b--\r\n";
        let parts = parse(body, "b").expect("a valid body");
        assert_eq!(parts[0].body, b"first");
        assert_eq!(parts[0].content_type, None);
        assert_eq!(parts[1].body, b"");
    }

    #[test]
    fn rejects_malformed_bodies() {
        let cases: [(&[u8], &str); 5] = [
            (b"no boundary here", "does not contain its boundary"),
            (
                b"--b\r\n\r\nbody without end",
                "ends without its closing boundary",
            ),
            (b"--bX\r\n\r\nx\r\n--b--", "not followed by a line break"),
            (b"--b\r\nno-colon\r\n\r\nx\r\n--b--", "invalid header line"),
            (
                b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\neA==\r\n--b--",
                "does not decode",
            ),
        ];
        for (body, reason) in cases {
            let err = parse(body, "b").expect_err("a malformed body");
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn boundary_from_content_type() {
        let quoted = boundary("multipart/related; boundary=\"===============123==\"");
        assert_eq!(quoted.as_deref(), Ok("===============123=="));
        assert_eq!(
            boundary("Multipart/Related;boundary=abc").as_deref(),
            Ok("abc")
        );
        let err = boundary("multipart/form-data; boundary=abc").expect_err("not related");
        assert!(err.contains("must be multipart/related"), "{err}");
        let err = boundary("multipart/related").expect_err("no boundary");
        assert!(err.contains("no boundary parameter"), "{err}");
    }
}
