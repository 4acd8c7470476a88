//! Why an audit could not be carried out. Every variant names where: the file or server, and the
//! position or line.

use std::path::PathBuf;

/// Why a replay operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log file could not be opened (missing, not a Streamfleet log, newer format, in use).
    #[error(transparent)]
    Open(#[from] streamfleet_eventlog::OpenError),
    /// Reading the log failed at a position (damaged record) or in storage.
    #[error("{source_name}: {error}")]
    Read {
        /// The file or server read.
        source_name: String,
        /// What failed, with the position when one record is to blame.
        error: streamfleet_eventlog::ReadError,
    },
    /// One event cannot be used (unreadable, newer schema, unknown type).
    #[error("{source_name}: position {position}: {problem}")]
    Event {
        /// The file or server read.
        source_name: String,
        /// The event's position.
        position: u64,
        /// What is wrong with it.
        problem: EventProblem,
    },
    /// The live node could not be reached or read.
    #[error("{source_name}: {error}")]
    Live {
        /// The server.
        source_name: String,
        /// What failed.
        error: String,
    },
    /// A projection store failed.
    #[error(transparent)]
    Store(#[from] streamfleet_projections::StoreError),
    /// Rebuilding projections failed.
    #[error(transparent)]
    Projections(#[from] streamfleet_projections::ProjectionsError),
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// An export or its manifest is not what `export` writes.
    #[error("{path}: {problem}")]
    Export {
        /// The export's data file or manifest.
        path: PathBuf,
        /// What, and where (line and position).
        problem: String,
    },
    /// The request itself does not make sense (an empty range, a moment before the log, …).
    #[error("{0}")]
    Request(String),
}

/// What is wrong with one event.
#[derive(Debug, thiserror::Error)]
pub enum EventProblem {
    /// Its JSON is not an event envelope.
    #[error("unreadable event: {0}")]
    Unreadable(String),
    /// Written with a newer schema than this build knows.
    #[error(
        "schema version {found} is newer than this build reads ({known}): use a newer streamfleet"
    )]
    NewerSchema {
        /// The event's schema version.
        found: u32,
        /// The newest this build reads.
        known: u32,
    },
    /// A type this build does not know, so the state it leads to cannot be computed.
    #[error("event type `{0}` is unknown to this build: use a newer streamfleet")]
    UnknownType(String),
}

impl ReplayError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> ReplayError {
        ReplayError::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn export(path: impl Into<PathBuf>, problem: impl Into<String>) -> ReplayError {
        ReplayError::Export {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
