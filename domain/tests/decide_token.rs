//! The token decider: issuing tokens and redeeming them (hash, expiry, IP binding).

mod common;

use chrono::Duration;
use common::{ctx, ctx_at, fold, issue, issue_cmd, now, one, redeem, rejected, run};
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::{Command, Event};
use streamfleet_domain::{Rejection, State, decide, stream_of};

#[test]
fn token_is_issued_with_lowercased_hash_and_expiry_ttl_after_now() {
    let cmd = issue(Some("203.0.113.9"));
    assert_eq!(stream_of(&cmd), "token-t1");
    let event = one(decide(&cmd, &State::Empty, &ctx()).expect("issued"));
    assert_eq!(
        event,
        Event::TokenIssued(TokenIssued {
            token_id: "t1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            client_ip: Some("203.0.113.9".into()),
            group_id: Some("g1".into()),
            token_hash: "ab".repeat(32),
            expires_at: now() + Duration::seconds(60),
        })
    );
    assert_eq!(
        rejected(&cmd, &fold(&[event])),
        Rejection::TokenAlreadyIssued {
            token_id: "t1".into()
        }
    );
}

#[test]
fn token_ttl_must_be_within_range() {
    for ttl in [0, 3601, u32::MAX] {
        let mut c = issue_cmd(None);
        c.ttl_seconds = ttl;
        assert_eq!(
            rejected(&Command::IssueToken(c), &State::Empty),
            Rejection::TtlOutOfRange {
                ttl_seconds: ttl,
                min: 1,
                max: 3600
            }
        );
    }
    for ttl in [1, 3600] {
        let mut c = issue_cmd(None);
        c.ttl_seconds = ttl;
        let Event::TokenIssued(e) =
            one(decide(&Command::IssueToken(c), &State::Empty, &ctx()).expect("in range"))
        else {
            panic!("TokenIssued expected")
        };
        assert_eq!(e.expires_at, now() + Duration::seconds(i64::from(ttl)));
    }
}

#[test]
fn token_hash_must_be_64_hex_digits() {
    for bad in [
        "secret".to_string(),
        "a".repeat(63),
        "a".repeat(65),
        "g".repeat(64),
        String::new(),
    ] {
        let mut c = issue_cmd(None);
        c.token_hash = bad.clone();
        assert_eq!(
            rejected(&Command::IssueToken(c), &State::Empty),
            Rejection::InvalidField {
                field: "token_hash",
                detail: "must be 64 hex digits".into()
            },
            "hash {bad:?}"
        );
    }
}

#[test]
fn token_needs_app_and_user() {
    let mut c = issue_cmd(None);
    c.user_id = " ".into();
    let r = rejected(&Command::IssueToken(c), &State::Empty);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "user_id",
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn redeeming_an_unknown_token_is_refused() {
    assert_eq!(
        rejected(
            &redeem(&"ab".repeat(32), "203.0.113.9", "s1"),
            &State::Empty
        ),
        Rejection::TokenUnknown {
            token_id: "t1".into()
        }
    );
}

#[test]
fn redeeming_records_the_token_facts_and_a_second_redeem_names_the_session() {
    let state = run(&[issue(None)]);
    // The presented hash is compared case-insensitively.
    let cmd = redeem(&"AB".repeat(32), "203.0.113.9", "s1");
    assert_eq!(stream_of(&cmd), "token-t1");
    let event = one(decide(&cmd, &state, &ctx()).expect("redeemed"));
    assert_eq!(
        event,
        Event::TokenRedeemed(TokenRedeemed {
            token_id: "t1".into(),
            session_id: "s1".into(),
            app_id: "chess".into(),
            user_id: "u1".into(),
            group_id: Some("g1".into()),
            client_ip: "203.0.113.9".into(),
            region: "eu-west".into(),
            route_reason: "measured latency 12 ms".into(),
        })
    );
    let state = fold(
        &[
            decide(&issue(None), &State::Empty, &ctx()).unwrap(),
            vec![event],
        ]
        .concat(),
    );
    assert_eq!(
        rejected(&redeem(&"ab".repeat(32), "203.0.113.9", "s2"), &state),
        Rejection::TokenAlreadyRedeemed {
            token_id: "t1".into(),
            session_id: "s1".into()
        }
    );
}

#[test]
fn a_forged_token_is_refused_before_already_used() {
    let state = run(&[issue(None), redeem(&"ab".repeat(32), "203.0.113.9", "s1")]);
    assert_eq!(
        rejected(&redeem(&"cd".repeat(32), "203.0.113.9", "s2"), &state),
        Rejection::TokenForged {
            token_id: "t1".into()
        }
    );
    // And forged also on a fresh token.
    assert_eq!(
        rejected(
            &redeem(&"cd".repeat(32), "203.0.113.9", "s1"),
            &run(&[issue(None)])
        )
        .rule(),
        "token_forged"
    );
}

#[test]
fn a_token_expires_at_exactly_expires_at() {
    let state = run(&[issue(None)]);
    let cmd = redeem(&"ab".repeat(32), "203.0.113.9", "s1");
    assert!(decide(&cmd, &state, &ctx_at(59)).is_ok());
    for late in [60, 61, 86_400] {
        assert_eq!(
            decide(&cmd, &state, &ctx_at(late)),
            Err(Rejection::TokenExpired {
                token_id: "t1".into(),
                expired_at: now() + Duration::seconds(60)
            }),
            "{late}s after issue"
        );
    }
}

#[test]
fn a_bound_token_is_redeemed_only_from_its_ip() {
    let state = run(&[issue(Some("203.0.113.9"))]);
    assert_eq!(
        rejected(&redeem(&"ab".repeat(32), "198.51.100.1", "s1"), &state),
        Rejection::ClientIpMismatch {
            bound: "203.0.113.9".into(),
            presented: "198.51.100.1".into()
        }
    );
    assert!(
        decide(
            &redeem(&"ab".repeat(32), "203.0.113.9", "s1"),
            &state,
            &ctx()
        )
        .is_ok()
    );
}

#[test]
fn an_unbound_token_is_redeemed_from_any_ip() {
    let state = run(&[issue(None)]);
    for ip in ["203.0.113.9", "198.51.100.1", "2001:db8::1"] {
        let Event::TokenRedeemed(e) =
            one(decide(&redeem(&"ab".repeat(32), ip, "s1"), &state, &ctx()).expect("redeemed"))
        else {
            panic!("TokenRedeemed expected")
        };
        assert_eq!(e.client_ip, ip);
    }
}

#[test]
fn redeeming_needs_a_session_id() {
    let state = run(&[issue(None)]);
    let r = rejected(&redeem(&"ab".repeat(32), "203.0.113.9", ""), &state);
    assert!(
        matches!(
            r,
            Rejection::InvalidField {
                field: "session_id",
                ..
            }
        ),
        "{r:?}"
    );
}
