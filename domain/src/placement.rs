//! Where a redemption goes and where its session runs: pure functions over configured regions,
//! IP-prefix locations and a snapshot of the hosts.
//!
//! Invariant: the same inputs give the same answer (regions tied on latency or distance keep
//! their configured order; hosts tied otherwise go by id), so a decision can be explained (its
//! reason is recorded) and replayed.
//!
//! ```
//! use streamfleet_domain::placement::{Region, IpLocation, rank_regions};
//! let regions = vec![
//!     Region { name: "eu-west".into(), lat: 53.3, lon: -6.3 },
//!     Region { name: "us-east".into(), lat: 39.0, lon: -77.5 },
//! ];
//! let places = vec![IpLocation::parse("198.51.100.0/24", "Paris", 48.9, 2.35).unwrap()];
//! let ranked = rank_regions("198.51.100.7".parse().unwrap(), &[], &regions, &places);
//! assert_eq!(ranked[0].region, "eu-west");
//! assert!(ranked[0].reason.contains("Paris"));
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;
use streamfleet_bus_schemas::ids::{AppId, GroupId, HostId, RegionId};

/// A region whose host-management service takes redemptions.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Region {
    /// Its name, e.g. `eu-west`.
    pub name: RegionId,
    /// Latitude of its data centre, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// Where the addresses of one IP prefix are.
#[derive(Debug, Clone, PartialEq)]
pub struct IpLocation {
    network: IpAddr,
    prefix_len: u8,
    /// A name for the place, e.g. `Paris`.
    pub label: String,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
}

/// A CIDR prefix that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP prefix like 198.51.100.0/24")]
pub struct BadPrefix(pub String);

impl IpLocation {
    /// A location for `cidr` (`198.51.100.0/24`, `2001:db8::/32`).
    pub fn parse(cidr: &str, label: &str, lat: f64, lon: f64) -> Result<Self, BadPrefix> {
        let bad = || BadPrefix(cidr.to_string());
        let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
        let network: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(bad());
        }
        Ok(IpLocation {
            network,
            prefix_len,
            label: label.to_string(),
            lat,
            lon,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client seen through an IPv6 socket (`::ffff:198.51.100.7`) is an IPv4 client.
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), 32, self.prefix_len)
                    == masked(u32::from(a).into(), 32, self.prefix_len)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), 128, self.prefix_len)
                    == masked(u128::from(a), 128, self.prefix_len)
            }
            _ => false,
        }
    }
}

fn masked(value: u128, bits: u32, prefix_len: u8) -> u128 {
    let keep = u32::from(prefix_len);
    if keep == 0 { 0 } else { value >> (bits - keep) }
}

/// Great-circle distance in km.
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    6371.0 * 2.0 * a.sqrt().asin()
}

/// A region in a client's order of preference, with why it ranks there.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedRegion {
    /// The region.
    pub region: RegionId,
    /// Why (`measured latency 12 ms`, `nearest to Paris (198.51.100.0/24): 780 km`, …).
    pub reason: String,
}

/// Every region, nearest first for a client at `ip`: by measured latency when the client gave
/// some (regions it did not measure come after, by distance), else by distance from the
/// location of the longest matching IP prefix, else in configured order.
pub fn rank_regions(
    ip: IpAddr,
    latencies_ms: &[(RegionId, u32)],
    regions: &[Region],
    locations: &[IpLocation],
) -> Vec<RankedRegion> {
    let place = locations
        .iter()
        .filter(|l| l.contains(ip))
        .max_by_key(|l| l.prefix_len);
    let mut ranked: Vec<(u8, f64, usize, RankedRegion)> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some((_, ms)) = latencies_ms.iter().find(|(name, _)| name == &r.name) {
                let reason = format!("measured latency {ms} ms");
                (
                    0,
                    f64::from(*ms),
                    i,
                    RankedRegion {
                        region: r.name.clone(),
                        reason,
                    },
                )
            } else if let Some(p) = place {
                let km = distance_km(p.lat, p.lon, r.lat, r.lon);
                let reason = format!(
                    "client in {} ({}/{}): {km:.0} km away",
                    p.label, p.network, p.prefix_len
                );
                (
                    1,
                    km,
                    i,
                    RankedRegion {
                        region: r.name.clone(),
                        reason,
                    },
                )
            } else {
                let reason = format!("client location unknown for {ip}: configured order");
                (
                    2,
                    i as f64,
                    i,
                    RankedRegion {
                        region: r.name.clone(),
                        reason,
                    },
                )
            }
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    ranked.into_iter().map(|(_, _, _, r)| r).collect()
}

/// What placement knows of one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSlotView {
    /// Host id.
    pub host_id: HostId,
    /// Region.
    pub region: RegionId,
    /// App.
    pub app_id: AppId,
    /// Version.
    pub version: String,
    /// Slots.
    pub capacity: u32,
    /// Sessions holding a slot.
    pub sessions: u32,
    /// Active (not draining, not removed).
    pub accepting: bool,
    /// Groups with a session on it.
    pub groups: BTreeSet<GroupId>,
}

impl HostSlotView {
    fn usable(&self, app_id: &str, version: Option<&str>) -> bool {
        self.accepting
            && self.app_id == app_id
            && version.is_none_or(|v| v == self.version)
            && self.sessions < self.capacity
    }
}

/// Where to place a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// On this host.
    Host {
        /// The host.
        host_id: HostId,
        /// Its region.
        region: RegionId,
        /// Why.
        reason: String,
    },
    /// No region has room: a host must be requested in this region.
    NeedHost {
        /// Where.
        region: RegionId,
        /// Why.
        reason: String,
    },
}

/// Chooses a host for a session of `app_id` (at `version`, the app's current one, when known)
/// in `group`, for regions ranked nearest first. Skips hosts in `exclude` (already refused).
///
/// Order: a host already running the group's sessions (any region: the group stays together);
/// then, region by region, an idle buffer host, else the least-loaded host with a free slot
/// (spreading load, and spreading concurrent placements over host streams).
pub fn place(
    app_id: &str,
    version: Option<&str>,
    group: Option<&str>,
    ranked: &[RankedRegion],
    hosts: &[HostSlotView],
    exclude: &BTreeSet<HostId>,
) -> Option<Placement> {
    let usable = |h: &&HostSlotView| h.usable(app_id, version) && !exclude.contains(&h.host_id);
    if let Some(group) = group
        && let Some(h) = hosts
            .iter()
            .filter(usable)
            .filter(|h| h.groups.contains(group))
            .min_by_key(|h| {
                let rank = ranked
                    .iter()
                    .position(|r| r.region == h.region)
                    .unwrap_or(usize::MAX);
                (rank, h.host_id.clone())
            })
    {
        let nearest = ranked.first().map(|r| r.region.as_str()).unwrap_or("");
        let reason = if h.region == nearest {
            format!("group {group} runs on this host")
        } else {
            format!(
                "group {group} runs on this host in {}, not the nearest {nearest}",
                h.region
            )
        };
        return Some(Placement::Host {
            host_id: h.host_id.clone(),
            region: h.region.clone(),
            reason,
        });
    }
    let mut full = Vec::new();
    for r in ranked {
        let in_region: Vec<&HostSlotView> = hosts
            .iter()
            .filter(usable)
            .filter(|h| h.region == r.region)
            .collect();
        let buffer = in_region
            .iter()
            .filter(|h| h.sessions == 0)
            .min_by(|a, b| a.host_id.cmp(&b.host_id));
        let least_loaded = in_region
            .iter()
            .filter(|h| h.sessions > 0)
            .min_by(|a, b| a.sessions.cmp(&b.sessions).then(a.host_id.cmp(&b.host_id)));
        let (host, kind) = match (buffer, least_loaded) {
            (Some(h), _) => (h, "buffer host"),
            (None, Some(h)) => (h, "least-loaded host with a free slot"),
            (None, None) => {
                full.push(r.region.as_str());
                continue;
            }
        };
        let reason = if full.is_empty() {
            format!("{kind}; nearest region ({})", r.reason)
        } else {
            format!(
                "{kind}; {} without capacity, spilled to next nearest ({})",
                full.join(", "),
                r.reason
            )
        };
        return Some(Placement::Host {
            host_id: host.host_id.clone(),
            region: r.region.clone(),
            reason,
        });
    }
    ranked.first().map(|r| Placement::NeedHost {
        region: r.region.clone(),
        reason: format!(
            "no free slot for {app_id} in any region; requesting a host in the nearest"
        ),
    })
}
