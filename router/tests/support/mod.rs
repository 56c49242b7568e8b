//! Shared helpers for the data-driven tests: fixture paths and JSON Lines loading.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

/// The shared fixtures folder, which sits beside the repository.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// Reads a JSON Lines file under the fixtures folder, skipping blank lines.
pub fn read_jsonl(relative: &str) -> Vec<serde_json::Value> {
    let path = fixtures().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("{}:{}: invalid JSON: {err}", path.display(), i + 1))
        })
        .collect()
}
