//! Deployment records: one JSON file per function under `<data dir>/functions/records`,
//! written atomically (a temporary file, fsync, rename), and the source copies under
//! `<data dir>/functions/sources/NAME/vVERSION`.
//!
//! A record contains the `--set-env-vars` values, which are often secrets, so record files
//! are written with mode 0600 and their folder gets mode 0700, for the server's user only.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::spec::DeploySpec;
use super::wiring::Wiring;

/// A deployed version of a function, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionRecord {
    /// The settings of the deploy.
    pub(crate) spec: DeploySpec,
    /// 1 for the first deploy, one more for each redeploy.
    pub(crate) version: u64,
    /// When this version was deployed, RFC 3339.
    pub(crate) update_time: String,
    /// The resources that the trigger created.
    #[serde(default)]
    pub(crate) wiring: Wiring,
}

impl FunctionRecord {
    /// Returns the record of a new version, deployed now, not wired yet.
    pub(crate) fn new(spec: DeploySpec, version: u64) -> Self {
        FunctionRecord {
            spec,
            version,
            update_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            wiring: Wiring::default(),
        }
    }
}

fn records_dir(dir: &Path) -> PathBuf {
    dir.join("records")
}

/// Returns the folder of a function's source copies.
pub(crate) fn sources_dir(dir: &Path, function: &str) -> PathBuf {
    dir.join("sources").join(function)
}

/// Returns the folder of a version's source copy.
pub(crate) fn source_dir(dir: &Path, function: &str, version: u64) -> PathBuf {
    sources_dir(dir, function).join(format!("v{version}"))
}

/// Writes a function's record, replacing the previous one in one rename.
///
/// # Errors
///
/// Fails when the file cannot be written.
pub(crate) async fn write(dir: &Path, record: &FunctionRecord) -> anyhow::Result<()> {
    let folder = records_dir(dir);
    let path = folder.join(format!("{}.json", record.spec.name));
    let bytes = serde_json::to_vec_pretty(record).context("failed to encode the record")?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        create_private_dir(&folder)
            .with_context(|| format!("failed to create {}", folder.display()))?;
        let temporary = path.with_extension("json.tmp");
        write_private_file(&temporary, &bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .with_context(|| format!("failed to write {}", path.display()))
    })
    .await
    .context("the record write task failed")?
}

/// Creates `folder` with mode 0700, or sets that mode on an existing one, which an older
/// sluice created with the default mode.
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)?;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to a new file at `path` with mode 0600 and syncs it. A file left by an
/// interrupted write is replaced.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Deletes a function's record and source copies.
///
/// # Errors
///
/// Fails when the record exists but cannot be deleted.
pub(crate) async fn remove(dir: &Path, function: &str) -> anyhow::Result<()> {
    let path = records_dir(dir).join(format!("{function}.json"));
    match tokio::fs::remove_file(&path).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(err).with_context(|| format!("failed to delete {}", path.display()))
        }
    }
    let _ = tokio::fs::remove_dir_all(dir.join("sources").join(function)).await;
    Ok(())
}

/// Reads every record, by name.
///
/// # Errors
///
/// Fails when the folder cannot be read or a record is not valid, naming the file.
pub(crate) async fn read_all(dir: &Path) -> anyhow::Result<Vec<FunctionRecord>> {
    let folder = records_dir(dir);
    let mut entries = match tokio::fs::read_dir(&folder).await {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(err).with_context(|| format!("failed to read {}", folder.display()))
        }
    };
    let mut records = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if path.extension().is_none_or(|extension| extension != "json") {
            continue;
        }
        let bytes = tokio::fs::read(&path)
            .await
            .with_context(|| format!("failed to read {}", path.display()))?;
        let record: FunctionRecord = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not a valid function record; delete it to forget that function",
                path.display()
            )
        })?;
        records.push(record);
    }
    records.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::server::functions::spec::{SignatureType, Trigger};

    fn record() -> FunctionRecord {
        let spec = DeploySpec {
            name: "thumbs".to_owned(),
            source: PathBuf::from("/srv/thumbs"),
            runtime: "python312".to_owned(),
            entry_point: "on_upload".to_owned(),
            trigger: Trigger::Topic {
                topic: "offers".to_owned(),
                event_type: None,
            },
            signature_type: SignatureType::Event,
            retry: false,
            max_instances: None,
            timeout_secs: 60,
            max_event_age_secs: 60,
            env: BTreeMap::from([("API_TOKEN".to_owned(), "secret".to_owned())]),
        };
        FunctionRecord::new(spec, 1)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[tokio::test]
    async fn record_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = records_dir(dir.path());
        // A folder that an older sluice created with the default mode.
        std::fs::create_dir_all(&folder).expect("mkdir");
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        write(dir.path(), &record()).await.expect("write");
        write(dir.path(), &record()).await.expect("write again");

        assert_eq!(mode(&folder), 0o700, "the records folder");
        assert_eq!(mode(&folder.join("thumbs.json")), 0o600, "the record file");
        let read = read_all(dir.path()).await.expect("read");
        assert_eq!(read, vec![record_with_time(&read[0])]);
    }

    /// Returns the test record with the update time of `stored`.
    fn record_with_time(stored: &FunctionRecord) -> FunctionRecord {
        FunctionRecord {
            update_time: stored.update_time.clone(),
            ..record()
        }
    }
}
