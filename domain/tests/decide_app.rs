//! The app decider: releasing versions (ordering, urgency) and setting buffer targets.

mod common;

use chrono::Duration;
use common::{ctx, now, one, rejected, release_version, run};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::{Rejection, State, decide, evolve, stream_of};

#[test]
fn the_first_version_has_no_previous() {
    let cmd = release_version("1.0.0", false, 0);
    assert_eq!(stream_of(&cmd), "app-chess");
    assert_eq!(
        one(decide(&cmd, &State::Empty, &ctx()).expect("released")),
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: "1.0.0".into(),
            previous: None,
            urgent: false,
            deadline: None,
        })
    );
}

#[test]
fn a_newer_version_is_released_and_names_the_previous() {
    let state = run(&[release_version("1.9.0", false, 0)]);
    // Numeric, not lexical: 1.10 is newer than 1.9.
    let event = one(decide(&release_version("1.10.0", false, 0), &state, &ctx()).expect("newer"));
    assert_eq!(
        event,
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: "1.10.0".into(),
            previous: Some("1.9.0".into()),
            urgent: false,
            deadline: None,
        })
    );
    let State::App(app) = evolve(state, &event) else {
        panic!("app state expected")
    };
    assert_eq!(app.version, "1.10.0");
}

#[test]
fn an_older_or_equal_version_is_refused() {
    let state = run(&[release_version("2.1.0", false, 0)]);
    for v in ["2.1.0", "2.0.9", "1.99.99", "2.0"] {
        assert_eq!(
            rejected(&release_version(v, false, 0), &state),
            Rejection::VersionNotNewer {
                current: "2.1.0".into(),
                requested: v.into()
            },
            "{v}"
        );
    }
}

#[test]
fn a_version_is_dotted_numbers() {
    for v in ["", "v2", "2.1-beta", "2..1", "2.1.", "latest", "-1"] {
        let r = rejected(&release_version(v, false, 0), &State::Empty);
        assert!(
            matches!(
                r,
                Rejection::InvalidField {
                    field: "version",
                    ..
                }
            ),
            "{v:?}: {r:?}"
        );
    }
    assert!(streamfleet_domain::app::parse_version("2.10.1") == Ok(vec![2, 10, 1]));
}

#[test]
fn an_urgent_version_needs_a_notice_and_sets_a_deadline() {
    for notice in [0, 86_401] {
        let r = rejected(&release_version("1.0.0", true, notice), &State::Empty);
        assert!(
            matches!(
                r,
                Rejection::InvalidField {
                    field: "notice_seconds",
                    ..
                }
            ),
            "{notice}: {r:?}"
        );
    }
    for notice in [1, 900, 86_400] {
        let Event::VersionReleased(e) = one(decide(
            &release_version("1.0.0", true, notice),
            &State::Empty,
            &ctx(),
        )
        .expect("urgent")) else {
            panic!("VersionReleased expected")
        };
        assert!(e.urgent);
        assert_eq!(
            e.deadline,
            Some(now() + Duration::seconds(i64::from(notice)))
        );
    }
    // A notice on a non-urgent release sets no deadline.
    let Event::VersionReleased(e) =
        one(
            decide(&release_version("1.0.0", false, 900), &State::Empty, &ctx()).expect("released"),
        )
    else {
        panic!("VersionReleased expected")
    };
    assert_eq!(e.deadline, None);
}

fn buffer(idle_hosts: u32) -> Command {
    Command::SetBufferTarget(SetBufferTarget {
        region: "eu-west".into(),
        app_id: "chess".into(),
        idle_hosts,
    })
}

#[test]
fn a_buffer_target_is_within_limits() {
    assert_eq!(stream_of(&buffer(1)), "buffer-eu-west.chess");
    for n in [0, 3, 1024] {
        assert_eq!(
            decide(&buffer(n), &State::Empty, &ctx()),
            Ok(vec![Event::BufferTargetSet(BufferTargetSet {
                region: "eu-west".into(),
                app_id: "chess".into(),
                idle_hosts: n,
            })])
        );
    }
    let r = rejected(&buffer(1025), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "idle_hosts",
                ..
            }
        ),
        "{r:?}"
    );
    // A later target replaces an earlier one.
    let state = run(&[buffer(2)]);
    assert_eq!(state, State::Buffer);
    assert!(decide(&buffer(5), &state, &ctx()).is_ok());
    let cmd = Command::SetBufferTarget(SetBufferTarget {
        region: "".into(),
        app_id: "chess".into(),
        idle_hosts: 1,
    });
    assert_eq!(rejected(&cmd, &State::Empty).rule(), "invalid_field");
}

#[test]
fn versions_compare_as_numbers_with_trailing_zeros_ignored() {
    use streamfleet_domain::app::parse_version;
    assert_eq!(parse_version("1.2.0"), parse_version("1.2"));
    assert!(parse_version("1.10").expect("v") > parse_version("1.9.9").expect("v"));
    for bad in ["+1.2", "1..2", "", "1.a", "-1"] {
        assert!(parse_version(bad).is_err(), "{bad}");
    }
}
