//! The checks behind the fuzz targets in `fuzz/` that reach the server's own decoders, one
//! function per target, re-exported as `sluice::fuzzing`.
//!
//! As in `sluice_router::fuzzing`, each function takes one input and panics when a property
//! fails. The fuzz targets call them under libFuzzer, and `tests/fuzz_corpus.rs` replays the
//! committed corpora and crashes through them on the stable toolchain.

use super::logging::prepare_rest_write;
use super::storage::multipart_related;
use super::storage::new_object::NewObject;

/// Fuzz target `logging_write_request`: decodes arbitrary bytes as the body of
/// `POST /v2/entries:write` and prepares its entries, then routes every entry that passed
/// through the log router of the `log_entry_json` target.
///
/// # Panics
///
/// When a decoder panics, or when the router rejects an entry that the write accepted: the
/// server converts accepted entries to JSON itself, so the router must always take them.
pub fn logging_write_request(data: &[u8]) {
    let Ok(entries) = prepare_rest_write(data) else {
        return;
    };
    let valid: Vec<String> = entries.into_iter().filter_map(Result::ok).collect();
    for entry in &valid {
        // The same checks as the `log_entry_json` target, on the JSON the server made.
        sluice_router::fuzzing::log_entry_json(entry.as_bytes());
    }
}

/// Fuzz target `multipart_upload`: reads arbitrary bytes as a Content-Type line and then the
/// body of a Cloud Storage multipart upload (`multipart/related`), and decodes the metadata
/// part as the upload route does.
///
/// # Panics
///
/// When a decoder panics, or when a part's body contains the delimiter that should have ended
/// it.
pub fn multipart_upload(data: &[u8]) {
    let (header, body) = match data.iter().position(|&byte| byte == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (data, &[][..]),
    };
    let Ok(content_type) = std::str::from_utf8(header) else {
        return;
    };
    let Ok(boundary) = multipart_related::boundary(content_type) else {
        return;
    };
    let Ok(parts) = multipart_related::parse(body, &boundary) else {
        return;
    };
    let delimiter = format!("\r\n--{boundary}");
    for part in &parts {
        assert!(
            !contains(part.body, delimiter.as_bytes()),
            "a part's body contains the delimiter {delimiter:?}"
        );
    }
    if let [metadata, _media] = parts.as_slice() {
        if let Ok(resource) = serde_json::from_slice(metadata.body) {
            let _ = NewObject::from_json(&resource, "uploads");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
