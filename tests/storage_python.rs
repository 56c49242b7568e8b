//! Google's Python client, google-cloud-storage, against a real `sluice serve` on the
//! default configuration, with `STORAGE_EMULATOR_HOST` pointing at it: multipart, resumable
//! and media uploads to `uploads`, the thumbnails that appear in `thumbnails`, downloads,
//! listings, patches, deletes and bucket creation.
//!
//! The client comes from `scripts/test`, which exports `SLUICE_TEST_PYTHON`. Without it the
//! test fails with a message that names the fix.

mod support;

use image::{GenericImageView as _, ImageReader};
use serde_json::Value;
use support::{python, TestServer};

/// The box of the default configuration's thumbnailer.
const BOX: u32 = 256;

#[test]
fn python_client_uploads_and_gets_thumbnails() {
    let server = TestServer::start(None);
    let output_dir = tempfile::tempdir().expect("temp dir");
    let photo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/photos/landscape.jpg");
    let output = python::run(
        "storage_client.py",
        &[
            photo.to_str().expect("a UTF-8 path"),
            output_dir.path().to_str().expect("a UTF-8 path"),
        ],
        &[("STORAGE_EMULATOR_HOST", server.url())],
    );
    python::assert_success("storage_client.py", &output);

    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary at the end of the output:\n{stdout}"));
    let thumbnails = summary["thumbnails"]
        .as_array()
        .expect("a list of thumbnail paths");
    assert_eq!(thumbnails.len(), 2, "{summary}");
    for path in thumbnails {
        let path = path.as_str().expect("a path");
        let image = ImageReader::open(path)
            .and_then(ImageReader::with_guessed_format)
            .expect("a readable thumbnail")
            .decode()
            .unwrap_or_else(|err| panic!("{path} is not a JPEG or PNG: {err}"));
        let (width, height) = image.dimensions();
        assert!(width.max(height) <= BOX, "{path} is {width}x{height}");
        assert!(width.max(height) >= BOX - 1, "{path} is {width}x{height}");
    }
}
