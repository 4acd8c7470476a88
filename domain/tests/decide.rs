//! The deciders, tested with plain values: a fixed clock, commands in, events or a rejection out.

use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeSet;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::host::{HostStatus, MAX_SESSIONS_PER_REPORT};
use streamfleet_domain::session::MAX_SAVED_STATE_BYTES;
use streamfleet_domain::{Context, Rejection, State, decide, evolve, stream_of};

// ---- helpers ----

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("valid time")
}

fn ctx() -> Context {
    Context { now: now() }
}

fn ctx_at(seconds_later: i64) -> Context {
    Context {
        now: now() + Duration::seconds(seconds_later),
    }
}

fn fold(history: &[Event]) -> State {
    history.iter().fold(State::default(), evolve)
}

/// Decides each command on the state so far and folds what it records; panics on a rejection.
fn run(commands: &[Command]) -> State {
    commands.iter().fold(State::Empty, |state, cmd| {
        let events =
            decide(cmd, &state, &ctx()).unwrap_or_else(|r| panic!("{cmd:?} rejected: {r}"));
        events.iter().fold(state, evolve)
    })
}

fn rejected(cmd: &Command, state: &State) -> Rejection {
    match decide(cmd, state, &ctx()) {
        Ok(events) => panic!("{cmd:?} accepted: {events:?}"),
        Err(r) => r,
    }
}

fn one(events: Vec<Event>) -> Event {
    assert_eq!(events.len(), 1, "one event expected: {events:?}");
    events.into_iter().next().expect("one event")
}

// ---- tokens ----

fn issue_cmd(ip: Option<&str>) -> IssueToken {
    IssueToken {
        token_id: "t1".into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        client_ip: ip.map(Into::into),
        group_id: Some("g1".into()),
        ttl_seconds: 60,
        token_hash: "AB".repeat(32),
    }
}

fn issue(ip: Option<&str>) -> Command {
    Command::IssueToken(issue_cmd(ip))
}

fn redeem_cmd(token_hash: &str, ip: &str, session: &str) -> RedeemToken {
    RedeemToken {
        token_id: "t1".into(),
        token_hash: token_hash.into(),
        client_ip: ip.into(),
        session_id: session.into(),
        region: "eu-west".into(),
        route_reason: "measured latency 12 ms".into(),
    }
}

fn redeem(token_hash: &str, ip: &str, session: &str) -> Command {
    Command::RedeemToken(redeem_cmd(token_hash, ip, session))
}

#[test]
fn token_is_issued_with_lowercased_hash_and_expiry_ttl_after_now() {
    let cmd = issue(Some("203.0.113.9"));
    assert_eq!(stream_of(&cmd), "token-t1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("issued"));
    assert_eq!(
        event,
        Event::TokenIssued(TokenIssued {
            token_id: "t1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            client_ip: Some("203.0.113.9".into()),
            group_id: Some("g1".into()),
            token_hash: "ab".repeat(32),
            expires_at: now() + Duration::seconds(60),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::TokenAlreadyIssued {
            token_id: "t1".into()
        }
    );
}

#[test]
fn token_ttl_must_be_within_range() {
    for ttl in [0, 3601, u32::MAX] {
        let mut c = issue_cmd(None);
        c.ttl_seconds = ttl;
        assert_eq!(
            rejected(&Command::IssueToken(c), &State::Empty),
            Rejection::TtlOutOfRange {
                ttl_seconds: ttl,
                min: 1,
                max: 3600
            }
        );
    }
    for ttl in [1, 3600] {
        let mut c = issue_cmd(None);
        c.ttl_seconds = ttl;
        let Event::TokenIssued(e) =
            one(decide(&Command::IssueToken(c), &State::Empty, &ctx()).expect("in range"))
        else {
            panic!("TokenIssued expected")
        };
        assert_eq!(e.expires_at, now() + Duration::seconds(i64::from(ttl)));
    }
}

#[test]
fn token_hash_must_be_64_hex_digits() {
    for bad in [
        "secret".to_string(),
        "a".repeat(63),
        "a".repeat(65),
        "g".repeat(64),
        String::new(),
    ] {
        let mut c = issue_cmd(None);
        c.token_hash = bad.clone();
        assert_eq!(
            rejected(&Command::IssueToken(c), &State::Empty),
            Rejection::InvalidField {
                field: "token_hash",
                detail: "must be 64 hex digits".into()
            },
            "hash {bad:?}"
        );
    }
}

#[test]
fn token_needs_app_and_user() {
    let mut c = issue_cmd(None);
    c.user_id = " ".into();
    let r = rejected(&Command::IssueToken(c), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "user_id",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn redeeming_an_unknown_token_is_refused() {
    assert_eq!(
        rejected(
            &redeem(&"ab".repeat(32), "203.0.113.9", "s1"),
            &State::Empty
        ),
        Rejection::TokenUnknown {
            token_id: "t1".into()
        }
    );
}

#[test]
fn redeeming_records_the_token_facts_and_a_second_redeem_names_the_session() {
    let state = run(&[issue(None)]);
    // The presented hash is compared case-insensitively.
    let cmd = redeem(&"AB".repeat(32), "203.0.113.9", "s1");
    assert_eq!(stream_of(&cmd), "token-t1");
    let event = one(decide(&cmd, &state, &ctx()).expect("redeemed"));
    assert_eq!(
        event,
        Event::TokenRedeemed(TokenRedeemed {
            token_id: "t1".into(),
            session_id: "s1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            group_id: Some("g1".into()),
            client_ip: "203.0.113.9".into(),
            region: "eu-west".into(),
            route_reason: "measured latency 12 ms".into(),
        })
    );
    let state = fold(
        &[
            decide(&issue(None), &State::Empty, &ctx()).unwrap(),
            vec![event],
        ]
        .concat(),
    );
    assert_eq!(
        rejected(&redeem(&"ab".repeat(32), "203.0.113.9", "s2"), &state),
        Rejection::TokenAlreadyRedeemed {
            token_id: "t1".into(),
            session_id: "s1".into()
        }
    );
}

#[test]
fn a_forged_token_is_refused_before_already_used() {
    let state = run(&[issue(None), redeem(&"ab".repeat(32), "203.0.113.9", "s1")]);
    assert_eq!(
        rejected(&redeem(&"cd".repeat(32), "203.0.113.9", "s2"), &state),
        Rejection::TokenForged {
            token_id: "t1".into()
        }
    );
    // And forged also on a fresh token.
    assert_eq!(
        rejected(
            &redeem(&"cd".repeat(32), "203.0.113.9", "s1"),
            &run(&[issue(None)])
        )
        .rule(),
        "token_forged"
    );
}

#[test]
fn a_token_expires_at_exactly_expires_at() {
    let state = run(&[issue(None)]);
    let cmd = redeem(&"ab".repeat(32), "203.0.113.9", "s1");
    assert!(decide(&cmd, &state, &ctx_at(59)).is_ok());
    for late in [60, 61, 86_400] {
        assert_eq!(
            decide(&cmd, &state, &ctx_at(late)),
            Err(Rejection::TokenExpired {
                token_id: "t1".into(),
                expired_at: now() + Duration::seconds(60)
            }),
            "{late}s after issue"
        );
    }
}

#[test]
fn a_bound_token_is_redeemed_only_from_its_ip() {
    let state = run(&[issue(Some("203.0.113.9"))]);
    assert_eq!(
        rejected(&redeem(&"ab".repeat(32), "198.51.100.1", "s1"), &state),
        Rejection::ClientIpMismatch {
            bound: "203.0.113.9".into(),
            presented: "198.51.100.1".into()
        }
    );
    assert!(
        decide(
            &redeem(&"ab".repeat(32), "203.0.113.9", "s1"),
            &state,
            &ctx()
        )
        .is_ok()
    );
}

#[test]
fn an_unbound_token_is_redeemed_from_any_ip() {
    let state = run(&[issue(None)]);
    for ip in ["203.0.113.9", "198.51.100.1", "2001:db8::1"] {
        let Event::TokenRedeemed(e) =
            one(decide(&redeem(&"ab".repeat(32), ip, "s1"), &state, &ctx()).expect("redeemed"))
        else {
            panic!("TokenRedeemed expected")
        };
        assert_eq!(e.client_ip, ip);
    }
}

#[test]
fn redeeming_needs_a_session_id() {
    let state = run(&[issue(None)]);
    let r = rejected(&redeem(&"ab".repeat(32), "203.0.113.9", ""), &state);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "session_id",
                ..
            }
        ),
        "{r:?}"
    );
}

// ---- hosts ----

fn request_host(id: &str) -> Command {
    Command::RequestHost(RequestHost {
        host_id: id.into(),
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        reason: "buffer refill".into(),
    })
}

fn register_cmd(id: &str, capacity: u32) -> RegisterHost {
    RegisterHost {
        host_id: id.into(),
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        capacity,
        hardware: "8 vCPU, 1 GPU".into(),
        address: "10.0.0.1".into(),
        control_port: 7000,
    }
}

fn register(id: &str, capacity: u32) -> Command {
    Command::RegisterHost(register_cmd(id, capacity))
}

fn assign(host: &str, session: &str) -> Command {
    Command::AssignSession(AssignSession {
        host_id: host.into(),
        session_id: session.into(),
        app_id: "chess".into(),
    })
}

fn release(host: &str, session: &str) -> Command {
    Command::ReleaseSession(ReleaseSession {
        host_id: host.into(),
        session_id: session.into(),
    })
}

fn beats(host: &str, sessions: &[&str]) -> Command {
    Command::RecordHeartbeats(RecordHeartbeats {
        host_id: host.into(),
        sent_at: now(),
        sessions: sessions
            .iter()
            .map(|s| SessionBeat {
                session_id: (*s).into(),
                stats: None,
            })
            .collect(),
    })
}

fn drain(host: &str, deadline: Option<DateTime<Utc>>) -> Command {
    Command::DrainHost(DrainHost {
        host_id: host.into(),
        new_version: "1.1.0".into(),
        deadline,
    })
}

fn remove(host: &str, reason: HostRemovalReason) -> Command {
    Command::RemoveHost(RemoveHost {
        host_id: host.into(),
        reason,
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
    let requested = run(&[request_host("h1")]);
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
        })
    );
    let state = evolve(requested, &event);
    let h = host_state(&state);
    assert_eq!(h.status, HostStatus::Active);
    assert_eq!(h.capacity, 4);
    assert!(h.sessions.is_empty());
}

#[test]
fn a_host_registers_without_a_request_but_only_once() {
    let state = run(&[register("h1", 2)]);
    assert_eq!(host_state(&state).status, HostStatus::Active);
    assert_eq!(
        rejected(&register("h1", 2), &state),
        Rejection::HostAlreadyExists {
            host_id: "h1".into()
        }
    );
    assert_eq!(
        rejected(&request_host("h1"), &state).rule(),
        "host_already_exists"
    );
}

#[test]
fn registration_checks_capacity_port_and_version() {
    for capacity in [0, 1025] {
        let r = rejected(&register("h1", capacity), &State::Empty);
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
    assert!(decide(&register("h1", 1024), &State::Empty, &ctx()).is_ok());
    let mut c = register_cmd("h1", 1);
    c.control_port = 0;
    let r = rejected(&Command::RegisterHost(c), &State::Empty);
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
    let r = rejected(&Command::RegisterHost(c), &State::Empty);
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
        rejected(&assign("h1", "s1"), &run(&[request_host("h1")])),
        Rejection::HostNotRegistered {
            host_id: "h1".into()
        }
    );
}

#[test]
fn assigning_fills_the_host_up_to_its_capacity() {
    let mut state = run(&[register("h1", 2)]);
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
        BTreeSet::from(["s1".to_string(), "s2".to_string()])
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
    let state = run(&[register("h1", 2), drain("h1", None)]);
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
    let state = run(&[register("h1", 2)]);
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
    let full = run(&[register("h1", 1), assign("h1", "s1")]);
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
    let state = run(&[register("h1", 2), assign("h1", "s1")]);
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
    let state = run(&[register("h1", 2), assign("h1", "s1"), drain("h1", None)]);
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
        rejected(&beats("h1", &[]), &run(&[request_host("h1")])).rule(),
        "host_not_registered"
    );
}

#[test]
fn heartbeats_are_recorded_as_reported_unknown_sessions_included() {
    let state = run(&[register("h1", 2), assign("h1", "s1")]);
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
    let state = run(&[register("h1", 2)]);
    let r = rejected(&beats("h1", &["s1", "s2", "s1"]), &state);
    assert!(
        matches!(&r, Rejection::InvalidField { field: "sessions", detail } if detail.contains("s1")),
        "{r:?}"
    );
}

#[test]
fn a_report_with_too_many_sessions_is_refused() {
    let state = run(&[register("h1", 2)]);
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
    let draining = run(&[register("h1", 2), drain("h1", None)]);
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
    let state = run(&[register("h1", 2), drain("h1", Some(deadline))]);
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
    let r = rejected(&cmd, &run(&[register("h1", 1)]));
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
        let state = run(&[register("h1", 2), assign("h1", "s1"), release("h1", "s1")]);
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
    let state = run(&[register("h1", 3), assign("h1", "s2"), assign("h1", "s1")]);
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
    // A removed host's id is never reused.
    assert_eq!(
        rejected(&register("h1", 2), &removed).rule(),
        "host_already_exists"
    );
    assert_eq!(
        rejected(&request_host("h1"), &removed).rule(),
        "host_already_exists"
    );
}

// ---- sessions ----

fn provision_cmd(session: &str, host: &str) -> ProvisionSession {
    ProvisionSession {
        session_id: session.into(),
        token_id: "t1".into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        group_id: Some("g1".into()),
        region: "eu-west".into(),
        host_id: host.into(),
        address: "10.0.0.1".into(),
        control_port: 7000,
        credential_hash: "CD".repeat(32),
        placement_reason: "buffer host; nearest region".into(),
        restored_from: Some("s0".into()),
    }
}

fn provision(session: &str, host: &str) -> Command {
    Command::ProvisionSession(provision_cmd(session, host))
}

fn end(session: &str, host: &str, reason: SessionEndReason, saved: Option<String>) -> Command {
    Command::EndSession(EndSession {
        session_id: session.into(),
        host_id: host.into(),
        reason,
        saved_state: saved,
    })
}

#[test]
fn a_session_is_provisioned_once() {
    let cmd = provision("s1", "h1");
    assert_eq!(stream_of(&cmd), "session-s1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("provisioned"));
    assert_eq!(
        event,
        Event::SessionProvisioned(SessionProvisioned {
            session_id: "s1".into(),
            token_id: "t1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            group_id: Some("g1".into()),
            region: "eu-west".into(),
            host_id: "h1".into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            credential_hash: "cd".repeat(32),
            placement_reason: "buffer host; nearest region".into(),
            restored_from: Some("s0".into()),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::SessionAlreadyProvisioned {
            session_id: "s1".into()
        }
    );
}

#[test]
fn provisioning_needs_a_credential_hash() {
    for bad in ["", "password", &"z".repeat(64)] {
        let mut c = provision_cmd("s1", "h1");
        c.credential_hash = bad.into();
        assert_eq!(
            rejected(&Command::ProvisionSession(c), &State::Empty),
            Rejection::InvalidField {
                field: "credential_hash",
                detail: "must be 64 hex digits".into()
            },
            "{bad:?}"
        );
    }
    let mut c = provision_cmd("s1", "h1");
    c.host_id = String::new();
    let r = rejected(&Command::ProvisionSession(c), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "host_id",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn a_session_ends_once() {
    let state = run(&[provision("s1", "h1")]);
    let cmd = end("s1", "h1", SessionEndReason::Ended, Some("level=3".into()));
    assert_eq!(stream_of(&cmd), "session-s1");
    let event = one(decide(&cmd, &state, &ctx()).expect("ended"));
    assert_eq!(
        event,
        Event::SessionEnded(SessionEnded {
            session_id: "s1".into(),
            host_id: "h1".into(),
            reason: SessionEndReason::Ended,
            saved_state: Some("level=3".into()),
        })
    );
    let ended = evolve(state, &event);
    assert_eq!(
        rejected(&end("s1", "h1", SessionEndReason::Lost, None), &ended),
        Rejection::SessionAlreadyEnded {
            session_id: "s1".into(),
            reason: "ended"
        }
    );
}

#[test]
fn the_already_ended_rejection_names_how_it_ended() {
    let state = run(&[
        provision("s1", "h1"),
        end("s1", "h1", SessionEndReason::Terminated, None),
    ]);
    assert_eq!(
        rejected(&end("s1", "h1", SessionEndReason::Ended, None), &state),
        Rejection::SessionAlreadyEnded {
            session_id: "s1".into(),
            reason: "terminated"
        }
    );
}

#[test]
fn ending_an_unprovisioned_session_is_refused() {
    assert_eq!(
        rejected(
            &end("s1", "h1", SessionEndReason::Ended, None),
            &State::Empty
        ),
        Rejection::SessionNotProvisioned {
            session_id: "s1".into()
        }
    );
}

#[test]
fn only_the_sessions_host_ends_it() {
    let state = run(&[provision("s1", "h1")]);
    assert_eq!(
        rejected(&end("s1", "h2", SessionEndReason::Ended, None), &state),
        Rejection::SessionOnOtherHost {
            session_id: "s1".into(),
            expected: "h1".into(),
            reported: "h2".into()
        }
    );
}

#[test]
fn saved_state_is_at_most_4096_bytes() {
    let state = run(&[provision("s1", "h1")]);
    let too_big = "x".repeat(MAX_SAVED_STATE_BYTES + 1);
    let r = rejected(
        &end("s1", "h1", SessionEndReason::Ended, Some(too_big)),
        &state,
    );
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "saved_state",
                ..
            }
        ),
        "{r:?}"
    );
    // Bytes, not characters: 2,049 two-byte characters are 4,098 bytes.
    let r = rejected(
        &end("s1", "h1", SessionEndReason::Ended, Some("é".repeat(2049))),
        &state,
    );
    assert_eq!(r.rule(), "invalid_field");
    let fits = "x".repeat(MAX_SAVED_STATE_BYTES);
    assert!(
        decide(
            &end("s1", "h1", SessionEndReason::Ended, Some(fits)),
            &state,
            &ctx()
        )
        .is_ok()
    );
}

// ---- apps and buffers ----

fn release_version(version: &str, urgent: bool, notice_seconds: u32) -> Command {
    Command::ReleaseVersion(ReleaseVersion {
        app_id: "chess".into(),
        version: version.into(),
        urgent,
        notice_seconds,
    })
}

#[test]
fn the_first_version_has_no_previous() {
    let cmd = release_version("1.0.0", false, 0);
    assert_eq!(stream_of(&cmd), "app-chess");
    assert_eq!(
        one(decide(&cmd, &State::Empty, &ctx()).expect("released")),
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: "1.0.0".into(),
            previous: None,
            urgent: false,
            deadline: None,
        })
    );
}

#[test]
fn a_newer_version_is_released_and_names_the_previous() {
    let state = run(&[release_version("1.9.0", false, 0)]);
    // Numeric, not lexical: 1.10 is newer than 1.9.
    let event = one(decide(&release_version("1.10.0", false, 0), &state, &ctx()).expect("newer"));
    assert_eq!(
        event,
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: "1.10.0".into(),
            previous: Some("1.9.0".into()),
            urgent: false,
            deadline: None,
        })
    );
    let State::App(app) = evolve(state, &event) else {
        panic!("app state expected")
    };
    assert_eq!(app.version, "1.10.0");
}

#[test]
fn an_older_or_equal_version_is_refused() {
    let state = run(&[release_version("2.1.0", false, 0)]);
    for v in ["2.1.0", "2.0.9", "1.99.99", "2.0"] {
        assert_eq!(
            rejected(&release_version(v, false, 0), &state),
            Rejection::VersionNotNewer {
                current: "2.1.0".into(),
                requested: v.into()
            },
            "{v}"
        );
    }
}

#[test]
fn a_version_is_dotted_numbers() {
    for v in ["", "v2", "2.1-beta", "2..1", "2.1.", "latest", "-1"] {
        let r = rejected(&release_version(v, false, 0), &State::Empty);
        assert!(
            matches!(
                r,
                Rejection::InvalidField {
                    field: "version",
                    ..
                }
            ),
            "{v:?}: {r:?}"
        );
    }
    assert!(streamfleet_domain::app::parse_version("2.10.1") == Ok(vec![2, 10, 1]));
}

#[test]
fn an_urgent_version_needs_a_notice_and_sets_a_deadline() {
    for notice in [0, 86_401] {
        let r = rejected(&release_version("1.0.0", true, notice), &State::Empty);
        assert!(
            matches!(
                r,
                Rejection::InvalidField {
                    field: "notice_seconds",
                    ..
                }
            ),
            "{notice}: {r:?}"
        );
    }
    for notice in [1, 900, 86_400] {
        let Event::VersionReleased(e) = one(decide(
            &release_version("1.0.0", true, notice),
            &State::Empty,
            &ctx(),
        )
        .expect("urgent")) else {
            panic!("VersionReleased expected")
        };
        assert!(e.urgent);
        assert_eq!(
            e.deadline,
            Some(now() + Duration::seconds(i64::from(notice)))
        );
    }
    // A notice on a non-urgent release sets no deadline.
    let Event::VersionReleased(e) =
        one(
            decide(&release_version("1.0.0", false, 900), &State::Empty, &ctx()).expect("released"),
        )
    else {
        panic!("VersionReleased expected")
    };
    assert_eq!(e.deadline, None);
}

fn buffer(idle_hosts: u32) -> Command {
    Command::SetBufferTarget(SetBufferTarget {
        region: "eu-west".into(),
        app_id: "chess".into(),
        idle_hosts,
    })
}

#[test]
fn a_buffer_target_is_within_limits() {
    assert_eq!(stream_of(&buffer(1)), "buffer-eu-west.chess");
    for n in [0, 3, 1024] {
        assert_eq!(
            decide(&buffer(n), &State::Empty, &ctx()),
            Ok(vec![Event::BufferTargetSet(BufferTargetSet {
                region: "eu-west".into(),
                app_id: "chess".into(),
                idle_hosts: n,
            })])
        );
    }
    let r = rejected(&buffer(1025), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "idle_hosts",
                ..
            }
        ),
        "{r:?}"
    );
    // A later target replaces an earlier one.
    let state = run(&[buffer(2)]);
    assert_eq!(state, State::Buffer);
    assert!(decide(&buffer(5), &state, &ctx()).is_ok());
    let cmd = Command::SetBufferTarget(SetBufferTarget {
        region: "".into(),
        app_id: "chess".into(),
        idle_hosts: 1,
    });
    assert_eq!(rejected(&cmd, &State::Empty).rule(), "invalid_field");
}

// ---- discrepancies ----

fn open(id: &str) -> Command {
    Command::OpenDiscrepancy(OpenDiscrepancy {
        discrepancy_id: id.into(),
        host_id: "h1".into(),
        session_id: "s1".into(),
        kind: DiscrepancyKind::UnknownSession,
        detail: "h1 reports s1, never recorded".into(),
    })
}

fn resolve(id: &str) -> Command {
    Command::ResolveDiscrepancy(ResolveDiscrepancy {
        discrepancy_id: id.into(),
        host_runs_session: false,
        resolution: "host does not run it".into(),
    })
}

#[test]
fn a_discrepancy_is_opened_once() {
    let cmd = open("d1");
    assert_eq!(stream_of(&cmd), "discrepancy-d1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("opened"));
    assert_eq!(
        event,
        Event::DiscrepancyOpened(DiscrepancyOpened {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s1".into(),
            kind: DiscrepancyKind::UnknownSession,
            detail: "h1 reports s1, never recorded".into(),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::DiscrepancyAlreadyOpened {
            discrepancy_id: "d1".into()
        }
    );
}

#[test]
fn a_discrepancy_is_resolved_once_with_its_host_and_session() {
    let state = run(&[open("d1")]);
    let event = one(decide(&resolve("d1"), &state, &ctx()).expect("resolved"));
    assert_eq!(
        event,
        Event::DiscrepancyResolved(DiscrepancyResolved {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s1".into(),
            host_runs_session: false,
            resolution: "host does not run it".into(),
        })
    );
    let resolved = evolve(state, &event);
    assert_eq!(
        rejected(&resolve("d1"), &resolved),
        Rejection::DiscrepancyAlreadyResolved {
            discrepancy_id: "d1".into()
        }
    );
    // Opening it again is refused too.
    assert_eq!(
        rejected(&open("d1"), &resolved).rule(),
        "discrepancy_already_opened"
    );
}

#[test]
fn resolving_an_unknown_discrepancy_is_refused() {
    assert_eq!(
        rejected(&resolve("d9"), &State::Empty),
        Rejection::DiscrepancyNotOpen {
            discrepancy_id: "d9".into()
        }
    );
}

// ---- migrations, nodes, ciphers ----

#[test]
fn migration_needs_another_server_and_a_future_deadline() {
    let mut c = ScheduleMigration {
        migration_id: "m1".into(),
        instance_id: "i1".into(),
        source_server: "a".into(),
        target_server: "a".into(),
        deadline: now() + Duration::hours(1),
    };
    assert_eq!(
        rejected(&Command::ScheduleMigration(c.clone()), &State::Empty),
        Rejection::MigrationTargetIsSource { server: "a".into() }
    );
    c.target_server = "b".into();
    c.deadline = now();
    assert_eq!(
        rejected(&Command::ScheduleMigration(c.clone()), &State::Empty),
        Rejection::DeadlineInPast {
            deadline: now(),
            now: now()
        }
    );
    c.deadline = now() + Duration::hours(1);
    let state = run(&[Command::ScheduleMigration(c.clone())]);
    assert_eq!(
        rejected(&Command::ScheduleMigration(c), &state).rule(),
        "migration_already_scheduled"
    );
}

#[test]
fn a_node_failure_is_recorded_once() {
    let cmd = Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "n1".into(),
        reason: "silent".into(),
    });
    let state = run(std::slice::from_ref(&cmd));
    assert_eq!(
        rejected(&cmd, &state),
        Rejection::NodeAlreadyFailed {
            node_id: "n1".into()
        }
    );
}

#[test]
fn ciphers_prefer_one_cipher_end_to_end_and_fail_clearly_without_one() {
    use Cipher::*;
    let sel = |s: &[Cipher], r: &[Cipher], d: &[Cipher]| {
        decide(
            &Command::SelectCipher(SelectCipher {
                connection_id: "c1".into(),
                source: s.to_vec(),
                relay: r.to_vec(),
                destination: d.to_vec(),
            }),
            &State::Empty,
            &ctx(),
        )
    };
    assert_eq!(
        sel(
            &[Aes128Gcm],
            &[Aes128Gcm, Chacha20Poly1305],
            &[Chacha20Poly1305]
        ),
        Ok(vec![Event::CipherSelected(CipherSelected {
            connection_id: "c1".into(),
            inbound: Aes128Gcm,
            outbound: Chacha20Poly1305,
            reencrypt: true
        })])
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes256Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "source→relay"
        })
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes128Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "relay→destination"
        })
    );
}

// ---- streams of another kind ----

#[test]
fn a_command_on_a_stream_of_another_kind_is_refused() {
    let node = run(&[Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "x".into(),
        reason: "r".into(),
    })]);
    let token = run(&[issue(None)]);
    let host = run(&[register("h1", 1)]);
    let session = run(&[provision("s1", "h1")]);
    let app = run(&[release_version("1.0.0", false, 0)]);
    let discrepancy = run(&[open("d1")]);
    let cases: Vec<(Command, &State, &str, &str)> = vec![
        (issue(None), &host, "token", "host"),
        (
            redeem(&"ab".repeat(32), "203.0.113.9", "s1"),
            &session,
            "token",
            "session",
        ),
        (register("h1", 1), &token, "host", "token"),
        (assign("h1", "s1"), &node, "host", "node"),
        (beats("h1", &[]), &session, "host", "session"),
        (remove("h1", HostRemovalReason::Lost), &app, "host", "app"),
        (provision("s1", "h1"), &host, "session", "host"),
        (
            end("s1", "h1", SessionEndReason::Ended, None),
            &token,
            "session",
            "token",
        ),
        (
            release_version("2.0.0", false, 0),
            &discrepancy,
            "app",
            "discrepancy",
        ),
        (resolve("d1"), &host, "discrepancy", "host"),
        (open("d1"), &app, "discrepancy", "app"),
    ];
    for (cmd, state, expected, found) in cases {
        assert_eq!(
            rejected(&cmd, state),
            Rejection::WrongStreamKind { expected, found },
            "{cmd:?}"
        );
    }
}

// ---- rules ----

/// One of each rejection. The match below does not compile when a variant is added without a
/// case here, so the uniqueness check covers every rule.
fn one_of_each() -> Vec<Rejection> {
    let s = || "x".to_string();
    let all = vec![
        Rejection::InvalidField {
            field: "f",
            detail: s(),
        },
        Rejection::TokenAlreadyIssued { token_id: s() },
        Rejection::TtlOutOfRange {
            ttl_seconds: 0,
            min: 1,
            max: 2,
        },
        Rejection::SessionAlreadyProvisioned { session_id: s() },
        Rejection::SessionNotProvisioned { session_id: s() },
        Rejection::SessionAlreadyEnded {
            session_id: s(),
            reason: "ended",
        },
        Rejection::SessionOnOtherHost {
            session_id: s(),
            expected: s(),
            reported: s(),
        },
        Rejection::TokenUnknown { token_id: s() },
        Rejection::TokenForged { token_id: s() },
        Rejection::TokenAlreadyRedeemed {
            token_id: s(),
            session_id: s(),
        },
        Rejection::TokenExpired {
            token_id: s(),
            expired_at: now(),
        },
        Rejection::ClientIpMismatch {
            bound: s(),
            presented: s(),
        },
        Rejection::HostAlreadyExists { host_id: s() },
        Rejection::HostNotRegistered { host_id: s() },
        Rejection::HostRemoved { host_id: s() },
        Rejection::HostNotAccepting {
            host_id: s(),
            status: "draining",
        },
        Rejection::HostRunsOtherApp {
            host_id: s(),
            app_id: s(),
        },
        Rejection::HostFull {
            host_id: s(),
            capacity: 1,
        },
        Rejection::HostBusy {
            host_id: s(),
            sessions: 1,
        },
        Rejection::SessionAlreadyAssigned {
            session_id: s(),
            host_id: s(),
        },
        Rejection::SessionNotOnHost {
            session_id: s(),
            host_id: s(),
        },
        Rejection::VersionNotNewer {
            current: s(),
            requested: s(),
        },
        Rejection::DiscrepancyAlreadyOpened {
            discrepancy_id: s(),
        },
        Rejection::DiscrepancyNotOpen {
            discrepancy_id: s(),
        },
        Rejection::DiscrepancyAlreadyResolved {
            discrepancy_id: s(),
        },
        Rejection::MigrationAlreadyScheduled { migration_id: s() },
        Rejection::MigrationTargetIsSource { server: s() },
        Rejection::DeadlineInPast {
            deadline: now(),
            now: now(),
        },
        Rejection::NodeAlreadyFailed { node_id: s() },
        Rejection::NoCommonCipher {
            hop: "source→relay",
        },
        Rejection::CipherAlreadySelected { connection_id: s() },
        Rejection::WrongStreamKind {
            expected: "host",
            found: "token",
        },
    ];
    // Exhaustiveness guard: every variant maps to its position in `all`.
    let index = |r: &Rejection| match r {
        Rejection::InvalidField { .. } => 0,
        Rejection::TokenAlreadyIssued { .. } => 1,
        Rejection::TtlOutOfRange { .. } => 2,
        Rejection::SessionAlreadyProvisioned { .. } => 3,
        Rejection::SessionNotProvisioned { .. } => 4,
        Rejection::SessionAlreadyEnded { .. } => 5,
        Rejection::SessionOnOtherHost { .. } => 6,
        Rejection::TokenUnknown { .. } => 7,
        Rejection::TokenForged { .. } => 8,
        Rejection::TokenAlreadyRedeemed { .. } => 9,
        Rejection::TokenExpired { .. } => 10,
        Rejection::ClientIpMismatch { .. } => 11,
        Rejection::HostAlreadyExists { .. } => 12,
        Rejection::HostNotRegistered { .. } => 13,
        Rejection::HostRemoved { .. } => 14,
        Rejection::HostNotAccepting { .. } => 15,
        Rejection::HostRunsOtherApp { .. } => 16,
        Rejection::HostFull { .. } => 17,
        Rejection::HostBusy { .. } => 18,
        Rejection::SessionAlreadyAssigned { .. } => 19,
        Rejection::SessionNotOnHost { .. } => 20,
        Rejection::VersionNotNewer { .. } => 21,
        Rejection::DiscrepancyAlreadyOpened { .. } => 22,
        Rejection::DiscrepancyNotOpen { .. } => 23,
        Rejection::DiscrepancyAlreadyResolved { .. } => 24,
        Rejection::MigrationAlreadyScheduled { .. } => 25,
        Rejection::MigrationTargetIsSource { .. } => 26,
        Rejection::DeadlineInPast { .. } => 27,
        Rejection::NodeAlreadyFailed { .. } => 28,
        Rejection::NoCommonCipher { .. } => 29,
        Rejection::CipherAlreadySelected { .. } => 30,
        Rejection::WrongStreamKind { .. } => 31,
    };
    for (i, r) in all.iter().enumerate() {
        assert_eq!(index(r), i, "{r:?} out of place");
    }
    all
}

#[test]
fn every_rule_has_a_unique_snake_case_name() {
    let all = one_of_each();
    let mut seen = BTreeSet::new();
    for r in &all {
        let rule = r.rule();
        assert!(
            !rule.is_empty()
                && rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                && !rule.starts_with('_')
                && !rule.ends_with('_')
                && !rule.contains("__"),
            "{rule:?} is not snake_case"
        );
        assert!(seen.insert(rule), "{rule} is used twice");
        assert!(!r.to_string().is_empty());
    }
    assert_eq!(seen.len(), 32);
}

#[test]
fn decisions_depend_only_on_their_arguments() {
    let state = run(&[register("h1", 2), assign("h1", "s1")]);
    let a = decide(&assign("h1", "s2"), &state, &ctx());
    let b = decide(&assign("h1", "s2"), &state.clone(), &ctx());
    assert_eq!(a, b);
    assert!(a.is_ok());
}

#[test]
fn versions_compare_as_numbers_with_trailing_zeros_ignored() {
    use streamfleet_domain::app::parse_version;
    assert_eq!(parse_version("1.2.0"), parse_version("1.2"));
    assert!(parse_version("1.10").expect("v") > parse_version("1.9.9").expect("v"));
    for bad in ["+1.2", "1..2", "", "1.a", "-1"] {
        assert!(parse_version(bad).is_err(), "{bad}");
    }
}
