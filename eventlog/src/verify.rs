//! Verification of checksums and the hash chain.

use crate::EventLog;
use crate::error::{Corruption, VerifyError, storage};
use crate::record::{GENESIS, StoredEvent};
use crate::tables::EVENTS;
use redb::{ReadableDatabase, ReadableTable};

/// What a clean verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// First position checked.
    pub first: u64,
    /// Last position checked (0 when the log is empty).
    pub last: u64,
    /// Events checked.
    pub events: u64,
    /// The chain hash at `last`.
    pub chain: [u8; 32],
}

impl EventLog {
    /// Checks every record from `from` to `to` (inclusive; `None`: the head): its CRC, that no
    /// position is missing, and that each chain hash follows from the previous. Returns the first
    /// bad position. Blocking.
    pub fn verify(&self, from: u64, to: Option<u64>) -> Result<VerifyReport, VerifyError> {
        let from = from.max(1);
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let to = match to {
            Some(t) => t,
            None => events
                .last()
                .map_err(storage)?
                .map_or(0, |(k, _)| k.value()),
        };
        let mut prev = if from == 1 {
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
        let mut expected = from;
        for item in events.range(from..=to).map_err(storage)? {
            let (k, v) = item.map_err(storage)?;
            let position = k.value();
            if position != expected {
                return Err(VerifyError::Corrupt {
                    position: expected,
                    problem: Corruption::Missing,
                });
            }
            let e = StoredEvent::decode(position, v.value())
                .map_err(|problem| VerifyError::Corrupt { position, problem })?;
            if e.expected_chain(&prev) != e.chain {
                return Err(VerifyError::Corrupt {
                    position,
                    problem: Corruption::ChainBroken,
                });
            }
            prev = e.chain;
            expected += 1;
        }
        if expected <= to {
            return Err(VerifyError::Corrupt {
                position: expected,
                problem: Corruption::Missing,
            });
        }
        Ok(VerifyReport {
            first: from,
            last: to,
            events: to.saturating_sub(from) + u64::from(to >= from),
            chain: prev,
        })
    }
}
