//! Pure folds: the scripted history applied to the views without I/O.

mod common;

use common::{at, views_after};
use prost::Message;
use std::time::Duration;
use streamfleet_projections::pb::{
    Agreement, HostStatus, InstanceRow, InstanceStatus, Liveness, RecordedStatus, SessionStatus,
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
    let c1 = v
        .instances
        .view
        .hosts
        .get("c1")
        .expect("c1 from its instances");
    assert_eq!(
        (c1.instances, c1.used_cpus, c1.used_memory_mib),
        (1, 4, 8192)
    );
    assert_eq!(
        (c1.region.as_str(), c1.hypervisor.as_str(), c1.cpus),
        ("eu", "qemu", 0)
    );
    assert!(c1.registered_at.is_none());
    let n = events.len();
    for (i, (time, event)) in registrations.iter().enumerate() {
        v.apply((n + i) as u64 + 1, *time, Some(event));
    }
    let c1 = v.instances.view.hosts.get("c1").expect("c1");
    assert_eq!(
        (c1.instances, c1.used_cpus, c1.used_memory_mib),
        (1, 4, 8192)
    );
    assert_eq!((c1.cpus, c1.memory_mib), (8, 16384));
    assert!(c1.registered_at.is_some());
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
