//! Hosts and capacity: every host's life and slots; per (region, app) the pool's totals.
//!
//! Invariant: a pool row's counters are the sum of its hosts' contributions (`Share`): every
//! host change takes the host's old share out of its pool and puts the new one in, so pools
//! always equal a fresh sum over the hosts without ever rescanning them.

use super::{View, host_port};
use crate::pb::{HostRow, HostStatus, PoolRow};
use crate::rows::{StoredTable, Table, timestamp};
use crate::views::consistency::serde_name;
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;

/// Host and pool rows.
#[derive(Debug, Clone)]
pub struct HostsView {
    /// By host id.
    pub hosts: Table<HostRow>,
    /// By [`pool_key`].
    pub pools: Table<PoolRow>,
}

impl Default for HostsView {
    fn default() -> Self {
        HostsView {
            hosts: Table::new("hosts"),
            pools: Table::new("pools"),
        }
    }
}

/// The key of a (region, app) pool: `region/app`.
pub fn pool_key(region: &str, app_id: &str) -> String {
    format!("{region}/{app_id}")
}

/// What one host adds to its pool's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Share {
    hosts: u32,
    active: u32,
    draining: u32,
    sessions: u32,
    free: u32,
    idle: u32,
    requested: u32,
}

impl Share {
    fn of(h: &HostRow) -> Share {
        let sessions = u32::try_from(h.sessions.len()).unwrap_or(u32::MAX);
        match h.status() {
            HostStatus::Requested => Share {
                requested: 1,
                ..Share::default()
            },
            HostStatus::Active => Share {
                hosts: 1,
                active: 1,
                sessions,
                free: h.capacity.saturating_sub(sessions),
                idle: u32::from(sessions == 0),
                ..Share::default()
            },
            HostStatus::Draining => Share {
                hosts: 1,
                draining: 1,
                sessions,
                ..Share::default()
            },
            HostStatus::Removed | HostStatus::Unspecified => Share::default(),
        }
    }

    /// Adds (`sign` true) or takes out this share from a pool.
    fn apply_to(self, p: &mut PoolRow, add: bool) {
        let f = |field: &mut u32, v: u32| {
            *field = if add {
                field.saturating_add(v)
            } else {
                field.saturating_sub(v)
            }
        };
        f(&mut p.hosts, self.hosts);
        f(&mut p.active_hosts, self.active);
        f(&mut p.draining_hosts, self.draining);
        f(&mut p.sessions, self.sessions);
        f(&mut p.free_slots, self.free);
        f(&mut p.idle_hosts, self.idle);
        f(&mut p.requested_hosts, self.requested);
    }
}

impl HostsView {
    /// Changes a host (creating it when `create`), keeping its pool's counters in step.
    fn host(&mut self, host_id: &str, create: bool, f: impl FnOnce(&mut HostRow)) {
        let before = self
            .hosts
            .get(host_id)
            .map(|h| (pool_key(&h.region, &h.app_id), Share::of(h)));
        if before.is_none() && !create {
            return;
        }
        self.hosts.upsert(host_id, |h| {
            h.host_id = host_id.to_string();
            f(h);
        });
        let Some(h) = self.hosts.get(host_id) else {
            return;
        };
        let after = (pool_key(&h.region, &h.app_id), Share::of(h));
        let (region, app_id) = (h.region.clone(), h.app_id.clone());
        if before.as_ref() == Some(&after) {
            return;
        }
        if let Some((key, share)) = before {
            self.pools.update(&key, |p| share.apply_to(p, false));
        }
        let (key, share) = after;
        if share != Share::default() || self.pools.get(&key).is_some() {
            self.pools.upsert(&key, |p| {
                p.region = region;
                p.app_id = app_id;
                share.apply_to(p, true);
            });
        }
    }
}

impl View for HostsView {
    const NAME: &'static str = "hosts";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            Event::HostRequested(e) => self.host(&e.host_id, true, |h| {
                if h.status() == HostStatus::Unspecified {
                    h.region = e.region.to_string();
                    h.app_id = e.app_id.to_string();
                    h.version.clone_from(&e.version);
                    h.set_status(HostStatus::Requested);
                }
                h.requested_reason.clone_from(&e.reason);
                h.requested_at = at;
            }),
            Event::HostRegistered(e) => self.host(&e.host_id, true, |h| {
                h.region = e.region.to_string();
                h.app_id = e.app_id.to_string();
                h.version.clone_from(&e.version);
                h.capacity = e.capacity;
                h.hardware.clone_from(&e.hardware);
                h.address = host_port(&e.address, e.control_port);
                h.sessions.clear();
                h.set_status(HostStatus::Active);
                h.removal_reason.clear();
                h.removed_at = None;
                h.drain_new_version.clear();
                h.drain_deadline = None;
                h.registered_at = at;
            }),
            Event::SessionAssigned(e) => self.host(&e.host_id, false, |h| {
                if let Err(i) = h.sessions.binary_search(&e.session_id.to_string()) {
                    h.sessions.insert(i, e.session_id.to_string());
                }
            }),
            Event::SessionReleased(e) => self.host(&e.host_id, false, |h| {
                if let Ok(i) = h.sessions.binary_search(&e.session_id.to_string()) {
                    h.sessions.remove(i);
                }
            }),
            Event::HostDraining(e) => self.host(&e.host_id, false, |h| {
                h.set_status(HostStatus::Draining);
                h.drain_new_version.clone_from(&e.new_version);
                h.drain_deadline = e.deadline.map(timestamp);
            }),
            Event::HostRemoved(e) => self.host(&e.host_id, false, |h| {
                h.set_status(HostStatus::Removed);
                h.removal_reason = serde_name(&e.reason);
                h.removed_at = at;
                h.sessions.clear();
            }),
            Event::BufferTargetSet(e) => self.pools.upsert(&pool_key(&e.region, &e.app_id), |p| {
                p.region = e.region.to_string();
                p.app_id = e.app_id.to_string();
                p.buffer_target = e.idle_hosts;
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.hosts, &mut self.pools]
    }
}
