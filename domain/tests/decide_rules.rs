//! Across the deciders: wrong stream kinds, unique rule names, decisions that are pure.

mod common;

use common::{
    admit, assign, beats, ctx, end, issue, now, open, provision, redeem, register, rejected,
    release_version, remove, resolve, run,
};
use std::collections::BTreeSet;
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_domain::{Rejection, State, decide};

#[test]
fn a_command_on_a_stream_of_another_kind_is_refused() {
    let node = run(&[Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "x".into(),
        reason: "r".into(),
    })]);
    let token = run(&[issue(None)]);
    let host = run(&[admit("h1"), register("h1", 1)]);
    let session = run(&[provision("s1", "h1")]);
    let app = run(&[common::register_app("1.0.0")]);
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

/// One of each rejection. The match below does not compile when a variant is added without a
/// case here, so the uniqueness check covers every rule.
fn one_of_each() -> Vec<Rejection> {
    let s = || "x".to_string();
    let all = vec![
        Rejection::InvalidField {
            field: "f",
            detail: s(),
        },
        Rejection::TokenAlreadyIssued {
            token_id: s().into(),
        },
        Rejection::TtlOutOfRange {
            ttl_seconds: 0,
            min: 1,
            max: 2,
        },
        Rejection::SessionAlreadyProvisioned {
            session_id: s().into(),
        },
        Rejection::SessionNotProvisioned {
            session_id: s().into(),
        },
        Rejection::SessionAlreadyEnded {
            session_id: s().into(),
            reason: "ended",
        },
        Rejection::SessionOnOtherHost {
            session_id: s().into(),
            expected: s().into(),
            reported: s().into(),
        },
        Rejection::TokenUnknown {
            token_id: s().into(),
        },
        Rejection::TokenForged {
            token_id: s().into(),
        },
        Rejection::TokenAlreadyRedeemed {
            token_id: s().into(),
            session_id: s().into(),
        },
        Rejection::TokenExpired {
            token_id: s().into(),
            expired_at: now(),
        },
        Rejection::ClientIpMismatch {
            bound: s(),
            presented: s(),
        },
        Rejection::HostAlreadyExists {
            host_id: s().into(),
        },
        Rejection::HostNotRegistered {
            host_id: s().into(),
        },
        Rejection::HostRemoved {
            host_id: s().into(),
        },
        Rejection::HostNotAccepting {
            host_id: s().into(),
            status: "draining",
        },
        Rejection::HostRunsOtherApp {
            host_id: s().into(),
            app_id: s().into(),
        },
        Rejection::HostFull {
            host_id: s().into(),
            capacity: 1,
        },
        Rejection::HostBusy {
            host_id: s().into(),
            sessions: 1,
        },
        Rejection::SessionAlreadyAssigned {
            session_id: s().into(),
            host_id: s().into(),
        },
        Rejection::SessionNotOnHost {
            session_id: s().into(),
            host_id: s().into(),
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
        Rejection::MigrationAlreadyScheduled {
            migration_id: s().into(),
        },
        Rejection::MigrationTargetIsSource { server: s() },
        Rejection::DeadlineInPast {
            deadline: now(),
            now: now(),
        },
        Rejection::NodeAlreadyFailed {
            node_id: s().into(),
        },
        Rejection::NoCommonCipher {
            hop: "source→relay",
        },
        Rejection::CipherAlreadySelected { connection_id: s() },
        Rejection::WrongStreamKind {
            expected: "host",
            found: "token",
        },
        Rejection::HostNotAdmitted {
            host_id: s().into(),
        },
        Rejection::HostRegionMismatch {
            host_id: s().into(),
            admitted: s().into(),
            claimed: s().into(),
        },
        Rejection::UnknownApp { app_id: s().into() },
        Rejection::AppAlreadyRegistered { app_id: s().into() },
        Rejection::NoHypervisor { detail: s() },
        Rejection::HypervisorUnfit {
            requested: streamfleet_bus_schemas::compute::Hypervisor::Crun,
            why: s(),
            offer: streamfleet_bus_schemas::compute::HypervisorOffer {
                hypervisor: streamfleet_bus_schemas::compute::Hypervisor::Qemu,
                reason: s(),
                cost: 1,
            },
        },
        Rejection::InstanceAlreadyExists {
            instance_id: s().into(),
        },
        Rejection::UnknownImage { image: s() },
        Rejection::AddressPoolExhausted,
        Rejection::UnknownInstance {
            instance_id: s().into(),
        },
        Rejection::InstanceTerminated {
            instance_id: s().into(),
        },
        Rejection::InstanceNotReady {
            instance_id: s().into(),
            operation: "stop",
            status: "stopped",
        },
        Rejection::Unsupported {
            hypervisor: streamfleet_bus_schemas::compute::Hypervisor::Crun,
            operation: "snapshot",
        },
        Rejection::VolumeAlreadyAttached {
            instance_id: s().into(),
            volume_id: s(),
        },
        Rejection::VolumeNotAttached {
            instance_id: s().into(),
            volume_id: s(),
        },
        Rejection::NetworkAlreadyAttached {
            instance_id: s().into(),
            network_id: s(),
        },
        Rejection::NetworkNotAttached {
            instance_id: s().into(),
            network_id: s(),
        },
        Rejection::SnapshotExists {
            instance_id: s().into(),
            snapshot_id: s(),
        },
        Rejection::InstanceOnOtherHost {
            instance_id: s().into(),
            expected: s().into(),
            reported: s().into(),
        },
        Rejection::UnknownMigration {
            migration_id: s().into(),
        },
        Rejection::MigrationOver {
            migration_id: s().into(),
            outcome: "completed",
        },
        Rejection::MigrationStepOutOfOrder {
            migration_id: s().into(),
            step: "answered",
            now: "scheduled",
        },
        Rejection::MigrationWrongHost {
            migration_id: s().into(),
            step: "answered",
            reported: s().into(),
        },
        Rejection::NoMatchingHost { detail: s() },
        Rejection::FileSystemExists {
            file_system: s().into(),
        },
        Rejection::UnknownNode {
            node_id: s().into(),
        },
        Rejection::NodePlacementGone {
            node_id: s().into(),
            generation: 1,
            current: 2,
        },
        Rejection::NodeStepOutOfOrder {
            node_id: s().into(),
            step: "fenced",
            now: "serving",
        },
        Rejection::NotMetadataNode {
            node_id: s().into(),
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
        Rejection::HostNotAdmitted { .. } => 32,
        Rejection::HostRegionMismatch { .. } => 33,
        Rejection::UnknownApp { .. } => 34,
        Rejection::AppAlreadyRegistered { .. } => 35,
        Rejection::NoHypervisor { .. } => 36,
        Rejection::HypervisorUnfit { .. } => 37,
        Rejection::InstanceAlreadyExists { .. } => 38,
        Rejection::UnknownImage { .. } => 39,
        Rejection::AddressPoolExhausted => 40,
        Rejection::UnknownInstance { .. } => 41,
        Rejection::InstanceTerminated { .. } => 42,
        Rejection::InstanceNotReady { .. } => 43,
        Rejection::Unsupported { .. } => 44,
        Rejection::VolumeAlreadyAttached { .. } => 45,
        Rejection::VolumeNotAttached { .. } => 46,
        Rejection::NetworkAlreadyAttached { .. } => 47,
        Rejection::NetworkNotAttached { .. } => 48,
        Rejection::SnapshotExists { .. } => 49,
        Rejection::InstanceOnOtherHost { .. } => 50,
        Rejection::UnknownMigration { .. } => 51,
        Rejection::MigrationOver { .. } => 52,
        Rejection::MigrationStepOutOfOrder { .. } => 53,
        Rejection::MigrationWrongHost { .. } => 54,
        Rejection::NoMatchingHost { .. } => 55,
        Rejection::FileSystemExists { .. } => 56,
        Rejection::UnknownNode { .. } => 57,
        Rejection::NodePlacementGone { .. } => 58,
        Rejection::NodeStepOutOfOrder { .. } => 59,
        Rejection::NotMetadataNode { .. } => 60,
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
    assert_eq!(seen.len(), all.len());
}

#[test]
fn decisions_depend_only_on_their_arguments() {
    let state = run(&[admit("h1"), register("h1", 2), assign("h1", "s1")]);
    let a = decide(&assign("h1", "s2"), &state, &ctx());
    let b = decide(&assign("h1", "s2"), &state.clone(), &ctx());
    assert_eq!(a, b);
    assert!(a.is_ok());
}
