//! File systems whose nodes heal: where a file system's nodes go, and each node's life — serving,
//! unresponsive, failed, and the recovery's steps in their order — on `node-<node_id>`.
//!
//! Invariant: a node's recovery is a fixed sequence of steps, each recorded only in its order
//! and only from the host of the node's current placement (`generation`): fence the old
//! placement, attach the network volume, (metadata node) replay the change log into a fresh
//! checkpoint, launch, take the address, serve. A failed step moves the node to another host
//! (a new placement) while one is left; a placement once left never reports again.

use crate::fleet::{Fleet, FleetNode, addresses_of};
use crate::{Context, Rejection};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::dfs::*;
use streamfleet_bus_schemas::ids::{FileSystemId, HostId, NodeId, RegionId};
use streamfleet_bus_schemas::payloads::{NodeFailed, ReportNodeFailure};

/// Cpus and memory (MiB) a node of `role` holds on its host.
pub fn room_of(role: NodeRole) -> (u32, u32) {
    match role {
        // The MooseFS master keeps the namespace in memory (about 200 MiB resident at start).
        NodeRole::Metadata => (1, 512),
        NodeRole::Data => (1, 256),
    }
}

/// The id of a file system's metadata node.
pub fn metadata_node(file_system: &FileSystemId) -> NodeId {
    format!("{file_system}-master").into()
}

/// The id of a file system's `n`th data node (from 1).
pub fn data_node(file_system: &FileSystemId, n: u32) -> NodeId {
    format!("{file_system}-cs{n}").into()
}

/// Where a node's recovery stands: the last step recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStep {
    /// A replacement host was chosen; it fences the old placement first.
    Chosen,
    /// The old placement is fenced.
    Fenced,
    /// The network volume is attached on the new host.
    VolumeAttached,
    /// The change log was replayed into a fresh checkpoint (metadata node).
    Checkpointed,
    /// The replacement's container runs.
    Launched,
    /// The address leads to the new host.
    Addressed,
}

/// A node's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "phase", content = "step", rename_all = "snake_case")]
pub enum NodePhase {
    /// Placed; its host has not said it serves yet.
    Launching,
    /// Serving on its address.
    Serving,
    /// Missing its probes, not yet for the timeout.
    Unresponsive,
    /// Restarting cleanly to write a checkpoint.
    Checkpointing,
    /// Failed; being recovered.
    Recovering(RecoveryStep),
    /// Failed, and no host was left to recover it on (a `ReportNodeFailure` tries again).
    Stuck,
    /// Failed, and not a file system's node (recorded by hand; nothing recovers it).
    Failed,
}

impl NodePhase {
    /// The phase's name, for rejections and views.
    pub fn name(self) -> &'static str {
        match self {
            NodePhase::Launching => "launching",
            NodePhase::Serving => "serving",
            NodePhase::Unresponsive => "unresponsive",
            NodePhase::Checkpointing => "checkpointing",
            NodePhase::Recovering(RecoveryStep::Chosen) => "recovering (fencing)",
            NodePhase::Recovering(RecoveryStep::Fenced) => "recovering (attaching its volume)",
            NodePhase::Recovering(RecoveryStep::VolumeAttached) => "recovering (volume attached)",
            NodePhase::Recovering(RecoveryStep::Checkpointed) => "recovering (checkpointed)",
            NodePhase::Recovering(RecoveryStep::Launched) => "recovering (launched)",
            NodePhase::Recovering(RecoveryStep::Addressed) => "recovering (address reassigned)",
            NodePhase::Stuck => "failed, no host left",
            NodePhase::Failed => "failed",
        }
    }
}

/// A checkpoint's figures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointFigures {
    /// Why it was taken.
    pub cause: CheckpointCause,
    /// The image's size.
    pub image_bytes: u64,
    /// The metadata version it covers.
    pub version: u64,
    /// Entries replayed to make it.
    pub replayed: u64,
}

/// A node's state, folded from its stream.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeState {
    /// Whether it is failed now (for nodes outside a file system: recorded by hand).
    pub failed: bool,
    /// Its file system (absent: a node recorded by hand only).
    pub file_system: Option<FileSystemId>,
    /// Its role.
    pub role: Option<NodeRole>,
    /// Its host now.
    pub host_id: Option<HostId>,
    /// Its placement now.
    pub generation: u32,
    /// Its phase.
    pub phase: NodePhase,
    /// When it last answered, as the watcher last said.
    pub last_answer_at: Option<DateTime<Utc>>,
    /// When its old placement was fenced (during a recovery).
    pub fenced_at: Option<DateTime<Utc>>,
    /// The host it failed on (during a recovery).
    pub failed_host: Option<HostId>,
    /// Hosts whose placement failed during this recovery.
    pub tried: BTreeSet<HostId>,
    /// How many times it failed.
    pub failures: u32,
    /// Its last recovery's time from last answer to serving, ms.
    pub last_recovery_ms: Option<u64>,
    /// Its last checkpoint.
    pub last_checkpoint: Option<CheckpointFigures>,
}

impl NodeState {
    fn fresh(file_system: Option<FileSystemId>, role: Option<NodeRole>) -> NodeState {
        NodeState {
            failed: false,
            file_system,
            role,
            host_id: None,
            generation: 0,
            phase: NodePhase::Launching,
            last_answer_at: None,
            fenced_at: None,
            failed_host: None,
            tried: BTreeSet::new(),
            failures: 0,
            last_recovery_ms: None,
            last_checkpoint: None,
        }
    }
}

// ---- creating a file system ----

/// The crun hosts of `region` a node may go to, best first: fewest nodes of `file_system`, then
/// most free memory, then by name; none of `excluded`.
fn candidates(
    fleet: &Fleet,
    region: &RegionId,
    file_system: &FileSystemId,
    role: NodeRole,
    excluded: &BTreeSet<HostId>,
) -> Vec<(HostId, usize)> {
    let (cpus, memory) = room_of(role);
    let mut found: Vec<(usize, std::cmp::Reverse<u32>, HostId)> = fleet
        .hosts
        .iter()
        .filter(|(id, h)| {
            h.hypervisor == Hypervisor::Crun
                && &h.region == region
                && h.has_room(cpus, memory)
                && !excluded.contains(*id)
        })
        .map(|(id, h)| {
            let siblings = fleet
                .nodes
                .values()
                .filter(|n| &n.file_system == file_system && &n.host_id == id)
                .count();
            (
                siblings,
                std::cmp::Reverse(h.memory_mib.saturating_sub(h.used_memory_mib)),
                id.clone(),
            )
        })
        .collect();
    found.sort();
    found.into_iter().map(|(s, _, id)| (id, s)).collect()
}

fn crun_hosts_in(fleet: &Fleet, region: &RegionId) -> usize {
    fleet
        .hosts
        .values()
        .filter(|h| h.hypervisor == Hypervisor::Crun && &h.region == region)
        .count()
}

pub(crate) fn decide_create(
    c: &CreateFileSystem,
    existing: bool,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if existing {
        return Err(Rejection::FileSystemExists {
            file_system: c.file_system.clone(),
        });
    }
    let valid = !c.file_system.is_empty()
        && c.file_system.len() <= 40
        && c.file_system
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !valid {
        return Err(Rejection::InvalidField {
            field: "file_system",
            detail: "1 to 40 letters, digits, `-` or `_`".into(),
        });
    }
    if !(1..=16).contains(&c.data_nodes) {
        return Err(Rejection::InvalidField {
            field: "data_nodes",
            detail: format!("{} is outside 1..=16", c.data_nodes),
        });
    }
    if !(1..=c.data_nodes).contains(&c.goal) {
        return Err(Rejection::InvalidField {
            field: "goal",
            detail: format!(
                "{} is outside 1..={} (the data nodes)",
                c.goal, c.data_nodes
            ),
        });
    }
    let volume_mib = c.volume_mib.unwrap_or(256);
    if !(64..=65_536).contains(&volume_mib) {
        return Err(Rejection::InvalidField {
            field: "volume_mib",
            detail: format!("{volume_mib} is outside 64..=65536"),
        });
    }
    let every = c.checkpoint_every_seconds.unwrap_or(3600);
    if !(10..=86_400).contains(&every) {
        return Err(Rejection::InvalidField {
            field: "checkpoint_every_seconds",
            detail: format!("{every} is outside 10..=86400"),
        });
    }
    let Some(compute) = ctx.compute.as_ref() else {
        return Err(Rejection::NoMatchingHost {
            detail: "no compute fleet is known".into(),
        });
    };
    let mut fleet = compute.fleet.clone();
    let region = match &c.region {
        Some(r) => r.clone(),
        None => fleet
            .regions()
            .into_iter()
            .max_by_key(|r| (crun_hosts_in(&fleet, r), std::cmp::Reverse((*r).clone())))
            .cloned()
            .ok_or_else(|| Rejection::NoMatchingHost {
                detail: "no compute host is registered".into(),
            })?,
    };
    let mut nodes = Vec::new();
    let mut reasons = Vec::new();
    let roles = std::iter::once((metadata_node(&c.file_system), NodeRole::Metadata))
        .chain((1..=c.data_nodes).map(|n| (data_node(&c.file_system, n), NodeRole::Data)));
    for (node_id, role) in roles {
        let (cpus, memory_mib) = room_of(role);
        let picked = candidates(&fleet, &region, &c.file_system, role, &BTreeSet::new());
        let Some((host_id, siblings)) = picked.into_iter().next() else {
            return Err(Rejection::NoMatchingHost {
                detail: format!(
                    "no crun host in region {region} has {cpus} cpu and {memory_mib} MiB free for {node_id}"
                ),
            });
        };
        let index = fleet.free_index().ok_or(Rejection::AddressPoolExhausted)?;
        let address = addresses_of(index).private;
        reasons.push(if siblings == 0 {
            format!("{node_id} on {host_id}: crun, {region}, room, no other node of the file system")
        } else {
            format!("{node_id} on {host_id}: crun, {region}, room; shares it with {siblings} node(s): no host without one had room")
        });
        let plan = NodePlan {
            node_id: node_id.clone(),
            role,
            host_id,
            address,
            volume_id: format!("{node_id}-vol"),
            cpus,
            memory_mib,
        };
        // The next node sees this one's room and address as taken.
        fleet.evolve(&Event::FileSystemCreated(FileSystemCreated {
            file_system: c.file_system.clone(),
            region: region.clone(),
            goal: c.goal,
            volume_mib,
            checkpoint_every_seconds: every,
            nodes: vec![plan.clone()],
            reasons: vec![],
        }));
        nodes.push(plan);
    }
    Ok(vec![Event::FileSystemCreated(FileSystemCreated {
        file_system: c.file_system.clone(),
        region,
        goal: c.goal,
        volume_mib,
        checkpoint_every_seconds: every,
        nodes,
        reasons,
    })])
}

// ---- a node's life ----

/// The node as the fleet has it (its file system's declaration and current placement).
fn placed<'a>(node_id: &NodeId, ctx: &'a Context) -> Result<(&'a FleetNode, &'a Fleet), Rejection> {
    let fleet = ctx
        .compute
        .as_ref()
        .map(|c| &c.fleet)
        .ok_or_else(|| Rejection::UnknownNode {
            node_id: node_id.clone(),
        })?;
    let node = fleet
        .nodes
        .get(node_id)
        .ok_or_else(|| Rejection::UnknownNode {
            node_id: node_id.clone(),
        })?;
    Ok((node, fleet))
}

fn out_of_order(node_id: &NodeId, step: &'static str, phase: NodePhase) -> Rejection {
    Rejection::NodeStepOutOfOrder {
        node_id: node_id.clone(),
        step,
        now: phase.name(),
    }
}

/// The replacement of a node that failed on `failed_host`: `NodeFailed`-side events that follow
/// it — a `ReplacementChosen` on the best host left, or a `RecoveryFailed` saying none is.
fn replace(
    node_id: &NodeId,
    node: &FleetNode,
    fleet: &Fleet,
    failed_host: &HostId,
    tried: &BTreeSet<HostId>,
    cause: Option<(&str, &str)>,
) -> Vec<Event> {
    let mut excluded = tried.clone();
    excluded.insert(failed_host.clone());
    excluded.insert(node.host_id.clone());
    let region = fleet
        .file_systems
        .get(&node.file_system)
        .cloned()
        .unwrap_or_default();
    // The node's own room on its current host does not count against that host (it is
    // excluded anyway).
    let picked = candidates(fleet, &region, &node.file_system, node.role, &excluded);
    let mut events = Vec::new();
    let next = picked.first().map(|(h, _)| h.clone());
    if let Some((step, why)) = cause {
        events.push(Event::RecoveryFailed(RecoveryFailed {
            node_id: node_id.clone(),
            generation: node.generation,
            host_id: Some(node.host_id.clone()),
            step: step.to_string(),
            cause: why.to_string(),
            next: next.clone(),
        }));
    }
    match picked.into_iter().next() {
        Some((host_id, siblings)) => {
            let (cpus, memory) = room_of(node.role);
            events.push(Event::ReplacementChosen(ReplacementChosen {
                node_id: node_id.clone(),
                generation: node.generation + 1,
                host_id: host_id.clone(),
                from_host: node.host_id.clone(),
                cpus: node.cpus,
                memory_mib: node.memory_mib,
                reasons: vec![format!(
                    "{host_id}: crun in {region} with {cpus} cpu and {memory} MiB free, {siblings} other node(s) of {} there; not {}",
                    node.file_system,
                    excluded.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                )],
            }));
        }
        None if cause.is_none() => events.push(Event::RecoveryFailed(RecoveryFailed {
            node_id: node_id.clone(),
            generation: node.generation,
            host_id: Some(node.host_id.clone()),
            step: "choose_host".into(),
            cause: format!(
                "no crun host in {region} has room for it, other than {}",
                excluded
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            next: None,
        })),
        None => {}
    }
    events
}

/// The events of a node failing now: `NodeFailed`, then its replacement (or why none).
fn fail(
    node_id: &NodeId,
    node: &FleetNode,
    fleet: &Fleet,
    reason: String,
    last_answer_at: Option<DateTime<Utc>>,
    timeout_ms: Option<u64>,
) -> Vec<Event> {
    let mut events = vec![Event::NodeFailed(NodeFailed {
        node_id: node_id.clone(),
        reason,
        host_id: Some(node.host_id.clone()),
        generation: Some(node.generation),
        last_answer_at,
        timeout_ms,
    })];
    events.extend(replace(
        node_id,
        node,
        fleet,
        &node.host_id,
        &BTreeSet::new(),
        None,
    ));
    events
}

/// `ReportNodeFailure`: a file system's node fails and is recovered; any other node is only
/// recorded failed (once).
pub(crate) fn decide_failure(
    c: &ReportNodeFailure,
    state: Option<&NodeState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    crate::non_empty("node_id", &c.node_id)?;
    let Ok((node, fleet)) = placed(&c.node_id, ctx) else {
        if state.is_some_and(|s| s.failed) {
            return Err(Rejection::NodeAlreadyFailed {
                node_id: c.node_id.clone(),
            });
        }
        return Ok(vec![Event::NodeFailed(NodeFailed {
            node_id: c.node_id.clone(),
            reason: c.reason.clone(),
            host_id: None,
            generation: None,
            last_answer_at: None,
            timeout_ms: None,
        })]);
    };
    let phase = state.map_or(NodePhase::Launching, |s| s.phase);
    match phase {
        NodePhase::Recovering(_) | NodePhase::Failed => Err(Rejection::NodeAlreadyFailed {
            node_id: c.node_id.clone(),
        }),
        _ => Ok(fail(
            &c.node_id,
            node,
            fleet,
            format!("reported by hand: {}", c.reason),
            // A person's word, not a probe's: its recovery is timed from now.
            Some(ctx.now),
            None,
        )),
    }
}

pub(crate) fn decide_liveness(
    c: &RecordNodeLiveness,
    state: Option<&NodeState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let (node, fleet) = placed(&c.node_id, ctx)?;
    if c.generation != node.generation {
        return Err(Rejection::NodePlacementGone {
            node_id: c.node_id.clone(),
            generation: c.generation,
            current: node.generation,
        });
    }
    let phase = state.map_or(NodePhase::Launching, |s| s.phase);
    match (c.verdict, phase) {
        (Liveness::Unresponsive, NodePhase::Serving) => {
            Ok(vec![Event::NodeUnresponsive(NodeUnresponsive {
                node_id: c.node_id.clone(),
                generation: c.generation,
                last_answer_at: c.last_answer_at,
                evidence: c.evidence.clone(),
            })])
        }
        (Liveness::Answering, NodePhase::Unresponsive) => {
            Ok(vec![Event::NodeAnswering(NodeAnswering {
                node_id: c.node_id.clone(),
                generation: c.generation,
                silent_ms: (ctx.now - c.last_answer_at).num_milliseconds().max(0) as u64,
            })])
        }
        (
            Liveness::Failed,
            NodePhase::Serving | NodePhase::Unresponsive | NodePhase::Checkpointing,
        ) => Ok(fail(
            &c.node_id,
            node,
            fleet,
            format!(
                "no answer for {} ms (timeout {} ms): {}",
                (ctx.now - c.last_answer_at).num_milliseconds().max(0),
                c.timeout_ms,
                c.evidence
            ),
            Some(c.last_answer_at),
            Some(c.timeout_ms),
        )),
        (verdict, phase) => Err(out_of_order(
            &c.node_id,
            match verdict {
                Liveness::Unresponsive => "unresponsive",
                Liveness::Answering => "answering",
                Liveness::Failed => "failed",
            },
            phase,
        )),
    }
}

pub(crate) fn decide_checkpoint(
    c: &CheckpointNode,
    state: Option<&NodeState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let (node, _) = placed(&c.node_id, ctx)?;
    if node.role != NodeRole::Metadata {
        return Err(Rejection::NotMetadataNode {
            node_id: c.node_id.clone(),
        });
    }
    if c.cause == CheckpointCause::Recovery {
        return Err(Rejection::InvalidField {
            field: "cause",
            detail: "a recovery's checkpoint is the node's own; ask for `command` or `schedule`"
                .into(),
        });
    }
    let phase = state.map_or(NodePhase::Launching, |s| s.phase);
    if phase != NodePhase::Serving {
        return Err(out_of_order(&c.node_id, "checkpoint", phase));
    }
    Ok(vec![Event::CheckpointRequested(CheckpointRequested {
        node_id: c.node_id.clone(),
        host_id: node.host_id.clone(),
        generation: node.generation,
        cause: c.cause,
    })])
}

pub(crate) fn decide_report(
    c: &ReportNode,
    state: Option<&NodeState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let (node, fleet) = placed(&c.node_id, ctx)?;
    if c.generation != node.generation || c.host_id != node.host_id {
        return Err(Rejection::NodePlacementGone {
            node_id: c.node_id.clone(),
            generation: c.generation,
            current: node.generation,
        });
    }
    let phase = state.map_or(NodePhase::Launching, |s| s.phase);
    let id = &c.node_id;
    let host = &c.host_id;
    use NodePhase::*;
    use RecoveryStep::*;
    let metadata = node.role == NodeRole::Metadata;
    let event = match (&c.report, phase) {
        (NodeReport::Serving { pid }, Launching | Checkpointing) => {
            Event::NodeServing(NodeServing {
                node_id: id.clone(),
                file_system: node.file_system.clone(),
                role: node.role,
                host_id: host.clone(),
                generation: node.generation,
                address: node.address.clone(),
                volume_id: node.volume_id.clone(),
                pid: *pid,
            })
        }
        (NodeReport::Fenced { detail }, Recovering(Chosen)) => Event::NodeFenced(NodeFenced {
            node_id: id.clone(),
            fenced_host: state
                .and_then(|s| s.failed_host.clone())
                .unwrap_or_else(|| host.clone()),
            host_id: host.clone(),
            detail: detail.clone(),
            at: ctx.now,
        }),
        (NodeReport::VolumeAttached { device }, Recovering(Fenced)) => {
            Event::NetworkVolumeAttached(NetworkVolumeAttached {
                node_id: id.clone(),
                volume_id: node.volume_id.clone(),
                host_id: host.clone(),
                device: device.clone(),
            })
        }
        (
            NodeReport::CheckpointTaken {
                cause,
                image_bytes,
                version,
                replayed,
            },
            phase,
        ) if metadata
            && ((phase == Recovering(VolumeAttached) && *cause == CheckpointCause::Recovery)
                || (phase == Checkpointing && *cause != CheckpointCause::Recovery)) =>
        {
            Event::CheckpointTaken(CheckpointTaken {
                node_id: id.clone(),
                host_id: host.clone(),
                cause: *cause,
                image_bytes: *image_bytes,
                version: *version,
                replayed: *replayed,
            })
        }
        (NodeReport::ReplacementLaunched { pid }, phase)
            if phase
                == Recovering(if metadata {
                    Checkpointed
                } else {
                    VolumeAttached
                }) =>
        {
            Event::ReplacementLaunched(ReplacementLaunched {
                node_id: id.clone(),
                host_id: host.clone(),
                generation: node.generation,
                pid: *pid,
            })
        }
        (NodeReport::AddressReassigned, Recovering(Launched)) => {
            Event::AddressReassigned(AddressReassigned {
                node_id: id.clone(),
                address: node.address.clone(),
                from_host: state
                    .and_then(|s| s.failed_host.clone())
                    .unwrap_or_else(|| host.clone()),
                host_id: host.clone(),
            })
        }
        (NodeReport::Recovered { pid }, Recovering(Addressed)) => {
            let since = |t: Option<DateTime<Utc>>| {
                t.map_or(0, |t| (ctx.now - t).num_milliseconds().max(0) as u64)
            };
            Event::NodeRecovered(NodeRecovered {
                node_id: id.clone(),
                host_id: host.clone(),
                generation: node.generation,
                recovery_ms: since(state.and_then(|s| s.last_answer_at)),
                fence_to_serving_ms: since(state.and_then(|s| s.fenced_at)),
                pid: *pid,
            })
        }
        (NodeReport::BlockReport { chunk_servers }, Serving | Unresponsive) => {
            Event::BlockReportReceived(BlockReportReceived {
                node_id: id.clone(),
                host_id: host.clone(),
                chunks: chunk_servers.iter().map(|c| u64::from(c.chunks)).sum(),
                chunk_servers: chunk_servers.clone(),
            })
        }
        (NodeReport::Failed { step, cause }, Launching | Checkpointing | Recovering(_)) => {
            let tried = state.map(|s| s.tried.clone()).unwrap_or_default();
            let failed_host = state
                .and_then(|s| s.failed_host.clone())
                .unwrap_or_else(|| host.clone());
            return Ok(replace(
                id,
                node,
                fleet,
                &failed_host,
                &tried,
                Some((step, cause)),
            ));
        }
        (report, phase) => {
            let step = match report {
                NodeReport::Serving { .. } => "serving",
                NodeReport::Fenced { .. } => "fenced",
                NodeReport::VolumeAttached { .. } => "volume_attached",
                NodeReport::CheckpointTaken { .. } => "checkpoint_taken",
                NodeReport::ReplacementLaunched { .. } => "replacement_launched",
                NodeReport::AddressReassigned => "address_reassigned",
                NodeReport::Recovered { .. } => "recovered",
                NodeReport::BlockReport { .. } => "block_report",
                NodeReport::Failed { .. } => "failed",
            };
            return Err(out_of_order(id, step, phase));
        }
    };
    Ok(vec![event])
}

/// Folds one event of a `node-*` stream.
pub(crate) fn evolve(state: Option<NodeState>, event: &Event) -> Option<NodeState> {
    let mut s = state.unwrap_or_else(|| NodeState::fresh(None, None));
    match event {
        Event::NodeServing(e) => {
            s.file_system = Some(e.file_system.clone());
            s.role = Some(e.role);
            s.host_id = Some(e.host_id.clone());
            s.generation = e.generation;
            s.phase = NodePhase::Serving;
            s.failed = false;
        }
        Event::NodeUnresponsive(e) => {
            s.phase = NodePhase::Unresponsive;
            s.last_answer_at = Some(e.last_answer_at);
        }
        Event::NodeAnswering(_) => s.phase = NodePhase::Serving,
        Event::NodeFailed(e) => {
            s.failed = true;
            s.failures += 1;
            s.tried.clear();
            s.fenced_at = None;
            if e.last_answer_at.is_some() {
                s.last_answer_at = e.last_answer_at;
            }
            s.failed_host = e.host_id.clone();
            s.phase = if e.host_id.is_some() {
                NodePhase::Stuck
            } else {
                NodePhase::Failed
            };
        }
        Event::ReplacementChosen(e) => {
            s.host_id = Some(e.host_id.clone());
            s.generation = e.generation;
            s.phase = NodePhase::Recovering(RecoveryStep::Chosen);
        }
        Event::NodeFenced(e) => {
            s.fenced_at = Some(e.at);
            s.phase = NodePhase::Recovering(RecoveryStep::Fenced);
        }
        Event::NetworkVolumeAttached(_) => {
            s.phase = NodePhase::Recovering(RecoveryStep::VolumeAttached)
        }
        Event::CheckpointRequested(_) => s.phase = NodePhase::Checkpointing,
        Event::CheckpointTaken(e) => {
            s.last_checkpoint = Some(CheckpointFigures {
                cause: e.cause,
                image_bytes: e.image_bytes,
                version: e.version,
                replayed: e.replayed,
            });
            if e.cause == CheckpointCause::Recovery {
                s.phase = NodePhase::Recovering(RecoveryStep::Checkpointed);
            }
        }
        Event::ReplacementLaunched(_) => s.phase = NodePhase::Recovering(RecoveryStep::Launched),
        Event::AddressReassigned(_) => s.phase = NodePhase::Recovering(RecoveryStep::Addressed),
        Event::NodeRecovered(e) => {
            s.phase = NodePhase::Serving;
            s.failed = false;
            s.last_recovery_ms = Some(e.recovery_ms);
            s.tried.clear();
            s.failed_host = None;
        }
        Event::RecoveryFailed(e) => {
            if let Some(h) = &e.host_id {
                s.tried.insert(h.clone());
                // A first launch or a checkpoint's restart that failed: the host it failed on
                // is the one the replacement fences.
                if s.failed_host.is_none() {
                    s.failed_host = Some(h.clone());
                }
            }
            if e.next.is_none() {
                s.phase = NodePhase::Stuck;
            }
        }
        Event::BlockReportReceived(_) => {}
        _ => return Some(s),
    }
    Some(s)
}

/// The nodes of every file system, for views: `file system → node → fleet record`.
pub fn nodes_by_file_system(fleet: &Fleet) -> BTreeMap<&FileSystemId, Vec<(&NodeId, &FleetNode)>> {
    let mut all: BTreeMap<&FileSystemId, Vec<(&NodeId, &FleetNode)>> = BTreeMap::new();
    for (id, n) in &fleet.nodes {
        all.entry(&n.file_system).or_default().push((id, n));
    }
    all
}
