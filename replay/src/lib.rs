//! Streamfleet's audit and replay tools: every event in order, provably untampered, and the
//! state of anything at any moment — from a live node over NATS (the `auditor` role) or offline
//! from a copy of the log file, opened read-only.
//!
//! - [`Source`]: where history comes from ([`source`]); scans yield positions in order, none
//!   skipped, and stop with an error naming the position at anything unreadable.
//! - [`read`]: [`Filter`] and [`Printer`] (a table, or CloudEvents JSON lines).
//! - [`verify_file`]: checksums and the hash chain; the first bad position and why.
//! - [`aggregate_as_of`] / [`view_as_of`]: state at a position or time, folded with the
//!   domain's own `evolve` or the projections' own folds.
//! - [`rebuild_into`] / [`diff_live`]: projections rebuilt from position 1, compared with the
//!   live store.
//! - [`export()`] / [`verify_export`]: a range as JSON lines (optionally gzip) with a manifest
//!   whose chain hash lets the export be verified alone.
//! - [`cli`]: `streamfleet replay …`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), streamfleet_replay::ReplayError> {
//! use streamfleet_replay::{ProgressMode, Source, verify_file};
//! let source = Source::file("events-copy.redb")?;
//! let summary = verify_file(source.log_file().unwrap(), 1, None, ProgressMode::Quiet)?;
//! assert!(summary.ok, "{summary}");
//! # Ok(()) }
//! ```

mod as_of;
pub mod cli;
mod error;
pub mod export;
mod progress;
pub mod read;
mod rebuild;
pub mod source;
mod verify;

pub use as_of::{AggregateAsOf, Moment, aggregate_as_of, position_at, view_as_of};
pub use error::{EventProblem, ReplayError};
pub use export::{Compression, ExportCheck, Manifest, export, verify_export};
pub use progress::{Progress, ProgressMode};
pub use read::{Filter, Format, Printer};
pub use rebuild::{LiveDiff, diff_live, rebuild_into};
pub use source::{Audited, Flow, Source};
pub use verify::{
    CheckpointCheck, Failure, VerifySummary, check_checkpoints, corruption_kind, verify_file,
};
