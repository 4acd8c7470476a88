//! The image catalogue: what an instance can be launched from, the OS each image holds and the
//! hypervisors that run it. Each image is built by the project's own scripts from Debian
//! packages (see `scripts/guest-image.sh`), never downloaded from elsewhere.

use serde::Serialize;
use streamfleet_bus_schemas::compute::{Hypervisor, Os};

/// One image of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Its name, as `LaunchInstance.image` names it.
    pub name: &'static str,
    /// The operating system it holds.
    pub os: Os,
    /// The hypervisors that run it.
    pub hypervisors: &'static [Hypervisor],
    /// What it is, for people.
    #[serde(skip)]
    pub about: &'static str,
}

/// The image a streaming host launched by the host-management service is an instance of.
pub const STREAMING_HOST: &str = "synthetic-app";

/// Every image the fleet can launch.
pub const CATALOGUE: [Image; 2] = [
    Image {
        name: "linux-busybox",
        os: Os::Linux,
        hypervisors: &[Hypervisor::Qemu, Hypervisor::Crun],
        about: "busybox with a tiny app on port 7000 that answers with its id, boot count, a counter on its disk, its disks and its interfaces; under qemu with Debian's kernel (an initramfs), under crun as an OCI bundle",
    },
    Image {
        name: "synthetic-app",
        os: Os::Linux,
        hypervisors: &[Hypervisor::Sim],
        about: "the host agent's simulated streaming host and its synthetic app",
    },
];

/// The image called `name`.
pub fn image(name: &str) -> Option<&'static Image> {
    CATALOGUE.iter().find(|i| i.name == name)
}
