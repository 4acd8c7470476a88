//! `streamfleet dfs …`: distributed file systems whose nodes heal. `create` and `checkpoint`
//! are sent as the `service` role over the same NATS commands any service sends (as
//! `streamfleet migration` does); `status` reads the projections' `nodes` view over gRPC
//! (`GetNodes`, or `WatchNodes` with `--watch`).
//!
//! A refused command ends the program with an error naming the rule (`file_system_exists: …`,
//! `not_metadata_node: …`, `node_step_out_of_order: …`) and exit status 1.

use crate::instance::ServiceLogin;
use crate::views_login::ViewsLogin;
use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use streamfleet_bus_client::{CommandClient, NatsLogin};
use streamfleet_bus_schemas::dfs::{CheckpointCause, CheckpointNode, CreateFileSystem};
use streamfleet_bus_schemas::ids::{FileSystemId, NodeId, RegionId};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_projections::pb::{FileSystemRow, NodeRow, NodesRequest, UpdateKind};
use streamfleet_projections::rows::time_of;

/// File-system commands.
#[derive(clap::Subcommand)]
pub enum DfsCmd {
    /// Declare a file system: its metadata node and data nodes are placed on crun compute hosts
    /// (one node per host where it can), each with a dedicated address and a network volume;
    /// prints where each node goes and why.
    Create {
        /// The file system's id (letters, digits, `-`, `_`): its nodes are `<id>-master` and
        /// `<id>-cs<n>`.
        file_system: String,
        /// How many data nodes (1..=16).
        #[arg(long)]
        data_nodes: u32,
        /// How many copies of each chunk (1..=data nodes).
        #[arg(long)]
        goal: u32,
        /// The region; absent: the one with the most crun hosts.
        #[arg(long)]
        region: Option<String>,
        /// Each node's network volume, MiB (64..=65536); absent: 256.
        #[arg(long)]
        volume_mib: Option<u32>,
        /// Seconds between the metadata node's scheduled checkpoints (10..=86400); absent:
        /// 3600.
        #[arg(long = "checkpoint-every", value_name = "SECONDS")]
        checkpoint_every: Option<u32>,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// The file systems and their nodes in the views: each node's host, address, placement,
    /// state, liveness, failures, last recovery, checkpoint and block report.
    Status {
        /// Only this file system.
        file_system: Option<String>,
        /// As JSON: `{"position", "fileSystems": [row], "nodes": [row]}` (with `--watch`: one
        /// such object per update, with its `kind`).
        #[arg(long)]
        json: bool,
        /// Go on: print each node as it changes (until interrupted).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        views: ViewsLogin,
    },
    /// Make a metadata node write a fresh checkpoint (its host restarts it cleanly to write
    /// one); prints the recorded `CheckpointRequested`.
    Checkpoint {
        /// The metadata node (`<file system>-master`).
        node: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
}

/// Sends `command` as the service user and prints each recorded event on a line (a refusal
/// is the error, naming its rule).
async fn send(login: &ServiceLogin, about: &str, command: Command) -> anyhow::Result<()> {
    let nats = NatsLogin::new(
        login.nats_url.clone(),
        "service",
        login.nats_password.clone(),
    )
    .with_ca(login.nats_ca.clone());
    let client = streamfleet_bus_client::connect(&nats)
        .await
        .context("connecting as service")?;
    let commands = CommandClient::new(client, Role::Service, "streamfleet/dfs");
    let recorded = commands
        .submit(uuid::Uuid::now_v7(), &command)
        .await
        .with_context(|| format!("{} {about}", command.type_name()))?;
    for e in &recorded {
        match e.event() {
            Some(event) => print_event(&event),
            None => println!("{} {}", e.event_type, e.data.clone().unwrap_or_default()),
        }
    }
    Ok(())
}

/// A recorded event for people.
fn print_event(event: &Event) {
    match event {
        Event::FileSystemCreated(e) => {
            println!(
                "FileSystemCreated {} in {}: goal {}, volumes {} MiB, a checkpoint every {} s",
                e.file_system, e.region, e.goal, e.volume_mib, e.checkpoint_every_seconds
            );
            for n in &e.nodes {
                println!(
                    "  {:<20} {:<8} on {:<12} {:<15} {} ({} cpu, {} MiB)",
                    n.node_id,
                    n.role.name(),
                    n.host_id,
                    n.address,
                    n.volume_id,
                    n.cpus,
                    n.memory_mib
                );
            }
            for why in &e.reasons {
                println!("  why: {why}");
            }
        }
        Event::CheckpointRequested(e) => println!(
            "CheckpointRequested {} on {} (placement {}), cause {}",
            e.node_id,
            e.host_id,
            e.generation,
            streamfleet_projections::views::nodes::cause_name(e.cause)
        ),
        other => println!(
            "{} {}",
            other.type_name(),
            serde_json::to_string(other).unwrap_or_default()
        ),
    }
}

/// A row's time for people (empty when unset).
fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A row's time as JSON (RFC 3339, or null).
fn when_json(t: Option<DateTime<Utc>>) -> serde_json::Value {
    t.map(|t| serde_json::Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)))
        .unwrap_or(serde_json::Value::Null)
}

/// Bytes for people (binary units).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A file-system row as JSON (the proto3 JSON names).
fn file_system_json(r: &FileSystemRow) -> serde_json::Value {
    serde_json::json!({
        "fileSystem": r.file_system,
        "region": r.region,
        "goal": r.goal,
        "volumeMib": r.volume_mib,
        "checkpointEverySeconds": r.checkpoint_every_seconds,
        "nodes": r.nodes,
        "dataNodes": r.data_nodes,
        "reasons": r.reasons,
        "nodesServing": r.nodes_serving,
        "nodesRecovering": r.nodes_recovering,
        "nodesFailed": r.nodes_failed,
        "createdAt": when_json(r.created_at.as_ref().and_then(time_of)),
    })
}

/// A node row as JSON (the proto3 JSON names, times in RFC 3339, unset times and figures null).
fn node_json(r: &NodeRow) -> serde_json::Value {
    serde_json::json!({
        "nodeId": r.node_id,
        "fileSystem": r.file_system,
        "role": r.role,
        "hostId": r.host_id,
        "address": r.address,
        "volumeId": r.volume_id,
        "generation": r.generation,
        "phase": r.phase,
        "recoveryStep": r.recovery_step,
        "state": r.state,
        "failed": r.failed,
        "lastAnswerAt": when_json(r.last_answer_at.as_ref().and_then(time_of)),
        "failures": r.failures,
        "failureReason": r.failure_reason,
        "failedAt": when_json(r.failed_at.as_ref().and_then(time_of)),
        "failureHost": r.failure_host,
        "failedHost": r.failed_host,
        "tried": r.tried,
        "fencedAt": when_json(r.fenced_at.as_ref().and_then(time_of)),
        "lastRecovery": r.last_recovery.as_ref().map(|x| serde_json::json!({
            "recoveryMs": x.recovery_ms,
            "fenceToServingMs": x.fence_to_serving_ms,
            "hostId": x.host_id,
            "generation": x.generation,
            "at": when_json(x.at.as_ref().and_then(time_of)),
        })),
        "lastCheckpoint": r.last_checkpoint.as_ref().map(|c| serde_json::json!({
            "cause": c.cause,
            "imageBytes": c.image_bytes,
            "version": c.version,
            "replayed": c.replayed,
            "hostId": c.host_id,
            "at": when_json(c.at.as_ref().and_then(time_of)),
        })),
        "lastBlockReport": r.last_block_report.as_ref().map(|b| serde_json::json!({
            "chunks": b.chunks,
            "chunkServers": b.chunk_servers.iter().map(|c| serde_json::json!({
                "address": c.address,
                "chunks": c.chunks,
                "connected": c.connected,
            })).collect::<Vec<_>>(),
            "hostId": b.host_id,
            "at": when_json(b.at.as_ref().and_then(time_of)),
        })),
        "lastRecoveryFailure": r.last_recovery_failure.as_ref().map(|f| serde_json::json!({
            "generation": f.generation,
            "hostId": f.host_id,
            "step": f.step,
            "cause": f.cause,
            "nextHost": f.next_host,
            "at": when_json(f.at.as_ref().and_then(time_of)),
        })),
        "pid": r.pid,
        "device": r.device,
        "placementReasons": r.placement_reasons,
        "cpus": r.cpus,
        "memoryMib": r.memory_mib,
        "phaseSince": when_json(r.phase_since.as_ref().and_then(time_of)),
        "updatedAt": when_json(r.updated_at.as_ref().and_then(time_of)),
    })
}

const HEADER: [&str; 10] = [
    "node",
    "role",
    "host",
    "address",
    "gen",
    "state",
    "last answer",
    "fails",
    "last recovery",
    "checkpoint / chunks",
];

/// One node on a line of the status table.
fn node_line(r: &NodeRow) -> String {
    let recovery = r.last_recovery.as_ref().map_or(String::new(), |x| {
        format!(
            "{} ms (fenced→serving {} ms)",
            x.recovery_ms, x.fence_to_serving_ms
        )
    });
    let mut extra = Vec::new();
    if let Some(c) = &r.last_checkpoint {
        extra.push(format!(
            "{} v{} {} ({} replayed)",
            c.cause,
            c.version,
            bytes(c.image_bytes),
            c.replayed
        ));
    }
    if let Some(b) = &r.last_block_report {
        let connected = b.chunk_servers.iter().filter(|c| c.connected).count();
        extra.push(format!(
            "{} chunks on {}/{} servers",
            b.chunks,
            connected,
            b.chunk_servers.len()
        ));
    }
    format!(
        "{:<20} {:<8} {:<10} {:<15} {:>3}  {:<34} {:<24} {:>5}  {:<34} {}",
        r.node_id,
        r.role,
        r.host_id,
        r.address,
        r.generation,
        r.state,
        when(r.last_answer_at.as_ref().and_then(time_of)),
        r.failures,
        recovery,
        extra.join("; ")
    )
}

/// Its last failure, in words (none when it never failed).
fn failure_line(r: &NodeRow) -> Option<String> {
    (r.failures > 0 && !r.failure_reason.is_empty()).then(|| {
        format!(
            "{}: failed {} on {}: {}",
            r.node_id,
            when(r.failed_at.as_ref().and_then(time_of)),
            if r.failure_host.is_empty() {
                "no host"
            } else {
                &r.failure_host
            },
            r.failure_reason
        )
    })
}

/// Its last failed recovery step, in words (none when none failed).
fn recovery_failure_line(r: &NodeRow) -> Option<String> {
    r.last_recovery_failure.as_ref().map(|f| {
        let next = if f.next_host.is_empty() {
            "no host left".to_string()
        } else {
            format!("next {}", f.next_host)
        };
        format!(
            "{}: recovery step {} failed on {} (placement {}) {}: {}; {next}",
            r.node_id,
            f.step,
            f.host_id,
            f.generation,
            when(f.at.as_ref().and_then(time_of)),
            f.cause
        )
    })
}

/// What a node's change brought beside its state: a recovery's figures, a checkpoint, a block
/// report (`; …` each).
fn news(before: Option<&NodeRow>, n: &NodeRow) -> String {
    let mut out = String::new();
    if let Some(x) = &n.last_recovery
        && before.is_none_or(|b| b.last_recovery != n.last_recovery)
    {
        out += &format!(
            "; recovered in {} ms (fenced→serving {} ms)",
            x.recovery_ms, x.fence_to_serving_ms
        );
    }
    if let Some(c) = &n.last_checkpoint
        && before.is_none_or(|b| b.last_checkpoint != n.last_checkpoint)
    {
        out += &format!(
            "; checkpoint ({}) v{}, {}",
            c.cause,
            c.version,
            bytes(c.image_bytes)
        );
    }
    if let Some(r) = &n.last_block_report
        && before.is_none_or(|b| b.last_block_report != n.last_block_report)
    {
        let connected = r.chunk_servers.iter().filter(|c| c.connected).count();
        out += &format!(
            "; block report: {} chunks on {}/{} servers",
            r.chunks,
            connected,
            r.chunk_servers.len()
        );
    }
    out
}

/// The status table: each file system, then its nodes; nodes outside any file system last.
fn print_status(position: u64, file_systems: &[FileSystemRow], nodes: &[NodeRow]) {
    println!("(views at position {position})");
    let mut by_fs: BTreeMap<&str, Vec<&NodeRow>> = BTreeMap::new();
    for n in nodes {
        by_fs.entry(n.file_system.as_str()).or_default().push(n);
    }
    let header = format!(
        "{:<20} {:<8} {:<10} {:<15} {:>3}  {:<34} {:<24} {:>5}  {:<34} {}",
        HEADER[0],
        HEADER[1],
        HEADER[2],
        HEADER[3],
        HEADER[4],
        HEADER[5],
        HEADER[6],
        HEADER[7],
        HEADER[8],
        HEADER[9]
    );
    let print_nodes = |rows: &[&NodeRow]| {
        println!("  {header}");
        for r in rows {
            println!("  {}", node_line(r));
        }
        for r in rows {
            for line in [failure_line(r), recovery_failure_line(r)]
                .into_iter()
                .flatten()
            {
                println!("  ! {line}");
            }
        }
    };
    for fs in file_systems {
        println!();
        println!(
            "{}  region {}  goal {}  {} nodes: {} serving, {} recovering, {} failed  (volumes {} MiB, a checkpoint every {} s)",
            fs.file_system,
            fs.region,
            fs.goal,
            fs.nodes.len(),
            fs.nodes_serving,
            fs.nodes_recovering,
            fs.nodes_failed,
            fs.volume_mib,
            fs.checkpoint_every_seconds
        );
        // In the file system's order: the metadata node first.
        let rows: Vec<&NodeRow> = fs
            .nodes
            .iter()
            .filter_map(|id| nodes.iter().find(|n| &n.node_id == id))
            .collect();
        print_nodes(&rows);
    }
    let known: Vec<&str> = file_systems
        .iter()
        .map(|f| f.file_system.as_str())
        .collect();
    for (fs, rows) in by_fs {
        if known.contains(&fs) {
            continue;
        }
        println!();
        println!(
            "{}",
            if fs.is_empty() {
                "(nodes outside any file system)".to_string()
            } else {
                format!("{fs} (not declared in the views yet)")
            }
        );
        print_nodes(&rows);
    }
}

async fn status(
    file_system: Option<String>,
    json: bool,
    watch: bool,
    login: &ViewsLogin,
) -> anyhow::Result<()> {
    let nats_ca = std::env::var_os("SF_NATS_CA").map(PathBuf::from);
    let mut client = login.connect(nats_ca.as_deref()).await?;
    let request = NodesRequest {
        file_system: file_system.clone().unwrap_or_default(),
        ..Default::default()
    };
    if !watch {
        let answer = client
            .get_nodes(request)
            .await
            .context("GetNodes")?
            .into_inner();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "position": answer.position,
                    "fileSystems": answer.file_systems.iter().map(file_system_json).collect::<Vec<_>>(),
                    "nodes": answer.nodes.iter().map(node_json).collect::<Vec<_>>(),
                })
            );
            return Ok(());
        }
        if let Some(fs) = &file_system
            && answer.file_systems.is_empty()
            && answer.nodes.is_empty()
        {
            anyhow::bail!(
                "no file system {fs} in the views at position {} (they may be catching up)",
                answer.position
            );
        }
        print_status(answer.position, &answer.file_systems, &answer.nodes);
        return Ok(());
    }
    let mut updates = client
        .watch_nodes(request)
        .await
        .context("WatchNodes")?
        .into_inner();
    // The rows as of the last update, to print the snapshot whole and each change against it.
    let mut file_systems: BTreeMap<String, FileSystemRow> = BTreeMap::new();
    let mut nodes: BTreeMap<String, NodeRow> = BTreeMap::new();
    while let Some(u) = updates.message().await.context("WatchNodes")? {
        let kind = u.kind();
        if json {
            let kind = match kind {
                UpdateKind::Snapshot => "snapshot",
                UpdateKind::SnapshotEnd => "snapshot_end",
                UpdateKind::Change => "change",
                UpdateKind::Unspecified => "unspecified",
            };
            println!(
                "{}",
                serde_json::json!({
                    "position": u.position,
                    "kind": kind,
                    "fileSystems": u.file_systems.iter().map(file_system_json).collect::<Vec<_>>(),
                    "nodes": u.nodes.iter().map(node_json).collect::<Vec<_>>(),
                })
            );
            continue;
        }
        match kind {
            UpdateKind::Snapshot | UpdateKind::SnapshotEnd => {
                for f in u.file_systems {
                    file_systems.insert(f.file_system.clone(), f);
                }
                for n in u.nodes {
                    nodes.insert(n.node_id.clone(), n);
                }
                if kind == UpdateKind::SnapshotEnd {
                    let fs: Vec<FileSystemRow> = file_systems.values().cloned().collect();
                    let ns: Vec<NodeRow> = nodes.values().cloned().collect();
                    print_status(u.position, &fs, &ns);
                    println!();
                    println!("(watching; each change as it is recorded)");
                }
            }
            UpdateKind::Change | UpdateKind::Unspecified => {
                for f in u.file_systems {
                    let before = file_systems.get(&f.file_system);
                    let counts =
                        |r: &FileSystemRow| (r.nodes_serving, r.nodes_recovering, r.nodes_failed);
                    if before.map(counts) != Some(counts(&f)) {
                        println!(
                            "{:>8} {}: {} serving, {} recovering, {} failed of {}",
                            u.position,
                            f.file_system,
                            f.nodes_serving,
                            f.nodes_recovering,
                            f.nodes_failed,
                            f.nodes.len()
                        );
                    }
                    file_systems.insert(f.file_system.clone(), f);
                }
                for n in u.nodes {
                    let before = nodes.get(&n.node_id);
                    let state = before.map_or("new", |b| b.state.as_str());
                    println!(
                        "{:>8} {} {}: {} → {} on {} (placement {}){}",
                        u.position,
                        when(n.updated_at.as_ref().and_then(time_of)),
                        n.node_id,
                        state,
                        n.state,
                        n.host_id,
                        n.generation,
                        news(before, &n)
                    );
                    if before.is_none_or(|b| b.failures != n.failures)
                        && let Some(line) = failure_line(&n)
                    {
                        println!("         ! {line}");
                    }
                    if before.is_none_or(|b| b.last_recovery_failure != n.last_recovery_failure)
                        && let Some(line) = recovery_failure_line(&n)
                    {
                        println!("         ! {line}");
                    }
                    nodes.insert(n.node_id.clone(), n);
                }
            }
        }
    }
    Ok(())
}

pub async fn run(cmd: DfsCmd) -> anyhow::Result<()> {
    match cmd {
        DfsCmd::Create {
            file_system,
            data_nodes,
            goal,
            region,
            volume_mib,
            checkpoint_every,
            login,
        } => {
            let command = Command::CreateFileSystem(CreateFileSystem {
                file_system: FileSystemId::from(file_system.as_str()),
                data_nodes,
                goal,
                region: region.map(|r| RegionId::from(r.as_str())),
                volume_mib,
                checkpoint_every_seconds: checkpoint_every,
            });
            send(&login, &file_system, command).await
        }
        DfsCmd::Status {
            file_system,
            json,
            watch,
            views,
        } => status(file_system, json, watch, &views).await,
        DfsCmd::Checkpoint { node, login } => {
            let command = Command::CheckpointNode(CheckpointNode {
                node_id: NodeId::from(node.as_str()),
                cause: CheckpointCause::Command,
            });
            send(&login, &node, command).await
        }
    }
}
