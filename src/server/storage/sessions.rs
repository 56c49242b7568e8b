//! The open sessions of resumable uploads, with their bytes spooled to files.
//!
//! A session starts with [`Sessions::create`], which returns its id. Each request to it
//! takes the session out of the table with [`Sessions::checkout`] and returns it when the
//! [`Lease`] drops, so two requests never write one session's file at once. The bytes
//! received so far are in `<data dir>/resumable-uploads/<id>`; the file is removed when the
//! session finishes, is cancelled or expires.
//!
//! Three limits bound what clients can hold open: at most [`SessionLimits::max_sessions`]
//! sessions, at most [`SessionLimits::max_spooled_bytes`] bytes in all spool files together,
//! and [`SessionLimits::idle_timeout`] since the last request before a session expires.
//! Expired sessions are removed when the next session is created.
//!
//! NOTE: sessions live in memory, so a restart of the server ends them all. Cloud Storage
//! keeps a session for a week.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::new_object::NewObject;

/// The bounds on open sessions.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionLimits {
    /// Sessions that may be open at once.
    pub(super) max_sessions: usize,
    /// Bytes that the spool files of all open sessions may hold together.
    pub(super) max_spooled_bytes: u64,
    /// Time without a request after which a session expires.
    pub(super) idle_timeout: Duration,
}

impl SessionLimits {
    /// Sessions open at once by default.
    const DEFAULT_MAX_SESSIONS: usize = 64;
    /// Idle time before a session expires by default: one hour.
    const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
    /// The spool files may hold this many full-size uploads together by default.
    const DEFAULT_SPOOLED_UPLOADS: u64 = 8;

    /// Returns the limits for a server whose uploads may have up to `max_upload_bytes`.
    pub(super) fn for_upload_limit(max_upload_bytes: u64) -> Self {
        Self {
            max_sessions: Self::DEFAULT_MAX_SESSIONS,
            max_spooled_bytes: max_upload_bytes.saturating_mul(Self::DEFAULT_SPOOLED_UPLOADS),
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// One resumable upload in progress.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) bucket: String,
    /// The object's name, content type, metadata and the checksums the client gave.
    pub(super) object: NewObject,
    /// The object's size, once the client has sent it.
    pub(super) total: Option<u64>,
    /// Bytes received and written to the spool file, from the start of the object.
    pub(super) received: u64,
    /// The spool file.
    pub(super) path: PathBuf,
}

/// An error that prevents creating or using a session.
#[derive(Debug)]
pub(super) enum SessionError {
    /// No open session has this id.
    NotFound(String),
    /// Another request has the session checked out.
    Busy(String),
    /// The limit of open sessions is reached.
    TooManySessions(usize),
    /// The spool files are full.
    SpoolFull { spooled: u64, limit: u64 },
    /// A spool file operation failed.
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(id) => write!(
                f,
                "upload session {id:?} not found: it finished, was cancelled, expired after an \
                 hour without requests, or the server restarted; start a new resumable upload"
            ),
            Self::Busy(id) => write!(
                f,
                "another request is writing to upload session {id:?}; wait for it to end, then \
                 query the offset with Content-Range: bytes */*"
            ),
            Self::TooManySessions(limit) => write!(
                f,
                "too many open resumable uploads ({limit}): finish or cancel some, or wait an \
                 hour for idle ones to expire"
            ),
            Self::SpoolFull { spooled, limit } => write!(
                f,
                "the open resumable uploads already hold {spooled} of the {limit} bytes that \
                 the server spools at once: finish or cancel some uploads and retry this request"
            ),
            Self::Io {
                operation,
                path,
                source,
            } => write!(
                f,
                "the upload spool file {} could not be {operation}: {source}",
                path.display()
            ),
        }
    }
}

/// The table of open sessions. Cheap to share through an [`Arc`].
#[derive(Debug)]
pub(super) struct Sessions {
    dir: PathBuf,
    limits: SessionLimits,
    table: Mutex<Table>,
    /// Numbers the sessions; the id hashes the number with `id_keys`.
    next_number: AtomicU64,
    /// Random keys, so that session ids cannot be guessed from one another.
    id_keys: RandomState,
}

#[derive(Debug, Default)]
struct Table {
    slots: HashMap<String, Slot>,
    /// Bytes counted against [`SessionLimits::max_spooled_bytes`]: the bytes received by
    /// every session plus those reserved by requests still writing.
    spooled: u64,
}

#[derive(Debug)]
struct Slot {
    /// The session, or `None` while a request has it checked out.
    session: Option<Session>,
    last_used: Instant,
    /// This session's share of [`Table::spooled`].
    spooled: u64,
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Every change to the table is complete before the lock is released, so a panic in
    // another thread leaves it consistent.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sessions {
    /// Returns an empty table that spools to `dir`, and removes the spool files that an
    /// earlier run of the server left there.
    pub(super) fn new(dir: PathBuf, limits: SessionLimits) -> Self {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => debug!(path = %dir.display(), "removed the spool files of an earlier run"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                warn!(path = %dir.display(), error = %err, "removing old upload spool files failed")
            }
        }
        Self {
            dir,
            limits,
            table: Mutex::new(Table::default()),
            next_number: AtomicU64::new(0),
            id_keys: RandomState::new(),
        }
    }

    /// Opens a session for an object of `bucket`, with an empty spool file, and returns its id.
    ///
    /// # Errors
    ///
    /// [`SessionError::TooManySessions`] at the limit, after expired sessions are removed,
    /// and [`SessionError::Io`] when the spool file cannot be created.
    pub(super) async fn create(
        &self,
        bucket: &str,
        object: NewObject,
        total: Option<u64>,
    ) -> Result<String, SessionError> {
        self.remove_expired().await;
        self.check_capacity()?;
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{:016x}{:016x}",
            self.id_keys.hash_one((number, 0u8)),
            self.id_keys.hash_one((number, 1u8))
        );

        let path = self.dir.join(&id);
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io_error("created", &self.dir))?;
        tokio::fs::File::create(&path)
            .await
            .map_err(io_error("created", &path))?;
        let session = Session {
            bucket: bucket.to_owned(),
            object,
            total,
            received: 0,
            path: path.clone(),
        };

        // Another request may have opened a session since the check above.
        let inserted = {
            let mut table = lock(&self.table);
            let fits = table.slots.len() < self.limits.max_sessions;
            if fits {
                let slot = Slot {
                    session: Some(session),
                    last_used: Instant::now(),
                    spooled: 0,
                };
                table.slots.insert(id.clone(), slot);
            }
            fits
        };
        if !inserted {
            remove_file(&path).await;
            return Err(SessionError::TooManySessions(self.limits.max_sessions));
        }
        Ok(id)
    }

    fn check_capacity(&self) -> Result<(), SessionError> {
        if lock(&self.table).slots.len() >= self.limits.max_sessions {
            return Err(SessionError::TooManySessions(self.limits.max_sessions));
        }
        Ok(())
    }

    /// Takes session `id` out of the table until the returned lease drops.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotFound`] for an unknown or expired id, and [`SessionError::Busy`]
    /// while another request has the session checked out.
    pub(super) fn checkout(self: &Arc<Self>, id: &str) -> Result<Lease, SessionError> {
        let mut table = lock(&self.table);
        let timeout = self.limits.idle_timeout;
        let slot = table
            .slots
            .get_mut(id)
            .filter(|slot| slot.session.is_none() || slot.last_used.elapsed() < timeout)
            .ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        let session = slot
            .session
            .take()
            .ok_or_else(|| SessionError::Busy(id.to_owned()))?;
        Ok(Lease {
            sessions: self.clone(),
            id: id.to_owned(),
            session: Some(session),
        })
    }

    /// Removes the sessions idle for longer than the timeout, and their spool files.
    async fn remove_expired(&self) {
        let expired: Vec<(String, PathBuf)> = {
            let mut table = lock(&self.table);
            let timeout = self.limits.idle_timeout;
            let ids: Vec<String> = table
                .slots
                .iter()
                .filter(|(_, slot)| slot.session.is_some() && slot.last_used.elapsed() >= timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| {
                    let slot = table.remove(&id)?;
                    Some((id, slot.session?.path))
                })
                .collect()
        };
        for (id, path) in expired {
            debug!(upload_id = %id, "resumable upload expired");
            remove_file(&path).await;
        }
    }

    #[cfg(test)]
    fn open_sessions(&self) -> usize {
        lock(&self.table).slots.len()
    }

    #[cfg(test)]
    fn spooled(&self) -> u64 {
        lock(&self.table).spooled
    }
}

impl Table {
    fn remove(&mut self, id: &str) -> Option<Slot> {
        let slot = self.slots.remove(id)?;
        self.spooled -= slot.spooled;
        Some(slot)
    }
}

/// A session taken out of the table by one request. Dropping it returns the session, with
/// what the request changed, and counts the request as the session's last use.
#[derive(Debug)]
pub(super) struct Lease {
    sessions: Arc<Sessions>,
    id: String,
    /// `None` once the session ended.
    session: Option<Session>,
}

impl Lease {
    /// Returns the session id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// Returns the session.
    pub(super) fn session(&self) -> &Session {
        self.session
            .as_ref()
            .expect("a lease contains its session until `end` consumes the lease")
    }

    /// Returns the session to change.
    pub(super) fn session_mut(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("a lease contains its session until `end` consumes the lease")
    }

    /// Counts `bytes` more against the spool limit for a request about to write them. The
    /// count is set back to the bytes received when the lease drops.
    ///
    /// # Errors
    ///
    /// [`SessionError::SpoolFull`] when the bytes do not fit.
    pub(super) fn reserve(&mut self, bytes: u64) -> Result<(), SessionError> {
        let limit = self.sessions.limits.max_spooled_bytes;
        let mut table = lock(&self.sessions.table);
        if table.spooled.saturating_add(bytes) > limit {
            return Err(SessionError::SpoolFull {
                spooled: table.spooled,
                limit,
            });
        }
        table.spooled += bytes;
        if let Some(slot) = table.slots.get_mut(&self.id) {
            slot.spooled += bytes;
        }
        Ok(())
    }

    /// Ends the session: removes it from the table and deletes its spool file.
    pub(super) async fn end(mut self) {
        let session = self.session.take();
        lock(&self.sessions.table).remove(&self.id);
        if let Some(session) = session {
            remove_file(&session.path).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let mut table = lock(&self.sessions.table);
        let table = &mut *table;
        if let Some(slot) = table.slots.get_mut(&self.id) {
            table.spooled = table.spooled - slot.spooled + session.received;
            slot.spooled = session.received;
            slot.last_used = Instant::now();
            slot.session = Some(session);
        }
    }
}

async fn remove_file(path: &Path) {
    if let Err(err) = tokio::fs::remove_file(path).await {
        if err.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %err, "removing an upload spool file failed");
        }
    }
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SessionError {
    let path = path.to_owned();
    move |source| SessionError::Io {
        operation,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle time before a test session expires.
    const IDLE_TIMEOUT: Duration = Duration::from_millis(300);

    fn sessions(dir: &Path, max_sessions: usize) -> Arc<Sessions> {
        let limits = SessionLimits {
            max_sessions,
            max_spooled_bytes: 100,
            idle_timeout: IDLE_TIMEOUT,
        };
        Arc::new(Sessions::new(dir.join("spool"), limits))
    }

    #[tokio::test]
    async fn session_count_is_bounded() {
        let temp = tempfile::tempdir().expect("temp dir");
        let sessions = sessions(temp.path(), 2);
        for _ in 0..2 {
            sessions
                .create("b", NewObject::default(), None)
                .await
                .expect("below the limit");
        }
        let err = sessions
            .create("b", NewObject::default(), None)
            .await
            .expect_err("at the limit");
        assert!(matches!(err, SessionError::TooManySessions(2)), "{err}");
    }

    #[tokio::test]
    async fn spool_bytes_are_bounded_and_released() {
        let temp = tempfile::tempdir().expect("temp dir");
        let sessions = sessions(temp.path(), 4);
        let id = sessions
            .create("b", NewObject::default(), None)
            .await
            .expect("created");
        let mut lease = sessions.checkout(&id).expect("open");
        lease.reserve(60).expect("fits");
        lease.session_mut().received = 60;
        drop(lease);
        assert_eq!(sessions.spooled(), 60);

        let other = sessions
            .create("b", NewObject::default(), None)
            .await
            .expect("created");
        let mut lease = sessions.checkout(&other).expect("open");
        let err = lease.reserve(41).expect_err("over the limit");
        assert!(
            matches!(
                err,
                SessionError::SpoolFull {
                    spooled: 60,
                    limit: 100
                }
            ),
            "{err}"
        );
        lease.reserve(40).expect("fits exactly");
        // Nothing was written, so the reservation is released.
        drop(lease);
        assert_eq!(sessions.spooled(), 60);

        sessions.checkout(&id).expect("open").end().await;
        assert_eq!(sessions.spooled(), 0);
        assert_eq!(sessions.open_sessions(), 1);
    }

    #[tokio::test]
    async fn held_session_is_busy() {
        let temp = tempfile::tempdir().expect("temp dir");
        let sessions = sessions(temp.path(), 4);
        let id = sessions
            .create("b", NewObject::default(), None)
            .await
            .expect("created");
        let lease = sessions.checkout(&id).expect("open");
        let err = sessions.checkout(&id).expect_err("held");
        assert!(matches!(err, SessionError::Busy(_)), "{err}");
        drop(lease);
        sessions.checkout(&id).expect("returned");
        let err = sessions.checkout("nope").expect_err("unknown");
        assert!(matches!(err, SessionError::NotFound(_)), "{err}");
    }

    #[tokio::test]
    async fn idle_sessions_expire() {
        let temp = tempfile::tempdir().expect("temp dir");
        let sessions = sessions(temp.path(), 1);
        let id = sessions
            .create("b", NewObject::default(), None)
            .await
            .expect("created");
        let path = sessions.checkout(&id).expect("open").session().path.clone();
        assert!(path.exists());

        tokio::time::sleep(IDLE_TIMEOUT * 2).await;
        let err = sessions.checkout(&id).expect_err("expired");
        assert!(matches!(err, SessionError::NotFound(_)), "{err}");
        // Creating the next session removes the expired one, so the limit of 1 allows it.
        sessions
            .create("b", NewObject::default(), None)
            .await
            .expect("the expired session no longer counts");
        assert!(!path.exists());
        assert_eq!(sessions.open_sessions(), 1);
    }
}
