//! Streamfleet's domain: pure deciders, no I/O.
//!
//! Invariant: [`decide`] and [`evolve`] depend only on their arguments. The clock comes in as
//! [`Context::now`]; ids come in with the command. The same history folded with [`evolve`] gives
//! the same state on the node, in a projection and in an auditor's replay.
//!
//! Every command targets one stream ([`stream_of`]); the node loads that stream's state by
//! folding its events, calls [`decide`], and appends what it returns with the version it loaded.
//! A command that names an app ([`app_of`]) also needs the app's registration, which the node
//! folds from the app's stream and hands in as [`Context::app`].
//!
//! ```
//! use streamfleet_bus_schemas::{Command, Event, payloads::ReportNodeFailure};
//! use streamfleet_domain::{decide, evolve, stream_of, Context, Rejection, State};
//!
//! let cmd = Command::ReportNodeFailure(ReportNodeFailure { node_id: "n1".into(), reason: "silent".into() });
//! assert_eq!(stream_of(&cmd), "node-n1");
//! let ctx = Context::at(chrono::Utc::now());
//! let events = decide(&cmd, &State::default(), &ctx).unwrap();
//! assert!(matches!(events[0], Event::NodeFailed(_)));
//! let state = events.iter().fold(State::default(), evolve);
//! assert_eq!(decide(&cmd, &state, &ctx), Err(Rejection::NodeAlreadyFailed { node_id: "n1".into() }));
//! ```

pub mod app;
mod cipher;
pub mod dfs;
mod discrepancy;
pub mod fleet;
pub mod host;
pub mod hypervisor;
pub mod image;
pub mod instance;
pub mod liveness;
pub mod migration;
pub mod placement;
pub mod session;
pub mod token;

use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::ids::{
    AppId, HostId, InstanceId, MigrationId, NodeId, RegionId, SessionId, TokenId,
};
use streamfleet_bus_schemas::{Command, Event};

pub use cipher::select_ciphers;

/// What a decision may read besides the command and the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The node's clock when the command is decided.
    pub now: DateTime<Utc>,
    /// The registration of the app the command names ([`app_of`]), folded from its `app-*`
    /// stream; `None`: not registered (or the command names no app). Registrations are never
    /// withdrawn, so one read before the decision cannot be outdated by it.
    pub app: Option<app::AppState>,
    /// The compute fleet and the costs, for the commands that place instances
    /// ([`needs_fleet`]); `None` for the others.
    pub compute: Option<instance::ComputeContext>,
    /// The state of the instance the command names on another stream ([`instance_named`]),
    /// folded from its `instance-*` stream; `None`: never launched (or the command names none).
    pub instance: Option<instance::InstanceState>,
}

impl Context {
    /// A context at `now` for a command that names no app.
    pub fn at(now: DateTime<Utc>) -> Context {
        Context {
            now,
            app: None,
            compute: None,
            instance: None,
        }
    }
}

/// The state of one stream, folded from its events. Each category has its own shape. Serialised
/// (for auditors' tools) as `{"kind": "<category>", "state": {…}}`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(tag = "kind", content = "state", rename_all = "snake_case")]
pub enum State {
    /// No events yet.
    #[default]
    Empty,
    /// A `token-*` stream.
    Token(token::TokenState),
    /// A `host-*` stream.
    Host(host::HostState),
    /// A `session-*` stream.
    Session(session::SessionState),
    /// An `app-*` stream.
    App(app::AppState),
    /// A `buffer-*` stream (its last target is all there is; nothing to check against).
    Buffer,
    /// A `discrepancy-*` stream.
    Discrepancy(discrepancy::DiscrepancyState),
    /// A `migration-*` stream.
    Migration(migration::MigrationState),
    /// A `node-*` stream.
    Node(dfs::NodeState),
    /// A `dfs-*` stream (its declaration is in the fleet; that it exists is all there is here).
    FileSystem,
    /// A `cipher-*` stream.
    Cipher(cipher::CipherState),
    /// An `instance-*` stream.
    Instance(instance::InstanceState),
    /// A `compute-*` stream (a host's latest registration is in the fleet; nothing to check
    /// against here).
    Compute,
}

/// Why the domain refuses a command. Each variant is a rule; [`Rejection::rule`] names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A field is empty or malformed beyond what the schema says.
    #[error("field `{field}` is invalid: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The token id was already issued.
    #[error("token `{token_id}` was already issued")]
    TokenAlreadyIssued {
        /// The token.
        token_id: TokenId,
    },
    /// The lifetime asked for is outside the allowed range.
    #[error("ttl of {ttl_seconds}s is outside {min}..={max}s")]
    TtlOutOfRange {
        /// Asked for.
        ttl_seconds: u32,
        /// Shortest allowed.
        min: u32,
        /// Longest allowed.
        max: u32,
    },
    /// The session already exists.
    #[error("session `{session_id}` is already provisioned")]
    SessionAlreadyProvisioned {
        /// The session.
        session_id: SessionId,
    },
    /// A command for a session that was never provisioned.
    #[error("session `{session_id}` was never provisioned")]
    SessionNotProvisioned {
        /// The session.
        session_id: SessionId,
    },
    /// The session already ended.
    #[error("session `{session_id}` already ended ({reason})")]
    SessionAlreadyEnded {
        /// The session.
        session_id: SessionId,
        /// How it ended.
        reason: &'static str,
    },
    /// A host reported for a session that runs on another host.
    #[error("session `{session_id}` runs on `{expected}`, not `{reported}`")]
    SessionOnOtherHost {
        /// The session.
        session_id: SessionId,
        /// Its host.
        expected: HostId,
        /// The reporting host.
        reported: HostId,
    },
    /// No token with this id was issued.
    #[error("token `{token_id}` is unknown")]
    TokenUnknown {
        /// The token.
        token_id: TokenId,
    },
    /// The presented token is not the one issued under its id.
    #[error("token `{token_id}` is forged: it is not the token issued under that id")]
    TokenForged {
        /// The token.
        token_id: TokenId,
    },
    /// The token was already redeemed.
    #[error("token `{token_id}` was already used (session `{session_id}`)")]
    TokenAlreadyRedeemed {
        /// The token.
        token_id: TokenId,
        /// The session it was redeemed for.
        session_id: SessionId,
    },
    /// The token expired.
    #[error("token `{token_id}` expired at {expired_at}")]
    TokenExpired {
        /// The token.
        token_id: TokenId,
        /// When.
        expired_at: DateTime<Utc>,
    },
    /// The token is bound to another client IP.
    #[error("token is bound to client IP {bound}, not {presented}")]
    ClientIpMismatch {
        /// The bound IP.
        bound: String,
        /// The redeeming IP.
        presented: String,
    },
    /// The host stream already exists (requested or registered).
    #[error("host `{host_id}` already exists")]
    HostAlreadyExists {
        /// The host.
        host_id: HostId,
    },
    /// No operator admitted the host: it may not register, and the cloud is not asked for it.
    #[error("host `{host_id}` was not admitted")]
    HostNotAdmitted {
        /// The host.
        host_id: HostId,
    },
    /// The host registered in another region than it was admitted to.
    #[error("host `{host_id}` was admitted to region `{admitted}`, not `{claimed}`")]
    HostRegionMismatch {
        /// The host.
        host_id: HostId,
        /// Where it was admitted.
        admitted: RegionId,
        /// Where it says it is.
        claimed: RegionId,
    },
    /// The host never registered.
    #[error("host `{host_id}` is not registered")]
    HostNotRegistered {
        /// The host.
        host_id: HostId,
    },
    /// The host was removed.
    #[error("host `{host_id}` was removed")]
    HostRemoved {
        /// The host.
        host_id: HostId,
    },
    /// The host takes no new sessions.
    #[error("host `{host_id}` takes no new sessions ({status})")]
    HostNotAccepting {
        /// The host.
        host_id: HostId,
        /// Its status.
        status: &'static str,
    },
    /// The host runs another app.
    #[error("host `{host_id}` runs app `{app_id}`")]
    HostRunsOtherApp {
        /// The host.
        host_id: HostId,
        /// Its app.
        app_id: AppId,
    },
    /// Every slot of the host is taken.
    #[error("host `{host_id}` is full ({capacity} sessions)")]
    HostFull {
        /// The host.
        host_id: HostId,
        /// Its capacity.
        capacity: u32,
    },
    /// The host still runs sessions.
    #[error("host `{host_id}` still runs {sessions} sessions")]
    HostBusy {
        /// The host.
        host_id: HostId,
        /// How many.
        sessions: usize,
    },
    /// The session already holds a slot on this host.
    #[error("session `{session_id}` is already assigned to `{host_id}`")]
    SessionAlreadyAssigned {
        /// The session.
        session_id: SessionId,
        /// The host.
        host_id: HostId,
    },
    /// The session holds no slot on this host.
    #[error("session `{session_id}` holds no slot on `{host_id}`")]
    SessionNotOnHost {
        /// The session.
        session_id: SessionId,
        /// The host.
        host_id: HostId,
    },
    /// The command names an app that was never registered (`RegisterApp`).
    #[error("app `{app_id}` is not registered")]
    UnknownApp {
        /// The app.
        app_id: AppId,
    },
    /// No hypervisor the region offers can run the instance.
    #[error("no hypervisor can run this instance: {detail}")]
    NoHypervisor {
        /// Why each one cannot.
        detail: String,
    },
    /// The customer's hypervisor cannot run the instance; the service offers another (resend
    /// naming it to take the offer).
    #[error(
        "{requested} cannot run this instance: {why}; offered: {} ({}, {} per hour)",
        offer.hypervisor,
        offer.reason,
        offer.cost
    )]
    HypervisorUnfit {
        /// The customer's choice.
        requested: streamfleet_bus_schemas::compute::Hypervisor,
        /// Why it cannot.
        why: String,
        /// What the service offers instead.
        offer: streamfleet_bus_schemas::compute::HypervisorOffer,
    },
    /// The app was registered before; later versions come with `ReleaseVersion`.
    #[error("app `{app_id}` is already registered")]
    AppAlreadyRegistered {
        /// The app.
        app_id: AppId,
    },
    /// A release older than (or equal to) the current version.
    #[error("version {requested} is not newer than the current {current}")]
    VersionNotNewer {
        /// Current.
        current: String,
        /// Asked for.
        requested: String,
    },
    /// The discrepancy id was already opened.
    #[error("discrepancy `{discrepancy_id}` is already open")]
    DiscrepancyAlreadyOpened {
        /// The discrepancy.
        discrepancy_id: String,
    },
    /// No such discrepancy.
    #[error("discrepancy `{discrepancy_id}` was never opened")]
    DiscrepancyNotOpen {
        /// The discrepancy.
        discrepancy_id: String,
    },
    /// Already resolved.
    #[error("discrepancy `{discrepancy_id}` is already resolved")]
    DiscrepancyAlreadyResolved {
        /// The discrepancy.
        discrepancy_id: String,
    },
    /// The migration id was already scheduled.
    #[error("migration `{migration_id}` is already scheduled")]
    MigrationAlreadyScheduled {
        /// The migration.
        migration_id: MigrationId,
    },
    /// Source and target are the same server.
    #[error("migration target `{server}` is its source")]
    MigrationTargetIsSource {
        /// The server.
        server: String,
    },
    /// The deadline is not in the future.
    #[error("deadline {deadline} is not after now ({now})")]
    DeadlineInPast {
        /// Asked for.
        deadline: DateTime<Utc>,
        /// The node's clock.
        now: DateTime<Utc>,
    },
    /// The node is already failed.
    /// No migration with this id was scheduled.
    #[error("migration `{migration_id}` was never scheduled")]
    UnknownMigration {
        /// The migration.
        migration_id: MigrationId,
    },
    /// The migration is over.
    #[error("migration `{migration_id}` is over ({outcome})")]
    MigrationOver {
        /// The migration.
        migration_id: MigrationId,
        /// How it ended.
        outcome: &'static str,
    },
    /// A step reported out of its order.
    #[error("migration `{migration_id}` cannot take step `{step}` now: it is {now}")]
    MigrationStepOutOfOrder {
        /// The migration.
        migration_id: MigrationId,
        /// The step.
        step: &'static str,
        /// Where the migration is.
        now: &'static str,
    },
    /// A step reported by a host whose step it is not.
    #[error("step `{step}` of migration `{migration_id}` is not host `{reported}`'s")]
    MigrationWrongHost {
        /// The migration.
        migration_id: MigrationId,
        /// The step.
        step: &'static str,
        /// The reporting host.
        reported: HostId,
    },
    /// No host can take the instance.
    #[error("no host matches the instance: {detail}")]
    NoMatchingHost {
        /// Why, in words.
        detail: String,
    },
    #[error("node `{node_id}` is already failed")]
    NodeAlreadyFailed {
        /// The node.
        node_id: NodeId,
    },
    /// A hop has no cipher both ends support.
    /// The file system exists already.
    #[error("file system `{file_system}` already exists")]
    FileSystemExists {
        /// The file system.
        file_system: streamfleet_bus_schemas::ids::FileSystemId,
    },
    /// No file system has this node.
    #[error("node `{node_id}` belongs to no file system")]
    UnknownNode {
        /// The node.
        node_id: NodeId,
    },
    /// A report or verdict about a placement the node has left (or not reached).
    #[error(
        "node `{node_id}` placement {generation} is not its current one ({current}): the node was replaced"
    )]
    NodePlacementGone {
        /// The node.
        node_id: NodeId,
        /// The placement named.
        generation: u32,
        /// The current one.
        current: u32,
    },
    /// A node's step out of its order.
    #[error("node `{node_id}` cannot take step `{step}` now: it is {now}")]
    NodeStepOutOfOrder {
        /// The node.
        node_id: NodeId,
        /// The step.
        step: &'static str,
        /// Its phase.
        now: &'static str,
    },
    /// Only a metadata node takes checkpoints.
    #[error("node `{node_id}` is a data node: only the metadata node takes checkpoints")]
    NotMetadataNode {
        /// The node.
        node_id: NodeId,
    },
    /// No cipher in common on a hop.
    #[error("no cipher in common on the {hop} hop")]
    NoCommonCipher {
        /// `source→relay` or `relay→destination`.
        hop: &'static str,
    },
    /// Ciphers were already selected for this connection.
    #[error("ciphers for connection `{connection_id}` are already selected")]
    CipherAlreadySelected {
        /// The connection.
        connection_id: String,
    },
    /// An instance with this id was launched before.
    #[error("instance `{instance_id}` already exists")]
    InstanceAlreadyExists {
        /// The instance.
        instance_id: InstanceId,
    },
    /// The image is not in the catalogue.
    #[error("image `{image}` is not in the catalogue (see `streamfleet instance images`)")]
    UnknownImage {
        /// The image asked for.
        image: String,
    },
    /// Every address of the deployment's pool is taken.
    #[error("the address pool is exhausted")]
    AddressPoolExhausted,
    /// No instance with this id was launched.
    #[error("instance `{instance_id}` was never launched")]
    UnknownInstance {
        /// The instance.
        instance_id: InstanceId,
    },
    /// The instance ended for good.
    #[error("instance `{instance_id}` is terminated")]
    InstanceTerminated {
        /// The instance.
        instance_id: InstanceId,
    },
    /// The instance is not in a state that allows the operation.
    #[error("cannot {operation} instance `{instance_id}`: it is {status}")]
    InstanceNotReady {
        /// The instance.
        instance_id: InstanceId,
        /// What was asked.
        operation: &'static str,
        /// Where it is.
        status: &'static str,
    },
    /// The instance's hypervisor cannot do the operation (its capability table says so).
    #[error("{hypervisor} cannot {operation}: unsupported by its driver")]
    Unsupported {
        /// The hypervisor.
        hypervisor: streamfleet_bus_schemas::compute::Hypervisor,
        /// What was asked.
        operation: &'static str,
    },
    /// The volume is attached already.
    #[error("volume `{volume_id}` is already attached to `{instance_id}`")]
    VolumeAlreadyAttached {
        /// The instance.
        instance_id: InstanceId,
        /// The volume.
        volume_id: String,
    },
    /// The instance has no such volume.
    #[error("instance `{instance_id}` has no volume `{volume_id}`")]
    VolumeNotAttached {
        /// The instance.
        instance_id: InstanceId,
        /// The volume.
        volume_id: String,
    },
    /// The interface is attached already.
    #[error("network `{network_id}` is already attached to `{instance_id}`")]
    NetworkAlreadyAttached {
        /// The instance.
        instance_id: InstanceId,
        /// The interface.
        network_id: String,
    },
    /// The instance has no such interface.
    #[error("instance `{instance_id}` has no network `{network_id}`")]
    NetworkNotAttached {
        /// The instance.
        instance_id: InstanceId,
        /// The interface.
        network_id: String,
    },
    /// A snapshot with this id was taken before.
    #[error("instance `{instance_id}` already has snapshot `{snapshot_id}`")]
    SnapshotExists {
        /// The instance.
        instance_id: InstanceId,
        /// The snapshot.
        snapshot_id: String,
    },
    /// A host reported on an instance that runs on another host.
    #[error("instance `{instance_id}` runs on `{expected}`, not `{reported}`")]
    InstanceOnOtherHost {
        /// The instance.
        instance_id: InstanceId,
        /// Its host.
        expected: HostId,
        /// The reporting host.
        reported: HostId,
    },
    /// A stream holds events of another category than the command expects (corrupt history).
    #[error("stream holds a {found} history, not a {expected} one")]
    WrongStreamKind {
        /// What the command expects.
        expected: &'static str,
        /// What the stream holds.
        found: &'static str,
    },
}

impl Rejection {
    /// The rule's stable name, in snake_case, as sent in a rejection's `rule`.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::InvalidField { .. } => "invalid_field",
            Rejection::TokenAlreadyIssued { .. } => "token_already_issued",
            Rejection::TtlOutOfRange { .. } => "ttl_out_of_range",
            Rejection::SessionAlreadyProvisioned { .. } => "session_already_provisioned",
            Rejection::SessionNotProvisioned { .. } => "session_not_provisioned",
            Rejection::SessionAlreadyEnded { .. } => "session_already_ended",
            Rejection::SessionOnOtherHost { .. } => "session_on_other_host",
            Rejection::TokenUnknown { .. } => "token_unknown",
            Rejection::TokenForged { .. } => "token_forged",
            Rejection::TokenAlreadyRedeemed { .. } => "token_already_used",
            Rejection::TokenExpired { .. } => "token_expired",
            Rejection::ClientIpMismatch { .. } => "client_ip_mismatch",
            Rejection::HostAlreadyExists { .. } => "host_already_exists",
            Rejection::HostNotRegistered { .. } => "host_not_registered",
            Rejection::HostNotAdmitted { .. } => "host_not_admitted",
            Rejection::HostRegionMismatch { .. } => "host_region_mismatch",
            Rejection::HostRemoved { .. } => "host_removed",
            Rejection::HostNotAccepting { .. } => "host_not_accepting",
            Rejection::HostRunsOtherApp { .. } => "host_runs_other_app",
            Rejection::HostFull { .. } => "host_full",
            Rejection::HostBusy { .. } => "host_busy",
            Rejection::SessionAlreadyAssigned { .. } => "session_already_assigned",
            Rejection::SessionNotOnHost { .. } => "session_not_on_host",
            Rejection::UnknownApp { .. } => "unknown_app",
            Rejection::AppAlreadyRegistered { .. } => "app_already_registered",
            Rejection::NoHypervisor { .. } => "no_hypervisor",
            Rejection::HypervisorUnfit { .. } => "hypervisor_unfit",
            Rejection::VersionNotNewer { .. } => "version_not_newer",
            Rejection::DiscrepancyAlreadyOpened { .. } => "discrepancy_already_opened",
            Rejection::DiscrepancyNotOpen { .. } => "discrepancy_not_open",
            Rejection::DiscrepancyAlreadyResolved { .. } => "discrepancy_already_resolved",
            Rejection::MigrationAlreadyScheduled { .. } => "migration_already_scheduled",
            Rejection::MigrationTargetIsSource { .. } => "migration_target_is_source",
            Rejection::DeadlineInPast { .. } => "deadline_in_past",
            Rejection::NodeAlreadyFailed { .. } => "node_already_failed",
            Rejection::UnknownMigration { .. } => "unknown_migration",
            Rejection::MigrationOver { .. } => "migration_over",
            Rejection::MigrationStepOutOfOrder { .. } => "migration_step_out_of_order",
            Rejection::MigrationWrongHost { .. } => "migration_wrong_host",
            Rejection::NoMatchingHost { .. } => "no_matching_host",
            Rejection::NoCommonCipher { .. } => "no_common_cipher",
            Rejection::FileSystemExists { .. } => "file_system_exists",
            Rejection::UnknownNode { .. } => "unknown_node",
            Rejection::NodePlacementGone { .. } => "node_placement_gone",
            Rejection::NodeStepOutOfOrder { .. } => "node_step_out_of_order",
            Rejection::NotMetadataNode { .. } => "not_metadata_node",
            Rejection::CipherAlreadySelected { .. } => "cipher_already_selected",
            Rejection::WrongStreamKind { .. } => "wrong_stream_kind",
            Rejection::InstanceAlreadyExists { .. } => "instance_already_exists",
            Rejection::UnknownImage { .. } => "unknown_image",
            Rejection::AddressPoolExhausted => "address_pool_exhausted",
            Rejection::UnknownInstance { .. } => "unknown_instance",
            Rejection::InstanceTerminated { .. } => "instance_terminated",
            Rejection::InstanceNotReady { .. } => "instance_not_ready",
            Rejection::Unsupported { .. } => "unsupported",
            Rejection::VolumeAlreadyAttached { .. } => "volume_already_attached",
            Rejection::VolumeNotAttached { .. } => "volume_not_attached",
            Rejection::NetworkAlreadyAttached { .. } => "network_already_attached",
            Rejection::NetworkNotAttached { .. } => "network_not_attached",
            Rejection::SnapshotExists { .. } => "snapshot_exists",
            Rejection::InstanceOnOtherHost { .. } => "instance_on_other_host",
        }
    }

    /// What the service offers instead, when it refused the customer's hypervisor.
    pub fn offer(&self) -> Option<&streamfleet_bus_schemas::compute::HypervisorOffer> {
        match self {
            Rejection::HypervisorUnfit { offer, .. } => Some(offer),
            _ => None,
        }
    }
}

impl State {
    fn expect_buffer(&self) -> Result<(), Rejection> {
        match self {
            State::Empty | State::Buffer => Ok(()),
            other => Err(Rejection::WrongStreamKind {
                expected: "buffer",
                found: other.kind(),
            }),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            State::Empty => "empty",
            State::Token(_) => "token",
            State::Host(_) => "host",
            State::Session(_) => "session",
            State::App(_) => "app",
            State::Buffer => "buffer",
            State::Discrepancy(_) => "discrepancy",
            State::Migration(_) => "migration",
            State::Node(_) => "node",
            State::FileSystem => "dfs",
            State::Cipher(_) => "cipher",
            State::Instance(_) => "instance",
            State::Compute => "compute",
        }
    }
}

/// The stream a command writes to.
pub fn stream_of(command: &Command) -> String {
    match command {
        Command::IssueToken(c) => format!("token-{}", c.token_id),
        Command::RedeemToken(c) => format!("token-{}", c.token_id),
        Command::AdmitHost(c) => format!("host-{}", c.host_id),
        Command::RegisterHost(c) => format!("host-{}", c.host_id),
        Command::RequestHost(c) => format!("host-{}", c.host_id),
        Command::AssignSession(c) => format!("host-{}", c.host_id),
        Command::ReleaseSession(c) => format!("host-{}", c.host_id),
        Command::RecordHeartbeats(c) => format!("host-{}", c.host_id),
        Command::DrainHost(c) => format!("host-{}", c.host_id),
        Command::RemoveHost(c) => format!("host-{}", c.host_id),
        Command::ProvisionSession(c) => format!("session-{}", c.session_id),
        Command::EndSession(c) => format!("session-{}", c.session_id),
        Command::SetBufferTarget(c) => format!("buffer-{}.{}", c.region, c.app_id),
        Command::RegisterApp(c) => format!("app-{}", c.app_id),
        Command::ReleaseVersion(c) => format!("app-{}", c.app_id),
        Command::OpenDiscrepancy(c) => format!("discrepancy-{}", c.discrepancy_id),
        Command::ResolveDiscrepancy(c) => format!("discrepancy-{}", c.discrepancy_id),
        Command::ScheduleMigration(c) => format!("migration-{}", c.migration_id),
        Command::CancelMigration(c) => format!("migration-{}", c.migration_id),
        Command::ReportMigration(c) => format!("migration-{}", c.migration_id),
        Command::ReportNodeFailure(c) => format!("node-{}", c.node_id),
        Command::CreateFileSystem(c) => format!("dfs-{}", c.file_system),
        Command::CheckpointNode(c) => format!("node-{}", c.node_id),
        Command::ReportNode(c) => format!("node-{}", c.node_id),
        Command::RecordNodeLiveness(c) => format!("node-{}", c.node_id),
        Command::SelectCipher(c) => format!("cipher-{}", c.connection_id),
        Command::LaunchInstance(c) => format!("instance-{}", c.instance_id),
        Command::StopInstance(c) => format!("instance-{}", c.instance_id),
        Command::StartInstance(c) => format!("instance-{}", c.instance_id),
        Command::RebootInstance(c) => format!("instance-{}", c.instance_id),
        Command::TerminateInstance(c) => format!("instance-{}", c.instance_id),
        Command::AttachVolume(c) => format!("instance-{}", c.instance_id),
        Command::DetachVolume(c) => format!("instance-{}", c.instance_id),
        Command::AttachNetwork(c) => format!("instance-{}", c.instance_id),
        Command::DetachNetwork(c) => format!("instance-{}", c.instance_id),
        Command::SnapshotInstance(c) => format!("instance-{}", c.instance_id),
        Command::ReportInstance(c) => format!("instance-{}", c.instance_id),
        Command::RegisterComputeHost(c) => format!("compute-{}", c.host_id),
    }
}

/// The app a command needs registered, besides its own stream: the one it issues a token
/// for, provisions a session of, asks a host for, or keeps a buffer of.
pub fn app_of(command: &Command) -> Option<&AppId> {
    match command {
        Command::IssueToken(c) => Some(&c.app_id),
        Command::ProvisionSession(c) => Some(&c.app_id),
        Command::RequestHost(c) => Some(&c.app_id),
        Command::SetBufferTarget(c) => Some(&c.app_id),
        _ => None,
    }
}

/// Whether a command's decision reads the compute fleet ([`Context::compute`]): a launch
/// (hypervisor, host, addresses) and a start (room on its host).
pub fn needs_fleet(command: &Command) -> bool {
    matches!(
        command,
        Command::LaunchInstance(_)
            | Command::StartInstance(_)
            | Command::ScheduleMigration(_)
            | Command::CreateFileSystem(_)
            | Command::CheckpointNode(_)
            | Command::ReportNode(_)
            | Command::RecordNodeLiveness(_)
            | Command::ReportNodeFailure(_)
    )
}

/// The instance a command on another stream is about, whose state the decision reads
/// ([`Context::instance`]): a migration's.
pub fn instance_named(command: &Command) -> Option<&InstanceId> {
    match command {
        Command::ScheduleMigration(c) => Some(&c.instance_id),
        _ => None,
    }
}

/// Decides what a command records, given its stream's state.
pub fn decide(command: &Command, state: &State, ctx: &Context) -> Result<Vec<Event>, Rejection> {
    if let Some(app_id) = app_of(command) {
        app::registered(ctx, app_id)?;
    }
    match command {
        Command::IssueToken(c) => token::decide_issue(c, state.expect_token()?, ctx),
        Command::RedeemToken(c) => token::decide_redeem(c, state.expect_token()?, ctx),
        Command::AdmitHost(c) => host::decide_admit(c, state.expect_host()?),
        Command::RegisterHost(c) => host::decide_register(c, state.expect_host()?),
        Command::RequestHost(c) => host::decide_request(c, state.expect_host()?),
        Command::AssignSession(c) => host::decide_assign(c, state.expect_host()?),
        Command::ReleaseSession(c) => host::decide_release(c, state.expect_host()?),
        Command::RecordHeartbeats(c) => host::decide_heartbeats(c, state.expect_host()?),
        Command::DrainHost(c) => host::decide_drain(c, state.expect_host()?),
        Command::RemoveHost(c) => host::decide_remove(c, state.expect_host()?),
        Command::ProvisionSession(c) => session::decide_provision(c, state.expect_session()?),
        Command::EndSession(c) => session::decide_end(c, state.expect_session()?),
        Command::SetBufferTarget(c) => {
            state.expect_buffer()?;
            app::decide_buffer_target(c)
        }
        Command::RegisterApp(c) => app::decide_register(c, state.expect_app()?),
        Command::ReleaseVersion(c) => app::decide_release(c, state.expect_app()?, ctx),
        Command::OpenDiscrepancy(c) => discrepancy::decide_open(c, state.expect_discrepancy()?),
        Command::ResolveDiscrepancy(c) => {
            discrepancy::decide_resolve(c, state.expect_discrepancy()?)
        }
        Command::ScheduleMigration(c) => {
            migration::decide_schedule(c, state.expect_migration()?, ctx)
        }
        Command::CancelMigration(c) => migration::decide_cancel(c, state.expect_migration()?),
        Command::ReportMigration(c) => migration::decide_report(c, state.expect_migration()?),
        Command::ReportNodeFailure(c) => dfs::decide_failure(c, state.expect_node()?, ctx),
        Command::CreateFileSystem(c) => {
            let existing = match state {
                State::Empty => false,
                State::FileSystem => true,
                other => {
                    return Err(Rejection::WrongStreamKind {
                        expected: "dfs",
                        found: other.kind(),
                    });
                }
            };
            dfs::decide_create(c, existing, ctx)
        }
        Command::CheckpointNode(c) => dfs::decide_checkpoint(c, state.expect_node()?, ctx),
        Command::ReportNode(c) => dfs::decide_report(c, state.expect_node()?, ctx),
        Command::RecordNodeLiveness(c) => dfs::decide_liveness(c, state.expect_node()?, ctx),
        Command::SelectCipher(c) => cipher::decide_select(c, state.expect_cipher()?),
        Command::LaunchInstance(c) => instance::decide_launch(c, state.expect_instance()?, ctx),
        Command::StopInstance(c) => instance::decide_stop(c, state.expect_instance()?),
        Command::StartInstance(c) => instance::decide_start(c, state.expect_instance()?, ctx),
        Command::RebootInstance(c) => instance::decide_reboot(c, state.expect_instance()?),
        Command::TerminateInstance(c) => instance::decide_terminate(c, state.expect_instance()?),
        Command::AttachVolume(c) => instance::decide_attach_volume(c, state.expect_instance()?),
        Command::DetachVolume(c) => instance::decide_detach_volume(c, state.expect_instance()?),
        Command::AttachNetwork(c) => instance::decide_attach_network(c, state.expect_instance()?),
        Command::DetachNetwork(c) => instance::decide_detach_network(c, state.expect_instance()?),
        Command::SnapshotInstance(c) => instance::decide_snapshot(c, state.expect_instance()?),
        Command::ReportInstance(c) => instance::decide_report(c, state.expect_instance()?),
        Command::RegisterComputeHost(c) => {
            match state {
                State::Empty | State::Compute => {}
                other => {
                    return Err(Rejection::WrongStreamKind {
                        expected: "compute",
                        found: other.kind(),
                    });
                }
            }
            instance::decide_register_host(c)
        }
    }
}

/// Folds one event into its stream's state. An event that does not fit the state (which
/// [`decide`] never produces) leaves the state as it was.
pub fn evolve(state: State, event: &Event) -> State {
    match (state, event) {
        (_, Event::TokenIssued(e)) => State::Token(token::evolve_issued(e)),
        (State::Token(t), Event::TokenRedeemed(e)) => State::Token(token::evolve_redeemed(t, e)),
        (State::Empty, e @ Event::HostAdmitted(_)) => {
            host::evolve(None, e).map_or(State::Empty, State::Host)
        }
        (
            state,
            e @ (Event::HostRequested(_)
            | Event::HostRegistered(_)
            | Event::SessionAssigned(_)
            | Event::SessionReleased(_)
            | Event::HeartbeatReceived(_)
            | Event::HostDraining(_)
            | Event::HostRemoved(_)),
        ) => match state {
            State::Host(h) => host::evolve(Some(h), e).map_or(State::Empty, State::Host),
            State::Empty => host::evolve(None, e).map_or(State::Empty, State::Host),
            other => other,
        },
        (_, Event::SessionProvisioned(e)) => State::Session(session::evolve_provisioned(e)),
        (State::Session(s), Event::SessionEnded(e)) => State::Session(session::evolve_ended(s, e)),
        (State::Empty | State::Buffer, Event::BufferTargetSet(_)) => State::Buffer,
        (_, Event::AppRegistered(e)) => State::App(app::evolve_registered(e)),
        (State::App(a), Event::VersionReleased(e)) => State::App(app::evolve_released(Some(a), e)),
        (State::Empty, Event::VersionReleased(e)) => State::App(app::evolve_released(None, e)),
        (_, Event::DiscrepancyOpened(e)) => State::Discrepancy(discrepancy::evolve_opened(e)),
        (State::Discrepancy(mut d), Event::DiscrepancyResolved(_)) => {
            d.resolved = true;
            State::Discrepancy(d)
        }
        // Every event of the `migration` category belongs to its migration's stream.
        (state @ (State::Empty | State::Migration(_)), e)
            if Event::category_of_type(e.type_name()) == Some("migration") =>
        {
            let current = match state {
                State::Migration(s) => Some(s),
                _ => None,
            };
            migration::evolve(current, e).map_or(State::Empty, State::Migration)
        }
        (State::Empty | State::FileSystem, Event::FileSystemCreated(_)) => State::FileSystem,
        // Every event of the `node` category belongs to its node's stream.
        (state @ (State::Empty | State::Node(_)), e)
            if Event::category_of_type(e.type_name()) == Some("node") =>
        {
            let current = match state {
                State::Node(s) => Some(s),
                _ => None,
            };
            dfs::evolve(current, e).map_or(State::Empty, State::Node)
        }
        (_, Event::CipherSelected(e)) => State::Cipher(cipher::evolve(e)),
        (State::Empty | State::Compute, Event::ComputeHostRegistered(_)) => State::Compute,
        (
            state @ (State::Empty | State::Instance(_)),
            e @ (Event::HypervisorChosen(_)
            | Event::InstancePlaced(_)
            | Event::InstanceLaunched(_)
            | Event::InstanceStopped(_)
            | Event::InstanceStarted(_)
            | Event::InstanceRebooted(_)
            | Event::InstanceTerminated(_)
            | Event::VolumeAttached(_)
            | Event::VolumeDetached(_)
            | Event::NetworkAttached(_)
            | Event::NetworkDetached(_)
            | Event::SnapshotTaken(_)
            | Event::InstanceFailed(_)
            | Event::InstanceChangeFailed(_)
            | Event::InstanceMoved(_)),
        ) => {
            let current = match state {
                State::Instance(s) => Some(s),
                _ => None,
            };
            instance::evolve(current, e).map_or(State::Empty, State::Instance)
        }
        (state, _) => state,
    }
}

macro_rules! expect_kind {
    ($($fn_name:ident => $variant:ident($ty:ty), $kind:literal;)+) => {
        impl State {
            $(
                fn $fn_name(&self) -> Result<Option<&$ty>, Rejection> {
                    match self {
                        State::Empty => Ok(None),
                        State::$variant(s) => Ok(Some(s)),
                        other => Err(Rejection::WrongStreamKind { expected: $kind, found: other.kind() }),
                    }
                }
            )+
        }
    };
}

expect_kind! {
    expect_token => Token(token::TokenState), "token";
    expect_host => Host(host::HostState), "host";
    expect_session => Session(session::SessionState), "session";
    expect_app => App(app::AppState), "app";
    expect_discrepancy => Discrepancy(discrepancy::DiscrepancyState), "discrepancy";
    expect_migration => Migration(migration::MigrationState), "migration";
    expect_node => Node(dfs::NodeState), "node";
    expect_cipher => Cipher(cipher::CipherState), "cipher";
    expect_instance => Instance(instance::InstanceState), "instance";
}

fn non_empty(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        Err(Rejection::InvalidField {
            field,
            detail: "must not be empty".into(),
        })
    } else {
        Ok(())
    }
}
