//! The deciders, tested with plain values.

use chrono::{Duration, TimeZone, Utc};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::{Context, Rejection, State, decide, evolve};

fn ctx() -> Context {
    Context {
        now: Utc
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .single()
            .expect("valid time"),
    }
}

fn fold(history: &[Event]) -> State {
    history.iter().fold(State::default(), evolve)
}

fn provision(host: &str) -> Command {
    Command::ProvisionSession(ProvisionSession {
        session_id: "s1".into(),
        token_id: "t1".into(),
        app_id: "chess".into(),
        region: "eu".into(),
        host_id: host.into(),
        address: "10.0.0.1:7000".into(),
    })
}

fn heartbeat(host: &str) -> Command {
    Command::RecordHeartbeat(RecordHeartbeat {
        session_id: "s1".into(),
        host_id: host.into(),
        sent_at: ctx().now,
    })
}

#[test]
fn token_expires_ttl_after_now_and_is_issued_once() {
    let cmd = Command::IssueToken(IssueToken {
        token_id: "t1".into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        client_ip: None,
        ttl_seconds: 60,
        secret_sha256: "AB".repeat(32),
    });
    let events = decide(&cmd, &State::Empty, &ctx()).expect("issued");
    let Event::TokenIssued(issued) = &events[0] else {
        panic!("expected TokenIssued, got {events:?}")
    };
    assert_eq!(issued.expires_at, ctx().now + Duration::seconds(60));
    assert_eq!(issued.secret_sha256, "ab".repeat(32));
    assert_eq!(
        decide(&cmd, &fold(&events), &ctx()),
        Err(Rejection::TokenAlreadyIssued {
            token_id: "t1".into()
        })
    );
}

#[test]
fn token_ttl_and_hash_are_checked() {
    let mut c = IssueToken {
        token_id: "t1".into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        client_ip: None,
        ttl_seconds: 0,
        secret_sha256: "ab".repeat(32),
    };
    let r = decide(&Command::IssueToken(c.clone()), &State::Empty, &ctx()).unwrap_err();
    assert_eq!(r.rule(), "ttl_out_of_range");
    c.ttl_seconds = 60;
    c.secret_sha256 = "secret".into();
    let r = decide(&Command::IssueToken(c), &State::Empty, &ctx()).unwrap_err();
    assert_eq!(
        r,
        Rejection::InvalidField {
            field: "secret_sha256",
            detail: "must be 64 hex digits".into()
        }
    );
}

#[test]
fn heartbeat_needs_the_provisioned_session_and_its_host() {
    assert_eq!(
        decide(&heartbeat("h1"), &State::Empty, &ctx()),
        Err(Rejection::SessionNotProvisioned {
            session_id: "s1".into()
        })
    );
    let provisioned = decide(&provision("h1"), &State::Empty, &ctx()).expect("provisioned");
    let state = fold(&provisioned);
    assert_eq!(
        decide(&provision("h1"), &state, &ctx()).unwrap_err().rule(),
        "session_already_provisioned"
    );
    assert_eq!(
        decide(&heartbeat("h2"), &state, &ctx()).unwrap_err().rule(),
        "heartbeat_from_wrong_host"
    );
    let beat = decide(&heartbeat("h1"), &state, &ctx()).expect("recorded");
    let State::Session(s) = fold(&[provisioned, beat.clone(), beat].concat()) else {
        panic!("session state")
    };
    assert_eq!(s.heartbeats, 2);
}

#[test]
fn migration_needs_another_server_and_a_future_deadline() {
    let mut c = ScheduleMigration {
        migration_id: "m1".into(),
        instance_id: "i1".into(),
        source_server: "a".into(),
        target_server: "a".into(),
        deadline: ctx().now + Duration::hours(1),
    };
    assert_eq!(
        decide(
            &Command::ScheduleMigration(c.clone()),
            &State::Empty,
            &ctx()
        )
        .unwrap_err()
        .rule(),
        "migration_target_is_source"
    );
    c.target_server = "b".into();
    c.deadline = ctx().now;
    assert_eq!(
        decide(
            &Command::ScheduleMigration(c.clone()),
            &State::Empty,
            &ctx()
        )
        .unwrap_err()
        .rule(),
        "deadline_in_past"
    );
    c.deadline = ctx().now + Duration::hours(1);
    let events = decide(
        &Command::ScheduleMigration(c.clone()),
        &State::Empty,
        &ctx(),
    )
    .expect("scheduled");
    assert_eq!(
        decide(&Command::ScheduleMigration(c), &fold(&events), &ctx())
            .unwrap_err()
            .rule(),
        "migration_already_scheduled"
    );
}

#[test]
fn ciphers_prefer_one_cipher_end_to_end_and_fail_clearly_without_one() {
    use Cipher::*;
    let sel = |s: &[Cipher], r: &[Cipher], d: &[Cipher]| {
        decide(
            &Command::SelectCipher(SelectCipher {
                connection_id: "c1".into(),
                source: s.to_vec(),
                relay: r.to_vec(),
                destination: d.to_vec(),
            }),
            &State::Empty,
            &ctx(),
        )
    };
    let Ok(ev) = sel(
        &[Aes128Gcm],
        &[Aes128Gcm, Chacha20Poly1305],
        &[Chacha20Poly1305],
    ) else {
        panic!("selected")
    };
    assert_eq!(
        ev,
        vec![Event::CipherSelected(CipherSelected {
            connection_id: "c1".into(),
            inbound: Aes128Gcm,
            outbound: Chacha20Poly1305,
            reencrypt: true
        })]
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes256Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "source→relay"
        })
    );
    assert_eq!(
        sel(&[Aes128Gcm], &[Aes128Gcm], &[Aes256Gcm]),
        Err(Rejection::NoCommonCipher {
            hop: "relay→destination"
        })
    );
}

#[test]
fn a_command_on_a_stream_of_another_kind_is_refused() {
    let failed = fold(&[Event::NodeFailed(NodeFailed {
        node_id: "x".into(),
        reason: "r".into(),
    })]);
    assert_eq!(
        decide(&heartbeat("h1"), &failed, &ctx()),
        Err(Rejection::WrongStreamKind {
            expected: "session",
            found: "node"
        })
    );
}
