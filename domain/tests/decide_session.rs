//! The session decider: provisioning a session once and ending it once, with its saved state.

mod common;

use common::{ctx, end, fold, one, provision, provision_cmd, rejected, run};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::session::MAX_SAVED_STATE_BYTES;
use streamfleet_domain::{Rejection, State, decide, evolve, stream_of};

#[test]
fn a_session_is_provisioned_once() {
    let cmd = provision("s1", "h1");
    assert_eq!(stream_of(&cmd), "session-s1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("provisioned"));
    assert_eq!(
        event,
        Event::SessionProvisioned(SessionProvisioned {
            session_id: "s1".into(),
            token_id: "t1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            group_id: Some("g1".into()),
            region: "eu-west".into(),
            host_id: "h1".into(),
            address: "10.0.0.1".into(),
            control_port: 7000,
            credential_hash: "cd".repeat(32),
            placement_reason: "buffer host; nearest region".into(),
            restored_from: Some("s0".into()),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::SessionAlreadyProvisioned {
            session_id: "s1".into()
        }
    );
}

#[test]
fn provisioning_needs_a_credential_hash() {
    for bad in ["", "password", &"z".repeat(64)] {
        let mut c = provision_cmd("s1", "h1");
        c.credential_hash = bad.into();
        assert_eq!(
            rejected(&Command::ProvisionSession(c), &State::Empty),
            Rejection::InvalidField {
                field: "credential_hash",
                detail: "must be 64 hex digits".into()
            },
            "{bad:?}"
        );
    }
    let mut c = provision_cmd("s1", "h1");
    c.host_id = Default::default();
    let r = rejected(&Command::ProvisionSession(c), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "host_id",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn a_session_ends_once() {
    let state = run(&[provision("s1", "h1")]);
    let cmd = end("s1", "h1", SessionEndReason::Ended, Some("level=3".into()));
    assert_eq!(stream_of(&cmd), "session-s1");
    let event = one(decide(&cmd, &state, &ctx()).expect("ended"));
    assert_eq!(
        event,
        Event::SessionEnded(SessionEnded {
            session_id: "s1".into(),
            host_id: "h1".into(),
            reason: SessionEndReason::Ended,
            saved_state: Some("level=3".into()),
        })
    );
    let ended = evolve(state, &event);
    assert_eq!(
        rejected(&end("s1", "h1", SessionEndReason::Lost, None), &ended),
        Rejection::SessionAlreadyEnded {
            session_id: "s1".into(),
            reason: "ended"
        }
    );
}

#[test]
fn the_already_ended_rejection_names_how_it_ended() {
    let state = run(&[
        provision("s1", "h1"),
        end("s1", "h1", SessionEndReason::Terminated, None),
    ]);
    assert_eq!(
        rejected(&end("s1", "h1", SessionEndReason::Ended, None), &state),
        Rejection::SessionAlreadyEnded {
            session_id: "s1".into(),
            reason: "terminated"
        }
    );
}

#[test]
fn ending_an_unprovisioned_session_is_refused() {
    assert_eq!(
        rejected(
            &end("s1", "h1", SessionEndReason::Ended, None),
            &State::Empty
        ),
        Rejection::SessionNotProvisioned {
            session_id: "s1".into()
        }
    );
}

#[test]
fn only_the_sessions_host_ends_it() {
    let state = run(&[provision("s1", "h1")]);
    assert_eq!(
        rejected(&end("s1", "h2", SessionEndReason::Ended, None), &state),
        Rejection::SessionOnOtherHost {
            session_id: "s1".into(),
            expected: "h1".into(),
            reported: "h2".into()
        }
    );
}

#[test]
fn saved_state_is_at_most_4096_bytes() {
    let state = run(&[provision("s1", "h1")]);
    let too_big = "x".repeat(MAX_SAVED_STATE_BYTES + 1);
    let r = rejected(
        &end("s1", "h1", SessionEndReason::Ended, Some(too_big)),
        &state,
    );
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "saved_state",
                ..
            }
        ),
        "{r:?}"
    );
    // Bytes, not characters: 2,049 two-byte characters are 4,098 bytes.
    let r = rejected(
        &end("s1", "h1", SessionEndReason::Ended, Some("é".repeat(2049))),
        &state,
    );
    assert_eq!(r.rule(), "invalid_field");
    let fits = "x".repeat(MAX_SAVED_STATE_BYTES);
    assert!(
        decide(
            &end("s1", "h1", SessionEndReason::Ended, Some(fits)),
            &state,
            &ctx()
        )
        .is_ok()
    );
}
