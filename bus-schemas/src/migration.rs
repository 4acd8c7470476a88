//! Reboot-initiated migration (seed 001): a virtual machine moves to a host with matching
//! settings, its disks copied ahead while it runs, at the customer's next reboot or at the
//! deadline, keeping its addresses. Every step is an event on `migration-<id>`.
//!
//! Invariant: an operator (or a maintenance service) schedules and cancels; the two hosts'
//! agents report each step they carried out with [`ReportMigration`], and the node records a
//! step only in its order, from the host whose step it is. Whichever of the target's launch and
//! a failure is recorded first wins: the target takes the addresses only after its launch is
//! recorded, the source starts the instance again only after a failure is.

use crate::compute::Hypervisor;
use crate::ids::{HostId, InstanceId, MigrationId};
use crate::instance::{InstanceAddresses, Volume};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---- commands ----

/// Schedule the move of an instance to another host with the same settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleMigration {
    /// Migration id (letters, digits, `-`, `_`): the stream is `migration-<migration_id>`.
    pub migration_id: MigrationId,
    /// The instance to move.
    pub instance_id: InstanceId,
    /// Why it moves (maintenance, retirement, …), for the customer and the audit.
    pub reason: String,
    /// The latest moment of the move: then it moves anyway (a clean shutdown, then a hard stop
    /// after the grace period). Absent: 24 hours after scheduling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The host to move to; absent: the service picks a matching one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<HostId>,
    /// Who is told (the NATS subject `sf.customer.<customer>.notice`); absent: the instance id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
    /// Seconds between incremental sync rounds (1..=3600); absent: 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_seconds: Option<u32>,
}

/// Cancel a migration before its move starts: the sync stops and the target's copy goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelMigration {
    /// The migration.
    pub migration_id: MigrationId,
    /// Why, in words.
    pub reason: String,
}

/// Why a move starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MigrationTrigger {
    /// The customer rebooted the instance (from inside the guest, or `RebootInstance`).
    Reboot,
    /// The deadline passed.
    Deadline,
}

impl MigrationTrigger {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            MigrationTrigger::Reboot => "reboot",
            MigrationTrigger::Deadline => "deadline",
        }
    }
}

/// Where the target host serves one volume's copy while it is synced (an NBD export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeExport {
    /// The volume.
    pub volume_id: String,
    /// `host:port` of the export on the hosts' network.
    pub address: String,
}

/// One step a host carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum MigrationReport {
    /// Target: empty disks of the same sizes, exported for the source to write.
    TargetReady {
        /// One export per volume.
        exports: Vec<VolumeExport>,
    },
    /// Source: copying the volumes started.
    SyncStarted {
        /// The volumes' total size.
        bytes: u64,
    },
    /// Source: a sync round finished (round 0: the initial full copy).
    SyncRound {
        /// 0 for the full copy, then 1, 2, …
        round: u32,
        /// Bytes written to the target in this round.
        bytes_copied: u64,
        /// Bytes written by the guest since the round began (copied by the next one).
        dirty_bytes_left: u64,
        /// How long the round took.
        duration_ms: u64,
    },
    /// Source: the move starts; the guest stopped running at `guest_stopped_at`.
    Triggered {
        /// Why.
        trigger: MigrationTrigger,
        /// When the guest last ran on the source.
        guest_stopped_at: DateTime<Utc>,
    },
    /// Source: the addresses no longer lead to the source.
    NetworkDetached,
    /// Source: what was still dirty is on the target.
    FinalSynced {
        /// Bytes written to the target.
        bytes_copied: u64,
        /// How long it took.
        duration_ms: u64,
    },
    /// Source: the source's hypervisor process has ended (the fence).
    SourceStopped,
    /// Target: the instance booted on the target from the synced disks.
    TargetLaunched {
        /// The hypervisor's process.
        pid: u32,
        /// From starting the hypervisor to the guest answering.
        boot_ms: u64,
    },
    /// Target: the addresses lead to the target.
    NetworkAttached,
    /// Target: the instance answered on its address from the target.
    Answered {
        /// When.
        at: DateTime<Utc>,
    },
    /// Either host: the step under way failed.
    Failed {
        /// Why.
        cause: String,
    },
    /// Source: after a failure, the instance runs on the source again with its own disks and
    /// addresses (or never stopped).
    RolledBack,
}

impl MigrationReport {
    /// The step's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            MigrationReport::TargetReady { .. } => "target_ready",
            MigrationReport::SyncStarted { .. } => "sync_started",
            MigrationReport::SyncRound { .. } => "sync_round",
            MigrationReport::Triggered { .. } => "triggered",
            MigrationReport::NetworkDetached => "network_detached",
            MigrationReport::FinalSynced { .. } => "final_synced",
            MigrationReport::SourceStopped => "source_stopped",
            MigrationReport::TargetLaunched { .. } => "target_launched",
            MigrationReport::NetworkAttached => "network_attached",
            MigrationReport::Answered { .. } => "answered",
            MigrationReport::Failed { .. } => "failed",
            MigrationReport::RolledBack => "rolled_back",
        }
    }
}

/// A compute host reports a migration step it carried out (its agent, role `launcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportMigration {
    /// The migration.
    pub migration_id: MigrationId,
    /// The reporting host: the source or the target, whichever the step is for.
    pub host_id: HostId,
    /// The step.
    pub report: MigrationReport,
}

// ---- events ----

/// A migration was scheduled to a matching host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationScheduled {
    /// The migration.
    pub migration_id: MigrationId,
    /// The instance.
    pub instance_id: InstanceId,
    /// Why it moves.
    pub reason: String,
    /// Who is told.
    pub customer: String,
    /// Where it runs.
    pub source_host: HostId,
    /// Where it moves.
    pub target_host: HostId,
    /// Why the target matches, in words.
    pub matched: Vec<String>,
    /// The latest moment of the move.
    pub deadline: DateTime<Utc>,
    /// Seconds between incremental sync rounds.
    pub sync_interval_seconds: u32,
    /// The instance's settings, as the target will run it.
    pub hypervisor: Hypervisor,
    /// Its image.
    pub image: String,
    /// Virtual cpus.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Its addresses (kept).
    pub addresses: InstanceAddresses,
    /// Its disks (copied).
    pub volumes: Vec<Volume>,
    /// Its extra networks (attached on the target too).
    pub networks: Vec<String>,
}

/// The target host exports empty disks for the copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationTargetReady {
    /// The migration.
    pub migration_id: MigrationId,
    /// One export per volume.
    pub exports: Vec<VolumeExport>,
}

/// The copy of the volumes to the target started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeSyncStarted {
    /// The migration.
    pub migration_id: MigrationId,
    /// The volumes' total size.
    pub bytes: u64,
}

/// A sync round finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeSyncRound {
    /// The migration.
    pub migration_id: MigrationId,
    /// 0: the initial full copy; then 1, 2, …
    pub round: u32,
    /// Bytes copied in the round.
    pub bytes_copied: u64,
    /// Bytes the guest wrote meanwhile, for the next round.
    pub dirty_bytes_left: u64,
    /// How long it took.
    pub duration_ms: u64,
}

/// The initial full copy is done: from now on a reboot moves the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeSynced {
    /// The migration.
    pub migration_id: MigrationId,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// How long the full copy took.
    pub duration_ms: u64,
}

/// What a customer is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// The move is scheduled: a reboot before the deadline moves the instance at once.
    Scheduled {
        /// The latest moment of the move.
        deadline: DateTime<Utc>,
    },
    /// The instance moved.
    Completed {
        /// How long it did not answer.
        downtime_ms: u64,
    },
    /// The move failed; the instance runs where it ran.
    RolledBack,
    /// The move was cancelled.
    Cancelled,
}

/// A customer was told about a migration (also published on `sf.customer.<customer>.notice`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomerNotified {
    /// The migration.
    pub migration_id: MigrationId,
    /// The instance.
    pub instance_id: InstanceId,
    /// Who.
    pub customer: String,
    /// What.
    pub notice: Notice,
    /// In words.
    pub message: String,
}

/// The move started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationStarted {
    /// The migration.
    pub migration_id: MigrationId,
    /// Why.
    pub trigger: MigrationTrigger,
    /// When the guest last ran on the source.
    pub guest_stopped_at: DateTime<Utc>,
}

/// A step of the move without figures of its own.
macro_rules! migration_step {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        pub struct $name {
            /// The migration.
            pub migration_id: MigrationId,
        }
    };
}

migration_step!(
    /// The instance's addresses no longer lead to the source.
    MigrationNetworkDetached
);
migration_step!(
    /// The source's hypervisor process ended: the source copy can no longer answer.
    MigrationSourceStopped
);
migration_step!(
    /// The instance's addresses lead to the target.
    MigrationNetworkAttached
);

/// What was still dirty reached the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationFinalSynced {
    /// The migration.
    pub migration_id: MigrationId,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// How long it took.
    pub duration_ms: u64,
}

/// The instance booted on the target from the synced disks, with its addresses and MAC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationTargetLaunched {
    /// The migration.
    pub migration_id: MigrationId,
    /// The target host.
    pub host_id: HostId,
    /// The hypervisor's process.
    pub pid: u32,
    /// From starting the hypervisor to the guest answering.
    pub boot_ms: u64,
}

/// The instance answers on its address from the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationCompleted {
    /// The migration.
    pub migration_id: MigrationId,
    /// The instance.
    pub instance_id: InstanceId,
    /// Where it runs now.
    pub host_id: HostId,
    /// From the guest's last moment on the source to its first answer from the target.
    pub downtime_ms: u64,
    /// The guest's boot on the target, within the downtime.
    pub boot_ms: u64,
    /// The rest of the downtime: the control plane's share.
    pub control_plane_ms: u64,
}

/// A step failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationFailed {
    /// The migration.
    pub migration_id: MigrationId,
    /// The step under way (the next one due).
    pub step: String,
    /// The host that said so.
    pub host_id: HostId,
    /// Why.
    pub cause: String,
}

/// After a failure the instance runs on the source with its own disks and addresses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationRolledBack {
    /// The migration.
    pub migration_id: MigrationId,
    /// The instance.
    pub instance_id: InstanceId,
    /// Where it runs.
    pub host_id: HostId,
}

/// The migration was cancelled before its move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MigrationCancelled {
    /// The migration.
    pub migration_id: MigrationId,
    /// Why.
    pub reason: String,
}
