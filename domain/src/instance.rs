//! Instances (seed 002): launched from the catalogue onto a compute host, then stopped, started,
//! rebooted, changed and terminated through one command set, whatever runs them.
//!
//! Invariant: a command is refused before anything is recorded when the instance's state does
//! not allow it or its hypervisor cannot do it (`unsupported`, naming both); a launch records
//! the hypervisor and host chosen with their reasons and the addresses taken from the pool. A
//! terminated instance takes no command ever again.

use crate::fleet::{Costs, Fleet, addresses_of};
use crate::hypervisor::{self, Needs, Offered};
use crate::{Context, Rejection, image};
use std::collections::BTreeMap;
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::{Feature, Hypervisor};
use streamfleet_bus_schemas::ids::{HostId, InstanceId, RegionId};
use streamfleet_bus_schemas::instance::*;
use streamfleet_bus_schemas::principal::is_subject_token;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// Placed on a host, which boots it (after a launch, a start or a reboot by command); it
    /// is running once the host reports it answers (`InstanceLaunched`).
    Booting,
    /// Running.
    Running,
    /// Stopped (disks and addresses kept).
    Stopped,
    /// Failed (its launch, or its process behind the host's back); it can be started again.
    Failed,
    /// Ended for good.
    Terminated,
}

impl InstanceStatus {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            InstanceStatus::Booting => "booting",
            InstanceStatus::Running => "running",
            InstanceStatus::Stopped => "stopped",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Terminated => "terminated",
        }
    }
}

/// An instance's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceState {
    /// Its host.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// What runs it.
    pub hypervisor: Hypervisor,
    /// Its image.
    pub image: String,
    /// Cpus.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Its addresses.
    pub addresses: InstanceAddresses,
    /// Its disks, the root disk first.
    pub volumes: Vec<Volume>,
    /// Interfaces attached after launch.
    pub networks: Vec<String>,
    /// Snapshots taken.
    pub snapshots: Vec<String>,
    /// Where it is in its life.
    pub status: InstanceStatus,
    /// Boots recorded (launch, reboots, starts).
    pub boots: u32,
}

/// What a launch may read besides the command: the fleet and the configured costs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ComputeContext {
    /// The compute fleet, folded from the log.
    pub fleet: Fleet,
    /// The cost of each hypervisor in each region.
    pub costs: Costs,
    /// Where the regions and the clients' addresses are (for a launch naming a client).
    pub geography: Geography,
}

/// Where the regions' data centres and the clients' address prefixes are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Geography {
    /// The regions, with their coordinates.
    pub regions: Vec<crate::placement::Region>,
    /// The places of address prefixes.
    pub locations: Vec<crate::placement::IpLocation>,
}

/// The id of the disk an instance boots with.
pub const ROOT_VOLUME: &str = "root";

fn invalid(field: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection::InvalidField {
        field,
        detail: detail.into(),
    }
}

fn in_range(
    field: &'static str,
    value: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<(), Rejection> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value} is outside {}..={}", range.start(), range.end()),
        ))
    }
}

fn name_token(field: &'static str, value: &str) -> Result<(), Rejection> {
    if is_subject_token(value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1..=128 letters, digits, `-` or `_`",
        ))
    }
}

pub(crate) fn decide_launch(
    c: &LaunchInstance,
    state: Option<&InstanceState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::InstanceAlreadyExists {
            instance_id: c.instance_id.clone(),
        });
    }
    name_token("instance_id", &c.instance_id)?;
    in_range("cpus", c.cpus, 1..=64)?;
    in_range("memory_mib", c.memory_mib, 16..=262_144)?;
    in_range("disk_mib", c.disk_mib, 1..=1_048_576)?;
    let Some(image) = image::image(&c.image) else {
        return Err(Rejection::UnknownImage {
            image: c.image.clone(),
        });
    };
    let empty = ComputeContext::default();
    let compute = ctx.compute.as_ref().unwrap_or(&empty);
    let fleet = &compute.fleet;
    // The regions to look in: the one named; else, for a client, every region nearest first
    // (those the geography does not place, after, by name); else every region.
    let client = match (&c.region, &c.client_ip) {
        (None, Some(ip)) => Some(
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("client_ip", format!("`{ip}` is not an IP address")))?,
        ),
        _ => None,
    };
    let mut why_region: BTreeMap<RegionId, String> = BTreeMap::new();
    let regions: Vec<&RegionId> = match (&c.region, client) {
        (Some(region), _) => vec![region],
        (None, Some(ip)) => {
            let known: Vec<&RegionId> = fleet.regions().into_iter().collect();
            let geo = &compute.geography;
            let mut ordered: Vec<&RegionId> = Vec::new();
            for ranked in crate::placement::rank_regions(ip, &[], &geo.regions, &geo.locations) {
                if let Some(r) = known.iter().copied().find(|r| **r == ranked.region) {
                    why_region.insert(ranked.region.clone(), ranked.reason);
                    ordered.push(r);
                }
            }
            let rest: Vec<&RegionId> = known
                .iter()
                .copied()
                .filter(|r| !ordered.contains(r))
                .collect();
            ordered.extend(rest);
            ordered
        }
        (None, None) => fleet.regions().into_iter().collect(),
    };
    // Per region: what it offers of the hypervisors that run the image, and the choice there.
    let offered_in = |region: &RegionId| -> Vec<Offered> {
        Hypervisor::ALL
            .into_iter()
            .filter(|h| image.hypervisors.contains(h))
            .filter(|h| {
                fleet
                    .hosts
                    .values()
                    .any(|host| host.region == *region && host.hypervisor == *h)
            })
            .map(|h| Offered {
                hypervisor: h,
                cost: compute.costs.of(region, h),
                has_room: fleet.hosts.values().any(|host| {
                    host.region == *region
                        && host.hypervisor == h
                        && host.has_room(c.cpus, c.memory_mib)
                }),
            })
            .collect()
    };
    let needs = Needs {
        os: image.os,
        features: &c.features,
        requested: c.hypervisor,
    };
    if let Some(h) = c.hypervisor
        && !image.hypervisors.contains(&h)
    {
        // The image is not built for the customer's hypervisor: refuse, offering the cheapest
        // that runs it in any region asked about.
        let anyone = Needs {
            requested: None,
            ..needs
        };
        let offer = regions
            .iter()
            .filter_map(|region| {
                let choice = hypervisor::choose(&anyone, &offered_in(region)).ok()?;
                Some((
                    compute.costs.of(region, choice.hypervisor),
                    choice.hypervisor,
                ))
            })
            .min();
        return Err(match offer {
            Some((cost, runs)) => Rejection::HypervisorUnfit {
                requested: h,
                why: format!("image {} is not built for {h}", image.name),
                offer: streamfleet_bus_schemas::compute::HypervisorOffer {
                    hypervisor: runs,
                    reason: format!("{runs} runs image {}", image.name),
                    cost,
                },
            },
            None => Rejection::NoHypervisor {
                detail: format!(
                    "image {} is not built for {h}, and nothing that runs it has room",
                    image.name
                ),
            },
        });
    }
    let mut best: Option<(u32, RegionId, hypervisor::Choice)> = None;
    let mut refusals = Vec::new();
    // The customer's hypervisor fits nowhere, but another does somewhere: the refusal with the
    // cheapest offer.
    let mut unfit: Option<Rejection> = None;
    for region in &regions {
        match hypervisor::choose(&needs, &offered_in(region)) {
            Ok(choice) => {
                let cost = compute.costs.of(region, choice.hypervisor);
                if best.as_ref().is_none_or(|(c, _, _)| cost < *c) {
                    best = Some((cost, (*region).clone(), choice));
                }
                // For a client: the nearest region that can run it, whatever the others cost.
                if client.is_some() {
                    break;
                }
            }
            Err(r @ Rejection::HypervisorUnfit { .. }) => {
                refusals.push(format!("{region}: {r}"));
                let cheaper = |o: &Rejection| o.offer().map_or(u32::MAX, |o| o.cost);
                if unfit.as_ref().is_none_or(|u| cheaper(&r) < cheaper(u)) {
                    unfit = Some(r);
                }
            }
            Err(r) => refusals.push(format!("{region}: {r}")),
        }
    }
    if best.is_none()
        && let Some(r) = unfit
    {
        return Err(r);
    }
    let Some((_, region, choice)) = best else {
        return Err(Rejection::NoHypervisor {
            detail: if refusals.is_empty() {
                match &c.region {
                    Some(region) => format!("region {region} has no compute host"),
                    None => "the fleet has no compute host".into(),
                }
            } else {
                refusals.join("; ")
            },
        });
    };
    // The host: in the region, of the hypervisor, with room; the most free cpus, then the
    // fewest instances, then the name.
    let host = fleet
        .hosts
        .iter()
        .filter(|(_, h)| {
            h.region == region
                && h.hypervisor == choice.hypervisor
                && h.has_room(c.cpus, c.memory_mib)
        })
        .min_by_key(|(id, h)| {
            (
                std::cmp::Reverse(h.cpus - h.used_cpus),
                h.instances,
                (*id).clone(),
            )
        });
    let Some((host_id, host)) = host else {
        return Err(Rejection::NoHypervisor {
            detail: format!("no {} host in {region} has room", choice.hypervisor),
        });
    };
    let Some(index) = fleet.free_index() else {
        return Err(Rejection::AddressPoolExhausted);
    };
    let mut host_reasons = vec![format!(
        "{host_id} has the most free cpus of the {} hosts in {region} ({} of {}) and {} MiB free",
        choice.hypervisor,
        host.cpus - host.used_cpus,
        host.cpus,
        host.memory_mib - host.used_memory_mib
    )];
    if c.region.is_none() {
        let why = match (client, why_region.get(&region)) {
            (Some(ip), Some(reason)) => {
                format!("{region} is the nearest region to {ip} that can run it ({reason})")
            }
            (Some(ip), None) => format!(
                "{region} can run it; where {ip} or {region} is, the geography does not say"
            ),
            (None, _) => format!("{region} is the cheapest region for {}", choice.hypervisor),
        };
        host_reasons.insert(0, why);
    }
    Ok(vec![
        Event::HypervisorChosen(HypervisorChosen {
            instance_id: c.instance_id.clone(),
            hypervisor: choice.hypervisor,
            reasons: choice.reasons,
            offer: choice.offer,
        }),
        Event::InstancePlaced(InstancePlaced {
            instance_id: c.instance_id.clone(),
            host_id: host_id.clone(),
            region,
            hypervisor: choice.hypervisor,
            image: image.name.to_string(),
            cpus: c.cpus,
            memory_mib: c.memory_mib,
            features: c.features.clone(),
            addresses: addresses_of(index),
            volumes: vec![Volume {
                volume_id: ROOT_VOLUME.into(),
                size_mib: c.disk_mib,
            }],
            reasons: host_reasons,
        }),
    ])
}

/// The instance, unless it does not exist or ended.
fn live<'a>(
    instance_id: &InstanceId,
    state: Option<&'a InstanceState>,
) -> Result<&'a InstanceState, Rejection> {
    match state {
        None => Err(Rejection::UnknownInstance {
            instance_id: instance_id.clone(),
        }),
        Some(s) if s.status == InstanceStatus::Terminated => Err(Rejection::InstanceTerminated {
            instance_id: instance_id.clone(),
        }),
        Some(s) => Ok(s),
    }
}

/// Refuses unless the instance is in one of `allowed`.
fn in_status(
    instance_id: &InstanceId,
    s: &InstanceState,
    operation: &'static str,
    allowed: &[InstanceStatus],
) -> Result<(), Rejection> {
    if allowed.contains(&s.status) {
        Ok(())
    } else {
        Err(Rejection::InstanceNotReady {
            instance_id: instance_id.clone(),
            operation,
            status: s.status.name(),
        })
    }
}

/// Refuses with `unsupported` unless the instance's hypervisor can do `feature`.
fn able(s: &InstanceState, feature: Feature, operation: &'static str) -> Result<(), Rejection> {
    if hypervisor::supports(s.hypervisor, feature) {
        Ok(())
    } else {
        Err(Rejection::Unsupported {
            hypervisor: s.hypervisor,
            operation,
        })
    }
}

pub(crate) fn decide_stop(
    c: &StopInstance,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::StopStart, "stop")?;
    in_status(&c.instance_id, s, "stop", &[InstanceStatus::Running])?;
    Ok(vec![Event::InstanceStopped(InstanceStopped {
        instance_id: c.instance_id.clone(),
        by: ChangeCause::Command,
    })])
}

pub(crate) fn decide_start(
    c: &StartInstance,
    state: Option<&InstanceState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::StopStart, "start")?;
    in_status(
        &c.instance_id,
        s,
        "start",
        &[InstanceStatus::Stopped, InstanceStatus::Failed],
    )?;
    if let Some(compute) = &ctx.compute
        && !compute
            .fleet
            .host_has_room(&s.host_id, s.cpus, s.memory_mib)
    {
        return Err(Rejection::NoHypervisor {
            detail: format!(
                "host {} has no room for {} cpus and {} MiB now",
                s.host_id, s.cpus, s.memory_mib
            ),
        });
    }
    Ok(vec![Event::InstanceStarted(InstanceStarted {
        instance_id: c.instance_id.clone(),
    })])
}

pub(crate) fn decide_reboot(
    c: &RebootInstance,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::Reboot, "reboot")?;
    in_status(&c.instance_id, s, "reboot", &[InstanceStatus::Running])?;
    Ok(vec![Event::InstanceRebooted(InstanceRebooted {
        instance_id: c.instance_id.clone(),
        by: ChangeCause::Command,
    })])
}

pub(crate) fn decide_terminate(
    c: &TerminateInstance,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    Ok(vec![Event::InstanceTerminated(InstanceTerminated {
        instance_id: c.instance_id.clone(),
        host_id: s.host_id.clone(),
    })])
}

pub(crate) fn decide_attach_volume(
    c: &AttachVolume,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::HotAttachVolume, "attach-volume")?;
    in_status(
        &c.instance_id,
        s,
        "attach-volume",
        &[InstanceStatus::Running],
    )?;
    name_token("volume_id", &c.volume_id)?;
    in_range("size_mib", c.size_mib, 1..=1_048_576)?;
    if s.volumes.iter().any(|v| v.volume_id == c.volume_id) {
        return Err(Rejection::VolumeAlreadyAttached {
            instance_id: c.instance_id.clone(),
            volume_id: c.volume_id.clone(),
        });
    }
    Ok(vec![Event::VolumeAttached(VolumeAttached {
        instance_id: c.instance_id.clone(),
        volume: Volume {
            volume_id: c.volume_id.clone(),
            size_mib: c.size_mib,
        },
    })])
}

pub(crate) fn decide_detach_volume(
    c: &DetachVolume,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::HotAttachVolume, "detach-volume")?;
    in_status(
        &c.instance_id,
        s,
        "detach-volume",
        &[InstanceStatus::Running],
    )?;
    if c.volume_id == ROOT_VOLUME {
        return Err(invalid(
            "volume_id",
            "the root disk stays with its instance",
        ));
    }
    if !s.volumes.iter().any(|v| v.volume_id == c.volume_id) {
        return Err(Rejection::VolumeNotAttached {
            instance_id: c.instance_id.clone(),
            volume_id: c.volume_id.clone(),
        });
    }
    Ok(vec![Event::VolumeDetached(VolumeDetached {
        instance_id: c.instance_id.clone(),
        volume_id: c.volume_id.clone(),
    })])
}

pub(crate) fn decide_attach_network(
    c: &AttachNetwork,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::HotAttachNetwork, "attach-network")?;
    in_status(
        &c.instance_id,
        s,
        "attach-network",
        &[InstanceStatus::Running],
    )?;
    name_token("network_id", &c.network_id)?;
    if s.networks.contains(&c.network_id) {
        return Err(Rejection::NetworkAlreadyAttached {
            instance_id: c.instance_id.clone(),
            network_id: c.network_id.clone(),
        });
    }
    Ok(vec![Event::NetworkAttached(NetworkAttached {
        instance_id: c.instance_id.clone(),
        network_id: c.network_id.clone(),
    })])
}

pub(crate) fn decide_detach_network(
    c: &DetachNetwork,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::HotAttachNetwork, "detach-network")?;
    in_status(
        &c.instance_id,
        s,
        "detach-network",
        &[InstanceStatus::Running],
    )?;
    if !s.networks.contains(&c.network_id) {
        return Err(Rejection::NetworkNotAttached {
            instance_id: c.instance_id.clone(),
            network_id: c.network_id.clone(),
        });
    }
    Ok(vec![Event::NetworkDetached(NetworkDetached {
        instance_id: c.instance_id.clone(),
        network_id: c.network_id.clone(),
    })])
}

pub(crate) fn decide_snapshot(
    c: &SnapshotInstance,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    able(s, Feature::Snapshot, "snapshot")?;
    in_status(
        &c.instance_id,
        s,
        "snapshot",
        &[InstanceStatus::Running, InstanceStatus::Stopped],
    )?;
    name_token("snapshot_id", &c.snapshot_id)?;
    if s.snapshots.contains(&c.snapshot_id) {
        return Err(Rejection::SnapshotExists {
            instance_id: c.instance_id.clone(),
            snapshot_id: c.snapshot_id.clone(),
        });
    }
    Ok(vec![Event::SnapshotTaken(SnapshotTaken {
        instance_id: c.instance_id.clone(),
        snapshot_id: c.snapshot_id.clone(),
    })])
}

pub(crate) fn decide_report(
    c: &ReportInstance,
    state: Option<&InstanceState>,
) -> Result<Vec<Event>, Rejection> {
    let s = live(&c.instance_id, state)?;
    // A move is reported by the host the instance moves to; everything else by its own.
    if s.host_id != c.host_id && !matches!(c.report, InstanceReport::Moved { .. }) {
        return Err(Rejection::InstanceOnOtherHost {
            instance_id: c.instance_id.clone(),
            expected: s.host_id.clone(),
            reported: c.host_id.clone(),
        });
    }
    let event = match &c.report {
        InstanceReport::Running { pid } => {
            // The launch, a start or a reboot by command is done: the host runs it now. Running
            // already (a restarted host re-adopting it): nothing new to record.
            if s.status == InstanceStatus::Running {
                return Ok(vec![]);
            }
            // Only a boot under way ends running: a failed instance gave its room back and is
            // started again (which takes it, if there is some) before it may run.
            in_status(
                &c.instance_id,
                s,
                "report running",
                &[InstanceStatus::Booting],
            )?;
            Event::InstanceLaunched(InstanceLaunched {
                instance_id: c.instance_id.clone(),
                host_id: s.host_id.clone(),
                hypervisor: s.hypervisor,
                addresses: s.addresses.clone(),
                volumes: s.volumes.clone(),
                pid: *pid,
            })
        }
        InstanceReport::GuestRebooted { .. } => {
            in_status(
                &c.instance_id,
                s,
                "report a guest reboot",
                &[InstanceStatus::Running],
            )?;
            Event::InstanceRebooted(InstanceRebooted {
                instance_id: c.instance_id.clone(),
                by: ChangeCause::Guest,
            })
        }
        InstanceReport::GuestPoweredOff => {
            if s.status == InstanceStatus::Stopped {
                return Ok(vec![]);
            }
            in_status(
                &c.instance_id,
                s,
                "report a power-off",
                &[InstanceStatus::Running],
            )?;
            Event::InstanceStopped(InstanceStopped {
                instance_id: c.instance_id.clone(),
                by: ChangeCause::Guest,
            })
        }
        InstanceReport::Moved {
            migration_id,
            from_host,
            pid,
        } => return decide_moved(c, s, migration_id, from_host, *pid),
        InstanceReport::ChangeFailed {
            operation,
            target,
            reason,
        } => Event::InstanceChangeFailed(InstanceChangeFailed {
            instance_id: c.instance_id.clone(),
            host_id: s.host_id.clone(),
            operation: operation.clone(),
            target: target.clone(),
            reason: reason.clone(),
        }),
        InstanceReport::Failed { reason } => {
            if s.status == InstanceStatus::Failed {
                return Ok(vec![]);
            }
            Event::InstanceFailed(InstanceFailed {
                instance_id: c.instance_id.clone(),
                host_id: s.host_id.clone(),
                reason: reason.clone(),
            })
        }
    };
    Ok(vec![event])
}

/// The target of a migration says the instance runs there now (it reports only once the
/// migration recorded its launch, which fenced the source).
fn decide_moved(
    c: &ReportInstance,
    s: &InstanceState,
    migration_id: &streamfleet_bus_schemas::ids::MigrationId,
    from_host: &HostId,
    pid: u32,
) -> Result<Vec<Event>, Rejection> {
    if s.host_id == c.host_id {
        // Told twice (a restarted target): it is there already.
        return Ok(vec![]);
    }
    if s.host_id != *from_host {
        return Err(Rejection::InstanceOnOtherHost {
            instance_id: c.instance_id.clone(),
            expected: s.host_id.clone(),
            reported: from_host.clone(),
        });
    }
    Ok(vec![Event::InstanceMoved(InstanceMoved {
        instance_id: c.instance_id.clone(),
        migration_id: migration_id.clone(),
        from_host: from_host.clone(),
        host_id: c.host_id.clone(),
        pid,
    })])
}

pub(crate) fn decide_register_host(c: &RegisterComputeHost) -> Result<Vec<Event>, Rejection> {
    name_token("host_id", &c.host_id)?;
    name_token("region", &c.region)?;
    in_range("cpus", c.cpus, 1..=4096)?;
    in_range("memory_mib", c.memory_mib, 16..=u32::MAX)?;
    Ok(vec![Event::ComputeHostRegistered(ComputeHostRegistered {
        host_id: c.host_id.clone(),
        region: c.region.clone(),
        hypervisor: c.hypervisor,
        cpus: c.cpus,
        memory_mib: c.memory_mib,
        detail: c.detail.clone(),
    })])
}

/// Folds one instance event into the instance's state.
pub(crate) fn evolve(state: Option<InstanceState>, event: &Event) -> Option<InstanceState> {
    if let Event::InstancePlaced(e) = event {
        return Some(InstanceState {
            host_id: e.host_id.clone(),
            region: e.region.clone(),
            hypervisor: e.hypervisor,
            image: e.image.clone(),
            cpus: e.cpus,
            memory_mib: e.memory_mib,
            addresses: e.addresses.clone(),
            volumes: e.volumes.clone(),
            networks: vec![],
            snapshots: vec![],
            status: InstanceStatus::Booting,
            boots: 0,
        });
    }
    let mut s = state?;
    match event {
        Event::InstanceLaunched(_) => {
            s.status = InstanceStatus::Running;
            s.boots += 1;
        }
        // A reboot by command: the host boots it again and reports it running.
        Event::InstanceRebooted(e) if e.by == ChangeCause::Command => {
            s.status = InstanceStatus::Booting
        }
        Event::InstanceStopped(_) => s.status = InstanceStatus::Stopped,
        // It booted on its new host and answers there.
        Event::InstanceMoved(e) => {
            s.host_id = e.host_id.clone();
            s.status = InstanceStatus::Running;
            s.boots += 1;
        }
        // Started: the host boots it again and reports it running.
        Event::InstanceStarted(_) => s.status = InstanceStatus::Booting,
        Event::InstanceRebooted(_) => s.boots += 1,
        Event::InstanceTerminated(_) => s.status = InstanceStatus::Terminated,
        Event::InstanceFailed(_) => s.status = InstanceStatus::Failed,
        Event::VolumeAttached(e) => s.volumes.push(e.volume.clone()),
        Event::VolumeDetached(e) => s.volumes.retain(|v| v.volume_id != e.volume_id),
        Event::NetworkAttached(e) => s.networks.push(e.network_id.clone()),
        Event::NetworkDetached(e) => s.networks.retain(|n| *n != e.network_id),
        Event::SnapshotTaken(e) => s.snapshots.push(e.snapshot_id.clone()),
        // What did not happen is not the instance's: an attach or a snapshot is undone.
        Event::InstanceChangeFailed(e) => match e.operation.as_str() {
            "attach-volume" => s.volumes.retain(|v| v.volume_id != e.target),
            "attach-network" => s.networks.retain(|n| *n != e.target),
            "snapshot" => s.snapshots.retain(|n| *n != e.target),
            _ => {}
        },
        _ => {}
    }
    Some(s)
}
