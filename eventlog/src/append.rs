//! What an append carries in and what it answers: [`NewEvent`], [`AppendRequest`],
//! [`AppendOutcome`].
//!
//! Invariant: an outcome follows from the records it names. Reading back a command's
//! (first position, count) from the stored records gives the outcome its append first answered,
//! with only `deduplicated` set, so a repeated command id is answered from the records alone.
//! This module holds no state and depends on neither the log's handle nor its writer; both use it.

use crate::error::{ReadError, storage};
use crate::record::StoredEvent;
use redb::ReadableTable;
use serde::Deserialize;
use streamfleet_bus_schemas::{ExpectedVersion, RecordedEvent};
use uuid::Uuid;

/// One event to append: its id, type and JSON body (a non-empty object holding everything but
/// `position` and `streamversion`).
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event id.
    pub id: Uuid,
    /// Event type.
    pub event_type: String,
    /// JSON object.
    pub body: Vec<u8>,
}

/// An append of events to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The stream, `<category>-<id>`.
    pub stream: String,
    /// What the stream must be at.
    pub expected: ExpectedVersion,
    /// The command that caused it, for idempotency.
    pub command_id: Option<Uuid>,
    /// What that command said (with `command_id`): a later append under the same id whose
    /// digest differs is refused [`crate::AppendError::CommandIdReused`] instead of answered
    /// with this one's outcome. `None`: the id alone decides (no content check).
    pub command_digest: Option<CommandDigest>,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// What a command said, so that one command id cannot stand for two commands: the command's
/// type and a BLAKE3 digest of its type and canonical content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDigest {
    /// The command type, named when a reuse is refused.
    pub command_type: String,
    /// BLAKE3 of the type's length, the type and the content.
    pub digest: [u8; 32],
}

impl CommandDigest {
    /// The digest of a command of `command_type` whose canonical content is `content`.
    pub fn of(command_type: &str, content: &[u8]) -> CommandDigest {
        let mut h = blake3::Hasher::new();
        h.update(&(command_type.len() as u64).to_le_bytes());
        h.update(command_type.as_bytes());
        h.update(content);
        CommandDigest {
            command_type: command_type.to_string(),
            digest: *h.finalize().as_bytes(),
        }
    }

    /// As stored in the `command_digests` table: the digest, then the type's UTF-8.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.command_type.len());
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(self.command_type.as_bytes());
        out
    }

    /// Reads a stored value; `None` when it is not one (shorter than a digest, or not UTF-8).
    pub(crate) fn decode(bytes: &[u8]) -> Option<CommandDigest> {
        let (digest, command_type) = bytes.split_at_checked(32)?;
        Some(CommandDigest {
            command_type: std::str::from_utf8(command_type).ok()?.to_string(),
            digest: digest.try_into().ok()?,
        })
    }
}

/// What an append recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    /// The stream.
    pub stream: String,
    /// The events, in order.
    pub events: Vec<RecordedEvent>,
    /// True when the command id was already recorded and nothing new was written.
    pub deduplicated: bool,
}

/// Reads back what an earlier append recorded, from its stored records.
pub(crate) fn outcome_from_records(
    events: &impl ReadableTable<u64, &'static [u8]>,
    first: u64,
    count: u32,
) -> Result<AppendOutcome, ReadError> {
    #[derive(Deserialize)]
    struct Head {
        id: Uuid,
        #[serde(rename = "type")]
        event_type: String,
    }
    let mut stream = String::new();
    let mut recorded = Vec::with_capacity(count as usize);
    for position in first..first + u64::from(count) {
        let e = get_event(events, position)?;
        let head: Head = serde_json::from_slice(&e.body).map_err(|_| ReadError::Corrupt {
            position,
            problem: crate::Corruption::UnreadableBody,
        })?;
        stream = e.stream;
        recorded.push(RecordedEvent {
            id: head.id,
            event_type: head.event_type,
            streamversion: e.stream_version,
            position,
            data: None,
        });
    }
    Ok(AppendOutcome {
        stream,
        events: recorded,
        deduplicated: true,
    })
}

/// One record by position, decoded and checked against its CRC (the log's reads use it too).
pub(crate) fn get_event(
    events: &impl ReadableTable<u64, &'static [u8]>,
    position: u64,
) -> Result<StoredEvent, ReadError> {
    let v = events
        .get(position)
        .map_err(storage)?
        .ok_or(ReadError::MissingRecord { position })?;
    StoredEvent::decode(position, v.value())
        .map_err(|problem| ReadError::Corrupt { position, problem })
}
