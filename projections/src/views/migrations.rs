//! Migrations: every move of an instance to another host, step by step, with its sync figures,
//! its downtime and the last notice its customer got.
//!
//! Invariant: a migration row follows the domain's fold of its stream `migration-<id>`
//! (`streamfleet_domain::evolve`, giving `State::Migration`): `MigrationScheduled` starts it
//! afresh, and only a scheduled migration takes the other events, each setting the step the
//! domain sets (named by the domain's own `MigrationStep::name`), with the same rounds, bytes,
//! trigger, downtime and failure. What the domain keeps for deciding only (the exports, the
//! instance's disks and addresses) is left out; what it does not keep but people want (the
//! notices, the completion's split of the downtime, when each thing happened) is added from
//! the events alone, never from the clock.

use super::View;
use crate::pb::MigrationRow;
use crate::rows::{StoredTable, Table, timestamp};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::migration::Notice;
use streamfleet_domain::migration::MigrationStep;

/// Migration rows.
#[derive(Debug, Clone)]
pub struct MigrationsView {
    /// By migration id.
    pub migrations: Table<MigrationRow>,
}

impl Default for MigrationsView {
    fn default() -> Self {
        MigrationsView {
            migrations: Table::new("migrations"),
        }
    }
}

/// A notice's kind, as its tag on the wire.
pub fn notice_kind(notice: &Notice) -> &'static str {
    match notice {
        Notice::Scheduled { .. } => "scheduled",
        Notice::Completed { .. } => "completed",
        Notice::RolledBack => "rolled_back",
        Notice::Cancelled => "cancelled",
    }
}

/// Sets a row's step (and whether it is over).
fn set_step(r: &mut MigrationRow, step: MigrationStep) {
    r.step = step.name().to_string();
    r.over = step.is_over();
}

impl MigrationsView {
    /// Changes a scheduled migration's row (nothing when it was never scheduled, as the domain
    /// folds nothing before `MigrationScheduled`).
    fn migration(
        &mut self,
        migration_id: &str,
        time: DateTime<Utc>,
        f: impl FnOnce(&mut MigrationRow),
    ) {
        self.migrations.update(migration_id, |r| {
            f(r);
            r.updated_at = Some(timestamp(time));
        });
    }
}

impl View for MigrationsView {
    const NAME: &'static str = "migrations";

    fn apply(&mut self, _position: u64, time: DateTime<Utc>, event: &Event) {
        let at = Some(timestamp(time));
        match event {
            // A schedule starts the migration afresh, as the domain's fold does.
            Event::MigrationScheduled(e) => self.migrations.upsert(&e.migration_id, |r| {
                *r = MigrationRow {
                    migration_id: e.migration_id.to_string(),
                    instance_id: e.instance_id.to_string(),
                    source_host: e.source_host.to_string(),
                    target_host: e.target_host.to_string(),
                    deadline: Some(timestamp(e.deadline)),
                    reason: e.reason.clone(),
                    customer: e.customer.clone(),
                    hypervisor: e.hypervisor.name().to_string(),
                    matched: e.matched.clone(),
                    sync_interval_seconds: e.sync_interval_seconds,
                    scheduled_at: at,
                    updated_at: at,
                    ..Default::default()
                };
                set_step(r, MigrationStep::Scheduled);
            }),
            Event::MigrationTargetReady(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::TargetReady)
            }),
            Event::VolumeSyncStarted(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Syncing);
                r.volume_bytes = e.bytes;
            }),
            Event::VolumeSyncRound(e) => self.migration(&e.migration_id, time, |r| {
                r.rounds = e.round.saturating_add(1);
                r.bytes_synced = r.bytes_synced.saturating_add(e.bytes_copied);
                r.dirty_bytes_left = e.dirty_bytes_left;
            }),
            Event::VolumeSynced(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Synced)
            }),
            Event::CustomerNotified(e) => self.migration(&e.migration_id, time, |r| {
                r.last_notice.clone_from(&e.message);
                r.last_notice_kind = notice_kind(&e.notice).to_string();
            }),
            Event::MigrationStarted(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Started);
                r.trigger = e.trigger.name().to_string();
                r.guest_stopped_at = Some(timestamp(e.guest_stopped_at));
            }),
            Event::MigrationNetworkDetached(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::NetworkDetached)
            }),
            Event::MigrationFinalSynced(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::FinalSynced);
                r.bytes_synced = r.bytes_synced.saturating_add(e.bytes_copied);
                r.dirty_bytes_left = 0;
            }),
            Event::MigrationSourceStopped(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::SourceStopped)
            }),
            Event::MigrationTargetLaunched(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::TargetLaunched);
                r.boot_ms = e.boot_ms;
            }),
            Event::MigrationNetworkAttached(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::NetworkAttached)
            }),
            Event::MigrationCompleted(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Completed);
                r.downtime_ms = e.downtime_ms;
                r.boot_ms = e.boot_ms;
                r.control_plane_ms = e.control_plane_ms;
                r.ended_at = at;
            }),
            Event::MigrationFailed(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Failed);
                r.failed_step.clone_from(&e.step);
                r.failure_cause.clone_from(&e.cause);
                r.failure_host = e.host_id.to_string();
            }),
            Event::MigrationRolledBack(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::RolledBack);
                r.ended_at = at;
            }),
            Event::MigrationCancelled(e) => self.migration(&e.migration_id, time, |r| {
                set_step(r, MigrationStep::Cancelled);
                r.cancel_reason.clone_from(&e.reason);
                r.ended_at = at;
            }),
            _ => {}
        }
    }

    fn tables_mut(&mut self) -> Vec<&mut dyn StoredTable> {
        vec![&mut self.migrations]
    }
}
