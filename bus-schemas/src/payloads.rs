//! Typed payloads of commands and events. A later issue extends a payload by adding an optional
//! field (old senders stay valid) or adds a new type; a breaking change bumps
//! [`crate::SCHEMA_VERSION`].

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cipher a hop can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Cipher {
    /// AES-128 in Galois/Counter mode.
    Aes128Gcm,
    /// AES-256 in Galois/Counter mode.
    Aes256Gcm,
    /// ChaCha20 with Poly1305.
    Chacha20Poly1305,
}

// ---- commands ----

/// Ask for a one-time, expiring session token for (app, user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Token id (not the secret): the stream is `token-<token_id>`.
    pub token_id: String,
    /// The application the session will run.
    pub app_id: String,
    /// The entitled user.
    pub user_id: String,
    /// The client IP the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Lifetime in seconds (1..=3600).
    pub ttl_seconds: u32,
    /// Hex SHA-256 of the token's secret; the secret itself never enters the log.
    pub secret_sha256: String,
}

/// Provision a session on a host, after a token was redeemed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSession {
    /// Session id: the stream is `session-<session_id>`.
    pub session_id: String,
    /// The redeemed token.
    pub token_id: String,
    /// The application.
    pub app_id: String,
    /// The region the session is placed in.
    pub region: String,
    /// The host it runs on.
    pub host_id: String,
    /// Where the client connects (`host:port`).
    pub address: String,
}

/// Record one heartbeat a host sent for one of its active sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordHeartbeat {
    /// The session the heartbeat is for.
    pub session_id: String,
    /// The host that sent it.
    pub host_id: String,
    /// When the host sent it, by its clock.
    pub sent_at: DateTime<Utc>,
}

/// Schedule the migration of an instance off a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMigration {
    /// Migration id: the stream is `migration-<migration_id>`.
    pub migration_id: String,
    /// The instance to move.
    pub instance_id: String,
    /// The server it runs on now.
    pub source_server: String,
    /// The server it moves to (hardware settings match).
    pub target_server: String,
    /// The latest moment of the move; a reboot by the customer before it migrates early.
    pub deadline: DateTime<Utc>,
}

/// Report that a node stopped answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportNodeFailure {
    /// The failed node: the stream is `node-<node_id>`.
    pub node_id: String,
    /// How the failure was detected.
    pub reason: String,
}

/// Select the ciphers of both hops of a relayed connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectCipher {
    /// The connection: the stream is `cipher-<connection_id>`.
    pub connection_id: String,
    /// The source's ciphers, best first.
    pub source: Vec<Cipher>,
    /// The relay's ciphers, best first.
    pub relay: Vec<Cipher>,
    /// The destination's ciphers, best first.
    pub destination: Vec<Cipher>,
}

// ---- events ----

/// A token was issued. Holds the secret's hash, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenIssued {
    /// Token id.
    pub token_id: String,
    /// The application.
    pub app_id: String,
    /// The entitled user.
    pub user_id: String,
    /// The client IP it is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// When it stops being redeemable.
    pub expires_at: DateTime<Utc>,
}

/// A session was provisioned; the client connects to `address`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionProvisioned {
    /// Session id.
    pub session_id: String,
    /// The redeemed token.
    pub token_id: String,
    /// The application.
    pub app_id: String,
    /// The region.
    pub region: String,
    /// The host.
    pub host_id: String,
    /// Where the client connects.
    pub address: String,
}

/// A heartbeat was received for an active session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatReceived {
    /// The session.
    pub session_id: String,
    /// The host that sent it.
    pub host_id: String,
    /// When the host sent it.
    pub sent_at: DateTime<Utc>,
}

/// A migration was scheduled and the customer notified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationScheduled {
    /// Migration id.
    pub migration_id: String,
    /// The instance.
    pub instance_id: String,
    /// From.
    pub source_server: String,
    /// To.
    pub target_server: String,
    /// The deadline.
    pub deadline: DateTime<Utc>,
}

/// A node was declared failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFailed {
    /// The node.
    pub node_id: String,
    /// How it was detected.
    pub reason: String,
}

/// Ciphers were selected for both hops of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CipherSelected {
    /// The connection.
    pub connection_id: String,
    /// Source → relay.
    pub inbound: Cipher,
    /// Relay → destination.
    pub outbound: Cipher,
    /// Whether the relay must decrypt and re-encrypt (the hops' ciphers differ).
    pub reencrypt: bool,
}
