//! The state of anything at a past moment, from history alone: one aggregate folded with the
//! domain's own `evolve` (the code the node decides with), or one projection rebuilt up to the
//! moment.
//!
//! Invariant: the state as of position `p` is the fold of exactly the events at positions ≤ `p`;
//! as of a time `t`, of exactly the events recorded at or before `t`. An event that cannot be
//! read is an error, never skipped.

use crate::error::ReplayError;
use crate::rebuild::rebuild_into;
use crate::source::{Flow, Source};
use chrono::{DateTime, Utc};
use serde::Serialize;
use streamfleet_domain::{State, evolve};
use streamfleet_projections::DumpRow;

/// A moment in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Moment {
    /// Just after the event at this position.
    Position(u64),
    /// Every event recorded at or before this time.
    Time(DateTime<Utc>),
    /// Everything there is.
    Now,
}

/// One aggregate's state at a moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AggregateAsOf {
    /// The stream.
    pub stream: String,
    /// The moment asked for.
    pub moment: Moment,
    /// Events folded (its version then; 0: it did not exist yet).
    pub version: u64,
    /// Position of the last event folded (0: none).
    pub position: u64,
    /// When that event was recorded.
    pub time: Option<DateTime<Utc>>,
    /// The state, as the domain folds it.
    pub state: State,
}

/// Folds the events of `stream` up to `moment` with the domain's `evolve`.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamfleet_replay::ReplayError> {
/// use streamfleet_replay::{Moment, Source, aggregate_as_of};
/// let source = Source::file("events-copy.redb")?;
/// let then = aggregate_as_of(&source, "session-0190", Moment::Position(120)).await?;
/// println!("{}", serde_json::to_string_pretty(&then.state).unwrap());
/// # Ok(()) }
/// ```
pub async fn aggregate_as_of(
    source: &Source,
    stream: &str,
    moment: Moment,
) -> Result<AggregateAsOf, ReplayError> {
    let to = match moment {
        Moment::Position(p) => Some(p),
        Moment::Time(_) | Moment::Now => None,
    };
    let mut out = AggregateAsOf {
        stream: stream.to_string(),
        moment,
        version: 0,
        position: 0,
        time: None,
        state: State::default(),
    };
    let mut state = State::default();
    source
        .scan_stream(stream, to, async |e| {
            let typed = e
                .typed()
                .map_err(|problem| source.event_error(e.position, problem))?;
            if let Moment::Time(t) = moment
                && typed.time > t
            {
                return Ok(Flow::Stop);
            }
            state = evolve(std::mem::take(&mut state), &typed.event);
            out.version = typed.streamversion;
            out.position = typed.position;
            out.time = Some(typed.time);
            Ok(Flow::Continue)
        })
        .await?;
    out.state = state;
    Ok(out)
}

/// The last position at `moment`: for a time, the last event recorded at or before it (0: none).
pub async fn position_at(source: &Source, moment: Moment) -> Result<u64, ReplayError> {
    match moment {
        Moment::Position(p) => {
            let head = source.head().await?;
            if p > head {
                return Err(ReplayError::Request(format!(
                    "{}: position {p} is past the log's head {head}",
                    source.name()
                )));
            }
            Ok(p)
        }
        Moment::Now => source.head().await,
        Moment::Time(t) => {
            let mut last = 0;
            source
                .scan(1, None, false, async |e| {
                    let meta = e
                        .meta()
                        .map_err(|problem| source.event_error(e.position, problem))?;
                    // Record times follow positions (one writer stamps them in order), so the
                    // first later event ends the search.
                    if meta.time > t {
                        return Ok(Flow::Stop);
                    }
                    last = e.position;
                    Ok(Flow::Continue)
                })
                .await?;
            Ok(last)
        }
    }
}

/// One projection's rows at a moment: every view rebuilt from position 1 into a scratch folder
/// up to the moment, then the asked one read back.
pub async fn view_as_of(
    source: &Source,
    view: &str,
    moment: Moment,
) -> Result<(u64, Vec<DumpRow>), ReplayError> {
    if !streamfleet_projections::views::VIEW_NAMES.contains(&view) {
        return Err(ReplayError::Request(format!(
            "no view `{view}`; the views are {}",
            streamfleet_projections::views::VIEW_NAMES.join(", ")
        )));
    }
    let position = position_at(source, moment).await?;
    let scratch = tempfile::tempdir().map_err(|e| ReplayError::io(std::env::temp_dir(), e))?;
    rebuild_into(
        source,
        scratch.path(),
        position,
        crate::progress::ProgressMode::Quiet,
    )
    .await?;
    let rows = streamfleet_projections::dump(&streamfleet_projections::store::view_path(
        scratch.path(),
        view,
    ))?;
    Ok((position, rows))
}
