//! A scripted history shared by the tests: one region, one app, a release, a lost session;
//! then (positions 20..=41) two compute hosts and three instances over their lives; then
//! (positions 42..=68) a third compute host and migrations of i3: m1 moves it from c1 to c3,
//! m2 fails and is rolled back, m3 is cancelled, and an event of m9 (never scheduled) comes
//! astray; then (from `dfs_from()`) a file system whose metadata node fails and is recovered.

#![allow(dead_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::{Feature, Hypervisor, HypervisorOffer};
use streamfleet_bus_schemas::dfs::*;
use streamfleet_bus_schemas::ids::NodeId;
use streamfleet_bus_schemas::instance::*;
use streamfleet_bus_schemas::migration::*;
use streamfleet_bus_schemas::payloads::*;

/// When the history starts.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("a valid time")
}

/// `t0 + secs`.
pub fn at(secs: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(secs)
}

fn registered(host: &str, version: &str, capacity: u32) -> Event {
    Event::HostRegistered(HostRegistered {
        host_id: host.into(),
        region: "eu".into(),
        app_id: "game".into(),
        version: version.into(),
        capacity,
        hardware: "8 vCPU, 1 GPU".into(),
        address: "10.0.0.1".into(),
        control_port: 7000,
        control_tls: false,
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
                stats: Some(StreamStats {
                    bitrate_kbps: 8000,
                    fps: 60,
                    rtt_ms: 20,
                    loss_permille: 1,
                    keyframes: 3,
                }),
            })
            .collect(),
    })
}

fn compute_host(host: &str, region: &str, hypervisor: Hypervisor, cpus: u32, mib: u32) -> Event {
    Event::ComputeHostRegistered(ComputeHostRegistered {
        host_id: host.into(),
        region: region.into(),
        hypervisor,
        cpus,
        memory_mib: mib,
        detail: format!("{hypervisor} on {host}"),
    })
}

fn chosen(instance: &str, hypervisor: Hypervisor, offer: Option<HypervisorOffer>) -> Event {
    Event::HypervisorChosen(HypervisorChosen {
        instance_id: instance.into(),
        hypervisor,
        reasons: vec![format!("{hypervisor} runs the image")],
        offer,
    })
}

/// Placed with pool index `index` (`10.77.0.<index>`), a root disk of 10240 MiB.
#[allow(clippy::too_many_arguments)]
fn placed(
    instance: &str,
    host: &str,
    region: &str,
    hypervisor: Hypervisor,
    image: &str,
    cpus: u32,
    mib: u32,
    index: u8,
) -> Event {
    Event::InstancePlaced(InstancePlaced {
        instance_id: instance.into(),
        host_id: host.into(),
        region: region.into(),
        hypervisor,
        image: image.into(),
        cpus,
        memory_mib: mib,
        features: vec![Feature::Snapshot],
        addresses: InstanceAddresses {
            private: format!("10.77.0.{index}"),
            public: format!("198.18.0.{index}"),
        },
        volumes: vec![Volume {
            volume_id: "root".into(),
            size_mib: 10240,
        }],
        reasons: vec![format!("{host} has the most free cpus")],
    })
}

fn launched(instance: &str, host: &str, hypervisor: Hypervisor, pid: u32) -> Event {
    Event::InstanceLaunched(InstanceLaunched {
        instance_id: instance.into(),
        host_id: host.into(),
        hypervisor,
        addresses: InstanceAddresses {
            private: String::new(),
            public: String::new(),
        },
        volumes: vec![],
        pid,
    })
}

fn rebooted(instance: &str, by: ChangeCause) -> Event {
    Event::InstanceRebooted(InstanceRebooted {
        instance_id: instance.into(),
        by,
    })
}

/// The instance events of the history (positions 20..=41).
fn instance_events() -> Vec<Event> {
    use Hypervisor::{Crun, Qemu};
    vec![
        compute_host("c1", "eu", Qemu, 8, 16384),
        compute_host("c2", "us", Crun, 4, 4096),
        chosen(
            "i1",
            Qemu,
            Some(HypervisorOffer {
                hypervisor: Crun,
                reason: "cheaper: 3 vs 12 per hour".into(),
                cost: 3,
            }),
        ),
        placed("i1", "c1", "eu", Qemu, "debian-12", 2, 2048, 2),
        launched("i1", "c1", Qemu, 4242),
        chosen("i2", Crun, None),
        placed("i2", "c2", "us", Crun, "alpine-3", 1, 512, 3),
        launched("i2", "c2", Crun, 77),
        rebooted("i1", ChangeCause::Command),
        launched("i1", "c1", Qemu, 4300),
        Event::VolumeAttached(VolumeAttached {
            instance_id: "i1".into(),
            volume: Volume {
                volume_id: "data".into(),
                size_mib: 2048,
            },
        }),
        Event::NetworkAttached(NetworkAttached {
            instance_id: "i1".into(),
            network_id: "backend".into(),
        }),
        Event::SnapshotTaken(SnapshotTaken {
            instance_id: "i1".into(),
            snapshot_id: "snap1".into(),
        }),
        rebooted("i1", ChangeCause::Guest),
        Event::InstanceStopped(InstanceStopped {
            instance_id: "i1".into(),
            by: ChangeCause::Command,
        }),
        Event::InstanceStarted(InstanceStarted {
            instance_id: "i1".into(),
        }),
        launched("i1", "c1", Qemu, 4400),
        Event::InstanceFailed(InstanceFailed {
            instance_id: "i2".into(),
            host_id: "c2".into(),
            reason: "crun: container exited 137".into(),
        }),
        chosen("i3", Qemu, None),
        placed("i3", "c1", "eu", Qemu, "windows-2022", 4, 8192, 4),
        Event::InstanceTerminated(InstanceTerminated {
            instance_id: "i1".into(),
            host_id: "c1".into(),
        }),
        launched("i3", "c1", Qemu, 5000),
    ]
}

/// The first position of the migrations' part of the history.
pub const MIGRATIONS_FROM: usize = 42;

fn scheduled(migration: &str, from: &str, to: &str, reason: &str, deadline: i64) -> Event {
    Event::MigrationScheduled(MigrationScheduled {
        migration_id: migration.into(),
        instance_id: "i3".into(),
        reason: reason.into(),
        customer: "acme".into(),
        source_host: from.into(),
        target_host: to.into(),
        matched: vec![
            "same hypervisor: qemu".into(),
            "same region: eu".into(),
            format!("{to} has room for 4 cpus and 8192 MiB"),
        ],
        deadline: at(deadline),
        sync_interval_seconds: 5,
        hypervisor: Hypervisor::Qemu,
        image: "windows-2022".into(),
        cpus: 4,
        memory_mib: 8192,
        addresses: InstanceAddresses {
            private: "10.77.0.4".into(),
            public: "198.18.0.4".into(),
        },
        volumes: vec![Volume {
            volume_id: "root".into(),
            size_mib: 10240,
        }],
        networks: vec![],
    })
}

fn notified(migration: &str, notice: Notice, message: &str) -> Event {
    Event::CustomerNotified(CustomerNotified {
        migration_id: migration.into(),
        instance_id: "i3".into(),
        customer: "acme".into(),
        notice,
        message: message.into(),
    })
}

fn round(migration: &str, round: u32, bytes_copied: u64, dirty_bytes_left: u64) -> Event {
    Event::VolumeSyncRound(VolumeSyncRound {
        migration_id: migration.into(),
        round,
        bytes_copied,
        dirty_bytes_left,
        duration_ms: 900,
    })
}

/// The root disk's bytes.
pub const DISK_BYTES: u64 = 10240 * 1024 * 1024;

/// The migration events of the history (positions 42..=68).
fn migration_events() -> Vec<Event> {
    let m1 = || "m1".into();
    let m2 = || "m2".into();
    vec![
        compute_host("c3", "eu", Hypervisor::Qemu, 8, 16384),
        // m1: i3 from c1 to c3, moved at the customer's reboot.
        scheduled("m1", "c1", "c3", "host retirement", 86_400),
        Event::MigrationTargetReady(MigrationTargetReady {
            migration_id: m1(),
            exports: vec![VolumeExport {
                volume_id: "root".into(),
                address: "10.0.0.3:10809".into(),
            }],
        }),
        Event::VolumeSyncStarted(VolumeSyncStarted {
            migration_id: m1(),
            bytes: DISK_BYTES,
        }),
        round("m1", 0, DISK_BYTES, 65_536),
        Event::VolumeSynced(VolumeSynced {
            migration_id: m1(),
            bytes_copied: DISK_BYTES,
            duration_ms: 900,
        }),
        notified(
            "m1",
            Notice::Scheduled {
                deadline: at(86_400),
            },
            "Your instance i3 moves to another host (host retirement).",
        ),
        round("m1", 1, 65_536, 4096),
        Event::MigrationStarted(MigrationStarted {
            migration_id: m1(),
            trigger: MigrationTrigger::Reboot,
            guest_stopped_at: at(50),
        }),
        Event::MigrationNetworkDetached(MigrationNetworkDetached { migration_id: m1() }),
        Event::MigrationFinalSynced(MigrationFinalSynced {
            migration_id: m1(),
            bytes_copied: 4096,
            duration_ms: 12,
        }),
        Event::MigrationSourceStopped(MigrationSourceStopped { migration_id: m1() }),
        Event::MigrationTargetLaunched(MigrationTargetLaunched {
            migration_id: m1(),
            host_id: "c3".into(),
            pid: 6000,
            boot_ms: 800,
        }),
        Event::InstanceMoved(InstanceMoved {
            instance_id: "i3".into(),
            migration_id: m1(),
            from_host: "c1".into(),
            host_id: "c3".into(),
            pid: 6000,
        }),
        Event::MigrationNetworkAttached(MigrationNetworkAttached { migration_id: m1() }),
        Event::MigrationCompleted(MigrationCompleted {
            migration_id: m1(),
            instance_id: "i3".into(),
            host_id: "c3".into(),
            downtime_ms: 1500,
            boot_ms: 800,
            control_plane_ms: 700,
        }),
        notified(
            "m1",
            Notice::Completed { downtime_ms: 1500 },
            "Your instance i3 moved; it did not answer for 1.5 s.",
        ),
        // m2: back to c1; the copy fails, the source rolls back.
        scheduled("m2", "c3", "c1", "rebalance", 7200),
        Event::MigrationTargetReady(MigrationTargetReady {
            migration_id: m2(),
            exports: vec![VolumeExport {
                volume_id: "root".into(),
                address: "10.0.0.1:10809".into(),
            }],
        }),
        Event::VolumeSyncStarted(VolumeSyncStarted {
            migration_id: m2(),
            bytes: DISK_BYTES,
        }),
        Event::MigrationFailed(MigrationFailed {
            migration_id: m2(),
            step: "initial_sync".into(),
            host_id: "c3".into(),
            cause: "nbd: connection reset".into(),
        }),
        Event::MigrationRolledBack(MigrationRolledBack {
            migration_id: m2(),
            instance_id: "i3".into(),
            host_id: "c3".into(),
        }),
        notified(
            "m2",
            Notice::RolledBack,
            "The move of your instance i3 failed; it runs where it ran.",
        ),
        // m3: cancelled before anything happened.
        scheduled("m3", "c3", "c1", "rebalance", 7200),
        Event::MigrationCancelled(MigrationCancelled {
            migration_id: "m3".into(),
            reason: "the customer asked to wait".into(),
        }),
        notified(
            "m3",
            Notice::Cancelled,
            "The move of your instance was cancelled: the customer asked to wait",
        ),
        // A step of a migration never scheduled: nothing to fold it into.
        Event::VolumeSyncStarted(VolumeSyncStarted {
            migration_id: "m9".into(),
            bytes: 1,
        }),
    ]
}

/// The file-system events of the history (from [`dfs_from`]): `fs1` with its metadata node on
/// d1 and data nodes on d2 and d3 (hosts the compute hosts' rows do not know: the instances
/// view does not count file-system nodes' room, which the domain's fleet does). The metadata node takes a checkpoint, goes unresponsive and
/// answers again, then fails; its first replacement (d2) fails at the checkpoint, the second
/// (d3) recovers it and sends a block report. `fs1-cs2` fails with no host left, and `n-legacy`
/// (no file system) is failed by hand.
fn dfs_events(from: usize) -> Vec<Event> {
    // The time of the `i`th event of this part (as `history` numbers them).
    let t = |i: usize| at((from + i) as i64);
    let master = || NodeId::from("fs1-master");
    let plan = |node: &str, role: NodeRole, host: &str, address: &str| NodePlan {
        node_id: node.into(),
        role,
        host_id: host.into(),
        address: address.into(),
        volume_id: format!("{node}-vol"),
        cpus: 1,
        memory_mib: if role == NodeRole::Metadata { 512 } else { 256 },
    };
    let serving = |node: &str, role: NodeRole, host: &str, address: &str, pid: u32| {
        Event::NodeServing(NodeServing {
            node_id: node.into(),
            file_system: "fs1".into(),
            role,
            host_id: host.into(),
            generation: 0,
            address: address.into(),
            volume_id: format!("{node}-vol"),
            pid,
        })
    };
    vec![
        // 0
        Event::FileSystemCreated(FileSystemCreated {
            file_system: "fs1".into(),
            region: "eu".into(),
            goal: 2,
            volume_mib: 256,
            checkpoint_every_seconds: 600,
            nodes: vec![
                plan("fs1-master", NodeRole::Metadata, "d1", "10.99.0.10"),
                plan("fs1-cs1", NodeRole::Data, "d2", "10.99.0.11"),
                plan("fs1-cs2", NodeRole::Data, "d3", "10.99.0.12"),
            ],
            reasons: vec!["fs1-master on d1: crun, eu, room".into()],
        }),
        serving("fs1-master", NodeRole::Metadata, "d1", "10.99.0.10", 100),
        serving("fs1-cs1", NodeRole::Data, "d2", "10.99.0.11", 200),
        serving("fs1-cs2", NodeRole::Data, "d3", "10.99.0.12", 300),
        Event::CheckpointRequested(CheckpointRequested {
            node_id: master(),
            host_id: "d1".into(),
            generation: 0,
            cause: CheckpointCause::Command,
        }),
        // 5
        Event::CheckpointTaken(CheckpointTaken {
            node_id: master(),
            host_id: "d1".into(),
            cause: CheckpointCause::Command,
            image_bytes: 4096,
            version: 10,
            replayed: 0,
        }),
        serving("fs1-master", NodeRole::Metadata, "d1", "10.99.0.10", 101),
        Event::NodeUnresponsive(NodeUnresponsive {
            node_id: master(),
            generation: 0,
            last_answer_at: t(6),
            evidence: "3 probes unanswered".into(),
        }),
        Event::NodeAnswering(NodeAnswering {
            node_id: master(),
            generation: 0,
            silent_ms: 2000,
        }),
        Event::NodeUnresponsive(NodeUnresponsive {
            node_id: master(),
            generation: 0,
            last_answer_at: t(8),
            evidence: "connection refused".into(),
        }),
        // 10
        Event::NodeFailed(NodeFailed {
            node_id: master(),
            reason: "no answer for 6000 ms (timeout 6000 ms): connection refused".into(),
            host_id: Some("d1".into()),
            generation: Some(0),
            last_answer_at: Some(t(9)),
            timeout_ms: Some(6000),
        }),
        Event::ReplacementChosen(ReplacementChosen {
            node_id: master(),
            generation: 1,
            host_id: "d2".into(),
            from_host: "d1".into(),
            cpus: 1,
            memory_mib: 512,
            reasons: vec!["d2: crun in eu with room".into()],
        }),
        Event::NodeFenced(NodeFenced {
            node_id: master(),
            fenced_host: "d1".into(),
            host_id: "d2".into(),
            detail: "container ended, volume detached, address withdrawn".into(),
            at: t(12),
        }),
        Event::NetworkVolumeAttached(NetworkVolumeAttached {
            node_id: master(),
            volume_id: "fs1-master-vol".into(),
            host_id: "d2".into(),
            device: "/dev/nbd0".into(),
        }),
        Event::RecoveryFailed(RecoveryFailed {
            node_id: master(),
            generation: 1,
            host_id: Some("d2".into()),
            step: "checkpoint".into(),
            cause: "metadata image unreadable".into(),
            next: Some("d3".into()),
        }),
        // 15
        Event::ReplacementChosen(ReplacementChosen {
            node_id: master(),
            generation: 2,
            host_id: "d3".into(),
            from_host: "d2".into(),
            cpus: 1,
            memory_mib: 512,
            reasons: vec!["d3: crun in eu with room; not d1, d2".into()],
        }),
        Event::NodeFenced(NodeFenced {
            node_id: master(),
            fenced_host: "d1".into(),
            host_id: "d3".into(),
            detail: "already fenced".into(),
            at: t(16),
        }),
        Event::NetworkVolumeAttached(NetworkVolumeAttached {
            node_id: master(),
            volume_id: "fs1-master-vol".into(),
            host_id: "d3".into(),
            device: "/dev/nbd1".into(),
        }),
        Event::CheckpointTaken(CheckpointTaken {
            node_id: master(),
            host_id: "d3".into(),
            cause: CheckpointCause::Recovery,
            image_bytes: 8192,
            version: 25,
            replayed: 15,
        }),
        Event::ReplacementLaunched(ReplacementLaunched {
            node_id: master(),
            host_id: "d3".into(),
            generation: 2,
            pid: 400,
        }),
        // 20
        Event::AddressReassigned(AddressReassigned {
            node_id: master(),
            address: "10.99.0.10".into(),
            from_host: "d1".into(),
            host_id: "d3".into(),
        }),
        Event::NodeRecovered(NodeRecovered {
            node_id: master(),
            host_id: "d3".into(),
            generation: 2,
            recovery_ms: 12_000,
            fence_to_serving_ms: 9_000,
            pid: 400,
        }),
        Event::BlockReportReceived(BlockReportReceived {
            node_id: master(),
            host_id: "d3".into(),
            chunk_servers: vec![
                ChunkServerSeen {
                    address: "10.99.0.11".into(),
                    chunks: 12,
                    connected: true,
                },
                ChunkServerSeen {
                    address: "10.99.0.12".into(),
                    chunks: 11,
                    connected: false,
                },
            ],
            chunks: 23,
        }),
        Event::NodeFailed(NodeFailed {
            node_id: "fs1-cs2".into(),
            reason: "no answer for 6000 ms (timeout 6000 ms): host silent".into(),
            host_id: Some("d3".into()),
            generation: Some(0),
            last_answer_at: Some(t(22)),
            timeout_ms: Some(6000),
        }),
        Event::RecoveryFailed(RecoveryFailed {
            node_id: "fs1-cs2".into(),
            generation: 0,
            host_id: Some("d3".into()),
            step: "choose_host".into(),
            cause: "no crun host in eu has room for it, other than d3".into(),
            next: None,
        }),
        // 25
        Event::NodeFailed(NodeFailed {
            node_id: "n-legacy".into(),
            reason: "reported by hand".into(),
            host_id: None,
            generation: None,
            last_answer_at: None,
            timeout_ms: None,
        }),
    ]
}

/// The position of the file systems' first event (`FileSystemCreated`).
pub fn dfs_from() -> usize {
    19 + instance_events().len() + migration_events().len() + 1
}

/// `(time, event)` in log order; positions are the 1-based indexes.
pub fn history() -> Vec<(DateTime<Utc>, Event)> {
    let events = vec![
        Event::BufferTargetSet(BufferTargetSet {
            region: "eu".into(),
            app_id: "game".into(),
            idle_hosts: 2,
        }),
        Event::HostRequested(HostRequested {
            host_id: "h1".into(),
            region: "eu".into(),
            app_id: "game".into(),
            version: "1.0.0".into(),
            reason: "buffer refill".into(),
        }),
        registered("h1", "1.0.0", 2),
        registered("h2", "1.0.0", 2),
        Event::TokenRedeemed(TokenRedeemed {
            token_id: "t1".into(),
            session_id: "s1".into(),
            app_id: "game".into(),
            user_id: "u1".into(),
            group_id: None,
            client_ip: "192.0.2.7".into(),
            region: "eu".into(),
            route_reason: "nearest by location: 412 km".into(),
        }),
        Event::SessionAssigned(SessionAssigned {
            host_id: "h1".into(),
            session_id: "s1".into(),
        }),
        Event::SessionProvisioned(SessionProvisioned {
            session_id: "s1".into(),
            token_id: "t1".into(),
            app_id: "game".into(),
            user_id: "u1".into(),
            group_id: None,
            region: "eu".into(),
            host_id: "h1".into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            credential_hash: "c0ffee-credential-hash".into(),
            placement_reason: "buffer host".into(),
            restored_from: None,
        }),
        beat("h1", 8, &["s1", "s9"]),
        beat("h2", 9, &[]),
        Event::VersionReleased(VersionReleased {
            app_id: "game".into(),
            version: "2.0.0".into(),
            previous: Some("1.0.0".into()),
            urgent: false,
            deadline: None,
        }),
        Event::HostDraining(HostDraining {
            host_id: "h1".into(),
            new_version: "2.0.0".into(),
            deadline: None,
        }),
        registered("h3", "2.0.0", 4),
        Event::DiscrepancyOpened(DiscrepancyOpened {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s9".into(),
            kind: DiscrepancyKind::UnknownSession,
            detail: "h1 reports s9, never recorded".into(),
        }),
        beat("h1", 14, &[]),
        Event::SessionEnded(SessionEnded {
            session_id: "s1".into(),
            host_id: "h1".into(),
            reason: SessionEndReason::Lost,
            saved_state: None,
        }),
        Event::SessionReleased(SessionReleased {
            host_id: "h1".into(),
            session_id: "s1".into(),
        }),
        Event::DiscrepancyResolved(DiscrepancyResolved {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s9".into(),
            host_runs_session: false,
            resolution: "told h1 to stop s9".into(),
        }),
        Event::HostRemoved(HostRemoved {
            host_id: "h2".into(),
            reason: HostRemovalReason::Outdated,
            sessions: vec![],
        }),
        Event::HostRemoved(HostRemoved {
            host_id: "h1".into(),
            reason: HostRemovalReason::Outdated,
            sessions: vec![],
        }),
    ];
    events
        .into_iter()
        .chain(instance_events())
        .chain(migration_events())
        .chain(dfs_events(dfs_from()))
        .enumerate()
        .map(|(i, e)| (at(i as i64 + 1), e))
        .collect()
}

/// Applies `history()[..n]` (positions 1..=n) to a fresh view set.
pub fn views_after(n: usize) -> streamfleet_projections::views::ViewSet {
    let mut views = streamfleet_projections::views::ViewSet::default();
    for (i, (time, event)) in history().into_iter().take(n).enumerate() {
        views.apply(i as u64 + 1, time, Some(&event));
    }
    views
}

/// The position of the first event matching `f`.
pub fn position_of(f: impl Fn(&Event) -> bool) -> usize {
    history()
        .iter()
        .position(|(_, e)| f(e))
        .expect("the history has such an event")
        + 1
}
