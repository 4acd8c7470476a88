//! Consistency: per session, what the log recorded vs what hosts reported; discrepancies.
//!
//! Invariant: a session's `agreement` is a function of its own stored fields only
//! ([`agreement_of`]), recomputed whenever one of them changes; the host → recorded-sessions
//! index is derived from the rows (rebuilt on load), never stored.

use super::View;
use crate::pb::{Agreement, DiscrepancyRow, RecordedStatus, SessionCheckRow};
use crate::rows::{StoredTable, Table, later, timestamp};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::{HostId, SessionId};

/// Session checks and discrepancies.
#[derive(Debug, Clone)]
pub struct ConsistencyView {
    /// By session id.
    pub sessions: Table<SessionCheckRow>,
    /// By discrepancy id.
    pub discrepancies: Table<DiscrepancyRow>,
    /// Host id → sessions recorded as active on it (derived).
    recorded_on: BTreeMap<HostId, BTreeSet<SessionId>>,
}

impl Default for ConsistencyView {
    fn default() -> Self {
        ConsistencyView {
            sessions: Table::new("session_checks"),
            discrepancies: Table::new("discrepancies"),
            recorded_on: BTreeMap::new(),
        }
    }
}

/// How recorded and reported state of a session compare.
pub fn agreement_of(row: &SessionCheckRow) -> Agreement {
    let reported = !row.reported_host.is_empty();
    match row.recorded_status() {
        RecordedStatus::Unspecified | RecordedStatus::None => {
            if reported {
                Agreement::UnknownSession
            } else {
                Agreement::Agrees
            }
        }
        RecordedStatus::Assigned | RecordedStatus::Active => {
            if reported && row.reported_host != row.recorded_host {
                Agreement::WrongHost
            } else if row.missing_from_last_report {
                Agreement::MissingFromReport
            } else if !reported {
                Agreement::NotReportedYet
            } else {
                Agreement::Agrees
            }
        }
        RecordedStatus::Ended => match (&row.reported_at, &row.ended_at) {
            (Some(reported_at), Some(ended_at)) if later(reported_at, ended_at) => {
                Agreement::EndedSessionReported
            }
            _ => Agreement::Agrees,
        },
    }
}

impl ConsistencyView {
    /// Changes a session's row and recomputes its agreement.
    fn session(&mut self, session_id: &str, f: impl FnOnce(&mut SessionCheckRow)) {
        self.sessions.upsert(session_id, |r| {
            r.session_id = session_id.to_string();
            if r.recorded_status() == RecordedStatus::Unspecified {
                r.set_recorded_status(RecordedStatus::None);
            }
            f(r);
            r.set_agreement(agreement_of(r));
        });
    }

    fn unindex(&mut self, host_id: &str, session_id: &str) {
        if let Some(set) = self.recorded_on.get_mut(host_id) {
            set.remove(session_id);
            if set.is_empty() {
                self.recorded_on.remove(host_id);
            }
        }
    }
}

impl View for ConsistencyView {
    const NAME: &'static str = "consistency";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            Event::SessionAssigned(e) => self.session(&e.session_id, |r| {
                if r.recorded_status() == RecordedStatus::None {
                    r.set_recorded_status(RecordedStatus::Assigned);
                    r.recorded_host = e.host_id.to_string();
                }
            }),
            Event::SessionReleased(e) => self.session(&e.session_id, |r| {
                if r.recorded_status() == RecordedStatus::Assigned {
                    r.set_recorded_status(RecordedStatus::None);
                    r.recorded_host.clear();
                }
            }),
            Event::SessionProvisioned(e) => {
                if let Some(old) = self
                    .sessions
                    .get(&e.session_id)
                    .map(|r| r.recorded_host.clone())
                {
                    self.unindex(&old, &e.session_id);
                }
                self.session(&e.session_id, |r| {
                    r.recorded_host = e.host_id.to_string();
                    r.set_recorded_status(RecordedStatus::Active);
                });
                self.recorded_on
                    .entry(e.host_id.clone())
                    .or_default()
                    .insert(e.session_id.clone());
            }
            Event::SessionEnded(e) => {
                if let Some(old) = self
                    .sessions
                    .get(&e.session_id)
                    .map(|r| r.recorded_host.clone())
                {
                    self.unindex(&old, &e.session_id);
                }
                self.session(&e.session_id, |r| {
                    if r.recorded_host.is_empty() {
                        r.recorded_host = e.host_id.to_string();
                    }
                    r.set_recorded_status(RecordedStatus::Ended);
                    r.end_reason = serde_name(&e.reason);
                    r.ended_at = at;
                    r.missing_from_last_report = false;
                });
            }
            Event::HeartbeatReceived(e) => {
                let listed: BTreeSet<&str> =
                    e.sessions.iter().map(|b| b.session_id.as_str()).collect();
                for session_id in &listed {
                    self.session(session_id, |r| {
                        r.reported_host = e.host_id.to_string();
                        r.reported_at = at;
                        if r.recorded_host == e.host_id {
                            r.missing_from_last_report = false;
                        }
                    });
                }
                let missing: Vec<SessionId> = self
                    .recorded_on
                    .get(&e.host_id)
                    .map(|set| {
                        set.iter()
                            .filter(|s| !listed.contains(s.as_str()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for session_id in missing {
                    self.session(&session_id, |r| r.missing_from_last_report = true);
                }
            }
            Event::DiscrepancyOpened(e) => self.discrepancies.upsert(&e.discrepancy_id, |d| {
                d.discrepancy_id.clone_from(&e.discrepancy_id);
                d.host_id = e.host_id.to_string();
                d.session_id = e.session_id.to_string();
                d.kind = serde_name(&e.kind);
                d.detail.clone_from(&e.detail);
                d.opened_at = at;
            }),
            Event::DiscrepancyResolved(e) => self.discrepancies.upsert(&e.discrepancy_id, |d| {
                d.discrepancy_id.clone_from(&e.discrepancy_id);
                if d.host_id.is_empty() {
                    d.host_id = e.host_id.to_string();
                    d.session_id = e.session_id.to_string();
                }
                d.resolved_at = at;
                d.resolution.clone_from(&e.resolution);
                d.host_runs_session = Some(e.host_runs_session);
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.sessions, &mut self.discrepancies]
    }

    fn loaded(&mut self) {
        self.recorded_on.clear();
        for (id, r) in self.sessions.iter() {
            if r.recorded_status() == RecordedStatus::Active {
                self.recorded_on
                    .entry(r.recorded_host.clone().into())
                    .or_default()
                    .insert(id.clone().into());
            }
        }
    }
}

/// The wire name of a unit enum value (`snake_case`, as in the events' JSON).
pub(crate) fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
