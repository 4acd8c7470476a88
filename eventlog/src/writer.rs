//! The single writer thread and its group commit.
//!
//! Invariant: every append waiting when a commit starts is checked and written inside that one
//! write transaction, in arrival order; the transaction is committed with
//! `Durability::Immediate`; only then are the waiters answered, the tail given the batch's index
//! entries and the head moved. If the commit fails, every waiter of the batch gets the error and
//! the in-memory tip, tail and version cache are as before the batch, so the next batch continues
//! from what is really on disk. A failed commit also reopens the file ([`crate::store`]): a full
//! disk makes the log [`Health::StorageFull`], refusing appends without touching the file until
//! it has room again, then writing the next one.
//!
//! A commit writes the records only; index entries go to the [`Tail`] and reach the index tables
//! in bulk every `index_flush_events` events, inside the transaction of the batch that crosses it.

use crate::append::{AppendOutcome, AppendRequest, CommandDigest, outcome_from_records};
use crate::error::{AppendError, storage};
use crate::record::{StoredEvent, encode};
use crate::store::{Health, Space, Store, is_full};
use crate::tables::*;
use crate::tail::{Entry, Tail};
use redb::{ReadableTable, WriteTransaction};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use streamfleet_bus_schemas::RecordedEvent;
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
    /// Index flushes (tail written into the index tables).
    pub index_flushes: AtomicU64,
    /// Nanoseconds spent writing index flushes (part of `insert_nanos`).
    pub index_flush_nanos: AtomicU64,
}

/// A reading of [`WriterCounters`]; subtract two readings for what happened between them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterSnapshot {
    /// Commits made.
    pub commits: u64,
    /// Appends answered.
    pub appends: u64,
    /// Nanoseconds checking and inserting.
    pub insert_nanos: u64,
    /// Nanoseconds in `commit`.
    pub commit_nanos: u64,
    /// Index flushes.
    pub index_flushes: u64,
    /// Nanoseconds writing index flushes.
    pub index_flush_nanos: u64,
}

impl WriterCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> WriterSnapshot {
        WriterSnapshot {
            commits: self.commits.load(Relaxed),
            appends: self.appends.load(Relaxed),
            insert_nanos: self.insert_nanos.load(Relaxed),
            commit_nanos: self.commit_nanos.load(Relaxed),
            index_flushes: self.index_flushes.load(Relaxed),
            index_flush_nanos: self.index_flush_nanos.load(Relaxed),
        }
    }
}

impl std::ops::Sub for WriterSnapshot {
    type Output = WriterSnapshot;
    fn sub(self, before: WriterSnapshot) -> WriterSnapshot {
        WriterSnapshot {
            commits: self.commits - before.commits,
            appends: self.appends - before.appends,
            insert_nanos: self.insert_nanos - before.insert_nanos,
            commit_nanos: self.commit_nanos - before.commit_nanos,
            index_flushes: self.index_flushes - before.index_flushes,
            index_flush_nanos: self.index_flush_nanos - before.index_flush_nanos,
        }
    }
}

/// Where the log ends: the last position and its chain hash.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tip {
    pub(crate) head: u64,
    pub(crate) chain: [u8; 32],
}

/// What the writer thread owns.
pub(crate) struct Writer {
    pub(crate) store: Arc<Store>,
    /// The free space of the log's file system, asked while the disk is full.
    pub(crate) space: Space,
    pub(crate) health: watch::Sender<Health>,
    /// The store's generation `tip` and `tail` were read from.
    pub(crate) generation: u64,
    pub(crate) tip: Tip,
    pub(crate) tail: Arc<RwLock<Tail>>,
    pub(crate) head: watch::Sender<u64>,
    pub(crate) committed: broadcast::Sender<Arc<[StoredEvent]>>,
    pub(crate) max_batch: usize,
    pub(crate) index_flush_events: usize,
    pub(crate) counters: Arc<WriterCounters>,
}

/// What one batch wrote, applied to memory only once its commit succeeded.
struct Written {
    results: Vec<Result<AppendOutcome, AppendError>>,
    records: Vec<StoredEvent>,
    entries: Vec<Entry>,
    flushed: bool,
}

impl Writer {
    pub(crate) fn spawn(mut self, mut rx: mpsc::Receiver<Job>) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("eventlog-writer".into())
            .spawn(move || {
                let mut jobs = Vec::with_capacity(self.max_batch);
                // Stream → last version, as committed (and within a batch, as written so far).
                let mut versions: HashMap<String, u64> = HashMap::new();
                while let Some(first) = rx.blocking_recv() {
                    jobs.push(first);
                    while jobs.len() < self.max_batch {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    self.counters.appends.fetch_add(jobs.len() as u64, Relaxed);
                    if let Err(refusal) = self.ready(&jobs, &mut versions) {
                        for job in jobs.drain(..) {
                            let _ = job.reply.send(Err(refusal.clone()));
                        }
                        continue;
                    }
                    let before = self.tip;
                    match self.write_batch(&jobs, &mut versions) {
                        Ok(written) => {
                            // Healthy again before anyone hears of the append: whoever asks
                            // after their reply sees `Serving`.
                            if *self.health.borrow() != Health::Serving {
                                tracing::warn!("the log takes appends again");
                                self.health.send_replace(Health::Serving);
                            }
                            self.publish(written, &mut jobs);
                        }
                        Err(e) => {
                            self.tip = before;
                            // It may hold versions of the rolled-back batch.
                            versions.clear();
                            tracing::error!(error = %e, appends = jobs.len(), "group commit failed; nothing recorded");
                            let refusal = self.failed(e);
                            for job in jobs.drain(..) {
                                let _ = job.reply.send(Err(refusal.clone()));
                            }
                        }
                    }
                }
            })
            .expect("the OS can start the writer thread")
    }

    /// Whether a batch may be written now. While the disk is full it is refused until the file
    /// system has room for it (trying would fail the handle again); a handle a failure closed is
    /// opened again first; after any reopen, where the log ends is read again from the file.
    fn ready(
        &mut self,
        jobs: &[Job],
        versions: &mut HashMap<String, u64>,
    ) -> Result<(), AppendError> {
        if let Health::StorageFull { detail } = &*self.health.borrow() {
            let bytes: usize = jobs
                .iter()
                .flat_map(|j| &j.req.events)
                .map(|e| e.body.len())
                .sum();
            if !self.space.enough(bytes as u64) {
                return Err(AppendError::StorageFull {
                    detail: detail.clone(),
                });
            }
        }
        if !self.store.is_open() {
            self.store
                .reopen()
                .map_err(|e| AppendError::Storage(Arc::new(e)))?;
        }
        if self.store.generation() != self.generation {
            self.resync(versions)?;
        }
        Ok(())
    }

    /// After a reopen: the tip and tail as the file has them. A commit reported as failed may
    /// still have reached the disk (its last fsync failed after the header was written): its
    /// events then stand, unanswered, as after a crash at that instant.
    fn resync(&mut self, versions: &mut HashMap<String, u64>) -> Result<(), AppendError> {
        let unreadable = |e: crate::ReadError| match e {
            crate::ReadError::Storage(s) => AppendError::Storage(Arc::new(s)),
            other => AppendError::Storage(Arc::new(redb::Error::Corrupted(other.to_string()))),
        };
        let generation = self.store.generation();
        let tip = crate::log::read_tip(&self.store).map_err(unreadable)?;
        let tail = crate::log::rebuild_tail(&self.store).map_err(unreadable)?;
        self.tip = tip;
        *self.tail.write().expect("tail lock") = tail;
        versions.clear();
        self.generation = generation;
        self.head.send_if_modified(|head| {
            let moved = *head != tip.head;
            *head = tip.head;
            moved
        });
        Ok(())
    }

    /// After a failed commit: the log's health, a fresh handle (redb refuses everything on the
    /// failed one), and the refusal every waiter of the batch gets.
    fn failed(&mut self, e: redb::Error) -> AppendError {
        let already_full = matches!(&*self.health.borrow(), Health::StorageFull { .. });
        let full = is_full(&e) || (already_full && matches!(e, redb::Error::PreviousIo));
        let refusal = if full {
            let detail = match &e {
                redb::Error::Io(io) => io.to_string(),
                _ => "no space left on device".into(),
            };
            if !already_full {
                tracing::error!(%detail, "the disk is full: appends are refused until space is freed; reads go on");
            }
            self.health.send_replace(Health::StorageFull {
                detail: detail.clone(),
            });
            AppendError::StorageFull { detail }
        } else {
            self.health.send_replace(Health::StorageFailing {
                detail: e.to_string(),
            });
            AppendError::Storage(Arc::new(e))
        };
        if let Err(error) = self.store.reopen() {
            tracing::error!(%error, "the log's file cannot be opened again yet; the next append tries again");
        }
        refusal
    }

    /// After a successful commit: the tail, the committed feed, the head, then the answers.
    fn publish(&mut self, written: Written, jobs: &mut Vec<Job>) {
        {
            let mut tail = self.tail.write().expect("tail lock");
            if written.flushed {
                *tail = Tail::default();
            } else {
                for e in &written.entries {
                    tail.add(e);
                }
            }
        }
        // The batch before the head: a subscription woken by the head finds the batch there.
        if !written.records.is_empty() {
            // No receiver is fine: subscriptions read the log instead.
            let _ = self.committed.send(written.records.into());
        }
        self.head.send_replace(self.tip.head);
        tracing::trace!(
            appends = jobs.len(),
            head = self.tip.head,
            flushed = written.flushed,
            "group commit"
        );
        for (job, result) in jobs.drain(..).zip(written.results) {
            let _ = job.reply.send(result);
        }
    }

    /// Writes one batch in one transaction. Per-append refusals are results; a storage failure
    /// aborts the whole batch.
    fn write_batch(
        &mut self,
        jobs: &[Job],
        versions: &mut HashMap<String, u64>,
    ) -> Result<Written, redb::Error> {
        let started = Instant::now();
        let txn: WriteTransaction = self.store.begin_write()?;
        let tail = self.tail.read().expect("tail lock");
        let mut written = Written {
            results: Vec::with_capacity(jobs.len()),
            records: Vec::new(),
            entries: Vec::new(),
            flushed: false,
        };
        // Commands appended earlier in this batch (not yet in the tail).
        let mut batch_commands: HashMap<u128, (u64, u32)> = HashMap::new();
        {
            let mut events = txn.open_table(EVENTS).map_err(storage)?;
            let streams = txn.open_table(STREAM_INDEX).map_err(storage)?;
            let commands = txn.open_table(COMMANDS).map_err(storage)?;
            let mut digests = txn.open_table(COMMAND_DIGESTS).map_err(storage)?;
            for job in jobs {
                let req = &job.req;
                if let Some(command_id) = req.command_id {
                    let id = command_id.as_u128();
                    let known = match batch_commands.get(&id).or_else(|| tail.commands.get(&id)) {
                        Some(found) => Some(*found),
                        None => commands.get(id).map_err(storage)?.map(|v| v.value()),
                    };
                    // A digest written for a command earlier in this batch is read back from
                    // this same transaction.
                    if let (Some(given), Some(_)) = (&req.command_digest, known)
                        && let Some(stored) = digests
                            .get(id)
                            .map_err(storage)?
                            .and_then(|v| CommandDigest::decode(v.value()))
                        && given.digest != stored.digest
                    {
                        written.results.push(Err(AppendError::CommandIdReused {
                            command_id,
                            original_type: stored.command_type,
                        }));
                        continue;
                    }
                    if let Some((first, count)) = known {
                        written
                            .results
                            .push(outcome_from_records(&events, first, count).map_err(
                                |e| match e {
                                    crate::ReadError::Storage(s) => {
                                        AppendError::Storage(Arc::new(s))
                                    }
                                    other => AppendError::Storage(Arc::new(
                                        redb::Error::Corrupted(other.to_string()),
                                    )),
                                },
                            ));
                        continue;
                    }
                }
                let actual = match versions
                    .get(&req.stream)
                    .copied()
                    .or_else(|| tail.last_version(&req.stream))
                {
                    Some(v) => v,
                    None => last_version(&streams, &req.stream).map_err(storage)?,
                };
                if !req.expected.admits(actual) {
                    written.results.push(Err(AppendError::WrongExpectedVersion {
                        stream: req.stream.clone(),
                        expected: req.expected,
                        actual,
                    }));
                    continue;
                }
                let first = self.tip.head + 1;
                let mut recorded = Vec::with_capacity(req.events.len());
                for (i, e) in req.events.iter().enumerate() {
                    let position = first + i as u64;
                    let version = actual + 1 + i as u64;
                    let (bytes, chain) = encode(
                        &self.tip.chain,
                        position,
                        version,
                        req.command_id,
                        &req.stream,
                        &e.body,
                    );
                    events.insert(position, bytes.as_slice()).map_err(storage)?;
                    self.tip = Tip {
                        head: position,
                        chain,
                    };
                    written.records.push(StoredEvent {
                        position,
                        stream_version: version,
                        chain,
                        stream: req.stream.clone(),
                        command_id: req.command_id,
                        body: e.body.clone(),
                    });
                    written.entries.push(Entry {
                        stream: req.stream.clone(),
                        version,
                        position,
                        command: req.command_id.map(|c| c.as_u128()),
                    });
                    recorded.push(RecordedEvent {
                        id: e.id,
                        event_type: e.event_type.clone(),
                        streamversion: version,
                        position,
                        // The log reports where events went; their data is the node's to add
                        // (parsing bodies here would slow the one writer thread).
                        data: None,
                    });
                }
                if let Some(id) = req.command_id {
                    batch_commands.insert(id.as_u128(), (first, recorded.len() as u32));
                    if let Some(digest) = &req.command_digest {
                        digests
                            .insert(id.as_u128(), digest.encode().as_slice())
                            .map_err(storage)?;
                    }
                }
                if versions.len() >= VERSION_CACHE_STREAMS {
                    versions.clear();
                }
                versions.insert(req.stream.clone(), actual + req.events.len() as u64);
                written.results.push(Ok(AppendOutcome {
                    stream: req.stream.clone(),
                    events: recorded,
                    deduplicated: false,
                }));
            }
        }
        if tail.events + written.entries.len() >= self.index_flush_events {
            let flush_started = Instant::now();
            flush_index(&txn, &tail, &written.entries, self.tip.head)?;
            self.counters
                .index_flush_nanos
                .fetch_add(flush_started.elapsed().as_nanos() as u64, Relaxed);
            written.flushed = true;
            self.counters.index_flushes.fetch_add(1, Relaxed);
        }
        drop(tail);
        let inserted = Instant::now();
        txn.commit().map_err(storage)?;
        self.counters
            .insert_nanos
            .fetch_add((inserted - started).as_nanos() as u64, Relaxed);
        self.counters
            .commit_nanos
            .fetch_add(inserted.elapsed().as_nanos() as u64, Relaxed);
        self.counters.commits.fetch_add(1, Relaxed);
        Ok(written)
    }
}

/// Writes the tail and this batch's entries into the index tables, and records that the tables
/// now cover everything up to `through`. The batch's entries follow the tail's (each as its own
/// packed category entry, keyed by its own first position).
fn flush_index(
    txn: &WriteTransaction,
    tail: &Tail,
    batch: &[Entry],
    through: u64,
) -> Result<(), redb::Error> {
    let mut this_batch = Tail::default();
    for e in batch {
        this_batch.add(e);
    }
    for part in [tail, &this_batch] {
        write_entries(txn, part)?;
    }
    let mut meta = txn.open_table(META).map_err(storage)?;
    meta.insert(INDEXED_THROUGH_KEY, through.to_string().as_str())
        .map_err(storage)?;
    Ok(())
}

/// Inserts one tail's entries, each table in key order (each B-tree leaf touched once).
fn write_entries(txn: &WriteTransaction, part: &Tail) -> Result<(), redb::Error> {
    let mut streams = txn.open_table(STREAM_INDEX).map_err(storage)?;
    let mut names: Vec<&String> = part.streams.keys().collect();
    names.sort();
    for stream in names {
        for (version, position) in &part.streams[stream] {
            streams
                .insert((stream.as_str(), *version), *position)
                .map_err(storage)?;
        }
    }
    let mut categories = txn.open_table(CATEGORY_INDEX).map_err(storage)?;
    for (category, positions) in &part.categories {
        categories
            .insert(
                (category.as_str(), positions[0]),
                pack_positions(positions).as_slice(),
            )
            .map_err(storage)?;
    }
    let mut commands = txn.open_table(COMMANDS).map_err(storage)?;
    let mut ids: Vec<(&u128, &(u64, u32))> = part.commands.iter().collect();
    ids.sort();
    for (id, entry) in ids {
        commands.insert(*id, *entry).map_err(storage)?;
    }
    Ok(())
}

/// The last version of `stream` in the stream index tables (0: no stream).
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
