//! The log's public handle: open, append, read.

use crate::append::{AppendOutcome, AppendRequest, CommandDigest, get_event, outcome_from_records};
use crate::error::{AppendError, OpenError, ReadError, storage};
use crate::record::{GENESIS, StoredEvent};
use crate::store::{Health, Space, Store};
use crate::tables::*;
use crate::tail::{Entry, Tail};
use crate::writer::{self, Job, Tip, Writer, WriterCounters};
use redb::{Database, ReadableTable, TableHandle};
use std::path::Path;
use std::sync::{Arc, RwLock};
use streamfleet_bus_schemas::{ReadDirection, category_of};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

/// Committed batches kept in memory for caught-up subscriptions; one that falls further behind
/// reads the log instead.
const COMMITTED_BATCHES_KEPT: usize = 64;

/// Limits and tuning.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest event body, bytes.
    pub max_event_bytes: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
    /// Most appends grouped into one commit.
    pub max_batch: usize,
    /// Appends waiting for the writer before `append` waits for room.
    pub queue: usize,
    /// Events whose index entries are kept in memory before they are written to the index
    /// tables in one go (also the most events re-read on open).
    pub index_flush_events: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_event_bytes: 256 * 1024,
            max_events_per_append: 1000,
            max_batch: 4096,
            queue: 65_536,
            index_flush_events: 2048,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Arc<Store>,
    health: watch::Receiver<Health>,
    pub(crate) config: Config,
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) head: watch::Receiver<u64>,
    /// Every committed batch, for subscriptions that are caught up.
    pub(crate) committed: broadcast::Sender<Arc<[StoredEvent]>>,
    counters: Arc<WriterCounters>,
    /// Index entries not yet in the index tables (see [`crate::tail`]).
    tail: Arc<RwLock<Tail>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The durable event log. Cheap to clone; the file closes when the last clone drops.
#[derive(Clone)]
pub struct EventLog {
    pub(crate) inner: Arc<Inner>,
}

impl EventLog {
    /// Opens (or creates) the log at `path` and starts its writer.
    pub fn open(path: impl AsRef<Path>, config: Config) -> Result<EventLog, OpenError> {
        let path = path.as_ref();
        crate::damage::contained(|| Self::open_file(path, config)).unwrap_or_else(|why| {
            Err(OpenError::Unreadable {
                path: path.display().to_string(),
                detail: crate::damage::advice(&why),
            })
        })
    }

    fn open_file(path: &Path, config: Config) -> Result<EventLog, OpenError> {
        let shown = path.display().to_string();
        let db_err = |e: redb::Error| OpenError::Database {
            path: shown.clone(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| db_err(storage(e)))?;
        let txn = db.begin_write().map_err(|e| db_err(storage(e)))?;
        {
            let other_tables = txn
                .list_tables()
                .map_err(|e| db_err(storage(e)))?
                .any(|t| t.name() != META.name());
            let mut meta = txn.open_table(META).map_err(|e| db_err(storage(e)))?;
            let found = meta
                .get(FORMAT_KEY)
                .map_err(|e| db_err(storage(e)))?
                .map(|v| v.value().to_string());
            match found {
                Some(f) if f == format_value() => {}
                None if !other_tables => {
                    meta.insert(FORMAT_KEY, format_value().as_str())
                        .map_err(|e| db_err(storage(e)))?;
                }
                other => return Err(crate::file::format_problem(&shown, other)),
            }
            txn.open_table(EVENTS).map_err(|e| db_err(storage(e)))?;
            txn.open_table(STREAM_INDEX)
                .map_err(|e| db_err(storage(e)))?;
            txn.open_table(CATEGORY_INDEX)
                .map_err(|e| db_err(storage(e)))?;
            txn.open_table(COMMANDS).map_err(|e| db_err(storage(e)))?;
            txn.open_table(COMMAND_DIGESTS)
                .map_err(|e| db_err(storage(e)))?;
        }
        txn.commit().map_err(|e| db_err(storage(e)))?;
        let store = Arc::new(Store::new(path, db));
        let tip = read_tip(&store).map_err(|e| match e {
            ReadError::Storage(s) => db_err(s),
            other => OpenError::Corrupt {
                path: shown.clone(),
                source: other,
            },
        })?;
        let (head_tx, head_rx) = watch::channel(tip.head);
        let (tx, rx) = mpsc::channel(config.queue);
        let counters = Arc::new(WriterCounters::default());
        let (committed, _) = broadcast::channel(COMMITTED_BATCHES_KEPT);
        let tail = rebuild_tail(&store).map_err(|e| match e {
            ReadError::Storage(s) => db_err(s),
            other => OpenError::Corrupt {
                path: shown.clone(),
                source: other,
            },
        })?;
        let tail = Arc::new(RwLock::new(tail));
        let (health_tx, health) = watch::channel(Health::Serving);
        let thread = Writer {
            store: store.clone(),
            space: Space::of(path),
            health: health_tx,
            generation: store.generation(),
            tip,
            tail: tail.clone(),
            head: head_tx,
            committed: committed.clone(),
            max_batch: config.max_batch,
            index_flush_events: config.index_flush_events.max(1),
            counters: counters.clone(),
        }
        .spawn(rx);
        Ok(EventLog {
            inner: Arc::new(Inner {
                store,
                health,
                config,
                tx: Some(tx),
                thread: Some(thread),
                head: head_rx,
                committed,
                counters,
                tail,
            }),
        })
    }

    /// Appends events to one stream atomically; returns once they are durable.
    pub async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, AppendError> {
        self.check(&req)?;
        let (reply, rx) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(AppendError::Closed)?;
        tx.send(Job { req, reply })
            .await
            .map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    fn check(&self, req: &AppendRequest) -> Result<(), AppendError> {
        check_stream_id(&req.stream)?;
        if req.events.is_empty() {
            return Err(AppendError::Empty);
        }
        let limit = self.inner.config.max_events_per_append;
        if req.events.len() > limit {
            return Err(AppendError::TooManyEvents {
                count: req.events.len(),
                limit,
            });
        }
        for (index, e) in req.events.iter().enumerate() {
            let limit = self.inner.config.max_event_bytes;
            if e.body.len() > limit {
                return Err(AppendError::EventTooLarge {
                    index,
                    size: e.body.len(),
                    limit,
                });
            }
            if !is_non_empty_object(&e.body) {
                return Err(AppendError::BodyNotObject { index });
            }
        }
        Ok(())
    }

    /// The writer thread's counters (commits, appends, time inserting, time committing).
    pub fn writer_counters(&self) -> &WriterCounters {
        &self.inner.counters
    }

    /// The last durable position (0 when empty).
    pub fn head(&self) -> u64 {
        *self.inner.head.borrow()
    }

    /// Whether the log takes appends (a full disk makes it [`Health::StorageFull`] until space
    /// is freed and an append is written again).
    pub fn health(&self) -> Health {
        self.inner.health.borrow().clone()
    }

    /// A receiver that changes whenever [`EventLog::health`] does.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.inner.health.clone()
    }

    /// A receiver that changes whenever the head moves.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.clone()
    }

    /// Up to `max` events of all streams from position `from` (inclusive). Blocking.
    pub fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredEvent>, ReadError> {
        let txn = self.inner.store.begin_read()?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut out = Vec::with_capacity(max.min(4096));
        for item in events.range(from.max(1)..).map_err(storage)?.take(max) {
            let (k, v) = item.map_err(storage)?;
            let position = k.value();
            out.push(
                StoredEvent::decode(position, v.value())
                    .map_err(|problem| ReadError::Corrupt { position, problem })?,
            );
        }
        Ok(out)
    }

    /// Up to `max` events of one stream from version `from`, forward or backward. Blocking.
    pub fn read_stream(
        &self,
        stream: &str,
        from: u64,
        direction: ReadDirection,
        max: usize,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        // The tail first, then the snapshot (see crate::tail for why this order misses nothing).
        let recent: Vec<(u64, u64)> = self.tail().streams.get(stream).cloned().unwrap_or_default();
        let txn = self.inner.store.begin_read()?;
        let index = txn.open_table(STREAM_INDEX).map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let mut found: Vec<(u64, u64)> = Vec::new();
        match direction {
            ReadDirection::Forward => {
                for item in index
                    .range((stream, from)..=(stream, u64::MAX))
                    .map_err(storage)?
                    .take(max)
                {
                    let (k, v) = item.map_err(storage)?;
                    found.push((k.value().1, v.value()));
                }
                let last = found.last().map_or(0, |(v, _)| *v);
                found.extend(recent.into_iter().filter(|(v, _)| *v >= from && *v > last));
            }
            ReadDirection::Backward => {
                found.extend(recent.into_iter().rev().filter(|(v, _)| *v <= from));
                let below = found
                    .last()
                    .map_or(from, |(v, _)| v.saturating_sub(1).min(from));
                for item in index
                    .range((stream, 0)..=(stream, below))
                    .map_err(storage)?
                    .rev()
                    .take(max)
                {
                    let (k, v) = item.map_err(storage)?;
                    found.push((k.value().1, v.value()));
                }
            }
        }
        found.truncate(max);
        found
            .into_iter()
            .map(|(_, p)| get_event(&events, p))
            .collect()
    }

    /// Up to `max` events of one category from position `from`. Blocking.
    pub fn read_category(
        &self,
        category: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        let recent: Vec<u64> = self
            .tail()
            .categories
            .get(category)
            .cloned()
            .unwrap_or_default();
        let txn = self.inner.store.begin_read()?;
        let index = txn.open_table(CATEGORY_INDEX).map_err(storage)?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        // The entry holding `from` may start before it.
        let start = match index
            .range((category, 0)..=(category, from))
            .map_err(storage)?
            .next_back()
        {
            Some(entry) => entry.map_err(storage)?.0.value().1,
            None => from,
        };
        let mut positions: Vec<u64> = Vec::new();
        'tables: for entry in index
            .range((category, start)..=(category, u64::MAX))
            .map_err(storage)?
        {
            let (_, packed) = entry.map_err(storage)?;
            for position in unpack_positions(packed.value()).filter(|p| *p >= from) {
                if positions.len() == max {
                    break 'tables;
                }
                positions.push(position);
            }
        }
        let last = positions.last().copied().unwrap_or(0);
        positions.extend(recent.into_iter().filter(|p| *p >= from && *p > last));
        positions.truncate(max);
        positions
            .into_iter()
            .map(|p| get_event(&events, p))
            .collect()
    }

    /// The stream's current version (0: no stream). Blocking.
    pub fn stream_version(&self, stream: &str) -> Result<u64, ReadError> {
        if let Some(v) = self.tail().last_version(stream) {
            return Ok(v);
        }
        let txn = self.inner.store.begin_read()?;
        let index = txn.open_table(STREAM_INDEX).map_err(storage)?;
        Ok(writer::last_version(&index, stream).map_err(storage)?)
    }

    /// The outcome recorded for a command id, if any (marked `deduplicated`). Blocking.
    pub fn command_outcome(&self, command_id: Uuid) -> Result<Option<AppendOutcome>, ReadError> {
        let recent = self.tail().commands.get(&command_id.as_u128()).copied();
        let txn = self.inner.store.begin_read()?;
        let events = txn.open_table(EVENTS).map_err(storage)?;
        let found = match recent {
            Some(found) => Some(found),
            None => {
                let commands = txn.open_table(COMMANDS).map_err(storage)?;

                commands
                    .get(command_id.as_u128())
                    .map_err(storage)?
                    .map(|v| v.value())
            }
        };
        found
            .map(|(first, count)| outcome_from_records(&events, first, count))
            .transpose()
    }

    /// What the command recorded under `command_id` said, if it was recorded with a digest.
    /// Blocking.
    pub fn command_digest(&self, command_id: Uuid) -> Result<Option<CommandDigest>, ReadError> {
        let txn = self.inner.store.begin_read()?;
        let digests = txn.open_table(COMMAND_DIGESTS).map_err(storage)?;
        Ok(digests
            .get(command_id.as_u128())
            .map_err(storage)?
            .and_then(|v| CommandDigest::decode(v.value())))
    }

    fn tail(&self) -> std::sync::RwLockReadGuard<'_, Tail> {
        self.inner.tail.read().expect("tail lock")
    }
}

/// The index entries of the records after the position the index tables cover.
pub(crate) fn rebuild_tail(store: &Store) -> Result<Tail, ReadError> {
    let txn = store.begin_read()?;
    let meta = txn.open_table(META).map_err(storage)?;
    let through = meta
        .get(INDEXED_THROUGH_KEY)
        .map_err(storage)?
        .and_then(|v| v.value().parse::<u64>().ok())
        .unwrap_or(0);
    let events = txn.open_table(EVENTS).map_err(storage)?;
    let mut tail = Tail::default();
    for item in events.range(through + 1..).map_err(storage)? {
        let (k, v) = item.map_err(storage)?;
        let position = k.value();
        let e = StoredEvent::decode(position, v.value())
            .map_err(|problem| ReadError::Corrupt { position, problem })?;
        tail.add(&Entry {
            stream: e.stream,
            version: e.stream_version,
            position,
            command: e.command_id.map(|c| c.as_u128()),
        });
    }
    Ok(tail)
}

pub(crate) fn read_tip(store: &Store) -> Result<Tip, ReadError> {
    let txn = store.begin_read()?;
    let events = txn.open_table(EVENTS).map_err(storage)?;
    match events.last().map_err(storage)? {
        None => Ok(Tip {
            head: 0,
            chain: GENESIS,
        }),
        Some((k, v)) => {
            let position = k.value();
            let e = StoredEvent::decode(position, v.value())
                .map_err(|problem| ReadError::Corrupt { position, problem })?;
            Ok(Tip {
                head: position,
                chain: e.chain,
            })
        }
    }
}

/// Stream ids are `<category>-<rest>`: the category (a NATS subject token) is `[a-z][a-z0-9_]*`;
/// the whole id is 1..=256 printable ASCII bytes without spaces.
pub(crate) fn check_stream_id(stream: &str) -> Result<(), AppendError> {
    let bad = |reason| {
        Err(AppendError::InvalidStreamId {
            stream: stream.chars().take(300).collect(),
            reason,
        })
    };
    if stream.is_empty() || stream.len() > 256 {
        return bad("must be 1 to 256 bytes");
    }
    if !stream.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("must be printable ASCII without spaces");
    }
    let cat = category_of(stream);
    let mut bytes = cat.bytes();
    if !bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return bad("category (before the first `-`) must match [a-z][a-z0-9_]*");
    }
    Ok(())
}

fn is_non_empty_object(body: &[u8]) -> bool {
    body.first() == Some(&b'{')
        && body[1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b != b'}')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}
