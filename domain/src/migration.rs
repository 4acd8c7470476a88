//! Reboot-initiated migration (seed 001): scheduled to a host whose settings match the
//! instance's, then carried out step by step by the two hosts, each step recorded in order.
//!
//! Invariant: a step is recorded only in its order and only from the host whose step it is
//! (`owner`); a failure is recorded only while the move can still be undone by the host that
//! reports it — the source until its instance is stopped and the target has not launched, the
//! target until the instance answers from it. So the target's launch and the source's failure
//! exclude each other: whichever is recorded first decides who runs the instance. Once
//! completed, rolled back or cancelled, a migration takes nothing more.

use crate::fleet::Fleet;
use crate::instance::{InstanceState, InstanceStatus};
use crate::{Context, Rejection, non_empty};
use chrono::{DateTime, Duration, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::compute::{Feature, Hypervisor};
use streamfleet_bus_schemas::ids::{HostId, MigrationId};
use streamfleet_bus_schemas::migration::*;
use streamfleet_bus_schemas::principal::is_subject_token;

/// How long after scheduling a migration without a deadline moves anyway.
pub const DEFAULT_DEADLINE_HOURS: i64 = 24;
/// Seconds between sync rounds unless the schedule says.
pub const DEFAULT_SYNC_INTERVAL_SECONDS: u32 = 5;

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationStep {
    /// Scheduled; the target prepares its disks.
    Scheduled,
    /// The target's disks are exported; the source starts copying.
    TargetReady,
    /// The initial full copy is under way.
    Syncing,
    /// Copied; incremental rounds follow until the move.
    Synced,
    /// The move started (a reboot, or the deadline).
    Started,
    /// The addresses no longer lead to the source.
    NetworkDetached,
    /// The last dirty blocks are on the target.
    FinalSynced,
    /// The source's process is gone.
    SourceStopped,
    /// The instance booted on the target.
    TargetLaunched,
    /// The addresses lead to the target.
    NetworkAttached,
    /// It answers from the target.
    Completed,
    /// A step failed; the source undoes the move.
    Failed,
    /// Undone: the instance runs on the source.
    RolledBack,
    /// Cancelled before its move.
    Cancelled,
}

impl MigrationStep {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            MigrationStep::Scheduled => "scheduled",
            MigrationStep::TargetReady => "target_ready",
            MigrationStep::Syncing => "syncing",
            MigrationStep::Synced => "synced",
            MigrationStep::Started => "started",
            MigrationStep::NetworkDetached => "network_detached",
            MigrationStep::FinalSynced => "final_synced",
            MigrationStep::SourceStopped => "source_stopped",
            MigrationStep::TargetLaunched => "target_launched",
            MigrationStep::NetworkAttached => "network_attached",
            MigrationStep::Completed => "completed",
            MigrationStep::Failed => "failed",
            MigrationStep::RolledBack => "rolled_back",
            MigrationStep::Cancelled => "cancelled",
        }
    }

    /// Whether nothing more happens.
    pub fn is_over(self) -> bool {
        matches!(
            self,
            MigrationStep::Completed | MigrationStep::RolledBack | MigrationStep::Cancelled
        )
    }

    /// Whether the move has started (no cancel any more; a reboot is the move's business).
    pub fn is_moving(self) -> bool {
        self >= MigrationStep::Started && self <= MigrationStep::NetworkAttached
    }
}

/// A migration's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MigrationState {
    /// What was scheduled: the instance's settings, the two hosts, the deadline.
    pub plan: MigrationScheduled,
    /// Where it is.
    pub step: MigrationStep,
    /// The target's exports.
    pub exports: Vec<VolumeExport>,
    /// Sync rounds done (the full copy is round 0).
    pub rounds: u32,
    /// Bytes copied so far, all rounds and the final sync.
    pub bytes_synced: u64,
    /// Dirty bytes left after the last round.
    pub dirty_bytes_left: u64,
    /// Why the move started.
    pub trigger: Option<MigrationTrigger>,
    /// When the guest last ran on the source.
    pub guest_stopped_at: Option<DateTime<Utc>>,
    /// The target's boot.
    pub boot_ms: Option<u64>,
    /// The downtime, once completed.
    pub downtime_ms: Option<u64>,
    /// The failed step and why.
    pub failure: Option<(String, String)>,
    /// Whether the source's process had ended before the failure (a rollback starts it again).
    pub source_stopped: bool,
}

impl MigrationState {
    /// A migration just scheduled with `plan`.
    pub fn scheduled(plan: MigrationScheduled) -> MigrationState {
        MigrationState {
            plan,
            step: MigrationStep::Scheduled,
            exports: vec![],
            rounds: 0,
            bytes_synced: 0,
            dirty_bytes_left: 0,
            trigger: None,
            guest_stopped_at: None,
            boot_ms: None,
            downtime_ms: None,
            failure: None,
            source_stopped: false,
        }
    }
}

fn invalid(field: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection::InvalidField {
        field,
        detail: detail.into(),
    }
}

/// The hosts that may take the instance, best first, each with why it matches: same
/// hypervisor (so the same capabilities), same region, room for its cpus and memory; the most
/// free cpus first, then by name.
pub fn matching_hosts(
    fleet: &Fleet,
    source: &HostId,
    instance: &InstanceState,
) -> Vec<(HostId, Vec<String>)> {
    let mut found: Vec<(u32, HostId, Vec<String>)> = fleet
        .hosts
        .iter()
        .filter(|(id, h)| {
            *id != source
                && h.hypervisor == instance.hypervisor
                && h.region == instance.region
                && h.has_room(instance.cpus, instance.memory_mib)
        })
        .map(|(id, h)| {
            let free = h.cpus - h.used_cpus;
            (
                free,
                id.clone(),
                vec![
                    format!("same hypervisor ({})", h.hypervisor),
                    format!("same region ({})", h.region),
                    format!(
                        "room for {} cpus and {} MiB ({free} cpus and {} MiB free)",
                        instance.cpus,
                        instance.memory_mib,
                        h.memory_mib - h.used_memory_mib
                    ),
                ],
            )
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, id, why)| (id, why)).collect()
}

/// Why `host` cannot take the instance, in words (for a rejection naming the host).
fn mismatch(fleet: &Fleet, host_id: &HostId, instance: &InstanceState) -> String {
    let Some(h) = fleet.hosts.get(host_id) else {
        return format!("host `{host_id}` is not a registered compute host");
    };
    let mut why = Vec::new();
    if h.hypervisor != instance.hypervisor {
        why.push(format!(
            "runs {}, not {}",
            h.hypervisor, instance.hypervisor
        ));
    }
    if h.region != instance.region {
        why.push(format!("is in {}, not {}", h.region, instance.region));
    }
    if !h.has_room(instance.cpus, instance.memory_mib) {
        why.push(format!(
            "has no room for {} cpus and {} MiB",
            instance.cpus, instance.memory_mib
        ));
    }
    format!("host `{host_id}` {}", why.join(", "))
}

pub(crate) fn decide_schedule(
    c: &ScheduleMigration,
    state: Option<&MigrationState>,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    if state.is_some() {
        return Err(Rejection::MigrationAlreadyScheduled {
            migration_id: c.migration_id.clone(),
        });
    }
    if !is_subject_token(&c.migration_id) {
        return Err(invalid(
            "migration_id",
            "must be 1..=128 letters, digits, `-` or `_`",
        ));
    }
    non_empty("reason", &c.reason)?;
    if let Some(customer) = &c.customer
        && !is_subject_token(customer)
    {
        return Err(invalid(
            "customer",
            "must be 1..=128 letters, digits, `-` or `_` (it names a NATS subject)",
        ));
    }
    let interval = c
        .sync_interval_seconds
        .unwrap_or(DEFAULT_SYNC_INTERVAL_SECONDS);
    if !(1..=3600).contains(&interval) {
        return Err(invalid(
            "sync_interval_seconds",
            format!("{interval} is outside 1..=3600"),
        ));
    }
    let deadline = c
        .deadline
        .unwrap_or(ctx.now + Duration::hours(DEFAULT_DEADLINE_HOURS));
    if deadline <= ctx.now {
        return Err(Rejection::DeadlineInPast {
            deadline,
            now: ctx.now,
        });
    }
    let Some(instance) = ctx.instance.as_ref() else {
        return Err(Rejection::UnknownInstance {
            instance_id: c.instance_id.clone(),
        });
    };
    if instance.status == InstanceStatus::Terminated {
        return Err(Rejection::InstanceTerminated {
            instance_id: c.instance_id.clone(),
        });
    }
    if !migratable(instance.hypervisor) {
        return Err(Rejection::Unsupported {
            hypervisor: instance.hypervisor,
            operation: "migrate",
        });
    }
    if instance.status != InstanceStatus::Running {
        return Err(Rejection::InstanceNotReady {
            instance_id: c.instance_id.clone(),
            operation: "migrate",
            status: instance.status.name(),
        });
    }
    let fleet = ctx.compute.as_ref().map(|c| &c.fleet);
    let empty = Fleet::default();
    let fleet = fleet.unwrap_or(&empty);
    let source = &instance.host_id;
    let (target, matched) = match &c.target_host {
        Some(target) if target == source => {
            return Err(Rejection::MigrationTargetIsSource {
                server: target.to_string(),
            });
        }
        Some(target) => match matching_hosts(fleet, source, instance)
            .into_iter()
            .find(|(id, _)| id == target)
        {
            Some((id, mut why)) => {
                why.insert(0, "named by the schedule".into());
                (id, why)
            }
            None => {
                return Err(Rejection::NoMatchingHost {
                    detail: mismatch(fleet, target, instance),
                });
            }
        },
        None => match matching_hosts(fleet, source, instance).into_iter().next() {
            Some(found) => found,
            None => {
                return Err(Rejection::NoMatchingHost {
                    detail: format!(
                        "no other {} host in {} has room for {} cpus and {} MiB",
                        instance.hypervisor, instance.region, instance.cpus, instance.memory_mib
                    ),
                });
            }
        },
    };
    Ok(vec![Event::MigrationScheduled(MigrationScheduled {
        migration_id: c.migration_id.clone(),
        instance_id: c.instance_id.clone(),
        reason: c.reason.clone(),
        customer: c
            .customer
            .clone()
            .unwrap_or_else(|| c.instance_id.to_string()),
        source_host: source.clone(),
        target_host: target,
        matched,
        deadline,
        sync_interval_seconds: interval,
        hypervisor: instance.hypervisor,
        image: instance.image.clone(),
        cpus: instance.cpus,
        memory_mib: instance.memory_mib,
        addresses: instance.addresses.clone(),
        volumes: instance.volumes.clone(),
        networks: instance.networks.clone(),
    })])
}

fn known<'a>(
    id: &MigrationId,
    state: Option<&'a MigrationState>,
) -> Result<&'a MigrationState, Rejection> {
    let s = state.ok_or_else(|| Rejection::UnknownMigration {
        migration_id: id.clone(),
    })?;
    if s.step.is_over() {
        return Err(Rejection::MigrationOver {
            migration_id: id.clone(),
            outcome: s.step.name(),
        });
    }
    Ok(s)
}

pub(crate) fn decide_cancel(
    c: &CancelMigration,
    state: Option<&MigrationState>,
) -> Result<Vec<Event>, Rejection> {
    let s = known(&c.migration_id, state)?;
    non_empty("reason", &c.reason)?;
    if s.step > MigrationStep::Synced {
        return Err(Rejection::MigrationStepOutOfOrder {
            migration_id: c.migration_id.clone(),
            step: "cancel",
            now: s.step.name(),
        });
    }
    Ok(vec![
        Event::MigrationCancelled(MigrationCancelled {
            migration_id: c.migration_id.clone(),
            reason: c.reason.clone(),
        }),
        notice(
            s,
            Notice::Cancelled,
            format!("The move of your instance was cancelled: {}", c.reason),
        ),
    ])
}

/// Which of the two hosts carries out a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// The step a report records, the step it must follow and whose it is.
fn owner(report: &MigrationReport) -> Option<(Side, &'static [MigrationStep])> {
    use MigrationStep as S;
    Some(match report {
        MigrationReport::TargetReady { .. } => (Side::Target, &[S::Scheduled]),
        MigrationReport::SyncStarted { .. } => (Side::Source, &[S::TargetReady]),
        MigrationReport::SyncRound { round: 0, .. } => (Side::Source, &[S::Syncing]),
        MigrationReport::SyncRound { .. } => (Side::Source, &[S::Synced]),
        MigrationReport::Triggered { .. } => (Side::Source, &[S::Synced]),
        MigrationReport::NetworkDetached => (Side::Source, &[S::Started]),
        MigrationReport::FinalSynced { .. } => (Side::Source, &[S::NetworkDetached]),
        MigrationReport::SourceStopped => (Side::Source, &[S::FinalSynced]),
        MigrationReport::TargetLaunched { .. } => (Side::Target, &[S::SourceStopped]),
        MigrationReport::NetworkAttached => (Side::Target, &[S::TargetLaunched]),
        MigrationReport::Answered { .. } => (Side::Target, &[S::NetworkAttached]),
        MigrationReport::RolledBack => (Side::Source, &[S::Failed]),
        // Either side, by the rule below.
        MigrationReport::Failed { .. } => return None,
    })
}

pub(crate) fn decide_report(
    c: &ReportMigration,
    state: Option<&MigrationState>,
) -> Result<Vec<Event>, Rejection> {
    let s = known(&c.migration_id, state)?;
    let side = if c.host_id == s.plan.source_host {
        Side::Source
    } else if c.host_id == s.plan.target_host {
        Side::Target
    } else {
        return Err(Rejection::MigrationWrongHost {
            migration_id: c.migration_id.clone(),
            step: c.report.name(),
            reported: c.host_id.clone(),
        });
    };
    let out_of_order = || Rejection::MigrationStepOutOfOrder {
        migration_id: c.migration_id.clone(),
        step: c.report.name(),
        now: s.step.name(),
    };
    match owner(&c.report) {
        Some((whose, after)) => {
            if whose != side {
                return Err(Rejection::MigrationWrongHost {
                    migration_id: c.migration_id.clone(),
                    step: c.report.name(),
                    reported: c.host_id.clone(),
                });
            }
            if !after.contains(&s.step) {
                return Err(out_of_order());
            }
        }
        None => {
            // The source may give up until the target has launched; the target until the
            // instance answers from it. Never after a failure was recorded.
            let last = match side {
                Side::Source => MigrationStep::SourceStopped,
                Side::Target => MigrationStep::NetworkAttached,
            };
            if s.step > last {
                return Err(out_of_order());
            }
        }
    }
    let id = c.migration_id.clone();
    let events = match &c.report {
        MigrationReport::TargetReady { exports } => {
            let wanted: Vec<&String> = s.plan.volumes.iter().map(|v| &v.volume_id).collect();
            let given: Vec<&String> = exports.iter().map(|e| &e.volume_id).collect();
            if wanted != given {
                return Err(invalid(
                    "exports",
                    format!("must name the volumes {wanted:?} in order, not {given:?}"),
                ));
            }
            vec![Event::MigrationTargetReady(MigrationTargetReady {
                migration_id: id,
                exports: exports.clone(),
            })]
        }
        MigrationReport::SyncStarted { bytes } => {
            vec![Event::VolumeSyncStarted(VolumeSyncStarted {
                migration_id: id,
                bytes: *bytes,
            })]
        }
        MigrationReport::SyncRound {
            round,
            bytes_copied,
            dirty_bytes_left,
            duration_ms,
        } => {
            if *round != s.rounds {
                return Err(invalid(
                    "round",
                    format!("round {} is next, not {round}", s.rounds),
                ));
            }
            let mut events = vec![Event::VolumeSyncRound(VolumeSyncRound {
                migration_id: id.clone(),
                round: *round,
                bytes_copied: *bytes_copied,
                dirty_bytes_left: *dirty_bytes_left,
                duration_ms: *duration_ms,
            })];
            if *round == 0 {
                events.push(Event::VolumeSynced(VolumeSynced {
                    migration_id: id,
                    bytes_copied: *bytes_copied,
                    duration_ms: *duration_ms,
                }));
                events.push(notice(
                    s,
                    Notice::Scheduled {
                        deadline: s.plan.deadline,
                    },
                    format!(
                        "Your instance {} moves to another host ({}) by {}. Rebooting it before then moves it at once; it keeps its addresses and disks.",
                        s.plan.instance_id, s.plan.reason, s.plan.deadline
                    ),
                ));
            }
            events
        }
        MigrationReport::Triggered {
            trigger,
            guest_stopped_at,
        } => vec![Event::MigrationStarted(MigrationStarted {
            migration_id: id,
            trigger: *trigger,
            guest_stopped_at: *guest_stopped_at,
        })],
        MigrationReport::NetworkDetached => {
            vec![Event::MigrationNetworkDetached(MigrationNetworkDetached {
                migration_id: id,
            })]
        }
        MigrationReport::FinalSynced {
            bytes_copied,
            duration_ms,
        } => vec![Event::MigrationFinalSynced(MigrationFinalSynced {
            migration_id: id,
            bytes_copied: *bytes_copied,
            duration_ms: *duration_ms,
        })],
        MigrationReport::SourceStopped => {
            vec![Event::MigrationSourceStopped(MigrationSourceStopped {
                migration_id: id,
            })]
        }
        MigrationReport::TargetLaunched { pid, boot_ms } => {
            vec![Event::MigrationTargetLaunched(MigrationTargetLaunched {
                migration_id: id,
                host_id: c.host_id.clone(),
                pid: *pid,
                boot_ms: *boot_ms,
            })]
        }
        MigrationReport::NetworkAttached => {
            vec![Event::MigrationNetworkAttached(MigrationNetworkAttached {
                migration_id: id,
            })]
        }
        MigrationReport::Answered { at } => {
            let stopped = s.guest_stopped_at.unwrap_or(*at);
            let downtime_ms = (*at - stopped).num_milliseconds().max(0) as u64;
            let boot_ms = s.boot_ms.unwrap_or(0).min(downtime_ms);
            vec![
                Event::MigrationCompleted(MigrationCompleted {
                    migration_id: id,
                    instance_id: s.plan.instance_id.clone(),
                    host_id: s.plan.target_host.clone(),
                    downtime_ms,
                    boot_ms,
                    control_plane_ms: downtime_ms - boot_ms,
                }),
                notice(
                    s,
                    Notice::Completed { downtime_ms },
                    format!(
                        "Your instance {} moved; it did not answer for {:.1} s and keeps its addresses.",
                        s.plan.instance_id,
                        downtime_ms as f64 / 1000.0
                    ),
                ),
            ]
        }
        MigrationReport::Failed { cause } => {
            non_empty("cause", cause)?;
            vec![Event::MigrationFailed(MigrationFailed {
                migration_id: id,
                step: next_step(s.step).to_string(),
                host_id: c.host_id.clone(),
                cause: cause.clone(),
            })]
        }
        MigrationReport::RolledBack => vec![
            Event::MigrationRolledBack(MigrationRolledBack {
                migration_id: id,
                instance_id: s.plan.instance_id.clone(),
                host_id: s.plan.source_host.clone(),
            }),
            notice(
                s,
                Notice::RolledBack,
                format!(
                    "The move of your instance {} failed; it runs where it ran, with its addresses and disks.",
                    s.plan.instance_id
                ),
            ),
        ],
    };
    Ok(events)
}

/// The step due after `step`, the one a failure interrupts.
fn next_step(step: MigrationStep) -> &'static str {
    match step {
        MigrationStep::Scheduled => "prepare_target",
        MigrationStep::TargetReady | MigrationStep::Syncing => "initial_sync",
        MigrationStep::Synced => "incremental_sync",
        MigrationStep::Started => "detach_network",
        MigrationStep::NetworkDetached => "final_sync",
        MigrationStep::FinalSynced => "stop_source",
        MigrationStep::SourceStopped => "launch_on_target",
        MigrationStep::TargetLaunched => "attach_network",
        MigrationStep::NetworkAttached => "first_answer",
        other => other.name(),
    }
}

fn notice(s: &MigrationState, notice: Notice, message: String) -> Event {
    Event::CustomerNotified(CustomerNotified {
        migration_id: s.plan.migration_id.clone(),
        instance_id: s.plan.instance_id.clone(),
        customer: s.plan.customer.clone(),
        notice,
        message,
    })
}

/// Folds one migration event.
pub(crate) fn evolve(state: Option<MigrationState>, event: &Event) -> Option<MigrationState> {
    if let Event::MigrationScheduled(e) = event {
        return Some(MigrationState::scheduled(e.clone()));
    }
    let mut s = state?;
    match event {
        Event::MigrationTargetReady(e) => {
            s.step = MigrationStep::TargetReady;
            s.exports = e.exports.clone();
        }
        Event::VolumeSyncStarted(_) => s.step = MigrationStep::Syncing,
        Event::VolumeSyncRound(e) => {
            s.rounds = e.round + 1;
            s.bytes_synced += e.bytes_copied;
            s.dirty_bytes_left = e.dirty_bytes_left;
        }
        Event::VolumeSynced(_) => s.step = MigrationStep::Synced,
        Event::MigrationStarted(e) => {
            s.step = MigrationStep::Started;
            s.trigger = Some(e.trigger);
            s.guest_stopped_at = Some(e.guest_stopped_at);
        }
        Event::MigrationNetworkDetached(_) => s.step = MigrationStep::NetworkDetached,
        Event::MigrationFinalSynced(e) => {
            s.step = MigrationStep::FinalSynced;
            s.bytes_synced += e.bytes_copied;
            s.dirty_bytes_left = 0;
        }
        Event::MigrationSourceStopped(_) => {
            s.step = MigrationStep::SourceStopped;
            s.source_stopped = true;
        }
        Event::MigrationTargetLaunched(e) => {
            s.step = MigrationStep::TargetLaunched;
            s.boot_ms = Some(e.boot_ms);
        }
        Event::MigrationNetworkAttached(_) => s.step = MigrationStep::NetworkAttached,
        Event::MigrationCompleted(e) => {
            s.step = MigrationStep::Completed;
            s.downtime_ms = Some(e.downtime_ms);
        }
        Event::MigrationFailed(e) => {
            s.step = MigrationStep::Failed;
            s.failure = Some((e.step.clone(), e.cause.clone()));
        }
        Event::MigrationRolledBack(_) => s.step = MigrationStep::RolledBack,
        Event::MigrationCancelled(_) => s.step = MigrationStep::Cancelled,
        _ => {}
    }
    Some(s)
}

/// Whether `hypervisor` can be migrated at all (its capability row).
pub fn migratable(hypervisor: Hypervisor) -> bool {
    crate::hypervisor::capabilities(hypervisor)
        .features
        .contains(&Feature::Migrate)
}
