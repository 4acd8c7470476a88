//! The discrepancy decider: opening a discrepancy once and resolving it once.

mod common;

use common::{ctx, fold, one, open, rejected, resolve, run};
use streamfleet_bus_schemas::Event;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_domain::{Rejection, State, decide, evolve, stream_of};

#[test]
fn a_discrepancy_is_opened_once() {
    let cmd = open("d1");
    assert_eq!(stream_of(&cmd), "discrepancy-d1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("opened"));
    assert_eq!(
        event,
        Event::DiscrepancyOpened(DiscrepancyOpened {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s1".into(),
            kind: DiscrepancyKind::UnknownSession,
            detail: "h1 reports s1, never recorded".into(),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::DiscrepancyAlreadyOpened {
            discrepancy_id: "d1".into()
        }
    );
}

#[test]
fn a_discrepancy_is_resolved_once_with_its_host_and_session() {
    let state = run(&[open("d1")]);
    let event = one(decide(&resolve("d1"), &state, &ctx()).expect("resolved"));
    assert_eq!(
        event,
        Event::DiscrepancyResolved(DiscrepancyResolved {
            discrepancy_id: "d1".into(),
            host_id: "h1".into(),
            session_id: "s1".into(),
            host_runs_session: false,
            resolution: "host does not run it".into(),
        })
    );
    let resolved = evolve(state, &event);
    assert_eq!(
        rejected(&resolve("d1"), &resolved),
        Rejection::DiscrepancyAlreadyResolved {
            discrepancy_id: "d1".into()
        }
    );
    // Opening it again is refused too.
    assert_eq!(
        rejected(&open("d1"), &resolved).rule(),
        "discrepancy_already_opened"
    );
}

#[test]
fn resolving_an_unknown_discrepancy_is_refused() {
    assert_eq!(
        rejected(&resolve("d9"), &State::Empty),
        Rejection::DiscrepancyNotOpen {
            discrepancy_id: "d9".into()
        }
    );
}
