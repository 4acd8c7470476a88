//! Streamfleet's wire contract: what travels on NATS, in JSON.
//!
//! Invariant: every type a service in another language must produce or read is defined here, once,
//! and the JSON Schemas and AsyncAPI document committed under `schemas/` are generated from these
//! types (`cargo test -p streamfleet-bus-schemas` fails when they disagree; run it with
//! `UPDATE_SCHEMAS=1` to regenerate).
//!
//! - [`CommandEnvelope`]: a command, sent as a NATS request on its [`Command::subject`].
//! - [`CommandReply`]: the node's answer, accepted (with what was recorded) or rejected (with a
//!   typed [`RejectionReason`]).
//! - [`EventEnvelope`]: a recorded event, CloudEvents 1.0 attributes plus Streamfleet extensions,
//!   published on [`subjects::event`] after it is durable.
//! - [`ReadRequest`] / [`ReadReply`]: the log's read API on [`subjects::LOG_READ`].
//!
//! ```
//! use streamfleet_bus_schemas::{Command, payloads::ReportNodeFailure};
//! let cmd = Command::ReportNodeFailure(ReportNodeFailure {
//!     node_id: "n1".into(),
//!     reason: "no heartbeat for 3 intervals".into(),
//! });
//! assert_eq!(cmd.subject(), "sf.cmd.node.report-failure");
//! assert_eq!(cmd.type_name(), "ReportNodeFailure");
//! ```

pub mod compute;
pub mod dfs;
mod envelope;
mod health;
pub mod ids;
pub mod instance;
mod messages;
pub mod migration;
pub mod nats_conf;
pub mod payloads;
pub mod principal;
mod read;
mod reply;
pub mod schema_documents;
mod secret;
pub mod services;
pub mod subjects;

pub use envelope::{
    CLOUDEVENTS_SPEC_VERSION, CommandEnvelope, EventBody, EventEnvelope, ExpectedVersion,
    MIN_SCHEMA_VERSION, SCHEMA_VERSION,
};
pub use health::{HealthStatus, NodeHealth};
pub use messages::{Command, Event, PayloadError};
pub use read::{ReadDirection, ReadReply, ReadRequest};
pub use reply::{CommandReply, RecordedEvent, RejectionReason};
pub use secret::{Secret, matches_hash, secret_hash};

/// The category of a stream id: the part before the first `-` (`session-42` → `session`).
///
/// ```
/// assert_eq!(streamfleet_bus_schemas::category_of("session-42"), "session");
/// assert_eq!(streamfleet_bus_schemas::category_of("nodash"), "nodash");
/// ```
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(c, _)| c)
}
