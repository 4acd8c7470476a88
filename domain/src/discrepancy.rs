//! Discrepancies between recorded and reported state: opened once, resolved once.

use crate::{Rejection, non_empty};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{
    DiscrepancyOpened, DiscrepancyResolved, OpenDiscrepancy, ResolveDiscrepancy,
};

/// A discrepancy's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DiscrepancyState {
    /// The opening event.
    pub opened: DiscrepancyOpened,
    /// Whether it is resolved.
    pub resolved: bool,
}

pub(crate) fn decide_open(
    c: &OpenDiscrepancy,
    state: Option<&DiscrepancyState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::DiscrepancyAlreadyOpened {
            discrepancy_id: c.discrepancy_id.clone(),
        });
    }
    non_empty("discrepancy_id", &c.discrepancy_id)?;
    non_empty("host_id", &c.host_id)?;
    non_empty("session_id", &c.session_id)?;
    Ok(vec![Event::DiscrepancyOpened(DiscrepancyOpened {
        discrepancy_id: c.discrepancy_id.clone(),
        host_id: c.host_id.clone(),
        session_id: c.session_id.clone(),
        kind: c.kind,
        detail: c.detail.clone(),
    })])
}

pub(crate) fn decide_resolve(
    c: &ResolveDiscrepancy,
    state: Option<&DiscrepancyState>,
) -> Result<Vec<Event>, Rejection> {
    let Some(d) = state else {
        return Err(Rejection::DiscrepancyNotOpen {
            discrepancy_id: c.discrepancy_id.clone(),
        });
    };
    if d.resolved {
        return Err(Rejection::DiscrepancyAlreadyResolved {
            discrepancy_id: c.discrepancy_id.clone(),
        });
    }
    non_empty("resolution", &c.resolution)?;
    Ok(vec![Event::DiscrepancyResolved(DiscrepancyResolved {
        discrepancy_id: c.discrepancy_id.clone(),
        host_id: d.opened.host_id.clone(),
        session_id: d.opened.session_id.clone(),
        host_runs_session: c.host_runs_session,
        resolution: c.resolution.clone(),
    })])
}

pub(crate) fn evolve_opened(e: &DiscrepancyOpened) -> DiscrepancyState {
    DiscrepancyState {
        opened: e.clone(),
        resolved: false,
    }
}
