//! The app decider: registering apps, releasing versions (ordering, urgency), setting buffer
//! targets; commands naming an unregistered app.

mod common;

use chrono::Duration;
use common::{ctx, now, one, register_app, rejected, release_version, run};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::{Rejection, State, decide, evolve, stream_of};

/// `chess` registered at 0.1.0.
fn registered() -> State {
    run(&[register_app("0.1.0")])
}

#[test]
fn an_app_is_registered_once_with_its_first_version_image_and_requirements() {
    let cmd = register_app("0.1.0");
    assert_eq!(stream_of(&cmd), "app-chess");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("registered"));
    assert_eq!(
        event,
        Event::AppRegistered(AppRegistered {
            app_id: "chess".into(),
            version: "0.1.0".into(),
            image: "registry.example/chess".into(),
            requirements: HostRequirements {
                cpus: 2,
                memory_mib: 2048,
                gpu: false
            },
        })
    );
    let state = evolve(State::Empty, &event);
    let State::App(app) = &state else {
        panic!("app state expected")
    };
    assert_eq!((app.version.as_str(), app.requirements.cpus), ("0.1.0", 2));
    assert_eq!(
        rejected(&register_app("0.2.0"), &state),
        Rejection::AppAlreadyRegistered {
            app_id: "chess".into()
        }
    );
    let Command::RegisterApp(mut bad) = register_app("0.1.0") else {
        unreachable!()
    };
    bad.image = " ".into();
    assert_eq!(
        rejected(&Command::RegisterApp(bad), &State::Empty).rule(),
        "invalid_field"
    );
}

#[test]
fn a_release_of_an_unregistered_app_is_refused_as_unknown_app() {
    let r = rejected(&release_version("1.0.0", false, 0), &State::Empty);
    assert_eq!(
        r,
        Rejection::UnknownApp {
            app_id: "chess".into()
        }
    );
    assert_eq!(r.rule(), "unknown_app");
}

#[test]
fn the_first_release_names_the_registered_version_as_previous() {
    let event =
        one(decide(&release_version("1.0.0", false, 0), &registered(), &ctx()).expect("released"));
    assert_eq!(
        event,
        Event::VersionReleased(VersionReleased {
            app_id: "chess".into(),
            version: "1.0.0".into(),
            previous: Some("0.1.0".into()),
            urgent: false,
            deadline: None,
        })
    );
}

#[test]
fn commands_naming_an_unregistered_app_are_refused_as_unknown_app() {
    let nowhere = streamfleet_domain::Context::at(now());
    for cmd in [buffer(1), common::issue(None)] {
        let r = decide(&cmd, &State::Empty, &nowhere).expect_err("unknown app");
        assert_eq!(r.rule(), "unknown_app", "{cmd:?}");
    }
    // Another app's registration does not count.
    let mut other = ctx();
    if let Some(app) = other.app.as_mut() {
        app.app_id = "go".into();
    }
    let r = decide(&buffer(1), &State::Empty, &other).expect_err("unknown app");
    assert_eq!(r.rule(), "unknown_app");
}

#[test]
fn a_newer_version_is_released_and_names_the_previous() {
    let state = run(&[register_app("0.1.0"), release_version("1.9.0", false, 0)]);
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
    let state = run(&[register_app("0.1.0"), release_version("2.1.0", false, 0)]);
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
        let r = rejected(&release_version(v, false, 0), &registered());
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
        let r = rejected(&release_version("1.0.0", true, notice), &registered());
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
            &registered(),
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
            decide(&release_version("1.0.0", false, 900), &registered(), &ctx()).expect("released"),
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
