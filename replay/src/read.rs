//! Reading history: which events ([`Filter`]) and how they are shown ([`Format`], [`Printer`]).
//!
//! ```
//! use streamfleet_replay::Filter;
//! let filter = Filter {
//!     categories: vec!["session".into()],
//!     types: vec!["SessionEnded".into()],
//!     ..Filter::default()
//! };
//! assert!(!filter.is_empty());
//! ```

use crate::source::{Audited, Meta};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::Write;
use uuid::Uuid;

/// Which events to keep; every set criterion must hold (empty lists keep all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only these streams (e.g. `session-0190…`).
    pub streams: Vec<String>,
    /// Only these categories (`session` for `session-*`).
    pub categories: Vec<String>,
    /// Only these event types.
    pub types: Vec<String>,
    /// Only events recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events recorded at or before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events of this correlation (one user action and everything it caused).
    pub correlation: Option<Uuid>,
    /// Only events caused by these senders: a role (`operator`), a host (`host.h1`), or
    /// `host.*` for every host.
    pub actors: Vec<String>,
}

impl Filter {
    /// Whether it keeps every event.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// Whether the event with these attributes is kept.
    pub fn keeps(&self, meta: &Meta<'_>) -> bool {
        let stream = meta.subject.as_ref();
        (self.streams.is_empty() || self.streams.iter().any(|s| s == stream))
            && (self.categories.is_empty()
                || self
                    .categories
                    .iter()
                    .any(|c| c == streamfleet_bus_schemas::category_of(stream)))
            && (self.types.is_empty() || self.types.iter().any(|t| *t == meta.event_type))
            && self.since.is_none_or(|s| meta.time >= s)
            && self.until.is_none_or(|u| meta.time <= u)
            && self
                .correlation
                .is_none_or(|c| meta.correlationid == Some(c))
            && (self.actors.is_empty() || self.actors.iter().any(|a| actor_matches(a, meta)))
    }
}

/// Whether `pattern` (`worker`, `host.h1`, `host.*`) names the event's actor.
fn actor_matches(pattern: &str, meta: &Meta<'_>) -> bool {
    let Some(actor) = meta.actor.as_deref() else {
        return false;
    };
    match pattern.strip_suffix('*') {
        Some(prefix) => actor.starts_with(prefix),
        None => actor == pattern,
    }
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One aligned row per event, for people.
    #[default]
    Table,
    /// One CloudEvents JSON object per line (as the log holds it), for tools.
    Json,
}

/// Prints events in a [`Format`].
pub struct Printer<W: Write> {
    format: Format,
    out: W,
    rows: u64,
}

#[derive(Deserialize)]
struct DataOnly<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Longest payload shown in a table row.
const DATA_WIDTH: usize = 100;

impl<W: Write> Printer<W> {
    /// A printer writing to `out`.
    pub fn new(format: Format, out: W) -> Self {
        Printer {
            format,
            out,
            rows: 0,
        }
    }

    /// Rows printed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Prints one event.
    pub fn print(&mut self, event: &Audited, meta: &Meta<'_>) -> std::io::Result<()> {
        if self.format == Format::Json {
            self.out.write_all(&event.json)?;
            self.rows += 1;
            return self.out.write_all(b"\n");
        }
        if self.rows == 0 {
            writeln!(
                self.out,
                "{:>9}  {:<24}  {:<44}  {:>5}  {:<20}  {:<8}  {:<16}  DATA",
                "POSITION", "TIME", "STREAM", "VER", "TYPE", "CORREL", "ACTOR"
            )?;
        }
        let data = serde_json::from_slice::<DataOnly<'_>>(&event.json)
            .map(|d| d.data.get().to_string())
            .unwrap_or_default();
        let data = if data.chars().count() > DATA_WIDTH {
            let cut: String = data.chars().take(DATA_WIDTH - 1).collect();
            format!("{cut}…")
        } else {
            data
        };
        let correlation = meta
            .correlationid
            .map(|c| c.simple().to_string()[..8].to_string())
            .unwrap_or_default();
        writeln!(
            self.out,
            "{:>9}  {:<24}  {:<44}  {:>5}  {:<20}  {:<8}  {:<16}  {}",
            event.position,
            meta.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            meta.subject,
            meta.streamversion,
            meta.event_type,
            correlation,
            meta.actor.as_deref().unwrap_or("-"),
            data
        )?;
        self.rows += 1;
        Ok(())
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
