//! The node's answer to a command.

use crate::ExpectedVersion;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The reply to every command request: accepted with what was recorded, or rejected with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CommandReply {
    /// The command's events are durable.
    Accepted {
        /// The command's id.
        command_id: Uuid,
        /// The stream written.
        stream: String,
        /// True when this is the answer to an earlier send of the same command id, and nothing
        /// new was recorded.
        deduplicated: bool,
        /// What was recorded, in order.
        events: Vec<RecordedEvent>,
    },
    /// Nothing was recorded.
    Rejected {
        /// The command's id, when the envelope could be read far enough to find it.
        command_id: Option<Uuid>,
        /// Why, as a type to act on.
        reason: RejectionReason,
        /// Why, for people.
        message: String,
    },
}

impl CommandReply {
    /// A rejection whose message is the reason's description.
    pub fn rejected(command_id: Option<Uuid>, reason: RejectionReason) -> Self {
        CommandReply::Rejected {
            command_id,
            message: reason.to_string(),
            reason,
        }
    }
}

/// One event a command recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// The event id.
    pub id: Uuid,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Its version in the stream.
    pub streamversion: u64,
    /// Its global position.
    pub position: u64,
    /// The event's payload as recorded (schema version 2; absent in replies of version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RecordedEvent {
    /// The recorded event as its typed payload, when the reply carried its data.
    pub fn event(&self) -> Option<crate::Event> {
        let data = self.data.clone()?;
        crate::Event::from_parts(&self.event_type, data).ok()
    }
}

/// Why a command was rejected. `code` is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RejectionReason {
    /// The request body is not JSON.
    #[error("malformed JSON: {detail}")]
    MalformedJson {
        /// The parser's message, with line and column.
        detail: String,
    },
    /// JSON, but not a command envelope (a field missing, of the wrong type, or unknown).
    #[error("invalid command envelope: {detail}")]
    InvalidEnvelope {
        /// Names the field.
        detail: String,
    },
    /// A `schemaversion` this node does not speak.
    #[error("unsupported schema version {got}; this node speaks {supported}")]
    UnsupportedSchemaVersion {
        /// What was sent.
        got: u32,
        /// What is spoken.
        supported: u32,
    },
    /// A `type` that names no command.
    #[error("unknown command type `{type_name}`")]
    UnknownCommandType {
        /// What was sent.
        type_name: String,
    },
    /// The payload does not fit the command type.
    #[error("invalid `{type_name}` payload: {detail}")]
    InvalidPayload {
        /// The command type.
        type_name: String,
        /// Names the field.
        detail: String,
    },
    /// The request is over the node's size limit.
    #[error("command of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Bytes sent.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The command was sent on another command's subject.
    #[error("command `{type_name}` sent on `{subject}`; it belongs on `{expected}`")]
    SubjectMismatch {
        /// The command type.
        type_name: String,
        /// Where it was sent.
        subject: String,
        /// Where it belongs.
        expected: String,
    },
    /// The sender may not send this command, or not about this host: the principal named on the
    /// subject (which NATS vouches for) is not allowed it. Nothing was recorded.
    #[error("forbidden: {detail}")]
    Forbidden {
        /// The sender, as named on the subject (`worker`, `host.h1`).
        principal: String,
        /// What it may not do.
        detail: String,
    },
    /// The stream was not at the version the sender expected.
    #[error("stream `{stream}` is at version {actual}, not {expected:?}")]
    WrongExpectedVersion {
        /// The stream.
        stream: String,
        /// What the sender expected.
        expected: ExpectedVersion,
        /// Where it is (0: no stream).
        actual: u64,
    },
    /// The domain refused it: the command is valid but not now, or not in this state.
    #[error("{rule}: {detail}")]
    Domain {
        /// The rule, e.g. `session_not_provisioned`.
        rule: String,
        /// What, for people.
        detail: String,
        /// What the service offers instead, when it refused the customer's hypervisor
        /// (`hypervisor_unfit`): resend naming it to take the offer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offer: Option<crate::compute::HypervisorOffer>,
    },
    /// Other writers kept winning the race for this stream; sending again may succeed.
    #[error("stream `{stream}` changed under {attempts} attempts; try again")]
    Contention {
        /// The stream.
        stream: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The command id was used before by a different command (another type, subject or data).
    /// Nothing was recorded: a retry repeats a command exactly, a new command takes a new id.
    #[error("command id already used by a different `{original_type}` command")]
    IdReused {
        /// The type of the command first recorded under this id.
        original_type: String,
    },
    /// The node's disk is full; nothing was recorded. The node keeps serving reads, and records
    /// again once space is freed: send the same command (same id) again later.
    #[error("storage full: {detail}")]
    StorageFull {
        /// What the file system said.
        detail: String,
    },
    /// The log could not record it; nothing was recorded.
    #[error("log unavailable: {detail}")]
    Unavailable {
        /// What failed.
        detail: String,
    },
}
