//! Sending commands.

use async_nats::Client;
use bytes::Bytes;
use streamfleet_bus_schemas::{
    Command, CommandEnvelope, CommandReply, ExpectedVersion, SCHEMA_VERSION,
};
use uuid::Uuid;

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

/// Sends commands as NATS requests and reads the node's replies.
///
/// ```no_run
/// # async fn demo(client: async_nats::Client) -> Result<(), streamfleet_node::SendError> {
/// use streamfleet_bus_schemas::{Command, payloads::ReportNodeFailure};
/// let commands = streamfleet_node::CommandClient::new(client, "scheduler");
/// let cmd = Command::ReportNodeFailure(ReportNodeFailure { node_id: "n1".into(), reason: "silent".into() });
/// let reply = commands.send(uuid::Uuid::now_v7(), &cmd).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CommandClient {
    client: Client,
    source: String,
}

impl CommandClient {
    /// A client that signs its commands' `source` with `source`.
    pub fn new(client: Client, source: impl Into<String>) -> Self {
        CommandClient {
            client,
            source: source.into(),
        }
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

    /// Sends `command` with command id `id` (send again with the same id to retry safely).
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
        self.send_raw(command.subject(), body.into()).await
    }

    /// Sends any bytes on any subject and reads the reply: for other languages' view of the wire,
    /// and for testing bad input.
    pub async fn send_raw(&self, subject: &str, body: Bytes) -> Result<CommandReply, SendError> {
        let msg = self.client.request(subject.to_string(), body).await?;
        Ok(serde_json::from_slice(&msg.payload)?)
    }
}
