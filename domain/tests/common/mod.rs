//! Shared `decide_*` fixtures: a fixed clock, fold/run helpers, and shared command builders.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::app::AppState;
use streamfleet_domain::{Context, Rejection, State, decide, evolve};

// ---- clock, folding, outcomes ----

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// The app the fixtures run, registered.
pub fn chess() -> AppState {
    AppState {
        app_id: "chess".into(),
        version: "1.0.0".into(),
        image: "registry.example/chess:1.0.0".into(),
        requirements: HostRequirements::default(),
    }
}

/// Now, with `chess` registered.
pub fn ctx() -> Context {
    Context {
        now: now(),
        app: Some(chess()),
        compute: None,
        instance: None,
    }
}

pub fn ctx_at(seconds_later: i64) -> Context {
    Context {
        now: now() + Duration::seconds(seconds_later),
        app: Some(chess()),
        compute: None,
        instance: None,
    }
}

pub fn fold(history: &[Event]) -> State {
    history.iter().fold(State::default(), evolve)
}

/// Decides each command on the state so far and folds what it records; panics on a rejection.
pub fn run(commands: &[Command]) -> State {
    commands.iter().fold(State::Empty, |state, cmd| {
        let events =
            decide(cmd, &state, &ctx()).unwrap_or_else(|r| panic!("{cmd:?} rejected: {r}"));
        events.iter().fold(state, evolve)
    })
}

pub fn rejected(cmd: &Command, state: &State) -> Rejection {
    match decide(cmd, state, &ctx()) {
        Ok(events) => panic!("{cmd:?} accepted: {events:?}"),
        Err(r) => r,
    }
}

pub fn one(events: Vec<Event>) -> Event {
    assert_eq!(events.len(), 1, "one event expected: {events:?}");
    events.into_iter().next().expect("one event")
}

// ---- tokens ----

pub fn issue_cmd(ip: Option<&str>) -> IssueToken {
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

pub fn issue(ip: Option<&str>) -> Command {
    Command::IssueToken(issue_cmd(ip))
}

pub fn redeem_cmd(token_hash: &str, ip: &str, session: &str) -> RedeemToken {
    RedeemToken {
        token_id: "t1".into(),
        token_hash: token_hash.into(),
        client_ip: ip.into(),
        session_id: session.into(),
        region: "eu-west".into(),
        route_reason: "measured latency 12 ms".into(),
    }
}

pub fn redeem(token_hash: &str, ip: &str, session: &str) -> Command {
    Command::RedeemToken(redeem_cmd(token_hash, ip, session))
}

// ---- hosts ----

/// A public nkey of the right shape (the decider checks shape, not possession).
pub const HOST_KEY: &str = "UAIISJAYRBQXNHS52D4CCHL2NESFDJ4ALCC4GNKTMLQILPWXNYFOFZZL";

pub fn admit(id: &str) -> Command {
    Command::AdmitHost(AdmitHost {
        host_id: id.into(),
        region: "eu-west".into(),
        public_key: HOST_KEY.into(),
    })
}

/// The state of host `h1` once admitted.
pub fn admitted() -> State {
    run(&[admit("h1")])
}

pub fn register_cmd(id: &str, capacity: u32) -> RegisterHost {
    RegisterHost {
        host_id: id.into(),
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        capacity,
        hardware: "8 vCPU, 1 GPU".into(),
        address: "10.0.0.1".into(),
        control_port: 7000,
        control_tls: false,
    }
}

pub fn register(id: &str, capacity: u32) -> Command {
    Command::RegisterHost(register_cmd(id, capacity))
}

pub fn assign(host: &str, session: &str) -> Command {
    Command::AssignSession(AssignSession {
        host_id: host.into(),
        session_id: session.into(),
        app_id: "chess".into(),
    })
}

pub fn beats(host: &str, sessions: &[&str]) -> Command {
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

pub fn remove(host: &str, reason: HostRemovalReason) -> Command {
    Command::RemoveHost(RemoveHost {
        host_id: host.into(),
        reason,
    })
}

// ---- sessions ----

pub fn provision_cmd(session: &str, host: &str) -> ProvisionSession {
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

pub fn provision(session: &str, host: &str) -> Command {
    Command::ProvisionSession(provision_cmd(session, host))
}

pub fn end(session: &str, host: &str, reason: SessionEndReason, saved: Option<String>) -> Command {
    Command::EndSession(EndSession {
        session_id: session.into(),
        host_id: host.into(),
        reason,
        saved_state: saved,
    })
}

// ---- apps ----

pub fn register_app(version: &str) -> Command {
    Command::RegisterApp(RegisterApp {
        app_id: "chess".into(),
        version: version.into(),
        image: "registry.example/chess".into(),
        requirements: HostRequirements {
            cpus: 2,
            memory_mib: 2048,
            gpu: false,
        },
    })
}

pub fn release_version(version: &str, urgent: bool, notice_seconds: u32) -> Command {
    Command::ReleaseVersion(ReleaseVersion {
        app_id: "chess".into(),
        version: version.into(),
        urgent,
        notice_seconds,
    })
}

// ---- discrepancies ----

pub fn open(id: &str) -> Command {
    Command::OpenDiscrepancy(OpenDiscrepancy {
        discrepancy_id: id.into(),
        host_id: "h1".into(),
        session_id: "s1".into(),
        kind: DiscrepancyKind::UnknownSession,
        detail: "h1 reports s1, never recorded".into(),
    })
}

pub fn resolve(id: &str) -> Command {
    Command::ResolveDiscrepancy(ResolveDiscrepancy {
        discrepancy_id: id.into(),
        host_runs_session: false,
        resolution: "host does not run it".into(),
    })
}
