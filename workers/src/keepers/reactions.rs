//! What the keepers ask for, as plain functions of the fleet and the clock.
//!
//! Invariant: no I/O here. Each function reads a [`Fleet`] as folded from the log and returns
//! the [`Reaction`]s that close the gap between it and what it should be; each command's key
//! (from which its id derives) names what it reacts to, so the same gap seen twice yields the
//! same command and the node records it once.

use crate::fleet::Fleet;
use chrono::{DateTime, Utc};
use std::time::Duration;
use streamfleet_bus_schemas::ids::{AppId, HostId, RegionId};
use streamfleet_bus_schemas::payloads::{
    DrainHost, EndSession, HostRemovalReason, ReleaseSession, RemoveHost, SessionEndReason,
};
use streamfleet_bus_schemas::services::{StopSession, TerminationNotice};
use streamfleet_bus_schemas::{Command, subjects};
use streamfleet_domain::host::HostStatus;

/// The limits the keepers hold the fleet to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// How long without heartbeats makes a session or host lost.
    pub lost_after: Duration,
    /// How long a requested host may take to register, and an assigned slot to be provisioned.
    pub launch_timeout: Duration,
}

/// A message to a host agent whose answer does not matter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tell {
    /// `sf.host.<id>.<verb>`.
    pub subject: String,
    /// JSON.
    pub body: Vec<u8>,
}

impl Tell {
    fn new(subject: String, body: &impl serde::Serialize) -> Self {
        Tell {
            subject,
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }
}

/// One thing a keeper asks for.
// A handful live for one tick: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reaction {
    /// Send `command` with the id derived from `key`; once accepted, `then` (if any).
    Send {
        /// What the command reacts to, e.g. `lost/<session>`.
        key: String,
        /// The command.
        command: Command,
        /// Told to a host once the command is accepted.
        then: Option<Tell>,
    },
    /// Tell a host agent something.
    Tell(Tell),
    /// Request a new host for a (region, app) at `version` (none: the newest known).
    RequestHost {
        /// Region.
        region: RegionId,
        /// App.
        app_id: AppId,
        /// Version.
        version: Option<String>,
        /// Why, recorded.
        reason: String,
    },
    /// Ask a region's launchers again for a requested host.
    Launch {
        /// Region.
        region: RegionId,
        /// The requested host.
        host_id: HostId,
        /// App.
        app_id: AppId,
        /// Version.
        version: String,
    },
}

fn older_than(t: DateTime<Utc>, now: DateTime<Utc>, limit: Duration) -> bool {
    now.signed_duration_since(t)
        .to_std()
        .is_ok_and(|age| age > limit)
}

/// Sessions and hosts whose heartbeats stopped are declared lost (and the host told to stop a
/// lost session); hosts requested but never registered are given up.
pub(crate) fn liveness(fleet: &Fleet, now: DateTime<Utc>, limits: Limits) -> Vec<Reaction> {
    let mut out = Vec::new();
    for (session_id, s) in fleet.sessions.iter().filter(|(_, s)| s.ended.is_none()) {
        let Some(seen) = s.last_heartbeat.or(s.provisioned_at) else {
            continue;
        };
        if older_than(seen, now, limits.lost_after) {
            out.push(Reaction::Send {
                key: format!("lost/{session_id}"),
                command: Command::EndSession(EndSession {
                    session_id: session_id.clone(),
                    host_id: s.host_id.clone(),
                    reason: SessionEndReason::Lost,
                    saved_state: None,
                }),
                then: Some(Tell::new(
                    subjects::host(&s.host_id, "stop-session"),
                    &StopSession {
                        session_id: session_id.clone(),
                        reason: "declared lost: no heartbeats".into(),
                    },
                )),
            });
        }
    }
    for (host_id, h) in &fleet.hosts {
        let lost = match h.status {
            HostStatus::Active | HostStatus::Draining { .. } => {
                older_than(h.last_report.unwrap_or(h.since), now, limits.lost_after)
            }
            HostStatus::Requested => older_than(h.since, now, limits.launch_timeout),
            // Admitted hosts are identities waiting to be launched (the fleet keeps them in
            // `admitted`, never in `hosts`): nothing to lose.
            HostStatus::Admitted | HostStatus::Removed(_) => false,
        };
        if lost {
            out.push(Reaction::Send {
                key: format!("host-lost/{host_id}"),
                command: Command::RemoveHost(RemoveHost {
                    host_id: host_id.clone(),
                    reason: HostRemovalReason::Lost,
                }),
                then: None,
            });
        }
    }
    out
}

/// Slots of ended sessions are freed; slots assigned but never provisioned (a redemption that
/// died half-way) are freed after the launch timeout.
pub(crate) fn slots(fleet: &Fleet, now: DateTime<Utc>, limits: Limits) -> Vec<Reaction> {
    let mut out = Vec::new();
    for (host_id, h) in fleet.hosts.iter().filter(|(_, h)| h.is_live()) {
        for session_id in &h.sessions {
            let Some(s) = fleet.sessions.get(session_id) else {
                continue;
            };
            let abandoned =
                s.provisioned_at.is_none() && older_than(s.assigned_at, now, limits.launch_timeout);
            if s.ended.is_some() || abandoned {
                out.push(Reaction::Send {
                    key: format!("release/{session_id}/{host_id}"),
                    command: Command::ReleaseSession(ReleaseSession {
                        host_id: host_id.clone(),
                        session_id: session_id.clone(),
                    }),
                    then: None,
                });
            }
        }
    }
    out
}

/// Removing a host, and telling its agent to stop it once recorded.
fn remove(host_id: &str, reason: HostRemovalReason) -> Reaction {
    Reaction::Send {
        key: format!("remove/{host_id}"),
        command: Command::RemoveHost(RemoveHost {
            host_id: host_id.into(),
            reason,
        }),
        then: Some(Tell {
            subject: subjects::host(host_id, "terminate"),
            body: Vec::new(),
        }),
    }
}

/// Hosts of an outdated version drain (or, urgent, get a notice until the deadline), are
/// removed once empty, and are terminated with their sessions at an urgent deadline.
pub(crate) fn rollouts(fleet: &Fleet, now: DateTime<Utc>) -> Vec<Reaction> {
    let mut out = Vec::new();
    for (id, h) in fleet.hosts.iter().filter(|(_, h)| h.is_live()) {
        let Some(release) = fleet.releases.get(&h.app_id) else {
            continue;
        };
        if release.version == h.version {
            continue;
        }
        if !matches!(h.status, HostStatus::Draining { .. }) {
            out.push(Reaction::Send {
                key: format!("drain/{id}/{}", release.version),
                command: Command::DrainHost(DrainHost {
                    host_id: id.clone(),
                    new_version: release.version.clone(),
                    deadline: release.deadline,
                }),
                then: None,
            });
        }
        match release.deadline {
            Some(deadline) if !h.sessions.is_empty() && now < deadline => {
                out.push(Reaction::Tell(Tell::new(
                    subjects::host(id, "notice"),
                    &TerminationNotice {
                        deadline,
                        new_version: release.version.clone(),
                    },
                )));
            }
            Some(_) if !h.sessions.is_empty() => {
                for session_id in &h.sessions {
                    out.push(Reaction::Send {
                        key: format!("terminate/{session_id}"),
                        command: Command::EndSession(EndSession {
                            session_id: session_id.clone(),
                            host_id: id.clone(),
                            reason: SessionEndReason::Terminated,
                            saved_state: None,
                        }),
                        then: None,
                    });
                }
                out.push(remove(id, HostRemovalReason::Terminated));
            }
            _ if h.sessions.is_empty() => out.push(remove(id, HostRemovalReason::Outdated)),
            _ => {}
        }
    }
    out
}

/// Each (region, app) keeps its target of idle hosts at the current version: missing ones are
/// requested, extra ones removed; requested hosts not yet registered are asked for again.
pub(crate) fn buffers(fleet: &Fleet) -> Vec<Reaction> {
    let mut out = Vec::new();
    for ((region, app_id), target) in &fleet.buffer_targets {
        let version = fleet.current_version(app_id).map(str::to_string);
        let fits = |v: &str| version.as_deref().is_none_or(|cur| cur == v);
        let ours = |h: &&crate::fleet::HostRecord| &h.region == region && &h.app_id == app_id;
        let mut idle: Vec<&HostId> = fleet
            .hosts
            .iter()
            .filter(|(_, h)| ours(h) && fits(&h.version))
            .filter(|(_, h)| h.status == HostStatus::Active && h.sessions.is_empty())
            .map(|(id, _)| id)
            .collect();
        let pending: Vec<(&HostId, &String)> = fleet
            .hosts
            .iter()
            .filter(|(_, h)| ours(h) && h.status == HostStatus::Requested)
            .map(|(id, h)| (id, &h.version))
            .collect();
        let target = *target as usize;
        let missing = target.saturating_sub(idle.len() + pending.len());
        let extra = if idle.len() > target {
            idle.split_off(target)
        } else {
            Vec::new()
        };
        for _ in 0..missing {
            out.push(Reaction::RequestHost {
                region: region.clone(),
                app_id: app_id.clone(),
                version: version.clone(),
                reason: format!("buffer of idle {app_id} hosts in {region} below target"),
            });
        }
        for host_id in extra {
            out.push(remove(host_id, HostRemovalReason::IdleAboveBuffer));
        }
        for (host_id, version) in pending {
            out.push(Reaction::Launch {
                region: region.clone(),
                host_id: host_id.clone(),
                app_id: app_id.clone(),
                version: version.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use streamfleet_bus_schemas::Event;
    use streamfleet_bus_schemas::payloads::*;

    const LIMITS: Limits = Limits {
        lost_after: Duration::from_secs(30),
        launch_timeout: Duration::from_secs(60),
    };

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
            .single()
            .expect("a valid time")
            + chrono::Duration::seconds(secs)
    }

    /// A fleet folded from `(seconds, event)` as the workers fold the log.
    fn fleet(history: Vec<(i64, Event)>) -> Fleet {
        let mut fleet = Fleet::default();
        for (i, (secs, event)) in history.into_iter().enumerate() {
            fleet.apply(i as u64 + 1, at(secs), &event);
        }
        fleet
    }

    fn registered(host: &str, version: &str) -> Event {
        Event::HostRegistered(HostRegistered {
            host_id: host.into(),
            region: "eu".into(),
            app_id: "chess".into(),
            version: version.into(),
            capacity: 2,
            hardware: "4 vCPU".into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            control_tls: false,
        })
    }

    fn assigned(host: &str, session: &str) -> Event {
        Event::SessionAssigned(SessionAssigned {
            host_id: host.into(),
            session_id: session.into(),
        })
    }

    fn provisioned(host: &str, session: &str) -> Event {
        Event::SessionProvisioned(SessionProvisioned {
            session_id: session.into(),
            token_id: format!("t-{session}").into(),
            app_id: "chess".into(),
            user_id: "ada".into(),
            group_id: None,
            region: "eu".into(),
            host_id: host.into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            credential_hash: "00".repeat(32),
            placement_reason: "buffer host".into(),
            restored_from: None,
        })
    }

    fn beat(host: &str, secs: i64, sessions: &[&str]) -> Event {
        Event::HeartbeatReceived(HeartbeatReceived {
            host_id: host.into(),
            sent_at: at(secs),
            sessions: sessions
                .iter()
                .map(|s| SessionBeat {
                    session_id: (*s).into(),
                    stats: None,
                })
                .collect(),
        })
    }

    fn keys(reactions: &[Reaction]) -> Vec<String> {
        reactions
            .iter()
            .map(|r| match r {
                Reaction::Send { key, .. } => key.clone(),
                Reaction::Tell(t) => format!("tell {}", t.subject),
                Reaction::RequestHost { region, .. } => format!("request {region}"),
                Reaction::Launch { host_id, .. } => format!("launch {host_id}"),
            })
            .collect()
    }

    #[test]
    fn a_session_without_heartbeats_is_declared_lost_once_and_its_host_told_to_stop_it() {
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (1, assigned("h1", "s1")),
            (2, provisioned("h1", "s1")),
            (10, beat("h1", 10, &["s1"])),
            (50, beat("h1", 50, &[])),
        ]);
        // 40 s after the session's last beat, 0 s after the host's: the session only.
        let now = at(50);
        let asked = liveness(&f, now, LIMITS);
        assert_eq!(keys(&asked), ["lost/s1"]);
        let Reaction::Send { command, then, .. } = &asked[0] else {
            panic!("{asked:?}")
        };
        assert!(
            matches!(command, Command::EndSession(e) if e.reason == SessionEndReason::Lost && e.host_id == "h1")
        );
        let tell = then.as_ref().expect("the host is told");
        assert_eq!(tell.subject, "sf.host.h1.stop-session");
        // The same gap seen on the next tick asks for the same command (same key, same id).
        assert_eq!(liveness(&f, at(51), LIMITS), asked);
    }

    #[test]
    fn a_fresh_fleet_asks_for_nothing() {
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (1, assigned("h1", "s1")),
            (2, provisioned("h1", "s1")),
            (20, beat("h1", 20, &["s1"])),
        ]);
        let now = at(25);
        assert!(liveness(&f, now, LIMITS).is_empty());
        assert!(slots(&f, now, LIMITS).is_empty());
        assert!(rollouts(&f, now).is_empty());
        assert!(buffers(&f).is_empty());
    }

    #[test]
    fn a_silent_host_and_a_requested_host_that_never_came_are_removed() {
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (
                0,
                Event::HostRequested(HostRequested {
                    host_id: "h2".into(),
                    region: "eu".into(),
                    app_id: "chess".into(),
                    version: "1.0".into(),
                    reason: "buffer".into(),
                }),
            ),
        ]);
        assert!(liveness(&f, at(29), LIMITS).is_empty());
        assert_eq!(keys(&liveness(&f, at(31), LIMITS)), ["host-lost/h1"]);
        assert_eq!(
            keys(&liveness(&f, at(61), LIMITS)),
            ["host-lost/h1", "host-lost/h2"]
        );
    }

    #[test]
    fn slots_of_ended_and_abandoned_sessions_are_released() {
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (1, assigned("h1", "s1")),
            (2, provisioned("h1", "s1")),
            (
                3,
                Event::SessionEnded(SessionEnded {
                    session_id: "s1".into(),
                    host_id: "h1".into(),
                    reason: SessionEndReason::Ended,
                    saved_state: None,
                }),
            ),
            (4, assigned("h1", "s2")),
            (5, beat("h1", 5, &[])),
        ]);
        // s2 was assigned but never provisioned: released only after the launch timeout.
        assert_eq!(keys(&slots(&f, at(10), LIMITS)), ["release/s1/h1"]);
        assert_eq!(
            keys(&slots(&f, at(65), LIMITS)),
            ["release/s1/h1", "release/s2/h1"]
        );
    }

    fn released(version: &str, deadline: Option<i64>) -> Event {
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: version.into(),
            previous: Some("1.0".into()),
            urgent: deadline.is_some(),
            deadline: deadline.map(at),
        })
    }

    #[test]
    fn an_outdated_host_drains_and_is_removed_once_empty() {
        let busy = fleet(vec![
            (0, registered("h1", "1.0")),
            (1, assigned("h1", "s1")),
            (2, provisioned("h1", "s1")),
            (3, released("2.0", None)),
        ]);
        assert_eq!(keys(&rollouts(&busy, at(4))), ["drain/h1/2.0"]);
        let empty = fleet(vec![
            (0, registered("h1", "1.0")),
            (3, released("2.0", None)),
        ]);
        let asked = rollouts(&empty, at(4));
        assert_eq!(keys(&asked), ["drain/h1/2.0", "remove/h1"]);
        let Reaction::Send { command, then, .. } = &asked[1] else {
            panic!("{asked:?}")
        };
        assert!(
            matches!(command, Command::RemoveHost(r) if r.reason == HostRemovalReason::Outdated)
        );
        assert_eq!(
            then.as_ref().map(|t| t.subject.as_str()),
            Some("sf.host.h1.terminate")
        );
    }

    #[test]
    fn an_urgent_release_gives_notice_until_its_deadline_then_terminates_sessions_and_host() {
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (1, assigned("h1", "s1")),
            (2, provisioned("h1", "s1")),
            (3, released("2.0", Some(60))),
        ]);
        assert_eq!(
            keys(&rollouts(&f, at(30))),
            ["drain/h1/2.0", "tell sf.host.h1.notice"]
        );
        assert_eq!(
            keys(&rollouts(&f, at(61))),
            ["drain/h1/2.0", "terminate/s1", "remove/h1"]
        );
    }

    #[test]
    fn the_buffer_is_refilled_to_its_target_and_trimmed_above_it() {
        let target = |n| {
            Event::BufferTargetSet(BufferTargetSet {
                region: "eu".into(),
                app_id: "chess".into(),
                idle_hosts: n,
            })
        };
        let f = fleet(vec![(0, registered("h1", "1.0")), (1, target(3))]);
        assert_eq!(keys(&buffers(&f)), ["request eu", "request eu"]);
        let f = fleet(vec![
            (0, registered("h1", "1.0")),
            (0, registered("h2", "1.0")),
            (0, registered("h3", "1.0")),
            (1, target(1)),
        ]);
        assert_eq!(keys(&buffers(&f)), ["remove/h2", "remove/h3"]);
    }
}
