//! Distributed file systems whose nodes heal (seed 004): a file system (MooseFS) is declared
//! once on `dfs-<file_system>`; each of its nodes — one metadata node, its data nodes — runs as a
//! container on a compute host behind a dedicated address, with a network volume of its own, and
//! every change of a node is an event on `node-<node_id>`.
//!
//! Invariant: the node's host carries out what the log says and reports each step it took with
//! [`ReportNode`]; a watcher that sees every host's probes records what only it can judge
//! (a node stopped answering, answers again, is failed) with [`RecordNodeLiveness`]. A node's
//! placements are numbered (`generation`): a report from any placement but the current one is
//! refused, so a host that comes back after its node was replaced can never speak for it again.

use crate::ids::{FileSystemId, HostId, NodeId, RegionId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a node does in its file system.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// The metadata node (MooseFS master): the namespace in memory, its change log and
    /// checkpoints on its network volume.
    Metadata,
    /// A data node (MooseFS chunk server): chunks in folders on its network volume.
    Data,
}

impl NodeRole {
    /// The role's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Metadata => "metadata",
            NodeRole::Data => "data",
        }
    }
}

// ---- commands ----

/// Declare a file system: the service places its nodes on compute hosts (crun, one node per
/// host where it can), gives each a dedicated address and a network volume, and their hosts
/// start them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFileSystem {
    /// File-system id (letters, digits, `-`, `_`): the stream is `dfs-<file_system>`, its
    /// nodes are `<file_system>-master` and `<file_system>-cs<n>`.
    pub file_system: FileSystemId,
    /// How many data nodes (1..=16).
    pub data_nodes: u32,
    /// How many copies of each chunk (1..=data_nodes).
    pub goal: u32,
    /// The region; absent: the one with the most crun hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
    /// Size of each node's network volume in MiB (64..=65536); absent: 256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mib: Option<u32>,
    /// Seconds between the metadata node's scheduled checkpoints (10..=86400); absent: 3600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_seconds: Option<u32>,
}

/// Make a metadata node write a fresh checkpoint of its metadata and start a clean change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointNode {
    /// The metadata node.
    pub node_id: NodeId,
    /// Who asks: `command` (a person or a tool) or `schedule` (the watcher).
    #[serde(default)]
    pub cause: CheckpointCause,
}

/// Why a checkpoint was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointCause {
    /// `CheckpointNode` from a person or a tool.
    #[default]
    Command,
    /// The file system's schedule.
    Schedule,
    /// A recovery: the change log replayed onto the last checkpoint before the node serves.
    Recovery,
}

/// A data node as the metadata node sees it (from its list of chunk servers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChunkServerSeen {
    /// Its address.
    pub address: String,
    /// The chunks it reported holding.
    pub chunks: u32,
    /// Whether it is connected now.
    pub connected: bool,
}

/// What a host did for a node it runs (or takes over).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeReport {
    /// The node serves (its first launch, or a start after a checkpoint).
    Serving {
        /// The container's init on the host.
        pid: u32,
    },
    /// The old placement is fenced: its container ended, its volume detached, its address
    /// withdrawn.
    Fenced {
        /// What was done, in words.
        detail: String,
    },
    /// The network volume is attached here.
    VolumeAttached {
        /// The block device it is attached as.
        device: String,
    },
    /// A checkpoint was written (metadata node).
    CheckpointTaken {
        /// Why.
        cause: CheckpointCause,
        /// The metadata image's size in bytes.
        image_bytes: u64,
        /// The metadata version the image covers (the change log's position).
        version: u64,
        /// Change-log entries replayed onto the previous checkpoint to make it.
        replayed: u64,
    },
    /// The replacement's container runs here.
    ReplacementLaunched {
        /// Its init on the host.
        pid: u32,
    },
    /// The dedicated address leads here now (routed, and announced by gratuitous ARP).
    AddressReassigned,
    /// The replacement answers on its address.
    Recovered {
        /// Its init on the host.
        pid: u32,
    },
    /// The metadata node lists its data nodes and their chunks.
    BlockReport {
        /// Every chunk server it knows.
        chunk_servers: Vec<ChunkServerSeen>,
    },
    /// A step of the recovery failed here.
    Failed {
        /// The step (`fence`, `attach_volume`, `checkpoint`, `launch`, `address`, `serve`).
        step: String,
        /// Why.
        cause: String,
    },
}

/// A host reports a step for a node it runs or takes over (sent by its agent, role `launcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportNode {
    /// The node: the stream is `node-<node_id>`.
    pub node_id: NodeId,
    /// The reporting host.
    pub host_id: HostId,
    /// The placement it reports for.
    pub generation: u32,
    /// What it did.
    pub report: NodeReport,
}

/// What the watcher concluded from the probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    /// It missed its probes for a while (not yet the timeout).
    Unresponsive,
    /// It answers again before the timeout.
    Answering,
    /// It did not answer for the whole timeout: recovery starts.
    Failed,
}

/// The watcher records a node's liveness (roles `worker`, `service`, `operator`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordNodeLiveness {
    /// The node.
    pub node_id: NodeId,
    /// The placement judged.
    pub generation: u32,
    /// The verdict.
    pub verdict: Liveness,
    /// When it last answered (the watcher's clock).
    pub last_answer_at: DateTime<Utc>,
    /// What the probes saw, in words.
    pub evidence: String,
    /// The timeout it is judged by, in milliseconds.
    pub timeout_ms: u64,
}

// ---- events ----

/// Where one node of a new file system goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodePlan {
    /// The node.
    pub node_id: NodeId,
    /// Its role.
    pub role: NodeRole,
    /// Its first host.
    pub host_id: HostId,
    /// Its dedicated address (for its whole life).
    pub address: String,
    /// Its network volume.
    pub volume_id: String,
    /// Cpus it holds on its host.
    pub cpus: u32,
    /// Memory it holds on its host, MiB.
    pub memory_mib: u32,
}

/// A file system was declared and its nodes placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileSystemCreated {
    /// The file system.
    pub file_system: FileSystemId,
    /// Its region.
    pub region: RegionId,
    /// Copies of each chunk.
    pub goal: u32,
    /// Each network volume's size, MiB.
    pub volume_mib: u32,
    /// Seconds between scheduled checkpoints.
    pub checkpoint_every_seconds: u32,
    /// Its nodes (the metadata node first).
    pub nodes: Vec<NodePlan>,
    /// Why these hosts, in words.
    pub reasons: Vec<String>,
}

/// The node serves on its address (first launch, or after a checkpoint's restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeServing {
    /// The node.
    pub node_id: NodeId,
    /// Its file system.
    pub file_system: FileSystemId,
    /// Its role.
    pub role: NodeRole,
    /// Its host.
    pub host_id: HostId,
    /// Its placement.
    pub generation: u32,
    /// Its dedicated address.
    pub address: String,
    /// Its network volume.
    pub volume_id: String,
    /// Its container's init.
    pub pid: u32,
}

/// The node missed its probes (not yet for the timeout).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeUnresponsive {
    /// The node.
    pub node_id: NodeId,
    /// Its placement.
    pub generation: u32,
    /// When it last answered.
    pub last_answer_at: DateTime<Utc>,
    /// What the probes saw.
    pub evidence: String,
}

/// The node answers again before the timeout: not failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAnswering {
    /// The node.
    pub node_id: NodeId,
    /// Its placement.
    pub generation: u32,
    /// How long it was silent, ms.
    pub silent_ms: u64,
}

/// Where a failed node goes next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplacementChosen {
    /// The node.
    pub node_id: NodeId,
    /// The new placement.
    pub generation: u32,
    /// Its host.
    pub host_id: HostId,
    /// The host it leaves.
    pub from_host: HostId,
    /// Cpus it holds (moved from the old host to the new one).
    pub cpus: u32,
    /// Memory it holds, MiB (moved likewise).
    pub memory_mib: u32,
    /// Why this host.
    pub reasons: Vec<String>,
}

/// The failed placement can serve no more: container ended, volume detached, address withdrawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFenced {
    /// The node.
    pub node_id: NodeId,
    /// The host fenced.
    pub fenced_host: HostId,
    /// The host that fenced it (the replacement's).
    pub host_id: HostId,
    /// What was done.
    pub detail: String,
    /// When (the node's clock).
    pub at: DateTime<Utc>,
}

/// The node's network volume is attached on its (new) host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkVolumeAttached {
    /// The node.
    pub node_id: NodeId,
    /// The volume.
    pub volume_id: String,
    /// The host.
    pub host_id: HostId,
    /// Its block device there.
    pub device: String,
}

/// The metadata node wrote a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointTaken {
    /// The node.
    pub node_id: NodeId,
    /// The host.
    pub host_id: HostId,
    /// Why.
    pub cause: CheckpointCause,
    /// The image's size in bytes.
    pub image_bytes: u64,
    /// The metadata version it covers.
    pub version: u64,
    /// Change-log entries replayed to make it.
    pub replayed: u64,
}

/// A checkpoint was asked for; the node's host restarts it cleanly to write one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointRequested {
    /// The node.
    pub node_id: NodeId,
    /// Its host.
    pub host_id: HostId,
    /// Its placement.
    pub generation: u32,
    /// Why.
    pub cause: CheckpointCause,
}

/// The replacement's container runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplacementLaunched {
    /// The node.
    pub node_id: NodeId,
    /// The host.
    pub host_id: HostId,
    /// The placement.
    pub generation: u32,
    /// Its init.
    pub pid: u32,
}

/// The node's dedicated address leads to its new host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AddressReassigned {
    /// The node.
    pub node_id: NodeId,
    /// The address.
    pub address: String,
    /// Where it led.
    pub from_host: HostId,
    /// Where it leads.
    pub host_id: HostId,
}

/// The node serves again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeRecovered {
    /// The node.
    pub node_id: NodeId,
    /// Its host now.
    pub host_id: HostId,
    /// Its placement now.
    pub generation: u32,
    /// From its last good answer to serving again, ms.
    pub recovery_ms: u64,
    /// From the fence to serving again, ms.
    pub fence_to_serving_ms: u64,
    /// Its container's init.
    pub pid: u32,
}

/// The metadata node's view of its data nodes after a node came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BlockReportReceived {
    /// The node whose recovery this follows.
    pub node_id: NodeId,
    /// The reporting host.
    pub host_id: HostId,
    /// Every chunk server the metadata node knows.
    pub chunk_servers: Vec<ChunkServerSeen>,
    /// Chunks reported in all.
    pub chunks: u64,
}

/// A step of a recovery failed; `next` is the host tried now, if any is left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryFailed {
    /// The node.
    pub node_id: NodeId,
    /// The placement that failed.
    pub generation: u32,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<HostId>,
    /// The step.
    pub step: String,
    /// Why.
    pub cause: String,
    /// The host tried next; absent: none left (the node stays failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<HostId>,
}

// ---- probes (published on `sf.node.probe.<host>`, not recorded) ----

/// One probe of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeProbe {
    /// The node.
    pub node_id: NodeId,
    /// The placement probed.
    pub generation: u32,
    /// Whether its service answered (a MooseFS request answered, not just a port open).
    pub answered: bool,
    /// What the probe saw, in words.
    pub detail: String,
}

/// What a compute host's probes of the nodes it runs saw, every probe interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeProbes {
    /// The host.
    pub host_id: HostId,
    /// One result per node it runs.
    pub nodes: Vec<NodeProbe>,
}
