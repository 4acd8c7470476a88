//! The log's read API, served by the node on [`crate::subjects::LOG_READ`].

use crate::EventEnvelope;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A request for a range of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// Where to start (inclusive): a global position, or a stream version when `stream` is set.
    #[serde(default = "one")]
    pub from: u64,
    /// At most this many events (the node may return fewer to stay under the NATS payload
    /// limit; `next` says where to continue). 0 asks only for the head.
    #[serde(default = "default_max")]
    pub max_events: u32,
    /// Only this stream, by version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Only this category (`session` for `session-*`), by global position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Direction; backward is only for a stream.
    #[serde(default)]
    pub direction: ReadDirection,
}

fn one() -> u64 {
    1
}
fn default_max() -> u32 {
    1000
}

impl ReadRequest {
    /// All streams, forward from `from`.
    pub fn all(from: u64, max_events: u32) -> Self {
        ReadRequest {
            from,
            max_events,
            stream: None,
            category: None,
            direction: ReadDirection::Forward,
        }
    }
}

/// Reading direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadDirection {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReadReply {
    /// The events, in the order asked.
    Ok {
        /// The last durable global position when the read was made.
        head: u64,
        /// Where to continue (a position or version), or none when the range is exhausted.
        next: Option<u64>,
        /// The events.
        events: Vec<EventEnvelope>,
    },
    /// The request could not be served.
    Error {
        /// `malformed_request`, `invalid_range` or `unavailable`.
        code: String,
        /// What, for people.
        detail: String,
    },
}
