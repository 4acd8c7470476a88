//! The closed sets of command and event types, each declared once in a table below; the enum,
//! its type names, subjects, parsing and schema listing all come from that table.

use crate::dfs::*;
use crate::payloads::*;
use serde::Serialize;

/// A payload that could not be read as the type its envelope names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The `type` attribute names no type this build knows.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// The payload is missing a field or has one of the wrong type; serde's message names it.
    #[error("invalid `{type_name}` payload: {detail}")]
    Invalid {
        /// The type being read.
        type_name: &'static str,
        /// What is wrong, naming the field.
        detail: String,
    },
}

macro_rules! message_set {
    ($(#[$doc:meta])* $name:ident in $envelope:ident { $($variant:ident => $subject:expr),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum $name {
            $(
                #[allow(missing_docs)]
                $variant($variant),
            )+
        }

        impl $name {
            /// Every type name, in declaration order.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            /// The type name, as in the envelope's `type`.
            pub fn type_name(&self) -> &'static str {
                match self { $($name::$variant(_) => stringify!($variant)),+ }
            }

            /// Reads a payload of the named type from any serde deserializer.
            pub fn from_deserializer<'de, D>(type_name: &str, data: D) -> Result<Self, PayloadError>
            where
                D: serde::Deserializer<'de>,
            {
                match type_name {
                    $(stringify!($variant) => <$variant as serde::Deserialize>::deserialize(data)
                        .map($name::$variant)
                        .map_err(|e| PayloadError::Invalid {
                            type_name: stringify!($variant),
                            detail: e.to_string(),
                        }),)+
                    other => Err(PayloadError::UnknownType(other.to_string())),
                }
            }

            /// Reads a payload of the named type from a JSON value.
            pub fn from_parts(type_name: &str, data: serde_json::Value) -> Result<Self, PayloadError> {
                Self::from_deserializer(type_name, data)
            }

            /// Reads a payload of the named type from its JSON text (no intermediate value tree).
            pub fn from_json(type_name: &str, data: &str) -> Result<Self, PayloadError> {
                let mut de = serde_json::Deserializer::from_str(data);
                let value = Self::from_deserializer(type_name, &mut de)?;
                de.end().map_err(|e| PayloadError::Invalid { type_name: value.type_name(), detail: e.to_string() })?;
                Ok(value)
            }

            /// The payload as JSON.
            pub fn to_data(&self) -> serde_json::Value {
                match self {
                    $($name::$variant(p) => serde_json::to_value(p)
                        .expect("payloads are plain data and always serialize"),)+
                }
            }

            /// The subject pattern of a type name (commands: the exact subject; events: the
            /// category part of the subject).
            pub fn subject_of(type_name: &str) -> Option<&'static str> {
                match type_name {
                    $(stringify!($variant) => Some($subject),)+
                    _ => None,
                }
            }

            /// `(type name, JSON Schema of its payload)` for every type.
            pub fn payload_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$((stringify!($variant), schemars::schema_for!($variant))),+]
            }

            /// `(type name, JSON Schema of the whole envelope carrying it)` for every type.
            pub fn envelope_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$((stringify!($variant), schemars::schema_for!(crate::$envelope<$variant>))),+]
            }
        }
    };
}

message_set! {
    /// Every command the node accepts. Its subject is fixed per type.
    Command in CommandEnvelope {
        IssueToken => "sf.cmd.token.issue",
        RedeemToken => "sf.cmd.token.redeem",
        AdmitHost => "sf.cmd.host.admit",
        RegisterHost => "sf.cmd.host.register",
        RequestHost => "sf.cmd.host.request",
        AssignSession => "sf.cmd.host.assign",
        ReleaseSession => "sf.cmd.host.release",
        RecordHeartbeats => "sf.cmd.heartbeat.record",
        DrainHost => "sf.cmd.host.drain",
        RemoveHost => "sf.cmd.host.remove",
        ProvisionSession => "sf.cmd.session.provision",
        EndSession => "sf.cmd.session.end",
        SetBufferTarget => "sf.cmd.buffer.set",
        RegisterApp => "sf.cmd.app.register",
        ReleaseVersion => "sf.cmd.app.release",
        OpenDiscrepancy => "sf.cmd.discrepancy.open",
        ResolveDiscrepancy => "sf.cmd.discrepancy.resolve",
        ScheduleMigration => "sf.cmd.migration.schedule",
        CancelMigration => "sf.cmd.migration.cancel",
        ReportMigration => "sf.cmd.migration.report",
        ReportNodeFailure => "sf.cmd.node.report-failure",
        CreateFileSystem => "sf.cmd.dfs.create",
        CheckpointNode => "sf.cmd.node.checkpoint",
        ReportNode => "sf.cmd.node.report",
        RecordNodeLiveness => "sf.cmd.node.liveness",
        SelectCipher => "sf.cmd.cipher.select",
        LaunchInstance => "sf.cmd.instance.launch",
        StopInstance => "sf.cmd.instance.stop",
        StartInstance => "sf.cmd.instance.start",
        RebootInstance => "sf.cmd.instance.reboot",
        TerminateInstance => "sf.cmd.instance.terminate",
        AttachVolume => "sf.cmd.instance.attach-volume",
        DetachVolume => "sf.cmd.instance.detach-volume",
        AttachNetwork => "sf.cmd.instance.attach-network",
        DetachNetwork => "sf.cmd.instance.detach-network",
        SnapshotInstance => "sf.cmd.instance.snapshot",
        ReportInstance => "sf.cmd.instance.report",
        RegisterComputeHost => "sf.cmd.compute.register",
    }
}

message_set! {
    /// Every event the log records. Published on `sf.evt.<category>.<type>`.
    Event in EventEnvelope {
        TokenIssued => "token",
        TokenRedeemed => "token",
        HostAdmitted => "host",
        HostRequested => "host",
        HostRegistered => "host",
        SessionAssigned => "host",
        SessionReleased => "host",
        HeartbeatReceived => "host",
        HostDraining => "host",
        HostRemoved => "host",
        SessionProvisioned => "session",
        SessionEnded => "session",
        BufferTargetSet => "buffer",
        AppRegistered => "app",
        VersionReleased => "app",
        DiscrepancyOpened => "discrepancy",
        DiscrepancyResolved => "discrepancy",
        MigrationScheduled => "migration",
        MigrationTargetReady => "migration",
        VolumeSyncStarted => "migration",
        VolumeSyncRound => "migration",
        VolumeSynced => "migration",
        CustomerNotified => "migration",
        MigrationStarted => "migration",
        MigrationNetworkDetached => "migration",
        MigrationFinalSynced => "migration",
        MigrationSourceStopped => "migration",
        MigrationTargetLaunched => "migration",
        MigrationNetworkAttached => "migration",
        MigrationCompleted => "migration",
        MigrationFailed => "migration",
        MigrationRolledBack => "migration",
        MigrationCancelled => "migration",
        FileSystemCreated => "dfs",
        NodeServing => "node",
        NodeUnresponsive => "node",
        NodeAnswering => "node",
        NodeFailed => "node",
        ReplacementChosen => "node",
        NodeFenced => "node",
        NetworkVolumeAttached => "node",
        CheckpointRequested => "node",
        CheckpointTaken => "node",
        ReplacementLaunched => "node",
        AddressReassigned => "node",
        NodeRecovered => "node",
        BlockReportReceived => "node",
        RecoveryFailed => "node",
        CipherSelected => "cipher",
        HypervisorChosen => "instance",
        InstancePlaced => "instance",
        InstanceLaunched => "instance",
        InstanceStopped => "instance",
        InstanceStarted => "instance",
        InstanceRebooted => "instance",
        InstanceTerminated => "instance",
        VolumeAttached => "instance",
        VolumeDetached => "instance",
        NetworkAttached => "instance",
        NetworkDetached => "instance",
        SnapshotTaken => "instance",
        InstanceFailed => "instance",
        InstanceChangeFailed => "instance",
        InstanceMoved => "instance",
        ComputeHostRegistered => "compute",
    }
}

impl Command {
    /// The command's subject, `sf.cmd.<aggregate>.<verb>`; each principal sends it on
    /// [`Command::subject_as`].
    pub fn subject(&self) -> &'static str {
        Command::subject_of(self.type_name()).expect("every command type has a subject")
    }

    /// The subject `principal` sends this command on: `<subject>.<principal>`.
    pub fn subject_as(&self, principal: &crate::principal::Principal) -> String {
        crate::subjects::command_as(self.subject(), principal)
    }
}

impl Event {
    /// The category of the streams this event type is recorded on.
    pub fn category_of_type(type_name: &str) -> Option<&'static str> {
        Event::subject_of(type_name)
    }
}
