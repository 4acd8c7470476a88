//! The eight views: pure folds of events into rows.
//!
//! Invariant: a view's rows depend only on the events applied and their order (never on the
//! clock, hash order or where the process started), and everything a view needs to go on
//! folding is in its stored rows: loading the rows and applying the remaining events gives
//! exactly what applying every event from the start gives.

pub mod consistency;
pub mod heartbeats;
pub mod hosts;
pub mod instances;
pub mod migrations;
pub mod nodes;
pub mod rollouts;
pub mod sessions;

pub use consistency::ConsistencyView;
pub use heartbeats::HeartbeatsView;
pub use hosts::HostsView;
pub use instances::InstancesView;
pub use migrations::MigrationsView;
pub use nodes::NodesView;
pub use rollouts::RolloutsView;
pub use sessions::SessionsView;

use crate::rows::{RowChange, StoredTable};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;

/// A fold of events into stored rows.
pub trait View: Default + Send + Sync + 'static {
    /// The view's name, also its file name (`<dir>/<NAME>.redb`).
    const NAME: &'static str;
    /// Applies one event recorded at `time`, at log `position`.
    fn apply(&mut self, position: u64, time: DateTime<Utc>, event: &Event);
    /// Its tables.
    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable>;
    /// Rebuilds in-memory indexes from the rows, after they were loaded.
    fn loaded(&mut self) {}
}

/// The names of all views, in the order they are stored and reported.
pub const VIEW_NAMES: [&str; 8] = [
    HeartbeatsView::NAME,
    ConsistencyView::NAME,
    SessionsView::NAME,
    HostsView::NAME,
    RolloutsView::NAME,
    InstancesView::NAME,
    MigrationsView::NAME,
    NodesView::NAME,
];

/// A view and the last position applied to it.
#[derive(Debug, Default)]
pub struct Positioned<V> {
    /// The view.
    pub view: V,
    /// The last position applied (0: none).
    pub position: u64,
    /// Whether the position moved since the last store.
    moved: bool,
}

impl<V: View> Positioned<V> {
    fn apply(&mut self, position: u64, time: DateTime<Utc>, event: Option<&Event>) {
        if position <= self.position {
            return;
        }
        if let Some(event) = event {
            self.view.apply(position, time, event);
        }
        self.position = position;
        self.moved = true;
    }

    fn take_batch(&mut self) -> Option<ViewBatch> {
        let changes: Vec<RowChange> = self
            .view
            .tables_mut()
            .into_iter()
            .flat_map(|t| t.take_changes())
            .collect();
        if !self.moved && changes.is_empty() {
            return None;
        }
        self.moved = false;
        Some(ViewBatch {
            view: V::NAME,
            position: self.position,
            changes,
        })
    }
}

/// What one view changed since its last store: rows and the position they reflect.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewBatch {
    /// The view.
    pub view: &'static str,
    /// Its position after the changes (its new checkpoint).
    pub position: u64,
    /// The changed rows, by table then key.
    pub changes: Vec<RowChange>,
}

/// All eight views, each with its own position.
#[derive(Debug, Default)]
pub struct ViewSet {
    /// Heartbeats and liveness.
    pub heartbeats: Positioned<HeartbeatsView>,
    /// Recorded vs reported state, discrepancies.
    pub consistency: Positioned<ConsistencyView>,
    /// Sessions.
    pub sessions: Positioned<SessionsView>,
    /// Hosts and capacity.
    pub hosts: Positioned<HostsView>,
    /// Rollouts.
    pub rollouts: Positioned<RolloutsView>,
    /// Instances and compute hosts.
    pub instances: Positioned<InstancesView>,
    /// Migrations of instances between hosts.
    pub migrations: Positioned<MigrationsView>,
    /// File systems and their nodes.
    pub nodes: Positioned<NodesView>,
}

impl ViewSet {
    /// Applies the event at `position` to every view not past it. `None` is an event no view
    /// reads (an unknown type): only the positions move.
    pub fn apply(&mut self, position: u64, time: DateTime<Utc>, event: Option<&Event>) {
        self.heartbeats.apply(position, time, event);
        self.consistency.apply(position, time, event);
        self.sessions.apply(position, time, event);
        self.hosts.apply(position, time, event);
        self.rollouts.apply(position, time, event);
        self.instances.apply(position, time, event);
        self.migrations.apply(position, time, event);
        self.nodes.apply(position, time, event);
    }

    /// The lowest position of the views: everything up to it is applied everywhere.
    pub fn position(&self) -> u64 {
        self.positions().iter().map(|(_, p)| *p).min().unwrap_or(0)
    }

    /// The position of the named view (0 for an unknown name).
    pub fn position_of(&self, view: &str) -> u64 {
        self.positions()
            .iter()
            .find(|(v, _)| *v == view)
            .map_or(0, |(_, p)| *p)
    }

    /// `(view, position)` for every view.
    pub fn positions(&self) -> [(&'static str, u64); 8] {
        [
            (HeartbeatsView::NAME, self.heartbeats.position),
            (ConsistencyView::NAME, self.consistency.position),
            (SessionsView::NAME, self.sessions.position),
            (HostsView::NAME, self.hosts.position),
            (RolloutsView::NAME, self.rollouts.position),
            (InstancesView::NAME, self.instances.position),
            (MigrationsView::NAME, self.migrations.position),
            (NodesView::NAME, self.nodes.position),
        ]
    }

    /// What changed in each view since the last call (views with nothing new are left out).
    pub fn take_batches(&mut self) -> Vec<ViewBatch> {
        [
            self.heartbeats.take_batch(),
            self.consistency.take_batch(),
            self.sessions.take_batch(),
            self.hosts.take_batch(),
            self.rollouts.take_batch(),
            self.instances.take_batch(),
            self.migrations.take_batch(),
            self.nodes.take_batch(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The tables of the named view, to load rows into (`None`: no such view).
    pub(crate) fn tables_of(&mut self, view: &str) -> Option<Vec<&mut dyn StoredTable>> {
        Some(match view {
            HeartbeatsView::NAME => self.heartbeats.view.tables_mut(),
            ConsistencyView::NAME => self.consistency.view.tables_mut(),
            SessionsView::NAME => self.sessions.view.tables_mut(),
            HostsView::NAME => self.hosts.view.tables_mut(),
            RolloutsView::NAME => self.rollouts.view.tables_mut(),
            InstancesView::NAME => self.instances.view.tables_mut(),
            MigrationsView::NAME => self.migrations.view.tables_mut(),
            NodesView::NAME => self.nodes.view.tables_mut(),
            _ => return None,
        })
    }

    /// Sets a view's position and rebuilds its indexes after loading its rows.
    pub(crate) fn loaded(&mut self, view: &str, position: u64) {
        match view {
            HeartbeatsView::NAME => set_loaded(&mut self.heartbeats, position),
            ConsistencyView::NAME => set_loaded(&mut self.consistency, position),
            SessionsView::NAME => set_loaded(&mut self.sessions, position),
            HostsView::NAME => set_loaded(&mut self.hosts, position),
            RolloutsView::NAME => set_loaded(&mut self.rollouts, position),
            InstancesView::NAME => set_loaded(&mut self.instances, position),
            MigrationsView::NAME => set_loaded(&mut self.migrations, position),
            NodesView::NAME => set_loaded(&mut self.nodes, position),
            _ => {}
        }
    }
}

fn set_loaded<V: View>(p: &mut Positioned<V>, position: u64) {
    p.position = position;
    p.moved = false;
    p.view.loaded();
}

/// `address:port`, with brackets around an IPv6 address.
pub(crate) fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}
