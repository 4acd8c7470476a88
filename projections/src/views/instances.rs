//! Instances: every instance's life on its compute host, why its hypervisor and host were
//! chosen, and each compute host's registration with what its instances hold.
//!
//! Invariant: an instance row follows the domain's fold of its stream
//! (`streamfleet_domain::evolve`): `InstancePlaced` starts it booting, and only a placed instance
//! takes the other events (the same status, boots, disks, interfaces and snapshots). A compute
//! host's counters are the sum over the instances that hold its resources (booting or running,
//! as the domain's fleet counts them): every instance change takes the instance's old share out
//! of its host and puts the new one in, so they always equal a fresh sum over the instance rows
//! without ever rescanning them.

use super::View;
use crate::pb::{CapabilityRow, ComputeHostRow, InstanceRow, InstanceStatus, OfferRow, VolumeRow};
use crate::rows::{StoredTable, Table, timestamp};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::instance::{ChangeCause, Volume};
use streamfleet_domain::hypervisor::CAPABILITIES;

/// Instance and compute host rows.
#[derive(Debug, Clone)]
pub struct InstancesView {
    /// By instance id.
    pub instances: Table<InstanceRow>,
    /// By host id.
    pub hosts: Table<ComputeHostRow>,
}

impl Default for InstancesView {
    fn default() -> Self {
        InstancesView {
            instances: Table::new("instances"),
            hosts: Table::new("compute_hosts"),
        }
    }
}

/// Whether an instance in `status` holds its host's cpus and memory (booting or running).
pub fn holds_resources(status: InstanceStatus) -> bool {
    matches!(status, InstanceStatus::Booting | InstanceStatus::Running)
}

/// The capability table of the domain, as rows (hypervisors in the table's order).
pub fn capability_rows() -> Vec<CapabilityRow> {
    CAPABILITIES
        .iter()
        .map(|c| CapabilityRow {
            hypervisor: c.hypervisor.name().to_string(),
            os: c.os.iter().map(ToString::to_string).collect(),
            features: c.features.iter().map(|f| f.name().to_string()).collect(),
            notes: c.notes.to_string(),
        })
        .collect()
}

/// What one instance adds to its host's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Share {
    instances: u32,
    cpus: u32,
    memory_mib: u32,
}

impl Share {
    fn of(r: &InstanceRow) -> Share {
        if holds_resources(r.status()) {
            Share {
                instances: 1,
                cpus: r.cpus,
                memory_mib: r.memory_mib,
            }
        } else {
            Share::default()
        }
    }

    /// Adds (`add` true) or takes out this share from a host.
    fn apply_to(self, h: &mut ComputeHostRow, add: bool) {
        let f = |field: &mut u32, v: u32| {
            *field = if add {
                field.saturating_add(v)
            } else {
                field.saturating_sub(v)
            }
        };
        f(&mut h.instances, self.instances);
        f(&mut h.used_cpus, self.cpus);
        f(&mut h.used_memory_mib, self.memory_mib);
    }
}

fn volume_row(v: &Volume) -> VolumeRow {
    VolumeRow {
        volume_id: v.volume_id.clone(),
        size_mib: v.size_mib,
    }
}

impl InstancesView {
    /// Adds (`add`) or takes out a file-system node's room on `host_id`, if the host is known.
    fn node_share(&mut self, host_id: &str, cpus: u32, memory_mib: u32, add: bool) {
        if self.hosts.get(host_id).is_none() {
            return;
        }
        let share = Share {
            instances: 1,
            cpus,
            memory_mib,
        };
        self.hosts.upsert(host_id, |h| share.apply_to(h, add));
    }

    /// Changes an instance (creating it when `create`; otherwise only once it is placed, as the
    /// domain folds nothing before `InstancePlaced`), keeping its host's counters in step.
    fn instance(
        &mut self,
        instance_id: &str,
        create: bool,
        time: DateTime<Utc>,
        f: impl FnOnce(&mut InstanceRow),
    ) {
        let before = self
            .instances
            .get(instance_id)
            .map(|r| (r.host_id.clone(), r.status(), Share::of(r)));
        match &before {
            None if !create => return,
            Some((_, InstanceStatus::Unspecified, _)) if !create => return,
            _ => {}
        }
        self.instances.upsert(instance_id, |r| {
            r.instance_id = instance_id.to_string();
            f(r);
            r.updated_at = Some(timestamp(time));
        });
        let Some(r) = self.instances.get(instance_id) else {
            return;
        };
        let (host_id, share) = (r.host_id.clone(), Share::of(r));
        let (region, hypervisor) = (r.region.clone(), r.hypervisor.clone());
        let before = before.map(|(host, _, share)| (host, share));
        if before.as_ref() == Some(&(host_id.clone(), share)) {
            return;
        }
        if let Some((host, old)) = before
            && old != Share::default()
        {
            self.hosts.update(&host, |h| old.apply_to(h, false));
        }
        if share != Share::default() {
            // A host that has not registered (yet) gets a row all the same, so its counters
            // always equal the sum over its instances.
            self.hosts.upsert(&host_id, |h| {
                if h.host_id.is_empty() {
                    h.host_id.clone_from(&host_id);
                    h.region = region;
                    h.hypervisor = hypervisor;
                }
                share.apply_to(h, true);
            });
        }
    }
}

impl View for InstancesView {
    const NAME: &'static str = "instances";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            Event::HypervisorChosen(e) => self.instance(&e.instance_id, true, time, |r| {
                r.hypervisor = e.hypervisor.name().to_string();
                r.hypervisor_reasons.clone_from(&e.reasons);
                r.offer = e.offer.as_ref().map(|o| OfferRow {
                    hypervisor: o.hypervisor.name().to_string(),
                    reason: o.reason.clone(),
                    cost: o.cost,
                });
            }),
            Event::InstancePlaced(e) => self.instance(&e.instance_id, true, time, |r| {
                r.host_id = e.host_id.to_string();
                r.region = e.region.to_string();
                r.hypervisor = e.hypervisor.name().to_string();
                r.image.clone_from(&e.image);
                r.cpus = e.cpus;
                r.memory_mib = e.memory_mib;
                r.features = e.features.iter().map(|f| f.name().to_string()).collect();
                r.private_address.clone_from(&e.addresses.private);
                r.public_address.clone_from(&e.addresses.public);
                r.volumes = e.volumes.iter().map(volume_row).collect();
                r.networks.clear();
                r.snapshots.clear();
                r.boots = 0;
                r.pid = 0;
                r.placement_reasons.clone_from(&e.reasons);
                r.failure_reason.clear();
                r.set_status(InstanceStatus::Booting);
                r.placed_at = at;
                r.launched_at = None;
            }),
            Event::InstanceLaunched(e) => self.instance(&e.instance_id, false, time, |r| {
                r.set_status(InstanceStatus::Running);
                r.boots = r.boots.saturating_add(1);
                r.pid = e.pid;
                r.failure_reason.clear();
                r.launched_at = at;
            }),
            // Moved by a migration: it booted on the target, which holds its resources now.
            Event::InstanceMoved(e) => self.instance(&e.instance_id, false, time, |r| {
                r.host_id = e.host_id.to_string();
                r.set_status(InstanceStatus::Running);
                r.boots = r.boots.saturating_add(1);
                r.pid = e.pid;
                r.failure_reason.clear();
                r.launched_at = at;
            }),
            Event::InstanceRebooted(e) => self.instance(&e.instance_id, false, time, |r| {
                match e.by {
                    // The host boots it again and reports it running.
                    ChangeCause::Command => {
                        r.set_status(InstanceStatus::Booting);
                        r.pid = 0;
                    }
                    ChangeCause::Guest => r.boots = r.boots.saturating_add(1),
                }
            }),
            Event::InstanceStopped(e) => self.instance(&e.instance_id, false, time, |r| {
                r.set_status(InstanceStatus::Stopped);
                r.pid = 0;
            }),
            // The host boots it again and reports it running.
            Event::InstanceStarted(e) => self.instance(&e.instance_id, false, time, |r| {
                r.set_status(InstanceStatus::Booting);
                r.failure_reason.clear();
            }),
            Event::InstanceTerminated(e) => self.instance(&e.instance_id, false, time, |r| {
                r.set_status(InstanceStatus::Terminated);
                r.pid = 0;
            }),
            Event::InstanceFailed(e) => self.instance(&e.instance_id, false, time, |r| {
                r.set_status(InstanceStatus::Failed);
                r.failure_reason.clone_from(&e.reason);
                r.pid = 0;
            }),
            Event::VolumeAttached(e) => self.instance(&e.instance_id, false, time, |r| {
                r.volumes.push(volume_row(&e.volume));
            }),
            Event::VolumeDetached(e) => self.instance(&e.instance_id, false, time, |r| {
                r.volumes.retain(|v| v.volume_id != e.volume_id);
            }),
            Event::NetworkAttached(e) => self.instance(&e.instance_id, false, time, |r| {
                r.networks.push(e.network_id.clone());
            }),
            Event::NetworkDetached(e) => self.instance(&e.instance_id, false, time, |r| {
                r.networks.retain(|n| *n != e.network_id);
            }),
            Event::SnapshotTaken(e) => self.instance(&e.instance_id, false, time, |r| {
                r.snapshots.push(e.snapshot_id.clone());
            }),
            // As the domain folds it: a failed attach or snapshot is undone.
            Event::InstanceChangeFailed(e) => {
                self.instance(&e.instance_id, false, time, |r| {
                    match e.operation.as_str() {
                        "attach-volume" => r.volumes.retain(|v| v.volume_id != e.target),
                        "attach-network" => r.networks.retain(|n| *n != e.target),
                        "snapshot" => r.snapshots.retain(|n| *n != e.target),
                        _ => {}
                    }
                })
            }
            // A file system's nodes hold room on their hosts as the domain's fleet counts it.
            Event::FileSystemCreated(e) => {
                for n in &e.nodes {
                    self.node_share(n.host_id.as_str(), n.cpus, n.memory_mib, true);
                }
            }
            Event::ReplacementChosen(e) => {
                self.node_share(e.from_host.as_str(), e.cpus, e.memory_mib, false);
                self.node_share(e.host_id.as_str(), e.cpus, e.memory_mib, true);
            }
            Event::ComputeHostRegistered(e) => self.hosts.upsert(&e.host_id, |h| {
                h.host_id = e.host_id.to_string();
                h.region = e.region.to_string();
                h.hypervisor = e.hypervisor.name().to_string();
                h.cpus = e.cpus;
                h.memory_mib = e.memory_mib;
                h.detail.clone_from(&e.detail);
                h.registered_at = at;
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.instances, &mut self.hosts]
    }
}
