//! The bus tried as an attacker would: each test is an attack that worked before the fix it names.

use crate::cloud::*;
use crate::commands::token;
use crate::harness::System;
use futures::{FutureExt as _, StreamExt as _};
use streamfleet_bus_client::{CommandClient, Follower};
use streamfleet_bus_schemas::principal::Principal;
use streamfleet_bus_schemas::services::{AgentReply, Redemption};
use streamfleet_bus_schemas::{Command, CommandReply, ReadRequest, RejectionReason, subjects};
use uuid::Uuid;

/// A client sends a redemption whose reply subject is a host's terminate subject. Before, the
/// worker's answer (an error: the token is garbage) was published there with the worker's
/// rights, and the host agent stopped the host on it.
#[tokio::test]
async fn a_redemption_naming_a_hosts_terminate_subject_as_its_reply_leaves_the_host_running() {
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 2)]);
    let mut watch = cloud.watch().await;
    watch
        .until("the host registered", |_, fleet| {
            fleet.hosts.contains_key("eu-1")
        })
        .await;
    let client = cloud.sys.nats.client("service").await;
    let forged = serde_json::to_vec(&Redemption {
        token: "not-a-token".into(),
        client_ip: "203.0.113.9".into(),
        latencies_ms: Vec::new(),
    })
    .expect("json");
    for _ in 0..5 {
        client
            .publish_with_reply(
                subjects::REDEEM,
                subjects::host("eu-1", "terminate"),
                forged.clone().into(),
            )
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    // A real session still lands on the host, which still answers for itself afterwards.
    let session = cloud.session("alice", "198.51.100.7", None).await;
    assert_eq!(session.host_id, "eu-1");
    let worker = cloud.sys.nats.client("worker").await;
    let state = worker
        .request(subjects::host("eu-1", "state"), "".into())
        .await
        .expect("the host agent still answers for eu-1");
    match serde_json::from_slice::<AgentReply>(&state.payload).expect("agent reply") {
        AgentReply::Ok { state } => assert_eq!(state.sessions, vec![session.session_id]),
        AgentReply::Error(e) => panic!("the host refused: {e:?}"),
    }
}

/// An auditor sends log reads whose reply subject is an event subject. Before, the node
/// published its read reply there; every follower took it for an event without a position and
/// stopped.
#[tokio::test]
async fn a_log_read_naming_an_event_subject_as_its_reply_publishes_nothing_there() {
    let sys = System::start();
    let auditor = sys.nats.client("auditor").await;
    let service = sys.nats.client("service").await;
    let mut on_event_subject = service
        .subscribe("sf.evt.token.Forged")
        .await
        .expect("subscribe");
    service.flush().await.expect("flush");
    let read = serde_json::to_vec(&ReadRequest::all(1, 10)).expect("json");
    for _ in 0..20 {
        auditor
            .publish_with_reply(
                subjects::LOG_READ,
                "sf.evt.token.Forged",
                read.clone().into(),
            )
            .await
            .expect("publish");
    }
    auditor.flush().await.expect("flush");
    // The node answers on one connection in order: once the service's own reads are answered,
    // anything published for the forged reads before them has reached the service too.
    for _ in 0..3 {
        streamfleet_bus_client::log_head(&service)
            .await
            .expect("the node answers reads");
    }
    assert!(
        on_event_subject.next().now_or_never().is_none(),
        "the node published a read reply on an event subject"
    );
}

/// Something publishes a non-event on an event subject while a follower is live. Before, the
/// follower returned a protocol error and every worker and view following the log stopped.
/// Here the test itself plays the node (its role is the only one that may publish events), so
/// it knows when the follower has caught up and gone live.
#[tokio::test]
async fn a_follower_passes_over_a_message_on_an_event_subject_that_is_not_an_event() {
    let nats = crate::harness::Nats::start();
    let node = nats.client("node").await;
    let mut reads = node.subscribe(subjects::LOG_READ).await.expect("subscribe");
    node.flush().await.expect("flush");
    let mut follower = Follower::start(nats.client("auditor").await, 1)
        .await
        .expect("follow");
    let following = tokio::spawn(async move {
        let next = follower.next().await;
        (follower, next)
    });
    let answer = |read: &async_nats::Message, body: serde_json::Value| {
        let reply = read.reply.clone().expect("a read request");
        let node = node.clone();
        async move {
            node.publish(reply, body.to_string().into())
                .await
                .expect("answer");
            node.flush().await.expect("flush");
        }
    };
    // The log is empty: the follower goes live.
    let first = tokio::time::timeout(PATIENCE, reads.next())
        .await
        .expect("the follower reads the log")
        .expect("open");
    answer(&first, serde_json::json!({ "status": "ok", "events": [] })).await;
    // The impostor's message, then the log holds one event.
    node.publish("sf.evt.token.TokenIssued", "{\"status\":\"ok\"}".into())
        .await
        .expect("publish");
    node.flush().await.expect("flush");
    let event = serde_json::json!({ "position": 1, "type": "TokenIssued" });
    let second = tokio::time::timeout(PATIENCE, reads.next())
        .await
        .expect("the follower reads the log again instead of stopping")
        .expect("open");
    answer(
        &second,
        serde_json::json!({ "status": "ok", "events": [event] }),
    )
    .await;
    let (follower, next) = tokio::time::timeout(PATIENCE, following)
        .await
        .expect("the follower goes on")
        .expect("task");
    let next = next.expect("no error: the impostor is passed over");
    assert_eq!(next.position, 1);
    assert_eq!(follower.malformed(), 1);
}

/// The bench role creates a JetStream stream over every command subject. Before, bench shared
/// the system's account: the stream captured every command and host request, and JetStream
/// answered services' commands with its acks. Now bench has an account of its own.
#[tokio::test]
async fn the_bench_role_sees_nothing_of_the_system_even_through_jetstream() {
    use async_nats::jetstream::stream::{Config, StorageType};
    let sys = System::start();
    let js = async_nats::jetstream::new(sys.nats.client("bench").await);
    let mut capture = js
        .create_stream(Config {
            name: "CAPTURE".into(),
            subjects: vec!["sf.>".into()],
            storage: StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("bench may use JetStream, in its own account");
    let reply = sys
        .nats
        .commands("service")
        .await
        .send(Uuid::now_v7(), &token("t-1"))
        .await
        .expect("reply");
    assert!(
        matches!(
            reply,
            streamfleet_bus_schemas::CommandReply::Accepted { .. }
        ),
        "{reply:?}"
    );
    let info = capture.info().await.expect("stream info");
    assert_eq!(
        info.state.messages, 0,
        "bench's stream captured the system's commands"
    );
}

/// `streamfleet replay …` on a stopped node's files: exit code and JSON.
fn replay_json(args: &[&str]) -> (i32, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .arg("replay")
        .args(args)
        .output()
        .expect("run replay");
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"));
    (out.status.code().unwrap_or(-1), json)
}

/// Someone with write access to the node's disk rewrites one event and recomputes every
/// checksum and chain hash after it, so the chain alone still verifies. Before, nothing could
/// tell; now the checkpoints the node signed say the log no longer matches them.
#[tokio::test]
async fn a_rewritten_log_rechained_by_hand_is_caught_by_the_signed_checkpoints() {
    use redb::ReadableTable as _;
    use streamfleet_eventlog::record::{StoredEvent, encode};
    let nats = crate::harness::Nats::start();
    let data = tempfile::tempdir().expect("tempdir");
    let mut node =
        crate::harness::NodeProcess::start_with(&nats, data.path(), &["--checkpoint-every", "4"]);
    let commands = nats.commands("service").await;
    for i in 0..10 {
        commands
            .send(Uuid::now_v7(), &crate::commands::report(&format!("n-{i}")))
            .await
            .expect("reply");
    }
    assert!(node.terminate().success());
    let log = data.path().join("events.redb");
    let (log_arg, key_arg) = (
        log.display().to_string(),
        data.path().join("checkpoint.pub").display().to_string(),
    );
    let verify = ["verify", "--file", &log_arg, "--json", "--quiet"];
    let signed = [&verify[..], &["--public-key", &key_arg]].concat();
    let (code, clean) = replay_json(&signed);
    assert_eq!(code, 0, "{clean}");
    assert_eq!(
        clean["checkpoints"]["signed_through"], 10,
        "the node signed its head on stop: {clean}"
    );

    // The rewrite: position 3's body says another failure reason; 3..=10 are re-chained.
    let events: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
    {
        let db = redb::Database::create(&log).expect("open the stopped node's log");
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(events).expect("events");
            let read = |table: &redb::Table<u64, &[u8]>, p: u64| {
                let bytes = table.get(p).expect("get").expect("record").value().to_vec();
                StoredEvent::decode(p, &bytes).expect("decode")
            };
            let mut prev = read(&table, 2).chain;
            for p in 3..=10 {
                let mut e = read(&table, p);
                if p == 3 {
                    let text = String::from_utf8(e.body.clone()).expect("json");
                    let forged = text.replacen("\"silent\"", "\"forged\"", 1);
                    assert_ne!(forged, text, "a failure reason to rewrite");
                    e.body = forged.into_bytes();
                }
                let (bytes, chain) =
                    encode(&prev, p, e.stream_version, e.command_id, &e.stream, &e.body);
                table.insert(p, bytes.as_slice()).expect("rewrite");
                prev = chain;
            }
        }
        txn.commit().expect("commit");
    }
    let (code, chain_only) = replay_json(&verify);
    assert_eq!(code, 0, "the chain alone cannot tell: {chain_only}");
    let (code, caught) = replay_json(&signed);
    assert_eq!(code, 1, "{caught}");
    assert_eq!(caught["failure"]["kind"], "checkpoint_mismatch", "{caught}");
    let at = caught["failure"]["position"].as_u64().expect("a position");
    assert!(
        (3..=10).contains(&at),
        "the first checkpoint at or after the rewrite: {caught}"
    );
}

/// Slowloris on a host's control port: connections that send half a request and wait. Before,
/// each was held open with no header timeout (500 of them for 20 s and more); now the host cuts
/// each off once its headers are late. And probing for session ids: an unknown id used to be
/// `404` and someone else's `403`, which told which ids exist; both are the same `403` now.
#[tokio::test]
async fn the_control_port_cuts_off_slow_requests_and_does_not_tell_which_sessions_exist() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 2)]);
    let session = cloud.session("ada", "198.51.100.7", None).await;
    let (address, port) = (session.address.clone(), session.control_port);
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut socket = tokio::net::TcpStream::connect((address.as_str(), port))
            .await
            .expect("connect");
        socket
            .write_all(b"GET /sessions/x HTTP/1.1\r\nHost: h\r\n")
            .await
            .expect("half a request");
        slow.push(socket);
    }
    let limit = streamfleet_host_agent::control::HEADER_TIMEOUT * 3;
    for mut socket in slow {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(limit, socket.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "a half-sent request was still open after {limit:?}"
        );
    }
    // Meanwhile and after, real requests are served.
    let me = bearer(session.credentials.expose());
    let mine = format!("/sessions/{}", session.session_id);
    let (status, _) = cloud
        .http(&address, port, "GET", &mine, &[("authorization", &me)])
        .await;
    assert_eq!(status, 200);
    let unknown = cloud
        .http(
            &address,
            port,
            "GET",
            "/sessions/nobody",
            &[("authorization", &me)],
        )
        .await;
    let other = cloud.session("bob", "198.51.100.8", None).await;
    let theirs = format!("/sessions/{}", other.session_id);
    let not_mine = cloud
        .http(&address, port, "GET", &theirs, &[("authorization", &me)])
        .await;
    assert_eq!(unknown.0, 403);
    assert_eq!(not_mine.0, 403);
    let reason = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).expect("json")["error"]
            .as_str()
            .expect("an error")
            .replace("nobody", "<id>")
            .replace(other.session_id.as_str(), "<id>")
    };
    assert_eq!(
        reason(&unknown.1),
        reason(&not_mine.1),
        "the same refusal either way"
    );
}

/// The attack: one host reads the requests addressed to another (which carry its sessions'
/// credentials), or all of them. Before, every host agent shared one user subscribed to
/// `sf.host.>`. Now each host has its own identity whose rights name its own id only.
#[tokio::test]
async fn a_host_cannot_read_the_requests_addressed_to_another_host() {
    let sys = System::start();
    sys.nats
        .admit_hosts(&["h-1", "h-2"], "eu-west")
        .await
        .expect("admitted");
    let (host, mut errors) = crate::permissions::client_with_errors(&sys, "host.h-1").await;
    for sniffed in [
        "sf.host.h-2.start",
        "sf.host.>",
        "sf.evt.instance.>",
        "sf.cmd.>",
    ] {
        let _sub = host.subscribe(sniffed).await.expect("subscribe sent");
        host.flush().await.expect("flush");
        crate::permissions::expect_violation(&mut errors, "host.h-1", sniffed).await;
    }
    // Its own requests reach it.
    let mut own = host.subscribe("sf.host.h-1.state").await.expect("own");
    host.flush().await.expect("flush");
    let worker = sys.nats.client("worker").await;
    worker
        .publish("sf.host.h-1.state", "".into())
        .await
        .expect("publish");
    worker.flush().await.expect("flush");
    assert!(
        own.next().await.is_some(),
        "a host receives its own requests"
    );
}

/// The attack: a host reports heartbeats for another host, or ends another host's session, or
/// publishes under another host's name. Before, each was accepted (the host id was a payload
/// field nothing bound to the sender). Now the node takes the sender from the subject and
/// refuses a command about another host as `forbidden`; NATS refuses the other's subject.
#[tokio::test]
async fn a_host_cannot_speak_for_another_host() {
    let sys = System::start();
    sys.nats
        .admit_hosts(&["h-1", "h-2"], "eu-west")
        .await
        .expect("admitted");
    for id in ["h-1", "h-2"] {
        sys.nats
            .host_commands(id)
            .await
            .submit(Uuid::now_v7(), &crate::commands::register(id))
            .await
            .expect("registered");
    }
    let h1 = sys.nats.host_commands("h-1").await;
    let forged = [
        crate::commands::heartbeat("s-1", "h-2"),
        Command::EndSession(streamfleet_bus_schemas::payloads::EndSession {
            session_id: "s-1".into(),
            host_id: "h-2".into(),
            reason: streamfleet_bus_schemas::payloads::SessionEndReason::Ended,
            saved_state: Some("forged".into()),
        }),
        Command::RegisterHost(match crate::commands::register("h-2") {
            Command::RegisterHost(mut r) => {
                r.address = "203.0.113.66".into();
                r
            }
            _ => unreachable!(),
        }),
    ];
    for command in &forged {
        let reply = h1.send(Uuid::now_v7(), command).await.expect("answered");
        let CommandReply::Rejected { reason, .. } = &reply else {
            panic!("{} accepted: {reply:?}", command.type_name())
        };
        assert!(
            matches!(reason, RejectionReason::Forbidden { principal, .. } if principal == "host.h-1"),
            "{reply:?}"
        );
    }
    // Under h-2's name on the wire, NATS refuses it outright.
    let (raw, mut errors) = crate::permissions::client_with_errors(&sys, "host.h-1").await;
    let as_h2 = CommandClient::new(raw, Principal::host("h-2"), "forger");
    let subject = crate::commands::heartbeat("s-1", "h-2").subject_as(as_h2.principal());
    let send = tokio::spawn(async move {
        as_h2
            .send(Uuid::now_v7(), &crate::commands::heartbeat("s-1", "h-2"))
            .await
    });
    crate::permissions::expect_violation(&mut errors, "host.h-1", &subject).await;
    send.abort();
    // Nothing of it was recorded: h-2's stream holds its admission and registration only.
    let reader = streamfleet_bus_client::LogReader::new(sys.nats.client("auditor").await);
    let h2 = reader.stream("host-h-2").await.expect("read");
    assert_eq!(h2.len(), 2, "{h2:?}");
}

/// The attack: a rogue host joins the fleet to receive sessions and their credentials. Before,
/// anyone with the shared host password registered any host id. Now there is no shared host
/// user, an unadmitted key is refused at the door, and an admitted host registers only as
/// itself and only in its region.
#[tokio::test]
async fn a_rogue_host_gets_nothing() {
    let sys = System::start();
    let rogue = streamfleet_bus_client::HostKey::generate().expect("key");
    let login = streamfleet_bus_client::NatsLogin::host(
        sys.nats.url.clone(),
        &"h-9".into(),
        rogue.seed().clone(),
    );
    assert!(
        streamfleet_bus_client::connect(&login).await.is_err(),
        "an unadmitted key is refused"
    );
    for password in ["", "host", &sys.nats.password("service")] {
        let shared = streamfleet_bus_client::NatsLogin::new(sys.nats.url.clone(), "host", password);
        assert!(
            streamfleet_bus_client::connect(&shared).await.is_err(),
            "there is no shared host user"
        );
    }
    // An admitted host claiming another region is refused by the domain.
    sys.nats
        .admit_host("h-1", "eu-west")
        .await
        .expect("admitted");
    let h1 = sys.nats.host_commands("h-1").await;
    let mut elsewhere = match crate::commands::register("h-1") {
        Command::RegisterHost(r) => r,
        _ => unreachable!(),
    };
    elsewhere.region = "us-east".into();
    let reply = h1
        .send(Uuid::now_v7(), &Command::RegisterHost(elsewhere))
        .await
        .expect("answered");
    assert!(
        matches!(&reply, CommandReply::Rejected { reason: RejectionReason::Domain { rule, .. }, .. } if rule == "host_region_mismatch"),
        "{reply:?}"
    );
    // And a host nobody admitted cannot even be asked of the cloud.
    let reply = sys
        .nats
        .commands("worker")
        .await
        .send(
            Uuid::now_v7(),
            &Command::RequestHost(streamfleet_bus_schemas::payloads::RequestHost {
                host_id: "h-9".into(),
                region: "eu-west".into(),
                app_id: "chess".into(),
                version: "1.0.0".into(),
                reason: "rogue".into(),
            }),
        )
        .await
        .expect("answered");
    assert!(
        matches!(&reply, CommandReply::Rejected { reason: RejectionReason::Domain { rule, .. }, .. } if rule == "host_not_admitted"),
        "{reply:?}"
    );
}

/// The attack: an eavesdropper on the wire between a process and NATS, or a man in the middle
/// with a certificate of its own. Before, every link was plaintext. Now the server takes TLS
/// only (a plaintext client is refused even with the right password) and clients trust the
/// installation's own authority, not another's.
#[tokio::test]
async fn a_plaintext_connection_is_refused_and_a_foreign_authority_is_not_trusted() {
    let sys = System::start();
    let login = sys.nats.login("service");
    assert!(login.ca.is_some(), "the system speaks TLS");
    assert!(
        streamfleet_bus_client::connect(&login.clone().with_ca(None))
            .await
            .is_err(),
        "plaintext refused"
    );
    let elsewhere = tempfile::tempdir().expect("dir");
    let foreign = streamfleet_tls::TlsFiles::ensure(elsewhere.path(), &["127.0.0.1"])
        .expect("another authority");
    assert!(
        streamfleet_bus_client::connect(&login.clone().with_ca(Some(foreign.ca)))
            .await
            .is_err(),
        "a server certificate of another authority is not trusted"
    );
    let client = streamfleet_bus_client::connect(&login)
        .await
        .expect("TLS with the installation's authority");
    let reply = CommandClient::new(
        client,
        Principal::Role(streamfleet_bus_schemas::principal::Role::Service),
        "test",
    )
    .send(Uuid::now_v7(), &token("t-tls"))
    .await
    .expect("answered over TLS");
    assert!(matches!(reply, CommandReply::Accepted { .. }), "{reply:?}");
}

/// The attack: a token stolen from a user bound to their address is redeemed from another,
/// the thief claiming the user's address. Before, the binding was checked against the IP the
/// client wrote in its own JSON. Now clients redeem at the front door over HTTPS, which checks
/// the connection's own address: a claimed address in the body is refused as malformed, an
/// `X-Forwarded-For` from a peer that is not a trusted proxy is ignored, and the refusal names
/// no bound address. From the bound address, the same token is provisioned.
#[tokio::test]
async fn a_stolen_token_redeemed_from_another_address_is_refused_at_the_front_door() {
    use streamfleet_media::signal::{Via, request_via, split_url};
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 2)]);
    let victim = "127.0.0.2";
    let grant = cloud.issue("ada", Some(victim), None, None).await;
    let (host, port, path) = split_url(&cloud.redeem_url).expect("url");
    let ca = cloud.sys.nats.ca().expect("the system speaks TLS");
    let tls = streamfleet_tls::client_config(&ca).expect("client config");
    let post = async |from: &str, headers: &[(&str, &str)], body: serde_json::Value| {
        let via = Via {
            tls: Some(tls.clone()),
            local: Some(from.parse().expect("ip")),
        };
        let body = serde_json::to_vec(&body).expect("json");
        request_via(
            &via,
            &host,
            port,
            "POST",
            &path,
            headers,
            Some(("application/json", &body)),
        )
        .await
        .expect("the front door answers")
    };
    let token = grant.token.expose();
    // The thief, from 127.0.0.1, says it is the victim every way it can.
    let claimed = post(
        "127.0.0.1",
        &[],
        serde_json::json!({ "token": token, "client_ip": victim }),
    )
    .await;
    assert_eq!(claimed.status, 400, "{}", claimed.body);
    let forwarded = post(
        "127.0.0.1",
        &[("x-forwarded-for", victim)],
        serde_json::json!({ "token": token }),
    )
    .await;
    assert_eq!(forwarded.status, 403, "{}", forwarded.body);
    let refusal: streamfleet_bus_schemas::services::RedemptionReply =
        serde_json::from_str(&forwarded.body).expect("reply");
    assert!(
        matches!(&refusal, streamfleet_bus_schemas::services::RedemptionReply::Error(e) if e.code == "ip_mismatch"),
        "{}",
        forwarded.body
    );
    assert!(
        !forwarded.body.contains(victim),
        "the refusal names no bound address: {}",
        forwarded.body
    );
    // Plain HTTP at an HTTPS door gets nothing.
    let plain = request_via(
        &Via {
            tls: None,
            local: None,
        },
        &host,
        port,
        "POST",
        &path,
        &[],
        Some(("application/json", b"{}")),
    )
    .await;
    assert!(
        plain.map(|r| r.status).unwrap_or(0) != 200,
        "no plaintext redemption"
    );
    // The user, from the bound address, gets the session the token was for.
    let own = post(victim, &[], serde_json::json!({ "token": token })).await;
    assert_eq!(own.status, 200, "{}", own.body);
    let session: streamfleet_bus_schemas::services::RedemptionReply =
        serde_json::from_str(&own.body).expect("reply");
    let streamfleet_bus_schemas::services::RedemptionReply::Provisioned(s) = session else {
        panic!("provisioned: {}", own.body)
    };
    // Its credentials then go to the host over HTTPS only: the control port answers no
    // plaintext request.
    assert!(s.control_tls, "{s:?}");
    let plain = request_via(
        &Via::default(),
        &s.address,
        s.control_port,
        "GET",
        &format!("/sessions/{}", s.session_id),
        &[],
        None,
    )
    .await;
    assert!(
        plain.map(|r| r.status).unwrap_or(0) == 0,
        "the control port speaks no plaintext"
    );
}

/// The attack: a host's key is stolen, or the host is compromised. An operator revokes its
/// admission: its connections are closed at once, its key opens nothing any more, and the log
/// records it removed (`revoked`), so the fleet places nothing more on it.
#[tokio::test]
async fn a_revoked_host_is_cut_off_and_its_key_opens_nothing() {
    let sys = System::start();
    sys.nats
        .admit_hosts(&["h-1", "h-2"], "eu-west")
        .await
        .expect("admitted");
    let login = sys.nats.host_login("h-1");
    let (tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    let connected = login
        .options()
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(format!("{event:?}"));
            }
        })
        .connect(login.url.as_str())
        .await
        .expect("connect");
    let h1 = CommandClient::new(connected.clone(), Principal::host("h-1"), "test");
    h1.submit(Uuid::now_v7(), &crate::commands::register("h-1"))
        .await
        .expect("registered");

    sys.nats.revoke_host("h-1").await.expect("revoked");
    // Its open connection is closed by the server...
    let mut seen = Vec::new();
    let cut = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(event) = errors.recv().await {
            let closed =
                event.contains("Disconnected") || event.to_lowercase().contains("authorization");
            seen.push(event);
            if closed {
                return;
            }
        }
    })
    .await;
    assert!(
        cut.is_ok(),
        "the server did not cut the revoked host off: {seen:?}"
    );
    // ...and the stolen key opens nothing.
    assert!(
        streamfleet_bus_client::connect(&login).await.is_err(),
        "a revoked key is refused"
    );
    let reader = streamfleet_bus_client::LogReader::new(sys.nats.client("auditor").await);
    let last = reader.stream("host-h-1").await.expect("read");
    let removed = last.last().expect("events");
    assert_eq!(removed.body.event_type, "HostRemoved");
    assert_eq!(removed.body.data["reason"], "revoked");
    assert_eq!(removed.body.actor.as_deref(), Some("operator"));
    // The other host is untouched.
    sys.nats.host_commands("h-2").await;
}
