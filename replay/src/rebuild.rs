//! Rebuilding projections from history, and comparing a rebuild with the live store.
//!
//! Invariant: a rebuild feeds exactly positions `1..=until`, in order, through the same folds
//! the live projections run (`streamfleet-projections`), so a live view whose checkpoint is `p`
//! and a rebuild up to `p` hold the same bytes; [`diff_live`] compares each live view with a
//! rebuild up to that view's own checkpoint.

use crate::error::ReplayError;
use crate::progress::{Progress, ProgressMode};
use crate::source::{Flow, Source};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use streamfleet_projections::store::{CHECKPOINT_KEY, META_TABLE, view_path};
use streamfleet_projections::views::VIEW_NAMES;
use streamfleet_projections::{Difference, DumpRow, EventFeed, SourcedEvent};

/// Events in flight between the reader and the views.
const FEED_CAPACITY: usize = 16_384;

/// Builds every view from position 1 to `until` into `dir` (which should hold no views yet).
/// Returns the position stored. An event that cannot be read stops the rebuild with an error
/// naming its position.
pub async fn rebuild_into(
    source: &Source,
    dir: &Path,
    until: u64,
    progress: ProgressMode,
) -> Result<u64, ReplayError> {
    let (sender, feed) = EventFeed::channel(FEED_CAPACITY);
    let into = dir.to_path_buf();
    let views =
        tokio::spawn(
            async move { streamfleet_projections::rebuild_from(feed, &into, until).await },
        );
    sender.set_head(until);
    let mut shown = Progress::new(progress, "rebuild", until);
    let scanned = source
        .scan(1, Some(until), false, async |e| {
            let typed = e
                .typed()
                .map_err(|problem| source.event_error(e.position, problem))?;
            let position = typed.position;
            let sent = sender
                .send_sourced(SourcedEvent {
                    position,
                    time: typed.time,
                    event: Some(typed.event),
                })
                .await;
            if sent.is_err() {
                // The views stopped; their own error is reported below.
                return Ok(Flow::Stop);
            }
            if position.is_multiple_of(4096) {
                shown.set(position);
            }
            Ok(Flow::Continue)
        })
        .await;
    shown.finish();
    drop(sender);
    let stored = views
        .await
        .map_err(|e| ReplayError::Request(format!("the rebuild task failed: {e}")))??;
    scanned?;
    if stored != until {
        return Err(ReplayError::Request(format!(
            "{}: the log ends at position {stored}, before {until}",
            source.name()
        )));
    }
    Ok(stored)
}

/// A live store compared with rebuilds from history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveDiff {
    /// Each view and the checkpoint it was compared at.
    pub checkpoints: BTreeMap<String, u64>,
    /// Rows that differ (`a`: live, `b`: rebuilt). Empty when the live store is exactly what
    /// history gives.
    #[serde(serialize_with = "differences_as_text")]
    pub differences: Vec<Difference>,
}

fn differences_as_text<S: serde::Serializer>(
    differences: &[Difference],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(differences.iter().map(|d| {
        serde_json::json!({
            "view": d.view, "table": d.table, "key": d.key, "live": d.a, "rebuilt": d.b,
        })
    }))
}

/// The checkpoint in a view's dump (0: none yet).
fn checkpoint_of(rows: &[DumpRow]) -> u64 {
    rows.iter()
        .find(|r| r.table == META_TABLE && r.key == CHECKPOINT_KEY)
        .and_then(|r| <[u8; 8]>::try_from(r.bytes.as_slice()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Compares every view in `live_dir` (the folder of a stopped `projections serve`: a serving
/// process holds its files) with a rebuild from `source` up to that view's checkpoint.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamfleet_replay::ReplayError> {
/// use streamfleet_replay::{ProgressMode, Source, diff_live};
/// let source = Source::file("events-copy.redb")?;
/// let diff = diff_live(&source, ".streamfleet/projections".as_ref(), ProgressMode::Quiet).await?;
/// assert!(diff.differences.is_empty(), "{:#?}", diff.differences);
/// # Ok(()) }
/// ```
pub async fn diff_live(
    source: &Source,
    live_dir: &Path,
    progress: ProgressMode,
) -> Result<LiveDiff, ReplayError> {
    let mut live = Vec::new();
    for view in VIEW_NAMES {
        let path = view_path(live_dir, view);
        if !path.is_file() {
            return Err(ReplayError::Request(format!(
                "{} has no view file {view}.redb: is it a projections folder?",
                live_dir.display()
            )));
        }
        let rows = streamfleet_projections::dump(&path).map_err(|e| match e {
            streamfleet_projections::StoreError::Redb { source, .. }
                if matches!(*source, redb::Error::DatabaseAlreadyOpen) =>
            {
                ReplayError::Request(format!(
                    "{} is open in a running `projections serve`: stop it first (it resumes \
                     from its checkpoint when started again), or diff a copy taken while stopped",
                    path.display()
                ))
            }
            other => other.into(),
        })?;
        live.push((view, checkpoint_of(&rows), rows));
    }
    let mut positions: Vec<u64> = live.iter().map(|(_, p, _)| *p).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut out = LiveDiff {
        checkpoints: live.iter().map(|(v, p, _)| (v.to_string(), *p)).collect(),
        differences: Vec::new(),
    };
    for position in positions {
        let scratch = tempfile::tempdir().map_err(|e| ReplayError::io(std::env::temp_dir(), e))?;
        rebuild_into(source, scratch.path(), position, progress).await?;
        for (view, at, rows) in live.iter_mut() {
            if *at != position {
                continue;
            }
            let rebuilt = streamfleet_projections::dump(&view_path(scratch.path(), view))?;
            out.differences.extend(streamfleet_projections::diff_rows(
                view,
                std::mem::take(rows),
                rebuilt,
            ));
        }
    }
    Ok(out)
}
