//! View files: `<dir>/<view>.redb`, one table of prost-encoded rows per row kind, and the
//! view's checkpoint in table `meta`.
//!
//! Invariant: a view's changed rows and its checkpoint (the last position they reflect) are
//! written in one redb transaction, so a file always holds the rows of exactly the position
//! its checkpoint names, whatever crash happens. Most commits skip the fsync
//! (`Durability::None`); a crash then rolls the file back to the last durable commit, rows and
//! checkpoint together, and the views re-apply from there.

use crate::error::StoreError;
use crate::pb;
use crate::views::{VIEW_NAMES, ViewBatch, ViewSet};
use prost::Message;
use redb::{
    Database, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle,
};
use std::fmt;
use std::path::{Path, PathBuf};

/// The table holding the checkpoint.
pub const META_TABLE: &str = "meta";
/// The checkpoint's key in [`META_TABLE`]; its value is the position, 8 bytes big-endian.
pub const CHECKPOINT_KEY: &str = "checkpoint";

fn table(name: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name)
}

/// The file of a view in a data directory.
pub fn view_path(dir: &Path, view: &str) -> PathBuf {
    dir.join(format!("{view}.redb"))
}

/// The view files of a data directory, open for writing.
pub struct Store {
    files: Vec<(&'static str, PathBuf, Database)>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let paths: Vec<_> = self.files.iter().map(|(_, p, _)| p).collect();
        f.debug_struct("Store").field("files", &paths).finish()
    }
}

/// One stored row: its table, key and bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DumpRow {
    /// The table (`meta` for the checkpoint).
    pub table: String,
    /// The key.
    pub key: String,
    /// The stored bytes (prost-encoded row; the checkpoint as 8 bytes big-endian).
    pub bytes: Vec<u8>,
}

/// Every row of a readable view file, sorted by (table, key).
fn read_rows(db: &impl ReadableDatabase, path: &Path) -> Result<Vec<DumpRow>, StoreError> {
    let err = |e: redb::Error| StoreError::redb(path, e);
    let txn = db.begin_read().map_err(|e| err(e.into()))?;
    let mut names: Vec<String> = txn
        .list_tables()
        .map_err(|e| err(e.into()))?
        .map(|h| h.name().to_string())
        .collect();
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        let t = txn.open_table(table(&name)).map_err(|e| err(e.into()))?;
        for entry in t.iter().map_err(|e| err(e.into()))? {
            let (k, v) = entry.map_err(|e| err(e.into()))?;
            rows.push(DumpRow {
                table: name.clone(),
                key: k.value().to_string(),
                bytes: v.value().to_vec(),
            });
        }
    }
    Ok(rows)
}

fn checkpoint_of(row: &DumpRow, path: &Path) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = row
        .bytes
        .as_slice()
        .try_into()
        .map_err(|_| StoreError::Checkpoint {
            path: path.to_path_buf(),
        })?;
    Ok(u64::from_be_bytes(bytes))
}

impl Store {
    /// Opens (creating when absent) the view files in `dir` and loads their rows and
    /// checkpoints into a [`ViewSet`].
    pub fn open(dir: &Path) -> Result<(Store, ViewSet), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut views = ViewSet::default();
        let mut files = Vec::new();
        for name in VIEW_NAMES {
            let path = view_path(dir, name);
            let db = Database::create(&path).map_err(|e| StoreError::redb(&path, e))?;
            let mut position = 0;
            let mut tables = views.tables_of(name).unwrap_or_default();
            for row in read_rows(&db, &path)? {
                if row.table == META_TABLE {
                    if row.key == CHECKPOINT_KEY {
                        position = checkpoint_of(&row, &path)?;
                    }
                    continue;
                }
                let Some(t) = tables.iter_mut().find(|t| t.name() == row.table) else {
                    tracing::warn!(file = %path.display(), table = %row.table, "unknown table ignored");
                    continue;
                };
                t.load(row.key.clone(), &row.bytes)
                    .map_err(|source| StoreError::Decode {
                        path: path.clone(),
                        table: row.table,
                        key: row.key,
                        source,
                    })?;
            }
            drop(tables);
            views.loaded(name, position);
            files.push((name, path, db));
        }
        Ok((Store { files }, views))
    }

    /// Writes each view's changed rows with its new checkpoint, one transaction per view;
    /// `durable`: fsync before returning.
    pub fn write(&self, batches: &[ViewBatch], durable: bool) -> Result<(), StoreError> {
        for batch in batches {
            let Some((_, path, db)) = self.files.iter().find(|(n, _, _)| *n == batch.view) else {
                continue;
            };
            let err = |e: redb::Error| StoreError::redb(path, e);
            let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
            txn.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(|e| err(e.into()))?;
            {
                for group in batch.changes.chunk_by(|x, y| x.table == y.table) {
                    let mut t = txn
                        .open_table(table(group[0].table))
                        .map_err(|e| err(e.into()))?;
                    for change in group {
                        match &change.bytes {
                            Some(bytes) => t.insert(change.key.as_str(), bytes.as_slice()),
                            None => t.remove(change.key.as_str()),
                        }
                        .map_err(|e| err(e.into()))?;
                    }
                }
                let mut meta = txn
                    .open_table(table(META_TABLE))
                    .map_err(|e| err(e.into()))?;
                meta.insert(CHECKPOINT_KEY, batch.position.to_be_bytes().as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            txn.commit().map_err(|e| err(e.into()))?;
        }
        Ok(())
    }

    /// Makes everything written so far durable (one empty durable commit per file).
    pub fn sync(&self) -> Result<(), StoreError> {
        for (_, path, db) in &self.files {
            let err = |e: redb::Error| StoreError::redb(path, e);
            let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
            txn.set_durability(Durability::Immediate)
                .map_err(|e| err(e.into()))?;
            txn.commit().map_err(|e| err(e.into()))?;
        }
        Ok(())
    }
}

/// Every stored row of a view file (not open elsewhere), sorted by (table, key), checkpoint
/// included (table `meta`). Two files hold the same view state exactly when their dumps are
/// equal.
pub fn dump(path: &Path) -> Result<Vec<DumpRow>, StoreError> {
    let db = ReadOnlyDatabase::open(path).map_err(|e| StoreError::redb(path, e))?;
    read_rows(&db, path)
}

/// One row that two data directories hold differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The view.
    pub view: String,
    /// The table.
    pub table: String,
    /// The row's key.
    pub key: String,
    /// The row in the first directory, decoded for reading (`None`: absent).
    pub a: Option<String>,
    /// The row in the second directory (`None`: absent).
    pub b: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Option<String>| s.clone().unwrap_or_else(|| "(absent)".to_string());
        write!(
            f,
            "{}/{}/{}: a = {}; b = {}",
            self.view,
            self.table,
            self.key,
            side(&self.a),
            side(&self.b)
        )
    }
}

/// A stored row in words: the decoded message's Debug form (or the raw bytes when its table
/// is unknown or it does not decode).
pub fn describe(table: &str, bytes: &[u8]) -> String {
    fn show<M: Message + Default + fmt::Debug>(bytes: &[u8]) -> String {
        M::decode(bytes)
            .map(|m| format!("{m:?}"))
            .unwrap_or_else(|e| format!("undecodable ({e}): {bytes:02x?}"))
    }
    match table {
        "host_beats" => show::<pb::HostBeatRow>(bytes),
        "session_beats" => show::<pb::SessionBeatRow>(bytes),
        "session_checks" => show::<pb::SessionCheckRow>(bytes),
        "discrepancies" => show::<pb::DiscrepancyRow>(bytes),
        "sessions" => show::<pb::SessionRow>(bytes),
        "hosts" => show::<pb::HostRow>(bytes),
        "pools" => show::<pb::PoolRow>(bytes),
        "rollouts" => show::<pb::RolloutRow>(bytes),
        "rollout_hosts" => show::<pb::RolloutHostRow>(bytes),
        "instances" => show::<pb::InstanceRow>(bytes),
        "compute_hosts" => show::<pb::ComputeHostRow>(bytes),
        "migrations" => show::<pb::MigrationRow>(bytes),
        "file_systems" => show::<pb::FileSystemRow>(bytes),
        "nodes" => show::<pb::NodeRow>(bytes),
        META_TABLE => match <[u8; 8]>::try_from(bytes) {
            Ok(b) => format!("position {}", u64::from_be_bytes(b)),
            Err(_) => format!("{bytes:02x?}"),
        },
        _ => format!("{bytes:02x?}"),
    }
}

/// The rows that differ between the view files of two data directories, by view, table and
/// key (a missing file counts as empty). Empty when both hold exactly the same state.
pub fn diff(a_dir: &Path, b_dir: &Path) -> Result<Vec<Difference>, StoreError> {
    let load = |dir: &Path, view: &str| {
        let path = view_path(dir, view);
        if path.exists() {
            dump(&path)
        } else {
            Ok(Vec::new())
        }
    };
    let mut out = Vec::new();
    for view in VIEW_NAMES {
        out.extend(diff_rows(view, load(a_dir, view)?, load(b_dir, view)?));
    }
    Ok(out)
}

/// The rows that differ between two dumps of one view (each sorted by table and key, as
/// [`dump`] returns them). Empty when they hold exactly the same state.
pub fn diff_rows(view: &str, a: Vec<DumpRow>, b: Vec<DumpRow>) -> Vec<Difference> {
    let mut out = Vec::new();
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => (&x.table, &x.key).cmp(&(&y.table, &y.key)),
        };
        let (x, y) = match order {
            std::cmp::Ordering::Less => (a.next(), None),
            std::cmp::Ordering::Greater => (None, b.next()),
            std::cmp::Ordering::Equal => (a.next(), b.next()),
        };
        if let (Some(x), Some(y)) = (&x, &y)
            && x.bytes == y.bytes
        {
            continue;
        }
        let Some(row) = x.as_ref().or(y.as_ref()) else {
            break;
        };
        out.push(Difference {
            view: view.to_string(),
            table: row.table.clone(),
            key: row.key.clone(),
            a: x.as_ref().map(|r| describe(&r.table, &r.bytes)),
            b: y.as_ref().map(|r| describe(&r.table, &r.bytes)),
        });
    }
    out
}
