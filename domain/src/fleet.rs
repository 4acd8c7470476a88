//! The compute fleet as a launch decision sees it: every compute host with what it offers and
//! what its instances hold, and the addresses in use. Folded from the `compute-*` and
//! `instance-*` streams; the node keeps one and hands a copy to each launch ([`Context::compute`]).
//!
//! Invariant: the fleet is a pure fold of those events in log order ([`Fleet::evolve`]), so the
//! node's copy, a projection's and an auditor's replay agree. An instance holds its host's cpus
//! and memory from `InstancePlaced` until it fails, stops or ends (`InstanceStarted` takes them
//! again), and its address index from `InstancePlaced` until `InstanceTerminated`: two
//! instances never share an address, and an address is free again only after its instance ended.
//!
//! [`Context::compute`]: crate::Context::compute

use std::collections::{BTreeMap, BTreeSet};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::dfs::NodeRole;
use streamfleet_bus_schemas::ids::{FileSystemId, HostId, InstanceId, NodeId, RegionId};
use streamfleet_bus_schemas::instance::InstanceAddresses;

/// The private pool: `10.77.0.0/16`; `10.77.0.1` is every host's gateway.
pub const PRIVATE_POOL: [u8; 2] = [10, 77];
/// The "public" pool: `198.18.0.0/16` (the range set aside for tests and benchmarks).
pub const PUBLIC_POOL: [u8; 2] = [198, 18];
/// The gateway every compute host gives its instances (the same on every host, so an address
/// moves with one route change).
pub const GATEWAY: &str = "10.77.0.1";
/// The prefix length of the instances' private network.
pub const PREFIX: u8 = 16;
/// The first index handed out (`.0.0` is the network, `.0.1` the gateway).
const FIRST_INDEX: u32 = 2;
/// One past the last index (`.255.255` is the broadcast address).
const END_INDEX: u32 = 65_535;

/// One compute host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComputeHost {
    /// Its region.
    pub region: RegionId,
    /// Its hypervisor.
    pub hypervisor: Hypervisor,
    /// Cpus it offers.
    pub cpus: u32,
    /// Memory it offers, in MiB.
    pub memory_mib: u32,
    /// Cpus its instances hold.
    pub used_cpus: u32,
    /// Memory its instances hold, in MiB.
    pub used_memory_mib: u32,
    /// How many instances hold resources on it.
    pub instances: u32,
}

impl ComputeHost {
    /// Whether it has `cpus` and `memory_mib` free.
    pub fn has_room(&self, cpus: u32, memory_mib: u32) -> bool {
        self.cpus.saturating_sub(self.used_cpus) >= cpus
            && self.memory_mib.saturating_sub(self.used_memory_mib) >= memory_mib
    }
}

/// What one instance holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct Held {
    host_id: HostId,
    cpus: u32,
    memory_mib: u32,
    index: u32,
    /// Whether it holds its cpus and memory now.
    holding: bool,
}

/// One node of a file system where it runs now: it holds its room on its host and its address
/// index for good (file systems are never deleted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FleetNode {
    /// Its file system.
    pub file_system: FileSystemId,
    /// Its role.
    pub role: NodeRole,
    /// Its host now.
    pub host_id: HostId,
    /// Its placement now (0 at creation, one more per replacement).
    pub generation: u32,
    /// Its dedicated address.
    pub address: String,
    /// Its network volume.
    pub volume_id: String,
    /// Cpus it holds.
    pub cpus: u32,
    /// Memory it holds, MiB.
    pub memory_mib: u32,
}

/// The fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fleet {
    /// Every compute host.
    pub hosts: BTreeMap<HostId, ComputeHost>,
    instances: BTreeMap<InstanceId, Held>,
    indices: BTreeSet<u32>,
    /// Every file-system node.
    pub nodes: BTreeMap<NodeId, FleetNode>,
    /// Every file system's region.
    pub file_systems: BTreeMap<FileSystemId, RegionId>,
}

/// The addresses of pool index `index`.
pub fn addresses_of(index: u32) -> InstanceAddresses {
    let (hi, lo) = ((index >> 8) as u8, (index & 0xff) as u8);
    InstanceAddresses {
        private: format!("{}.{}.{hi}.{lo}", PRIVATE_POOL[0], PRIVATE_POOL[1]),
        public: format!("{}.{}.{hi}.{lo}", PUBLIC_POOL[0], PUBLIC_POOL[1]),
    }
}

/// The pool index of a private address, if it is one of the pool's.
fn index_of(addresses: &InstanceAddresses) -> Option<u32> {
    let octets: Vec<u8> = addresses
        .private
        .split('.')
        .map(|o| o.parse().ok())
        .collect::<Option<_>>()?;
    match octets[..] {
        [a, b, hi, lo] if [a, b] == PRIVATE_POOL => Some(u32::from(hi) << 8 | u32::from(lo)),
        _ => None,
    }
}

impl Fleet {
    /// Whether this event changes the fleet (the node folds only those).
    pub fn concerns(event: &Event) -> bool {
        matches!(
            event,
            Event::ComputeHostRegistered(_)
                | Event::InstancePlaced(_)
                | Event::InstanceStopped(_)
                | Event::InstanceStarted(_)
                | Event::InstanceFailed(_)
                | Event::InstanceTerminated(_)
                | Event::InstanceMoved(_)
                | Event::FileSystemCreated(_)
                | Event::ReplacementChosen(_)
        )
    }

    /// The pool index of a node's address, if it is the pool's.
    pub fn index_of_address(address: &str) -> Option<u32> {
        index_of(&InstanceAddresses {
            private: address.to_string(),
            public: String::new(),
        })
    }

    /// Moves `cpus` and `memory_mib` onto host `host_id` (`true`) or off it.
    fn hold_room(&mut self, host_id: &HostId, cpus: u32, memory_mib: u32, holding: bool) {
        let Some(host) = self.hosts.get_mut(host_id) else {
            return;
        };
        if holding {
            host.used_cpus += cpus;
            host.used_memory_mib += memory_mib;
            host.instances += 1;
        } else {
            host.used_cpus = host.used_cpus.saturating_sub(cpus);
            host.used_memory_mib = host.used_memory_mib.saturating_sub(memory_mib);
            host.instances = host.instances.saturating_sub(1);
        }
    }

    /// The lowest free address index, if the pool has one.
    pub fn free_index(&self) -> Option<u32> {
        (FIRST_INDEX..END_INDEX).find(|i| !self.indices.contains(i))
    }

    /// Folds one event (others leave the fleet as it was).
    pub fn evolve(&mut self, event: &Event) {
        match event {
            Event::ComputeHostRegistered(e) => {
                let host = self
                    .hosts
                    .entry(e.host_id.clone())
                    .or_insert_with(|| ComputeHost {
                        region: e.region.clone(),
                        hypervisor: e.hypervisor,
                        cpus: 0,
                        memory_mib: 0,
                        used_cpus: 0,
                        used_memory_mib: 0,
                        instances: 0,
                    });
                host.region = e.region.clone();
                host.hypervisor = e.hypervisor;
                host.cpus = e.cpus;
                host.memory_mib = e.memory_mib;
            }
            Event::InstancePlaced(e) => {
                let Some(index) = index_of(&e.addresses) else {
                    return;
                };
                self.indices.insert(index);
                self.instances.insert(
                    e.instance_id.clone(),
                    Held {
                        host_id: e.host_id.clone(),
                        cpus: e.cpus,
                        memory_mib: e.memory_mib,
                        index,
                        holding: false,
                    },
                );
                self.hold(&e.instance_id, true);
            }
            Event::InstanceStarted(e) => self.hold(&e.instance_id, true),
            // Its room moves with it.
            Event::InstanceMoved(e) => {
                self.hold(&e.instance_id, false);
                if let Some(held) = self.instances.get_mut(&e.instance_id) {
                    held.host_id = e.host_id.clone();
                }
                self.hold(&e.instance_id, true);
            }
            Event::FileSystemCreated(e) => {
                self.file_systems
                    .insert(e.file_system.clone(), e.region.clone());
                for n in &e.nodes {
                    if let Some(index) = Fleet::index_of_address(&n.address) {
                        self.indices.insert(index);
                    }
                    self.hold_room(&n.host_id, n.cpus, n.memory_mib, true);
                    self.nodes.insert(
                        n.node_id.clone(),
                        FleetNode {
                            file_system: e.file_system.clone(),
                            role: n.role,
                            host_id: n.host_id.clone(),
                            generation: 0,
                            address: n.address.clone(),
                            volume_id: n.volume_id.clone(),
                            cpus: n.cpus,
                            memory_mib: n.memory_mib,
                        },
                    );
                }
            }
            // A node's room moves with its replacement.
            Event::ReplacementChosen(e) => {
                let Some(node) = self.nodes.get(&e.node_id).cloned() else {
                    return;
                };
                self.hold_room(&node.host_id, node.cpus, node.memory_mib, false);
                self.hold_room(&e.host_id, node.cpus, node.memory_mib, true);
                if let Some(n) = self.nodes.get_mut(&e.node_id) {
                    n.host_id = e.host_id.clone();
                    n.generation = e.generation;
                }
            }
            Event::InstanceStopped(e) => self.hold(&e.instance_id, false),
            Event::InstanceFailed(e) => self.hold(&e.instance_id, false),
            Event::InstanceTerminated(e) => {
                self.hold(&e.instance_id, false);
                if let Some(held) = self.instances.remove(&e.instance_id) {
                    self.indices.remove(&held.index);
                }
            }
            _ => {}
        }
    }

    /// Makes the instance hold its resources (`true`) or give them back.
    fn hold(&mut self, instance: &InstanceId, holding: bool) {
        let Some(held) = self.instances.get_mut(instance) else {
            return;
        };
        if held.holding == holding {
            return;
        }
        held.holding = holding;
        let Some(host) = self.hosts.get_mut(&held.host_id) else {
            return;
        };
        if holding {
            host.used_cpus += held.cpus;
            host.used_memory_mib += held.memory_mib;
            host.instances += 1;
        } else {
            host.used_cpus = host.used_cpus.saturating_sub(held.cpus);
            host.used_memory_mib = host.used_memory_mib.saturating_sub(held.memory_mib);
            host.instances = host.instances.saturating_sub(1);
        }
    }

    /// Whether `host_id` has the room an instance holding `cpus` and `memory_mib` needs (for
    /// starting a stopped instance again).
    pub fn host_has_room(&self, host_id: &HostId, cpus: u32, memory_mib: u32) -> bool {
        self.hosts
            .get(host_id)
            .is_some_and(|h| h.has_room(cpus, memory_mib))
    }

    /// The regions with a compute host, in name order.
    pub fn regions(&self) -> BTreeSet<&RegionId> {
        self.hosts.values().map(|h| &h.region).collect()
    }
}

/// The configured cost per instance-hour of each hypervisor in each region (the deployment's
/// unit); a region without its own figures uses [`Costs::default_of`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Costs {
    /// `(region, hypervisor) → cost`.
    pub per_region: BTreeMap<(RegionId, Hypervisor), u32>,
}

impl Costs {
    /// The default cost of `hypervisor`: a virtual machine costs more than a container, the
    /// simulation least.
    pub fn default_of(hypervisor: Hypervisor) -> u32 {
        match hypervisor {
            Hypervisor::Qemu => 12,
            Hypervisor::Crun => 3,
            Hypervisor::Sim => 1,
        }
    }

    /// The cost of `hypervisor` in `region`.
    pub fn of(&self, region: &RegionId, hypervisor: Hypervisor) -> u32 {
        self.per_region
            .get(&(region.clone(), hypervisor))
            .copied()
            .unwrap_or_else(|| Costs::default_of(hypervisor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_back_to_their_index() {
        for i in [2, 255, 256, 4097, 65_534] {
            assert_eq!(index_of(&addresses_of(i)), Some(i));
        }
        assert_eq!(addresses_of(258).private, "10.77.1.2");
        assert_eq!(addresses_of(258).public, "198.18.1.2");
    }
}
