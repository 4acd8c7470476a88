//! Who is speaking on the bus: a role of the system (one NATS user each) or one admitted host
//! (its own NATS identity, an nkey), and which commands each may send.
//!
//! Invariant: the identity of a command's sender is part of its subject — a command is sent on
//! `<command subject>.<principal>` (`sf.cmd.token.issue.service`,
//! `sf.cmd.heartbeat.record.host.h1`) and the NATS permissions rendered from this table
//! ([`crate::nats_conf`]) let each principal publish under its own name only. So the node reads
//! the sender from the subject, which NATS vouches for, never from the payload; the same table
//! decides here which commands a principal may send at all ([`Principal::may_send`]).
//!
//! ```
//! use streamfleet_bus_schemas::principal::{Principal, Role};
//! let host = Principal::host("h1");
//! assert_eq!(host.to_string(), "host.h1");
//! assert_eq!(Principal::parse("host.h1"), Some(host));
//! assert_eq!(Principal::parse("worker"), Some(Principal::Role(Role::Worker)));
//! assert_eq!(Principal::parse("host."), None);
//! assert!(Principal::host("h1").may_send("RecordHeartbeats"));
//! assert!(!Principal::Role(Role::Service).may_send("AdmitHost"));
//! ```

use crate::Command;
use crate::ids::HostId;

/// A role of the system: one NATS user each, with the password `SF_<ROLE>_PASSWORD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The node: answers commands and log reads, publishes events.
    Node,
    /// Services (schedulers, the demo's load): send the fleet's commands, follow events.
    Service,
    /// Workers (token service, redemption node, host-management services, keepers).
    Worker,
    /// Entitlement services: ask for session tokens, nothing else.
    Entitlement,
    /// Launchers (the compute layer): launch admitted hosts the control plane asks for.
    Launcher,
    /// Operators: admit hosts, and whatever a service may do.
    Operator,
    /// Auditors: read and follow history; no commands.
    Auditor,
    /// Dashboards: read and follow; no commands.
    Dashboard,
    /// The benchmarks' baselines, in an account of their own.
    Bench,
}

impl Role {
    /// Every role, in the order `nats.conf` lists them.
    pub const ALL: [Role; 9] = [
        Role::Node,
        Role::Service,
        Role::Worker,
        Role::Entitlement,
        Role::Launcher,
        Role::Operator,
        Role::Auditor,
        Role::Dashboard,
        Role::Bench,
    ];

    /// Its NATS user name, e.g. `worker`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Service => "service",
            Role::Worker => "worker",
            Role::Entitlement => "entitlement",
            Role::Launcher => "launcher",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Dashboard => "dashboard",
            Role::Bench => "bench",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether this role may send commands of type `command_type`.
    pub fn may_send(self, command_type: &str) -> bool {
        match self {
            Role::Operator => {
                !HOST_REPORTS.contains(&command_type) && !LAUNCHER_REPORTS.contains(&command_type)
            }
            Role::Service | Role::Worker => {
                !HOST_REPORTS.contains(&command_type)
                    && !OPERATOR_ONLY.contains(&command_type)
                    && !LAUNCHER_REPORTS.contains(&command_type)
            }
            Role::Launcher => LAUNCHER_REPORTS.contains(&command_type),
            _ => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a host says of itself: only the host may say it, and only of itself.
pub const HOST_REPORTS: [&str; 2] = ["RegisterHost", "RecordHeartbeats"];
/// What compute hosts' agents (role `launcher`) report about the instances they run and about
/// themselves; nobody else may.
pub const LAUNCHER_REPORTS: [&str; 4] = [
    "ReportInstance",
    "RegisterComputeHost",
    "ReportMigration",
    "ReportNode",
];
/// What a host may also send about its own sessions (the keepers send it too).
pub const HOST_SESSION_COMMANDS: [&str; 1] = ["EndSession"];
/// What only an operator may send.
pub const OPERATOR_ONLY: [&str; 2] = ["AdmitHost", "RegisterApp"];

/// Who sends a command: a role, or one admitted host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Principal {
    /// A role's user.
    Role(Role),
    /// An admitted host, by its own identity.
    Host(HostId),
}

impl Principal {
    /// The principal of host `id`.
    pub fn host(id: impl Into<HostId>) -> Principal {
        Principal::Host(id.into())
    }

    /// Reads `worker` or `host.<id>`; `None` for anything else (an unknown role, an empty or
    /// wildcard host id).
    pub fn parse(text: &str) -> Option<Principal> {
        match text.strip_prefix("host.") {
            Some(id) if is_subject_token(id) => Some(Principal::host(id)),
            Some(_) => None,
            None => Role::from_name(text).map(Principal::Role),
        }
    }

    /// Whether this principal may send commands of type `command_type` (a host: its own
    /// reports and its sessions' ends, checked against the payload by the node).
    pub fn may_send(&self, command_type: &str) -> bool {
        match self {
            Principal::Role(role) => role.may_send(command_type),
            Principal::Host(_) => {
                HOST_REPORTS.contains(&command_type)
                    || HOST_SESSION_COMMANDS.contains(&command_type)
            }
        }
    }

    /// The host, when a host speaks.
    pub fn host_id(&self) -> Option<&HostId> {
        match self {
            Principal::Host(id) => Some(id),
            Principal::Role(_) => None,
        }
    }
}

impl From<Role> for Principal {
    fn from(role: Role) -> Self {
        Principal::Role(role)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Role(role) => f.write_str(role.name()),
            Principal::Host(id) => write!(f, "host.{id}"),
        }
    }
}

/// Whether `principal` may send `command`: its role may send the type, and a host speaks only
/// of itself (the `host_id` of its reports and session ends is its own). The refusal says why,
/// for the `forbidden` rejection.
///
/// ```
/// use streamfleet_bus_schemas::{Command, payloads::RecordHeartbeats};
/// use streamfleet_bus_schemas::principal::{Principal, authorize};
/// let beats = Command::RecordHeartbeats(RecordHeartbeats {
///     host_id: "h2".into(), sent_at: chrono::Utc::now(), sessions: vec![],
/// });
/// assert!(authorize(&Principal::host("h2"), &beats).is_ok());
/// assert!(authorize(&Principal::host("h1"), &beats).is_err());
/// ```
pub fn authorize(principal: &Principal, command: &Command) -> Result<(), String> {
    if !principal.may_send(command.type_name()) {
        return Err(format!("{principal} may not send {}", command.type_name()));
    }
    if let Principal::Host(me) = principal {
        let about = match command {
            Command::RegisterHost(c) => &c.host_id,
            Command::RecordHeartbeats(c) => &c.host_id,
            Command::EndSession(c) => &c.host_id,
            other => return Err(format!("{principal} may not send {}", other.type_name())),
        };
        if about != me {
            return Err(format!("{principal} may not speak for host {about}"));
        }
    }
    Ok(())
}

/// Whether `text` can stand as one NATS subject token: non-empty ASCII letters, digits, `-` and
/// `_` (no `.`, no wildcards, no spaces). Host ids must be, as they sit inside subjects.
///
/// ```
/// use streamfleet_bus_schemas::principal::is_subject_token;
/// assert!(is_subject_token("eu-west-1"));
/// assert!(!is_subject_token("a.b"));
/// assert!(!is_subject_token(""));
/// assert!(!is_subject_token("*"));
/// ```
pub fn is_subject_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_name() {
        for role in Role::ALL {
            assert_eq!(Principal::parse(role.name()), Some(Principal::Role(role)));
        }
        assert_eq!(Principal::parse("root"), None);
        assert_eq!(Principal::parse("host.a.b"), None);
        assert_eq!(Principal::parse("host.>"), None);
    }

    #[test]
    fn only_hosts_report_and_only_operators_admit() {
        for role in Role::ALL {
            assert!(!role.may_send("RecordHeartbeats"), "{role}");
            assert!(!role.may_send("RegisterHost"), "{role}");
            assert_eq!(role.may_send("AdmitHost"), role == Role::Operator, "{role}");
        }
        let host = Principal::host("h1");
        assert!(host.may_send("EndSession") && host.may_send("RegisterHost"));
        assert!(!host.may_send("IssueToken") && !host.may_send("AdmitHost"));
        assert!(Principal::Role(Role::Worker).may_send("EndSession"));
        assert!(!Principal::Role(Role::Entitlement).may_send("IssueToken"));
    }
}
