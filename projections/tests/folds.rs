//! Pure folds: the scripted history applied to the views without I/O.

mod common;

use common::{at, views_after};
use prost::Message;
use std::time::Duration;
use streamfleet_projections::pb::{
    Agreement, HostStatus, InstanceRow, InstanceStatus, Liveness, MigrationRow, RecordedStatus,
    SessionStatus,
};
use streamfleet_projections::rows::timestamp;
use streamfleet_projections::views::ViewSet;
use streamfleet_projections::views::heartbeats::{host_liveness, session_liveness};
use streamfleet_projections::views::instances::capability_rows;

const INTERVAL: Duration = Duration::from_secs(5);

#[test]
fn heartbeats_count_reports_and_keep_the_last_stats() {
    let v = views_after(9);
    let hb = &v.heartbeats.view;
    let h1 = hb.hosts.get("h1").expect("h1 reported");
    assert_eq!((h1.reports, h1.sessions_reported), (1, 2));
    assert_eq!(h1.region, "eu");
    let s1 = hb.sessions.get("s1").expect("s1 reported");
    assert_eq!(s1.heartbeats, 1);
    assert_eq!(s1.last_stats.as_ref().map(|s| s.fps), Some(60));
    // Reported but never provisioned: kept as a reported-only row.
    assert_eq!(
        hb.sessions.get("s9").map(|s| s.host_id.as_str()),
        Some("h1")
    );
}

#[test]
fn liveness_is_late_after_two_intervals_and_lost_from_events() {
    let v = views_after(14);
    let hb = &v.heartbeats.view;
    let h1 = hb.hosts.get("h1").expect("h1");
    // Last report recorded at position 14 = t0 + 14 s.
    assert_eq!(host_liveness(h1, at(20), INTERVAL).0, Liveness::Ok);
    let (late, age) = host_liveness(h1, at(25), INTERVAL);
    assert_eq!((late, age), (Liveness::Late, 11_000));
    let s1 = hb.sessions.get("s1").expect("s1");
    assert_eq!(session_liveness(s1, at(30), INTERVAL).0, Liveness::Late);

    let v = views_after(19);
    let hb = &v.heartbeats.view;
    let s1 = hb.sessions.get("s1").expect("s1");
    assert!(s1.lost && s1.ended);
    assert_eq!(session_liveness(s1, at(20), INTERVAL).0, Liveness::Lost);
    let h2 = hb.hosts.get("h2").expect("h2");
    assert_eq!(host_liveness(h2, at(20), INTERVAL).0, Liveness::Gone);

    // h3 registered at t0 + 12 s and never reported: late from registration.
    let (regions, apps) = hb.counts(at(40), INTERVAL);
    assert_eq!(regions.len(), 1);
    let eu = &regions[0];
    assert_eq!(eu.key, "eu");
    assert_eq!((eu.hosts_ok, eu.hosts_late, eu.hosts_lost), (0, 1, 0));
    assert_eq!(
        (eu.sessions_lost, eu.sessions_late),
        (1, 1),
        "s1 lost, s9 late"
    );
    assert_eq!(apps[0].key, "game");
}

#[test]
fn consistency_compares_recorded_and_reported() {
    let v = views_after(8);
    let c = &v.consistency.view;
    let s1 = c.sessions.get("s1").expect("s1");
    assert_eq!(s1.recorded_status(), RecordedStatus::Active);
    assert_eq!(s1.agreement(), Agreement::Agrees);
    let s9 = c.sessions.get("s9").expect("s9");
    assert_eq!(s9.recorded_status(), RecordedStatus::None);
    assert_eq!(s9.agreement(), Agreement::UnknownSession);

    // h1's report at position 14 leaves s1 out.
    let v = views_after(14);
    let s1 = v.consistency.view.sessions.get("s1").expect("s1");
    assert!(s1.missing_from_last_report);
    assert_eq!(s1.agreement(), Agreement::MissingFromReport);
    let d1 = v.consistency.view.discrepancies.get("d1").expect("d1");
    assert_eq!(d1.kind, "unknown_session");
    assert!(d1.resolved_at.is_none());

    let v = views_after(19);
    let c = &v.consistency.view;
    let s1 = c.sessions.get("s1").expect("s1");
    assert_eq!(s1.recorded_status(), RecordedStatus::Ended);
    assert_eq!(s1.end_reason, "lost");
    assert_eq!(s1.agreement(), Agreement::Agrees);
    let d1 = c.discrepancies.get("d1").expect("d1");
    assert_eq!(d1.host_runs_session, Some(false));
    assert_eq!(d1.resolution, "told h1 to stop s9");
    assert!(d1.resolved_at.is_some());
}

#[test]
fn sessions_join_redemption_and_provisioning_without_credentials() {
    let v = views_after(5);
    let s1 = v.sessions.view.sessions.get("s1").expect("redeemed");
    assert_eq!(s1.status(), SessionStatus::Redeemed);
    assert_eq!(s1.route_reason, "nearest by location: 412 km");

    let v = views_after(19);
    let s1 = v.sessions.view.sessions.get("s1").expect("s1");
    assert_eq!(s1.status(), SessionStatus::Ended);
    assert_eq!(s1.route_reason, "nearest by location: 412 km");
    assert_eq!(s1.placement_reason, "buffer host");
    assert_eq!(s1.connect_to, "10.0.0.1:7000");
    assert_eq!(
        (s1.host_id.as_str(), s1.end_reason.as_str()),
        ("h1", "lost")
    );
    let bytes = s1.encode_to_vec();
    assert!(
        !bytes.windows(6).any(|w| w == b"c0ffee"),
        "the credential hash is never stored"
    );
}

#[test]
fn hosts_and_pools_follow_slots_and_buffer() {
    let v = views_after(2);
    let pool = v.hosts.view.pools.get("eu/game").expect("pool");
    assert_eq!(
        (pool.buffer_target, pool.requested_hosts, pool.hosts),
        (2, 1, 0)
    );

    let v = views_after(7);
    let h = &v.hosts.view;
    assert_eq!(
        h.hosts.get("h1").map(|r| r.sessions.clone()),
        Some(vec!["s1".to_string()])
    );
    let pool = h.pools.get("eu/game").expect("pool");
    assert_eq!((pool.hosts, pool.requested_hosts), (2, 0));
    assert_eq!((pool.sessions, pool.free_slots, pool.idle_hosts), (1, 3, 1));

    // h1 drains (its slots no longer count), h3 registers.
    let v = views_after(12);
    let pool = v.hosts.view.pools.get("eu/game").expect("pool");
    assert_eq!((pool.active_hosts, pool.draining_hosts), (2, 1));
    assert_eq!((pool.free_slots, pool.idle_hosts), (6, 2));

    let v = views_after(19);
    let h = &v.hosts.view;
    let h1 = h.hosts.get("h1").expect("h1");
    assert_eq!(h1.status(), HostStatus::Removed);
    assert_eq!(h1.removal_reason, "outdated");
    let pool = h.pools.get("eu/game").expect("pool");
    assert_eq!(
        (pool.hosts, pool.sessions, pool.idle_hosts, pool.free_slots),
        (1, 0, 1, 4)
    );
}

#[test]
fn rollouts_wait_for_old_hosts_until_none_is_live() {
    let v = views_after(10);
    let r = v.rollouts.view.rollouts.get("game").expect("released");
    assert_eq!(
        (r.current_version.as_str(), r.previous_version.as_str()),
        ("2.0.0", "1.0.0")
    );
    assert_eq!((r.hosts_current, r.hosts_old, r.completed), (0, 2, false));
    assert_eq!(
        r.waiting_for,
        vec![
            "host h1 runs 1.0.0, not draining yet: 1 session".to_string(),
            "host h2 runs 1.0.0, not draining yet: 0 sessions".to_string(),
        ]
    );

    let v = views_after(16);
    let r = v.rollouts.view.rollouts.get("game").expect("released");
    assert_eq!((r.hosts_current, r.hosts_old), (1, 2));
    assert_eq!(r.waiting_for[0], "host h1 drains: 0 sessions");

    let v = views_after(19);
    let r = v.rollouts.view.rollouts.get("game").expect("released");
    assert_eq!((r.hosts_current, r.hosts_old, r.completed), (1, 0, true));
    assert!(r.waiting_for.is_empty());
}

#[test]
fn urgent_drain_names_the_termination_time() {
    use streamfleet_bus_schemas::Event;
    use streamfleet_bus_schemas::payloads::HostDraining;
    let mut v = views_after(10);
    v.apply(
        11,
        at(11),
        Some(&Event::HostDraining(HostDraining {
            host_id: "h2".into(),
            new_version: "2.0.0".into(),
            deadline: Some(at(3600)),
        })),
    );
    let r = v.rollouts.view.rollouts.get("game").expect("released");
    assert_eq!(
        r.waiting_for[1],
        "host h2 terminated at 2026-05-01T13:00:00Z: 0 sessions"
    );
}

#[test]
fn positions_move_for_every_event_and_only_forward() {
    let mut v = views_after(19);
    assert_eq!(v.position(), 19);
    v.apply(20, at(20), None);
    assert_eq!(v.positions().iter().map(|(_, p)| *p).min(), Some(20));
    let before = v.hosts.view.hosts.get("h3").cloned();
    // An old position again changes nothing.
    let (_, first) = common::history().remove(2);
    v.apply(3, at(3), Some(&first));
    assert_eq!(v.hosts.view.hosts.get("h3").cloned(), before);
}

/// The instance view's row of `id` after positions `1..=n`.
fn instance_after(n: usize, id: &str) -> InstanceRow {
    views_after(n)
        .instances
        .view
        .instances
        .get(id)
        .cloned()
        .expect("the instance has a row")
}

/// `(instances, used cpus, used memory)` of a compute host after positions `1..=n`.
fn compute_host_after(n: usize, host: &str) -> (u32, u32, u32) {
    let v = views_after(n);
    let h = v
        .instances
        .view
        .hosts
        .get(host)
        .expect("the host has a row");
    (h.instances, h.used_cpus, h.used_memory_mib)
}

#[test]
fn an_instance_launches_reboots_changes_stops_starts_and_terminates() {
    // Chosen: why and the offer, not placed yet.
    let i1 = instance_after(22, "i1");
    assert_eq!(i1.status(), InstanceStatus::Unspecified);
    assert_eq!(i1.hypervisor, "qemu");
    assert_eq!(i1.hypervisor_reasons, ["qemu runs the image"]);
    let offer = i1.offer.expect("an offer");
    assert_eq!(
        (offer.hypervisor.as_str(), offer.reason.as_str(), offer.cost),
        ("crun", "cheaper: 3 vs 12 per hour", 3)
    );

    let i1 = instance_after(23, "i1");
    assert_eq!(i1.status(), InstanceStatus::Booting);
    assert_eq!(
        (i1.host_id.as_str(), i1.region.as_str(), i1.image.as_str()),
        ("c1", "eu", "debian-12")
    );
    assert_eq!((i1.cpus, i1.memory_mib, i1.boots, i1.pid), (2, 2048, 0, 0));
    assert_eq!(
        (i1.private_address.as_str(), i1.public_address.as_str()),
        ("10.77.0.2", "198.18.0.2")
    );
    assert_eq!(i1.placement_reasons, ["c1 has the most free cpus"]);
    assert_eq!(i1.features, ["snapshot"]);
    assert!(
        i1.offer.is_some(),
        "the placement keeps the hypervisor's why"
    );
    assert!(i1.placed_at.is_some() && i1.launched_at.is_none());

    let i1 = instance_after(24, "i1");
    assert_eq!(i1.status(), InstanceStatus::Running);
    assert_eq!((i1.boots, i1.pid), (1, 4242));
    assert_eq!(i1.launched_at, Some(timestamp(at(24))));

    // A reboot by command: booting until the host reports it running again.
    let i1 = instance_after(28, "i1");
    assert_eq!(
        (i1.status(), i1.boots, i1.pid),
        (InstanceStatus::Booting, 1, 0)
    );
    let i1 = instance_after(29, "i1");
    assert_eq!(
        (i1.status(), i1.boots, i1.pid),
        (InstanceStatus::Running, 2, 4300)
    );

    let i1 = instance_after(32, "i1");
    assert_eq!(
        i1.volumes
            .iter()
            .map(|v| (v.volume_id.as_str(), v.size_mib))
            .collect::<Vec<_>>(),
        [("root", 10240), ("data", 2048)]
    );
    assert_eq!(
        (i1.networks.clone(), i1.snapshots.clone()),
        (vec!["backend".to_string()], vec!["snap1".to_string()])
    );

    // A guest reboot: still running, one more boot.
    let i1 = instance_after(33, "i1");
    assert_eq!(
        (i1.status(), i1.boots, i1.pid),
        (InstanceStatus::Running, 3, 4300)
    );

    let i1 = instance_after(34, "i1");
    assert_eq!((i1.status(), i1.pid), (InstanceStatus::Stopped, 0));
    let i1 = instance_after(35, "i1");
    assert_eq!((i1.status(), i1.boots), (InstanceStatus::Booting, 3));
    let i1 = instance_after(36, "i1");
    assert_eq!(
        (i1.status(), i1.boots, i1.pid),
        (InstanceStatus::Running, 4, 4400)
    );

    let i1 = instance_after(41, "i1");
    assert_eq!((i1.status(), i1.pid), (InstanceStatus::Terminated, 0));
    assert_eq!(i1.updated_at, Some(timestamp(at(40))));
    assert_eq!(i1.volumes.len(), 2, "the record of its disks stays");

    let i2 = instance_after(41, "i2");
    assert_eq!(i2.status(), InstanceStatus::Failed);
    assert_eq!(i2.failure_reason, "crun: container exited 137");
    assert!(i2.offer.is_none());
}

#[test]
fn compute_hosts_count_what_booting_and_running_instances_hold() {
    let v = views_after(21);
    let c1 = v.instances.view.hosts.get("c1").expect("c1");
    assert_eq!(
        (
            c1.region.as_str(),
            c1.hypervisor.as_str(),
            c1.cpus,
            c1.memory_mib
        ),
        ("eu", "qemu", 8, 16384)
    );
    assert_eq!(c1.detail, "qemu on c1");
    assert!(c1.registered_at.is_some());
    assert_eq!(compute_host_after(21, "c1"), (0, 0, 0));
    // Booting holds already, running goes on holding.
    assert_eq!(compute_host_after(23, "c1"), (1, 2, 2048));
    assert_eq!(compute_host_after(27, "c2"), (1, 1, 512));
    // Booting again after a reboot by command: still held.
    assert_eq!(compute_host_after(28, "c1"), (1, 2, 2048));
    // Stopped gives them back, started takes them again.
    assert_eq!(compute_host_after(34, "c1"), (0, 0, 0));
    assert_eq!(compute_host_after(35, "c1"), (1, 2, 2048));
    // Failed gives them back.
    assert_eq!(compute_host_after(37, "c2"), (0, 0, 0));
    assert_eq!(compute_host_after(39, "c1"), (2, 6, 10240));
    // Terminated gives them back.
    assert_eq!(compute_host_after(40, "c1"), (1, 4, 8192));
    assert_eq!(compute_host_after(41, "c1"), (1, 4, 8192));
}

#[test]
fn a_host_placed_on_before_it_registered_still_counts_its_instances() {
    use streamfleet_bus_schemas::Event;
    let registration = |e: &Event| matches!(e, Event::ComputeHostRegistered(_));
    let mut events = common::history();
    let registrations: Vec<_> = events
        .iter()
        .filter(|(_, e)| registration(e))
        .cloned()
        .collect();
    events.retain(|(_, e)| !registration(e));
    let mut v = ViewSet::default();
    for (i, (time, event)) in events.iter().enumerate() {
        v.apply(i as u64 + 1, *time, Some(event));
    }
    // i3 ran on c1, then a migration moved it to c3: both unregistered.
    let c1 = v
        .instances
        .view
        .hosts
        .get("c1")
        .expect("c1 from its instances");
    assert_eq!((c1.instances, c1.used_cpus, c1.used_memory_mib), (0, 0, 0));
    assert_eq!(
        (c1.region.as_str(), c1.hypervisor.as_str(), c1.cpus),
        ("eu", "qemu", 0)
    );
    assert!(c1.registered_at.is_none());
    let c3 = v
        .instances
        .view
        .hosts
        .get("c3")
        .expect("c3 from the instance moved there");
    assert_eq!(
        (c3.instances, c3.used_cpus, c3.used_memory_mib),
        (1, 4, 8192)
    );
    assert_eq!(
        (c3.region.as_str(), c3.hypervisor.as_str(), c3.cpus),
        ("eu", "qemu", 0)
    );
    assert!(c3.registered_at.is_none());
    let n = events.len();
    for (i, (time, event)) in registrations.iter().enumerate() {
        v.apply((n + i) as u64 + 1, *time, Some(event));
    }
    let c3 = v.instances.view.hosts.get("c3").expect("c3");
    assert_eq!(
        (c3.instances, c3.used_cpus, c3.used_memory_mib),
        (1, 4, 8192)
    );
    assert_eq!((c3.cpus, c3.memory_mib), (8, 16384));
    assert!(c3.registered_at.is_some());
}

#[test]
fn instances_follow_the_domain_fold_at_every_position() {
    use std::collections::BTreeMap;
    use streamfleet_bus_schemas::Event;
    use streamfleet_domain::State;
    use streamfleet_domain::fleet::Fleet;

    fn instance_of(e: &Event) -> Option<&str> {
        Some(match e {
            Event::HypervisorChosen(e) => e.instance_id.as_str(),
            Event::InstancePlaced(e) => e.instance_id.as_str(),
            Event::InstanceLaunched(e) => e.instance_id.as_str(),
            Event::InstanceStopped(e) => e.instance_id.as_str(),
            Event::InstanceStarted(e) => e.instance_id.as_str(),
            Event::InstanceRebooted(e) => e.instance_id.as_str(),
            Event::InstanceTerminated(e) => e.instance_id.as_str(),
            Event::VolumeAttached(e) => e.instance_id.as_str(),
            Event::VolumeDetached(e) => e.instance_id.as_str(),
            Event::NetworkAttached(e) => e.instance_id.as_str(),
            Event::NetworkDetached(e) => e.instance_id.as_str(),
            Event::SnapshotTaken(e) => e.instance_id.as_str(),
            Event::InstanceFailed(e) => e.instance_id.as_str(),
            Event::InstanceMoved(e) => e.instance_id.as_str(),
            _ => return None,
        })
    }

    let mut v = ViewSet::default();
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    let mut fleet = Fleet::default();
    for (i, (time, event)) in common::history().into_iter().enumerate() {
        v.apply(i as u64 + 1, time, Some(&event));
        fleet.evolve(&event);
        if let Some(id) = instance_of(&event) {
            let state = states.remove(id).unwrap_or_default();
            states.insert(id.to_string(), streamfleet_domain::evolve(state, &event));
        }
        let view = &v.instances.view;
        assert_eq!(view.instances.len(), states.len(), "at {}", i + 1);
        for (id, state) in &states {
            let row = view.instances.get(id).expect("a row per instance");
            let State::Instance(s) = state else {
                assert_eq!(
                    row.status(),
                    InstanceStatus::Unspecified,
                    "{id} at {}",
                    i + 1
                );
                continue;
            };
            assert_eq!(
                row.status().as_str_name(),
                format!("INSTANCE_STATUS_{}", s.status.name().to_uppercase()),
                "{id} at {}",
                i + 1
            );
            assert_eq!(row.boots, s.boots, "{id} at {}", i + 1);
            assert_eq!(
                (
                    row.host_id.as_str(),
                    row.region.as_str(),
                    row.image.as_str()
                ),
                (s.host_id.as_str(), s.region.as_str(), s.image.as_str())
            );
            assert_eq!(row.hypervisor, s.hypervisor.name());
            assert_eq!((row.cpus, row.memory_mib), (s.cpus, s.memory_mib));
            assert_eq!(
                (&row.private_address, &row.public_address),
                (&s.addresses.private, &s.addresses.public)
            );
            let volumes: Vec<(&str, u32)> = row
                .volumes
                .iter()
                .map(|v| (v.volume_id.as_str(), v.size_mib))
                .collect();
            let expected: Vec<(&str, u32)> = s
                .volumes
                .iter()
                .map(|v| (v.volume_id.as_str(), v.size_mib))
                .collect();
            assert_eq!(volumes, expected);
            assert_eq!((&row.networks, &row.snapshots), (&s.networks, &s.snapshots));
        }
        for (host_id, h) in &fleet.hosts {
            let row = view.hosts.get(host_id).expect("a row per registered host");
            assert_eq!(
                (
                    row.instances,
                    row.used_cpus,
                    row.used_memory_mib,
                    row.cpus,
                    row.memory_mib
                ),
                (
                    h.instances,
                    h.used_cpus,
                    h.used_memory_mib,
                    h.cpus,
                    h.memory_mib
                ),
                "{host_id} at {}",
                i + 1
            );
        }
    }
    assert_eq!(states.len(), 3);
}

#[test]
fn the_capability_table_is_the_domains() {
    let rows = capability_rows();
    assert_eq!(
        rows.iter()
            .map(|c| c.hypervisor.as_str())
            .collect::<Vec<_>>(),
        ["qemu", "crun", "sim"]
    );
    assert_eq!(rows[0].os, ["linux", "windows"]);
    assert!(rows[0].features.iter().any(|f| f == "snapshot"));
    assert!(!rows[1].features.iter().any(|f| f == "snapshot"));
    assert_eq!(
        rows.len(),
        streamfleet_domain::hypervisor::CAPABILITIES.len()
    );
}

/// The migration view's row of `id` after positions `1..=n` (`None`: no row).
fn migration_after(n: usize, id: &str) -> Option<MigrationRow> {
    views_after(n).migrations.view.migrations.get(id).cloned()
}

#[test]
fn a_migration_syncs_moves_completes_and_moves_its_instance() {
    use common::{DISK_BYTES, MIGRATIONS_FROM};
    assert!(migration_after(MIGRATIONS_FROM, "m1").is_none());
    let m1 = migration_after(43, "m1").expect("scheduled");
    assert_eq!(m1.step, "scheduled");
    assert_eq!(
        (
            m1.instance_id.as_str(),
            m1.source_host.as_str(),
            m1.target_host.as_str()
        ),
        ("i3", "c1", "c3")
    );
    assert_eq!(
        (
            m1.reason.as_str(),
            m1.customer.as_str(),
            m1.hypervisor.as_str()
        ),
        ("host retirement", "acme", "qemu")
    );
    assert_eq!(m1.deadline, Some(timestamp(at(86_400))));
    assert_eq!((m1.sync_interval_seconds, m1.matched.len()), (5, 3));
    assert_eq!(m1.scheduled_at, Some(timestamp(at(43))));
    assert!(m1.trigger.is_empty() && !m1.over && m1.last_notice.is_empty());

    let m1 = migration_after(45, "m1").expect("m1");
    assert_eq!((m1.step.as_str(), m1.volume_bytes), ("syncing", DISK_BYTES));
    // The full copy, then the notice, then an incremental round.
    let m1 = migration_after(48, "m1").expect("m1");
    assert_eq!(
        (
            m1.step.as_str(),
            m1.rounds,
            m1.bytes_synced,
            m1.dirty_bytes_left
        ),
        ("synced", 1, DISK_BYTES, 65_536)
    );
    assert_eq!(m1.last_notice_kind, "scheduled");
    assert!(m1.last_notice.starts_with("Your instance i3 moves"));
    let m1 = migration_after(49, "m1").expect("m1");
    assert_eq!(
        (m1.rounds, m1.bytes_synced, m1.dirty_bytes_left),
        (2, DISK_BYTES + 65_536, 4096)
    );

    let m1 = migration_after(50, "m1").expect("m1");
    assert_eq!(
        (m1.step.as_str(), m1.trigger.as_str()),
        ("started", "reboot")
    );
    assert_eq!(m1.guest_stopped_at, Some(timestamp(at(50))));
    let m1 = migration_after(52, "m1").expect("m1");
    assert_eq!(
        (m1.step.as_str(), m1.bytes_synced, m1.dirty_bytes_left),
        ("final_synced", DISK_BYTES + 65_536 + 4096, 0)
    );
    let m1 = migration_after(54, "m1").expect("m1");
    assert_eq!((m1.step.as_str(), m1.boot_ms), ("target_launched", 800));

    // The target reports the instance moved: it runs on c3, which holds it now.
    let i3 = instance_after(55, "i3");
    assert_eq!(
        (i3.host_id.as_str(), i3.status(), i3.pid, i3.boots),
        ("c3", InstanceStatus::Running, 6000, 2)
    );
    assert_eq!(compute_host_after(54, "c1"), (1, 4, 8192));
    assert_eq!(compute_host_after(55, "c1"), (0, 0, 0));
    assert_eq!(compute_host_after(55, "c3"), (1, 4, 8192));

    let m1 = migration_after(58, "m1").expect("m1");
    assert_eq!(m1.step, "completed");
    assert!(m1.over);
    assert_eq!(
        (m1.downtime_ms, m1.boot_ms, m1.control_plane_ms),
        (1500, 800, 700)
    );
    assert_eq!(m1.ended_at, Some(timestamp(at(57))));
    assert_eq!(m1.updated_at, Some(timestamp(at(58))));
    assert_eq!(m1.last_notice_kind, "completed");
    assert!(m1.failed_step.is_empty() && m1.failure_cause.is_empty());
}

#[test]
fn a_failed_migration_is_rolled_back_and_a_cancelled_one_ends() {
    let m2 = migration_after(62, "m2").expect("m2");
    assert_eq!(m2.step, "failed");
    assert!(!m2.over, "failed: the source still undoes the move");
    assert_eq!(
        (
            m2.failed_step.as_str(),
            m2.failure_cause.as_str(),
            m2.failure_host.as_str()
        ),
        ("initial_sync", "nbd: connection reset", "c3")
    );
    let v = views_after(history_len());
    let m = &v.migrations.view.migrations;
    let m2 = m.get("m2").expect("m2");
    assert_eq!((m2.step.as_str(), m2.over), ("rolled_back", true));
    assert_eq!(
        m2.failed_step, "initial_sync",
        "the failure stays on record"
    );
    assert_eq!(m2.last_notice_kind, "rolled_back");
    assert_eq!(m2.ended_at, Some(timestamp(at(63))));
    let m3 = m.get("m3").expect("m3");
    assert_eq!((m3.step.as_str(), m3.over), ("cancelled", true));
    assert_eq!(m3.cancel_reason, "the customer asked to wait");
    assert_eq!(m3.last_notice_kind, "cancelled");
    // A step of a migration never scheduled has nothing to fold into.
    assert!(m.get("m9").is_none());
    assert_eq!(m.len(), 3);
    // The instance stayed on c3.
    let i3 = v.instances.view.instances.get("i3").expect("i3");
    assert_eq!(i3.host_id, "c3");
}

fn history_len() -> usize {
    common::history().len()
}

#[test]
fn migrations_follow_the_domain_fold_at_every_position() {
    use std::collections::BTreeMap;
    use streamfleet_bus_schemas::Event;
    use streamfleet_domain::State;

    fn migration_of(e: &Event) -> Option<&str> {
        Some(match e {
            Event::MigrationScheduled(e) => e.migration_id.as_str(),
            Event::MigrationTargetReady(e) => e.migration_id.as_str(),
            Event::VolumeSyncStarted(e) => e.migration_id.as_str(),
            Event::VolumeSyncRound(e) => e.migration_id.as_str(),
            Event::VolumeSynced(e) => e.migration_id.as_str(),
            Event::CustomerNotified(e) => e.migration_id.as_str(),
            Event::MigrationStarted(e) => e.migration_id.as_str(),
            Event::MigrationNetworkDetached(e) => e.migration_id.as_str(),
            Event::MigrationFinalSynced(e) => e.migration_id.as_str(),
            Event::MigrationSourceStopped(e) => e.migration_id.as_str(),
            Event::MigrationTargetLaunched(e) => e.migration_id.as_str(),
            Event::MigrationNetworkAttached(e) => e.migration_id.as_str(),
            Event::MigrationCompleted(e) => e.migration_id.as_str(),
            Event::MigrationFailed(e) => e.migration_id.as_str(),
            Event::MigrationRolledBack(e) => e.migration_id.as_str(),
            Event::MigrationCancelled(e) => e.migration_id.as_str(),
            _ => return None,
        })
    }

    let mut v = ViewSet::default();
    // By stream, as the node folds them.
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    for (i, (time, event)) in common::history().into_iter().enumerate() {
        let at = i + 1;
        v.apply(at as u64, time, Some(&event));
        if let Some(id) = migration_of(&event) {
            let state = states.remove(id).unwrap_or_default();
            states.insert(id.to_string(), streamfleet_domain::evolve(state, &event));
        }
        let view = &v.migrations.view;
        let folded: BTreeMap<&String, _> = (states.iter())
            .filter_map(|(id, s)| match s {
                State::Migration(m) => Some((id, m)),
                _ => None,
            })
            .collect();
        assert_eq!(
            view.migrations.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            folded.keys().copied().collect::<Vec<_>>(),
            "a row per scheduled migration at {at}"
        );
        for (id, s) in folded {
            let row = view.migrations.get(id).expect("a row");
            let p = &s.plan;
            assert_eq!(row.step, s.step.name(), "{id} at {at}");
            assert_eq!(row.over, s.step.is_over(), "{id} at {at}");
            assert_eq!(
                (row.rounds, row.bytes_synced, row.dirty_bytes_left),
                (s.rounds, s.bytes_synced, s.dirty_bytes_left),
                "{id} at {at}"
            );
            assert_eq!(
                row.trigger,
                s.trigger.map_or("", |t| t.name()),
                "{id} at {at}"
            );
            assert_eq!(
                row.guest_stopped_at,
                s.guest_stopped_at.map(timestamp),
                "{id} at {at}"
            );
            assert_eq!(row.boot_ms, s.boot_ms.unwrap_or(0), "{id} at {at}");
            assert_eq!(row.downtime_ms, s.downtime_ms.unwrap_or(0), "{id} at {at}");
            assert_eq!(
                (row.failed_step.clone(), row.failure_cause.clone()),
                s.failure.clone().unwrap_or_default(),
                "{id} at {at}"
            );
            assert_eq!(
                (
                    row.instance_id.as_str(),
                    row.source_host.as_str(),
                    row.target_host.as_str(),
                    row.reason.as_str(),
                    row.customer.as_str(),
                ),
                (
                    p.instance_id.as_str(),
                    p.source_host.as_str(),
                    p.target_host.as_str(),
                    p.reason.as_str(),
                    p.customer.as_str(),
                ),
                "{id} at {at}"
            );
            assert_eq!(row.deadline, Some(timestamp(p.deadline)));
            assert_eq!(row.hypervisor, p.hypervisor.name());
            assert_eq!(row.matched, p.matched);
            assert_eq!(row.sync_interval_seconds, p.sync_interval_seconds);
        }
    }
    assert_eq!(states.len(), 4, "m1, m2, m3 and the stray m9");
}

/// The nodes view's row of `id` after positions `1..=n` (`None`: no row).
fn node_after(n: usize, id: &str) -> Option<streamfleet_projections::pb::NodeRow> {
    views_after(n).nodes.view.nodes.get(id).cloned()
}

#[test]
fn a_file_systems_nodes_serve_checkpoint_fail_and_recover() {
    use common::dfs_from;
    let from = dfs_from();
    let p = |i: usize| from + i;
    assert!(views_after(from - 1).nodes.view.nodes.is_empty());

    // Declared: the plan of each node, launching, and the file system's row.
    let v = views_after(p(0));
    let fs1 = v.nodes.view.file_systems.get("fs1").expect("fs1");
    assert_eq!(
        (
            fs1.region.as_str(),
            fs1.goal,
            fs1.data_nodes,
            fs1.volume_mib
        ),
        ("eu", 2, 2, 256)
    );
    assert_eq!(fs1.nodes, ["fs1-master", "fs1-cs1", "fs1-cs2"]);
    assert_eq!((fs1.nodes_serving, fs1.nodes_failed), (0, 0));
    let m = v.nodes.view.nodes.get("fs1-master").expect("planned");
    assert_eq!(
        (
            m.role.as_str(),
            m.host_id.as_str(),
            m.address.as_str(),
            m.phase.as_str(),
            m.state.as_str()
        ),
        ("metadata", "d1", "10.99.0.10", "launching", "launching")
    );
    assert_eq!((m.cpus, m.memory_mib, m.generation), (1, 512, 0));

    let v = views_after(p(3));
    assert_eq!(
        v.nodes
            .view
            .file_systems
            .get("fs1")
            .expect("fs1")
            .nodes_serving,
        3
    );
    let m = node_after(p(5), "fs1-master").expect("row");
    assert_eq!(m.phase, "checkpointing");
    let c = m.last_checkpoint.expect("checkpoint");
    assert_eq!(
        (c.cause.as_str(), c.image_bytes, c.version, c.replayed),
        ("command", 4096, 10, 0)
    );
    assert_eq!(c.at, Some(timestamp(at(p(5) as i64))));
    let m = node_after(p(6), "fs1-master").expect("row");
    assert_eq!((m.phase.as_str(), m.pid), ("serving", 101));

    let m = node_after(p(7), "fs1-master").expect("row");
    assert_eq!(m.phase, "unresponsive");
    assert_eq!(m.last_answer_at, Some(timestamp(at(p(6) as i64))));
    assert_eq!(m.phase_since, Some(timestamp(at(p(7) as i64))));
    assert_eq!(
        node_after(p(8), "fs1-master").expect("row").phase,
        "serving"
    );

    // Failed on d1: a replacement on d2 fenced it and attached the volume, then failed there.
    let m = node_after(p(10), "fs1-master").expect("row");
    assert!(m.failed);
    assert_eq!((m.failures, m.failed_host.as_str()), (1, "d1"));
    assert_eq!(m.failure_host, "d1");
    assert!(m.failure_reason.starts_with("no answer for 6000 ms"));
    assert_eq!(m.failed_at, Some(timestamp(at(p(10) as i64))));
    let m = node_after(p(13), "fs1-master").expect("row");
    assert_eq!(
        (m.phase.as_str(), m.recovery_step.as_str(), m.state.as_str()),
        (
            "recovering",
            "volume_attached",
            "recovering (volume attached)"
        )
    );
    assert_eq!((m.host_id.as_str(), m.generation), ("d2", 1));
    assert_eq!(m.device, "/dev/nbd0");
    assert_eq!(m.fenced_at, Some(timestamp(at(p(12) as i64))));
    let v = views_after(p(14));
    let m = v.nodes.view.nodes.get("fs1-master").expect("row");
    assert_eq!(m.tried, ["d2"]);
    let f = m.last_recovery_failure.as_ref().expect("recovery failure");
    assert_eq!(
        (
            f.step.as_str(),
            f.host_id.as_str(),
            f.next_host.as_str(),
            f.generation
        ),
        ("checkpoint", "d2", "d3", 1)
    );
    assert_eq!(
        v.nodes
            .view
            .file_systems
            .get("fs1")
            .expect("fs1")
            .nodes_recovering,
        1
    );

    // Recovered on d3, placement 2: the recovery's checkpoint and figures, then a block report.
    let m = node_after(p(18), "fs1-master").expect("row");
    assert_eq!(
        (
            m.recovery_step.as_str(),
            m.last_checkpoint.expect("c").cause.as_str()
        ),
        ("checkpointed", "recovery")
    );
    let v = views_after(p(22));
    let m = v.nodes.view.nodes.get("fs1-master").expect("row");
    assert_eq!(
        (m.phase.as_str(), m.host_id.as_str(), m.generation, m.pid),
        ("serving", "d3", 2, 400)
    );
    assert!(!m.failed && m.failed_host.is_empty() && m.tried.is_empty());
    assert_eq!(m.failure_host, "d1", "the last failure stays on record");
    assert_eq!(m.failures, 1);
    let r = m.last_recovery.as_ref().expect("recovery");
    assert_eq!(
        (
            r.recovery_ms,
            r.fence_to_serving_ms,
            r.host_id.as_str(),
            r.generation
        ),
        (12_000, 9_000, "d3", 2)
    );
    assert_eq!(
        m.placement_reasons,
        ["d3: crun in eu with room; not d1, d2"]
    );
    let b = m.last_block_report.as_ref().expect("block report");
    assert_eq!((b.chunks, b.chunk_servers.len()), (23, 2));
    assert!(!b.chunk_servers[1].connected);
    assert_eq!(
        m.last_recovery_failure.as_ref().expect("kept").step,
        "checkpoint",
        "the last recovery failure stays on record"
    );

    // fs1-cs2 failed with no host left; n-legacy, outside any file system, failed by hand.
    let v = views_after(history_len());
    let cs2 = v.nodes.view.nodes.get("fs1-cs2").expect("cs2");
    assert_eq!(
        (cs2.phase.as_str(), cs2.state.as_str()),
        ("stuck", "failed, no host left")
    );
    assert_eq!(cs2.last_recovery_failure.as_ref().expect("f").next_host, "");
    let fs1 = v.nodes.view.file_systems.get("fs1").expect("fs1");
    assert_eq!(
        (fs1.nodes_serving, fs1.nodes_recovering, fs1.nodes_failed),
        (2, 0, 1)
    );
    let legacy = v.nodes.view.nodes.get("n-legacy").expect("legacy");
    assert_eq!(
        (
            legacy.phase.as_str(),
            legacy.file_system.as_str(),
            legacy.role.as_str()
        ),
        ("failed", "", "")
    );
    assert_eq!(v.nodes.view.file_systems.len(), 1);
    assert_eq!(v.nodes.view.nodes.len(), 4);
}

#[test]
fn nodes_follow_the_domain_fold_at_every_position() {
    use std::collections::{BTreeMap, BTreeSet};
    use streamfleet_bus_schemas::Event;
    use streamfleet_domain::State;
    use streamfleet_projections::views::nodes::{node_of, state_of};

    let mut v = ViewSet::default();
    // By stream, as the node folds them.
    let mut states: BTreeMap<String, State> = BTreeMap::new();
    let mut planned: BTreeSet<String> = BTreeSet::new();
    let mut types: BTreeSet<&str> = BTreeSet::new();
    for (i, (time, event)) in common::history().into_iter().enumerate() {
        let at = i + 1;
        v.apply(at as u64, time, Some(&event));
        if let Event::FileSystemCreated(e) = &event {
            planned.extend(e.nodes.iter().map(|n| n.node_id.to_string()));
        }
        if Event::category_of_type(event.type_name()) == Some("node") {
            types.insert(event.type_name());
            let id = node_of(&event)
                .expect("a node event names its node")
                .to_string();
            let state = states.remove(&id).unwrap_or_default();
            states.insert(id, streamfleet_domain::evolve(state, &event));
        }
        let view = &v.nodes.view;
        let mut expected: BTreeSet<&String> = planned.iter().collect();
        expected.extend(states.keys());
        assert_eq!(
            view.nodes.iter().map(|(id, _)| id).collect::<BTreeSet<_>>(),
            expected,
            "a row per planned or folded node at {at}"
        );
        for (id, s) in &states {
            let State::Node(s) = s else {
                panic!("{id} folds to a node at {at}");
            };
            let row = view.nodes.get(id).expect("a row");
            let mut held = state_of(row);
            // The domain learns these when the node first serves; the row has them from its
            // plan.
            if s.file_system.is_none() {
                held.file_system = None;
            }
            if s.role.is_none() {
                held.role = None;
            }
            if s.host_id.is_none() {
                held.host_id = None;
            }
            assert_eq!(&held, s, "{id} at {at}");
            assert_eq!(row.state, s.phase.name(), "{id} at {at}");
        }
    }
    // The history has every event of the `node` category.
    let all: BTreeSet<&str> = (Event::TYPES.iter().copied())
        .filter(|t| Event::category_of_type(t) == Some("node"))
        .collect();
    assert_eq!(types, all);
}
