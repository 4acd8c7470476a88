//! The migration decider: scheduling a migration to another server before its deadline.

mod common;

use chrono::Duration;
use common::{now, rejected, run};
use streamfleet_bus_schemas::Command;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_domain::{Rejection, State};

#[test]
fn migration_needs_another_server_and_a_future_deadline() {
    let mut c = ScheduleMigration {
        migration_id: "m1".into(),
        instance_id: "i1".into(),
        source_server: "a".into(),
        target_server: "a".into(),
        deadline: now() + Duration::hours(1),
    };
    assert_eq!(
        rejected(&Command::ScheduleMigration(c.clone()), &State::Empty),
        Rejection::MigrationTargetIsSource { server: "a".into() }
    );
    c.target_server = "b".into();
    c.deadline = now();
    assert_eq!(
        rejected(&Command::ScheduleMigration(c.clone()), &State::Empty),
        Rejection::DeadlineInPast {
            deadline: now(),
            now: now()
        }
    );
    c.deadline = now() + Duration::hours(1);
    let state = run(&[Command::ScheduleMigration(c.clone())]);
    assert_eq!(
        rejected(&Command::ScheduleMigration(c), &state).rule(),
        "migration_already_scheduled"
    );
}
