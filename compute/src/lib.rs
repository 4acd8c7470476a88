//! Streamfleet's compute layer (seed 002): the drivers that run instances, one per hypervisor
//! behind one trait with a declared capability table, a compute host's network, and the agent
//! that carries out the instance events for its host.
//!
//! - [`driver`]: the [`Driver`] trait, [`InstanceSpec`], [`DriverError`].
//! - [`qemu`] (over [`qmp`], on the accelerator [`accel`] chose), [`crun`], [`sim`]: the drivers.
//! - [`network`]: the fabric, a host's namespace and bridge, the routed addresses.
//! - [`agent`]: the thin loop from the log's instance events to a driver and back to commands.
//! - [`migration`]: a host's part in a migration — the duties its events give, carried out.
//! - [`teardown`]: ending what a compute host runs, as a power cut would (`up` stopping).
//!
//! Invariant: the domain decides, the agent carries out. Nothing here decides what an instance
//! should be; it follows the instance's events and reports only what the host alone can see
//! (running, failed, the guest rebooted or powered off).

pub mod accel;
pub mod agent;
pub mod crun;
pub mod dfs;
pub mod driver;
pub mod migration;
pub mod network;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod sim;
pub mod teardown;

pub use driver::{Driver, DriverError, Happening, InstanceSpec, Running};
