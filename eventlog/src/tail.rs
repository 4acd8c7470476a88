//! The index tail: the index entries of events that are durable but not yet written into the
//! index tables.
//!
//! Invariant: for every committed position `p`, its stream, category and command entries are in
//! the index tables if `p <= indexed_through` (in the `meta` table), and in the tail otherwise. The writer adds a batch's
//! entries only after the batch is committed, and removes flushed entries only after the
//! transaction that wrote them into the tables is committed; a reader that takes its copy of the
//! tail *before* it opens its read transaction therefore misses nothing (it may see an entry in
//! both, and keeps one). On open the tail is rebuilt from the records after `indexed_through`.
//!
//! Writing index entries in bulk, every `Config::index_flush_events` events, instead of with every commit is
//! what keeps a commit to one sequential table: the stream index touches one B-tree leaf per
//! stream, and a flush writes each touched leaf once for thousands of events.

use std::collections::HashMap;

/// Index entries not yet in the tables.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    /// stream → (version, position), ascending.
    pub(crate) streams: HashMap<String, Vec<(u64, u64)>>,
    /// category → positions, ascending.
    pub(crate) categories: HashMap<String, Vec<u64>>,
    /// command id → (first position, count).
    pub(crate) commands: HashMap<u128, (u64, u32)>,
    /// Events in the tail.
    pub(crate) events: usize,
}

/// One event's index entries.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) stream: String,
    pub(crate) version: u64,
    pub(crate) position: u64,
    pub(crate) command: Option<u128>,
}

impl Tail {
    pub(crate) fn add(&mut self, e: &Entry) {
        self.streams
            .entry(e.stream.clone())
            .or_default()
            .push((e.version, e.position));
        let category = streamfleet_bus_schemas::category_of(&e.stream);
        match self.categories.get_mut(category) {
            Some(positions) => positions.push(e.position),
            None => {
                self.categories
                    .insert(category.to_string(), vec![e.position]);
            }
        }
        if let Some(id) = e.command {
            self.commands
                .entry(id)
                .and_modify(|(_, n)| *n += 1)
                .or_insert((e.position, 1));
        }
        self.events += 1;
    }

    /// The last version of `stream` in the tail.
    pub(crate) fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams
            .get(stream)
            .and_then(|v| v.last())
            .map(|(version, _)| *version)
    }
}
