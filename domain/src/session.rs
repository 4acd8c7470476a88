//! Sessions: provisioned once on one host; ended once. Heartbeats live on the host's stream
//! (one report per host), so a session's stream is its birth and its end.

use crate::{Rejection, non_empty, token::hex_hash};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{
    EndSession, ProvisionSession, SessionEndReason, SessionEnded, SessionProvisioned,
};

/// Most bytes of state a session may save for the next one.
pub const MAX_SAVED_STATE_BYTES: usize = 4096;

/// A session's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SessionState {
    /// The provisioning event.
    pub provisioned: SessionProvisioned,
    /// Why it ended, once ended.
    pub ended: Option<SessionEndReason>,
}

pub(crate) fn decide_provision(
    c: &ProvisionSession,
    state: Option<&SessionState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::SessionAlreadyProvisioned {
            session_id: c.session_id.clone(),
        });
    }
    for (field, value) in [
        ("session_id", c.session_id.as_str()),
        ("token_id", c.token_id.as_str()),
        ("app_id", c.app_id.as_str()),
        ("user_id", c.user_id.as_str()),
        ("region", c.region.as_str()),
        ("host_id", c.host_id.as_str()),
        ("address", c.address.as_str()),
    ] {
        non_empty(field, value)?;
    }
    hex_hash("credential_hash", &c.credential_hash)?;
    if c.control_port == 0 {
        return Err(Rejection::InvalidField {
            field: "control_port",
            detail: "must not be 0".into(),
        });
    }
    Ok(vec![Event::SessionProvisioned(SessionProvisioned {
        session_id: c.session_id.clone(),
        token_id: c.token_id.clone(),
        app_id: c.app_id.clone(),
        user_id: c.user_id.clone(),
        group_id: c.group_id.clone(),
        region: c.region.clone(),
        host_id: c.host_id.clone(),
        address: c.address.clone(),
        control_port: c.control_port,
        credential_hash: c.credential_hash.to_ascii_lowercase(),
        placement_reason: c.placement_reason.clone(),
        restored_from: c.restored_from.clone(),
    })])
}

pub(crate) fn decide_end(
    c: &EndSession,
    state: Option<&SessionState>,
) -> Result<Vec<Event>, Rejection> {
    let Some(session) = state else {
        return Err(Rejection::SessionNotProvisioned {
            session_id: c.session_id.clone(),
        });
    };
    if let Some(reason) = session.ended {
        return Err(Rejection::SessionAlreadyEnded {
            session_id: c.session_id.clone(),
            reason: reason_name(reason),
        });
    }
    if session.provisioned.host_id != c.host_id {
        return Err(Rejection::SessionOnOtherHost {
            session_id: c.session_id.clone(),
            expected: session.provisioned.host_id.clone(),
            reported: c.host_id.clone(),
        });
    }
    if let Some(saved) = &c.saved_state
        && saved.len() > MAX_SAVED_STATE_BYTES
    {
        return Err(Rejection::InvalidField {
            field: "saved_state",
            detail: format!("{} bytes; at most {MAX_SAVED_STATE_BYTES}", saved.len()),
        });
    }
    Ok(vec![Event::SessionEnded(SessionEnded {
        session_id: c.session_id.clone(),
        host_id: c.host_id.clone(),
        reason: c.reason,
        saved_state: c.saved_state.clone(),
    })])
}

/// The wire name of an end reason.
pub fn reason_name(reason: SessionEndReason) -> &'static str {
    match reason {
        SessionEndReason::Ended => "ended",
        SessionEndReason::Lost => "lost",
        SessionEndReason::Terminated => "terminated",
        SessionEndReason::Reconciled => "reconciled",
        SessionEndReason::Disconnected => "disconnected",
    }
}

pub(crate) fn evolve_provisioned(e: &SessionProvisioned) -> SessionState {
    SessionState {
        provisioned: e.clone(),
        ended: None,
    }
}

pub(crate) fn evolve_ended(mut s: SessionState, e: &SessionEnded) -> SessionState {
    s.ended = Some(e.reason);
    s
}
