//! Every way the log can refuse or fail, as precise enums.

use std::sync::Arc;
use streamfleet_bus_schemas::ExpectedVersion;

/// Why an append recorded nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The stream was not at the expected version.
    #[error("stream `{stream}` is at version {actual}, expected {expected:?}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What was expected.
        expected: ExpectedVersion,
        /// Where it is (0: no stream).
        actual: u64,
    },
    /// The command id was recorded before, for a command that said something else.
    #[error("command id {command_id} was already used by a different `{original_type}` command")]
    CommandIdReused {
        /// The id.
        command_id: uuid::Uuid,
        /// The type of the command first recorded under it.
        original_type: String,
    },
    /// One event's body is over the configured limit.
    #[error("event {index} of the append is {size} bytes, over the limit of {limit}")]
    EventTooLarge {
        /// Which event of the append.
        index: usize,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More events in one append than allowed.
    #[error("{count} events in one append, over the limit of {limit}")]
    TooManyEvents {
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An append of no events.
    #[error("an append needs at least one event")]
    Empty,
    /// The stream id cannot be used.
    #[error("stream id `{stream}` is invalid: {reason}")]
    InvalidStreamId {
        /// The id.
        stream: String,
        /// Why.
        reason: &'static str,
    },
    /// An event body is not a non-empty JSON object.
    #[error("event {index} body is not a non-empty JSON object")]
    BodyNotObject {
        /// Which event.
        index: usize,
    },
    /// The disk is full; nothing was recorded. Reads are still served, and once space is freed
    /// the next append is written (see [`crate::Health`]).
    #[error("storage full, nothing recorded: {detail}")]
    StorageFull {
        /// What the file system said.
        detail: String,
    },
    /// redb failed; the whole batch was rolled back.
    #[error("storage failure, nothing recorded: {0}")]
    Storage(Arc<redb::Error>),
    /// The log is closed.
    #[error("the log is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// redb failed.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
    /// A stored record is damaged.
    #[error("record at position {position} is corrupt: {problem}")]
    Corrupt {
        /// Where.
        position: u64,
        /// What.
        problem: Corruption,
    },
    /// The log's file is being opened again after a storage failure and could not be yet.
    #[error("the log {path} is reopening after a storage failure; try again")]
    Unavailable {
        /// The file.
        path: String,
    },
    /// The index points at a position with no record.
    #[error("index points at missing position {position}")]
    MissingRecord {
        /// Where.
        position: u64,
    },
    /// The log is closed.
    #[error("the log is closed")]
    Closed,
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// redb could not open or create the file (locked by another process, unreadable, ...).
    #[error("cannot open {path}: {source}")]
    Database {
        /// The file.
        path: String,
        /// redb's reason.
        source: redb::Error,
    },
    /// A redb file, but not a Streamfleet log (or a newer format than this build reads).
    #[error("{path} is not a Streamfleet event log of format {expected} (found {found:?})")]
    NotAnEventLog {
        /// The file.
        path: String,
        /// The format this build reads.
        expected: u32,
        /// What the file says, if anything.
        found: Option<String>,
    },
    /// Not a readable redb file: damaged, truncated, or something else altogether.
    #[error("{path} is not a readable log file: {detail}")]
    Unreadable {
        /// The file.
        path: String,
        /// What redb found.
        detail: String,
    },
    /// A Streamfleet log of a newer format than this build reads.
    #[error(
        "{path} is a Streamfleet event log of format {found}, newer than this build reads ({known}): use a newer streamfleet"
    )]
    NewerFormat {
        /// The file.
        path: String,
        /// The file's format.
        found: u32,
        /// The newest format this build reads.
        known: u32,
    },
    /// A process (a running node) has the file open for writing; read a copy, or read the log
    /// through that node.
    #[error(
        "{path} is open in another process (a running node?): read a copy of it, or read through the node over NATS"
    )]
    InUse {
        /// The file.
        path: String,
    },
    /// The last record, needed to continue the chain, is damaged.
    #[error("{path}: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where and what.
        source: ReadError,
    },
}

/// What is wrong with one stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// Shorter than a record header.
    #[error("record of {len} bytes is shorter than its header")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// Its bytes do not match its CRC-32.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Stored.
        stored: u32,
        /// Computed.
        computed: u32,
    },
    /// Its chain hash does not follow from the previous event's.
    #[error("hash chain broken")]
    ChainBroken,
    /// The body is not the event JSON the log wrote.
    #[error("body is not an event's JSON")]
    UnreadableBody,
    /// A position is missing from the global order.
    #[error("position missing from the global order")]
    Missing,
}

/// The first problem a verification found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A damaged or missing record.
    #[error("position {position}: {problem}")]
    Corrupt {
        /// The first bad position.
        position: u64,
        /// What.
        problem: Corruption,
    },
    /// redb failed.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
}

pub(crate) fn storage<E: Into<redb::Error>>(e: E) -> redb::Error {
    e.into()
}
