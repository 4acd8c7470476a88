//! Sessions: provisioned once on one host; heartbeats only from that host.

use crate::{Rejection, non_empty};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{
    HeartbeatReceived, ProvisionSession, RecordHeartbeat, SessionProvisioned,
};

/// A session's state.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionState {
    /// The host it runs on.
    pub host_id: String,
    /// The last heartbeat's send time, if any.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Heartbeats received.
    pub heartbeats: u64,
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
        ("session_id", &c.session_id),
        ("token_id", &c.token_id),
        ("app_id", &c.app_id),
        ("region", &c.region),
        ("host_id", &c.host_id),
        ("address", &c.address),
    ] {
        non_empty(field, value)?;
    }
    Ok(vec![Event::SessionProvisioned(SessionProvisioned {
        session_id: c.session_id.clone(),
        token_id: c.token_id.clone(),
        app_id: c.app_id.clone(),
        region: c.region.clone(),
        host_id: c.host_id.clone(),
        address: c.address.clone(),
    })])
}

pub(crate) fn decide_heartbeat(
    c: &RecordHeartbeat,
    state: Option<&SessionState>,
) -> Result<Vec<Event>, Rejection> {
    let Some(session) = state else {
        return Err(Rejection::SessionNotProvisioned {
            session_id: c.session_id.clone(),
        });
    };
    if session.host_id != c.host_id {
        return Err(Rejection::HeartbeatFromWrongHost {
            session_id: c.session_id.clone(),
            expected: session.host_id.clone(),
            reported: c.host_id.clone(),
        });
    }
    Ok(vec![Event::HeartbeatReceived(HeartbeatReceived {
        session_id: c.session_id.clone(),
        host_id: c.host_id.clone(),
        sent_at: c.sent_at,
    })])
}

pub(crate) fn evolve_provisioned(e: &SessionProvisioned) -> SessionState {
    SessionState {
        host_id: e.host_id.clone(),
        last_heartbeat: None,
        heartbeats: 0,
    }
}

pub(crate) fn evolve_heartbeat(mut s: SessionState, e: &HeartbeatReceived) -> SessionState {
    s.last_heartbeat = Some(e.sent_at);
    s.heartbeats += 1;
    s
}
