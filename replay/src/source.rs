//! Where history comes from: a log file opened read-only, or a live node over NATS.
//!
//! Invariant: a scan yields events in position order, each once, without gaps; a damaged record
//! or an event this build cannot read stops the scan with an error naming the source and the
//! position — never a silently shorter result.

use crate::error::{EventProblem, ReplayError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::Path;
use streamfleet_bus_client::{Follower, LogReader, NatsLogin};
use streamfleet_bus_schemas::{Event, ReadRequest, SCHEMA_VERSION};
use streamfleet_eventlog::{LogFile, StoredEvent};
use uuid::Uuid;

/// Where history is read from.
pub enum Source {
    /// A log file (a copy, or a stopped node's), read-only.
    File(LogFile),
    /// A live node, through its read API and event subjects (the `auditor` role).
    Live {
        /// The connection.
        client: async_nats::Client,
        /// The server, for messages.
        url: String,
    },
}

/// One event as an auditor sees it.
#[derive(Debug, Clone)]
pub struct Audited {
    /// Global position.
    pub position: u64,
    /// The event's CloudEvents JSON ([`streamfleet_bus_schemas::EventEnvelope`]).
    pub json: Bytes,
    /// What only the file holds: stream, command and chain hash.
    pub record: Option<RecordFacts>,
}

/// The parts of a stored record that are not in the event's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFacts {
    /// The stream.
    pub stream: String,
    /// The command that appended it, when one was named.
    pub command_id: Option<Uuid>,
    /// The chain hash through this event.
    pub chain: [u8; 32],
}

/// The attributes filters and tables need, read without decoding the payload.
#[derive(Debug, Deserialize)]
pub struct Meta<'a> {
    /// Version in its stream.
    pub streamversion: u64,
    /// The event type.
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
    /// The stream.
    #[serde(borrow)]
    pub subject: Cow<'a, str>,
    /// When the log recorded it.
    pub time: DateTime<Utc>,
    /// The payload's schema version.
    pub schemaversion: u32,
    /// The correlation id of the command that caused it.
    #[serde(default)]
    pub correlationid: Option<Uuid>,
    /// Who sent that command, as NATS authenticated it (`worker`, `host.h1`); absent in
    /// events recorded before senders were named.
    #[serde(default, borrow)]
    pub actor: Option<Cow<'a, str>>,
}

/// Whether a scan goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Next event, please.
    Continue,
    /// Enough.
    Stop,
}

impl Audited {
    fn from_stored(e: StoredEvent) -> Audited {
        Audited {
            position: e.position,
            json: e.envelope_json().into(),
            record: Some(RecordFacts {
                stream: e.stream,
                command_id: e.command_id,
                chain: e.chain,
            }),
        }
    }

    /// Its attributes; an unreadable envelope or a newer schema version is an error.
    pub fn meta(&self) -> Result<Meta<'_>, EventProblem> {
        let meta: Meta<'_> = serde_json::from_slice(&self.json)
            .map_err(|e| EventProblem::Unreadable(e.to_string()))?;
        if meta.schemaversion > SCHEMA_VERSION {
            return Err(EventProblem::NewerSchema {
                found: meta.schemaversion,
                known: SCHEMA_VERSION,
            });
        }
        Ok(meta)
    }

    /// Its typed payload and the attributes folds need, in one pass (the payload is read from
    /// its JSON text, no value tree); an unknown type is an error.
    pub fn typed(&self) -> Result<Typed, EventProblem> {
        let parts: Parts<'_> = serde_json::from_slice(&self.json)
            .map_err(|e| EventProblem::Unreadable(e.to_string()))?;
        if parts.schemaversion > SCHEMA_VERSION {
            return Err(EventProblem::NewerSchema {
                found: parts.schemaversion,
                known: SCHEMA_VERSION,
            });
        }
        let event = Event::from_json(&parts.event_type, parts.data.get()).map_err(|e| match e {
            streamfleet_bus_schemas::PayloadError::UnknownType(t) => EventProblem::UnknownType(t),
            other => EventProblem::Unreadable(other.to_string()),
        })?;
        Ok(Typed {
            position: self.position,
            streamversion: parts.streamversion,
            time: parts.time,
            event,
        })
    }
}

/// An event read for folding: where it is, when it was recorded, its typed payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Typed {
    /// Global position.
    pub position: u64,
    /// Version in its stream.
    pub streamversion: u64,
    /// When the log recorded it.
    pub time: DateTime<Utc>,
    /// The payload.
    pub event: Event,
}

#[derive(Deserialize)]
struct Parts<'a> {
    streamversion: u64,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    time: DateTime<Utc>,
    schemaversion: u32,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

impl Source {
    /// Opens a log file read-only.
    pub fn file(path: impl AsRef<Path>) -> Result<Source, ReplayError> {
        Ok(Source::File(LogFile::open(path)?))
    }

    /// Connects to a live node's NATS server.
    pub async fn live(login: &NatsLogin) -> Result<Source, ReplayError> {
        let url = login.url.clone();
        let client =
            streamfleet_bus_client::connect(login)
                .await
                .map_err(|e| ReplayError::Live {
                    source_name: url.clone(),
                    error: e.to_string(),
                })?;
        Ok(Source::Live { client, url })
    }

    /// The file or server, for messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(f) => f.path().display().to_string(),
            Source::Live { url, .. } => url.clone(),
        }
    }

    /// The log file, when reading one.
    pub fn log_file(&self) -> Option<&LogFile> {
        match self {
            Source::File(f) => Some(f),
            Source::Live { .. } => None,
        }
    }

    /// The error for a problem with the event at `position` of this source.
    pub fn event_error(&self, position: u64, problem: EventProblem) -> ReplayError {
        ReplayError::Event {
            source_name: self.name(),
            position,
            problem,
        }
    }

    fn live_error(&self, error: impl ToString) -> ReplayError {
        ReplayError::Live {
            source_name: self.name(),
            error: error.to_string(),
        }
    }

    /// The last position now (0: empty log).
    pub async fn head(&self) -> Result<u64, ReplayError> {
        match self {
            Source::File(f) => f.head().map_err(|error| ReplayError::Read {
                source_name: self.name(),
                error,
            }),
            Source::Live { client, .. } => streamfleet_bus_client::log_head(client)
                .await
                .map_err(|e| self.live_error(e)),
        }
    }

    /// Calls `each` with every event from `from` to `to` (inclusive; `None`: the head when the
    /// scan starts), in position order. With `follow` (live only), goes on with new events
    /// until `each` says stop.
    pub async fn scan(
        &self,
        from: u64,
        to: Option<u64>,
        follow: bool,
        mut each: impl AsyncFnMut(Audited) -> Result<Flow, ReplayError>,
    ) -> Result<(), ReplayError> {
        let from = from.max(1);
        match self {
            Source::File(file) => {
                if follow {
                    return Err(ReplayError::Request(
                        "--follow needs a live node (--nats), not a file".into(),
                    ));
                }
                let records = file.records(from, to).map_err(|error| ReplayError::Read {
                    source_name: self.name(),
                    error,
                })?;
                for record in records {
                    let record = record.map_err(|error| ReplayError::Read {
                        source_name: self.name(),
                        error,
                    })?;
                    if each(Audited::from_stored(record)).await? == Flow::Stop {
                        break;
                    }
                }
                Ok(())
            }
            Source::Live { client, .. } => {
                let last = match (to, follow) {
                    (Some(to), true) => to,
                    (None, true) => u64::MAX,
                    (to, false) => {
                        // Without --follow, a range past the head would wait for events
                        // that may never come: refuse it, as a file does.
                        let head = self.head().await?;
                        if to.is_some_and(|to| to > head) {
                            return Err(ReplayError::Request(format!(
                                "{}: position {} is past the log's head {head}",
                                self.name(),
                                to.unwrap_or(head)
                            )));
                        }
                        to.unwrap_or(head)
                    }
                };
                if last < from {
                    return Ok(());
                }
                let mut follower = Follower::start(client.clone(), from)
                    .await
                    .map_err(|e| self.live_error(e))?;
                loop {
                    let e = follower.next().await.map_err(|e| self.live_error(e))?;
                    let position = e.position;
                    let flow = each(Audited {
                        position,
                        json: e.json,
                        record: None,
                    })
                    .await?;
                    if flow == Flow::Stop || position >= last {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Calls `each` with the events of one stream up to position `to` (`None`: all), in order.
    pub async fn scan_stream(
        &self,
        stream: &str,
        to: Option<u64>,
        mut each: impl AsyncFnMut(Audited) -> Result<Flow, ReplayError>,
    ) -> Result<(), ReplayError> {
        match self {
            Source::File(_) => {
                self.scan(1, to, false, async |e| {
                    let ours = e.record.as_ref().is_some_and(|r| r.stream == stream);
                    if ours {
                        each(e).await
                    } else {
                        Ok(Flow::Continue)
                    }
                })
                .await
            }
            Source::Live { client, .. } => {
                let mut from = 1;
                loop {
                    let page = LogReader::new(client.clone())
                        .read(&ReadRequest {
                            stream: Some(stream.to_string()),
                            ..ReadRequest::all(from, 1000)
                        })
                        .await
                        .map_err(|e| self.live_error(e))?;
                    let (events, next) = (page.events, page.next);
                    for envelope in events {
                        if to.is_some_and(|to| envelope.position > to) {
                            return Ok(());
                        }
                        let json = serde_json::to_vec(&envelope).map_err(|e| self.live_error(e))?;
                        let audited = Audited {
                            position: envelope.position,
                            json: json.into(),
                            record: None,
                        };
                        if each(audited).await? == Flow::Stop {
                            return Ok(());
                        }
                    }
                    match next {
                        Some(n) => from = n,
                        None => return Ok(()),
                    }
                }
            }
        }
    }
}
