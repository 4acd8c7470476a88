//! Pure folds: the scripted history applied to the views without I/O.

mod common;

use common::{at, views_after};
use prost::Message;
use std::time::Duration;
use streamfleet_projections::pb::{Agreement, HostStatus, Liveness, RecordedStatus, SessionStatus};
use streamfleet_projections::views::heartbeats::{host_liveness, session_liveness};

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
