//! A record of how far each topic's sequence had reached when the store last flushed, kept
//! beside sled's files in `sluice-manifest.json`.
//!
//! sled treats what it cannot read in its log as a torn write and opens without it. After a
//! crash that only drops writes that were never acknowledged, but a log damaged in another
//! way (truncated, overwritten) opens with acknowledged messages missing. Comparing the
//! reopened store with the manifest turns that silent loss into a start-up error.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::store::StoreError;

/// The manifest's file name inside the data directory.
pub(super) const FILE_NAME: &str = "sluice-manifest.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// The last sequence number of each topic, by topic id, at a moment when all of it was
    /// flushed.
    last_seq: BTreeMap<u32, u64>,
}

fn file(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Fails when the store ends before the manifest says it reached. A missing manifest, as in
/// a data directory from before it existed, passes.
pub(super) fn check(
    dir: &Path,
    last_seq: &std::collections::HashMap<u32, u64>,
    topic_name: impl Fn(u32) -> Option<String>,
) -> Result<(), StoreError> {
    let path = file(dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StoreError::Database(sled::Error::Io(err))),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|err| StoreError::Corrupt {
        key: FILE_NAME.to_owned(),
        reason: format!(
            "{err}; delete {} to start without the check",
            path.display()
        ),
    })?;
    for (&topic, &recorded) in &manifest.last_seq {
        let found = last_seq.get(&topic).copied().unwrap_or(0);
        if found < recorded {
            return Err(StoreError::Lost {
                path: dir.to_owned(),
                topic: topic_name(topic).unwrap_or_else(|| format!("with id {topic}")),
                recorded,
                found,
            });
        }
    }
    Ok(())
}

/// Writes the manifest atomically: a temporary file, synced, then renamed over the old one.
pub(super) fn write(dir: &Path, last_seq: &std::collections::HashMap<u32, u64>) {
    let manifest = Manifest {
        last_seq: last_seq.iter().map(|(&topic, &seq)| (topic, seq)).collect(),
    };
    let path = file(dir);
    let temporary = dir.join(format!("{FILE_NAME}.tmp"));
    let written = serde_json::to_vec(&manifest)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            let mut out = std::fs::File::create(&temporary)?;
            out.write_all(&bytes)?;
            out.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(err) = written {
        warn!(path = %path.display(), error = %err, "writing the store manifest failed");
    }
}
