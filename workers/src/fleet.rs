//! The workers' picture of the fleet: hosts, their slots, sessions, saved state, releases and
//! buffer targets, folded from the log.
//!
//! Invariant: [`Fleet::apply`] is a pure fold of events in log order, so every worker process
//! that followed the same positions holds the same picture. Times are the events' record times
//! (the node's clock), never the worker's.

use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::ids::{AppId, GroupId, HostId, RegionId, SessionId, TokenId, UserId};
use streamfleet_bus_schemas::payloads::{DiscrepancyKind, HeartbeatReceived, SessionEndReason};
use streamfleet_domain::host::HostStatus;
use streamfleet_domain::placement::HostSlotView;

/// One host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRecord {
    /// Region.
    pub region: RegionId,
    /// App.
    pub app_id: AppId,
    /// Version.
    pub version: String,
    /// Slots.
    pub capacity: u32,
    /// Where clients reach it.
    pub address: String,
    /// Its control port.
    pub control_port: u16,
    /// Whether its control port speaks HTTPS.
    pub control_tls: bool,
    /// Life stage.
    pub status: HostStatus,
    /// Sessions holding a slot.
    pub sessions: BTreeSet<SessionId>,
    /// Groups with provisioned sessions holding a slot here, and how many each.
    pub groups: BTreeMap<GroupId, u32>,
    /// When it was requested or registered (whichever came last).
    pub since: DateTime<Utc>,
    /// When its last heartbeat report was recorded.
    pub last_report: Option<DateTime<Utc>>,
}

impl HostRecord {
    /// A host without slots, sessions or reports yet.
    fn new(
        region: &str,
        app_id: &str,
        version: &str,
        status: HostStatus,
        since: DateTime<Utc>,
    ) -> Self {
        HostRecord {
            region: region.into(),
            app_id: app_id.into(),
            version: version.to_string(),
            capacity: 0,
            address: String::new(),
            control_port: 0,
            control_tls: false,
            status,
            sessions: BTreeSet::new(),
            groups: BTreeMap::new(),
            since,
            last_report: None,
        }
    }

    /// Registered and not removed.
    pub fn is_live(&self) -> bool {
        matches!(
            self.status,
            HostStatus::Active | HostStatus::Draining { .. }
        )
    }
}

/// One session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// The host holding its slot.
    pub host_id: HostId,
    /// App (known once provisioned).
    pub app_id: AppId,
    /// User (known once provisioned).
    pub user_id: UserId,
    /// Group.
    pub group_id: Option<GroupId>,
    /// When its slot was assigned.
    pub assigned_at: DateTime<Utc>,
    /// When it was provisioned.
    pub provisioned_at: Option<DateTime<Utc>>,
    /// How and when it ended.
    pub ended: Option<(SessionEndReason, DateTime<Utc>)>,
    /// When a report last listed it.
    pub last_heartbeat: Option<DateTime<Utc>>,
}

impl SessionRecord {
    /// A session whose slot on `host_id` was just assigned.
    fn assigned(host_id: &str, time: DateTime<Utc>) -> Self {
        SessionRecord {
            host_id: host_id.into(),
            app_id: AppId::default(),
            user_id: UserId::default(),
            group_id: None,
            assigned_at: time,
            provisioned_at: None,
            ended: None,
            last_heartbeat: None,
        }
    }
}

/// An app's current release.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The version new hosts run.
    pub version: String,
    /// Urgent: when old hosts are terminated.
    pub deadline: Option<DateTime<Utc>>,
}

/// One discrepancy.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscrepancyRecord {
    /// Host.
    pub host_id: HostId,
    /// Session.
    pub session_id: SessionId,
    /// Kind.
    pub kind: DiscrepancyKind,
    /// Resolved yet.
    pub resolved: bool,
}

/// The fleet as folded from the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fleet {
    /// The last position applied.
    pub position: u64,
    /// Hosts by id (requested or registered).
    pub hosts: BTreeMap<HostId, HostRecord>,
    /// Hosts admitted and neither requested nor registered yet, with their regions: the
    /// identities the cloud may be asked to launch.
    pub admitted: BTreeMap<HostId, RegionId>,
    /// Sessions by id.
    pub sessions: BTreeMap<SessionId, SessionRecord>,
    /// (user, app) → (session, state) saved by the user's last session of the app.
    pub saved_states: BTreeMap<(UserId, AppId), (SessionId, String)>,
    /// App → current release.
    pub releases: BTreeMap<AppId, Release>,
    /// (region, app) → idle hosts to keep.
    pub buffer_targets: BTreeMap<(RegionId, AppId), u32>,
    /// Discrepancies by id.
    pub discrepancies: BTreeMap<String, DiscrepancyRecord>,
    /// Tokens issued and not yet redeemed, by id (dropped by [`Fleet::forget_expired_tokens`]).
    pub tokens: BTreeMap<TokenId, OutstandingToken>,
}

/// What a redemption needs of a token issued and not yet redeemed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutstandingToken {
    /// App.
    pub app_id: AppId,
    /// User.
    pub user_id: UserId,
    /// Group.
    pub group_id: Option<GroupId>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

impl Fleet {
    /// An admitted host identity of `region` not yet asked of the cloud, when one is left.
    pub fn spare_identity(&self, region: &str) -> Option<&HostId> {
        self.admitted
            .iter()
            .find(|(_, r)| r.as_str() == region)
            .map(|(id, _)| id)
    }

    /// Folds one event recorded at `position` and `time`.
    pub fn apply(&mut self, position: u64, time: DateTime<Utc>, event: &Event) {
        self.position = position;
        match event {
            Event::HostAdmitted(e) => {
                self.admitted.insert(e.host_id.clone(), e.region.clone());
            }
            Event::HostRequested(e) => {
                self.admitted.remove(&e.host_id);
                let host = HostRecord::new(
                    &e.region,
                    &e.app_id,
                    &e.version,
                    HostStatus::Requested,
                    time,
                );
                self.hosts.insert(e.host_id.clone(), host);
            }
            Event::HostRegistered(e) => {
                self.admitted.remove(&e.host_id);
                let host = HostRecord {
                    capacity: e.capacity,
                    address: e.address.clone(),
                    control_port: e.control_port,
                    control_tls: e.control_tls,
                    ..HostRecord::new(&e.region, &e.app_id, &e.version, HostStatus::Active, time)
                };
                self.hosts.insert(e.host_id.clone(), host);
            }
            Event::SessionAssigned(e) => {
                if let Some(h) = self.hosts.get_mut(&e.host_id) {
                    h.sessions.insert(e.session_id.clone());
                }
                self.sessions.insert(
                    e.session_id.clone(),
                    SessionRecord::assigned(&e.host_id, time),
                );
            }
            Event::SessionReleased(e) => {
                let group = self
                    .sessions
                    .get(&e.session_id)
                    .and_then(|s| s.group_id.clone());
                if let Some(h) = self.hosts.get_mut(&e.host_id) {
                    h.sessions.remove(&e.session_id);
                    if let Some(g) = group
                        && let Some(n) = h.groups.get_mut(&g)
                    {
                        *n -= 1;
                        if *n == 0 {
                            h.groups.remove(&g);
                        }
                    }
                }
            }
            Event::HeartbeatReceived(e) => {
                if let Some(h) = self.hosts.get_mut(&e.host_id) {
                    h.last_report = Some(time);
                }
                for beat in &e.sessions {
                    if let Some(s) = self.sessions.get_mut(&beat.session_id)
                        && s.host_id == e.host_id
                    {
                        s.last_heartbeat = Some(time);
                    }
                }
            }
            Event::HostDraining(e) => {
                if let Some(h) = self.hosts.get_mut(&e.host_id) {
                    h.status = HostStatus::Draining {
                        new_version: e.new_version.clone(),
                        deadline: e.deadline,
                    };
                }
            }
            Event::HostRemoved(e) => {
                self.admitted.remove(&e.host_id);
                if let Some(h) = self.hosts.get_mut(&e.host_id) {
                    h.status = HostStatus::Removed(e.reason);
                    h.sessions.clear();
                    h.groups.clear();
                }
            }
            Event::SessionProvisioned(e) => {
                let s = self
                    .sessions
                    .entry(e.session_id.clone())
                    .or_insert_with(|| SessionRecord::assigned(&e.host_id, time));
                s.app_id = e.app_id.clone();
                s.user_id = e.user_id.clone();
                s.group_id = e.group_id.clone();
                s.provisioned_at = Some(time);
                if let Some(g) = &e.group_id
                    && let Some(h) = self.hosts.get_mut(&s.host_id)
                    && h.sessions.contains(&e.session_id)
                {
                    *h.groups.entry(g.clone()).or_default() += 1;
                }
            }
            Event::SessionEnded(e) => {
                if let Some(s) = self.sessions.get_mut(&e.session_id) {
                    s.ended = Some((e.reason, time));
                    if let Some(state) = &e.saved_state {
                        self.saved_states.insert(
                            (s.user_id.clone(), s.app_id.clone()),
                            (e.session_id.clone(), state.clone()),
                        );
                    }
                }
            }
            Event::AppRegistered(e) => {
                self.releases.insert(
                    e.app_id.clone(),
                    Release {
                        version: e.version.clone(),
                        deadline: None,
                    },
                );
            }
            Event::VersionReleased(e) => {
                self.releases.insert(
                    e.app_id.clone(),
                    Release {
                        version: e.version.clone(),
                        deadline: e.deadline,
                    },
                );
            }
            Event::BufferTargetSet(e) => {
                self.buffer_targets
                    .insert((e.region.clone(), e.app_id.clone()), e.idle_hosts);
            }
            Event::DiscrepancyOpened(e) => {
                self.discrepancies.insert(
                    e.discrepancy_id.clone(),
                    DiscrepancyRecord {
                        host_id: e.host_id.clone(),
                        session_id: e.session_id.clone(),
                        kind: e.kind,
                        resolved: false,
                    },
                );
            }
            Event::DiscrepancyResolved(e) => {
                if let Some(d) = self.discrepancies.get_mut(&e.discrepancy_id) {
                    d.resolved = true;
                }
            }
            Event::TokenIssued(e) => {
                self.tokens.insert(
                    e.token_id.clone(),
                    OutstandingToken {
                        app_id: e.app_id.clone(),
                        user_id: e.user_id.clone(),
                        group_id: e.group_id.clone(),
                        expires_at: e.expires_at,
                    },
                );
            }
            Event::TokenRedeemed(e) => {
                self.tokens.remove(&e.token_id);
            }
            // Instances and their migrations are the compute layer's
            // (streamfleet_domain::fleet); this fleet is the streaming hosts'.
            Event::MigrationScheduled(_)
            | Event::MigrationTargetReady(_)
            | Event::VolumeSyncStarted(_)
            | Event::VolumeSyncRound(_)
            | Event::VolumeSynced(_)
            | Event::CustomerNotified(_)
            | Event::MigrationStarted(_)
            | Event::MigrationNetworkDetached(_)
            | Event::MigrationFinalSynced(_)
            | Event::MigrationSourceStopped(_)
            | Event::MigrationTargetLaunched(_)
            | Event::MigrationNetworkAttached(_)
            | Event::MigrationCompleted(_)
            | Event::MigrationFailed(_)
            | Event::MigrationRolledBack(_)
            | Event::MigrationCancelled(_)
            | Event::InstanceMoved(_)
            | Event::NodeFailed(_)
            | Event::FileSystemCreated(_)
            | Event::NodeServing(_)
            | Event::NodeUnresponsive(_)
            | Event::NodeAnswering(_)
            | Event::ReplacementChosen(_)
            | Event::NodeFenced(_)
            | Event::NetworkVolumeAttached(_)
            | Event::CheckpointRequested(_)
            | Event::CheckpointTaken(_)
            | Event::ReplacementLaunched(_)
            | Event::AddressReassigned(_)
            | Event::NodeRecovered(_)
            | Event::BlockReportReceived(_)
            | Event::RecoveryFailed(_)
            | Event::CipherSelected(_)
            | Event::HypervisorChosen(_)
            | Event::InstancePlaced(_)
            | Event::InstanceLaunched(_)
            | Event::InstanceStopped(_)
            | Event::InstanceStarted(_)
            | Event::InstanceRebooted(_)
            | Event::InstanceTerminated(_)
            | Event::VolumeAttached(_)
            | Event::VolumeDetached(_)
            | Event::NetworkAttached(_)
            | Event::NetworkDetached(_)
            | Event::SnapshotTaken(_)
            | Event::InstanceFailed(_)
            | Event::InstanceChangeFailed(_)
            | Event::ComputeHostRegistered(_) => {}
        }
    }

    /// Drops tokens that expired before `now` (they can no longer be redeemed).
    pub fn forget_expired_tokens(&mut self, now: DateTime<Utc>) {
        self.tokens.retain(|_, t| t.expires_at > now);
    }

    /// The version new sessions and hosts of `app_id` use, when one was released.
    pub fn current_version(&self, app_id: &str) -> Option<&str> {
        self.releases.get(app_id).map(|r| r.version.as_str())
    }

    /// What placement needs of every live host.
    pub fn slot_views(&self) -> Vec<HostSlotView> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.is_live())
            .map(|(id, h)| HostSlotView {
                host_id: id.clone(),
                region: h.region.clone(),
                app_id: h.app_id.clone(),
                version: h.version.clone(),
                capacity: h.capacity,
                sessions: h.sessions.len() as u32,
                accepting: h.status == HostStatus::Active,
                groups: h.groups.keys().cloned().collect(),
            })
            .collect()
    }

    /// Whether an unresolved discrepancy of `kind` is open for `session_id`.
    pub fn has_open_discrepancy(&self, session_id: &str, kind: DiscrepancyKind) -> bool {
        self.discrepancies
            .values()
            .any(|d| !d.resolved && d.session_id == session_id && d.kind == kind)
    }

    /// What a host's report disagrees with, checked against the fleet before the report is
    /// applied. A session counts as known from its slot assignment (which precedes its start on
    /// the host); a report sent before a session was provisioned or after it ended is not held
    /// against the host.
    pub fn check_report(&self, report: &HeartbeatReceived) -> Vec<Finding> {
        let mut found = Vec::new();
        let reported: BTreeSet<&str> = report
            .sessions
            .iter()
            .map(|b| b.session_id.as_str())
            .collect();
        for id in &reported {
            match self.sessions.get(*id) {
                None => found.push(Finding {
                    session_id: (*id).into(),
                    kind: DiscrepancyKind::UnknownSession,
                    detail: format!(
                        "host {} reports session {id}, which the log never recorded",
                        report.host_id
                    ),
                }),
                Some(s) if s.host_id != report.host_id => found.push(Finding {
                    session_id: (*id).into(),
                    kind: DiscrepancyKind::WrongHost,
                    detail: format!(
                        "host {} reports session {id}, which the log places on {}",
                        report.host_id, s.host_id
                    ),
                }),
                Some(SessionRecord {
                    ended: Some((reason, at)),
                    ..
                }) if *at < report.sent_at => found.push(Finding {
                    session_id: (*id).into(),
                    kind: DiscrepancyKind::EndedSessionReported,
                    detail: format!(
                        "host {} still reports session {id}, which ended ({}) at {at}",
                        report.host_id,
                        streamfleet_domain::session::reason_name(*reason)
                    ),
                }),
                Some(_) => {}
            }
        }
        if let Some(host) = self.hosts.get(&report.host_id) {
            for id in &host.sessions {
                let Some(s) = self.sessions.get(id) else {
                    continue;
                };
                let started_before = s.provisioned_at.is_some_and(|t| t < report.sent_at);
                if s.ended.is_none() && started_before && !reported.contains(id.as_str()) {
                    found.push(Finding {
                        session_id: id.clone(),
                        kind: DiscrepancyKind::MissingFromReport,
                        detail: format!(
                            "host {} did not report session {id}, which the log places there",
                            report.host_id
                        ),
                    });
                }
            }
        }
        found.retain(|f| !self.has_open_discrepancy(&f.session_id, f.kind));
        found
    }
}

/// One disagreement between a report and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The session.
    pub session_id: SessionId,
    /// What kind.
    pub kind: DiscrepancyKind,
    /// In words.
    pub detail: String,
}
