//! `sluice demo` end to end: the bundled photos become thumbnails, the broken upload is
//! dead-lettered with its reason, the text file is skipped, and the audit entries are routed.

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
    assert!(
        data_dir.join("buckets").join("thumbnails").is_dir(),
        "the thumbnails bucket stays in the named data directory"
    );
}
