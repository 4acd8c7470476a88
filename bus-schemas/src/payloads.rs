//! Typed payloads of commands and events. A later issue extends a payload by adding an optional
//! field (old senders stay valid) or adds a new type; a breaking change bumps
//! [`crate::SCHEMA_VERSION`].

pub use crate::instance::*;
pub use crate::migration::*;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{AppId, GroupId, HostId, NodeId, RegionId, SessionId, TokenId, UserId};

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

/// Ask for a one-time, expiring session token for (app, user). Sent by the token service, which
/// mints and signs the token: only the token's hash is recorded, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Token id (not the token): the stream is `token-<token_id>`.
    pub token_id: TokenId,
    /// The application the session will run.
    pub app_id: AppId,
    /// The entitled user.
    pub user_id: UserId,
    /// The client IP the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The group (party, multi-tenant instance) whose sessions are placed together, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// Lifetime in seconds (1..=3600).
    pub ttl_seconds: u32,
    /// Hex BLAKE3 of the whole token as the client will present it.
    pub token_hash: String,
}

/// Redeem a token for a session: sent by the region's host-management service after the
/// redemption node checked the token's signature and routed it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemToken {
    /// The token's id (read from the token).
    pub token_id: TokenId,
    /// Hex BLAKE3 of the presented token.
    pub token_hash: String,
    /// The IP the client redeems from.
    pub client_ip: String,
    /// The session the redemption will provision.
    pub session_id: SessionId,
    /// The region the redemption was routed to.
    pub region: RegionId,
    /// Why that region (e.g. `nearest by location: 412 km`).
    pub route_reason: String,
}

/// An operator admits a host to the fleet: its id, its region and the public key of its own NATS
/// identity. Only an admitted host may register, and only in its region; the cloud is asked
/// only for admitted hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitHost {
    /// Host id (letters, digits, `-`, `_`): the stream is `host-<host_id>`.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// The public nkey (`U…`) it connects to NATS with; its seed never leaves the host.
    pub public_key: String,
}

/// A host announces itself (instance start): region, app, version, capacity and hardware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterHost {
    /// Host id: the stream is `host-<host_id>`.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// The app it runs.
    pub app_id: AppId,
    /// The app's version it runs.
    pub version: String,
    /// How many sessions it can run at once (1..=1024).
    pub capacity: u32,
    /// Hardware description, e.g. `8 vCPU, 1 GPU`.
    pub hardware: String,
    /// Where clients reach it (IP or name).
    pub address: String,
    /// Its control (signalling) port.
    pub control_port: u16,
    /// Whether the control port speaks HTTPS (its certificate issued by the installation's
    /// authority); absent: plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control_tls: bool,
}

/// Ask the cloud for a new host (buffer refill, replacement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestHost {
    /// The id the new host will register with.
    pub host_id: HostId,
    /// The region.
    pub region: RegionId,
    /// The app.
    pub app_id: AppId,
    /// The app's version.
    pub version: String,
    /// Why it is needed.
    pub reason: String,
}

/// Reserve one of a host's slots for a session (the placement decision's commit point).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSession {
    /// The host.
    pub host_id: HostId,
    /// The session.
    pub session_id: SessionId,
    /// The session's app (must be the host's).
    pub app_id: AppId,
}

/// Free a session's slot on its host after the session ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSession {
    /// The host.
    pub host_id: HostId,
    /// The session.
    pub session_id: SessionId,
}

/// Stream statistics a host reports with a session's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamStats {
    /// Sent bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Frames per second sent.
    pub fps: u32,
    /// Round-trip time, ms.
    pub rtt_ms: u32,
    /// Loss, per mille.
    pub loss_permille: u32,
    /// Keyframes sent so far.
    pub keyframes: u64,
}

/// One session's heartbeat inside a host's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionBeat {
    /// The session.
    pub session_id: SessionId,
    /// Its stream statistics, when the host measures them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StreamStats>,
}

/// A host's heartbeats, one per session it runs, sent together every interval. A host with no
/// sessions still reports (an empty list), which tells it is alive and idle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordHeartbeats {
    /// The reporting host.
    pub host_id: HostId,
    /// When the host sent them, by its clock.
    pub sent_at: DateTime<Utc>,
    /// One heartbeat per session the host runs (at most 4,096).
    pub sessions: Vec<SessionBeat>,
}

/// Stop placing sessions on a host of an outdated version; with a deadline (urgent version),
/// its sessions get a termination notice and the host is terminated at the deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainHost {
    /// The host.
    pub host_id: HostId,
    /// The version that replaces the host's.
    pub new_version: String,
    /// For an urgent version: when the host is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

/// Why a host is removed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HostRemovalReason {
    /// Idle while the region already holds its target of idle buffer hosts.
    IdleAboveBuffer,
    /// Runs an outdated version and has no sessions left.
    Outdated,
    /// Terminated at an urgent version's deadline, sessions and all.
    Terminated,
    /// Stopped sending heartbeats.
    Lost,
    /// An operator revoked its admission: its NATS identity is gone, sessions and all.
    Revoked,
}

/// Remove a host (instance end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveHost {
    /// The host.
    pub host_id: HostId,
    /// Why.
    pub reason: HostRemovalReason,
}

/// Provision a session on a host whose agent confirmed it, after its token was redeemed and a
/// slot assigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionSession {
    /// Session id: the stream is `session-<session_id>`.
    pub session_id: SessionId,
    /// The redeemed token.
    pub token_id: TokenId,
    /// The application.
    pub app_id: AppId,
    /// The user.
    pub user_id: UserId,
    /// The session's group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The region the session is placed in.
    pub region: RegionId,
    /// The host it runs on.
    pub host_id: HostId,
    /// Where the client connects (IP or name).
    pub address: String,
    /// The host's control (signalling) port.
    pub control_port: u16,
    /// Hex BLAKE3 of the session credentials (the client gets them in its reply; the log never).
    pub credential_hash: String,
    /// Why this host (e.g. `buffer host`, `group g1 runs there`, `eu-west full`).
    pub placement_reason: String,
    /// The user's previous session of this app whose saved state was handed over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<SessionId>,
}

/// Why a session ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The user or the app ended it.
    Ended,
    /// Its heartbeats stopped.
    Lost,
    /// Its host was terminated (urgent version, host removal).
    Terminated,
    /// A discrepancy showed the host does not run it.
    Reconciled,
    /// Its client vanished without ending it: the host's stream lost the client's consent.
    Disconnected,
}

/// End a session (reported by its host, or declared by a worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndSession {
    /// The session.
    pub session_id: SessionId,
    /// Its host.
    pub host_id: HostId,
    /// Why.
    pub reason: SessionEndReason,
    /// State the app saved for the user's next session (at most 4,096 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_state: Option<String>,
}

/// Set how many idle, pre-warmed buffer hosts a region keeps for an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBufferTarget {
    /// The region.
    pub region: RegionId,
    /// The app: the stream is `buffer-<region>.<app_id>`.
    pub app_id: AppId,
    /// Idle hosts to keep (0..=1024).
    pub idle_hosts: u32,
}

/// What a host must offer to run an app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostRequirements {
    /// Virtual CPUs, at least (0: any).
    #[serde(default)]
    pub cpus: u32,
    /// Memory, MiB, at least (0: any).
    #[serde(default)]
    pub memory_mib: u32,
    /// A GPU to encode on.
    #[serde(default)]
    pub gpu: bool,
}

/// Register an app the fleet runs: its first version, what a host launches for it, and what a
/// host needs. Tokens, buffers, host requests and sessions name registered apps only (others
/// are refused `unknown_app`). Sent by an operator (or a trusted service); the stream is
/// `app-<app_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterApp {
    /// The app.
    pub app_id: AppId,
    /// Its first version, dotted numbers (`1.0.0`); later ones come with `ReleaseVersion`.
    pub version: String,
    /// What a host launches: an image reference (`registry.example/chess:1.0.0`) or a launch
    /// spec the launchers understand.
    pub image: String,
    /// What a host must offer.
    #[serde(default)]
    pub requirements: HostRequirements,
}

/// Release a new version of an app: new hosts run it, old hosts drain (or, urgent, get a notice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseVersion {
    /// The app: the stream is `app-<app_id>`.
    pub app_id: AppId,
    /// The new version, dotted numbers (`2.1.0`), newer than the current one.
    pub version: String,
    /// A security fix: old hosts are terminated after a notice instead of drained.
    #[serde(default)]
    pub urgent: bool,
    /// For an urgent version: seconds of notice before termination (1..=86400).
    #[serde(default)]
    pub notice_seconds: u32,
}

/// What a heartbeat disagreed with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// The host reports a session the log never recorded.
    UnknownSession,
    /// The host reports a session the log recorded as ended.
    EndedSessionReported,
    /// The log records the session on this host, which does not report it.
    MissingFromReport,
    /// The host reports a session the log records on another host.
    WrongHost,
}

/// Open a discrepancy between recorded and reported state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenDiscrepancy {
    /// Discrepancy id: the stream is `discrepancy-<discrepancy_id>`.
    pub discrepancy_id: String,
    /// The reporting host.
    pub host_id: HostId,
    /// The session concerned.
    pub session_id: SessionId,
    /// What disagreed.
    pub kind: DiscrepancyKind,
    /// In words.
    pub detail: String,
}

/// Record how a discrepancy was resolved, after asking the host for its actual state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveDiscrepancy {
    /// The discrepancy.
    pub discrepancy_id: String,
    /// Whether the host said it actually runs the session.
    pub host_runs_session: bool,
    /// What was done, in words.
    pub resolution: String,
}

/// Report that a node stopped answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportNodeFailure {
    /// The failed node: the stream is `node-<node_id>`.
    pub node_id: NodeId,
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

/// A token was issued. Holds the token's hash, never the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenIssued {
    /// Token id.
    pub token_id: TokenId,
    /// The application.
    pub app_id: AppId,
    /// The entitled user.
    pub user_id: UserId,
    /// The client IP it is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// The session group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// Hex BLAKE3 of the token.
    pub token_hash: String,
    /// When it stops being redeemable.
    pub expires_at: DateTime<Utc>,
}

/// A token was redeemed (once) and routed to a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenRedeemed {
    /// Token id.
    pub token_id: TokenId,
    /// The session it provisions.
    pub session_id: SessionId,
    /// The application.
    pub app_id: AppId,
    /// The user.
    pub user_id: UserId,
    /// The session group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// Where the client redeemed from.
    pub client_ip: String,
    /// The region it was routed to.
    pub region: RegionId,
    /// Why that region.
    pub route_reason: String,
}

/// A host was admitted: from now on it may register in `region` under its own NATS identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostAdmitted {
    /// The host.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// Its public nkey.
    pub public_key: String,
}

/// A new host was asked of the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostRequested {
    /// The id it will register with.
    pub host_id: HostId,
    /// RegionId.
    pub region: RegionId,
    /// App.
    pub app_id: AppId,
    /// Version.
    pub version: String,
    /// Why.
    pub reason: String,
}

/// A host registered (instance started).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostRegistered {
    /// Host id.
    pub host_id: HostId,
    /// RegionId.
    pub region: RegionId,
    /// App.
    pub app_id: AppId,
    /// Version.
    pub version: String,
    /// Session slots.
    pub capacity: u32,
    /// Hardware.
    pub hardware: String,
    /// Address clients reach.
    pub address: String,
    /// Control port.
    pub control_port: u16,
    /// Whether the control port speaks HTTPS; absent: plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub control_tls: bool,
}

/// A slot of a host was reserved for a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionAssigned {
    /// Host.
    pub host_id: HostId,
    /// Session.
    pub session_id: SessionId,
}

/// A session's slot on its host was freed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionReleased {
    /// Host.
    pub host_id: HostId,
    /// Session.
    pub session_id: SessionId,
}

/// A host's heartbeat report was received: one heartbeat per session it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HeartbeatReceived {
    /// The host.
    pub host_id: HostId,
    /// When the host sent it.
    pub sent_at: DateTime<Utc>,
    /// The sessions it reported.
    pub sessions: Vec<SessionBeat>,
}

/// A host takes no new sessions: its version is outdated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostDraining {
    /// Host.
    pub host_id: HostId,
    /// The version replacing it.
    pub new_version: String,
    /// Urgent: when it is terminated (its sessions were sent a notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

/// A host was removed (instance ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostRemoved {
    /// Host.
    pub host_id: HostId,
    /// Why.
    pub reason: HostRemovalReason,
    /// Sessions it still held (terminated or lost with it).
    pub sessions: Vec<SessionId>,
}

/// A session was provisioned; the client connects to `address:control_port`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionProvisioned {
    /// Session id.
    pub session_id: SessionId,
    /// The redeemed token.
    pub token_id: TokenId,
    /// The application.
    pub app_id: AppId,
    /// The user.
    pub user_id: UserId,
    /// The group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The region.
    pub region: RegionId,
    /// The host.
    pub host_id: HostId,
    /// Where the client connects.
    pub address: String,
    /// The host's control port.
    pub control_port: u16,
    /// Hex BLAKE3 of the session credentials.
    pub credential_hash: String,
    /// Why this host.
    pub placement_reason: String,
    /// The previous session whose saved state was handed over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<SessionId>,
}

/// A session ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionEnded {
    /// Session.
    pub session_id: SessionId,
    /// Its host.
    pub host_id: HostId,
    /// Why.
    pub reason: SessionEndReason,
    /// State saved for the user's next session of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_state: Option<String>,
}

/// A region's buffer target for an app was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BufferTargetSet {
    /// The region.
    pub region: RegionId,
    /// The app.
    pub app_id: AppId,
    /// Idle hosts to keep.
    pub idle_hosts: u32,
}

/// An app was registered: the fleet may now issue tokens for it and run hosts of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AppRegistered {
    /// The app.
    pub app_id: AppId,
    /// Its first version.
    pub version: String,
    /// What a host launches.
    pub image: String,
    /// What a host must offer.
    pub requirements: HostRequirements,
}

/// A new version of an app was released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionReleased {
    /// App.
    pub app_id: AppId,
    /// The new version.
    pub version: String,
    /// The version it replaces, if one was released before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// Urgent (old hosts terminated after notice).
    pub urgent: bool,
    /// Urgent: the termination deadline of old hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

/// A discrepancy between recorded and reported state was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscrepancyOpened {
    /// Id.
    pub discrepancy_id: String,
    /// Host.
    pub host_id: HostId,
    /// Session.
    pub session_id: SessionId,
    /// What disagreed.
    pub kind: DiscrepancyKind,
    /// In words.
    pub detail: String,
}

/// A discrepancy was resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiscrepancyResolved {
    /// Id.
    pub discrepancy_id: String,
    /// Host.
    pub host_id: HostId,
    /// Session.
    pub session_id: SessionId,
    /// What the host said.
    pub host_runs_session: bool,
    /// What was done.
    pub resolution: String,
}

/// A node was declared failed: by the watcher (its probes went unanswered for the timeout) or by
/// hand (`ReportNodeFailure`). For a node of a file system, recovery starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFailed {
    /// The node.
    pub node_id: NodeId,
    /// How it was detected, with the evidence.
    pub reason: String,
    /// The host it failed on (a file system's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<HostId>,
    /// The placement that failed (a file system's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// When it last answered (the watcher's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The timeout it was judged by, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
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
