//! NATS subjects. Commands: `sf.cmd.<aggregate>.<verb>.<principal>`; events: `sf.evt.<category>.<EventType>`;
//! the log's read API: `sf.log.read`; the node's head announcements: `sf.log.head`; its health:
//! `sf.log.health`.

/// Prefix of every command subject; the node subscribes to `sf.cmd.>`.
pub const COMMANDS: &str = "sf.cmd.>";
/// The subject `principal` sends a command of subject `command_subject` on:
/// `<command_subject>.<principal>`. NATS lets each principal publish under its own name only,
/// so the node knows who sent what.
///
/// ```
/// use streamfleet_bus_schemas::principal::{Principal, Role};
/// use streamfleet_bus_schemas::subjects::command_as;
/// assert_eq!(command_as("sf.cmd.token.issue", &Principal::Role(Role::Worker)), "sf.cmd.token.issue.worker");
/// assert_eq!(command_as("sf.cmd.heartbeat.record", &Principal::host("h1")), "sf.cmd.heartbeat.record.host.h1");
/// ```
pub fn command_as(command_subject: &str, principal: &crate::principal::Principal) -> String {
    format!("{command_subject}.{principal}")
}

/// Prefix of every event subject; a follower of everything subscribes to `sf.evt.>`.
pub const EVENTS: &str = "sf.evt.>";
/// The instances' events (`instance-*` streams): what compute hosts follow live.
pub const INSTANCE_EVENTS: &str = "sf.evt.instance.>";
/// The migrations' events (`migration-*` streams): what compute hosts follow live too.
pub const MIGRATION_EVENTS: &str = "sf.evt.migration.>";
/// The file systems' declarations (`dfs-*` streams): what compute hosts follow live.
pub const DFS_EVENTS: &str = "sf.evt.dfs.>";
/// The file-system nodes' events (`node-*` streams): what compute hosts follow live too.
pub const NODE_EVENTS: &str = "sf.evt.node.>";
/// What compute hosts' probes of their nodes saw, `sf.node.probe.<host>` (not recorded: the
/// watcher judges them and records its verdicts).
pub const NODE_PROBES: &str = "sf.node.probe.>";
/// The subject host `host_id` publishes its node probes on.
pub fn node_probe(host_id: &str) -> String {
    format!("sf.node.probe.{host_id}")
}
/// Every customer's notices: the workers publish them, services relay them.
pub const CUSTOMER_NOTICES: &str = "sf.customer.>";
/// The notices to customer `customer` (a migration scheduled, done, rolled back).
pub fn customer_notice(customer: &str) -> String {
    format!("sf.customer.{customer}.notice")
}
/// The compute hosts' registrations (`compute-*` streams).
pub const COMPUTE_EVENTS: &str = "sf.evt.compute.>";
/// Request/reply: read a range of the log ([`crate::ReadRequest`] → [`crate::ReadReply`]).
pub const LOG_READ: &str = "sf.log.read";
/// Published by the node on start and every second: the last durable position (a decimal
/// number as the payload), so idle followers notice events they missed.
pub const LOG_HEAD: &str = "sf.log.head";
/// Request/reply: the node's health ([`crate::NodeHealth`]); any payload asks.
pub const LOG_HEALTH: &str = "sf.log.health";

/// The prefix of every reply inbox (async-nats's default): the only subjects a responder
/// answers to.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// The inbox prefix of a role's connections, `_INBOX.<role>`: `nats.conf` lets each role
/// subscribe under its own prefix only, so no role receives the replies meant for another.
///
/// ```
/// assert_eq!(streamfleet_bus_schemas::subjects::inbox_prefix("client"), "_INBOX.client");
/// ```
pub fn inbox_prefix(role: &str) -> String {
    format!("{INBOX_PREFIX}{role}")
}

/// Whether `subject` is a reply inbox, `_INBOX.<token>…` without wildcards. A request whose
/// reply subject is anything else (a host's terminate subject, an event subject) asks the
/// responder to publish there with the responder's rights; it gets no answer.
///
/// ```
/// use streamfleet_bus_schemas::subjects::is_inbox;
/// assert!(is_inbox("_INBOX.abc.def"));
/// assert!(!is_inbox("sf.host.h1.terminate"));
/// assert!(!is_inbox("sf.evt.session.SessionEnded"));
/// assert!(!is_inbox("_INBOX.>"));
/// assert!(!is_inbox("_INBOX."));
/// ```
pub fn is_inbox(subject: &str) -> bool {
    subject
        .strip_prefix(INBOX_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['*', '>', ' ', '\t']))
}

/// Published by the node every few thousand events and when it stops: a signed checkpoint of
/// the chain hash at its head (JSON: `position`, `chain`, `signature`, hex), for auditors to
/// keep; `replay verify --public-key` checks a log against them.
pub const LOG_CHECKPOINT: &str = "sf.log.checkpoint";

/// Header carrying an event's global position on its event subject.
pub const HEADER_POSITION: &str = "Sf-Position";
/// Header carrying an event's stream version on its event subject.
pub const HEADER_STREAM_VERSION: &str = "Sf-Stream-Version";

/// The subject an event of `event_type` on `stream` is published on.
///
/// ```
/// assert_eq!(
///     streamfleet_bus_schemas::subjects::event("session-7", "SessionEnded"),
///     "sf.evt.session.SessionEnded"
/// );
/// ```
pub fn event(stream: &str, event_type: &str) -> String {
    format!("sf.evt.{}.{}", crate::category_of(stream), event_type)
}

/// Request/reply: an entitlement service asks for a session token
/// ([`crate::services::TokenRequest`] → [`crate::services::TokenReply`]).
pub const TOKEN_REQUEST: &str = "sf.svc.token.request";
/// Request/reply: a trusted internal caller (the `service` role) redeems a token at the
/// redemption node for a client whose address it names ([`crate::services::Redemption`] →
/// [`crate::services::RedemptionReply`]). Clients themselves redeem at the node's HTTPS front
/// door, which takes their address from the connection.
pub const REDEEM: &str = "sf.svc.redeem";

/// Request/reply: the redemption node hands a checked redemption to a region's host-management
/// service ([`crate::services::RegionRedemption`] → [`crate::services::RedemptionReply`]).
pub fn region_redeem(region: &str) -> String {
    format!("sf.svc.hms.{region}.redeem")
}

/// Request/reply to one host's agent: `start` ([`crate::services::StartSession`]), `state`
/// (→ [`crate::services::HostActualState`]), `stop-session`
/// ([`crate::services::StopSession`]), `notice` ([`crate::services::TerminationNotice`]),
/// `terminate` (empty), `fault` ([`crate::services::InjectFault`]).
///
/// ```
/// assert_eq!(streamfleet_bus_schemas::subjects::host("h1", "start"), "sf.host.h1.start");
/// ```
pub fn host(host_id: &str, verb: &str) -> String {
    format!("sf.host.{host_id}.{verb}")
}
