//! `sluice demo` end to end: the bundled photos become thumbnails and annotations, the broken
//! upload is dead-lettered with its reason, the text file is skipped, the audit entries are
//! routed, and the bundled offers are accepted, ignored or dead-lettered.

use assert_cmd::Command;

#[test]
fn demo_prints_the_pipeline_summary() {
    let output = Command::cargo_bin("sluice")
        .expect("binary builds")
        .arg("demo")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");

    assert!(
        stdout.contains("Audit log: 37 entries in, 37 routed, 0 rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink storage-audit      4 matched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sink errors             5 matched"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Thumbnails in bucket thumbnails: 3"),
        "{stdout}"
    );
    for line in [
        "landscape-exif-rotated.jpg     256x171",
        "landscape.jpg                  256x171",
        "portrait.jpg                   171x256",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert!(
        stdout.contains("Dead-lettered to thumbnailer-dead-letter: 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("truncated.jpg: cannot render a thumbnail"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Skipped (acknowledged, no thumbnail): notes.txt"),
        "{stdout}"
    );
}

#[test]
fn demo_prints_annotations_and_offers() {
    let output = Command::cargo_bin("sluice")
        .expect("binary builds")
        .arg("demo")
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");

    for line in [
        "Annotations in bucket annotations: 3",
        "  landscape-exif-rotated.jpg.json   1800x1200  orientation 6  camera -",
        "  landscape.jpg.json                1800x1200  orientation 1  camera -",
        "  portrait.jpg.json                 1200x1800  orientation 1  camera -",
        "Dead-lettered to annotator-dead-letter: 1",
        "  truncated.jpg: cannot annotate gs://uploads/truncated.jpg#",
        "Offers: 7 published to offers, 4 accepted, 1 duplicate ignored, 2 dead-lettered",
        "  offer 9007199254740993  kettle   24.90 EUR",
        "  kettle  EUR  22.40  offer k-2 from south-shop",
        "  lamp    JPY   3150  offer l-1 from north-shop",
        "Dead-lettered to offers-dead-letter: 2",
        "  invalid offer: currency \"EUX\" is not an ISO 4217 currency code",
        "  invalid offer: price is missing",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
}

#[test]
fn demo_refuses_an_existing_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::cargo_bin("sluice")
        .expect("binary builds")
        .args(["demo", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("demo runs");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
}

#[test]
fn demo_keeps_a_named_data_dir() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("kept");
    let output = Command::cargo_bin("sluice")
        .expect("binary builds")
        .args(["demo", "--data-dir"])
        .arg(&data_dir)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .expect("demo runs");

    assert!(output.status.success());
    for bucket in ["thumbnails", "annotations", "offers-state"] {
        assert!(
            data_dir.join("buckets").join(bucket).is_dir(),
            "the {bucket} bucket stays in the named data directory"
        );
    }
}
