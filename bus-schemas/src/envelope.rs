//! Envelopes: the metadata around every command and event.
//!
//! Attribute names follow CloudEvents 1.0 (`specversion`, `id`, `source`, `type`, `subject`,
//! `time`, `datacontenttype`, `data`); Streamfleet's own attributes are CloudEvents extensions,
//! so they are lower-case alphanumerics: `schemaversion`, `streamversion`, `position`,
//! `correlationid`, `causationid`, `actor`, `expectedversion`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version this build writes. Version 2 added each recorded event's `data` to the
/// accepted reply; everything version 1 sent is still read.
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest schema version still accepted; anything outside
/// `MIN_SCHEMA_VERSION..=SCHEMA_VERSION` is rejected by name.
pub const MIN_SCHEMA_VERSION: u32 = 1;
/// CloudEvents `specversion`.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";

/// A command as sent on the wire. `D` is the payload: [`serde_json::Value`] while it is being
/// parsed, a typed payload in the generated schemas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandEnvelope<D = serde_json::Value> {
    /// Command id; the key of idempotency: the same id twice records once and answers the same.
    pub id: Uuid,
    /// Who sends it, e.g. `entitlement-service/eu-1`.
    pub source: String,
    /// The command type, e.g. `IssueToken`.
    #[serde(rename = "type")]
    pub command_type: String,
    /// Must equal [`SCHEMA_VERSION`].
    pub schemaversion: u32,
    /// When the sender created it (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// Ties together everything caused by one user action; defaults to the command id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlationid: Option<Uuid>,
    /// The event or command that caused this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causationid: Option<Uuid>,
    /// Optimistic concurrency: the version the sender believes the target stream is at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectedversion: Option<ExpectedVersion>,
    /// The typed payload.
    pub data: D,
}

/// What a writer expects of a stream before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version (versions start at 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` (0 = no stream) satisfies this expectation.
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => v == actual,
        }
    }
}

/// The part of an event fixed before it is stored: everything but its `position` and
/// `streamversion`, which the log assigns inside the commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventBody<D = serde_json::Value> {
    /// Always `1.0`.
    pub specversion: String,
    /// Event id, a UUIDv7 (time-ordered).
    pub id: Uuid,
    /// What recorded it, e.g. `streamfleet/node`.
    pub source: String,
    /// The event type, e.g. `SessionProvisioned`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The stream id, e.g. `session-0190…`.
    pub subject: String,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The payload's schema version.
    pub schemaversion: u32,
    /// The correlation id of the command that caused it.
    pub correlationid: Uuid,
    /// The id of the command that caused it.
    pub causationid: Uuid,
    /// Who sent that command, as NATS authenticated it: a role (`worker`, `operator`) or a host
    /// (`host.h1`). Absent in events recorded before senders were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The typed payload.
    pub data: D,
}

/// A recorded event as published and as read back: [`EventBody`] plus where it sits in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope<D = serde_json::Value> {
    /// Global position across all streams, from 1, without gaps.
    pub position: u64,
    /// Version within its stream, from 1, without gaps.
    pub streamversion: u64,
    /// Everything else.
    #[serde(flatten)]
    pub body: EventBody<D>,
}
