//! The migration decider through `decide` and `evolve`: the target matched to the instance's
//! settings (or each typed rejection), then every step in order from the host whose step it is,
//! every step out of order or from the wrong host refused, failures allowed only while the
//! reporting host can still undo the move, cancel only before it, nothing after the end.

mod common;

use chrono::Duration;
use common::now;
use streamfleet_bus_schemas::compute::Hypervisor::{self, *};
use streamfleet_bus_schemas::instance::{
    ComputeHostRegistered, InstanceAddresses, InstanceReport, ReportInstance, Volume,
};
use streamfleet_bus_schemas::migration::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::fleet::Fleet;
use streamfleet_domain::instance::{ComputeContext, InstanceState, InstanceStatus};
use streamfleet_domain::migration::{MigrationState, MigrationStep};
use streamfleet_domain::{Context, Rejection, State, decide, evolve};

// ---- fixtures ----

fn registered(id: &str, region: &str, hypervisor: Hypervisor, cpus: u32) -> Event {
    Event::ComputeHostRegistered(ComputeHostRegistered {
        host_id: id.into(),
        region: region.into(),
        hypervisor,
        cpus,
        memory_mib: 8192,
        detail: String::new(),
    })
}

/// q1 (the source), q2 (8 cpus), q3 (4 cpus) and the small q4 in eu-west; q5 in us-east; a
/// crun host c1 in eu-west.
fn fleet() -> Fleet {
    let mut fleet = Fleet::default();
    for e in [
        registered("q1", "eu-west", Qemu, 8),
        registered("q2", "eu-west", Qemu, 8),
        registered("q3", "eu-west", Qemu, 4),
        registered("q4", "eu-west", Qemu, 1),
        registered("q5", "us-east", Qemu, 16),
        registered("c1", "eu-west", Crun, 16),
    ] {
        fleet.evolve(&e);
    }
    fleet
}

fn instance(hypervisor: Hypervisor, host: &str, status: InstanceStatus) -> InstanceState {
    InstanceState {
        host_id: host.into(),
        region: "eu-west".into(),
        hypervisor,
        image: "linux-app".into(),
        cpus: 2,
        memory_mib: 256,
        addresses: InstanceAddresses {
            private: "10.77.0.10".into(),
            public: "198.18.0.10".into(),
        },
        volumes: vec![Volume {
            volume_id: "root".into(),
            size_mib: 256,
        }],
        networks: vec![],
        snapshots: vec![],
        status,
        boots: 1,
    }
}

fn ctx(instance: Option<InstanceState>) -> Context {
    Context {
        now: now(),
        app: None,
        compute: Some(ComputeContext {
            fleet: fleet(),
            ..Default::default()
        }),
        instance,
    }
}

fn schedule_cmd() -> ScheduleMigration {
    ScheduleMigration {
        migration_id: "m1".into(),
        instance_id: "i1".into(),
        reason: "host retirement".into(),
        deadline: Some(now() + Duration::hours(2)),
        target_host: None,
        customer: Some("acme".into()),
        sync_interval_seconds: None,
    }
}

fn schedule(c: ScheduleMigration, inst: Option<InstanceState>) -> Result<Vec<Event>, Rejection> {
    decide(&Command::ScheduleMigration(c), &State::Empty, &ctx(inst))
}

fn running_qemu() -> Option<InstanceState> {
    Some(instance(Qemu, "q1", InstanceStatus::Running))
}

fn scheduled_state() -> State {
    let events = schedule(schedule_cmd(), running_qemu()).expect("scheduled");
    events.iter().fold(State::Empty, evolve)
}

fn report(host: &str, report: MigrationReport) -> Command {
    Command::ReportMigration(ReportMigration {
        migration_id: "m1".into(),
        host_id: host.into(),
        report,
    })
}

fn apply(state: State, cmd: &Command) -> Result<(State, Vec<Event>), Rejection> {
    let events = decide(cmd, &state, &ctx(None))?;
    Ok((events.iter().fold(state, evolve), events))
}

fn step_of(state: &State) -> MigrationStep {
    match state {
        State::Migration(MigrationState { step, .. }) => *step,
        other => panic!("not a migration: {other:?}"),
    }
}

/// Every step of a move in order, each with its host: `(host, report)`.
fn the_move() -> Vec<(&'static str, MigrationReport)> {
    vec![
        (
            "q2",
            MigrationReport::TargetReady {
                exports: vec![VolumeExport {
                    volume_id: "root".into(),
                    address: "10.98.0.2:20000".into(),
                }],
            },
        ),
        ("q1", MigrationReport::SyncStarted { bytes: 256 << 20 }),
        (
            "q1",
            MigrationReport::SyncRound {
                round: 0,
                bytes_copied: 256 << 20,
                dirty_bytes_left: 65536,
                duration_ms: 1200,
            },
        ),
        (
            "q1",
            MigrationReport::SyncRound {
                round: 1,
                bytes_copied: 65536,
                dirty_bytes_left: 4096,
                duration_ms: 4,
            },
        ),
        (
            "q1",
            MigrationReport::Triggered {
                trigger: MigrationTrigger::Reboot,
                guest_stopped_at: now(),
            },
        ),
        ("q1", MigrationReport::NetworkDetached),
        (
            "q1",
            MigrationReport::FinalSynced {
                bytes_copied: 4096,
                duration_ms: 3,
            },
        ),
        ("q1", MigrationReport::SourceStopped),
        (
            "q2",
            MigrationReport::TargetLaunched {
                pid: 42,
                boot_ms: 13_000,
            },
        ),
        ("q2", MigrationReport::NetworkAttached),
        (
            "q2",
            MigrationReport::Answered {
                at: now() + Duration::milliseconds(13_600),
            },
        ),
    ]
}

/// The state after the first `n` steps of the move.
fn after(n: usize) -> State {
    the_move()
        .into_iter()
        .take(n)
        .fold(scheduled_state(), |s, (host, r)| {
            apply(s, &report(host, r)).expect("in order").0
        })
}

// ---- the target ----

#[test]
fn the_target_is_the_matching_host_with_the_most_free_cpus_and_says_why() {
    let events = schedule(schedule_cmd(), running_qemu()).expect("scheduled");
    let [Event::MigrationScheduled(e)] = &events[..] else {
        panic!("{events:?}")
    };
    // q2 and q3 match (q4 has 1 cpu, q5 is in us-east, c1 runs crun); q2 has more free cpus.
    assert_eq!(e.target_host.as_str(), "q2");
    assert_eq!(e.source_host.as_str(), "q1");
    assert_eq!(e.customer, "acme");
    assert_eq!(e.sync_interval_seconds, 5);
    assert!(
        e.matched
            .iter()
            .any(|m| m.contains("same hypervisor (qemu)"))
    );
    assert!(
        e.matched
            .iter()
            .any(|m| m.contains("same region (eu-west)"))
    );
    assert_eq!(e.volumes.len(), 1);
    assert_eq!(e.addresses.private, "10.77.0.10");
}

#[test]
fn a_named_target_is_taken_when_it_matches_and_refused_naming_why_when_not() {
    let mut c = schedule_cmd();
    c.target_host = Some("q3".into());
    let events = schedule(c.clone(), running_qemu()).expect("q3 matches");
    let Event::MigrationScheduled(e) = &events[0] else {
        panic!()
    };
    assert_eq!(e.target_host.as_str(), "q3");
    assert_eq!(e.matched[0], "named by the schedule");

    for (target, says) in [
        ("q5", "is in us-east, not eu-west"),
        ("c1", "runs crun, not qemu"),
        ("q4", "has no room for 2 cpus"),
        ("nowhere", "not a registered compute host"),
    ] {
        c.target_host = Some(target.into());
        match schedule(c.clone(), running_qemu()) {
            Err(r @ Rejection::NoMatchingHost { .. }) => {
                assert_eq!(r.rule(), "no_matching_host");
                assert!(r.to_string().contains(says), "{target}: {r}");
            }
            other => panic!("{target}: {other:?}"),
        }
    }
    c.target_host = Some("q1".into());
    assert_eq!(
        schedule(c, running_qemu()).unwrap_err().rule(),
        "migration_target_is_source"
    );
}

#[test]
fn what_cannot_migrate_is_refused_with_a_typed_reason() {
    let cases: Vec<(Option<InstanceState>, &str)> = vec![
        (
            Some(instance(Crun, "c1", InstanceStatus::Running)),
            "unsupported",
        ),
        (
            Some(instance(Sim, "q1", InstanceStatus::Running)),
            "unsupported",
        ),
        (None, "unknown_instance"),
        (
            Some(instance(Qemu, "q1", InstanceStatus::Stopped)),
            "instance_not_ready",
        ),
        (
            Some(instance(Qemu, "q1", InstanceStatus::Terminated)),
            "instance_terminated",
        ),
    ];
    for (inst, rule) in cases {
        let r = schedule(schedule_cmd(), inst.clone()).unwrap_err();
        assert_eq!(r.rule(), rule, "{inst:?}");
    }
    let crun = schedule(
        schedule_cmd(),
        Some(instance(Crun, "c1", InstanceStatus::Running)),
    )
    .unwrap_err();
    assert_eq!(
        crun.to_string(),
        "crun cannot migrate: unsupported by its driver"
    );

    // Nowhere to go: the only other eu-west qemu hosts are full.
    let mut big = instance(Qemu, "q1", InstanceStatus::Running);
    big.cpus = 9;
    let r = schedule(schedule_cmd(), Some(big)).unwrap_err();
    assert_eq!(r.rule(), "no_matching_host");
    assert!(
        r.to_string().contains("no other qemu host in eu-west"),
        "{r}"
    );
}

#[test]
fn the_schedule_checks_its_own_fields_and_defaults_the_rest() {
    let mut c = schedule_cmd();
    c.deadline = Some(now());
    assert_eq!(
        schedule(c.clone(), running_qemu()).unwrap_err().rule(),
        "deadline_in_past"
    );
    c.deadline = None;
    c.customer = None;
    let events = schedule(c.clone(), running_qemu()).expect("defaults");
    let Event::MigrationScheduled(e) = &events[0] else {
        panic!()
    };
    assert_eq!(e.deadline, now() + Duration::hours(24));
    assert_eq!(e.customer, "i1");
    for (field, bad) in [
        ("sync_interval_seconds", {
            let mut b = c.clone();
            b.sync_interval_seconds = Some(0);
            b
        }),
        ("customer", {
            let mut b = c.clone();
            b.customer = Some("a.b".into());
            b
        }),
        ("reason", {
            let mut b = c.clone();
            b.reason = " ".into();
            b
        }),
        ("migration_id", {
            let mut b = c.clone();
            b.migration_id = "m>".into();
            b
        }),
    ] {
        match schedule(bad, running_qemu()) {
            Err(Rejection::InvalidField { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(
        decide(
            &Command::ScheduleMigration(schedule_cmd()),
            &scheduled_state(),
            &ctx(running_qemu())
        )
        .unwrap_err()
        .rule(),
        "migration_already_scheduled"
    );
}

// ---- the steps ----

#[test]
fn every_step_in_order_ends_in_completed_with_the_downtime_split() {
    let mut state = scheduled_state();
    let mut types = vec![];
    for (host, r) in the_move() {
        let (next, events) = apply(state, &report(host, r)).expect("in order");
        types.extend(events.iter().map(|e| e.type_name()));
        state = next;
    }
    assert_eq!(
        types,
        [
            "MigrationTargetReady",
            "VolumeSyncStarted",
            "VolumeSyncRound",
            "VolumeSynced",
            "CustomerNotified",
            "VolumeSyncRound",
            "MigrationStarted",
            "MigrationNetworkDetached",
            "MigrationFinalSynced",
            "MigrationSourceStopped",
            "MigrationTargetLaunched",
            "MigrationNetworkAttached",
            "MigrationCompleted",
            "CustomerNotified",
        ]
    );
    let State::Migration(s) = &state else {
        panic!()
    };
    assert_eq!(s.step, MigrationStep::Completed);
    assert_eq!(s.rounds, 2);
    assert_eq!(s.bytes_synced, (256 << 20) + 65536 + 4096);
    assert_eq!(s.downtime_ms, Some(13_600));
    assert_eq!(s.trigger, Some(MigrationTrigger::Reboot));
    // The split: 13 s of boot, 0.6 s of control plane.
    let (_, events) = apply(
        after(10),
        &report(
            "q2",
            MigrationReport::Answered {
                at: now() + Duration::milliseconds(13_600),
            },
        ),
    )
    .expect("answered");
    let Event::MigrationCompleted(c) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (c.downtime_ms, c.boot_ms, c.control_plane_ms),
        (13_600, 13_000, 600)
    );
    // Over: nothing more.
    for (host, r) in the_move() {
        assert_eq!(
            apply(state.clone(), &report(host, r)).unwrap_err().rule(),
            "migration_over"
        );
    }
}

#[test]
fn a_step_out_of_order_or_from_the_wrong_host_is_refused() {
    let steps = the_move();
    for at in 0..steps.len() {
        let state = after(at);
        for (j, (host, r)) in steps.iter().enumerate() {
            if j == at {
                // The due step, from the other host or a third one.
                let other = if *host == "q1" { "q2" } else { "q1" };
                for wrong in [other, "q9"] {
                    let refused = apply(state.clone(), &report(wrong, r.clone())).unwrap_err();
                    assert_eq!(
                        refused.rule(),
                        "migration_wrong_host",
                        "{at}: {r:?} from {wrong}"
                    );
                }
                continue;
            }
            // Once synced, a trigger may come before any incremental round.
            if at == 3 && j == 4 {
                continue;
            }
            // Round 1 again after round 1 is a bad round number, not a bad step.
            let refused = apply(state.clone(), &report(host, r.clone())).unwrap_err();
            assert!(
                matches!(
                    refused.rule(),
                    "migration_step_out_of_order" | "invalid_field"
                ),
                "step {j} at {at}: {refused}"
            );
        }
    }
}

#[test]
fn each_host_may_fail_the_move_only_while_it_can_still_be_undone() {
    let failed = |host: &str| {
        report(
            host,
            MigrationReport::Failed {
                cause: "qemu-nbd refused".into(),
            },
        )
    };
    let steps = the_move().len();
    for at in 0..steps {
        let state = after(at);
        let step = step_of(&state);
        // The source, until its instance is stopped (before the target's launch).
        let source = apply(state.clone(), &failed("q1"));
        assert_eq!(
            source.is_ok(),
            step <= MigrationStep::SourceStopped,
            "source at {step:?}"
        );
        // The target, until the instance answers from it.
        let target = apply(state.clone(), &failed("q2"));
        assert_eq!(
            target.is_ok(),
            step <= MigrationStep::NetworkAttached,
            "target at {step:?}"
        );
        if let Ok((s, events)) = source {
            let Event::MigrationFailed(f) = &events[0] else {
                panic!()
            };
            assert_eq!(f.host_id.as_str(), "q1");
            assert_eq!(step_of(&s), MigrationStep::Failed);
            // Then only the source's rollback.
            assert_eq!(
                apply(s.clone(), &failed("q2")).unwrap_err().rule(),
                "migration_step_out_of_order"
            );
            let (back, events) =
                apply(s, &report("q1", MigrationReport::RolledBack)).expect("rolled back");
            assert_eq!(step_of(&back), MigrationStep::RolledBack);
            assert!(matches!(
                &events[1],
                Event::CustomerNotified(CustomerNotified {
                    notice: Notice::RolledBack,
                    ..
                })
            ));
        }
    }
    // The step a failure names: the one under way.
    let (_, events) = apply(after(9), &failed("q2")).expect("target fails after launch");
    let Event::MigrationFailed(f) = &events[0] else {
        panic!()
    };
    assert_eq!(f.step, "attach_network");
    let (_, events) = apply(after(8), &failed("q1")).expect("source times out");
    let Event::MigrationFailed(f) = &events[0] else {
        panic!()
    };
    assert_eq!(f.step, "launch_on_target");
}

#[test]
fn a_cancel_is_taken_only_before_the_move_starts() {
    let cancel = Command::CancelMigration(CancelMigration {
        migration_id: "m1".into(),
        reason: "host repaired".into(),
    });
    for at in 0..the_move().len() {
        let state = after(at);
        let step = step_of(&state);
        let outcome = apply(state, &cancel);
        assert_eq!(outcome.is_ok(), step <= MigrationStep::Synced, "{step:?}");
        if let Ok((s, _)) = outcome {
            assert_eq!(step_of(&s), MigrationStep::Cancelled);
        }
    }
    assert_eq!(
        apply(State::Empty, &cancel).unwrap_err().rule(),
        "unknown_migration"
    );
}

#[test]
fn the_notice_of_the_schedule_comes_with_the_initial_copy_and_names_the_deadline() {
    let (_, events) = apply(after(2), &report("q1", the_move()[2].1.clone())).expect("round 0");
    let Event::CustomerNotified(n) = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(n.customer, "acme");
    assert_eq!(
        n.notice,
        Notice::Scheduled {
            deadline: now() + Duration::hours(2)
        }
    );
    assert!(
        n.message
            .contains("Rebooting it before then moves it at once")
    );
}

// ---- the instance's side ----

#[test]
fn the_target_reports_the_instance_moved_and_its_room_moves_with_it() {
    let placed = instance(Qemu, "q1", InstanceStatus::Running);
    let state = State::Instance(placed);
    let moved = |from: &str| {
        Command::ReportInstance(ReportInstance {
            instance_id: "i1".into(),
            host_id: "q2".into(),
            report: InstanceReport::Moved {
                migration_id: "m1".into(),
                from_host: from.into(),
                pid: 7,
            },
        })
    };
    let events = decide(&moved("q1"), &state, &ctx(None)).expect("moved");
    let next = events.iter().fold(state.clone(), evolve);
    let State::Instance(s) = &next else { panic!() };
    assert_eq!(s.host_id.as_str(), "q2");
    assert_eq!(s.status, InstanceStatus::Running);
    // Told again: nothing new. From a host it never ran on: refused.
    assert_eq!(decide(&moved("q1"), &next, &ctx(None)), Ok(vec![]));
    assert_eq!(
        decide(&moved("q3"), &state, &ctx(None)).unwrap_err().rule(),
        "instance_on_other_host"
    );
}
