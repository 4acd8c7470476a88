//! Rollouts: per app, the registered or released version and which live hosts still run an older one.
//!
//! Invariant: an app's rollout row is recomputed from its stored host rows
//! ([`RolloutHostRow`]) whenever one of them or the release changes, so it never drifts from
//! them; the app → hosts index is derived from those rows (rebuilt on load).

use super::View;
use crate::pb::{HostStatus, RolloutHostRow, RolloutRow};
use crate::rows::{StoredTable, Table, time_of, timestamp};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::{BTreeMap, BTreeSet};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::{AppId, HostId};

/// Rollout rows and the host facts they are computed from.
#[derive(Debug, Clone)]
pub struct RolloutsView {
    /// By app id.
    pub rollouts: Table<RolloutRow>,
    /// By host id.
    pub hosts: Table<RolloutHostRow>,
    /// App id → its host ids (derived).
    by_app: BTreeMap<AppId, BTreeSet<HostId>>,
}

impl Default for RolloutsView {
    fn default() -> Self {
        RolloutsView {
            rollouts: Table::new("rollouts"),
            hosts: Table::new("rollout_hosts"),
            by_app: BTreeMap::new(),
        }
    }
}

fn sessions_text(n: u32) -> String {
    if n == 1 {
        "1 session".to_string()
    } else {
        format!("{n} sessions")
    }
}

/// What the rollout waits for on one live host of an old version.
fn waiting_line(h: &RolloutHostRow) -> String {
    let sessions = sessions_text(h.sessions);
    match (h.status(), h.drain_deadline.as_ref().and_then(time_of)) {
        (HostStatus::Draining, Some(deadline)) => format!(
            "host {} terminated at {}: {sessions}",
            h.host_id,
            deadline.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
        (HostStatus::Draining, None) => format!("host {} drains: {sessions}", h.host_id),
        _ => format!(
            "host {} runs {}, not draining yet: {sessions}",
            h.host_id, h.version
        ),
    }
}

impl RolloutsView {
    /// Changes a host's row (creating it when `create`) and recomputes its app's rollout.
    fn host(&mut self, host_id: &str, create: bool, f: impl FnOnce(&mut RolloutHostRow)) {
        let old_app = self.hosts.get(host_id).map(|h| h.app_id.clone());
        if old_app.is_none() && !create {
            return;
        }
        self.hosts.upsert(host_id, |h| {
            h.host_id = host_id.to_string();
            f(h);
        });
        let new_app = self
            .hosts
            .get(host_id)
            .map(|h| h.app_id.clone())
            .unwrap_or_default();
        if let Some(old) = old_app.filter(|a| *a != new_app) {
            if let Some(set) = self.by_app.get_mut(old.as_str()) {
                set.remove(host_id);
            }
            self.recompute(&old);
        }
        self.by_app
            .entry(new_app.clone().into())
            .or_default()
            .insert(host_id.into());
        self.recompute(&new_app);
    }

    /// Recomputes an app's rollout row from its hosts (nothing before its first release).
    fn recompute(&mut self, app_id: &str) {
        let Some(current) = self.rollouts.get(app_id).map(|r| r.current_version.clone()) else {
            return;
        };
        let (mut on_current, mut on_old, mut waiting) = (0u32, 0u32, Vec::new());
        for id in self.by_app.get(app_id).into_iter().flatten() {
            let Some(h) = self.hosts.get(id) else {
                continue;
            };
            if !matches!(h.status(), HostStatus::Active | HostStatus::Draining) {
                continue;
            }
            if h.version == current {
                on_current += 1;
            } else {
                on_old += 1;
                waiting.push(waiting_line(h));
            }
        }
        self.rollouts.upsert(app_id, |r| {
            r.hosts_current = on_current;
            r.hosts_old = on_old;
            r.waiting_for = waiting;
            r.completed = on_old == 0;
        });
    }
}

impl View for RolloutsView {
    const NAME: &'static str = "rollouts";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        match event {
            Event::HostRegistered(e) => self.host(&e.host_id, true, |h| {
                h.app_id = e.app_id.to_string();
                h.version.clone_from(&e.version);
                h.set_status(HostStatus::Active);
                h.sessions = 0;
                h.drain_deadline = None;
            }),
            Event::SessionAssigned(e) => self.host(&e.host_id, false, |h| {
                h.sessions = h.sessions.saturating_add(1)
            }),
            Event::SessionReleased(e) => self.host(&e.host_id, false, |h| {
                h.sessions = h.sessions.saturating_sub(1)
            }),
            Event::HostDraining(e) => self.host(&e.host_id, false, |h| {
                h.set_status(HostStatus::Draining);
                h.drain_deadline = e.deadline.map(timestamp);
            }),
            Event::HostRemoved(e) => self.host(&e.host_id, false, |h| {
                h.set_status(HostStatus::Removed);
                h.sessions = 0;
            }),
            Event::AppRegistered(e) => {
                self.rollouts.upsert(&e.app_id, |r| {
                    r.app_id = e.app_id.to_string();
                    r.current_version.clone_from(&e.version);
                    r.released_at = Some(timestamp(time));
                });
                self.recompute(&e.app_id);
            }
            Event::VersionReleased(e) => {
                self.rollouts.upsert(&e.app_id, |r| {
                    r.app_id = e.app_id.to_string();
                    r.current_version.clone_from(&e.version);
                    r.previous_version = e.previous.clone().unwrap_or_default();
                    r.urgent = e.urgent;
                    r.deadline = e.deadline.map(timestamp);
                    r.released_at = Some(timestamp(time));
                });
                self.recompute(&e.app_id);
            }
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.rollouts, &mut self.hosts]
    }

    fn loaded(&mut self) {
        self.by_app.clear();
        for (id, h) in self.hosts.iter() {
            self.by_app
                .entry(h.app_id.clone().into())
                .or_default()
                .insert(id.clone().into());
        }
    }
}
