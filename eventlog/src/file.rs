//! A log file opened read-only, for auditors: a copy of the log, or the file of a stopped node.
//!
//! Invariant: nothing here writes to the file it was given. A file that redb says needs recovery
//! (copied while its node was writing, or left by a crash) is recovered in a private temporary
//! copy, which is deleted when the [`LogFile`] drops; the original is never touched.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use streamfleet_eventlog::{AppendRequest, Config, EventLog, ExpectedVersion, LogFile, NewEvent};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("log.redb");
//! let log = EventLog::open(&path, Config::default()).unwrap();
//! let body = br#"{"type":"NodeFailed","subject":"node-1","data":{}}"#.to_vec();
//! let event = NewEvent { id: uuid::Uuid::now_v7(), event_type: "NodeFailed".into(), body };
//! let request = AppendRequest {
//!     stream: "node-1".into(),
//!     expected: ExpectedVersion::NoStream,
//!     command_id: None,
//!     command_digest: None,
//!     events: vec![event],
//! };
//! log.append(request).await.unwrap();
//! drop(log);
//!
//! let file = LogFile::open(&path).unwrap();
//! assert_eq!(file.head().unwrap(), 1);
//! assert_eq!(file.verify(1, None, &mut |_| {}).unwrap().events, 1);
//! let first = file.records(1, None).unwrap().next().unwrap().unwrap();
//! assert_eq!(first.stream, "node-1");
//! # }
//! ```

use crate::error::{OpenError, ReadError, VerifyError, storage};
use crate::record::StoredEvent;
use crate::tables::{EVENTS, FORMAT_KEY, FORMAT_VERSION, META, format_value};
use crate::verify::{VerifyReport, verify_table};
use redb::{
    Database, DatabaseError, ReadOnlyDatabase, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    ReadableTable, StorageError, TableError,
};
use std::path::{Path, PathBuf};

/// A Streamfleet log file, open read-only.
pub struct LogFile {
    path: PathBuf,
    db: Opened,
    /// Set when the file needed recovery: the private copy that was recovered instead.
    recovered: Option<RecoveredCopy>,
}

enum Opened {
    ReadOnly(ReadOnlyDatabase),
    Recovered(Database),
}

/// A temporary copy, deleted on drop.
struct RecoveredCopy(PathBuf);

impl Drop for RecoveredCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl LogFile {
    /// Opens the log at `path` read-only and checks that it is a Streamfleet log of a format this
    /// build reads. Fails with [`OpenError::InUse`] while a node has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<LogFile, OpenError> {
        let path = path.as_ref().to_path_buf();
        crate::damage::contained(|| Self::open_file(path.clone())).unwrap_or_else(|why| {
            Err(OpenError::Unreadable {
                path: path.display().to_string(),
                detail: crate::damage::advice(&why),
            })
        })
    }

    fn open_file(path: PathBuf) -> Result<LogFile, OpenError> {
        let shown = path.display().to_string();
        match std::fs::metadata(&path) {
            Err(e) => {
                return Err(OpenError::Database {
                    path: shown,
                    source: redb::Error::Io(e),
                });
            }
            Ok(m) if !m.is_file() => {
                return Err(OpenError::NotAnEventLog {
                    path: shown,
                    expected: FORMAT_VERSION,
                    found: Some("a directory or special file".into()),
                });
            }
            Ok(_) => {}
        }
        let (db, recovered) = match ReadOnlyDatabase::open(&path) {
            Ok(db) => (Opened::ReadOnly(db), None),
            Err(DatabaseError::RepairAborted) => {
                let copy = recover_copy(&path)?;
                let db = Database::open(&copy.0).map_err(|e| open_error(&shown, e))?;
                (Opened::Recovered(db), Some(copy))
            }
            Err(e) => return Err(open_error(&shown, e)),
        };
        let file = LogFile {
            path,
            db,
            recovered,
        };
        file.check_format()?;
        Ok(file)
    }

    /// The file as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file needed recovery (it was copied while a node wrote it, or its node
    /// crashed); it was then read from a recovered private copy.
    pub fn was_recovered(&self) -> bool {
        self.recovered.is_some()
    }

    fn begin_read(&self) -> Result<ReadTransaction, redb::Error> {
        match &self.db {
            Opened::ReadOnly(db) => db.begin_read().map_err(storage),
            Opened::Recovered(db) => db.begin_read().map_err(storage),
        }
    }

    fn events(&self) -> Result<ReadOnlyTable<u64, &'static [u8]>, ReadError> {
        let txn = self.begin_read()?;
        Ok(txn.open_table(EVENTS).map_err(storage)?)
    }

    fn check_format(&self) -> Result<(), OpenError> {
        let shown = self.path.display().to_string();
        let not_a_log = |found| format_problem(&shown, found);
        let txn = self.begin_read().map_err(|e| OpenError::Database {
            path: shown.clone(),
            source: e,
        })?;
        let meta = match txn.open_table(META) {
            Ok(meta) => meta,
            Err(TableError::TableDoesNotExist(_)) => return Err(not_a_log(None)),
            Err(e) => return Err(not_a_log(Some(format!("an unreadable meta table: {e}")))),
        };
        let found = meta
            .get(FORMAT_KEY)
            .map_err(|e| OpenError::Database {
                path: shown.clone(),
                source: storage(e),
            })?
            .map(|v| v.value().to_string());
        if found.as_deref() != Some(format_value().as_str()) {
            return Err(format_problem(&shown, found));
        }
        match txn.open_table(EVENTS) {
            Ok(_) => Ok(()),
            Err(e) => Err(not_a_log(Some(format!("no readable events table: {e}")))),
        }
    }

    /// The last position in the file (0: empty).
    pub fn head(&self) -> Result<u64, ReadError> {
        Ok(self
            .events()?
            .last()
            .map_err(storage)?
            .map_or(0, |(k, _)| k.value()))
    }

    /// The records from `from` to `to` (inclusive; `None`: the last), in position order, each
    /// checked against its CRC (a bad one is an `Err` naming its position; the chain is checked
    /// by [`LogFile::verify`]). Reads one snapshot of the file.
    pub fn records(&self, from: u64, to: Option<u64>) -> Result<Records, ReadError> {
        let range = self
            .events()?
            .range(from.max(1)..=to.unwrap_or(u64::MAX))
            .map_err(storage)?;
        Ok(Records { range })
    }

    /// Calls `each` with the raw bytes of every record from `from` to `to`, in position order,
    /// without decoding them; stops early when it returns `false`. For tools and baselines that
    /// need the bytes as stored.
    pub fn for_each_raw(
        &self,
        from: u64,
        to: Option<u64>,
        mut each: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), ReadError> {
        let events = self.events()?;
        for item in events
            .range(from.max(1)..=to.unwrap_or(u64::MAX))
            .map_err(storage)?
        {
            let (k, v) = item.map_err(storage)?;
            if !each(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }

    /// Verifies `from..=to` (`None`: the last position) like [`crate::EventLog::verify`];
    /// `progress` gets the position reached every [`crate::PROGRESS_EVERY`] events.
    pub fn verify(
        &self,
        from: u64,
        to: Option<u64>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, VerifyError> {
        let events = self.events().map_err(|e| match e {
            ReadError::Storage(s) => VerifyError::Storage(s),
            other => VerifyError::Storage(redb::Error::Corrupted(other.to_string())),
        })?;
        verify_table(&events, from, to, progress)
    }
}

/// The records of a [`LogFile`] range; see [`LogFile::records`].
pub struct Records {
    range: redb::Range<'static, u64, &'static [u8]>,
}

impl Iterator for Records {
    type Item = Result<StoredEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.range.next()?;
        Some(match item {
            Err(e) => Err(ReadError::Storage(e.into())),
            Ok((k, v)) => {
                let position = k.value();
                StoredEvent::decode(position, v.value())
                    .map_err(|problem| ReadError::Corrupt { position, problem })
            }
        })
    }
}

fn open_error(shown: &str, e: DatabaseError) -> OpenError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
            path: shown.to_string(),
        },
        // redb reports a file that is not a redb database (wrong magic number, cut short) as
        // corrupted storage or an I/O error past its end.
        DatabaseError::Storage(StorageError::Corrupted(detail)) => OpenError::Unreadable {
            path: shown.to_string(),
            detail,
        },
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            OpenError::Unreadable {
                path: shown.to_string(),
                detail: "shorter than a redb header (truncated, or not a log)".into(),
            }
        }
        other => OpenError::Database {
            path: shown.to_string(),
            source: storage(other),
        },
    }
}

/// Copies `path` to a fresh temporary file, for redb to recover there.
fn recover_copy(path: &Path) -> Result<RecoveredCopy, OpenError> {
    let copy = RecoveredCopy(std::env::temp_dir().join(format!(
        "streamfleet-recovered-{}.redb",
        uuid::Uuid::now_v7().simple()
    )));
    std::fs::copy(path, &copy.0).map_err(|e| OpenError::Database {
        path: path.display().to_string(),
        source: redb::Error::Io(e),
    })?;
    Ok(copy)
}

/// Why a file whose format marker is `found` (not this build's) cannot be read: a newer format,
/// or not a Streamfleet log at all.
pub(crate) fn format_problem(path: &str, found: Option<String>) -> OpenError {
    match found
        .as_deref()
        .and_then(|f| f.strip_prefix("streamfleet-eventlog/"))
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(newer) if newer > FORMAT_VERSION => OpenError::NewerFormat {
            path: path.to_string(),
            found: newer,
            known: FORMAT_VERSION,
        },
        _ => OpenError::NotAnEventLog {
            path: path.to_string(),
            expected: FORMAT_VERSION,
            found,
        },
    }
}
