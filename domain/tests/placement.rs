//! Region ranking and host placement, tested with plain values.

use std::collections::BTreeSet;
use std::net::IpAddr;
use streamfleet_bus_schemas::ids::{HostId, RegionId};
use streamfleet_domain::placement::{
    HostSlotView, IpLocation, Placement, RankedRegion, Region, distance_km, place, rank_regions,
};

fn region(name: &str, lat: f64, lon: f64) -> Region {
    Region {
        name: name.into(),
        lat,
        lon,
    }
}

/// Configured in this order on purpose: not nearest-first for Paris or Tokyo.
fn regions() -> Vec<Region> {
    vec![
        region("us-east", 39.0, -77.5),
        region("eu-west", 53.3, -6.3),
        region("ap-northeast", 35.7, 139.7),
    ]
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn names(ranked: &[RankedRegion]) -> Vec<&str> {
    ranked.iter().map(|r| r.region.as_str()).collect()
}

fn locations() -> Vec<IpLocation> {
    vec![
        // A wide prefix placed in Tokyo, a narrower one inside it placed in Paris.
        IpLocation::parse("198.51.0.0/16", "Tokyo", 35.7, 139.7).unwrap(),
        IpLocation::parse("198.51.100.0/24", "Paris", 48.9, 2.35).unwrap(),
        IpLocation::parse("2001:db8:1::/48", "Virginia", 38.9, -77.0).unwrap(),
        IpLocation::parse("2001:db8::/32", "Dublin", 53.3, -6.3).unwrap(),
    ]
}

// ---- rank_regions ----

#[test]
fn measured_latency_ranks_first_lowest_first() {
    let latencies: Vec<(RegionId, u32)> = vec![("ap-northeast".into(), 9), ("us-east".into(), 80)];
    // The IP is in Paris, but measurements win; the unmeasured region comes last.
    let ranked = rank_regions(ip("198.51.100.7"), &latencies, &regions(), &locations());
    assert_eq!(names(&ranked), ["ap-northeast", "us-east", "eu-west"]);
    assert_eq!(ranked[0].reason, "measured latency 9 ms");
    assert_eq!(ranked[1].reason, "measured latency 80 ms");
    assert!(ranked[2].reason.contains("Paris"), "{}", ranked[2].reason);
}

#[test]
fn latency_for_an_unknown_region_is_ignored() {
    let latencies: Vec<(RegionId, u32)> = vec![("mars-1".into(), 1)];
    let ranked = rank_regions(ip("203.0.113.1"), &latencies, &regions(), &[]);
    assert_eq!(names(&ranked), ["us-east", "eu-west", "ap-northeast"]);
}

#[test]
fn the_longest_matching_prefix_locates_the_client() {
    let ranked = rank_regions(ip("198.51.100.7"), &[], &regions(), &locations());
    assert_eq!(names(&ranked), ["eu-west", "us-east", "ap-northeast"]);
    assert!(
        ranked[0].reason.contains("Paris") && ranked[0].reason.contains("198.51.100.0/24"),
        "{}",
        ranked[0].reason
    );
    // Outside the /24 but inside the /16: Tokyo.
    let ranked = rank_regions(ip("198.51.7.7"), &[], &regions(), &locations());
    assert_eq!(ranked[0].region, "ap-northeast");
    assert!(ranked[0].reason.contains("Tokyo"), "{}", ranked[0].reason);
}

#[test]
fn prefix_order_in_the_table_does_not_matter() {
    let mut reversed = locations();
    reversed.reverse();
    let a = rank_regions(ip("198.51.100.7"), &[], &regions(), &locations());
    let b = rank_regions(ip("198.51.100.7"), &[], &regions(), &reversed);
    assert_eq!(a, b);
}

#[test]
fn ipv6_prefixes_locate_too() {
    let ranked = rank_regions(ip("2001:db8:1::42"), &[], &regions(), &locations());
    assert_eq!(ranked[0].region, "us-east");
    assert!(
        ranked[0].reason.contains("Virginia"),
        "{}",
        ranked[0].reason
    );
    let ranked = rank_regions(ip("2001:db8:ffff::1"), &[], &regions(), &locations());
    assert_eq!(ranked[0].region, "eu-west");
    assert!(ranked[0].reason.contains("Dublin"), "{}", ranked[0].reason);
    // An IPv4 prefix never matches an IPv6 address and vice versa.
    let v4_only = vec![IpLocation::parse("0.0.0.0/0", "Dublin", 53.3, -6.3).unwrap()];
    let ranked = rank_regions(ip("2001:db8::1"), &[], &regions(), &v4_only);
    assert_eq!(names(&ranked), ["us-east", "eu-west", "ap-northeast"]);
    assert!(ranked[0].reason.contains("unknown"), "{}", ranked[0].reason);
}

#[test]
fn an_unlocated_client_gets_the_configured_order() {
    let ranked = rank_regions(ip("203.0.113.1"), &[], &regions(), &locations());
    assert_eq!(names(&ranked), ["us-east", "eu-west", "ap-northeast"]);
    for r in &ranked {
        assert!(
            r.reason.contains("unknown") && r.reason.contains("203.0.113.1"),
            "{}",
            r.reason
        );
    }
}

#[test]
fn a_zero_length_prefix_matches_everything_and_loses_to_longer_ones() {
    let mut table = locations();
    table.push(IpLocation::parse("0.0.0.0/0", "Virginia", 38.9, -77.0).unwrap());
    let ranked = rank_regions(ip("203.0.113.1"), &[], &regions(), &table);
    assert_eq!(ranked[0].region, "us-east");
    let ranked = rank_regions(ip("198.51.100.7"), &[], &regions(), &table);
    assert_eq!(ranked[0].region, "eu-west");
}

#[test]
fn a_host_route_prefix_matches_only_its_address() {
    let table = vec![IpLocation::parse("203.0.113.5/32", "Tokyo", 35.7, 139.7).unwrap()];
    assert_eq!(
        rank_regions(ip("203.0.113.5"), &[], &regions(), &table)[0].region,
        "ap-northeast"
    );
    assert_eq!(
        rank_regions(ip("203.0.113.6"), &[], &regions(), &table)[0].region,
        "us-east"
    );
}

#[test]
fn bad_prefixes_do_not_parse() {
    for bad in [
        "198.51.100.0",
        "198.51.100.0/33",
        "198.51.100/24",
        "2001:db8::/129",
        "x/8",
        "10.0.0.0/-1",
    ] {
        assert!(IpLocation::parse(bad, "X", 0.0, 0.0).is_err(), "{bad}");
    }
    assert!(IpLocation::parse("2001:db8::/128", "X", 0.0, 0.0).is_ok());
}

#[test]
fn distance_is_great_circle_km() {
    assert!(distance_km(1.0, 2.0, 1.0, 2.0).abs() < 1e-9);
    // Paris to Dublin, about 780 km.
    let d = distance_km(48.9, 2.35, 53.3, -6.3);
    assert!((700.0..850.0).contains(&d), "{d}");
    // A quarter of the equator.
    let d = distance_km(0.0, 0.0, 0.0, 90.0);
    assert!((d - 10_007.5).abs() < 1.0, "{d}");
}

// ---- place ----

fn ranked(order: &[&str]) -> Vec<RankedRegion> {
    order
        .iter()
        .enumerate()
        .map(|(i, r)| RankedRegion {
            region: (*r).into(),
            reason: format!("rank {i}"),
        })
        .collect()
}

fn host(id: &str, region: &str, capacity: u32, sessions: u32) -> HostSlotView {
    HostSlotView {
        host_id: id.into(),
        region: region.into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        capacity,
        sessions,
        accepting: true,
        groups: BTreeSet::new(),
    }
}

fn in_group(mut h: HostSlotView, group: &str) -> HostSlotView {
    h.groups.insert(group.into());
    h
}

fn none() -> BTreeSet<HostId> {
    BTreeSet::new()
}

fn placed(p: Option<Placement>) -> (HostId, RegionId, String) {
    match p {
        Some(Placement::Host {
            host_id,
            region,
            reason,
        }) => (host_id, region, reason),
        other => panic!("a host expected, got {other:?}"),
    }
}

#[test]
fn a_buffer_host_in_the_nearest_region_is_preferred() {
    let hosts = vec![
        host("b-busy", "eu-west", 4, 2),
        host("z-idle", "eu-west", 4, 0),
        host("a-idle", "eu-west", 4, 0),
        host("us-idle", "us-east", 4, 0),
    ];
    let (id, region, reason) = placed(place(
        "chess",
        Some("1.0.0"),
        None,
        &ranked(&["eu-west", "us-east"]),
        &hosts,
        &none(),
    ));
    assert_eq!((id.as_str(), region.as_str()), ("a-idle", "eu-west"));
    assert!(reason.contains("buffer host"), "{reason}");
    assert!(reason.contains("nearest region (rank 0)"), "{reason}");
}

#[test]
fn without_a_buffer_host_the_least_loaded_host_with_a_free_slot_is_used() {
    let hosts = vec![
        host("h-full", "eu-west", 4, 4),
        host("h-half", "eu-west", 4, 2),
        host("h-three-b", "eu-west", 8, 3),
        host("h-three-a", "eu-west", 4, 3),
        host("h-one-b", "eu-west", 4, 1),
        host("h-one-a", "eu-west", 4, 1),
    ];
    let (id, region, reason) = placed(place(
        "chess",
        None,
        None,
        &ranked(&["eu-west"]),
        &hosts,
        &none(),
    ));
    // One session each: the tie goes to the smaller id.
    assert_eq!((id.as_str(), region.as_str()), ("h-one-a", "eu-west"));
    assert!(reason.contains("host with a free slot"), "{reason}");
}

#[test]
fn the_groups_host_wins_over_the_nearest_region() {
    let hosts = vec![
        host("eu-idle", "eu-west", 4, 0),
        in_group(host("us-g", "us-east", 4, 2), "g1"),
    ];
    let (id, region, reason) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west", "us-east"]),
        &hosts,
        &none(),
    ));
    assert_eq!((id.as_str(), region.as_str()), ("us-g", "us-east"));
    assert!(reason.contains("g1"), "{reason}");
    assert!(reason.contains("not the nearest eu-west"), "{reason}");
}

#[test]
fn the_groups_host_in_the_nearest_region_says_so_plainly() {
    let hosts = vec![
        host("eu-idle", "eu-west", 4, 0),
        in_group(host("eu-g", "eu-west", 4, 1), "g1"),
    ];
    let (id, _, reason) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "eu-g");
    assert_eq!(reason, "group g1 runs on this host");
}

#[test]
fn a_full_groups_host_falls_back_to_normal_placement() {
    let hosts = vec![
        host("eu-idle", "eu-west", 4, 0),
        in_group(host("us-g", "us-east", 2, 2), "g1"),
    ];
    let (id, _, reason) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west", "us-east"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "eu-idle");
    assert!(reason.contains("buffer host"), "{reason}");
    // Another group's host is no draw either.
    let hosts = vec![
        host("eu-idle", "eu-west", 4, 0),
        in_group(host("us-g2", "us-east", 4, 1), "g2"),
    ];
    let (id, _, _) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west", "us-east"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "eu-idle");
}

#[test]
fn a_full_region_spills_to_the_next_nearest_and_says_so() {
    let hosts = vec![
        host("eu-full", "eu-west", 2, 2),
        host("us-busy", "us-east", 4, 1),
        host("ap-idle", "ap-northeast", 4, 0),
    ];
    let (id, region, reason) = placed(place(
        "chess",
        None,
        None,
        &ranked(&["eu-west", "us-east", "ap-northeast"]),
        &hosts,
        &none(),
    ));
    assert_eq!((id.as_str(), region.as_str()), ("us-busy", "us-east"));
    assert!(reason.contains("eu-west without capacity"), "{reason}");
    assert!(
        reason.contains("spilled to next nearest (rank 1)"),
        "{reason}"
    );
}

#[test]
fn every_full_region_is_named_when_spilling() {
    let hosts = vec![
        host("eu-full", "eu-west", 2, 2),
        host("ap-idle", "ap-northeast", 4, 0),
    ];
    let (_, region, reason) = placed(place(
        "chess",
        None,
        None,
        &ranked(&["eu-west", "us-east", "ap-northeast"]),
        &hosts,
        &none(),
    ));
    assert_eq!(region, "ap-northeast");
    assert!(
        reason.contains("eu-west, us-east without capacity"),
        "{reason}"
    );
}

#[test]
fn no_capacity_anywhere_needs_a_host_in_the_nearest_region() {
    let hosts = vec![
        host("eu-full", "eu-west", 2, 2),
        host("us-full", "us-east", 1, 1),
    ];
    match place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["us-east", "eu-west"]),
        &hosts,
        &none(),
    ) {
        Some(Placement::NeedHost { region, reason }) => {
            assert_eq!(region, "us-east");
            assert!(reason.contains("chess"), "{reason}");
        }
        other => panic!("NeedHost expected, got {other:?}"),
    }
    // No host at all: the same.
    assert!(matches!(
        place("chess", None, None, &ranked(&["eu-west"]), &[], &none()),
        Some(Placement::NeedHost { region, .. }) if region == "eu-west"
    ));
    // No region at all: nothing to say.
    assert_eq!(place("chess", None, None, &[], &hosts, &none()), None);
}

#[test]
fn excluded_hosts_are_skipped() {
    let hosts = vec![
        host("a-idle", "eu-west", 4, 0),
        host("b-idle", "eu-west", 4, 0),
        in_group(host("g-host", "eu-west", 4, 1), "g1"),
    ];
    let exclude: BTreeSet<HostId> = ["a-idle".into(), "g-host".into()].into();
    let (id, _, _) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west"]),
        &hosts,
        &exclude,
    ));
    assert_eq!(id, "b-idle");
    let exclude: BTreeSet<HostId> = hosts.iter().map(|h| h.host_id.clone()).collect();
    assert!(matches!(
        place(
            "chess",
            None,
            Some("g1"),
            &ranked(&["eu-west"]),
            &hosts,
            &exclude
        ),
        Some(Placement::NeedHost { .. })
    ));
}

#[test]
fn only_hosts_of_the_current_version_are_used() {
    let mut old = host("a-old", "eu-west", 4, 0);
    old.version = "0.9.0".into();
    let hosts = vec![old, host("b-new", "eu-west", 4, 0)];
    let (id, _, _) = placed(place(
        "chess",
        Some("1.0.0"),
        None,
        &ranked(&["eu-west"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "b-new");
    // Without a known version any version will do.
    let (id, _, _) = placed(place(
        "chess",
        None,
        None,
        &ranked(&["eu-west"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "a-old");
    // Only old hosts: a new host is needed.
    assert!(matches!(
        place(
            "chess",
            Some("2.0.0"),
            None,
            &ranked(&["eu-west"]),
            &hosts,
            &none()
        ),
        Some(Placement::NeedHost { .. })
    ));
}

#[test]
fn hosts_of_another_app_or_not_accepting_are_skipped() {
    let mut other_app = host("a-go", "eu-west", 4, 0);
    other_app.app_id = "go".into();
    let mut draining = in_group(host("b-draining", "eu-west", 4, 1), "g1");
    draining.accepting = false;
    let hosts = vec![other_app, draining, host("c-chess", "eu-west", 4, 3)];
    let (id, _, reason) = placed(place(
        "chess",
        None,
        Some("g1"),
        &ranked(&["eu-west"]),
        &hosts,
        &none(),
    ));
    assert_eq!(id, "c-chess");
    assert!(reason.contains("host with a free slot"), "{reason}");
}

#[test]
fn hosts_in_unranked_regions_are_not_used_without_a_group() {
    let hosts = vec![host("mars-idle", "mars-1", 4, 0)];
    assert!(matches!(
        place("chess", None, None, &ranked(&["eu-west"]), &hosts, &none()),
        Some(Placement::NeedHost { region, .. }) if region == "eu-west"
    ));
}

#[test]
fn placement_is_deterministic_whatever_the_host_order() {
    let hosts = vec![
        host("c", "eu-west", 4, 2),
        host("a", "eu-west", 4, 2),
        host("b", "eu-west", 4, 2),
    ];
    let mut reversed = hosts.clone();
    reversed.reverse();
    let r = ranked(&["eu-west"]);
    let a = place("chess", None, None, &r, &hosts, &none());
    let b = place("chess", None, None, &r, &reversed, &none());
    assert_eq!(a, b);
    assert_eq!(placed(a).0, "a");
}

#[test]
fn an_ipv4_client_seen_through_an_ipv6_socket_is_located_by_its_ipv4_prefix() {
    use streamfleet_domain::placement::{IpLocation, Region, rank_regions};
    let regions = vec![
        Region {
            name: "us-east".into(),
            lat: 38.9,
            lon: -77.4,
        },
        Region {
            name: "eu-west".into(),
            lat: 53.35,
            lon: -6.26,
        },
    ];
    let places = vec![IpLocation::parse("198.51.100.0/24", "Paris", 48.86, 2.35).expect("prefix")];
    let ranked = rank_regions(
        "::ffff:198.51.100.7".parse().expect("ip"),
        &[],
        &regions,
        &places,
    );
    assert_eq!(ranked[0].region, "eu-west");
    assert!(ranked[0].reason.contains("Paris"), "{}", ranked[0].reason);
}
