//! Verification of checksums and the hash chain.
//!
//! Invariant: a clean [`VerifyReport`] for `from..=to` means every position in the range is
//! present, every record matches its CRC-32, and every chain hash follows from the one before
//! (so the `chain` reported at `to` commits to the whole history up to `to`). Otherwise the
//! error names the first position where one of those fails.

use crate::EventLog;
use crate::error::{Corruption, VerifyError, storage};
use crate::record::{GENESIS, StoredEvent};
use crate::tables::EVENTS;
use redb::ReadableTable;

/// What a clean verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// First position checked.
    pub first: u64,
    /// Last position checked (0 when the log is empty).
    pub last: u64,
    /// Events checked.
    pub events: u64,
    /// Bytes of records checked.
    pub bytes: u64,
    /// The chain hash before `first` (the genesis hash, zeros, when `first` is 1).
    pub chain_before: [u8; 32],
    /// The chain hash at `last`.
    pub chain: [u8; 32],
}

/// Events between two calls of a verification's progress callback.
pub const PROGRESS_EVERY: u64 = 16_384;

impl EventLog {
    /// Checks every record from `from` to `to` (inclusive; `None`: the head): its CRC, that no
    /// position is missing, and that each chain hash follows from the previous. Returns the first
    /// bad position. Blocking.
    /// Damaged pages that make the storage engine give up are a storage failure naming them,
    /// not a panic.
    pub fn verify(&self, from: u64, to: Option<u64>) -> Result<VerifyReport, VerifyError> {
        crate::damage::contained(|| {
            let txn = self.inner.store.begin_read().map_err(|e| match e {
                crate::ReadError::Storage(e) => VerifyError::Storage(e),
                other => VerifyError::Storage(redb::Error::Corrupted(other.to_string())),
            })?;
            let events = txn.open_table(EVENTS).map_err(storage)?;
            verify_table(&events, from, to, &mut |_| {})
        })
        .unwrap_or_else(|why| {
            Err(VerifyError::Storage(redb::Error::Corrupted(
                crate::damage::advice(&why),
            )))
        })
    }
}

/// The verification of [`EventLog::verify`] over any open `events` table; `progress` is called
/// with the position reached every [`PROGRESS_EVERY`] events.
pub(crate) fn verify_table(
    events: &impl ReadableTable<u64, &'static [u8]>,
    from: u64,
    to: Option<u64>,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let from = from.max(1);
    let to = match to {
        Some(t) => t,
        None => events
            .last()
            .map_err(storage)?
            .map_or(0, |(k, _)| k.value()),
    };
    let chain_before = if from == 1 {
        GENESIS
    } else {
        let p = from - 1;
        let v = events
            .get(p)
            .map_err(storage)?
            .ok_or(VerifyError::Corrupt {
                position: p,
                problem: Corruption::Missing,
            })?;
        StoredEvent::decode(p, v.value())
            .map_err(|problem| VerifyError::Corrupt {
                position: p,
                problem,
            })?
            .chain
    };
    let mut prev = chain_before;
    let mut expected = from;
    let mut bytes = 0u64;
    for item in events.range(from..=to).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let position = k.value();
        if position != expected {
            return Err(VerifyError::Corrupt {
                position: expected,
                problem: Corruption::Missing,
            });
        }
        let record = v.value();
        bytes += record.len() as u64;
        prev = StoredEvent::check_chain(position, record, &prev)
            .map_err(|problem| VerifyError::Corrupt { position, problem })?;
        expected += 1;
        if (expected - from).is_multiple_of(PROGRESS_EVERY) {
            progress(position);
        }
    }
    if expected <= to {
        return Err(VerifyError::Corrupt {
            position: expected,
            problem: Corruption::Missing,
        });
    }
    progress(to);
    Ok(VerifyReport {
        first: from,
        last: to,
        events: to.saturating_sub(from) + u64::from(to >= from),
        bytes,
        chain_before,
        chain: prev,
    })
}
