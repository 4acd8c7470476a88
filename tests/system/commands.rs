//! Commands over NATS: accepted, deduplicated, rejected with a typed reason.

use crate::harness::System;
use bytes::Bytes;
use futures::StreamExt;
use streamfleet_bus_schemas::payloads::*;
use streamfleet_bus_schemas::*;
use uuid::Uuid;

pub fn token(id: &str) -> Command {
    Command::IssueToken(IssueToken {
        token_id: id.into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        client_ip: Some("203.0.113.9".into()),
        group_id: None,
        ttl_seconds: 60,
        token_hash: "ab".repeat(32),
    })
}

pub fn provision(session: &str, host: &str) -> Command {
    Command::ProvisionSession(ProvisionSession {
        session_id: session.into(),
        token_id: "t1".into(),
        app_id: "chess".into(),
        user_id: "u1".into(),
        group_id: None,
        region: "eu-west".into(),
        host_id: host.into(),
        address: "198.51.100.7".into(),
        control_port: 7000,
        credential_hash: "cd".repeat(32),
        placement_reason: "test".into(),
        restored_from: None,
    })
}

pub fn register(host: &str) -> Command {
    Command::RegisterHost(RegisterHost {
        host_id: host.into(),
        region: "eu-west".into(),
        app_id: "chess".into(),
        version: "1.0.0".into(),
        capacity: 4,
        hardware: "test".into(),
        address: "127.0.0.1".into(),
        control_port: 7000,
        control_tls: false,
    })
}

/// The end of a session nobody provisioned.
pub fn end_unknown() -> Command {
    Command::EndSession(EndSession {
        session_id: "s-none".into(),
        host_id: "h".into(),
        reason: SessionEndReason::Ended,
        saved_state: None,
    })
}

/// A host's heartbeat report listing one session.
pub fn heartbeat(session: &str, host: &str) -> Command {
    Command::RecordHeartbeats(RecordHeartbeats {
        host_id: host.into(),
        sent_at: chrono::Utc::now(),
        sessions: vec![SessionBeat {
            session_id: session.into(),
            stats: None,
        }],
    })
}

fn code(reply: &CommandReply) -> String {
    match reply {
        CommandReply::Rejected { reason, .. } => {
            serde_json::to_value(reason).expect("json")["code"]
                .as_str()
                .expect("code")
                .to_string()
        }
        CommandReply::Accepted { .. } => "accepted".into(),
    }
}

#[tokio::test]
async fn a_command_is_recorded_once_and_its_retry_gets_the_same_answer() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    let id = Uuid::now_v7();
    let first = commands.send(id, &token("t-1")).await.expect("reply");
    let CommandReply::Accepted {
        command_id,
        stream,
        deduplicated,
        events,
    } = &first
    else {
        panic!("accepted: {first:?}")
    };
    assert_eq!(
        (*command_id, stream.as_str(), *deduplicated),
        (id, "token-t-1", false)
    );
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].event_type.as_str(),
            events[0].streamversion,
            events[0].position
        ),
        ("TokenIssued", 1, 2)
    );

    let again = commands.send(id, &token("t-1")).await.expect("reply");
    let CommandReply::Accepted {
        deduplicated,
        events: again_events,
        ..
    } = &again
    else {
        panic!("accepted: {again:?}")
    };
    assert!(*deduplicated);
    assert_eq!(again_events, events);

    // A new command id for the same token is a new command, and the domain refuses it.
    let other = commands
        .send(Uuid::now_v7(), &token("t-1"))
        .await
        .expect("reply");
    assert_eq!(code(&other), "domain");
}

/// The attack: a command id seen on the bus is reused with other content (here another type on
/// another subject, and the same type with other data), hoping to be told `accepted`. Before,
/// each was answered `accepted, deduplicated` and silently not recorded.
#[tokio::test]
async fn a_reused_command_id_with_other_content_is_rejected_naming_the_first_command() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    let id = Uuid::now_v7();
    assert_eq!(
        code(&commands.send(id, &token("t-1")).await.expect("reply")),
        "accepted"
    );
    let failure = Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "n-1".into(),
        reason: "silent".into(),
    });
    let reasons = [
        commands.send(id, &token("t-9")).await.expect("reply"),
        commands.send(id, &failure).await.expect("reply"),
        commands
            .send(id, &provision("s-1", "h-1"))
            .await
            .expect("reply"),
        // The same command from another sender is another command.
        sys.nats
            .commands("worker")
            .await
            .send(id, &token("t-1"))
            .await
            .expect("reply"),
    ];
    for reply in &reasons {
        let CommandReply::Rejected { reason, .. } = reply else {
            panic!("rejected expected: {reply:?}")
        };
        assert_eq!(
            reason,
            &RejectionReason::IdReused {
                original_type: "IssueToken".into()
            }
        );
    }
    // Nothing of theirs was recorded; the original still answers as before.
    let reader = streamfleet_bus_client::LogReader::new(sys.nats.client("service").await);
    assert_eq!(
        reader.head().await.expect("head"),
        2,
        "only the first command was recorded"
    );
    for stream in ["token-t-9", "node-n-1", "session-s-1"] {
        assert!(
            reader.stream(stream).await.expect("read").is_empty(),
            "{stream}"
        );
    }
    let again = commands.send(id, &token("t-1")).await.expect("reply");
    assert!(
        matches!(
            again,
            CommandReply::Accepted {
                deduplicated: true,
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_typed_rejection_and_the_node_keeps_serving() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    let good = |cmd: &Command| {
        serde_json::to_value(commands.envelope(Uuid::now_v7(), cmd, None)).expect("json")
    };
    let with = |mut v: serde_json::Value, f: &dyn Fn(&mut serde_json::Value)| {
        f(&mut v);
        Bytes::from(serde_json::to_vec(&v).expect("json"))
    };
    let base = good(&token("t-bad"));
    let node_failure = Command::ReportNodeFailure(ReportNodeFailure {
        node_id: "n".into(),
        reason: "r".repeat(70_000),
    });
    let cases: Vec<(&str, Bytes, &str)> = vec![
        (
            "sf.cmd.token.issue.service",
            Bytes::from_static(b"{\"id\": nope"),
            "malformed_json",
        ),
        (
            "sf.cmd.token.issue.service",
            Bytes::from_static(b""),
            "malformed_json",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| v["type"] = "LaunchRocket".into()),
            "unknown_command_type",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| v["schemaversion"] = 99.into()),
            "unsupported_schema_version",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| {
                v.as_object_mut().expect("object").remove("source");
            }),
            "invalid_envelope",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| v["id"] = 42.into()),
            "invalid_envelope",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| v["data"]["ttl_seconds"] = "sixty".into()),
            "invalid_payload",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| {
                v["data"].as_object_mut().expect("object").remove("user_id");
            }),
            "invalid_payload",
        ),
        (
            "sf.cmd.session.provision.service",
            with(base.clone(), &|_| {}),
            "subject_mismatch",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| {
                v["data"]["token_id"] = "has space".into()
            }),
            "invalid_payload",
        ),
        (
            "sf.cmd.node.report-failure.service",
            Bytes::from(serde_json::to_vec(&good(&node_failure)).expect("json")),
            "too_large",
        ),
        (
            "sf.cmd.session.end.service",
            with(good(&end_unknown()), &|_| {}),
            "domain",
        ),
        (
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| {
                v["expectedversion"] = serde_json::json!({ "exact": 3 })
            }),
            "wrong_expected_version",
        ),
    ];
    for (subject, body, expected) in &cases {
        let reply = commands
            .send_raw(subject, body.clone())
            .await
            .expect("the node answers");
        assert_eq!(
            code(&reply),
            *expected,
            "{subject} {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        let CommandReply::Rejected { message, .. } = &reply else {
            unreachable!()
        };
        assert!(!message.is_empty());
    }
    // The rejection names the problem.
    let reply = commands
        .send_raw(
            "sf.cmd.token.issue.service",
            with(base.clone(), &|v| v["data"]["ttl_seconds"] = "sixty".into()),
        )
        .await
        .expect("reply");
    let CommandReply::Rejected {
        message,
        command_id,
        ..
    } = reply
    else {
        panic!("rejected")
    };
    assert!(
        message.contains("invalid type") && message.contains("IssueToken"),
        "{message}"
    );
    assert_eq!(
        command_id.map(|i| i.to_string()),
        base["id"].as_str().map(String::from)
    );

    // Nothing was recorded, and the node still serves.
    let ok = commands
        .send(Uuid::now_v7(), &token("t-good"))
        .await
        .expect("reply");
    let CommandReply::Accepted { events, .. } = ok else {
        panic!("accepted after bad input: {ok:?}")
    };
    assert_eq!(events[0].position, 2, "no rejected command was recorded");
    let expected_ok = commands
        .send_expecting(
            Uuid::now_v7(),
            &end_unknown(),
            Some(ExpectedVersion::NoStream),
        )
        .await
        .expect("reply");
    assert_eq!(
        code(&expected_ok),
        "domain",
        "expected version passes, then the domain decides"
    );
}

#[tokio::test]
async fn concurrent_commands_on_one_stream_get_exactly_one_winner_per_version() {
    let sys = System::start();
    let commands = sys.nats.commands("service").await;
    let provisions: Vec<_> = (0..32)
        .map(|i| {
            let c = commands.clone();
            tokio::spawn(async move {
                c.send(Uuid::now_v7(), &provision("s-race", &format!("h{i}")))
                    .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for p in provisions {
        codes.push(code(&p.await.expect("task").expect("reply")));
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "accepted").count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| *c == "domain").count(),
        31,
        "{codes:?}"
    );

    let owner = "h-race".to_string();
    sys.nats
        .admit_host(&owner, "eu-west")
        .await
        .expect("admitted");
    let host = sys.nats.host_commands(&owner).await;
    let registered = host
        .send(Uuid::now_v7(), &register(&owner))
        .await
        .expect("reply");
    assert_eq!(code(&registered), "accepted");
    let beats: Vec<_> = (0..64)
        .map(|_| {
            let (c, owner) = (host.clone(), owner.clone());
            tokio::spawn(async move { c.send(Uuid::now_v7(), &heartbeat("s-race", &owner)).await })
        })
        .collect();
    let mut versions = Vec::new();
    for b in beats {
        let reply = b.await.expect("task").expect("reply");
        let CommandReply::Accepted { events, .. } = reply else {
            panic!("heartbeat accepted: {reply:?}")
        };
        versions.push(events[0].streamversion);
    }
    versions.sort();
    assert_eq!(
        versions,
        (3..=66).collect::<Vec<_>>(),
        "every heartbeat got its own version (after admission and registration)"
    );
}

#[tokio::test]
async fn events_are_published_after_commit_with_their_position() {
    let sys = System::start();
    let client = sys.nats.client("service").await;
    let mut events = client
        .subscribe("sf.evt.session.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let commands = sys.nats.commands("service").await;
    commands
        .send(Uuid::now_v7(), &provision("s-1", "h-1"))
        .await
        .expect("reply");
    let msg = events.next().await.expect("event");
    assert_eq!(msg.subject.as_str(), "sf.evt.session.SessionProvisioned");
    let headers = msg.headers.expect("headers");
    assert_eq!(
        headers
            .get(subjects::HEADER_POSITION)
            .map(|v| v.as_str().to_string()),
        Some("2".into())
    );
    let env: EventEnvelope<SessionProvisioned> =
        serde_json::from_slice(&msg.payload).expect("typed envelope");
    assert_eq!(
        (env.position, env.streamversion, env.body.subject.as_str()),
        (2, 1, "session-s-1")
    );
    assert_eq!(env.body.specversion, "1.0");
    assert_eq!(env.body.id.get_version_num(), 7, "event ids are UUIDv7");
    assert_eq!(env.body.data.host_id, "h-1");
}

/// What a service in another language does with only `schemas/` and a NATS client: raw JSON in,
/// raw JSON out (the README's example, verbatim in shape).
#[tokio::test]
async fn a_hand_written_json_command_is_accepted_and_its_event_is_plain_cloudevents_json() {
    let sys = System::start();
    let client = sys.nats.client("service").await;
    let mut events = client.subscribe("sf.evt.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    let request = br#"{"id":"0192f0c4-7b1a-7cc0-8000-000000000001","source":"me","type":"ReportNodeFailure","schemaversion":1,"data":{"node_id":"n1","reason":"silent"}}"#;
    let reply = client
        .request(
            "sf.cmd.node.report-failure.service",
            Bytes::from_static(request),
        )
        .await
        .expect("reply");
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON reply");
    assert_eq!(reply["status"], "accepted", "{reply}");
    assert_eq!(reply["events"][0]["type"], "NodeFailed");
    assert_eq!(reply["events"][0]["position"], 2);
    // Schema version 2: the accepted reply carries what was recorded, and a retry's answer too.
    let recorded = serde_json::json!({ "node_id": "n1", "reason": "silent" });
    assert_eq!(reply["events"][0]["data"], recorded, "{reply}");
    let again = client
        .request(
            "sf.cmd.node.report-failure.service",
            Bytes::from_static(request),
        )
        .await
        .expect("reply");
    let again: serde_json::Value = serde_json::from_slice(&again.payload).expect("JSON reply");
    assert_eq!(again["deduplicated"], true, "{again}");
    assert_eq!(again["events"][0]["data"], recorded, "{again}");

    let msg = events.next().await.expect("event");
    let event: serde_json::Value = serde_json::from_slice(&msg.payload).expect("JSON event");
    assert_eq!(
        event["actor"], "service",
        "the sender NATS vouched for: {event}"
    );
    for attribute in [
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
    ] {
        assert!(
            event.get(attribute).is_some(),
            "CloudEvents attribute `{attribute}` missing: {event}"
        );
    }
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["subject"], "node-n1");
    assert_eq!(event["causationid"], "0192f0c4-7b1a-7cc0-8000-000000000001");
    assert_eq!(
        event["data"],
        serde_json::json!({ "node_id": "n1", "reason": "silent" })
    );
}

/// A command that names no app and no host: a node failure report, one per id.
pub fn report(node_id: &str) -> Command {
    Command::ReportNodeFailure(ReportNodeFailure {
        node_id: node_id.into(),
        reason: "silent".into(),
    })
}
