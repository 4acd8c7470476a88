//! Streamfleet's durable event log, on redb.
//!
//! # Invariants
//! - **One global order.** Every event has a global `position`, from 1, without gaps; positions
//!   only grow. Every event also has a `streamversion` within its stream, from 1, without gaps.
//! - **Atomic appends.** An append of one or several events to one stream is all or nothing, and
//!   is checked against its [`ExpectedVersion`] inside the same write transaction that writes it.
//! - **Durable before acknowledged.** Concurrent appends are grouped into one redb write
//!   transaction committed with `Durability::Immediate` (fsync); no append is answered before
//!   that commit has returned. A crash at any instant leaves either all of a batch or none of it.
//! - **Idempotent by command id.** An append carrying a command id that was already recorded
//!   records nothing and returns the original outcome, marked `deduplicated` — when it says
//!   the same: an append whose [`CommandDigest`] differs from the recorded one's is refused
//!   [`AppendError::CommandIdReused`]. The digest is written in the commit that records the
//!   command (the `command_digests` table, not the index tail), so it is durable with it.
//! - **Tamper-evident.** Each stored event carries a CRC-32 of its bytes and a BLAKE3 chain hash
//!   covering the previous event's chain hash, its position, and everything else it stores;
//!   [`EventLog::verify`] names the first position where either fails.
//! - **Records are the truth; indexes are derived.** A record names its stream, version and
//!   command, so the index tables can always be rebuilt from records. A commit writes records
//!   only; their index entries wait in memory (the tail) and are written in bulk every few
//!   thousand events. Every read merges the tail, so reads see each committed event.
//! - **Single writer.** Only the process that opened the file writes; redb's file lock keeps
//!   out a second one. Everyone else reads through that process (the node's read API), or
//!   opens a copy (or a stopped node's file) read-only as a [`LogFile`].
//!
//! # Layout (tables)
//! `events` position → record (see [`record`]); `stream_index` (stream, version) → position;
//! `category_index` (category, first position) → packed positions; `commands` command id →
//! (first position, count); `meta`: the format marker and `indexed_through`, the last position
//! the index tables cover.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use streamfleet_eventlog::{EventLog, Config, AppendRequest, NewEvent, ExpectedVersion};
//! let dir = tempfile::tempdir().unwrap();
//! let log = EventLog::open(dir.path().join("log.redb"), Config::default()).unwrap();
//! let body = br#"{"type":"NodeFailed","subject":"node-1","data":{}}"#.to_vec();
//! let out = log
//!     .append(AppendRequest {
//!         stream: "node-1".into(),
//!         expected: ExpectedVersion::NoStream,
//!         command_id: None,
//!         command_digest: None,
//!         events: vec![NewEvent { id: uuid::Uuid::now_v7(), event_type: "NodeFailed".into(), body }],
//!     })
//!     .await
//!     .unwrap();
//! assert_eq!(out.events[0].position, 1);
//! assert_eq!(log.read_all(1, 10).unwrap().len(), 1);
//! # }
//! ```

mod append;
pub mod checkpoint;
mod damage;
mod error;
mod file;
mod log;
pub mod record;
mod store;
mod subscription;
mod tables;
mod tail;
mod verify;
mod writer;

pub use append::{AppendOutcome, AppendRequest, CommandDigest, NewEvent};
pub use damage::contained;
pub use error::{AppendError, Corruption, OpenError, ReadError, VerifyError};
pub use file::{LogFile, Records};
pub use log::{Config, EventLog};
pub use record::StoredEvent;
pub use store::Health;
pub use streamfleet_bus_schemas::{ExpectedVersion, ReadDirection, RecordedEvent};
pub use subscription::Subscription;
pub use verify::{PROGRESS_EVERY, VerifyReport};
pub use writer::{WriterCounters, WriterSnapshot};
