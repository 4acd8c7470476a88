//! File-system nodes on a compute host (seed 004): each node of a MooseFS file system runs as a
//! crun container in a network namespace of its own behind its dedicated address, its network
//! volume mounted at `/data`; the host probes the nodes it runs, and carries out their launches,
//! recoveries and checkpoints as the log records them.
//!
//! crun, not a virtual machine: a MooseFS daemon needs no kernel of its own, a container starts
//! in milliseconds (what a failover's time is made of), and the pid namespace ends the master
//! and its writer child together. The container's root is the host's `/usr` and `/etc`
//! read-only (MooseFS from the distribution's packages), its volume the only thing it writes.
//!
//! - [`volume`]: network volumes (ext4 images on loop devices) and their fence.
//! - [`moosefs`]: MooseFS's configuration, restore, checkpoint figures and probe requests.
//! - [`container`]: a node's container and namespace.
//! - [`host`]: the loop that follows the nodes' events and carries out this host's duties.
//! - [`duty`]: which duty an event gives this host (pure).

pub mod container;
pub mod duty;
pub mod host;
pub mod moosefs;
pub mod volume;

use std::path::PathBuf;

/// Why a node's step failed on this host.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A program or the network failed.
    #[error(transparent)]
    Driver(#[from] crate::driver::DriverError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The volume is attached (to this or another host) and was not fenced.
    #[error("volume {volume_id} is attached already ({}): fence it first", devices.join(", "))]
    VolumeAttachedElsewhere {
        /// The volume.
        volume_id: String,
        /// The loop devices holding it.
        devices: Vec<String>,
    },
    /// The volume does not exist in the store.
    #[error("volume {0} is not in the volume store")]
    NoVolume(String),
    /// MooseFS refused to restore the metadata (a damaged metadata folder).
    #[error("metadata restore failed: {0}")]
    Restore(String),
    /// The node did not answer its probe in time.
    #[error("the node did not answer within {seconds} s: {detail}")]
    NotServing {
        /// How long it was given.
        seconds: u64,
        /// What the last probe saw.
        detail: String,
    },
    /// The container did not start.
    #[error("container: {0}")]
    Container(String),
}

impl NodeError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Io { path, source }
    }
}
