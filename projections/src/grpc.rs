//! The gRPC service `streamfleet.views.v1.Views`: a query and a watch per view, and the status.
//!
//! Invariant: answers are built from the stored row messages unchanged, under one read lock of
//! the views, with the position of the view they come from; a watch first sends the rows as of
//! a position, then only batches stored after that position (again from scratch if it fell
//! behind the broadcast).

use crate::pb::{self, views_server::Views};
use crate::rows::RowChange;
use crate::shared::Shared;
use crate::views::heartbeats::{host_liveness, session_liveness};
use crate::views::instances::capability_rows;
use crate::views::{ViewBatch, ViewSet};
use chrono::{DateTime, Utc};
use prost::Message;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Rows per message of a watch's snapshot.
const SNAPSHOT_CHUNK: usize = 500;

/// A server stream of updates.
pub type UpdateStream<U> = Pin<Box<dyn Stream<Item = Result<U, Status>> + Send>>;

/// The service over the shared views.
pub struct ViewsApi {
    shared: Arc<Shared>,
}

impl ViewsApi {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ViewsApi { shared }
    }
}

/// Whether a filter (empty: anything) admits a value.
fn want(filter: &str, value: &str) -> bool {
    filter.is_empty() || filter == value
}

/// The rows of a changed-row list that belong to `table`, decoded (deleted rows left out).
fn decoded<M: Message + Default>(changes: &[RowChange], table: &str) -> Vec<M> {
    changes
        .iter()
        .filter(|c| c.table == table)
        .filter_map(|c| c.bytes.as_deref().and_then(|b| M::decode(b).ok()))
        .collect()
}

/// Splits rows into chunks for snapshot messages (at least one, possibly empty).
fn chunks<T>(rows: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(SNAPSHOT_CHUNK).collect());
    }
    out
}

/// A watch message: position and kind are set by [`watch`].
trait Update: Default + Send + 'static {
    fn frame(&mut self, position: u64, kind: pb::UpdateKind);
}

macro_rules! update {
    ($($t:ty),*) => {$(impl Update for $t {
        fn frame(&mut self, position: u64, kind: pb::UpdateKind) {
            self.position = position;
            self.set_kind(kind);
        }
    })*};
}
update!(
    pb::HeartbeatsUpdate,
    pb::ConsistencyUpdate,
    pb::SessionsUpdate,
    pb::HostsUpdate,
    pb::RolloutsUpdate,
    pb::InstancesUpdate,
    pb::MigrationsUpdate,
    pb::NodesUpdate
);

/// How one view answers a watch.
struct Watched<R, U> {
    view: &'static str,
    /// The current rows matching the request, split into messages.
    snapshot: fn(&ViewSet, &R, &Shared) -> Vec<U>,
    /// The rows of a batch matching the request (`None`: nothing to send).
    change: fn(&ViewSet, &ViewBatch, &R, &Shared) -> Option<U>,
}

fn watch<R, U>(shared: Arc<Shared>, req: R, w: Watched<R, U>) -> UpdateStream<U>
where
    R: Send + Sync + 'static,
    U: Update,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut changes = shared.changes.subscribe();
        let mut stop = shared.stop.clone();
        'snapshot: loop {
            let (position, parts) = {
                let views = shared.views.read().await;
                (
                    views.position_of(w.view),
                    (w.snapshot)(&views, &req, &shared),
                )
            };
            let mut parts = if parts.is_empty() {
                vec![U::default()]
            } else {
                parts
            };
            let last = parts.len() - 1;
            for (i, mut u) in parts.drain(..).enumerate() {
                let kind = if i == last {
                    pb::UpdateKind::SnapshotEnd
                } else {
                    pb::UpdateKind::Snapshot
                };
                u.frame(position, kind);
                // A watcher that stops reading must not hold up a shutdown.
                tokio::select! {
                    sent = tx.send(Ok(u)) => if sent.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            loop {
                let batches = tokio::select! {
                    _ = tx.closed() => return,
                    _ = stop.wait_for(|s| *s) => return,
                    got = changes.recv() => match got {
                        Ok(b) => b,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'snapshot,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let updates: Vec<U> = {
                    let views = shared.views.read().await;
                    batches
                        .iter()
                        .filter(|b| b.view == w.view && b.position > position)
                        .filter_map(|b| {
                            let mut u = (w.change)(&views, b, &req, &shared)?;
                            u.frame(b.position, pb::UpdateKind::Change);
                            Some(u)
                        })
                        .collect()
                };
                for u in updates {
                    tokio::select! {
                        sent = tx.send(Ok(u)) => if sent.is_err() { return },
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

// ---- heartbeats

fn host_heartbeat(row: pb::HostBeatRow, now: DateTime<Utc>, s: &Shared) -> pb::HostHeartbeat {
    let (liveness, age_ms) = host_liveness(&row, now, s.heartbeat_interval);
    pb::HostHeartbeat {
        row: Some(row),
        liveness: liveness.into(),
        age_ms,
    }
}

fn session_heartbeat(
    row: pb::SessionBeatRow,
    now: DateTime<Utc>,
    s: &Shared,
) -> pb::SessionHeartbeat {
    let (liveness, age_ms) = session_liveness(&row, now, s.heartbeat_interval);
    pb::SessionHeartbeat {
        row: Some(row),
        liveness: liveness.into(),
        age_ms,
    }
}

fn host_beat_wanted(req: &pb::HeartbeatsRequest, r: &pb::HostBeatRow) -> bool {
    req.session_id.is_empty()
        && want(&req.region, &r.region)
        && want(&req.app_id, &r.app_id)
        && want(&req.host_id, &r.host_id)
}

fn session_beat_wanted(v: &ViewSet, req: &pb::HeartbeatsRequest, r: &pb::SessionBeatRow) -> bool {
    let (region, app) = v.heartbeats.view.host_place(&r.host_id);
    want(&req.session_id, &r.session_id)
        && want(&req.host_id, &r.host_id)
        && want(&req.region, region)
        && want(&req.app_id, app)
}

fn heartbeats(v: &ViewSet, req: &pb::HeartbeatsRequest, s: &Shared) -> pb::HeartbeatsResponse {
    let now = Utc::now();
    let view = &v.heartbeats.view;
    let (regions, apps) = view.counts(now, s.heartbeat_interval);
    pb::HeartbeatsResponse {
        position: v.heartbeats.position,
        hosts: (view.hosts.iter())
            .filter(|(_, r)| host_beat_wanted(req, r))
            .map(|(_, r)| host_heartbeat(r.clone(), now, s))
            .collect(),
        sessions: (view.sessions.iter())
            .filter(|(_, r)| session_beat_wanted(v, req, r))
            .map(|(_, r)| session_heartbeat(r.clone(), now, s))
            .collect(),
        regions: regions
            .into_iter()
            .filter(|c| want(&req.region, &c.key))
            .collect(),
        apps: apps
            .into_iter()
            .filter(|c| want(&req.app_id, &c.key))
            .collect(),
        heartbeat_interval_ms: u64::try_from(s.heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
    }
}

const HEARTBEATS: Watched<pb::HeartbeatsRequest, pb::HeartbeatsUpdate> = Watched {
    view: <crate::views::HeartbeatsView as crate::views::View>::NAME,
    snapshot: |v, req, s| {
        let r = heartbeats(v, req, s);
        let hosts = chunks(r.hosts)
            .into_iter()
            .map(|hosts| pb::HeartbeatsUpdate {
                hosts,
                ..Default::default()
            });
        let sessions = chunks(r.sessions)
            .into_iter()
            .map(|sessions| pb::HeartbeatsUpdate {
                sessions,
                ..Default::default()
            });
        hosts.chain(sessions).collect()
    },
    change: |v, b, req, s| {
        let now = Utc::now();
        let u = pb::HeartbeatsUpdate {
            hosts: decoded::<pb::HostBeatRow>(&b.changes, "host_beats")
                .into_iter()
                .filter(|r| host_beat_wanted(req, r))
                .map(|r| host_heartbeat(r, now, s))
                .collect(),
            sessions: decoded::<pb::SessionBeatRow>(&b.changes, "session_beats")
                .into_iter()
                .filter(|r| session_beat_wanted(v, req, r))
                .map(|r| session_heartbeat(r, now, s))
                .collect(),
            ..Default::default()
        };
        (!u.hosts.is_empty() || !u.sessions.is_empty()).then_some(u)
    },
};

// ---- consistency

fn check_wanted(req: &pb::ConsistencyRequest, r: &pb::SessionCheckRow) -> bool {
    use pb::Agreement::{Agrees, NotReportedYet, Unspecified};
    want(&req.session_id, &r.session_id)
        && (req.host_id.is_empty()
            || req.host_id == r.recorded_host
            || req.host_id == r.reported_host)
        && !(req.problems_only && matches!(r.agreement(), Agrees | NotReportedYet | Unspecified))
}

fn discrepancy_wanted(req: &pb::ConsistencyRequest, r: &pb::DiscrepancyRow) -> bool {
    want(&req.session_id, &r.session_id)
        && want(&req.host_id, &r.host_id)
        && !(req.problems_only && r.resolved_at.is_some())
}

fn consistency(v: &ViewSet, req: &pb::ConsistencyRequest) -> pb::ConsistencyResponse {
    let view = &v.consistency.view;
    pb::ConsistencyResponse {
        position: v.consistency.position,
        sessions: (view.sessions.iter())
            .filter(|(_, r)| check_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
        discrepancies: (view.discrepancies.iter())
            .filter(|(_, r)| discrepancy_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const CONSISTENCY: Watched<pb::ConsistencyRequest, pb::ConsistencyUpdate> = Watched {
    view: <crate::views::ConsistencyView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        let r = consistency(v, req);
        let sessions = chunks(r.sessions)
            .into_iter()
            .map(|sessions| pb::ConsistencyUpdate {
                sessions,
                ..Default::default()
            });
        let discrepancies =
            chunks(r.discrepancies)
                .into_iter()
                .map(|discrepancies| pb::ConsistencyUpdate {
                    discrepancies,
                    ..Default::default()
                });
        sessions.chain(discrepancies).collect()
    },
    change: |_, b, req, _| {
        // With `problems_only`, a row that stopped being a problem is still sent, once, so a
        // watcher learns it is resolved.
        let all = pb::ConsistencyRequest {
            problems_only: false,
            ..req.clone()
        };
        let u = pb::ConsistencyUpdate {
            sessions: decoded::<pb::SessionCheckRow>(&b.changes, "session_checks")
                .into_iter()
                .filter(|r| check_wanted(&all, r))
                .collect(),
            discrepancies: decoded::<pb::DiscrepancyRow>(&b.changes, "discrepancies")
                .into_iter()
                .filter(|r| discrepancy_wanted(&all, r))
                .collect(),
            ..Default::default()
        };
        (!u.sessions.is_empty() || !u.discrepancies.is_empty()).then_some(u)
    },
};

// ---- sessions

fn session_wanted(req: &pb::SessionsRequest, r: &pb::SessionRow) -> bool {
    want(&req.region, &r.region)
        && want(&req.app_id, &r.app_id)
        && want(&req.host_id, &r.host_id)
        && want(&req.session_id, &r.session_id)
        && want(&req.user_id, &r.user_id)
        && !(req.active_only && r.status() == pb::SessionStatus::Ended)
}

fn sessions(v: &ViewSet, req: &pb::SessionsRequest) -> pb::SessionsResponse {
    pb::SessionsResponse {
        position: v.sessions.position,
        sessions: (v.sessions.view.sessions.iter())
            .filter(|(_, r)| session_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const SESSIONS: Watched<pb::SessionsRequest, pb::SessionsUpdate> = Watched {
    view: <crate::views::SessionsView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        chunks(sessions(v, req).sessions)
            .into_iter()
            .map(|sessions| pb::SessionsUpdate {
                sessions,
                ..Default::default()
            })
            .collect()
    },
    change: |_, b, req, _| {
        // An active-only watcher still gets the row of a session that just ended.
        let all = pb::SessionsRequest {
            active_only: false,
            ..req.clone()
        };
        let sessions: Vec<pb::SessionRow> = decoded::<pb::SessionRow>(&b.changes, "sessions")
            .into_iter()
            .filter(|r| session_wanted(&all, r))
            .collect();
        (!sessions.is_empty()).then(|| pb::SessionsUpdate {
            sessions,
            ..Default::default()
        })
    },
};

// ---- hosts

fn host_wanted(req: &pb::HostsRequest, r: &pb::HostRow) -> bool {
    want(&req.region, &r.region) && want(&req.app_id, &r.app_id) && want(&req.host_id, &r.host_id)
}

fn pool_wanted(req: &pb::HostsRequest, r: &pb::PoolRow) -> bool {
    want(&req.region, &r.region) && want(&req.app_id, &r.app_id)
}

fn hosts(v: &ViewSet, req: &pb::HostsRequest) -> pb::HostsResponse {
    let view = &v.hosts.view;
    pb::HostsResponse {
        position: v.hosts.position,
        hosts: (view.hosts.iter())
            .filter(|(_, r)| host_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
        pools: (view.pools.iter())
            .filter(|(_, r)| pool_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const HOSTS: Watched<pb::HostsRequest, pb::HostsUpdate> = Watched {
    view: <crate::views::HostsView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        let r = hosts(v, req);
        let hosts = chunks(r.hosts).into_iter().map(|hosts| pb::HostsUpdate {
            hosts,
            ..Default::default()
        });
        let pools = chunks(r.pools).into_iter().map(|pools| pb::HostsUpdate {
            pools,
            ..Default::default()
        });
        hosts.chain(pools).collect()
    },
    change: |_, b, req, _| {
        let u = pb::HostsUpdate {
            hosts: decoded::<pb::HostRow>(&b.changes, "hosts")
                .into_iter()
                .filter(|r| host_wanted(req, r))
                .collect(),
            pools: decoded::<pb::PoolRow>(&b.changes, "pools")
                .into_iter()
                .filter(|r| pool_wanted(req, r))
                .collect(),
            ..Default::default()
        };
        (!u.hosts.is_empty() || !u.pools.is_empty()).then_some(u)
    },
};

// ---- rollouts

fn rollouts(v: &ViewSet, req: &pb::RolloutsRequest) -> pb::RolloutsResponse {
    pb::RolloutsResponse {
        position: v.rollouts.position,
        rollouts: (v.rollouts.view.rollouts.iter())
            .filter(|(_, r)| want(&req.app_id, &r.app_id))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const ROLLOUTS: Watched<pb::RolloutsRequest, pb::RolloutsUpdate> = Watched {
    view: <crate::views::RolloutsView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        chunks(rollouts(v, req).rollouts)
            .into_iter()
            .map(|rollouts| pb::RolloutsUpdate {
                rollouts,
                ..Default::default()
            })
            .collect()
    },
    change: |_, b, req, _| {
        let rollouts: Vec<pb::RolloutRow> = decoded::<pb::RolloutRow>(&b.changes, "rollouts")
            .into_iter()
            .filter(|r| want(&req.app_id, &r.app_id))
            .collect();
        (!rollouts.is_empty()).then(|| pb::RolloutsUpdate {
            rollouts,
            ..Default::default()
        })
    },
};

// ---- instances

fn instance_wanted(req: &pb::InstancesRequest, r: &pb::InstanceRow) -> bool {
    want(&req.instance_id, &r.instance_id)
        && want(&req.host_id, &r.host_id)
        && want(&req.hypervisor, &r.hypervisor)
        && want(&req.region, &r.region)
        && (req.status() == pb::InstanceStatus::Unspecified || req.status() == r.status())
}

fn compute_host_wanted(req: &pb::InstancesRequest, r: &pb::ComputeHostRow) -> bool {
    want(&req.host_id, &r.host_id)
        && want(&req.hypervisor, &r.hypervisor)
        && want(&req.region, &r.region)
}

fn capabilities(req: &pb::InstancesRequest) -> Vec<pb::CapabilityRow> {
    capability_rows()
        .into_iter()
        .filter(|c| want(&req.hypervisor, &c.hypervisor))
        .collect()
}

fn instances(v: &ViewSet, req: &pb::InstancesRequest) -> pb::InstancesResponse {
    let view = &v.instances.view;
    pb::InstancesResponse {
        position: v.instances.position,
        instances: (view.instances.iter())
            .filter(|(_, r)| instance_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
        hosts: (view.hosts.iter())
            .filter(|(_, r)| compute_host_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
        capabilities: capabilities(req),
    }
}

const INSTANCES: Watched<pb::InstancesRequest, pb::InstancesUpdate> = Watched {
    view: <crate::views::InstancesView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        let r = instances(v, req);
        let instances = chunks(r.instances)
            .into_iter()
            .map(|instances| pb::InstancesUpdate {
                instances,
                ..Default::default()
            });
        let hosts = chunks(r.hosts)
            .into_iter()
            .map(|hosts| pb::InstancesUpdate {
                hosts,
                ..Default::default()
            });
        let capabilities =
            chunks(r.capabilities)
                .into_iter()
                .map(|capabilities| pb::InstancesUpdate {
                    capabilities,
                    ..Default::default()
                });
        instances.chain(hosts).chain(capabilities).collect()
    },
    change: |_, b, req, _| {
        // A watcher of one status still gets the row of an instance that just left it.
        let all = pb::InstancesRequest {
            status: pb::InstanceStatus::Unspecified.into(),
            ..req.clone()
        };
        let u = pb::InstancesUpdate {
            instances: decoded::<pb::InstanceRow>(&b.changes, "instances")
                .into_iter()
                .filter(|r| instance_wanted(&all, r))
                .collect(),
            hosts: decoded::<pb::ComputeHostRow>(&b.changes, "compute_hosts")
                .into_iter()
                .filter(|r| compute_host_wanted(req, r))
                .collect(),
            ..Default::default()
        };
        (!u.instances.is_empty() || !u.hosts.is_empty()).then_some(u)
    },
};

// ---- migrations

fn migration_wanted(req: &pb::MigrationsRequest, r: &pb::MigrationRow) -> bool {
    want(&req.migration_id, &r.migration_id)
        && want(&req.instance_id, &r.instance_id)
        && (req.host_id.is_empty() || req.host_id == r.source_host || req.host_id == r.target_host)
        && want(&req.step, &r.step)
        && !(req.active_only && r.over)
}

fn migrations(v: &ViewSet, req: &pb::MigrationsRequest) -> pb::MigrationsResponse {
    pb::MigrationsResponse {
        position: v.migrations.position,
        migrations: (v.migrations.view.migrations.iter())
            .filter(|(_, r)| migration_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const MIGRATIONS: Watched<pb::MigrationsRequest, pb::MigrationsUpdate> = Watched {
    view: <crate::views::MigrationsView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        chunks(migrations(v, req).migrations)
            .into_iter()
            .map(|migrations| pb::MigrationsUpdate {
                migrations,
                ..Default::default()
            })
            .collect()
    },
    change: |_, b, req, _| {
        // A watcher of one step, or of active migrations, still gets the row of a migration
        // that just left the step or ended.
        let all = pb::MigrationsRequest {
            step: String::new(),
            active_only: false,
            ..req.clone()
        };
        let migrations: Vec<pb::MigrationRow> =
            decoded::<pb::MigrationRow>(&b.changes, "migrations")
                .into_iter()
                .filter(|r| migration_wanted(&all, r))
                .collect();
        (!migrations.is_empty()).then(|| pb::MigrationsUpdate {
            migrations,
            ..Default::default()
        })
    },
};

// ---- nodes

fn node_wanted(req: &pb::NodesRequest, r: &pb::NodeRow) -> bool {
    want(&req.file_system, &r.file_system)
        && want(&req.node_id, &r.node_id)
        && want(&req.host_id, &r.host_id)
        && want(&req.role, &r.role)
        && want(&req.phase, &r.phase)
}

/// A file system is sent with its nodes: filtered by its id, and by a node's when one is asked
/// for (host, role and phase filters leave the file systems alone).
fn file_system_wanted(req: &pb::NodesRequest, r: &pb::FileSystemRow) -> bool {
    want(&req.file_system, &r.file_system)
        && (req.node_id.is_empty() || r.nodes.contains(&req.node_id))
}

fn nodes(v: &ViewSet, req: &pb::NodesRequest) -> pb::NodesResponse {
    let view = &v.nodes.view;
    pb::NodesResponse {
        position: v.nodes.position,
        file_systems: (view.file_systems.iter())
            .filter(|(_, r)| file_system_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
        nodes: (view.nodes.iter())
            .filter(|(_, r)| node_wanted(req, r))
            .map(|(_, r)| r.clone())
            .collect(),
    }
}

const NODES: Watched<pb::NodesRequest, pb::NodesUpdate> = Watched {
    view: <crate::views::NodesView as crate::views::View>::NAME,
    snapshot: |v, req, _| {
        let r = nodes(v, req);
        let file_systems = chunks(r.file_systems)
            .into_iter()
            .map(|file_systems| pb::NodesUpdate {
                file_systems,
                ..Default::default()
            });
        let nodes = chunks(r.nodes).into_iter().map(|nodes| pb::NodesUpdate {
            nodes,
            ..Default::default()
        });
        file_systems.chain(nodes).collect()
    },
    change: |_, b, req, _| {
        // A watcher of one phase (or one host) still gets the row of a node that just left it.
        let all = pb::NodesRequest {
            phase: String::new(),
            host_id: String::new(),
            ..req.clone()
        };
        let u = pb::NodesUpdate {
            file_systems: decoded::<pb::FileSystemRow>(&b.changes, "file_systems")
                .into_iter()
                .filter(|r| file_system_wanted(req, r))
                .collect(),
            nodes: decoded::<pb::NodeRow>(&b.changes, "nodes")
                .into_iter()
                .filter(|r| node_wanted(&all, r))
                .collect(),
            ..Default::default()
        };
        (!u.file_systems.is_empty() || !u.nodes.is_empty()).then_some(u)
    },
};

#[tonic::async_trait]
impl Views for ViewsApi {
    async fn get_heartbeats(
        &self,
        request: Request<pb::HeartbeatsRequest>,
    ) -> Result<Response<pb::HeartbeatsResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(heartbeats(
            &views,
            request.get_ref(),
            &self.shared,
        )))
    }

    type WatchHeartbeatsStream = UpdateStream<pb::HeartbeatsUpdate>;

    async fn watch_heartbeats(
        &self,
        request: Request<pb::HeartbeatsRequest>,
    ) -> Result<Response<Self::WatchHeartbeatsStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            HEARTBEATS,
        )))
    }

    async fn get_consistency(
        &self,
        request: Request<pb::ConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(consistency(&views, request.get_ref())))
    }

    type WatchConsistencyStream = UpdateStream<pb::ConsistencyUpdate>;

    async fn watch_consistency(
        &self,
        request: Request<pb::ConsistencyRequest>,
    ) -> Result<Response<Self::WatchConsistencyStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            CONSISTENCY,
        )))
    }

    async fn get_sessions(
        &self,
        request: Request<pb::SessionsRequest>,
    ) -> Result<Response<pb::SessionsResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(sessions(&views, request.get_ref())))
    }

    type WatchSessionsStream = UpdateStream<pb::SessionsUpdate>;

    async fn watch_sessions(
        &self,
        request: Request<pb::SessionsRequest>,
    ) -> Result<Response<Self::WatchSessionsStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            SESSIONS,
        )))
    }

    async fn get_hosts(
        &self,
        request: Request<pb::HostsRequest>,
    ) -> Result<Response<pb::HostsResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(hosts(&views, request.get_ref())))
    }

    type WatchHostsStream = UpdateStream<pb::HostsUpdate>;

    async fn watch_hosts(
        &self,
        request: Request<pb::HostsRequest>,
    ) -> Result<Response<Self::WatchHostsStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            HOSTS,
        )))
    }

    async fn get_rollouts(
        &self,
        request: Request<pb::RolloutsRequest>,
    ) -> Result<Response<pb::RolloutsResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(rollouts(&views, request.get_ref())))
    }

    type WatchRolloutsStream = UpdateStream<pb::RolloutsUpdate>;

    async fn watch_rollouts(
        &self,
        request: Request<pb::RolloutsRequest>,
    ) -> Result<Response<Self::WatchRolloutsStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            ROLLOUTS,
        )))
    }

    async fn get_instances(
        &self,
        request: Request<pb::InstancesRequest>,
    ) -> Result<Response<pb::InstancesResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(instances(&views, request.get_ref())))
    }

    type WatchInstancesStream = UpdateStream<pb::InstancesUpdate>;

    async fn watch_instances(
        &self,
        request: Request<pb::InstancesRequest>,
    ) -> Result<Response<Self::WatchInstancesStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            INSTANCES,
        )))
    }

    async fn get_migrations(
        &self,
        request: Request<pb::MigrationsRequest>,
    ) -> Result<Response<pb::MigrationsResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(migrations(&views, request.get_ref())))
    }

    type WatchMigrationsStream = UpdateStream<pb::MigrationsUpdate>;

    async fn watch_migrations(
        &self,
        request: Request<pb::MigrationsRequest>,
    ) -> Result<Response<Self::WatchMigrationsStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            MIGRATIONS,
        )))
    }

    async fn get_nodes(
        &self,
        request: Request<pb::NodesRequest>,
    ) -> Result<Response<pb::NodesResponse>, Status> {
        let views = self.shared.views.read().await;
        Ok(Response::new(nodes(&views, request.get_ref())))
    }

    type WatchNodesStream = UpdateStream<pb::NodesUpdate>;

    async fn watch_nodes(
        &self,
        request: Request<pb::NodesRequest>,
    ) -> Result<Response<Self::WatchNodesStream>, Status> {
        Ok(Response::new(watch(
            self.shared.clone(),
            request.into_inner(),
            NODES,
        )))
    }

    async fn get_status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let positions = self.shared.views.read().await.positions();
        let head = *self.shared.head.borrow();
        let lowest = positions.iter().map(|(_, p)| *p).min().unwrap_or(0);
        Ok(Response::new(pb::StatusResponse {
            views: positions
                .iter()
                .map(|(view, position)| pb::ViewStatus {
                    view: view.to_string(),
                    position: *position,
                })
                .collect(),
            head: head.unwrap_or(0),
            head_known: head.is_some(),
            lag: head.map_or(0, |h| h.saturating_sub(lowest)),
            caught_up: head.is_some_and(|h| lowest >= h),
        }))
    }
}
