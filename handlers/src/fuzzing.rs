//! The checks behind the fuzz targets in `fuzz/` that reach the handlers, one function per
//! target.
//!
//! As in `sluice_router::fuzzing`, each function takes one input and panics when a property
//! fails. The fuzz targets call them under libFuzzer, and `tests/fuzz_corpus.rs` replays the
//! committed corpora and crashes through them on the stable toolchain.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use sluice_router::store::{NewMessage, StoredMessage};

use crate::event::to_event;
use crate::events::convert::{to_cloudevent, to_legacy};
use crate::events::{CloudEvent, LegacyEvent};
use crate::source::SourceObject;
use crate::thumbnail::{render, ThumbnailOptions};

/// Fuzz target `storage_notification`: decodes arbitrary bytes as the data of a Cloud Storage
/// notification, the way the handlers and the push client read it, and as the JSON of a
/// background event and of a CloudEvent.
///
/// # Panics
///
/// When a decoder panics, when a notification does not become a storage event with the
/// message id as its event id, or when an event that decodes does not survive its own JSON
/// form.
pub fn storage_notification(data: &[u8]) {
    for event_type in ["OBJECT_FINALIZE", "OBJECT_DELETE", "NOT_AN_EVENT"] {
        let message = StoredMessage {
            topic: "uploads".to_owned(),
            seq: 7,
            publish_time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            message: NewMessage {
                data: data.to_vec(),
                attributes: BTreeMap::from([
                    ("eventType".to_owned(), event_type.to_owned()),
                    ("bucketId".to_owned(), "photos".to_owned()),
                    ("objectId".to_owned(), "cat.jpg".to_owned()),
                    ("eventTime".to_owned(), "2024-01-31T12:00:00Z".to_owned()),
                ]),
                ordering_key: String::new(),
            },
        };
        let (_, context) = to_event(&message);
        assert_eq!(context.event_id, "7", "the event id is not the message id");
        let storage = event_type.starts_with("OBJECT_");
        assert_eq!(
            context.event_type.starts_with("google.storage.object."),
            storage,
            "{event_type} became a {} event",
            context.event_type
        );
    }
    if let Ok(source) = SourceObject::parse(data) {
        let _ = source.to_string();
        let _ = source.link_metadata();
    }
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(event) = LegacyEvent::from_json(&json) {
        let again = LegacyEvent::from_json(&event.to_json())
            .unwrap_or_else(|err| panic!("the JSON form of {event:?} does not decode: {err}"));
        // The nested shape that `to_json` writes leaves out the extra keys of a flat body.
        assert_eq!(
            (&again.context, &again.data),
            (&event.context, &event.data),
            "a background event changed in its JSON form"
        );
        if let Ok(cloudevent) = to_cloudevent(&event) {
            let _ = to_legacy(&cloudevent);
        }
    }
    if let Ok(event) = CloudEvent::from_json(&json) {
        let again = CloudEvent::from_json(&event.to_json())
            .unwrap_or_else(|err| panic!("the JSON form of {event:?} does not decode: {err}"));
        assert_eq!(again, event, "a CloudEvent changed in its JSON form");
        let binary = event.to_binary();
        let headers = binary
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        // Header values are percent-encoded on the way out and read back as they are, as the
        // CloudEvents SDKs read them, so the id that comes back is the `ce-id` header as sent.
        let sent_id = binary
            .headers
            .iter()
            .find(|(name, _)| name == "ce-id")
            .map(|(_, value)| value.clone())
            .expect("a binary CloudEvent without a ce-id header");
        if let Ok(again) = CloudEvent::from_binary(headers, &binary.body) {
            assert_eq!(again.id, sent_id, "a CloudEvent lost its id in binary mode");
        }
        if let Ok(legacy) = to_legacy(&event) {
            let _ = to_cloudevent(&legacy);
        }
    }
}

/// Returns the settings of the `thumbnail_image` target: a small box, and a pixel limit low
/// enough that the fuzzer's memory limit is never the first to fail.
fn fuzz_options() -> ThumbnailOptions {
    ThumbnailOptions {
        max_width: 64,
        max_height: 48,
        max_pixels: 4_000_000,
        jpeg_quality: 80,
    }
}

/// Fuzz target `thumbnail_image`: renders arbitrary bytes as an image, as the thumbnail
/// handler does with an uploaded object.
///
/// # Panics
///
/// When a panic escapes [`render`], or when a thumbnail is empty, larger than the box or
/// than its source, or not of the content type it names.
pub fn thumbnail_image(data: &[u8]) {
    let options = fuzz_options();
    let Ok(thumbnail) = render(data, &options) else {
        return;
    };
    assert!(!thumbnail.bytes.is_empty(), "an empty thumbnail");
    assert!(
        (1..=options.max_width).contains(&thumbnail.width)
            && (1..=options.max_height).contains(&thumbnail.height),
        "a {}x{} thumbnail does not fit {}x{}",
        thumbnail.width,
        thumbnail.height,
        options.max_width,
        options.max_height
    );
    assert!(
        thumbnail.width <= thumbnail.source_width.max(1)
            && thumbnail.height <= thumbnail.source_height.max(1),
        "a {}x{} thumbnail of a {}x{} source",
        thumbnail.width,
        thumbnail.height,
        thumbnail.source_width,
        thumbnail.source_height
    );
    let signature: &[u8] = match thumbnail.content_type {
        "image/jpeg" => b"\xff\xd8\xff",
        "image/png" => b"\x89PNG\r\n\x1a\n",
        other => panic!("a thumbnail of unexpected type {other}"),
    };
    assert!(
        thumbnail.bytes.starts_with(signature),
        "a thumbnail that does not start as {} does",
        thumbnail.content_type
    );
}
