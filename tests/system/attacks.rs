//! The bus tried as an attacker would: each test is an attack that worked before the fix it names.

use crate::cloud::*;
use crate::commands::token;
use crate::harness::System;
use futures::{FutureExt as _, StreamExt as _};
use streamfleet_bus_client::Follower;
use streamfleet_bus_schemas::services::{AgentReply, Redemption};
use streamfleet_bus_schemas::{ReadRequest, subjects};
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
    let client = cloud.sys.nats.client("client").await;
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
