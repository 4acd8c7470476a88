//! The driver trait: what every hypervisor does for an instance, and the capability table row
//! it declares (`streamfleet_domain::hypervisor::CAPABILITIES`), like libvirt's.
//!
//! Invariant: a driver is asked only for what its row declares (the domain refuses the rest as
//! `unsupported` before anything is recorded); asked anyway, it answers
//! [`DriverError::Unsupported`] and changes nothing. Every operation is idempotent on the
//! instance's folder: launching an instance whose disks exist boots it from them, terminating
//! one that is gone is done.

use std::future::Future;
use std::path::PathBuf;
use streamfleet_bus_schemas::compute::Hypervisor;
use streamfleet_bus_schemas::ids::InstanceId;
use streamfleet_bus_schemas::instance::{InstanceAddresses, Volume};
use streamfleet_bus_schemas::migration::VolumeExport;
use streamfleet_domain::hypervisor::{Capabilities, capabilities};

/// The line the catalogue's images print (on the serial console, or a container's standard
/// output) once their app listens: the instance answers on its address from then on.
pub(crate) const READY_LINE: &str = "streamfleet guest ready";

/// What a driver needs to run one instance, from its `InstancePlaced` and later events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// The instance.
    pub instance_id: InstanceId,
    /// The image (its catalogue name).
    pub image: String,
    /// Virtual cpus.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Its addresses.
    pub addresses: InstanceAddresses,
    /// Its disks, the root disk first.
    pub volumes: Vec<Volume>,
    /// The networks attached after launch (one more interface each, on that network's bridge).
    pub networks: Vec<String>,
}

/// An instance running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// The hypervisor's process (QEMU's, the container's init).
    pub pid: u32,
}

/// Something that happened to an instance without the agent asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happening {
    /// The guest rebooted itself; the driver booted it again.
    GuestRebooted(Running),
    /// The guest powered itself off; its process ended.
    GuestPoweredOff,
    /// Its process ended behind the driver's back.
    Gone(String),
    /// The guest asked for a reboot while reboots are held for its migration
    /// ([`Driver::hold_reboots`]): it is paused, not rebooted, since `at`.
    RebootHeld {
        /// When the guest stopped running.
        at: chrono::DateTime<chrono::Utc>,
    },
}

/// What one sync round of a migration copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncFigures {
    /// Bytes written to the target.
    pub bytes_copied: u64,
    /// Bytes the guest wrote meanwhile (the next round's).
    pub dirty_bytes_left: u64,
    /// How long it took.
    pub duration: std::time::Duration,
}

/// Why a driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The hypervisor cannot do this at all (its capability table says so).
    #[error("{hypervisor} cannot {operation}")]
    Unsupported {
        /// The hypervisor.
        hypervisor: Hypervisor,
        /// What was asked.
        operation: &'static str,
    },
    /// The image is missing on this host.
    #[error("image {0} is not on this host (build it with scripts/guest-image.sh)")]
    MissingImage(String),
    /// The instance is not running here.
    #[error("instance {0} is not running on this host")]
    NotRunning(InstanceId),
    /// A program the driver runs failed.
    #[error("{program} failed: {detail}")]
    Program {
        /// The program and its first arguments.
        program: String,
        /// Its exit status and what it said.
        detail: String,
    },
    /// The hypervisor's control channel (QMP) refused or broke.
    #[error("control channel: {0}")]
    Control(String),
    /// The instance did not become ready in time.
    #[error("instance {instance_id} was not ready after {seconds} s")]
    NotReady {
        /// The instance.
        instance_id: InstanceId,
        /// How long the driver waited.
        seconds: u64,
    },
    /// A file of the instance could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl DriverError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DriverError {
        let path = path.into();
        move |source| DriverError::Io { path, source }
    }
}

/// One hypervisor on one compute host. What its capability row lacks it need not implement:
/// the changes (volumes, networks, snapshots) answer `unsupported` unless it does.
pub trait Driver: Send + Sync + 'static {
    /// The hypervisor.
    fn hypervisor(&self) -> Hypervisor;

    /// Its row of the capability table.
    fn capabilities(&self) -> &'static Capabilities {
        capabilities(self.hypervisor())
    }

    /// How it runs here, for people (`qemu 7.2, tcg`).
    fn detail(&self) -> String;

    /// Boots the instance (creating its disks when they do not exist yet) and returns once it
    /// answers on its address.
    fn launch(
        &self,
        spec: &InstanceSpec,
    ) -> impl Future<Output = Result<Running, DriverError>> + Send;

    /// Takes over an instance that still runs from before the agent restarted; `None`: it does
    /// not run (any leftover of it is cleaned away).
    fn adopt(
        &self,
        spec: &InstanceSpec,
    ) -> impl Future<Output = Result<Option<Running>, DriverError>> + Send;

    /// Powers the instance off, keeping its disks.
    fn stop(&self, spec: &InstanceSpec) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Boots the instance again with its disks.
    fn reboot(
        &self,
        spec: &InstanceSpec,
    ) -> impl Future<Output = Result<Running, DriverError>> + Send;

    /// Ends the instance and deletes its disks.
    fn terminate(
        &self,
        spec: &InstanceSpec,
    ) -> impl Future<Output = Result<(), DriverError>> + Send;

    /// Attaches a new, empty volume to the running instance.
    fn attach_volume(
        &self,
        _spec: &InstanceSpec,
        _volume: &Volume,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "attach-volume")
    }

    /// Detaches a volume and deletes it.
    fn detach_volume(
        &self,
        _spec: &InstanceSpec,
        _volume_id: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "detach-volume")
    }

    /// Gives the running instance one more interface, on network `network_id`.
    fn attach_network(
        &self,
        _spec: &InstanceSpec,
        _network_id: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "attach-network")
    }

    /// Takes the running instance's interface on network `network_id` away.
    fn detach_network(
        &self,
        _spec: &InstanceSpec,
        _network_id: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "detach-network")
    }

    /// Takes a snapshot of the instance's disks.
    fn snapshot(
        &self,
        _spec: &InstanceSpec,
        _snapshot_id: &str,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "snapshot")
    }

    // ---- migration (the `migrate` capability) ----

    /// Target: empty disks of the instance's sizes (kept when they exist: a resumed
    /// migration), each exported on the hosts' network for the source to write.
    fn export_disks(
        &self,
        _spec: &InstanceSpec,
    ) -> impl Future<Output = Result<Vec<VolumeExport>, DriverError>> + Send {
        std::future::ready(unsupported(self.hypervisor(), "migrate"))
    }

    /// Target: stops exporting the disks (they stay, synced, for the boot).
    fn unexport_disks(
        &self,
        _spec: &InstanceSpec,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "migrate")
    }

    /// Source: one sync round onto the target's exports — a full copy when `full` (which
    /// also starts recording the guest's writes), else what the guest wrote since the last one.
    fn sync_round(
        &self,
        _spec: &InstanceSpec,
        _exports: &[VolumeExport],
        _full: bool,
    ) -> impl Future<Output = Result<SyncFigures, DriverError>> + Send {
        std::future::ready(unsupported(self.hypervisor(), "migrate"))
    }

    /// Source: stops syncing and forgets the exports and the record of writes (nothing to do
    /// when it never started).
    fn end_sync(&self, _spec: &InstanceSpec) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Source: from now on (`hold`) a reboot the guest asks for leaves it paused and comes as
    /// [`Happening::RebootHeld`], for the move; `false`: reboots are reboots again.
    fn hold_reboots(&self, _id: &InstanceId, _hold: bool) {}

    /// Source: brings the guest to a halt for the move and says since when it has not run:
    /// paused at once, or with a `grace`, powered off cleanly within it and paused after.
    fn halt(
        &self,
        _spec: &InstanceSpec,
        _grace: Option<std::time::Duration>,
    ) -> impl Future<Output = Result<chrono::DateTime<chrono::Utc>, DriverError>> + Send {
        std::future::ready(unsupported(self.hypervisor(), "migrate"))
    }

    /// Withdraws the instance's addresses from this host (a move's first step).
    fn detach_addresses(&self, _spec: &InstanceSpec) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Routes the instance's addresses to this host (a move's last step, or its rollback).
    fn attach_addresses(
        &self,
        _spec: &InstanceSpec,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "migrate")
    }

    /// Ends the instance's process at once, keeping its disks (the source of a move: the fence).
    fn power_off(
        &self,
        _spec: &InstanceSpec,
    ) -> impl Future<Output = Result<(), DriverError>> + Send {
        refused(self.hypervisor(), "migrate")
    }

    /// Boots the instance from its disks without routing its addresses here (the target of a
    /// move, before its launch is recorded); running already: that one.
    fn boot_unrouted(
        &self,
        _spec: &InstanceSpec,
    ) -> impl Future<Output = Result<Running, DriverError>> + Send {
        std::future::ready(unsupported(self.hypervisor(), "migrate"))
    }

    /// The first moment the instance's address answers from where clients come, trying for up
    /// to `within`.
    fn first_answer(
        &self,
        _spec: &InstanceSpec,
        _within: std::time::Duration,
    ) -> impl Future<Output = Option<chrono::DateTime<chrono::Utc>>> + Send {
        std::future::ready(None)
    }

    /// The next thing that happened to one of its instances without being asked.
    fn next_happening(&self) -> impl Future<Output = (InstanceId, Happening)> + Send;
}

/// One instance at a time: a driver does one thing to an instance at once (its agent queues
/// them in log order; a happening the driver handles itself waits its turn too).
#[derive(Default)]
pub(crate) struct Turns(
    std::sync::Mutex<std::collections::HashMap<InstanceId, std::sync::Arc<tokio::sync::Mutex<()>>>>,
);

impl Turns {
    /// Waits for instance `id`'s turn; it ends when the guard is dropped.
    pub(crate) async fn take(&self, id: &InstanceId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// Deletes an instance's folder (gone already: done).
pub(crate) fn remove_folder(dir: &std::path::Path) -> Result<(), DriverError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DriverError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A driver's answer to what its row lacks: refused at once.
fn refused(
    hypervisor: Hypervisor,
    operation: &'static str,
) -> std::future::Ready<Result<(), DriverError>> {
    std::future::ready(unsupported(hypervisor, operation))
}

/// Refuses `operation` on `hypervisor`.
pub(crate) fn unsupported<T>(
    hypervisor: Hypervisor,
    operation: &'static str,
) -> Result<T, DriverError> {
    Err(DriverError::Unsupported {
        hypervisor,
        operation,
    })
}
