//! Migrations: scheduled once, to another server, with a deadline in the future.

use crate::{Context, Rejection, non_empty};
use chrono::{DateTime, Utc};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::{MigrationScheduled, ScheduleMigration};

/// A migration's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MigrationState {
    /// Its deadline.
    pub deadline: DateTime<Utc>,
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
    non_empty("instance_id", &c.instance_id)?;
    non_empty("source_server", &c.source_server)?;
    non_empty("target_server", &c.target_server)?;
    if c.source_server == c.target_server {
        return Err(Rejection::MigrationTargetIsSource {
            server: c.target_server.clone(),
        });
    }
    if c.deadline <= ctx.now {
        return Err(Rejection::DeadlineInPast {
            deadline: c.deadline,
            now: ctx.now,
        });
    }
    Ok(vec![Event::MigrationScheduled(MigrationScheduled {
        migration_id: c.migration_id.clone(),
        instance_id: c.instance_id.clone(),
        source_server: c.source_server.clone(),
        target_server: c.target_server.clone(),
        deadline: c.deadline,
    })])
}

pub(crate) fn evolve(e: &MigrationScheduled) -> MigrationState {
    MigrationState {
        deadline: e.deadline,
    }
}
