//! Which duty the log gives this host for a node (pure): from a live event, or, after a restart,
//! from where each node stands.
//!
//! Invariant: only the host of a node's current placement launches, recovers or checkpoints it;
//! a host that a node left (failed there, or replaced away from it) only ever cleans up after
//! it, so a host that comes back never takes a node, its address or its volume back.

use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::dfs::CheckpointCause;
use streamfleet_bus_schemas::ids::{HostId, NodeId};
use streamfleet_domain::dfs::{NodePhase, RecoveryStep};

/// A duty of this host for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duty {
    /// Launch it for the first time (create and attach its volume, start it, take its address).
    Launch,
    /// Recover it here, from the step after `after` (none: from the fence).
    Recover {
        /// The last step recorded.
        after: Option<RecoveryStep>,
    },
    /// Restart it cleanly to write a checkpoint.
    Checkpoint(CheckpointCause),
    /// It serves here: keep it so (adopt the running container, or start it again in place).
    Keep,
    /// It left this host (placement `generation`): end its container here, unmount what this
    /// host mounted, take its address off this host.
    Leave {
        /// The placement that left.
        generation: u32,
    },
}

/// The duties a live event gives host `me`.
pub fn duties(me: &HostId, event: &Event) -> Vec<(NodeId, Duty)> {
    match event {
        Event::FileSystemCreated(e) => e
            .nodes
            .iter()
            .filter(|n| &n.host_id == me)
            .map(|n| (n.node_id.clone(), Duty::Launch))
            .collect(),
        Event::ReplacementChosen(e) if &e.host_id == me => {
            vec![(e.node_id.clone(), Duty::Recover { after: None })]
        }
        Event::ReplacementChosen(e) if &e.from_host == me => vec![(
            e.node_id.clone(),
            Duty::Leave {
                generation: e.generation.saturating_sub(1),
            },
        )],
        Event::CheckpointRequested(e) if &e.host_id == me => {
            vec![(e.node_id.clone(), Duty::Checkpoint(e.cause))]
        }
        _ => vec![],
    }
}

/// The duty host `me` resumes for a node at `phase` placed on `host` (after a restart).
pub fn resume(me: &HostId, host: &HostId, generation: u32, phase: NodePhase) -> Option<Duty> {
    if host != me {
        // Only an earlier placement can have been here; the current one is another host's.
        return generation
            .checked_sub(1)
            .map(|generation| Duty::Leave { generation });
    }
    match phase {
        NodePhase::Launching => Some(Duty::Launch),
        NodePhase::Serving | NodePhase::Unresponsive => Some(Duty::Keep),
        NodePhase::Checkpointing => Some(Duty::Checkpoint(CheckpointCause::Command)),
        NodePhase::Recovering(RecoveryStep::Chosen) => Some(Duty::Recover { after: None }),
        NodePhase::Recovering(step) => Some(Duty::Recover { after: Some(step) }),
        NodePhase::Stuck | NodePhase::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfleet_bus_schemas::dfs::ReplacementChosen;

    #[test]
    fn only_the_new_host_recovers_and_the_old_one_only_leaves() {
        let chosen = Event::ReplacementChosen(ReplacementChosen {
            node_id: "fs-master".into(),
            generation: 2,
            host_id: "b".into(),
            from_host: "a".into(),
            cpus: 1,
            memory_mib: 256,
            reasons: vec![],
        });
        assert_eq!(
            duties(&"b".into(), &chosen),
            [("fs-master".into(), Duty::Recover { after: None })]
        );
        assert_eq!(
            duties(&"a".into(), &chosen),
            [("fs-master".into(), Duty::Leave { generation: 1 })]
        );
        assert!(duties(&"c".into(), &chosen).is_empty());
    }

    #[test]
    fn a_returning_host_resumes_only_what_is_still_its_own() {
        let (a, b): (HostId, HostId) = ("a".into(), "b".into());
        assert_eq!(
            resume(&a, &b, 1, NodePhase::Serving),
            Some(Duty::Leave { generation: 0 })
        );
        assert_eq!(resume(&a, &a, 0, NodePhase::Serving), Some(Duty::Keep));
        assert_eq!(
            resume(
                &a,
                &a,
                3,
                NodePhase::Recovering(RecoveryStep::VolumeAttached)
            ),
            Some(Duty::Recover {
                after: Some(RecoveryStep::VolumeAttached)
            })
        );
        assert_eq!(resume(&a, &a, 3, NodePhase::Stuck), None);
    }
}
