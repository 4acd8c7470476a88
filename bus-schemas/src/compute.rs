//! The compute layer's vocabulary (seed 002): hypervisors, the operating systems images declare,
//! the features an instance may need, and the offer the service makes when it would choose
//! another hypervisor than the customer did.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What runs an instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Hypervisor {
    /// A virtual machine: one `qemu-system-x86_64` process, driven over QMP.
    Qemu,
    /// An OCI container under `crun`.
    Crun,
    /// The in-process simulated host (scale tests, the session demo).
    Sim,
}

impl Hypervisor {
    /// Every hypervisor, in the order ties are broken.
    pub const ALL: [Hypervisor; 3] = [Hypervisor::Qemu, Hypervisor::Crun, Hypervisor::Sim];

    /// Its name on the wire: `qemu`, `crun`, `sim`.
    pub fn name(self) -> &'static str {
        match self {
            Hypervisor::Qemu => "qemu",
            Hypervisor::Crun => "crun",
            Hypervisor::Sim => "sim",
        }
    }
}

impl std::fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The operating system an image holds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    /// Linux: a guest kernel of its own under qemu, the host's kernel under crun.
    Linux,
    /// Windows: a virtual machine only.
    Windows,
}

impl std::fmt::Display for Os {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        })
    }
}

/// Something an instance may need its hypervisor to do while it runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Attach and detach volumes while the instance runs.
    HotAttachVolume,
    /// Attach and detach network interfaces while the instance runs.
    HotAttachNetwork,
    /// Snapshot the instance (its disks).
    Snapshot,
    /// Reboot it in place (a guest reboot the control plane sees as an event).
    Reboot,
    /// Stop it and start it again, keeping its disks.
    StopStart,
    /// Move it to another host at a reboot, its disks synced ahead (reboot-initiated migration).
    Migrate,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 6] = [
        Feature::HotAttachVolume,
        Feature::HotAttachNetwork,
        Feature::Snapshot,
        Feature::Reboot,
        Feature::StopStart,
        Feature::Migrate,
    ];

    /// Its name on the wire, e.g. `hot_attach_volume`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::HotAttachVolume => "hot_attach_volume",
            Feature::HotAttachNetwork => "hot_attach_network",
            Feature::Snapshot => "snapshot",
            Feature::Reboot => "reboot",
            Feature::StopStart => "stop_start",
            Feature::Migrate => "migrate",
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The service's own choice, offered when it differs from the customer's: cheaper, or able to
/// do what the customer's cannot. Resending the command naming it takes the offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HypervisorOffer {
    /// The hypervisor offered.
    pub hypervisor: Hypervisor,
    /// Why, for people (`cheaper: 3 vs 12 per hour`, `qemu has no free capacity in eu-west`).
    pub reason: String,
    /// Its configured cost per instance-hour in the region (the deployment's unit).
    pub cost: u32,
}
