//! Verifying a log file: every record's checksum and the hash chain, over the whole log or a
//! range, with a summary of what was verified or the first bad position and why.

use crate::error::ReplayError;
use crate::progress::{Progress, ProgressMode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::time::Instant;
use streamfleet_eventlog::{Corruption, LogFile, VerifyError};

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifySummary {
    /// The file.
    pub file: String,
    /// Whether everything in the range checked out.
    pub ok: bool,
    /// First position of the range.
    pub first: u64,
    /// Last position of the range.
    pub last: u64,
    /// Events verified (up to the failure, when there is one).
    pub events: u64,
    /// Bytes of records verified.
    pub bytes: u64,
    /// Chain hash before `first` (hex).
    pub chain_before: String,
    /// Chain hash at `last` (hex): it commits to everything up to `last`.
    pub chain: String,
    /// When the first and last events of the range were recorded.
    pub first_time: Option<DateTime<Utc>>,
    /// See `first_time`.
    pub last_time: Option<DateTime<Utc>>,
    /// Whether the file needed recovery and a private recovered copy was verified.
    pub recovered: bool,
    /// The first problem, when not ok.
    pub failure: Option<Failure>,
    /// What the signed checkpoints vouch for, when checked (`--public-key`).
    pub checkpoints: Option<CheckpointCheck>,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The first bad position and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The position.
    pub position: u64,
    /// `checksum`, `chain_broken`, `truncated`, `unreadable_body` or `missing`.
    pub kind: &'static str,
    /// In words.
    pub problem: String,
}

/// The stable name of a kind of corruption.
pub fn corruption_kind(c: &Corruption) -> &'static str {
    match c {
        Corruption::Truncated { .. } => "truncated",
        Corruption::Checksum { .. } => "checksum",
        Corruption::ChainBroken => "chain_broken",
        Corruption::UnreadableBody => "unreadable_body",
        Corruption::Missing => "missing",
    }
}

/// `from..=to` of `file` with `to` defaulting to its last position; an error when `to` is past it.
pub(crate) fn file_range(
    file: &LogFile,
    from: u64,
    to: Option<u64>,
) -> Result<(u64, u64), ReplayError> {
    let head = file.head().map_err(|error| ReplayError::Read {
        source_name: file.path().display().to_string(),
        error,
    })?;
    let last = to.unwrap_or(head);
    if last > head {
        return Err(ReplayError::Request(format!(
            "{}: position {last} is past the log's last position {head}",
            file.path().display()
        )));
    }
    Ok((from.max(1), last))
}

/// Verifies `from..=to` (`None`: the last position) of `file`.
pub fn verify_file(
    file: &LogFile,
    from: u64,
    to: Option<u64>,
    progress: ProgressMode,
) -> Result<VerifySummary, ReplayError> {
    let name = file.path().display().to_string();
    let read_err = |error| ReplayError::Read {
        source_name: name.clone(),
        error,
    };
    let (from, last) = file_range(file, from, to)?;
    let started = Instant::now();
    let mut shown = Progress::new(progress, "verify", last.saturating_sub(from) + 1);
    // Some page-level damage makes the storage engine panic instead of answering an error: the
    // damage is then named at the first position the scan had not passed, never a crash.
    let reached = std::cell::Cell::new(from.saturating_sub(1));
    let scanned = streamfleet_eventlog::contained(|| {
        file.verify(from, Some(last), &mut |p| {
            reached.set(p);
            shown.set(p + 1 - from)
        })
    });
    shown.finish();
    let time_of = |p: u64| -> Option<DateTime<Utc>> {
        let e = file.records(p, Some(p)).ok()?.next()?.ok()?;
        #[derive(serde::Deserialize)]
        struct Time {
            time: DateTime<Utc>,
        }
        serde_json::from_slice::<Time>(&e.body).ok().map(|t| t.time)
    };
    let hex = |h: &[u8; 32]| blake3::Hash::from_bytes(*h).to_hex().to_string();
    let mut summary = VerifySummary {
        file: name.clone(),
        ok: true,
        first: from,
        last,
        events: 0,
        bytes: 0,
        chain_before: String::new(),
        chain: String::new(),
        first_time: None,
        last_time: None,
        recovered: file.was_recovered(),
        failure: None,
        checkpoints: None,
        seconds: 0.0,
    };
    let result = match scanned {
        Ok(result) => result,
        Err(why) => {
            let position = reached.get() + 1;
            summary.ok = false;
            summary.events = position.saturating_sub(from);
            summary.failure = Some(Failure {
                position,
                kind: "damaged",
                problem: format!(
                    "the file's pages are damaged at or after here (the storage engine gave up: \
                     {why}); restore the log from a copy, or rebuild it from an export \
                     (`replay export` of a good copy, `verify-export` to check it)"
                ),
            });
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }
    };
    match result {
        Ok(report) => {
            summary.events = report.events;
            summary.bytes = report.bytes;
            summary.chain_before = hex(&report.chain_before);
            summary.chain = hex(&report.chain);
            if report.events > 0 {
                summary.first_time = time_of(from);
                summary.last_time = time_of(last);
            }
        }
        Err(VerifyError::Corrupt { position, problem }) => {
            summary.ok = false;
            summary.events = position.saturating_sub(from);
            summary.failure = Some(Failure {
                position,
                kind: corruption_kind(&problem),
                problem: problem.to_string(),
            });
        }
        Err(VerifyError::Storage(e)) => {
            return Err(read_err(streamfleet_eventlog::ReadError::Storage(e)));
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl std::fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(failure) = &self.failure {
            return write!(
                f,
                "FAILED {}: position {}: {} ({} events before it verified)",
                self.file, failure.position, failure.problem, self.events
            );
        }
        let time = |t: &Option<DateTime<Utc>>| t.map_or("-".to_string(), |t| t.to_rfc3339());
        if let Some(c) = &self.checkpoints {
            writeln!(
                f,
                "signed: {} checkpoints; the node's key vouches for positions 1..={}{}",
                c.checkpoints,
                c.signed_through,
                if c.signed_through < self.last {
                    format!(" ({}..={} not yet signed)", c.signed_through + 1, self.last)
                } else {
                    String::new()
                }
            )?;
        }
        write!(
            f,
            "ok {}: positions {}..={}: {} events, {} bytes, checksums and hash chain intact{}\n  \
             recorded {} .. {}\n  chain before {}: {}\n  chain at {}: {}\n  {:.2} s ({:.0} events/s)",
            self.file,
            self.first,
            self.last,
            self.events,
            self.bytes,
            if self.recovered {
                " (read from a recovered copy: the file was not closed cleanly)"
            } else {
                ""
            },
            time(&self.first_time),
            time(&self.last_time),
            self.first.saturating_sub(1),
            self.chain_before,
            self.last,
            self.chain,
            self.seconds,
            self.events as f64 / self.seconds.max(1e-9)
        )
    }
}

/// What checking a log against signed checkpoints found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointCheck {
    /// Checkpoints read.
    pub checkpoints: usize,
    /// The last position a valid signature vouches for, with the log matching it (0: none).
    pub signed_through: u64,
}

/// Checks `file` against `checkpoints` signed by `public`, in position order: each signature
/// must be the key's, and the record at each checkpoint's position must carry its chain hash.
/// The first that fails is a [`Failure`]: `checkpoint_forged` (a signature that is not the
/// key's) or `checkpoint_mismatch` (the log was changed at or before that position, even if
/// its chain was recomputed after the change). Checkpoints past the log's end are
/// `checkpoint_past_end`: the log lost what was signed.
pub fn check_checkpoints(
    file: &LogFile,
    checkpoints: &[streamfleet_eventlog::checkpoint::Checkpoint],
    public: &streamfleet_eventlog::checkpoint::VerifyingKey,
) -> Result<Result<CheckpointCheck, Failure>, ReplayError> {
    let name = file.path().display().to_string();
    let head = file.head().map_err(|error| ReplayError::Read {
        source_name: name.clone(),
        error,
    })?;
    let mut sorted: Vec<_> = checkpoints.iter().collect();
    sorted.sort_by_key(|c| c.position);
    let mut signed_through = 0;
    for cp in sorted {
        let after = |what: &str| {
            format!("{what}; the last position a valid checkpoint vouches for is {signed_through}")
        };
        if !cp.is_signed_by(public) {
            return Ok(Err(Failure {
                position: cp.position,
                kind: "checkpoint_forged",
                problem: after("the checkpoint's signature is not the node key's"),
            }));
        }
        if cp.position > head {
            return Ok(Err(Failure {
                position: cp.position,
                kind: "checkpoint_past_end",
                problem: after(&format!(
                    "a checkpoint was signed at {} but the log ends at {head}",
                    cp.position
                )),
            }));
        }
        let record = file
            .records(cp.position, Some(cp.position))
            .map_err(|error| ReplayError::Read {
                source_name: name.clone(),
                error,
            })?
            .next()
            .transpose()
            .map_err(|error| ReplayError::Read {
                source_name: name.clone(),
                error,
            })?;
        let matches = match (record, cp.chain_hash()) {
            (Some(r), Ok(chain)) => r.chain == chain,
            _ => false,
        };
        if !matches {
            return Ok(Err(Failure {
                position: cp.position,
                kind: "checkpoint_mismatch",
                problem: after(&format!(
                    "the log no longer matches the checkpoint signed at position {}: history at \
                     or before it was rewritten",
                    cp.position
                )),
            }));
        }
        signed_through = cp.position;
    }
    Ok(Ok(CheckpointCheck {
        checkpoints: checkpoints.len(),
        signed_through,
    }))
}
