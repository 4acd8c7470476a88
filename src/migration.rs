//! `streamfleet migration …`: moving an instance to another host with the same settings, at
//! the customer's next reboot or at the deadline. `schedule` and `cancel` are sent as the
//! `service` role over the same NATS commands any service sends (as `streamfleet instance`
//! does); `list` and `show` read the projections' `migrations` view over gRPC
//! (`GetMigrations`), and `show` also prints the migration's events from the log, in order.
//!
//! A refused command ends the program with an error naming the rule (`no_matching_host: …`,
//! `migration_step_out_of_order: …`) and exit status 1.

use crate::instance::ServiceLogin;
use crate::views_login::ViewsLogin;
use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use std::path::{Path, PathBuf};
use streamfleet_bus_client::{CommandClient, LogReader, NatsLogin};
use streamfleet_bus_schemas::ids::{HostId, InstanceId, MigrationId};
use streamfleet_bus_schemas::payloads::{CancelMigration, Notice, ScheduleMigration};
use streamfleet_bus_schemas::principal::Role;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_projections::pb::{MigrationRow, MigrationsRequest};
use streamfleet_projections::rows::time_of;

/// Migration commands.
#[derive(clap::Subcommand)]
pub enum MigrationCmd {
    /// Schedule the move of an instance to a host with the same settings (prints the target,
    /// why it matches, and the deadline). The instance moves at its next reboot once its disks
    /// are copied, or at the deadline.
    Schedule {
        /// The migration's id (letters, digits, `-`, `_`).
        #[arg(long)]
        id: String,
        /// The instance to move.
        #[arg(long)]
        instance: String,
        /// Why it moves (maintenance, retirement, …), for the customer and the audit.
        #[arg(long)]
        reason: String,
        /// The latest moment of the move, RFC 3339 (`2026-05-01T12:00:00Z`); absent (and no
        /// `--in`): 24 hours after scheduling.
        #[arg(long, value_parser = parse_time, conflicts_with = "in_seconds")]
        deadline: Option<DateTime<Utc>>,
        /// The deadline as seconds from now.
        #[arg(long = "in", value_name = "SECONDS")]
        in_seconds: Option<u32>,
        /// The host to move to; absent: the service picks a matching one.
        #[arg(long)]
        target: Option<String>,
        /// Who is told (`sf.customer.<customer>.notice`); absent: the instance id.
        #[arg(long)]
        customer: Option<String>,
        /// Seconds between incremental sync rounds (1..=3600); absent: 5.
        #[arg(long = "sync-interval", value_name = "SECONDS")]
        sync_interval: Option<u32>,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// Cancel a migration before its move starts (the copy stops, the target's copy goes).
    Cancel {
        /// The migration.
        #[arg(long)]
        id: String,
        /// Why, in words (the customer is told).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        login: ServiceLogin,
    },
    /// The migrations in the views: step, hosts, deadline, sync and downtime figures.
    List {
        /// Those that are over too (completed, rolled back, cancelled).
        #[arg(long)]
        all: bool,
        /// Only this instance's.
        #[arg(long)]
        instance: Option<String>,
        /// Only those from or to this host.
        #[arg(long)]
        host: Option<String>,
        /// As JSON: `{"position", "migrations": [row]}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        views: ViewsLogin,
    },
    /// One migration's row in the views, then its events from the log in order.
    Show {
        /// The migration.
        #[arg(long)]
        id: String,
        /// As JSON: `{"position", "migration": row|null, "events": [{"position", "time",
        /// "type", "data"}]}`.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        views: ViewsLogin,
        #[command(flatten)]
        login: ServiceLogin,
    },
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an RFC 3339 time (2026-05-01T12:00:00Z): {e}"))
}

/// The service user's connection.
async fn connect(login: &ServiceLogin) -> anyhow::Result<async_nats::Client> {
    let nats = NatsLogin::new(
        login.nats_url.clone(),
        "service",
        login.nats_password.clone(),
    )
    .with_ca(login.nats_ca.clone());
    streamfleet_bus_client::connect(&nats)
        .await
        .context("connecting as service")
}

/// Sends `command` as the service user and prints each recorded event on a line.
async fn send(login: &ServiceLogin, migration_id: &str, command: Command) -> anyhow::Result<()> {
    let client = connect(login).await?;
    let commands = CommandClient::new(client, Role::Service, "streamfleet/migration");
    let recorded = commands
        .submit(uuid::Uuid::now_v7(), &command)
        .await
        .with_context(|| format!("{} {migration_id}", command.type_name()))?;
    for e in &recorded {
        let data = e.data.clone().unwrap_or_default();
        println!("{} {}", e.event_type, describe(&e.event_type, &data));
    }
    Ok(())
}

/// The migrations the views hold that `request` asks for, and the position they reflect.
async fn get(
    login: &ViewsLogin,
    nats_ca: Option<&Path>,
    request: MigrationsRequest,
) -> anyhow::Result<(u64, Vec<MigrationRow>)> {
    let mut client = login.connect(nats_ca).await?;
    let answer = client
        .get_migrations(request)
        .await
        .context("GetMigrations")?
        .into_inner();
    Ok((answer.position, answer.migrations))
}

/// A row's time for people (empty when unset).
fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A row as JSON (the proto3 JSON names, times in RFC 3339, unset times null).
fn row_json(r: &MigrationRow) -> serde_json::Value {
    let t = |ts: Option<DateTime<Utc>>| ts.map(|t| when(Some(t)));
    serde_json::json!({
        "migrationId": r.migration_id,
        "instanceId": r.instance_id,
        "step": r.step,
        "over": r.over,
        "trigger": r.trigger,
        "sourceHost": r.source_host,
        "targetHost": r.target_host,
        "deadline": t(r.deadline.as_ref().and_then(time_of)),
        "reason": r.reason,
        "customer": r.customer,
        "hypervisor": r.hypervisor,
        "matched": r.matched,
        "syncIntervalSeconds": r.sync_interval_seconds,
        "volumeBytes": r.volume_bytes,
        "rounds": r.rounds,
        "bytesSynced": r.bytes_synced,
        "dirtyBytesLeft": r.dirty_bytes_left,
        "downtimeMs": r.downtime_ms,
        "bootMs": r.boot_ms,
        "controlPlaneMs": r.control_plane_ms,
        "failedStep": r.failed_step,
        "failureCause": r.failure_cause,
        "failureHost": r.failure_host,
        "cancelReason": r.cancel_reason,
        "lastNotice": r.last_notice,
        "lastNoticeKind": r.last_notice_kind,
        "scheduledAt": t(r.scheduled_at.as_ref().and_then(time_of)),
        "guestStoppedAt": t(r.guest_stopped_at.as_ref().and_then(time_of)),
        "endedAt": t(r.ended_at.as_ref().and_then(time_of)),
        "updatedAt": t(r.updated_at.as_ref().and_then(time_of)),
    })
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

/// A row in lines of `name: value` (empty values left out).
fn print_row(r: &MigrationRow) {
    let lines: [(&str, String); 22] = [
        ("migration", r.migration_id.clone()),
        ("instance", r.instance_id.clone()),
        ("step", r.step.clone()),
        ("trigger", r.trigger.clone()),
        ("from", r.source_host.clone()),
        ("to", r.target_host.clone()),
        ("matched", r.matched.join("; ")),
        ("reason", r.reason.clone()),
        ("customer", r.customer.clone()),
        ("deadline", when(r.deadline.as_ref().and_then(time_of))),
        ("scheduled", when(r.scheduled_at.as_ref().and_then(time_of))),
        (
            "synced",
            if r.rounds == 0 {
                String::new()
            } else {
                format!(
                    "{} in {} rounds, {} dirty (every {} s)",
                    bytes(r.bytes_synced),
                    r.rounds,
                    bytes(r.dirty_bytes_left),
                    r.sync_interval_seconds
                )
            },
        ),
        (
            "guest stopped",
            when(r.guest_stopped_at.as_ref().and_then(time_of)),
        ),
        (
            "downtime",
            if r.step == "completed" {
                format!(
                    "{} ms (boot {} ms, control plane {} ms)",
                    r.downtime_ms, r.boot_ms, r.control_plane_ms
                )
            } else if r.boot_ms > 0 {
                format!("target booted in {} ms", r.boot_ms)
            } else {
                String::new()
            },
        ),
        (
            "failed",
            if r.failed_step.is_empty() {
                String::new()
            } else {
                format!(
                    "{} on {}: {}",
                    r.failed_step, r.failure_host, r.failure_cause
                )
            },
        ),
        ("cancelled", r.cancel_reason.clone()),
        (
            "notice",
            if r.last_notice.is_empty() {
                String::new()
            } else {
                format!("({}) {}", r.last_notice_kind, r.last_notice)
            },
        ),
        ("ended", when(r.ended_at.as_ref().and_then(time_of))),
        ("updated", when(r.updated_at.as_ref().and_then(time_of))),
        ("hypervisor", r.hypervisor.clone()),
        (
            "volumes",
            if r.volume_bytes > 0 {
                bytes(r.volume_bytes)
            } else {
                String::new()
            },
        ),
        ("over", if r.over { "yes".into() } else { String::new() }),
    ];
    for (name, value) in lines {
        if !value.is_empty() {
            println!("{:<14} {value}", format!("{name}:"));
        }
    }
}

/// One line for people about a migration event's data.
fn describe(event_type: &str, data: &serde_json::Value) -> String {
    let Ok(event) = Event::from_parts(event_type, data.clone()) else {
        return data.to_string();
    };
    match event {
        Event::MigrationScheduled(e) => format!(
            "{} from {} to {} by {} ({}); {}",
            e.instance_id,
            e.source_host,
            e.target_host,
            e.deadline.to_rfc3339_opts(SecondsFormat::Secs, true),
            e.reason,
            e.matched.join("; ")
        ),
        Event::MigrationTargetReady(e) => {
            let exports: Vec<String> = e
                .exports
                .iter()
                .map(|x| format!("{} at {}", x.volume_id, x.address))
                .collect();
            format!("exports {}", exports.join(", "))
        }
        Event::VolumeSyncStarted(e) => format!("copying {}", bytes(e.bytes)),
        Event::VolumeSyncRound(e) => format!(
            "round {}: {} in {} ms, {} dirty",
            e.round,
            bytes(e.bytes_copied),
            e.duration_ms,
            bytes(e.dirty_bytes_left)
        ),
        Event::VolumeSynced(e) => format!("{} in {} ms", bytes(e.bytes_copied), e.duration_ms),
        Event::CustomerNotified(e) => {
            let kind = match e.notice {
                Notice::Scheduled { .. } => "scheduled",
                Notice::Completed { .. } => "completed",
                Notice::RolledBack => "rolled_back",
                Notice::Cancelled => "cancelled",
            };
            format!("{} ({kind}): {}", e.customer, e.message)
        }
        Event::MigrationStarted(e) => format!(
            "by {}; the guest stopped at {}",
            e.trigger.name(),
            e.guest_stopped_at
                .to_rfc3339_opts(SecondsFormat::Millis, true)
        ),
        Event::MigrationFinalSynced(e) => {
            format!("{} in {} ms", bytes(e.bytes_copied), e.duration_ms)
        }
        Event::MigrationTargetLaunched(e) => {
            format!(
                "on {}, pid {}, booted in {} ms",
                e.host_id, e.pid, e.boot_ms
            )
        }
        Event::MigrationCompleted(e) => format!(
            "{} runs on {}; down {} ms (boot {} ms, control plane {} ms)",
            e.instance_id, e.host_id, e.downtime_ms, e.boot_ms, e.control_plane_ms
        ),
        Event::MigrationFailed(e) => format!("{} on {}: {}", e.step, e.host_id, e.cause),
        Event::MigrationRolledBack(e) => format!("{} runs on {}", e.instance_id, e.host_id),
        Event::MigrationCancelled(e) => e.reason,
        Event::MigrationNetworkDetached(_)
        | Event::MigrationSourceStopped(_)
        | Event::MigrationNetworkAttached(_) => String::new(),
        _ => data.to_string(),
    }
}

pub async fn run(cmd: MigrationCmd) -> anyhow::Result<()> {
    match cmd {
        MigrationCmd::Schedule {
            id,
            instance,
            reason,
            deadline,
            in_seconds,
            target,
            customer,
            sync_interval,
            login,
        } => {
            let deadline = deadline.or_else(|| {
                in_seconds.map(|s| Utc::now() + chrono::Duration::seconds(i64::from(s)))
            });
            let command = Command::ScheduleMigration(ScheduleMigration {
                migration_id: MigrationId::from(id.as_str()),
                instance_id: InstanceId::from(instance.as_str()),
                reason,
                deadline,
                target_host: target.map(|t| HostId::from(t.as_str())),
                customer,
                sync_interval_seconds: sync_interval,
            });
            send(&login, &id, command).await?;
        }
        MigrationCmd::Cancel { id, reason, login } => {
            let command = Command::CancelMigration(CancelMigration {
                migration_id: MigrationId::from(id.as_str()),
                reason,
            });
            send(&login, &id, command).await?;
        }
        MigrationCmd::List {
            all,
            instance,
            host,
            json,
            views,
        } => {
            let nats_ca = std::env::var_os("SF_NATS_CA").map(PathBuf::from);
            let (position, rows) = get(
                &views,
                nats_ca.as_deref(),
                MigrationsRequest {
                    instance_id: instance.unwrap_or_default(),
                    host_id: host.unwrap_or_default(),
                    active_only: !all,
                    ..Default::default()
                },
            )
            .await?;
            if json {
                let rows: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
                println!(
                    "{}",
                    serde_json::json!({"position": position, "migrations": rows})
                );
                return Ok(());
            }
            println!(
                "{:<16} {:<16} {:<16} {:<9} {:<12} {:<12} {:<20} {:>6} {:>11} downtime",
                "migration",
                "instance",
                "step",
                "trigger",
                "from",
                "to",
                "deadline",
                "rounds",
                "synced"
            );
            for r in &rows {
                let downtime = if r.step == "completed" {
                    format!("{} ms", r.downtime_ms)
                } else {
                    String::new()
                };
                let deadline = r
                    .deadline
                    .as_ref()
                    .and_then(time_of)
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                    .unwrap_or_default();
                println!(
                    "{:<16} {:<16} {:<16} {:<9} {:<12} {:<12} {:<20} {:>6} {:>11} {}",
                    r.migration_id,
                    r.instance_id,
                    r.step,
                    r.trigger,
                    r.source_host,
                    r.target_host,
                    deadline,
                    r.rounds,
                    bytes(r.bytes_synced),
                    downtime
                );
            }
        }
        MigrationCmd::Show {
            id,
            json,
            views,
            login,
        } => {
            let (position, rows) = get(
                &views,
                login.nats_ca.as_deref(),
                MigrationsRequest {
                    migration_id: id.clone(),
                    ..Default::default()
                },
            )
            .await?;
            let row = rows.into_iter().find(|r| r.migration_id == id);
            let client = connect(&login).await?;
            let events = LogReader::new(client)
                .stream(&format!("migration-{id}"))
                .await?;
            if row.is_none() && events.is_empty() {
                bail!("no migration {id}");
            }
            if json {
                let events: Vec<serde_json::Value> = events
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "position": e.position,
                            "time": e.body.time,
                            "type": e.body.event_type,
                            "data": e.body.data,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "position": position,
                        "migration": row.as_ref().map(row_json),
                        "events": events,
                    })
                );
                return Ok(());
            }
            match &row {
                Some(r) => print_row(r),
                None => println!(
                    "(not in the views yet at position {position}: they may be catching up)"
                ),
            }
            println!();
            for e in &events {
                let body = &e.body;
                println!(
                    "{:>8} {} {} {}",
                    e.position,
                    body.time.to_rfc3339_opts(SecondsFormat::Millis, true),
                    body.event_type,
                    describe(&body.event_type, &body.data)
                );
            }
        }
    }
    Ok(())
}
