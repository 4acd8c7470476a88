//! Nodes of distributed file systems: one row per file system as declared, one row per node
//! with its phase, placement, liveness, failures, recoveries, checkpoints and block reports.
//!
//! Invariant: a node row *is* the domain's fold of its stream `node-<node_id>`: each event of
//! the `node` category is folded by `streamfleet_domain::evolve` from the state the row holds
//! (every field of `dfs::NodeState` is in the row, so a row loaded from the store folds on
//! exactly as the live one), and the row takes the state back; the phase is named by the
//! domain (`NodePhase::name`). The view adds only what the domain does not keep but people
//! want, from the events alone and never from the clock: the node's plan (address, volume,
//! room) from its file system's `FileSystemCreated`, the recovery's and checkpoint's figures
//! and times, the last block report, failure and recovery failure. A file system's counts of
//! serving, recovering and failed nodes are recomputed from its node rows whenever one changes.

use super::View;
use crate::pb::{
    ChunkServerSeen as ChunkServerRow, FileSystemRow, NodeBlockReport, NodeCheckpoint,
    NodeRecovery, NodeRecoveryFailure, NodeRow,
};
use crate::rows::{StoredTable, Table, time_of, timestamp};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::dfs::{CheckpointCause, NodeRole};
use streamfleet_bus_schemas::ids::{FileSystemId, HostId, NodeId};
use streamfleet_domain::State;
use streamfleet_domain::dfs::{CheckpointFigures, NodePhase, NodeState, RecoveryStep};

/// File-system and node rows.
#[derive(Debug, Clone)]
pub struct NodesView {
    /// By file-system id.
    pub file_systems: Table<FileSystemRow>,
    /// By node id.
    pub nodes: Table<NodeRow>,
}

impl Default for NodesView {
    fn default() -> Self {
        NodesView {
            file_systems: Table::new("file_systems"),
            nodes: Table::new("nodes"),
        }
    }
}

/// A phase as the row names it: `(phase, recovery step)`, the domain's own tags
/// (`NodePhase`'s serialized form).
pub fn phase_names(phase: NodePhase) -> (&'static str, &'static str) {
    match phase {
        NodePhase::Launching => ("launching", ""),
        NodePhase::Serving => ("serving", ""),
        NodePhase::Unresponsive => ("unresponsive", ""),
        NodePhase::Checkpointing => ("checkpointing", ""),
        NodePhase::Recovering(step) => ("recovering", step_name(step)),
        NodePhase::Stuck => ("stuck", ""),
        NodePhase::Failed => ("failed", ""),
    }
}

fn step_name(step: RecoveryStep) -> &'static str {
    match step {
        RecoveryStep::Chosen => "chosen",
        RecoveryStep::Fenced => "fenced",
        RecoveryStep::VolumeAttached => "volume_attached",
        RecoveryStep::Checkpointed => "checkpointed",
        RecoveryStep::Launched => "launched",
        RecoveryStep::Addressed => "addressed",
    }
}

/// The phase a row names (`None`: names no phase).
pub fn phase_of(phase: &str, step: &str) -> Option<NodePhase> {
    Some(match phase {
        "launching" => NodePhase::Launching,
        "serving" => NodePhase::Serving,
        "unresponsive" => NodePhase::Unresponsive,
        "checkpointing" => NodePhase::Checkpointing,
        "stuck" => NodePhase::Stuck,
        "failed" => NodePhase::Failed,
        "recovering" => NodePhase::Recovering(match step {
            "chosen" => RecoveryStep::Chosen,
            "fenced" => RecoveryStep::Fenced,
            "volume_attached" => RecoveryStep::VolumeAttached,
            "checkpointed" => RecoveryStep::Checkpointed,
            "launched" => RecoveryStep::Launched,
            "addressed" => RecoveryStep::Addressed,
            _ => return None,
        }),
        _ => return None,
    })
}

/// A checkpoint's cause as on the wire.
pub fn cause_name(cause: CheckpointCause) -> &'static str {
    match cause {
        CheckpointCause::Command => "command",
        CheckpointCause::Schedule => "schedule",
        CheckpointCause::Recovery => "recovery",
    }
}

fn cause_of(name: &str) -> CheckpointCause {
    match name {
        "schedule" => CheckpointCause::Schedule,
        "recovery" => CheckpointCause::Recovery,
        _ => CheckpointCause::Command,
    }
}

fn role_of(name: &str) -> Option<NodeRole> {
    match name {
        "metadata" => Some(NodeRole::Metadata),
        "data" => Some(NodeRole::Data),
        _ => None,
    }
}

fn some<T: From<String>>(text: &str) -> Option<T> {
    (!text.is_empty()).then(|| T::from(text.to_string()))
}

/// The domain's state of a node, as its row holds it. The plan's file system, role and host
/// stand for the domain's before the node first serves: the domain only ever sets them.
pub fn state_of(r: &NodeRow) -> NodeState {
    NodeState {
        failed: r.failed,
        file_system: some::<FileSystemId>(&r.file_system),
        role: role_of(&r.role),
        host_id: some::<HostId>(&r.host_id),
        generation: r.generation,
        phase: phase_of(&r.phase, &r.recovery_step).unwrap_or(NodePhase::Launching),
        last_answer_at: r.last_answer_at.as_ref().and_then(time_of),
        fenced_at: r.fenced_at.as_ref().and_then(time_of),
        failed_host: some::<HostId>(&r.failed_host),
        tried: r.tried.iter().map(|h| HostId::from(h.as_str())).collect(),
        failures: r.failures,
        last_recovery_ms: r.last_recovery.as_ref().map(|x| x.recovery_ms),
        last_checkpoint: r.last_checkpoint.as_ref().map(|c| CheckpointFigures {
            cause: cause_of(&c.cause),
            image_bytes: c.image_bytes,
            version: c.version,
            replayed: c.replayed,
        }),
    }
}

/// Writes the domain's state into a row (the figures of the last recovery and checkpoint are
/// written from their events, with their times).
fn set_state(r: &mut NodeRow, s: &NodeState) {
    r.failed = s.failed;
    if let Some(fs) = &s.file_system {
        r.file_system = fs.to_string();
    }
    if let Some(role) = s.role {
        r.role = role.name().to_string();
    }
    if let Some(host) = &s.host_id {
        r.host_id = host.to_string();
    }
    r.generation = s.generation;
    let (phase, step) = phase_names(s.phase);
    r.phase = phase.to_string();
    r.recovery_step = step.to_string();
    r.state = s.phase.name().to_string();
    r.last_answer_at = s.last_answer_at.map(timestamp);
    r.fenced_at = s.fenced_at.map(timestamp);
    r.failed_host = s
        .failed_host
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    r.tried = s.tried.iter().map(ToString::to_string).collect();
    r.failures = s.failures;
}

/// The node a `node`-category event is about.
pub fn node_of(event: &Event) -> Option<&NodeId> {
    Some(match event {
        Event::NodeServing(e) => &e.node_id,
        Event::NodeUnresponsive(e) => &e.node_id,
        Event::NodeAnswering(e) => &e.node_id,
        Event::NodeFailed(e) => &e.node_id,
        Event::ReplacementChosen(e) => &e.node_id,
        Event::NodeFenced(e) => &e.node_id,
        Event::NetworkVolumeAttached(e) => &e.node_id,
        Event::CheckpointRequested(e) => &e.node_id,
        Event::CheckpointTaken(e) => &e.node_id,
        Event::ReplacementLaunched(e) => &e.node_id,
        Event::AddressReassigned(e) => &e.node_id,
        Event::NodeRecovered(e) => &e.node_id,
        Event::BlockReportReceived(e) => &e.node_id,
        Event::RecoveryFailed(e) => &e.node_id,
        _ => return None,
    })
}

/// What the view keeps beside the domain's state: from the event alone.
fn add_figures(r: &mut NodeRow, event: &Event, at: Option<prost_types::Timestamp>) {
    match event {
        Event::NodeServing(e) => {
            r.address.clone_from(&e.address);
            r.volume_id = e.volume_id.to_string();
            r.pid = e.pid;
        }
        Event::NodeFailed(e) => {
            r.failure_reason.clone_from(&e.reason);
            r.failure_host = e
                .host_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            r.failed_at = at;
        }
        Event::ReplacementChosen(e) => {
            r.placement_reasons.clone_from(&e.reasons);
            r.device.clear();
        }
        Event::NetworkVolumeAttached(e) => r.device.clone_from(&e.device),
        Event::CheckpointTaken(e) => {
            r.last_checkpoint = Some(NodeCheckpoint {
                cause: cause_name(e.cause).to_string(),
                image_bytes: e.image_bytes,
                version: e.version,
                replayed: e.replayed,
                host_id: e.host_id.to_string(),
                at,
            });
        }
        Event::ReplacementLaunched(e) => r.pid = e.pid,
        Event::NodeRecovered(e) => {
            r.pid = e.pid;
            r.last_recovery = Some(NodeRecovery {
                recovery_ms: e.recovery_ms,
                fence_to_serving_ms: e.fence_to_serving_ms,
                host_id: e.host_id.to_string(),
                generation: e.generation,
                at,
            });
        }
        Event::BlockReportReceived(e) => {
            r.last_block_report = Some(NodeBlockReport {
                chunks: e.chunks,
                chunk_servers: (e.chunk_servers.iter())
                    .map(|c| ChunkServerRow {
                        address: c.address.clone(),
                        chunks: c.chunks,
                        connected: c.connected,
                    })
                    .collect(),
                host_id: e.host_id.to_string(),
                at,
            });
        }
        Event::RecoveryFailed(e) => {
            r.last_recovery_failure = Some(NodeRecoveryFailure {
                generation: e.generation,
                host_id: e
                    .host_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                step: e.step.clone(),
                cause: e.cause.clone(),
                next_host: e.next.as_ref().map(ToString::to_string).unwrap_or_default(),
                at,
            });
        }
        _ => {}
    }
}

impl NodesView {
    /// Folds a `node`-category event into its node's row.
    fn node_event(&mut self, node_id: &NodeId, time: DateTime<Utc>, event: &Event) {
        let before = match self.nodes.get(node_id) {
            Some(r) => State::Node(state_of(r)),
            None => State::Empty,
        };
        let State::Node(after) = streamfleet_domain::evolve(before, event) else {
            return;
        };
        let at = Some(timestamp(time));
        let mut file_system = String::new();
        self.nodes.upsert(node_id, |r| {
            let phase_before = (r.phase.clone(), r.recovery_step.clone());
            r.node_id = node_id.to_string();
            set_state(r, &after);
            add_figures(r, event, at);
            if phase_before != (r.phase.clone(), r.recovery_step.clone()) {
                r.phase_since = at;
            }
            r.updated_at = at;
            file_system.clone_from(&r.file_system);
        });
        if !file_system.is_empty() {
            self.count(&file_system);
        }
    }

    /// Recounts a file system's serving, recovering and failed nodes from their rows.
    fn count(&mut self, file_system: &str) {
        let Some(fs) = self.file_systems.get(file_system) else {
            return;
        };
        let (mut serving, mut recovering, mut failed) = (0, 0, 0);
        for node in &fs.nodes {
            match self.nodes.get(node).map(|r| r.phase.as_str()) {
                Some("serving") => serving += 1,
                Some("recovering") => recovering += 1,
                Some("failed" | "stuck") => failed += 1,
                _ => {}
            }
        }
        self.file_systems.update(file_system, |f| {
            f.nodes_serving = serving;
            f.nodes_recovering = recovering;
            f.nodes_failed = failed;
        });
    }
}

impl View for NodesView {
    const NAME: &'static str = "nodes";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        if Event::category_of_type(event.type_name()) == Some("node") {
            if let Some(node_id) = node_of(event) {
                self.node_event(node_id, time, event);
            }
            return;
        }
        let Event::FileSystemCreated(e) = event else {
            return;
        };
        let at = Some(timestamp(time));
        let fs = e.file_system.to_string();
        self.file_systems.upsert(&fs, |r| {
            *r = FileSystemRow {
                file_system: fs.clone(),
                region: e.region.to_string(),
                goal: e.goal,
                volume_mib: e.volume_mib,
                checkpoint_every_seconds: e.checkpoint_every_seconds,
                nodes: e.nodes.iter().map(|n| n.node_id.to_string()).collect(),
                data_nodes: u32::try_from(
                    e.nodes.iter().filter(|n| n.role == NodeRole::Data).count(),
                )
                .unwrap_or(u32::MAX),
                reasons: e.reasons.clone(),
                created_at: at,
                ..Default::default()
            };
        });
        // The plan of each node; what its stream folded (nothing, in any log the node wrote:
        // a node's events follow its file system's creation) is kept.
        for n in &e.nodes {
            let id = n.node_id.to_string();
            let fresh = self.nodes.get(&id).is_none();
            self.nodes.upsert(&id, |r| {
                r.node_id.clone_from(&id);
                r.file_system.clone_from(&fs);
                r.role = n.role.name().to_string();
                r.host_id = n.host_id.to_string();
                r.address.clone_from(&n.address);
                r.volume_id.clone_from(&n.volume_id);
                r.cpus = n.cpus;
                r.memory_mib = n.memory_mib;
                if fresh {
                    set_state(r, &state_of(r));
                    r.phase_since = at;
                }
                r.updated_at = at;
            });
        }
        self.count(&fs);
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.file_systems, &mut self.nodes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const PHASES: [NodePhase; 12] = [
        NodePhase::Launching,
        NodePhase::Serving,
        NodePhase::Unresponsive,
        NodePhase::Checkpointing,
        NodePhase::Recovering(RecoveryStep::Chosen),
        NodePhase::Recovering(RecoveryStep::Fenced),
        NodePhase::Recovering(RecoveryStep::VolumeAttached),
        NodePhase::Recovering(RecoveryStep::Checkpointed),
        NodePhase::Recovering(RecoveryStep::Launched),
        NodePhase::Recovering(RecoveryStep::Addressed),
        NodePhase::Stuck,
        NodePhase::Failed,
    ];

    #[test]
    fn phase_names_are_the_domains_tags_and_read_back() {
        for phase in PHASES {
            let (name, step) = phase_names(phase);
            let wire = serde_json::to_value(phase).expect("json");
            assert_eq!(wire["phase"], name, "{phase:?}");
            assert_eq!(
                wire.get("step").and_then(|s| s.as_str()).unwrap_or(""),
                step
            );
            assert_eq!(phase_of(name, step), Some(phase));
        }
        assert_eq!(phase_of("recovering", ""), None);
        assert_eq!(phase_of("gone", ""), None);
    }

    #[test]
    fn a_row_holds_the_whole_state() {
        let mut tried = BTreeSet::new();
        tried.insert(HostId::from("c2"));
        let s = NodeState {
            failed: true,
            file_system: Some("fs1".into()),
            role: Some(NodeRole::Metadata),
            host_id: Some("c3".into()),
            generation: 2,
            phase: NodePhase::Recovering(RecoveryStep::Fenced),
            last_answer_at: Some(DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("t")),
            fenced_at: Some(DateTime::from_timestamp(1_700_000_005, 5).expect("t")),
            failed_host: Some("c1".into()),
            tried,
            failures: 3,
            last_recovery_ms: None,
            last_checkpoint: None,
        };
        let mut r = NodeRow::default();
        set_state(&mut r, &s);
        assert_eq!(state_of(&r), s);
        assert_eq!(r.state, "recovering (attaching its volume)");
        for cause in [
            CheckpointCause::Command,
            CheckpointCause::Schedule,
            CheckpointCause::Recovery,
        ] {
            assert_eq!(cause_of(cause_name(cause)), cause);
            assert_eq!(
                serde_json::to_value(cause).expect("json"),
                cause_name(cause)
            );
        }
    }
}
