//! The nats-server configuration, rendered from the principal table: what each role and each
//! admitted host may publish and receive. `streamfleet up` and every test write it next to
//! their state (`streamfleet nats-conf` prints it); there is no second copy to drift.
//!
//! Invariant: every right here follows from [`crate::principal`] and [`crate::subjects`]. A
//! principal publishes commands only on `<command subject>.<itself>` and only those it may send;
//! takes replies only under its own inbox prefix `_INBOX.<itself>.`; responders answer through
//! `allow_responses` (the requester's reply subject, once), never through a right on
//! `_INBOX.>`. A host's rights name its own id and nothing of another host's.
//!
//! Passwords come from the environment, never from the file: `$SF_<ROLE>_PASSWORD` for each
//! role (nats-server reads each `$VAR` as a config token: passwords must start with a letter).
//! Hosts log in with their own nkey (a challenge signed with a seed that stays on the host;
//! the file holds only public keys). The JetStream store is `$SF_JETSTREAM_DIR` (absolute) and
//! the port comes from the command line (`-p`).
//!
//! ```
//! use streamfleet_bus_schemas::nats_conf::{HostUser, render};
//! let conf = render(&[HostUser { host_id: "h1".into(), public_key: "UABC".into() }], None);
//! assert!(conf.contains(r#"nkey: "UABC""#));
//! assert!(conf.contains(r#""sf.cmd.heartbeat.record.host.h1""#));
//! assert!(!conf.contains(r#""_INBOX.>""#));
//! ```

use crate::Command;
use crate::ids::HostId;
use crate::principal::{Principal, Role};
use crate::subjects::inbox_prefix;
use std::fmt::Write;

/// An admitted host's NATS user: its id (which its rights name) and its public nkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUser {
    /// The host.
    pub host_id: HostId,
    /// Its public nkey, `U…`.
    pub public_key: String,
}

/// What one principal may do on NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish on (nothing else).
    pub publish: Vec<String>,
    /// Subjects it may subscribe to (nothing else).
    pub subscribe: Vec<String>,
    /// Whether it may answer requests it receives (to their reply subject, once).
    pub allow_responses: bool,
}

/// The environment variable holding `role`'s password: `SF_<ROLE>_PASSWORD`.
pub fn password_variable(role: Role) -> String {
    format!("SF_{}_PASSWORD", role.name().to_ascii_uppercase())
}

/// The command subjects `principal` may publish on.
fn command_subjects(principal: &Principal) -> Vec<String> {
    Command::TYPES
        .iter()
        .filter(|t| principal.may_send(t))
        .filter_map(|t| Command::subject_of(t))
        .map(|s| crate::subjects::command_as(s, principal))
        .collect()
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A role's rights.
pub fn role_permissions(role: Role) -> Permissions {
    let me = Principal::Role(role);
    let inbox = format!("{}.>", inbox_prefix(role.name()));
    let with_inbox = |rest: &[&str]| {
        let mut subs = vec![inbox.clone()];
        subs.extend(list(rest));
        subs
    };
    let commands_and = |rest: &[&str]| {
        let mut pubs = command_subjects(&me);
        pubs.extend(list(rest));
        pubs
    };
    let follow = ["sf.evt.>", "sf.log.head", "sf.log.checkpoint"];
    match role {
        Role::Node => Permissions {
            publish: list(&["sf.evt.>", "sf.log.head", "sf.log.checkpoint"]),
            subscribe: list(&["sf.cmd.>", "sf.log.read", "sf.log.health"]),
            allow_responses: true,
        },
        // Services are the trusted internal callers of `sf.svc.redeem` (naming the client's
        // address themselves); clients redeem at the front door, which sees theirs.
        // Services also relay the customers' notices (`sf.customer.<customer>.notice`).
        Role::Service => Permissions {
            publish: commands_and(&["sf.log.read", crate::subjects::REDEEM]),
            subscribe: with_inbox(&[
                "sf.evt.>",
                "sf.log.head",
                "sf.log.checkpoint",
                crate::subjects::CUSTOMER_NOTICES,
            ]),
            allow_responses: false,
        },
        Role::Worker => Permissions {
            publish: commands_and(&["sf.log.read", "sf.host.>", "sf.svc.hms.>", "sf.customer.>"]),
            subscribe: with_inbox(&[
                "sf.evt.>",
                "sf.log.head",
                "sf.svc.>",
                crate::subjects::NODE_PROBES,
            ]),
            allow_responses: true,
        },
        Role::Entitlement => Permissions {
            publish: list(&[crate::subjects::TOKEN_REQUEST]),
            subscribe: with_inbox(&[]),
            allow_responses: false,
        },
        // Compute hosts' agents (the host agents among them): they follow the instances' and
        // compute hosts' events (and read the log to catch up) and report on what they run.
        Role::Launcher => Permissions {
            publish: commands_and(&["sf.log.read", crate::subjects::NODE_PROBES]),
            subscribe: with_inbox(&[
                crate::subjects::INSTANCE_EVENTS,
                crate::subjects::COMPUTE_EVENTS,
                crate::subjects::MIGRATION_EVENTS,
                crate::subjects::DFS_EVENTS,
                crate::subjects::NODE_EVENTS,
                "sf.log.head",
            ]),
            allow_responses: true,
        },
        Role::Operator => Permissions {
            publish: commands_and(&["sf.log.read", "sf.log.health"]),
            subscribe: with_inbox(&follow),
            allow_responses: false,
        },
        Role::Auditor | Role::Dashboard => Permissions {
            publish: list(&["sf.log.read", "sf.log.health"]),
            subscribe: with_inbox(&follow),
            allow_responses: false,
        },
        Role::Bench => Permissions {
            publish: list(&["bench.>", "$JS.API.>"]),
            subscribe: with_inbox(&["bench.>"]),
            allow_responses: true,
        },
    }
}

/// An admitted host's rights: its own reports and session ends, requests addressed to it,
/// replies under its own inbox.
pub fn host_permissions(host_id: &HostId) -> Permissions {
    let me = Principal::Host(host_id.clone());
    Permissions {
        publish: command_subjects(&me),
        subscribe: vec![
            format!("{}.>", inbox_prefix(&me.to_string())),
            crate::subjects::host(host_id, ">"),
        ],
        allow_responses: true,
    }
}

fn quoted(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn write_permissions(out: &mut String, p: &Permissions) {
    // An empty allow list would mean "anything": nothing to publish is a deny of everything
    // (answers still go out through `allow_responses`).
    let publish = if p.publish.is_empty() {
        r#"{ deny: [">"] }"#.to_string()
    } else {
        quoted(&p.publish)
    };
    let _ = writeln!(out, "        publish: {publish}");
    let _ = writeln!(out, "        subscribe: {}", quoted(&p.subscribe));
    if p.allow_responses {
        let _ = writeln!(out, "        allow_responses: true");
    }
}

fn role_doc(role: Role) -> &'static str {
    match role {
        Role::Node => "answers commands and log reads, publishes events, heads and checkpoints",
        Role::Service => "sends the fleet's commands under its name, follows events",
        Role::Worker => {
            "sends commands under its name, asks hosts and launchers, answers the service subjects"
        }
        Role::Entitlement => "asks for session tokens, nothing else",
        Role::Launcher => "launches the admitted hosts the control plane asks for",
        Role::Operator => "admits hosts and may send what a service may",
        Role::Auditor => "reads and follows history; no commands",
        Role::Dashboard => "reads and follows; no commands",
        Role::Bench => "the benchmarks' baselines, in their own account",
    }
}

/// Where nats-server finds its TLS certificate and key (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
}

/// The whole configuration with `hosts` admitted; with `tls`, every client connection must be
/// TLS (a plaintext client is refused before it can log in).
pub fn render(hosts: &[HostUser], tls: Option<&ServerTls>) -> String {
    let mut out = String::new();
    out.push_str(
        "# Streamfleet's nats-server configuration, rendered by streamfleet (bus-schemas/src/nats_conf.rs):\n\
         # edit the principal table there, not this file. Passwords: $SF_<ROLE>_PASSWORD; hosts: nkeys.\n\n\
         listen: 127.0.0.1:4222\n\
         max_payload: 1MB\n\
         jetstream {\n  store_dir: $SF_JETSTREAM_DIR\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}\n\n",
    );
    if let Some(tls) = tls {
        let _ = writeln!(
            out,
            "# Encrypted links: clients verify this certificate against the installation's CA.\n\
             tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 2\n}}\n",
            tls.cert.display().to_string(),
            tls.key.display().to_string()
        );
    }
    out.push_str(
        "\
         # Two accounts, whose subjects never meet: STREAMFLEET holds every role and host of the\n\
         # system, BENCH only the benchmarks' baselines. JetStream is enabled in BENCH alone.\n\
         accounts {\n  STREAMFLEET {\n   users = [\n",
    );
    for role in Role::ALL.into_iter().filter(|r| *r != Role::Bench) {
        let _ = writeln!(out, "    # {role}: {}.", role_doc(role));
        let _ = writeln!(
            out,
            "    {{ user: {role}, password: ${}, permissions: {{",
            password_variable(role)
        );
        write_permissions(&mut out, &role_permissions(role));
        out.push_str("    } }\n");
    }
    for host in hosts {
        let _ = writeln!(
            out,
            "    # host {}: its own reports, its own requests.",
            host.host_id
        );
        let _ = writeln!(out, "    {{ nkey: {:?}, permissions: {{", host.public_key);
        write_permissions(&mut out, &host_permissions(&host.host_id));
        out.push_str("    } }\n");
    }
    out.push_str("   ]\n  }\n  BENCH {\n   jetstream: enabled\n   users = [\n");
    let _ = writeln!(out, "    # bench: {}.", role_doc(Role::Bench));
    let _ = writeln!(
        out,
        "    {{ user: bench, password: ${}, permissions: {{",
        password_variable(Role::Bench)
    );
    write_permissions(&mut out, &role_permissions(Role::Bench));
    out.push_str("    } }\n   ]\n  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_principal_reads_anothers_replies_or_sends_as_another() {
        let mut every = Role::ALL
            .into_iter()
            .map(|r| (Principal::Role(r), role_permissions(r)))
            .collect::<Vec<_>>();
        every.push((Principal::host("h1"), host_permissions(&"h1".into())));
        for (me, p) in &every {
            for s in &p.subscribe {
                if let Some(rest) = s.strip_prefix("_INBOX.") {
                    assert_eq!(rest, format!("{me}.>"), "{me} reads {s}");
                }
            }
            for s in p.publish.iter().filter(|s| s.starts_with("sf.cmd.")) {
                assert!(s.ends_with(&format!(".{me}")), "{me} publishes {s}");
            }
        }
    }

    #[test]
    fn a_host_is_named_in_every_right_it_has() {
        let p = host_permissions(&"h7".into());
        assert!(
            p.publish
                .iter()
                .chain(&p.subscribe)
                .all(|s| s.contains("h7")),
            "{p:?}"
        );
        assert_eq!(
            p.publish.len(),
            3,
            "register, heartbeats, session ends: {p:?}"
        );
    }
}
