//! The host decider: request, register, assign and release, heartbeats, drain and removal.

mod common;

use chrono::{DateTime, Duration, Utc};
use common::{
    HOST_KEY, admit, admitted, assign, beats, ctx, now, one, register, register_cmd, rejected,
    remove, run,
};
use std::collections::BTreeSet;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::host::{HostStatus, MAX_SESSIONS_PER_REPORT};
use streamfleet_domain::{Rejection, State, decide, evolve, stream_of};

fn request_host(id: &str) -> Command {
    Command::RequestHost(RequestHost {
        host_id: id.into(),
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        reason: "buffer refill".into(),
    })
}

fn release(host: &str, session: &str) -> Command {
    Command::ReleaseSession(ReleaseSession {
        host_id: host.into(),
        session_id: session.into(),
    })
}

fn drain(host: &str, deadline: Option<DateTime<Utc>>) -> Command {
    Command::DrainHost(DrainHost {
        host_id: host.into(),
        new_version: "1.1.0".into(),
        deadline,
    })
}

fn host_state(state: &State) -> &streamfleet_domain::host::HostState {
    match state {
        State::Host(h) => h,
        other => panic!("host state expected, got {other:?}"),
    }
}

#[test]
fn every_host_command_targets_the_host_stream() {
    for cmd in [
        admit("h1"),
        request_host("h1"),
        register("h1", 1),
        assign("h1", "s1"),
        release("h1", "s1"),
        beats("h1", &[]),
        drain("h1", None),
        remove("h1", HostRemovalReason::Lost),
    ] {
        assert_eq!(stream_of(&cmd), "host-h1", "{cmd:?}");
    }
}

#[test]
fn a_requested_host_registers_and_becomes_active() {
    let requested = run(&[admit("h1"), request_host("h1")]);
    let h = host_state(&requested);
    assert_eq!(h.status, HostStatus::Requested);
    assert_eq!(h.capacity, 0);
    assert_eq!(
        rejected(&request_host("h1"), &requested),
        Rejection::HostAlreadyExists {
            host_id: "h1".into()
        }
    );
    let event = one(decide(&register("h1", 4), &requested, &ctx()).expect("registered"));
    assert_eq!(
        event,
        Event::HostRegistered(HostRegistered {
            host_id: "h1".into(),
            region: "eu-west".into(),
            app_id: "chess".into(),
            version: "1.0.0".into(),
            capacity: 4,
            hardware: "8 vCPU, 1 GPU".into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            control_tls: false,
        })
    );
    let state = evolve(requested, &event);
    let h = host_state(&state);
    assert_eq!(h.status, HostStatus::Active);
    assert_eq!(h.capacity, 4);
    assert!(h.sessions.is_empty());
}

#[test]
fn only_an_admitted_host_registers_or_is_asked_of_the_cloud_and_only_in_its_region() {
    let unknown = Rejection::HostNotAdmitted {
        host_id: "h1".into(),
    };
    assert_eq!(rejected(&register("h1", 2), &State::Empty), unknown);
    assert_eq!(rejected(&request_host("h1"), &State::Empty), unknown);
    let admitted = admitted();
    assert_eq!(host_state(&admitted).status, HostStatus::Admitted);
    let mut elsewhere = register_cmd("h1", 2);
    elsewhere.region = "us-east".into();
    assert_eq!(
        rejected(&Command::RegisterHost(elsewhere), &admitted),
        Rejection::HostRegionMismatch {
            host_id: "h1".into(),
            admitted: "eu-west".into(),
            claimed: "us-east".into(),
        }
    );
    // An admitted host is not registered: it takes no sessions, reports nothing yet.
    assert_eq!(
        rejected(&assign("h1", "s1"), &admitted).rule(),
        "host_not_registered"
    );
    assert_eq!(
        rejected(&admit("h1"), &admitted).rule(),
        "host_already_exists"
    );
}

#[test]
fn admission_takes_a_subject_safe_id_and_a_public_user_key() {
    for (id, key, field) in [
        ("h.1", HOST_KEY, "host_id"),
        ("h>", HOST_KEY, "host_id"),
        ("", HOST_KEY, "host_id"),
        (
            "h1",
            "SUAIISJAYRBQXNHS52D4CCHL2NESFDJ4ALCC4GNKTMLQILPWXNYFOFZZ",
            "public_key",
        ),
        ("h1", "U123", "public_key"),
    ] {
        let cmd = Command::AdmitHost(AdmitHost {
            host_id: id.into(),
            region: "eu-west".into(),
            public_key: key.into(),
        });
        let r = rejected(&cmd, &State::Empty);
        assert!(
            matches!(r, Rejection::InvalidField { field: f, .. } if f == field),
            "{id} {key}: {r:?}"
        );
    }
}

#[test]
fn a_host_registers_without_a_request_and_again_when_it_restarts_with_its_slots_empty() {
    let state = run(&[admit("h1"), register("h1", 2), assign("h1", "s1")]);
    assert_eq!(host_state(&state).status, HostStatus::Active);
    let again = one(decide(&register("h1", 3), &state, &ctx()).expect("a restarted host"));
    let restarted = evolve(state.clone(), &again);
    assert_eq!(host_state(&restarted).status, HostStatus::Active);
    assert_eq!(host_state(&restarted).capacity, 3);
    assert!(
        host_state(&restarted).sessions.is_empty(),
        "what it held is gone"
    );
    assert_eq!(
        rejected(&request_host("h1"), &state).rule(),
        "host_already_exists"
    );
}

#[test]
fn registration_checks_capacity_port_and_version() {
    for capacity in [0, 1025] {
        let r = rejected(&register("h1", capacity), &admitted());
        assert!(
            matches!(
                r,
                Rejection::InvalidField {
                    field: "capacity",
                    ..
                }
            ),
            "{capacity}: {r:?}"
        );
    }
    assert!(decide(&register("h1", 1024), &admitted(), &ctx()).is_ok());
    let mut c = register_cmd("h1", 1);
    c.control_port = 0;
    let r = rejected(&Command::RegisterHost(c), &admitted());
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "control_port",
                ..
            }
        ),
        "{r:?}"
    );
    let mut c = register_cmd("h1", 1);
    c.version = "latest".into();
    let r = rejected(&Command::RegisterHost(c), &admitted());
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "version",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn assigning_needs_a_registered_host() {
    assert_eq!(
        rejected(&assign("h1", "s1"), &State::Empty),
        Rejection::HostNotRegistered {
            host_id: "h1".into()
        }
    );
    assert_eq!(
        rejected(
            &assign("h1", "s1"),
            &run(&[admit("h1"), request_host("h1")])
        ),
        Rejection::HostNotRegistered {
            host_id: "h1".into()
        }
    );
}

#[test]
fn assigning_fills_the_host_up_to_its_capacity() {
    let mut state = run(&[admit("h1"), register("h1", 2)]);
    for s in ["s1", "s2"] {
        let event = one(decide(&assign("h1", s), &state, &ctx()).expect("slot free"));
        assert_eq!(
            event,
            Event::SessionAssigned(SessionAssigned {
                host_id: "h1".into(),
                session_id: s.into()
            })
        );
        state = evolve(state, &event);
    }
    assert_eq!(
        host_state(&state).sessions,
        BTreeSet::from(["s1".into(), "s2".into()])
    );
    assert_eq!(
        rejected(&assign("h1", "s3"), &state),
        Rejection::HostFull {
            host_id: "h1".into(),
            capacity: 2
        }
    );
    assert_eq!(
        rejected(&assign("h1", "s1"), &state),
        Rejection::SessionAlreadyAssigned {
            session_id: "s1".into(),
            host_id: "h1".into()
        }
    );
}

#[test]
fn a_draining_host_takes_no_new_session() {
    let state = run(&[admit("h1"), register("h1", 2), drain("h1", None)]);
    assert!(matches!(
        host_state(&state).status,
        HostStatus::Draining { deadline: None, .. }
    ));
    assert_eq!(
        rejected(&assign("h1", "s1"), &state),
        Rejection::HostNotAccepting {
            host_id: "h1".into(),
            status: "draining"
        }
    );
}

#[test]
fn a_host_takes_only_sessions_of_its_app() {
    let state = run(&[admit("h1"), register("h1", 2)]);
    let cmd = Command::AssignSession(AssignSession {
        host_id: "h1".into(),
        session_id: "s1".into(),
        app_id: "go".into(),
    });
    assert_eq!(
        rejected(&cmd, &state),
        Rejection::HostRunsOtherApp {
            host_id: "h1".into(),
            app_id: "chess".into()
        }
    );
}

#[test]
fn releasing_frees_a_slot() {
    let full = run(&[admit("h1"), register("h1", 1), assign("h1", "s1")]);
    assert_eq!(rejected(&assign("h1", "s2"), &full).rule(), "host_full");
    let event = one(decide(&release("h1", "s1"), &full, &ctx()).expect("released"));
    assert_eq!(
        event,
        Event::SessionReleased(SessionReleased {
            host_id: "h1".into(),
            session_id: "s1".into()
        })
    );
    let freed = evolve(full, &event);
    assert!(host_state(&freed).sessions.is_empty());
    assert!(decide(&assign("h1", "s2"), &freed, &ctx()).is_ok());
}

#[test]
fn releasing_a_session_not_on_the_host_is_refused() {
    let state = run(&[admit("h1"), register("h1", 2), assign("h1", "s1")]);
    assert_eq!(
        rejected(&release("h1", "s9"), &state),
        Rejection::SessionNotOnHost {
            session_id: "s9".into(),
            host_id: "h1".into()
        }
    );
    assert_eq!(
        rejected(&release("h1", "s1"), &State::Empty).rule(),
        "host_not_registered"
    );
}

#[test]
fn a_draining_host_still_releases_sessions() {
    let state = run(&[
        admit("h1"),
        register("h1", 2),
        assign("h1", "s1"),
        drain("h1", None),
    ]);
    assert!(decide(&release("h1", "s1"), &state, &ctx()).is_ok());
}

#[test]
fn heartbeats_need_a_registered_host() {
    assert_eq!(
        rejected(&beats("h1", &["s1"]), &State::Empty),
        Rejection::HostNotRegistered {
            host_id: "h1".into()
        }
    );
    assert_eq!(
        rejected(&beats("h1", &[]), &run(&[admit("h1"), request_host("h1")])).rule(),
        "host_not_registered"
    );
}

#[test]
fn heartbeats_are_recorded_as_reported_unknown_sessions_included() {
    let state = run(&[admit("h1"), register("h1", 2), assign("h1", "s1")]);
    let cmd = Command::RecordHeartbeats(RecordHeartbeats {
        host_id: "h1".into(),
        sent_at: now() - Duration::seconds(1),
        sessions: vec![
            SessionBeat {
                session_id: "s1".into(),
                stats: Some(StreamStats {
                    bitrate_kbps: 8000,
                    fps: 60,
                    rtt_ms: 20,
                    loss_permille: 1,
                    keyframes: 3,
                }),
            },
            SessionBeat {
                session_id: "ghost".into(),
                stats: None,
            },
        ],
    });
    let Command::RecordHeartbeats(c) = &cmd else {
        unreachable!()
    };
    let event = one(decide(&cmd, &state, &ctx()).expect("recorded"));
    assert_eq!(
        event,
        Event::HeartbeatReceived(HeartbeatReceived {
            host_id: "h1".into(),
            sent_at: now() - Duration::seconds(1),
            sessions: c.sessions.clone(),
        })
    );
    // A report changes no slot.
    let after = evolve(state.clone(), &event);
    assert_eq!(after, state);
    // An idle host reports an empty list.
    assert!(decide(&beats("h1", &[]), &state, &ctx()).is_ok());
}

#[test]
fn a_session_reported_twice_in_one_report_is_refused() {
    let state = run(&[admit("h1"), register("h1", 2)]);
    let r = rejected(&beats("h1", &["s1", "s2", "s1"]), &state);
    assert!(
        matches!(&r, Rejection::InvalidField { field: "sessions", detail } if detail.contains("s1")),
        "{r:?}"
    );
}

#[test]
fn a_report_with_too_many_sessions_is_refused() {
    let state = run(&[admit("h1"), register("h1", 2)]);
    let names: Vec<String> = (0..=MAX_SESSIONS_PER_REPORT)
        .map(|i| format!("s{i}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let r = rejected(&beats("h1", &refs), &state);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "sessions",
                ..
            }
        ),
        "{r:?}"
    );
    assert!(
        decide(
            &beats("h1", &refs[..MAX_SESSIONS_PER_REPORT]),
            &state,
            &ctx()
        )
        .is_ok()
    );
}

#[test]
fn a_draining_host_may_be_made_urgent_once() {
    let deadline = now() + Duration::hours(1);
    let draining = run(&[admit("h1"), register("h1", 2), drain("h1", None)]);
    assert_eq!(
        rejected(&drain("h1", None), &draining),
        Rejection::HostNotAccepting {
            host_id: "h1".into(),
            status: "draining"
        }
    );
    let event = one(decide(&drain("h1", Some(deadline)), &draining, &ctx()).expect("urgent"));
    assert_eq!(
        event,
        Event::HostDraining(HostDraining {
            host_id: "h1".into(),
            new_version: "1.1.0".into(),
            deadline: Some(deadline),
        })
    );
    let urgent = evolve(draining, &event);
    assert_eq!(
        host_state(&urgent).status,
        HostStatus::Draining {
            new_version: "1.1.0".into(),
            deadline: Some(deadline)
        }
    );
    assert_eq!(
        rejected(&drain("h1", Some(deadline)), &urgent).rule(),
        "host_not_accepting"
    );
    assert_eq!(
        rejected(&drain("h1", None), &urgent).rule(),
        "host_not_accepting"
    );
}

#[test]
fn an_active_host_may_be_drained_urgently_at_once() {
    let deadline = now() + Duration::minutes(5);
    let state = run(&[admit("h1"), register("h1", 2), drain("h1", Some(deadline))]);
    assert!(matches!(
        host_state(&state).status,
        HostStatus::Draining { deadline: Some(d), .. } if d == deadline
    ));
}

#[test]
fn draining_needs_a_registered_host_and_a_version() {
    assert_eq!(
        rejected(&drain("h1", None), &State::Empty).rule(),
        "host_not_registered"
    );
    let cmd = Command::DrainHost(DrainHost {
        host_id: "h1".into(),
        new_version: "1.x".into(),
        deadline: None,
    });
    let r = rejected(&cmd, &run(&[admit("h1"), register("h1", 1)]));
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "version",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn an_idle_host_is_removed() {
    for reason in [
        HostRemovalReason::IdleAboveBuffer,
        HostRemovalReason::Outdated,
        HostRemovalReason::Terminated,
        HostRemovalReason::Lost,
    ] {
        let state = run(&[
            admit("h1"),
            register("h1", 2),
            assign("h1", "s1"),
            release("h1", "s1"),
        ]);
        let event = one(decide(&remove("h1", reason), &state, &ctx()).expect("removed"));
        assert_eq!(
            event,
            Event::HostRemoved(HostRemoved {
                host_id: "h1".into(),
                reason,
                sessions: vec![],
            })
        );
        assert_eq!(
            host_state(&evolve(state, &event)).status,
            HostStatus::Removed(reason)
        );
    }
}

#[test]
fn a_busy_host_is_not_removed_as_idle_or_outdated() {
    let state = run(&[
        admit("h1"),
        register("h1", 3),
        assign("h1", "s1"),
        assign("h1", "s2"),
        drain("h1", None),
    ]);
    for reason in [
        HostRemovalReason::IdleAboveBuffer,
        HostRemovalReason::Outdated,
    ] {
        assert_eq!(
            rejected(&remove("h1", reason), &state),
            Rejection::HostBusy {
                host_id: "h1".into(),
                sessions: 2
            },
            "{reason:?}"
        );
    }
}

#[test]
fn a_busy_host_terminated_or_lost_is_removed_with_its_sessions() {
    let state = run(&[
        admit("h1"),
        register("h1", 3),
        assign("h1", "s2"),
        assign("h1", "s1"),
    ]);
    for reason in [HostRemovalReason::Terminated, HostRemovalReason::Lost] {
        let event = one(decide(&remove("h1", reason), &state, &ctx()).expect("removed"));
        assert_eq!(
            event,
            Event::HostRemoved(HostRemoved {
                host_id: "h1".into(),
                reason,
                sessions: vec!["s1".into(), "s2".into()],
            })
        );
        let removed = evolve(state.clone(), &event);
        let h = host_state(&removed);
        assert_eq!(h.status, HostStatus::Removed(reason));
        assert!(h.sessions.is_empty());
    }
}

#[test]
fn removing_an_unknown_host_is_refused() {
    assert_eq!(
        rejected(&remove("h1", HostRemovalReason::Lost), &State::Empty),
        Rejection::HostNotRegistered {
            host_id: "h1".into()
        }
    );
}

#[test]
fn a_removed_host_takes_nothing_more() {
    let removed = run(&[
        admit("h1"),
        register("h1", 2),
        assign("h1", "s1"),
        remove("h1", HostRemovalReason::Terminated),
    ]);
    let gone = Rejection::HostRemoved {
        host_id: "h1".into(),
    };
    for cmd in [
        assign("h1", "s2"),
        beats("h1", &[]),
        beats("h1", &["s1"]),
        drain("h1", None),
        drain("h1", Some(now() + Duration::hours(1))),
        remove("h1", HostRemovalReason::Lost),
        remove("h1", HostRemovalReason::IdleAboveBuffer),
        release("h1", "s1"),
    ] {
        assert_eq!(rejected(&cmd, &removed), gone, "{cmd:?}");
    }
    // The same machine, back with its own key, registers again; a revoked one never does.
    assert!(decide(&register("h1", 2), &removed, &ctx()).is_ok());
    let revoked = run(&[
        admit("h1"),
        register("h1", 2),
        remove("h1", HostRemovalReason::Revoked),
    ]);
    assert_eq!(rejected(&register("h1", 2), &revoked), gone);
    assert_eq!(
        rejected(&request_host("h1"), &removed).rule(),
        "host_already_exists"
    );
}
