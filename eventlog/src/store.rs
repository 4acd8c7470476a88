//! The open database file, replaced after a storage failure; and the log's health.
//!
//! Invariant: after redb meets an I/O failure (a full disk, most often) it refuses every later
//! operation on that handle (`PreviousIo`), although the file itself is fine: its last commit —
//! exactly what was acknowledged — is intact. So the writer closes the handle and opens the file
//! again ([`Store::reopen`]); readers always begin on whichever handle is current. While the
//! disk is full the writer refuses appends before touching the file ([`Space::enough`]), so the
//! reopened handle stays good and reads keep serving; once space is freed the next append is
//! written, without a restart.

use crate::error::{ReadError, storage};
use redb::{Database, ReadTransaction, ReadableDatabase, WriteTransaction};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Least time between two reopens a reader asks for while there is no handle.
const READER_REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The current handle on the log's file.
pub(crate) struct Store {
    path: PathBuf,
    db: RwLock<Option<Database>>,
    /// Successful reopens so far: the writer re-reads where the log ends when it changes.
    generation: AtomicU64,
    last_attempt: Mutex<Option<Instant>>,
}

impl Store {
    pub(crate) fn new(path: &Path, db: Database) -> Store {
        Store {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            generation: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
        }
    }

    /// A read transaction on the current handle. With none (a reopen failed), a reader tries
    /// one reopen itself, at most every [`READER_REOPEN_EVERY`].
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction, ReadError> {
        {
            let db = self.db.read().unwrap_or_else(|p| p.into_inner());
            if let Some(db) = db.as_ref() {
                return Ok(db.begin_read().map_err(storage)?);
            }
        }
        let due = {
            let mut last = self.last_attempt.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= READER_REOPEN_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due || !self.reopen_if_closed() {
            return Err(self.unavailable());
        }
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = db.as_ref().ok_or_else(|| self.unavailable())?;
        Ok(db.begin_read().map_err(storage)?)
    }

    /// Whether a handle is open.
    pub(crate) fn is_open(&self) -> bool {
        self.db.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Successful reopens so far.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Opens the file when no handle is; whether one is open after.
    fn reopen_if_closed(&self) -> bool {
        if self.is_open() {
            return true;
        }
        match self.reopen() {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, path = %self.path.display(), "the log cannot be opened again yet");
                false
            }
        }
    }

    pub(crate) fn begin_write(&self) -> Result<WriteTransaction, redb::Error> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner());
        let db = db
            .as_ref()
            .ok_or_else(|| redb::Error::Corrupted(self.unavailable().to_string()))?;
        db.begin_write().map_err(storage)
    }

    /// Closes the current handle and opens the file again: redb recovers it to its last commit.
    /// Read transactions still open on the old handle fail; new ones begin on the new handle.
    /// On failure there is no handle until a later reopen succeeds.
    pub(crate) fn reopen(&self) -> Result<(), redb::Error> {
        let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = db.take() {
            // A failed handle may not close cleanly; opening again is what recovers the file.
            if let Err(error) = old.close() {
                tracing::debug!(%error, "closing the failed log handle");
            }
        }
        let opened = crate::damage::contained(|| Database::create(&self.path))
            .map_err(redb::Error::Corrupted)?
            .map_err(storage)?;
        *db = Some(opened);
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::info!(path = %self.path.display(), "the log's file was opened again");
        Ok(())
    }

    fn unavailable(&self) -> ReadError {
        ReadError::Unavailable {
            path: self.path.display().to_string(),
        }
    }
}

/// Whether the log can take appends, and if not why. Changes are announced on
/// [`crate::EventLog::watch_health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends and reads are served.
    Serving,
    /// The disk is full: appends are refused ([`crate::AppendError::StorageFull`]), reads are
    /// served; the next append after space is freed is written.
    StorageFull {
        /// What the file system said.
        detail: String,
    },
    /// The storage failed otherwise (an I/O error): appends are refused until a reopen works.
    StorageFailing {
        /// What failed.
        detail: String,
    },
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Serving => write!(f, "serving"),
            Health::StorageFull { detail } => write!(f, "degraded: storage full ({detail})"),
            Health::StorageFailing { detail } => write!(f, "degraded: storage failing ({detail})"),
        }
    }
}

/// Whether `e` says the disk (or the user's quota) is full, looking through redb's wrapping.
pub(crate) fn is_full(e: &redb::Error) -> bool {
    let io = match e {
        redb::Error::Io(io) => io,
        _ => return false,
    };
    io.kind() == std::io::ErrorKind::StorageFull
        || io.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The free space of the file system holding the log.
pub(crate) struct Space {
    dir: PathBuf,
}

/// Room a batch needs beyond its own bytes: redb writes pages, not bytes, and a commit writes a
/// header and the allocator state too.
const SPACE_MARGIN: u64 = 4 << 20;

impl Space {
    pub(crate) fn of(path: &Path) -> Space {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Space { dir }
    }

    /// Whether the file system has room for a batch of `bytes` (when it cannot tell, yes: the
    /// write itself will say).
    pub(crate) fn enough(&self, bytes: u64) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(dir) = std::ffi::CString::new(self.dir.as_os_str().as_bytes()) else {
            return true;
        };
        // SAFETY: a valid C string and a zeroed statvfs for the call to fill.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(dir.as_ptr(), &mut stat) } != 0 {
            return true;
        }
        let free = (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64);
        free >= bytes.saturating_mul(2).saturating_add(SPACE_MARGIN)
    }
}
