//! The single writer thread and its group commit.
//!
//! Invariant: every append waiting when a commit starts is checked and written inside that one
//! write transaction, in arrival order; the transaction is committed with
//! `Durability::Immediate`; only then are the waiters answered and the head moved. If the commit
//! fails, every waiter of the batch gets the error and the in-memory tip is restored, so the next
//! batch continues the chain from what is really on disk.

use crate::error::{AppendError, storage};
use crate::log::{AppendOutcome, AppendRequest, outcome_from_records};
use crate::record::{StoredEvent, encode};
use crate::tables::*;
use redb::{Database, ReadableTable, WriteTransaction};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;
use streamfleet_bus_schemas::{RecordedEvent, category_of};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

/// Streams whose last version the writer keeps in memory; past this it starts over.
const VERSION_CACHE_STREAMS: usize = 1 << 20;

pub(crate) struct Job {
    pub(crate) req: AppendRequest,
    pub(crate) reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// Counters of the writer thread, for benchmarks and operators: where its time goes.
#[derive(Debug, Default)]
pub struct WriterCounters {
    /// Commits made.
    pub commits: AtomicU64,
    /// Appends answered (accepted or refused).
    pub appends: AtomicU64,
    /// Nanoseconds spent checking and inserting, inside transactions.
    pub insert_nanos: AtomicU64,
    /// Nanoseconds spent in `commit` (the fsync).
    pub commit_nanos: AtomicU64,
}

/// Where the log ends: the last position and its chain hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tip {
    pub(crate) head: u64,
    pub(crate) chain: [u8; 32],
}

pub(crate) fn spawn(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Job>,
    mut tip: Tip,
    head: watch::Sender<u64>,
    committed: broadcast::Sender<Arc<[StoredEvent]>>,
    max_batch: usize,
    counters: Arc<WriterCounters>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("eventlog-writer".into())
        .spawn(move || {
            let mut jobs = Vec::with_capacity(max_batch);
            // Stream → last version, as committed (and within a batch, as written so far).
            let mut versions: HashMap<String, u64> = HashMap::new();
            while let Some(first) = rx.blocking_recv() {
                jobs.push(first);
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let before = tip;
                counters.appends.fetch_add(jobs.len() as u64, Relaxed);
                let mut records = Vec::new();
                match write_batch(&db, &jobs, &mut tip, &counters, &mut records, &mut versions) {
                    Ok(results) => {
                        // The batch first, then the head: a subscription woken by the head
                        // finds the batch already there.
                        if !records.is_empty() {
                            // No receiver is fine: subscriptions read the log instead.
                            let _ = committed.send(records.into());
                        }
                        head.send_replace(tip.head);
                        tracing::trace!(appends = jobs.len(), head = tip.head, "group commit");
                        for (job, result) in jobs.drain(..).zip(results) {
                            let _ = job.reply.send(result);
                        }
                    }
                    Err(e) => {
                        tip = before;
                        // It may hold versions of the rolled-back batch.
                        versions.clear();
                        tracing::error!(error = %e, appends = jobs.len(), "group commit failed; nothing recorded");
                        let e = Arc::new(e);
                        for job in jobs.drain(..) {
                            let _ = job.reply.send(Err(AppendError::Storage(e.clone())));
                        }
                    }
                }
            }
        })
        .expect("the OS can start the writer thread")
}

/// Writes one batch in one transaction. Per-append refusals are results; a storage failure
/// aborts the whole batch.
fn write_batch(
    db: &Database,
    jobs: &[Job],
    tip: &mut Tip,
    counters: &WriterCounters,
    records: &mut Vec<StoredEvent>,
    versions: &mut HashMap<String, u64>,
) -> Result<Vec<Result<AppendOutcome, AppendError>>, redb::Error> {
    let started = Instant::now();
    let txn: WriteTransaction = db.begin_write().map_err(storage)?;
    let mut results = Vec::with_capacity(jobs.len());
    {
        let mut events = txn.open_table(EVENTS).map_err(storage)?;
        let mut streams = txn.open_table(STREAM_INDEX).map_err(storage)?;
        let mut categories = txn.open_table(CATEGORY_INDEX).map_err(storage)?;
        let mut commands = txn.open_table(COMMANDS).map_err(storage)?;
        // Positions per category written by this batch; one index entry each at the end.
        let mut by_category: Vec<(&str, Vec<u64>)> = Vec::new();
        for job in jobs {
            let req = &job.req;
            if let Some(id) = req.command_id {
                if let Some(v) = commands.get(id.as_u128()).map_err(storage)? {
                    let (first, count) = v.value();
                    drop(v);
                    results.push(outcome_from_records(&events, first, count).map_err(
                        |e| match e {
                            crate::ReadError::Storage(s) => AppendError::Storage(Arc::new(s)),
                            other => AppendError::Storage(Arc::new(redb::Error::Corrupted(
                                other.to_string(),
                            ))),
                        },
                    ));
                    continue;
                }
            }
            let actual = match versions.get(&req.stream) {
                Some(v) => *v,
                None => last_version(&streams, &req.stream).map_err(storage)?,
            };
            if !req.expected.admits(actual) {
                results.push(Err(AppendError::WrongExpectedVersion {
                    stream: req.stream.clone(),
                    expected: req.expected,
                    actual,
                }));
                continue;
            }
            let category = category_of(&req.stream);
            let slot = match by_category.iter().position(|(c, _)| *c == category) {
                Some(i) => i,
                None => {
                    by_category.push((category, Vec::new()));
                    by_category.len() - 1
                }
            };
            let first = tip.head + 1;
            let mut recorded = Vec::with_capacity(req.events.len());
            for (i, e) in req.events.iter().enumerate() {
                let position = first + i as u64;
                let version = actual + 1 + i as u64;
                let (bytes, chain) = encode(&tip.chain, position, version, &e.body);
                events.insert(position, bytes.as_slice()).map_err(storage)?;
                streams
                    .insert((req.stream.as_str(), version), position)
                    .map_err(storage)?;
                by_category[slot].1.push(position);
                tip.chain = chain;
                tip.head = position;
                records.push(StoredEvent {
                    position,
                    stream_version: version,
                    chain,
                    body: e.body.clone(),
                });
                recorded.push(RecordedEvent {
                    id: e.id,
                    event_type: e.event_type.clone(),
                    streamversion: version,
                    position,
                });
            }
            if versions.len() >= VERSION_CACHE_STREAMS {
                versions.clear();
            }
            versions.insert(req.stream.clone(), actual + req.events.len() as u64);
            if let Some(id) = req.command_id {
                commands
                    .insert(id.as_u128(), (first, recorded.len() as u32))
                    .map_err(storage)?;
            }
            results.push(Ok(AppendOutcome {
                stream: req.stream.clone(),
                events: recorded,
                deduplicated: false,
            }));
        }
        for (category, positions) in &by_category {
            categories
                .insert(
                    (*category, positions[0]),
                    pack_positions(positions).as_slice(),
                )
                .map_err(storage)?;
        }
    }
    let inserted = Instant::now();
    txn.commit().map_err(storage)?;
    counters
        .insert_nanos
        .fetch_add((inserted - started).as_nanos() as u64, Relaxed);
    counters
        .commit_nanos
        .fetch_add(inserted.elapsed().as_nanos() as u64, Relaxed);
    counters.commits.fetch_add(1, Relaxed);
    Ok(results)
}

/// The last version of `stream` in the stream index (0: no stream).
pub(crate) fn last_version(
    index: &impl ReadableTable<(&'static str, u64), u64>,
    stream: &str,
) -> Result<u64, redb::StorageError> {
    Ok(index
        .range((stream, 0)..=(stream, u64::MAX))?
        .next_back()
        .transpose()?
        .map_or(0, |(k, _)| k.value().1))
}
