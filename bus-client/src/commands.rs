//! Sending commands: one envelope, retries under the same id, typed outcomes.
//!
//! Invariant: every attempt of one [`CommandClient::submit`] carries the same command id, so
//! the node records it at most once however many attempts reach it; a rejection is final and
//! never retried (sending it again would decide it again).

use async_nats::Client;
use bytes::Bytes;
use std::time::Duration;
use streamfleet_bus_schemas::principal::Principal;
use streamfleet_bus_schemas::{
    Command, CommandEnvelope, CommandReply, ExpectedVersion, RecordedEvent, RejectionReason,
    SCHEMA_VERSION,
};
use uuid::Uuid;

/// Attempts [`CommandClient::submit`] makes while no reply comes.
pub const SUBMIT_ATTEMPTS: u32 = 3;
/// Wait between those attempts.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Why a command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// NATS did not deliver a reply (no node, timeout, permission refused).
    #[error("no reply: {0}")]
    Request(#[from] async_nats::RequestError),
    /// The reply is not a [`CommandReply`].
    #[error("unreadable reply: {0}")]
    Reply(#[from] serde_json::Error),
}

/// A command that was not accepted, as [`CommandClient::submit`] reports it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    /// The node refused it; `rule` is the domain rule or the rejection code.
    #[error("{rule}: {message}")]
    Rejected {
        /// e.g. `token_expired`, or `invalid_payload` for a refusal before the domain.
        rule: String,
        /// Why, for people.
        message: String,
    },
    /// It did not reach the node or every reply was lost; sending it again with the same id is
    /// safe.
    #[error("not delivered: {0}")]
    Undelivered(String),
}

impl Refused {
    /// The refusal a reply's rejection reason stands for.
    pub fn from_reason(reason: &RejectionReason, message: String) -> Self {
        let rule = match reason {
            RejectionReason::Domain { rule, .. } => rule.clone(),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
                .unwrap_or_else(|| "rejected".into()),
        };
        Refused::Rejected { rule, message }
    }
}

/// Sends commands as NATS requests and reads the node's replies.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), streamfleet_bus_client::Refused> {
/// use streamfleet_bus_schemas::{Command, payloads::ReportNodeFailure};
/// use streamfleet_bus_schemas::principal::Role;
/// let commands = streamfleet_bus_client::CommandClient::new(client, Role::Service, "scheduler");
/// let cmd = Command::ReportNodeFailure(ReportNodeFailure { node_id: "n1".into(), reason: "silent".into() });
/// let recorded = commands.submit(uuid::Uuid::now_v7(), &cmd).await?;
/// println!("recorded {} events", recorded.len());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CommandClient {
    client: Client,
    principal: Principal,
    source: String,
}

impl CommandClient {
    /// A client that sends as `principal` (the identity `client` logged in as: NATS lets it
    /// publish under that name only) and names its commands' `source` `source`.
    pub fn new(client: Client, principal: impl Into<Principal>, source: impl Into<String>) -> Self {
        CommandClient {
            client,
            principal: principal.into(),
            source: source.into(),
        }
    }

    /// Who this client sends as.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The envelope this client would send for `command`.
    pub fn envelope(
        &self,
        id: Uuid,
        command: &Command,
        expected: Option<ExpectedVersion>,
    ) -> CommandEnvelope {
        CommandEnvelope {
            id,
            source: self.source.clone(),
            command_type: command.type_name().to_string(),
            schemaversion: SCHEMA_VERSION,
            time: Some(chrono::Utc::now()),
            correlationid: None,
            causationid: None,
            expectedversion: expected,
            data: command.to_data(),
        }
    }

    /// Sends `command` with command id `id`, retrying up to [`SUBMIT_ATTEMPTS`] times under
    /// the same id while no reply comes: the recorded events (with their data), or why not.
    pub async fn submit(&self, id: Uuid, command: &Command) -> Result<Vec<RecordedEvent>, Refused> {
        let mut last = String::new();
        for attempt in 1..=SUBMIT_ATTEMPTS {
            match self.send(id, command).await {
                Ok(CommandReply::Accepted { events, .. }) => return Ok(events),
                Ok(CommandReply::Rejected {
                    reason, message, ..
                }) => return Err(Refused::from_reason(&reason, message)),
                Err(e) => {
                    tracing::debug!(%id, attempt, error = %e, "command not answered; retrying");
                    last = e.to_string();
                    if attempt < SUBMIT_ATTEMPTS {
                        tokio::time::sleep(RETRY_AFTER).await;
                    }
                }
            }
        }
        Err(Refused::Undelivered(last))
    }

    /// Sends `command` once with command id `id` (send again with the same id to retry
    /// safely) and returns the node's reply as it came.
    pub async fn send(&self, id: Uuid, command: &Command) -> Result<CommandReply, SendError> {
        self.send_expecting(id, command, None).await
    }

    /// Sends `command` with an expected version of its stream.
    pub async fn send_expecting(
        &self,
        id: Uuid,
        command: &Command,
        expected: Option<ExpectedVersion>,
    ) -> Result<CommandReply, SendError> {
        let body = serde_json::to_vec(&self.envelope(id, command, expected))?;
        self.send_raw(&command.subject_as(&self.principal), body.into())
            .await
    }

    /// Sends any bytes on any subject and reads the reply: for other languages' view of the wire,
    /// and for testing bad input.
    pub async fn send_raw(&self, subject: &str, body: Bytes) -> Result<CommandReply, SendError> {
        let msg = self.client.request(subject.to_string(), body).await?;
        Ok(serde_json::from_slice(&msg.payload)?)
    }
}
