//! The instance command set and its events (seed 002): one command set over every hypervisor,
//! every change an event on the instance's stream `instance-<id>`, and the compute hosts'
//! registrations on `compute-<host id>`.
//!
//! Invariant: the customer's commands (`LaunchInstance` … `SnapshotInstance`) record what the
//! control plane decided; the host that runs the instance carries it out and reports what only it
//! can know (it answers on its address, it failed, the guest rebooted or powered off) with
//! [`ReportInstance`]. A command a hypervisor cannot carry out is refused before anything is
//! recorded.

use crate::compute::{Feature, Hypervisor, HypervisorOffer};
use crate::ids::{HostId, InstanceId, RegionId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---- commands ----

/// Launch an instance from an image of the catalogue. The service chooses the hypervisor (the
/// customer's when it can) and the host, and records why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchInstance {
    /// Instance id (letters, digits, `-`, `_`): the stream is `instance-<instance_id>`.
    pub instance_id: InstanceId,
    /// The image, by its catalogue name (`streamfleet instance images`).
    pub image: String,
    /// The customer's hypervisor; absent: the service chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<Hypervisor>,
    /// What the instance will need its hypervisor to do while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// The region to run in; absent: the region nearest to `client_ip` that can run it, or
    /// without one the cheapest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionId>,
    /// The address of the client the instance will serve (IPv4 or IPv6): with no region named,
    /// the nearest region to it is chosen among those that can run the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    /// Virtual cpus (1..=64).
    pub cpus: u32,
    /// Memory in MiB (16..=262144).
    pub memory_mib: u32,
    /// Size of its root disk in MiB (1..=1048576).
    pub disk_mib: u32,
}

macro_rules! instance_command {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// The instance: the stream is `instance-<instance_id>`.
            pub instance_id: InstanceId,
        }
    };
}

instance_command!(
    /// Stop a running instance (a clean power-off), keeping its disks and addresses.
    StopInstance
);
instance_command!(
    /// Start a stopped instance again on its host, with its disks and addresses.
    StartInstance
);
instance_command!(
    /// Reboot a running instance: it boots again with its disks and addresses.
    RebootInstance
);
instance_command!(
    /// End an instance for good: its process ends, its disks are deleted, its addresses go back
    /// to the pool.
    TerminateInstance
);

/// Attach a new volume (an empty disk) to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachVolume {
    /// The instance.
    pub instance_id: InstanceId,
    /// The volume's id, unique within the instance (letters, digits, `-`, `_`).
    pub volume_id: String,
    /// Its size in MiB (1..=1048576).
    pub size_mib: u32,
}

/// Detach a volume the instance has (not its root disk); its data is deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachVolume {
    /// The instance.
    pub instance_id: InstanceId,
    /// The volume.
    pub volume_id: String,
}

/// Attach another network interface to an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachNetwork {
    /// The instance.
    pub instance_id: InstanceId,
    /// The interface's id, unique within the instance (letters, digits, `-`, `_`).
    pub network_id: String,
}

/// Detach a network interface attached with [`AttachNetwork`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetachNetwork {
    /// The instance.
    pub instance_id: InstanceId,
    /// The interface.
    pub network_id: String,
}

/// Snapshot an instance's disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInstance {
    /// The instance.
    pub instance_id: InstanceId,
    /// The snapshot's id, unique within the instance (letters, digits, `-`, `_`).
    pub snapshot_id: String,
}

/// A compute host (sent by its agent, role `launcher`) says what it runs and how much it has.
/// Sent again on every start: the host's figures are its latest registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterComputeHost {
    /// The host: the stream is `compute-<host_id>`.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// The hypervisor it runs.
    pub hypervisor: Hypervisor,
    /// Its cpus for instances.
    pub cpus: u32,
    /// Its memory for instances, in MiB.
    pub memory_mib: u32,
    /// How it runs its hypervisor, for people (`qemu 7.2, tcg`, `crun 1.8, no cgroup limits`).
    pub detail: String,
}

/// What a host saw of one of its instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum InstanceReport {
    /// The instance runs (launched, or started again) and answers on its addresses.
    Running {
        /// The hypervisor's process id, for operators.
        pid: u32,
    },
    /// The guest rebooted itself; the host booted it again.
    GuestRebooted {
        /// The new process id.
        pid: u32,
    },
    /// The guest powered itself off.
    GuestPoweredOff,
    /// The instance cannot run: its launch failed, or its process ended behind the host's back.
    Failed {
        /// Why, from the hypervisor.
        reason: String,
    },
    /// The instance runs on the reporting host now, moved there by migration `migration_id`
    /// from `from_host` (sent by the target once its launch is recorded on the migration).
    Moved {
        /// The migration.
        migration_id: crate::ids::MigrationId,
        /// The host it ran on.
        from_host: HostId,
        /// The hypervisor's process on the new host.
        pid: u32,
    },
    /// A change recorded for the running instance could not be carried out (the instance runs
    /// on without it).
    ChangeFailed {
        /// The change, as its command's verb: `attach-volume`, `detach-volume`,
        /// `attach-network`, `detach-network` or `snapshot`.
        operation: String,
        /// What it was about: the volume, network or snapshot id.
        target: String,
        /// Why, from the hypervisor.
        reason: String,
    },
}

/// A host reports what it saw of an instance it runs (sent by its agent, role `launcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportInstance {
    /// The instance.
    pub instance_id: InstanceId,
    /// The reporting host: the instance must be placed on it.
    pub host_id: HostId,
    /// What it saw.
    pub report: InstanceReport,
}

// ---- events ----

/// The two addresses dedicated to an instance for its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceAddresses {
    /// Its private address (the deployment's private pool).
    pub private: String,
    /// Its public address (the deployment's public pool).
    pub public: String,
}

/// A disk of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Volume {
    /// Its id (`root` for the disk it boots with).
    pub volume_id: String,
    /// Its size in MiB.
    pub size_mib: u32,
}

/// The hypervisor that runs an instance was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HypervisorChosen {
    /// The instance.
    pub instance_id: InstanceId,
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// Why, in words.
    pub reasons: Vec<String>,
    /// The service's own, cheaper choice when the customer named another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<HypervisorOffer>,
}

/// An instance was placed on a host, with its resources and addresses; the host launches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstancePlaced {
    /// The instance.
    pub instance_id: InstanceId,
    /// The host.
    pub host_id: HostId,
    /// The host's region.
    pub region: RegionId,
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// The image.
    pub image: String,
    /// Virtual cpus.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The features asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<Feature>,
    /// Its addresses.
    pub addresses: InstanceAddresses,
    /// Its disks (the root disk first).
    pub volumes: Vec<Volume>,
    /// Why this host, in words.
    pub reasons: Vec<String>,
}

/// The instance runs on its host and answers on its addresses: after its launch, a start, or a
/// reboot by command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceLaunched {
    /// The instance.
    pub instance_id: InstanceId,
    /// The host.
    pub host_id: HostId,
    /// The hypervisor.
    pub hypervisor: Hypervisor,
    /// Its addresses.
    pub addresses: InstanceAddresses,
    /// Its disks.
    pub volumes: Vec<Volume>,
    /// The hypervisor's process id on the host.
    pub pid: u32,
}

/// Who or what brought a change about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeCause {
    /// A command.
    Command,
    /// The guest itself.
    Guest,
}

/// The instance was stopped (it keeps its host, disks and addresses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStopped {
    /// The instance.
    pub instance_id: InstanceId,
    /// A command, or the guest powering off.
    pub by: ChangeCause,
}

/// A stopped instance was started again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceStarted {
    /// The instance.
    pub instance_id: InstanceId,
}

/// The instance rebooted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceRebooted {
    /// The instance.
    pub instance_id: InstanceId,
    /// A command, or the guest rebooting itself.
    pub by: ChangeCause,
}

/// The instance ended for good; its addresses are free again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceTerminated {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its host.
    pub host_id: HostId,
}

/// A volume was attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeAttached {
    /// The instance.
    pub instance_id: InstanceId,
    /// The volume.
    pub volume: Volume,
}

/// A volume was detached (and deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeDetached {
    /// The instance.
    pub instance_id: InstanceId,
    /// The volume.
    pub volume_id: String,
}

/// A network interface was attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkAttached {
    /// The instance.
    pub instance_id: InstanceId,
    /// The interface.
    pub network_id: String,
}

/// A network interface was detached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NetworkDetached {
    /// The instance.
    pub instance_id: InstanceId,
    /// The interface.
    pub network_id: String,
}

/// A snapshot of the instance's disks was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotTaken {
    /// The instance.
    pub instance_id: InstanceId,
    /// The snapshot.
    pub snapshot_id: String,
}

/// The instance failed: its launch did not succeed, or its process ended behind the host's back.
/// It holds no cpus or memory on its host any more; its addresses stay its own until it is
/// terminated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceFailed {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its host.
    pub host_id: HostId,
    /// Why.
    pub reason: String,
}

/// A change recorded for an instance (a volume or network attached or detached, a snapshot) could
/// not be carried out by its host. An attach or a snapshot that failed is undone in the
/// instance's state (the volume, network or snapshot is not its own); a detach that failed
/// leaves the device with the guest, which this event says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceChangeFailed {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its host.
    pub host_id: HostId,
    /// The change: `attach-volume`, `detach-volume`, `attach-network`, `detach-network` or
    /// `snapshot`.
    pub operation: String,
    /// The volume, network or snapshot id.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// A compute host registered (or registered again on a restart) with what it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ComputeHostRegistered {
    /// The host.
    pub host_id: HostId,
    /// Its region.
    pub region: RegionId,
    /// Its hypervisor.
    pub hypervisor: Hypervisor,
    /// Cpus for instances.
    pub cpus: u32,
    /// Memory for instances, in MiB.
    pub memory_mib: u32,
    /// How it runs its hypervisor.
    pub detail: String,
}

/// The instance runs on another host now, with the same disks' contents, addresses and MAC:
/// moved by a migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InstanceMoved {
    /// The instance.
    pub instance_id: InstanceId,
    /// The migration.
    pub migration_id: crate::ids::MigrationId,
    /// Where it ran.
    pub from_host: HostId,
    /// Where it runs.
    pub host_id: HostId,
    /// The hypervisor's process there.
    pub pid: u32,
}
