//! Replays the fuzz corpora committed in `fuzz/corpus/` and every crash kept in
//! `fuzz/regressions/` through the checks of the fuzz targets, on the stable toolchain.
//!
//! libFuzzer runs these checks on the nightly toolchain (see `fuzz/README.md`). This test runs
//! them in the normal test suite, so every input the fuzzer kept, and every crash once fixed,
//! keeps passing.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

type Check = fn(&[u8]);

/// Every fuzz target and its check, by the name of its folder.
const TARGETS: [(&str, Check); 7] = [
    ("lql_filter", sluice_router::fuzzing::lql_filter),
    ("pubsub_filter", sluice_router::fuzzing::pubsub_filter),
    ("log_entry_json", sluice_router::fuzzing::log_entry_json),
    (
        "logging_write_request",
        sluice::fuzzing::logging_write_request,
    ),
    ("multipart_upload", sluice::fuzzing::multipart_upload),
    (
        "storage_notification",
        sluice_handlers::fuzzing::storage_notification,
    ),
    ("thumbnail_image", sluice_handlers::fuzzing::thumbnail_image),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Lists the files of `dir`, sorted, or none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable folder entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file under `kind/<target>/` and returns the files that failed, each
/// with its panic message.
fn replay(kind: &str, target: &str, check: Check) -> Vec<String> {
    let mut failures = Vec::new();
    for path in inputs(&fuzz_dir().join(kind).join(target)) {
        let data = fs::read(&path).expect("readable input");
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| {
                    payload
                        .downcast_ref::<&str>()
                        .map(|text| (*text).to_owned())
                })
                .unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    failures
}

#[test]
fn every_target_has_a_committed_corpus() {
    for (target, _) in TARGETS {
        let count = inputs(&fuzz_dir().join("corpus").join(target)).len();
        assert!(count > 0, "fuzz/corpus/{target} is empty: run fuzz/seed.sh");
    }
}

#[test]
fn corpora_pass_their_checks() {
    let failures: Vec<String> = TARGETS
        .iter()
        .flat_map(|(target, check)| replay("corpus", target, *check))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixed_crashes_stay_fixed() {
    let kept: usize = TARGETS
        .iter()
        .map(|(target, _)| inputs(&fuzz_dir().join("regressions").join(target)).len())
        .sum();
    assert!(
        kept > 0,
        "fuzz/regressions contains no input, so this test checks nothing"
    );
    let failures: Vec<String> = TARGETS
        .iter()
        .flat_map(|(target, check)| replay("regressions", target, *check))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn replay_names_the_failing_file() {
    fn always_fails(_: &[u8]) {
        panic!("check failed");
    }
    let failures = replay("corpus", "multipart_upload", always_fails);
    assert!(!failures.is_empty());
    assert!(
        failures[0].contains("multipart_upload") && failures[0].ends_with("check failed"),
        "{}",
        failures[0]
    );
}
