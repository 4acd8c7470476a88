//! The faults an operator meets, against real processes: a node whose disk fills up and is
//! freed again.

use crate::harness::{Nats, NodeProcess};
use streamfleet_bus_schemas::payloads::ReportNodeFailure;
use streamfleet_bus_schemas::{
    Command, CommandReply, HealthStatus, NodeHealth, ReadReply, ReadRequest, RejectionReason,
    subjects,
};
use streamfleet_testkit::SmallDisk;
use uuid::Uuid;

fn failure(n: u32) -> Command {
    Command::ReportNodeFailure(ReportNodeFailure {
        node_id: format!("n{n}").into(),
        reason: "x".repeat(8_000),
    })
}

async fn health(client: &async_nats::Client) -> NodeHealth {
    let reply = client
        .request(subjects::LOG_HEALTH, "".into())
        .await
        .expect("the node answers health");
    serde_json::from_slice(&reply.payload).expect("a NodeHealth")
}

async fn positions(client: &async_nats::Client) -> Vec<u64> {
    let mut all = Vec::new();
    let mut from = 1;
    loop {
        let body = serde_json::to_vec(&ReadRequest::all(from, 500)).expect("json");
        let reply = client
            .request(subjects::LOG_READ, body.into())
            .await
            .expect("the node answers reads");
        match serde_json::from_slice(&reply.payload).expect("a ReadReply") {
            ReadReply::Ok { next, events, .. } => {
                all.extend(events.iter().map(|e| e.position));
                match next {
                    Some(n) => from = n,
                    None => return all,
                }
            }
            ReadReply::Error { code, detail } => panic!("read refused: {code}: {detail}"),
        }
    }
}

#[tokio::test]
async fn a_node_on_a_full_disk_refuses_commands_as_storage_full_says_degraded_and_records_again_once_freed()
 {
    let nats = Nats::start();
    let disk = SmallDisk::mount(16);
    let _node = NodeProcess::start(&nats, disk.path());
    let commands = nats.commands("service").await;
    let operator = nats.client("operator").await;
    let auditor = nats.client("auditor").await;
    let mut accepted = Vec::new();
    for n in 0..20 {
        match commands
            .send(Uuid::now_v7(), &failure(n))
            .await
            .expect("reply")
        {
            CommandReply::Accepted { events, .. } => accepted.push(events[0].position),
            other => panic!("refused before the disk is full: {other:?}"),
        }
    }
    assert_eq!(health(&operator).await.status, HealthStatus::Serving);

    let filler = disk.fill();
    let mut refused = None;
    for n in 20..5_000 {
        match commands
            .send(Uuid::now_v7(), &failure(n))
            .await
            .expect("reply")
        {
            CommandReply::Accepted { events, .. } => accepted.push(events[0].position),
            CommandReply::Rejected { reason, .. } => {
                refused = Some((n, reason));
                break;
            }
        }
    }
    let (n, reason) = refused.expect("a full disk refuses a command");
    assert!(
        matches!(reason, RejectionReason::StorageFull { .. }),
        "typed storage_full: {reason:?}"
    );
    let degraded = health(&operator).await;
    assert_eq!(degraded.status, HealthStatus::Degraded);
    assert!(
        degraded.to_string().starts_with("degraded: storage full"),
        "{degraded}"
    );
    // Reads go on, and hold exactly what was accepted.
    assert_eq!(positions(&auditor).await, accepted);

    // Space comes back: the same command, sent again, is recorded — the node never restarted.
    std::fs::remove_file(filler).expect("free the space");
    let id = Uuid::now_v7();
    match commands.send(id, &failure(n)).await.expect("reply") {
        CommandReply::Accepted { events, .. } => accepted.push(events[0].position),
        other => panic!("still refused after space was freed: {other:?}"),
    }
    assert_eq!(health(&operator).await.status, HealthStatus::Serving);
    assert_eq!(positions(&auditor).await, accepted);
}

/// An invented app: before, a token was issued for it and its redemption made the fleet launch
/// a host for it. Now the registry says no: the token is refused as `unknown_app`, and so is a
/// buffer of hosts for it, so the fleet has nothing to launch — until an operator registers it
/// (`streamfleet app register`).
#[tokio::test]
async fn a_token_or_a_buffer_for_an_unregistered_app_is_refused_as_unknown_app() {
    use crate::cloud::{AgentSpec, Cloud};
    use streamfleet_bus_schemas::payloads::SetBufferTarget;
    use streamfleet_bus_schemas::services::{TokenReply, TokenRequest};
    let cloud = Cloud::start(&[AgentSpec::new("eu-west", "eu", 1, 2)]);
    let entitlement = cloud.sys.nats.client("entitlement").await;
    let request = TokenRequest {
        app_id: "invented".into(),
        user_id: "ada".into(),
        client_ip: Some("198.51.100.7".into()),
        group_id: None,
        ttl_seconds: None,
    };
    let reply = entitlement
        .request(
            subjects::TOKEN_REQUEST,
            serde_json::to_vec(&request).expect("json").into(),
        )
        .await
        .expect("the token service answers");
    match serde_json::from_slice::<TokenReply>(&reply.payload).expect("a token reply") {
        TokenReply::Error(e) => assert_eq!(e.code, "unknown_app", "{e:?}"),
        TokenReply::Issued(grant) => panic!("a token for an invented app: {grant:?}"),
    }
    let buffer = cloud
        .command(Command::SetBufferTarget(SetBufferTarget {
            region: "eu-west".into(),
            app_id: "invented".into(),
            idle_hosts: 3,
        }))
        .await;
    assert!(
        matches!(&buffer, CommandReply::Rejected { reason: RejectionReason::Domain { rule, .. }, .. } if rule == "unknown_app"),
        "{buffer:?}"
    );
    // The registered app is served as before.
    let grant = cloud.issue("ada", Some("198.51.100.7"), None, None).await;
    assert!(!grant.token_id.to_string().is_empty());
    // Nothing about the invented app reached the log.
    let auditor = cloud.sys.nats.client("auditor").await;
    let body = serde_json::to_vec(&ReadRequest::all(1, 10_000)).expect("json");
    let reply = auditor
        .request(subjects::LOG_READ, body.into())
        .await
        .expect("read");
    let ReadReply::Ok { events, .. } = serde_json::from_slice(&reply.payload).expect("reply")
    else {
        panic!("read refused")
    };
    assert!(
        !events.iter().any(|e| serde_json::to_string(&e.body)
            .unwrap_or_default()
            .contains("invented")),
        "the invented app is nowhere in the log"
    );

    // Registered by an operator, the same request is served.
    let registered = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet"))
        .args(["app", "register", "invented", "--version", "0.1.0"])
        .args(["--image", "registry.example/invented:0.1.0", "--cpus", "2"])
        .args(["--nats-url", &cloud.sys.nats.url])
        .env("SF_OPERATOR_PASSWORD", cloud.sys.nats.password("operator"))
        .env("SF_NATS_CA", crate::cloud::nats_ca(&cloud.sys))
        .output()
        .expect("streamfleet app register");
    let said = String::from_utf8_lossy(&registered.stdout);
    assert!(
        registered.status.success() && said.starts_with("registered invented position="),
        "{said}{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let reply = entitlement
        .request(
            subjects::TOKEN_REQUEST,
            serde_json::to_vec(&request).expect("json").into(),
        )
        .await
        .expect("the token service answers");
    assert!(
        matches!(
            serde_json::from_slice::<TokenReply>(&reply.payload).expect("a token reply"),
            TokenReply::Issued(_)
        ),
        "a registered app gets its token"
    );
}
