//! The node's health: answered on [`crate::subjects::LOG_HEALTH`] to any request, so an
//! operator (or a dashboard) sees a full disk before the refused commands pile up.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the node records commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Commands are decided and recorded; reads are served.
    Serving,
    /// Reads are served but commands are refused (`problem` says why: the disk is full, the
    /// storage is failing); it recovers by itself once the cause is gone.
    Degraded,
}

/// The reply on `sf.log.health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeHealth {
    /// Serving or degraded.
    pub status: HealthStatus,
    /// What is wrong when degraded, e.g. `storage full (No space left on device (os error 28))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The last durable position.
    pub head: u64,
}

impl std::fmt::Display for NodeHealth {
    /// `serving`, or `degraded: <problem>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.status, &self.problem) {
            (HealthStatus::Serving, _) => write!(f, "serving"),
            (HealthStatus::Degraded, Some(p)) => write!(f, "degraded: {p}"),
            (HealthStatus::Degraded, None) => write!(f, "degraded"),
        }
    }
}
