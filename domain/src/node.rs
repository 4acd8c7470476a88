//! Nodes: a failure is recorded once (relaunch, a later issue, clears it).

use crate::{Rejection, non_empty};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{NodeFailed, ReportNodeFailure};

/// A node's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeState {
    /// Whether it is failed.
    pub failed: bool,
}

pub(crate) fn decide_failure(
    c: &ReportNodeFailure,
    state: Option<&NodeState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some_and(|s| s.failed) {
        return Err(Rejection::NodeAlreadyFailed {
            node_id: c.node_id.clone(),
        });
    }
    non_empty("node_id", &c.node_id)?;
    Ok(vec![Event::NodeFailed(NodeFailed {
        node_id: c.node_id.clone(),
        reason: c.reason.clone(),
    })])
}

pub(crate) fn evolve(_e: &NodeFailed) -> NodeState {
    NodeState { failed: true }
}
