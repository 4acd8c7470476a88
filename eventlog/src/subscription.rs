//! In-process subscriptions: catch up from a position, then follow the head.
//!
//! Invariant: [`Subscription::next`] yields positions `from, from+1, …` with no gap and no
//! repeat. A caught-up subscription takes committed batches straight from the writer; whenever
//! that feed skips ahead (it lagged, or started late) it reads the missing range from the log.

use crate::{EventLog, ReadError, StoredEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast, watch};

const CATCH_UP_BATCH: usize = 1024;

/// Every event from a position on, in order, without gaps: first what is stored, then each new
/// commit as it lands.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = streamfleet_eventlog::EventLog::open(dir.path().join("l.redb"), Default::default()).unwrap();
/// let mut sub = log.subscribe(1);
/// // sub.next().await yields position 1 once it is durable, then 2, …
/// # }
/// ```
pub struct Subscription {
    log: EventLog,
    next: u64,
    buffer: VecDeque<StoredEvent>,
    head: watch::Receiver<u64>,
    committed: broadcast::Receiver<Arc<[StoredEvent]>>,
}

impl EventLog {
    /// Follows the log from `from` (inclusive).
    pub fn subscribe(&self, from: u64) -> Subscription {
        Subscription {
            log: self.clone(),
            next: from.max(1),
            buffer: VecDeque::new(),
            head: self.watch_head(),
            committed: self.inner.committed.subscribe(),
        }
    }
}

impl Subscription {
    /// The next event; waits for it when caught up. Errors when the log closes or a read fails.
    pub async fn next(&mut self) -> Result<StoredEvent, ReadError> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                if e.position < self.next {
                    continue;
                }
                self.next = e.position + 1;
                return Ok(e);
            }
            match self.committed.try_recv() {
                Ok(batch) => {
                    if batch.first().is_some_and(|e| e.position <= self.next) {
                        self.buffer
                            .extend(batch.iter().filter(|e| e.position >= self.next).cloned());
                        continue;
                    }
                    // The feed is ahead of us: read the gap (and this batch) from the log.
                }
                Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Closed) => return Err(ReadError::Closed),
            }
            if *self.head.borrow_and_update() >= self.next {
                let log = self.log.clone();
                let from = self.next;
                let batch = tokio::task::spawn_blocking(move || log.read_all(from, CATCH_UP_BATCH))
                    .await
                    .map_err(|_| ReadError::Closed)??;
                self.buffer.extend(batch);
            } else if self.head.changed().await.is_err() {
                return Err(ReadError::Closed);
            }
        }
    }

    /// The position the next event will have.
    pub fn position(&self) -> u64 {
        self.next
    }
}
