//! The keepers: every tick, compare the fleet with what it should be and send the commands
//! that close the gap.
//!
//! Invariant: each keeper is level-triggered and idempotent. It derives each command's id from
//! what it reacts to (`lost/<session>`, `release/<session>/<host>`, `drain/<host>/<version>`),
//! so the same gap seen twice, by two ticks or two worker processes, is closed once.

use crate::Shared;
use crate::services::{launch, request_host};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use streamfleet_bus_schemas::payloads::{
    DrainHost, EndSession, HostRemovalReason, ReleaseSession, RemoveHost, SessionEndReason,
};
use streamfleet_bus_schemas::services::{StopSession, TerminationNotice};
use streamfleet_bus_schemas::{Command, subjects};
use streamfleet_domain::host::HostStatus;

/// Runs every keeper each tick (half a heartbeat interval).
pub(crate) async fn run(shared: Arc<Shared>) {
    let tick = (shared.config.heartbeat_interval / 2).max(Duration::from_millis(50));
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Utc::now();
        shared
            .fleet
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .forget_expired_tokens(now);
        liveness(&shared, now).await;
        slots(&shared, now).await;
        rollouts(&shared, now).await;
        buffers(&shared).await;
    }
}

fn older_than(t: DateTime<Utc>, now: DateTime<Utc>, limit: Duration) -> bool {
    now.signed_duration_since(t)
        .to_std()
        .is_ok_and(|age| age > limit)
}

/// Sessions and hosts whose heartbeats stopped are declared lost; hosts requested but never
/// registered are given up.
async fn liveness(shared: &Shared, now: DateTime<Utc>) {
    let lost_after = shared.config.lost_after();
    let (lost_sessions, lost_hosts) = {
        let fleet = shared.fleet();
        let sessions: Vec<(String, String)> = fleet
            .sessions
            .iter()
            .filter(|(_, s)| s.ended.is_none())
            .filter_map(|(id, s)| {
                let seen = s.last_heartbeat.or(s.provisioned_at)?;
                older_than(seen, now, lost_after).then(|| (id.clone(), s.host_id.clone()))
            })
            .collect();
        let hosts: Vec<String> = fleet
            .hosts
            .iter()
            .filter(|(_, h)| match h.status {
                HostStatus::Active | HostStatus::Draining { .. } => {
                    older_than(h.last_report.unwrap_or(h.since), now, lost_after)
                }
                HostStatus::Requested => older_than(h.since, now, shared.config.launch_timeout),
                HostStatus::Removed(_) => false,
            })
            .map(|(id, _)| id.clone())
            .collect();
        (sessions, hosts)
    };
    for (session_id, host_id) in lost_sessions {
        let end = Command::EndSession(EndSession {
            session_id: session_id.clone(),
            host_id: host_id.clone(),
            reason: SessionEndReason::Lost,
            saved_state: None,
        });
        match shared.send_once(&format!("lost/{session_id}"), end).await {
            Ok(_) => {
                tracing::info!(session = %session_id, host = %host_id, "session lost: no heartbeat");
                let stop = StopSession {
                    session_id,
                    reason: "declared lost: no heartbeats".into(),
                };
                shared
                    .tell(
                        subjects::host(&host_id, "stop-session"),
                        serde_json::to_vec(&stop).unwrap_or_default(),
                    )
                    .await;
            }
            Err(refused) => {
                tracing::debug!(session = %session_id, %refused, "lost session not ended")
            }
        }
    }
    for host_id in lost_hosts {
        let remove = Command::RemoveHost(RemoveHost {
            host_id: host_id.clone(),
            reason: HostRemovalReason::Lost,
        });
        match shared
            .send_once(&format!("host-lost/{host_id}"), remove)
            .await
        {
            Ok(_) => tracing::info!(host = %host_id, "host lost: no heartbeat report"),
            Err(refused) => tracing::debug!(host = %host_id, %refused, "lost host not removed"),
        }
    }
}

/// Slots of ended sessions are freed; slots assigned but never provisioned (a redemption that
/// died half-way) are freed after the launch timeout.
async fn slots(shared: &Shared, now: DateTime<Utc>) {
    let stale: Vec<(String, String)> = {
        let fleet = shared.fleet();
        fleet
            .hosts
            .iter()
            .filter(|(_, h)| h.is_live())
            .flat_map(|(host_id, h)| {
                h.sessions.iter().filter_map(|sid| {
                    let s = fleet.sessions.get(sid)?;
                    let ended = s.ended.is_some();
                    let abandoned = s.provisioned_at.is_none()
                        && older_than(s.assigned_at, now, shared.config.launch_timeout);
                    (ended || abandoned).then(|| (host_id.clone(), sid.clone()))
                })
            })
            .collect()
    };
    for (host_id, session_id) in stale {
        let release = Command::ReleaseSession(ReleaseSession {
            host_id: host_id.clone(),
            session_id: session_id.clone(),
        });
        if let Err(refused) = shared
            .send_once(&format!("release/{session_id}/{host_id}"), release)
            .await
        {
            tracing::debug!(host = %host_id, session = %session_id, %refused, "slot not released");
        }
    }
}

/// Hosts of an outdated version drain (or, urgent, get a notice), are removed once empty, and
/// are terminated with their sessions at an urgent deadline.
async fn rollouts(shared: &Shared, now: DateTime<Utc>) {
    struct Outdated {
        host_id: String,
        version: String,
        deadline: Option<DateTime<Utc>>,
        draining: bool,
        sessions: Vec<String>,
    }
    let outdated: Vec<Outdated> = {
        let fleet = shared.fleet();
        fleet
            .hosts
            .iter()
            .filter(|(_, h)| h.is_live())
            .filter_map(|(id, h)| {
                let release = fleet.releases.get(&h.app_id)?;
                (release.version != h.version).then(|| Outdated {
                    host_id: id.clone(),
                    version: release.version.clone(),
                    deadline: release.deadline,
                    draining: matches!(h.status, HostStatus::Draining { .. }),
                    sessions: h.sessions.iter().cloned().collect(),
                })
            })
            .collect()
    };
    for host in outdated {
        let id = &host.host_id;
        if !host.draining {
            let drain = Command::DrainHost(DrainHost {
                host_id: id.clone(),
                new_version: host.version.clone(),
                deadline: host.deadline,
            });
            match shared
                .send_once(&format!("drain/{id}/{}", host.version), drain)
                .await
            {
                Ok(_) => {
                    tracing::info!(host = %id, version = %host.version, urgent = host.deadline.is_some(), "host draining")
                }
                Err(refused) => tracing::debug!(host = %id, %refused, "drain not recorded"),
            }
        }
        if let Some(deadline) = host.deadline {
            if !host.sessions.is_empty() && now < deadline {
                let notice = TerminationNotice {
                    deadline,
                    new_version: host.version.clone(),
                };
                shared
                    .tell(
                        subjects::host(id, "notice"),
                        serde_json::to_vec(&notice).unwrap_or_default(),
                    )
                    .await;
                continue;
            }
            if !host.sessions.is_empty() {
                for session_id in &host.sessions {
                    let end = Command::EndSession(EndSession {
                        session_id: session_id.clone(),
                        host_id: id.clone(),
                        reason: SessionEndReason::Terminated,
                        saved_state: None,
                    });
                    let _ = shared
                        .send_once(&format!("terminate/{session_id}"), end)
                        .await;
                }
                remove(shared, id, HostRemovalReason::Terminated).await;
                continue;
            }
        }
        if host.sessions.is_empty() {
            remove(shared, id, HostRemovalReason::Outdated).await;
        }
    }
}

/// Removes a host and tells its agent to stop it.
async fn remove(shared: &Shared, host_id: &str, reason: HostRemovalReason) {
    let command = Command::RemoveHost(RemoveHost {
        host_id: host_id.to_string(),
        reason,
    });
    match shared
        .send_once(&format!("remove/{host_id}"), command)
        .await
    {
        Ok(_) => {
            tracing::info!(host = %host_id, ?reason, "host removed");
            shared
                .tell(subjects::host(host_id, "terminate"), Vec::new())
                .await;
        }
        Err(refused) => tracing::debug!(host = %host_id, %refused, "host not removed"),
    }
}

/// Each (region, app) keeps its target of idle hosts at the current version: missing ones are
/// requested, extra ones removed; requested hosts not yet registered are asked for again.
async fn buffers(shared: &Shared) {
    struct Gap {
        region: String,
        app_id: String,
        version: Option<String>,
        missing: usize,
        extra: Vec<String>,
        pending: Vec<(String, String)>,
    }
    let gaps: Vec<Gap> = {
        let fleet = shared.fleet();
        fleet
            .buffer_targets
            .iter()
            .map(|((region, app_id), target)| {
                let version = fleet.current_version(app_id).map(str::to_string);
                let fits = |v: &str| version.as_deref().is_none_or(|cur| cur == v);
                let mut idle: Vec<String> = fleet
                    .hosts
                    .iter()
                    .filter(|(_, h)| &h.region == region && &h.app_id == app_id && fits(&h.version))
                    .filter(|(_, h)| h.status == HostStatus::Active && h.sessions.is_empty())
                    .map(|(id, _)| id.clone())
                    .collect();
                let pending: Vec<(String, String)> = fleet
                    .hosts
                    .iter()
                    .filter(|(_, h)| &h.region == region && &h.app_id == app_id)
                    .filter(|(_, h)| h.status == HostStatus::Requested)
                    .map(|(id, h)| (id.clone(), h.version.clone()))
                    .collect();
                let target = *target as usize;
                let have = idle.len() + pending.len();
                let extra = if idle.len() > target {
                    idle.split_off(target)
                } else {
                    Vec::new()
                };
                Gap {
                    region: region.clone(),
                    app_id: app_id.clone(),
                    version,
                    missing: target.saturating_sub(have),
                    extra,
                    pending,
                }
            })
            .collect()
    };
    for gap in gaps {
        for _ in 0..gap.missing {
            let reason = format!(
                "buffer of idle {} hosts in {} below target",
                gap.app_id, gap.region
            );
            request_host(
                shared,
                &gap.region,
                &gap.app_id,
                gap.version.as_deref(),
                &reason,
            )
            .await;
        }
        for host_id in &gap.extra {
            remove(shared, host_id, HostRemovalReason::IdleAboveBuffer).await;
        }
        for (host_id, version) in &gap.pending {
            launch(shared, &gap.region, host_id, &gap.app_id, version).await;
        }
    }
}
