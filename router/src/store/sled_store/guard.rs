//! Backpressure for the sled store: a reserve of free disk space, a limit on the bytes of
//! publishes waiting for the committer, and fast failure while the committer is stuck.
//!
//! Each check fails at once with an error the caller can retry, instead of letting
//! requests pile up in memory behind a store that cannot keep up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::store::StoreError;

const MIB: u64 = 1024 * 1024;
/// The unit of the byte budget's permits, so that a 10 MiB message needs 10,240 permits
/// rather than ten million.
const PERMIT_BYTES: u64 = 1024;
/// How long a reading of the free space is reused, in milliseconds.
const DISK_CHECK_MS: u64 = 250;
/// How long one commit may run before new writes are rejected, in milliseconds. The largest
/// group (1,024 publishes of up to 1,000 messages) takes a few seconds on a slow disk.
const STALL_MS: u64 = 30_000;

/// Limits of a [`SledStore`](super::SledStore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Free space, in bytes, that the data directory's file system keeps; publishes are
    /// rejected below it. Acknowledgements, which free space, still work.
    pub disk_reserve_bytes: u64,
    /// Bytes of messages that may wait for the committer at once; a publish beyond this is
    /// rejected.
    pub max_queued_bytes: u64,
}

impl Default for StoreOptions {
    /// Returns a 256 MiB disk reserve and 256 MiB of queued publishes.
    fn default() -> Self {
        StoreOptions {
            disk_reserve_bytes: 256 * MIB,
            max_queued_bytes: 256 * MIB,
        }
    }
}

fn now_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The shared state of the checks.
#[derive(Debug)]
pub(super) struct Guard {
    path: PathBuf,
    options: StoreOptions,
    available: AtomicU64,
    checked_ms: AtomicU64,
    budget: Arc<Semaphore>,
    /// When the committer started its current commit, in milliseconds since the Unix epoch,
    /// or 0 while it waits for writes.
    busy_since_ms: AtomicU64,
}

impl Guard {
    pub(super) fn new(path: &Path, options: StoreOptions) -> Self {
        let permits = usize::try_from(options.max_queued_bytes / PERMIT_BYTES)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Guard {
            path: path.to_owned(),
            options,
            available: AtomicU64::new(u64::MAX),
            checked_ms: AtomicU64::new(0),
            budget: Arc::new(Semaphore::new(permits)),
            busy_since_ms: AtomicU64::new(0),
        }
    }

    /// Records that the committer starts a commit now.
    pub(super) fn mark_busy(&self) {
        self.busy_since_ms.store(now_ms().max(1), Ordering::Relaxed);
    }

    /// Records that the committer finished its commit.
    pub(super) fn mark_idle(&self) {
        self.busy_since_ms.store(0, Ordering::Relaxed);
    }

    /// Fails when the committer has been on one commit for longer than [`STALL_MS`].
    pub(super) fn check_stall(&self) -> Result<(), StoreError> {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        let busy = now_ms().saturating_sub(since);
        if since != 0 && busy > STALL_MS {
            return Err(StoreError::Stalled {
                busy_secs: busy / 1000,
            });
        }
        Ok(())
    }

    /// Fails when the free space is below the reserve. A failed reading of the free space is
    /// logged and lets the write through, since the write itself reports a full disk.
    pub(super) fn check_disk(&self) -> Result<(), StoreError> {
        let now = now_ms();
        if now.saturating_sub(self.checked_ms.load(Ordering::Relaxed)) > DISK_CHECK_MS {
            self.checked_ms.store(now, Ordering::Relaxed);
            match fs4::available_space(&self.path) {
                Ok(bytes) => self.available.store(bytes, Ordering::Relaxed),
                Err(err) => {
                    warn!(path = %self.path.display(), error = %err, "reading the free disk space failed");
                    self.available.store(u64::MAX, Ordering::Relaxed);
                }
            }
        }
        let available = self.available.load(Ordering::Relaxed);
        if available < self.options.disk_reserve_bytes {
            return Err(StoreError::DiskFull {
                path: self.path.clone(),
                available_mib: available / MIB,
                reserve_mib: self.options.disk_reserve_bytes / MIB,
            });
        }
        Ok(())
    }

    /// Takes `bytes` from the budget of queued publishes, until the returned permit drops.
    pub(super) fn reserve(&self, bytes: u64) -> Result<OwnedSemaphorePermit, StoreError> {
        let permits = u32::try_from(bytes.div_ceil(PERMIT_BYTES).max(1)).unwrap_or(u32::MAX);
        self.budget
            .clone()
            .try_acquire_many_owned(permits)
            .map_err(|_| {
                let limit = self.options.max_queued_bytes;
                let free = self.budget.available_permits() as u64 * PERMIT_BYTES;
                StoreError::Overloaded {
                    queued_mib: limit.saturating_sub(free) / MIB,
                    limit_mib: limit / MIB,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(options: StoreOptions) -> Guard {
        Guard::new(&std::env::temp_dir(), options)
    }

    #[test]
    fn disk_reserve_above_free_space_rejects() {
        let guard = guard(StoreOptions {
            disk_reserve_bytes: u64::MAX,
            ..StoreOptions::default()
        });
        let err = guard.check_disk().expect_err("no disk has that much free");
        assert!(matches!(err, StoreError::DiskFull { .. }), "{err}");
        assert!(err.to_string().contains("free disk space"), "{err}");
    }

    #[test]
    fn zero_reserve_accepts() {
        let guard = guard(StoreOptions {
            disk_reserve_bytes: 0,
            ..StoreOptions::default()
        });
        assert!(guard.check_disk().is_ok());
    }

    #[test]
    fn budget_rejects_beyond_limit() {
        let guard = guard(StoreOptions {
            max_queued_bytes: 4 * MIB,
            ..StoreOptions::default()
        });
        let first = guard.reserve(3 * MIB).expect("within the limit");
        let err = guard.reserve(2 * MIB).expect_err("beyond the limit");
        assert!(
            matches!(
                err,
                StoreError::Overloaded {
                    queued_mib: 3,
                    limit_mib: 4
                }
            ),
            "{err}"
        );
        drop(first);
        assert!(
            guard.reserve(2 * MIB).is_ok(),
            "released bytes are reusable"
        );
    }

    #[test]
    fn long_commit_reports_stall() {
        let guard = guard(StoreOptions::default());
        assert!(guard.check_stall().is_ok(), "idle");
        guard
            .busy_since_ms
            .store(now_ms() - 1000, Ordering::Relaxed);
        assert!(guard.check_stall().is_ok(), "busy for 1 s");
        guard
            .busy_since_ms
            .store(now_ms() - STALL_MS - 1000, Ordering::Relaxed);
        let err = guard.check_stall().expect_err("busy for too long");
        assert!(
            matches!(err, StoreError::Stalled { busy_secs: 31 }),
            "{err}"
        );
    }
}
