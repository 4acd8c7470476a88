//! Hosts: admitted by an operator (with their own NATS identity), requested of the cloud,
//! registered, given sessions up to their capacity while active, drained when their version is
//! outdated, removed. Only an admitted host registers, in the region it was admitted to; a
//! removed host takes nothing more until it registers again (a restarted or returning machine,
//! speaking with its own key), which a revoked one cannot.
//!
//! The host stream is where placement commits: `decide_assign` refuses a full, draining or
//! removed host, so two placements racing for the last slot cannot both win.

use crate::{Rejection, non_empty};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::{AppId, HostId, RegionId, SessionId};
use streamfleet_bus_schemas::payloads::*;

/// Most sessions one host may run.
pub const MAX_CAPACITY: u32 = 1024;
/// Most sessions one heartbeat report may carry.
pub const MAX_SESSIONS_PER_REPORT: usize = 4096;

/// Where a host is in its life.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum HostStatus {
    /// Admitted by an operator; neither asked of the cloud nor registered yet.
    Admitted,
    /// Asked of the cloud; not registered yet.
    Requested,
    /// Takes sessions.
    Active,
    /// Outdated: takes no new sessions; with a deadline it is terminated then.
    Draining {
        /// The replacing version.
        new_version: String,
        /// Urgent termination deadline.
        deadline: Option<DateTime<Utc>>,
    },
    /// Gone.
    Removed(HostRemovalReason),
}

impl HostStatus {
    /// A short name: `admitted`, `requested`, `active`, `draining`, `removed`.
    pub fn name(&self) -> &'static str {
        match self {
            HostStatus::Admitted => "admitted",
            HostStatus::Requested => "requested",
            HostStatus::Active => "active",
            HostStatus::Draining { .. } => "draining",
            HostStatus::Removed(_) => "removed",
        }
    }
}

/// A host's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HostState {
    /// Region.
    pub region: RegionId,
    /// App.
    pub app_id: AppId,
    /// Version.
    pub version: String,
    /// Slots (0 until registered).
    pub capacity: u32,
    /// Life stage.
    pub status: HostStatus,
    /// Sessions holding a slot.
    pub sessions: BTreeSet<SessionId>,
}

pub(crate) fn decide_admit(
    c: &AdmitHost,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::HostAlreadyExists {
            host_id: c.host_id.clone(),
        });
    }
    if !streamfleet_bus_schemas::principal::is_subject_token(&c.host_id) {
        return Err(Rejection::InvalidField {
            field: "host_id",
            detail: "letters, digits, `-` and `_` only (it sits inside NATS subjects)".into(),
        });
    }
    non_empty("region", &c.region)?;
    if !(c.public_key.len() == 56 && c.public_key.starts_with('U')) {
        return Err(Rejection::InvalidField {
            field: "public_key",
            detail: "must be a public user nkey (56 characters, starting with `U`)".into(),
        });
    }
    Ok(vec![Event::HostAdmitted(HostAdmitted {
        host_id: c.host_id.clone(),
        region: c.region.clone(),
        public_key: c.public_key.clone(),
    })])
}

/// The host is admitted and the region is the one it was admitted to.
fn admitted_in(host_id: &HostId, region: &RegionId, host: &HostState) -> Result<(), Rejection> {
    if &host.region != region {
        return Err(Rejection::HostRegionMismatch {
            host_id: host_id.clone(),
            admitted: host.region.clone(),
            claimed: region.clone(),
        });
    }
    Ok(())
}

pub(crate) fn decide_request(
    c: &RequestHost,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    match state {
        None => {
            return Err(Rejection::HostNotAdmitted {
                host_id: c.host_id.clone(),
            });
        }
        Some(host) if host.status != HostStatus::Admitted => {
            return Err(Rejection::HostAlreadyExists {
                host_id: c.host_id.clone(),
            });
        }
        Some(host) => admitted_in(&c.host_id, &c.region, host)?,
    }
    for (field, value) in [
        ("host_id", c.host_id.as_str()),
        ("region", c.region.as_str()),
        ("app_id", c.app_id.as_str()),
        ("version", c.version.as_str()),
    ] {
        non_empty(field, value)?;
    }
    crate::app::parse_version(&c.version)?;
    Ok(vec![Event::HostRequested(HostRequested {
        host_id: c.host_id.clone(),
        region: c.region.clone(),
        app_id: c.app_id.clone(),
        version: c.version.clone(),
        reason: c.reason.clone(),
    })])
}

pub(crate) fn decide_register(
    c: &RegisterHost,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    match state {
        None => {
            return Err(Rejection::HostNotAdmitted {
                host_id: c.host_id.clone(),
            });
        }
        // Revoked: its identity is gone for good.
        Some(HostState {
            status: HostStatus::Removed(HostRemovalReason::Revoked),
            ..
        }) => {
            return Err(Rejection::HostRemoved {
                host_id: c.host_id.clone(),
            });
        }
        // Anything else is the host (only it can speak as itself) starting again — after a
        // restart, or back after it was given up as lost: it registers afresh, its slots empty
        // (the sessions it held end as lost, by their missing heartbeats).
        Some(host) => admitted_in(&c.host_id, &c.region, host)?,
    }
    for (field, value) in [
        ("host_id", c.host_id.as_str()),
        ("region", c.region.as_str()),
        ("app_id", c.app_id.as_str()),
        ("version", c.version.as_str()),
        ("address", c.address.as_str()),
    ] {
        non_empty(field, value)?;
    }
    crate::app::parse_version(&c.version)?;
    if !(1..=MAX_CAPACITY).contains(&c.capacity) {
        return Err(Rejection::InvalidField {
            field: "capacity",
            detail: format!("{} is outside 1..={MAX_CAPACITY}", c.capacity),
        });
    }
    if c.control_port == 0 {
        return Err(Rejection::InvalidField {
            field: "control_port",
            detail: "must not be 0".into(),
        });
    }
    Ok(vec![Event::HostRegistered(HostRegistered {
        host_id: c.host_id.clone(),
        region: c.region.clone(),
        app_id: c.app_id.clone(),
        version: c.version.clone(),
        capacity: c.capacity,
        hardware: c.hardware.clone(),
        address: c.address.clone(),
        control_port: c.control_port,
        control_tls: c.control_tls,
    })])
}

/// The host, registered and not removed.
fn live<'a>(host_id: &str, state: Option<&'a HostState>) -> Result<&'a HostState, Rejection> {
    match state {
        None
        | Some(HostState {
            status: HostStatus::Admitted | HostStatus::Requested,
            ..
        }) => Err(Rejection::HostNotRegistered {
            host_id: host_id.into(),
        }),
        Some(HostState {
            status: HostStatus::Removed(_),
            ..
        }) => Err(Rejection::HostRemoved {
            host_id: host_id.into(),
        }),
        Some(host) => Ok(host),
    }
}

pub(crate) fn decide_assign(
    c: &AssignSession,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    let host = live(&c.host_id, state)?;
    non_empty("session_id", &c.session_id)?;
    if host.sessions.contains(&c.session_id) {
        return Err(Rejection::SessionAlreadyAssigned {
            session_id: c.session_id.clone(),
            host_id: c.host_id.clone(),
        });
    }
    if host.status != HostStatus::Active {
        return Err(Rejection::HostNotAccepting {
            host_id: c.host_id.clone(),
            status: host.status.name(),
        });
    }
    if host.app_id != c.app_id {
        return Err(Rejection::HostRunsOtherApp {
            host_id: c.host_id.clone(),
            app_id: host.app_id.clone(),
        });
    }
    if host.sessions.len() >= host.capacity as usize {
        return Err(Rejection::HostFull {
            host_id: c.host_id.clone(),
            capacity: host.capacity,
        });
    }
    Ok(vec![Event::SessionAssigned(SessionAssigned {
        host_id: c.host_id.clone(),
        session_id: c.session_id.clone(),
    })])
}

pub(crate) fn decide_release(
    c: &ReleaseSession,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    let host = live(&c.host_id, state)?;
    if !host.sessions.contains(&c.session_id) {
        return Err(Rejection::SessionNotOnHost {
            session_id: c.session_id.clone(),
            host_id: c.host_id.clone(),
        });
    }
    Ok(vec![Event::SessionReleased(SessionReleased {
        host_id: c.host_id.clone(),
        session_id: c.session_id.clone(),
    })])
}

pub(crate) fn decide_heartbeats(
    c: &RecordHeartbeats,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    live(&c.host_id, state)?;
    if c.sessions.len() > MAX_SESSIONS_PER_REPORT {
        return Err(Rejection::InvalidField {
            field: "sessions",
            detail: format!(
                "{} heartbeats in one report; at most {MAX_SESSIONS_PER_REPORT}",
                c.sessions.len()
            ),
        });
    }
    let mut seen = BTreeSet::new();
    for beat in &c.sessions {
        non_empty("sessions[].session_id", &beat.session_id)?;
        if !seen.insert(beat.session_id.as_str()) {
            return Err(Rejection::InvalidField {
                field: "sessions",
                detail: format!("session `{}` reported twice", beat.session_id),
            });
        }
    }
    // Recorded as reported: checking it against recorded state is the consistency worker's
    // job, which opens a discrepancy rather than losing what the host said.
    Ok(vec![Event::HeartbeatReceived(HeartbeatReceived {
        host_id: c.host_id.clone(),
        sent_at: c.sent_at,
        sessions: c.sessions.clone(),
    })])
}

pub(crate) fn decide_drain(
    c: &DrainHost,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    let host = live(&c.host_id, state)?;
    crate::app::parse_version(&c.new_version)?;
    if let HostStatus::Draining { deadline, .. } = &host.status
        && (deadline.is_some() || c.deadline.is_none())
    {
        return Err(Rejection::HostNotAccepting {
            host_id: c.host_id.clone(),
            status: "draining",
        });
    }
    Ok(vec![Event::HostDraining(HostDraining {
        host_id: c.host_id.clone(),
        new_version: c.new_version.clone(),
        deadline: c.deadline,
    })])
}

pub(crate) fn decide_remove(
    c: &RemoveHost,
    state: Option<&HostState>,
) -> Result<Vec<Event>, Rejection> {
    let host = match state {
        None => {
            return Err(Rejection::HostNotRegistered {
                host_id: c.host_id.clone(),
            });
        }
        Some(h) if matches!(h.status, HostStatus::Removed(_)) => {
            return Err(Rejection::HostRemoved {
                host_id: c.host_id.clone(),
            });
        }
        Some(h) => h,
    };
    let keeps_sessions = matches!(
        c.reason,
        HostRemovalReason::IdleAboveBuffer | HostRemovalReason::Outdated
    );
    if keeps_sessions && !host.sessions.is_empty() {
        return Err(Rejection::HostBusy {
            host_id: c.host_id.clone(),
            sessions: host.sessions.len(),
        });
    }
    Ok(vec![Event::HostRemoved(HostRemoved {
        host_id: c.host_id.clone(),
        reason: c.reason,
        sessions: host.sessions.iter().cloned().collect(),
    })])
}

pub(crate) fn evolve(state: Option<HostState>, event: &Event) -> Option<HostState> {
    match (state, event) {
        (None, Event::HostAdmitted(e)) => Some(HostState {
            region: e.region.clone(),
            app_id: AppId::default(),
            version: String::new(),
            capacity: 0,
            status: HostStatus::Admitted,
            sessions: BTreeSet::new(),
        }),
        (_, Event::HostRequested(e)) => Some(HostState {
            region: e.region.clone(),
            app_id: e.app_id.clone(),
            version: e.version.clone(),
            capacity: 0,
            status: HostStatus::Requested,
            sessions: BTreeSet::new(),
        }),
        (_, Event::HostRegistered(e)) => Some(HostState {
            region: e.region.clone(),
            app_id: e.app_id.clone(),
            version: e.version.clone(),
            capacity: e.capacity,
            status: HostStatus::Active,
            sessions: BTreeSet::new(),
        }),
        (Some(mut h), Event::SessionAssigned(e)) => {
            h.sessions.insert(e.session_id.clone());
            Some(h)
        }
        (Some(mut h), Event::SessionReleased(e)) => {
            h.sessions.remove(&e.session_id);
            Some(h)
        }
        (Some(mut h), Event::HostDraining(e)) => {
            h.status = HostStatus::Draining {
                new_version: e.new_version.clone(),
                deadline: e.deadline,
            };
            Some(h)
        }
        (Some(mut h), Event::HostRemoved(e)) => {
            h.status = HostStatus::Removed(e.reason);
            h.sessions.clear();
            Some(h)
        }
        (state, _) => state,
    }
}
