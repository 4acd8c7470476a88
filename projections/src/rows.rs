//! Rows of one kind, kept in key order, with the keys changed since the last store.
//!
//! Invariant: every change to a row goes through [`Table`], which records its key in the
//! changed set only when the row's value really changed; so what is stored and broadcast after
//! a batch is exactly the set of rows that differ from before it, and iteration (BTreeMap) is
//! the same on every run.

use chrono::{DateTime, Utc};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

/// One changed row, as stored: its table, key and prost bytes (`None`: deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The table (unique across views).
    pub table: &'static str,
    /// The row's key.
    pub key: String,
    /// The encoded row; `None` when it was deleted.
    pub bytes: Option<Vec<u8>>,
}

/// Rows of one message type, by key.
#[derive(Debug, Clone)]
pub struct Table<R> {
    name: &'static str,
    rows: BTreeMap<String, R>,
    changed: BTreeSet<String>,
}

impl<R: Message + Default + Clone + PartialEq> Table<R> {
    /// An empty table named `name` (the redb table name, unique across views).
    pub fn new(name: &'static str) -> Self {
        Table {
            name,
            rows: BTreeMap::new(),
            changed: BTreeSet::new(),
        }
    }

    /// The row at `key`.
    pub fn get(&self, key: &str) -> Option<&R> {
        self.rows.get(key)
    }

    /// All rows in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &R)> {
        self.rows.iter()
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Changes the row at `key` through `f`, creating it (default) when absent; records the
    /// key when the row changed.
    pub fn upsert(&mut self, key: &str, f: impl FnOnce(&mut R)) {
        match self.rows.get_mut(key) {
            Some(row) => {
                let before = row.clone();
                f(row);
                if *row != before {
                    self.changed.insert(key.to_string());
                }
            }
            None => {
                let mut row = R::default();
                f(&mut row);
                self.rows.insert(key.to_string(), row);
                self.changed.insert(key.to_string());
            }
        }
    }

    /// Changes the row at `key` through `f` when it exists; returns whether it existed.
    pub fn update(&mut self, key: &str, f: impl FnOnce(&mut R)) -> bool {
        if !self.rows.contains_key(key) {
            return false;
        }
        self.upsert(key, f);
        true
    }
}

/// What the store needs of a table, whatever its row type.
pub trait StoredTable: Send + Sync {
    /// The table's name.
    fn name(&self) -> &'static str;
    /// The rows changed since the last call, encoded, in key order.
    fn take_changes(&mut self) -> Vec<RowChange>;
    /// Puts a stored row back (on open), without recording a change.
    fn load(&mut self, key: String, bytes: &[u8]) -> Result<(), prost::DecodeError>;
}

impl<R: Message + Default + Clone + PartialEq> StoredTable for Table<R> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn take_changes(&mut self) -> Vec<RowChange> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|key| {
                let bytes = self.rows.get(&key).map(Message::encode_to_vec);
                RowChange {
                    table: self.name,
                    key,
                    bytes,
                }
            })
            .collect()
    }

    fn load(&mut self, key: String, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        self.rows.insert(key, R::decode(bytes)?);
        Ok(())
    }
}

/// A protobuf timestamp of a time.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// The time of a protobuf timestamp (`None` when out of range).
pub fn time_of(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

/// Orders two timestamps (protobuf's type does not).
pub fn later(a: &prost_types::Timestamp, b: &prost_types::Timestamp) -> bool {
    (a.seconds, a.nanos) > (b.seconds, b.nanos)
}
